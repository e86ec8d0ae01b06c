"""A preset's clamp never applies to the wrong unit (issue 10, item 9 / measurement 9).

``adjust.min``/``adjust.max`` bound a *fraction* (the risk fraction for risk and kelly, the
balance fraction, the target volatility). A model that sizes money (``fixed_margin``,
``fixed_notional``) is not clamped by them: ai-atr-risk's [0.005, 0.015] once turned 80 USDT of
margin into 0.015 USDT. Money is bounded by ``limits.*`` (max_margin, min/max_notional).
"""

from __future__ import annotations

import pytest

from sizeguard.config import load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizing_helpers import market, trace_step


@pytest.fixture
def btc() -> MarketRules:
    from sizeguard.adapters.market_files import load_markets

    return load_markets(None)["BTC/USDT:USDT"]


def test_fixed_margin_under_ai_atr_risk_keeps_its_80_usdt(btc: MarketRules) -> None:
    # 80 USDT of margin at the preset's 30x = 2,400 notional, which the preset's own money
    # limit (limits.max_notional 1,250) then caps; the risk clamp [0.005, 0.015] does not act.
    # The 1.5 x ATR stop (3.42%) lies beyond 30x's liquidation: the guard lowers to 21x keeping
    # the margin 1,250 / 30 = 41.667: 41.667 x 21 = 875 -> 875 / 87,669 = 0.00998 -> 0.009 BTC,
    # notional 0.009 x 87,669 = 789.021 (the clamp made it 0.015 x 30 = 0.45: nothing).
    policy = load_policy("ai-atr-risk", sets=['sizing.model="fixed_margin"', "sizing.margin=80"])
    d = decide(Intent("BTC/USDT:USDT", "long", 87_669.0, atr=2_000.0), Account(equity=10_000.0),
               btc, policy)
    adjust = trace_step(d, "adjust")
    assert adjust["clamped"] == 80.0 and adjust["adjusted"] == 80.0
    assert "adjust.min" in (adjust["note"] or "")
    notional = trace_step(d, "notional")
    assert notional["margin"] == 80.0 and notional["notional"] == 80.0 * 30
    assert d.accepted and d.amount == "0.009"
    assert d.notional == pytest.approx(789.021)


def test_fixed_notional_is_not_clamped_either() -> None:
    policy = load_policy("ai-atr-risk", sets=['sizing.model="fixed_notional"',
                                              "sizing.notional=500", "limits.max_notional=1e9"])
    d = decide(Intent("TST/USDT:USDT", "long", 100.0, stop_pct=2.0), Account(equity=10_000.0),
               market(max_leverage=30.0), policy)
    assert trace_step(d, "adjust")["adjusted"] == 500.0
    assert d.notional == pytest.approx(500.0)


def test_fractions_are_still_clamped() -> None:
    # the risk model: 1% x 0.5 (confidence 0.52 < 0.60) = 0.5%, floor 0.5%: inside;
    # with adjust.min 0.008 the floor lifts it to 0.8%
    policy = load_policy("ai-atr-risk", sets=["adjust.min=0.008"])
    d = decide(Intent("TST/USDT:USDT", "long", 100.0, stop_pct=2.0, confidence=0.52),
               Account(equity=10_000.0), market(max_leverage=30.0), policy)
    adjust = trace_step(d, "adjust")
    assert adjust["before_clamp"] == pytest.approx(0.005)
    assert adjust["clamped"] == pytest.approx(0.008)
    assert adjust["note"] is None
    # balance_fraction is a fraction too: 0.5 clamped to adjust.max 0.25
    bf = load_policy("quantum-4x30", sets=["sizing.fraction=0.5", "adjust.max=0.25"])
    d = decide(Intent("TST/USDT:USDT", "long", 100.0), Account(equity=1_000.0),
               market(max_leverage=30.0), bf)
    assert trace_step(d, "adjust")["clamped"] == pytest.approx(0.25)
