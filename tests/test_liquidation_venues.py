"""Liquidation on Bybit and OKX: the venues' published formulas, checked against the worked
examples of their documents (golden, the arithmetic written out), chosen by the market's
exchange, named in the trace; a venue without a known formula says so in the decision."""

from __future__ import annotations

import math
from dataclasses import replace

import numba
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import shared_path
from sizeguard import _native
from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest.engine import run_backtest
from sizeguard.core import liquidation as liq
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision, Reason
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict
from sizeguard.core.tiers import tiers_from_ccxt
from sizing_helpers import SYMBOL, market, trace_step
from sizing_helpers import policy as helper_policy
from test_backtest_golden import FLAT, MARKET, panel, policy, signals

BTC, BTC_INV = "BTC/USDT:USDT", "BTC/USD:BTC"
REL = 1e-12


# -- Bybit, from its help centre's worked examples ---------------------------------------------

def test_bybit_linear_worked_example() -> None:
    # "Liquidation Price (USDT Contract)", Example 1: a long of 1 BTC at 20,000 USDT, 50x,
    # MMR 0.5%, no extra margin: IM = 1 x 20,000 / 50 = 400, MM = 1 x 20,000 x 0.5% - 0 = 100,
    # LP = 20,000 - (400 - 100) / 1 = 19,700 USDT.
    lp = liq.venue_liquidation_price(liq.BYBIT, True, False, 20_000.0, 20_000.0, 400.0, 0.005,
                                     0.0, 0.0006)
    assert lp == pytest.approx(19_700.0, rel=REL)
    # the same position short, by the page's short formula: LP = 20,000 + (400 - 100) = 20,300
    lp = liq.venue_liquidation_price(liq.BYBIT, False, False, 20_000.0, 20_000.0, 400.0, 0.005,
                                     0.0, 0.0006)
    assert lp == pytest.approx(20_300.0, rel=REL)
    # Binance's formula on the same long: 20,000 x (1 - 0.02) / (1 - 0.005) = 19,698.49: the
    # venues differ by where they value the maintenance margin (entry vs liquidation price)
    assert liq.liquidation_price(True, False, 20_000.0, 20_000.0, 400.0, 0.005, 0.0) == \
        pytest.approx(19_698.492462, rel=1e-9)


def test_bybit_linear_extra_margin_and_deduction() -> None:
    # extra margin and the maintenance deduction both move LP by amount / size:
    # 2 BTC at 30,000, 20x: IM = 3,000, extra 600, MMR 1%, deduction 150:
    # MM = 60,000 x 1% - 150 = 450; LP = 30,000 - (3,000 - 450) / 2 - 600 / 2 = 28,425
    lp = liq.venue_liquidation_price(liq.BYBIT, True, False, 30_000.0, 60_000.0, 3_600.0, 0.01,
                                     150.0, 0.0)
    assert lp == pytest.approx(28_425.0, rel=REL)


def test_bybit_inverse_worked_example() -> None:
    # "Liquidation Price Calculation under Isolated Mode (Unified Trading Account)", inverse
    # example: 60,000 USD of BTCUSD at 50,000 USD, 10x, MMR 0.5%:
    # value = 60,000 / 50,000 = 1.2 BTC, IM = 1.2 / 10 = 0.12 BTC, MM = 1.2 x 0.5% = 0.006 BTC.
    # (The page's final line was not in the text we could consult; the formula completes it.)
    # long:  LP = 60,000 / (1.2 + (0.12 - 0.006)) = 60,000 / 1.314 = 45,662.100457
    # short: LP = 60,000 / (1.2 - (0.12 - 0.006)) = 60,000 / 1.086 = 55,248.618785
    # collateral in quote at entry: 0.12 BTC x 50,000 = 6,000 USD
    long_lp = liq.venue_liquidation_price(liq.BYBIT, True, True, 50_000.0, 60_000.0, 6_000.0,
                                          0.005, 0.0, 0.0)
    short_lp = liq.venue_liquidation_price(liq.BYBIT, False, True, 50_000.0, 60_000.0, 6_000.0,
                                           0.005, 0.0, 0.0)
    assert long_lp == pytest.approx(60_000.0 / 1.314, rel=REL)
    assert long_lp == pytest.approx(45_662.100457, rel=1e-9)
    assert short_lp == pytest.approx(60_000.0 / 1.086, rel=REL)
    assert short_lp == pytest.approx(55_248.618785, rel=1e-9)


# -- OKX ---------------------------------------------------------------------------------------

def test_okx_worked_by_hand() -> None:
    # OKX's public pages give the trigger (margin ratio (margin + uPnL) / (notional at mark x
    # (MMR + taker fee)) <= 100%) but no worked liquidation price we could consult; worked here.
    # BTC-USDT-SWAP, 10 contracts x 0.01 BTC = 0.1 BTC at 50,000: notional 5,000, 10x: margin
    # 500, MMR 0.4%, taker 0.05%: long LP = 50,000 x (1 - 0.1) / (1 - 0.0045) = 45,203.415369
    lp = liq.venue_liquidation_price(liq.OKX, True, False, 50_000.0, 5_000.0, 500.0, 0.004,
                                     0.0, 0.0005)
    assert lp == pytest.approx(45_000.0 / 0.9955, rel=REL)
    assert lp == pytest.approx(45_203.415369, rel=1e-9)
    # at LP the margin ratio is exactly 100%: (500 + 0.1 x (LP - 50,000)) / (0.1 LP x 0.0045)
    assert (500.0 + 0.1 * (lp - 50_000.0)) / (0.1 * lp * 0.0045) == pytest.approx(1.0, rel=1e-12)
    # short: 50,000 x 1.1 / 1.0045 = 54,753.608760
    lp = liq.venue_liquidation_price(liq.OKX, False, False, 50_000.0, 5_000.0, 500.0, 0.004,
                                     0.0, 0.0005)
    assert lp == pytest.approx(54_753.608760, rel=1e-9)
    # BTC-USD-SWAP (face value 100 USD), 100 contracts = 10,000 USD at 50,000, 10x: margin
    # 0.02 BTC (1,000 USD at entry); long LP = 50,000 x 1.0045 / 1.1 = 45,659.090909;
    # check: margin + PnL = 0.02 + 10,000 (1/LP - 1/50,000)... in coin: 0.02 - 10,000 (1/LP -
    # 1/50,000) equals 10,000 / LP x 0.0045
    lp = liq.venue_liquidation_price(liq.OKX, True, True, 50_000.0, 10_000.0, 1_000.0, 0.004,
                                     0.0, 0.0005)
    assert lp == pytest.approx(45_659.090909, rel=1e-9)
    equity = 0.02 - 10_000.0 * (1.0 / lp - 1.0 / 50_000.0)
    assert equity == pytest.approx(10_000.0 / lp * 0.0045, rel=1e-9)


# -- properties: at the liquidation price equity meets each venue's maintenance ----------------

sides = st.booleans()
prices = st.floats(10.0, 200_000.0)
levs = st.floats(1.5, 100.0)
rates = st.floats(0.001, 0.05)


@given(sides, st.booleans(), prices, levs, rates, st.floats(0.0, 0.001))
def test_equity_meets_maintenance_at_the_liquidation_price(
        is_long: bool, inverse: bool, entry: float, lev: float, mmr: float, fee: float) -> None:
    n = 10_000.0
    s = 1.0 if is_long else -1.0
    for formula in (liq.BINANCE, liq.BYBIT, liq.OKX):
        lp = liq.venue_liquidation_price(formula, is_long, inverse, entry, n, n / lev, mmr, 0.0,
                                         fee)
        if not 0.0 < lp < math.inf:
            continue
        if inverse:  # coin: margin n / lev / entry, PnL n (1/entry - 1/lp) for a long
            equity = n / lev / entry + s * n * (1.0 / entry - 1.0 / lp)
            at_entry, at_lp = n / entry, n / lp
        else:
            equity = n / lev + s * n / entry * (lp - entry)
            at_entry, at_lp = n, n / entry * lp
        rate = mmr + fee if formula == liq.OKX else mmr
        maint = (at_entry if formula == liq.BYBIT else at_lp) * rate
        assert equity == pytest.approx(maint, rel=1e-9, abs=1e-9 * at_entry)


@given(sides, st.booleans(), st.floats(0.001, 0.3), rates, st.floats(0.0, 0.001))
def test_safe_leverage_puts_liquidation_at_the_distance(
        is_long: bool, inverse: bool, dist: float, mmr: float, fee: float) -> None:
    for formula in (liq.BINANCE, liq.BYBIT, liq.OKX):
        lev = liq.venue_max_safe_leverage(formula, is_long, inverse, dist, mmr, 0.0, 1_000.0, fee)
        if not (1.0 <= lev < math.inf):
            continue
        lp = liq.venue_liquidation_price(formula, is_long, inverse, 100.0, 1_000.0,
                                         1_000.0 / lev, mmr, 0.0, fee)
        assert liq.liquidation_distance(is_long, 100.0, lp) == pytest.approx(dist, rel=1e-9)


# -- the market picks the formula; the decision names it ---------------------------------------

def _policy(notional: float, leverage: float, **liquidation: object) -> Policy:
    return policy_from_dict({
        "name": "venues",
        "sizing": {"model": "fixed_notional", "notional": notional},
        "leverage": {"mode": "fixed", "value": leverage, "max": leverage},
        **({"liquidation": liquidation} if liquidation else {}),
    })


def _market(exchange: str, symbol: str = BTC) -> MarketRules:
    return load_markets(shared_path("markets", f"{exchange}.json"))[symbol]


def _liq_step(d: Decision) -> dict[str, object]:
    steps = [s for s in d.trace if s.step == "liquidation"]
    assert len(steps) == 1, [s.step for s in d.trace]
    return dict(steps[0].values)


@pytest.mark.parametrize(("exchange", "symbol", "formula"), [
    ("binanceusdm", BTC, "binance-usdm"), ("binancecoinm", BTC_INV, "binance-coinm"),
    ("bybit", BTC, "bybit-linear"), ("bybit", BTC_INV, "bybit-inverse"),
    ("okx", BTC, "okx-linear"), ("okx", BTC_INV, "okx-inverse"),
])
def test_trace_names_the_formula(exchange: str, symbol: str, formula: str) -> None:
    m = _market(exchange, symbol)
    d = decide(Intent(symbol, "long", 50_000.0), Account(equity=100_000.0), m,
               _policy(10_000.0, 10.0))
    assert d.accepted
    step = _liq_step(d)
    assert step["formula"] == formula
    assert step["liquidation_price"] == d.liquidation_price
    assert Reason.LIQUIDATION_FORMULA_ASSUMED not in d.reasons


def test_bybit_decision_on_real_market() -> None:
    # Bybit BTC perp (no risk-limit table in ccxt's market: default MMR 0.5%), 0.2 BTC at
    # 50,000 = 10,000 notional, 10x: IM 1,000, MM 50: LP = 50,000 - (1,000 - 50) / 0.2 = 45,250
    m = _market("bybit")
    assert m.tiers == ()
    d = decide(Intent(BTC, "long", 50_000.0), Account(equity=100_000.0), m,
               _policy(10_000.0, 10.0))
    assert d.amount == "0.2" and d.maintenance_margin_rate == 0.005
    assert d.liquidation_price == pytest.approx(45_250.0, rel=REL)


def test_okx_decision_on_real_market() -> None:
    # OKX BTC-USDT-SWAP: 0.01 BTC a contract, taker 0.05%, no tiers: MMR 0.5% (default).
    # 20 contracts = 0.2 BTC at 50,000 = 10,000, 10x: LP = 50,000 x 0.9 / (1 - 0.0055)
    # = 45,248.868778
    m = _market("okx")
    assert m.tiers == () and m.taker == 0.0005 and m.contract_size == 0.01
    d = decide(Intent(BTC, "long", 50_000.0), Account(equity=100_000.0), m,
               _policy(10_000.0, 10.0))
    assert d.amount == "20"
    assert d.liquidation_price == pytest.approx(45_000.0 / 0.9945, rel=REL)


def test_guard_uses_the_venue_formula() -> None:
    # Bybit long at 50,000, stop 4% below, buffer 25%: liquidation must be >= 5% away.
    # Bybit: cover >= D + MMR = 0.05 + 0.005 = 0.055 -> safe leverage 1 / 0.055 = 18.18 -> 18x;
    # LP = 50,000 x (1 - 1/18 + 0.005) = 47,472.22 (5.06% away). Binance's would allow 19x.
    m = _market("bybit")
    d = decide(Intent(BTC, "long", 50_000.0, stop=48_000.0), Account(equity=100_000.0), m,
               _policy(10_000.0, 50.0))
    assert d.accepted and d.leverage == 18.0
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    assert d.liquidation_price == pytest.approx(50_000.0 * (1 - 1 / 18 + 0.005), rel=REL)
    assert liq.venue_max_safe_leverage(liq.BINANCE, True, False, 0.05, 0.005, 0.0, 1.0, 0.0) \
        == pytest.approx(1 / (1 - 0.95 * 0.995), rel=REL)  # 19.05 -> 19x


def test_unknown_venue_says_the_formula_is_assumed() -> None:
    # Bitget publishes no formula we implement: Binance's judges it, and the decision says so
    m = _market("bitget")
    d = decide(Intent(BTC, "long", 50_000.0), Account(equity=100_000.0), m,
               _policy(10_000.0, 10.0))
    assert d.accepted and Reason.LIQUIDATION_FORMULA_ASSUMED in d.reasons
    step = next(s for s in d.trace if s.step == "liquidation")
    assert dict(step.values)["formula"] == "binance-usdm"
    assert step.note is not None and "bitget" in step.note and "assumed" in step.note
    # Binance's price: 50,000 x 0.9 / 0.995
    assert d.liquidation_price == pytest.approx(45_226.130653, rel=1e-9)


def test_assumed_formula_on_a_skip_keeps_the_skip_reason_last() -> None:
    # the guard refuses: the skip's reason stays last (the backtest counts skips by it)
    m = _market("bitget")
    d = decide(Intent(BTC, "long", 50_000.0, stop=48_000.0), Account(equity=100_000.0), m,
               _policy(10_000.0, 50.0, guard="refuse"))
    assert not d.accepted
    assert d.reasons[-1] == Reason.STOP_BEYOND_LIQUIDATION
    assert Reason.LIQUIDATION_FORMULA_ASSUMED in d.reasons


def test_spot_has_no_liquidation_step() -> None:
    m = _market("bybit", "BTC/USDT")
    d = decide(Intent("BTC/USDT", "long", 50_000.0), Account(equity=100_000.0), m,
               _policy(1_000.0, 1.0))
    assert d.accepted and not [s for s in d.trace if s.step == "liquidation"]
    assert Reason.LIQUIDATION_FORMULA_ASSUMED not in d.reasons


def test_bybit_risk_limit_rows_give_the_deduction() -> None:
    # ccxt's Bybit fetch_leverage_tiers rows carry the maintenance deduction as mmDeduction
    rows = [
        {"tier": 1, "minNotional": 0, "maxNotional": 2_000_000, "maintenanceMarginRate": 0.005,
         "maxLeverage": 100, "info": {"mmDeduction": "0"}},
        {"tier": 2, "minNotional": 2_000_000, "maxNotional": 2_600_000,
         "maintenanceMarginRate": 0.0056, "maxLeverage": 90, "info": {"mmDeduction": "1200"}},
    ]
    tiers = tiers_from_ccxt(rows, BTC)
    assert [t.maintenance_amount for t in tiers] == [0.0, 1_200.0]


# -- the backtest compiles the same dispatching kernel ----------------------------------------

def test_backtest_recomputes_by_the_venue_formula_after_funding() -> None:
    # A Bybit-named copy of the golden backtests' TEST perp (one tier: MMR 0.5%, taker 0.1%).
    # Long 10 at 100, 10x: margin 100; Bybit: LP = 100 - (100 - 10 x 100 x 0.5%) / 10 = 90.5.
    # Funding 0.01% at 08:00 (bar 7): 10 x 100 x 0.0001 = 0.10 paid from the collateral (99.9):
    # LP = 100 - (99.9 - 5) / 10 = 90.51. Bar 8's low 90.505 lies between 90.51 and 90.5: only
    # the recomputed Bybit price liquidates there (Binance's would be 100 x 0.9001 / 0.995 =
    # 90.462). The stop (ATR 7 x 1.5 = 10.5 below: 89.5) lies beyond: guard off.
    bybit = replace(MARKET, exchange="bybit")
    p = panel([FLAT] * 8 + [(100.0, 100.0, 90.505, 95.0), FLAT])
    r = run_backtest(p, signals(10, {1: 1}, atr=7.0), [bybit], policy(), funding_rate=0.0001)
    (t,) = r.trades
    assert t["liquidation_price"] == pytest.approx(90.5, rel=REL)
    assert t["engine_liquidation_price"] == pytest.approx(90.5, rel=REL)
    assert t["funding"] == pytest.approx(0.10)
    assert t["exit_reason"] == "liquidation" and t["exit_bar"] == 8
    # the same backtest on the Binance-judged market keeps its position through bar 8
    r = run_backtest(p, signals(10, {1: 1}, atr=7.0), [replace(MARKET, exchange="binanceusdm")],
                     policy(), funding_rate=0.0001)
    assert r.trades[0]["exit_reason"] == "end"


def test_an_add_is_judged_by_the_venue_formula() -> None:
    # tests/test_adding.py's first case on a Bybit-named market: held 10 TST @ 90 (margin 300,
    # 3x), add 2.5 @ 100, stop 84. Merged: 12.5 @ 92, notional 1,150, margin 383.333.
    # Bybit: LP = 92 - (383.333 - 1,150 x 0.5%) / 12.5 = 92 x (1 - 0.333333 + 0.005) = 61.79333
    # (Binance's, in test_adding: 92 x 0.666667 / 0.995 = 61.64154)
    held = Position(SYMBOL, "long", 900.0, 300.0, entry=90.0)
    d = decide(Intent(SYMBOL, "long", 100.0, stop=84.0), Account(10_000.0, positions=(held,)),
               market(exchange="bybit"),
               helper_policy(sizing={"model": "risk", "risk": 0.01}, limits={"allow_add": True},
                             leverage={"value": 3, "max": 3}))
    assert d.accepted and d.amount == "2.5"
    after = trace_step(d, "position_after_add")
    assert after["liquidation_price"] == pytest.approx(92.0 * (1 - 1 / 3 + 0.005), rel=1e-9)


@pytest.mark.parametrize("formula", [liq.BINANCE, liq.BYBIT, liq.OKX])
def test_venue_kernels_compile_with_numba(formula: int) -> None:
    source = _native.source("liquidation")  # numba compiles Python source, as the backtest does
    price = numba.njit(source.venue_liquidation_price)
    cover = numba.njit(source.venue_coverage_needed)
    for is_long in (True, False):
        for inverse in (True, False):
            args = (formula, is_long, inverse, 100.0, 1_000.0, 80.0, 0.01, 2.0, 0.0005)
            assert price(*args) == liq.venue_liquidation_price(*args)
            args2 = (formula, is_long, inverse, 0.05, 0.01, 0.0005)
            assert cover(*args2) == liq.venue_coverage_needed(*args2)
