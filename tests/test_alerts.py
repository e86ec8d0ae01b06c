"""Alerts: halts, liquidation-guard refusals, exchange rejections, store outages and recoveries,
bots whose budget is used up, sent through Apprise to a real webhook receiver on loopback
(``json://127.0.0.1:PORT/...``), deduplicated and rate-limited."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from httpfix import BTC
from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.market_snapshot import FileMarketSource
from sizeguard.adapters.notify import AppriseNotifier, Throttled, split_urls
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.config.settings import resolve
from sizeguard.errors import InvalidInput, InvalidOrder, StoreError
from sizeguard.http.app import create_app
from sizeguard.http.service import Gate, paper_exchange
from sizeguard.http.settings import ServeSettings
from sizeguard.ports import Alert, Exchange

pytestmark = pytest.mark.timeout(60)


class Receiver:
    """A webhook receiver on a free loopback port; keeps every JSON body posted to it."""

    def __init__(self) -> None:
        got: list[dict[str, Any]] = []
        self.got = got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                got.append({"path": self.path, **json.loads(self.rfile.read(n))})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 's.db'}")
    yield s
    s.close()


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _alert(key: str, body: str = "b") -> Alert:
    return Alert("halt", "t", body, key)


# ----------------------------------------------------------------------------- throttle


def test_the_same_alert_is_sent_once_per_dedup_window() -> None:
    inner, clock = Recorder(), Clock()
    t = Throttled(inner, dedup=600, per_minute=100, clock=clock)
    t.notify(_alert("a"))
    clock.t += 599
    t.notify(_alert("a"))  # inside the window: dropped
    t.notify(_alert("b"))  # another condition: sent
    clock.t += 1
    t.notify(_alert("a"))  # 600 s after the first: sent again
    assert [a.key for a in inner.alerts] == ["a", "b", "a"]
    assert t.deduplicated == 1


def test_at_most_per_minute_alerts_leave_and_the_next_says_how_many_were_held() -> None:
    inner, clock = Recorder(), Clock()
    t = Throttled(inner, dedup=600, per_minute=3, clock=clock)
    for i in range(5):
        t.notify(_alert(f"k{i}"))
    assert [a.key for a in inner.alerts] == ["k0", "k1", "k2"]
    assert t.held_back == 2
    clock.t += 60  # the window has room again
    t.notify(_alert("k3"))  # held back before, so not deduplicated now
    assert inner.alerts[-1].key == "k3"
    assert "2 more alert(s) held back" in inner.alerts[-1].body


def test_a_bad_apprise_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidInput) as err:
        AppriseNotifier(["nosuchscheme://secret-token-123/x"])
    assert "secret-token-123" not in str(err.value)
    assert split_urls("json://a:1/x, tgram://b/c  ntfy://t") == [
        "json://a:1/x", "tgram://b/c", "ntfy://t"]


def test_apprise_delivers_to_a_loopback_webhook(receiver: Receiver) -> None:
    n = AppriseNotifier([receiver.url])
    n.notify(Alert("halt", "sizeguard: trading halted", "drawdown 20%", "k", "failure"))
    assert n.flush(20)
    n.close()
    assert n.sent == 1 and n.failed == 0
    (msg,) = receiver.got
    assert msg["path"] == "/hook"
    assert msg["title"] == "sizeguard: trading halted" and msg["message"] == "drawdown 20%"
    assert msg["type"] == "failure"


# ----------------------------------------------------------------------------- the service


class Rejecting:
    """The paper exchange refusing every entry the way an exchange's rules do."""

    def __init__(self, inner: Exchange) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def place_entry(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidOrder("Order's notional must be no smaller than 100", exchange="paper",
                           rule="min_cost", minimum=100.0)


def _app(store: SqlStore, receiver: Receiver, sets: tuple[str, ...] = (), reject: bool = False,
         ) -> tuple[TestClient, AppriseNotifier]:
    policy = resolve("viper-fixed-margin", None, ("limits.max_drawdown=0.1", *sets), None).policy

    def factory(gate: Gate) -> Exchange:
        inner = paper_exchange(gate)
        return Rejecting(inner) if reject else inner  # type: ignore[return-value]

    settings = ServeSettings(preset="viper-fixed-margin", notify=receiver.url)
    app = create_app(settings, store=store, markets=FileMarketSource(None), policy=policy,
                     exchange_factory=factory)
    throttled = app.state.console.alerter.notifier
    assert isinstance(throttled, Throttled) and isinstance(throttled.inner, AppriseNotifier)
    return TestClient(app, raise_server_exceptions=False), throttled.inner


def _buy(**kw: Any) -> dict[str, Any]:
    return {"symbol": BTC, "side": "long", "price": 50000.0, "stop_pct": 2.0, **kw}


def test_halt_is_alerted_once_through_the_webhook(store: SqlStore, receiver: Receiver) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    client, notifier = _app(store, receiver)
    h = {"Authorization": f"Bearer {token}"}
    with client:
        assert client.post("/v1/decisions", json=_buy(equity=10000.0), headers=h).json()[
            "status"] == "accepted"
        # equity 8,800 against a peak of 10,000: drawdown 12% >= the 10% limit
        for _ in range(3):
            d = client.post("/v1/decisions", json=_buy(equity=8800.0), headers=h).json()
            assert d["status"] == "skipped" and "HALTED_DRAWDOWN" in d["reasons"]
        assert notifier.flush(20)
    halts = [m for m in receiver.got if "halted" in m["title"]]
    assert len(halts) == 1, receiver.got  # three refusals, one alert
    assert "HALTED_DRAWDOWN" in halts[0]["title"] and "alpha" in halts[0]["message"]
    assert "12.00%" in halts[0]["message"]  # the gate's own note: drawdown 12.00% >= 10.00%


def test_liquidation_guard_refusal_is_alerted(store: SqlStore, receiver: Receiver) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    # 50x fixed with the guard refusing: a 5% stop lies beyond a ~2% liquidation distance
    client, notifier = _app(store, receiver, ("liquidation.guard=refuse", "leverage.value=50",
                                              "leverage.mode=fixed"))
    with client:
        d = client.post("/v1/decisions", json=_buy(equity=10000.0, stop_pct=5.0),
                        headers={"Authorization": f"Bearer {token}"}).json()
        assert "STOP_BEYOND_LIQUIDATION" in d["reasons"], d
        assert notifier.flush(20)
    (msg,) = [m for m in receiver.got if "liquidation guard" in m["title"]]
    assert BTC in msg["message"]


def test_exchange_rejection_is_alerted(store: SqlStore, receiver: Receiver) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    client, notifier = _app(store, receiver, reject=True)
    with client:
        r = client.post("/v1/orders", json=_buy(equity=10000.0),
                        headers={"Authorization": f"Bearer {token}"})
        assert r.json()["status"] == "rejected", r.text
        assert notifier.flush(20)
    (msg,) = [m for m in receiver.got if "rejected" in m["title"]]
    assert "no smaller than 100" in msg["message"] and msg["type"] == "failure"


def test_budget_used_up_is_alerted(store: SqlStore, receiver: Receiver) -> None:
    # one slot of its own: the second decision is refused by the bot's view, not the account's
    _, token = BotRegistry(store).add("alpha", account_id="default", budget=0.5, max_positions=1)
    client, notifier = _app(store, receiver)
    h = {"Authorization": f"Bearer {token}"}
    with client:
        assert client.post("/v1/decisions", json=_buy(equity=10000.0, reserve=True),
                           headers=h).json()["status"] == "accepted"
        d = client.post("/v1/decisions", json={**_buy(), "symbol": "ETH/USDT:USDT",
                                                "price": 3000.0, "reserve": True},
                        headers=h).json()
        assert d["status"] == "skipped" and d["bound_by"] == "bot", d
        assert notifier.flush(20)
    (msg,) = [m for m in receiver.got if "budget" in m["title"]]
    assert "alpha" in msg["title"] and "MAX_POSITIONS" in msg["title"]


def test_store_outage_and_recovery_are_alerted(store: SqlStore, receiver: Receiver,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    client, notifier = _app(store, receiver)
    h = {"Authorization": f"Bearer {token}"}
    with client:
        assert client.post("/v1/decisions", json=_buy(equity=10000.0), headers=h).status_code == 200

        def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreError("database is locked")

        with monkeypatch.context() as m:
            m.setattr(store, "schema_version", down)
            m.setattr(store, "account", down)
            m.setattr(store, "tx", down)
            assert client.get("/healthz").status_code == 503
            assert client.get("/healthz").status_code == 503  # still down: no second alert
        assert client.get("/healthz").status_code == 200
        assert notifier.flush(20)
    titles = [m["title"] for m in receiver.got]
    assert [t for t in titles if "store" in t] == ["sizeguard default: state store unavailable",
                                                   "sizeguard default: state store back"]
    assert [m["type"] for m in receiver.got if "store" in m["title"]] == ["failure", "success"]


def test_a_store_outage_alerts_with_no_traffic(store: SqlStore, receiver: Receiver,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe asks the store itself: an outage nobody trades through still alerts."""
    import time

    policy = resolve("viper-fixed-margin", None, (), None).policy
    settings = ServeSettings(preset="viper-fixed-margin", notify=receiver.url, notify_probe=0.05)
    app = create_app(settings, store=store, markets=FileMarketSource(None), policy=policy)
    notifier = app.state.console.alerter.notifier.inner

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("connection refused")

    with TestClient(app):
        with monkeypatch.context() as m:
            m.setattr(store, "schema_version", down)
            deadline = time.monotonic() + 20
            while app.state.console.alerter.store_down_since is None:
                assert time.monotonic() < deadline, "the probe never noticed the outage"
                time.sleep(0.02)
        while app.state.console.alerter.store_down_since is not None:
            assert time.monotonic() < deadline, "the probe never noticed the recovery"
            time.sleep(0.02)
        assert notifier.flush(20)
    assert [m["title"] for m in receiver.got] == ["sizeguard default: state store unavailable",
                                                  "sizeguard default: state store back"]
