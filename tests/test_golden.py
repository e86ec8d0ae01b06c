"""Golden tests: every reference number of DESIGN.md "Reference cases", worked by hand.

All five cases run on the built-in example markets (``load_markets(None)``): perpetuals with a
0.001 step (BTC, ETH) or a 1 step (ADA), min cost 5, taker 0.05%, Binance's 2026 BTC/ETH tier 1
(<300k notional: 150x, maintenance rate 0.4%, cum 0); spot Kraken XRP/USD (step 1e-8, min amount
10 XRP, min cost 0.5, taker 0.26%) and BTC/USD (min amount 0.0001).

Each test says which rounding its numbers use:
* "before rounding" = the model's notional / quantity, read from the decision trace
  (``Decision.trace``, ``TraceStep.values``), before the exchange step is applied;
* "after rounding" = the decision's amount (whole lots, floored) and the notional/margin of it.
"""

from __future__ import annotations

import math

import pytest

from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision, Reason, Status
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketBook
from sizeguard.core.policy import with_changes
from sizing_helpers import bounds, trace_step


@pytest.fixture(scope="module")
def book() -> MarketBook:
    return load_markets(None)


def run(book: MarketBook, preset: str, intent: Intent, equity: float,
        sets: tuple[str, ...] = (), **account: object) -> Decision:
    policy = load_policy(preset, sets=sets)
    return decide(intent, Account(equity=equity, **account), book[intent.symbol], policy)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# 1. viper-fixed-margin: margin 2 USDT x 50x = 100 USDT notional per trade.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("symbol", "price", "qty_before", "amount_after", "notional_after", "rounded"),
    [
        # 2 x 50 = 100; 100 / 50,000 = 0.002 BTC = 2 lots of 0.001: rounding changes nothing.
        pytest.param("BTC/USDT:USDT", 50_000.0, 0.002, "0.002", 100.0, False, id="BTC-50000"),
        # 100 / 3,000 = 0.0333... before rounding; floor(33.33 lots) = 33 -> 0.033 after,
        # notional 0.033 x 3,000 = 99, margin 99 / 50 = 1.98.
        pytest.param("ETH/USDT:USDT", 3_000.0, 0.0333, "0.033", 99.0, True, id="ETH-3000"),
        # 100 / 1 = 100 ADA, step 1: 100 lots exactly.
        pytest.param("ADA/USDT:USDT", 1.0, 100.0, "100", 100.0, False, id="ADA-1"),
    ],
)
def test_viper_fixed_margin(book: MarketBook, symbol: str, price: float, qty_before: float,
                            amount_after: str, notional_after: float, rounded: bool) -> None:
    d = run(book, "viper-fixed-margin", Intent(symbol, "long", price), equity=100.0)
    assert d.status is Status.ACCEPTED
    # before rounding: the model's notional is 2 x 50 = 100, the quantity 100 / price
    note = trace_step(d, "notional")
    assert note["margin"] == 2.0 and note["leverage"] == 50.0
    assert note["notional"] == pytest.approx(100.0)
    assert trace_step(d, "exchange_rules")["quantity"] == pytest.approx(qty_before, abs=5e-5)
    # after rounding (exchange step)
    assert d.amount == amount_after
    assert d.notional == pytest.approx(notional_after)
    assert d.leverage == 50.0
    assert d.margin == pytest.approx(notional_after / 50)
    assert (Reason.ROUNDED_TO_STEP in d.reasons) is rounded


def test_viper_fixed_margin_eth_before_rounding_is_one_third_of_a_tenth(book: MarketBook) -> None:
    d = run(book, "viper-fixed-margin", Intent("ETH/USDT:USDT", "long", 3_000.0), equity=100.0)
    # 100 / 3,000 = 0.033333...; DESIGN prints it as 0.0333 (4 decimals, before rounding)
    assert round(trace_step(d, "exchange_rules")["quantity"], 4) == 0.0333
    assert trace_step(d, "exchange_rules")["lots"] == 33


# ---------------------------------------------------------------------------------------------
# 2. quantum-4x30: margin = min(5,000, balance x 25%) at 30x, gross 150k, 40k per symbol.
# ---------------------------------------------------------------------------------------------
def test_quantum_balance_1500(book: MarketBook) -> None:
    # margin = min(5,000, 1,500 x 0.25 = 375) = 375; notional 375 x 30 = 11,250;
    # amount 11,250 / 90,000 = 0.125 BTC = 125 lots exactly (same before and after rounding).
    # Margin + entry fee 375 + 11,250 x 0.0005 = 380.63 <= 1,500 available: no cap binds.
    d = run(book, "quantum-4x30", Intent("BTC/USDT:USDT", "long", 90_000.0), equity=1_500.0)
    assert d.status is Status.ACCEPTED
    assert trace_step(d, "notional")["margin"] == pytest.approx(375.0)
    assert trace_step(d, "notional")["notional"] == pytest.approx(11_250.0)
    assert d.amount == "0.125"
    assert d.notional == pytest.approx(11_250.0)
    assert d.margin == pytest.approx(375.0)
    assert d.leverage == 30.0
    assert d.reasons == ()


def test_quantum_balance_10000_cut_by_symbol_cap(book: MarketBook) -> None:
    # margin = min(5,000, 10,000 x 0.25 = 2,500) = 2,500; slot notional 2,500 x 30 = 75,000
    # (before limits); the per-symbol cap 40,000 cuts it to 40,000 (before rounding).
    # After rounding: 40,000 / 90,000 = 0.4444 -> 444 lots = 0.444 BTC, notional 39,960,
    # margin 39,960 / 30 = 1,332.
    d = run(book, "quantum-4x30", Intent("BTC/USDT:USDT", "long", 90_000.0), equity=10_000.0)
    assert trace_step(d, "notional")["notional"] == pytest.approx(75_000.0)
    cap = trace_step(d, "limit")
    assert cap["bound"] == "CAPPED_SYMBOL"
    assert cap["notional"] == pytest.approx(40_000.0)
    assert Reason.CAPPED_SYMBOL in d.reasons
    assert d.amount == "0.444"
    assert d.notional == pytest.approx(39_960.0)
    assert d.margin == pytest.approx(1_332.0)


def test_quantum_four_slots_then_max_positions(book: MarketBook) -> None:
    # 4 positions open (on other symbols): the fifth entry is refused by the gate.
    open_ = tuple(Position(f"X{i}/USDT:USDT", "long", 1_000.0, 33.3) for i in range(4))
    d = run(book, "quantum-4x30", Intent("BTC/USDT:USDT", "long", 90_000.0), equity=10_000.0,
            positions=open_)
    assert d.status is Status.SKIPPED
    assert d.reasons == (Reason.MAX_POSITIONS,)
    assert d.amount == "0"
    # with 3 open, the slot is free: available = 10,000 - 3 x 33.3 = 9,900.1
    d = run(book, "quantum-4x30", Intent("BTC/USDT:USDT", "long", 90_000.0), equity=10_000.0,
            positions=open_[:3])
    assert d.accepted
    # margin 9,900.1 x 0.25 = 2,475.025 -> x30 = 74,250.75 -> symbol cap 40,000 binds again
    assert trace_step(d, "notional")["margin"] == pytest.approx(2_475.025)


def test_quantum_gross_exposure_cap(book: MarketBook) -> None:
    # 3 open positions of 40,000 (120,000 gross): 150,000 - 120,000 = 30,000 remains.
    # Balance 10,000 - 3 x 1,333.33 margin = 6,000 available -> margin 1,500 -> x30 = 45,000
    # -> symbol cap 40,000 -> gross room 30,000. After rounding: 30,000 / 90,000 = 0.3333 -> 0.333.
    open_ = tuple(Position(f"X{i}/USDT:USDT", "long", 40_000.0, 40_000.0 / 30) for i in range(3))
    d = run(book, "quantum-4x30", Intent("BTC/USDT:USDT", "long", 90_000.0), equity=10_000.0,
            positions=open_)
    assert trace_step(d, "notional")["margin"] == pytest.approx(1_500.0)
    assert [b for b in bounds(d) if b.startswith("CAPPED")] == ["CAPPED_SYMBOL",
                                                                  "CAPPED_GROSS_EXPOSURE"]
    assert d.amount == "0.333"
    assert d.notional == pytest.approx(29_970.0)


def test_quantum_confidence_scaled_variant(book: MarketBook) -> None:
    # margin = available x fraction x confidence multiplier: 1,500 x 0.25 x 0.5 = 187.5,
    # x30 = 5,625 before rounding; 5,625 / 90,000 = 0.0625 -> 62 lots = 0.062 after.
    d = run(book, "quantum-4x30", Intent("BTC/USDT:USDT", "long", 90_000.0, confidence=0.4),
            equity=1_500.0, sets=("adjust.confidence=[[0.8, 1.0], [0.0, 0.5]]",))
    assert trace_step(d, "notional")["margin"] == pytest.approx(187.5)
    assert trace_step(d, "notional")["notional"] == pytest.approx(5_625.0)
    assert d.amount == "0.062"


# ---------------------------------------------------------------------------------------------
# 3. ai-atr-risk: equity 8,930.41, confidence 0.52, BTC 87,669, ATR 2,000.
#    risk fraction: 1% x 0.5 (confidence < 0.60) = 0.5%, inside the clamp [0.5%, 1.5%];
#    risk money 8,930.41 x 0.005 = 44.65205 (DESIGN: 44.65);
#    stop 1.5 x 2,000 = 3,000 below entry -> 84,669; distance 3,000 / 87,669 = 3.42196% (3.42%).
# ---------------------------------------------------------------------------------------------
AI = Intent("BTC/USDT:USDT", "long", 87_669.0, atr=2_000.0, confidence=0.52)
AI_EQUITY = 8_930.41
AI_RISK = 8_930.41 * 0.005  # 44.65205
AI_DIST = 3_000.0 / 87_669.0  # 0.0342196...


def test_ai_atr_risk_reference_numbers_fees_excluded_guard_off(book: MarketBook) -> None:
    # Fees excluded (sizing.fees_in_risk=false): notional = 44.65205 / 0.0342196 = 1,304.87
    # (DESIGN: 1,304.9, before limits and rounding) -> max notional caps it at 1,250;
    # equity x 30 = 267,912 does not bind. Margin at 30x: 1,250 / 30 = 41.67 (before rounding).
    # Guard off (liquidation.guard=off): leverage stays 30.
    # After rounding: 1,250 / 87,669 = 0.014258 -> 14 lots = 0.014 BTC, notional 1,227.366,
    # margin 40.9122.
    d = run(book, "ai-atr-risk", AI, AI_EQUITY,
            sets=("sizing.fees_in_risk=false", "liquidation.guard=off"))
    adjust = trace_step(d, "adjust")
    assert adjust["confidence"] == 0.5
    assert adjust["adjusted"] == pytest.approx(0.005)
    stop = trace_step(d, "stop")
    assert stop["stop_price"] == pytest.approx(84_669.0)
    assert round(stop["distance_pct"], 2) == 3.42
    notional = trace_step(d, "notional")
    assert round(notional["risk_money"], 2) == 44.65
    assert round(notional["notional"], 1) == 1_304.9
    assert notional["fee_round_trip_pct"] == 0.0
    limit = trace_step(d, "limit")
    assert (limit["bound"], limit["notional"]) == ("CAPPED_MAX_NOTIONAL", 1_250.0)
    lev = trace_step(d, "leverage")
    assert lev["leverage"] == 30.0
    assert round(lev["margin"], 2) == 41.67
    assert d.leverage == 30.0
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION not in d.reasons
    assert d.amount == "0.014"
    assert d.notional == pytest.approx(1_227.366)
    assert d.margin == pytest.approx(40.9122)
    # risk after rounding: 1,227.366 x 0.0342196 = 42.0 (fees excluded) <= 44.65
    assert d.risk == pytest.approx(42.0)


def test_ai_atr_risk_policy_override_through_python_api(book: MarketBook) -> None:
    # Same numbers with the overrides applied to the Policy object instead of --set.
    policy = with_changes(load_policy("ai-atr-risk"), "sizing", fees_in_risk=False)
    policy = with_changes(policy, "liquidation", guard="off")
    d = decide(AI, Account(equity=AI_EQUITY), book[AI.symbol], policy)
    assert round(trace_step(d, "notional")["notional"], 1) == 1_304.9
    assert d.leverage == 30.0 and d.amount == "0.014"


def test_ai_atr_risk_fees_in_risk_default(book: MarketBook) -> None:
    # Default (fees inside the risk): entry fee 0.05% on the entry notional, exit fee 0.05% on
    # the notional at the stop, which for a long is entry notional x (1 - 0.0342196):
    # fee rate 0.0005 + 0.0005 x 0.9657804 = 0.00098289 (0.098289%);
    # notional = 44.65205 / (0.0342196 + 0.00098289) = 44.65205 / 0.0352025 = 1,268.43
    # (before limits) -> capped 1,250.
    d = run(book, "ai-atr-risk", AI, AI_EQUITY)
    n = trace_step(d, "notional")
    assert n["fee_round_trip_pct"] == pytest.approx(0.098289, abs=1e-6)
    assert n["notional"] == pytest.approx(AI_RISK / (AI_DIST + 0.0005 + 0.0005 * (1 - AI_DIST)))
    assert round(n["notional"], 2) == 1_268.43
    assert Reason.CAPPED_MAX_NOTIONAL in d.reasons


def test_ai_atr_risk_guard_lowers_leverage(book: MarketBook) -> None:
    # At 30x a long's liquidation (isolated, mmr 0.4%, cum 0):
    #   LP = 87,669 x (1 - 1/30) / (1 - 0.004) = 85,087.05, i.e. 2.945% below entry, inside the
    #   3.42% stop. The guard wants liquidation >= 3.42196% x 1.25 = 4.27745% away:
    #   coverage k = 1 - (1 - 0.0427745) x (1 - 0.004) = 0.046603 -> safe leverage 1/k = 21.46,
    #   floored to 21x. Liquidation at 21x: 87,669 x (1 - 1/21) / 0.996 = 83,829.60 (4.38%).
    # The risk model keeps the notional: 1,250 at 21x = 59.52 margin (before rounding);
    # after rounding 0.014 BTC, notional 1,227.366, margin 1,227.366 / 21 = 58.446.
    d = run(book, "ai-atr-risk", AI, AI_EQUITY)
    off = run(book, "ai-atr-risk", AI, AI_EQUITY, sets=("liquidation.guard=off",))
    lp30 = 87_669.0 * (1 - 1 / 30) / 0.996
    assert off.liquidation_price == pytest.approx(lp30)  # margin / notional = 1/30 after rounding too
    assert (87_669.0 - lp30) / 87_669.0 == pytest.approx(0.029451, abs=1e-6)  # "about 2.9%"
    assert off.liquidation_price > off.stop_price  # type: ignore[operator]  # inside the stop

    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    guard = trace_step(d, "liquidation_guard")
    assert guard["bound"] == "LEVERAGE_LOWERED_FOR_LIQUIDATION"
    assert (guard["leverage_before"], guard["leverage"]) == (30.0, 21.0)
    assert guard["required_distance_pct"] == pytest.approx(AI_DIST * 125)
    assert d.leverage == 21.0
    assert trace_step(d, "leverage")["margin"] == pytest.approx(1_250.0 / 21)
    assert d.amount == "0.014"
    assert d.margin == pytest.approx(1_227.366 / 21)
    assert d.liquidation_price == pytest.approx(87_669.0 * (1 - 1 / 21) / 0.996)
    assert d.liquidation_price < d.stop_price  # type: ignore[operator]
    # risk after rounding, fees in (exit fee at the stop, as above):
    # 1,227.366 x (0.0342196 + 0.00098289) = 1,227.366 x 0.0352025 = 43.2064 <= 44.65
    assert d.risk == pytest.approx(1_227.366 * (AI_DIST + 0.0005 + 0.0005 * (1 - AI_DIST)))
    assert d.risk == pytest.approx(43.2064, abs=1e-4)
    assert d.risk <= AI_RISK


def test_ai_atr_risk_guard_refuse(book: MarketBook) -> None:
    d = run(book, "ai-atr-risk", AI, AI_EQUITY, sets=("liquidation.guard=refuse",))
    assert d.status is Status.SKIPPED
    assert d.reasons[-1] is Reason.STOP_BEYOND_LIQUIDATION
    assert d.amount == "0"


@pytest.mark.parametrize(
    ("changes", "fraction"),
    [
        # confidence >= 0.85: 1% x 1.5 = 1.5% (the clamp's top)
        pytest.param({"confidence": 0.9}, 0.015, id="confidence-0.85-x1.5"),
        # 0.60 <= confidence < 0.85: x1.0
        pytest.param({"confidence": 0.7}, 0.01, id="confidence-0.60-x1"),
        # confidence 0.52 and high volatility: 1% x 0.5 x 0.75 = 0.375% -> clamped up to 0.5%
        pytest.param({"volatility": "high"}, 0.005, id="clamp-floor"),
        # ranging 0.8 x confidence 0.5: 0.4% -> clamp floor 0.5%
        pytest.param({"regime": "ranging"}, 0.005, id="regime-then-clamp"),
    ],
)
def test_ai_atr_risk_multipliers_and_clamp(book: MarketBook, changes: dict[str, object],
                                           fraction: float) -> None:
    fields = {"symbol": AI.symbol, "side": "long", "price": AI.price, "atr": AI.atr,
              "confidence": 0.52, **changes}
    d = run(book, "ai-atr-risk", Intent(**fields), AI_EQUITY)  # type: ignore[arg-type]
    assert trace_step(d, "adjust")["adjusted"] == pytest.approx(fraction)
    assert trace_step(d, "notional")["risk_money"] == pytest.approx(AI_EQUITY * fraction)


@pytest.mark.parametrize(
    ("account", "fraction"),
    [
        # the protective multipliers act after the clamp: 0.5% floor x 0.5 = 0.25%
        pytest.param({"losing_streak": 3}, 0.0025, id="streak-3-below-floor"),
        # 10 trades, 2 wins: win rate 20% < 30% -> x0.5
        pytest.param({"symbol_stats": {"BTC/USDT:USDT": (10, 2)}}, 0.0025, id="win-rate"),
        # drawdown 1 - 8,930.41 / 9,200 = 2.93% >= 2% -> x0.5
        pytest.param({"peak_equity": 9_200.0}, 0.0025, id="drawdown-2pct"),
        # all three: 0.5% x 0.5 x 0.5 x 0.5 = 0.0625%
        pytest.param({"losing_streak": 4, "peak_equity": 9_200.0,
                      "symbol_stats": {"BTC/USDT:USDT": (12, 3)}}, 0.000625, id="all-three"),
    ],
)
def test_ai_atr_risk_protective_multipliers(book: MarketBook, account: dict[str, object],
                                            fraction: float) -> None:
    from sizeguard.core.account import SymbolStats

    stats = account.pop("symbol_stats", None)
    if stats is not None:
        account["symbol_stats"] = {k: SymbolStats(*v) for k, v in stats.items()}  # type: ignore[attr-defined]
    d = run(book, "ai-atr-risk", AI, AI_EQUITY, **account)
    assert trace_step(d, "adjust")["clamped"] == pytest.approx(0.005)
    assert trace_step(d, "adjust")["adjusted"] == pytest.approx(fraction)


def test_ai_atr_risk_equity_leverage_cap(book: MarketBook) -> None:
    # notional <= equity x 30. Equity 20, confidence 0.9: 1% x 1.5 = 1.5% -> risk 0.3;
    # stop 0.01% with fees excluded: 0.3 / 0.0001 = 3,000 -> max notional 1,250
    # -> equity x 30 = 600 (CAPPED_EQUITY_LEVERAGE). At 30x that is 20 margin, and the entry
    # fee 600 x 0.0005 = 0.3 no longer fits the 20 available: 20 / (1/30 + 0.0005) = 591.13
    # (CAPPED_AVAILABLE), all before rounding.
    intent = Intent("BTC/USDT:USDT", "long", 87_669.0, stop_pct=0.01, confidence=0.9)
    d = run(book, "ai-atr-risk", intent, 20.0, sets=("sizing.fees_in_risk=false",))
    limits = [s for s in d.trace if s.step == "limit"]
    assert [s.bound for s in limits] == ["CAPPED_MAX_NOTIONAL", "CAPPED_EQUITY_LEVERAGE",
                                         "CAPPED_AVAILABLE"]
    assert dict(limits[1].values)["notional"] == pytest.approx(600.0)
    assert dict(limits[2].values)["notional"] == pytest.approx(20 / (1 / 30 + 0.0005))
    # after rounding: 591.13 / 87,669 = 0.006743 -> 0.006 BTC
    assert d.amount == "0.006"


# ---------------------------------------------------------------------------------------------
# 4. viper-50x: risk 2% per trade at up to 50x, margin <= 10% of equity per position.
# ---------------------------------------------------------------------------------------------
def test_viper_50x_risk_and_guard(book: MarketBook) -> None:
    # equity 1,000, ETH short at 3,000, stop 1.5% above: risk 20;
    # fees: entry 0.05% + exit 0.05% on the notional at the stop (a short's: 101.5% of entry's)
    # = 0.0005 + 0.0005 x 1.015 = 0.0010075;
    # notional 20 / (0.015 + 0.0010075) = 20 / 0.0160075 = 1,249.41 (before rounding);
    # margin at 50x 24.99 <= 100 (10%).
    # Liquidation at 50x (short, mmr 0.4%): 3,000 x (1 + 1/50) / 1.004 -> 1.594% away, inside
    # the 1.5% x 1.25 = 1.875% required: k = 1.01875 x 1.004 - 1 = 0.022825 -> 43.81 -> 43x.
    # After rounding: 1,249.41 / 3,000 = 0.41647 -> 0.416 ETH, notional 1,248, margin 1,248 / 43.
    d = run(book, "viper-50x", Intent("ETH/USDT:USDT", "short", 3_000.0, stop_pct=1.5), 1_000.0)
    assert trace_step(d, "notional")["risk_money"] == pytest.approx(20.0)
    assert trace_step(d, "notional")["notional"] == pytest.approx(1_249.4143, abs=1e-4)
    assert d.leverage == 43.0
    assert Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION in d.reasons
    assert d.amount == "0.416"
    assert d.notional == pytest.approx(1_248.0)
    assert d.margin == pytest.approx(1_248.0 / 43)
    assert d.risk == pytest.approx(1_248.0 * 0.0160075)  # 19.9774 <= 20
    assert d.stop_price == pytest.approx(3_045.0)


def test_viper_50x_margin_cap_10pct(book: MarketBook) -> None:
    # stop 0.1%: 20 / (0.001 + 0.001) = 10,000 notional -> margin 200 at 50x > 10% x 1,000 = 100
    # -> CAPPED_MARGIN: notional 100 x 50 = 5,000 (before rounding) -> 5,000 / 3,000 = 1.6667
    # -> 1.666 ETH after, notional 4,998, margin 99.96.
    d = run(book, "viper-50x", Intent("ETH/USDT:USDT", "long", 3_000.0, stop_pct=0.1), 1_000.0)
    assert Reason.CAPPED_MARGIN in d.reasons
    assert trace_step(d, "limits")["notional"] == pytest.approx(5_000.0)
    assert d.leverage == 50.0
    assert d.amount == "1.666"
    assert d.margin == pytest.approx(99.96)


def test_viper_50x_leverage_never_above_50(book: MarketBook) -> None:
    d = run(book, "viper-50x", Intent("ETH/USDT:USDT", "long", 3_000.0, stop_pct=0.1,
                                      leverage=75.0), 1_000.0)
    assert d.leverage == 50.0
    assert Reason.CAPPED_LEVERAGE_POLICY in d.reasons


# ---------------------------------------------------------------------------------------------
# 5. kraken-micro (spot): trade = min(balance x 95%, 10); policy min cost 2.5; skip, never fail.
# ---------------------------------------------------------------------------------------------
def test_kraken_micro_balance_2_86(book: MarketBook) -> None:
    # 2.86 x 0.95 = 2.717 (DESIGN rounds it to 2.72) <= 10. XRP/USD at 0.25:
    # 2.717 / 0.25 = 10.868 XRP, step 1e-8: exact, so before = after rounding.
    # Minimums: 10.868 >= 10 XRP, cost 2.717 >= max(0.5 market, 2.5 policy).
    # Spot: margin = notional; 2.717 + fee 2.717 x 0.0026 = 2.7241 <= 2.86 available.
    d = run(book, "kraken-micro", Intent("XRP/USD", "long", 0.25), 2.86)
    assert d.status is Status.ACCEPTED
    assert trace_step(d, "notional")["margin"] == pytest.approx(2.717)
    assert d.amount == "10.868"
    assert d.notional == pytest.approx(2.717)
    assert round(d.notional, 2) == 2.72
    assert d.leverage == 1.0
    assert d.margin_mode == "spot"
    assert d.reasons == ()


def test_kraken_micro_max_ten(book: MarketBook) -> None:
    # 100 x 0.95 = 95 -> min(95, 10) = 10 -> 40 XRP
    d = run(book, "kraken-micro", Intent("XRP/USD", "long", 0.25), 100.0)
    assert Reason.CAPPED_MAX_NOTIONAL in d.reasons
    assert d.amount == "40"


def test_kraken_micro_under_minimum_skips_with_reason(book: MarketBook) -> None:
    # BTC/USD at 90,000: 2.717 / 90,000 = 0.0000302 BTC < min 0.0001 BTC. Raising to 0.0001
    # (9 USD) would exceed the 2.717 budget x 1.1 tolerance = 2.99: skip, not a failed order.
    d = run(book, "kraken-micro", Intent("BTC/USD", "long", 90_000.0), 2.86)
    assert d.status is Status.SKIPPED
    assert d.reasons[-1] is Reason.BELOW_MIN_AMOUNT
    assert d.amount == "0" and d.notional == 0.0
    assert trace_step(d, "raise_to_minimum")["ok"] is False
    # a balance under the policy's 2.5 minimum cost on XRP: 2.0 x 0.95 = 1.9 -> 7.6 XRP;
    # raising to 10 XRP = 2.5 USD exceeds 1.9 x 1.1 = 2.09: skip.
    d = run(book, "kraken-micro", Intent("XRP/USD", "long", 0.25), 2.0)
    assert d.status is Status.SKIPPED
    assert set(d.reasons) >= {Reason.BELOW_MIN_AMOUNT, Reason.BELOW_MIN_COST}


def test_kraken_micro_raise_within_tolerance(book: MarketBook) -> None:
    # balance 2.6: 2.6 x 0.95 = 2.47 -> 9.88 XRP < 10 min. Raise to 10 XRP = 2.5 USD:
    # 2.5 <= 2.47 x 1.1 = 2.717 budget, <= 10 max notional, 2.5 + fee 0.0065 <= 2.6 available.
    d = run(book, "kraken-micro", Intent("XRP/USD", "long", 0.25), 2.6)
    assert d.accepted
    assert Reason.RAISED_TO_MINIMUM in d.reasons
    assert d.amount == "10"
    # balance 2.5: the raised order (2.5 + 0.0065 fee) no longer fits the 2.5 available
    d = run(book, "kraken-micro", Intent("XRP/USD", "long", 0.25), 2.5)
    assert not d.accepted
    assert Reason.RAISED_TO_MINIMUM not in d.reasons


def test_kraken_micro_learned_minimum_is_kept(book: MarketBook) -> None:
    # The exchange once rejected XRP/USD under 3.0: 2.717 < 3 and raising to 12 XRP = 3 USD
    # exceeds 2.717 x 1.1 = 2.9887, so the decision skips with BELOW_MIN_COST.
    d = run(book, "kraken-micro", Intent("XRP/USD", "long", 0.25), 2.86,
            min_cost={"XRP/USD": 3.0})
    assert d.status is Status.SKIPPED
    assert Reason.BELOW_MIN_COST in d.reasons
    assert trace_step(d, "exchange_rules")["min_cost_source"] == "learned from an exchange rejection"


def test_liquidation_reference_formula_by_hand() -> None:
    # liquidation.py's worked example: entry 100, 10x isolated, mmr 0.004, cum 0.
    from sizeguard.core.liquidation import isolated_liquidation_price

    assert isolated_liquidation_price(True, False, 100.0, 10.0, 0.004, 0.0, 1_000.0) == \
        pytest.approx(100 * 0.9 / 0.996)  # 90.3614
    assert isolated_liquidation_price(False, False, 100.0, 10.0, 0.004, 0.0, 1_000.0) == \
        pytest.approx(100 * 1.1 / 1.004)  # 109.5618
    assert math.isclose(100 * 0.9 / 0.996, 90.3614, abs_tol=1e-4)
