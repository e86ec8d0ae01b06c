"""The application layer: a unit of work is one transaction (commit or nothing), and
``POST /v1/orders`` reserves once and executes once: counted in real BEGINs on a real SQLite
store and in core decisions, through the real application (in process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import sizeguard.budget
import storefix
from httpfix import BTC
from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.market_snapshot import FileMarketSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import SqliteStore, SqlStore, open_store
from sizeguard.core.decide import decide
from sizeguard.errors import InvalidInput
from sizeguard.http.app import create_app
from sizeguard.http.models import OrderRequest
from sizeguard.http.problems import Problem
from sizeguard.http.settings import ServeSettings

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store

pytestmark = pytest.mark.timeout(60)


class Counted:
    """Counts the transactions a store really begins (the dialect's BEGIN) and the core
    decisions made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.begins = 0
        self.decisions = 0
        begin = SqliteStore.__dict__["_begin"]

        def counting_begin(store: SqlStore, conn: Any, lock: str | None, write: bool
                           ) -> AbstractContextManager[None]:
            self.begins += 1
            cm: AbstractContextManager[None] = begin(store, conn, lock, write)
            return cm

        def counting_decide(*args: Any, **kwargs: Any) -> Any:
            self.decisions += 1
            return decide(*args, **kwargs)

        monkeypatch.setattr(SqliteStore, "_begin", counting_begin)
        monkeypatch.setattr(sizeguard.budget, "decide", counting_decide)

    def reset(self) -> None:
        self.begins = self.decisions = 0


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 's.db'}")
    yield s
    s.close()


def _client(store: SqlStore) -> tuple[TestClient, str]:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    settings = ServeSettings(preset="viper-fixed-margin", auth_cache_ttl=3600)
    app = create_app(settings, store=store, markets=FileMarketSource(None))
    return TestClient(app, raise_server_exceptions=False), token


ORDER = {"symbol": BTC, "side": "long", "price": 50000.0, "equity": 10000.0, "stop": 49000.0,
         "take_profit": 52000.0}


@pytest.mark.parametrize("keyed", [False, True])
def test_an_order_reserves_once_and_executes_once(sqlite_store: SqlStore, keyed: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    client, token = _client(sqlite_store)
    count = Counted(monkeypatch)
    with client:
        auth = {"Authorization": f"Bearer {token}"}
        warm = client.post("/v1/orders", json={**ORDER, "symbol": "ETH/USDT:USDT", "price": 3000.0,
                                               "stop": 2940.0, "take_profit": 3100.0}, headers=auth)
        assert warm.status_code == 200 and warm.json()["status"] == "filled", warm.text
        count.reset()  # the account is open and the token cached: count one order alone
        headers = {**auth, "Idempotency-Key": "k1"} if keyed else auth
        r = client.post("/v1/orders", json=ORDER, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "filled", r.text
    # 1 decide + reserve (+ owner), 1 read of the paper account, 1 entry recorded with its
    # fill, 1 protective orders journaled; with an Idempotency-Key, 1 claim and 1 answer kept
    assert count.begins == (6 if keyed else 4)
    assert count.decisions == 1  # the bot has the whole account: one view, decided once
    decisions = sqlite_store.journal("default", kind="decision")
    assert len(decisions) == 2 and decisions[-1].client_order_id == r.json()["client_order_id"]


def test_a_unit_of_work_commits_all_or_nothing(store: SqlStore) -> None:
    store.ensure_account("acc", exchange="test", equity=1000.0)
    with store.unit_of_work("acc") as uow:
        store.journal_event("acc", "note", note="one")
        store.set_equity("acc", 2000.0)
        # not committed: both roll back
    assert store.journal("acc") == [] and store.risk_state("acc").equity == 1000.0
    with pytest.raises(InvalidInput), store.unit_of_work("acc") as uow:
        store.journal_event("acc", "note", note="two")
        store.set_equity("acc", -1.0)  # refused: the journal row goes too
        uow.commit()
    assert store.journal("acc") == []
    with store.unit_of_work("acc") as uow:
        store.journal_event("acc", "note", note="three")
        store.set_equity("acc", 3000.0)
        uow.commit()
    assert [e.note for e in store.journal("acc")] == ["three"]
    assert store.risk_state("acc").equity == 3000.0


class Crash(BaseException):
    """The process dies here: no handler runs, nothing more is written."""


def test_an_order_whose_process_died_after_the_entry_resumes_without_ordering_twice(
        tmp_path: Path) -> None:
    """A keyed order dies after its entry filled on the exchange (before the stop). The retry
    with the same key waits out the lease (409), then takes the request over under the same
    client order id: it finds the entry on the exchange, records it and places the stop, and
    never decides, reserves or orders again."""
    clock = storefix.FakeClock()
    store = open_store(f"sqlite:///{tmp_path / 's.db'}", clock)
    _, token = BotRegistry(store).add("alpha", account_id="default")
    book = FileMarketSource(None)
    exchange = PaperExchange(book.markets(), balance=10_000.0)  # one venue across "processes"
    crash = [True]

    def place_stop(*args: Any, **kwargs: Any) -> Any:
        if crash[0]:
            raise Crash
        return PaperExchange.place_stop(exchange, *args, **kwargs)

    exchange.place_stop = place_stop  # type: ignore[method-assign]
    settings = ServeSettings(preset="viper-fixed-margin", idempotency_lease=5.0,
                             auth_cache_ttl=3600)
    app = create_app(settings, store=store, markets=book, exchange_factory=lambda _: exchange)
    gate = app.state.gate
    bot = gate.registry.authenticate(token)
    body = OrderRequest(**ORDER).model_dump()  # what the route hands the gate

    def post() -> Any:  # the route's call, without the HTTP layer (a crash kills the thread)
        return gate.idempotent(bot, "order-1", "orders", body,
                               lambda: gate.order(bot, body, "order-1"))
    try:
        with pytest.raises(Crash):
            post()
        assert [o.kind for o in exchange.orders.values()] == ["entry"]
        with pytest.raises(Problem) as busy:
            post()
        assert busy.value.status == 409  # the dead request's lease has not run out
        clock.advance(6)
        crash[0] = False
        status, out, _ = post()
        assert status == 200 and out["status"] == "filled" and out["duplicate"] is True
        assert out["notes"] and "resumed" in out["notes"][0], out
        status, again, headers = post()
        assert again == json.loads(json.dumps(out, default=str))
        assert headers["Idempotent-Replayed"] == "true"
        assert sorted(o.kind for o in exchange.orders.values()) == ["entry", "stop", "take_profit"]
        decisions = store.journal("default", kind="decision")
        assert [d.client_order_id for d in decisions] == [out["client_order_id"]]
        assert len(store.positions("default")) == 1 and store.reservations("default") == []
        # a defect (a 500, the process alive) after the entry: the retry resumes at once
        defect = [True]

        def broken_stop(*args: Any, **kwargs: Any) -> Any:
            if defect[0]:
                raise RuntimeError("a defect")
            return PaperExchange.place_stop(exchange, *args, **kwargs)

        exchange.place_stop = broken_stop  # type: ignore[method-assign]
        eth = OrderRequest(**{**ORDER, "symbol": "ETH/USDT:USDT", "price": 3000.0, "stop": 2940.0,
                              "take_profit": 3100.0}).model_dump()

        def post_eth() -> Any:
            return gate.idempotent(bot, "order-2", "orders", eth,
                                   lambda: gate.order(bot, eth, "order-2"))
        with pytest.raises(RuntimeError):
            post_eth()
        defect[0] = False
        status, out2, _ = post_eth()  # no lease to wait out: the claim was given up
        assert status == 200 and out2["status"] == "filled" and out2["duplicate"] is True
        assert len([o for o in exchange.orders.values() if o.kind == "entry"]) == 2
        assert len(store.journal("default", kind="decision")) == 2
    finally:
        store.close()
