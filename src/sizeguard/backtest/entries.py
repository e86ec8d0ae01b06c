"""The backtest's entry side: everything between the compiled loop's stop at a bar with entry
signals and its resumption (the Account and Intent ``decide()`` is asked with, the accepted
decision copied into the position arrays, the ledger's entry tuple).

:mod:`sizeguard.backtest.engine` sets a backtest up and hands this module the loop
(:func:`run_entries`). It is compiled with mypyc together with the decision core (setup.py; the
same source runs as Python where no compiler is found, and :mod:`sizeguard._native` falls back
to it whenever the build is older than the source), so the decision's fields are read as
native attributes and the entry's bookkeeping runs without the interpreter. Its classes never
leave the process (the sweep ships markets and policies to its workers, and they run
:func:`~sizeguard.backtest.engine.run_backtest` there). No arithmetic of the size here: the
core's kernels, and the decision's numbers as they are.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from sizeguard.backtest import fastinit
from sizeguard.backtest.fastinit import constructor, plan
from sizeguard.core import liquidation as core_liq
from sizeguard.core import position as core_pos
from sizeguard.core import tiers as core_tiers
from sizeguard.core.account import Account, Position, SymbolStats
from sizeguard.core.decision import Decision
from sizeguard.core.intent import LONG, SHORT, Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy
from sizeguard.errors import InvalidInput

# position fields (pos[j, field])
P_SIDE: Final = 0
P_QTY: Final = 1
P_ENTRY: Final = 2
P_NOTIONAL: Final = 3
P_STOP: Final = 4
P_TP: Final = 5
P_LIQ: Final = 6
P_COLL: Final = 7
P_MMR: Final = 8
P_CUM: Final = 9
P_FUND: Final = 10
P_FEE_IN: Final = 11
P_TRADE: Final = 12
P_BAR: Final = 13
NP: Final = 14
# account fields (acct[field])
A_CASH: Final = 0
A_PEAK: Final = 1
A_DAY: Final = 2
A_DAY_PNL: Final = 3
A_STREAK: Final = 4
A_TRADES: Final = 5
A_LIQS: Final = 6
A_IGNORED: Final = 7
NA: Final = 8
# ledger fields written by the loop (exits[trade, field])
X_BAR: Final = 0
X_PRICE: Final = 1
X_FEE: Final = 2
X_FUNDING: Final = 3
X_GROSS: Final = 4
X_NET: Final = 5
X_REASON: Final = 6
X_LIQ0: Final = 7
NX: Final = 8

_ROW: Final = struct.Struct(f"={NP}d")  # one row of pos (C order, native float64)
_ROW_SIZE: Final = _ROW.size
# this module is the mypyc build (not its .py source): see Builder
NATIVE: Final = not __file__.endswith(".py")
# Names imported from a Python module are looked up in this module's dict at every use once
# compiled: the constants used per entry are held here as final (native) values.
_LONG: Final = LONG
_SHORT: Final = SHORT
_NAN: Final = math.nan
_MISSING: Final = fastinit.MISSING
_PROXY: Final = MappingProxyType
_NEW: Final = object.__new__
# fastinit's slot kinds (Plan.slots)
PARAM: Final = 0
HELD: Final = 1
COPY: Final = 2
MAKE: Final = 3
if (PARAM, HELD, COPY, MAKE) != (fastinit.PARAM, fastinit.HELD, fastinit.COPY, fastinit.MAKE):
    raise ImportError("sizeguard.backtest.fastinit's slot kinds changed")


class Builder:
    """Builds a frozen slotted dataclass exactly as its ``__init__`` does, faster
    (:mod:`sizeguard.backtest.fastinit`: the same slots set to the same values). Compiled, it
    writes each slot with ``object.__setattr__``, which mypyc turns into the C set-attribute
    of the slot's descriptor; as Python, it calls fastinit's generated constructor."""

    def __init__(self, cls: type[Any], fixed: Mapping[str, Any] | None = None) -> None:
        how = plan(cls, fixed)
        self.cls = cls
        self.params = how.params
        self.defaults = how.defaults
        # (name, kind, value): kind PARAM takes the next value given (its default when fewer
        # are given), the others as the plan says
        self.slots: tuple[tuple[str, int, Any], ...] = tuple(
            (name, PARAM if name in how.params else kind, value)
            for name, kind, value in how.slots)
        self.post_init = how.post_init
        self.make = constructor(cls, fixed)
        self.native = NATIVE

    def build(self, values: tuple[Any, ...]) -> Any:
        """A new object from ``values``, the parameters in order (positional; those left out
        take their defaults)."""
        if not self.native:
            return self.make(*values)
        obj = _NEW(self.cls)
        given = len(values)
        i = 0
        for name, kind, held in self.slots:
            value = held
            if kind == PARAM:
                value = values[i] if i < given else self._default(i)
                i += 1
            elif kind == COPY:
                value = held.copy()
            elif kind == MAKE:
                value = held()
            object.__setattr__(obj, name, value)
        if self.post_init:
            obj.__post_init__()
        return obj

    def _default(self, i: int) -> Any:
        default = self.defaults[i]
        if default is _MISSING:
            raise TypeError(f"{self.cls.__name__}() missing argument {self.params[i]!r}")
        return default() if callable(default) else default


# an entry's Intent and Account, built as their dataclass builds them, at a fraction of the cost
INTENT: Final = Builder(Intent)
ACCOUNT: Final = Builder(Account)
# a flat account's (no position: what most entries see), its aggregates computed once
FLAT_ACCOUNT: Final = Builder(Account, {"positions": ()})
STATS: Final = Builder(SymbolStats)
make_intent: Final = INTENT.make
make_account: Final = ACCOUNT.make
make_flat_account: Final = FLAT_ACCOUNT.make
_NONE_LEARNED: Final[Mapping[str, float]] = MappingProxyType({})  # no minimum learned yet
_NO_STATS: Final[Mapping[str, SymbolStats]] = MappingProxyType({})

# decide(intent, account, market, policy)
Decide = Callable[[Intent, Account, MarketRules, Policy], Decision]
# an entry signal: symbol, side, open, the intent's ATR, multiple and confidence (None where
# absent), time (s), take-profit R
Signal = tuple[int, int, float, float | None, float | None, float | None, float, float]


class AccountView:
    """Builds the Account decide() sees at a bar's open (equity marked at the open prices),
    reusing the immutable symbol-record and last-entry maps while they are unchanged."""

    def __init__(self, op: Any, mark: Any, syms: Sequence[str], stats: Any,
                 inverse: bool = False) -> None:
        self.op, self.mark, self.syms, self.stats = op, mark, list(syms), stats
        self.inverse = inverse  # coin-margined: the account's money is in the coin
        self._closed = -1.0  # trades closed when the symbol records were last built
        self._stats: Mapping[str, SymbolStats] = _NO_STATS
        self.last_at: dict[str, float] = {}
        self._last: Mapping[str, float] = _PROXY({})
        self._key: object = None  # the bar (and price) self._account was built for
        self._account: Account | None = None

    def entered(self, symbol: str, when: float) -> None:
        self.last_at[symbol] = when
        self._last = _PROXY(self.last_at.copy())
        self._key = None  # an entry changed the state: the next view is built afresh

    def holding(self, account: Account, pos: Any, j: int) -> Account:
        """``account`` with symbol ``j``'s position at its entry (notional, average entry,
        collateral), the values an add is sized against; the marked view values it at the
        open."""
        sym = self.syms[j]
        entry = float(pos[j, P_ENTRY])
        margin = core_pos.quote_of(float(pos[j, P_COLL]), entry, self.inverse)
        held = [Position(p.symbol, p.side, float(pos[j, P_NOTIONAL]), margin,
                         p.maintenance_margin, p.unrealised_pnl, entry=float(pos[j, P_ENTRY]))
                if p.symbol == sym else p for p in account.positions]
        return replace(account, positions=tuple(held))

    def at(self, t: int, pos: Any, acct: Any, flat: list[float], price: float = 1.0
           ) -> Account:
        """The account at bar ``t``'s open, in quote (what ``decide()`` counts in): a
        coin-margined account's coin valued at ``price``, the price of the entry's market.
        The same object again for the next entry of the bar when nothing entered in between
        (a refused entry changes nothing: the Account is an immutable value)."""
        key: object = (t, price) if self.inverse else t
        account = self._account
        if account is not None and key == self._key:
            return account
        values: list[float] = acct.tolist()
        cash, peak, day_pnl = values[A_CASH], values[A_PEAK], values[A_DAY_PNL]
        streak, closed = values[A_STREAK], values[A_TRADES]
        if closed != self._closed:  # a trade closed: the symbol records changed
            self._closed = closed
            rows: list[list[int]] = self.stats.tolist()
            if len(rows) == 1:  # one symbol (most backtests): no loop
                n, w = rows[0]
                self._stats = _PROXY({self.syms[0]: STATS.build((n, w))} if n else {})
            else:
                self._stats = _PROXY({sym: STATS.build((row[0], row[1])) for sym, row
                                                in zip(self.syms, rows, strict=True) if row[0]})
        if self.inverse:
            cash, peak, day_pnl = cash * price, peak * price, day_pnl * price
        self._key = key
        built: Account
        if _holding(flat):  # open positions, marked at this open
            positions, upnl = self._marked(t, pos, flat)
            equity = cash + upnl
            built = ACCOUNT.build((equity, None, positions, max(peak, equity), day_pnl,
                                   int(streak), self._stats, self._last, _NONE_LEARNED, None,
                                   None))
        else:  # the same Account as above with positions=() (its fields in order, less those)
            built = FLAT_ACCOUNT.build((cash, None, max(peak, cash), day_pnl, int(streak),
                                        self._stats, self._last, _NONE_LEARNED, None, None))
        self._account = built
        return built

    def _marked(self, t: int, pos: Any, flat: list[float]) -> tuple[tuple[Position, ...], float]:
        """The open positions marked at bar ``t``'s open (in quote), and their unrealised PnL."""
        inv = self.inverse
        positions = []
        upnl_total = 0.0
        for j, flag in enumerate(flat):
            if flag == 0.0:
                continue
            row: list[float] = pos[j, :P_FUND].tolist()
            side, qty, entry, notional = row[P_SIDE], row[P_QTY], row[P_ENTRY], row[P_NOTIONAL]
            coll, mmr, cum = row[P_COLL], row[P_MMR], row[P_CUM]
            px = float(self.op[t, j])
            if math.isnan(px):
                px = float(self.mark[t - 1, j]) if t > 0 else entry
            upnl = core_pos.pnl(side > 0, notional, entry, px)
            upnl_total += upnl
            now = core_pos.notional_of(qty, px, 1.0, inv)
            # maintenance of the notional at the open, as the loop's cross view values it (a
            # coin-margined position's collateral and maintenance amount are coin: at the open)
            mm = core_tiers.maintenance_margin(now, mmr, core_pos.quote_of(cum, px, inv))
            positions.append(Position(self.syms[j], _LONG if side > 0 else _SHORT, now,
                                      core_pos.quote_of(coll, px, inv), mm, upnl))
        return tuple(positions), upnl_total


def _holding(flat: list[float]) -> bool:
    """Whether any symbol holds a position (``any(flat)``, without the builtins' lookup)."""
    for side in flat:  # noqa: SIM110 - compiled: a loop over the list's items
        if side != 0.0:
            return True
    return False


class Book:
    """One market's constants for the entries: what copying a decision into the position
    arrays needs, prepared once per backtest instead of once per entry."""

    def __init__(self, market: MarketRules, policy: Policy, fee: float, candles: str = ""
                 ) -> None:
        self.market, self.fee, self.is_contract = market, fee, market.is_contract
        self.symbol, self.candles = market.symbol, candles  # the market's and its candles' names
        self.size = market.contract_size
        self.default_mmr = policy.leverage.default_mmr
        self.cross = policy.leverage.margin_mode == "cross" and market.is_contract
        self.inverse = market.inverse  # money in the coin, valued at the fill price
        self.formula = market.liquidation_formula[0]

    def open(self, pos: Any, acct: Any, exits: Any, j: int, t: int, d: Decision, tp_r: float,
             tid: int, when: float, equity: float, price: float) -> tuple[Any, ...]:
        """Copy an accepted decision into the position arrays (no arithmetic of the size here)
        and return its ledger entry (:data:`~sizeguard.backtest.engine.ENTRY_KEYS`).
        ``equity``: the account's at entry, in quote at ``price`` (the ledger keeps it in the
        settle currency)."""
        entry, notional, stop, liq_at = d.entry_price, d.notional, d.stop_price, d.liquidation_price
        side = 1.0 if d.side == _LONG else -1.0
        mmr, cum, liq = 0.0, 0.0, _NAN
        if self.is_contract:
            # the decision's liquidation price as it is, and the rate and amount it used for the
            # recomputation after funding: no second tier lookup that could pick another bracket
            rate = d.maintenance_margin_rate
            if rate is not None:
                mmr = rate
                amount = d.maintenance_amount
                cum = amount if amount is not None else 0.0
            else:
                mmr = self.default_mmr
            if liq_at is not None:
                liq = liq_at
                exits[tid, X_LIQ0] = liq
        tp = _NAN
        if stop is not None and tp_r > 0:
            tp = entry + side * tp_r * abs(entry - stop)
        entry_fee, margin, risk = core_pos.fee_on(notional, self.fee), d.margin, d.risk
        if self.inverse:
            # the fee, the collateral, the maintenance amount, margin and risk in the settle
            # currency (the coin at the fill); the quantity is the quote face value
            qty, cum = notional, core_pos.settle_of(cum, entry, True)
            entry_fee = core_pos.settle_of(entry_fee, entry, True)
            margin = core_pos.settle_of(margin, entry, True)
            risk = core_pos.settle_of(risk, entry, True)
            equity = core_pos.settle_of(equity, price, True)
        else:  # linear or spot: the settle currency is the quote; base units (worth the price)
            qty = float(d.amount) * self.size
        _ROW.pack_into(pos, j * _ROW_SIZE, side, qty, entry, notional,
                       _NAN if stop is None else stop, tp, liq, margin, mmr, cum, 0.0,
                       entry_fee, tid, t)  # pos[j] = (...), without a temporary array
        acct[A_CASH] -= entry_fee
        return (tid, d.policy, d.symbol, self.candles, d.side, t, when, entry, d.amount, qty,
                notional, margin, d.leverage, risk, stop, None if math.isnan(tp) else tp, liq_at,
                entry_fee, equity, 0, d.reasons)

    def add(self, pos: Any, acct: Any, j: int, d: Decision, tp_r: float, row: dict[str, Any]
            ) -> None:
        """Merge an accepted add into the open position: the core's average entry, the summed
        amount, notional and collateral, the add's stop for the whole position, and the
        liquidation of the merged position (the core's kernel, its tier's rate)."""
        side = float(pos[j, P_SIDE])
        n0, e0 = float(pos[j, P_NOTIONAL]), float(pos[j, P_ENTRY])
        notional = n0 + d.notional
        entry = core_pos.average_entry(n0, e0, d.notional, d.entry_price)
        inv = self.inverse
        entry_fee = core_pos.settle_of(core_pos.fee_on(d.notional, self.fee), d.entry_price, inv)
        pos[j, P_QTY] += d.notional if inv else float(d.amount) * self.size
        pos[j, P_ENTRY], pos[j, P_NOTIONAL] = entry, notional
        pos[j, P_COLL] += core_pos.settle_of(d.margin, d.entry_price, inv)
        pos[j, P_FEE_IN] += entry_fee
        acct[A_CASH] -= entry_fee
        stop = d.stop_price
        if stop is not None:
            pos[j, P_STOP] = stop
            pos[j, P_TP] = entry + side * tp_r * abs(entry - stop) if tp_r > 0 else pos[j, P_TP]
        if self.is_contract:
            tier = core_pos.tier_at(self.market, notional, entry, self.default_mmr)
            assert tier is not None  # default_mmr given
            mmr = tier.maintenance_margin_rate
            cum = core_pos.maintenance_amount_quote(self.market, tier, entry)
            pos[j, P_MMR], pos[j, P_CUM] = mmr, core_pos.settle_of(cum, entry, inv)
            if self.cross:  # the whole account's: the loop values it at every bar
                pos[j, P_LIQ] = _NAN if d.liquidation_price is None else d.liquidation_price
            else:
                pos[j, P_LIQ] = core_liq.venue_liquidation_price(
                    self.formula, side > 0.0, inv, entry, notional,
                    core_pos.quote_of(float(pos[j, P_COLL]), entry, inv), mmr, cum, self.fee)
        row.update(adds=row.get("adds", 0) + 1, entry_price=entry,
                   amount=str(Decimal(row["amount"]) + Decimal(d.amount)),
                   qty=float(pos[j, P_QTY]), notional=notional,
                   margin=float(pos[j, P_COLL]),
                   risk=core_pos.settle_of(_merged_risk(d, core_pos.quote_of(
                       row["risk"], d.entry_price, inv) + d.risk), d.entry_price, inv),
                   stop_price=stop if stop is not None
                   else row["stop_price"],
                   take_profit=None if math.isnan(pos[j, P_TP]) else float(pos[j, P_TP]),
                   liquidation_price=(float(pos[j, P_LIQ]) if self.is_contract
                                      and not math.isnan(pos[j, P_LIQ]) else None),
                   entry_fee=row["entry_fee"] + entry_fee,
                   reasons=row["reasons"] + " | " + " ".join(str(r) for r in d.reasons))


def _merged_risk(d: Decision, fallback: float) -> float:
    """The whole position's risk to its stop after an add, as the decision's trace gives it."""
    for step in d.trace:
        if step.step == "position_after_add":
            return float(dict(step.values).get("risk", fallback))
    return fallback


class Entries:
    """What the entries of one backtest produce besides the position arrays: the ledger's
    entry tuples, the skips, the decision count, the adds, the first refusals as warnings and
    (``record``) each decision with what it was taken against."""

    def __init__(self, ledger: Any, record: Callable[..., Any] | None, allow_add: bool) -> None:
        self.ledger = ledger  # engine.Ledger: entries (a list) and open_row (an add's row)
        self.allow_add = allow_add  # an entry on the held position's side is an add
        self.record = record  # engine.EntryRecord, when the entries are recorded
        self.records: list[Any] = []
        self.skips: Counter[str] = Counter()
        self.warnings: list[str] = []
        self.decisions = 0
        self.adds = 0


def run_entries(steps: Iterator[int], n: int, decide: Decide, out: Entries, view: AccountView,
                books: list[Book], policy: Policy, e_bar: list[int], e_sig: list[Signal],
                names: Sequence[str], regime: str | None, volatility: str | None,
                progress: Callable[[int, int], None] | None, pos: Any, acct: Any, exits: Any
                ) -> None:
    """Step the compiled loop (``steps``: :func:`~sizeguard.backtest.engine.walking` over the
    ``n`` bars) and decide every entry it stops at (one bar's entries in symbol order, each by
    ``decide``), until the data end. ``e_bar`` and ``e_sig``: every entry signal, in bar order
    (then symbol order); ``names``: the candles' symbols (for the warnings)."""
    cur = 0
    sides = pos[:, P_SIDE]  # a view: the open positions' sides as they are
    for t in steps:
        if t < 0:  # the end of a chunk of bars
            if progress is not None:
                progress(-1 - t, n)
            continue
        while e_bar[cur] < t:  # the loop stops at every bar with an entry signal, in order
            cur += 1
        cur = _bar_entries(t, cur, decide, out, view, books, policy, e_bar, e_sig, names,
                           regime, volatility, pos, acct, exits, sides.tolist(), out.allow_add)
    if progress is not None:
        progress(n, n)


def _bar_entries(t: int, i: int, decide: Decide, out: Entries, view: AccountView,
                 books: list[Book], policy: Policy, e_bar: list[int], e_sig: list[Signal],
                 names: Sequence[str], regime: str | None, volatility: str | None, pos: Any,
                 acct: Any, exits: Any, flat: list[float], allow_add: bool) -> int:
    """The entries at the open of bar ``t`` (from signal ``i``), each one decided by
    ``decide``; returns the first signal of a later bar. ``flat``: each symbol's side held."""
    n_ent = len(e_bar)
    skips = out.skips
    while i < n_ent and e_bar[i] == t:
        j, side, price, a, am, conf, when, tp_r = e_sig[i]
        i += 1
        held = flat[j]
        adding = held != 0.0
        if math.isnan(price) or (adding and not (allow_add and side * held > 0.0)):
            continue  # in position and not adding to it: counted by the loop
        book = books[j]
        symbol = book.symbol
        if not book.is_contract and side < 0:
            skips["SPOT_NO_SHORT"] += 1
            continue
        account = view.at(t, pos, acct, flat, price)
        if adding:
            account = view.holding(account, pos, j)
        if account.equity <= 0.0:
            skips["NO_EQUITY"] += 1
            continue
        # Intent(symbol, side, price, atr=a, atr_mult=am, confidence=conf, regime=regime,
        # volatility=volatility, time=when): every field, in order
        intent = INTENT.build((symbol, _LONG if side > 0 else _SHORT, price, None, None, a, am,
                               None, conf, regime, volatility, None, None, when))
        try:
            d = decide(intent, account, book.market, policy)
        except InvalidInput as exc:  # e.g. an ATR stop below zero on a bad candle
            skips["INVALID_INPUT"] += 1
            if len(out.warnings) < 10:
                out.warnings.append(f"bar {t} ({names[j]}): {exc}")
            continue
        out.decisions += 1
        tid = -1
        if d.accepted and adding:
            tid = int(pos[j, P_TRADE])
            book.add(pos, acct, j, d, tp_r, out.ledger.open_row(tid))
            out.adds += 1
            view.entered(symbol, when)
        elif d.accepted:
            entered: list[tuple[Any, ...]] = out.ledger.entries
            tid = len(entered)
            entered.append(book.open(pos, acct, exits, j, t, d, tp_r, tid, when, account.equity,
                                     price))
            view.entered(symbol, when)
            flat[j] = side
        else:
            reasons = d.reasons
            skips[str(reasons[-1]) if reasons else "SKIPPED"] += 1
        if out.record is not None:
            out.records.append(out.record(t, symbol, intent, account, d, tid))
    return i
