"""Sizing-model kernels: floats in, floats out (numba-compilable, shared with the backtest).

A model yields margin, notional or risk money; never confuse them. Margin becomes notional by
*multiplying* by leverage; risk money becomes notional by *dividing* by the stop distance plus
the fee rate of a round trip that ends at the stop (:func:`fee_rate_to_stop`).
"""

from __future__ import annotations


def notional_from_margin(margin: float, leverage: float) -> float:
    return margin * leverage


def fee_rate_to_stop(entry_fee: float, exit_fee: float, is_long: bool, inverse: bool,
                     stop_distance: float) -> float:
    """Fees of a round trip that ends at the stop, per unit of *entry* notional.

    DESIGN.md: the entry fee is charged on the notional at entry, the exit fee on the notional at
    the stop. A linear position's notional scales with the price, so at the stop it is
    ``entry notional x stop / entry``: ``1 - distance`` for a long, ``1 + distance`` for a short
    (a short's exit fee is the larger one). An inverse contract's notional is a fixed quote face
    value: the exit fee in coin is ``fee x N / stop``, which valued in quote at the stop (where
    it is paid, and where the coin loss ``N x |1/entry - 1/stop|`` is valued as
    ``N x distance``) is ``fee x N`` again, the entry fee's ``fee x N / entry`` coin likewise at
    entry. So for inverse contracts the exit fee is on the entry notional: ratio 1.
    """
    if inverse:
        ratio = 1.0
    elif is_long:
        ratio = 1.0 - stop_distance
    else:
        ratio = 1.0 + stop_distance
    return entry_fee + exit_fee * ratio


def notional_from_risk(risk_money: float, stop_distance: float, fee_rate: float) -> float:
    """Notional whose loss at the stop, entry and exit fees included, equals ``risk_money``.

    ``fee_rate`` is :func:`fee_rate_to_stop` (0 when fees are left out of the risk).
    """
    return risk_money / (stop_distance + fee_rate)


def risk_of_notional(notional: float, stop_distance: float, fee_rate: float) -> float:
    """Money lost if the stop fills: the price move plus the taker fees of the round trip
    (``fee_rate`` from :func:`fee_rate_to_stop`: exit fee on the notional at the stop)."""
    return notional * (stop_distance + fee_rate)


def kelly_fraction(win_rate: float, payoff: float) -> float:
    """Full Kelly fraction of equity to risk: ``W - (1 - W) / R`` (may be <= 0: no edge)."""
    return win_rate - (1.0 - win_rate) / payoff


def notional_for_volatility(equity: float, target: float, asset_volatility: float) -> float:
    """Notional whose volatility (``asset_volatility`` as a fraction of price) is ``target`` x
    equity."""
    return equity * target / asset_volatility


def stop_distance_from_price(entry: float, stop: float) -> float:
    return abs(entry - stop) / entry
