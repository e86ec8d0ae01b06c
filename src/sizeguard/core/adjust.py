"""Graded multipliers and the clamp (DESIGN step 4).

``clamp(base x regime x volatility x confidence, min, max)``, then x symbol performance x losing
streak x drawdown: the protective multipliers act after the clamp so they can go below the floor.
The clamp bounds fractions; a base in money (fixed margin or notional) is not clamped.
"""

from __future__ import annotations

from collections.abc import Mapping

from sizeguard.core.account import Account
from sizeguard.core.intent import Intent
from sizeguard.core.policy import Adjust, Tiers
from sizeguard.errors import InvalidInput


def at_least(tiers: Tiers, x: float) -> float:
    """Multiplier of the highest threshold <= x (1 when none applies)."""
    best_t, best_m = -1.0, 1.0
    for threshold, mult in tiers:
        if threshold <= x and threshold > best_t:
            best_t, best_m = threshold, mult
    return best_m


def below(tiers: Tiers, x: float) -> float:
    """Multiplier of the lowest threshold > x (1 when none applies)."""
    best_t, best_m = float("inf"), 1.0
    for threshold, mult in tiers:
        if x < threshold < best_t:
            best_t, best_m = threshold, mult
    return best_m


def _named(table: Mapping[str, float], name: str | None, field: str) -> float:
    if name is None:
        return 1.0
    key = name.lower()
    if not table:
        return 1.0
    if key not in table:
        raise InvalidInput(field, name, f"not in the policy's {field} table "
                           f"({', '.join(sorted(table))})")
    return table[key]


class AdjustView:
    """An :class:`Adjust`'s values, read once (the policy is frozen; ``core.decide.PolicyView``
    keeps one per policy object)."""

    def __init__(self, a: Adjust) -> None:
        self.adjust = a
        self.min = a.min
        self.max = a.max
        self.confidence = a.confidence
        self.regime = a.regime
        self.volatility = a.volatility
        self.win_rate = a.win_rate
        self.win_rate_min_trades = a.win_rate_min_trades
        self.losing_streak = a.losing_streak
        self.drawdown = a.drawdown


# The names of the values adjust returns, in order (the trace's ``adjust`` step).
ADJUST_KEYS = ("base", "regime", "volatility", "confidence", "before_clamp", "clamped",
               "symbol_performance", "losing_streak", "drawdown", "adjusted")


def adjust(base: float, adjust: Adjust | AdjustView, intent: Intent, account: Account, *,
           clamp: bool = True) -> tuple[float, tuple[float, ...]]:
    """The adjusted base and the values :data:`ADJUST_KEYS` names (for the trace): the base,
    each multiplier, the value before and after the clamp, and the result. ``clamp=False`` for
    a base in money: ``a.min``/``a.max`` bound fractions only (see :class:`Adjust`)."""
    a = adjust if isinstance(adjust, AdjustView) else AdjustView(adjust)
    regime = _named(a.regime, intent.regime, "regime")
    vol = _named(a.volatility, intent.volatility, "volatility")
    conf = at_least(a.confidence, intent.confidence) if intent.confidence is not None else 1.0
    value = base * regime * vol * conf
    clamped = value
    if clamp and a.min > 0 and clamped < a.min:
        clamped = a.min
    if clamp and a.max > 0 and clamped > a.max:
        clamped = a.max
    perf = 1.0
    if a.win_rate:  # an empty table is 1 whatever the record
        stats = account.symbol_stats.get(intent.symbol)
        if stats is not None and stats.trades >= a.win_rate_min_trades:
            perf = below(a.win_rate, stats.win_rate)
    streak = at_least(a.losing_streak, float(account.losing_streak))
    dd = at_least(a.drawdown, account.drawdown) if a.drawdown else 1.0
    out = clamped * perf * streak * dd
    return out, (base, regime, vol, conf, value, clamped, perf, streak, dd, out)

