"""Crash-safe idempotency on the real server: ``sizeguard serve`` is killed with SIGKILL at
random points while 8 clients reserve decisions with an ``Idempotency-Key`` each, and
restarted on the same port; every client retries its key until it is answered.

Afterwards: a retry of every key gets the same answer, byte for byte; every answered decision
is in the journal, decided exactly once; every reservation belongs to an answered decision (no
orphan) and expires by its TTL. SQLite with 1 process, PostgreSQL with 2 (``--workers 2``).
Bounded: 3 kills (2 on PostgreSQL), at most 25 keys per client; ~25-50 s per store.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import storefix
from httpfix import Server, add_bot, auth, many_markets, start_server, sym
from sizeguard.adapters.sql_store import open_store

pytestmark = pytest.mark.timeout(180)
store_url = storefix.store_url

TTL = 4.0  # seconds a reservation is held (short, so orphans would show)
ENV = {"SIZEGUARD_PRESET": "viper-fixed-margin", "SIZEGUARD_RESERVATION_TTL": str(TTL),
       "SIZEGUARD_IDEMPOTENCY_LEASE": "1"}
CLIENTS, KEYS = 8, 25


class Load:
    """Clients that each send keyed reserving decisions, retrying a key until answered."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.answers: dict[str, tuple[dict[str, Any], str]] = {}
        self.unexpected: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def body(self, i: int, n: int) -> dict[str, Any]:
        return {"symbol": sym((i * KEYS + n) % 64), "side": "long", "price": 50000.0,
                "equity": 10000.0, "reserve": True}

    def client(self, i: int) -> None:
        with httpx.Client(timeout=10) as http:
            for n in range(KEYS):
                if self.stop.is_set():
                    return
                key, body = f"k{i}-{n}", self.body(i, n)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        r = http.post(self.url + "/v1/decisions", json=body,
                                      headers=auth(self.token, **{"Idempotency-Key": key}))
                    except httpx.HTTPError:  # the server is down: retry the same key
                        time.sleep(0.1)
                        continue
                    if r.status_code in (409, 503):  # claimed by a dead process, or busy
                        time.sleep(0.2)
                        continue
                    with self.lock:
                        if r.status_code == 200:
                            self.answers[key] = (body, r.text)
                        else:
                            self.unexpected.append(f"{key}: {r.status_code} {r.text[:200]}")
                    break
                else:
                    with self.lock:
                        self.unexpected.append(f"{key}: never answered")


def _kill(server: Server) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def test_sigkill_under_load_loses_no_answer_and_leaves_no_orphan(store_url: str,
                                                                  tmp_path: Path) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    postgres = store_url.startswith("postgres")
    workers, kills = (2, 2) if postgres else (1, 3)  # 2 processes restart slower
    markets = many_markets(tmp_path / "markets.json", 64)
    args = ("--markets", str(markets))
    token = add_bot(store_url, "alpha")
    server = start_server(store_url, tmp_path, workers=workers, env=ENV, args=args)
    load = Load(server.url, token)
    threads = [threading.Thread(target=load.client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))  # under load: a random point of some request
            _kill(server)
            server = start_server(store_url, tmp_path, workers=workers, env=ENV, args=args,
                                  port=server.port)
        time.sleep(1.0)
        load.stop.set()
        for t in threads:
            t.join(90)
        assert not load.unexpected, load.unexpected[:5]
        assert len(load.answers) >= CLIENTS * 2, "too little load to mean anything"

        # every retry with the same key gets the same answer, byte for byte
        with httpx.Client(timeout=10) as http:
            for key, (body, text) in load.answers.items():
                r = http.post(server.url + "/v1/decisions", json=body,
                              headers=auth(token, **{"Idempotency-Key": key}))
                assert r.status_code == 200 and r.headers.get("idempotent-replayed") == "true", key
                assert r.text == text, key
    finally:
        load.stop.set()
        server.stop()

    answered = {k: json.loads(text) for k, (_, text) in load.answers.items()}
    store = open_store(store_url)
    try:
        decisions = store.journal("default", kind="decision")
        by_cid: dict[str | None, list[int]] = {}
        for e in decisions:
            by_cid.setdefault(e.client_order_id, []).append(e.id)
        # no answered decision lost, and each decided exactly once (a retry that took over a
        # dead request's key resumed its client order id instead of deciding again)
        for key, a in answered.items():
            assert by_cid.get(a["client_order_id"]) == [a["journal_id"]], key
        assert len(decisions) == len(answered)
        # no orphan: every reservation is an answered decision's, and lapses by its TTL
        cids = {a["client_order_id"] for a in answered.values()}
        for res in store.reservations("default", live_only=False):
            assert res.client_order_id in cids, res
            assert res.expires_at - res.created_at == pytest.approx(TTL)
        accepted = sum(1 for a in answered.values() if a["status"] == "accepted")
        assert accepted > 0 and accepted == len(store.reservations("default", live_only=False))
    finally:
        store.close()
