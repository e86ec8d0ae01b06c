"""Position arithmetic (core/position.py, core/models.py fee_rate_to_stop), worked by hand.

Every money formula lives once in the core; these tests pin each one on round numbers and check
the float kernels compile with numba unchanged (the backtest loop runs them compiled).
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizeguard import _native
from sizeguard.core import position as pos
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import Context
from sizeguard.core.intent import Intent
from sizeguard.core.models import fee_rate_to_stop, notional_from_risk, risk_of_notional
from sizeguard.core.tiers import Tier, maintenance_margin
from sizing_helpers import market, policy

# a Binance COIN-M style inverse contract: 100 USD face value, tiers in BTC
INVERSE = replace(market(), symbol="BTC/USD:BTC", linear=False, inverse=True,
                  contract_size=100.0, amount_step=1.0, exchange="binancecoinm", settle="BTC")
# Bitget coin-M: inverse, sized in base coin
BITGET = replace(INVERSE, contract_size=1.0, amount_step=0.001, amount_in_base=True,
                 exchange="bitget")
LINEAR = replace(market(), contract_size=0.01)  # 0.01 base per contract
SPOT = replace(market(), symbol="TST/USDT", kind="spot", linear=False)


def test_notional_linear_moves_with_price() -> None:
    # 3 contracts x 0.01 base x 50,000 = 1,500; at 55,000: 1,650
    assert pos.notional(LINEAR, 3.0, 50_000.0) == pytest.approx(1_500.0)
    assert pos.notional(LINEAR, 3.0, 55_000.0) == pytest.approx(1_650.0)
    assert pos.notional(SPOT, 0.5, 200.0) == pytest.approx(100.0)  # 0.5 base x 200


def test_notional_inverse_is_the_face_value() -> None:
    # 100 contracts x 100 USD = 10,000 at any price (issue 10, measurement 2)
    assert pos.notional(INVERSE, 100.0, 50_000.0) == 10_000.0
    assert pos.notional(INVERSE, 100.0, 55_000.0) == 10_000.0


def test_notional_bitget_coinm_is_base_times_price() -> None:
    # 0.2 BTC x 55,000 = 11,000 at the fill; the unit value is the price
    assert pos.notional(BITGET, 0.2, 55_000.0) == pytest.approx(11_000.0)
    assert BITGET.unit_value(55_000.0) == 55_000.0
    assert INVERSE.unit_value(55_000.0) == 100.0


def test_opened_margin_at_leverage() -> None:
    # inverse 10,000 at 5x: margin 2,000 (the store once recorded 11,000 and 2,200)
    o = pos.opened(INVERSE, 100.0, 55_000.0, 5.0)
    assert (o.notional, o.margin) == (10_000.0, 2_000.0)
    # spot is never leveraged: margin is the notional whatever leverage is passed
    assert pos.opened(SPOT, 0.5, 200.0, 10.0) == pos.Opened(100.0, 100.0)
    assert pos.margin_of(1_000.0, 0.0) == 1_000.0  # no leverage recorded: the whole notional


@pytest.mark.parametrize(("is_long", "entry", "exit_price", "expected"), [
    (True, 100.0, 110.0, 100.0),  # 1,000 notional, +10% -> +100
    (False, 100.0, 110.0, -100.0),
    (True, 100.0, 95.0, -50.0),
    (False, 100.0, 95.0, 50.0),
])
def test_pnl(is_long: bool, entry: float, exit_price: float, expected: float) -> None:
    assert pos.pnl(is_long, 1_000.0, entry, exit_price) == pytest.approx(expected)


def test_pnl_inverse_equals_coin_pnl_valued_at_exit() -> None:
    # 10,000 USD of BTC/USD inverse long, 50,000 -> 55,000:
    # coin PnL 10,000 x (1/50,000 - 1/55,000) = 0.0181818 BTC, x 55,000 = 1,000 USD
    coin = 10_000.0 * (1 / 50_000.0 - 1 / 55_000.0)
    assert coin * 55_000.0 == pytest.approx(1_000.0)
    assert pos.pnl(True, 10_000.0, 50_000.0, 55_000.0) == pytest.approx(coin * 55_000.0)
    # short, 50,000 -> 40,000: coin 10,000 x (1/40,000 - 1/50,000) = 0.05 BTC = 2,000 USD
    assert pos.pnl(False, 10_000.0, 50_000.0, 40_000.0) == pytest.approx(2_000.0)


def test_maintenance_margin() -> None:
    # Binance BTC tier 2: rate 0.005, amount 300; 500,000 x 0.005 - 300 = 2,200
    assert maintenance_margin(500_000.0, 0.005, 300.0) == pytest.approx(2_200.0)
    assert pos.maintenance_margin is maintenance_margin
    t = Tier(2, 50_000.0, 600_000.0, 0.005, 50.0, 300.0)
    assert t.maintenance_margin(500_000.0) == pytest.approx(2_200.0)


TIERS = (Tier(1, 0.0, 10.0, 0.01, 100.0, 0.0), Tier(2, 10.0, 20.0, 0.02, 50.0, 0.1),
         Tier(3, 20.0, 40.0, 0.05, 20.0, 0.7))


def test_tier_lookup_linear_quote_units() -> None:
    m = replace(market(), tiers=TIERS)
    assert pos.tier_at(m, 9.99, 100.0) is TIERS[0]
    assert pos.tier_at(m, 10.0, 100.0) is TIERS[1]  # a boundary belongs to the higher tier
    assert pos.tier_at(m, 1e9, 100.0) is TIERS[-1]  # above the top: the top tier


def test_tier_lookup_coin_units_and_maintenance_amount_in_quote() -> None:
    # coin-margined tables count BTC: 1,500,000 USD at 100,000 = 15 BTC -> tier 2
    m = replace(INVERSE, tiers=TIERS)
    assert m.tiers_in_coin
    assert pos.tier_at(m, 1_500_000.0, 100_000.0) is TIERS[1]
    assert pos.tier_at(m, 999_000.0, 100_000.0) is TIERS[0]  # 9.99 BTC
    # the tier-2 amount 0.1 BTC is 10,000 USD at 100,000
    assert pos.maintenance_amount_quote(m, TIERS[1], 100_000.0) == pytest.approx(10_000.0)
    # 1,500,000 x 0.02 - 10,000 = 20,000 USD
    assert pos.position_maintenance(m, 1_500_000.0, 100_000.0, 0.005) == pytest.approx(20_000.0)


def test_no_tier_fallback() -> None:
    m = market()  # no tiers, max leverage 100
    assert pos.tier_at(m, 1_000.0, 1.0) is None
    t = pos.tier_at(m, 1_000.0, 1.0, default_mmr=0.005)
    assert t is not None and (t.maintenance_margin_rate, t.max_leverage, t.tier) == (0.005, 100.0, 0)
    assert pos.position_maintenance(m, 1_000.0, 1.0, 0.005) == pytest.approx(5.0)


def test_taker_fee_fallback() -> None:
    assert pos.taker_fee(market(taker=0.0004), 0.0005) == 0.0004
    assert pos.taker_fee(market(taker=None), 0.0005) == 0.0005
    assert pos.taker_fee(market(taker=0.0), 0.0005) == 0.0  # a published zero fee is a fee


# -- risk to the stop: the exit fee on the notional at the stop (issue 16, item 5) ----------

def test_fee_rate_to_stop_linear_long_and_short() -> None:
    # fee 0.1% each way, stop 10% away.
    # long: exit notional is 90% of the entry's: 0.001 + 0.001 x 0.9 = 0.0019
    assert fee_rate_to_stop(0.001, 0.001, True, False, 0.10) == pytest.approx(0.0019)
    # short: 110%: 0.001 + 0.001 x 1.1 = 0.0021
    assert fee_rate_to_stop(0.001, 0.001, False, False, 0.10) == pytest.approx(0.0021)
    # inverse: the quote notional does not move: 0.002 either side
    assert fee_rate_to_stop(0.001, 0.001, True, True, 0.10) == pytest.approx(0.002)
    assert fee_rate_to_stop(0.001, 0.001, False, True, 0.10) == pytest.approx(0.002)


def test_short_loss_at_its_stop_equals_the_budget() -> None:
    # risk 100, short at 100, stop 110 (10%), fee 0.1%: notional = 100 / (0.1 + 0.0021)
    # = 979.43; qty 9.7943: loss 9.7943 x 10 = 97.943, entry fee 0.97943, exit fee on
    # 9.7943 x 110 = 1,077.38 -> 1.07738: total 100.000 (charging the exit fee at entry
    # would have priced 0.0979 less and lost 100.098, 0.1% over the budget)
    fee = fee_rate_to_stop(0.001, 0.001, False, False, 0.10)
    n = notional_from_risk(100.0, 0.10, fee)
    assert n == pytest.approx(100.0 / 0.1021)
    qty = n / 100.0
    real_loss = qty * 10.0 + n * 0.001 + qty * 110.0 * 0.001
    assert real_loss == pytest.approx(100.0, rel=1e-12)
    assert risk_of_notional(n, 0.10, fee) == pytest.approx(100.0, rel=1e-12)


@given(st.booleans(), st.floats(1e-4, 0.9), st.floats(0.0, 0.002), st.floats(1.0, 1e6))
def test_risk_is_the_real_loss_at_the_stop_linear(is_long: bool, dist: float, fee: float,
                                                 n: float) -> None:
    entry = 100.0
    stop = entry * (1 - dist) if is_long else entry * (1 + dist)
    qty = n / entry
    loss = qty * abs(entry - stop) + fee * n + fee * qty * stop
    assert risk_of_notional(n, dist, fee_rate_to_stop(fee, fee, is_long, False, dist)) == \
        pytest.approx(loss, rel=1e-9)


@given(st.booleans(), st.floats(1e-4, 0.9), st.floats(0.0, 0.002), st.floats(1.0, 1e6))
def test_risk_is_the_real_loss_at_the_stop_inverse(is_long: bool, dist: float, fee: float,
                                                  n: float) -> None:
    # coin flows: loss n |1/entry - 1/stop|, entry fee fee n / entry, exit fee fee n / stop;
    # each valued in quote at the price it happens at (the loss and exit fee at the stop)
    entry = 100.0
    stop = entry * (1 - dist) if is_long else entry * (1 + dist)
    coin_loss = n * abs(1 / entry - 1 / stop)
    quote = coin_loss * stop + fee * n / entry * entry + fee * n / stop * stop
    assert risk_of_notional(n, dist, fee_rate_to_stop(fee, fee, is_long, True, dist)) == \
        pytest.approx(quote, rel=1e-9)


@pytest.mark.parametrize("kernel", [pos.notional_of, pos.margin_of, pos.pnl, maintenance_margin,
                                    fee_rate_to_stop])
def test_kernels_compile_with_numba(kernel: object) -> None:
    # numba compiles the Python source of a kernel (as the backtest does): on the compiled
    # build _native.source gives it, and the mypyc-compiled kernel must agree with it
    name = kernel.__name__  # type: ignore[attr-defined]
    module = "tiers" if name == "maintenance_margin" else "models" if name == "fee_rate_to_stop" \
        else "position"
    source = sys.modules["sizeguard.core.tiers"] if module == "tiers" else _native.source(module)
    compiled = numba.njit(getattr(source, name))
    args = {"notional_of": (2.0, 100.0, 0.5, False), "margin_of": (100.0, 4.0),
            "pnl": (True, 100.0, 50.0, 55.0),
            "maintenance_margin": (100.0, 0.01, 0.2),
            "fee_rate_to_stop": (0.001, 0.001, False, False, 0.1)}[kernel.__name__]  # type: ignore[attr-defined]
    got = compiled(*args)
    assert math.isclose(got, kernel(*args))  # type: ignore[operator]


@given(st.booleans(), st.floats(1.0, 1e6), st.floats(0.01, 1e5), st.floats(1.0, 1e6),
       st.floats(0.01, 1e5), st.floats(0.01, 1e5))
def test_average_entry_keeps_the_pnl_of_both_fills(is_long: bool, n1: float, e1: float,
                                                    n2: float, e2: float, exit_price: float) -> None:
    # one position at the average entry gains what the two fills gain apart, at any exit
    # (linear: base-weighted mean; inverse: contract-weighted harmonic mean, the same formula)
    avg = pos.average_entry(n1, e1, n2, e2)
    assert min(e1, e2) * (1 - 1e-12) <= avg <= max(e1, e2) * (1 + 1e-12)
    whole = pos.pnl(is_long, n1 + n2, avg, exit_price)
    parts = pos.pnl(is_long, n1, e1, exit_price) + pos.pnl(is_long, n2, e2, exit_price)
    assert whole == pytest.approx(parts, rel=1e-9, abs=1e-6 * (n1 + n2))


def test_average_entry_by_hand() -> None:
    # linear: 1 BTC at 100 (N 100) + 1 BTC at 200 (N 200): 300 / (1 + 1) = 150
    assert pos.average_entry(100.0, 100.0, 200.0, 200.0) == pytest.approx(150.0)
    # inverse: 100 contracts of 1 USD at 100 and 100 at 200 (N 100 each):
    # 200 / (100/100 + 100/200) = 200 / 1.5 = 133.33 (the harmonic mean)
    assert pos.average_entry(100.0, 100.0, 100.0, 200.0) == pytest.approx(400.0 / 3.0)


# two cross positions: maintenance 10 and 25, unrealised PnL -30 and +40, wallet 1,000
CROSS_MM, CROSS_UPNL = (10.0, 25.0), (-30.0, 40.0)


@pytest.mark.parametrize(("skip", "expected"), [
    (-1, 975.0),   # a new position: 1,000 - (10 + 25) + (-30 + 40)
    (0, 1_015.0),  # position 0 backed: the other's terms only, 1,000 - 25 + 40
    (1, 960.0),    # position 1 backed: 1,000 - 10 - 30
])
def test_cross_collateral_by_hand(skip: int, expected: float) -> None:
    assert pos.cross_collateral(1_000.0, CROSS_MM, CROSS_UPNL, skip) == expected
    assert pos.cross_collateral(1_000.0, list(CROSS_MM), list(CROSS_UPNL), skip) == expected
    # the backtest loop runs the Python source compiled with numba, on numpy arrays
    kernel = numba.njit(_native.python_source(pos.cross_collateral))
    assert kernel(1_000.0, np.array(CROSS_MM), np.array(CROSS_UPNL), skip) == expected


def test_cross_collateral_without_positions_is_the_wallet() -> None:
    assert pos.cross_collateral(1_000.0, (), (), -1) == 1_000.0


def _collateral(account: Account) -> float:
    cross = policy(leverage={"value": 10, "max": 20, "margin_mode": "cross"})
    return Context(Intent("TST/USDT:USDT", "long", 100.0, stop=95.0), account, market(),
                   cross).cross_collateral()


def test_decide_backs_a_cross_position_with_the_kernel() -> None:
    # Context.cross_collateral is the kernel's: the wallet given, or the equity less the uPnL
    held = tuple(Position(s, "long", 1_000.0, 100.0, maintenance_margin=m, unrealised_pnl=u)
                 for s, m, u in zip(("A/USDT:USDT", "B/USDT:USDT"), CROSS_MM, CROSS_UPNL,
                                    strict=True))
    given_wallet = Account(equity=2_000.0, positions=held, wallet_balance=1_000.0)
    assert _collateral(given_wallet) == 975.0
    # no wallet given: 2,000 - 10 = 1,990 of wallet; 1,990 - 35 + 10 = 1,965
    assert _collateral(replace(given_wallet, wallet_balance=None)) == 1_965.0
