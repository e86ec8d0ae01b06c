"""The ccxt adapter, offline: real ccxt exchange objects whose HTTP layer replays recorded
responses (tests/fixtures/ccxt). Orders carry the client order id, hedge-mode position sides
(Binance positionSide, Bitget tradeSide), reduce-only protective orders; ccxt errors come out
as sizeguard's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import storefix
from ccxt_replay import Replay
from sizeguard.adapters.ccxt_exchange import (
    CcxtExchange,
    classify_invalid_order,
    make_exchange,
)
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.market_snapshot import FileMarketSource, refresh
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.config import load_policy
from sizeguard.core.intent import Intent
from sizeguard.errors import ExchangeError, InsufficientFunds, InvalidOrder, NetworkError, RateLimited
from sizeguard.trader import Trader

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def binance(hedge: bool = True) -> tuple[CcxtExchange, Replay]:
    replay = Replay("binanceusdm")
    x = replay.install(make_exchange("binanceusdm", api_key="k", secret="s"))
    x.load_markets()
    return CcxtExchange(x, hedge_mode=hedge), replay


def test_markets_refresh_saves_a_dated_snapshot_the_loader_reads(tmp_path: Path) -> None:
    replay = Replay("binanceusdm")
    x = replay.install(make_exchange("binanceusdm", api_key="k", secret="s"))
    path, source = refresh(x, tmp_path)
    doc = json.loads(path.read_text())
    assert set(doc) == {"exchange", "precisionMode", "fetched_at", "markets", "tiers"}
    assert path.name.startswith("binanceusdm-") and doc["exchange"] == "binanceusdm"
    book = load_markets(path)
    assert book[BTC].amount_step == 0.001 and book[BTC].min_cost == 100.0
    assert [t.max_leverage for t in book[BTC].tiers] == [125, 100, 75]
    assert source.snapshot_id.startswith(f"binanceusdm@{doc['fetched_at']}#")
    assert FileMarketSource(path).snapshot_id == source.snapshot_id


def test_balance_and_positions() -> None:
    ex, _ = binance()
    b = ex.balance()
    assert (b.total, b.free) == (1005.5, 851.0)  # equity: wallet + unrealised
    [p] = ex.positions()  # the empty BTC row is dropped
    assert (p.symbol, p.side, p.amount, p.entry_price) == (ETH, "short", 0.5, 3000.0)
    assert p.notional == 1495.0 and p.margin == 149.5


def test_hedge_mode_orders_carry_position_side_and_client_id() -> None:
    ex, replay = binance(hedge=True)
    ex.set_margin_mode(BTC, "isolated")
    ex.set_margin_mode(ETH, "isolated")  # -4046 "No need to change margin type": fine
    ex.set_leverage(BTC, 10.0)
    entry = ex.place_entry(BTC, "long", "0.010", 50000.0, "sg-1")
    assert entry.status == "filled" and entry.average == 50010.0 and entry.client_order_id == "sg-1"
    [sent] = replay.sent("/fapi/v1/order")
    assert sent["positionSide"] == "LONG" and sent["newClientOrderId"] == "sg-1"
    assert sent["side"] == "BUY" and sent["type"] == "MARKET" and sent["quantity"] == "0.01"
    assert replay.sent("/fapi/v1/leverage")[0]["leverage"] == "10"
    sl = ex.place_stop(BTC, "long", "0.010", 49000.0, "sg-1-sl")
    tp = ex.place_take_profit(BTC, "long", "0.010", 55000.0, "sg-1-tp")
    assert sl.status == "open" and sl.kind == "stop" and tp.kind == "take_profit"
    stop_req, tp_req = replay.sent("/fapi/v1/algoOrder")
    assert stop_req["type"] == "STOP_MARKET" and stop_req["triggerPrice"] == "49000"
    assert stop_req["positionSide"] == "LONG" and stop_req["side"] == "SELL"
    assert "reduceOnly" not in stop_req  # Binance refuses reduceOnly beside positionSide
    assert tp_req["type"] == "TAKE_PROFIT_MARKET"


def test_one_way_mode_protective_orders_are_reduce_only() -> None:
    ex, replay = binance(hedge=False)
    ex.place_take_profit(BTC, "long", "0.010", 55000.0, "sg-1-tp")
    [req] = replay.sent("/fapi/v1/algoOrder")
    assert req["reduceOnly"] == "true" and "positionSide" not in req


@pytest.mark.parametrize(("cid", "error", "retryable"), [
    ("poor", InsufficientFunds, False),
    ("tiny", InvalidOrder, False),
    ("busy", RateLimited, True),
    ("slow", NetworkError, True),
])
def test_ccxt_errors_are_mapped_at_the_boundary(cid: str, error: type[ExchangeError],
                                                retryable: bool) -> None:
    ex, _ = binance()
    with pytest.raises(error) as info:
        ex.place_entry(BTC, "long", "0.001", 50000.0, cid)
    assert info.value.retryable is retryable and info.value.exchange == "binanceusdm"
    if cid == "tiny":
        assert info.value.rule == "min_cost" and info.value.minimum == 100.0  # type: ignore[attr-defined]


def test_find_order_by_client_id() -> None:
    ex, _ = binance()
    found = ex.find_order(BTC, "sg-1")
    assert found is not None and found.status == "filled"
    assert ex.find_order(BTC, "unknown") is None


def test_bitget_hedge_mode_sends_trade_side() -> None:
    replay = Replay("bitget")
    x = replay.install(make_exchange("bitget", api_key="k", secret="s", password="p"))
    ex = CcxtExchange(x, hedge_mode=True)
    ex.set_margin_mode(BTC, "isolated")
    ex.set_leverage(BTC, 10)
    ex.place_entry(BTC, "long", "0.01", 50000.0, "bg-1")
    ex.close_position(BTC, "long", "0.01", None, "bg-1-x")
    ex.place_stop(BTC, "long", "0.01", 49000.0, "bg-1-sl")
    open_, close = replay.sent("/api/v2/mix/order/place-order")
    assert open_["tradeSide"] == "Open" and open_["side"] == "buy" and open_["clientOid"] == "bg-1"
    assert open_["marginMode"] == "isolated"
    assert close["tradeSide"] == "Close"
    [sl] = replay.sent("/api/v2/mix/order/place-tpsl-order")
    assert sl["planType"] == "pos_loss" and sl["holdSide"] == "long" and sl["triggerPrice"] == "49000"
    with pytest.raises(InvalidOrder) as info:
        ex.place_entry(BTC, "long", "0.0001", 50000.0, "tiny")
    assert info.value.rule == "min_cost" and info.value.minimum == 5.0


def test_rejection_texts_teach_minimums() -> None:
    assert classify_invalid_order("EOrder:Cost minimum not met") == ("min_cost", None)
    assert classify_invalid_order("EOrder:Order minimum not met") == ("min_amount", None)
    assert classify_invalid_order("Filter failure: MIN_NOTIONAL") == ("min_cost", None)
    assert classify_invalid_order("Order's notional must be no smaller than 20") == ("min_cost", 20.0)


def test_trader_on_the_replayed_exchange(store: SqlStore, tmp_path: Path) -> None:
    ex, _ = binance(hedge=True)
    _, source = refresh(ex.x, tmp_path)
    store.ensure_account("acc", exchange="binanceusdm", equity=1000.0)
    policy = load_policy("viper-fixed-margin", sets=["sizing.margin=50", "leverage.value=10"])
    t = Trader(store, ex, source, policy, account_id="acc")
    r = t.submit(Intent(BTC, "long", 50000.0, stop=49000.0, take_profit=55000.0), "sg-1")
    assert r.status == "filled", r.error
    assert r.decision.amount == "0.01"
    assert [o.kind for o in r.orders] == ["entry", "stop", "take_profit"]
    assert store.journal("acc", kind="decision")[0].snapshot_id == source.snapshot_id
    out = t.sync()  # Binance reports only the ETH short: our stop filled, theirs counts
    assert out["equity"] == 1005.5 and len(out["added"]) == 1
    assert out["stopped_out"] == [r.position.id]  # found through the algo-order query
    closed = store.position(r.position.id)
    assert closed is not None and closed.exit_price == 48990.0 and (closed.pnl or 0) < 0
    assert store.risk_state("acc").losing_streak == 1
    assert [p.symbol for p in store.positions("acc")] == [ETH]
    # a min-notional rejection is learned for this exchange and symbol
    r2 = t.submit(Intent(BTC, "long", 50000.0, stop=49000.0), "tiny")
    assert r2.status == "rejected"
    assert store.learned_minimums("binanceusdm")[BTC]["min_cost"] == 100.0
