"""The decision is one typed record across boundaries: ``Decision.from_dict`` reads back what
``to_dict`` wrote (the journal, the HTTP answer), trace included; the store hands back a
``Decision``, and a reservation keeps the price it was decided at."""

from __future__ import annotations

import json
import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

import storefix
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.config import load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision, Reason, Status, TraceStep, _plain, _round10
from sizeguard.core.intent import Intent

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store

BOOK = load_markets(None)
BTC = "BTC/USDT:USDT"
POLICY = load_policy("ai-atr-risk")


def test_round_trip_of_a_hand_made_decision_is_equal() -> None:
    # values with at most 10 decimals (to_dict rounds floats to 10), lists in the trace
    d = Decision(
        status=Status.ACCEPTED, reasons=(Reason.CAPPED_MAX_NOTIONAL, Reason.ROUNDED_TO_STEP),
        symbol=BTC, side="long", amount="0.012", lots=12, notional=600.0, margin=20.0,
        leverage=30.0, risk=12.5, risk_pct=0.125, risk_basis="stop", entry_price=50000.0,
        stop_price=49000.0, stop_distance_pct=2.0, fees=0.24, liquidation_price=48500.25,
        liquidation_distance_pct=2.9995, maintenance_margin_rate=0.004, tier=1,
        margin_mode="isolated", policy="ai-atr-risk",
        trace=(TraceStep("stop", (("stop_price", 49000.0), ("source", "stop"))),
               TraceStep("caps", (("caps", ("max_notional", "symbol")), ("cap", 600.0)),
                         bound="max_notional", note="cut"),
               TraceStep("exchange_rules")),
        maintenance_amount=2.4, entry_tier=1)
    back = Decision.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back == d
    assert back.trace[1].values == (("caps", ("max_notional", "symbol")), ("cap", 600.0))


def test_a_skipped_decision_round_trips() -> None:
    d = decide(Intent(BTC, "long", 50000.0, stop_pct=2.0), Account(equity=1.0), BOOK[BTC],
               POLICY)
    assert not d.accepted and d.reasons
    assert Decision.from_dict(d.to_dict()).to_dict() == d.to_dict()


@settings(max_examples=60, deadline=None)
@given(price=st.floats(1_000, 200_000), stop_pct=st.floats(0.2, 20),
       equity=st.floats(100, 1e7), side=st.sampled_from(["long", "short"]))
def test_decide_then_to_dict_from_dict_keeps_every_field(price: float, stop_pct: float,
                                                        equity: float, side: str) -> None:
    d = decide(Intent(BTC, side, price, stop_pct=stop_pct), Account(equity=equity), BOOK[BTC],
               POLICY)
    data = json.loads(json.dumps(d.to_dict()))
    back = Decision.from_dict(data)
    assert back.to_dict() == data  # a fixed point of the JSON form, trace included
    assert (back.status, back.reasons, back.amount, back.lots, back.tier, back.margin_mode) == \
        (d.status, d.reasons, d.amount, d.lots, d.tier, d.margin_mode)
    assert [s.step for s in back.trace] == [s.step for s in d.trace]
    for name in ("notional", "margin", "leverage", "risk", "entry_price"):
        assert abs(getattr(back, name) - getattr(d, name)) <= 1e-10 * max(1.0, abs(getattr(d, name)))


def test_the_store_hands_back_a_decision_and_the_reservation_keeps_its_price(
        store: SqlStore) -> None:
    store.ensure_account("acc", exchange="builtin", equity=10_000.0)
    intent = Intent(BTC, "long", 50000.0, stop_pct=2.0)
    first = storefix.reserve(store, "acc", lambda a: decide(intent, a, BOOK[BTC], POLICY),
                             client_order_id="c1")
    assert isinstance(first.decision, Decision) and first.accepted
    assert first.reservation is not None and first.reservation.entry_price == 50000.0
    again = store.decided("acc", "c1")
    assert again is not None and again.duplicate and isinstance(again.decision, Decision)
    assert again.decision.to_dict() == first.decision.to_dict()
    assert again.reservation is not None and again.reservation.entry_price == 50000.0
    # a fill at another price is valued against the decided one: 10% higher, 10% more notional
    pos = storefix.fill(store, first.reservation, 55000.0)
    assert abs(pos.notional - first.reservation.notional * 1.1) < 1e-9


@given(st.floats(allow_nan=False, allow_infinity=False)
       | st.integers(-(2**63), 2**63).map(float)
       | st.sampled_from([0.0, -0.0, 2.0**53, -(2.0**53) - 2, 1e22, 1e300, -1e300, 5e-324]))
def test_plain_float_is_round_to_ten_places(x: float) -> None:
    """A trace's float as it is written (journal, answer): ``round(x, 10)``, bit for bit and
    sign of zero included; integer-valued floats skip the rounding, which changes nothing."""
    got = _plain(x)
    want = round(x, 10)
    assert type(got) is float and got == want and math.copysign(1, got) == math.copysign(1, want)


def _near_ties(k: int) -> list[float]:
    """The float nearest k + 1/2 ten-billionths and its two neighbours: where rounding to 10
    decimals is decided by the bits the product x * 1e10 loses."""
    x = (k + 0.5) / 1e10
    return [x, math.nextafter(x, math.inf), math.nextafter(x, -math.inf)]


# the edges of _round10's cases: the fast path's 2**52 / 1e10, the 2**20 where a value is its own
# rounding, the smallest subnormal, the halves of ten-billionths
EDGES = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-10, 5e-11, 1.5e-10, 2.5e-10,
         2.675, 0.125, 4503599627370496.0 / 1e10, 2251799813685248.0 / 1e10, 2.0**20,
         2.0**20 - 2.0**-32, 2.0**52, 1e308]


@settings(max_examples=3000)
@given(st.floats(allow_nan=False, allow_infinity=False)
       | st.floats(-2.0**21, 2.0**21)
       | st.floats(-1e-6, 1e-6)
       | st.builds(lambda b: struct.unpack("<d", struct.pack("<Q", b))[0],
                   st.integers(0, 2**64 - 1)).filter(math.isfinite)
       | st.integers(-(2**52), 2**52).flatmap(lambda k: st.sampled_from(_near_ties(k)))
       | st.integers(-(2**31), 2**31).map(lambda m: (2 * m + 1) / 2048)  # true ties: 11 decimals
       | st.sampled_from(EDGES).flatmap(lambda x: st.sampled_from(
           [x, -x, math.nextafter(x, math.inf), math.nextafter(x, -math.inf)])))
def test_round10_is_round_bit_for_bit(x: float) -> None:
    """The fast rounding of a decision's floats gives exactly ``round(x, 10)``: the same bits
    (sign of zero included) for every finite float, huge, tiny, subnormal or on a half."""
    got = _round10(x)
    assert got is not None and struct.pack("<d", got) == struct.pack("<d", round(x, 10))


def test_round10_writes_no_nan_or_infinity() -> None:
    assert _round10(math.nan) is None and _round10(math.inf) is None
    assert _round10(-math.inf) is None and _plain(math.nan) is None
