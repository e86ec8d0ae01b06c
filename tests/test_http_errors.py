"""The application built with injected dependencies (create_app), in process: an exchange
that is down answers 503 with Retry-After and releases the reservation; a store that is down
answers 503; a defect answers 500 as problem+json, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from httpfix import BTC
from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.market_snapshot import FileMarketSource
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.errors import NetworkError, RateLimited
from sizeguard.http.app import create_app
from sizeguard.http.service import Gate, paper_exchange
from sizeguard.http.settings import ServeSettings
from sizeguard.ports import Exchange

pytestmark = pytest.mark.timeout(60)
BUY = {"symbol": BTC, "side": "long", "price": 50000.0, "equity": 10000.0, "stop": 49000.0}


class Down:
    """The paper exchange whose entry orders fail like a network outage."""

    def __init__(self, inner: Exchange, exc: Exception) -> None:
        self._inner = inner
        self._exc = exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def place_entry(self, *args: Any, **kwargs: Any) -> Any:
        raise self._exc


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 's.db'}")
    yield s
    s.close()


def _client(store: SqlStore, exc: Exception | None = None) -> tuple[TestClient, str]:
    _, token = BotRegistry(store).add("alpha", account_id="default")

    def factory(gate: Gate) -> Exchange:
        inner = paper_exchange(gate)
        return Down(inner, exc) if exc is not None else inner  # type: ignore[return-value]

    settings = ServeSettings(preset="viper-fixed-margin", retry_after=7)
    app = create_app(settings, store=store, markets=FileMarketSource(None),
                     exchange_factory=factory)
    return TestClient(app, raise_server_exceptions=False), token


@pytest.mark.parametrize("exc", [NetworkError("connection reset", exchange="paper"),
                                 RateLimited("slow down", exchange="paper")])
def test_exchange_outage_is_503_with_retry_after(store: SqlStore, exc: Exception) -> None:
    client, token = _client(store, exc)
    with client:
        r = client.post("/v1/orders", json=BUY, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["retryable"] is True and body["result"]["status"] == "failed"
        # the reservation was released: nothing is held, the slot is free again
        assert store.risk_state("default").live_reservations == 0
        released = store.reservations("default", live_only=False)
        assert [x.status for x in released] == ["released"]
        # with an idempotency key a 503 is not kept: the retry tries again
        h = {"Authorization": f"Bearer {token}", "Idempotency-Key": "retry-me"}
        assert client.post("/v1/orders", json=BUY, headers=h).status_code == 503
        assert client.post("/v1/orders", json=BUY, headers=h).status_code == 503
        assert len(store.reservations("default", live_only=False)) == 3


def test_store_outage_is_503(store: SqlStore) -> None:
    client, token = _client(store)
    with client:
        h = {"Authorization": f"Bearer {token}"}
        assert client.post("/v1/decisions", json=BUY, headers=h).status_code == 200
        store.close()
        r = client.post("/v1/decisions", json=BUY, headers=h)
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert client.get("/healthz").status_code == 503


def test_a_defect_is_a_500_problem_not_a_traceback(store: SqlStore) -> None:
    client, token = _client(store)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    with client:
        client.app.state.gate.positions = broken  # type: ignore[attr-defined]
        r = client.get("/v1/positions", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "bug" not in r.text and "Traceback" not in r.text


def test_live_orders_go_through_ccxt(tmp_path: Path, store: SqlStore,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--live: /v1/orders places entry, stop and take-profit through the ccxt adapter (a real
    ccxt Binance USD-M object whose HTTP layer replays recorded answers)."""
    from ccxt_replay import Replay
    from sizeguard.adapters import ccxt_exchange
    from sizeguard.adapters.market_snapshot import refresh
    from sizeguard.config import load_policy

    real = ccxt_exchange.make_exchange
    replays: list[Replay] = []

    def replayed(name: str, **kw: Any) -> Any:
        replays.append(Replay("binanceusdm"))
        return replays[-1].install(real(name, **kw))

    monkeypatch.setattr(ccxt_exchange, "make_exchange", replayed)
    monkeypatch.setattr("sizeguard.http.service.new_client_order_id", lambda: "sg-1")  # recorded
    _, source = refresh(replayed("binanceusdm"), tmp_path)
    monkeypatch.setenv("SIZEGUARD_API_KEY", "k-secret-key")
    monkeypatch.setenv("SIZEGUARD_API_SECRET", "s-secret")
    _, token = BotRegistry(store).add("alpha", account_id="default")
    settings = ServeSettings(live=True, exchange="binanceusdm", hedge_mode=True)
    policy = load_policy("viper-fixed-margin", sets=["sizing.margin=50", "leverage.value=10"])
    app = create_app(settings, store=store, markets=source, policy=policy)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/orders", headers={"Authorization": f"Bearer {token}"},
                        json={**BUY, "take_profit": 55000.0})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] == "filled" and out["decision"]["amount"] == "0.01"
        assert [o["kind"] for o in out["orders"]] == ["entry", "stop", "take_profit"]
        assert "k-secret-key" not in r.text and "s-secret" not in r.text
        assert "k-secret-key" not in client.get("/healthz").text
    assert any("order" in path.lower() for _, path, _ in replays[-1].requests)
