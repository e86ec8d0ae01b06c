"""Side and group limits (issue 16 item 1): per-side position slots, the net exposure cap and
named groups of symbols with their own slots and exposure cap. One binding and one not, worked
by hand.

Base (``sizing_helpers.market``): TST/USDT:USDT at 100, no fee, 10x; risk 1% of 10,000 = 100
to a 2% stop -> notional 5,000, amount 50. Positions elsewhere are given directly.
"""

from __future__ import annotations

from typing import Any

import pytest

from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Reason, Status
from sizeguard.core.intent import Intent
from sizeguard.errors import PolicyError
from sizing_helpers import SYMBOL, market, policy, size, trace_step

LEV10 = {"value": 10, "max": 10}
A, B, C = "A/USDT:USDT", "B/USDT:USDT", "C/USDT:USDT"


def run(limits: dict[str, Any], positions: tuple[Position, ...], side: str = "long"):  # type: ignore[no-untyped-def]
    return size(Intent(SYMBOL, side, 100.0, stop_pct=2.0), Account(10_000.0, positions=positions),
                market(), policy(sizing={"model": "risk", "risk": 0.01}, limits=limits,
                                 leverage=LEV10))


LONG_A = Position(A, "long", 1_000.0, 100.0)
LONG_B = Position(B, "long", 1_000.0, 100.0)
SHORT_C = Position(C, "short", 1_500.0, 150.0)

GATES = [
    # two longs held (A, B), 2 allowed: a third long is refused
    ("long-full", {"max_long_positions": 2}, (LONG_A, LONG_B), "long", Reason.MAX_LONG_POSITIONS),
    # the same two longs do not take a short's slot
    ("long-full-short-free", {"max_long_positions": 2, "max_short_positions": 1},
     (LONG_A, LONG_B), "short", None),
    # one short (C) held, 1 allowed
    ("short-full", {"max_short_positions": 1}, (SHORT_C,), "short", Reason.MAX_SHORT_POSITIONS),
    ("short-free", {"max_short_positions": 2}, (SHORT_C,), "short", None),
    # a position and a reservation on A count once: one long symbol of 2 allowed
    ("long-counts-symbols", {"max_long_positions": 2},
     (LONG_A, Position(A, "long", 500.0, 50.0)), "long", None),
    # group memes = {A, B, TST}: A and B held, 2 slots -> TST refused
    ("group-full", {"groups": {"memes": {"symbols": [A, B, SYMBOL], "max_positions": 2}}},
     (LONG_A, LONG_B), "long", Reason.MAX_GROUP_POSITIONS),
    # the same group with 3 slots: open
    ("group-free", {"groups": {"memes": {"symbols": [A, B, SYMBOL], "max_positions": 3}}},
     (LONG_A, LONG_B), "long", None),
    # a full group TST is not in does not bind
    ("group-other", {"groups": {"majors": {"symbols": [A, B], "max_positions": 2}}},
     (LONG_A, LONG_B), "long", None),
]


@pytest.mark.parametrize(("limits", "positions", "side", "code"),
                         [pytest.param(*c[1:], id=c[0]) for c in GATES])
def test_side_and_group_slots(limits: dict[str, Any], positions: tuple[Position, ...],
                              side: str, code: Reason | None) -> None:
    d = run(limits, positions, side)
    if code is None:
        assert d.accepted, d.reasons
        assert d.amount == "50"  # 5,000 / 100
        assert trace_step(d, "gates")["bound"] is None
    else:
        assert d.status is Status.SKIPPED and d.reasons == (code,)
        assert trace_step(d, "gates")["bound"] == str(code)


CAPS = [
    # net cap 3,000: long open 2,000 (A, B) against short 1,500 (C) = net 500 long;
    # a long may add 3,000 - 500 = 2,500 -> amount 25
    ("net-binds", {"max_net_exposure": 3_000.0}, (LONG_A, LONG_B, SHORT_C), "long", "25",
     Reason.CAPPED_NET_EXPOSURE),
    # a short first lowers the net: room 3,000 - (1,500 - 2,000) = 3,500 -> the 5,000 wanted
    # is cut to 3,500 (short 1,500 + 3,500 = 5,000 against long 2,000: net 3,000, the cap)
    ("net-binds-short", {"max_net_exposure": 3_000.0}, (LONG_A, LONG_B, SHORT_C), "short",
     "35", Reason.CAPPED_NET_EXPOSURE),
    # net cap 6,000: 6,000 - 500 = 5,500 >= 5,000 wanted: not bound
    ("net-free", {"max_net_exposure": 6_000.0}, (LONG_A, LONG_B, SHORT_C), "long", "50", None),
    # group exposure 3,500 with A (1,000) and C (1,500) held: 3,500 - 2,500 = 1,000 -> 10
    ("group-exposure-binds",
     {"groups": {"memes": {"symbols": [A, C, SYMBOL], "max_exposure": 3_500.0}}},
     (LONG_A, LONG_B, SHORT_C), "long", "10", Reason.CAPPED_GROUP_EXPOSURE),
    # 10,000 - 2,500 = 7,500 >= 5,000: not bound
    ("group-exposure-free",
     {"groups": {"memes": {"symbols": [A, C, SYMBOL], "max_exposure": 10_000.0}}},
     (LONG_A, LONG_B, SHORT_C), "long", "50", None),
]


@pytest.mark.parametrize(("limits", "positions", "side", "amount", "code"),
                         [pytest.param(*c[1:], id=c[0]) for c in CAPS])
def test_net_and_group_exposure(limits: dict[str, Any], positions: tuple[Position, ...],
                                side: str, amount: str, code: Reason | None) -> None:
    d = run(limits, positions, side)
    assert d.accepted, d.reasons
    assert d.amount == amount
    bound = [s for s in d.trace if s.step == "limit"]
    if code is None:
        assert not [r for r in d.reasons if r.startswith("CAPPED")]
        assert not bound
    else:
        assert code in d.reasons
        assert bound[0].bound == str(code) and dict(bound[0].values)["notional"] == float(amount) * 100


def test_net_cap_exhausted_skips() -> None:
    # long 2,000 open, nothing short, net cap 2,000: no long room left
    d = run({"max_net_exposure": 2_000.0}, (LONG_A, LONG_B))
    assert d.status is Status.SKIPPED and d.reasons[-1] == Reason.CAPPED_NET_EXPOSURE


def test_groups_are_validated_key_by_key() -> None:
    with pytest.raises(PolicyError, match=r"limits\.groups\.memes\.max_positons.*max_positions"):
        policy(limits={"groups": {"memes": {"symbols": [A], "max_positons": 2}}})
    with pytest.raises(PolicyError, match=r"limits\.groups\.memes\.symbols"):
        policy(limits={"groups": {"memes": {"max_positions": 2}}})
    with pytest.raises(PolicyError, match=r"limits\.groups\.memes\.max_exposure"):
        policy(limits={"groups": {"memes": {"symbols": [A], "max_exposure": -1}}})
    with pytest.raises(PolicyError, match=r"limits\.max_long_positions"):
        policy(limits={"max_long_positions": 1.5})


def test_groups_round_trip_through_plain_data() -> None:
    from sizeguard.core.policy import policy_from_dict, policy_to_dict
    p = policy(limits={"groups": {"memes": {"symbols": [A, B], "max_positions": 2}}})
    data = policy_to_dict(p)
    assert data["limits"]["groups"] == {"memes": {"symbols": [A, B], "max_positions": 2,
                                                  "max_exposure": "inf"}}
    assert policy_from_dict(data) == p
