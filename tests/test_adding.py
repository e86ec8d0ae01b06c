"""Adding to a position (issue 16 item 2, ``limits.allow_add``): the add is sized so the whole
position's risk to the stop stays within the budget, and the merged position's liquidation at
its new average entry stays beyond the stop by the guard's buffer.

Base (``sizing_helpers.market``): TST/USDT:USDT, price 100, step 0.001, no fee, no tiers (the
default maintenance rate 0.5% applies), 3x isolated. Equity 10,000, risk 1% = 100. The held
long: 10 TST entered at 90 (notional 900).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storefix
from sizeguard.adapters.market_snapshot import BookSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import open_store
from sizeguard.config import load_policy
from sizeguard.core import position
from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision, Reason, Status
from sizeguard.core.intent import Intent
from sizeguard.trader import Trader
from sizing_helpers import SYMBOL, market, policy, size, trace_step
from storefix import many_symbols


def add(held: Position, stop: float, *, risk: float = 0.01, lev: int = 3, side: str = "long",
        price: float = 100.0, **mkt: Any) -> Decision:
    return size(Intent(SYMBOL, side, price, stop=stop), Account(10_000.0, positions=(held,)),
                market(**mkt), policy(sizing={"model": "risk", "risk": risk},
                                      limits={"allow_add": True},
                                      leverage={"value": lev, "max": lev}))


def test_add_capped_by_the_whole_positions_risk() -> None:
    # held 10 @ 90, margin 300 (3x); add at 100 with the stop at 84 (distance 16%).
    # held risk to 84: 10 x (90 - 84) = 60; room 100 - 60 = 40; add = 40 / 0.16 = 250 -> 2.5
    # (alone it would be 100 / 0.16 = 625 -> 6.25)
    d = add(Position(SYMBOL, "long", 900.0, 300.0, entry=90.0), stop=84.0)
    assert d.accepted and d.amount == "2.5" and d.notional == pytest.approx(250.0)
    assert Reason.ADD_CAPPED_BY_RISK in d.reasons
    step = trace_step(d, "add")
    assert step["bound"] == "ADD_CAPPED_BY_RISK"
    assert step["held_risk"] == pytest.approx(60.0) and step["risk_room"] == pytest.approx(40.0)
    after = trace_step(d, "position_after_add")
    # new average entry: (900 + 250) / (900 / 90 + 250 / 100) = 1,150 / 12.5 = 92
    assert after["average_entry"] == pytest.approx(92.0)
    assert after["amount"] == pytest.approx(12.5) and after["notional"] == pytest.approx(1150.0)
    # whole risk: 12.5 x (92 - 84) = 100, the budget exactly
    assert after["risk"] == pytest.approx(100.0)
    # margin 300 + 250 / 3 = 383.333; LP = 92 x (1 - 383.333 / 1,150) / (1 - 0.005)
    #  = 92 x 0.666667 / 0.995 = 61.6415, beyond 84 - 0.25 x 16 = 80
    assert after["margin"] == pytest.approx(383.3333, rel=1e-6)
    assert after["liquidation_price"] == pytest.approx(61.64154, rel=1e-6)


def test_a_short_add_capped_by_risk() -> None:
    # held short 10 @ 110 (1,100, margin 366.667 at 3x); add short at 100, stop 116 (16%).
    # held risk to 116: 10 x 6 = 60; room 40 -> 250 -> 2.5. New average entry
    # (1,100 + 250) / (10 + 2.5) = 108; whole risk 12.5 x (116 - 108) = 100.
    # LP = 108 x (1 + 450 / 1,350) / (1 + 0.005) = 143.28, beyond 116 + 0.25 x 16 = 120
    d = add(Position(SYMBOL, "short", 1_100.0, 1_100.0 / 3, entry=110.0), stop=116.0,
            side="short")
    assert d.accepted and d.amount == "2.5" and Reason.ADD_CAPPED_BY_RISK in d.reasons
    after = trace_step(d, "position_after_add")
    assert after["average_entry"] == pytest.approx(108.0)
    assert after["risk"] == pytest.approx(100.0)
    assert after["liquidation_price"] == pytest.approx(108 * (1 + 450 / 1350) / 1.005)


def test_add_not_bound_when_the_held_part_locks_in_profit() -> None:
    # stop 95 above the held entry 90: the held part locks in 10 x 5 = 50, counted as 0 (never
    # as room). The add keeps the full budget: 100 / 0.05 = 2,000 -> 20
    d = add(Position(SYMBOL, "long", 900.0, 300.0, entry=90.0), stop=95.0)
    assert d.accepted and d.amount == "20"
    assert not [r for r in d.reasons if r.startswith("ADD_")]
    assert trace_step(d, "add")["held_risk"] == pytest.approx(-50.0)
    after = trace_step(d, "position_after_add")
    # (900 + 2,000) / (10 + 20) = 96.667; whole risk 30 x (96.667 - 95) = 50 <= 100
    assert after["average_entry"] == pytest.approx(2900 / 30)
    assert after["risk"] == pytest.approx(50.0)
    # margin 300 + 666.667; LP = (2,900 - 966.667) / 30 / 0.995 = 64.768 < 95 - 1.25 = 93.75
    assert after["liquidation_price"] == pytest.approx((2900 - 2900 / 3) / 30 / 0.995)


def test_add_refused_when_the_held_risk_fills_the_budget() -> None:
    # stop 80: the held part alone risks 10 x (90 - 80) = 100, the whole budget
    d = add(Position(SYMBOL, "long", 900.0, 300.0, entry=90.0), stop=80.0)
    assert d.status is Status.SKIPPED and d.reasons[-1] == Reason.ADD_CAPPED_BY_RISK


def test_add_refused_when_the_merged_liquidation_comes_before_the_stop() -> None:
    # held at 50x: margin 18. The add (250 at 3x, margin 83.333) merges into 1,150 at 92 with
    # 101.333 margin: LP = (1,150 - 101.333) / 12.5 / 0.995 = 84.31, not beyond 80 (nor is the
    # held part's own: (900 - 18) / 10 / 0.995 = 88.64): refused
    d = add(Position(SYMBOL, "long", 900.0, 18.0, entry=90.0), stop=84.0)
    assert d.status is Status.SKIPPED and d.reasons[-1] == Reason.ADD_CAPPED_BY_LIQUIDATION
    assert trace_step(d, "add_liquidation")["bound"] == "ADD_CAPPED_BY_LIQUIDATION"


def test_a_large_enough_add_rescues_a_position_too_close_to_liquidation() -> None:
    # the same held part with a 5% budget (500): room 500 - 60 = 440 -> 2,750 at 3x (27.5).
    # merged: 3,650 at 3,650 / 37.5 = 97.333, margin 18 + 916.667 = 934.667:
    # LP = (3,650 - 934.667) / 37.5 / 0.995 = 72.77 <= 80
    d = add(Position(SYMBOL, "long", 900.0, 18.0, entry=90.0), stop=84.0, risk=0.05)
    assert d.accepted and d.amount == "27.5"
    after = trace_step(d, "position_after_add")
    assert after["liquidation_price"] == pytest.approx((3650 - 934.6666667) / 37.5 / 0.995)


def test_a_new_position_has_no_add_steps() -> None:
    d = size(Intent(SYMBOL, "long", 100.0, stop=84.0), Account(10_000.0), market(),
             policy(sizing={"model": "risk", "risk": 0.01}, limits={"allow_add": True},
                    leverage={"value": 3, "max": 3}))
    assert d.amount == "6.25"  # 100 / 0.16 = 625
    assert not [s for s in d.trace if s.step.startswith(("add", "position_after"))]


# ------------------------------------------------------------------------- property


def _loss_at_stop(side: str, held: Position, lots: int, price: float, stop: float,
                  fee: float) -> float:
    """Independent arithmetic: the merged position's loss if the stop fills (linear, base)."""
    q0, qa = held.notional / held.entry, lots * 0.001
    s = 1.0 if side == "long" else -1.0
    move = s * (q0 * (held.entry - stop) + qa * (price - stop))
    return move + fee * (held.notional + qa * price) + fee * (q0 + qa) * stop


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(side=st.sampled_from(["long", "short"]), entry=st.floats(60.0, 140.0),
       held_n=st.floats(10.0, 20_000.0), held_lev=st.sampled_from([1, 2, 5, 10, 25, 50]),
       dist=st.floats(0.005, 0.3), risk=st.sampled_from([0.005, 0.01, 0.03]),
       lev=st.sampled_from([1, 3, 10, 20]), fee=st.sampled_from([0.0, 0.0005]),
       guard=st.sampled_from(["lower_leverage", "shrink", "refuse"]))
def test_no_accepted_add_raises_the_positions_risk_above_its_budget(
        side: str, entry: float, held_n: float, held_lev: int, dist: float, risk: float,
        lev: int, fee: float, guard: str) -> None:
    s = 1.0 if side == "long" else -1.0
    price, stop = 100.0, 100.0 * (1 - s * dist)
    held = Position(SYMBOL, side, held_n, held_n / held_lev, entry=entry)
    d = size(Intent(SYMBOL, side, price, stop=stop), Account(100_000.0, positions=(held,)),
             market(taker=fee), policy(sizing={"model": "risk", "risk": risk},
                                       limits={"allow_add": True},
                                       leverage={"value": lev, "max": lev},
                                       liquidation={"guard": guard}))
    if not d.accepted:
        return
    budget = 100_000.0 * risk
    held_loss = _loss_at_stop(side, held, 0, price, stop, fee)
    whole = _loss_at_stop(side, held, d.lots, price, stop, fee)
    # the add never takes the whole position's risk above the budget, and a held part that
    # already locks in profit is never spent as room
    assert whole <= budget * (1 + 1e-9) + 1e-9
    assert whole - held_loss <= budget * (1 + 1e-9) + 1e-9
    after = trace_step(d, "position_after_add")
    assert after["risk"] == pytest.approx(whole, rel=1e-9, abs=1e-6)
    # the merged liquidation lies beyond the stop by the buffer (0.25 x the stop distance)
    need = stop - s * 0.25 * abs(price - stop)
    assert s * (need - after["liquidation_price"]) >= -1e-9
    assert after["average_entry"] == pytest.approx(position.average_entry(
        held_n, entry, d.notional, price))


# ------------------------------------------------------------------- through the store

store_url = storefix.store_url  # the fixture: SQLite and PostgreSQL


def test_an_add_through_the_store_values_the_held_position_at_its_fill(store_url: str) -> None:
    # risk 1% of 10,000 = 100, fee 0 (policy taker on a market with none is the market's).
    # First entry: C00 long at 50,000, stop 49,000 (2%) -> 5,000 notional, 0.1 BTC.
    # Add at 52,000 with the stop raised to 49,400 (5%): held risk 0.1 x (50,000 - 49,400) = 60
    # (+ fees), so the add gets the rest of the budget, not a fresh 100.
    s = open_store(store_url)
    s.ensure_account("acc", exchange="test", equity=10_000.0)
    book = many_symbols(1)
    pol = load_policy("viper-fixed-margin", sets=[
        'sizing.model="risk"', "sizing.risk=0.01", "leverage.value=5", "leverage.max=5",
        "limits.allow_add=true", "limits.max_positions=0"])
    trader = Trader(s, PaperExchange(book, balance=1e6), BookSource(book, "test"), pol,
                    account_id="acc", venue="test")
    try:
        first = trader.submit(Intent("C00/USDT:USDT", "long", 50_000.0, stop=49_000.0),
                              client_order_id="first")
        assert first.status == "filled", first.decision.reasons
        second = trader.submit(Intent("C00/USDT:USDT", "long", 52_000.0, stop=49_400.0),
                               client_order_id="second")
        d = second.decision
        step = trace_step(d, "add")
        assert step["held_entry"] == pytest.approx(50_000.0)
        assert step["held_notional"] == pytest.approx(first.decision.notional)
        fee = position.taker_fee(book["C00/USDT:USDT"], pol.execution.taker)
        held_risk = position.risk_to_stop(True, False, first.decision.notional, 50_000.0,
                                          49_400.0, fee, fee)
        assert step["held_risk"] == pytest.approx(held_risk)
        assert Reason.ADD_CAPPED_BY_RISK in d.reasons
        after = trace_step(d, "position_after_add")
        assert after["risk"] <= 100.0 + 1e-9
    finally:
        s.close()
