"""Authority on the real server (``sizeguard serve`` on loopback over SQLite): every attack
measured in issue 11 item 1, as a case that failed before the roles and passes now, and the
admin's own powers. Bounded: a handful of requests per case, one server each (~3 s).

The service policy is quantum-4x30 (4 slots, 30x cap) with a 20% drawdown halt.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from httpfix import BTC, ETH, SIZEGUARD, Server, add_bot, auth, clean_env, many_markets, serving, sym
from sizeguard.adapters.sql_store import open_store

pytestmark = pytest.mark.timeout(120)

ENV = {"SIZEGUARD_PRESET": "quantum-4x30", "SIZEGUARD_LIMITS__MAX_DRAWDOWN": "0.2"}
BUY = {"symbol": BTC, "side": "long", "price": 50000.0, "stop_pct": 2.0}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def server(url: str, tmp_path: Path) -> Iterator[Server]:
    markets = many_markets(tmp_path / "markets.json", 8)
    with serving(url, tmp_path, env=ENV, args=("--markets", str(markets))) as s:
        yield s


def post(server: Server, path: str, token: str, body: object) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=auth(token), timeout=30)


def put(server: Server, path: str, token: str, body: object) -> httpx.Response:
    return httpx.put(server.url + path, json=body, headers=auth(token), timeout=30)


def state(server: Server, token: str) -> dict[str, Any]:
    r = httpx.get(server.url + "/v1/state", headers=auth(token), timeout=30)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def admin_token(url: str, name: str = "root") -> str:
    """The admin's token, made with the CLI as an operator would."""
    out = subprocess.run([SIZEGUARD, "admin", "token", name, "--store", url, "--json"],
                         capture_output=True, text=True, env=clean_env(), check=True, timeout=60)
    token: str = json.loads(out.stdout)["token"]
    return token


def open_account(server: Server, token: str, equity: float = 10_000.0) -> dict[str, Any]:
    """The first request's equity opens the account (compatibility)."""
    r = post(server, "/v1/decisions", token, {**BUY, "equity": equity})
    assert r.status_code == 200, r.text
    return state(server, token)


# ----------------------------------------------------------------------------- the attacks


def test_equity_true_never_rewrites_the_account(server: Server, url: str) -> None:
    bot = add_bot(url, "alpha")
    open_account(server, bot)
    r = post(server, "/v1/decisions", bot, {**BUY, "equity": True})
    # refused as a type error, or taken as this request's own (narrower) view: never written
    assert r.status_code in (200, 422), r.text
    assert state(server, bot)["equity"] == 10_000.0
    one = post(server, "/v1/decisions", bot, {**BUY, "equity": 1.0}).json()
    assert one["status"] == "skipped"  # its own view: 1 USDT against a 10,000 peak
    assert state(server, bot)["equity"] == 10_000.0


def test_a_huge_equity_cannot_ratchet_the_peak_and_halt_every_bot(server: Server, url: str) -> None:
    greedy, other = add_bot(url, "greedy", budget=0.15), add_bot(url, "other")
    open_account(server, other)
    r = post(server, "/v1/decisions", greedy, {**BUY, "equity": 7e14})
    assert r.status_code == 200, r.text
    st = state(server, other)
    assert st["equity"] == 10_000.0 and st["peak_equity"] == 10_000.0
    d = post(server, "/v1/decisions", other, {**BUY, "symbol": ETH, "price": 3000.0}).json()
    assert d["status"] == "accepted" and "HALTED_DRAWDOWN" not in d["reasons"]


def test_a_close_far_from_the_last_price_is_refused(server: Server, url: str) -> None:
    bot = add_bot(url, "alpha")
    open_account(server, bot)
    d = post(server, "/v1/decisions", bot, {**BUY, "symbol": ETH, "price": 3000.0,
                                            "reserve": True}).json()
    res = d["reservation"]
    pos = post(server, "/v1/fills", bot, {"reservation_id": res["id"], "amount": res["amount"],
                                          "price": 3000.0}).json()["position"]
    r = post(server, "/v1/closes", bot, {"position_id": pos["id"], "price": 1e12})
    assert r.status_code == 422 and r.json()["field"] == "price", r.text
    assert state(server, bot)["equity"] < 10_001.0  # not ~1e17
    ok = post(server, "/v1/closes", bot, {"position_id": pos["id"], "price": 3030.0})
    assert ok.status_code == 200, ok.text


def test_a_fill_larger_than_its_reservation_is_refused(server: Server, url: str) -> None:
    bot = add_bot(url, "alpha")
    open_account(server, bot)
    d = post(server, "/v1/decisions", bot, {**BUY, "reserve": True}).json()
    res = d["reservation"]
    r = post(server, "/v1/fills", bot, {"reservation_id": res["id"], "amount": "100",
                                        "price": 50000.0})
    assert r.status_code == 422 and r.json()["field"] == "amount", r.text
    far = post(server, "/v1/fills", bot, {"reservation_id": res["id"], "amount": res["amount"],
                                          "price": 80000.0})
    assert far.status_code == 422 and far.json()["field"] == "price", far.text
    assert state(server, bot)["open_positions"] == 0


def test_a_preset_never_lifts_the_service_leverage_cap(server: Server, url: str) -> None:
    bot, root = add_bot(url, "alpha"), admin_token(url)
    open_account(server, bot)
    body = {**BUY, "symbol": ETH, "price": 3000.0, "preset": "viper-50x"}
    r = post(server, "/v1/decisions", bot, body)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "preset", r.text
    allowed = put(server, "/v1/admin/presets", root, {"presets": ["viper-50x"]})
    assert allowed.status_code == 200 and "viper-50x" in allowed.json()["presets"]
    d = post(server, "/v1/decisions", bot, body).json()
    assert d["status"] == "accepted" and d["leverage"] <= 30, d


def test_a_small_budget_bot_cannot_hold_every_slot(server: Server, url: str) -> None:
    small, big = add_bot(url, "small", budget=0.1), add_bot(url, "big")
    open_account(server, big)
    answers = [post(server, "/v1/decisions", small, {**BUY, "symbol": sym(i), "reserve": True})
               .json() for i in range(4)]
    assert [a["status"] for a in answers].count("accepted") == 1  # 10% of 4 slots: 1
    assert "MAX_POSITIONS" in answers[1]["reasons"] and answers[1]["bound_by"] == "bot"
    other = post(server, "/v1/decisions", big, {**BUY, "symbol": sym(5), "reserve": True}).json()
    assert other["status"] == "accepted"
    root = admin_token(url)  # the admin may give it more
    assert put(server, "/v1/admin/bots/small/slots", root, {"max_positions": 2}).json()["slots"] == 2
    more = post(server, "/v1/decisions", small, {**BUY, "symbol": sym(6), "reserve": True}).json()
    assert more["status"] == "accepted"


# ----------------------------------------------------------------------------- the admin


def test_the_admin_sets_equity_halts_resumes_and_releases(server: Server, url: str) -> None:
    bot, root = add_bot(url, "alpha"), admin_token(url)
    # roles do not mix: a bot is 403 on the admin's endpoints and the admin on the bots'
    assert post(server, "/v1/admin/equity", bot, {"equity": 5000.0}).status_code == 403
    assert post(server, "/v1/decisions", root, {**BUY, "equity": 1000.0}).status_code == 403
    r = post(server, "/v1/admin/equity", root, {"equity": 20_000.0})  # opens the account
    assert r.status_code == 200 and r.json()["equity"] == 20_000.0, r.text
    held = post(server, "/v1/decisions", bot, {**BUY, "reserve": True}).json()["reservation"]
    assert post(server, "/v1/admin/halt", root, {"reason": "exchange incident"}).status_code == 200
    halted = post(server, "/v1/decisions", bot, {**BUY, "symbol": ETH, "price": 3000.0}).json()
    assert halted["status"] == "skipped" and halted["reasons"] == ["HALTED_BY_ADMIN"]
    assert post(server, "/v1/admin/resume", root, {}).status_code == 200
    again = post(server, "/v1/decisions", bot, {**BUY, "symbol": ETH, "price": 3000.0}).json()
    assert again["status"] == "accepted"
    out = httpx.delete(f"{server.url}/v1/admin/reservations/{held['id']}", headers=auth(root),
                       timeout=30)
    assert out.status_code == 200 and out.json()["released"] is True
    assert state(server, bot)["live_reservations"] == 0
    # the CLI does the same on the store
    env = clean_env()
    subprocess.run([SIZEGUARD, "admin", "equity", "15000", "--peak", "15000", "--store", url],
                   env=env, check=True, capture_output=True, timeout=60)
    st = open_store(url)
    try:
        rs = st.risk_state("default")
    finally:
        st.close()
    assert rs.equity == 15_000.0 and rs.peak_equity == 15_000.0
