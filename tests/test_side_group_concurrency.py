"""The side and group caps hold under 64 concurrent decide-and-reserve calls, on SQLite and
PostgreSQL: the store's reservations are positions to the caps, and the application's
decide-and-reserve is one unit of work, so concurrent reservers cannot overfill a side or a group.

64 threads each submit 100 USDT (fixed notional) on their own symbol C00..C63 at 50,000
(BTC rules: step 0.001 = 50 USDT). Threads only (processes share the same store lock, proven
in test_state_concurrency.py). Runtime: a few seconds per case.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

import storefix
from sizeguard.adapters.market_snapshot import BookSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import open_store
from sizeguard.core.intent import Intent
from sizeguard.core.policy import Policy, with_changes
from sizeguard.trader import Trader
from storefix import many_symbols, notional_policy

N = 64
store_url = storefix.store_url  # the fixture: SQLite and PostgreSQL
GROUP = [f"C{i:02d}/USDT:USDT" for i in range(0, N, 2)]  # the even symbols


def _side(i: int) -> str:
    return "long" if i % 2 == 0 else "short"


def _submit(url: str, i: int, pol: Policy) -> tuple[str, str, list[str]]:
    store = open_store(url)
    try:
        book = many_symbols(N)
        trader = Trader(store, PaperExchange(book, balance=1e6), BookSource(book, "test"), pol,
                        account_id="acc", venue="test")
        r = trader.submit(Intent(f"C{i:02d}/USDT:USDT", _side(i), 50000.0),
                          client_order_id=f"c{i}")
        return _side(i), r.status, list(r.decision.reasons)
    finally:
        store.close()


def _run(url: str, pol: Policy) -> list[tuple[str, str, list[str]]]:
    s = open_store(url)
    s.ensure_account("acc", exchange="test", equity=10_000.0)
    s.close()
    barrier = threading.Barrier(N, timeout=60)
    out: list[Any] = [None] * N

    def work(i: int) -> None:
        barrier.wait()
        try:
            out[i] = _submit(url, i, pol)
        except Exception as exc:
            out[i] = (_side(i), "error", [repr(exc)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


@pytest.mark.timeout(240)
def test_side_caps_hold_under_64_concurrent_reservations(store_url: str) -> None:
    # 32 longs race for 3 long slots, 32 shorts for 2 short slots
    results = _run(store_url, notional_policy(100.0, max_long_positions=3,
                                              max_short_positions=2))
    filled = Counter(side for side, st, _ in results if st == "filled")
    assert filled == {"long": 3, "short": 2}, results
    assert Counter(st for _, st, _ in results) == {"filled": 5, "skipped": 59}, results
    for side, st, reasons in results:
        if st == "skipped":
            assert reasons == ["MAX_LONG_POSITIONS" if side == "long" else "MAX_SHORT_POSITIONS"]
    s = open_store(store_url)
    try:
        acct = s.account("acc")
        assert len(acct.side_symbols("long")) == 3 and len(acct.side_symbols("short")) == 2
    finally:
        s.close()


@pytest.mark.timeout(240)
def test_group_slots_hold_under_64_concurrent_reservations(store_url: str) -> None:
    # the 32 even symbols form a group of 4 slots; the 32 odd ones are free
    pol = with_changes(notional_policy(100.0), "limits",
                       groups={"evens": {"symbols": GROUP, "max_positions": 4}})
    results = _run(store_url, pol)
    members = Counter(st for (_, st, _), i in zip(results, range(N), strict=True) if i % 2 == 0)
    others = Counter(st for (_, st, _), i in zip(results, range(N), strict=True) if i % 2 == 1)
    assert members == {"filled": 4, "skipped": 28}, results
    assert others == {"filled": 32}, results
    assert all(r == ["MAX_GROUP_POSITIONS"] for _, st, r in results if st == "skipped")
    s = open_store(store_url)
    try:
        assert len(s.account("acc").group_symbols(tuple(GROUP))) == 4
    finally:
        s.close()


@pytest.mark.timeout(240)
def test_group_exposure_holds_under_64_concurrent_reservations(store_url: str) -> None:
    # group exposure 300: three 100 trades fill it exactly, the other 29 members find no room
    pol = with_changes(notional_policy(100.0), "limits",
                       groups={"evens": {"symbols": GROUP, "max_exposure": 300}})
    results = _run(store_url, pol)
    members = Counter(st for (_, st, _), i in zip(results, range(N), strict=True) if i % 2 == 0)
    assert members == {"filled": 3, "skipped": 29}, results
    assert all("CAPPED_GROUP_EXPOSURE" in r for _, st, r in results if st == "skipped")
    s = open_store(store_url)
    try:
        assert s.account("acc").group_exposure(tuple(GROUP)) == pytest.approx(300.0)
    finally:
        s.close()
