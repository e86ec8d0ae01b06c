"""The backtest scales in (``limits.allow_add``): a second entry signal on the open position's
side is an add, sized by ``decide()`` against the held position and merged into it. Worked by
hand on a tiny hourly series.

The market: a linear perpetual TEST/USDT:USDT, step 0.001, no fee, one tier (maintenance rate
0.5%, max 100x). Risk 1% of equity to a 1.5 x ATR stop (ATR 2: stop 3 below the entry), 10x.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sizeguard.backtest.candles import Panel
from sizeguard.backtest.engine import run_backtest
from sizeguard.backtest.results import ledger_frame, metrics
from sizeguard.backtest.signals import Signals
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict
from sizeguard.core.tiers import Tier

H = 3_600_000
MARKET = MarketRules(symbol="TEST/USDT:USDT", kind="swap", linear=True, inverse=False,
                     contract_size=1.0, amount_step=0.001, price_tick=0.1, min_amount=0.001,
                     taker=0.0, maker=0.0, max_leverage=100.0,
                     tiers=(Tier(1, 0.0, math.inf, 0.005, 100.0, 0.0),))
BARS = [(100.0, 100.0, 100.0, 100.0), (100.0, 100.0, 100.0, 100.0),
        (110.0, 110.0, 110.0, 110.0), (110.0, 110.0, 106.0, 106.0), (106.0,) * 4]


def panel() -> Panel:
    a = np.array(BARS)
    return Panel(("TEST",), np.arange(len(BARS), dtype=np.int64) * H, a[:, [0]], a[:, [1]],
                 a[:, [2]], a[:, [3]], a[:, [3]].copy(), H)


def signals() -> Signals:
    n = len(BARS)
    entry = np.zeros((n, 1), np.int8)
    entry[1, 0] = entry[2, 0] = 1  # long at bar 1's open, again at bar 2's
    return Signals(entry, np.zeros((n, 1), np.int8), np.full((n, 1), 2.0),
                   np.full((n, 1), np.nan), np.full((n, 1), np.nan), np.full((n, 1), np.nan),
                   "hand")


def policy(allow_add: bool) -> Policy:
    return policy_from_dict({
        "name": "adds", "sizing": {"model": "risk", "risk": 0.01}, "stop": {"atr_mult": 1.5},
        "leverage": {"value": 10, "max": 10}, "limits": {"allow_add": allow_add}})


def test_a_second_entry_adds_to_the_position() -> None:
    # bar 1, open 100: risk 100 to the stop 97 (3%) -> 3,333.33 -> 33.333
    # bar 2, open 110: equity marked 10,000 + 33.333 x 10 = 10,333.33, risk 103.3333 to the
    # stop 107 (3 / 110). The held part locks in 33.333 x 7 (counted as zero), so the add gets
    # the whole budget: 103.3333 x 110 / 3 = 3,788.888 -> 34.444
    r = run_backtest(panel(), signals(), [MARKET], policy(True))
    (t,) = r.trades
    q1, q2 = 33.333, 34.444
    assert r.adds == 1 and r.decisions == 2 and r.ignored_in_position == 0
    assert t["adds"] == 1 and t["amount"] == "67.777"
    # average entry (3,333.3 + 3,788.84) / 67.777 = 105.082; one stop, the add's: 107
    assert t["entry_price"] == pytest.approx((q1 * 100 + q2 * 110) / (q1 + q2))
    assert t["notional"] == pytest.approx(q1 * 100 + q2 * 110)
    assert t["stop_price"] == pytest.approx(107.0)
    # margin 333.33 + 378.884 at 10x; LP = (N - C) / q / (1 - 0.005)
    n = q1 * 100 + q2 * 110
    assert t["margin"] == pytest.approx(n / 10)
    assert t["liquidation_price"] == pytest.approx((n - n / 10) / (q1 + q2) / 0.995)
    # bar 3's low 106 reaches the stop 107: gross 33.333 x 7 - 34.444 x 3 = 129.999
    assert t["exit_reason"] == "stop" and t["exit_price"] == pytest.approx(107.0)
    assert t["net_pnl"] == pytest.approx(q1 * 7 - q2 * 3)
    assert r.equity[-1] == pytest.approx(10_000 + q1 * 7 - q2 * 3)
    assert metrics(r)["adds"] == 1
    assert ledger_frame(r)["adds"].to_list() == [1]


def test_without_allow_add_the_second_entry_is_ignored() -> None:
    r = run_backtest(panel(), signals(), [MARKET], policy(False))
    (t,) = r.trades
    assert r.adds == 0 and r.ignored_in_position == 1 and t["adds"] == 0
    assert t["amount"] == "33.333"
    # the first stop (97) is never reached: closed at the last close 106, +6 x 33.333
    assert t["exit_reason"] == "end" and t["net_pnl"] == pytest.approx(33.333 * 6)
