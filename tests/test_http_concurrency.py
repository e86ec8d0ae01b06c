"""Scale-out: two ``sizeguard serve`` processes on one PostgreSQL database share reservations.
64 concurrent clients (a barrier releases them together, half on each server) never exceed
max positions or the gross exposure cap: exact counts."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import storefix
from httpfix import Server, add_bot, auth, many_markets, serving, sym
from sizeguard.adapters.sql_store import open_store

pytestmark = pytest.mark.timeout(240)
N = 64


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    url = storefix.make_url("postgres", tmp_path)
    yield url
    storefix.drop(url)


def _storm(servers: list[Server], tokens: list[str], body_for: Any) -> list[dict[str, Any]]:
    barrier = threading.Barrier(N, timeout=60)
    out: list[Any] = [None] * N

    def client(i: int) -> None:
        server, token = servers[i % len(servers)], tokens[i % len(tokens)]
        with httpx.Client(base_url=server.url, headers=auth(token), timeout=60) as c:
            c.get("/healthz")  # connected before the barrier
            barrier.wait()
            r = c.post("/v1/decisions", json=body_for(i))
            out[i] = r.json() if r.status_code == 200 else {"status": f"http {r.status_code}",
                                                             "body": r.text}

    threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def _two_servers(url: str, tmp_path: Path, env: dict[str, str]) -> Any:
    markets = many_markets(tmp_path / "markets.json", N)
    args = ("--markets", str(markets))
    return serving(url, tmp_path, env=env, args=args), serving(url, tmp_path, env=env, args=args)


def test_max_positions_hold_across_two_servers(pg_url: str, tmp_path: Path) -> None:
    env = {"SIZEGUARD_PRESET": "viper-fixed-margin", "SIZEGUARD_LIMITS__MAX_POSITIONS": "4"}
    tokens = [add_bot(pg_url, "a"), add_bot(pg_url, "b")]
    a, b = _two_servers(pg_url, tmp_path, env)
    with a as s1, b as s2:
        assert s1.proc.pid != s2.proc.pid
        out = _storm([s1, s2], tokens, lambda i: {"symbol": sym(i), "side": "long",
                                                  "price": 50000.0, "equity": 10000.0,
                                                  "reserve": True})
    counts = Counter(d["status"] for d in out)
    assert counts == {"accepted": 4, "skipped": 60}, out
    assert Counter(tuple(d["reasons"]) for d in out if d["status"] == "skipped") == {
        ("MAX_POSITIONS",): 60}
    store = open_store(pg_url)
    try:
        held = store.reservations("default")
        assert len(held) == 4 and len({r.symbol for r in held}) == 4
        assert {r.id for r in held} == {d["reservation"]["id"] for d in out
                                        if d["status"] == "accepted"}
        assert len(store.journal("default", kind="decision")) == N
    finally:
        store.close()


def test_gross_exposure_and_bot_slots_hold_across_two_servers(pg_url: str, tmp_path: Path) -> None:
    """Gross cap 1,000 at 100 notional a trade: exactly 10 reservations, 1,000 in all; the
    bot limited to 3 slots never holds more than 3 of them."""
    env = {"SIZEGUARD_PRESET": "viper-fixed-margin",
           "SIZEGUARD_LIMITS__MAX_GROSS_EXPOSURE": "1000"}
    tokens = [add_bot(pg_url, "capped", max_positions=3), add_bot(pg_url, "free")]
    a, b = _two_servers(pg_url, tmp_path, env)
    with a as s1, b as s2:
        out = _storm([s1, s2], tokens, lambda i: {"symbol": sym(i), "side": "long",
                                                  "price": 50000.0, "equity": 10000.0,
                                                  "reserve": True})
    accepted = [d for d in out if d["status"] == "accepted"]
    assert len(accepted) == 10, Counter(d["status"] for d in out)
    assert sum(d["notional"] for d in accepted) == pytest.approx(1000.0)
    capped = [d for i, d in enumerate(out) if i % 2 == 0 and d["status"] == "accepted"]
    assert len(capped) <= 3
    assert {d["status"] for d in out} == {"accepted", "skipped"}
    store = open_store(pg_url)
    try:
        rs = store.risk_state("default")
        assert rs.live_reservations == 10 and rs.gross_exposure == pytest.approx(1000.0)
    finally:
        store.close()
