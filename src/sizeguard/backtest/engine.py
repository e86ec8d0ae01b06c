"""The backtest engine: walk the bars of one or more symbols, size every entry with core
:func:`~sizeguard.core.decide.decide`, and run the position arithmetic in a numba-compiled loop.

**One implementation of the arithmetic.** The engine has no sizing formula of its own. At each
bar where a flat symbol has an entry signal, the compiled loop hands control back to Python,
which builds an :class:`~sizeguard.core.account.Account` from the running state (equity marked
at the entry price, open positions with their margin and unrealised PnL, peak equity, today's
realised PnL, the losing streak, each symbol's trades and wins, the last entry time) and asks
``decide()``. An accepted decision's amount, notional, margin, leverage, stop and tier are
copied into the position arrays as they are, the liquidation price too (no second tier lookup);
``core.liquidation.venue_liquidation_price`` compiled with numba (the same function the decision
uses) recomputes it with the decision's maintenance rate and amount whenever funding changes
the isolated collateral.

**A bar** (``t``), in order:

1. at the open: signal exits (fill at the open, taker fee), then entries (fill at the open,
   taker fee; signals are known at the previous close);
2. intrabar, for every open position (those opened at this open included), from the bar's
   open, high and low, along the paths the price can take inside the bar: a stop lying inside
   the liquidation price is crossed first on every path, so it fills (at the stop price, or at
   the open when the bar opened beyond it); the position is liquidated only when the bar opened
   beyond the stop *and* the liquidation price, or when no stop lies inside the liquidation
   price and the range reaches it. When one bar reaches both the loss level and the
   take-profit, ``intrabar="worst"`` (the default) takes the loss; ``"ordered"`` follows
   open -> nearer extreme -> farther extreme. A take-profit fills at its price, never better;
3. at the close: funding (optional; ``funding_rate`` per ``funding_period_ms``, charged for
   every funding time inside the bar, longs pay a positive rate, on the notional at the close;
   deducted from the wallet and from the isolated collateral, which moves the liquidation
   price), then equity is marked at the close.

**Liquidation** (isolated margin): the position's remaining collateral (initial margin less
funding paid) is lost whole; what is left above bankruptcy is the exchange's clearance fee. No
exit fee is charged on top. Each liquidation is counted. A signal exit at an open beyond the
liquidation price is a liquidation (in the gap, before the order). Open positions are closed at
the last close when the data end (exit reason ``end``).

**Cross margin** (``leverage.margin_mode = "cross"``): the contract positions share the wallet
(the cash); :func:`_cross_liquidation` judges the account, while a position is open, at an
open with orders to fill (every position at its open; a stop or take-profit the bar opened
beyond is one: those positions then close at the open) and intrabar (the others still open at
their bar's extreme against them) with the cross collateral ``decide()`` uses, and liquidates every
position when one reaches its price; the account ends at zero. Spot markets are refused in a
cross backtest.

**Inverse** (coin-margined) markets: the account's money is in their coin (all the markets of
one backtest settle in one coin, their base): PnL, fees, funding, collateral, equity and the
ledger's money are coin amounts (:func:`~sizeguard.core.position.settle_of` of the core's quote
values at the fill price); ``decide()`` is given the account valued in quote at the entry's
price; ``BacktestResult.currency`` names the coin.

Limits: one position per symbol (an entry signal while the symbol's position is open is
ignored, as vectorbt and backtrader do,
unless ``limits.allow_add``: then an entry on the position's side is an add, sized by
``decide()`` against the held position and merged into it at the core's average entry, with the
add's stop for the whole position; ``adds`` counts them).
"""

from __future__ import annotations

import gc
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from sizeguard import _native
from sizeguard.backtest.candles import Panel
from sizeguard.backtest.entries import (  # the arrays' fields and the entry side
    A_CASH,
    A_DAY,
    A_DAY_PNL,
    A_IGNORED,
    A_LIQS,
    A_PEAK,
    A_STREAK,
    A_TRADES,
    NA,
    NP,
    NX,
    P_COLL,
    P_CUM,
    P_ENTRY,
    P_FEE_IN,
    P_FUND,
    P_LIQ,
    P_MMR,
    P_NOTIONAL,
    P_QTY,
    P_SIDE,
    P_STOP,
    P_TP,
    P_TRADE,
    X_BAR,
    X_FEE,
    X_FUNDING,
    X_GROSS,
    X_LIQ0,
    X_NET,
    X_PRICE,
    X_REASON,
    AccountView,
    Book,
    Entries,
    run_entries,
)
from sizeguard.backtest.signals import EXIT_LONG, EXIT_SHORT, Signals
from sizeguard.core import liquidation as core_liq
from sizeguard.core import position as core_pos
from sizeguard.core import tiers as core_tiers
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy
from sizeguard.errors import InvalidInput

F64 = npt.NDArray[np.float64]

REASONS = {1: "stop", 2: "take_profit", 3: "liquidation", 4: "signal", 5: "end"}
R_STOP, R_TP, R_LIQ, R_SIGNAL, R_END = 1, 2, 3, 4, 5
DAY_MS = 86_400_000


def _drop_stale_cache() -> None:
    """numba's on-disk cache does not notice changes in the functions a cached function calls:
    drop this module's cached loop when a core module it compiles is newer than it, so the
    loop never runs an old copy of a core kernel."""
    try:
        here = Path(__file__).resolve()
        kernel_mtime = max(Path(m.__file__).stat().st_mtime  # type: ignore[arg-type]
                           for m in (_native.source("liquidation"), _native.source("position"),
                                     core_tiers))
        for f in (here.parent / "__pycache__").glob(f"{here.stem}.*.nb[ic]"):
            if f.stat().st_mtime < kernel_mtime:
                f.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - a read-only install: numba falls back as usual
        pass


_drop_stale_cache()
# numba compiles the kernels from their Python source (the decision core may run them compiled
# with mypyc: _native.python_source gives the same functions from the same .py files)
liq_price = numba.njit(cache=True)(_native.python_source(core_liq.venue_liquidation_price))
# the core's money kernels, compiled: the loop has no arithmetic of its own (the position's
# quantity is held in base units, so a unit is worth its price: contract size 1, linear; an
# inverse position's is its quote face value, fixed; ``settle_of`` turns quote into its coin)
pnl = numba.njit(cache=True)(_native.python_source(core_pos.pnl))
notional_of = numba.njit(cache=True)(_native.python_source(core_pos.notional_of))
fee_on = numba.njit(cache=True)(_native.python_source(core_pos.fee_on))
mm_of = numba.njit(cache=True)(core_tiers.maintenance_margin)
settle_of = numba.njit(cache=True)(_native.python_source(core_pos.settle_of))
quote_of = numba.njit(cache=True)(_native.python_source(core_pos.quote_of))
# (numpy arrays here where the core passes sequences)
cross_collateral: Any = numba.njit(cache=True)(_native.python_source(core_pos.cross_collateral))


def _close(pos: F64, acct: F64, stats: Any, exits: F64, j: int, t: int, price: float,
           reason: int, fee: float, liq_gross: float, inverse: bool
           ) -> None:  # pragma: no cover - compiled
    """Close position ``j`` at ``price``. A liquidation charges no exit fee; its gross result is
    ``liq_gross`` (isolated: the collateral lost whole; cross: the position's share of the
    wallet). Money in the settle currency (``inverse``: the coin, at the exit price)."""
    side, qty, entry = pos[j, P_SIDE], pos[j, P_QTY], pos[j, P_ENTRY]
    if reason == R_LIQ:
        gross = liq_gross
        exit_fee = 0.0
    else:
        gross = settle_of(pnl(side > 0.0, pos[j, P_NOTIONAL], entry, price), price, inverse)
        exit_fee = settle_of(fee_on(notional_of(qty, price, 1.0, inverse), fee), price, inverse)
    acct[A_CASH] += gross - exit_fee
    net = gross - exit_fee - pos[j, P_FEE_IN] - pos[j, P_FUND]
    tid = int(pos[j, P_TRADE])
    exits[tid, X_BAR] = t
    exits[tid, X_PRICE] = price
    exits[tid, X_FEE] = exit_fee
    exits[tid, X_FUNDING] = pos[j, P_FUND]
    exits[tid, X_GROSS] = gross
    exits[tid, X_NET] = net
    exits[tid, X_REASON] = reason
    acct[A_DAY_PNL] += net
    acct[A_TRADES] += 1.0
    if reason == R_LIQ:
        acct[A_LIQS] += 1.0
    stats[j, 0] += 1
    if net > 0.0:
        stats[j, 1] += 1
        acct[A_STREAK] = 0.0
    else:
        acct[A_STREAK] += 1.0
    pos[j, P_SIDE] = 0.0


close_position = numba.njit(cache=True)(_close)


def _bar_exit(side: float, o: float, h: float, low: float, lp: float, stop: float, tp: float,
              liq_on: bool, worst: bool) -> tuple[int, float]:  # pragma: no cover - compiled
    """What one bar does to one position (the intrabar rule): ``(reason, fill)``, reason 0 when
    the position survives the bar. ``lp`` is its liquidation price (ignored unless ``liq_on``)."""
    has_stop, has_tp = not math.isnan(stop), not math.isnan(tp)
    # s * (x - level) <= 0: price x is at or beyond level on the losing side
    s = 1.0 if side > 0.0 else -1.0
    adverse = low if side > 0.0 else h  # the bar's extreme against the position
    favour = h if side > 0.0 else low
    # a stop fills before liquidation on every path unless it lies beyond liquidation
    stop_inside = has_stop and (not liq_on or s * (stop - lp) > 0.0)
    if stop_inside:
        level, reason = stop, R_STOP
    elif liq_on:
        level, reason = lp, R_LIQ
    else:
        level, reason = math.nan, 0
    hit_adv = reason != 0 and s * (adverse - level) <= 0.0
    hit_tp = has_tp and s * (favour - tp) >= 0.0
    fill = level
    if hit_adv and s * (o - level) <= 0.0:  # the bar opened beyond the level: a gap
        fill = o
        if reason == R_STOP and liq_on and s * (o - lp) <= 0.0:  # gapped through both
            reason = R_LIQ
        if reason == R_LIQ:  # the collateral is lost whole; the ledger shows the price
            fill = lp
    elif hit_tp and s * (o - tp) >= 0.0:  # opened beyond the take-profit: it comes first
        hit_adv = False
    elif hit_adv and hit_tp and not worst and abs(favour - o) < abs(o - adverse):
        # ordered: open -> nearer extreme -> farther extreme; a tie goes to the loss
        hit_adv = False
    if hit_adv:
        return reason, fill
    if hit_tp:
        return R_TP, tp
    return 0, math.nan


bar_exit = numba.njit(cache=True)(_bar_exit)


def _cross_view(pos: F64, j: int, t: int, op: F64, hi: F64, lo: F64, mark: F64,
                at_open: bool) -> float:  # pragma: no cover - compiled
    """The price a cross position is valued at when the account is judged: its open
    (``at_open``), else its bar's extreme against it (the conservative intrabar view: the bars
    of several symbols do not say when each extreme came); the last close when it has no bar."""
    o = float(op[t, j])
    if math.isnan(o):
        return float(mark[t, j])
    if at_open:
        return o
    return float(lo[t, j] if pos[j, P_SIDE] > 0.0 else hi[t, j])


cross_view = numba.njit(cache=True)(_cross_view)


def _maintenance_at(pos: F64, j: int, price: float, inverse: bool
                    ) -> tuple[float, float]:  # pragma: no cover - compiled
    """Position ``j``'s maintenance margin and unrealised PnL at ``price`` (its terms of the
    cross collateral, :func:`~sizeguard.core.position.cross_collateral`), in the settle
    currency (COIN-M: the notional in coin at ``price``, the maintenance amount in coin)."""
    value = settle_of(notional_of(pos[j, P_QTY], price, 1.0, inverse), price, inverse)
    return (mm_of(value, pos[j, P_MMR], pos[j, P_CUM]),
            settle_of(pnl(pos[j, P_SIDE] > 0.0, pos[j, P_NOTIONAL], pos[j, P_ENTRY], price),
                      price, inverse))


maintenance_at = numba.njit(cache=True)(_maintenance_at)


def _position_liq(pos: F64, j: int, formula: int, collateral: float, fee: float,
                  inverse: bool) -> float:  # pragma: no cover - compiled
    """Position ``j``'s liquidation price by the core kernel, backed by ``collateral`` (settle
    currency; the kernel takes it, and the maintenance amount, valued in quote at entry)."""
    entry = pos[j, P_ENTRY]
    return liq_price(formula, pos[j, P_SIDE] > 0.0, inverse, entry, pos[j, P_NOTIONAL],
                     quote_of(collateral, entry, inverse), pos[j, P_MMR],
                     quote_of(pos[j, P_CUM], entry, inverse), fee)


position_liq = numba.njit(cache=True)(_position_liq)


def _cross_liquidation(pos: F64, acct: F64, stats: Any, exits: F64, t: int, op: F64, hi: F64,
                       lo: F64, mark: F64, fee: F64, can_liq: Any, formula: Any, worst: bool,
                       at_open: bool, inverse: bool, mm: F64, upnl: F64
                       ) -> bool:  # pragma: no cover - compiled
    """Account-level liquidation of the cross positions (all contract positions of a cross
    policy share the wallet, ``acct[A_CASH]``).

    Each position's liquidation price is the core kernel's with the cross collateral of
    :func:`sizeguard.core.position.cross_collateral` (the one ``decide()`` uses): the wallet
    less the other cross
    positions' maintenance margin plus their unrealised PnL, the others valued at
    :func:`_cross_view` (their open, or their bar's adverse extreme). When one position reaches
    its price (by the intrabar rule: a stop inside it fills first; ``at_open``: the bar opened
    beyond it), the account is liquidated: every cross position closes, and the account's margin
    balance is lost whole, the wallet ends at zero (what is left above bankruptcy is the
    exchange's clearance fee, a loss beyond it its insurance fund's). The ledger gives each
    other position its PnL less its maintenance margin at its view price, and the position that
    reached its price (at it) the rest. Returns whether the account was liquidated; sets every
    open cross position's ``P_LIQ`` to its price of this view. ``mm`` and ``upnl``: room for
    each position's maintenance margin and unrealised PnL."""
    k = pos.shape[0]
    mm[:] = 0.0  # each position's terms of the cross collateral at its view price
    upnl[:] = 0.0
    for i in range(k):
        if pos[i, P_SIDE] != 0.0 and can_liq[i]:
            mm[i], upnl[i] = maintenance_at(pos, i, cross_view(pos, i, t, op, hi, lo, mark,
                                                               at_open), inverse)
    wallet = acct[A_CASH]
    trigger = -1
    trigger_gap = True
    for j in range(k):
        side = pos[j, P_SIDE]
        if side == 0.0 or not can_liq[j]:
            continue
        lp = position_liq(pos, j, formula[j], cross_collateral(wallet, mm, upnl, j), fee[j],
                          inverse)
        pos[j, P_LIQ] = lp
        o = op[t, j]
        if math.isnan(o):  # no bar: its price did not move
            continue
        s = 1.0 if side > 0.0 else -1.0
        if at_open:
            reached = s * (o - lp) <= 0.0
        else:
            reason, _ = bar_exit(side, o, hi[t, j], lo[t, j], lp, pos[j, P_STOP], pos[j, P_TP],
                                 True, worst)
            reached = reason == R_LIQ
        # the position to blame: the first whose price lies inside its bar (not one that, with
        # the others at their extremes, would have had to be liquidated before its own open)
        gap = s * (o - lp) <= 0.0
        if reached and (trigger < 0 or (trigger_gap and not gap)):
            trigger, trigger_gap = j, gap
    if trigger < 0:
        return False
    # the margin balance is lost whole: the wallet ends at zero (below zero, when a realised
    # loss was carried by the other positions' profit, it is brought back up to it)
    rest = -wallet
    for i in range(k):
        if i == trigger or pos[i, P_SIDE] == 0.0 or not can_liq[i]:
            continue
        price = cross_view(pos, i, t, op, hi, lo, mark, at_open)
        share = upnl[i] - mm[i]
        rest -= share
        close_position(pos, acct, stats, exits, i, t, price, R_LIQ, fee[i], share, inverse)
    close_position(pos, acct, stats, exits, trigger, t, pos[trigger, P_LIQ], R_LIQ, fee[trigger],
                   rest, inverse)
    return True


cross_liquidation = numba.njit(cache=True)(_cross_liquidation)


def _open_exit(side: float, o: float, stop: float, tp: float) -> int:  # pragma: no cover
    """What a bar's open ``o`` does to an open position: ``R_STOP`` when it opened at or beyond
    the stop, ``R_TP`` at or beyond the take-profit, else 0 (an order that fills at the open)."""
    if side == 0.0 or math.isnan(o):
        return 0
    s = 1.0 if side > 0.0 else -1.0
    if not math.isnan(stop) and s * (o - stop) <= 0.0:
        return R_STOP
    if not math.isnan(tp) and s * (o - tp) >= 0.0:
        return R_TP
    return 0


open_exit = numba.njit(cache=True)(_open_exit)


def _gapped(t: int, pos: F64, op: F64) -> bool:  # pragma: no cover - compiled
    """Whether bar ``t`` opened at or beyond an open position's stop or take-profit."""
    for j in range(pos.shape[0]):
        if open_exit(pos[j, P_SIDE], op[t, j], pos[j, P_STOP], pos[j, P_TP]) != 0:
            return True
    return False


gapped = numba.njit(cache=True)(_gapped)


def _close_gaps(t: int, pos: F64, acct: F64, stats: Any, exits: F64, op: F64, fee: F64,
                inverse: bool) -> None:  # pragma: no cover - compiled
    """Close at bar ``t``'s open every position the bar opened at or beyond its stop (filled
    at the open) or its take-profit (filled at it, never better): what the intrabar rule gives
    them, before the bar's extremes."""
    for j in range(pos.shape[0]):
        o = op[t, j]
        reason = open_exit(pos[j, P_SIDE], o, pos[j, P_STOP], pos[j, P_TP])
        if reason == R_STOP:
            close_position(pos, acct, stats, exits, j, t, o, R_STOP, fee[j], 0.0, inverse)
        elif reason == R_TP:
            close_position(pos, acct, stats, exits, j, t, pos[j, P_TP], R_TP, fee[j], 0.0, inverse)


close_gaps = numba.njit(cache=True)(_close_gaps)


def _held(pos: F64) -> bool:  # pragma: no cover - compiled
    """Whether any position is open (the account has nothing to judge otherwise)."""
    for j in range(pos.shape[0]):  # noqa: SIM110 - numba compiles the loop, not any()
        if pos[j, P_SIDE] != 0.0:
            return True
    return False


_holding = numba.njit(cache=True, inline="always")(_held)


def _orders(t: int, pos: F64, entry: Any, exit_sig: Any) -> bool:  # pragma: no cover
    """Whether bar ``t``'s open has an entry or an exit of an open position to fill."""
    for j in range(pos.shape[0]):
        side = pos[j, P_SIDE]
        code = exit_sig[t, j]
        if entry[t, j] != 0 or (side > 0.0 and (code & EXIT_LONG)) or (
                side < 0.0 and (code & EXIT_SHORT)):
            return True
    return False


_orders_at_open = numba.njit(cache=True)(_orders)


def _flat(t: int, stop_at: int, ts: Any, op: F64, entry: Any, signal_bars: Any, acct: F64,
          equity: F64, gross: F64) -> int:  # pragma: no cover - compiled
    """Bars from ``t`` with no position open, up to the next bar with an entry signal (returned;
    ``stop_at`` when none): exactly what the loop does on such a bar (the day's PnL reset when
    the day changes; the equity the cash; no exposure; the peak), in one pass the compiler
    turns into vector code. ``signal_bars``: the bars with an entry signal, in order."""
    k = op.shape[1]
    end = stop_at
    i = np.searchsorted(signal_bars, t)
    while i < signal_bars.shape[0] and signal_bars[i] < stop_at:
        b = signal_bars[i]
        for j in range(k):
            if entry[b, j] != 0 and not math.isnan(op[b, j]):  # a NaN open: no trade there
                end = b
                break
        if end == b:
            break
        i += 1
    if end <= t:
        return t
    # the day changed on some bar exactly when a timestamp leaves the day's bounds (in ms);
    # the day is then the last bar's, whatever the order of the timestamps
    cash = acct[A_CASH]
    low = high = ts[t]
    for u in range(t, end):
        equity[u] = cash
        gross[u] = 0.0
        now = ts[u]
        low = min(low, now)
        high = max(high, now)
    day_lo = int(acct[A_DAY]) * DAY_MS
    if low < day_lo or high >= day_lo + DAY_MS:
        acct[A_DAY] = float(ts[end - 1] // DAY_MS)
        acct[A_DAY_PNL] = 0.0
    acct[A_PEAK] = max(acct[A_PEAK], cash)
    return end


flat_run = numba.njit(cache=True)(_flat)


def _walk(start: int, resume: bool, ts: Any, op: F64, hi: F64, lo: F64, mark: F64, entry: Any,
          exit_sig: Any, signal_bars: Any, funding: F64, fee: F64, can_liq: Any, formula: Any,
          worst: bool, pos: F64, acct: F64, stats: Any, exits: F64, equity: F64, gross: F64,
          stop_at: int, adding: bool, cross: bool, inverse: bool
          ) -> int:  # pragma: no cover - compiled
    """Walk bars from ``start``; return the bar where entries wait for a decision (its exits
    done), or -1 when the data (or ``stop_at``) end. ``resume``: bar ``start``'s open is done.
    ``adding``: an entry on the side of the open position waits for a decision too (an add).
    ``cross``: the contract positions share the wallet (:func:`_cross_liquidation`).
    ``inverse``: the markets are coin-margined, every amount of money is in their coin.
    ``signal_bars``: the bars with an entry signal (any symbol), in order."""
    n, k = op.shape
    t = start
    # the cross collateral's terms of each position (a scratch for _cross_liquidation)
    mm, upnl = np.empty(k if cross else 0), np.empty(k if cross else 0)
    while t < stop_at:
        if not (resume and t == start) and not _holding(pos):  # flat: on to the next signal
            t = flat_run(t, stop_at, ts, op, entry, signal_bars, acct, equity, gross)
            if t >= stop_at:
                break
        if not (resume and t == start):
            day = float(ts[t] // DAY_MS)
            if day != acct[A_DAY]:
                acct[A_DAY] = day
                acct[A_DAY_PNL] = 0.0
            if cross and _orders_at_open(t, pos, entry, exit_sig):
                # a gap past the account's price comes before any order at the open (without
                # orders the intrabar judgement, which values the others at their worst, does)
                cross_liquidation(pos, acct, stats, exits, t, op, hi, lo, mark, fee, can_liq,
                                  formula, worst, True, inverse, mm, upnl)
            pending = False
            for j in range(k):
                o = op[t, j]
                if math.isnan(o):
                    continue
                side = pos[j, P_SIDE]
                if side != 0.0:
                    code = exit_sig[t, j]
                    if (side > 0.0 and (code & EXIT_LONG)) or (side < 0.0 and (code & EXIT_SHORT)):
                        lp = pos[j, P_LIQ]
                        if can_liq[j] and not cross and ((side > 0.0 and o <= lp)
                                                         or (side < 0.0 and o >= lp)):
                            # the bar opened beyond the liquidation price: the position was
                            # liquidated in the gap, before the exit order could fill
                            close_position(pos, acct, stats, exits, j, t, lp, R_LIQ, fee[j],
                                           -pos[j, P_COLL], inverse)
                        else:
                            close_position(pos, acct, stats, exits, j, t, o, R_SIGNAL, fee[j],
                                           0.0, inverse)
                if entry[t, j] != 0:
                    if pos[j, P_SIDE] == 0.0 or (adding and entry[t, j] * pos[j, P_SIDE] > 0.0):
                        pending = True
                    else:
                        acct[A_IGNORED] += 1.0
            if pending:
                return t
        # intrabar: the stop, the liquidation or the take-profit, along the paths the bar allows
        if cross and _holding(pos):
            # a stop or take-profit the bar opened beyond fills at the open, before the bar's
            # extremes: the account judged at the open first (a gap beyond a price), then those
            # positions closed, and only the others judged intrabar
            if gapped(t, pos, op) and not cross_liquidation(
                    pos, acct, stats, exits, t, op, hi, lo, mark, fee, can_liq, formula, worst,
                    True, inverse, mm, upnl):
                close_gaps(t, pos, acct, stats, exits, op, fee, inverse)
            if _holding(pos):
                cross_liquidation(pos, acct, stats, exits, t, op, hi, lo, mark, fee, can_liq,
                                  formula, worst, False, inverse, mm, upnl)
        for j in range(k):
            side = pos[j, P_SIDE]
            if side == 0.0:
                continue
            o = op[t, j]
            if math.isnan(o):
                continue
            liq_on = can_liq[j] and not cross  # cross: judged above, for the whole account
            if liq_on and math.isnan(pos[j, P_LIQ]):  # a decision without one: the kernel
                pos[j, P_LIQ] = position_liq(pos, j, formula[j], pos[j, P_COLL], fee[j], inverse)
                exits[int(pos[j, P_TRADE]), X_LIQ0] = pos[j, P_LIQ]
            reason, fill = bar_exit(side, o, hi[t, j], lo[t, j], pos[j, P_LIQ], pos[j, P_STOP],
                                    pos[j, P_TP], liq_on, worst)
            if reason != 0:
                close_position(pos, acct, stats, exits, j, t, fill, reason, fee[j],
                               -pos[j, P_COLL], inverse)
        # the close: funding, then marking
        eq = acct[A_CASH]
        g = 0.0
        for j in range(k):
            side = pos[j, P_SIDE]
            if side == 0.0:
                continue
            m = mark[t, j]
            rate = funding[t, j] if funding.shape[0] == n else 0.0
            if rate != 0.0 and not math.isnan(rate):
                pay = side * settle_of(fee_on(notional_of(pos[j, P_QTY], m, 1.0, inverse), rate),
                                       m, inverse)
                acct[A_CASH] -= pay
                eq -= pay
                pos[j, P_FUND] += pay
                if can_liq[j] and not cross:  # isolated: paid from the position's collateral
                    pos[j, P_COLL] -= pay
                    pos[j, P_LIQ] = position_liq(pos, j, formula[j], pos[j, P_COLL], fee[j],
                                                 inverse)
            eq += settle_of(pnl(side > 0.0, pos[j, P_NOTIONAL], pos[j, P_ENTRY], m), m, inverse)
            g += settle_of(notional_of(pos[j, P_QTY], m, 1.0, inverse), m, inverse)
        equity[t] = eq
        gross[t] = g
        acct[A_PEAK] = max(acct[A_PEAK], eq)
        t += 1
    if stop_at == n and n > 0:  # the data end: close what is open at the last close
        for j in range(k):
            if pos[j, P_SIDE] != 0.0:
                close_position(pos, acct, stats, exits, j, n - 1, mark[n - 1, j], R_END, fee[j],
                               0.0, inverse)
        equity[n - 1] = acct[A_CASH]
        gross[n - 1] = 0.0
    return -1


walk = numba.njit(cache=True)(_walk)


def _walking(ts: Any, op: F64, hi: F64, lo: F64, mark: F64, entry: Any, exit_sig: Any,
             signal_bars: Any, funding: F64, fee: F64, can_liq: Any, formula: Any, worst: bool,
             pos: F64, acct: F64, stats: Any, exits: F64, equity: F64, gross: F64, chunk: int,
             adding: bool, cross: bool, inverse: bool) -> Iterator[int]:  # pragma: no cover
    """The whole walk as a generator: yields each bar where entries wait for a decision (its
    exits done), and ``-1 - bar`` at the end of each ``chunk`` of bars before the last (for a
    progress report). The caller writes the decisions into the arrays before asking for the
    next step, which resumes the bar where it stopped. Resuming a generator costs no
    argument conversion (a call of :func:`walk` from Python converts its 18 arrays, about
    1 us: once per entry bar)."""
    n = op.shape[0]
    t, resume = 0, False
    while True:
        stop_at = min(n, t + chunk)
        got = walk(t, resume, ts, op, hi, lo, mark, entry, exit_sig, signal_bars, funding, fee,
                   can_liq, formula, worst, pos, acct, stats, exits, equity, gross, stop_at,
                   adding, cross, inverse)
        if got < 0:
            if stop_at >= n:
                return
            yield -1 - stop_at
            t, resume = stop_at, False
        else:
            yield got
            t, resume = got, True


walking = numba.njit(cache=True)(_walking)


@dataclass(frozen=True)
class EntryRecord:
    """One entry decision and exactly what it was taken against (for the differential test)."""

    bar: int
    symbol: str
    intent: Intent
    account: Account
    decision: Decision
    trade: int  # ledger row when accepted, else -1


# a trade's entry as the loop keeps it (one tuple, no dict per entry); the ledger row's keys
# in this order, ``reasons`` a tuple of reason codes until rendered
ENTRY_KEYS = ("trade", "policy", "symbol", "candles", "side", "entry_bar", "entry_time",
              "entry_price", "amount", "qty", "notional", "margin", "leverage", "risk",
              "stop_price", "take_profit", "liquidation_price", "entry_fee", "equity_at_entry",
              "adds", "reasons")
ROW_KEYS = (*ENTRY_KEYS, "exit_bar", "exit_time", "exit_price", "exit_reason", "exit_fee",
            "funding", "gross_pnl", "net_pnl", "return_on_equity", "engine_liquidation_price")


class Ledger:
    """The trades of one backtest: each entry kept as a tuple while the loop runs, each exit
    in the loop's ``exits`` array; the rows (dicts, :data:`ENTRY_KEYS` then the exit's keys)
    are rendered once, when first asked for."""

    def __init__(self, timestamp: npt.NDArray[np.int64], exits: F64) -> None:
        self.timestamp, self.exits = timestamp, exits
        self.entries: list[tuple[Any, ...]] = []
        self._open: dict[int, dict[str, Any]] = {}  # rows rendered early (an add updates them)
        self._rows: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def open_row(self, tid: int) -> dict[str, Any]:
        """Trade ``tid``'s entry as a row that stays the one rendered (an add updates it)."""
        row = self._open.get(tid)
        if row is None:
            row = self._open[tid] = _entry_row(self.entries[tid])
        return row

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            n = len(self.entries)
            x = self.exits[:n]
            exit_ts = self.timestamp[x[:, X_BAR].astype(np.int64)].tolist() if n else []
            liq0 = [None if math.isnan(v) else v for v in x[:, X_LIQ0].tolist()]
            said: dict[tuple[Any, ...], str] = {}  # each set of reasons as text, once
            rows = []
            for e, (xb, xp, fee, fund, gross, net, why, _), xt, lq in zip(
                    self.entries, x.tolist(), exit_ts, liq0, strict=True):
                row = self._open.get(e[0])
                if row is None:
                    text = said.get(e[-1])
                    if text is None:
                        text = said[e[-1]] = " ".join(str(r) for r in e[-1])
                    row = dict(zip(ROW_KEYS, (*e[:6], round(e[6] * 1000.0), *e[7:-1], text, int(xb),
                                              xt, xp, REASONS[int(why)], fee, fund, gross, net,
                                              net / e[-3], lq), strict=True))
                else:  # rendered early for an add: its entry as updated
                    row.update(exit_bar=int(xb), exit_time=xt, exit_price=xp,
                               exit_reason=REASONS[int(why)], exit_fee=fee, funding=fund,
                               gross_pnl=gross, net_pnl=net,
                               return_on_equity=net / row["equity_at_entry"],
                               engine_liquidation_price=lq)
                rows.append(row)
            self._rows = rows
        return self._rows


def _entry_row(entry: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(ENTRY_KEYS, entry, strict=True))
    row["entry_time"] = round(row["entry_time"] * 1000.0)
    row["reasons"] = " ".join(str(r) for r in row["reasons"])
    return row


@dataclass
class BacktestResult:
    policy: Policy
    symbols: tuple[str, ...]
    markets: tuple[str, ...]
    timestamp: npt.NDArray[np.int64]
    equity: F64
    gross: F64
    initial_equity: float
    ledger: Ledger
    skips: Counter[str]
    decisions: int
    liquidations: int
    timeframe_ms: int
    strategy: str = ""
    records: list[EntryRecord] = field(default_factory=list)
    ignored_in_position: int = 0
    warnings: list[str] = field(default_factory=list)  # first entries decide() refused as invalid
    adds: int = 0  # accepted adds to an open position (limits.allow_add)
    # the currency of equity, fees and PnL: the markets' settle currency (USDT; BTC for a
    # coin-margined BTC/USD:BTC market, whose backtest keeps its money in BTC)
    currency: str = ""

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def trades(self) -> list[dict[str, Any]]:
        """The ledger's rows, one dict per trade (rendered on first use)."""
        return self.ledger.rows()


def funding_per_bar(ts: npt.NDArray[np.int64], timeframe_ms: int, rate: float,
                    period_ms: int = 8 * 3_600_000) -> F64:
    """Funding rate charged at each bar's close: ``rate`` x the funding times in (open, next open]."""
    if rate == 0.0 or ts.shape[0] == 0:
        return np.zeros(ts.shape[0])
    nxt = np.empty_like(ts)
    nxt[:-1] = ts[1:]
    nxt[-1] = ts[-1] + timeframe_ms
    count = nxt // period_ms - ts // period_ms
    return count.astype(np.float64) * rate


def _check_markets(markets: Sequence[MarketRules], policy: Policy) -> tuple[bool, bool, str]:
    """Refuse what the loop does not simulate; return whether the account runs cross margin
    (a cross policy with contract markets), whether it is coin-margined (inverse markets), and
    its currency (the markets' settle currency)."""
    inverse = any(m.inverse for m in markets)
    if inverse:
        other = [m.symbol for m in markets if not m.inverse]
        if other:
            raise InvalidInput("market", other[0], "a backtest of inverse (coin-margined) "
                               "contracts keeps its money in their coin; run linear and spot "
                               "markets separately")
        for m in markets:
            if m.base and m.settle and m.base != m.settle:
                raise InvalidInput("market", m.symbol, f"settles in {m.settle}, not in its base "
                                   f"{m.base}: the backtest values its coin at the market's price")
        coins = sorted({m.settle or m.base for m in markets})
        if len(coins) > 1:
            raise InvalidInput("market", markets[0].symbol, "inverse markets settled in "
                               f"different coins ({', '.join(coins)}): run them separately")
    currencies = sorted({m.settle or m.quote for m in markets} - {""})
    cross = policy.leverage.margin_mode == "cross" and any(m.is_contract for m in markets)
    if cross:
        spot = [m.symbol for m in markets if not m.is_contract]
        if spot:
            raise InvalidInput("market", spot[0], "a cross-margin backtest shares one futures "
                               "wallet between its contracts; run spot markets separately (or "
                               "set leverage.margin_mode = \"isolated\")")
    return cross, inverse, "/".join(currencies)


def run_backtest(
    panel: Panel,
    signals: Signals,
    markets: Sequence[MarketRules],
    policy: Policy,
    *,
    equity: float = 10_000.0,
    funding_rate: float = 0.0,
    funding_period_ms: int = 8 * 3_600_000,
    intrabar: str = "worst",
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
    regime: str | None = None,
    volatility: str | None = None,
) -> BacktestResult:
    """Backtest one policy. ``markets[j]`` trades the candles of ``panel.symbols[j]``."""
    k, n = len(panel.symbols), panel.n_bars
    if len(markets) != k:
        raise InvalidInput("markets", [m.symbol for m in markets],
                           f"give one market per candle symbol ({k})")
    if intrabar not in ("worst", "ordered"):
        raise InvalidInput("intrabar", intrabar, "must be 'worst' or 'ordered'")
    if not (equity > 0 and math.isfinite(equity)):
        raise InvalidInput("equity", equity, "must be a finite number > 0")
    cross, inverse, currency = _check_markets(markets, policy)
    if signals.entry.shape != (n, k):
        raise InvalidInput("signals", signals.entry.shape, f"must have shape {(n, k)}")
    syms = [m.symbol for m in markets]
    fee = np.array([core_pos.taker_fee(m, policy.execution.taker) for m in markets])
    can_liq = np.array([m.is_contract for m in markets])
    # each market's liquidation formula, the one its decisions used (core.liquidation ids)
    formula = np.array([m.liquidation_formula[0] for m in markets], dtype=np.int64)
    fund = np.zeros((1, k))  # one row of zeros: no funding, and no n x k array to read
    if funding_rate:  # perpetuals only: spot pays no funding
        fund = np.zeros((n, k))
        per_bar = funding_per_bar(panel.timestamp, panel.timeframe_ms, funding_rate,
                                  funding_period_ms)
        for j, m in enumerate(markets):
            if m.kind == "swap":
                fund[:, j] = per_bar
    pos = np.zeros((k, NP))
    acct = np.zeros(NA)
    acct[A_CASH] = acct[A_PEAK] = equity
    acct[A_DAY] = -1.0
    stats = np.zeros((k, 2), np.int64)
    max_trades = int(np.count_nonzero(signals.entry)) + 1
    exits = np.full((max_trades, NX), np.nan)
    # every bar's equity and exposure are written by the loop (a flat stretch's too): no fill
    eq_curve = np.empty(n)
    gross = np.empty(n)
    ledger = Ledger(panel.timestamp, exits)
    allow_add = bool(policy.limits.allow_add)
    out = Entries(ledger, EntryRecord if record else None, allow_add)
    view = AccountView(panel.open, panel.mark, syms, stats, inverse)
    worst = intrabar == "worst"
    ts_arr = panel.timestamp
    op, hi, lo, mark = panel.open, panel.high, panel.low, panel.mark
    entry_sig, exit_sig = signals.entry, signals.exit
    # every entry signal gathered once (bar order, then symbol order) into a list of bars and
    # a list of tuples, so that an entry costs no array indexing: symbol, side, open, the
    # intent's ATR, multiple and confidence (None where absent), time, take-profit R
    flat_at = np.flatnonzero(entry_sig != 0)  # (a bool array's nonzero is the fast one)
    e_t, e_j = (flat_at, np.zeros_like(flat_at)) if k == 1 else np.divmod(flat_at, k)
    e_atr, e_mult = signals.atr[e_t, e_j], signals.atr_mult[e_t, e_j]
    e_sig = list(zip(e_j.tolist(), entry_sig[e_t, e_j].tolist(), op[e_t, e_j].tolist(),
                     _or_none(e_atr, e_atr > 0), _or_none(e_mult, e_mult > 0),
                     _confidence(signals.confidence[e_t, e_j]), (ts_arr[e_t] / 1000.0).tolist(),
                     signals.tp_r[e_t, e_j].tolist(), strict=True))
    books = [Book(m, policy, float(f), c)
             for m, f, c in zip(markets, fee.tolist(), panel.symbols, strict=True)]
    with _collector_paused():  # nothing the entries allocate forms a cycle
        steps = walking(ts_arr, op, hi, lo, mark, entry_sig, exit_sig, e_t, fund, fee, can_liq,
                        formula, worst, pos, acct, stats, exits, eq_curve, gross,
                        n if progress is None else max(n // 200, 1), allow_add, cross, inverse)
        # decide: this module's, looked up now (a caller may wrap it, as the bench does)
        run_entries(steps, n, decide, out, view, books, policy, e_t.tolist(), e_sig,
                    panel.symbols, regime, volatility, progress, pos, acct, exits)
        del e_sig, steps  # freed before the collector's next pass (see _collector_paused)
    return BacktestResult(policy, panel.symbols, tuple(syms), ts_arr, eq_curve, gross, equity,
                          ledger, out.skips, out.decisions, int(acct[A_LIQS]),
                          panel.timeframe_ms, signals.name, out.records, int(acct[A_IGNORED]),
                          out.warnings, out.adds, currency)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while the bars and entries run, then back on (when
    it was). An entry allocates a dozen container objects that outlive it (its Intent, Account,
    decision and ledger tuple), none of them in a reference cycle, so the collector's passes,
    triggered by allocation counts alone, find nothing to free: they took 3-5% of a dense run
    (2,617 entries per 1M bars), and now and then a full pass over every object of the process
    (about 200,000 with numba and numpy loaded, several ms). A cycle made meanwhile is still
    collected, at the first pass after the run. That pass examines what the run left alive
    (about 0.2 us an object): the caller frees the entry signals' tuples before it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _or_none(values: F64, present: npt.NDArray[np.bool_]) -> list[float | None]:
    """``values`` as a list of floats, None where not ``present``."""
    if present.all():
        return values.tolist()  # type: ignore[no-any-return]
    return [v if ok else None for v, ok in zip(values.tolist(), present.tolist(), strict=True)]


def _confidence(values: F64) -> list[float | None]:
    """Each signal's confidence for its intent: clamped to [0, 1], None where absent (NaN)."""
    present = ~np.isnan(values)
    if not present.any():
        return [None] * values.shape[0]
    if ((values[present] >= 0.0) & (values[present] <= 1.0)).all():  # nothing to clamp
        return _or_none(values, present)
    return [min(max(c, 0.0), 1.0) if not math.isnan(c) else None for c in values.tolist()]


def position_liquidation_prices(pos: F64) -> F64:
    """Liquidation prices held in the position arrays (for tests)."""
    return pos[:, P_LIQ].copy()
