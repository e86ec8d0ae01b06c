"""Entry and exit signals on a :class:`~sizeguard.backtest.candles.Panel`.

A signal is computed at the **close** of bar ``t`` and acts at the **open** of bar ``t + 1``
(never on information the bar has not shown yet). Arrays are therefore indexed by the bar
where they act:

* ``entry[t, j]``: +1 open a long, -1 open a short, 0 nothing, at the open of bar ``t``;
* ``exit[t, j]``: bit 1 closes a long, bit 2 closes a short, at the open of bar ``t`` (before
  the entries of the same bar, so a cross closes one side and opens the other);
* ``atr[t, j]``: the ATR known at that time (the intent's ``atr``: the stop is the policy's
  ``stop.atr_mult`` x ATR unless ``atr_mult`` is given);
* ``tp_r[t, j]``: take-profit as a multiple of the stop distance (NaN: none);
* ``confidence[t, j]``: in [0, 1] (NaN: none).

Built-in strategies: ``ema-cross`` (fast/slow EMA cross, always in the market in the direction
of the trend) and ``donchian`` (breakout of the previous ``n`` bars' range, exit on the
opposite ``n/2`` channel). Or the user's own columns from a CSV/Parquet file (see
:func:`signals_from_file`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import polars as pl

from sizeguard.backtest.candles import Panel
from sizeguard.backtest.freqtrade_data import export_signals, is_freqtrade_export
from sizeguard.errors import InvalidInput

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

EXIT_LONG = 1
EXIT_SHORT = 2
from sizeguard.backtest import STRATEGIES  # noqa: E402  (re-exported)


@dataclass(frozen=True)
class Signals:
    entry: I8
    exit: I8
    atr: F64
    atr_mult: F64
    tp_r: F64
    confidence: F64
    name: str = "custom"

    @property
    def n_entries(self) -> int:
        return int(np.count_nonzero(self.entry))


def _ema(x: F64, span: int) -> F64:  # pragma: no cover - compiled
    out = np.empty_like(x)
    alpha = 2.0 / (span + 1.0)
    prev = np.nan
    for i in range(x.shape[0]):
        v = x[i]
        if math.isnan(v):
            out[i] = prev
            continue
        prev = v if math.isnan(prev) else prev + alpha * (v - prev)
        out[i] = prev
    return out


def _atr(high: F64, low: F64, close: F64, n: int) -> F64:  # pragma: no cover - compiled
    """Wilder's ATR: the first value is the mean true range of ``n`` bars, then smoothed."""
    m = close.shape[0]
    out = np.full(m, np.nan)
    prev_close = np.nan
    acc = 0.0
    count = 0
    value = np.nan
    for i in range(m):
        if math.isnan(close[i]):
            out[i] = value
            continue
        tr = high[i] - low[i]
        if not math.isnan(prev_close):
            tr = max(tr, abs(high[i] - prev_close), abs(low[i] - prev_close))
        prev_close = close[i]
        if count < n:
            acc += tr
            count += 1
            if count == n:
                value = acc / n
        else:
            value = value + (tr - value) / n
        out[i] = value
    return out


def _rolling_extreme(x: F64, n: int, is_max: bool) -> F64:  # pragma: no cover - compiled
    """Max (or min) of the previous ``n`` values, excluding the current one."""
    m = x.shape[0]
    out = np.full(m, np.nan)
    for i in range(n, m):
        best = x[i - n]
        for k in range(i - n + 1, i):
            v = x[k]
            if (is_max and v > best) or (not is_max and v < best):
                best = v
        out[i] = best
    return out


ema = numba.njit(cache=True)(_ema)
atr_wilder = numba.njit(cache=True)(_atr)
rolling_extreme = numba.njit(cache=True)(_rolling_extreme)


def _shift(a: Any, fill: Any) -> Any:
    """Move a signal from the bar where it is known to the bar where it acts (one later)."""
    out = np.empty_like(a)
    out[0] = fill
    out[1:] = a[:-1]
    return out


def _conf(strength: F64) -> F64:
    """Map a non-negative strength (in ATRs) into a confidence in [0.5, 1)."""
    return np.where(np.isnan(strength), np.nan, 0.5 + 0.5 * np.tanh(np.abs(strength)))


def _empty(panel: Panel) -> dict[str, Any]:
    shape = (panel.n_bars, len(panel.symbols))
    return {"entry": np.zeros(shape, np.int8), "exit": np.zeros(shape, np.int8),
            "atr": np.full(shape, np.nan), "atr_mult": np.full(shape, np.nan),
            "tp_r": np.full(shape, np.nan), "confidence": np.full(shape, np.nan)}


def ema_cross(panel: Panel, fast: int = 12, slow: int = 26, atr_n: int = 14,
              tp_r: float | None = None, allow_short: bool = True) -> Signals:
    """Long when the fast EMA crosses above the slow one, short when below; each cross closes
    the other side. Confidence grows with the EMA spread measured in ATRs."""
    if not 1 <= fast < slow:
        raise InvalidInput("fast", fast, f"must be >= 1 and below slow={slow}")
    s = _empty(panel)
    for j in range(len(panel.symbols)):
        h, lo, c = panel.high[:, j], panel.low[:, j], panel.close[:, j]
        f, sl, a = ema(c, fast), ema(c, slow), atr_wilder(h, lo, c, atr_n)
        above = np.where(np.isnan(f) | np.isnan(sl), 0, np.sign(f - sl)).astype(np.int8)
        prev = _shift(above, 0)
        warm = np.arange(c.shape[0]) >= slow
        up = warm & (above > 0) & (prev <= 0) & ~np.isnan(a) & ~np.isnan(c)
        down = warm & (above < 0) & (prev >= 0) & ~np.isnan(a) & ~np.isnan(c)
        raw = np.where(up, 1, np.where(down, -1 if allow_short else 0, 0)).astype(np.int8)
        ex = np.where(up, EXIT_SHORT, np.where(down, EXIT_LONG, 0)).astype(np.int8)
        s["entry"][:, j] = _shift(raw, 0)
        s["exit"][:, j] = _shift(ex, 0)
        s["atr"][:, j] = _shift(a, np.nan)
        s["confidence"][:, j] = _shift(_conf((f - sl) / a), np.nan)
        if tp_r is not None:
            s["tp_r"][:, j] = tp_r
    return Signals(name=f"ema-cross({fast},{slow})", **s)


def donchian(panel: Panel, n: int = 20, atr_n: int = 14, tp_r: float | None = None,
             allow_short: bool = True) -> Signals:
    """Long when the close breaks above the previous ``n`` bars' high, short below their low;
    exit on the opposite ``n // 2`` channel. Confidence grows with the breakout in ATRs."""
    if n < 2:
        raise InvalidInput("n", n, "must be >= 2")
    s = _empty(panel)
    for j in range(len(panel.symbols)):
        h, lo, c = panel.high[:, j], panel.low[:, j], panel.close[:, j]
        a = atr_wilder(h, lo, c, atr_n)
        upper, lower = rolling_extreme(h, n, True), rolling_extreme(lo, n, False)
        ex_lo, ex_hi = rolling_extreme(lo, max(n // 2, 1), False), rolling_extreme(h, max(n // 2, 1), True)
        ok = ~np.isnan(a) & ~np.isnan(c)
        with np.errstate(invalid="ignore"):
            long_ = ok & (c > upper)
            short = ok & (c < lower) & allow_short
            raw = np.where(long_, 1, np.where(short, -1, 0)).astype(np.int8)
            ex = (np.where((c < ex_lo) | short, EXIT_LONG, 0)
                  | np.where((c > ex_hi) | long_, EXIT_SHORT, 0)).astype(np.int8)
            strength = np.where(long_, (c - upper) / a, np.where(short, (lower - c) / a, np.nan))
        s["entry"][:, j] = _shift(raw, 0)
        s["exit"][:, j] = _shift(ex, 0)
        s["atr"][:, j] = _shift(a, np.nan)
        s["confidence"][:, j] = _shift(_conf(2.0 * strength), np.nan)
        if tp_r is not None:
            s["tp_r"][:, j] = tp_r
    return Signals(name=f"donchian({n})", **s)


_SIDES = {"1": 1, "long": 1, "buy": 1, "-1": -1, "short": -1, "sell": -1, "0": 0, "": 0}


def _read_signals(panel: Panel, p: Path) -> pl.DataFrame:
    if not p.exists():
        raise InvalidInput("signals", str(p), "no such file")
    if is_freqtrade_export(p):  # replay a freqtrade backtest's entries (pair, time, side, stop)
        return export_signals(p, panel.timestamp, symbols=panel.symbols)
    return pl.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pl.read_csv(p)


def signals_from_file(panel: Panel, path: str | Path, atr_n: int = 14) -> Signals:
    """The user's own signals: a CSV/Parquet with ``timestamp`` (the candle at whose close the
    signal is known; it acts at the next open), ``entry`` (1/-1/0 or long/short) and optionally
    ``exit`` (1 close long, 2 close short, 3 both; or true = both), ``atr``, ``atr_mult``,
    ``tp_r``, ``confidence`` and ``symbol`` (needed with several symbols). Rows whose
    timestamp has no candle are an error naming the row. Without ``atr`` the ATR(14) is used.
    A freqtrade backtest export (zip or json) replays its entries: pair, time, side, stop."""
    p = Path(path)
    df = _read_signals(panel, p)
    for col in ("timestamp", "entry"):
        if col not in df.columns:
            raise InvalidInput(f"{p}", list(df.columns), f"missing column {col!r}")
    s = _empty(panel)
    known = {name: np.full((panel.n_bars, len(panel.symbols)), np.nan)
             for name in ("atr", "atr_mult", "tp_r", "confidence")}
    ts = df["timestamp"].cast(pl.Int64).to_numpy()
    rows = np.searchsorted(panel.timestamp, ts)
    syms = df["symbol"].cast(pl.Utf8).to_list() if "symbol" in df.columns else None
    entries = [str(v).strip().lower() for v in df["entry"].to_list()]
    exits = df["exit"].to_list() if "exit" in df.columns else [0] * df.height
    extra = {n: df[n].cast(pl.Float64).to_numpy() for n in known if n in df.columns}
    for r in range(df.height):
        where = f"{p} row {r + 1}"
        k = int(rows[r])
        if k >= panel.n_bars or panel.timestamp[k] != ts[r]:
            raise InvalidInput(f"{where} timestamp", int(ts[r]), "matches no candle")
        if syms is None:
            if len(panel.symbols) != 1:
                raise InvalidInput(str(p), list(df.columns), "several symbols: add a symbol column")
            j = 0
        elif syms[r] in panel.symbols:
            j = panel.symbols.index(syms[r])
        else:
            raise InvalidInput(f"{where} symbol", syms[r], f"not among {list(panel.symbols)}")
        side = _SIDES.get(entries[r].removesuffix(".0"))
        if side is None:
            raise InvalidInput(f"{where} entry", entries[r], "must be 1, -1, 0, long or short")
        ex = exits[r]
        code = (EXIT_LONG | EXIT_SHORT) if ex is True else int(ex or 0)
        if code not in (0, 1, 2, 3):
            raise InvalidInput(f"{where} exit", ex, "must be 0, 1 (long), 2 (short) or 3 (both)")
        if k + 1 < panel.n_bars:  # acts at the next open
            s["entry"][k + 1, j] = side
            s["exit"][k + 1, j] = code
            for name, values in extra.items():
                known[name][k + 1, j] = values[r]
    for j in range(len(panel.symbols)):
        a = _shift(atr_wilder(panel.high[:, j], panel.low[:, j], panel.close[:, j], atr_n), np.nan)
        s["atr"][:, j] = np.where(np.isnan(known["atr"][:, j]), a, known["atr"][:, j])
    for name in ("atr_mult", "tp_r", "confidence"):
        s[name] = known[name]
    return Signals(name=f"file({p.name})", **s)


def build_signals(panel: Panel, strategy: str, *, fast: int = 12, slow: int = 26, n: int = 20,
                  tp_r: float | None = None, signals_file: str | Path | None = None,
                  allow_short: bool = True) -> Signals:
    if strategy == "ema-cross":
        return ema_cross(panel, fast, slow, tp_r=tp_r, allow_short=allow_short)
    if strategy == "donchian":
        return donchian(panel, n, tp_r=tp_r, allow_short=allow_short)
    if strategy == "file":
        if signals_file is None:
            raise InvalidInput("signals", None, "strategy 'file' needs a signals file")
        return signals_from_file(panel, signals_file)
    raise InvalidInput("strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
