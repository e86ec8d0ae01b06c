"""The console's server side, in process: sign-in with the admin or a bot token (signed HttpOnly
session cookie, SameSite=Strict), CSRF on every state-changing request, a bot's read-only view of
itself, the admin's release, halts with when they lift, and a what-if equal to
``sizeguard size --json``. The browser test (tests/test_browser.py) drives the same pages."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from httpfix import BTC, SIZEGUARD, clean_env
from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.market_snapshot import FileMarketSource
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.config.settings import resolve
from sizeguard.http.app import create_app
from sizeguard.http.settings import ServeSettings

pytestmark = pytest.mark.timeout(120)
BUY = {"symbol": BTC, "side": "long", "price": 50000.0, "stop_pct": 2.0}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 's.db'}")
    yield s
    s.close()


@pytest.fixture
def admin(store: SqlStore) -> str:
    """The account admin's token, as `sizeguard admin token ops` makes it."""
    return BotRegistry(store).add("ops", account_id="default", role="admin")[1]


def _client(store: SqlStore, *sets: str) -> TestClient:
    policy = resolve("viper-fixed-margin", None, ("limits.max_drawdown=0.1", *sets), None).policy
    app = create_app(ServeSettings(preset="viper-fixed-margin", auth_cache_ttl=0), store=store,
                     markets=FileMarketSource(None), policy=policy)
    return TestClient(app, raise_server_exceptions=False)


def _login(client: TestClient, token: str) -> dict[str, str]:
    r = client.post("/ui/api/login", json={"token": token})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": client.cookies["sg_csrf"]}


def _reserve(client: TestClient, token: str, **kw: Any) -> dict[str, Any]:
    r = client.post("/v1/decisions", json={**BUY, "equity": 10000.0, "reserve": True, **kw},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_sign_in_sets_a_strict_httponly_session(store: SqlStore, admin: str) -> None:
    with _client(store) as client:
        assert client.get("/ui/api/overview").status_code == 401
        assert client.post("/ui/api/login", json={"token": "wrong"}).status_code == 401
        r = client.post("/ui/api/login", json={"token": admin})
        cookies = {c.split("=", 1)[0]: c.lower() for c in r.headers.get_list("set-cookie")}
        assert "httponly" in cookies["sg_session"] and "samesite=strict" in cookies["sg_session"]
        assert "path=/ui" in cookies["sg_session"]
        assert "httponly" not in cookies["sg_csrf"]  # the page reads it for the header
        assert admin not in r.headers["set-cookie"]  # the token itself is never in a cookie
        assert client.get("/ui/api/overview").json()["role"] == "admin"
        # a forged or altered cookie is no session
        value = client.cookies["sg_session"]
        client.cookies.set("sg_session", value[:-1] + ("0" if value[-1] != "0" else "1"),
                           path="/ui")
        assert client.get("/ui/api/overview").status_code == 401
        # the admin removed: its session ends
        _login(client, admin)
        BotRegistry(store).remove("ops")
        assert client.get("/ui/api/overview").status_code == 401


def test_state_changing_requests_need_the_csrf_token(store: SqlStore, admin: str) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    with _client(store) as client:
        res = _reserve(client, token)["reservation"]
        csrf = _login(client, admin)
        body = {"reservation_id": res["id"]}
        assert client.post("/ui/api/release", json=body).status_code == 403  # no header
        assert client.post("/ui/api/release", json=body,
                           headers={"X-CSRF-Token": "guess"}).status_code == 403
        assert client.post("/ui/api/release", json=body, headers={
            **csrf, "Origin": "http://evil.example"}).status_code == 403
        r = client.post("/ui/api/release", json=body, headers=csrf)
        assert r.status_code == 200 and r.json()["released"] is True
        assert r.json()["reservation"]["status"] == "released"
        assert client.get("/ui/api/overview").json()["reservations"] == []


def test_a_bot_sees_only_itself_read_only(store: SqlStore, admin: str) -> None:
    reg = BotRegistry(store)
    _, alpha = reg.add("alpha", account_id="default", budget=0.5)
    _, beta = reg.add("beta", account_id="default", budget=0.5)
    with _client(store) as client:
        mine = _reserve(client, alpha)["reservation"]
        _reserve(client, beta, symbol="ETH/USDT:USDT", price=3000.0)
        csrf = _login(client, alpha)
        o = client.get("/ui/api/overview").json()
        assert o["role"] == "bot" and o["bot"]["name"] == "alpha"
        assert [b["name"] for b in o["bots"]] == ["alpha"]
        assert [r["id"] for r in o["reservations"]] == [mine["id"]]
        assert o["alerts"] == []
        feed = client.get("/ui/api/feed").json()["entries"]
        assert {e["bot"] for e in feed} == {"alpha"}
        r = client.post("/ui/api/release", json={"reservation_id": mine["id"]}, headers=csrf)
        assert r.status_code == 403
        # the bot removed: its session ends
        reg.remove("alpha")
        assert client.get("/ui/api/overview").status_code == 401


def test_overview_shows_the_halt_and_when_it_lifts(store: SqlStore, admin: str) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    with _client(store) as client:
        _reserve(client, token)
        # equity 8,800 against the 10,000 peak: 12% drawdown >= the 10% limit (the account's
        # equity is the admin's to set: a bot's request only narrows its own view)
        store.set_equity("default", 8800.0)
        client.post("/v1/decisions", json=BUY, headers={"Authorization": f"Bearer {token}"})
        _login(client, admin)
        a = client.get("/ui/api/overview").json()["account"]
        (halt,) = a["halts"]
        assert halt["reason"] == "HALTED_DRAWDOWN"
        assert "9,000.00" in halt["lifts"]  # 10,000 x (1 - 10%)
        dd = next(c for c in a["caps"] if c["name"] == "drawdown from peak")
        assert dd["used"] == pytest.approx(0.12) and dd["cap"] == 0.1
        assert dd["ratio"] == pytest.approx(1.2)
        alerts = client.get("/ui/api/overview").json()["alerts"]
        assert any(x["kind"] == "halt" for x in alerts)


def test_what_if_equals_sizeguard_size_json(store: SqlStore, admin: str) -> None:
    intent = {"symbol": BTC, "side": "long", "price": 87669.0, "equity": 8930.41,
              "atr": 2000.0, "confidence": 0.52}
    cli = subprocess.run(
        [SIZEGUARD, "size", BTC, "--side", "long", "--price", "87669", "--equity", "8930.41",
         "--atr", "2000", "--confidence", "0.52", "--preset", "quantum-4x30", "--json"],
        capture_output=True, text=True, env=clean_env(), check=True, timeout=60)
    expected = json.loads(cli.stdout)
    with _client(store) as client:
        csrf = _login(client, admin)
        r = client.post("/ui/api/whatif", json={**intent, "preset": "quantum-4x30"}, headers=csrf)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["policy"] == "quantum-4x30"
        assert got == expected
        bad = client.post("/ui/api/whatif", json={**intent, "preset": "nope"}, headers=csrf)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "preset"


def test_caps_include_each_symbols_notional_against_its_cap(store: SqlStore, admin: str) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    with _client(store, "limits.max_symbol_notional=1000", "limits.max_gross_exposure=4000"
                 ) as client:
        held = _reserve(client, token)["reservation"]
        _login(client, admin)
        caps = {c["name"]: c for c in client.get("/ui/api/overview").json()["account"]["caps"]}
        btc = caps[f"{BTC} notional"]
        assert btc["used"] == pytest.approx(held["notional"]) and btc["cap"] == 1000.0
        assert btc["ratio"] == pytest.approx(held["notional"] / 1000.0)
        gross = caps["gross exposure"]
        assert gross["used"] == pytest.approx(held["notional"]) and gross["cap"] == 4000.0


def test_the_admin_halts_resumes_and_releases(store: SqlStore, admin: str) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    with _client(store) as client:
        held = _reserve(client, token)["reservation"]
        csrf = _login(client, admin)
        o = client.get("/ui/api/overview").json()
        assert o["role"] == "admin" and [b["name"] for b in o["bots"]] == ["alpha"]
        # halt: the account panel says why and how it lifts; a bot's decision skips
        r = client.post("/ui/api/halt", json={"reason": "exchange maintenance"}, headers=csrf)
        assert r.status_code == 200, r.text
        (halt,) = client.get("/ui/api/overview").json()["account"]["halts"]
        assert halt["reason"] == "HALTED_BY_ADMIN" and "exchange maintenance" in halt["note"]
        assert "resumes" in halt["lifts"]
        d = client.post("/v1/decisions", json={**BUY, "symbol": "ETH/USDT:USDT", "price": 3000.0},
                        headers={"Authorization": f"Bearer {token}"}).json()
        assert d["status"] == "skipped" and d["reasons"] == ["HALTED_BY_ADMIN"]
        assert client.post("/ui/api/halt", json={}, headers=csrf).status_code == 200  # resume
        assert client.get("/ui/api/overview").json()["account"]["halts"] == []
        # release, recorded as the admin's
        r = client.post("/ui/api/release", json={"reservation_id": held["id"]}, headers=csrf)
        assert r.status_code == 200 and r.json()["reservation"]["status"] == "released"
        assert "ops" in (store.reservation(held["id"]).release_reason or "")
        # a bot may not halt
        csrf = _login(client, token)
        assert client.post("/ui/api/halt", json={"reason": "x"}, headers=csrf).status_code == 403


def test_what_if_offers_a_bot_only_the_allowed_presets(store: SqlStore, admin: str) -> None:
    _, token = BotRegistry(store).add("alpha", account_id="default")
    intent = {**BUY, "equity": 10000.0}
    with _client(store) as client:
        _reserve(client, token)  # opens the account
        csrf = _login(client, admin)
        assert "quantum-4x30" in client.get("/ui/api/overview").json()["presets"]
        assert client.post("/ui/api/whatif", json={**intent, "preset": "quantum-4x30"},
                           headers=csrf).status_code == 200
        csrf = _login(client, token)
        assert client.get("/ui/api/overview").json()["presets"] == ["(service policy)"]
        r = client.post("/ui/api/whatif", json={**intent, "preset": "quantum-4x30"}, headers=csrf)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "preset"
        store.set_presets("default", ["quantum-4x30"])  # the admin's allow-list
        r = client.post("/ui/api/whatif", json={**intent, "preset": "quantum-4x30"}, headers=csrf)
        assert r.status_code == 200 and r.json()["policy"] == "quantum-4x30"
