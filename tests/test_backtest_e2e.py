"""End to end on real candles through the CLI: the five presets on Coinbase BTC/USD 1h, and
the BTC perpetual 1m; the HTML report, the ledger and Monte Carlo from the ledger."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from conftest import shared_path
from sizeguard.cli.main import app
from sizeguard.config.loader import PRESETS

runner = CliRunner()


def test_five_presets_on_btc_1h_produce_the_report(tmp_path: Path) -> None:
    candles = shared_path("ohlcv", "coinbase", "BTC_USD-1h.csv")
    report = tmp_path / "btc.html"
    args = ["backtest", "--candles", str(candles), "--strategy", "ema-cross", "--tp-r", "2",
            "--report", str(report), "--json", "--no-progress", "--montecarlo", "2000"]
    for p in PRESETS:
        args += ["--preset", p]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["policy"] for r in rows] == list(PRESETS)
    assert all(r["decisions"] > 500 for r in rows)
    html = report.read_text()
    # interactive: plotly.js inside the file, nothing loaded from elsewhere (offline)
    assert "Plotly.newPlot" in html and html.count("plotly.js v") >= 1
    assert not re.search(r"<script[^>]*\bsrc=", html) and not re.search(r"<link[^>]*https?:", html)
    for div in ("equity", "risk", "equity-panels", "drawdown", "per-trade", "skips",
                "montecarlo"):
        assert f'id="{div}"' in html
    assert "Monte Carlo" in html and "P(ruin)" in html
    for p in PRESETS:
        assert p in html
    assert "Drawdown" in html and "Skipped entries by reason" in html
    assert "risk per trade, % of equity" in html


def test_btc_perp_1m_ledger_and_montecarlo(tmp_path: Path) -> None:
    candles = shared_path("ohlcv", "unattributed", "BTC-PERP-1m.csv")
    ledger = tmp_path / "trades.parquet"
    report = tmp_path / "perp.html"
    res = runner.invoke(app, [
        "backtest", "--candles", str(candles), "--symbol", "BTC/USDT:USDT", "--preset",
        "ai-atr-risk", "--preset", "viper-50x", "--strategy", "donchian", "--channel", "60",
        "--funding", "0.0001", "--ledger", str(ledger), "--report", str(report), "--progress"])
    assert res.exit_code == 0, res.output
    assert "ai-atr-risk" in res.output and "liquidations" in res.output
    df = pl.read_parquet(ledger)
    assert set(df["policy"].unique()) == {"ai-atr-risk", "viper-50x"} and df.height > 100
    assert df["funding"].abs().sum() > 0
    assert report.stat().st_size > 10_000
    res = runner.invoke(app, ["montecarlo", "--ledger", str(ledger), "--paths", "2000",
                              "--method", "block", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [o["policy"] for o in out] == ["ai-atr-risk", "viper-50x"]
    assert all(0 <= o["probability_of_ruin"] <= 1 and o["paths"] == 2000 for o in out)


def test_cli_errors_name_the_problem(tmp_path: Path) -> None:
    res = runner.invoke(app, ["backtest", "--candles", str(tmp_path / "none.csv")])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "X-1h.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n0,1,1,1,1,0\n0,1,1,1,1,0\n")
    res = runner.invoke(app, ["backtest", "--candles", str(bad), "--symbol", "BTC/USDT:USDT"])
    assert res.exit_code == 2 and "row 2" in res.output and "duplicate" in res.output
    res = runner.invoke(app, ["montecarlo"])
    assert res.exit_code == 2 and "--ledger" in res.output


def test_a_preset_can_trade_its_own_market() -> None:
    candles = shared_path("ohlcv", "coinbase", "BTC_USD-1d.csv")
    res = runner.invoke(app, ["backtest", "--candles", str(candles), "--preset", "kraken-micro@BTC/USD",
                              "--preset", "viper-50x", "--json"])
    assert res.exit_code == 0, res.output
    spot, perp = json.loads(res.stdout)  # warnings (the file's gap) go to stderr
    assert spot["policy"] == "kraken-micro@BTC/USD" and spot["skips"]["SPOT_NO_SHORT"] > 0
    assert spot["avg_leverage"] == 1.0 and perp["policy"] == "viper-50x"


def test_without_presets_every_preset_is_compared() -> None:
    candles = shared_path("ohlcv", "coinbase", "BTC_USD-1d.csv")
    res = runner.invoke(app, ["backtest", "--candles", str(candles), "--json"])
    assert res.exit_code == 0, res.output
    assert [r["policy"] for r in json.loads(res.stdout)] == list(PRESETS)
