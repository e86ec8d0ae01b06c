"""Liquidation prices, tiers and maintenance margin, hand-worked (issue 3).

Notation in the comments: EP entry, N notional (quote), C collateral (quote), mmr the tier's
maintenance margin rate, cum its maintenance amount, cover = (C + cum) / N. Binance USDⓈ-M
(linear): long LP = EP (1 - cover) / (1 - mmr), short LP = EP (1 + cover) / (1 + mmr).
Binance COIN-M (inverse): long LP = EP (1 + mmr) / (1 + cover), short EP (1 - mmr) / (1 - cover).
"""

from __future__ import annotations

import itertools
import math

import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import attach_tiers, load_markets, load_tiers
from sizeguard.core import liquidation as liq
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Reason
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict
from sizeguard.core.tiers import Tier, find_tier, tiers_from_ccxt

BTC = "BTC/USDT:USDT"

# (id, is_long, inverse, EP, N, C, mmr, cum, expected LP)
KERNEL_CASES = [
    # isolated 10x: C = N/10 = 100 of N = 1000, cover 0.1
    # 100 * 0.9 / 0.996 = 90.36144578
    ("linear-long-isolated-10x", True, False, 100.0, 1000.0, 100.0, 0.004, 0.0, 90.36144578),
    # 100 * 1.1 / 1.004 = 109.56175299
    ("linear-short-isolated-10x", False, False, 100.0, 1000.0, 100.0, 0.004, 0.0, 109.56175299),
    # coin formula (N mmr + N) / (WB + N/EP), WB = 1 coin: 1004 / 11 = 91.27272727
    ("inverse-long-isolated-10x", True, True, 100.0, 1000.0, 100.0, 0.004, 0.0, 91.27272727),
    # (N mmr - N) / (WB - N/EP) = -996 / -9 = 110.66666667
    ("inverse-short-isolated-10x", False, True, 100.0, 1000.0, 100.0, 0.004, 0.0, 110.66666667),
    # cross: WB 1000 - other maintenance 50 + other uPnL -30 = C 920; N 5000 (Q = 50)
    # (920 - 5000) / (50 * 0.004 - 50) = -4080 / -49.8 = 81.92771084
    ("linear-long-cross", True, False, 100.0, 5000.0, 920.0, 0.004, 0.0, 81.92771084),
    # (920 + 5000) / (0.2 + 50) = 5920 / 50.2 = 117.92828685
    ("linear-short-cross", False, False, 100.0, 5000.0, 920.0, 0.004, 0.0, 117.92828685),
    # cover 0.184: 100 * 1.004 / 1.184 = 84.79729730
    ("inverse-long-cross", True, True, 100.0, 5000.0, 920.0, 0.004, 0.0, 84.79729730),
    # 100 * 0.996 / 0.816 = 122.05882353
    ("inverse-short-cross", False, True, 100.0, 5000.0, 920.0, 0.004, 0.0, 122.05882353),
    # Binance BTC 2026 tier 2 (mmr 0.005, cum 300), N 500k at 50x (C 10,000), Q = 5:
    # (10000 + 300 - 500000) / (5 * 0.005 - 5) = -489700 / -4.975 = 98432.16080402
    ("linear-long-tier2-cum", True, False, 100_000.0, 500_000.0, 10_000.0, 0.005, 300.0,
     98432.16080402),
    # short: (10000 + 300 + 500000) / (0.025 + 5) = 510300 / 5.025 = 101552.23880597
    ("linear-short-tier2-cum", False, False, 100_000.0, 500_000.0, 10_000.0, 0.005, 300.0,
     101552.23880597),
    # 1x long: cover 1, 100 * 0 / 0.996 = 0: it cannot be liquidated
    ("linear-long-1x-never", True, False, 100.0, 1000.0, 1000.0, 0.004, 0.0, 0.0),
    # inverse 1x short: 1 - cover = 0: no price liquidates it
    ("inverse-short-1x-never", False, True, 100.0, 1000.0, 1000.0, 0.004, 0.0, math.inf),
]


@pytest.mark.parametrize(("is_long", "inverse", "entry", "notional", "collateral", "mmr", "cum",
                          "expected"), [c[1:] for c in KERNEL_CASES],
                         ids=[c[0] for c in KERNEL_CASES])
def test_liquidation_price_kernel(is_long: bool, inverse: bool, entry: float, notional: float,
                                  collateral: float, mmr: float, cum: float,
                                  expected: float) -> None:
    got = liq.liquidation_price(is_long, inverse, entry, notional, collateral, mmr, cum)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("is_long", "inverse", "k", "lev"), [
    # linear long, D = 5%: k = 1 - 0.95 * 0.996 = 0.0538, 1/k = 18.58736059
    (True, False, 0.0538, 18.58736059),
    # linear short: k = 1.05 * 1.004 - 1 = 0.0542, 1/k = 18.45018450
    (False, False, 0.0542, 18.45018450),
    # inverse long: k = 1.004 / 0.95 - 1 = 0.05684211, 1/k = 17.59259259
    (True, True, 0.05684211, 17.59259259),
    # inverse short: k = 1 - 0.996 / 1.05 = 0.05142857, 1/k = 19.44444444
    (False, True, 0.05142857, 19.44444444),
], ids=["linear-long", "linear-short", "inverse-long", "inverse-short"])
def test_max_safe_leverage_puts_liquidation_exactly_at_the_distance(
        is_long: bool, inverse: bool, k: float, lev: float) -> None:
    assert liq.coverage_needed(is_long, inverse, 0.05, 0.004) == pytest.approx(k, rel=1e-6)
    safe = liq.max_safe_leverage(is_long, inverse, 0.05, 0.004, 0.0, 1000.0)
    assert safe == pytest.approx(lev, rel=1e-8)
    # at exactly that leverage the liquidation price is 5% from entry 100: 95 or 105
    lp = liq.liquidation_price(is_long, inverse, 100.0, 1000.0, 1000.0 / safe, 0.004, 0.0)
    assert lp == pytest.approx(95.0 if is_long else 105.0, rel=1e-12)


def test_cum_raises_the_safe_leverage() -> None:
    # tier 2 of BTC 2026, N 500k, D 5% long: k = 1 - 0.95 * 0.995 = 0.05475; cum/N = 0.0006
    # safe = 1 / (0.05475 - 0.0006) = 18.46722068
    assert liq.max_safe_leverage(True, False, 0.05, 0.005, 300.0, 500_000.0) == pytest.approx(
        18.46722068, rel=1e-8)
    # a distance any leverage survives: k <= cum/N
    assert liq.max_safe_leverage(True, False, 0.0, 0.0, 1.0, 100.0) == math.inf


# -- tier tables ----------------------------------------------------------------------------

def _btc_tiers(name: str) -> tuple[Tier, ...]:
    return load_tiers(shared_path("leverage_tiers", name))[BTC]


@pytest.mark.parametrize(("notional", "tier", "max_lev", "mmr", "cum"), [
    (0.0, 1, 150.0, 0.004, 0.0),
    (299_999.99, 1, 150.0, 0.004, 0.0),
    (300_000.0, 2, 100.0, 0.005, 300.0),  # exactly on the boundary: the higher tier
    (800_000.0, 3, 75.0, 0.0065, 1500.0),
    (5_000_000.0, 4, 50.0, 0.01, 12000.0),
], ids=["zero", "just-below-300k", "boundary-300k", "boundary-800k", "5M"])
def test_real_binance_2026_tier_lookup(notional: float, tier: int, max_lev: float, mmr: float,
                                       cum: float) -> None:
    t = find_tier(_btc_tiers("binanceusdm.json"), notional)
    assert t is not None
    assert (t.tier, t.max_leverage, t.maintenance_margin_rate, t.maintenance_amount) == (
        tier, max_lev, mmr, cum)


def test_maintenance_margin_is_continuous_at_every_real_boundary() -> None:
    # Binance builds cum so that both tiers agree on the boundary; e.g. BTC at 300k:
    # tier 1: 300,000 * 0.004 - 0 = 1,200; tier 2: 300,000 * 0.005 - 300 = 1,200.
    # tier 3 cum = 800,000 * (0.0065 - 0.005) + 300 = 1,500 (the published table says 1500).
    btc = _btc_tiers("binanceusdm.json")
    assert btc[0].maintenance_margin(300_000.0) == pytest.approx(1200.0)
    assert btc[1].maintenance_margin(300_000.0) == pytest.approx(1200.0)
    assert btc[2].maintenance_amount == pytest.approx(800_000 * (0.0065 - 0.005) + 300)
    for name in ("binanceusdm.json", "binanceusdm-2024-10-24.json"):
        checked = 0
        for symbol, tiers in load_tiers(shared_path("leverage_tiers", name)).items():
            for lower, upper in itertools.pairwise(tiers):
                x = upper.min_notional
                assert lower.maintenance_margin(x) == pytest.approx(
                    upper.maintenance_margin(x), rel=1e-9, abs=1e-9), (name, symbol, upper.tier)
                checked += 1
        assert checked > 2000  # 7,276 - 907 boundaries in 2026, 2,805 - 349 in 2024


def test_maintenance_margin_equals_the_largest_tier_formula() -> None:
    # continuity + rising rates => maintenance(n) = max_i(n * rate_i - cum_i), whatever tier n
    # is in; this is why judging by the entry tier is wrong when the notional moves
    btc = _btc_tiers("binanceusdm.json")
    for n in (1_000.0, 299_000.0, 300_000.0, 312_686.0, 2_000_000.0, 50_000_000.0):
        t = find_tier(btc, n)
        assert t is not None
        assert t.maintenance_margin(n) == pytest.approx(max(x.maintenance_margin(n) for x in btc))


# -- decisions on the real tables -----------------------------------------------------------

def _fixed_notional(notional: float, leverage: float, **leverage_keys: object) -> Policy:
    return policy_from_dict({
        "name": "test-fixed-notional",
        "sizing": {"model": "fixed_notional", "notional": notional},
        "leverage": {"mode": "fixed", "value": leverage, "max": leverage, **leverage_keys},
    })


def _binance(tier_file: str) -> MarketRules:
    book = load_markets(shared_path("markets", "binanceusdm.json"))
    return attach_tiers(book, shared_path("leverage_tiers", tier_file))[BTC]


def test_same_order_is_judged_by_the_tiers_in_force() -> None:
    # 1 BTC at 100,000 = notional 100k, fixed 125x requested.
    policy = _fixed_notional(100_000.0, 125.0)
    intent = Intent(BTC, "long", 100_000.0)
    account = Account(equity=10_000.0)

    # 2026: tier 1 is 0-300k at 150x: 125x stands. LP: cover 1/125 = 0.008,
    # 100,000 * 0.992 / 0.996 = 99,598.39357
    new = decide(intent, account, _binance("binanceusdm.json"), policy)
    assert new.accepted and new.amount == "1"
    assert (new.tier, new.leverage, new.maintenance_margin_rate) == (1, 125.0, 0.004)
    assert Reason.CAPPED_LEVERAGE_TIER not in new.reasons
    assert new.liquidation_price == pytest.approx(99_598.39357, rel=1e-9)

    # 2024: tier 2 is 50k-600k at 100x (mmr 0.005, cum 50): capped to 100x.
    # LP: cover (1,000 + 50) / 100,000 = 0.0105, 100,000 * 0.9895 / 0.995 = 99,447.23618;
    # the notional there (99,447) is still in tier 2.
    old = decide(intent, account, _binance("binanceusdm-2024-10-24.json"), policy)
    assert old.accepted and old.amount == "1"
    assert (old.tier, old.leverage, old.maintenance_margin_rate) == (2, 100.0, 0.005)
    assert Reason.CAPPED_LEVERAGE_TIER in old.reasons
    assert old.margin == pytest.approx(1000.0)
    assert old.liquidation_price == pytest.approx(99_447.23618, rel=1e-9)
    capped = next(s for s in old.trace if s.step == "leverage")
    assert dict(capped.values)["tier_max_leverage"] == 100.0


def test_notional_exactly_on_a_tier_boundary() -> None:
    # 3 BTC at 100,000 = 300,000: the boundary belongs to tier 2 (100x), so 125x is capped.
    d = decide(Intent(BTC, "long", 100_000.0), Account(equity=10_000.0),
               _binance("binanceusdm.json"), _fixed_notional(300_000.0, 125.0))
    assert d.accepted and d.amount == "3" and d.notional == pytest.approx(300_000.0)
    # entry: tier 2 (100x); the liquidation price below uses tier 1, and the decision reports
    # the bracket its liquidation price used (#10 item 3): tier 1, rate 0.004, amount 0
    assert (d.entry_tier, d.leverage) == (2, 100.0)
    assert (d.tier, d.maintenance_margin_rate, d.maintenance_amount) == (1, 0.004, 0.0)
    assert Reason.CAPPED_LEVERAGE_TIER in d.reasons
    # C = 3,000. With tier 2: cover (3,000 + 300) / 300,000 = 0.011,
    # LP = 100,000 * 0.989 / 0.995 = 99,396.98; but 3 BTC there is 298,191 < 300k: tier 1.
    # Binance's rule: recompute with the bracket at the liquidation price:
    # cover 0.01, LP = 100,000 * 0.99 / 0.996 = 99,397.59036 (3 x that = 298,192.8, tier 1).
    # Check: equity 3,000 - 3 * 602.40964 = 1,192.77 = maintenance 298,192.77 * 0.004.
    assert d.liquidation_price == pytest.approx(99_397.59036, rel=1e-9)


def test_short_liquidation_crosses_into_the_next_tier() -> None:
    # 2.99 BTC short at 100,000 (N 299,000, tier 1) at 20x: C = 14,950.
    # tier 1: LP = 100,000 * 1.05 / 1.004 = 104,581.67; 2.99 x that = 312,699 -> tier 2.
    # tier 2: cover (14,950 + 300) / 299,000 = 0.05100334, LP = 100,000 * 1.05100334 / 1.005
    #       = 104,577.4465; 2.99 x that = 312,686.6 (tier 2): settled.
    # Check: equity 14,950 - 2.99 * 4,577.4465 = 1,263.43
    #        = maintenance 312,686.6 * 0.005 - 300 = 1,263.43.
    d = decide(Intent(BTC, "short", 100_000.0), Account(equity=100_000.0),
               _binance("binanceusdm.json"), _fixed_notional(299_000.0, 20.0))
    assert d.accepted and d.amount == "2.99" and d.entry_tier == 1
    assert d.liquidation_price == pytest.approx(104_577.4465, rel=1e-8)
    # the decision reports the bracket its liquidation price used (#10 item 3)
    assert (d.tier, d.maintenance_margin_rate, d.maintenance_amount) == (2, 0.005, 300.0)


def test_guard_judges_the_short_by_the_tier_at_the_stop() -> None:
    # 2.95 BTC short at 100,000 (N 295,000, tier 1), stop 105,000 (5%), buffer 25%: the guard
    # needs liquidation >= 6.25% away, at 106,250, where 2.95 BTC is 313,437.5: tier 2.
    # tier 2: k = 1.0625 * 1.005 - 1 = 0.0678125; cum/N = 300/295,000 = 0.00101695
    #         safe = 1 / (0.0678125 - 0.00101695) = 14.97105
    # (tier 1 would say 1 / (1.0625 * 1.004 - 1) = 14.98127: at that leverage C = 19,691.2,
    #  equity at 106,250 = 19,691.2 - 2.95 * 6,250 = 1,253.7 < maintenance 1,267.2: liquidated)
    policy = _fixed_notional(295_000.0, 50.0, integer=False)
    d = decide(Intent(BTC, "short", 100_000.0, stop=105_000.0), Account(equity=100_000.0),
               _binance("binanceusdm.json"), policy)
    assert d.accepted and d.amount == "2.95"
    assert d.leverage == pytest.approx(14.97105, rel=1e-6)
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    assert d.liquidation_price is not None and d.liquidation_price >= 106_250.0 * (1 - 1e-12)


# -- inverse: coin-denominated ccxt tiers, Kraken Futures margin levels ---------------------

def test_inverse_ccxt_tiers_are_looked_up_in_coin() -> None:
    # A COIN-M table in BTC (ccxt gives coin-margined brackets in the settle coin):
    # tier 1 [0, 5 BTC) 125x mmr 0.004; tier 2 [5, 10 BTC) 100x mmr 0.005, cum 5 * 0.001 = 0.005
    rows = [
        {"tier": 1, "minNotional": 0, "maxNotional": 5, "maintenanceMarginRate": 0.004,
         "maxLeverage": 125, "info": {"cum": "0"}},
        {"tier": 2, "minNotional": 5, "maxNotional": 10, "maintenanceMarginRate": 0.005,
         "maxLeverage": 100, "info": {"cum": "0.005"}},
    ]
    market = load_markets(shared_path("markets", "binancecoinm.json"))["BTC/USD:BTC"]
    market = market.with_tiers(tiers_from_ccxt(rows, "BTC/USD:BTC"), "test")
    assert market.contract_size == 100.0 and market.inverse
    # 1,500 contracts x 100 USD = 150,000 USD at 25,000 = 6 BTC: tier 2 (in USD it would be far
    # above the table). 125x is capped to 100x. Collateral 1,500 USD = 0.06 BTC.
    # coin formula: (N mmr + N) / (WB + cum + N/EP) = 150,750 / (0.06 + 0.005 + 6)
    #             = 150,750 / 6.065 = 24,855.73784; 150,000 / that = 6.035 BTC: still tier 2
    d = decide(Intent("BTC/USD:BTC", "long", 25_000.0), Account(equity=10_000.0), market,
               _fixed_notional(150_000.0, 125.0))
    assert d.accepted and d.amount == "1500"
    assert (d.tier, d.leverage) == (2, 100.0)
    assert Reason.CAPPED_LEVERAGE_TIER in d.reasons
    assert d.liquidation_price == pytest.approx(150_750 / 6.065, rel=1e-9)


def test_kraken_futures_margin_levels() -> None:
    book = load_markets(shared_path("markets", "krakenfutures.json"))
    pf = book["BTC/USD:USD"]  # PF_XBTUSD, linear: levels in USD notional
    # levels 0: IM 2% MM 1%; 500k: 4%/2%; 2M: 10%/5%; 5M: 20%/10%; 10M: 30%/15%; 30M: 50%/25%
    assert [t.max_leverage for t in pf.tiers] == pytest.approx([50, 25, 10, 5, 10 / 3, 2])
    # incremental amounts: 500k * (0.02 - 0.01) = 5,000; + 2M * (0.05 - 0.02) = 65,000;
    # + 5M * (0.10 - 0.05) = 315,000
    assert [t.maintenance_amount for t in pf.tiers[:4]] == pytest.approx(
        [0.0, 5000.0, 65000.0, 315000.0])
    # continuous: at 500k, 500,000 * 0.01 = 5,000 = 500,000 * 0.02 - 5,000
    assert pf.tiers[0].maintenance_margin(500_000) == pytest.approx(
        pf.tiers[1].maintenance_margin(500_000))

    pi = book["BTC/USD:BTC"]  # PI_XBTUSD, inverse: levels in contracts of 1 USD
    assert pi.inverse and pi.contract_size == 1.0
    assert [t.min_notional for t in pi.tiers[:3]] == [0.0, 500_000.0, 1_000_000.0]
    # tier 3 amount: 500,000 * 0.01 + 1,000,000 * 0.01 = 15,000
    assert pi.tiers[2].maintenance_amount == pytest.approx(15_000.0)
    # 100,000 contracts (USD) long at 50,000, 10x: tier 1 (Kraken counts USD contracts, not
    # coin): LP = 50,000 * 1.01 / 1.1 = 45,909.0909
    d = decide(Intent("BTC/USD:BTC", "long", 50_000.0), Account(equity=100_000.0), pi,
               _fixed_notional(100_000.0, 10.0))
    assert d.accepted and d.amount == "100000" and d.tier == 1
    assert d.maintenance_margin_rate == 0.01
    assert d.liquidation_price == pytest.approx(45_909.0909, rel=1e-8)
    # PF linear: 2 BTC at 50,000 = 100,000 USD, 20x: LP = 50,000 * 0.95 / 0.99 = 47,979.798
    d = decide(Intent("BTC/USD:USD", "long", 50_000.0), Account(equity=100_000.0), pf,
               _fixed_notional(100_000.0, 20.0))
    assert d.accepted and d.amount == "2" and d.tier == 1
    assert d.liquidation_price == pytest.approx(47_979.798, rel=1e-7)


def test_market_without_tiers_uses_the_default_mmr() -> None:
    # the shared binanceusdm markets carry no leverage limit and no tiers: the policy's
    # default_mmr (0.005 unless overridden) judges liquidation; 1 BTC at 100,000, 10x:
    # LP = 100,000 * 0.9 / 0.995 = 90,452.26131; with default_mmr 0.01: 0.9 / 0.99 = 90,909.0909
    market = load_markets(shared_path("markets", "binanceusdm.json"))[BTC]
    assert market.tiers == ()
    intent, account = Intent(BTC, "long", 100_000.0), Account(equity=100_000.0)
    d = decide(intent, account, market, _fixed_notional(100_000.0, 10.0))
    assert (d.tier, d.maintenance_margin_rate) == (None, 0.005)
    assert d.liquidation_price == pytest.approx(90_452.26131, rel=1e-9)
    d = decide(intent, account, market, _fixed_notional(100_000.0, 10.0, default_mmr=0.01))
    assert d.maintenance_margin_rate == 0.01
    assert d.liquidation_price == pytest.approx(90_909.0909, rel=1e-8)


def test_market_without_tiers_uses_the_market_max_leverage() -> None:
    # Bybit's BTC perp publishes max leverage 100 and no tiers here: 125x asked -> 100x, and
    # the default mmr 0.005 judges liquidation by Bybit's formula (maintenance of the value at
    # entry). 1 BTC at 100,000, C = 1,000, MM = 500: LP = 100,000 - (1,000 - 500) / 1 = 99,500
    # (Binance's would be 100,000 x 0.99 / 0.995 = 99,497.49)
    market = load_markets(shared_path("markets", "bybit.json"))[BTC]
    assert market.tiers == () and market.max_leverage == 100.0
    d = decide(Intent(BTC, "long", 100_000.0), Account(equity=100_000.0), market,
               _fixed_notional(100_000.0, 125.0))
    assert d.accepted and d.leverage == 100.0 and d.tier is None
    assert Reason.CAPPED_LEVERAGE_TIER in d.reasons
    assert d.maintenance_margin_rate == 0.005
    assert d.liquidation_price == pytest.approx(99_500.0, rel=1e-12)
