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

Other venues (:data:`BYBIT`, :data:`OKX`) publish other formulas; the ``venue_*`` kernels
choose by an integer formula id (numba compiles the dispatch), each formula with its source
next to it; the Binance-named functions are those kernels with ``BINANCE``.
"""

from __future__ import annotations

import math

# Formula ids, plain ints so numba compiles the dispatch. The market's exchange picks one
# (``MarketRules.liquidation_formula``); a venue without a published formula we know is judged
# by Binance's and the decision says so (``LIQUIDATION_FORMULA_ASSUMED``).
BINANCE = 0
BYBIT = 1
OKX = 2


def formula_name(formula: int, inverse: bool) -> str:
    """The name the trace gives a formula: ``binance-usdm``, ``bybit-inverse``, ``okx-linear``."""
    if formula == BYBIT:
        return "bybit-inverse" if inverse else "bybit-linear"
    if formula == OKX:
        return "okx-inverse" if inverse else "okx-linear"
    return "binance-coinm" if inverse else "binance-usdm"


def venue_liquidation_price(
    formula: int, is_long: bool, inverse: bool, entry: float, notional: float,
    collateral: float, mmr: float, maintenance_amount: float, fee: float,
) -> float:
    """Liquidation price by the venue's formula; 0.0 for a long that cannot be liquidated, inf
    for such a short. ``fee`` (the taker rate) counts in OKX's formula only. One leaf function
    (numba compiles it without resolving calls); each formula's source is next to it.
    ``cover = (collateral + maintenance amount) / notional``, all in quote at entry."""
    cover = (collateral + maintenance_amount) / notional
    if formula == BYBIT:
        # Bybit, isolated, fees left out: the maintenance margin is that of the position value
        # at entry (``value x MMR - deduction``), not at the liquidation price as Binance's.
        # Linear, "Liquidation Price (USDT Contract)",
        # testnet.bybit.com/en-US/help-center/s/article/Liquidation-Price-USDT-Contract:
        #   LP = EP -/+ (IM - MM) / size -/+ extra / size  =  EP (1 -/+ (cover - MMR))
        # Inverse, "Liquidation Price Calculation under Isolated Mode (Unified Trading
        # Account)", testnet.bybit.com/ar-SA/help-center/article/
        # Liquidation-Price-Calculation-under-Isolated-Mode-Unified-Trading-Account:
        #   LP = Qty / (value +/- (IM - MM)), value = Qty / EP  =  EP / (1 +/- (cover - MMR))
        if inverse:
            if is_long:
                return entry / (1.0 + cover - mmr)
            denom = 1.0 - cover + mmr
            return entry / denom if denom > 0.0 else math.inf
        if is_long:
            return max(0.0, entry * (1.0 - cover + mmr))
        return entry * (1.0 + cover - mmr)
    if formula == OKX:
        # OKX, isolated: liquidated when the margin ratio (margin + uPnL) / (face value x
        # contracts [x or /] mark x (MMR + taker fee)) reaches 100% ("When would my order be
        # liquidated", okx.com/learn/when-would-my-order-be-liquidated, and OKX's margin-ratio
        # help for isolated futures and perpetuals). Maintenance and the closing fee are both
        # charged on the notional at the liquidation price: Binance's form below with the rate
        # MMR + fee (OKX's tiers have no maintenance amount; one given counts as Binance's cum).
        mmr = mmr + fee
    # Binance (see the module docstring): maintenance of the notional at the liquidation price
    if inverse:
        if is_long:
            return entry * (1.0 + mmr) / (1.0 + cover)
        denom = 1.0 - cover
        return entry * (1.0 - mmr) / denom if denom > 0.0 else math.inf
    if is_long:
        return max(0.0, entry * (1.0 - cover) / (1.0 - mmr))
    return entry * (1.0 + cover) / (1.0 + mmr)


def liquidation_price(
    is_long: bool, inverse: bool, entry: float, notional: float, collateral: float,
    mmr: float, maintenance_amount: float,
) -> float:
    """Binance's liquidation price; 0.0 for a long that cannot be liquidated, inf for such a
    short."""
    return venue_liquidation_price(BINANCE, is_long, inverse, entry, notional, collateral, mmr,
                                   maintenance_amount, 0.0)


def isolated_liquidation_price(
    is_long: bool, inverse: bool, entry: float, leverage: float, mmr: float,
    maintenance_amount: float, notional: float,
) -> float:
    return liquidation_price(is_long, inverse, entry, notional, notional / leverage, mmr,
                             maintenance_amount)


def venue_coverage_needed(
    formula: int, is_long: bool, inverse: bool, distance: float, mmr: float, fee: float,
) -> float:
    """``k``: the (collateral + cum) / notional a position needs to survive a ``distance`` move,
    by the venue's formula (solved from :func:`venue_liquidation_price` for ``LP`` at the move).
    Bybit: ``D + MMR`` (linear), ``1 / (1 - D) - 1 + MMR`` (inverse long),
    ``1 + MMR - 1 / (1 + D)`` (inverse short); OKX: Binance's with ``MMR + fee``."""
    if formula == BYBIT:
        if inverse:
            if is_long:
                return 1.0 / (1.0 - distance) - 1.0 + mmr if distance < 1.0 else math.inf
            return 1.0 + mmr - 1.0 / (1.0 + distance)
        return distance + mmr
    if formula == OKX:
        mmr = mmr + fee
    if inverse:
        if is_long:
            return (1.0 + mmr) / (1.0 - distance) - 1.0 if distance < 1.0 else math.inf
        return 1.0 - (1.0 - mmr) / (1.0 + distance)
    if is_long:
        return 1.0 - (1.0 - distance) * (1.0 - mmr)
    return (1.0 + distance) * (1.0 + mmr) - 1.0


def coverage_needed(is_long: bool, inverse: bool, distance: float, mmr: float) -> float:
    """``k`` by Binance's formula: the (collateral + cum) / notional a position needs to survive
    a ``distance`` move."""
    return venue_coverage_needed(BINANCE, is_long, inverse, distance, mmr, 0.0)


def venue_max_safe_leverage(
    formula: int, is_long: bool, inverse: bool, distance: float, mmr: float,
    maintenance_amount: float, notional: float, fee: float,
) -> float:
    """Highest isolated leverage whose liquidation lies at least ``distance`` from entry
    (inf when any leverage is safe, below 1 when none is), by the venue's formula."""
    need = (venue_coverage_needed(formula, is_long, inverse, distance, mmr, fee)
            - maintenance_amount / notional)
    if need <= 0.0:
        return math.inf
    return 1.0 / need


def max_safe_leverage(
    is_long: bool, inverse: bool, distance: float, mmr: float, maintenance_amount: float,
    notional: float,
) -> float:
    """:func:`venue_max_safe_leverage` by Binance's formula."""
    return venue_max_safe_leverage(BINANCE, is_long, inverse, distance, mmr, maintenance_amount,
                                   notional, 0.0)


def venue_max_safe_notional_cross(
    formula: int, is_long: bool, inverse: bool, distance: float, mmr: float,
    maintenance_amount: float, collateral: float, fee: float,
) -> float:
    """Largest cross-margin notional whose liquidation lies at least ``distance`` from entry,
    by the venue's formula."""
    need = venue_coverage_needed(formula, is_long, inverse, distance, mmr, fee)
    if need <= 0.0:
        return math.inf
    return max(0.0, (collateral + maintenance_amount) / need)


def max_safe_notional_cross(
    is_long: bool, inverse: bool, distance: float, mmr: float, maintenance_amount: float,
    collateral: float,
) -> float:
    """:func:`venue_max_safe_notional_cross` by Binance's formula."""
    return venue_max_safe_notional_cross(BINANCE, is_long, inverse, distance, mmr,
                                         maintenance_amount, collateral, 0.0)


def liquidation_distance(is_long: bool, entry: float, liq: float) -> float:
    """Adverse move from entry to liquidation as a fraction of entry (inf when none)."""
    if is_long:
        return (entry - liq) / entry if liq > 0.0 else 1.0
    return (liq - entry) / entry if math.isfinite(liq) else math.inf
