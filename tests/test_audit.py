"""The policy audit: each finding once failing and once passing, numbers worked by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core import liquidation as liq
from sizeguard.core.audit import ERROR, INFO, WARNING, AuditReport, Finding, audit, relevant_markets, slot
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict
from sizeguard.core.tiers import Tier

BOOK = load_markets(None)
BTC = BOOK["BTC/USDT:USDT"]


def pol(**sections: Any) -> Policy:
    return policy_from_dict(sections, cross_check=False)


def findings(report: AuditReport, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code]


def perp(symbol: str = "X/USDT:USDT", *, min_cost: float = 5.0, max_leverage: float = 125.0,
         tiers: tuple[Tier, ...] = ()) -> MarketRules:
    m = MarketRules(symbol=symbol, kind="swap", linear=True, inverse=False, contract_size=1.0,
                    amount_step=0.001, price_tick=0.1, min_amount=0.001, min_cost=min_cost,
                    max_leverage=max_leverage, taker=0.0005)
    return m.with_tiers(tiers, "test") if tiers else m


# -- the quantum-4x30 case -------------------------------------------------------------------

def test_quantum_slot_is_margin_times_leverage() -> None:
    s = slot(load_policy("quantum-4x30"), 10_000)
    assert (s.margin, s.leverage, s.notional) == (2500.0, 30.0, 75_000.0)  # 10,000 x 25% x 30


def test_symbol_cap_below_slot_fails_at_10000() -> None:
    r = audit(load_policy("quantum-4x30"), [BTC], equity=10_000)
    [f] = findings(r, "SYMBOL_CAP_BELOW_SLOT")
    assert f.severity == WARNING
    assert "75,000" in f.message and "40,000" in f.message
    assert f.keys == ("limits.max_symbol_notional",)


def test_symbol_cap_passes_at_1500() -> None:
    r = audit(load_policy("quantum-4x30"), [BTC], equity=1_500)  # slot 11,250 < 40,000
    assert not findings(r, "SYMBOL_CAP_BELOW_SLOT")
    assert "SYMBOL_CAP_BELOW_SLOT" in r.passed


def test_gross_below_slots() -> None:
    r = audit(load_policy("quantum-4x30"), [BTC], equity=10_000)
    [f] = findings(r, "GROSS_BELOW_SLOTS")  # 4 x 40,000 = 160,000 > 150,000
    assert f.severity == WARNING and "160,000" in f.message and "3.75" in f.message
    ok = audit(load_policy("quantum-4x30"), [BTC], equity=1_500)  # 4 x 11,250 = 45,000
    assert not findings(ok, "GROSS_BELOW_SLOTS") and "GROSS_BELOW_SLOTS" in ok.passed


# -- slots x margin --------------------------------------------------------------------------

def test_slots_over_equity_error_on_equity_basis() -> None:
    p = pol(sizing={"model": "balance_fraction", "fraction": 0.25, "balance": "equity"},
            limits={"max_positions": 6}, leverage={"value": 10, "max": 10})
    [f] = findings(audit(p, [BTC], equity=1_000), "SLOTS_OVER_EQUITY")
    assert f.severity == ERROR and "150%" in f.message  # 6 x 250 = 1,500 of 1,000


def test_slots_over_equity_fixed_margin() -> None:
    p = pol(sizing={"model": "fixed_margin", "margin": 300.0}, limits={"max_positions": 4},
            leverage={"value": 5, "max": 5})
    [f] = findings(audit(p, [BTC], equity=1_000), "SLOTS_OVER_EQUITY")
    assert f.severity == ERROR and "1,200" in f.message


def test_slots_over_equity_available_basis_is_a_warning_about_shrinking_slots() -> None:
    p = pol(sizing={"model": "balance_fraction", "fraction": 0.25, "balance": "available"},
            limits={"max_positions": 6}, leverage={"value": 30, "max": 30})
    [f] = findings(audit(p, [BTC], equity=1_000), "SLOTS_OVER_EQUITY")
    assert f.severity == WARNING
    assert f"{0.25 * 0.75 ** 5:.1%}" in f.message  # the sixth slot gets 5.9% of equity


def test_slots_fit_exactly() -> None:
    r = audit(load_policy("quantum-4x30"), [BTC], equity=1_500)  # 4 x 25% = 100%
    assert not findings(r, "SLOTS_OVER_EQUITY") and "SLOTS_OVER_EQUITY" in r.passed


def test_unlimited_positions_is_info_only() -> None:
    r = audit(load_policy("viper-fixed-margin"), [BTC])
    [f] = findings(r, "SLOTS_OVER_EQUITY")
    assert f.severity == INFO
    assert not r.errors


# -- tiers -----------------------------------------------------------------------------------

TIERS = (Tier(1, 0.0, 30_000.0, 0.004, 50.0, 0.0), Tier(2, 30_000.0, 250_000.0, 0.005, 20.0, 30.0))


def test_leverage_above_tier_at_slot_notional() -> None:
    # 10,000 x 25% x 30 = 75,000, cut to the 40,000 per-symbol cap: tier 2 allows only 20x
    m = perp(tiers=TIERS)
    [f] = findings(audit(load_policy("quantum-4x30"), [m], equity=10_000), "LEVERAGE_ABOVE_TIER")
    assert f.severity == WARNING and "30x" in f.message and "20x" in f.message and f.symbol == m.symbol
    assert "40,000" in f.message
    ok = audit(load_policy("quantum-4x30"), [m], equity=1_500)  # 11,250 sits in tier 1 (50x)
    assert not findings(ok, "LEVERAGE_ABOVE_TIER")


def test_leverage_above_market_max_without_tiers() -> None:
    m = perp(max_leverage=20.0)
    [f] = findings(audit(load_policy("viper-fixed-margin"), [m]), "LEVERAGE_ABOVE_TIER")
    assert "50x" in f.message and "20x" in f.message
    assert not findings(audit(load_policy("viper-fixed-margin"), [perp(max_leverage=75.0)]),
                        "LEVERAGE_ABOVE_TIER")


# -- stop versus liquidation -----------------------------------------------------------------

def test_ai_atr_risk_stop_beyond_liquidation_at_30x() -> None:
    # 1.5 x ATR 2,000 at 87,669 = 3.42%; at 30x (mmr 0.4%) liquidation is ~2.92% away
    vol = 2000 / 87669 * 100
    r = audit(load_policy("ai-atr-risk"), [BTC], equity=8930.41, volatility_pct=vol)
    [f] = findings(r, "STOP_BEYOND_LIQUIDATION")
    assert f.severity == WARNING  # the guard lowers leverage
    assert "3.42%" in f.message and "2.92%" in f.message and "21x" in f.message
    expected = min(liq.liquidation_distance(side, 1.0, liq.isolated_liquidation_price(
        side, False, 1.0, 30.0, 0.004, 0.0, 1250.0)) for side in (True, False))  # short: worse
    assert f"{expected:.2%}" in f.message


def test_stop_beyond_liquidation_is_an_error_when_the_guard_is_off_or_refuses() -> None:
    for guard in ("off", "refuse"):
        p = pol(sizing={"risk": 0.01}, stop={"atr_mult": 1.5}, leverage={"value": 30, "max": 30},
                liquidation={"guard": guard})
        [f] = findings(audit(p, [BTC], volatility_pct=2.28), "STOP_BEYOND_LIQUIDATION")
        assert f.severity == ERROR


def test_stop_inside_liquidation_passes() -> None:
    r = audit(load_policy("ai-atr-risk"), [BTC], volatility_pct=0.5)  # stop 0.75% at 30x
    assert not findings(r, "STOP_BEYOND_LIQUIDATION") and "STOP_BEYOND_LIQUIDATION" in r.passed


def test_default_stop_setting_is_used_without_a_volatility() -> None:
    p = pol(sizing={"risk": 0.01}, stop={"default_pct": 5.0}, leverage={"value": 25, "max": 25})
    assert findings(audit(p, [BTC]), "STOP_BEYOND_LIQUIDATION")
    r = audit(load_policy("ai-atr-risk"), [BTC])  # no volatility, no default stop: not checked
    assert "STOP_BEYOND_LIQUIDATION" not in r.checked
    assert any("stop-versus-liquidation" in n for n in r.notes)


# -- minimum order value ---------------------------------------------------------------------

def test_two_dollar_order_below_min_cost_is_an_error() -> None:
    p = pol(sizing={"model": "fixed_notional", "notional": 2.0})
    xrp = BOOK["XRP/USD"]
    m = perp(min_cost=2.5)
    [f] = findings(audit(p, [m]), "BELOW_MIN_COST")
    assert f.severity == ERROR and "$2-order" in f.message
    assert not findings(audit(p, [xrp]), "BELOW_MIN_COST")  # Kraken's 0.5 minimum is met


def test_below_min_cost_raised_within_tolerance_is_a_warning() -> None:
    p = pol(sizing={"model": "fixed_notional", "notional": 2.3},
            execution={"below_minimum": "raise", "raise_tolerance": 0.1})
    [f] = findings(audit(p, [perp(min_cost=2.5)]), "BELOW_MIN_COST")
    assert f.severity == WARNING and "raised" in f.message


def test_policy_min_cost_counts_and_equity_models_say_when_they_work() -> None:
    r = audit(load_policy("kraken-micro"), [BOOK["XRP/USD"]], equity=2.0)  # 1.90 < 2.5
    [f] = findings(r, "BELOW_MIN_COST")
    assert f.severity == WARNING and "2.63" in f.message  # 2.5 / 0.95
    ok = audit(load_policy("kraken-micro"), [BOOK["XRP/USD"]], equity=2.86)  # 2.72 >= 2.5
    assert not findings(ok, "BELOW_MIN_COST")


def test_max_notional_below_min_cost() -> None:
    p = pol(sizing={"model": "fixed_notional", "notional": 3.0}, limits={"max_notional": 4.0})
    [f] = findings(audit(p, [perp(min_cost=5.0)]), "MAX_NOTIONAL_BELOW_MIN_COST")
    assert f.severity == ERROR
    assert not findings(audit(p, [perp(min_cost=1.0)]), "MAX_NOTIONAL_BELOW_MIN_COST")


# -- rules between keys ----------------------------------------------------------------------

def test_clamp_inverted() -> None:
    bad = pol(adjust={"min": 0.02, "max": 0.015})
    [f] = findings(audit(bad, [BTC]), "CLAMP_INVERTED")
    assert f.severity == ERROR and f.keys == ("adjust.min", "adjust.max")
    assert not findings(audit(load_policy("ai-atr-risk"), [BTC]), "CLAMP_INVERTED")


def test_min_notional_above_max() -> None:
    [f] = findings(audit(pol(limits={"min_notional": 50.0, "max_notional": 10.0}), [BTC]),
                   "MIN_NOTIONAL_ABOVE_MAX")
    assert f.severity == ERROR
    assert not findings(audit(load_policy("ai-atr-risk"), [BTC]), "MIN_NOTIONAL_ABOVE_MAX")


def test_leverage_above_policy_max() -> None:
    [f] = findings(audit(pol(leverage={"value": 50, "max": 20}), [BTC]), "LEVERAGE_ABOVE_POLICY_MAX")
    assert f.severity == ERROR
    assert not findings(audit(load_policy("viper-50x"), [BTC]), "LEVERAGE_ABOVE_POLICY_MAX")


# -- the report ------------------------------------------------------------------------------

def test_findings_are_sorted_errors_first() -> None:
    p = pol(sizing={"model": "fixed_notional", "notional": 2.0}, adjust={"min": 0.5, "max": 0.4},
            limits={"max_positions": 4, "max_symbol_notional": 0.1})
    r = audit(p, [perp(min_cost=5.0)])
    severities = [f.severity for f in r.findings]
    assert severities == sorted(severities, key=[ERROR, WARNING, INFO].index)
    assert len(r.errors) >= 2 and r.warnings


def test_relevant_markets() -> None:
    contracts = relevant_markets(load_policy("quantum-4x30"), BOOK.values())
    assert contracts and all(m.is_contract for m in contracts)
    assert len(relevant_markets(load_policy("kraken-micro"), BOOK.values())) == len(BOOK)


@pytest.mark.parametrize("name", ["viper-fixed-margin", "quantum-4x30", "ai-atr-risk", "viper-50x",
                                  "kraken-micro"])
def test_every_preset_audits_without_errors_on_its_markets(name: str) -> None:
    p = load_policy(name)
    equity = {"kraken-micro": 2.86, "quantum-4x30": 1500.0}.get(name, 10_000.0)
    ms = relevant_markets(p, BOOK.values())
    if name == "kraken-micro":
        ms = [BOOK["XRP/USD"]]
    r = audit(p, ms, equity=equity, volatility_pct=0.5)
    assert not r.errors, r.errors
    assert math.isfinite(r.slot.notional or 0.0)


def test_auto_leverage_is_judged_at_the_leverage_auto_mode_picks() -> None:
    p = load_policy("ai-atr-risk")
    auto = pol(sizing={"risk": 0.01}, stop={"atr_mult": 1.5}, limits={"max_notional": 1250.0},
               leverage={"mode": "auto", "max": 30})
    vol = 2000 / 87669 * 100
    assert findings(audit(p, [BTC], volatility_pct=vol), "STOP_BEYOND_LIQUIDATION")
    r = audit(auto, [BTC], volatility_pct=vol)  # 1,250 notional fits 10,000 equity at 1x
    assert not findings(r, "STOP_BEYOND_LIQUIDATION")
    assert not findings(audit(auto, [perp(max_leverage=10.0)]), "LEVERAGE_ABOVE_TIER")
    tight = pol(sizing={"risk": 0.01}, stop={"atr_mult": 1.5}, leverage={"mode": "auto", "max": 50},
                limits={"max_margin": 100.0})  # 2,840 notional / 100 margin -> 29x: unsafe
    [f] = findings(audit(tight, [BTC], volatility_pct=vol), "STOP_BEYOND_LIQUIDATION")
    assert "at 29x" in f.message
