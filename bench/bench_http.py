"""Decisions per second and latency of the HTTP service, beside a bare FastAPI endpoint, in one
run. Loopback only; bounded in requests and in time.

    .venv/bin/python bench/bench_http.py [--requests 4000] [--seconds 20] [--concurrency 16]
                                         [--rate 1000] [--workers 1] [--store URL]
                                         [--pg URL [--pg-workers 2]] [--keyed] [--budget SHARE]
                                         [--profile DIR]

What runs:

* ``sizeguard serve`` (a subprocess, uvicorn on a free 127.0.0.1 port) over a fresh SQLite
  file, or ``--store postgresql://...`` (a fresh schema, dropped afterwards). Policy
  viper-fixed-margin (100 notional a trade) with adding allowed, so every decision is accepted
  and **reserves** (``reserve: true``): the full path of a bot asking before it trades
  (bearer auth, validation, the store's locked transaction: load the account, core decide,
  journal, insert the reservation, commit). Reservations live 50 ms (``ttl``), so the account
  holds a steady few dozen to a hundred (more at a higher rate), as when bots fill or release
  quickly. ``--keyed``: every request also carries its own ``Idempotency-Key`` (as
  ``sizeguard.client`` sends), so the answer is kept with the reservation. ``--budget SHARE``:
  the bench bot gets that share of the account (0.5 = 50%), so every decision is also made on
  the bot's own view (:mod:`sizeguard.budget`), as in a deployment several bots share.
* **closed loop**: ``--concurrency`` keep-alive connections, each sending its next request when
  the previous answer arrived, until ``--requests`` answers or ``--seconds``: the most the
  service answers.
* **open loop** (``--rate``, 0: skip): requests are *scheduled* at a fixed offered rate
  (``--rate`` a second, evenly spaced) whatever the answers do, sent on a pool of keep-alive
  connections (a new one when all are busy, up to 256), and each latency is measured from the
  request's scheduled send time, so queueing in the client or the server is counted
  (coordinated omission would hide it): the latency a bot sees at that load.
* the **ceiling**: a bare FastAPI endpoint on the same uvicorn settings, parsing the same
  request model and answering a constant JSON (the framework and the server, nothing else),
  under the closed loop.
* ``--pg URL``: the same closed and open loops on PostgreSQL with ``--pg-workers`` server
  processes (default 2), in the same run.

The load generator is asyncio over raw keep-alive HTTP/1.1 connections (much cheaper than an
HTTP client library, so the 2 cores go to the server). Every answer is checked (status 200;
decisions ``accepted`` with a reservation). Printed per case: answers/s, p50/p99/max latency,
the server's CPU time per answer (all its processes, from /proc: the machine's other load does
not inflate it), i.e. what one core could serve if the disk and the lock did not bind first,
and the goals. ``--profile DIR``: py-spy samples the server during the closed loop (raw
flamegraph files in DIR, and the top frames printed), and again during the open loop (in
DIR/sqlite-open, DIR/pg-open); needs py-spy.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
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


async def load(port: int, requests: Requests, total: int, seconds: float, concurrency: int,
               check: bool) -> dict[str, Any]:
    """The closed loop: ``concurrency`` connections, each sending when its answer arrived."""
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
                status, body = await exchange(reader, writer, requests.next())
                latencies.append(time.perf_counter() - t0)
                check_answer(status, body, check, errors)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - start, errors)


def http_request(port: int, token: str | None, key: str | None = None) -> bytes:
    body = json.dumps(BODY, separators=(",", ":")).encode()
    head = (f"POST /v1/decisions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token else "")
            + (f"Idempotency-Key: {key}\r\n" if key else "")
            + f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Requests:
    """The request bytes to send: one constant request, or (keyed) a fresh Idempotency-Key each."""

    def __init__(self, port: int, token: str | None, keyed: bool) -> None:
        self.port, self.token, self.keyed = port, token, keyed
        self.fixed = http_request(port, token)
        self.prefix = uuid.uuid4().hex[:12]
        self.n = 0

    def next(self) -> bytes:
        if not self.keyed:
            return self.fixed
        self.n += 1
        return http_request(self.port, self.token, f"b{self.prefix}-{self.n}")


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def check_answer(status: int, body: bytes, check: bool, errors: list[str]) -> None:
    if status != 200:
        errors.append(f"{status} {body[:200]!r}")
    elif check and (b'"status":"accepted"' not in body or b'"reservation":{' not in body):
        errors.append(f"not accepted and reserved: {body[:300]!r}")


def summary(latencies: list[float], elapsed: float, errors: list[str]) -> dict[str, Any]:
    latencies.sort()
    n = len(latencies)
    return {"n": n, "elapsed": elapsed, "rate": n / elapsed if elapsed else 0.0,
            "p50": latencies[n // 2] * 1e3 if n else 0.0,
            "p99": latencies[min(n - 1, int(n * 0.99))] * 1e3 if n else 0.0,
            "max": latencies[-1] * 1e3 if n else 0.0, "errors": errors}


MAX_OPEN_CONNECTIONS = 256


async def open_loop(port: int, requests: Requests, rate: float, total: int, seconds: float,
                    check: bool, timeline: list[tuple[float, float]] | None = None
                    ) -> dict[str, Any]:
    """Requests scheduled ``rate`` a second (request i at start + i / rate), each latency
    measured from its scheduled time; a pool of keep-alive connections, grown when all are
    busy (a late connection counts against the latency too). ``timeline``: gets (scheduled
    offset, latency) seconds of each answer."""
    latencies: list[float] = []
    errors: list[str] = []
    idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
        collections.deque()
    opened: list[asyncio.StreamWriter] = []
    free = asyncio.Condition()
    tasks: set[asyncio.Task[None]] = set()
    n = min(total, int(rate * seconds))

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with free:  # the longest idle first, so every connection stays in use
            if idle:
                return idle.popleft()
            if len(opened) >= MAX_OPEN_CONNECTIONS:
                await free.wait_for(lambda: bool(idle))
                return idle.popleft()
        reader, writer = await asyncio.open_connection(HOST, port)
        opened.append(writer)
        return reader, writer

    async def one(scheduled: float, request: bytes) -> None:
        reader, writer = await connection()
        try:
            status, body = await exchange(reader, writer, request)
        except (OSError, asyncio.IncompleteReadError):
            # the server closed it while it sat idle (its keep-alive timeout): a client sends
            # again on a new connection (the time it took counts)
            writer.close()
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
                opened.append(writer)
                status, body = await exchange(reader, writer, request)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(f"connection: {exc!r}")
                return
        latencies.append(time.perf_counter() - scheduled)
        if timeline is not None:
            timeline.append((scheduled - start, latencies[-1]))
        check_answer(status, body, check, errors)
        async with free:
            idle.append((reader, writer))
            free.notify()

    for _ in range(16):  # a warm pool, as a bot fleet keeps its connections open
        reader, writer = await asyncio.open_connection(HOST, port)
        opened.append(writer)
        idle.append((reader, writer))
    start = time.perf_counter() + 0.01
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled, requests.next()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for writer in opened:
        writer.close()
    out = summary(latencies, elapsed, errors)
    out["offered"] = rate
    out["connections"] = len(opened)
    return out


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
             pgid: int, rate: float = 0.0, profile: Path | None = None) -> dict[str, Any]:
    """One case: the closed loop (``rate`` 0) or the open loop at ``rate``, with the server's
    CPU per answer (and, ``profile``, py-spy sampling the server meanwhile)."""
    spy = start_profile(pgid, args.seconds, profile) if profile is not None else None
    before = group_cpu(pgid)
    r = run_load(port, token, args, check, rate=rate)
    r["cpu_ms"] = (group_cpu(pgid) - before) / r["n"] * 1e3 if r["n"] else 0.0
    if spy is not None and profile is not None:
        r["profile"] = finish_profile(spy, profile)
    return r


def run_load(port: int, token: str | None, args: argparse.Namespace, check: bool,
             total: int | None = None, rate: float = 0.0) -> dict[str, Any]:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    requests = Requests(port, token, args.keyed and token is not None)
    if rate > 0:
        timeline: list[tuple[float, float]] | None = [] if args.timeline else None
        out = asyncio.run(open_loop(port, requests, rate, total or args.requests * 4,
                                    args.seconds, check, timeline))
        if timeline is not None and total is None:
            with Path(args.timeline).open("a") as f:
                f.writelines(f"{t:.6f} {lat * 1e3:.3f}\n" for t, lat in sorted(timeline))
        return out
    return asyncio.run(load(port, requests, total or args.requests, args.seconds,
                            args.concurrency, check))


# ----------------------------------------------------------------------------- profile


def server_pids(pgid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return sorted(out)


def start_profile(pgid: int, seconds: float, where: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on every process of the server (the workers do the work), raw format, for the
    length of the case, sampling only the thread holding the GIL: the Python work that bounds
    a worker (the disk's and the network's waits release the GIL and do not show)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    where.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in server_pids(pgid):
        procs.append(subprocess.Popen(
            [spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100",
             "-f", "raw", "-o", str(where / f"server-{pid}.txt"), "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


IDLE = ("Condition.wait", "Event.wait", "Queue.get", "select (", "_wait_for_tstate_lock")


def finish_profile(procs: list[subprocess.Popen[bytes]], where: Path) -> dict[str, float]:
    """Shares of the sampled GIL time by where it went (a frame anywhere on the stack; the
    first matching label wins)."""
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
    total = 0
    shares: dict[str, int] = {}
    for f in where.glob("server-*.txt"):
        for line in f.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            if any(leaf.startswith(x) for x in IDLE):
                continue
            total += int(count)
            label = where_it_went(stack.split(";"))
            shares[label] = shares.get(label, 0) + int(count)
    return {k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])} if total else {}


STORE = (  # a frame anywhere on the stack; the first group that has one names the sample
    ("store: BEGIN/COMMIT", ("_begin (sizeguard/adapters/sql_store.py",)),
    ("core: decide (compiled or not)", ("decide_for_bot (",)),
    ("store: journal row (trace JSON) and reservation", ("record_decision (",)),
    ("store: loading the account", ("_load_account (",)),
    ("store: other SQL (expiry, owner, idempotency)", ("Tx._exec (", "SqlStore.tx (")),
    ("group commit: batch, answers", ("decide_and_reserve (", "Gate._batch (", "GroupCommit.")),
)
HTTP = (  # otherwise the innermost frame of one of these names it
    ("HTTP: uvicorn protocol (parsing, writing)", ("HttpToolsProtocol.", "http/protocol.py",
                                                   "RequestResponseCycle.send")),
    ("HTTP: FastAPI/Starlette/pydantic", ("fastapi/", "starlette/", "pydantic")),
    ("HTTP: sizeguard guard, short way, JSON", ("sizeguard/http/",)),
)


def where_it_went(frames: list[str]) -> str:
    for label, marks in STORE:
        if any(m in f for f in frames for m in marks):
            return label
    for f in reversed(frames):
        for label, marks in HTTP:
            if any(m in f for m in marks):
                return label
    return "event loop, the rest"


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
    print(f"{name:40s} {r['n']:7d} {r['rate']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} "
          f"{r['max']:8.2f} {r['cpu_ms']:8.3f} {len(r['errors']):7d}")
    for e in r["errors"][:3]:
        print(f"    error: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=4000, help="answers per case (bound)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time per case (bound)")
    ap.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    ap.add_argument("--rate", type=float, default=1000.0,
                    help="open loop: requests offered a second (0: no open-loop case)")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--max-batch", type=int, default=64,
                    help="decisions per group commit (1: one transaction per decision)")
    ap.add_argument("--batch-delay", type=float, default=None,
                    help="SIZEGUARD_BATCH_DELAY: seconds the group commit waits for more "
                         "decisions before a small batch while they keep coming (default: "
                         "the service's)")
    ap.add_argument("--store", default=None, help="postgresql://... (default: a fresh SQLite file)")
    ap.add_argument("--pg", default=None,
                    help="also run the cases on this PostgreSQL (postgresql://...), same run")
    ap.add_argument("--pg-workers", type=int, default=2, help="server processes on --pg")
    ap.add_argument("--ttl", type=float, default=0.05,
                    help="seconds a reservation is held (the account holds about rate x ttl)")
    ap.add_argument("--sqlite-synchronous", choices=("full", "normal"), default="full",
                    help="SQLite: every commit waits for the disk (full, the default) or not")
    ap.add_argument("--budget", type=float, default=1.0,
                    help="the bench bot's budget, a share of the account in (0, 1] (default 1: "
                         "unlimited; a share decides on the bot's own view too)")
    ap.add_argument("--keyed", action="store_true",
                    help="every request with its own Idempotency-Key (as sizeguard.client)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="py-spy the server during the closed loop; raw samples to this dir")
    ap.add_argument("--timeline", type=Path, default=None,
                    help="open loop: append 'scheduled offset s, latency ms' per answer to FILE")
    ap.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true",
                    help="one JSON object per case per line on stdout (the report goes to stderr)")
    args = ap.parse_args()
    BODY["ttl"] = args.ttl
    if args.bare_server is not None:
        bare_server(args.bare_server, args.workers)
        return
    with json_output(args.json) as emit:
        run(args, emit)


def serve_cases(args: argparse.Namespace, store_arg: str | None, workers: int,
                tmp: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """``sizeguard serve`` on a fresh store: the closed loop, then the open loop."""
    from sizeguard.adapters.bots import BotRegistry
    from sizeguard.adapters.sql_store import open_store

    schema = None
    if store_arg:
        schema = f"sgbench_{uuid.uuid4().hex[:10]}"
        url = f"{store_arg}{'&' if '?' in store_arg else '?'}schema={schema}"
    else:
        url = f"sqlite:///{tmp / f'state-{uuid.uuid4().hex[:6]}.db'}"
    store = open_store(url)
    _, token = BotRegistry(store).add("bench", account_id="default", budget=args.budget)
    store.close()
    sizeguard = str(Path(sys.executable).with_name("sizeguard"))
    port = free_port()
    env = env_for({"SIZEGUARD_PRESET": "viper-fixed-margin", "SIZEGUARD_LIMITS__ALLOW_ADD": "true",
                   "SIZEGUARD_MAX_BATCH": str(args.max_batch),
                   "SIZEGUARD_SQLITE_SYNCHRONOUS": args.sqlite_synchronous,
                   **({"SIZEGUARD_BATCH_DELAY": str(args.batch_delay)}
                      if args.batch_delay is not None else {})})
    serve = subprocess.Popen([sizeguard, "serve", "--host", HOST, "--port", str(port),
                              "--workers", str(workers), "--store", url],
                             env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=(tmp / "serve.log").open("ab"))
    out: dict[str, dict[str, Any]] = {}
    try:
        wait_up(port, serve)
        run_load(port, token, args, check=True, total=200)  # warm-up (opens the account)
        if workers > 1:
            time.sleep(1.0)  # every worker up (each opens its own connections)
            run_load(port, token, args, check=True, total=400)
        profile = args.profile / ("pg" if schema else "sqlite") if args.profile else None
        out["closed"] = measured(port, token, args, True, serve.pid, profile=profile)
        out["closed"]["metrics"] = scrape(port)
        if args.rate > 0:
            time.sleep(0.5)
            out["open"] = measured(port, token, args, True, serve.pid, rate=args.rate,
                                   profile=profile.with_name(profile.name + "-open")
                                   if profile else None)
            out["open"]["metrics"] = scrape(port)
    finally:
        stop(serve)
        if schema is not None:
            store = open_store(url)
            store.drop_schema()  # type: ignore[attr-defined]
            store.close()
    return out, ("PostgreSQL" if schema else "SQLite")


def ceiling_case(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port),
                             "--workers", str(args.workers)], env=env_for({}),
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "bare.log").open("wb"))
    try:
        wait_up(bare_port, bare)
        run_load(bare_port, None, args, check=False, total=200)
        return measured(bare_port, None, args, False, bare.pid)
    finally:
        stop(bare)


GOALS = {"rate": 2500.0, "p99": 10.0, "cpu": 0.3}


def run(args: argparse.Namespace, emit: Emitter) -> None:
    if args.requests < 1 or args.requests > 1_000_000 or args.seconds <= 0 or args.seconds > 600:
        raise SystemExit("--requests in [1, 1e6] and --seconds in (0, 600]")
    if args.rate < 0 or args.rate > 20_000:
        raise SystemExit("--rate in [0, 20000]")
    tmp = Path(tempfile.mkdtemp(prefix="sizeguard-bench-"))
    runs = [(args.store, args.workers)]
    if args.pg:
        runs.append((args.pg, args.pg_workers))
    results = [(serve_cases(args, store, workers, tmp), workers) for store, workers in runs]
    ceiling = ceiling_case(args, tmp)

    load_avg = os.getloadavg()
    print(f"sizeguard HTTP bench: {os.cpu_count()} CPUs, load {load_avg[0]:.2f}, "
          f"{args.concurrency} connections (closed loop), open loop offered "
          f"{args.rate:g}/s, max batch {args.max_batch}, SQLite synchronous="
          f"{args.sqlite_synchronous}, reservations held {args.ttl:g} s, "
          f"{'an Idempotency-Key per request, ' if args.keyed else ''}"
          f"{f'bot budget {args.budget:g}, ' if args.budget < 1.0 else ''}"
          f"bounds {args.requests} requests / {args.seconds:g} s per case")
    print(f"{'case':40s} {'answers':>7s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'max ms':>8s} {'CPU ms':>8s} {'errors':>7s}")
    failed = bool(ceiling["errors"])
    for (cases, kind), workers in results:
        where = f"{kind}, {workers} worker{'s' if workers > 1 else ''}"
        closed = cases["closed"]
        report(f"{where}, closed loop", closed)
        if "open" in cases:
            report(f"{where}, open loop {args.rate:g}/s", cases["open"])
        failed = failed or any(c["errors"] for c in cases.values())
        emit_cases(emit, args, cases, ceiling, where, goals=cases is results[0][0][0])
    report("bare FastAPI endpoint (ceiling)", ceiling)
    for (cases, kind), _ in results:
        m = cases["closed"].get("metrics", {})
        batches = m.get("sizeguard_group_commit_batches_total", 0.0)
        if batches:
            items = m.get("sizeguard_group_commit_decisions_total", 0.0)
            print(f"group commit, {kind} (one worker's counters): {items:.0f} decisions in "
                  f"{batches:.0f} transactions, {items / batches:.1f} per commit")
            o = cases.get("open", {}).get("metrics", {})
            ob = o.get("sizeguard_group_commit_batches_total", 0.0) - batches
            if ob > 0 and kind == "SQLite" and args.workers == 1:  # cumulative: the open loop's share
                oi = o.get("sizeguard_group_commit_decisions_total", 0.0) - items
                print(f"group commit, {kind}, open loop: {oi:.0f} decisions in {ob:.0f} "
                      f"transactions, {oi / ob:.1f} per commit")
        for case in ("closed", "open"):
            for label, share in cases.get(case, {}).get("profile", {}).items():
                print(f"  profile, {kind}, {case} loop: {share:6.1%}  {label}")
    service = results[0][0][0]["closed"]
    ratio = service["rate"] / ceiling["rate"] if ceiling["rate"] else 0.0
    print(f"service / ceiling: {ratio:.1%} of the rate; server CPU per answer "
          f"{service['cpu_ms']:.3f} ms vs {ceiling['cpu_ms']:.3f} ms; CPU-bound capacity "
          f"{1000 / service['cpu_ms'] if service['cpu_ms'] else 0:,.0f} decisions/s per core")
    opened = results[0][0][0].get("open")
    print(f"goals (first store): >= {GOALS['rate']:,.0f} decisions/s closed loop: "
          f"{'met' if service['rate'] >= GOALS['rate'] else 'not met'}; p99 <= "
          f"{GOALS['p99']:g} ms at {args.rate:g}/s offered: "
          + ("not run" if opened is None else "met" if opened["p99"] <= GOALS["p99"]
             and not opened["errors"] else "not met")
          + f"; server CPU <= {GOALS['cpu']} ms per decision: "
          + ("met" if service["cpu_ms"] <= GOALS["cpu"] else "not met"))
    if failed:
        raise SystemExit(1)


def emit_cases(emit: Emitter, args: argparse.Namespace, cases: dict[str, dict[str, Any]],
               ceiling: dict[str, Any], where: str, goals: bool) -> None:
    """The JSON lines of one store's cases; the goals are the first store's (SQLite, one
    worker, by default; PostgreSQL is printed beside it)."""
    closed = cases["closed"]

    def goal(text: str, met: bool) -> dict[str, Any]:
        return {"goal": text, "met": met} if goals else {}

    keyed = ", Idempotency-Key" if args.keyed else ""
    if args.budget < 1.0:
        keyed += f", bot budget {args.budget:g}"
    where_c = f"{where}, {args.concurrency} connections{keyed}"
    emit("http", f"reserved decisions, {where_c}", closed["rate"], "decisions/s",
         baseline="bare FastAPI endpoint", baseline_value=ceiling["rate"],
         p50_ms=closed["p50"], p99_ms=closed["p99"], max_ms=closed["max"],
         cpu_ms=closed["cpu_ms"], errors=len(closed["errors"]), max_batch=args.max_batch,
         profile=closed.get("profile"), **goal(">= 2,500/s", closed["rate"] >= GOALS["rate"]))
    emit("http", f"server CPU per reserved decision, {where_c}", closed["cpu_ms"], "ms",
         baseline="bare FastAPI endpoint", baseline_value=ceiling["cpu_ms"],
         **goal("<= 0.3 ms", closed["cpu_ms"] <= GOALS["cpu"]))
    opened = cases.get("open")
    if opened is not None:
        emit("http", f"p99 latency, open loop {args.rate:g}/s offered, {where}{keyed}",
             opened["p99"], "ms", p50_ms=opened["p50"], max_ms=opened["max"],
             achieved=opened["rate"], offered=args.rate, cpu_ms=opened["cpu_ms"],
             connections=opened.get("connections"), errors=len(opened["errors"]),
             profile=opened.get("profile"),
             **goal("<= 10 ms", opened["p99"] <= GOALS["p99"] and not opened["errors"]))


if __name__ == "__main__":
    main()
