"""Trader.submit: decide, reserve, leverage, entry, stop and take-profit, record; failures
release the reservation and are journaled; idempotent by client order id; sync."""

from __future__ import annotations

import pytest

import storefix
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.market_snapshot import BookSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.config import load_policy
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.errors import InvalidOrder, NetworkError
from sizeguard.ports import ExchangePosition, OrderResult
from sizeguard.trader import Trader
from storefix import FakeClock

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store

BOOK = load_markets(None)
SOURCE = BookSource(BOOK, "builtin@test")
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
RISK = load_policy("ai-atr-risk")
INTENT = Intent(BTC, "long", 87669.0, atr=2000.0, confidence=0.52, take_profit=95000.0)


def make(store: SqlStore, exchange: PaperExchange | None = None, policy=RISK,
         equity: float = 8930.41, venue: str = "builtin") -> tuple[Trader, PaperExchange]:
    store.ensure_account("acc", exchange=venue, equity=equity)
    ex = exchange or PaperExchange(BOOK, balance=equity)
    return Trader(store, ex, SOURCE, policy, account_id="acc"), ex


def test_submit_places_entry_stop_and_take_profit_and_records(store: SqlStore) -> None:
    t, ex = make(store)
    r = t.submit(INTENT, "cid-1")
    assert r.status == "filled", r
    assert [o.kind for o in r.orders] == ["entry", "stop", "take_profit"]
    assert ex.leverage[BTC] == r.decision.leverage
    assert ex.margin_mode[BTC] == "isolated"
    stop = ex.orders["cid-1-sl"]
    assert stop.trigger_price == pytest.approx(r.decision.stop_price) and stop.side == "sell"
    assert ex.orders["cid-1-tp"].trigger_price == 95000.0
    pos = store.positions("acc")
    assert len(pos) == 1 and pos[0].amount == r.decision.amount
    assert pos[0].stop_price == pytest.approx(r.decision.stop_price)
    assert store.reservations("acc") == []
    kinds = [e.kind for e in store.journal("acc")]
    assert kinds == ["decision", "order", "fill", "order", "order"]
    assert store.journal("acc", kind="decision")[0].snapshot_id == "builtin@test"


def test_same_client_order_id_never_orders_twice(store: SqlStore) -> None:
    t, ex = make(store)
    first = t.submit(INTENT, "cid-1")
    again = t.submit(INTENT, "cid-1")
    assert again.duplicate and again.status == "filled"
    assert again.position is not None and first.position is not None
    assert again.position.id == first.position.id
    assert len(ex.orders) == 3 and len(store.positions("acc")) == 1


def test_resume_after_a_crash_between_entry_and_record(store: SqlStore, clock: FakeClock) -> None:
    t, ex = make(store)
    market = BOOK[BTC]
    res = storefix.reserve(store, "acc", lambda a: decide(INTENT, a, market, RISK),
                                   client_order_id="cid-9")
    ex.set_leverage(BTC, float(res.decision.leverage))
    ex.place_entry(BTC, "long", str(res.decision.amount), INTENT.price, "cid-9")  # then "crash"
    assert t.submit(INTENT, "cid-9").status == "in_progress"  # the crashed claim has not lapsed
    clock.advance(61)
    r = t.submit(INTENT, "cid-9")
    assert r.status == "filled" and "resumed" in r.notes[0]
    assert len([o for o in ex.orders.values() if o.kind == "entry"]) == 1
    assert len(store.positions("acc")) == 1


def test_min_cost_rejection_is_learned_and_feeds_the_next_decision(store: SqlStore) -> None:
    micro = load_policy("kraken-micro")
    ex = PaperExchange(BOOK, balance=2.86, quote="USD", min_cost={"XRP/USD": 5.0})
    t, _ = make(store, ex, micro, equity=2.86, venue="kraken")
    intent = Intent("XRP/USD", "long", 0.25)
    r = t.submit(intent, "k1")
    assert r.status == "rejected" and "no smaller than 5" in (r.error or "")
    assert store.reservations("acc") == []  # released
    assert store.learned_minimums("kraken")["XRP/USD"]["min_cost"] == 5.0
    reject = store.journal("acc", kind="reject")[0]
    assert reject.data["rule"] == "min_cost" and reject.client_order_id == "k1"
    again = t.submit(intent, "k2")
    assert again.status == "skipped" and list(again.decision.reasons) == ["BELOW_MIN_COST"]
    rules = next(s for s in again.decision.to_dict()["trace"] if s["step"] == "exchange_rules")
    assert rules["min_cost_source"] == "learned from an exchange rejection"


class FlakyPaper(PaperExchange):
    def __init__(self, *a: object, fail: str, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.fail = fail

    def place_entry(self, *a: object, **kw: object) -> OrderResult:
        if self.fail == "entry":
            raise NetworkError("binanceusdm GET https://fapi.binance.com timed out",
                               exchange="binanceusdm")
        return super().place_entry(*a, **kw)  # type: ignore[arg-type]

    def place_stop(self, *a: object, **kw: object) -> OrderResult:
        if self.fail == "stop":
            raise InvalidOrder("stop refused", exchange="paper", rule="price")
        return super().place_stop(*a, **kw)  # type: ignore[arg-type]


def test_network_failure_releases_the_reservation_retryable(store: SqlStore) -> None:
    t, _ = make(store, FlakyPaper(BOOK, balance=8930.41, fail="entry"))
    r = t.submit(INTENT, "n1")
    assert r.status == "failed" and r.retryable
    assert store.reservations("acc") == [] and store.positions("acc") == []
    res = store.reservations("acc", live_only=False)[0]
    assert res.status == "released" and "timed out" in (res.release_reason or "")


def test_a_refused_stop_flattens_the_position(store: SqlStore) -> None:
    t, ex = make(store, FlakyPaper(BOOK, balance=8930.41, fail="stop"))
    r = t.submit(INTENT, "s1")
    assert r.status == "failed" and "position closed" in (r.error or "")
    assert store.positions("acc") == [] and ex.positions() == []
    assert [e.kind for e in store.journal("acc")][-2:] == ["protect_failed", "close"]


def test_close_feeds_streak_and_sync_counts_outside_positions(store: SqlStore) -> None:
    policy = load_policy("ai-atr-risk", sets=["limits.max_positions=2"])
    seeded = [ExchangePosition(ETH, "short", 1.0, 3000.0, 3000.0, 100.0, 30.0)]
    ex = PaperExchange(BOOK, balance=8930.41, positions=seeded)
    t, _ = make(store, ex, policy)
    out = t.sync()
    assert len(out["added"]) == 1
    r = t.submit(INTENT, "x1")
    assert r.status == "filled" and r.position is not None
    blocked = t.submit(Intent("ADA/USDT:USDT", "long", 1.0, stop_pct=2.0), "x2")
    assert list(blocked.decision.reasons) == ["MAX_POSITIONS"]  # the outside ETH counts
    closed = t.close(r.position.id, 86000.0)
    assert closed.status == "closed" and (closed.pnl or 0) < 0
    assert store.risk_state("acc").losing_streak == 1


def test_resume_when_the_stop_was_already_placed(store: SqlStore, clock: FakeClock) -> None:
    t, ex = make(store)
    res = storefix.reserve(store, "acc", lambda a: decide(INTENT, a, BOOK[BTC], RISK),
                                   client_order_id="cid-7")
    amount = str(res.decision.amount)
    ex.set_leverage(BTC, float(res.decision.leverage))
    ex.place_entry(BTC, "long", amount, INTENT.price, "cid-7")
    ex.place_stop(BTC, "long", amount, float(res.decision.stop_price), "cid-7-sl")
    real_find = ex.find_order
    ex.find_order = lambda symbol, cid, conditional=False: (  # type: ignore[method-assign]
        None if cid.endswith("-sl") else real_find(symbol, cid))
    clock.advance(61)
    r = t.submit(INTENT, "cid-7")  # the stop is "invisible" but the exchange refuses a duplicate
    assert r.status == "filled" and [o.kind for o in r.orders] == ["entry", "stop", "take_profit"]
    assert len(store.positions("acc")) == 1 and ex.positions()


@pytest.mark.parametrize(("kind", "win"), [("stop", False), ("take_profit", True)])
def test_a_protective_fill_found_by_sync_feeds_pnl_streak_and_win_rate(
        store: SqlStore, kind: str, win: bool) -> None:
    t, ex = make(store)
    r = t.submit(INTENT, "p-1")
    assert r.position is not None
    price = r.decision.stop_price - 1 if kind == "stop" else 95001.0
    [fill] = ex.mark(BTC, price)
    assert fill.kind == kind and fill.status == "filled"
    assert ex.orders["p-1-sl" if kind == "take_profit" else "p-1-tp"].status == "canceled"
    out = t.sync()
    other = "take_profit_filled" if kind == "stop" else "stopped_out"  # a take-profit is no stop
    assert out[other] == [] and out["closed"] == []
    assert out["stopped_out" if kind == "stop" else "take_profit_filled"] == [r.position.id]
    closed = store.position(r.position.id)
    assert closed is not None and closed.status == "closed"
    assert closed.exit_price == pytest.approx(fill.average)
    assert ((closed.pnl or 0) > 0) is win
    rs = store.risk_state("acc")
    assert rs.losing_streak == (0 if win else 1)
    assert rs.symbol_stats[BTC] == (1, 1 if win else 0)
    assert rs.equity == pytest.approx(ex.balance().total)
