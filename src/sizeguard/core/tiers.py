"""Leverage tiers (risk limits): max leverage and maintenance margin by position notional.

Boundary rule: a tier covers ``min_notional <= notional < max_notional``. A notional exactly on a
boundary therefore belongs to the *higher* tier (lower max leverage, higher maintenance rate),
which is the conservative reading and the one freqtrade applies to Binance's brackets. The
maintenance amount (Binance's ``cum``) makes the maintenance margin continuous at the
boundaries: ``maintenance = notional * rate - amount``. Binance publishes how the amount is
built: ``amount[n] = floor[n] * (rate[n] - rate[n-1]) + amount[n-1]`` ("How to Calculate
Liquidation Price of COIN-M Futures Contracts", binance.com/en/support/faq/
ceccfcfb4e3a45e3b48b0b1bb1a8ae46), so with rising rates the maintenance margin of any notional
is also the largest ``notional * rate[i] - amount[i]`` over all tiers.

Units: ``notional`` is in the table's own unit. ccxt's tables for coin-margined (inverse)
contracts are in the settle coin (Binance COIN-M brackets are in BTC); Kraken Futures' margin
levels are converted to USD here. :mod:`sizeguard.core.decide` converts before a lookup.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sizeguard.errors import InvalidInput


def maintenance_margin(notional: float, rate: float, amount: float) -> float:
    """Maintenance margin of ``notional`` in a tier of maintenance ``rate`` and maintenance
    ``amount`` (Binance's ``cum``): ``notional x rate - amount``, in the notional's unit (a
    float kernel: numba compiles it unchanged)."""
    return notional * rate - amount


@dataclass(frozen=True, slots=True)
class Tier:
    tier: int
    min_notional: float
    max_notional: float
    maintenance_margin_rate: float
    max_leverage: float
    maintenance_amount: float = 0.0

    def maintenance_margin(self, notional: float) -> float:
        return maintenance_margin(notional, self.maintenance_margin_rate, self.maintenance_amount)


def tier_index(min_notionals: Sequence[float], notional: float) -> int:
    """Index of the tier covering ``notional`` (half-open intervals), or -1 below the first."""
    return bisect_right(min_notionals, notional) - 1  # the last tier whose min <= notional


def find_tier(tiers: Sequence[Tier], notional: float,
              min_notionals: Sequence[float] | None = None) -> Tier | None:
    """The tier for ``notional``; None when the table is empty or the notional is above its top.

    ``min_notionals`` (the tiers' floors, ascending) may be passed precomputed; the decision
    pipeline keeps them on :class:`~sizeguard.core.market.MarketRules` so that a lookup is one
    bisection and no list is built per call.
    """
    if not tiers:
        return None
    floors = min_notionals if min_notionals is not None else [t.min_notional for t in tiers]
    i = bisect_right(floors, notional) - 1
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
    """Tiers from ccxt's unified ``fetch_leverage_tiers`` rows (maintenance amount from info.cum,
    or Bybit's info.mmDeduction).

    Validated: contiguous, increasing, rates in [0, 1), leverage >= 1.
    """
    tiers: list[Tier] = []
    for i, row in enumerate(rows):
        where = f"tiers[{symbol}][{i}]"
        info = row.get("info") or {}
        # Binance's cum; Bybit's risk-limit rows call the same amount mmDeduction
        cum = (info.get("cum", info.get("mmDeduction"))
               if isinstance(info, Mapping) else None)
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
    ``unit_value`` converts contracts to USD). Max leverage is 1 / initial margin of the level.

    Kraken publishes the levels as position-size bands with an IM and an MM percentage each
    (support.kraken.com articles 360022632452 "Multi-Collateral Futures Margin Schedule &
    Maximum Leverage" and 15579128794772 "Inverse Futures Margin Schedule & Maximum Leverage";
    the API's ``marginLevels`` carry the same numbers, docs.kraken.com get-instruments). It gives
    no maintenance amount. We charge each level's rate on the part of the position inside that
    level (the incremental reading), which is exactly "notional x rate - amount" with the amount
    built the way Binance builds ``cum``: maintenance margin is then continuous at every
    threshold, and the same liquidation kernels serve both exchanges. The pages we could consult
    show the bands but no worked example of a position spanning two levels; if Kraken charged
    the whole position at its level's rate, maintenance just above a threshold would be higher
    than computed here (see docs/leverage.md, "open questions").
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
