"""freqtrade's files in sizeguard, on freqtrade-format files this test writes (real candles
from the shared data): json / jsongz / feather / parquet candles with a ``date`` column, the
``PAIR-TF-futures`` names under a data dir, a backtest export replayed by ``backtest
--signals`` and resampled by ``montecarlo``. Runtime ~10 s (CLI backtests)."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import shared_path
from sizeguard.backtest.candles import load_candles
from sizeguard.backtest.freqtrade_data import (
    export_returns,
    export_signals,
    pair_files,
    parse_name,
)
from sizeguard.backtest.signals import signals_from_file
from sizeguard.cli.main import app
from sizeguard.errors import InvalidInput

runner = CliRunner()
H = 3_600_000
PAIR = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def csv_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 real hourly BTC candles as sizeguard's CSV."""
    src = pl.read_csv(shared_path("ohlcv", "coinbase", "BTC_USD-1h.csv")).head(400)
    out = tmp_path_factory.mktemp("csv") / "BTC_USD-1h.csv"
    src.write_csv(out)
    return out


def _frame(csv: Path) -> pl.DataFrame:
    return pl.read_csv(csv)


def _with_date(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(pl.from_epoch("timestamp", time_unit="ms").dt.replace_time_zone("UTC")
                     .alias("date"), "open", "high", "low", "close", "volume")


def write_formats(csv: Path, root: Path) -> dict[str, Path]:
    df = _frame(csv)
    rows = df.select("timestamp", "open", "high", "low", "close", "volume").rows()
    out = {"json": root / "BTC_USDT-1h.json", "jsongz": root / "BTC_USDT-1h.json.gz",
           "feather": root / "futures" / "BTC_USDT_USDT-1h-futures.feather",
           "parquet": root / "futures" / "ETH_USDT_USDT-1h-futures.parquet"}
    out["feather"].parent.mkdir(parents=True, exist_ok=True)
    out["json"].write_text(json.dumps([list(r) for r in rows]))
    with gzip.open(out["jsongz"], "wt") as fh:
        json.dump([list(r) for r in rows], fh)
    _with_date(df).write_ipc(out["feather"])  # feather v2 is Arrow IPC
    _with_date(df).write_parquet(out["parquet"])
    return out


def test_every_format_reads_as_the_csv(csv_rows: Path, tmp_path: Path) -> None:
    want = load_candles(csv_rows)
    files = write_formats(csv_rows, tmp_path)
    for kind, path in files.items():
        got = load_candles(path)
        assert np.array_equal(got.timestamp, want.timestamp), kind
        for col in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(got, col), getattr(want, col)), (kind, col)
        assert got.timeframe_ms == H and got.gaps == want.gaps
    # the pair comes from freqtrade's file name
    assert load_candles(files["feather"]).symbol == PAIR
    assert load_candles(files["json"]).symbol == "BTC/USDT"
    # a CSV with freqtrade's date column instead of timestamp
    dated = tmp_path / "dated.csv"
    _with_date(_frame(csv_rows)).write_csv(dated)
    assert np.array_equal(load_candles(dated).timestamp, want.timestamp)


def test_names_and_data_dir(csv_rows: Path, tmp_path: Path) -> None:
    assert parse_name("BTC_USDT_USDT-5m-futures.feather") == (PAIR, "5m", "futures")
    assert parse_name("XRP_USDT_USDT-8h-mark.feather") == ("XRP/USDT:USDT", "8h", "mark")
    assert parse_name("ETH_BTC-5m.json") == ("ETH/BTC", "5m", "spot")
    assert parse_name("BTC_USD-1h.csv") is None
    write_formats(csv_rows, tmp_path)
    found = pair_files(tmp_path, [PAIR, "ETH/USDT:USDT"])
    assert [(f.name, p) for f, p in found] == [
        ("BTC_USDT_USDT-1h-futures.feather", PAIR),
        ("ETH_USDT_USDT-1h-futures.parquet", "ETH/USDT:USDT")]
    with pytest.raises(InvalidInput, match="no freqtrade candles"):
        pair_files(tmp_path, ["SOL/USDT:USDT"])
    bad = tmp_path / "bad" / "BTC_USDT-1h.json"
    bad.parent.mkdir()
    bad.write_text('{"not": "rows"}')
    with pytest.raises(InvalidInput, match="array of"):
        load_candles(bad)


def _backtest(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["backtest", *args, "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    out: list[dict[str, Any]] = json.loads(result.stdout)
    return out


def test_backtest_reads_a_freqtrade_data_dir(csv_rows: Path, tmp_path: Path) -> None:
    write_formats(csv_rows, tmp_path)
    from_csv = _backtest("--candles", str(csv_rows), "--symbol", PAIR, "--preset", "ai-atr-risk")
    from_dir = _backtest("--candles", str(tmp_path), "--symbol", PAIR, "--preset", "ai-atr-risk")
    assert from_dir == from_csv and from_csv[0]["trades"] > 0


def make_export(path: Path, trades: list[dict[str, Any]], start: float = 1000.0) -> Path:
    doc = {"strategy": {"Demo": {"trades": trades, "starting_balance": start,
                                 "dry_run_wallet": start}},
           "strategy_comparison": []}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("backtest-result-x.json", json.dumps(doc))
        z.writestr("backtest-result-x_config.json", "{}")
    return path


def _trade(open_ts: int, close_ts: int, profit: float, *, short: bool = False,
           rate: float = 100.0, stop: float = 98.0, reason: str = "exit_signal") -> dict[str, Any]:
    return {"pair": PAIR, "open_timestamp": open_ts, "close_timestamp": close_ts,
            "is_short": short, "amount": 1.0, "open_rate": rate, "stake_amount": 10.0,
            "leverage": 10.0, "stop_loss_abs": stop, "initial_stop_loss_abs": stop,
            "profit_abs": profit, "exit_reason": reason}


def test_export_returns_by_hand(tmp_path: Path) -> None:
    export = make_export(tmp_path / "e.zip", [
        _trade(10 * H, 12 * H, 100.0), _trade(11 * H, 20 * H, -30.0),
        _trade(13 * H, 14 * H, -55.0)])
    ((name, rets, start),) = export_returns(export)
    # equity at each open: 1000 (nothing closed), 1000 (the first closes at 12h, after 11h),
    # 1100 (the first closed at 12h, before 13h): 100/1000, -30/1000, -55/1100
    assert name == "Demo" and start == 1000.0
    assert rets.tolist() == pytest.approx([0.1, -0.03, -0.05])
    result = runner.invoke(app, ["montecarlo", "--ledger", str(export), "--paths", "200",
                                 "--json"])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["policy"] == "Demo" and summary["trades_per_path"] == 3


def test_signals_replay_an_export(csv_rows: Path, tmp_path: Path) -> None:
    candles = load_candles(csv_rows, PAIR)
    ts = candles.timestamp
    o = candles.open
    # a long opened at bar 100 with its stop 1% under the open, closed by a signal at bar 130;
    # a short at bar 130 (same candle as that exit) stopped out; a long at bar 200
    trades = [_trade(int(ts[100]), int(ts[130]), 5.0, rate=float(o[100]), stop=float(o[100]) * 0.99),
              _trade(int(ts[130]), int(ts[150]), -5.0, short=True, rate=float(o[130]),
                     stop=float(o[130]) * 1.02, reason="stop_loss"),
              _trade(int(ts[200]), int(ts[260]), 1.0, rate=float(o[200]), stop=float(o[200]) * 0.98)]
    export = make_export(tmp_path / "bt.zip", trades)
    frame = export_signals(export, ts)
    # one row per signal candle: the exit of the long and the short share bar 129
    # and the last long's signal exit at bar 260 (the short's stop is the engine's to find)
    assert frame["timestamp"].to_list() == [int(ts[k]) for k in (99, 129, 199, 259)]
    assert frame["entry"].to_list() == [1, -1, 1, 0] and frame["exit"].to_list() == [0, 1, 0, 1]
    assert frame["atr"].to_list()[:3] == pytest.approx([o[100] * 0.01, o[130] * 0.02,
                                                        o[200] * 0.02])
    assert frame["atr"].to_list()[3] is None
    from sizeguard.backtest.candles import align

    panel = align([candles])
    sig = signals_from_file(panel, export)
    assert sig.entry[100, 0] == 1 and sig.entry[130, 0] == -1 and sig.entry[200, 0] == 1
    assert sig.exit[130, 0] == 1 and sig.exit[260, 0] == 1 and sig.n_entries == 3
    assert sig.atr_mult[100, 0] == 1.0 and sig.atr[100, 0] == pytest.approx(o[100] * 0.01)
    out = _backtest("--candles", str(csv_rows), "--symbol", PAIR, "--preset", "ai-atr-risk",
                    "--strategy", "file", "--signals", str(export))
    # every entry is decided, or finds the replayed position still open (the engine finds
    # the stops itself)
    assert out[0]["decisions"] + out[0]["ignored_in_position"] == 3 and out[0]["trades"] >= 2
