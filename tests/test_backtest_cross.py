"""Cross margin in the backtest: every contract position shares the wallet, and the account is
liquidated as a whole. Golden cases worked by hand, and properties on random candles.

Two linear perpetuals A/USDT:USDT and B/USDT:USDT, contract size 1, taker fee 0.1%, one tier
(maintenance rate 0.5%, no maintenance amount). Hourly bars from epoch 0; a signal in
``entry[t]`` acts at the open of bar t. Wallet 1,000 USDT; each entry a fixed 5,000 notional at
20x (margin 250, so the two fit the margin budget; under cross the leverage sets the margin, not
the liquidation), no stop, the liquidation guard off.

Binance's cross formula (core.liquidation): a long liquidates at
``LP = EP (1 - C / N) / (1 - mmr)``, where ``C`` is the wallet less the other positions'
maintenance margin plus their unrealised PnL.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sizeguard.backtest.candles import Panel
from sizeguard.backtest.engine import BacktestResult, run_backtest
from sizeguard.backtest.signals import EXIT_LONG, Signals
from sizeguard.core import liquidation as core_liq
from sizeguard.core import position as core_pos
from sizeguard.core import tiers as core_tiers
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict
from sizeguard.core.tiers import Tier
from sizeguard.errors import InvalidInput

H = 3_600_000
MMR = 0.005
FEE = 0.001


def market(sym: str) -> MarketRules:
    return MarketRules(symbol=f"{sym}/USDT:USDT", kind="swap", linear=True, inverse=False,
                       contract_size=1.0, amount_step=0.001, price_tick=0.0001, min_amount=0.001,
                       taker=FEE, maker=0.0005, max_leverage=100.0,
                       tiers=(Tier(1, 0.0, math.inf, MMR, 100.0, 0.0),))


A, B = market("A"), market("B")
# coin-margined: one contract 1 USD face, both settled in X (a perpetual and a dated future)
XA = MarketRules(symbol="X/USD:X", kind="swap", linear=False, inverse=True, contract_size=1.0,
                 amount_step=1.0, price_tick=0.0001, min_amount=1.0, taker=FEE, maker=0.0005,
                 max_leverage=100.0, base="X", quote="USD", settle="X", exchange="binancecoinm",
                 tiers=(Tier(1, 0.0, math.inf, MMR, 100.0, 0.0),))
XB = replace(XA, symbol="X/USD:X-261225", kind="future")
FLAT = (100.0, 100.0, 100.0, 100.0)
Bar = tuple[float, float, float, float]


def panel(a: list[Bar], b: list[Bar]) -> Panel:
    x, y = np.array(a, dtype=float), np.array(b, dtype=float)
    n = len(a)
    cols = [np.stack([x[:, i], y[:, i]], axis=1) for i in range(4)]
    return Panel(("A", "B"), np.arange(n, dtype=np.int64) * H, cols[0], cols[1], cols[2],
                 cols[3], cols[3].copy(), H)


def signals(n: int, entries: dict[tuple[int, int], int],
            exits: dict[tuple[int, int], int] | None = None, atr: float = math.nan) -> Signals:
    entry = np.zeros((n, 2), np.int8)
    ex = np.zeros((n, 2), np.int8)
    for (t, j), s in entries.items():
        entry[t, j] = s
    for (t, j), s in (exits or {}).items():
        ex[t, j] = s
    return Signals(entry, ex, np.full((n, 2), atr), np.full((n, 2), np.nan),
                   np.full((n, 2), np.nan), np.full((n, 2), np.nan), "hand")


def policy(mode: str, notional: float = 5000.0, **extra: Any) -> Policy:
    return policy_from_dict({
        "name": mode, "sizing": {"model": "fixed_notional", "notional": notional},
        "stop": {"atr_mult": 1.5}, "leverage": {"value": 20, "max": 100, "margin_mode": mode},
        "liquidation": {"guard": "off"}, **extra})


def run(mode: str, a: list[Bar], b: list[Bar], **kw: Any) -> BacktestResult:
    sig = kw.pop("sig", None) or signals(len(a), {(1, 0): 1, (1, 1): 1})
    return run_backtest(panel(a, b), sig, [A, B], policy(mode), equity=1000.0, **kw)


# Both long at bar 1's open, 100: 50 contracts each, notional 5,000, margin 250, entry fee 5.
# Wallet after both fees: 1,000 - 2 x 5 = 990. Maintenance of each at 100: 5,000 x 0.5% = 25.
#
# The decisions (decide() sees the account at the open, before the entry's own fee):
#   A first: C = 1,000 -> LP = 100 (1 - 1,000/5,000) / 0.995 = 80.4020
#   B next:  C = 995 (A's fee paid) - 25 (A's maintenance) = 970 -> 100 (1 - 0.194)/0.995 = 81.0050
# In the loop, at bar 1 (flat): C_A = 990 - 25 = 965 -> LP_A = 100 x 0.807 / 0.995 = 81.1055.
#
# Bar 2: A's low 80, B's low 99. The account is judged with every other position at its bar's
# extreme against it. B at 99: maintenance 4,950 x 0.5% = 24.75, unrealised -50, so B takes
# 74.75 from the wallet; C_A = 990 - 74.75 = 915.25 -> LP_A = 100 (1 - 0.18305)/0.995 = 82.1055.
# A's low 80 reaches it: the account is liquidated, both positions close, the wallet is lost.
# B's row: its PnL less its maintenance at 99 = -50 - 24.75 = -74.75; A's the rest:
# -990 + 74.75 = -915.25 (= A's PnL at 82.1055, -894.72, less its maintenance there, 20.53).
# Nets: A -915.25 - 5 = -920.25; B -74.75 - 5 = -79.75; equity 1,000 - 1,000 = 0.
LP_A_BAR1 = 100 * (1 - 965 / 5000) / (1 - MMR)
LP_A_BAR2 = 100 * (1 - 915.25 / 5000) / (1 - MMR)
BARS_A = [FLAT, FLAT, (100, 100, 80, 85), FLAT]
BARS_B = [FLAT, FLAT, (100, 100, 99, 99.5), FLAT]


def test_one_positions_loss_liquidates_both_under_cross() -> None:
    r = run("cross", BARS_A, BARS_B)
    a, b = r.trades
    assert (a["symbol"], b["symbol"]) == ("A/USDT:USDT", "B/USDT:USDT")
    assert a["notional"] == b["notional"] == pytest.approx(5000.0)
    assert a["liquidation_price"] == pytest.approx(100 * 0.8 / 0.995)
    assert b["liquidation_price"] == pytest.approx(100 * (1 - 970 / 5000) / 0.995)
    assert r.equity[1] == pytest.approx(990.0)
    assert a["exit_reason"] == b["exit_reason"] == "liquidation"
    assert a["exit_bar"] == b["exit_bar"] == 2
    assert pytest.approx(82.10553, abs=1e-5) == LP_A_BAR2
    assert a["exit_price"] == pytest.approx(LP_A_BAR2) and b["exit_price"] == pytest.approx(99.0)
    assert b["gross_pnl"] == pytest.approx(-74.75) and a["gross_pnl"] == pytest.approx(-915.25)
    pnl_at_lp = 5000 * (LP_A_BAR2 / 100 - 1)
    assert a["gross_pnl"] == pytest.approx(pnl_at_lp - 50 * LP_A_BAR2 * MMR)
    assert a["exit_fee"] == b["exit_fee"] == 0.0
    assert a["net_pnl"] == pytest.approx(-920.25) and b["net_pnl"] == pytest.approx(-79.75)
    assert r.liquidations == 2
    assert r.equity[2] == pytest.approx(0.0, abs=1e-9) and r.equity[-1] == pytest.approx(0.0,
                                                                                        abs=1e-9)


def test_the_same_candles_isolated_liquidate_a_alone() -> None:
    # Isolated at 20x: A's collateral is its margin, 250: LP = 100 (1 - 0.05)/0.995 = 95.4774.
    # Bar 2's low 80 reaches it: A loses its 250; B (LP 95.4774 too) sees 99 and survives, and
    # closes at the last close, 100: exit fee 5, net -10. Equity 1,000 - 10 - 250 - 5 = 735.
    r = run("isolated", BARS_A, BARS_B)
    a, b = r.trades
    assert a["exit_reason"] == "liquidation" and a["exit_bar"] == 2
    assert a["exit_price"] == pytest.approx(95.0 / 0.995) and a["gross_pnl"] == pytest.approx(-250)
    assert b["exit_reason"] == "end" and b["net_pnl"] == pytest.approx(-10.0)
    assert r.liquidations == 1
    assert r.equity[-1] == pytest.approx(735.0)


def test_cross_survives_a_low_just_above_the_accounts_price() -> None:
    # A's low 82.2 stays above 82.1055 (B at 99): nothing is liquidated; isolated, A would be.
    # At the end both close at 100: each net -5 - 5 = -10; equity 980.
    bars_a = [FLAT, FLAT, (100, 100, 82.2, 85), FLAT]
    r = run("cross", bars_a, BARS_B)
    assert [t["exit_reason"] for t in r.trades] == ["end", "end"]
    assert r.liquidations == 0 and r.equity[-1] == pytest.approx(980.0)
    # at bar 2's close: 990 + 50 x (85 - 100) + 50 x (99.5 - 100) = 990 - 750 - 25 = 215
    assert r.equity[2] == pytest.approx(215.0)
    assert run("isolated", bars_a, BARS_B).liquidations == 1


def test_a_gap_past_the_account_comes_before_the_exit_order() -> None:
    # Bar 2 opens A at 70 with an exit signal for A. Judged at the opens (B at 100): C_A = 965,
    # LP_A = 81.1055 > 70: the account was liquidated in the gap, before the order could fill
    # at 70 (which would realise -1,500 from a 990 wallet). B's row at its open: -25; A's the
    # rest, -965. Equity 0, never below.
    bars_a = [FLAT, FLAT, (70, 75, 70, 72), FLAT]
    sig = signals(4, {(1, 0): 1, (1, 1): 1}, exits={(2, 0): EXIT_LONG})
    r = run("cross", bars_a, [FLAT] * 4, sig=sig)
    a, b = r.trades
    assert a["exit_reason"] == b["exit_reason"] == "liquidation"
    assert a["exit_price"] == pytest.approx(LP_A_BAR1) and b["exit_price"] == pytest.approx(100)
    assert b["gross_pnl"] == pytest.approx(-25.0) and a["gross_pnl"] == pytest.approx(-965.0)
    assert float(np.min(r.equity)) == pytest.approx(0.0, abs=1e-9)


def test_isolated_gap_past_liquidation_comes_before_the_exit_order() -> None:
    # Regression: a signal exit at an open beyond the liquidation price filled there, losing
    # 50 x 30 = 1,500 from a position backed by 250. It is liquidated in the gap instead, at
    # 95.4774, losing its collateral.
    bars_a = [FLAT, FLAT, (70, 75, 70, 72), FLAT]
    sig = signals(4, {(1, 0): 1}, exits={(2, 0): EXIT_LONG})
    r = run("isolated", bars_a, [FLAT] * 4, sig=sig)
    (a,) = r.trades
    assert a["exit_reason"] == "liquidation" and a["exit_price"] == pytest.approx(95.0 / 0.995)
    assert a["gross_pnl"] == pytest.approx(-250.0)
    assert r.equity[-1] == pytest.approx(1000 - 5 - 250)


def test_cross_with_spot_markets_is_refused_clearly() -> None:
    spot = MarketRules(symbol="B/USDT", kind="spot", linear=False, inverse=False,
                       contract_size=1.0, amount_step=0.001, price_tick=0.01, taker=FEE)
    with pytest.raises(InvalidInput, match=r"B/USDT.*cross-margin"):
        run_backtest(panel([FLAT] * 3, [FLAT] * 3), signals(3, {}), [A, spot], policy("cross"))


# -- properties ----------------------------------------------------------------------------

def _bars(draw: Any, n: int) -> list[Bar]:
    out, close = [], 100.0
    for _ in range(n):
        o = close * (1 + draw(st.floats(-0.08, 0.08)))
        c = o * (1 + draw(st.floats(-0.12, 0.12)))
        h = max(o, c) * (1 + draw(st.floats(0, 0.05)))
        low = min(o, c) * (1 - draw(st.floats(0, 0.05)))
        out.append((o, h, low, c))
        close = c
    return out


@st.composite
def scenarios(draw: Any) -> tuple[list[Bar], list[Bar], Signals, float]:
    n = draw(st.integers(4, 14))
    a, b = _bars(draw, n), _bars(draw, n)
    entries = {(t, j): draw(st.sampled_from([1, -1])) for t in range(1, n) for j in (0, 1)
               if draw(st.integers(0, 3)) == 0}
    exits = {(t, j): draw(st.sampled_from([1, 2, 3])) for t in range(1, n) for j in (0, 1)
             if draw(st.integers(0, 3)) == 0}
    sig = signals(n, entries, exits, draw(st.sampled_from([math.nan, 2.0, 6.0])))
    if draw(st.booleans()):
        sig.tp_r[:] = 2.0
    return a, b, sig, draw(st.sampled_from([2000.0, 5000.0, 9000.0]))


def _closed_at_open(tr: dict[str, Any], p: Panel | None, markets: tuple[str, ...], t: int
                    ) -> bool:
    """Whether trade ``tr`` closed at bar ``t``'s open: a signal exit, or a stop or
    take-profit the bar opened at or beyond (it fills at the open, before the bar's extremes)."""
    if tr["exit_bar"] != t:
        return False
    if tr["exit_reason"] == "signal":
        return True
    if p is None or tr["exit_reason"] not in ("stop", "take_profit"):
        return False
    o = float(p.open[t, markets.index(tr["symbol"])])
    if tr["exit_reason"] == "stop":
        return _beyond(tr, o, tr["stop_price"])
    return not _beyond(tr, o, tr["take_profit"]) or o == tr["take_profit"]


def _cash_flows(r: BacktestResult, t: int, p: Panel | None = None
                ) -> tuple[float, list[dict[str, Any]]]:
    """The wallet at bar t's intrabar phase and the positions open through it, rebuilt from the
    ledger (no funding): the start, every entry fee up to bar t, every trade closed before bar t
    and every one closed at bar t's open (signal exits; with the panel ``p``, stops and
    take-profits the bar opened beyond too)."""
    cash = r.initial_equity
    open_ = []
    for tr in r.trades:
        if tr["entry_bar"] <= t:
            cash -= tr["entry_fee"]
        if tr["entry_bar"] <= t and (tr["exit_bar"] < t or _closed_at_open(tr, p, r.markets, t)):
            cash += tr["gross_pnl"] - tr["exit_fee"]
        elif tr["entry_bar"] <= t <= tr["exit_bar"]:
            open_.append(tr)
    return cash, open_


def _short(tr: dict[str, Any], w: float, inverse: bool) -> float:
    """What a position takes from the cross wallet at price ``w``: its maintenance margin less
    its unrealised PnL, in the settle currency."""
    value = tr["notional"] / w if inverse else tr["notional"] / tr["entry_price"] * w
    return core_tiers.maintenance_margin(value, MMR, 0.0) - core_pos.settle_of(
        core_pos.pnl(tr["side"] == "long", tr["notional"], tr["entry_price"], w), w, inverse)


def _liquidation_prices(r: BacktestResult, p: Panel, t: int, inverse: bool) -> dict[int, float]:
    """Each position open through bar t's intrabar phase: its cross liquidation price, from the
    account rebuilt from the ledger (core kernel, Binance's formula), every other position at
    its bar's extreme against it. Money in the settle currency (``inverse``: the coin, the
    notional's coin value and the PnL at the price; the kernel takes the collateral in quote
    at entry)."""
    cash, open_ = _cash_flows(r, t, p)
    short: dict[int, float] = {}
    for tr in open_:
        j = r.markets.index(tr["symbol"])
        w = float(p.low[t, j] if tr["side"] == "long" else p.high[t, j])
        short[tr["trade"]] = _short(tr, w, inverse)
    total = sum(short.values())
    return {tr["trade"]: core_liq.venue_liquidation_price(
        core_liq.BINANCE, tr["side"] == "long", inverse, tr["entry_price"], tr["notional"],
        core_pos.quote_of(cash - (total - short[tr["trade"]]), tr["entry_price"], inverse),
        MMR, 0.0, FEE) for tr in open_}


def _beyond(tr: dict[str, Any], price: float, level: float) -> bool:
    """``price`` at or beyond ``level`` on the position's losing side."""
    return (price <= level) if tr["side"] == "long" else (price >= level)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.booleans())
def test_cross_account_properties(sc: tuple[list[Bar], list[Bar], Signals, float],
                                  inverse: bool) -> None:
    """Under cross margin, on random candles and signals:

    1. no position closes by its stop, take-profit or the data end at a price at or beyond its
       liquidation price computed from the account at that bar (rebuilt from the ledger, the
       other positions at their bar's extreme against them), and no position survives a bar
       whose range reached that price unless its stop, inside it, filled first;
    2. a liquidation closes every position open through that bar, at that bar, and only when
       one of them reached its price (as in 1); the rows add up to minus the wallet (the
       account ends at zero), and
       all but the one that reached it show their PnL less their maintenance margin at their
       exit price;
    3. equity at every close is >= 0 less the exit fees charged in that bar: the wallet is lost
       at most whole (a stop's exit fee may exceed the maintenance margin it frees).

    Linear USDT markets with 1,000 USDT, or two coin-margined markets settled in X with 10 X
    (about 1,000 USD at the prices of 100 the candles start at)."""
    a, b, sig, notional = sc
    p = panel(a, b)
    markets, wallet = ([XA, XB], 10.0) if inverse else ([A, B], 1000.0)
    r = run_backtest(p, sig, markets, policy("cross", notional), equity=wallet)
    by_bar: dict[int, list[dict[str, Any]]] = {}
    for tr in r.trades:
        by_bar.setdefault(tr["exit_bar"], []).append(tr)
    for t in range(len(a)):
        closed = by_bar.get(t, [])
        _, open_ = _cash_flows(r, t, p)
        lps = _liquidation_prices(r, p, t, inverse)
        if any(tr["exit_reason"] == "liquidation" for tr in closed):
            assert all(tr["exit_reason"] == "liquidation" and tr["exit_bar"] == t
                       for tr in open_)
            reached = [tr for tr in open_ if _beyond(tr, float(
                p.low[t, r.markets.index(tr["symbol"])] if tr["side"] == "long"
                else p.high[t, r.markets.index(tr["symbol"])]), lps[tr["trade"]])]
            assert reached, (t, open_, lps)
            cash, _ = _cash_flows(r, t, p)
            assert sum(tr["gross_pnl"] for tr in open_) == pytest.approx(-cash, abs=1e-9)
            shares = [tr["gross_pnl"] == pytest.approx(-_short(tr, tr["exit_price"], inverse))
                      for tr in open_]
            assert sum(shares) >= len(open_) - 1
            continue
        for tr in open_:
            j = r.markets.index(tr["symbol"])
            lp = lps[tr["trade"]]
            worst = float(p.low[t, j] if tr["side"] == "long" else p.high[t, j])
            if tr["exit_bar"] == t:
                assert not _beyond(tr, tr["exit_price"], lp), (t, tr, lp)
            if _beyond(tr, worst, lp):  # reached: only a stop inside it may come first, or a
                # take-profit the bar opened beyond (it fills at the open, before any extreme)
                stop, tp = tr["stop_price"], tr["take_profit"]
                o = float(p.open[t, j])
                if tr["exit_reason"] == "take_profit" and tp is not None:
                    assert tr["exit_bar"] == t and not _beyond(tr, o, tp), (t, tr, lp)
                    continue
                assert tr["exit_bar"] == t and tr["exit_reason"] == "stop", (t, tr, lp)
                assert stop is not None and not _beyond(tr, stop, lp)
    fees_at: dict[int, float] = {}
    for tr in r.trades:
        fees_at[tr["exit_bar"]] = fees_at.get(tr["exit_bar"], 0.0) + tr["exit_fee"]
    for t in range(len(a)):
        assert r.equity[t] >= -fees_at.get(t, 0.0) - 1e-6


def test_a_take_profit_the_bar_opened_beyond_fills_before_its_liquidation_price() -> None:
    # Regression (of the property test, which required a stop there): A long at 100 alone
    # (stop 97, take-profit 106: ATR 2 x 1.5, 2R; cross liquidation price 80.40). Bar 2 opens
    # at 107, beyond the take-profit, and its low, 79, lies beyond the liquidation price: the
    # take-profit fills at the open (at 106, never better), before any extreme of the bar.
    sig = signals(4, {(1, 0): 1}, atr=2.0)
    sig.tp_r[:] = 2.0
    r = run("cross", [FLAT, FLAT, (107, 108, 79, 90), FLAT], [FLAT] * 4, sig=sig)
    (a,) = r.trades
    assert a["take_profit"] == pytest.approx(106.0) and a["stop_price"] == pytest.approx(97.0)
    assert a["liquidation_price"] == pytest.approx(100 * (1 - 1000 / 5000) / (1 - MMR))
    assert a["exit_bar"] == 2 and a["exit_reason"] == "take_profit"
    assert a["exit_price"] == pytest.approx(106.0) and r.liquidations == 0


@pytest.mark.parametrize(("bar_a", "reason", "price"), [
    ((107, 108, 80, 90), "take_profit", 106.0),  # opened beyond the take-profit: filled at it
    ((95, 96, 80, 90), "stop", 95.0),            # opened beyond the stop: filled at the open
])
def test_a_position_closed_at_the_open_does_not_weigh_on_the_others(
        bar_a: Bar, reason: str, price: float) -> None:
    # Regression: the intrabar judgement valued every other position at its bar's adverse
    # extreme, even one a gap beyond its stop or take-profit had closed at the open, before that
    # extreme came: A's low, 80, left B (flat at 100) with a wallet of about -30 and a price of
    # about 101, and liquidated the account. A and B long at 100 (stop 97, take-profit 106).
    # Bar 2 opens A beyond its stop or take-profit: the account is judged at the open (A's
    # price about 81, B's open far from its own), A closes there, and B, alone, stays open to
    # the end (with A's loss at 95: wallet 990 - 250 - 4.75 = 735.25, B's price
    # 100 (1 - 735.25 / 5,000) / 0.995 = 85.73).
    sig = signals(4, {(1, 0): 1, (1, 1): 1}, atr=2.0)
    sig.tp_r[:] = 2.0
    r = run("cross", [FLAT, FLAT, bar_a, FLAT], [FLAT] * 4, sig=sig)
    a, b = r.trades
    assert a["exit_bar"] == 2 and a["exit_reason"] == reason
    assert a["exit_price"] == pytest.approx(price)
    assert b["exit_reason"] == "end" and r.liquidations == 0
    assert r.equity[-1] == pytest.approx(990.0 + a["gross_pnl"] - a["exit_fee"] - 5.0)


def test_a_gap_beyond_the_stop_and_the_price_at_the_open_liquidates_the_account() -> None:
    # the stop gapped at the open is judged with the account at the open first: A opening at
    # 60, beyond its stop and its price (about 81 with B at its open), liquidates the account
    sig = signals(4, {(1, 0): 1, (1, 1): 1}, atr=2.0)
    r = run("cross", [FLAT, FLAT, (60, 61, 59, 60), FLAT], [FLAT] * 4, sig=sig)
    a, b = r.trades
    assert a["exit_reason"] == b["exit_reason"] == "liquidation" and r.liquidations == 2
    assert r.equity[2] == pytest.approx(0.0, abs=1e-9)


def test_a_liquidated_account_ends_at_zero_when_its_wallet_went_below_it() -> None:
    # Regression: a realised loss that the other position's unrealised profit carries leaves
    # the wallet below zero; the account's liquidation then left the equity there (the wallet
    # was "lost" only down to zero). A long and B short, 5,000 at 100 each: wallet 990.
    # Bar 2 opens both at 80 with an exit for A: the account stands (A's price with B's
    # +1,000 behind it is 100 (1 - 1,970/5,000)/0.995 = 60.9), A closes at 80: -1,000 and a
    # 4 fee: wallet -14, equity -14 + 1,000 = 986. B alone now: C = -14, its price
    # 100 (1 - 14/5,000) / 1.005 = 99.2239; bar 3's high 100 reaches it. The account's margin
    # balance is lost whole, so the equity ends at 0: B's row shows +14 (its PnL there, +38.81,
    # less its maintenance, 24.81), bringing the wallet from -14 to 0.
    bars_a = [FLAT, FLAT, (80, 80, 80, 80), (80, 80, 80, 80)]
    bars_b = [FLAT, FLAT, (80, 80, 80, 80), (80, 100, 80, 95)]
    sig = signals(4, {(1, 0): 1, (1, 1): -1}, exits={(2, 0): EXIT_LONG})
    r = run("cross", bars_a, bars_b, sig=sig)
    a, b = r.trades
    assert a["exit_reason"] == "signal" and a["gross_pnl"] == pytest.approx(-1000.0)
    assert r.equity[2] == pytest.approx(986.0)
    assert b["exit_reason"] == "liquidation" and b["exit_bar"] == 3
    lp = 100 * (1 - 14 / 5000) / 1.005
    assert b["exit_price"] == pytest.approx(lp) and b["gross_pnl"] == pytest.approx(14.0)
    assert b["gross_pnl"] == pytest.approx(-5000 * (lp / 100 - 1) - 50 * lp * MMR)
    assert r.equity[3] == pytest.approx(0.0, abs=1e-9)
