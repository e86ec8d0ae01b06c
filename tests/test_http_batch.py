"""Group commit: a batch of decide + reserve in one transaction gives the same decisions and the
same rows as one unit of work each (``sizeguard.app.services.decide_and_reserve``, SQLite and
PostgreSQL), and the
leader/follower hand-off answers every waiting thread exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

import storefix
from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.app.services import ReserveRequest, decide_and_reserve
from sizeguard.budget import Budget, decide_for_bot
from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.errors import InvalidInput
from sizeguard.http.batch import GroupCommit
from storefix import many_symbols, notional_policy

pytestmark = pytest.mark.timeout(120)
store_url = storefix.store_url  # the fixtures: SQLite and PostgreSQL, a fake clock
clock = storefix.clock

BOOK = many_symbols(12)
POLICY = notional_policy(100.0, max_positions=5, max_gross_exposure=450.0)


def _fn(i: int, budget: Budget) -> Any:
    intent = Intent(f"C{i % 12:02d}/USDT:USDT", "long", 50000.0 if i != 7 else -1.0)

    def fn(account: Account, own: tuple[Position, ...]) -> Decision:
        return decide_for_bot(intent, account, own, BOOK[intent.symbol], POLICY, budget)[0]
    return fn


def _rows(store: SqlStore) -> list[tuple[Any, ...]]:
    with store.tx(write=False) as tx:
        res = tx.rows("SELECT client_order_id, symbol, side, amount, notional, margin, leverage, "
                      "status, claimed_until - created_at FROM reservations ORDER BY "
                      "client_order_id")
        jr = tx.rows("SELECT client_order_id, kind, symbol, side, status, reasons, data FROM "
                     "journal ORDER BY client_order_id")
        own = tx.rows("SELECT client_order_id FROM bot_orders ORDER BY client_order_id")
    return [*res, *jr, *own]


def test_batch_equals_one_by_one(store_url: str, clock: storefix.FakeClock) -> None:
    one, many = open_store(store_url, clock), None
    try:
        many = open_store(store_url.replace("state.db", "state2.db") if "sqlite" in store_url
                          else store_url + "b", clock)
        results = []
        for store in (one, many):
            store.ensure_account("default", exchange="test", equity=1000.0)
            reg = BotRegistry(store)
            a, _ = reg.add("a", account_id="default", budget=0.5, max_positions=2)
            b, _ = reg.add("b", account_id="default")
            bots = [a, b]
            items = [ReserveRequest(_fn(i, Budget(bots[i % 2].budget, bots[i % 2].max_positions)),
                                    f"c{i:02d}", "snap", 300.0, 60.0, owner=bots[i % 2].id,
                                    own=True) for i in range(12)]
            if store is one:
                got: list[Any] = []
                for it in items:
                    got += decide_and_reserve(store, "default", [it], reg)
            else:
                got = decide_and_reserve(store, "default", items[:5], reg)
                got += decide_and_reserve(store, "default", items[5:], reg)
            results.append(got)
        for x, y in zip(*results, strict=True):
            if isinstance(x, InvalidInput):
                assert isinstance(y, InvalidInput) and str(x) == str(y)
                continue
            assert x.decision == y.decision  # journal ids: a PG sequence skips rolled-back ones
            assert (x.reservation is None) == (y.reservation is None)
        statuses = [r.decision.status if not isinstance(r, InvalidInput) else "invalid"
                    for r in results[1]]
        assert "skipped" in statuses and statuses.count("invalid") == 1 and "accepted" in statuses
        strip = [(r[0], *r[1:]) for r in _rows(one)]
        assert strip == _rows(many)
        # a known client order id in a batch returns the earlier answer, deciding nothing
        again = decide_and_reserve(many, "default", [items[0]], BotRegistry(many))
        assert again[0].duplicate and again[0].decision.to_dict() == results[1][0].decision.to_dict()  # type: ignore[union-attr]
    finally:
        one.close()
        if many is not None:
            many.close()
            if "postgres" in store_url:
                storefix.drop(store_url + "b")


def test_group_commit_answers_each_thread_once() -> None:
    seen: list[int] = []
    sizes: list[int] = []
    lock = threading.Lock()

    def run(items: Sequence[int]) -> list[int]:
        time.sleep(0.005)  # a commit
        with lock:
            seen.extend(items)
            sizes.append(len(items))
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run, max_batch=8)
    out: dict[int, int] = {}
    barrier = threading.Barrier(40)

    def worker(i: int) -> None:
        barrier.wait()
        out[i] = group.submit(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == {i: i * 10 for i in range(40)}
    assert sorted(seen) == list(range(40)) and max(sizes) <= 8 and len(sizes) < 40
    assert group.items == 40 and group.batches == len(sizes)

    def boom(items: Sequence[int]) -> list[int]:
        raise RuntimeError("disk full")

    failing: GroupCommit[int, int] = GroupCommit(boom)
    with pytest.raises(RuntimeError, match="disk full"):
        failing.submit(1)
    assert failing.submit.__self__ is failing  # still usable: the lead was released
    with pytest.raises(RuntimeError):
        failing.submit(2)
