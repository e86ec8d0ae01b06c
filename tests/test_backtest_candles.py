"""Candle loading: CSV and Parquet, validation errors naming file and row, gaps, alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import shared_path
from sizeguard.backtest.candles import CandleError, align, load_candles, load_many, symbol_from_path

H = 3_600_000
HEADER = "timestamp,open,high,low,close,volume\n"


def write(tmp: Path, name: str, rows: list[tuple[int, float, float, float, float, float]]) -> Path:
    p = tmp / name
    p.write_text(HEADER + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return p


def test_csv_and_parquet_load_the_same(tmp_path: Path) -> None:
    rows = [(i * H, 100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i, 5.0) for i in range(5)]
    p = write(tmp_path, "ABC_USDT-1h.csv", rows)
    c = load_candles(p)
    assert c.symbol == "ABC_USDT" and len(c) == 5 and c.timeframe_ms == H and not c.gaps
    pq = tmp_path / "abc.parquet"
    pl.read_csv(p).write_parquet(pq)
    c2 = load_candles(pq, symbol="ABC")
    assert c2.symbol == "ABC"
    np.testing.assert_array_equal(c.close, c2.close)
    np.testing.assert_array_equal(c.timestamp, c2.timestamp)


@pytest.mark.parametrize(("rows", "fragment"), [
    ([(0, 1, 1, 1, 1, 0), (H, 1, 1, 1, 1, 0), (H, 1, 1, 1, 1, 0)], "row 3 timestamp"),
    ([(0, 1, 1, 1, 1, 0), (2 * H, 1, 1, 1, 1, 0), (H, 1, 1, 1, 1, 0)], "out of order"),
    ([(0, 1, 1, 1, 1, 0), (H, 1, 0.5, 1, 1, 0)], "row 2"),
    ([(0, 1, 1, 1, 1, 0), (H, -1, 1, -1, 1, 0)], "row 2 open"),
])
def test_bad_rows_name_file_and_row(tmp_path: Path, rows: list, fragment: str) -> None:
    p = write(tmp_path, "BAD-1h.csv", rows)
    with pytest.raises(CandleError) as err:
        load_candles(p)
    assert fragment in str(err.value) and "BAD-1h.csv" in str(err.value)


def test_duplicate_message_says_duplicate(tmp_path: Path) -> None:
    p = write(tmp_path, "D-1h.csv", [(0, 1, 1, 1, 1, 0), (0, 1, 1, 1, 1, 0)])
    with pytest.raises(CandleError, match="duplicate timestamp"):
        load_candles(p)


def test_missing_column_and_file(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("timestamp,open,high,low,close\n0,1,1,1,1\n")
    with pytest.raises(CandleError, match="volume"):
        load_candles(p)
    with pytest.raises(CandleError, match="no such file"):
        load_candles(tmp_path / "nope.csv")


def test_gaps_are_reported_not_filled(tmp_path: Path) -> None:
    rows = [(t * H, 1.0, 1.0, 1.0, 1.0, 1.0) for t in (0, 1, 4, 5, 7)]
    c = load_candles(write(tmp_path, "G-1h.csv", rows))
    assert len(c) == 5
    assert [(g.row, g.missing) for g in c.gaps] == [(3, 2), (5, 1)]
    assert "2 gaps, 3 candles missing" in c.gap_report()


def test_align_two_symbols(tmp_path: Path) -> None:
    a = write(tmp_path, "A-1h.csv", [(t * H, 10.0 + t, 10.0 + t, 10.0 + t, 10.0 + t, 1.0)
                                     for t in (0, 1, 2)])
    b = write(tmp_path, "B-1h.csv", [(t * H, 5.0 + t, 5.0 + t, 5.0 + t, 5.0 + t, 1.0) for t in (1, 3)])
    panel = align(load_many([a, b]))
    assert panel.symbols == ("A", "B") and panel.n_bars == 4
    assert np.isnan(panel.close[0, 1]) and panel.close[1, 1] == 6.0
    assert panel.mark[2, 1] == 6.0 and np.isnan(panel.mark[0, 1])  # forward-filled
    assert panel.mark[3, 0] == 12.0


def test_symbol_from_path() -> None:
    assert symbol_from_path("x/BTC-PERP-1m.csv") == "BTC-PERP"
    assert symbol_from_path("BTC_USD-1h.parquet") == "BTC_USD"
    assert symbol_from_path("prices.csv") == "prices"


def test_real_files_load_with_their_documented_gaps() -> None:
    c = load_candles(shared_path("ohlcv", "coinbase", "BTC_USD-1h.csv"))
    assert len(c) == 20_111 and not c.gaps
    d = load_candles(shared_path("ohlcv", "coinbase", "BTC_USD-1d.csv"))
    assert len(d.gaps) == 1
    b = load_candles(shared_path("ohlcv", "bittrex", "BTC_USDT-1d.csv"))
    assert len(b.gaps) == 34
