"""Shared helpers and fixtures for the state-store tests: the same tests run on a real SQLite
file and a real PostgreSQL server (``SIZEGUARD_TEST_PG_URL``, default the local server; each
test gets its own schema, dropped afterwards). Without a reachable server the PostgreSQL half
skips with the reason, except under CI=true, where it fails (``scripts/test`` starts one)."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.app.services import ReserveRequest, reserve_one
from sizeguard.config import load_policy
from sizeguard.core import position
from sizeguard.core.market import MarketBook
from sizeguard.core.policy import Policy
from sizeguard.ports import DecideFn, Reservation, Reserved, StoredPosition

PG_URL = os.environ.get("SIZEGUARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_checked: list[str | None] = []


def pg_unavailable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per session)."""
    if not _pg_checked:
        try:
            import psycopg

            with psycopg.connect(PG_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_checked.append(None)
        except Exception as exc:
            _pg_checked.append(f"PostgreSQL at {PG_URL} is not reachable ({exc}); "
                               "run scripts/postgres-up or set SIZEGUARD_TEST_PG_URL")
    return _pg_checked[0]


class FakeClock:
    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    why = pg_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why + ": CI must have it")
        pytest.skip(why)
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema=sgt_{uuid.uuid4().hex[:12]}"


def drop(url: str) -> None:
    """Remove a test's PostgreSQL schema (directly: the store may hold a refused schema)."""
    if url.startswith("postgres"):
        import psycopg

        schema = url.rsplit("schema=", 1)[1]
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = make_url(request.param, tmp_path)
    yield url
    drop(url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[SqlStore]:
    s = open_store(store_url, clock)
    yield s
    s.close()


def many_symbols(n: int, template: str = "BTC/USDT:USDT") -> MarketBook:
    """``n`` distinct perpetual symbols with the real BTC/USDT:USDT rules of the built-in book."""
    base = load_markets(None)[template]
    markets = {f"C{i:02d}/USDT:USDT": dataclasses.replace(base, symbol=f"C{i:02d}/USDT:USDT")
               for i in range(n)}
    return MarketBook(markets, "test")


def notional_policy(notional: float = 100.0, **limits: object) -> Policy:
    sets = ['sizing.model="fixed_notional"', f"sizing.notional={notional}", "leverage.value=10",
            "leverage.max=10"]
    sets += [f"limits.{k}={v}" for k, v in limits.items()]
    return load_policy("viper-fixed-margin", sets=sets)


def reserve(store: SqlStore, account_id: str, decide_fn: DecideFn, *, client_order_id: str,
            snapshot_id: str | None = None, ttl: float = 300.0, claim: float = 60.0) -> Reserved:
    """The application's decide-and-reserve (one unit of work) for one decision, no owner."""
    return reserve_one(store, account_id, ReserveRequest(
        lambda account, _own: decide_fn(account), client_order_id, snapshot_id, ttl, claim))


def fill(store: SqlStore, res: Reservation, price: float, *, fee: float = 0.0,
         book: MarketBook | None = None, amount: str | None = None) -> StoredPosition:
    """Fill ``res`` (whole, or ``amount``) at ``price`` with the core's notional and margin on
    its market (``book``, default the built-in markets): the store records, never computes."""
    market = (book or load_markets(None))[res.symbol]
    amt = amount if amount is not None else res.amount
    o = position.opened(market, float(amt), price, res.leverage)
    return store.fill_reservation(res.id, amount=amt, entry_price=price, notional=o.notional,
                                  margin=o.margin, fee=fee)
