"""Candles: CSV or Parquet files of ``timestamp,open,high,low,close,volume`` (epoch ms, UTC).

Loaded with polars, validated (columns, numbers, ascending timestamps, no duplicates, sane
high/low) with errors that name the file and the row, and checked for gaps (missing candles are
reported, never filled). Timestamps in seconds, microseconds or nanoseconds are converted to
milliseconds with a warning (:attr:`Candles.warnings`); a file's quote currency is read from its
name (:func:`quote_from_symbol`) for the CLI to check against the market traded. Several symbols
are aligned on the union of their timestamps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from sizeguard.backtest.freqtrade_data import (
    is_freqtrade_candles,
    parse_name,
    read_freqtrade_candles,
    with_timestamp,
)
from sizeguard.errors import InvalidInput

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_TF = re.compile(r"^(\d+)([smhdwM])$")
_TF_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
          "M": 2_592_000_000}


class CandleError(InvalidInput):
    """A candle file is unusable: the message names the file, the row and the value."""


@dataclass(frozen=True, slots=True)
class Gap:
    row: int  # 1-based data row after the gap (the header is not counted)
    after: int  # timestamp (ms) of the last candle before the gap
    before: int  # timestamp (ms) of the first candle after it
    missing: int  # candles missing at the nominal timeframe


@dataclass(frozen=True)
class Candles:
    """One symbol's candles as numpy arrays (timestamps ascending, unique)."""

    symbol: str
    source: str
    timestamp: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    timeframe_ms: int
    gaps: tuple[Gap, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())  # conversions made on load, said out loud

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)

    def gap_report(self, limit: int = 5) -> str:
        if not self.gaps:
            return f"{self.source}: {len(self)} candles, no gaps"
        head = ", ".join(f"row {g.row}: {g.missing} missing" for g in self.gaps[:limit])
        more = f" (+{len(self.gaps) - limit} more)" if len(self.gaps) > limit else ""
        return (f"{self.source}: {len(self)} candles, {len(self.gaps)} gaps, {self.missing} "
                f"candles missing at {self.timeframe_ms // 1000}s bars: {head}{more}")


def symbol_from_path(path: str | Path) -> str:
    """``BTC_USD-1h.csv`` -> ``BTC_USD``; ``BTC-PERP-1m.csv`` -> ``BTC-PERP``."""
    stem = Path(path).name.split(".")[0]
    head, _, tail = stem.rpartition("-")
    return head if head and _TF.match(tail) else stem


def _read(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise CandleError("candles", str(path), "no such file")
    if is_freqtrade_candles(path):  # json, jsongz, feather; a `date` column
        return read_freqtrade_candles(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return with_timestamp(pl.read_parquet(path))
        return with_timestamp(pl.read_csv(path, infer_schema_length=10_000))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CandleError("candles", str(path), f"cannot be read: {exc}") from None


def _timestamps_ms(df: pl.DataFrame, where: str) -> I64:
    col = df["timestamp"]
    if col.dtype in (pl.Datetime, pl.Date):
        col = col.cast(pl.Datetime("ms")).dt.epoch("ms")
    elif not col.dtype.is_integer():
        if col.dtype.is_float():
            bad = col.is_nan() | (col != col.floor())
            if bad.any():
                row = int(bad.arg_max() or 0) + 1
                raise CandleError(f"{where} row {row} timestamp", col[row - 1],
                                  "must be integer milliseconds since the epoch")
        else:
            raise CandleError(f"{where} timestamp", str(col.dtype),
                              "must be integer epoch milliseconds or a datetime")
    if col.null_count():
        row = int(col.is_null().arg_max() or 0) + 1
        raise CandleError(f"{where} row {row} timestamp", None, "is empty")
    return col.cast(pl.Int64).to_numpy().astype(np.int64, copy=False)


# Epoch milliseconds of 1973-03-03 and of 5138-11-16: a timestamp below the first is in
# seconds (1e11 s is the year 5138), one above the second in micro- or nanoseconds.
_MS_LOW = 100_000_000_000
_MS_HIGH = 100_000_000_000_000


def to_milliseconds(ts: I64, where: str, named_ms: int | None = None) -> tuple[I64, str | None]:
    """Timestamps in epoch milliseconds: seconds, microseconds and nanoseconds are converted
    with a note saying so; a file mixing units is refused.

    Seconds are told from milliseconds by the size (below 1e11, i.e. before 1973 in ms) *and* the
    step: a typical step under 1,000 (no candle is shorter than a second) or equal to the file
    name's timeframe in seconds (``-1h`` and steps of 3600)."""
    lo, hi = int(ts.min()), int(ts.max())
    if hi < _MS_LOW:
        step = int(np.median(np.diff(ts))) if ts.shape[0] > 1 else None
        seconds = (step < 1_000 or (named_ms is not None and step * 1_000 == named_ms)) \
            if step is not None else lo >= 1_000_000_000
        if seconds:
            return ts * 1_000, f"{where}: timestamps are epoch seconds; converted to milliseconds"
        return ts, None
    if lo >= _MS_HIGH:
        divisor, unit = (1_000_000, "nanoseconds") if lo >= _MS_HIGH * 1_000 else (
            1_000, "microseconds")
        return ts // divisor, f"{where}: timestamps are epoch {unit}; converted to milliseconds"
    if hi >= _MS_HIGH:
        raise CandleError(f"{where} timestamp", [lo, hi], "mixes time units (milliseconds and "
                          "micro- or nanoseconds?); give epoch milliseconds throughout")
    return ts, None


def validate_frame(df: pl.DataFrame, where: str) -> tuple[I64, dict[str, F64]]:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise CandleError(where, list(df.columns),
                          f"missing column(s) {', '.join(missing)}; need {','.join(COLUMNS)}")
    if df.height == 0:
        raise CandleError(where, 0, "holds no candles")
    ts = _timestamps_ms(df, where)
    cols: dict[str, F64] = {}
    for name in COLUMNS[1:]:
        try:
            values = df[name].cast(pl.Float64).to_numpy()
        except pl.exceptions.PolarsError:
            raise CandleError(f"{where} {name}", str(df[name].dtype), "must be numbers") from None
        bad = ~np.isfinite(values)
        if name != "volume":
            bad |= values <= 0
        else:
            bad |= values < 0
        if bad.any():
            row = int(np.argmax(bad)) + 1
            raise CandleError(f"{where} row {row} {name}", float(values[row - 1]),
                              "must be a finite number " + (">= 0" if name == "volume" else "> 0"))
        cols[name] = np.ascontiguousarray(values, dtype=np.float64)
    step = np.diff(ts)
    if (step <= 0).any():
        k = int(np.argmax(step <= 0))
        what = "duplicate timestamp" if step[k] == 0 else "timestamp out of order (not ascending)"
        raise CandleError(f"{where} row {k + 2} timestamp", int(ts[k + 1]),
                          f"{what}: row {k + 1} has {int(ts[k])}")
    hi, lo, op, cl = cols["high"], cols["low"], cols["open"], cols["close"]
    bad = (hi < np.maximum(op, cl)) | (lo > np.minimum(op, cl)) | (lo > hi)
    if bad.any():
        row = int(np.argmax(bad)) + 1
        raise CandleError(f"{where} row {row}", {k: float(cols[k][row - 1]) for k in
                                                 ("open", "high", "low", "close")},
                          "high must be >= open, close, low and low <= open, close")
    return ts, cols


def find_gaps(ts: I64, timeframe_ms: int) -> tuple[Gap, ...]:
    step = np.diff(ts)
    idx = np.nonzero(step > timeframe_ms)[0]
    return tuple(Gap(int(i) + 2, int(ts[i]), int(ts[i + 1]), int(step[i] // timeframe_ms) - 1)
                 for i in idx)


def named_timeframe(path: str | Path) -> int | None:
    """The timeframe a file name gives (``BTC_USD-1h.csv`` -> 3,600,000 ms), else None."""
    tail = Path(path).name.split(".")[0].rpartition("-")[2]
    m = _TF.match(tail)
    return int(m.group(1)) * _TF_MS[m.group(2)] if m else None


def nominal_timeframe(ts: I64, path: str | Path | None = None) -> int:
    """The timeframe from the file name (``-1h``) when given, else the most common step."""
    named = named_timeframe(path) if path is not None else None
    if named is not None:
        return named
    if ts.shape[0] < 2:
        return 60_000
    values, counts = np.unique(np.diff(ts), return_counts=True)
    return int(values[int(np.argmax(counts))])


def candles_from_frame(df: pl.DataFrame, symbol: str, source: str = "frame",
                       timeframe_ms: int | None = None) -> Candles:
    ts, cols = validate_frame(df, source)
    ts, note = to_milliseconds(ts, source, timeframe_ms)
    tf = timeframe_ms or nominal_timeframe(ts)
    return Candles(symbol, source, ts, cols["open"], cols["high"], cols["low"], cols["close"],
                   cols["volume"], tf, find_gaps(ts, tf), (note,) if note else ())


def load_candles(path: str | Path, symbol: str | None = None) -> Candles:
    """One file (CSV, or Parquet by suffix). Raises :class:`CandleError` naming file and row."""
    p = Path(path)
    df = _read(p)
    ts, cols = validate_frame(df, str(p))
    ts, note = to_milliseconds(ts, str(p), named_timeframe(p))
    tf = nominal_timeframe(ts, p)
    pair = parse_name(p)  # freqtrade's PAIR-TF[-futures] names carry the pair
    name = symbol or (pair[0] if pair else symbol_from_path(p))
    return Candles(name, str(p), ts, cols["open"], cols["high"],
                   cols["low"], cols["close"], cols["volume"], tf, find_gaps(ts, tf),
                   (note,) if note else ())


NOT_A_CURRENCY = ("PERP", "SWAP", "FUTURES", "SPOT", "MARK", "INDEX")


def quote_from_symbol(candle_symbol: str) -> str | None:
    """The quote currency a candle file's name says (``ETH_BTC`` -> BTC), None when it says
    none (``BTC-PERP``, ``BTC``)."""
    parts = [x for x in re.split(r"[_\-/:]", candle_symbol.upper()) if x]
    if len(parts) < 2 or not parts[1].isalnum() or parts[1] in NOT_A_CURRENCY:
        return None
    return parts[1]


def load_many(paths: Sequence[str | Path], symbols: Sequence[str] | None = None) -> list[Candles]:
    if symbols is not None and len(symbols) != len(paths):
        raise InvalidInput("symbols", list(symbols), f"give one symbol per file ({len(paths)})")
    out = [load_candles(p, symbols[i] if symbols else None) for i, p in enumerate(paths)]
    names = [c.symbol for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput("symbols", names, f"two files map to the same symbol {dupes[0]}")
    return out


@dataclass(frozen=True)
class Panel:
    """Symbols aligned on the union of their timestamps: arrays of shape (bars, symbols).

    Where a symbol has no candle, its open/high/low/close are NaN (no trading, no stop checks);
    ``mark`` is the last known close (for equity), NaN before the symbol's first candle.
    """

    symbols: tuple[str, ...]
    timestamp: I64
    open: F64
    high: F64
    low: F64
    close: F64
    mark: F64
    timeframe_ms: int

    @property
    def n_bars(self) -> int:
        return int(self.timestamp.shape[0])


def align(candles: Sequence[Candles]) -> Panel:
    if not candles:
        raise InvalidInput("candles", [], "give at least one candle file")
    ts = np.unique(np.concatenate([c.timestamp for c in candles])) if len(candles) > 1 \
        else candles[0].timestamp
    n, k = ts.shape[0], len(candles)
    arrays = {name: np.full((n, k), np.nan) for name in ("open", "high", "low", "close")}
    for j, c in enumerate(candles):
        pos = np.searchsorted(ts, c.timestamp)
        for name, array in arrays.items():
            array[pos, j] = getattr(c, name)
    mark = arrays["close"].copy()
    for j in range(k):  # forward-fill the last close
        col = mark[:, j]
        valid = ~np.isnan(col)
        idx = np.where(valid, np.arange(n), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = col[idx]
        filled[: int(np.argmax(valid))] = np.nan
        mark[:, j] = filled
    return Panel(tuple(c.symbol for c in candles), np.ascontiguousarray(ts, dtype=np.int64),
                 arrays["open"], arrays["high"], arrays["low"], arrays["close"], mark,
                 min(c.timeframe_ms for c in candles))
