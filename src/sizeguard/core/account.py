"""The account state a decision is taken against, supplied by the caller (or the state store)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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

    @property
    def margin_in_use(self) -> float:
        return sum(p.margin for p in self.positions)

    @property
    def available_margin(self) -> float:
        if self.available is not None:
            return self.available
        return self.equity - self.margin_in_use

    @property
    def gross_exposure(self) -> float:
        return sum(abs(p.notional) for p in self.positions)

    def symbol_exposure(self, symbol: str) -> float:
        return sum(abs(p.notional) for p in self.positions if p.symbol == symbol)

    def has_position(self, symbol: str) -> bool:
        return any(p.symbol == symbol for p in self.positions)

    @property
    def drawdown(self) -> float:
        peak = self.peak_equity if self.peak_equity is not None else self.equity
        peak = max(peak, self.equity)
        return 1.0 - self.equity / peak if peak > 0 else 0.0
