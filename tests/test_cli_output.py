"""What the CLI says when the input is fine but easy to misread (issue #12): candle units and
currencies, where a setting came from, a config file found on its own, config check and scan
wording, JSON units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_path
from sizeguard.backtest.candles import load_candles, quote_from_symbol, to_milliseconds
from sizeguard.cli.main import app
from sizeguard.cli.render import clean_floats
from sizeguard.errors import InvalidInput

runner = CliRunner()
H = 3_600_000
SIZE = ["size", "BTC/USDT:USDT", "--side", "long", "--price", "90000", "--equity", "1000",
        "--stop-pct", "1", "--json"]


def candles(path: Path, start: int, step: int, n: int = 60) -> Path:
    rows = ["timestamp,open,high,low,close,volume"] + [
        f"{start + i * step},{100 + i % 7},{102 + i % 7},{99 + i % 7},{101 + i % 7},1"
        for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


# -- candles -----------------------------------------------------------------------------------

def test_seconds_are_converted_to_ms_with_a_warning(tmp_path: Path) -> None:
    # 2020-09-13 12:26:40 UTC is 1_600_000_000 s; read as ms it would be 1970-01-19
    sec = load_candles(candles(tmp_path / "ABC_USDT-1h.csv", 1_600_000_000, 3600))
    ms = load_candles(candles(tmp_path / "ABC_USDT-1h.csv", 1_600_000_000_000, H))
    assert np.array_equal(sec.timestamp, ms.timestamp) and not sec.gaps
    assert sec.warnings and "epoch seconds" in sec.warnings[0] and not ms.warnings


def test_units_told_apart_by_step_and_name() -> None:
    ts = np.array([0, H, 2 * H], dtype=np.int64)  # 1970 in ms, steps of 1 h: stays ms
    assert to_milliseconds(ts, "x")[1] is None
    ts_s = np.array([0, 60, 120], dtype=np.int64)  # steps of 60: seconds
    assert to_milliseconds(ts_s, "x")[0].tolist() == [0, 60_000, 120_000]
    us = np.array([1_600_000_000_000_000, 1_600_000_003_600_000_000 // 1000], dtype=np.int64)
    assert to_milliseconds(us, "x")[1] is not None and "microseconds" in str(
        to_milliseconds(us, "x")[1])
    with pytest.raises(InvalidInput, match="mixes time units"):
        to_milliseconds(np.array([1_600_000_000_000, 1_600_000_000_000_000_000], dtype=np.int64), "x")


def test_quote_of_a_candle_file_name() -> None:
    assert quote_from_symbol("ETH_BTC") == "BTC" and quote_from_symbol("BTC_USD") == "USD"
    assert quote_from_symbol("BTC-PERP") is None and quote_from_symbol("BTC") is None


def test_backtest_tells_seconds_and_keeps_the_dates_right(tmp_path: Path) -> None:
    f = candles(tmp_path / "BTC_USD-1h.csv", 1_600_000_000, 3600, n=200)
    res = runner.invoke(app, ["backtest", "--candles", str(f), "--preset", "ai-atr-risk",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert "epoch seconds; converted to milliseconds" in res.stderr
    [row] = json.loads(res.stdout)
    assert row["max_drawdown_pct"] == pytest.approx(row["max_drawdown"] * 100)
    assert row["total_return_pct"] == pytest.approx(row["total_return"] * 100)


def test_btc_quoted_candles_are_not_traded_as_usdt() -> None:
    f = shared_path("ohlcv", "freqtrade-testdata", "ETH_BTC-5m.csv")
    res = runner.invoke(app, ["backtest", "--candles", str(f), "--preset", "ai-atr-risk"])
    assert res.exit_code == 2
    assert "quoted in BTC" in res.stderr and "ETH/USDT:USDT" in res.stderr
    chosen = runner.invoke(app, ["backtest", "--candles", str(f), "--preset", "ai-atr-risk",
                                 "--symbol", "ETH/USDT:USDT", "--json"])
    assert chosen.exit_code == 0 and "warning:" in chosen.stderr and "quoted in BTC" in chosen.stderr


def test_montecarlo_default_is_the_backtest_s_block_bootstrap(tmp_path: Path) -> None:
    ledger = tmp_path / "t.csv"
    f = candles(tmp_path / "BTC_USD-1h.csv", 1_600_000_000_000, H, n=400)
    assert runner.invoke(app, ["backtest", "--candles", str(f), "--preset", "viper-50x",
                               "--ledger", str(ledger)]).exit_code == 0
    res = runner.invoke(app, ["montecarlo", "--ledger", str(ledger), "--paths", "200", "--json"])
    if "no trades" in res.stderr:
        pytest.skip("the synthetic candles gave no trade")
    [row] = json.loads(res.stdout)
    assert row["method"] == "block" and "probability_of_ruin_pct" in row


# -- where settings came from ------------------------------------------------------------------

def test_size_json_says_the_environment_set_the_leverage() -> None:
    res = runner.invoke(app, [*SIZE, "--preset", "viper-50x"], env={"MAX_LEVERAGE": "5"})
    out = json.loads(res.stdout)
    assert out["leverage"] == 5.0
    assert out["environment"]["leverage.max"] == "MAX_LEVERAGE"
    assert "env: MAX_LEVERAGE" in out["policy_layers"]
    plain = json.loads(runner.invoke(app, [*SIZE, "--preset", "viper-50x"]).stdout)
    assert plain["environment"] == {}


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("SIZEGUARD_CONFIG", raising=False)
    monkeypatch.delenv("SIZEGUARD_CONFIG_DISCOVERY", raising=False)
    return tmp_path


def _show(*args: str) -> dict[str, str]:
    res = runner.invoke(app, ["config", "show", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_a_config_file_is_found_in_the_working_dir_then_the_user_config_dir(homes: Path) -> None:
    assert _show()["sources"]["limits.max_notional"] != "file"
    user = homes / "cfg" / "sizeguard" / "sizeguard.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[limits]\nmax_notional = 700\n")
    out = _show()
    assert out["policy"]["limits.max_notional"] == 700
    assert out["sources"]["limits.max_notional"] == f"file:{user}"
    assert any(layer.endswith("(found)") for layer in out["layers"])
    (homes / "work" / "sizeguard.toml").write_text("[limits]\nmax_notional = 600\n")
    assert _show()["policy"]["limits.max_notional"] == 600  # the working directory first
    assert _show("--set", "limits.max_notional=500")["policy"]["limits.max_notional"] == 500
    off = runner.invoke(app, ["config", "show", "--json"],
                        env={"SIZEGUARD_CONFIG_DISCOVERY": "off"})
    assert json.loads(off.stdout)["policy"]["limits.max_notional"] != 600


# -- config check and scan ---------------------------------------------------------------------

def test_config_check_names_passing_checks_in_their_own_words() -> None:
    res = runner.invoke(app, ["config", "check", "--preset", "kraken-micro", "--equity", "2"],
                        env={"COLUMNS": "120"})
    data = json.loads(runner.invoke(app, ["config", "check", "--preset", "kraken-micro",
                                          "--equity", "2", "--json"]).stdout)
    oks = [line for line in res.stdout.splitlines() if line.startswith("ok")]
    assert oks and not any(code in line for line in oks for code in data["passed"])
    # one rule found on several markets is one warning, said with its markets
    rules, found = len(data["warning_rules"]), data["warnings"]
    assert found > rules >= 1
    assert f"{rules} warning(s) on {found} market(s)" in res.stdout


def test_config_scan_reads_settings_in_markdown_prose_and_inline_code(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "Set `MAX_LEVERAGE=20` first, or MAX_LEVERAGE=25 in a sentence.\n"
        "Default gross: ${QT_MAX_GROSS_EXPOSURE:-150000}.\n")
    data = json.loads(runner.invoke(app, ["config", "scan", str(tmp_path), "--json"]).stdout)
    found = {s["name"]: sorted(s["values"]) for s in data["settings"]}
    assert found["MAX_LEVERAGE"] == ["20", "25"] and "MAX_LEVERAGE" in data["disagreements"]
    assert found["QT_MAX_GROSS_EXPOSURE"] == ["150000"]


def test_json_has_no_float_noise() -> None:
    assert clean_floats({"pnl": -42.592683000000044, "n": [0.1 + 0.2]}) == {
        "pnl": -42.592683, "n": [0.3]}


def test_gaps_are_a_warning_even_with_json() -> None:
    f = shared_path("ohlcv", "bitstamp", "BTC_USD-1d.csv")  # 12 days missing, row 1574
    res = runner.invoke(app, ["backtest", "--candles", str(f), "--preset", "ai-atr-risk", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)
    assert "warning:" in res.stderr and "12 candles missing" in res.stderr
