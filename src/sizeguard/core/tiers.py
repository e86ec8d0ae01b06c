"""Leverage tiers (risk limits): max leverage and maintenance margin by position notional.

Boundary rule: a tier covers ``min_notional <= notional < max_notional``. A notional exactly on a
boundary therefore belongs to the *higher* tier (lower max leverage, higher maintenance rate),
which is the conservative reading and the one freqtrade applies to Binance's brackets. The
maintenance amount (Binance's ``cum``) makes the maintenance margin continuous at the
boundaries: ``maintenance = notional * rate - amount``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sizeguard.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Tier:
    tier: int
    min_notional: float
    max_notional: float
    maintenance_margin_rate: float
    max_leverage: float
    maintenance_amount: float = 0.0

    def maintenance_margin(self, notional: float) -> float:
        return notional * self.maintenance_margin_rate - self.maintenance_amount


def tier_index(min_notionals: Sequence[float], notional: float) -> int:
    """Index of the tier covering ``notional`` (half-open intervals), or -1 below the first."""
    lo, hi = 0, len(min_notionals)
    while lo < hi:  # last tier whose min <= notional
        mid = (lo + hi) // 2
        if min_notionals[mid] <= notional:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def find_tier(tiers: Sequence[Tier], notional: float) -> Tier | None:
    """The tier for ``notional``; None when the table is empty or the notional is above its top."""
    if not tiers:
        return None
    i = tier_index([t.min_notional for t in tiers], notional)
    if i < 0:
        return tiers[0]
    tier = tiers[i]
    if notional >= tier.max_notional and i == len(tiers) - 1:
        return None
    return tier


def _f(value: Any, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(field, value, "must be a number") from None
    if math.isnan(number):
        raise InvalidInput(field, value, "must be a number")
    return number


def tiers_from_ccxt(rows: Iterable[Mapping[str, Any]], symbol: str = "") -> tuple[Tier, ...]:
    """Tiers from ccxt's unified ``fetch_leverage_tiers`` rows (maintenance amount from info.cum).

    Validated: contiguous, increasing, rates in [0, 1), leverage >= 1.
    """
    tiers: list[Tier] = []
    for i, row in enumerate(rows):
        where = f"tiers[{symbol}][{i}]"
        info = row.get("info") or {}
        cum = info.get("cum") if isinstance(info, Mapping) else None
        max_n = row.get("maxNotional")
        tier = Tier(
            tier=int(_f(row.get("tier", i + 1), f"{where}.tier")),
            min_notional=_f(row.get("minNotional", 0.0), f"{where}.minNotional"),
            max_notional=math.inf if max_n is None else _f(max_n, f"{where}.maxNotional"),
            maintenance_margin_rate=_f(row.get("maintenanceMarginRate"),
                                       f"{where}.maintenanceMarginRate"),
            max_leverage=_f(row.get("maxLeverage"), f"{where}.maxLeverage"),
            maintenance_amount=0.0 if cum in (None, "") else _f(cum, f"{where}.info.cum"),
        )
        tiers.append(tier)
    return validate_tiers(tiers, symbol)


def validate_tiers(tiers: Sequence[Tier], symbol: str = "") -> tuple[Tier, ...]:
    ordered = sorted(tiers, key=lambda t: t.min_notional)
    for i, t in enumerate(ordered):
        where = f"tiers[{symbol}][{i}]"
        if not 0.0 <= t.maintenance_margin_rate < 1.0:
            raise InvalidInput(f"{where}.maintenanceMarginRate", t.maintenance_margin_rate,
                               "must be in [0, 1)")
        if not t.max_leverage >= 1.0:
            raise InvalidInput(f"{where}.maxLeverage", t.max_leverage, "must be >= 1")
        if not t.max_notional > t.min_notional:
            raise InvalidInput(f"{where}.maxNotional", t.max_notional, "must exceed minNotional")
        if i and not math.isclose(ordered[i - 1].max_notional, t.min_notional, rel_tol=1e-9):
            raise InvalidInput(f"{where}.minNotional", t.min_notional,
                               f"tiers must be contiguous (previous max {ordered[i - 1].max_notional})")
    return tuple(ordered)


def tiers_from_kraken_margin_levels(
    levels: Sequence[Mapping[str, Any]], unit_value: float = 1.0
) -> tuple[Tier, ...]:
    """Tiers from Kraken Futures ``info.marginLevels``.

    Thresholds are ``numNonContractUnits`` (USD notional, linear) or ``contracts`` (inverse;
    ``unit_value`` converts contracts to USD). Max leverage is 1 / initial margin. Kraken gives no
    maintenance amount; one is derived so that maintenance margin is continuous at each
    threshold, as Binance's ``cum`` is.
    """
    rows: list[tuple[float, float, float]] = []
    for i, level in enumerate(levels):
        raw = level.get("numNonContractUnits", level.get("contracts", 0))
        threshold = _f(raw, f"marginLevels[{i}].threshold") * unit_value
        im = _f(level.get("initialMargin"), f"marginLevels[{i}].initialMargin")
        mm = _f(level.get("maintenanceMargin"), f"marginLevels[{i}].maintenanceMargin")
        if im <= 0:
            raise InvalidInput(f"marginLevels[{i}].initialMargin", im, "must be > 0")
        rows.append((threshold, im, mm))
    rows.sort()
    tiers: list[Tier] = []
    amount = 0.0
    for i, (threshold, im, mm) in enumerate(rows):
        if i:
            amount += threshold * (mm - rows[i - 1][2])
        upper = rows[i + 1][0] if i + 1 < len(rows) else math.inf
        tiers.append(Tier(i + 1, threshold, upper, mm, 1.0 / im, amount))
    return validate_tiers(tiers)
