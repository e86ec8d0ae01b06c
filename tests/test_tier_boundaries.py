"""Differential test at every tier boundary of Binance's real BTC and ETH brackets: a trade
sized on, just below and just above each boundary (long and short) gets one liquidation price
from the decision, the backtest engine (which must not look its tier up again) and a position
recorded in the SQL store.

Why the boundaries: a long's notional at its liquidation price is below its entry notional (a
short's above), so near a boundary the bracket at liquidation is not the entry bracket. The
regression (BTC, 305,000 notional at 20x, entry 100,000): the decision used the first bracket
(rate 0.4%, amount 0): 100,000 x (1 - 0.05) / (1 - 0.004) = 95,381.53; the engine looked the
second one up again (0.5%, amount 300): 100,000 x (1 - 15,550 / 305,000) / 0.995 = 95,378.53.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.adapters.sql_store import open_store
from sizeguard.backtest.candles import Panel
from sizeguard.backtest.engine import run_backtest
from sizeguard.backtest.signals import Signals
from sizeguard.config import load_policy
from sizeguard.core import liquidation as core_liq
from sizeguard.core import position
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy
from storefix import reserve

H = 3_600_000
EQUITY = 1e10  # no limit of the account binds: the notional is the one asked for
PRICES = {"BTC/USDT:USDT": 100_000.0, "ETH/USDT:USDT": 2_000.0}


@pytest.fixture(scope="module")
def markets() -> dict[str, MarketRules]:
    book = attach_tiers(load_markets(shared_path("markets", "binanceusdm.json")),
                        shared_path("leverage_tiers", "binanceusdm.json"))
    return {s: book[s] for s in PRICES}


def policy(notional: float) -> Policy:
    # no stop and the guard off: the decision keeps the notional and the tier's leverage cap
    return load_policy("viper-fixed-margin", sets=[
        'sizing.model="fixed_notional"', f"sizing.notional={notional!r}", "leverage.value=20",
        "leverage.max=125", "stop.default_pct=0", 'liquidation.guard="off"', 'execution.order_type="limit"'])


def cases(market: MarketRules) -> list[tuple[float, str, float]]:
    """(notional, side, price): one lot below, on and one lot above every boundary. The price
    is today's order of magnitude, raised by tens where the exchange's largest order (its
    amount maximum) could not reach the boundary otherwise."""
    out = []
    for tier in market.tiers[1:]:
        price = PRICES[market.symbol]
        while tier.min_notional * 1.01 > market.max_amount * price:
            price *= 10
        lot = market.amount_step * price  # notional of one lot
        for target in (tier.min_notional - lot, tier.min_notional, tier.min_notional + lot):
            out += [(target, "long", price), (target, "short", price)]
    return out


def decide_one(market: MarketRules, target: float, side: str, account: Account,
               price: float) -> Decision:
    intent = Intent(symbol=market.symbol, side=side, price=price)
    return decide(intent, account, market, policy(target))


def engine_liquidates_at(market: MarketRules, d: Decision, touch: float) -> dict[str, Any]:
    """One entry at bar 1's open; bar 2 reaches ``touch`` against the position."""
    p = d.entry_price
    flat = (p, p, p, p)
    moved = (p, p, touch, p) if d.side == "long" else (p, touch, p, p)
    a = np.array([flat, flat, moved, flat])
    panel = Panel(("X",), np.arange(4, dtype=np.int64) * H, a[:, [0]], a[:, [1]], a[:, [2]],
                  a[:, [3]], a[:, [3]].copy(), H)
    entry = np.zeros((4, 1), np.int8)
    entry[1, 0] = 1 if d.side == "long" else -1
    nan = np.full((4, 1), np.nan)
    sig = Signals(entry, np.zeros((4, 1), np.int8), nan, nan, nan, nan, "boundary")
    r = run_backtest(panel, sig, [market], policy(d.notional), equity=EQUITY)
    (trade,) = r.trades
    return trade


@pytest.mark.parametrize("symbol", sorted(PRICES))
def test_engine_liquidates_at_the_decisions_price_at_every_boundary(
        symbol: str, markets: dict[str, MarketRules]) -> None:
    market = markets[symbol]
    checked = 0
    for target, side, price in cases(market):
        d = decide_one(market, target, side, Account(equity=EQUITY), price)
        assert d.accepted, (target, side, d.reasons)
        assert d.notional == pytest.approx(target, rel=1e-12)
        lp = d.liquidation_price
        assert lp is not None
        if not 0.0 < lp < math.inf:  # 1x long: never liquidated
            continue
        # the ledger's loop price is the decision's, and the loop liquidates at exactly that
        # price and not a hair before it
        s = 1.0 if side == "long" else -1.0
        hit = engine_liquidates_at(market, d, lp)
        assert hit["engine_liquidation_price"] == lp
        assert hit["amount"] == d.amount and hit["exit_reason"] == "liquidation"
        miss = engine_liquidates_at(market, d, lp * (1 + s * 1e-9))
        assert miss["exit_reason"] == "end", (target, side)
        checked += 1
    assert checked >= 6 * (len(market.tiers) - 1) - 3


@pytest.mark.parametrize("symbol", sorted(PRICES))
def test_store_position_gives_the_decisions_liquidation_price(
        symbol: str, markets: dict[str, MarketRules], tmp_path: Path) -> None:
    # decide-and-reserve, fill at the decided price: the position the store holds, with the
    # bracket the decision reports (its rate and amount), gives the decision's price
    market = markets[symbol]
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    wrong = []
    try:
        for n, (target, side, price) in enumerate(cases(market)):
            account_id = f"a{n}"
            store.ensure_account(account_id, exchange="binanceusdm", equity=EQUITY)
            got = reserve(
                store, account_id,
                lambda acct, t=target, sd=side, p=price: decide_one(market, t, sd, acct, p),
                client_order_id=f"c{n}")
            assert got.reservation is not None
            d = decide_one(market, target, side, Account(equity=EQUITY), price)
            lp = d.liquidation_price
            assert got.decision.liquidation_price == pytest.approx(lp, rel=1e-12)
            filled = position.opened(market, float(d.amount), d.entry_price, d.leverage)
            pos = store.fill_reservation(got.reservation.id, amount=d.amount,
                                         entry_price=d.entry_price, notional=filled.notional,
                                         margin=filled.margin)
            assert (pos.notional, pos.margin) == (d.notional, d.margin)
            tier = next(t for t in market.tiers if t.tier == d.tier)
            assert tier.maintenance_margin_rate == d.maintenance_margin_rate
            assert tier.maintenance_amount == d.maintenance_amount
            stored = core_liq.liquidation_price(side == "long", False, pos.entry_price,
                                                pos.notional, pos.margin,
                                                tier.maintenance_margin_rate,
                                                tier.maintenance_amount)
            if stored != pytest.approx(lp, rel=1e-12):
                wrong.append((target, side, d.tier, stored, lp))
    finally:
        store.close()
    assert not wrong


def test_the_305000_case(markets: dict[str, MarketRules]) -> None:
    # the measured case: long 305,000 at 20x on BTC at 100,000 (see the module docstring)
    market = markets["BTC/USDT:USDT"]
    d = decide_one(market, 305_000.0, "long", Account(equity=EQUITY), 100_000.0)
    assert d.leverage == 20 and d.notional == pytest.approx(305_000.0)
    assert d.liquidation_price == pytest.approx(100_000 * 0.95 / 0.996)  # 95,381.53
    trade = engine_liquidates_at(market, d, 95_381.0)
    assert trade["engine_liquidation_price"] == d.liquidation_price
    assert trade["exit_reason"] == "liquidation"


@pytest.mark.parametrize(("low", "reason"), [(95_480.0, "liquidation"), (95_483.0, "end")])
def test_funding_moves_liquidation_with_the_decisions_bracket(
        markets: dict[str, MarketRules], low: float, reason: str) -> None:
    # The 305,000 long at 20x (margin 15,250; bracket at liquidation: rate 0.4%, amount 0).
    # Funding 0.1% per 8h at the 08:00 funding time (bar 7, 07:00-08:00, closes at 100,000):
    # pays 3.05 x 100,000 x 0.001 = 305, leaving collateral 14,945. The loop recomputes with
    # the decision's rate and amount: 100,000 x (1 - 14,945 / 305,000) / (1 - 0.004)
    # = 95,481.93. (The entry bracket, 0.5% and 300, would give 95,479.03: no liquidation at
    # a low of 95,480.)
    market = markets["BTC/USDT:USDT"]
    p = 100_000.0
    bars = [(p, p, p, p)] * 9 + [(p, p, low, p), (p, p, p, p)]
    a = np.array(bars)
    n = len(bars)
    panel = Panel(("X",), np.arange(n, dtype=np.int64) * H, a[:, [0]], a[:, [1]], a[:, [2]],
                  a[:, [3]], a[:, [3]].copy(), H)
    entry = np.zeros((n, 1), np.int8)
    entry[1, 0] = 1
    nan = np.full((n, 1), np.nan)
    sig = Signals(entry, np.zeros((n, 1), np.int8), nan, nan, nan, nan, "funding")
    r = run_backtest(panel, sig, [market], policy(305_000.0), equity=EQUITY, funding_rate=0.001)
    (trade,) = r.trades
    assert trade["leverage"] == 20 and trade["notional"] == pytest.approx(305_000.0)
    assert trade["engine_liquidation_price"] == pytest.approx(100_000 * 0.95 / 0.996)
    assert trade["exit_reason"] == reason and trade["exit_bar"] == (9 if low < 95_481 else n - 1)
    if reason == "liquidation":  # the collateral left after funding is lost whole
        assert trade["exit_price"] == pytest.approx(100_000 * (1 - 14_945 / 305_000) / 0.996)
        assert trade["gross_pnl"] == pytest.approx(-14_945.0)
