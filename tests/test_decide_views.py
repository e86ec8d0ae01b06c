"""What the fast decision path keeps apart from the slow one must not change an answer.

The pipeline reads a market and a policy once per object (``core.decide.MarketView`` and
``PolicyView``, cached by identity), records its trace flat (``TraceStep`` builds the
(name, value) pairs when read), writes a cap's note only when the cap binds
(``core.limits.Cap``) and formats lot amounts with whole numbers (``core.lots.format_lots``).
Each test here would fail if one of those shortcuts answered differently from the plain
reading.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal, localcontext

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision, TraceStep
from sizeguard.core.intent import Intent
from sizeguard.core.limits import LimitsView, notional_caps
from sizeguard.core.lots import decimal_step, decimal_units, format_amount, format_lots
from sizeguard.core.policy import Limits
from sizeguard.errors import InvalidInput
from sizing_helpers import trace_step

BOOK = load_markets(None)
BTC = "BTC/USDT:USDT"
POLICY = load_policy("ai-atr-risk")
INTENT = Intent(BTC, "long", 87_669.0, atr=2_000.0, confidence=0.52)
ACCOUNT = Account(equity=8_930.41)


def test_a_market_replaced_between_decisions_is_read_afresh() -> None:
    # more markets than the view cache holds (256), each a new object with its own taker fee:
    # the temporaries die and their ids come back, and every decision must still see its own
    base = BOOK[BTC]
    for k in range(300):
        fee = 0.0001 * (k + 1)
        d = decide(INTENT, ACCOUNT, replace(base, taker=fee), POLICY)
        assert trace_step(d, "validate")["taker_fee"] == fee
    # and the original object still answers as it did (0.05% taker, 21x after the guard)
    d = decide(INTENT, ACCOUNT, base, POLICY)
    assert trace_step(d, "validate")["taker_fee"] == 0.0005 and d.leverage == 21.0


def test_a_policy_replaced_between_decisions_is_read_afresh() -> None:
    for k in range(300):
        lev = float(1 + k % 20)
        policy = replace(POLICY, leverage=replace(POLICY.leverage, value=lev),
                         liquidation=replace(POLICY.liquidation, guard="off"))
        d = decide(INTENT, ACCOUNT, BOOK[BTC], policy)
        assert d.leverage == lev
    assert decide(INTENT, ACCOUNT, BOOK[BTC], POLICY).leverage == 21.0


def test_a_recorded_step_equals_the_same_step_given_as_pairs() -> None:
    flat = TraceStep("stop", bound="CAPPED", note="n", keys=("stop_price", "source"),
                     recorded=(84_669.0, "1.5 x ATR 2000"))
    pairs = TraceStep("stop", (("stop_price", 84_669.0), ("source", "1.5 x ATR 2000")),
                      "CAPPED", "n")
    assert flat.to_dict() == pairs.to_dict() == {
        "step": "stop", "stop_price": 84_669.0, "source": "1.5 x ATR 2000", "bound": "CAPPED",
        "note": "n"}
    assert flat == pairs and hash(flat) == hash(pairs) and repr(flat) == repr(pairs)
    assert flat.values == (("stop_price", 84_669.0), ("source", "1.5 x ATR 2000"))
    assert flat != TraceStep("stop", (("stop_price", 84_669.0),), "CAPPED", "n")
    with pytest.raises(AttributeError):
        flat.step = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="2 names for 1 values"):
        TraceStep("stop", keys=("a", "b"), recorded=(1.0,))


def test_a_decisions_trace_round_trips_through_json() -> None:
    d = decide(INTENT, ACCOUNT, BOOK[BTC], POLICY)
    back = Decision.from_dict(d.to_dict())  # floats come back rounded to 10 decimals
    assert back.to_dict() == d.to_dict() and [s.step for s in back.trace] == [s.step for s in d.trace]
    source = dict(d.trace[1].values)["source"]  # written out when read (decision.Text)
    assert type(source) is str and source == "1.5 x ATR 2000"
    assert d.to_dict()["trace"][1]["source"] == "1.5 x ATR 2000"


def test_a_stop_on_the_wrong_side_names_how_it_was_given() -> None:
    with pytest.raises(InvalidInput, match=r"the stop \(1.5 x ATR 60000\) lies on the wrong side"):
        decide(Intent(BTC, "long", 87_669.0, atr=60_000.0), ACCOUNT, BOOK[BTC], POLICY)


def test_cap_notes_are_written_when_read_as_before() -> None:
    limits = Limits(max_notional=5_000.0, max_symbol_notional=40_000.0,
                    max_gross_exposure=100_000.0, max_equity_leverage=3.0,
                    max_net_exposure=50_000.0)
    held = Position(BTC, "long", 10_000.0, 500.0)
    account = Account(equity=20_000.0, positions=(held,))
    for lim in (limits, LimitsView(limits)):
        caps = notional_caps(INTENT, account, lim)
        assert [(c.notional, c.code, c.note) for c in caps] == [
            (5_000.0, "CAPPED_MAX_NOTIONAL", "max notional per trade"),
            (30_000.0, "CAPPED_SYMBOL", "per-symbol cap 40000 less open 10000"),
            (90_000.0, "CAPPED_GROSS_EXPOSURE", "gross cap 100000 less open 10000"),
            (60_000.0, "CAPPED_EQUITY_LEVERAGE", "equity x 3"),
            (40_000.0, "CAPPED_NET_EXPOSURE", "net cap 50000: long 10000 open against 0"),
        ]


def _decimal_amount(lots: int, step: Decimal) -> str:
    with localcontext() as ctx:
        ctx.prec = 200
        text = format(Decimal(lots) * step, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@given(st.integers(-(10**30), 10**30),
       st.sampled_from([1e-12, 1e-8, 2.5e-5, 0.0001, 0.001, 0.01, 0.1, 0.25, 1.0, 5.0, 10.0,
                        100.0, 1_000.0]))
@example(0, 0.001)
@example(10, 0.001)
@example(1_000, 0.001)
@example(-3, 0.25)
def test_whole_number_formatting_is_the_exact_decimal(lots: int, step: float) -> None:
    exact = decimal_step(step)
    assert format_lots(lots, *decimal_units(exact)) == format_amount(lots, exact) == \
        _decimal_amount(lots, exact)
