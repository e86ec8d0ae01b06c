"""The tier a decision reports is the one its liquidation price used (#10 item 3).

A linear long's notional shrinks on the way down to its liquidation price, so the bracket
charged there can be far below the entry bracket; a short's grows. The decision reports the
bracket of the liquidation price as ``tier`` / ``maintenance_margin_rate`` /
``maintenance_amount``, and the entry bracket (which sets the max leverage) as ``entry_tier``.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared_path
from sizeguard.adapters.market_files import load_tiers
from sizeguard.core import liquidation as liq
from sizeguard.core.account import Account
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.tiers import find_tier
from sizing_helpers import market, policy, size

ASTER = "ASTER/USDT:USDT"
BIG = 1e12  # limits out of the way: only tiers and leverage act


@functools.cache
def _aster() -> MarketRules:
    tiers = load_tiers(shared_path("leverage_tiers", "binanceusdm.json"))[ASTER]
    return market(symbol=ASTER, amount_step=1.0, tiers=tiers, max_leverage=75.0)


def _fixed(notional: float, lev: float) -> Any:
    return policy(sizing={"model": "fixed_notional", "notional": notional},
                  leverage={"value": lev, "max": lev},
                  limits={"max_notional": BIG, "max_symbol_notional": BIG,
                          "max_gross_exposure": BIG, "max_equity_leverage": 1_000,
                          "max_margin_pct": 1, "max_margin": BIG})


def test_aster_long_reports_the_tier_it_is_liquidated_on() -> None:
    # Binance ASTER/USDT:USDT brackets: tier 8 is [10M, 12.5M) at 2x, rate 0.25, cum 1,743,600;
    # tier 6 is [5M, 7.5M) at 5x, rate 0.10, cum 306,100.
    # 11,000,000 ASTER long at 1.0, 2x isolated: entry bracket tier 8, margin 5,500,000.
    # With tier 8: cover (5,500,000 + 1,743,600) / 11,000,000 = 0.6585091,
    #   LP = (1 - 0.6585091) / (1 - 0.25) = 0.4553212; 11M x that = 5.01M: tier 6, not 8.
    # With tier 6: cover (5,500,000 + 306,100) / 11,000,000 = 0.5278273,
    #   LP = (1 - 0.5278273) / (1 - 0.10) = 0.5246364; 11M x that = 5,771,000: tier 6, settled.
    # Before the fix the decision said tier 8, rate 0.25 beside this tier-6 price.
    d = size(Intent(ASTER, "long", 1.0), Account(equity=10_000_000.0), _aster(),
             _fixed(11_000_000.0, 2))
    assert d.accepted and d.amount == "11000000" and d.leverage == 2.0
    assert d.liquidation_price == pytest.approx(0.5246363636, rel=1e-9)
    assert (d.tier, d.maintenance_margin_rate, d.maintenance_amount) == (6, 0.10, 306_100.0)
    assert d.entry_tier == 8
    out = d.to_dict()
    assert (out["tier"], out["maintenance_margin_rate"], out["maintenance_amount"],
            out["entry_tier"]) == (6, 0.10, 306_100.0, 8)


def test_reported_tier_reproduces_the_liquidation_price() -> None:
    # The same position sized 2 ASTER short of the tier-7 floor: the rate and amount reported
    # give back the reported price through the one liquidation formula.
    d = size(Intent(ASTER, "long", 1.0), Account(equity=10_000_000.0), _aster(),
             _fixed(7_499_998.0, 4))
    assert d.accepted and d.liquidation_price is not None
    assert d.maintenance_margin_rate is not None and d.maintenance_amount is not None
    again = liq.liquidation_price(True, False, 1.0, d.notional, d.margin,
                                  d.maintenance_margin_rate, d.maintenance_amount)
    assert again == pytest.approx(d.liquidation_price, rel=1e-12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notional=st.floats(1_000.0, 14_900_000.0), long=st.booleans(),
       lev=st.sampled_from([1, 2, 4, 5, 10, 20, 25, 50, 75]))
def test_tier_is_the_bracket_at_the_liquidation_price(notional: float, long: bool,
                                                      lev: int) -> None:
    aster = _aster()
    d = size(Intent(ASTER, "long" if long else "short", 1.0), Account(equity=1e9), aster,
             _fixed(notional, lev))
    if not d.accepted or d.liquidation_price is None:
        return
    entry = find_tier(aster.tiers, d.notional)
    assert entry is not None and d.entry_tier == entry.tier
    lp = d.liquidation_price
    if not 0 < lp < float("inf"):
        return
    at = find_tier(aster.tiers, d.notional * lp) or aster.tiers[-1]
    assert d.tier == at.tier
    assert (d.maintenance_margin_rate, d.maintenance_amount) == (
        at.maintenance_margin_rate, at.maintenance_amount)


def test_spot_and_skips_report_no_liquidation_bracket() -> None:
    spot = market(kind="spot", max_leverage=1.0)
    d = size(Intent("TST/USDT:USDT", "long", 100.0, stop_pct=2.0), Account(equity=10_000.0), spot)
    assert d.accepted and (d.tier, d.entry_tier, d.maintenance_amount) == (None, None, None)
