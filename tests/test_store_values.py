"""The store records the values the core computed (issue 10, measurement 2), on SQLite and
PostgreSQL: a coin-margined fill away from the decision's price keeps its face-value notional.

Binance COIN-M BTC/USD:BTC: one contract is worth 100 USD whatever the price. 100 contracts
decided at 50,000 are 100 x 100 = 10,000 USD of notional; filled at 55,000 they are still
10,000 (the linear formula once stored 10,000 x 55,000 / 50,000 = 11,000, margin 2,200 at 5x),
and margin at 5x is 10,000 / 5 = 2,000.
"""

from __future__ import annotations

import pytest

import storefix
from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.market_snapshot import BookSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.config import load_policy
from sizeguard.core import position
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketBook
from sizeguard.trader import Trader

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store

SYMBOL = "BTC/USD:BTC"
# fixed notional 10,000 at 5x: 10,000 / 100 USD per contract = 100 contracts
POLICY = load_policy("viper-fixed-margin", sets=[
    'sizing.model="fixed_notional"', "sizing.notional=10000", "leverage.value=5",
    "leverage.max=5"])


@pytest.fixture(scope="module")
def coinm() -> MarketBook:
    return load_markets(shared_path("markets", "binancecoinm.json"))


def test_inverse_fill_away_from_the_decision_keeps_its_notional(store: SqlStore,
                                                                coinm: MarketBook) -> None:
    store.ensure_account("acc", exchange="binancecoinm", equity=50_000.0, quote="USD")
    market = coinm[SYMBOL]
    intent = Intent(SYMBOL, "long", 50_000.0)
    r = storefix.reserve(store, "acc", lambda a: decide(intent, a, market, POLICY),
                         client_order_id="inv-1", snapshot_id="test")
    assert r.reservation is not None
    assert (r.reservation.amount, r.reservation.notional) == ("100", 10_000.0)
    filled = position.opened(market, float(r.reservation.amount), 55_000.0,
                             r.reservation.leverage)
    pos = store.fill_reservation(r.reservation.id, amount="100", entry_price=55_000.0,
                                 notional=filled.notional, margin=filled.margin)
    assert (pos.notional, pos.margin) == (10_000.0, 2_000.0)
    stored = store.position(pos.id)
    assert stored is not None and (stored.notional, stored.margin) == (10_000.0, 2_000.0)
    account = store.account("acc")
    assert account.gross_exposure == 10_000.0  # every later limit counts 10,000, not 11,000
    assert account.margin_in_use == 2_000.0
    # closing at 60,000: coin PnL 10,000 x (1/55,000 - 1/60,000) = 0.0151515 BTC, valued at
    # 60,000 = 909.09 USD (= 10,000 x (60,000 / 55,000 - 1)), less the 1.0 exit fee
    closed = store.close_position(pos.id, exit_price=60_000.0, fee=1.0)
    assert closed.pnl == pytest.approx(10_000.0 * (1 / 55_000 - 1 / 60_000) * 60_000 - 1.0)
    assert closed.pnl == pytest.approx(908.0909, abs=1e-4)


def test_trader_records_an_inverse_fill_at_its_face_value(store: SqlStore,
                                                          coinm: MarketBook) -> None:
    # the paper exchange fills 10% above the decision's 50,000 (slippage 1,000 bps): 55,000
    store.ensure_account("acc", exchange="binancecoinm", equity=50_000.0, quote="USD")
    ex = PaperExchange(coinm, balance=50_000.0, quote="USD", slippage_bps=1_000.0)
    trader = Trader(store, ex, BookSource(coinm, "coinm@test"), POLICY, account_id="acc")
    result = trader.submit(Intent(SYMBOL, "long", 50_000.0), "inv-2")
    assert result.status == "filled", result
    assert result.position is not None
    assert result.position.entry_price == pytest.approx(55_000.0)
    assert (result.position.notional, result.position.margin) == (10_000.0, 2_000.0)
    assert store.account("acc").gross_exposure == 10_000.0
