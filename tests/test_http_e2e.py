"""End to end: the real server (``sizeguard serve`` in a subprocess, uvicorn on a free loopback
port) over a real SQLite file, spoken to over real HTTP. Auth, budgets, idempotency and every
endpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from httpfix import (
    BTC,
    ETH,
    SIZEGUARD,
    Server,
    add_bot,
    auth,
    clean_env,
    free_port,
    many_markets,
    serving,
    sym,
)
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.sql_store import open_store
from sizeguard.config.settings import resolve
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent

pytestmark = pytest.mark.timeout(180)

# The service policy of these tests: 2 USDT margin x 50x = 100 notional; 4 slots (one per
# symbol: the markets are the built-in ones plus C00/USDT:USDT... with BTC's rules)
ENV = {"SIZEGUARD_PRESET": "viper-fixed-margin", "SIZEGUARD_LIMITS__MAX_POSITIONS": "4"}
BUY = {"symbol": BTC, "side": "long", "price": 50000.0, "equity": 10000.0}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def markets(tmp_path: Path) -> Path:
    return many_markets(tmp_path / "markets.json", 16)


@pytest.fixture
def server(url: str, tmp_path: Path, markets: Path) -> Iterator[Server]:
    with serving(url, tmp_path, env=ENV, args=("--markets", str(markets))) as s:
        yield s


def post(server: Server, path: str, token: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=auth(token, **headers), timeout=30)


def get(server: Server, path: str, token: str, **params: object) -> httpx.Response:
    return httpx.get(server.url + path, headers=auth(token), params=params, timeout=30)


def is_problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, object] = r.json()
    assert body["status"] == status and body["title"]
    return body


# ----------------------------------------------------------------------------- auth


def test_auth_bearer_tokens(server: Server, url: str) -> None:
    token = add_bot(url, "alpha")
    r = httpx.post(server.url + "/v1/decisions", json=BUY, timeout=10)
    assert is_problem(r, 401) and r.headers["www-authenticate"].startswith("Bearer")
    for bad in ("nope", token[:-2] + "xx", "sg_" + "0" * 16 + "_x", token + "x"):
        is_problem(post(server, "/v1/decisions", bad, BUY), 401)
    r = httpx.post(server.url + "/v1/decisions", json=BUY, timeout=10,
                   headers={"Authorization": f"Basic {token}"})
    is_problem(r, 401)
    for path in ("/v1/positions", "/v1/state", "/v1/journal", f"/v1/markets/{BTC}"):
        is_problem(httpx.get(server.url + path, timeout=10), 401)
    is_problem(httpx.delete(server.url + "/v1/reservations/res_x", timeout=10), 401)
    ok = post(server, "/v1/decisions", token, BUY)
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
    # revoked: the CLI removes the bot, its token stops working (cache TTL 0 in tests)
    out = subprocess.run([SIZEGUARD, "bots", "remove", "alpha", "--store", url], check=False, env=clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    is_problem(post(server, "/v1/decisions", token, BUY), 401)
    # the token never shows up in the server's output
    assert token not in server.output()
    assert token.split("_", 2)[2] not in server.output()


def test_cli_bots_add_list_remove(url: str) -> None:
    env = clean_env()
    out = subprocess.run([SIZEGUARD, "bots", "add", "scalper", "--budget", "40%",
                          "--max-positions", "2", "--store", url], check=False, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("sg_") and "40%" in out.stdout and "max 2 positions" in out.stdout
    listed = subprocess.run([SIZEGUARD, "bots", "list", "--store", url, "--json"], check=False, env=env,
                            capture_output=True, text=True, timeout=60)
    rows = json.loads(listed.stdout)
    assert [(b["name"], b["budget"], b["max_positions"]) for b in rows] == [("scalper", 0.4, 2)]
    assert token not in listed.stdout and "token" not in listed.stdout
    dup = subprocess.run([SIZEGUARD, "bots", "add", "scalper", "--store", url], check=False, env=env,
                         capture_output=True, text=True, timeout=60)
    assert dup.returncode == 2 and "exists" in dup.stderr
    bad = subprocess.run([SIZEGUARD, "bots", "add", "x", "--budget", "140%", "--store", url], check=False,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "budget" in bad.stderr
    gone = subprocess.run([SIZEGUARD, "bots", "remove", "scalper", "--store", url], check=False, env=env,
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 0
    again = subprocess.run([SIZEGUARD, "bots", "remove", "scalper", "--store", url], check=False, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2


# ----------------------------------------------------------------------------- decisions


def _policy() -> object:
    return resolve(None, None, (), ENV).policy


def test_decision_is_the_core_decision(server: Server, url: str, markets: Path) -> None:
    token = add_bot(url, "alpha")
    body = {**BUY, "symbol": ETH, "price": 3000.0, "stop_pct": 1.5}
    r = post(server, "/v1/decisions", token, body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    got = r.json()
    market = load_markets(markets)[ETH]
    want = decide(Intent(ETH, "long", 3000.0, stop_pct=1.5), Account(equity=10000.0), market,
                  _policy()).to_dict()  # type: ignore[arg-type]
    for key, value in want.items():
        assert got[key] == value, key
    assert got["reservation"] is None and got["journal_id"] > 0
    assert got["bound_by"] == "account" and got["client_order_id"].startswith("sg")
    # without a reservation nothing is held
    assert get(server, "/v1/positions", token).json()["reservations"] == []


def test_new_account_needs_equity(server: Server, url: str) -> None:
    token = add_bot(url, "alpha")
    body = is_problem(post(server, "/v1/decisions", token, {**BUY, "equity": None}), 422)
    assert body["field"] == "equity"
    assert post(server, "/v1/decisions", token, BUY).status_code == 200
    # from now on the account exists: equity may be left out
    assert post(server, "/v1/decisions", token, {k: v for k, v in BUY.items()
                                                 if k != "equity"}).status_code == 200


def test_reserve_release_and_ownership(server: Server, url: str) -> None:
    alpha, beta = add_bot(url, "alpha"), add_bot(url, "beta")
    d = post(server, "/v1/decisions", alpha, {**BUY, "reserve": True}).json()
    res = d["reservation"]
    assert d["status"] == "accepted" and res["status"] == "held" and res["amount"] == "0.002"
    mine = get(server, "/v1/positions", alpha).json()
    assert [r["id"] for r in mine["reservations"]] == [res["id"]]
    assert get(server, "/v1/positions", beta).json()["reservations"] == []
    everyone = get(server, "/v1/positions", beta, scope="account").json()
    assert [(r["id"], r["mine"]) for r in everyone["reservations"]] == [(res["id"], False)]
    is_problem(httpx.delete(f"{server.url}/v1/reservations/{res['id']}", headers=auth(beta)), 403)
    is_problem(httpx.delete(f"{server.url}/v1/reservations/res_nope", headers=auth(alpha)), 404)
    r = httpx.delete(f"{server.url}/v1/reservations/{res['id']}", headers=auth(alpha))
    assert r.status_code == 200 and r.json()["released"] is True
    assert r.json()["reservation"]["status"] == "released"
    again = httpx.delete(f"{server.url}/v1/reservations/{res['id']}", headers=auth(alpha))
    is_problem(again, 409)  # released twice: docs/http.md says 409, not a second 200
    assert get(server, "/v1/state", alpha).json()["live_reservations"] == 0


def test_fill_close_journal(server: Server, url: str) -> None:
    alpha, beta = add_bot(url, "alpha"), add_bot(url, "beta")
    d = post(server, "/v1/decisions", alpha, {**BUY, "reserve": True, "stop": 49000.0}).json()
    rid = d["reservation"]["id"]
    amount, notional = d["reservation"]["amount"], d["reservation"]["notional"]
    fill = {"reservation_id": rid, "amount": amount, "price": 50000.0, "fee": 0.05,
            "stop_price": 49000.0, "order_id": "ex-1"}
    is_problem(post(server, "/v1/fills", beta, fill), 403)
    is_problem(post(server, "/v1/fills", alpha, {**fill, "reservation_id": "res_nope"}), 404)
    r = post(server, "/v1/fills", alpha, fill)
    assert r.status_code == 200, r.text
    pos = r.json()["position"]
    assert pos["status"] == "open" and pos["amount"] == amount and pos["notional"] == notional
    assert [p["id"] for p in get(server, "/v1/positions", alpha).json()["positions"]] == [pos["id"]]
    is_problem(post(server, "/v1/closes", beta, {"position_id": pos["id"], "price": 51000.0}), 403)
    is_problem(post(server, "/v1/closes", alpha, {"position_id": "pos_x", "price": 1.0}), 404)
    c = post(server, "/v1/closes", alpha, {"position_id": pos["id"], "price": 51000.0, "fee": 0.05})
    assert c.status_code == 200, c.text
    closed = c.json()
    assert closed["position"]["status"] == "closed"
    assert closed["position"]["pnl"] == pytest.approx(notional * (51000 / 50000 - 1) - 0.05)
    assert closed["state"]["symbol_stats"][BTC]["wins"] == 1
    kinds = [e["kind"] for e in get(server, "/v1/journal", alpha).json()["entries"]]
    assert kinds == ["decision", "fill", "close"]
    assert get(server, "/v1/journal", beta).json()["entries"] == []
    last = get(server, "/v1/journal", alpha, last=1, kind="decision").json()["entries"]
    assert len(last) == 1 and last[0]["data"]["trace"] and last[0]["snapshot_id"].startswith("markets@")
    is_problem(get(server, "/v1/journal", alpha, last=0), 422)


def test_orders_on_the_paper_exchange(server: Server, url: str) -> None:
    token = add_bot(url, "alpha")
    r = post(server, "/v1/orders", token, {**BUY, "stop": 49000.0, "take_profit": 53000.0})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "filled" and out["position"]["amount"] == out["decision"]["amount"]
    assert [o["kind"] for o in out["orders"]] == ["entry", "stop", "take_profit"]
    assert out["decision"]["status"] == "accepted"
    state = get(server, "/v1/state", token).json()
    assert state["open_positions"] == 1 and state["live_reservations"] == 0
    assert state["bot"]["open_positions_and_reservations"] == 1
    # a business "no" is a 200 with status skipped and its reasons
    no = post(server, "/v1/orders", token, {**BUY, "price": 50000.0, "equity": 1.0})
    assert no.status_code == 200 and no.json()["status"] == "skipped"
    assert no.json()["decision"]["reasons"]


def test_business_no_is_200_skipped(server: Server, url: str) -> None:
    token = add_bot(url, "alpha")
    reasons = []
    for i in range(5):
        d = post(server, "/v1/decisions", token, {**BUY, "symbol": sym(i), "reserve": True}).json()
        reasons.append((d["status"], d["reasons"]))
    assert [s for s, _ in reasons] == ["accepted"] * 4 + ["skipped"]
    assert reasons[-1][1] == ["MAX_POSITIONS"]


# ----------------------------------------------------------------------------- budgets


def test_bot_budget_and_slots_inside_account_limits(server: Server, url: str) -> None:
    small = add_bot(url, "small", budget=0.4, max_positions=2)
    big = add_bot(url, "big")
    got = []
    for i in range(3):
        d = post(server, "/v1/decisions", small, {**BUY, "symbol": sym(i), "reserve": True}).json()
        got.append((d["status"], d["reasons"][-1:] if d["status"] == "skipped" else [],
                    d["bound_by"]))
    assert got[:2] == [("accepted", [], "account")] * 2
    assert got[2] == ("skipped", ["MAX_POSITIONS"], "bot")  # the bot's own 2 slots
    # the account has 4: the big bot gets the other 2, then the account-wide limit says no
    statuses = [post(server, "/v1/decisions", big,
                     {**BUY, "symbol": sym(i), "reserve": True}).json()["status"]
                for i in range(3, 6)]
    assert statuses == ["accepted", "accepted", "skipped"]
    st = get(server, "/v1/state", small).json()
    assert st["live_reservations"] == 4 and st["bot"]["open_positions_and_reservations"] == 2


def test_budget_share_sizes_from_the_bots_equity(server: Server, url: str, markets: Path) -> None:
    """Risk sizing (ai-atr-risk): a 40% bot risks 40% of what the account would."""
    small, big = add_bot(url, "small", budget=0.4), add_bot(url, "big")
    body = {**BUY, "price": 87669.0, "atr": 2000.0, "confidence": 0.52, "preset": "ai-atr-risk",
            "equity": 8930.41}
    # a request may name a preset only when the account's admin allows it
    assert post(server, "/v1/decisions", big, {**BUY, "equity": 8930.41}).status_code == 200
    assert post(server, "/v1/decisions", big, body).status_code == 403
    store = open_store(url)
    try:
        store.set_presets("default", ["ai-atr-risk"])
    finally:
        store.close()
    full = post(server, "/v1/decisions", big, body).json()
    part = post(server, "/v1/decisions", small, body).json()
    assert part["bound_by"] == "bot" and full["bound_by"] == "account"
    policy = resolve("ai-atr-risk", None, (), None).policy
    market = load_markets(markets)[BTC]
    intent = Intent(BTC, "long", 87669.0, atr=2000.0, confidence=0.52)
    want = decide(intent, Account(equity=8930.41 * 0.4, available=8930.41 * 0.4), market,
                  policy.__class__(**{**{f: getattr(policy, f) for f in policy.__slots__},
                                      "limits": _policy().limits}))  # type: ignore[attr-defined]
    assert part["amount"] == want.amount and part["notional"] == pytest.approx(want.notional)
    assert part["notional"] < full["notional"]


# ----------------------------------------------------------------------------- idempotency


def test_idempotency_key_returns_the_first_answer(server: Server, url: str) -> None:
    alpha, beta = add_bot(url, "alpha"), add_bot(url, "beta")
    body = {**BUY, "reserve": True}
    first = post(server, "/v1/decisions", alpha, body, **{"Idempotency-Key": "k-1"})
    again = post(server, "/v1/decisions", alpha, body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert get(server, "/v1/state", alpha).json()["live_reservations"] == 1
    # the same key with another body is refused; another bot's key space is its own
    other = post(server, "/v1/decisions", alpha, {**body, "price": 50001.0},
                 **{"Idempotency-Key": "k-1"})
    assert is_problem(other, 422)["field"] == "Idempotency-Key"
    theirs = post(server, "/v1/decisions", beta, {**body, "symbol": sym(1)},
                  **{"Idempotency-Key": "k-1"})
    assert theirs.json()["reservation"]["id"] != first.json()["reservation"]["id"]
    # 16 simultaneous retries of one request: one reservation, one answer
    out: list[httpx.Response] = []
    barrier = threading.Barrier(16)

    def retry() -> None:
        barrier.wait()
        out.append(post(server, "/v1/decisions", alpha, {**body, "symbol": sym(2)},
                        **{"Idempotency-Key": "k-2"}))

    threads = [threading.Thread(target=retry) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done = [r for r in out if r.status_code == 200]
    assert all(r.status_code in (200, 409) for r in out) and done
    assert len({r.json()["reservation"]["id"] for r in done}) == 1
    assert get(server, "/v1/state", alpha).json()["live_reservations"] == 3
    # an error answer is kept too; so is a release
    bad = {**BUY, "symbol": "NOPE/USDT:USDT"}
    e1 = post(server, "/v1/decisions", alpha, bad, **{"Idempotency-Key": "k-3"})
    e2 = post(server, "/v1/decisions", alpha, bad, **{"Idempotency-Key": "k-3"})
    assert e1.status_code == e2.status_code == 422 and e1.json() == e2.json()
    rid = first.json()["reservation"]["id"]
    d1 = httpx.delete(f"{server.url}/v1/reservations/{rid}", headers=auth(alpha, **{"Idempotency-Key": "d"}))
    d2 = httpx.delete(f"{server.url}/v1/reservations/{rid}", headers=auth(alpha, **{"Idempotency-Key": "d"}))
    assert d1.json() == d2.json() and d1.json()["released"] is True


def test_idempotent_orders_place_once(server: Server, url: str) -> None:
    token = add_bot(url, "alpha")
    body = {**BUY, "stop": 49000.0}
    a = post(server, "/v1/orders", token, body, **{"Idempotency-Key": "o-1"})
    b = post(server, "/v1/orders", token, body, **{"Idempotency-Key": "o-1"})
    assert a.status_code == b.status_code == 200 and a.json() == b.json()
    assert len(get(server, "/v1/positions", token).json()["positions"]) == 1


# ----------------------------------------------------------------------------- errors


def test_errors_are_problems_naming_the_field(server: Server, url: str) -> None:
    token = add_bot(url, "alpha")
    cases = [
        ({**BUY, "price": -1}, 422, "price"),
        ({**BUY, "price": "abc"}, 422, "price"),
        ({**BUY, "side": "up"}, 422, "side"),
        ({k: v for k, v in BUY.items() if k != "symbol"}, 422, "symbol"),
        ({**BUY, "confidence": 2}, 422, "confidence"),
        ({**BUY, "stop_pct": 1, "stop": 49000.0}, 422, "stop_pct"),  # two stops: the core says no
        ({**BUY, "stop": 51000.0}, 422, "stop"),  # a long's stop above entry
        ({**BUY, "symbol": "NOPE/USDT:USDT"}, 422, "symbol"),
        ({**BUY, "leverage": 0.5}, 422, "leverage"),
        ({**BUY, "sizee": 3}, 422, "sizee"),
        ({**BUY, "preset": "yolo"}, 422, "preset"),
        ([1, 2], 422, "body"),
    ]
    for body, status, field in cases:
        p = is_problem(post(server, "/v1/decisions", token, body), status)
        assert p["field"] == field, (body, p)
        assert p["errors"] and all("reason" in e for e in p["errors"])  # type: ignore[union-attr]
    raw = httpx.post(server.url + "/v1/decisions", content=b'{"symbol": ',
                     headers=auth(token, **{"content-type": "application/json"}))
    assert is_problem(raw, 400)["field"] == "body"
    is_problem(get(server, "/v1/markets/NOPE/USDT", token), 404)
    is_problem(httpx.get(server.url + "/v2/nothing"), 404)
    is_problem(httpx.put(server.url + "/v1/decisions", headers=auth(token)), 405)
    fill = {"reservation_id": "r", "amount": "1e5", "price": 1.0}
    assert is_problem(post(server, "/v1/fills", token, fill), 422)["field"] == "amount"
    long_key = post(server, "/v1/decisions", token, BUY, **{"Idempotency-Key": "k" * 300})
    assert is_problem(long_key, 422)["field"] == "Idempotency-Key"
    assert "Traceback" not in server.output()


# ----------------------------------------------------------------------------- views


def test_markets_state_health_metrics_docs(server: Server, url: str) -> None:
    token = add_bot(url, "alpha")
    m = get(server, f"/v1/markets/{BTC}", token)
    assert m.status_code == 200 and m.json()["symbol"] == BTC and m.json()["tiers"]
    is_problem(get(server, "/v1/state", token), 404)  # no account until the first equity
    post(server, "/v1/decisions", token, {**BUY, "reserve": True})
    st = get(server, "/v1/state", token).json()
    assert st["equity"] == 10000.0 and st["live_reservations"] == 1 and st["policy"]
    assert st["bot"]["name"] == "alpha" and "token_hash" not in json.dumps(st)
    h = httpx.get(server.url + "/healthz").json()
    assert h["status"] == "ok" and h["schema_version"] >= 3
    text = httpx.get(server.url + "/metrics").text
    assert 'sizeguard_decisions_total{status="accepted",reserve="true"} 1' in text
    assert 'sizeguard_http_requests_total{method="POST",route="/v1/decisions",status="200"} 1' in text
    assert "sizeguard_http_request_duration_seconds_bucket" in text
    # the served process froze what its start made out of the collector's reach
    frozen = [ln for ln in text.splitlines() if ln.startswith("sizeguard_gc_frozen_objects ")]
    assert len(frozen) == 1 and float(frozen[0].split()[1]) > 10_000, frozen
    assert 'sizeguard_gc_collections_total{generation="2"}' in text
    assert httpx.get(server.url + "/docs").status_code == 200
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/decisions", "/v1/orders", "/v1/fills", "/v1/closes", "/v1/positions",
            "/v1/state", "/v1/journal", "/v1/markets/{symbol}", "/v1/reservations/{reservation_id}",
            "/healthz", "/metrics"} <= set(spec["paths"])


def test_serve_reads_every_option_from_the_environment(url: str, tmp_path: Path,
                                                      markets: Path) -> None:
    """No flags at all: host, port, store, markets, account and policy from SIZEGUARD_*."""
    port = free_port()
    env = clean_env({**ENV, "SIZEGUARD_HOST": "127.0.0.1", "SIZEGUARD_PORT": str(port),
                     "SIZEGUARD_STORE": url, "SIZEGUARD_MARKETS": str(markets),
                     "SIZEGUARD_ACCOUNT": "desk", "SIZEGUARD_WORKERS": "1",
                     "SIZEGUARD_ACCESS_LOG": "false"})
    token = add_bot(url, "alpha", account="desk")
    log = (tmp_path / "env-serve.log").open("wb")
    proc = subprocess.Popen([SIZEGUARD, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        h = httpx.get(base + "/healthz", timeout=10).json()
        assert h["account"] == "desk" and h["markets"].startswith("markets@")
        d = httpx.post(base + "/v1/decisions", headers=auth(token), timeout=10,
                       json={**BUY, "symbol": sym(3), "reserve": True}).json()
        assert d["status"] == "accepted" and d["policy"] == "viper-fixed-margin"
        assert d["reservation"]["account_id"] == "desk"
        # a bot of another account is refused by this service
        other = add_bot(url, "elsewhere", account="other")
        r = httpx.post(base + "/v1/decisions", headers=auth(other), json=BUY, timeout=10)
        assert r.status_code == 403
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        log.close()


def test_serve_live_needs_exchange_and_key(url: str) -> None:
    """--live refuses to start without a ccxt exchange id or the API key (offline check)."""
    base = [SIZEGUARD, "serve", "--store", url, "--port", str(free_port()), "--live"]
    no_exchange = subprocess.run(base, env=clean_env(), capture_output=True, text=True,
                                 timeout=60, check=False)
    assert no_exchange.returncode == 2 and "--exchange" in no_exchange.stderr
    no_key = subprocess.run([*base, "--exchange", "binanceusdm"], env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert no_key.returncode == 2 and "SIZEGUARD_API_KEY" in no_key.stderr
