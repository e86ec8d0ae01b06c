"""Golden backtests on tiny hand-made candles: every trade, fee, funding payment and
liquidation below is worked out by hand in the comments.

The market: a linear perpetual TEST/USDT:USDT, contract size 1, step 0.001, taker fee 0.1%,
one tier (maintenance rate 0.5%, no maintenance amount, max 100x). Hourly bars from epoch 0.
A signal in ``entry[t]`` acts at the open of bar t (it was known at the close of bar t-1).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from sizeguard.backtest.candles import Panel
from sizeguard.backtest.engine import run_backtest
from sizeguard.backtest.signals import EXIT_LONG, Signals
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, Stop, policy_from_dict
from sizeguard.core.tiers import Tier

H = 3_600_000
MARKET = MarketRules(symbol="TEST/USDT:USDT", kind="swap", linear=True, inverse=False,
                     contract_size=1.0, amount_step=0.001, price_tick=0.1, min_amount=0.001,
                     taker=0.001, maker=0.0005, max_leverage=100.0,
                     tiers=(Tier(1, 0.0, math.inf, 0.005, 100.0, 0.0),))
SPOT = MarketRules(symbol="TEST/USDT", kind="spot", linear=False, inverse=False,
                   contract_size=1.0, amount_step=0.001, price_tick=0.1, taker=0.001)


def panel(bars: list[tuple[float, float, float, float]]) -> Panel:
    a = np.array(bars, dtype=float)
    n = len(bars)
    return Panel(("TEST",), np.arange(n, dtype=np.int64) * H, a[:, [0]], a[:, [1]], a[:, [2]],
                 a[:, [3]], a[:, [3]].copy(), H)


def signals(n: int, entries: dict[int, int], exits: dict[int, int] | None = None, atr: float = 2.0,
            tp_r: float = math.nan) -> Signals:
    entry = np.zeros((n, 1), np.int8)
    ex = np.zeros((n, 1), np.int8)
    for t, s in entries.items():
        entry[t, 0] = s
    for t, s in (exits or {}).items():
        ex[t, 0] = s
    return Signals(entry, ex, np.full((n, 1), atr), np.full((n, 1), np.nan),
                   np.full((n, 1), tp_r), np.full((n, 1), np.nan), "hand")


def policy(leverage: float = 10, guard: str = "off", **sizing: Any) -> Policy:
    return policy_from_dict({
        "name": f"{leverage:g}x", "sizing": sizing or {"model": "fixed_notional", "notional": 1000.0},
        "stop": {"atr_mult": 1.5}, "leverage": {"value": leverage, "max": 100},
        "liquidation": {"guard": guard}})


FLAT = (100.0, 100.0, 100.0, 100.0)


def test_long_take_profit() -> None:
    # Entry at bar 1's open, 100: 1,000 notional -> amount 10, margin 100 at 10x, fee 1.00.
    # Stop 100 - 1.5 x 2 = 97; take-profit 2R = 106. Bar 2's high 107 reaches 106.
    # Exit fee 10 x 106 x 0.1% = 1.06; gross 10 x 6 = 60; net 60 - 1 - 1.06 = 57.94.
    p = panel([FLAT, (100, 101, 99, 100.5), (101, 107, 100, 106), (106, 106, 106, 106)])
    r = run_backtest(p, signals(4, {1: 1}, tp_r=2.0), [MARKET], policy(), record=True)
    (t,) = r.trades
    assert t["amount"] == "10" and t["margin"] == pytest.approx(100.0)
    assert t["stop_price"] == pytest.approx(97.0) and t["take_profit"] == pytest.approx(106.0)
    assert t["exit_reason"] == "take_profit" and t["exit_price"] == pytest.approx(106.0)
    assert t["entry_fee"] == pytest.approx(1.0) and t["exit_fee"] == pytest.approx(1.06)
    assert t["net_pnl"] == pytest.approx(57.94)
    assert r.equity[-1] == pytest.approx(10_057.94)
    # marked at bar 1's close: 10,000 - 1 (fee) + 10 x 0.5 = 10,004
    assert r.equity[1] == pytest.approx(10_004.0)
    # the liquidation price the loop computed (core kernel, numba) is the decision's
    # 100 x (1 - 0.1) / (1 - 0.005) = 90.4523
    assert t["engine_liquidation_price"] == pytest.approx(90.0 / 0.995)
    assert t["liquidation_price"] == pytest.approx(t["engine_liquidation_price"], rel=1e-12)


def test_short_stop_gap_fills_at_the_open() -> None:
    # Short at 100, stop 103. Bar 2 opens at 104, above the stop: filled at 104, not 103.
    # gross -10 x 4 = -40; fees 1.00 + 10 x 104 x 0.1% = 1.04; net -42.04.
    p = panel([FLAT, (100, 101, 99, 100), (104, 105, 103.5, 104), (104, 104, 104, 104)])
    r = run_backtest(p, signals(4, {1: -1}), [MARKET], policy())
    (t,) = r.trades
    assert t["side"] == "short" and t["stop_price"] == pytest.approx(103.0)
    assert t["exit_reason"] == "stop" and t["exit_price"] == pytest.approx(104.0)
    assert t["net_pnl"] == pytest.approx(-42.04)
    assert r.equity[-1] == pytest.approx(10_000 - 42.04)


def test_stop_and_take_profit_in_one_bar_take_the_stop() -> None:
    # Long at 100, stop 97, take-profit 106; bar 2 spans 96..107: both could fill. Worst: stop.
    p = panel([FLAT, FLAT, (100, 107, 96, 100), FLAT])
    r = run_backtest(p, signals(4, {1: 1}, tp_r=2.0), [MARKET], policy())
    assert r.trades[0]["exit_reason"] == "stop"
    # gross -30; fees 1.00 + 0.97; net -31.97
    assert r.trades[0]["net_pnl"] == pytest.approx(-31.97)


def test_liquidation_before_an_unguarded_stop() -> None:
    # 50x, guard off: margin 20; liquidation 100 x (1 - 0.02) / 0.995 = 98.4925, above the
    # 97 stop (the stop would never fire). Bar 2's low 96 crosses both: liquidated.
    # Charged: the whole margin 20 (no exit fee), plus the entry fee 1 -> net -21.
    p = panel([FLAT, FLAT, (100, 100, 96, 97), FLAT])
    r = run_backtest(p, signals(4, {1: 1}), [MARKET], policy(leverage=50))
    (t,) = r.trades
    assert t["leverage"] == 50 and t["liquidation_price"] == pytest.approx(98.0 / 0.995)
    assert t["exit_reason"] == "liquidation" and t["exit_price"] == pytest.approx(98.0 / 0.995)
    assert t["exit_fee"] == 0.0 and t["net_pnl"] == pytest.approx(-21.0)
    assert r.liquidations == 1 and r.equity[-1] == pytest.approx(9_979.0)


# The intrabar rule: a long at 100, 20x, guard off: margin 50, stop 100 - 1.5 x 2 = 97,
# liquidation 100 x (1 - 0.05) / (1 - 0.005) = 95.477, beyond the stop. Whatever path the price
# takes inside a bar, it crosses 97 before 95.477, so the stop fills first unless the bar
# *opens* beyond it. Both rules agree on everything but stop-vs-take-profit order.
@pytest.mark.parametrize("intrabar", ["worst", "ordered"])
def test_bar_spanning_stop_and_liquidation_without_gap_fills_the_stop(intrabar: str) -> None:
    # Bar 2 opens at 100 and falls to 95 (below both 97 and 95.477): the stop at 97 fills.
    # gross 10 x (97 - 100) = -30; fees 1.00 in + 10 x 97 x 0.1% = 0.97 out; net -31.97.
    p = panel([FLAT, FLAT, (100, 100, 95, 96), FLAT])
    r = run_backtest(p, signals(4, {1: 1}), [MARKET], policy(leverage=20), intrabar=intrabar)
    (t,) = r.trades
    assert t["liquidation_price"] == pytest.approx(95.0 / 0.995)
    assert t["exit_reason"] == "stop" and t["exit_price"] == pytest.approx(97.0)
    assert t["net_pnl"] == pytest.approx(-31.97) and r.liquidations == 0


@pytest.mark.parametrize("intrabar", ["worst", "ordered"])
def test_gap_through_the_stop_only_fills_at_the_open(intrabar: str) -> None:
    # Bar 2 opens at 96, below the stop 97 but above liquidation 95.477: the stop order fills at
    # the open; the low of 95 comes after the position is closed. gross 10 x (96 - 100) = -40;
    # fees 1.00 + 10 x 96 x 0.1% = 0.96; net -41.96.
    p = panel([FLAT, FLAT, (96, 97, 95, 96), FLAT])
    r = run_backtest(p, signals(4, {1: 1}), [MARKET], policy(leverage=20), intrabar=intrabar)
    (t,) = r.trades
    assert t["exit_reason"] == "stop" and t["exit_price"] == pytest.approx(96.0)
    assert t["net_pnl"] == pytest.approx(-41.96) and r.liquidations == 0


@pytest.mark.parametrize("intrabar", ["worst", "ordered"])
def test_gap_through_stop_and_liquidation_liquidates(intrabar: str) -> None:
    # Bar 2 opens at 95, beyond the stop 97 and liquidation 95.477: the exchange liquidates
    # before the stop can fill. The margin 50 is lost whole (no exit fee) + entry fee 1 -> -51.
    p = panel([FLAT, FLAT, (95, 96, 94, 95), FLAT])
    r = run_backtest(p, signals(4, {1: 1}), [MARKET], policy(leverage=20), intrabar=intrabar)
    (t,) = r.trades
    assert t["exit_reason"] == "liquidation" and t["exit_price"] == pytest.approx(95.0 / 0.995)
    assert t["exit_fee"] == 0.0 and t["net_pnl"] == pytest.approx(-51.0)
    assert r.liquidations == 1


def test_short_gap_through_stop_and_liquidation_liquidates() -> None:
    # The mirror: short at 100, 20x: stop 103, liquidation 100 x 1.05 / 1.005 = 104.478.
    # Bar 2 opens at 105 (beyond both): liquidated, -50 margin - 1 fee = -51.
    p = panel([FLAT, FLAT, (105, 106, 104, 105), FLAT])
    r = run_backtest(p, signals(4, {1: -1}), [MARKET], policy(leverage=20))
    (t,) = r.trades
    assert t["liquidation_price"] == pytest.approx(105.0 / 1.005)
    assert t["exit_reason"] == "liquidation" and t["net_pnl"] == pytest.approx(-51.0)


@pytest.mark.parametrize("intrabar", ["worst", "ordered"])
def test_no_stop_liquidates_when_the_range_reaches_liquidation(intrabar: str) -> None:
    # No ATR and no default stop: the position has no stop, so a low of 95 <= 95.477 is a
    # liquidation: -50 margin - 1 entry fee = -51.
    p = panel([FLAT, FLAT, (100, 100, 95, 96), FLAT])
    r = run_backtest(p, signals(4, {1: 1}, atr=math.nan), [MARKET], policy(leverage=20),
                     intrabar=intrabar)
    (t,) = r.trades
    assert t["stop_price"] is None
    assert t["exit_reason"] == "liquidation" and t["net_pnl"] == pytest.approx(-51.0)


@pytest.mark.parametrize(("intrabar", "reason", "net"), [
    ("worst", "stop", -31.97),  # -30 at the stop 97, fees 1 + 0.97
    ("ordered", "take_profit", 57.94),  # +60 at 106, fees 1 + 1.06
])
def test_stop_or_take_profit_by_rule(intrabar: str, reason: str, net: float) -> None:
    # 10x long at 100, stop 97, take-profit 106. Bar 2 opens at 103 and spans 96..107: both
    # could fill. worst: the stop. ordered: the path goes open -> nearer extreme (107 is 4
    # away, 96 is 7) -> farther, so the take-profit fills first.
    p = panel([FLAT, FLAT, (103, 107, 96, 100), FLAT])
    r = run_backtest(p, signals(4, {1: 1}, tp_r=2.0), [MARKET], policy(), intrabar=intrabar)
    assert r.trades[0]["exit_reason"] == reason
    assert r.trades[0]["net_pnl"] == pytest.approx(net)


@pytest.mark.parametrize("intrabar", ["worst", "ordered"])
def test_gap_through_the_take_profit_fills_it_first(intrabar: str) -> None:
    # 10x long at 100, stop 97, take-profit 106. Bar 2 opens at 107, beyond the take-profit,
    # then falls to 96: the take-profit is reached at the first price of the bar, before the
    # stop on every path, so both rules take it, at its price (never better): +57.94.
    p = panel([FLAT, FLAT, (107, 107, 96, 100), FLAT])
    r = run_backtest(p, signals(4, {1: 1}, tp_r=2.0), [MARKET], policy(), intrabar=intrabar)
    (t,) = r.trades
    assert t["exit_reason"] == "take_profit" and t["exit_price"] == pytest.approx(106.0)
    assert t["net_pnl"] == pytest.approx(57.94)


def test_guard_lowers_leverage_and_the_loop_uses_the_decision() -> None:
    # 50x with the guard on (buffer 25%): the 3% stop needs liquidation >= 3.75% away, so
    # decide() lowers leverage to floor(1 / (1 - 0.9625 x 0.995)) = floor(23.8) = 23.
    p = panel([FLAT, FLAT, (100, 100, 96, 97), FLAT])
    r = run_backtest(p, signals(4, {1: 1}), [MARKET], policy(leverage=50, guard="lower_leverage"),
                     intrabar="ordered")
    (t,) = r.trades
    assert t["leverage"] == 23
    assert "LEVERAGE_LOWERED_FOR_LIQUIDATION" in t["reasons"]
    assert t["exit_reason"] == "stop" and t["net_pnl"] == pytest.approx(-31.97)


def test_funding_is_charged_and_moves_liquidation() -> None:
    # Long 10 at 100 from bar 1; flat prices; funding 0.01% per 8h. Bar 7 (07:00-08:00)
    # contains the 08:00 funding time: pay 10 x 100 x 0.0001 = 0.10. Exit signal at bar 9's
    # open: fees 1 + 1, funding 0.10, net -2.10.
    p = panel([FLAT] * 10)
    r = run_backtest(p, signals(10, {1: 1}, {9: EXIT_LONG}), [MARKET], policy(),
                     funding_rate=0.0001)
    (t,) = r.trades
    assert t["funding"] == pytest.approx(0.10) and t["exit_reason"] == "signal"
    assert t["net_pnl"] == pytest.approx(-2.10)
    assert r.equity[6] == pytest.approx(9_999.0) and r.equity[7] == pytest.approx(9_998.9)


def test_exit_then_reverse_and_end_of_data() -> None:
    # Long at bar 1 (100), exit + short at bar 3's open (110): long gross +100, fees 1 + 1.10
    # -> +97.90. Short 1,000 / 110 = 9.090 (floored to the 0.001 step), closed at the last
    # close 105 when the data end: gross 9.09 x 5 = 45.45, fees 9.09 x 110 x 0.001 = 0.9999 and
    # 9.09 x 105 x 0.001 = 0.95445.
    p = panel([FLAT, FLAT, (110, 110, 110, 110), (110, 110, 105, 105), (105, 105, 105, 105)])
    r = run_backtest(p, signals(5, {1: 1, 3: -1}, {3: EXIT_LONG}), [MARKET], policy())
    long_, short = r.trades
    assert long_["exit_reason"] == "signal" and long_["net_pnl"] == pytest.approx(97.9)
    assert short["amount"] == "9.09" and short["exit_reason"] == "end"
    assert short["net_pnl"] == pytest.approx(45.45 - 0.9999 - 0.95445)
    assert r.equity[-1] == pytest.approx(10_000 + 97.9 + 45.45 - 0.9999 - 0.95445)


def test_entries_while_in_position_are_ignored_and_spot_cannot_short() -> None:
    p = panel([FLAT] * 5)
    r = run_backtest(p, signals(5, {1: 1, 2: 1, 3: 1}), [MARKET], policy())
    assert len(r.trades) == 1 and r.ignored_in_position == 2 and r.decisions == 1
    r2 = run_backtest(p, signals(5, {1: -1}), [SPOT], policy(leverage=1))
    assert not r2.trades and r2.skips["SPOT_NO_SHORT"] == 1


def test_losing_streak_halves_the_risk() -> None:
    # Risk model: 1% of equity to a 3% stop plus fees 0.1% at entry and 0.1% on the notional at
    # the stop (97% of entry's): notional = E x 0.01 / (0.03 + 0.001 + 0.00097) = E x 0.01 /
    # 0.03197. Three stopped-out longs, then the fourth entry sees losing_streak 3 -> x 0.5.
    bars = [FLAT]
    entries = {}
    for _ in range(4):
        entries[len(bars)] = 1
        bars += [FLAT, (100, 100, 96, 97), FLAT]  # each trade stops out at 97
    p = panel(bars)
    pol = policy_from_dict({"name": "risk", "sizing": {"model": "risk", "risk": 0.01},
                            "stop": {"atr_mult": 1.5}, "adjust": {"losing_streak": [[3, 0.5]]},
                            "leverage": {"value": 10, "max": 10}})
    r = run_backtest(p, signals(len(bars), entries), [MARKET], pol, record=True)
    assert [rec.account.losing_streak for rec in r.records] == [0, 1, 2, 3]
    for rec in r.records:
        e = rec.account.equity
        mult = 0.5 if rec.account.losing_streak >= 3 else 1.0
        lots = math.floor(e * 0.01 * mult / 0.03197 / 100 / 0.001 + 1e-9)
        assert rec.decision.lots == lots
    # the first: 10,000 x 0.01 / 0.03197 = 3,127.93 notional = 31.279 units (floored)
    assert r.trades[0]["amount"] == "31.279"
    # its loss: 31.279 x 3 + entry fee 3.1279 + exit fee 31.279 x 97 x 0.001 = 3.034063
    # = 93.837 + 3.1279 + 3.034063 = 99.998963, the budget 100 to within the lot rounding
    assert r.trades[0]["net_pnl"] == pytest.approx(-99.998963)
    assert r.records[1].account.equity == pytest.approx(10_000 - 99.998963)


def test_daily_loss_halt_is_a_skip() -> None:
    # Daily loss limit 0.5%: the first trade loses ~1% the same day, so the next entry that
    # day is skipped HALTED_DAILY_LOSS.
    bars = [FLAT, FLAT, (100, 100, 96, 97), FLAT, FLAT]
    pol = policy_from_dict({"name": "daily", "sizing": {"model": "risk", "risk": 0.01},
                            "stop": {"atr_mult": 1.5}, "limits": {"daily_loss": 0.005},
                            "leverage": {"value": 10, "max": 10}})
    r = run_backtest(panel(bars), signals(5, {1: 1, 4: 1}), [MARKET], pol)
    assert len(r.trades) == 1 and dict(r.skips) == {"HALTED_DAILY_LOSS": 1}


def test_progress_chunks_change_nothing() -> None:
    # with a progress callback the loop stops every bar (tiny data): same trades, same equity
    p = panel([FLAT, FLAT, (110, 110, 110, 110), (110, 110, 105, 105), (105, 105, 96, 97), FLAT])
    sig = signals(6, {1: 1, 3: -1, 5: 1}, {3: EXIT_LONG})
    seen: list[tuple[int, int]] = []
    a = run_backtest(p, sig, [MARKET], policy(leverage=20))
    b = run_backtest(p, sig, [MARKET], policy(leverage=20), progress=lambda d, n: seen.append((d, n)))
    assert a.trades == b.trades and np.array_equal(a.equity, b.equity)
    assert seen[-1] == (6, 6) and len(seen) >= 6


def test_spot_pays_no_funding() -> None:
    p = panel([FLAT] * 10)
    r = run_backtest(p, signals(10, {1: 1}, {9: EXIT_LONG}), [SPOT], policy(leverage=1),
                     funding_rate=0.0001)
    assert r.trades[0]["funding"] == 0.0 and r.trades[0]["net_pnl"] == pytest.approx(-2.0)


def test_invalid_entries_are_counted_not_fatal() -> None:
    # an ATR of 80 puts a 1.5 x ATR long stop below zero: decide() refuses the intent as invalid
    p = panel([FLAT] * 4)
    r = run_backtest(p, signals(4, {1: 1}, atr=80.0), [MARKET], policy())
    assert not r.trades and r.skips["INVALID_INPUT"] == 1
    assert "stop" in r.warnings[0] and r.equity[-1] == 10_000.0


def test_signal_fields_become_the_intents_optional_fields() -> None:
    # what each entry's Intent carries: confidence clamped to [0, 1] (NaN: none), an ATR and a
    # multiple only when > 0 (else none: the policy's multiple, or no ATR stop at all)
    n = 12
    entries = {1: 1, 4: 1, 7: 1, 10: 1}
    sig = signals(n, entries, exits={3: 1, 6: 1, 9: 1})
    sig.confidence[[1, 4, 7, 10], 0] = [-0.5, 0.3, 1.7, math.nan]
    sig.atr[[1, 4, 7, 10], 0] = [2.0, 0.0, 2.0, math.nan]
    sig.atr_mult[[1, 4, 7, 10], 0] = [math.nan, 2.0, -1.0, 3.0]
    pol = replace(policy(), stop=Stop(atr_mult=1.5, default_pct=2.0))
    r = run_backtest(panel([FLAT] * n), sig, [MARKET], pol, record=True)
    assert r.decisions == 4
    got = [(x.intent.confidence, x.intent.atr, x.intent.atr_mult) for x in r.records]
    assert got == [(0.0, 2.0, None), (0.3, None, 2.0), (1.0, 2.0, None), (None, None, 3.0)]
    assert [x.intent.time for x in r.records] == [t * H / 1000 for t in entries]
