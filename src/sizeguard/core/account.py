"""The account state a decision is taken against, supplied by the caller (or the state store)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType


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
        return new

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
