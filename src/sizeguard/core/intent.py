"""Intent: what the bot wants to do. Exactly one way of giving the stop (or none)."""

from __future__ import annotations

from dataclasses import dataclass

LONG = "long"
SHORT = "short"


@dataclass(frozen=True, slots=True)
class Intent:
    """A wish to open a position.

    The stop is given at most one way: ``stop`` (a price), ``stop_pct`` (percent of entry, 2.5 =
    2.5%), ``atr`` (times ``atr_mult``, else the policy's multiple) or ``stop_roe`` (percent loss
    on margin: the distance is ``stop_roe / leverage``). ``atr`` alone with a stop given another
    way only feeds the volatility-target model.
    """

    symbol: str
    side: str
    price: float
    stop: float | None = None
    stop_pct: float | None = None
    atr: float | None = None
    atr_mult: float | None = None
    stop_roe: float | None = None
    confidence: float | None = None
    regime: str | None = None
    volatility: str | None = None
    leverage: float | None = None
    take_profit: float | None = None
    time: float | None = None  # epoch seconds; needed only for cooldowns

    @property
    def is_long(self) -> bool:
        return self.side == LONG
