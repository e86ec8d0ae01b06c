"""The side caps through the real HTTP service (``sizeguard serve`` on loopback, SQLite):
32 concurrent reserving clients, alternating long and short on their own symbols, against 3
long and 2 short slots set from the environment. Runtime: about 10 s (one server start)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from httpfix import add_bot, auth, many_markets, serving, sym

pytestmark = pytest.mark.timeout(180)
N = 32


def test_side_caps_hold_through_the_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    token = add_bot(url, "a")
    env = {"SIZEGUARD_PRESET": "viper-fixed-margin",
           "SIZEGUARD_LIMITS__MAX_LONG_POSITIONS": "3",
           "SIZEGUARD_LIMITS__MAX_SHORT_POSITIONS": "2"}
    markets = many_markets(tmp_path / "markets.json", N)
    barrier = threading.Barrier(N, timeout=60)
    out: list[Any] = [None] * N
    with serving(url, tmp_path, env=env, args=("--markets", str(markets))) as server:
        def client(i: int) -> None:
            with httpx.Client(base_url=server.url, headers=auth(token), timeout=60) as c:
                c.get("/healthz")
                barrier.wait()
                r = c.post("/v1/decisions", json={
                    "symbol": sym(i), "side": "long" if i % 2 == 0 else "short",
                    "price": 50000.0, "equity": 10000.0, "reserve": True})
                out[i] = r.json() if r.status_code == 200 else {"status": r.status_code,
                                                                 "body": r.text}

        threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    accepted = Counter(d["side"] for d in out if d["status"] == "accepted")
    assert accepted == {"long": 3, "short": 2}, out
    reasons = Counter(tuple(d["reasons"]) for d in out if d["status"] == "skipped")
    assert reasons == {("MAX_LONG_POSITIONS",): 13, ("MAX_SHORT_POSITIONS",): 14}, out
