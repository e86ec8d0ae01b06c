"""Margin, liquidation price, and the leverage that keeps a stop safely inside liquidation.

Formulas (isolated and cross, one-way mode, fees and funding ignored), from Binance's published
liquidation-price formulas: "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
(binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93) for linear contracts and "How to
Calculate Liquidation Price of COIN-M Futures Contracts"
(binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46) for inverse ones:

* linear:  ``LP = (C + cum - s*Q*EP) / (Q*mmr - s*Q)``
* inverse: ``LP = (N*mmr + s*N) / (C/EP + cum/EP + s*N/EP)`` (collateral in coin, written here
  with ``C`` and ``cum`` valued in quote at the entry price)

with ``s`` = +1 long / -1 short, ``Q`` base quantity, ``N`` notional in quote, ``EP`` entry,
``mmr`` the tier's maintenance margin rate and ``cum`` its maintenance amount. ``C`` is the
collateral backing the position: the isolated margin ``N / L``, or for cross margin the wallet
balance minus the other positions' maintenance margin plus their unrealised PnL (Binance's
``WB - TMM1 + UPNL1``). ``mmr`` and ``cum`` are those of the bracket the notional is in *at*
the liquidation price; the COIN-M FAQ says to recompute with that bracket when it differs from the
entry bracket (the caller, :meth:`sizeguard.core.decide.Context.liquidation`, does).

Worked by hand: entry 100, 10x isolated, mmr 0.004, cum 0, long:
``100 * (1 - 1/10) / (1 - 0.004) = 90.3614``; short: ``100 * (1 + 1/10) / 1.004 = 109.5618``.

Dividing by ``N`` turns every case into one "coverage" condition: the position survives a move
of ``D`` (a fraction of entry) while ``(C + cum) / N >= k(D)``. :func:`coverage_needed` gives
``k``; the isolated safe leverage is then ``1 / (k - cum/N)``. These kernels use floats only, so
numba compiles them unchanged for the backtest.
"""

from __future__ import annotations

import math


def liquidation_price(
    is_long: bool, inverse: bool, entry: float, notional: float, collateral: float,
    mmr: float, maintenance_amount: float,
) -> float:
    """Liquidation price; 0.0 for a long that cannot be liquidated, inf for such a short."""
    cover = (collateral + maintenance_amount) / notional
    if inverse:
        if is_long:
            return entry * (1.0 + mmr) / (1.0 + cover)
        denom = 1.0 - cover
        return entry * (1.0 - mmr) / denom if denom > 0.0 else math.inf
    if is_long:
        return max(0.0, entry * (1.0 - cover) / (1.0 - mmr))
    return entry * (1.0 + cover) / (1.0 + mmr)


def isolated_liquidation_price(
    is_long: bool, inverse: bool, entry: float, leverage: float, mmr: float,
    maintenance_amount: float, notional: float,
) -> float:
    return liquidation_price(is_long, inverse, entry, notional, notional / leverage, mmr,
                             maintenance_amount)


def coverage_needed(is_long: bool, inverse: bool, distance: float, mmr: float) -> float:
    """``k``: the (collateral + cum) / notional a position needs to survive a ``distance`` move."""
    if inverse:
        if is_long:
            return (1.0 + mmr) / (1.0 - distance) - 1.0 if distance < 1.0 else math.inf
        return 1.0 - (1.0 - mmr) / (1.0 + distance)
    if is_long:
        return 1.0 - (1.0 - distance) * (1.0 - mmr)
    return (1.0 + distance) * (1.0 + mmr) - 1.0


def max_safe_leverage(
    is_long: bool, inverse: bool, distance: float, mmr: float, maintenance_amount: float,
    notional: float,
) -> float:
    """Highest isolated leverage whose liquidation lies at least ``distance`` from entry
    (inf when any leverage is safe, below 1 when none is)."""
    need = coverage_needed(is_long, inverse, distance, mmr) - maintenance_amount / notional
    if need <= 0.0:
        return math.inf
    return 1.0 / need


def max_safe_notional_cross(
    is_long: bool, inverse: bool, distance: float, mmr: float, maintenance_amount: float,
    collateral: float,
) -> float:
    """Largest cross-margin notional whose liquidation lies at least ``distance`` from entry."""
    need = coverage_needed(is_long, inverse, distance, mmr)
    if need <= 0.0:
        return math.inf
    return max(0.0, (collateral + maintenance_amount) / need)


def liquidation_distance(is_long: bool, entry: float, liq: float) -> float:
    """Adverse move from entry to liquidation as a fraction of entry (inf when none)."""
    if is_long:
        return (entry - liq) / entry if liq > 0.0 else 1.0
    return (liq - entry) / entry if math.isfinite(liq) else math.inf
