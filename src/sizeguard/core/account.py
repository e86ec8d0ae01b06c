"""The account state a decision is taken against, supplied by the caller (or the state store)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final

from sizeguard.core.position import merged


@dataclass(frozen=True, slots=True)
class Position:
    """An open position (or a reservation held for a pending decision). Money in quote."""

    symbol: str
    side: str
    notional: float
    margin: float
    maintenance_margin: float = 0.0
    unrealised_pnl: float = 0.0
    entry: float = 0.0  # average entry price; 0 = unknown (an add then values it at the intent)


@dataclass(frozen=True, slots=True)
class SymbolStats:
    trades: int = 0
    wins: int = 0

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0


def _empty_stats() -> Mapping[str, SymbolStats]:
    return MappingProxyType({})


def _empty_floats() -> Mapping[str, float]:
    return MappingProxyType({})


# The positions an add joins, merged in order (Account.held_fold): notional, average entry,
# margin, and how many were merged (0: none)
Fold = tuple[float, float, float, int]
_NONE_HELD: Final[Fold] = (0.0, 0.0, 0.0, 0)


def _grow(fold: Fold, p: Position) -> Fold | None:
    """``fold`` joined by ``p`` (of its symbol and side), with the operations, in the order,
    of the walk in core.decide (``_held_position``) over positions of known entry: a position
    of zero notional left out, the first one's values as they are, the others added with
    :func:`~sizeguard.core.position.merged`. None where the walk must be taken: an
    unknown entry (valued at the intent's price), a value not a float, an error."""
    n, margin, entry = p.notional, p.margin, p.entry
    if type(n) is not float or type(margin) is not float or type(entry) is not float:
        return None
    if n == 0:
        return fold
    if not entry > 0:
        return None
    n = abs(n)
    if not fold[3]:
        return (n, entry, margin, 1)
    try:
        notional, avg, held_margin = merged(fold[0], fold[1], fold[2], n, entry, margin)
        return (notional, avg, held_margin, fold[3] + 1)
    except ArithmeticError:  # the walk raises it again
        return None


def _add_sums(sums: tuple[float, float, bool], p: Position) -> tuple[float, float, bool]:
    """``sums`` (maintenance margin, unrealised PnL, all floats) with ``p``'s added."""
    mm, upnl = p.maintenance_margin, p.unrealised_pnl
    if not sums[2] or type(mm) is not float or type(upnl) is not float:
        return (0.0, 0.0, False)
    return (sums[0] + mm, sums[1] + upnl, True)


@dataclass(frozen=True, slots=True)
class Account:
    """Equity and everything the gates, multipliers and limits look at. Money in quote currency.

    ``available`` defaults to equity minus the margin of ``positions``. ``wallet_balance`` is the
    collateral for cross-margin liquidation (defaults to equity minus unrealised PnL).
    ``min_cost`` holds minimums learned from exchange rejections, by symbol.
    """

    equity: float
    available: float | None = None
    positions: tuple[Position, ...] = ()
    peak_equity: float | None = None
    realised_pnl_today: float = 0.0
    losing_streak: int = 0
    symbol_stats: Mapping[str, SymbolStats] = field(default_factory=_empty_stats)
    last_trade_at: Mapping[str, float] = field(default_factory=_empty_floats)
    min_cost: Mapping[str, float] = field(default_factory=_empty_floats)
    wallet_balance: float | None = None
    halted: str | None = None  # the account's admin halted trading (the reason); None: open
    # Aggregates of ``positions``, computed once: the gates, caps and margin budget read them
    # several times per decision, and a shared account may carry dozens of reservations.
    _margin_in_use: float = field(init=False, repr=False, compare=False, default=0.0)
    _gross: float = field(init=False, repr=False, compare=False, default=0.0)
    _by_symbol: dict[str, float] = field(init=False, repr=False, compare=False,
                                         default_factory=dict)
    _positions_suspect: bool = field(init=False, repr=False, compare=False, default=False)
    # held_fold's answers by (symbol, side), computed when first asked (None: not yet) and
    # grown by with_position, so an add's cost does not grow with the reservations it joins
    _folds: dict[tuple[str, str], Fold | None] | None = field(
        init=False, repr=False, compare=False, default=None)
    # held_sums's answer (None: not asked yet), grown by with_position
    _sums: tuple[float, float, bool] | None = field(init=False, repr=False, compare=False,
                                                    default=None)

    def __post_init__(self) -> None:
        self._aggregate(self.positions, 0.0, 0.0, {}, False)

    def _aggregate(self, positions: tuple[Position, ...], margin: float, gross: float,
                   by_symbol: dict[str, float], suspect: bool) -> None:
        """Set the aggregates: those given, grown by ``positions`` (in order)."""
        for p in positions:
            try:
                n = abs(p.notional)
                margin += p.margin
                gross += n
                by_symbol[p.symbol] = by_symbol.get(p.symbol, 0.0) + n
                # `not x >= 0` is also true for NaN: validation then names the field
                if not (p.margin >= 0 and p.maintenance_margin >= 0) or not math.isfinite(
                        n + p.margin + p.maintenance_margin + p.unrealised_pnl):
                    suspect = True
            except TypeError:  # not a number: validation names the field
                suspect = True
        object.__setattr__(self, "_margin_in_use", margin)
        object.__setattr__(self, "_gross", gross)
        object.__setattr__(self, "_by_symbol", by_symbol)
        object.__setattr__(self, "_positions_suspect", suspect)

    def with_position(self, position: Position) -> Account:
        """This account holding ``position`` too (last): equal to
        ``dataclasses.replace(self, positions=(*self.positions, position))``, aggregates
        included, without recomputing them over every position it already holds (a batch of
        reservations adds one at a time to an account holding dozens)."""
        new = object.__new__(Account)
        for name in _FIELDS:
            object.__setattr__(new, name, getattr(self, name))
        object.__setattr__(new, "positions", (*self.positions, position))
        new._aggregate((position,), self._margin_in_use, self._gross, dict(self._by_symbol),
                       self._positions_suspect)
        folds = self._folds
        grown: dict[tuple[str, str], Fold | None] | None = None
        if folds:  # those asked of this account, grown by the position (the others: if asked)
            grown = dict(folds)
            try:
                key = (position.symbol, position.side)
                fold = grown.get(key)
                if fold is not None:  # (None: not asked, or walked: so it stays)
                    grown[key] = _grow(fold, position)
            except TypeError:  # an unhashable symbol: nothing kept, asked again if needed
                grown = None
        object.__setattr__(new, "_folds", grown)
        sums = self._sums
        if sums is not None:
            sums = _add_sums(sums, position)
        object.__setattr__(new, "_sums", sums)
        return new

    def holding(self, other: Account, **changes: Any) -> Account:
        """``dataclasses.replace(self, positions=other.positions, **changes)`` (``changes``:
        fields other than the positions), ``other``'s aggregates (and the held folds and sums
        asked of it, which only the positions make) kept instead of recomputed: a bot's view
        of a shared account is the account's numbers over the bot's own positions, decided on
        again and again."""
        if "positions" in changes or not _FIELD_SET.issuperset(changes):
            raise TypeError(f"holding: not a field it may change: {sorted(changes)}")
        new = object.__new__(Account)
        for name in _FIELDS:
            object.__setattr__(new, name, changes[name] if name in changes
                               else getattr(self, name))
        object.__setattr__(new, "positions", other.positions)
        if other._folds is None:  # one dict for both: what either is asked, the other knows
            object.__setattr__(other, "_folds", {})
        for name in _DERIVED:  # shared: with_position grows a copy, held_fold only adds
            object.__setattr__(new, name, getattr(other, name))
        return new

    def held_sums(self) -> tuple[float, float] | None:
        """The maintenance margin and the unrealised PnL of every position (and reservation),
        each added in order from 0.0 (as a cross position's collateral counts them); None
        when one is not a float (the caller adds them itself). Computed once per account,
        grown by :meth:`with_position`."""
        sums = self._sums
        if sums is None:
            sums = (0.0, 0.0, True)
            for p in self.positions:
                sums = _add_sums(sums, p)
            object.__setattr__(self, "_sums", sums)
        return (sums[0], sums[1]) if sums[2] else None

    def held_fold(self, symbol: str, side: str) -> Fold | None:
        """The positions (and reservations) on ``symbol`` and ``side`` merged, in order, as an
        add joins them: (notional, average entry, margin, how many; (0.0, 0.0, 0.0, 0) when
        none of non-zero notional is held). None when one has an unknown entry (the decision
        values it at the intent's price) or a value that is not a float: the caller walks the
        positions itself. Computed once per account, grown by :meth:`with_position`."""
        folds = self._folds
        if folds is None:
            folds = {}
            object.__setattr__(self, "_folds", folds)
        key = (symbol, side)
        if key in folds:
            return folds[key]
        fold: Fold | None = _NONE_HELD
        for p in self.positions:
            if fold is not None and p.symbol == symbol and p.side == side:
                fold = _grow(fold, p)
        folds[key] = fold
        return fold

    @property
    def positions_suspect(self) -> bool:
        """True when some position has a non-finite or negative field (validation names it)."""
        return self._positions_suspect

    @property
    def margin_in_use(self) -> float:
        return self._margin_in_use

    @property
    def available_margin(self) -> float:
        if self.available is not None:
            return self.available
        return self.equity - self._margin_in_use

    @property
    def gross_exposure(self) -> float:
        return self._gross

    def symbol_exposure(self, symbol: str) -> float:
        return self._by_symbol.get(symbol, 0.0)

    def has_position(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    def side_symbols(self, side: str) -> frozenset[str]:
        """Symbols with a position (or reservation) on ``side``: what the side caps count."""
        return frozenset(p.symbol for p in self.positions if p.side == side)

    def side_exposure(self, side: str) -> float:
        """Gross notional of the positions (and reservations) on ``side``."""
        return sum(abs(p.notional) for p in self.positions if p.side == side)

    def group_exposure(self, symbols: frozenset[str] | tuple[str, ...]) -> float:
        """Gross notional of the positions on ``symbols``."""
        return sum(self._by_symbol.get(s, 0.0) for s in set(symbols))

    def group_symbols(self, symbols: frozenset[str] | tuple[str, ...]) -> frozenset[str]:
        """The members of ``symbols`` with a position (or reservation) open."""
        return frozenset(s for s in symbols if s in self._by_symbol)

    @property
    def drawdown(self) -> float:
        peak = self.peak_equity if self.peak_equity is not None else self.equity
        peak = max(peak, self.equity)
        return 1.0 - self.equity / peak if peak > 0 else 0.0


# the fields an Account is made of (with_position copies them; its aggregates it grows)
_FIELDS = tuple(f.name for f in fields(Account) if f.init)
_FIELD_SET = frozenset(_FIELDS)
# what the positions make (holding keeps them)
_DERIVED = tuple(f.name for f in fields(Account) if not f.init)
