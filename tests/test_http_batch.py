"""Group commit: a batch of decide + reserve in one transaction gives the same decisions and the
same rows as one unit of work each (``sizeguard.app.services.decide_and_reserve``, SQLite and
PostgreSQL), and the
leader/follower hand-off answers every waiting thread exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

import storefix
from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.app.services import ReserveRequest, decide_and_reserve
from sizeguard.budget import Budget, decide_for_bot
from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.errors import InvalidInput
from sizeguard.http.batch import GroupCommit
from storefix import many_symbols, notional_policy

pytestmark = pytest.mark.timeout(120)
store_url = storefix.store_url  # the fixtures: SQLite and PostgreSQL, a fake clock
clock = storefix.clock

BOOK = many_symbols(12)
POLICY = notional_policy(100.0, max_positions=5, max_gross_exposure=450.0)


def _fn(i: int, budget: Budget) -> Any:
    intent = Intent(f"C{i % 12:02d}/USDT:USDT", "long", 50000.0 if i != 7 else -1.0)

    def fn(account: Account, own: tuple[Position, ...]) -> Decision:
        return decide_for_bot(intent, account, own, BOOK[intent.symbol], POLICY, budget)[0]
    return fn


def _rows(store: SqlStore) -> list[tuple[Any, ...]]:
    with store.tx(write=False) as tx:
        res = tx.rows("SELECT client_order_id, symbol, side, amount, notional, margin, leverage, "
                      "status, claimed_until - created_at FROM reservations ORDER BY "
                      "client_order_id")
        jr = tx.rows("SELECT client_order_id, kind, symbol, side, status, reasons, data FROM "
                     "journal ORDER BY client_order_id")
        own = tx.rows("SELECT client_order_id FROM bot_orders ORDER BY client_order_id")
    return [*res, *jr, *own]


def test_batch_equals_one_by_one(store_url: str, clock: storefix.FakeClock) -> None:
    one, many = open_store(store_url, clock), None
    try:
        many = open_store(store_url.replace("state.db", "state2.db") if "sqlite" in store_url
                          else store_url + "b", clock)
        results = []
        for store in (one, many):
            store.ensure_account("default", exchange="test", equity=1000.0)
            reg = BotRegistry(store)
            a, _ = reg.add("a", account_id="default", budget=0.5, max_positions=2)
            b, _ = reg.add("b", account_id="default")
            bots = [a, b]
            items = [ReserveRequest(_fn(i, Budget(bots[i % 2].budget, bots[i % 2].max_positions)),
                                    f"c{i:02d}", "snap", 300.0, 60.0, owner=bots[i % 2].id,
                                    own=True) for i in range(12)]
            if store is one:
                got: list[Any] = []
                for it in items:
                    got += decide_and_reserve(store, "default", [it], reg)
            else:
                got = decide_and_reserve(store, "default", items[:5], reg)
                got += decide_and_reserve(store, "default", items[5:], reg)
            results.append(got)
        for x, y in zip(*results, strict=True):
            if isinstance(x, InvalidInput):
                assert isinstance(y, InvalidInput) and str(x) == str(y)
                continue
            assert x.decision == y.decision  # journal ids: a PG sequence skips rolled-back ones
            assert (x.reservation is None) == (y.reservation is None)
        statuses = [r.decision.status if not isinstance(r, InvalidInput) else "invalid"
                    for r in results[1]]
        assert "skipped" in statuses and statuses.count("invalid") == 1 and "accepted" in statuses
        strip = [(r[0], *r[1:]) for r in _rows(one)]
        assert strip == _rows(many)
        # a known client order id in a batch returns the earlier answer, deciding nothing
        again = decide_and_reserve(many, "default", [items[0]], BotRegistry(many))
        assert again[0].duplicate and again[0].decision.to_dict() == results[1][0].decision.to_dict()  # type: ignore[union-attr]
    finally:
        one.close()
        if many is not None:
            many.close()
            if "postgres" in store_url:
                storefix.drop(store_url + "b")


def test_group_commit_answers_each_thread_once() -> None:
    seen: list[int] = []
    sizes: list[int] = []
    lock = threading.Lock()

    def run(items: Sequence[int]) -> list[int]:
        time.sleep(0.005)  # a commit
        with lock:
            seen.extend(items)
            sizes.append(len(items))
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run, max_batch=8)
    out: dict[int, int] = {}
    barrier = threading.Barrier(40)

    def worker(i: int) -> None:
        barrier.wait()
        out[i] = group.submit(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == {i: i * 10 for i in range(40)}
    assert sorted(seen) == list(range(40)) and max(sizes) <= 8 and len(sizes) < 40
    assert group.items == 40 and group.batches == len(sizes)

    def boom(items: Sequence[int]) -> list[int]:
        raise RuntimeError("disk full")

    failing: GroupCommit[int, int] = GroupCommit(boom)
    with pytest.raises(RuntimeError, match="disk full"):
        failing.submit(1)
    assert failing.submit.__self__ is failing  # still usable: the lead was released
    with pytest.raises(RuntimeError):
        failing.submit(2)


def test_group_commit_answers_event_loop_requests_and_threads_once() -> None:
    """Requests awaiting on the event loop (no thread each) and threads, mixed: every one is
    answered exactly once with its own result, in batches, by the committer thread or a
    waiting thread handed the lead; a failed batch fails exactly its own requests, and the
    group still answers afterwards."""
    import asyncio

    seen: list[int] = []
    sizes: list[int] = []
    lock = threading.Lock()
    fail = {13}

    def run(items: Sequence[int]) -> list[int]:
        time.sleep(0.003)  # a commit
        with lock:
            seen.extend(items)
            sizes.append(len(items))
        if fail & set(items):
            raise RuntimeError("disk full")
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run, max_batch=8)
    threaded: dict[int, int | str] = {}

    def worker(i: int) -> None:
        try:
            threaded[i] = group.submit(i)
        except RuntimeError as exc:
            threaded[i] = str(exc)

    async def main() -> list[int | str]:
        async def one(i: int) -> int | str:
            try:
                return await group.submit_async(i)
            except RuntimeError as exc:
                return str(exc)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(100, 110)]
        for t in threads:
            t.start()
        got = await asyncio.gather(*(one(i) for i in range(60)))
        for t in threads:
            await asyncio.to_thread(t.join, 30)
        return list(got)

    got = asyncio.run(main())
    failed = {i for i, g in enumerate(got) if g == "disk full"}
    assert 13 in failed  # its batch failed: each of that batch's requests was told
    assert all(g == i * 10 for i, g in enumerate(got) if i not in failed)
    assert all(v == i * 10 or v == "disk full" for i, v in threaded.items())
    assert len(threaded) == 10
    assert sorted(seen) == sorted([*range(60), *range(100, 110)])  # each ran exactly once
    assert max(sizes) <= 8 and len(sizes) < 70
    assert group.items == 70 and group.batches == len(sizes)
    # still usable from a new loop (its own futures), and from a thread
    assert asyncio.run(group.submit_async(3)) == 30
    assert group.submit(4) == 40


# ----------------------------------------------------------------- idempotency in the batch


def _app(store: SqlStore) -> tuple[Any, str]:
    from fastapi.testclient import TestClient

    from sizeguard.adapters.market_snapshot import FileMarketSource
    from sizeguard.http.app import create_app
    from sizeguard.http.settings import ServeSettings

    _, token = BotRegistry(store).add("alpha", account_id="default")
    app = create_app(ServeSettings(preset="viper-fixed-margin", auth_cache_ttl=3600),
                     store=store, markets=FileMarketSource(None))
    return TestClient(app, raise_server_exceptions=False), token


BODY = {"symbol": "BTC/USDT:USDT", "side": "long", "price": 50000.0, "equity": 10000.0,
        "reserve": True}
# a second symbol: a decision on an account already open (what the short way answers)
ETH_BODY = {**BODY, "symbol": "ETH/USDT:USDT", "price": 3000.0}


def test_a_keyed_reserve_is_claimed_decided_and_kept_in_one_transaction(store_url: str) -> None:
    """On an open account, a reserving decision with an Idempotency-Key is answered on the
    event loop: its key, its decision, its reservation and its kept answer are ONE
    transaction (before: a transaction to claim the key, then the reservation's). A retry
    replays the answer byte for byte without deciding again; another request under the key
    is refused; an invalid request's answer is kept too."""
    store = open_store(store_url)
    try:
        client, token = _app(store)
        with client:
            auth = {"Authorization": f"Bearer {token}"}
            opened = client.post("/v1/decisions", json=BODY, headers=auth)  # opens the account
            assert opened.status_code == 200
            before = store.transactions
            eth = ETH_BODY
            first = client.post("/v1/decisions", json=eth, headers={**auth, "Idempotency-Key": "k1"})
            assert first.status_code == 200 and first.json()["reservation"]
            assert store.transactions - before == 1
            again = client.post("/v1/decisions", json=eth, headers={**auth, "Idempotency-Key": "k1"})
            assert again.content == first.content
            assert again.headers["idempotent-replayed"] == "true"
            with store.tx(write=False) as tx:
                rows = tx.rows("SELECT status, body, client_order_id FROM idempotency WHERE "
                               "key = 'k1'")
                held = tx.rows("SELECT COUNT(*) FROM reservations")
            assert [(r[0], r[2]) for r in rows] == [(200, first.json()["client_order_id"])]
            assert json.loads(rows[0][1]) == first.json()
            assert held == [(2,)]  # the account's opener and k1: the retry reserved nothing
            other = client.post("/v1/decisions", json={**eth, "price": 3001.0},
                                headers={**auth, "Idempotency-Key": "k1"})
            assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
            bad = {**BODY, "stop": 51000.0}  # a long's stop above its entry: the core says no
            b1 = client.post("/v1/decisions", json=bad, headers={**auth, "Idempotency-Key": "k2"})
            b2 = client.post("/v1/decisions", json=bad, headers={**auth, "Idempotency-Key": "k2"})
            assert b1.status_code == b2.status_code == 422 and b1.content == b2.content
            assert b2.headers["idempotent-replayed"] == "true"
    finally:
        store.close()


def test_a_failed_batch_keeps_no_claim_so_a_retry_decides(store_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The store fails inside the batch: the key's claim rolled back with the decision (no row
    left to answer 409 for the lease), so the retry with the same key decides at once."""
    from sizeguard.errors import StoreError

    store = open_store(store_url)
    try:
        client, token = _app(store)
        with client:
            auth = {"Authorization": f"Bearer {token}"}
            assert client.post("/v1/decisions", json=BODY, headers=auth).status_code == 200
            real = type(store).record_decision
            calls = {"n": 0}

            def flaky(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise StoreError("the disk went away")
                return real(self, *args, **kwargs)

            monkeypatch.setattr(type(store), "record_decision", flaky)
            eth = ETH_BODY
            lost = client.post("/v1/decisions", json=eth, headers={**auth, "Idempotency-Key": "k"})
            assert lost.status_code == 503 and lost.headers["retry-after"]
            assert lost.headers["content-type"] == "application/problem+json"
            with store.tx(write=False) as tx:
                assert tx.rows("SELECT key FROM idempotency") == []
                assert tx.rows("SELECT COUNT(*) FROM reservations") == [(1,)]
            retry = client.post("/v1/decisions", json=eth, headers={**auth, "Idempotency-Key": "k"})
            assert retry.status_code == 200 and retry.json()["reservation"]
            assert "idempotent-replayed" not in retry.headers
    finally:
        store.close()


def test_the_short_way_reads_the_request_models_own_fields() -> None:
    """The short way takes the validated model's own dict instead of model_dump(): the same
    keys in the same order with the same values and types, as long as every field is a plain
    value (a nested model would make them differ; this test would say so)."""
    from sizeguard.http.models import DecisionRequest
    bodies = [{"symbol": "BTC/USDT:USDT", "side": "LONG", "price": 50000, "reserve": True},
              {"symbol": "ETH/USDT:USDT", "side": "short", "price": 3000.5, "equity": 10000,
               "available": 0, "stop": 3100, "stop_pct": 1.5, "atr": 20, "atr_mult": 2,
               "stop_roe": 30, "confidence": 0.5, "regime": "trend", "volatility": "high",
               "preset": "viper-fixed-margin", "leverage": 5, "reserve": True, "ttl": 0.05}]
    for body in bodies:
        model = DecisionRequest.model_validate(body)
        own, dumped = model.__dict__, model.model_dump()
        assert list(own.items()) == list(dumped.items())
        assert [type(v) for v in own.values()] == [type(v) for v in dumped.values()]


def test_the_short_way_answers_as_the_route_and_passes_the_rest_on(tmp_path: Any) -> None:
    """A cached bot's reserving decision on an open account is answered by the short way
    (sizeguard.http.fastpath) with the same answer the route gives; the metrics count it under
    the route; everything the short way cannot answer exactly as the route (the first request:
    a cold token cache and a new account; a quote; an invalid field; an unknown regime; a
    token that is not a bot's) goes on to FastAPI and gets the route's answer."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        client, token = _app(store)
        with client:
            fast = client.app.state.fast_path  # type: ignore[attr-defined]
            auth = {"Authorization": f"Bearer {token}"}
            routed = client.post("/v1/decisions", json=BODY, headers=auth)
            assert routed.status_code == 200 and fast["answered"] == 0  # opened the account
            eth = ETH_BODY
            short = client.post("/v1/decisions", json=eth, headers=auth)
            assert short.status_code == 200 and fast["answered"] == 1
            a, b = routed.json(), short.json()
            assert list(a) == list(b) and a["status"] == b["status"] == "accepted"
            assert a["reservation"]["symbol"] == BODY["symbol"]
            assert b["reservation"]["symbol"] == eth["symbol"]
            assert [s["step"] for s in a["trace"]] == [s["step"] for s in b["trace"]]
            quote = client.post("/v1/decisions", json={**eth, "reserve": False}, headers=auth)
            assert quote.status_code == 200 and quote.json()["reservation"] is None
            bad = client.post("/v1/decisions", json={**eth, "price": -1}, headers=auth)
            assert bad.status_code == 422 and bad.json()["field"] == "price"
            odd = client.post("/v1/decisions", json={**eth, "regime": "lunar"}, headers=auth)
            assert odd.status_code == 422 and odd.json()["field"] == "regime"
            nobody = client.post("/v1/decisions", json=eth,
                                 headers={"Authorization": "Bearer sg_nobody_x"})
            assert nobody.status_code == 401
            assert fast["answered"] == 1
            text = client.get("/metrics").text
            assert ('sizeguard_http_requests_total{method="POST",route="/v1/decisions",'
                    'status="200"} 3') in text
    finally:
        store.close()


def test_the_front_answers_before_starlette_as_the_application_does(tmp_path: Any) -> None:
    """The short way runs in front of Starlette's and FastAPI's middleware (GateApp.front):
    its answer carries the route's headers; the guard's refusals of POST /v1/decisions are
    answered there and counted once; a request it passes on is counted once with its route;
    a defect on the short way is answered 500 problem+json (as the application's last-resort
    handler answers it), logged and counted, and the next request is answered again."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        client, token = _app(store)
        with client:
            app = client.app
            fast = app.state.fast_path  # type: ignore[attr-defined]
            auth = {"Authorization": f"Bearer {token}"}
            routed = client.post("/v1/decisions", json=BODY, headers=auth)
            eth = ETH_BODY
            short = client.post("/v1/decisions", json=eth, headers=auth)
            assert routed.status_code == short.status_code == 200 and fast["answered"] == 1
            for name in ("content-type", "content-length"):
                assert (name in routed.headers) == (name in short.headers)
            assert routed.headers["content-type"] == short.headers["content-type"]
            assert int(short.headers["content-length"]) == len(short.content)
            malformed = client.post("/v1/decisions", content=b'{"symbol": ', headers={
                **auth, "Content-Type": "application/json"})
            assert malformed.status_code == 400
            assert malformed.headers["content-type"].startswith("application/problem+json")
            huge = client.post("/v1/decisions", content=b"x" * 70_000, headers={
                **auth, "Content-Type": "application/json"})
            assert huge.status_code == 413
            gate = app.state.gate  # type: ignore[attr-defined]

            async def broken(*_: Any) -> Any:
                raise RuntimeError("a defect")

            real, gate.decide_async = gate.decide_async, broken
            try:
                failed = client.post("/v1/decisions", json=eth, headers=auth)
            finally:
                gate.decide_async = real
            assert failed.status_code == 500
            assert failed.headers["content-type"].startswith("application/problem+json")
            assert failed.json()["title"] == "internal error"
            again = client.post("/v1/decisions", json=eth, headers=auth)
            assert again.status_code == 200 and fast["answered"] == 2
            text = client.get("/metrics").text
            counted = [line for line in text.splitlines()
                       if line.startswith('sizeguard_http_requests_total{method="POST"')]
            assert counted == [  # once each (the guard refuses before a route is matched)
                'sizeguard_http_requests_total{method="POST",route="/v1/decisions",status="200"} 3',
                'sizeguard_http_requests_total{method="POST",route="/v1/decisions",status="500"} 1',
                'sizeguard_http_requests_total{method="POST",route="unmatched",status="400"} 1',
                'sizeguard_http_requests_total{method="POST",route="unmatched",status="413"} 1']
    finally:
        store.close()


def test_the_short_way_forgets_a_removed_bot_with_the_token_cache(tmp_path: Any) -> None:
    """The short way trusts only the registry's token cache: a bot removed by another process
    (the CLI) keeps its answers at most ``auth_cache_ttl`` seconds, then gets 401, as on the
    route; removed through this service's own registry, at once."""
    from fastapi.testclient import TestClient

    from sizeguard.adapters.market_snapshot import FileMarketSource
    from sizeguard.http.app import create_app
    from sizeguard.http.settings import ServeSettings

    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        outside = BotRegistry(store)
        _, alpha = outside.add("alpha", account_id="default")
        _, beta = outside.add("beta", account_id="default")
        app = create_app(ServeSettings(preset="viper-fixed-margin", auth_cache_ttl=0.5),
                         store=store, markets=FileMarketSource(None))
        with TestClient(app, raise_server_exceptions=False) as client:
            fast = app.state.fast_path
            eth = ETH_BODY
            for token in (alpha, beta):
                assert client.post("/v1/decisions", json=BODY,
                                   headers={"Authorization": f"Bearer {token}"}).status_code == 200
            shortcut = fast["answered"]
            ok = client.post("/v1/decisions", json=eth, headers={"Authorization": f"Bearer {alpha}"})
            assert ok.status_code == 200 and fast["answered"] == shortcut + 1  # cached: short way
            outside.remove("alpha")  # another process's registry: this one's cache does not know
            time.sleep(0.6)
            gone = client.post("/v1/decisions", json=eth, headers={"Authorization": f"Bearer {alpha}"})
            assert gone.status_code == 401
            app.state.gate.registry.remove("beta")  # this service's registry: forgotten at once
            gone = client.post("/v1/decisions", json=eth, headers={"Authorization": f"Bearer {beta}"})
            assert gone.status_code == 401
    finally:
        store.close()


class _Span:
    """A span that keeps its name and attributes (OpenTelemetry's API only; no SDK here)."""

    def __init__(self, name: str, attributes: dict[str, Any] | None) -> None:
        from opentelemetry import trace

        self._inner = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
        self.name = name
        self.attributes = dict(attributes or {})
        self.ended = False

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def update_name(self, name: str) -> None:
        self.name = name

    def end(self, end_time: int | None = None) -> None:
        self.ended = True

    def __getattr__(self, name: str) -> Any:  # the rest of a span: what a non-recording one does
        return getattr(self._inner, name)


def _recording_provider(spans: list[Any]) -> Any:
    from opentelemetry import trace

    class Tracer(trace.NoOpTracer):  # not a no-op tracer to FastAPI: only its provider's type counts
        def start_span(self, name: str, context: Any = None, kind: Any = None,
                       attributes: Any = None, *args: Any, **kwargs: Any) -> Any:
            span = _Span(name, attributes)
            spans.append(span)
            return span

    class Provider(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            return Tracer()

    return Provider()


def test_with_tracing_configured_a_decision_gets_the_routes_span(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With OpenTelemetry configured (FastAPI's own telemetry), the short way stands aside: a
    reserving decision goes through FastAPI and gets its server span, with the route and the
    status, as every other request does (before, the short way answered it with no span)."""
    from opentelemetry import trace

    spans: list[Any] = []
    provider = _recording_provider(spans)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        client, token = _app(store)
        with client:
            fast = client.app.state.fast_path  # type: ignore[attr-defined]
            auth = {"Authorization": f"Bearer {token}"}
            assert client.post("/v1/decisions", json=BODY, headers=auth).status_code == 200
            eth = ETH_BODY
            again = client.post("/v1/decisions", json=eth, headers=auth)
            assert again.status_code == 200 and again.json()["reservation"]
            assert fast["answered"] == 0
            server = [s for s in spans if s.attributes.get("http.route") == "/v1/decisions"]
            assert len(server) == 2 and all(s.ended for s in server)
            assert [s.attributes["http.response.status_code"] for s in server] == [200, 200]
    finally:
        store.close()
    monkeypatch.undo()  # telemetry off again: the short way answers
    store = open_store(f"sqlite:///{tmp_path / 't.db'}")
    try:
        client, token = _app(store)
        with client:
            fast = client.app.state.fast_path  # type: ignore[attr-defined]
            auth = {"Authorization": f"Bearer {token}"}
            for body in (BODY, {**BODY, "symbol": "ETH/USDT:USDT", "price": 3000.0}):
                assert client.post("/v1/decisions", json=body, headers=auth).status_code == 200
            assert fast["answered"] == 1
    finally:
        store.close()


def test_opentelemetrys_own_fastapi_middleware_also_sets_the_short_way_aside(tmp_path: Any) -> None:
    """OpenTelemetry's FastAPI instrumentation (a middleware of its own) counts as tracing
    configured, as FastAPI's own telemetry does."""
    from sizeguard.adapters.market_snapshot import FileMarketSource
    from sizeguard.http.app import create_app
    from sizeguard.http.settings import ServeSettings

    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        client, _ = _app(store)
        app = client.app
        assert not app.traced()  # type: ignore[attr-defined]

        class OpenTelemetryMiddleware:  # what the instrumentation adds, by its module
            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                await self.app(scope, receive, send)

        OpenTelemetryMiddleware.__module__ = "opentelemetry.instrumentation.asgi"
        instrumented = create_app(ServeSettings(preset="viper-fixed-margin"), store=store,
                                  markets=FileMarketSource(None))
        instrumented.add_middleware(OpenTelemetryMiddleware)
        assert instrumented.traced()  # type: ignore[attr-defined]
    finally:
        store.close()


def test_the_short_ways_answer_has_the_routes_status_headers_and_body() -> None:
    """The short way sends its answer as two ASGI messages built without a Response: the
    same status, headers (in the same order) and body as the route's Response."""
    import asyncio

    from sizeguard.http.app import respond, send_answer

    answers: list[Any] = [
        (200, {"status": "accepted", "amount": "0.002", "x": float("nan")}, {}),
        (200, {"status": "accepted"}, {"Idempotent-Replayed": "true"}),
        (503, {"title": "state store unavailable"}, {"Retry-After": "2"}),
        (422, {"field": "price"}, {}),
        (200, {"a": 1}, {"Content-Type": "application/json; charset=utf-8"}),
    ]
    for answer in answers:
        sent: list[Any] = []

        async def send(message: Any, sent: list[Any] = sent) -> None:
            sent.append(message)

        asyncio.run(send_answer(answer, send))
        routed: list[Any] = []

        async def send_routed(message: Any, routed: list[Any] = routed) -> None:
            routed.append(message)

        async def nothing() -> Any:
            return {"type": "http.disconnect"}

        asyncio.run(respond(answer)({"type": "http"}, nothing, send_routed))
        assert sent == routed


def test_an_accounts_held_rows_read_again_give_the_same_positions(
        store_url: str, clock: storefix.FakeClock) -> None:
    """The store reads an account's open positions and live reservations every batch; a row
    read again unchanged gives the same (immutable) Position back, and the account equals
    one built from new objects; a row that changed (a fill) or left (a release, an expiry)
    does not come back."""
    from sizeguard.core import decide as core_decide

    store = open_store(store_url, clock)
    try:
        store.ensure_account("a", exchange="paper", equity=10_000.0)
        for i in range(3):
            storefix.reserve(store, "a", lambda acc, i=i: core_decide.decide(
                Intent(f"C{i:02d}/USDT:USDT", "long", 50000.0), acc,
                BOOK[f"C{i:02d}/USDT:USDT"], POLICY), client_order_id=f"c{i}", ttl=60.0)
        first = store.account("a")
        second = store.account("a")
        assert len(first.positions) == 3 and first == second
        assert all(p is q for p, q in zip(first.positions, second.positions, strict=True))
        held = store.reservations("a")
        store.release_reservation(held[0].id, "test")
        storefix.fill(store, held[1], 50100.0, book=BOOK)
        clock.advance(30.0)
        third = store.account("a")
        assert [p.symbol for p in third.positions] == [held[1].symbol, held[2].symbol]
        assert third.positions[0] is not second.positions[1]  # filled: a position now
        assert third.positions[0].entry == 50100.0
        assert third.positions[1] is second.positions[2]
        clock.advance(31.0)  # the last reservation expired
        assert [p.symbol for p in store.account("a").positions] == [held[1].symbol]
    finally:
        store.close()


def test_ids_sort_by_their_second_and_keep_their_lengths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client order ids (24 characters, as exchanges allow) and the store's ids begin with
    their second, so a later second's ids sort after (the indexes grow at their end), and
    their random part keeps them unique."""
    from sizeguard.adapters import sql_store
    from sizeguard.app import services

    now = [1_790_000_000.5]
    monkeypatch.setattr(time, "time", lambda: now[0])
    first = [services.new_client_order_id() for _ in range(1000)]
    res = [sql_store._new_id("res") for _ in range(1000)]  # noqa: SLF001
    now[0] += 1.0
    later, res_later = services.new_client_order_id(), sql_store._new_id("res")  # noqa: SLF001
    assert len(set(first)) == len(set(res)) == 1000
    assert all(len(c) == 24 and c.startswith("sg") and c < later for c in first)
    assert all(len(r) == 28 and r.startswith("res_") and r < res_later for r in res)


def test_the_committer_waits_for_more_only_while_decisions_keep_coming(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``delay``: before a small batch the committer waits once for more decisions, but only
    while they keep coming (its last batch ended less than BUSY ago): a decision after a
    quiet moment is not kept waiting, nor is a batch already large, nor anything when the
    delay is 0; threads leading their own batch never wait."""
    import asyncio

    from sizeguard.http import batch as batch_module

    clock = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(batch_module, "_monotonic", lambda: clock[0])
    monkeypatch.setattr(batch_module, "_sleep", slept.append)
    group: GroupCommit[int, int] = GroupCommit(lambda items: [i * 10 for i in items],
                                               delay=0.0005)
    group._gather()  # noqa: SLF001  # never committed: a quiet moment
    assert slept == []
    group._last = clock[0] - batch_module.BUSY / 2  # noqa: SLF001  # decisions keep coming
    group._gather()  # noqa: SLF001
    assert slept == [0.0005]
    clock[0] += batch_module.BUSY  # quiet again
    group._gather()  # noqa: SLF001
    assert slept == [0.0005]

    async def main() -> list[int]:
        return list(await asyncio.gather(*(group.submit_async(i) for i in range(6))))

    assert asyncio.run(main()) == [i * 10 for i in range(6)]
    assert group.submit(7) == 70  # a thread's own batch
    assert group.items == 7
    idle: GroupCommit[int, int] = GroupCommit(list, delay=0.0)
    idle._last = clock[0]  # noqa: SLF001
    assert asyncio.run(idle.submit_async(1)) == 1
    assert slept.count(0.0005) <= 3  # at most once per committed batch


def test_queries_sent_together_fail_as_one_and_leave_the_store_usable(
        store_url: str, clock: storefix.FakeClock) -> None:
    """``Tx.many`` (the account's load: one round trip on PostgreSQL, in pipeline mode) answers
    each query's rows in order; a query that fails fails the transaction with the store's
    error, and the next transaction works."""
    from sizeguard.errors import StoreError

    store = open_store(store_url, clock)
    try:
        store.ensure_account("a", exchange="paper", equity=10_000.0)
        with store.tx("a") as tx:
            got = tx.many((("SELECT 1", ()), ("SELECT id FROM accounts WHERE id = ?", ("a",)),
                           ("SELECT id FROM accounts WHERE id = ?", ("b",))))
        assert got == [[(1,)], [("a",)], []]
        with pytest.raises(StoreError), store.tx("a") as tx:
            tx.many((("SELECT 1", ()), ("SELECT * FROM no_such_table", ()), ("SELECT 2", ())))
        assert store.account("a").equity == 10_000.0
        with pytest.raises(InvalidInput, match="no such account"):
            store.account("b")
    finally:
        store.close()


def test_a_batch_grows_each_bots_own_positions_as_a_fresh_read_gives_them(
        store_url: str, clock: storefix.FakeClock) -> None:
    """Inside a batch, a bot's own positions are read once and grown by its accepted
    requests: each request sees what a fresh read in the same unit of work gives (the same
    positions, in the same order: the account's, filled positions first), never another bot's."""
    store = open_store(store_url, clock)
    try:
        store.ensure_account("default", exchange="test", equity=10_000.0)
        reg = BotRegistry(store)
        a, _ = reg.add("a", account_id="default", budget=0.5)
        b, _ = reg.add("b", account_id="default", budget=0.3)
        policy = notional_policy(200.0, allow_add="true")
        loads: list[str] = []

        class Counting:
            def own_positions(self, owner: str, account_id: str) -> tuple[Position, ...]:
                loads.append(owner)
                return reg.own_positions(owner, account_id)

            def record_owner(self, client_order_id: str, owner: str, account_id: str) -> None:
                reg.record_owner(client_order_id, owner, account_id)

        checked: list[int] = []

        def req(i: int, bot: Any, own: bool = True) -> ReserveRequest:
            intent = Intent(f"C{i % 3:02d}/USDT:USDT", ("long", "short")[i % 2], 50_000.0 + i)
            budget = Budget(bot.budget)

            def fn(account: Account, mine: tuple[Position, ...]) -> Decision:
                clock.advance(1.0)  # each reservation a later time: the account's order
                if own:
                    fresh = reg.own_positions(bot.id, "default")  # joins the unit of work
                    assert mine == fresh
                    checked.append(len(mine))
                return decide_for_bot(intent, account, mine, BOOK[intent.symbol], policy,
                                      budget)[0]
            return ReserveRequest(fn, f"o{i:02d}", "snap", 300.0, 60.0, owner=bot.id, own=own)

        first = decide_and_reserve(store, "default", [req(i, (a, b)[i % 2]) for i in range(4)],
                                   Counting())
        res = first[0].reservation  # type: ignore[union-attr]
        assert res is not None
        storefix.fill(store, res, 50_000.0, book=BOOK)  # a's: a position now, read first
        loads.clear()
        bots = [a, b, a, a, b, a, b]
        batch = [req(10 + i, bot) for i, bot in enumerate(bots)]
        batch.insert(3, req(30, b, own=False))  # b unlimited for once: still b's
        got = decide_and_reserve(store, "default", batch, Counting())
        assert all(not isinstance(g, InvalidInput) and g.decision.accepted for g in got)
        assert sorted(loads) == sorted([a.id, b.id])  # once per owner per batch
        # b after its unlimited request holds it too (2 before the batch, its first, that one)
        assert checked[-len(bots):] == [2, 2, 3, 4, 4, 5, 5]
    finally:
        store.close()
