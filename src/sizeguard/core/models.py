"""Sizing-model kernels: floats in, floats out (numba-compilable, shared with the backtest).

A model yields margin, notional or risk money; never confuse them. Margin becomes notional by
*multiplying* by leverage; risk money becomes notional by *dividing* by the stop distance plus
the round-trip fee rate.
"""

from __future__ import annotations


def notional_from_margin(margin: float, leverage: float) -> float:
    return margin * leverage


def notional_from_risk(risk_money: float, stop_distance: float, fee_round_trip: float) -> float:
    """Notional whose loss at the stop, entry and exit fees included, equals ``risk_money``."""
    return risk_money / (stop_distance + fee_round_trip)


def risk_of_notional(notional: float, stop_distance: float, fee_round_trip: float) -> float:
    """Money lost if the stop fills: price move plus taker fees on entry and exit.

    Fees are charged on the entry notional both ways (DESIGN.md); for inverse contracts the
    coin loss valued at the stop price equals ``notional * distance`` exactly.
    """
    return notional * (stop_distance + fee_round_trip)


def kelly_fraction(win_rate: float, payoff: float) -> float:
    """Full Kelly fraction of equity to risk: ``W - (1 - W) / R`` (may be <= 0: no edge)."""
    return win_rate - (1.0 - win_rate) / payoff


def notional_for_volatility(equity: float, target: float, asset_volatility: float) -> float:
    """Notional whose volatility (``asset_volatility`` as a fraction of price) is ``target`` x
    equity."""
    return equity * target / asset_volatility


def stop_distance_from_price(entry: float, stop: float) -> float:
    return abs(entry - stop) / entry
