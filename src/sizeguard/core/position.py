"""Position arithmetic, once: the money formulas every part of sizeguard uses.

The decision pipeline, the backtest loop, the paper exchange, the state store, budgets and the
audit all value positions with these functions; nothing outside the core multiplies a price by an
amount or divides by a leverage on its own.

Money is in the quote (settle) currency. Two layers:

* **float kernels** (:func:`notional_of`, :func:`margin_of`, :func:`pnl`, :func:`settle_of`
  and :func:`quote_of` (quote to coin and back for inverse contracts), and
  :func:`maintenance_margin`, which lives with the tiers): plain
  floats and bools in, a float out, in the subset numba compiles, so the backtest loop runs
  the very same functions compiled;
* **market-aware helpers** (:func:`notional`, :func:`opened`, :func:`tier_at`,
  :func:`maintenance_amount_quote`, :func:`taker_fee`): read a
  :class:`~sizeguard.core.market.MarketRules` and call the kernels.

Units (DESIGN.md, vocabulary). A linear contract (and a spot base unit) is worth
``contract_size x price`` quote, so its notional moves with the price. An inverse contract is worth
a fixed ``contract_size`` quote (100 USD per Binance COIN-M BTC contract) whatever the price, so a
fill at another price than the decision's leaves the notional unchanged. Bitget's coin-margined
contracts are inverse but sized in base coin: one unit is worth the *fill* price in quote, and
from then on the position's quote notional is fixed like any inverse one's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sizeguard.core.liquidation import BINANCE, venue_liquidation_price
from sizeguard.core.models import fee_rate_to_stop, risk_of_notional
from sizeguard.core.tiers import Tier, find_tier, maintenance_margin

if TYPE_CHECKING:
    from sizeguard.core.market import MarketRules

# ----------------------------------------------------------------------- float kernels


def notional_of(amount: float, price: float, contract_size: float, fixed_face: bool) -> float:
    """Quote notional of ``amount`` units at ``price``.

    ``fixed_face``: the unit is an inverse contract with a face value of ``contract_size`` quote
    (the price does not enter). Otherwise one unit holds ``contract_size`` base (spot,
    linear, base-sized inverse) and is worth ``contract_size x price``.
    """
    if fixed_face:
        return amount * contract_size
    return amount * contract_size * price


def margin_of(notional: float, leverage: float) -> float:
    """Initial margin of ``notional`` at ``leverage`` (``leverage <= 0`` means unleveraged:
    spot, or a row that never had a leverage, ties up the whole notional)."""
    if leverage > 0.0:
        return notional / leverage
    return notional


def fee_on(notional: float, rate: float) -> float:
    """A fee of ``rate`` charged on ``notional`` (taker or maker rate, quote)."""
    return notional * rate


def settle_of(quote_value: float, price: float, inverse: bool) -> float:
    """A quote amount in the settle currency at ``price``: for an inverse contract the coin,
    ``quote / price`` (its PnL, fees, margin and funding are paid in the coin: the quote
    :func:`pnl` at the exit price divided by it is the coin PnL ``N x (1/entry - 1/exit)``);
    otherwise the quote itself."""
    if inverse:
        return quote_value / price
    return quote_value


def quote_of(settle_value: float, price: float, inverse: bool) -> float:
    """A settle-currency amount valued in quote at ``price``: the inverse of :func:`settle_of`
    (coin x price for an inverse contract; the amount itself otherwise)."""
    if inverse:
        return settle_value * price
    return settle_value


def average_entry(notional_a: float, entry_a: float, notional_b: float, entry_b: float) -> float:
    """Entry price of two fills of one position merged (an add, or a fill in parts).

    Linear: the base-weighted mean ``(qa Ea + qb Eb) / (qa + qb)`` with ``q = N / E``. Inverse:
    the contract-weighted harmonic mean ``(ca + cb) / (ca / Ea + cb / Eb)`` with ``c = N / face``.
    Written in notionals both are ``(Na + Nb) / (Na / Ea + Nb / Eb)``.
    """
    return (notional_a + notional_b) / (notional_a / entry_a + notional_b / entry_b)


def merged(notional_a: float, entry_a: float, margin_a: float, notional_b: float, entry_b: float,
           margin_b: float) -> tuple[float, float, float]:
    """Two parts of one position merged: ``(notional, average entry, margin)``, the parts'
    notionals and margins added and the entry by :func:`average_entry` (an add joining what is
    held, a reservation joining the others of its symbol and side)."""
    return (notional_a + notional_b, average_entry(notional_a, entry_a, notional_b, entry_b),
            margin_a + margin_b)


def risk_to_stop(is_long: bool, inverse: bool, notional: float, entry: float, stop: float,
                 entry_fee: float, exit_fee: float) -> float:
    """Money a position of entry notional ``notional`` opened at ``entry`` loses if ``stop``
    fills (DESIGN: the move, the entry fee on the notional at entry, the exit fee on the notional
    at the stop). Negative when the stop locks in more profit than the fees cost: a long whose
    average entry lies below its stop."""
    distance = (entry - stop) / entry if is_long else (stop - entry) / entry
    return risk_of_notional(notional, distance,
                            fee_rate_to_stop(entry_fee, exit_fee, is_long, inverse, distance))


def combined_liquidation(is_long: bool, inverse: bool, notional_a: float, entry_a: float,
                         margin_a: float, notional_b: float, entry_b: float, margin_b: float,
                         mmr: float, maintenance_amount: float, formula: int = BINANCE,
                         fee: float = 0.0) -> float:
    """Isolated liquidation price of two fills merged into one position (an add): the merged
    notional ``Na + Nb`` at the :func:`average_entry`, backed by both margins. For a linear
    position the merged notional at the average entry is exactly ``Na + Nb`` (``sum q E``);
    for an inverse one the faces add. ``formula``/``fee``: the venue's (core.liquidation)."""
    entry = average_entry(notional_a, entry_a, notional_b, entry_b)
    return venue_liquidation_price(formula, is_long, inverse, entry, notional_a + notional_b,
                                   margin_a + margin_b, mmr, maintenance_amount, fee)


def pnl(is_long: bool, notional: float, entry: float, exit_price: float) -> float:
    """Quote PnL of a position of entry notional ``notional`` closed at ``exit_price``.

    Linear: ``qty x (exit - entry)`` with ``qty = notional / entry`` base.
    Inverse: the coin PnL ``notional x (1/entry - 1/exit)`` valued in quote at the exit price,
    ``notional x (exit/entry - 1)``: the same expression, so one formula serves both (for an
    inverse position ``notional`` is its fixed quote face value). Fees are not included. At a
    mark price instead of an exit it is the unrealised PnL.
    """
    move = (exit_price - entry) / entry
    return notional * move if is_long else -notional * move


def cross_collateral(wallet: float, maintenance: Sequence[float], unrealised: Sequence[float],
                     skip: int) -> float:
    """The collateral backing a cross-margin position (Binance's ``WB - TMM + UPNL``): the
    ``wallet`` balance less the maintenance margin of the account's other cross positions plus
    their unrealised PnL. ``maintenance[i]`` and ``unrealised[i]`` are position ``i``'s, in
    one currency (a list, a tuple, or a numpy array in the compiled backtest loop); position
    ``skip`` is the one backed (its own terms left out; ``-1``: a new position, every held one
    counts). A position not held is given zeros."""
    total_mm = 0.0
    total_upnl = 0.0
    for i in range(len(maintenance)):
        if i != skip:
            total_mm += maintenance[i]
            total_upnl += unrealised[i]
    return wallet - total_mm + total_upnl


def realised_pnl(is_long: bool, notional: float, entry: float, exit_price: float,
                 fee: float) -> float:
    """What closing at ``exit_price`` adds to equity: :func:`pnl` less the exit ``fee``."""
    return pnl(is_long, notional, entry, exit_price) - fee


def amount_in_quote(amount: float, price: float, in_coin: bool) -> float:
    """A tier table's amount (a maintenance amount) in quote: coin-margined tables count in
    the settle coin, valued at ``price``; the others already count in quote."""
    return amount * price if in_coin else amount


def tier_units_of(notional_quote: float, price: float, in_coin: bool) -> float:
    """A quote notional in the units of a tier table: coin at ``price`` for a table counted in
    the settle coin (ccxt's coin-margined tables), else the quote notional itself."""
    return notional_quote / price if in_coin else notional_quote


# ----------------------------------------------------------------- market-aware helpers


def fixed_face(market: MarketRules) -> bool:
    """Whether one amount unit of ``market`` has a fixed quote value (an inverse contract sized
    in contracts, not the base-sized Bitget coin-M kind)."""
    return market.inverse and not market.amount_in_base


def notional(market: MarketRules, amount: float, price: float) -> float:
    """Quote notional of ``amount`` (ccxt units: contracts, or base for spot) at ``price``."""
    return notional_of(amount, price, market.contract_size, fixed_face(market))


def amount_of_lots(market: MarketRules, lots: int) -> float:
    """``lots`` whole steps as the float nearest the exact decimal amount (29,999 lots of 0.001
    are 29.999, not the 29.999000000000002 that ``lots * step`` gives in floats), so that a
    decision and a fill of the same amount value it identically."""
    return float(lots * market.amount_step_decimal)


def amount_for(market: MarketRules, notional_quote: float, price: float) -> float:
    """The amount (ccxt units, not yet rounded to a step) worth ``notional_quote`` at ``price``:
    the inverse of :func:`notional`."""
    return notional_quote / notional_of(1.0, price, market.contract_size, fixed_face(market))


@dataclass(frozen=True, slots=True)
class Opened:
    """What a fill ties up: the quote notional and the initial margin at the leverage."""

    notional: float
    margin: float


def opened(market: MarketRules, amount: float, price: float, leverage: float) -> Opened:
    """Notional and margin of ``amount`` filled at ``price`` with ``leverage``: the values a
    store records for a position (a linear fill away from the decision's price changes the
    notional; an inverse contract's does not)."""
    n = notional(market, amount, price)
    lev = leverage if market.is_contract else 1.0
    return Opened(n, margin_of(n, lev))


def no_tier(market: MarketRules, default_mmr: float) -> Tier:
    """The tier a market without a tier table is judged by: its max leverage and the policy's
    default maintenance margin rate, no maintenance amount."""
    return Tier(0, 0.0, math.inf, default_mmr, market.max_leverage, 0.0)


def tier_at(market: MarketRules, notional_quote: float, price: float,
            default_mmr: float | None = None) -> Tier | None:
    """The tier of a position of ``notional_quote`` valued at ``price``.

    The notional is converted to the table's unit first (coin for ccxt's coin-margined tables,
    see :meth:`MarketRules.tier_units`). Above the top tier the top tier applies (the limits
    cap the notional there first). A market without tiers gets :func:`no_tier` when
    ``default_mmr`` is given, else None.
    """
    if not market.tiers:
        return None if default_mmr is None else no_tier(market, default_mmr)
    units = market.tier_units(notional_quote, price)
    found = find_tier(market.tiers, units, market.tier_floors)
    return found if found is not None else market.tiers[-1]


def maintenance_amount_quote(market: MarketRules, tier: Tier, price: float) -> float:
    """The tier's maintenance amount in quote: a coin amount (coin-margined tables) is valued
    at ``price``."""
    return amount_in_quote(tier.maintenance_amount, price, market.tiers_in_coin)


def position_maintenance(market: MarketRules, notional_quote: float, price: float,
                         default_mmr: float) -> float:
    """Maintenance margin in quote of a position of ``notional_quote`` at ``price``, from its
    tier (or the no-tier fallback)."""
    tier = tier_at(market, notional_quote, price, default_mmr)
    assert tier is not None  # default_mmr given: never None
    return maintenance_margin(notional_quote, tier.maintenance_margin_rate,
                              maintenance_amount_quote(market, tier, price))


def taker_fee(market: MarketRules, fallback: float) -> float:
    """The market's taker fee rate, or ``fallback`` (the policy's ``execution.taker``) when the
    market does not publish one."""
    return market.taker if market.taker is not None else fallback


__all__ = [
    "Opened", "amount_for", "amount_in_quote", "amount_of_lots", "average_entry",
    "combined_liquidation", "cross_collateral", "fee_on", "fixed_face", "maintenance_amount_quote",
    "maintenance_margin", "margin_of", "merged", "no_tier", "notional", "notional_of", "opened", "pnl",
    "position_maintenance", "quote_of", "realised_pnl", "risk_to_stop", "settle_of",
    "taker_fee", "tier_at", "tier_units_of",
]
