"""Decisions per second and latency of the HTTP service, beside a bare FastAPI endpoint, in one
run. Loopback only; bounded in requests and in time.

    .venv/bin/python bench/bench_http.py [--requests 4000] [--seconds 20] [--concurrency 16]
                                         [--workers 1] [--store URL]

What runs:

* ``sizeguard serve`` (a subprocess, uvicorn on a free 127.0.0.1 port) over a fresh SQLite
  file, or ``--store postgresql://...`` (a fresh schema, dropped afterwards). Policy
  viper-fixed-margin (100 notional a trade) with adding allowed, so every decision is accepted
  and **reserves** (``reserve: true``): the full path of a bot asking before it trades
  (bearer auth, validation, the store's locked transaction: load the account, core decide,
  journal, insert the reservation, commit). Reservations live 50 ms (``ttl``), so the account
  holds a steady few dozen, as when bots fill or release quickly.
* the **ceiling**: a bare FastAPI endpoint on the same uvicorn settings, parsing the same
  request model and answering a constant JSON (the framework and the server, nothing else).

The load generator is asyncio over raw keep-alive HTTP/1.1 connections (much cheaper than an
HTTP client library, so the 2 cores go to the server): ``--concurrency`` connections, each
sending its next request when the previous answer arrived (closed loop), until ``--requests``
answers or ``--seconds``, whichever first. Every answer is checked (status 200; decisions
``accepted`` with a reservation). Printed: requests/s, p50/p99/max latency, and the ratio of
the service to the ceiling, and the server's CPU time per answer (all its processes, from
/proc: the machine's other load does not inflate it), i.e. what one core could serve if the
disk and the lock did not bind first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchjson import Emitter, json_output

HOST = "127.0.0.1"
BODY = {"symbol": "BTC/USDT:USDT", "side": "long", "price": 50000.0, "equity": 10000.0,
        "reserve": True, "ttl": 0.05}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def env_for(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIZEGUARD_")}
    env.update({"SIZEGUARD_SEED_ALIASES": "off", "SIZEGUARD_ACCESS_LOG": "false",
                "SIZEGUARD_LOG_LEVEL": "warning", **extra})
    return env


def wait_up(port: int, proc: subprocess.Popen[bytes], seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit("server did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# ----------------------------------------------------------------------------- the ceiling


def bare_server(port: int, workers: int) -> None:
    """The bare endpoint (run in a subprocess by this script)."""
    import uvicorn

    uvicorn.run("bench_http:bare_app", factory=True, host=HOST, port=port, workers=workers,
                log_level="warning", access_log=False, server_header=False,
                app_dir=str(Path(__file__).parent))


def bare_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import Response

    from sizeguard.http.models import DecisionRequest

    globals()["DecisionRequest"] = DecisionRequest  # the endpoint's annotation is a string
    app = FastAPI()
    answer = json.dumps({"status": "accepted", "reasons": [], "amount": "0.002"}).encode()

    @app.post("/v1/decisions")
    async def decisions(body: DecisionRequest) -> Response:
        return Response(answer, media_type="application/json")

    return app


# ----------------------------------------------------------------------------- load


async def load(port: int, request: bytes, total: int, seconds: float, concurrency: int,
               check: bool) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = time.perf_counter() + seconds

    async def conn() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while sent < total and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors.append(f"{status} {body[:200]!r}")
                elif check and (b'"status":"accepted"' not in body or b'"reservation":{' not in body):
                    errors.append(f"not accepted and reserved: {body[:300]!r}")
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {"n": n, "elapsed": elapsed, "rate": n / elapsed if elapsed else 0.0,
            "p50": latencies[n // 2] * 1e3 if n else 0.0,
            "p99": latencies[min(n - 1, int(n * 0.99))] * 1e3 if n else 0.0,
            "max": latencies[-1] * 1e3 if n else 0.0, "errors": errors}


def http_request(port: int, token: str | None) -> bytes:
    body = json.dumps(BODY, separators=(",", ":")).encode()
    head = (f"POST /v1/decisions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token else "")
            + f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every process of the group ``pgid`` (the
    server and its workers): a measure that the machine's other load does not inflate."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "pid (comm)": state ppid pgrp ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measured(port: int, token: str | None, args: argparse.Namespace, check: bool,
             pgid: int) -> dict[str, Any]:
    before = group_cpu(pgid)
    r = run_load(port, token, args, check)
    r["cpu_ms"] = (group_cpu(pgid) - before) / r["n"] * 1e3 if r["n"] else 0.0
    return r


def run_load(port: int, token: str | None, args: argparse.Namespace, check: bool,
             total: int | None = None) -> dict[str, Any]:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(load(port, http_request(port, token), total or args.requests,
                            args.seconds, args.concurrency, check))


def scrape(port: int) -> dict[str, float]:
    """The group-commit counters of /metrics (of the worker that answers)."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    out = {}
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("sizeguard_group_commit_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def report(name: str, r: dict[str, Any]) -> None:
    print(f"{name:34s} {r['n']:7d} {r['rate']:10.0f} {r['p50']:8.2f} {r['p99']:8.2f} "
          f"{r['max']:8.2f} {r['cpu_ms']:8.3f} {len(r['errors']):7d}")
    for e in r["errors"][:3]:
        print(f"    error: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=4000, help="answers per case (bound)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time per case (bound)")
    ap.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--max-batch", type=int, default=64,
                    help="decisions per group commit (1: one transaction per decision)")
    ap.add_argument("--store", default=None, help="postgresql://... (default: a fresh SQLite file)")
    ap.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true",
                    help="one JSON object per case per line on stdout (the report goes to stderr)")
    args = ap.parse_args()
    if args.bare_server is not None:
        bare_server(args.bare_server, args.workers)
        return
    with json_output(args.json) as emit:
        run(args, emit)


def run(args: argparse.Namespace, emit: Emitter) -> None:
    if args.requests < 1 or args.requests > 1_000_000 or args.seconds <= 0 or args.seconds > 600:
        raise SystemExit("--requests in [1, 1e6] and --seconds in (0, 600]")

    from sizeguard.adapters.bots import BotRegistry
    from sizeguard.adapters.sql_store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="sizeguard-bench-"))
    schema = None
    if args.store:
        schema = f"sgbench_{uuid.uuid4().hex[:10]}"
        url = f"{args.store}{'&' if '?' in args.store else '?'}schema={schema}"
    else:
        url = f"sqlite:///{tmp / 'state.db'}"
    store = open_store(url)
    _, token = BotRegistry(store).add("bench", account_id="default")
    store.close()

    sizeguard = str(Path(sys.executable).with_name("sizeguard"))
    port = free_port()
    env = env_for({"SIZEGUARD_PRESET": "viper-fixed-margin", "SIZEGUARD_LIMITS__ALLOW_ADD": "true",
                   "SIZEGUARD_MAX_BATCH": str(args.max_batch)})
    serve = subprocess.Popen([sizeguard, "serve", "--host", HOST, "--port", str(port),
                              "--workers", str(args.workers), "--store", url],
                             env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=(tmp / "serve.log").open("wb"))
    bare_port = free_port()
    try:
        wait_up(port, serve)
        run_load(port, token, args, check=True, total=200)  # warm-up (opens the account)
        service = measured(port, token, args, True, serve.pid)
        service["metrics"] = scrape(port)
    finally:
        stop(serve)
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port),
                             "--workers", str(args.workers)], env=env_for({}),
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "bare.log").open("wb"))
    try:
        wait_up(bare_port, bare)
        run_load(bare_port, None, args, check=False, total=200)
        ceiling = measured(bare_port, None, args, False, bare.pid)
    finally:
        stop(bare)
    if schema is not None:
        store = open_store(url)
        store.drop_schema()  # type: ignore[attr-defined]
        store.close()

    load_avg = os.getloadavg()
    print(f"sizeguard HTTP bench: {os.cpu_count()} CPUs, load {load_avg[0]:.2f}, store "
          f"{'PostgreSQL' if schema else 'SQLite (WAL, synchronous=FULL)'}, "
          f"{args.workers} worker(s), {args.concurrency} connections, max batch {args.max_batch}, "
          f"bounds {args.requests} requests / {args.seconds:g} s per case")
    print(f"{'case':34s} {'answers':>7s} {'req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'max ms':>8s} {'CPU ms':>8s} {'errors':>7s}")
    report("POST /v1/decisions, reserve: true", service)
    report("bare FastAPI endpoint (ceiling)", ceiling)
    m = service.get("metrics", {})
    batches = m.get("sizeguard_group_commit_batches_total", 0.0)
    if batches:
        items = m.get("sizeguard_group_commit_decisions_total", 0.0)
        print(f"group commit (one worker's counters): {items:.0f} decisions in {batches:.0f} "
              f"transactions, {items / batches:.1f} per commit")
    ratio = service["rate"] / ceiling["rate"] if ceiling["rate"] else 0.0
    print(f"service / ceiling: {ratio:.1%} of the rate; server CPU per answer "
          f"{service['cpu_ms']:.3f} ms vs {ceiling['cpu_ms']:.3f} ms "
          f"({ceiling['cpu_ms'] / service['cpu_ms'] if service['cpu_ms'] else 0:.1%}); "
          f"CPU-bound capacity {1000 / service['cpu_ms'] if service['cpu_ms'] else 0:,.0f} "
          f"decisions/s per core")
    print("goal: >= 2,500 decisions/s, p99 <= 10 ms, server CPU <= 0.3 ms per decision")
    where = (f"{'PostgreSQL' if schema else 'SQLite'}, {args.workers} worker"
             f"{'s' if args.workers > 1 else ''}, {args.concurrency} connections")
    emit("http", f"reserved decisions, {where}", service["rate"], "decisions/s",
         baseline="bare FastAPI endpoint", baseline_value=ceiling["rate"],
         p50_ms=service["p50"], p99_ms=service["p99"], max_ms=service["max"],
         cpu_ms=service["cpu_ms"], errors=len(service["errors"]), max_batch=args.max_batch,
         goal=">= 2,500/s", met=service["rate"] >= 2500)
    emit("http", f"server CPU per reserved decision, {where}", service["cpu_ms"], "ms",
         baseline="bare FastAPI endpoint", baseline_value=ceiling["cpu_ms"],
         goal="<= 0.3 ms", met=service["cpu_ms"] <= 0.3)
    if service["errors"] or ceiling["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
