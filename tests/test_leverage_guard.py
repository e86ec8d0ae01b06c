"""The liquidation guard, leverage modes and tiers in the pipeline (issue 3), hand-worked.

The DESIGN reference case (ai-atr-risk): equity 8,930.41, BTC 87,669 long, ATR 2,000, conf 0.52.
  risk fraction 1% x 0.5 (confidence < 0.60) = 0.5%, inside the clamp [0.5%, 1.5%]
  risk money = 8,930.41 x 0.005 = 44.65205
  stop = 87,669 - 1.5 x 2,000 = 84,669; distance D = 3,000 / 87,669 = 3.42196%
  notional = 44.65205 / (D + 2 x 0.0005 taker) = 1,267.82 (fees in risk), 1,304.87 without
  -> capped at 1,250; at 30x margin 41.67.
  30x long, tier 1 (mmr 0.004, cum 0): LP = 87,669 x (1 - 1/30) / 0.996 = 85,087.048,
  2.9451% below entry: inside the 3.42% stop, which would never fire.
  The guard wants liquidation >= D x 1.25 = 4.27745% away:
  k = 1 - (1 - 0.0427745) x 0.996 = 0.0466034 -> safe leverage 1/k = 21.457 -> 21 (whole).
  At 21x: LP = 87,669 x (20/21) / 0.996 = 83,829.604, 4.3794% below entry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.cli.main import app
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision, Reason
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict, with_changes
from sizeguard.core.tiers import find_tier, tiers_from_ccxt

BTC = "BTC/USDT:USDT"
REF_INTENT = Intent(BTC, "long", 87_669.0, atr=2_000.0, confidence=0.52)
REF_ACCOUNT = Account(equity=8_930.41)


@pytest.fixture(scope="module")
def btc() -> MarketRules:
    return load_markets(None)[BTC]  # built-in: Binance BTC perp, 2026 brackets, taker 0.05%


def _ref(btc: MarketRules, *sets: str, account: Account = REF_ACCOUNT) -> Decision:
    return decide(REF_INTENT, account, btc, load_policy("ai-atr-risk", sets=sets))


def _step(d: Decision, name: str) -> dict[str, Any]:
    steps = [dict(s.values) | {"bound": s.bound, "note": s.note} for s in d.trace
             if s.step == name]
    assert steps, f"no {name} step in the trace"
    return steps[-1]


# -- the reference case, each guard mode ----------------------------------------------------

def test_reference_case_lower_leverage(btc: MarketRules) -> None:
    d = _ref(btc)
    assert d.accepted
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    assert Reason.SHRUNK_FOR_LIQUIDATION not in d.reasons
    g = _step(d, "liquidation_guard")
    assert g["bound"] == "LEVERAGE_LOWERED_FOR_LIQUIDATION"
    assert (g["leverage_before"], g["leverage"]) == (30.0, 21.0)
    assert g["liquidation_price_before"] == pytest.approx(85_087.048, rel=1e-7)
    assert g["stop_price"] == 84_669.0
    assert g["required_distance_pct"] == pytest.approx(4.27745, rel=1e-5)
    assert g["notional"] == g["notional_before"] == pytest.approx(1_250.0)
    assert d.leverage == 21.0
    # 0.014 BTC (1,250 / 87,669 = 0.01426 floored) = 1,227.366; margin 1,227.366 / 21
    assert d.amount == "0.014"
    assert d.margin == pytest.approx(1_227.366 / 21)
    assert d.liquidation_price == pytest.approx(83_829.604, rel=1e-7)
    assert d.liquidation_distance_pct == pytest.approx(4.3794, rel=1e-4)
    assert d.stop_price == 84_669.0
    assert (d.tier, d.maintenance_margin_rate, d.margin_mode) == (1, 0.004, "isolated")


def test_reference_case_guard_off_reproduces_the_seed(btc: MarketRules) -> None:
    d = _ref(btc, 'liquidation.guard="off"')
    assert d.accepted and d.leverage == 30.0
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION not in d.reasons
    assert _step(d, "leverage")["margin"] == pytest.approx(41.67, abs=0.005)  # 1,250 / 30
    # the problem is still reported: liquidation 2.945% away, inside the 3.42% stop
    assert d.liquidation_price == pytest.approx(85_087.048, rel=1e-7)
    assert d.liquidation_distance_pct == pytest.approx(2.9451, rel=1e-4)
    assert "never fires" in _step(d, "liquidation_guard")["note"]
    # the seed ignored fees: its 1,304.9 notional before the 1,250 cap
    seed = _ref(btc, 'liquidation.guard="off"', "sizing.fees_in_risk=false")
    assert _step(seed, "notional")["notional"] == pytest.approx(1_304.87, abs=0.005)
    assert _step(seed, "leverage")["margin"] == pytest.approx(41.67, abs=0.005)
    # and with fees in the risk (exit fee on the notional at the stop, 96.578% of entry's):
    # 44.65205 / (0.0342196 + 0.0005 + 0.0005 x 0.9657804) = 44.65205 / 0.0352025 = 1,268.43
    assert _step(d, "notional")["notional"] == pytest.approx(1_268.43, abs=0.005)


def test_reference_case_refuse(btc: MarketRules) -> None:
    d = _ref(btc, 'liquidation.guard="refuse"')
    assert not d.accepted and d.amount == "0"
    assert Reason.STOP_BEYOND_LIQUIDATION in d.reasons
    g = _step(d, "liquidation_guard")
    assert g["bound"] == "STOP_BEYOND_LIQUIDATION"
    assert (g["leverage"], g["safe_leverage"]) == (30.0, 21)
    # a float on both builds (mypyc's math.floor gives a float, Python's an int: the JSON
    # said 21 or 21.0 depending on the build)
    assert type(g["safe_leverage"]) is float
    assert '"safe_leverage": 21.0' in json.dumps(d.to_dict())
    assert g["liquidation_price"] == pytest.approx(85_087.048, rel=1e-7)


def test_reference_case_shrink_keeps_the_margin(btc: MarketRules) -> None:
    d = _ref(btc, 'liquidation.guard="shrink"')
    assert d.accepted and d.leverage == 21.0
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    assert Reason.SHRUNK_FOR_LIQUIDATION in d.reasons
    # margin kept at 1,250 / 30 = 41.667; at 21x that buys 875
    g = _step(d, "liquidation_guard")
    assert g["notional"] == pytest.approx(875.0)
    assert _step(d, "leverage")["margin"] == pytest.approx(1_250 / 30)
    assert d.amount == "0.009"  # 875 / 87,669 = 0.00998 -> 0.009


def test_lower_leverage_shrinks_when_margin_does_not_allow(btc: MarketRules) -> None:
    # available 50: at 30x, 41.67 + fee 0.625 fits; at 21x, 59.52 + 0.625 does not.
    # The most that fits at 21x: 50 / (0.0476190 + 0.0005) = 50 / 0.0481190 = 1,039.0896
    d = _ref(btc, account=Account(equity=8_930.41, available=50.0))
    assert d.accepted and d.leverage == 21.0
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    assert Reason.SHRUNK_FOR_LIQUIDATION in d.reasons
    assert _step(d, "liquidation_guard")["notional"] == pytest.approx(1_039.0896, rel=1e-6)
    assert d.amount == "0.011"  # 1,039.09 / 87,669 = 0.01185


def test_larger_buffer_lowers_leverage_further(btc: MarketRules) -> None:
    # buffer 1.0: distance >= 6.8439%; k = 1 - 0.9315608 x 0.996 = 0.0721654 -> 13.857 -> 13
    d = _ref(btc, "liquidation.buffer=1.0")
    assert d.accepted and d.leverage == 13.0


def test_without_a_stop_the_liquidation_is_reported(btc: MarketRules) -> None:
    # fixed notional 1,250 at 30x, no stop: nothing to guard, LP 85,087.048 (2.9451%) reported
    policy = policy_from_dict({"sizing": {"model": "fixed_notional", "notional": 1_250.0},
                               "leverage": {"value": 30, "max": 30}})
    d = decide(Intent(BTC, "long", 87_669.0), REF_ACCOUNT, btc, policy)
    assert d.accepted and d.stop_price is None and d.leverage == 30.0
    assert not {Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION, Reason.STOP_BEYOND_LIQUIDATION} & set(
        d.reasons)
    assert d.liquidation_price == pytest.approx(85_087.048, rel=1e-7)
    assert d.liquidation_distance_pct == pytest.approx(2.9451, rel=1e-4)
    # short: 87,669 x (1 + 1/30) = 90,591.30; / 1.004 = 90,230.378, 2.9216% above
    d = decide(Intent(BTC, "short", 87_669.0), REF_ACCOUNT, btc, policy)
    assert d.liquidation_price == pytest.approx(90_230.378, rel=1e-7)
    assert d.liquidation_distance_pct == pytest.approx(2.9216, rel=1e-4)


def test_cross_margin_shrinks_the_position(btc: MarketRules) -> None:
    # wallet 1,000; another position with maintenance 20 and uPnL -30: collateral
    # C = 1,000 - 20 - 30 = 950 (Binance: WB - TMM1 + UPNL1). Long 100,000, stop 95,000,
    # buffer 25%: needs 6.25%: k = 1 - 0.9375 x 0.996 = 0.06625 -> safe notional
    # 950 / 0.06625 = 14,339.62 < 20,000 wanted -> 0.143 BTC = 14,300.
    # LP: cover 950 / 14,300 = 0.0664336, 100,000 x 0.9335664 / 0.996 = 93,731.57 < 93,750
    other = Position("ETH/USDT:USDT", "long", 2_000.0, 200.0, maintenance_margin=20.0,
                     unrealised_pnl=-30.0)
    account = Account(equity=970.0, positions=(other,), wallet_balance=1_000.0)
    policy = policy_from_dict({"sizing": {"model": "fixed_notional", "notional": 20_000.0},
                               "leverage": {"value": 50, "max": 50, "margin_mode": "cross"}})
    d = decide(Intent(BTC, "long", 100_000.0, stop=95_000.0), account, btc, policy)
    assert d.accepted and d.margin_mode == "cross" and d.leverage == 50.0
    assert Reason.SHRUNK_FOR_LIQUIDATION in d.reasons
    assert _step(d, "liquidation_guard")["notional"] == pytest.approx(14_339.62, rel=1e-6)
    assert d.amount == "0.143"
    assert d.liquidation_price == pytest.approx(93_731.57, rel=1e-6)
    refused = decide(Intent(BTC, "long", 100_000.0, stop=95_000.0), account, btc,
                     with_changes(policy, "liquidation", guard="refuse"))
    assert not refused.accepted and Reason.STOP_BEYOND_LIQUIDATION in refused.reasons


# -- leverage modes -------------------------------------------------------------------------

def test_fixed_leverage_capped_by_policy_and_tier(btc: MarketRules) -> None:
    # 400,000 notional (tier 2, 100x) asked at 125x with policy max 120: the policy cuts to
    # 120, the tier to 100
    policy = policy_from_dict({"sizing": {"model": "fixed_notional", "notional": 400_000.0},
                               "leverage": {"value": 100, "max": 120}})
    d = decide(Intent(BTC, "long", 100_000.0, leverage=125.0), Account(equity=100_000.0),
               btc, policy)
    assert d.accepted and d.leverage == 100.0 and d.tier == 2
    assert Reason.CAPPED_LEVERAGE_POLICY in d.reasons
    assert Reason.CAPPED_LEVERAGE_TIER in d.reasons


def test_auto_leverage_is_the_lowest_that_fits(btc: MarketRules) -> None:
    # 10,000 notional, per-trade margin cap 400: margin + entry fee (5) must fit 400:
    # 10,000 / L <= 395 -> L >= 25.316 -> 26 (whole leverage)
    policy = policy_from_dict({
        "sizing": {"model": "fixed_notional", "notional": 10_000.0},
        "limits": {"max_margin": 400.0},
        "leverage": {"mode": "auto", "max": 50}})
    d = decide(Intent(BTC, "long", 100_000.0), Account(equity=100_000.0), btc, policy)
    assert d.accepted and d.leverage == 26.0 and d.amount == "0.1"
    assert d.margin + d.fees / 2 <= 400.0
    # available margin binds instead: 300 -> 10,000 / 295 = 33.9 -> 34
    d = decide(Intent(BTC, "long", 100_000.0), Account(equity=100_000.0, available=300.0),
               btc, policy)
    assert d.accepted and d.leverage == 34.0


# -- properties -----------------------------------------------------------------------------

# a steep table so that small notionals cross tiers: cum built as Binance does
STEEP = tiers_from_ccxt([
    {"tier": 1, "minNotional": 0, "maxNotional": 1_000, "maintenanceMarginRate": 0.004,
     "maxLeverage": 100, "info": {"cum": 0}},
    {"tier": 2, "minNotional": 1_000, "maxNotional": 5_000, "maintenanceMarginRate": 0.01,
     "maxLeverage": 50, "info": {"cum": 6}},  # 1,000 x 0.006
    {"tier": 3, "minNotional": 5_000, "maxNotional": 20_000, "maintenanceMarginRate": 0.025,
     "maxLeverage": 20, "info": {"cum": 81}},  # 6 + 5,000 x 0.015
    {"tier": 4, "minNotional": 20_000, "maxNotional": 10_000_000, "maintenanceMarginRate": 0.05,
     "maxLeverage": 10, "info": {"cum": 581}},  # 81 + 20,000 x 0.025
], "STEEP")


def _policy(model: str, size: float, lev: int, guard: str, mode: str, buffer: float,
            max_margin: float, integer: bool = True) -> Policy:
    sizing: dict[str, Any] = ({"model": "risk", "risk": size} if model == "risk"
                              else {"model": "fixed_notional", "notional": size})
    return policy_from_dict({
        "sizing": sizing, "limits": {"max_margin": max_margin},
        "leverage": {"value": lev, "max": lev, "margin_mode": mode, "integer": integer},
        "liquidation": {"guard": guard, "buffer": buffer}})


cases = st.fixed_dictionaries({
    "steep": st.booleans(),
    "long": st.booleans(),
    "price": st.floats(1_000.0, 100_000.0),
    "equity": st.floats(200.0, 200_000.0),
    "stop_pct": st.floats(0.2, 25.0),
    "model": st.sampled_from(["risk", "fixed_notional"]),
    "risk": st.floats(0.002, 0.05),
    "notional": st.floats(50.0, 400_000.0),
    "lev": st.integers(1, 125),
    "guard": st.sampled_from(["lower_leverage", "shrink", "refuse"]),
    "mode": st.sampled_from(["isolated", "cross"]),
    "buffer": st.floats(0.0, 1.0),
    "max_margin": st.sampled_from([float("inf"), 100.0, 1_000.0]),
    "integer": st.booleans(),  # whole leverage (the default) or any
})


def _run(btc: MarketRules, c: dict[str, Any], lev: int | None = None,
         guard: str | None = None, integer: bool | None = None) -> Decision:
    market = btc.with_tiers(STEEP, "steep") if c["steep"] else btc
    size = c["risk"] if c["model"] == "risk" else c["notional"]
    policy = _policy(c["model"], size, lev or c["lev"], guard or c["guard"], c["mode"],
                     c["buffer"], c["max_margin"], c["integer"] if integer is None else integer)
    intent = Intent(BTC, "long" if c["long"] else "short", c["price"], stop_pct=c["stop_pct"])
    return decide(intent, Account(equity=c["equity"]), market, policy)


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(c=cases)
def test_leverage_never_exceeds_tier_or_policy_max(btc: MarketRules, c: dict[str, Any]) -> None:
    d = _run(btc, c)
    if not d.accepted:
        return
    tiers = STEEP if c["steep"] else btc.tiers
    tier = find_tier(tiers, d.notional)
    assert tier is not None
    assert d.leverage <= tier.max_leverage
    assert d.leverage <= c["lev"]
    # the entry bracket sets the max leverage; ``tier`` is the bracket the liquidation price
    # used, which a linear long reaches with a smaller notional (#10 item 3)
    assert d.entry_tier == tier.tier
    assert d.tier is not None and d.tier <= d.entry_tier if c["long"] else d.tier >= d.entry_tier


@SETTINGS
@given(c=cases)
def test_guarded_stop_lies_between_entry_and_liquidation(btc: MarketRules,
                                                         c: dict[str, Any]) -> None:
    d = _run(btc, c)
    if not d.accepted:
        return
    assert d.stop_price is not None and d.liquidation_price is not None
    assert d.stop_distance_pct is not None and d.liquidation_distance_pct is not None
    if c["long"]:
        assert d.liquidation_price < d.stop_price < d.entry_price
    else:
        assert d.entry_price < d.stop_price < d.liquidation_price
    need = d.stop_distance_pct * (1 + c["buffer"])
    assert d.liquidation_distance_pct >= need * (1 - 1e-9)


@SETTINGS
@given(c=cases, lower=st.integers(1, 125))
def test_lowering_leverage_never_increases_the_notional(btc: MarketRules, c: dict[str, Any],
                                                        lower: int) -> None:
    # whole leverage: a continuous one is found by bisection, to within rounding
    high = _run(btc, c, guard="lower_leverage", integer=True)
    for step in high.trace:
        values = dict(step.values)
        if step.step == "liquidation_guard" and "notional_before" in values:
            assert values["notional"] <= values["notional_before"]
    low = _run(btc, c, lev=min(lower, c["lev"]), guard="lower_leverage", integer=True)
    assert low.notional <= high.notional * (1 + 1e-12)


# -- CLI ------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--margin-mode", "cross"]], ids=["isolated", "cross"])
def test_cli_json_has_the_liquidation_keys(extra: list[str]) -> None:
    tiers = shared_path("leverage_tiers", "binanceusdm.json")
    markets = shared_path("markets", "binanceusdm.json")
    result = CliRunner().invoke(app, [
        "size", BTC, "--side", "long", "--price", "87669", "--equity", "8930.41",
        "--atr", "2000", "--confidence", "0.52", "--tiers", str(tiers), "--markets",
        str(markets), "--json", *extra])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key in ("liquidation_price", "liquidation_distance_pct", "maintenance_margin_rate",
                "tier"):
        assert key in out
    assert out["status"] == "accepted" and out["amount"] == "0.014"
    assert (out["tier"], out["maintenance_margin_rate"]) == (1, 0.004)
    if extra:
        # cross: the whole 8,930.41 wallet backs 1,227.37 of notional: no liquidation price
        # above zero (cover 7.28 > 1), and the guard has nothing to lower: 30x stands
        assert out["margin_mode"] == "cross" and out["leverage"] == 30
        assert out["liquidation_price"] == 0.0 and out["liquidation_distance_pct"] == 100.0
    else:
        assert out["margin_mode"] == "isolated" and out["leverage"] == 21
        assert "LEVERAGE_LOWERED_FOR_LIQUIDATION" in out["reasons"]
        assert out["liquidation_price"] == pytest.approx(83_829.604, rel=1e-7)


def test_auto_leverage_never_gives_a_position_without_margin() -> None:
    # the shared Binance markets carry no leverage limit (inf) and no tiers. 100,000 notional
    # with taker 0.04% costs 40 in fees alone; available 30 cannot pay it at any leverage.
    market = load_markets(shared_path("markets", "binanceusdm.json"))[BTC]
    assert market.max_leverage == float("inf")
    intent, account = Intent(BTC, "long", 100_000.0), Account(equity=1_000.0, available=30.0)
    policy = policy_from_dict({"sizing": {"model": "fixed_notional", "notional": 100_000.0},
                               "leverage": {"mode": "auto"}})
    with pytest.raises(ValueError, match=r"leverage\.max"):
        decide(intent, account, market, policy)
    # with a finite max (20x) the notional shrinks to what 30 carries:
    # 30 / (1/20 + 0.0004) = 30 / 0.0504 = 595.238 -> 0.005 BTC
    d = decide(intent, account, market, with_changes(policy, "leverage", max=20))
    assert d.accepted and d.leverage == 20.0 and d.amount == "0.005"
    assert Reason.CAPPED_AVAILABLE in d.reasons


def test_far_stop_long_at_1x_is_never_liquidated(btc: MarketRules) -> None:
    # stop 85% below, buffer 25%: 106.25% asked, but a linear long's liquidation price cannot
    # go below zero. At 1x: cover 1, LP = 100,000 x 0 / 0.996 = 0 -> never liquidated: safe.
    # 2x asked -> k = 1 - 0 x 0.996 = 1 -> safe leverage 1 -> lowered to 1x.
    policy = policy_from_dict({"sizing": {"model": "fixed_notional", "notional": 1_000.0},
                               "leverage": {"value": 2, "max": 2}})
    d = decide(Intent(BTC, "long", 100_000.0, stop_pct=85.0), Account(equity=10_000.0), btc,
               policy)
    assert d.accepted and d.leverage == 1.0
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    assert d.liquidation_price == 0.0 and d.liquidation_distance_pct == 100.0
    # a short has no such floor: at 1x it is liquidated at 100,000 x 2 / 1.004 = 199,203
    # (+99.2%), short of the 106.25% needed -> skipped
    d = decide(Intent(BTC, "short", 100_000.0, stop_pct=85.0), Account(equity=10_000.0), btc,
               policy)
    assert not d.accepted and Reason.STOP_BEYOND_LIQUIDATION in d.reasons
