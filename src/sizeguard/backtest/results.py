"""Metrics and the trade ledger of a :class:`~sizeguard.backtest.engine.BacktestResult`."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sizeguard.backtest.engine import BacktestResult
from sizeguard.errors import InvalidInput

YEAR_MS = 365.25 * 86_400_000

LEDGER_COLUMNS = (
    "trade", "policy", "symbol", "candles", "side", "entry_bar", "entry_time", "entry_price",
    "amount", "qty", "notional", "margin", "leverage", "risk", "stop_price", "take_profit",
    "liquidation_price", "engine_liquidation_price", "entry_fee", "equity_at_entry", "reasons",
    "exit_bar", "exit_time", "exit_price", "exit_reason", "exit_fee", "funding", "gross_pnl",
    "net_pnl", "return_on_equity", "adds",
)


def drawdown_curve(equity: np.ndarray[Any, np.dtype[np.float64]], initial: float
                   ) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Drawdown from the running peak (the initial equity counts as the first peak), >= 0."""
    peak = np.maximum.accumulate(np.concatenate([[initial], equity]))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - equity / peak, 0.0)
    return np.asarray(np.clip(dd, 0.0, None), dtype=np.float64)


def metrics(r: BacktestResult) -> dict[str, Any]:
    eq = r.equity
    final = float(eq[-1]) if eq.size else r.initial_equity
    span_ms = float(r.timestamp[-1] - r.timestamp[0] + r.timeframe_ms) if eq.size else 0.0
    years = span_ms / YEAR_MS
    growth = final / r.initial_equity
    cagr = (growth ** (1.0 / years) - 1.0 if growth > 0 else -1.0) if years > 0 else math.nan
    prev = np.concatenate([[r.initial_equity], eq[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(prev > 0, eq / prev - 1.0, 0.0)
    per_year = YEAR_MS / r.timeframe_ms
    sd = float(rets.std())
    down = float(np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2)))
    mean = float(rets.mean()) if rets.size else 0.0
    sharpe = mean / sd * math.sqrt(per_year) if sd > 0 else 0.0
    sortino = mean / down * math.sqrt(per_year) if down > 0 else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        expo = np.where(eq > 0, r.gross / eq, 0.0)
    trades = r.trades
    nets = [t["net_pnl"] for t in trades]
    wins = sum(1 for x in nets if x > 0)
    return {
        "policy": r.name,
        "currency": r.currency,  # of every amount of money below (the markets' settle currency)
        "final_equity": final,
        "total_return": growth - 1.0,
        "cagr": cagr,
        "max_drawdown": float(drawdown_curve(eq, r.initial_equity).max()) if eq.size else 0.0,
        "sharpe": sharpe,
        "sortino": sortino,
        "trades": len(trades),
        "win_rate": wins / len(trades) if trades else 0.0,
        "decisions": r.decisions,
        "skipped": sum(r.skips.values()),
        "skips": dict(r.skips.most_common()),
        "liquidations": r.liquidations,
        "exits": dict(Counter(t["exit_reason"] for t in trades).most_common()),
        "avg_leverage": float(np.mean([t["leverage"] for t in trades])) if trades else 0.0,
        "avg_notional": float(np.mean([t["notional"] for t in trades])) if trades else 0.0,
        "avg_exposure": float(expo.mean()) if expo.size else 0.0,
        "max_exposure": float(expo.max()) if expo.size else 0.0,
        "fees": float(sum(t["entry_fee"] + t["exit_fee"] for t in trades)),
        "funding": float(sum(t["funding"] for t in trades)),
        "ignored_in_position": r.ignored_in_position,
        "adds": r.adds,
    }


def ledger_frame(results: BacktestResult | list[BacktestResult]) -> pl.DataFrame:
    rows = [t for r in ([results] if isinstance(results, BacktestResult) else results)
            for t in r.trades]
    schema = {c: (pl.Utf8 if c in ("policy", "symbol", "candles", "side", "amount", "reasons",
                                   "exit_reason") else
                  pl.Int64 if c in ("trade", "entry_bar", "entry_time", "exit_bar", "exit_time",
                                    "adds")
                  else pl.Float64) for c in LEDGER_COLUMNS}
    return pl.DataFrame([{c: t.get(c) for c in LEDGER_COLUMNS} for t in rows], schema=schema)


def write_ledger(results: BacktestResult | list[BacktestResult], path: str | Path) -> Path:
    """The trade ledger as CSV, or Parquet when the name ends in .parquet."""
    p = Path(path)
    df = ledger_frame(results)
    if p.suffix.lower() in (".parquet", ".pq"):
        df.write_parquet(p)
    else:
        df.write_csv(p)
    return p


def read_ledger(path: str | Path) -> pl.DataFrame:
    p = Path(path)
    if not p.exists():
        raise InvalidInput("ledger", str(p), "no such file")
    df = pl.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pl.read_csv(p)
    missing = [c for c in ("policy", "net_pnl", "equity_at_entry") if c not in df.columns]
    if missing:
        raise InvalidInput("ledger", str(p), f"missing column(s) {', '.join(missing)}")
    return df
