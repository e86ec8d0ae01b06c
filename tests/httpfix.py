"""Helpers for the HTTP service tests: start the REAL server (``sizeguard serve`` in a
subprocess, uvicorn on a free loopback port), make bots, talk to it with httpx."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.sql_store import open_store

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
SIZEGUARD = str(Path(sys.executable).with_name("sizeguard"))
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any SIZEGUARD_* or seed-bot setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIZEGUARD_")}
    env["SIZEGUARD_SEED_ALIASES"] = "off"
    env.update(extra or {})
    return env


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.url = f"http://{HOST}:{port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_server(store_url: str, log_dir: Path, *, workers: int = 1,
                 env: Mapping[str, str] | None = None, args: tuple[str, ...] = (),
                 port: int | None = None) -> Server:
    """``sizeguard serve`` on a free loopback port (or ``port``, e.g. a restart's); returns
    once /healthz answers."""
    port = port or free_port()
    log = log_dir / f"serve-{port}-{time.monotonic_ns()}.log"
    full = clean_env({"SIZEGUARD_AUTH_CACHE_TTL": "0", "SIZEGUARD_ACCESS_LOG": "false",
                      "SIZEGUARD_LOG_LEVEL": "warning", **(env or {})})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SIZEGUARD, "serve", "--host", HOST, "--port", str(port), "--workers", str(workers),
             "--store", store_url, *args],
            env=full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, port, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"serve did not answer in 30 s:\n{server.output()}")


@contextlib.contextmanager
def serving(store_url: str, log_dir: Path, **kw: Any) -> Iterator[Server]:
    server = start_server(store_url, log_dir, **kw)
    try:
        yield server
    finally:
        server.stop()


def many_markets(path: Path, n: int = 64) -> Path:
    """The built-in markets plus ``n`` perpetuals C00/USDT:USDT... with BTC/USDT:USDT's real
    rules and tiers, as a snapshot file for ``--markets``."""
    from importlib import resources

    doc = json.loads(resources.files("sizeguard").joinpath("data/example_markets.json")
                     .read_text("utf-8"))
    btc, tiers = doc["markets"][BTC], doc.get("tiers", {}).get(BTC)
    for i in range(n):
        sym = f"C{i:02d}/USDT:USDT"
        doc["markets"][sym] = {**btc, "symbol": sym, "id": f"C{i:02d}USDT", "base": f"C{i:02d}"}
        if tiers is not None:
            doc["tiers"][sym] = [{**t, "symbol": sym} if isinstance(t, dict) else t for t in tiers]
    doc.pop("_about", None)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def sym(i: int) -> str:
    return f"C{i:02d}/USDT:USDT"


def add_bot(store_url: str, name: str, *, budget: float = 1.0, max_positions: int = 0,
            account: str = "default") -> str:
    """A bot in the store; returns its token."""
    store = open_store(store_url)
    try:
        _, token = BotRegistry(store).add(name, account_id=account, budget=budget,
                                          max_positions=max_positions)
    finally:
        store.close()
    return token


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


