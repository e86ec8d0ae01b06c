"""Every command against each class of bad input (issue #12): unknown name, wrong type, out of
range, missing file, wrong-shape file, unwritable output. Each must exit 2 with ONE line on
stderr naming the option or field (or the value), no traceback, and write nothing.

In-process through typer's CliRunner (fast); a few real subprocess runs at the end check the
installed entry point the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sizeguard.cli.main import app

runner = CliRunner()
BTC = "BTC/USDT:USDT"
SIZE = [BTC, "--side", "long", "--price", "90000", "--equity", "1000", "--stop-pct", "1"]
TRADE = ["trade", BTC, "--side", "long", "--price", "90000", "--atr", "2000"]
CANDLES = "BTC_USD-1h.csv"


def _files(tmp: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in tmp.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with good and bad input files; user dirs point inside it."""
    monkeypatch.chdir(tmp_path)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "home" / var.lower()))
    monkeypatch.setenv("SIZEGUARD_CRASH_DIR", str(tmp_path / "crash"))
    for var in ("SIZEGUARD_STORE", "SIZEGUARD_ACCOUNT", "SIZEGUARD_PRESET", "SIZEGUARD_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "wrong.json").write_text(json.dumps({"foo": 1}))
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "notjson.json").write_text("{nope")
    (tmp_path / "bad.toml").write_text("[limits\nmax = ")
    (tmp_path / "shape.toml").write_text("[limits]\nmax_notionl = 5\n")
    (tmp_path / "markets.json").write_text(json.dumps({"BTC/USDT:USDT": {
        "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT", "settle": "USDT",
        "type": "swap", "swap": True, "contract": True, "linear": True, "contractSize": 1,
        "precision": {"amount": 0.001, "price": 0.1},
        "limits": {"amount": {"min": 0.001}, "cost": {"min": 5}, "leverage": {"max": 125}}}}))
    rows = ["timestamp,open,high,low,close,volume"] + [
        f"{1_600_000_000_000 + i * 3_600_000},{100 + i},{101 + i},{99 + i},{100.5 + i},1"
        for i in range(60)]
    (tmp_path / CANDLES).write_text("\n".join(rows) + "\n")
    (tmp_path / "ETH_USD-1h.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "cols.csv").write_text("time,price\n1,2\n")
    (tmp_path / "ledger.csv").write_text("a,b\n1,2\n")
    return tmp_path


@pytest.fixture
def store(sandbox: Path) -> str:
    """A paper account with one open position."""
    url = str(sandbox / "state.db")
    res = runner.invoke(app, [*TRADE, "--equity", "10000", "--store", url, "--json"])
    assert res.exit_code == 0, res.output
    return url


UNKNOWN = [
    ("size-symbol", ["size", "BTC/USDT:USDTT", *SIZE[1:]], "BTC/USDT:USDTT"),
    ("size-preset", ["size", *SIZE, "--preset", "quantum4x30"], "quantum4x30"),
    ("size-option", ["size", *SIZE, "--stp", "3"], "--stp"),
    ("size-side", ["size", *SIZE[:1], "--side", "up", *SIZE[3:]], "--side"),
    ("size-margin-mode", ["size", *SIZE, "--margin-mode", "crosss"], "crosss"),
    ("size-set-key", ["size", *SIZE, "--set", "limits.max_notionl=5"], "max_notionl"),
    ("explain-symbol", ["explain", "ETH/USDX", *SIZE[1:]], "ETH/USDX"),
    ("markets-symbol", ["markets", "BTC/USDX"], "BTC/USDX"),
    ("markets-refresh-exchange", ["markets", "refresh", "--exchange", "binanceusdn"], "binanceusdn"),
    ("markets-refresh-no-exchange", ["markets", "refresh"], "--exchange"),
    ("demo-symbol", ["demo", "--symbol", "NOPE/USDT"], "NOPE/USDT"),
    ("demo-side", ["demo", "--side", "up"], "--side"),
    ("config-show-preset", ["config", "show", "--preset", "vipr-50x"], "vipr-50x"),
    ("config-check-symbol", ["config", "check", "--symbol", "BTC/USDT:USDTT"], "BTC/USDT:USDTT"),
    ("command", ["sizee"], "sizee"),
    ("trade-symbol", ["trade", "BTCUSDT", "--side", "long", "--price", "1", "--equity", "10",
                      "--atr", "1", "--store", "s.db"], "BTCUSDT"),
    ("journal-kind", ["journal", "--kind", "fills"], "fills"),
    ("backtest-strategy", ["backtest", "--candles", CANDLES, "--strategy", "emacross"], "emacross"),
    ("backtest-preset", ["backtest", "--candles", CANDLES, "--preset", "quantum4x30"], "quantum4x30"),
    ("backtest-intrabar", ["backtest", "--candles", CANDLES, "--intrabar", "best"], "--intrabar"),
    ("backtest-cross-spot", ["backtest", "--candles", CANDLES, "--candles", "ETH_USD-1h.csv",
                             "--symbol", BTC, "--symbol", "ETH/USDT",
                             "--set", "leverage.margin_mode=cross"], "ETH/USDT"),
    ("backtest-signals-strategy", ["backtest", "--candles", CANDLES, "--signals", "ledger.csv",
                                   "--strategy", "donchian"], "--strategy"),
    ("montecarlo-method", ["montecarlo", "--candles", CANDLES, "--method", "boot"], "boot"),
    ("serve-preset", ["serve", "--preset", "quantum4x30"], "quantum4x30"),
    ("sweep-preset", ["sweep", "--candles", CANDLES, "--preset", "quantum4x30"], "quantum4x30"),
    ("admin-presets", ["admin", "presets", "quantum4x30", "--store", "s.db"], "quantum4x30"),
]

WRONG_TYPE = [
    ("size-equity", ["size", *SIZE[:5], "--equity", "1,000", *SIZE[7:]], "--equity"),
    ("size-price", ["size", *SIZE[:3], "--price", "abc", *SIZE[5:]], "--price"),
    ("demo-price", ["demo", "--price", "x"], "--price"),
    ("config-check-equity", ["config", "check", "--equity", "ten"], "--equity"),
    ("config-show-set", ["config", "show", "--set", "limits.max_notional"], "--set"),
    ("backtest-fast", ["backtest", "--candles", CANDLES, "--fast", "abc"], "--fast"),
    ("montecarlo-paths", ["montecarlo", "--ledger", "ledger.csv", "--paths", "1e3"], "--paths"),
    ("serve-port", ["serve", "--port", "http"], "--port"),
    ("journal-last", ["journal", "--last", "two"], "--last"),
    ("admin-equity", ["admin", "equity", "abc", "--store", "s.db"], "abc"),
    ("sync-mark", ["sync", "--mark", "ETH2700"], "ETH2700"),
    ("size-missing-side", ["size", BTC, "--price", "1", "--equity", "1"], "--side"),
]

OUT_OF_RANGE = [
    ("size-price-0", ["size", *SIZE[:3], "--price", "0", *SIZE[5:]], "price"),
    ("size-equity-neg", ["size", *SIZE[:5], "--equity", "-5", *SIZE[7:]], "equity"),
    ("demo-equity-0", ["demo", "--equity", "0"], "equity"),
    ("config-check-equity-0", ["config", "check", "--equity", "0"], "equity"),
    ("config-check-volatility", ["config", "check", "--volatility", "-1"], "volatility"),
    ("trade-price-0", [*TRADE[:4], "--price", "0", "--equity", "10", "--store", "s.db"], "price"),
    ("backtest-equity-0", ["backtest", "--candles", CANDLES, "--equity", "0"], "equity"),
    ("backtest-montecarlo-neg", ["backtest", "--candles", CANDLES, "--montecarlo", "-1"],
     "--montecarlo"),
    ("montecarlo-ruin", ["montecarlo", "--ledger", "ledger.csv", "--ruin", "1.5"], "--ruin"),
    ("montecarlo-paths-0", ["montecarlo", "--ledger", "ledger.csv", "--paths", "0"], "--paths"),
    ("serve-port-big", ["serve", "--port", "99999"], "--port"),
    ("journal-last-0", ["journal", "--last", "0"], "--last"),
    ("store-prune-days", ["store", "prune", "--days", "0", "--store", "s.db"], "--days='0'"),
]

MISSING_FILE = [
    ("size-markets", ["size", *SIZE, "--markets", "nofile.json"], "nofile.json"),
    ("size-tiers", ["size", *SIZE, "--tiers", "nofile.json"], "nofile.json"),
    ("size-config", ["size", *SIZE, "--config", "nofile.toml"], "nofile.toml"),
    ("size-env-file", ["size", *SIZE, "--env-file", "nofile.env"], "nofile.env"),
    ("markets-markets", ["markets", "--markets", "nofile.json"], "nofile.json"),
    ("config-show-config", ["config", "show", "--config", "nofile.toml"], "nofile.toml"),
    ("config-check-markets", ["config", "check", "--markets", "nofile.json"], "nofile.json"),
    ("config-scan", ["config", "scan", "nodir"], "nodir"),
    ("trade-markets", [*TRADE, "--equity", "10", "--markets", "nofile.json", "--store", "s.db"],
     "nofile.json"),
    ("backtest-candles", ["backtest", "--candles", "nofile.csv"], "nofile.csv"),
    ("backtest-signals", ["backtest", "--candles", CANDLES, "--signals", "my.csv"], "my.csv"),
    ("montecarlo-ledger", ["montecarlo", "--ledger", "nofile.csv"], "nofile.csv"),
    ("serve-markets", ["serve", "--markets", "missing.json"], "missing.json"),
    ("sweep-candles", ["sweep", "--candles", "nofile.csv"], "nofile.csv"),
    ("state-store", ["state", "--store", "nodir/sub/state.db"], "nodir/sub/state.db"),
    ("positions-store", ["positions", "--store", "nodir/sub/state.db"], "nodir/sub/state.db"),
    ("journal-store", ["journal", "--store", "nodir/sub/state.db"], "nodir/sub/state.db"),
    ("sync-store", ["sync", "--store", "nodir/sub/state.db"], "nodir/sub/state.db"),
    ("close-store", ["close", "pos_x", "--price", "1", "--store", "nodir/s.db"], "nodir/s.db"),
    ("bots-list-store", ["bots", "list", "--store", "nodir/s.db"], "nodir/s.db"),
    ("store-size-store", ["store", "size", "--store", "nodir/s.db"], "nodir/s.db"),
]

WRONG_SHAPE = [
    ("size-markets-shape", ["size", *SIZE, "--markets", "wrong.json"], "wrong.json"),
    ("size-markets-notjson", ["size", *SIZE, "--markets", "notjson.json"], "notjson.json"),
    ("size-tiers-markets", ["size", *SIZE, "--tiers", "markets.json"], "markets.json"),
    ("size-tiers-empty", ["size", *SIZE, "--tiers", "empty.json"], "empty.json"),
    ("size-config-toml", ["size", *SIZE, "--config", "bad.toml"], "bad.toml"),
    ("size-config-key", ["size", *SIZE, "--config", "shape.toml"], "max_notionl"),
    ("markets-shape", ["markets", "--markets", "wrong.json"], "wrong.json"),
    ("config-check-shape", ["config", "check", "--markets", "wrong.json"], "wrong.json"),
    ("serve-markets-shape", ["serve", "--markets", "wrong.json"], "wrong.json"),
    ("backtest-candles-shape", ["backtest", "--candles", "cols.csv"], "cols.csv"),
    ("montecarlo-ledger-shape", ["montecarlo", "--ledger", "ledger.csv"], "ledger.csv"),
]

UNWRITABLE = [
    ("backtest-report", ["backtest", "--candles", CANDLES, "--report", "nodir/x/r.html"],
     "nodir/x/r.html"),
    ("backtest-ledger-dir", ["backtest", "--candles", CANDLES, "--ledger", "nodir/t.csv"],
     "nodir/t.csv"),
    ("backtest-ledger-xlsx", ["backtest", "--candles", CANDLES, "--ledger", "x.xlsx"], "x.xlsx"),
    ("backtest-plot-dir", ["backtest", "--candles", CANDLES, "--plot", "."], "--plot"),
    ("backtest-report-suffix", ["backtest", "--candles", CANDLES, "--report", "r.pdf"], "r.pdf"),
    ("markets-refresh-dir", ["markets", "refresh", "--exchange", "binanceusdm", "--dir", "nodir"],
     "nodir"),
]

CASES = [pytest.param(args, needle, id=f"{cls}:{name}") for cls, table in (
    ("unknown", UNKNOWN), ("type", WRONG_TYPE), ("range", OUT_OF_RANGE),
    ("missing", MISSING_FILE), ("shape", WRONG_SHAPE), ("unwritable", UNWRITABLE))
    for name, args, needle in table]


def assert_refused(sandbox: Path, args: list[str], needle: str,
                   env: dict[str, str] | None = None) -> None:
    before = _files(sandbox)
    res = runner.invoke(app, args, env=env)
    err = res.stderr
    assert res.exit_code == 2, (args, res.exit_code, res.output)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in res.output and "╭" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert _files(sandbox) == before  # nothing written: no store, report, crash file or dir


@pytest.mark.parametrize(("args", "needle"), CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(sandbox: Path, args: list[str],
                                                         needle: str) -> None:
    assert_refused(sandbox, args, needle)


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("SIZEGUARD_LIMITS__MAX_NOTONAL", "3", "SIZEGUARD_LIMITS__MAX_NOTONAL"),
    ("SIZEGUARD_LIMIT__MAX_NOTIONAL", "3", "SIZEGUARD_LIMIT__MAX_NOTIONAL"),
    ("SIZEGUARD_PRESET", "quantum4x30", "quantum4x30"),
])
@pytest.mark.parametrize("command", [["size", *SIZE], ["config", "show"], ["serve"]])
def test_a_misspelt_environment_is_refused_everywhere(sandbox: Path, command: list[str],
                                                      name: str, value: str, needle: str) -> None:
    assert_refused(sandbox, command, needle, env={name: value})


@pytest.mark.parametrize("value", ["-0.001", "nan", "abc", "5"])
def test_serve_refuses_a_bad_batch_delay(sandbox: Path, value: str) -> None:
    # SIZEGUARD_BATCH_DELAY (the group commit's wait for more decisions): 0 to 0.05 s
    assert_refused(sandbox, ["serve"], "SIZEGUARD_BATCH_DELAY", env={"SIZEGUARD_BATCH_DELAY": value})


@pytest.mark.parametrize(("args", "needle"), [
    (["sync", "--mark", "ETH=2700"], "ETH"),  # a symbol the paper exchange does not list
    (["sync", "--mark", f"{BTC}=0"], "--mark"),
    (["journal", "--symbol", "BTC/USDT:USDTT"], "BTC/USDT:USDTT"),
    (["close", "pos_nope", "--price", "1"], "pos_nope"),
    (["positions", "--account", "nobody"], "nobody"),
    (["state", "--account", "nobody"], "nobody"),
])
def test_store_commands_check_names_against_the_store(store: str, args: list[str],
                                                      needle: str) -> None:
    before = runner.invoke(app, ["journal", "--json", "--store", store]).stdout
    res = runner.invoke(app, [*args, "--store", store])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr
    assert runner.invoke(app, ["journal", "--json", "--store", store]).stdout == before


def test_close_price_0_and_closing_twice_are_input_errors(store: str) -> None:
    pid = json.loads(runner.invoke(app, ["positions", "--json", "--store", store]).stdout
                     )["positions"][0]["id"]
    res = runner.invoke(app, ["close", pid, "--price", "0", "--store", store])
    assert res.exit_code == 2 and "price=0.0" in res.stderr  # like size: "price=0.0: must be > 0"
    assert runner.invoke(app, ["close", pid, "--price", "91000", "--store", store]).exit_code == 0
    again = runner.invoke(app, ["close", pid, "--price", "92000", "--store", store])
    assert again.exit_code == 2 and "already closed" in again.stderr  # no second PnL


def test_an_unexpected_error_is_one_line_and_a_crash_report(
        sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sizeguard.cli import sizing

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(sizing, "decide", boom)
    res = runner.invoke(app, ["size", *SIZE])
    assert res.exit_code == 1
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: unexpected RuntimeError: kaboom second line; full report: ")
    report = Path(line.rsplit("full report: ", 1)[1])
    assert report.parent == sandbox / "crash"
    assert "Traceback" in report.read_text() and "kaboom" in report.read_text()


def test_version_and_short_help() -> None:
    assert runner.invoke(app, ["--version"]).stdout.startswith("sizeguard ")
    short, long_ = runner.invoke(app, ["size", "-h"]), runner.invoke(app, ["size", "--help"])
    assert short.exit_code == 0 and short.stdout == long_.stdout


def test_help_shows_words_not_python_types_and_side_choices() -> None:
    out = runner.invoke(app, ["size", "--help"], env={"COLUMNS": "120"}).stdout
    assert "<bool>" not in out and "list[" not in out and "<float>" not in out
    assert "long|short" in out


def test_side_buy_and_sell_are_long_and_short(sandbox: Path) -> None:
    buy = json.loads(runner.invoke(app, ["size", *SIZE[:2], "buy", *SIZE[3:], "--json"]).stdout)
    assert buy["side"] == "long"
    sell = json.loads(runner.invoke(app, ["size", *SIZE[:2], "sell", *SIZE[3:], "--json"]).stdout)
    assert sell["side"] == "short"


def test_signals_without_strategy_replay_the_file_not_ema_cross(sandbox: Path) -> None:
    # --signals alone implies --strategy file: a missing column is the file's error, not a
    # silent ema-cross run
    res = runner.invoke(app, ["backtest", "--candles", CANDLES, "--signals", "ledger.csv",
                              "--preset", "ai-atr-risk", "--json"])
    assert res.exit_code == 2 and "ema" not in res.stderr and "ledger.csv" in res.stderr


# -- real processes: the installed entry point keeps the contract too -------------------------

@pytest.mark.parametrize(("args", "needle"), [
    (["size", *SIZE[:5], "--equity", "1,000", *SIZE[7:]], "--equity='1,000'"),
    (["serve", "--preset", "quantum4x30"], "quantum4x30"),
    (["state", "--store", "nodir/sub/state.db"], "nodir/sub/state.db"),
])
def test_subprocess_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    r = subprocess.run([sys.executable, "-c", "from sizeguard.cli.main import main; main()", *args],
                       check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr and not r.stdout
    assert list(tmp_path.iterdir()) == []


def _leaf_commands() -> list[tuple[str, object]]:
    import typer

    from sizeguard.cli.app import plain_help

    root = typer.main.get_command(app)
    plain_help(root)
    out: list[tuple[str, object]] = []

    def walk(cmd: object, path: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{path} {name}".strip())
        else:
            out.append((path, cmd))
    walk(root, "")
    return out


def test_every_command_has_examples_and_every_option_help() -> None:
    leaves = _leaf_commands()
    assert len(leaves) >= 20
    for path, cmd in leaves:
        assert "xample" in (getattr(cmd, "epilog", None) or ""), f"{path}: no examples"
        for p in getattr(cmd, "params", []):
            assert getattr(p, "help", None), f"{path} {p.opts}: no help text"
