"""Retention (#11 item 5) on a real SQLite file and a real PostgreSQL schema: what prune forgets
(old quotes, finished reservations, ownership and idempotency records) and what it must keep
(anything of a decision still in play: a held reservation, an open position); the dry run counts
the same rows it would delete; the store's size and row counts; ``sizeguard store prune``.
Measured before: nothing pruned anything (8.4 KB of journal per quote, for ever)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import storefix
from httpfix import SIZEGUARD, clean_env
from sizeguard.adapters.bots import Bot, BotRegistry
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.retention import Retention, prune, store_size
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.app.services import ReserveRequest, quote, reserve_one
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.errors import InvalidInput
from storefix import FakeClock, notional_policy

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store

BOOK = load_markets(None)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
DAY = 86_400.0


def _fn(symbol: str):  # type: ignore[no-untyped-def]
    policy = notional_policy(100.0)

    def fn(account: Account, own: tuple[Position, ...]) -> Decision:
        return decide(Intent(symbol, "long", 50_000.0 if symbol == BTC else 3_000.0), account,
                      BOOK[symbol], policy)
    return fn


def _history(s: SqlStore, clock: FakeClock) -> tuple[Bot, dict[str, str]]:
    """A bot's 100 days: quotes, a released, a filled-and-closed and a filled-and-open
    reservation, a held one, keyed answers; returns the ids that must survive."""
    reg = BotRegistry(s)
    bot, _ = reg.add("alpha", account_id="acc")
    s.ensure_account("acc", exchange="paper", equity=10_000.0)

    def q(cid: str) -> None:
        quote(s, "acc", _fn(BTC), client_order_id=cid, owner=bot.id, owners=reg)

    def r(symbol: str, cid: str, ttl: float = 300.0):  # type: ignore[no-untyped-def]
        return reserve_one(s, "acc", ReserveRequest(_fn(symbol), cid, ttl=ttl, owner=bot.id),
                           reg).reservation

    for i in range(5):
        q(f"q{i}")
    released = r(BTC, "rel")
    assert released
    s.release_reservation(released.id, "test")
    closed = r(ETH, "closed")
    assert closed
    pos = storefix.fill(s, closed, 3_000.0)
    s.close_position(pos.id, exit_price=3_100.0)
    kept = r(BTC, "open", 400 * DAY)
    assert kept
    storefix.fill(s, kept, 50_000.0)
    for i in range(3):
        reg.idempotency_begin(bot, f"k{i}", "h", client_order_id=f"k{i}")
        assert reg.idempotency_finish(bot, f"k{i}", 200, "{}")
    clock.advance(100 * DAY)  # everything above is now 100 days old
    held = r(ETH, "held", 400 * DAY)
    assert held
    q("fresh")
    reg.idempotency_begin(bot, "new", "h", client_order_id="new")
    return bot, {"open": kept.id, "held": held.id}


def test_prune_forgets_the_old_and_keeps_what_is_in_play(store: SqlStore, clock: FakeClock
                                                         ) -> None:
    bot, live = _history(store, clock)
    before = store_size(store)
    # journal: 5 quotes, 3 decisions, 1 release, 2 fills, 1 close = 12 rows 100 days old, of
    # which the "open" decision and its fill stay (its position is open): 10 go
    dry = prune(store, Retention(90, 24), dry_run=True)
    assert (dry.journal, dry.reservations, dry.bot_orders, dry.idempotency) == (10, 2, 7, 3)
    assert store_size(store) == before  # a dry run deletes nothing
    done = prune(store, Retention(90, 24), batch=3)  # small batches: the loop runs
    assert (done.journal, done.reservations, done.bot_orders, done.idempotency) == (10, 2, 7, 3)
    after = store_size(store)
    assert after["journal"] == before["journal"] - 10
    assert after["idempotency"] == 1 and after["reservations"] == 2
    # what is in play is whole: the open position's decision and reservation, the held one
    left = {e.client_order_id for e in store.journal("acc")}
    assert left == {"open", "held", "fresh"}
    assert store.reservation(live["open"]) is not None
    assert store.reservation(live["held"]) is not None
    reg = BotRegistry(store)
    assert reg.owner("open") == bot.id and reg.owner("held") == bot.id
    assert reg.owner("q0") is None
    assert len(store.positions("acc")) == 1
    # idempotent: nothing more to forget
    assert prune(store, Retention(90, 24)).total == 0


def test_a_shorter_retention_forgets_more(store: SqlStore, clock: FakeClock) -> None:
    _history(store, clock)
    clock.advance(2 * DAY)
    report = prune(store, Retention(1, 1))
    # the fresh quote and the "new" claim are 2 days old now; held and open stay in play
    assert report.idempotency == 4
    assert {e.client_order_id for e in store.journal("acc")} == {"open", "held"}


@pytest.mark.parametrize(("days", "hours"), [(0, 24), (-1, 24), (90, 0), (float("inf"), 1),
                                             (float("nan"), 1), (90, 1e9)])
def test_retention_is_bounded(days: float, hours: float) -> None:
    with pytest.raises(InvalidInput):
        Retention(days, hours)


def test_store_prune_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    clock = FakeClock(1_000_000_000.0)  # 2001: everything it writes is years old
    s = open_store(url, clock)
    try:
        _history(s, clock)
    finally:
        s.close()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SIZEGUARD, "store", "prune", "--store", url, *args],
                              capture_output=True, text=True, env=clean_env(), timeout=60,
                              check=False)

    dry = run("--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["dry_run"] is True and counted["journal"] == 11 and counted["idempotency"] == 4
    done = run("--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["journal"] == counted["journal"] and report["store"]["journal"] == 3
    text = run()
    assert text.returncode == 0 and "deleted 0 journal rows" in text.stdout, text.stdout
    bad = run("--days", "-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
