"""A store that comes back (#11 item 4), on the REAL server (two worker processes) over a
PRIVATE PostgreSQL cluster (started by the test on its own port: the shared server is never
stopped).

* restart under load: 4 clients deciding in a loop; the database is stopped for 3 s and started
  again. 503 with Retry-After while it is down; full service within 2 s of its return. Measured
  before: up to 53 s more of 503 (each thread reused its dead connection).
* a hung database (every process of the cluster SIGSTOPped: connections are accepted and never
  answered): a request gets 503 within the store's time bound instead of hanging, and /healthz
  answers within its own 2 s meanwhile; service is back within 2 s of the database's.
* the store URL's password appears in no answer and no log line.

Heavy: initdb, a cluster and a server; ~30-40 s.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from httpfix import BTC, add_bot, auth, serving
from pgcluster import PgCluster, private_cluster

pytestmark = pytest.mark.timeout(180)
BUY = {"symbol": BTC, "side": "long", "price": 50000.0, "stop_pct": 2.0}
STORE_TIMEOUT = 2.0  # the server's SIZEGUARD_STORE_TIMEOUT: the watchdog cuts at 3.5 s


@dataclass
class Hit:
    start: float
    end: float
    status: int
    retry_after: str | None


class Load:
    """``n`` clients deciding (quotes) in a loop, 20 ms apart, until stopped."""

    def __init__(self, url: str, token: str, n: int = 4) -> None:
        self.url, self.token, self.n = url, token, n
        self.hits: list[Hit] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(n)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers=auth(self.token), timeout=20) as c:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    r = c.post("/v1/decisions", json=BUY)
                    status, retry = r.status_code, r.headers.get("retry-after")
                except httpx.HTTPError:
                    status, retry = 0, None
                self.hits.append(Hit(start, time.monotonic(), status, retry))
                time.sleep(0.02)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def _first_ok_after(hits: list[Hit], t: float) -> float:
    return min(h.end for h in hits if h.start >= t and h.status == 200) - t


def test_outage_restart_and_hang(tmp_path: Path) -> None:
    with private_cluster() as pg:
        url = pg.url.replace("postgres@", "postgres:hunter2-secret@")  # trust auth ignores it
        token = add_bot(url, "loader")
        env = {"SIZEGUARD_STORE_TIMEOUT": str(STORE_TIMEOUT), "SIZEGUARD_RETRY_AFTER": "1",
               "SIZEGUARD_PRESET": "quantum-4x30", "SIZEGUARD_LOG_LEVEL": "info"}
        with serving(url, tmp_path, env=env, workers=2) as server:  # two replicas
            r = httpx.post(server.url + "/v1/decisions", headers=auth(token), timeout=30,
                           json={**BUY, "equity": 10_000.0})
            assert r.status_code == 200, r.text
            _restart(pg, server.url, token)
            _hang(pg, server.url, token)
            log = server.output()
        assert "hunter2-secret" not in log, log[-2000:]
        assert "Traceback" not in log, log[-3000:]
        assert "Child process" not in log, log[-3000:]  # no worker was found hung and killed


def _restart(pg: PgCluster, base: str, token: str) -> None:
    with Load(base, token) as load:
        time.sleep(1.5)
        stopped = time.monotonic()
        pg.stop("fast")
        down = time.monotonic()
        time.sleep(3.0)
        restarting = time.monotonic()  # pg_ctl accepts connections before it returns
        pg.start()  # returns once the database accepts connections
        up = time.monotonic()
        time.sleep(4.0)
    hits = load.hits
    before = [h for h in hits if h.end < stopped]
    during = [h for h in hits if h.start > down + 0.2 and h.end < restarting]
    after = [h for h in hits if h.start > up + 2.0]
    assert before and all(h.status == 200 for h in before), [h.status for h in before]
    assert during, "no request while the database was down"
    assert all(h.status == 503 and h.retry_after == "1" for h in during), \
        {(h.status, h.retry_after) for h in during}
    back = _first_ok_after(hits, up)
    assert after and all(h.status == 200 for h in after), [h.status for h in after]
    worst = max(h.end - h.start for h in during)
    print(f"\nrestart: {len(before)} x 200 before; {len(during)} x 503 (Retry-After 1) during "
          f"the {up - down:.1f} s outage, slowest {worst * 1000:.0f} ms; first 200 "
          f"{back * 1000:.0f} ms after the database accepted connections; {len(after)} x 200 "
          "from 2 s after")
    assert back < 2.0, back


def _hang(pg: PgCluster, base: str, token: str) -> None:
    limit = 1.5 * STORE_TIMEOUT + 0.5
    with httpx.Client(base_url=base, headers=auth(token), timeout=30) as c:
        assert c.post("/v1/decisions", json=BUY).status_code == 200
        frozen = pg.freeze()
        try:
            hung: list[tuple[int, float]] = []

            def decide() -> None:
                start = time.monotonic()
                status = c.post("/v1/decisions", json=BUY).status_code
                hung.append((status, time.monotonic() - start))

            t = threading.Thread(target=decide)
            t.start()
            time.sleep(0.3)
            start = time.monotonic()
            health = c.get("/healthz")
            health_took = time.monotonic() - start
            t.join(30)
        finally:
            pg.thaw(frozen)
        thawed = time.monotonic()
        while c.post("/v1/decisions", json=BUY).status_code != 200:
            assert time.monotonic() - thawed < 2.0, "no service 2 s after the database thawed"
            time.sleep(0.05)
        back = time.monotonic() - thawed
    print(f"hang: a decision got {hung[0][0]} after {hung[0][1]:.2f} s (bound {limit:.1f} s); "
          f"/healthz {health.status_code} in {health_took:.2f} s meanwhile; 200 again "
          f"{back * 1000:.0f} ms after the database resumed")
    assert hung and hung[0][0] == 503 and hung[0][1] < limit + 1.5, hung
    assert health.status_code == 503 and health_took < 3.0, (health.status_code, health_took)
