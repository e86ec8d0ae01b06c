"""Table-driven tests (freqtrade style): every sizing model, adjustment, gate and limit code.

The synthetic market (``sizing_helpers.market``): TST/USDT:USDT, a linear perpetual at price
100, step 0.001, no minimums, no fee (unless a row sets one), max leverage 100, no tiers (the
policy's default maintenance rate 0.5% applies). Fixed leverage 10 unless a row says otherwise,
so the guard never binds for stops of a few percent (liquidation at 10x lies 9.5% away).
Every expected amount is worked by hand in the row's comment: amount = notional / 100, floored
to 0.001.
"""

from __future__ import annotations

from typing import Any

import pytest

from sizeguard.core.account import Account, Position, SymbolStats
from sizeguard.core.decision import Reason, Status
from sizeguard.core.intent import Intent
from sizing_helpers import SYMBOL, market, policy, size, trace_step

LEV10 = {"value": 10, "max": 10}


def intent(**kw: Any) -> Intent:
    fields: dict[str, Any] = {"symbol": SYMBOL, "side": "long", "price": 100.0, **kw}
    return Intent(**fields)


# ---------------------------------------------------------------------------------------------
# Sizing models
# ---------------------------------------------------------------------------------------------
MODEL_CASES = [
    # id, sizing, intent kwargs, account kwargs, market kwargs, expected amount
    ("fixed_margin", {"model": "fixed_margin", "margin": 10.0}, {}, {}, {},
     "1"),  # 10 margin x 10 = 100 notional -> 1
    ("fixed_notional", {"model": "fixed_notional", "notional": 250.0}, {}, {}, {},
     "2.5"),  # 250 / 100
    ("balance_fraction-available", {"model": "balance_fraction", "fraction": 0.1}, {},
     {"available": 600.0}, {}, "6"),  # 600 x 0.1 = 60 margin x 10 = 600 -> 6
    ("balance_fraction-equity", {"model": "balance_fraction", "fraction": 0.1,
                                 "balance": "equity"}, {},
     {"available": 600.0}, {}, "10"),  # 1,000 x 0.1 = 100 margin x 10 = 1,000 -> 10
    ("risk-stop-price", {"model": "risk", "risk": 0.01}, {"stop": 98.0}, {}, {},
     "5"),  # 1,000 x 1% = 10 risk / 2% = 500 -> 5
    ("risk-stop-price-short", {"model": "risk", "risk": 0.01},
     {"side": "short", "stop": 102.0}, {}, {}, "5"),  # same, stop 2% above
    ("risk-stop-pct", {"model": "risk", "risk": 0.01}, {"stop_pct": 2.0}, {}, {},
     "5"),  # 10 / 2% = 500
    ("risk-k-atr", {"model": "risk", "risk": 0.01}, {"atr": 1.0, "atr_mult": 2.0}, {}, {},
     "5"),  # stop 100 - 2 x 1 = 98: 2% -> 500
    ("risk-atr-policy-mult", {"model": "risk", "risk": 0.01}, {"atr": 1.0}, {}, {},
     "6.666"),  # 1.5 x 1 = 1.5% -> 10 / 0.015 = 666.67 -> 6.666
    ("risk-roe", {"model": "risk", "risk": 0.01}, {"stop_roe": 20.0}, {}, {},
     "5"),  # 20% of margin at 10x = 2% of price -> 500
    ("risk-with-fees", {"model": "risk", "risk": 0.01}, {"stop_pct": 2.0}, {},
     {"taker": 0.0005}, "4.764"),
    # entry fee 0.0005 + exit fee 0.0005 on the notional at the stop (98% of entry's):
    # 10 / (0.02 + 0.0005 + 0.0005 x 0.98) = 10 / 0.02099 = 476.417 -> 4.764
    ("risk-fees-excluded", {"model": "risk", "risk": 0.01, "fees_in_risk": False},
     {"stop_pct": 2.0}, {}, {"taker": 0.0005}, "5"),  # 10 / 0.02 = 500
    ("volatility_target", {"model": "volatility_target", "target_volatility": 0.02},
     {"atr": 2.0}, {}, {}, "10"),  # ATR 2 / 100 = 2%: 1,000 x 0.02 / 0.02 = 1,000 -> 10
    ("kelly-prior", {"model": "kelly", "win_rate": 0.6, "payoff": 2.0, "kelly_fraction": 0.25},
     {"stop_pct": 2.0}, {}, {},
     "50"),  # 0.6 - 0.4 / 2 = 0.4 x 0.25 = 10% -> 100 / 2% = 5,000 -> 50
    ("kelly-symbol-record", {"model": "kelly", "win_rate": 0.6, "payoff": 2.0,
                             "kelly_fraction": 0.25, "min_trades": 20},
     {"stop_pct": 2.0}, {"symbol_stats": {SYMBOL: SymbolStats(20, 14)}}, {},
     "68.75"),  # record 14/20 = 0.7: 0.7 - 0.3 / 2 = 0.55 x 0.25 = 13.75% -> 6,875 -> 68.75
    ("kelly-record-too-short", {"model": "kelly", "win_rate": 0.6, "payoff": 2.0,
                                "kelly_fraction": 0.25, "min_trades": 20},
     {"stop_pct": 2.0}, {"symbol_stats": {SYMBOL: SymbolStats(19, 19)}}, {},
     "50"),  # 19 trades < 20: the prior 0.6 applies -> 50
]


@pytest.mark.parametrize(("sizing", "kw", "acc", "mkt", "amount"),
                         [pytest.param(*c[1:], id=c[0]) for c in MODEL_CASES])
def test_sizing_models(sizing: dict[str, Any], kw: dict[str, Any], acc: dict[str, Any],
                       mkt: dict[str, Any], amount: str) -> None:
    d = size(intent(**kw), Account(equity=1_000.0, **acc), market(**mkt),
             policy(sizing=sizing, leverage=LEV10))
    assert d.status is Status.ACCEPTED, d.reasons
    assert d.amount == amount
    assert d.leverage == 10.0
    assert d.margin == pytest.approx(d.notional / 10)


def test_margin_times_leverage_never_divided() -> None:
    # the same 10 margin at 20x is 200 notional (2), not 10 / 20
    d = size(intent(), Account(1_000.0), market(),
             policy(sizing={"model": "fixed_margin", "margin": 10.0},
                    leverage={"value": 20, "max": 20}))
    assert d.amount == "2"
    assert d.margin == pytest.approx(10.0)


def test_kelly_without_edge_skips() -> None:
    # 0.3 - 0.7 / 1.5 = -0.1667 <= 0: no edge, no trade
    d = size(intent(stop_pct=2.0), Account(1_000.0), market(),
             policy(sizing={"model": "kelly", "win_rate": 0.3, "payoff": 1.5}, leverage=LEV10))
    assert d.status is Status.SKIPPED
    assert d.reasons == (Reason.NO_EDGE,)
    assert trace_step(d, "kelly")["full_kelly"] == pytest.approx(0.3 - 0.7 / 1.5)
    assert d.amount == "0"


# ---------------------------------------------------------------------------------------------
# Adjustments: clamp(base x regime x volatility x confidence, 0.5%, 1.5%) then x performance
# x losing streak x drawdown. Equity 10,000, stop 2%: amount = 10,000 x f / 0.02 / 100 = 5,000 f.
# ---------------------------------------------------------------------------------------------
ADJUST = {
    "min": 0.005, "max": 0.015,
    "confidence": [[0.85, 1.5], [0.60, 1.0], [0.0, 0.5]],
    "regime": {"trending": 1.2, "normal": 1.0, "ranging": 0.8},
    "volatility": {"normal": 1.0, "high": 0.75, "extreme": 0.5},
    "win_rate": [[0.30, 0.5]], "win_rate_min_trades": 10,
    "losing_streak": [[3, 0.5], [5, 0.25]],
    "drawdown": [[0.02, 0.5], [0.10, 0.25]],
}
ADJUST_CASES = [
    ("none", {}, {}, 0.01, "50"),
    ("confidence>=0.85-x1.5", {"confidence": 0.9}, {}, 0.015, "75"),
    ("confidence-0.60..0.85-x1", {"confidence": 0.7}, {}, 0.01, "50"),
    ("confidence<0.60-x0.5", {"confidence": 0.52}, {}, 0.005, "25"),
    # a threshold is inclusive: exactly 0.85 gets x1.5, exactly 0.60 gets x1
    ("confidence=0.85", {"confidence": 0.85}, {}, 0.015, "75"),
    ("confidence=0.60", {"confidence": 0.60}, {}, 0.01, "50"),
    ("regime-trending-x1.2", {"regime": "trending"}, {}, 0.012, "60"),
    ("regime-ranging-x0.8", {"regime": "ranging"}, {}, 0.008, "40"),
    # 1% x 1.2 x 1.5 = 1.8% -> clamped to the 1.5% ceiling
    ("clamp-ceiling", {"regime": "trending", "confidence": 0.9}, {}, 0.015, "75"),
    ("volatility-extreme-x0.5", {"volatility": "extreme"}, {}, 0.005, "25"),
    # 1% x 0.75 x 0.5 = 0.375% -> clamped up to the 0.5% floor
    ("clamp-floor", {"volatility": "high", "confidence": 0.52}, {}, 0.005, "25"),
    # 2 wins in 10 trades = 20% < 30%: x0.5
    ("win-rate<30%-x0.5", {}, {"symbol_stats": {SYMBOL: SymbolStats(10, 2)}}, 0.005, "25"),
    # only 9 trades: the record is too short to judge
    ("win-rate-too-few-trades", {}, {"symbol_stats": {SYMBOL: SymbolStats(9, 0)}}, 0.01, "50"),
    # exactly 30% is not below 30%
    ("win-rate-30%-exactly", {}, {"symbol_stats": {SYMBOL: SymbolStats(10, 3)}}, 0.01, "50"),
    ("streak-2-none", {}, {"losing_streak": 2}, 0.01, "50"),
    ("streak-3-x0.5", {}, {"losing_streak": 3}, 0.005, "25"),
    ("streak-5-x0.25", {}, {"losing_streak": 6}, 0.0025, "12.5"),
    # drawdown 1 - 10,000 / 10,150 = 1.48% < 2%
    ("drawdown-1.5%-none", {}, {"peak_equity": 10_150.0}, 0.01, "50"),
    # 1 - 10,000 / 10,500 = 4.76% >= 2%
    ("drawdown-4.8%-x0.5", {}, {"peak_equity": 10_500.0}, 0.005, "25"),
    # 1 - 10,000 / 12,000 = 16.7% >= 10%
    ("drawdown-16.7%-x0.25", {}, {"peak_equity": 12_000.0}, 0.0025, "12.5"),
    # protective multipliers act AFTER the clamp: 0.5% floor x 0.5 = 0.25%, below the floor
    ("after-clamp-streak", {"confidence": 0.52}, {"losing_streak": 3}, 0.0025, "12.5"),
    # 0.5% x 0.5 (win rate) x 0.5 (streak) x 0.5 (drawdown) = 0.0625% -> 3.125
    ("after-clamp-all-three", {"confidence": 0.52},
     {"losing_streak": 3, "peak_equity": 10_500.0,
      "symbol_stats": {SYMBOL: SymbolStats(10, 1)}}, 0.000625, "3.125"),
]


@pytest.mark.parametrize(("kw", "acc", "fraction", "amount"),
                         [pytest.param(*c[1:], id=c[0]) for c in ADJUST_CASES])
def test_adjustments(kw: dict[str, Any], acc: dict[str, Any], fraction: float,
                     amount: str) -> None:
    d = size(intent(stop_pct=2.0, **kw), Account(equity=10_000.0, **acc), market(),
             policy(sizing={"model": "risk", "risk": 0.01}, adjust=ADJUST, leverage=LEV10))
    assert trace_step(d, "adjust")["adjusted"] == pytest.approx(fraction)
    assert trace_step(d, "notional")["risk_money"] == pytest.approx(10_000 * fraction)
    assert d.amount == amount


def test_clamp_bounds_the_balance_fraction_too() -> None:
    # balance_fraction: the clamp applies to the fraction: 0.25 x 0.5 = 0.125 -> floor 0.2
    d = size(intent(confidence=0.1), Account(1_000.0), market(),
             policy(sizing={"model": "balance_fraction", "fraction": 0.25},
                    adjust={"min": 0.2, "confidence": [[0.0, 0.5]]}, leverage=LEV10))
    assert trace_step(d, "adjust")["clamped"] == pytest.approx(0.2)
    assert d.amount == "20"  # 1,000 x 0.2 = 200 margin x 10 = 2,000 -> 20


# ---------------------------------------------------------------------------------------------
# Gates (DESIGN step 2): each closes with its code, and opens just past its threshold.
# ---------------------------------------------------------------------------------------------
OTHER = Position("OTHER/USDT:USDT", "long", 1_000.0, 100.0)
MINE = Position(SYMBOL, "long", 1_000.0, 100.0)
GATE_CASES = [
    # day start 10,000 (= 9,700 + 300): a 300 loss is 3% >= 3%
    ("daily-loss-halts", {"daily_loss": 0.03},
     {"equity": 9_700.0, "realised_pnl_today": -300.0}, {}, Reason.HALTED_DAILY_LOSS),
    # 299 / 9,999 = 2.99% < 3%
    ("daily-loss-open", {"daily_loss": 0.03},
     {"equity": 9_700.0, "realised_pnl_today": -299.0}, {}, None),
    # 1 - 9,000 / 10,000 = 10% >= 10%
    ("drawdown-halts", {"max_drawdown": 0.1}, {"equity": 9_000.0, "peak_equity": 10_000.0},
     {}, Reason.HALTED_DRAWDOWN),
    ("drawdown-open", {"max_drawdown": 0.1}, {"equity": 9_001.0, "peak_equity": 10_000.0},
     {}, None),
    ("max-positions", {"max_positions": 2},
     {"equity": 10_000.0, "positions": (OTHER, Position("X/USDT:USDT", "long", 10.0, 1.0))},
     {}, Reason.MAX_POSITIONS),
    ("max-positions-open", {"max_positions": 2}, {"equity": 10_000.0, "positions": (OTHER,)},
     {}, None),
    ("position-open", {}, {"equity": 10_000.0, "positions": (MINE,)}, {},
     Reason.POSITION_OPEN),
    ("position-open-add-allowed", {"allow_add": True},
     {"equity": 10_000.0, "positions": (MINE,)}, {}, None),
    # last trade at t=1,000, now 2,000: 1,000 s < 3,600 s
    ("cooldown", {"cooldown": 3_600.0},
     {"equity": 10_000.0, "last_trade_at": {SYMBOL: 1_000.0}}, {"time": 2_000.0},
     Reason.COOLDOWN),
    ("cooldown-over", {"cooldown": 3_600.0},
     {"equity": 10_000.0, "last_trade_at": {SYMBOL: 1_000.0}}, {"time": 4_600.0}, None),
]


@pytest.mark.parametrize(("limits", "acc", "kw", "code"),
                         [pytest.param(*c[1:], id=c[0]) for c in GATE_CASES])
def test_gates(limits: dict[str, Any], acc: dict[str, Any], kw: dict[str, Any],
               code: Reason | None) -> None:
    d = size(intent(stop_pct=2.0, **kw), Account(**acc), market(),
             policy(sizing={"model": "risk", "risk": 0.01}, limits=limits, leverage=LEV10))
    if code is None:
        assert d.accepted, d.reasons
        assert trace_step(d, "gates")["bound"] is None
    else:
        assert d.status is Status.SKIPPED
        assert d.reasons == (code,)
        assert trace_step(d, "gates")["bound"] == str(code)
        assert d.amount == "0" and d.notional == 0.0 and d.risk == 0.0


def test_gates_come_before_sizing() -> None:
    # a halted account is refused before any size is computed: no base_size step in the trace
    d = size(intent(stop_pct=2.0), Account(9_000.0, peak_equity=10_000.0), market(),
             policy(limits={"max_drawdown": 0.05}, leverage=LEV10))
    assert d.reasons == (Reason.HALTED_DRAWDOWN,)
    assert "base_size" not in [s.step for s in d.trace]


# ---------------------------------------------------------------------------------------------
# Limits and exchange rules. Base: equity 10,000, risk 1% = 100, stop 2% -> 5,000 notional
# (amount 50) at 10x, margin 500, unless a row changes it.
# ---------------------------------------------------------------------------------------------
LIMIT_CASES = [
    # id, limits, account kwargs, market kwargs, expected amount, expected code
    ("max-notional", {"max_notional": 3_000.0}, {}, {}, "30", Reason.CAPPED_MAX_NOTIONAL),
    # 4,000 per symbol less the 1,500 already open on it = 2,500
    ("symbol-incl-open", {"max_symbol_notional": 4_000.0, "allow_add": True},
     {"positions": (Position(SYMBOL, "long", 1_500.0, 150.0),)}, {}, "25",
     Reason.CAPPED_SYMBOL),
    # an open position on another symbol does not count against this symbol
    ("symbol-other-open", {"max_symbol_notional": 6_000.0},
     {"positions": (Position("OTHER/USDT:USDT", "long", 1_500.0, 150.0),)}, {}, "50", None),
    # gross 6,000 less 4,000 open elsewhere = 2,000
    ("gross-exposure", {"max_gross_exposure": 6_000.0},
     {"positions": (Position("OTHER/USDT:USDT", "short", 4_000.0, 400.0),)}, {}, "20",
     Reason.CAPPED_GROSS_EXPOSURE),
    # max margin 200 per trade x 10 = 2,000
    ("max-margin", {"max_margin": 200.0}, {}, {}, "20", Reason.CAPPED_MARGIN),
    # 1% of 10,000 = 100 margin x 10 = 1,000
    ("max-margin-pct", {"max_margin_pct": 0.01}, {}, {}, "10", Reason.CAPPED_MARGIN),
    # equity x 0.3 = 3,000
    ("equity-leverage", {"max_equity_leverage": 0.3}, {}, {}, "30",
     Reason.CAPPED_EQUITY_LEVERAGE),
    # fee 0.05%: 100 / (0.02 + 0.001) = 4,761.9 wanted; margin + entry fee must fit 300:
    # N / 10 + N x 0.0005 <= 300 -> N <= 300 / 0.1005 = 2,985.07 -> 29.85 (margin 298.5 + fee
    # 1.4925 = 299.99); ignoring the fee would give 30 (300 + 1.5 > 300)
    ("available-incl-fee", {}, {"available": 300.0}, {"taker": 0.0005}, "29.85",
     Reason.CAPPED_AVAILABLE),
    # the exchange's max amount per order: 20
    ("max-amount", {}, {}, {"max_amount": 20.0}, "20", Reason.ABOVE_MAX_AMOUNT),
    # the market allows 5x at most: 5,000 notional at 5x = 1,000 margin (the notional stays)
    ("market-max-leverage", {}, {}, {"max_leverage": 5.0}, "50", Reason.CAPPED_LEVERAGE_TIER),
]


@pytest.mark.parametrize(("limits", "acc", "mkt", "amount", "code"),
                         [pytest.param(*c[1:], id=c[0]) for c in LIMIT_CASES])
def test_limits(limits: dict[str, Any], acc: dict[str, Any], mkt: dict[str, Any], amount: str,
                code: Reason | None) -> None:
    d = size(intent(stop_pct=2.0), Account(equity=10_000.0, **acc), market(**mkt),
             policy(sizing={"model": "risk", "risk": 0.01}, limits=limits, leverage=LEV10))
    assert d.accepted, d.reasons
    assert d.amount == amount
    if code is None:
        assert not [r for r in d.reasons if r.startswith("CAPPED")]
    else:
        assert code in d.reasons
    fee = mkt.get("taker", 0.0)
    available = acc.get("available", 10_000.0 - sum(p.margin for p in acc.get("positions", ())))
    assert d.margin + d.notional * fee <= available


def test_available_cap_counts_the_entry_fee_exactly() -> None:
    d = size(intent(stop_pct=2.0), Account(10_000.0, available=300.0), market(taker=0.0005),
             policy(sizing={"model": "risk", "risk": 0.01}, leverage=LEV10))
    limit = [s for s in d.trace if s.bound == "CAPPED_AVAILABLE"]
    assert limit and dict(limit[0].values)["notional"] == pytest.approx(300 / 0.1005)
    assert d.margin == pytest.approx(298.5)
    assert d.margin + d.notional * 0.0005 == pytest.approx(299.9925)


EXCHANGE_CASES = [
    # id, sizing, market kwargs, account kwargs, execution, amount, last reason
    # 50 notional / 100 = 0.5 < min amount 1
    ("below-min-amount", {"model": "fixed_notional", "notional": 50.0}, {"min_amount": 1.0},
     {}, {}, "0", Reason.BELOW_MIN_AMOUNT),
    # 50 < min cost 100
    ("below-min-cost", {"model": "fixed_notional", "notional": 50.0}, {"min_cost": 100.0},
     {}, {}, "0", Reason.BELOW_MIN_COST),
    # 0.05 / 100 = 0.0005 < one 0.001 step
    ("zero-size", {"model": "fixed_notional", "notional": 0.05}, {}, {}, {}, "0",
     Reason.ZERO_SIZE),
    # nothing available at all
    ("insufficient-margin", {"model": "fixed_notional", "notional": 500.0}, {},
     {"available": 0.0}, {}, "0", Reason.INSUFFICIENT_MARGIN),
    # risk 10 (1% of 1,000), stop 2% -> 500 (5); min 6: raising to 600 risks 12 <= 10 x 1.25
    ("raise-ok", {"model": "risk", "risk": 0.01}, {"min_amount": 6.0}, {},
     {"below_minimum": "raise", "raise_tolerance": 0.25}, "6", None),
    # min 7: 700 risks 14 > 12.5 -> skip
    ("raise-breaks-risk", {"model": "risk", "risk": 0.01}, {"min_amount": 7.0}, {},
     {"below_minimum": "raise", "raise_tolerance": 0.25}, "0", Reason.BELOW_MIN_AMOUNT),
    # the policy skips rather than raising
    ("raise-not-allowed", {"model": "risk", "risk": 0.01}, {"min_amount": 6.0}, {},
     {"below_minimum": "skip"}, "0", Reason.BELOW_MIN_AMOUNT),
    # 600 would need 60 margin at 10x, only 50 available -> skip
    ("raise-breaks-available", {"model": "risk", "risk": 0.01}, {"min_amount": 6.0},
     {"available": 50.0}, {"below_minimum": "raise", "raise_tolerance": 0.25}, "0",
     Reason.BELOW_MIN_AMOUNT),
    # min cost 600 (6 units): risk 12 <= 12.5 -> raised
    ("raise-min-cost", {"model": "risk", "risk": 0.01}, {"min_cost": 600.0}, {},
     {"below_minimum": "raise", "raise_tolerance": 0.25}, "6", None),
]


@pytest.mark.parametrize(("sizing", "mkt", "acc", "execution", "amount", "code"),
                         [pytest.param(*c[1:], id=c[0]) for c in EXCHANGE_CASES])
def test_exchange_rules(sizing: dict[str, Any], mkt: dict[str, Any], acc: dict[str, Any],
                        execution: dict[str, Any], amount: str, code: Reason | None) -> None:
    d = size(intent(stop_pct=2.0), Account(equity=1_000.0, **acc), market(**mkt),
             policy(sizing=sizing, execution=execution, leverage=LEV10))
    assert d.amount == amount
    if code is None:
        assert d.accepted
        assert Reason.RAISED_TO_MINIMUM in d.reasons
        assert trace_step(d, "raise_to_minimum")["ok"] is True
    else:
        assert d.status is Status.SKIPPED
        assert d.reasons[-1] is code
        assert Reason.RAISED_TO_MINIMUM not in d.reasons


def test_raise_refused_when_a_cap_would_break() -> None:
    # 500 fits max notional 550, the raise to 600 would not: skip, even though the risk holds
    d = size(intent(stop_pct=2.0), Account(1_000.0), market(min_amount=6.0),
             policy(sizing={"model": "risk", "risk": 0.01}, limits={"max_notional": 550.0},
                    execution={"below_minimum": "raise", "raise_tolerance": 0.25},
                    leverage=LEV10))
    assert not d.accepted
    assert trace_step(d, "raise_to_minimum")["ok"] is False
    assert "cap" in trace_step(d, "raise_to_minimum")["note"]


def test_rounding_is_always_down() -> None:
    # 10 / 0.015 = 666.666... -> 6.666, never 6.667 (which would risk 10.0005 > 10)
    d = size(intent(atr=1.0), Account(1_000.0), market(),
             policy(sizing={"model": "risk", "risk": 0.01}, leverage=LEV10))
    assert d.amount == "6.666"
    assert Reason.ROUNDED_TO_STEP in d.reasons
    assert d.risk <= 10.0


# ---------------------------------------------------------------------------------------------
# Regressions for engine bugs these tests found
# ---------------------------------------------------------------------------------------------
def test_auto_leverage_of_a_margin_model_keeps_the_models_margin() -> None:
    # fixed margin 2 at up to 50x, auto leverage: the lowest leverage whose margin fits the
    # model's 2 (+ entry fee) is 50x -> 100 notional -> 1. It used to fit all 1,000 available,
    # choosing 1x and tying up 100 margin for a "2 USDT margin" policy.
    d = size(intent(), Account(1_000.0), market(taker=0.0005),
             policy(sizing={"model": "fixed_margin", "margin": 2.0},
                    leverage={"mode": "auto", "max": 50}))
    assert d.leverage == 50.0
    assert d.amount == "1"
    assert d.margin == pytest.approx(2.0)


def test_replace_recomputes_the_step_decimal() -> None:
    from dataclasses import replace

    m = replace(market(), amount_step=0.01)
    assert str(m.amount_step_decimal) == "0.01"
    d = size(intent(), Account(1_000.0), m,
             policy(sizing={"model": "fixed_notional", "notional": 123.456}, leverage=LEV10))
    assert d.amount == "1.23"  # 1.23456 floored to 0.01, not printed with the old 0.001 step


@pytest.mark.parametrize(("quantity", "step", "lots"), [
    (0.003, 0.001, 3),  # 2.9999999999999996 lots: an exact multiple stays exact
    (0.1 + 0.2, 0.1, 3),
    (8_562_584.048063919, 1e-06, 8_562_584_048_063),  # 8.6e12 lots: truncate like ccxt
    (68_746.92284495849, 1e-06, 68_746_922_844),
    (1_450_528.4223987455, 1e-04, 14_505_284_223),
])
def test_floor_lots_truncates_like_ccxt(quantity: float, step: float, lots: int) -> None:
    from sizeguard.core.lots import floor_lots

    assert floor_lots(quantity, step) == lots
