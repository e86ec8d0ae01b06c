"""Deciding + reserving is atomic across threads and processes, on SQLite and PostgreSQL:
64 simultaneous submits never exceed max positions or the gross exposure cap."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections import Counter
from typing import Any

import pytest

import storefix
from sizeguard.adapters.market_snapshot import BookSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import open_store
from sizeguard.core.intent import Intent
from sizeguard.trader import Trader
from storefix import many_symbols, notional_policy

N = 64
store_url = storefix.store_url  # the fixture: SQLite and PostgreSQL


def _submit(url: str, i: int, limits: dict[str, Any]) -> tuple[str, list[str]]:
    store = open_store(url)
    try:
        book = many_symbols(N)
        limits = dict(limits)
        symbol = f"C{0 if limits.pop('one_symbol', False) else i:02d}/USDT:USDT"
        trader = Trader(store, PaperExchange(book, balance=1e6), BookSource(book, "test"),
                        notional_policy(100.0, **limits), account_id="acc", venue="test")
        r = trader.submit(Intent(symbol, "long", 50000.0), client_order_id=f"c{i}")
        return r.status, list(r.decision.reasons)
    finally:
        store.close()


def _run_threads(url: str, limits: dict[str, Any]) -> list[tuple[str, list[str]]]:
    barrier = threading.Barrier(N, timeout=60)
    out: list[Any] = [None] * N

    def work(i: int) -> None:
        barrier.wait()
        try:
            out[i] = _submit(url, i, limits)
        except Exception as exc:
            out[i] = ("error", [repr(exc)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def _child(url: str, i: int, limits: dict[str, Any], barrier: Any, q: Any) -> None:
    try:
        barrier.wait()
        q.put((i, _submit(url, i, limits)))
    except Exception as exc:
        q.put((i, ("error", [repr(exc)])))
    finally:
        q.close()
        q.join_thread()
        os._exit(0)  # no finalizers: never touch connections inherited from the parent


def _run_processes(url: str, limits: dict[str, Any]) -> list[tuple[str, list[str]]]:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(N, timeout=60)
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(url, i, limits, barrier, q)) for i in range(N)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    for _ in range(N):
        i, r = q.get(timeout=120)
        results[i] = r
    for p in procs:
        p.join(30)
    return [results[i] for i in range(N)]


def _prepare(url: str, equity: float = 10_000.0) -> None:
    s = open_store(url)
    s.ensure_account("acc", exchange="test", equity=equity)
    s.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_64_submits_against_4_slots_accept_exactly_4(store_url: str, mode: str) -> None:
    _prepare(store_url)
    run = _run_threads if mode == "threads" else _run_processes
    results = run(store_url, {"max_positions": 4})
    statuses = Counter(s for s, _ in results)
    assert statuses == {"filled": 4, "skipped": 60}, results
    assert all(r == ["MAX_POSITIONS"] for s, r in results if s == "skipped")
    s = open_store(store_url)
    try:
        assert len(s.positions("acc")) == 4
        assert s.reservations("acc") == []  # all four turned into positions
        assert len(s.journal("acc", kind="decision")) == N
        assert s.integrity_check() == "ok"
    finally:
        s.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_gross_exposure_cap_holds_exactly_under_contention(store_url: str, mode: str) -> None:
    _prepare(store_url)
    run = _run_threads if mode == "threads" else _run_processes
    results = run(store_url, {"max_gross_exposure": 1000})
    statuses = Counter(s for s, _ in results)
    assert statuses == {"filled": 10, "skipped": 54}, results
    assert all("CAPPED_GROSS_EXPOSURE" in r for s, r in results if s == "skipped")
    s = open_store(store_url)
    try:
        assert sum(p.notional for p in s.positions("acc")) == pytest.approx(1000.0)
        assert s.account("acc").gross_exposure <= 1000.0 + 1e-9
    finally:
        s.close()


@pytest.mark.timeout(120)
def test_the_same_client_order_id_from_16_threads_trades_once(store_url: str) -> None:
    _prepare(store_url)
    barrier = threading.Barrier(16, timeout=60)
    out: list[Any] = []

    def work() -> None:
        barrier.wait()
        store = open_store(store_url)
        try:
            book = many_symbols(1)
            trader = Trader(store, PaperExchange(book, balance=1e6), BookSource(book, "test"),
                            notional_policy(100.0), account_id="acc", venue="test")
            r = trader.submit(Intent("C00/USDT:USDT", "long", 50000.0), client_order_id="same")
            out.append((r.status, r.duplicate, r.journal_id))
        finally:
            store.close()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(out) == 16 and len({j for _, _, j in out}) == 1
    firsts = [o for o in out if not o[1]]
    assert len(firsts) == 1 and firsts[0][0] == "filled"
    # the others saw the first one's answer, or that it was still working: none ordered
    assert {st for st, dup, _ in out if dup} <= {"filled", "in_progress"}
    s = open_store(store_url)
    try:
        assert len(s.journal("acc", kind="decision")) == 1
        assert len(s.reservations("acc", live_only=False)) == 1
    finally:
        s.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["threads"])  # processes: the two tests above, same lock
def test_per_symbol_cap_holds_exactly_when_adding(store_url: str, mode: str) -> None:
    _prepare(store_url)
    run = _run_threads if mode == "threads" else _run_processes
    results = run(store_url, {"max_symbol_notional": 1000, "allow_add": "true", "one_symbol": True})
    assert Counter(s for s, _ in results) == {"filled": 10, "skipped": 54}, results
    assert all("CAPPED_SYMBOL" in r for s, r in results if s == "skipped")
    s = open_store(store_url)
    try:
        assert s.account("acc").symbol_exposure("C00/USDT:USDT") == pytest.approx(1000.0)
    finally:
        s.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["threads"])  # processes: the two tests above, same lock
def test_available_margin_is_never_overdrawn(store_url: str, mode: str) -> None:
    # equity 100: each trade ties 10 margin + 0.05 fee; nine fit whole, the tenth is cut to
    # one lot (50 notional) by what is left, and nothing more fits
    _prepare(store_url, equity=100.0)
    run = _run_threads if mode == "threads" else _run_processes
    results = run(store_url, {})
    assert Counter(s for s, _ in results) == {"filled": 10, "skipped": 54}, results
    s = open_store(store_url)
    try:
        acct = s.account("acc")
        assert acct.margin_in_use == pytest.approx(95.0)
        assert acct.margin_in_use + acct.gross_exposure * 0.0005 <= 100.0
    finally:
        s.close()
