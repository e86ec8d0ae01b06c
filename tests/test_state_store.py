"""The state store on a real SQLite file and a real PostgreSQL server: schema and migrations,
the account it builds (positions + live reservations count), reservations' life cycle, risk
state, the journal, learned minimums and sync."""

from __future__ import annotations

import pytest

import storefix
from sizeguard.adapters import sql_store
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.sql_store import LATEST, SqlStore, open_store
from sizeguard.core import position
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.errors import InvalidInput, StoreError
from sizeguard.ports import ExchangePosition, Reservation, StoredPosition
from storefix import FakeClock, notional_policy

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store

BOOK = load_markets(None)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def reserve(s: SqlStore, symbol: str = BTC, cid: str = "c1", price: float = 50000.0,
            ttl: float = 300.0, **limits: object):
    policy = notional_policy(100.0, **limits)
    intent = Intent(symbol, "long", price)
    return storefix.reserve(s, "acc", lambda a: decide(intent, a, BOOK[symbol], policy),
                                client_order_id=cid, snapshot_id="builtin", ttl=ttl)


def fill(s: SqlStore, res: Reservation, price: float, fee: float = 0.0) -> StoredPosition:
    """Fill a reservation whole at ``price`` with the core's notional and margin."""
    o = position.opened(BOOK[res.symbol], float(res.amount), price, res.leverage)
    return s.fill_reservation(res.id, amount=res.amount, entry_price=price, notional=o.notional,
                              margin=o.margin, fee=fee)


def test_schema_is_versioned_and_reopening_is_a_no_op(store: SqlStore, store_url: str,
                                                      clock: FakeClock) -> None:
    assert store.schema_version() == LATEST
    again = open_store(store_url, clock)
    assert again.migrate() == LATEST
    again.close()


def test_a_newer_schema_is_refused(store: SqlStore, store_url: str, clock: FakeClock) -> None:
    with store.tx() as tx:
        tx.run("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (LATEST + 1, 0.0))
    with pytest.raises(StoreError, match="newer than this sizeguard"):
        open_store(store_url, clock)


def test_migrations_apply_in_order(monkeypatch: pytest.MonkeyPatch, store_url: str,
                                   clock: FakeClock) -> None:
    extra = [*sql_store.MIGRATIONS, (LATEST + 1, ["ALTER TABLE accounts ADD COLUMN note TEXT"])]
    monkeypatch.setattr(sql_store, "MIGRATIONS", extra)
    monkeypatch.setattr(sql_store, "LATEST", LATEST + 1)
    s = open_store(store_url, clock)
    assert s.schema_version() == LATEST + 1
    with s.tx() as tx:
        assert tx.rows("SELECT version FROM schema_version ORDER BY version") == [
            (v,) for v, _ in sorted(extra)]
    s.close()


def test_a_migration_merged_below_the_newest_still_runs(store: SqlStore, store_url: str,
                                                        clock: FakeClock) -> None:
    versions = [v for v, _ in sql_store.MIGRATIONS]
    with store.tx() as tx:  # as if this store had been migrated before migration 1 existed
        tx.run("DELETE FROM schema_version WHERE version = ?", (versions[0],))
        tx.run("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
    extra = [(versions[0], ["CREATE TABLE IF NOT EXISTS probe2 (x INTEGER)"]),
             *sql_store.MIGRATIONS[1:]]
    import pytest as _pytest

    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(sql_store, "MIGRATIONS", extra)
        s = open_store(store_url, clock)
        with s.tx() as tx:
            assert tx.one("SELECT COUNT(*) FROM probe2") == (0,)
            assert {v for (v,) in tx.rows("SELECT version FROM schema_version")} == set(versions)
        s.close()


def test_account_counts_positions_and_live_reservations(store: SqlStore, clock: FakeClock) -> None:
    store.ensure_account("acc", exchange="builtin", equity=1000.0)
    r1 = reserve(store, BTC, "c1")
    assert r1.accepted and r1.reservation is not None
    pos = fill(store, r1.reservation, 50000.0, fee=0.05)
    r2 = reserve(store, ETH, "c2", price=3000.0)
    assert r2.accepted
    acct = store.account("acc")
    assert [p.symbol for p in acct.positions] == [BTC, ETH]
    assert acct.gross_exposure == pytest.approx(pos.notional + r2.reservation.notional)
    assert acct.available_margin == pytest.approx(acct.equity - pos.margin - r2.reservation.margin)
    # a third decision on a 2-slot policy is refused: the reservation holds a slot
    r3 = reserve(store, "ADA/USDT:USDT", "c3", price=1.0, max_positions=2)
    assert not r3.accepted and list(r3.decision.reasons) == ["MAX_POSITIONS"]
    assert r3.reservation is None


def test_reservation_expires_after_its_ttl(store: SqlStore, clock: FakeClock) -> None:
    store.ensure_account("acc", exchange="builtin", equity=1000.0)
    r = reserve(store, BTC, "c1", ttl=60)
    assert len(store.account("acc").positions) == 1
    clock.advance(61)
    assert store.account("acc").positions == ()  # no longer counts
    assert store.expire_reservations("acc") == 1
    assert store.reservation(r.reservation.id).status == "expired"


def test_release_frees_the_slot_and_is_journaled(store: SqlStore) -> None:
    store.ensure_account("acc", exchange="builtin", equity=1000.0)
    r = reserve(store, BTC, "c1")
    assert store.release_reservation(r.reservation.id, "cancelled by test")
    assert not store.release_reservation(r.reservation.id, "twice")
    assert store.account("acc").positions == ()
    assert [e.kind for e in store.journal("acc")] == ["decision", "release"]
    assert store.journal("acc")[-1].note == "cancelled by test"


def test_same_client_order_id_decides_once(store: SqlStore) -> None:
    store.ensure_account("acc", exchange="builtin", equity=1000.0)
    first = reserve(store, BTC, "same")
    again = reserve(store, BTC, "same")
    assert again.duplicate and again.journal_id == first.journal_id
    assert again.reservation.id == first.reservation.id
    assert len(store.journal("acc", kind="decision")) == 1


def test_close_updates_pnl_streak_and_win_rate(store: SqlStore, clock: FakeClock) -> None:
    store.ensure_account("acc", exchange="builtin", equity=1000.0)
    for i, exit_price in enumerate((49000.0, 48000.0, 51000.0, 47000.0)):
        r = reserve(store, BTC, f"c{i}")
        pos = fill(store, r.reservation, 50000.0)
        store.close_position(pos.id, exit_price=exit_price, fee=0.05)
    rs = store.risk_state("acc")
    # notional 100: -2, -4, +2, -6 minus 0.05 exit fee each
    assert rs.realised_pnl_today == pytest.approx(-10.2)
    assert rs.equity == pytest.approx(989.8)
    assert rs.peak_equity == pytest.approx(1000.0)
    assert rs.losing_streak == 1
    assert rs.symbol_stats[BTC] == (4, 1)
    acct = store.account("acc")
    assert acct.symbol_stats[BTC].win_rate == pytest.approx(0.25)
    assert acct.last_trade_at[BTC] == clock.now()
    clock.advance(86400)  # a new UTC day: today's PnL starts at zero, the streak stays
    assert store.account("acc").realised_pnl_today == 0.0
    assert store.account("acc").losing_streak == 1


def test_journal_keeps_trace_and_snapshot_and_filters(store: SqlStore) -> None:
    store.ensure_account("acc", exchange="builtin", equity=1000.0)
    for i in range(5):
        reserve(store, BTC if i % 2 else ETH, f"c{i}", price=50000.0 if i % 2 else 3000.0)
    entries = store.journal("acc", kind="decision")
    assert len(entries) == 5
    e = entries[0]
    assert e.snapshot_id == "builtin" and e.client_order_id == "c0"
    assert e.data["trace"][0]["step"] == "validate"
    assert [x.client_order_id for x in store.journal("acc", symbol=BTC)] == ["c1", "c3"]
    assert [x.client_order_id for x in store.journal("acc", last=2)] == ["c3", "c4"]


def test_learned_minimums_only_grow_and_feed_the_account(store: SqlStore) -> None:
    store.ensure_account("acc", exchange="kraken", equity=1000.0)
    store.learn_minimum("kraken", "XRP/USD", min_cost=2.5, source="rejection")
    store.learn_minimum("kraken", "XRP/USD", min_cost=1.0, source="lower: ignored")
    store.learn_minimum("other", "XRP/USD", min_cost=9.0)
    assert store.learned_minimums("kraken")["XRP/USD"]["min_cost"] == 2.5
    assert dict(store.account("acc").min_cost) == {"XRP/USD": 2.5}


def test_sync_adds_outside_positions_and_closes_vanished(store: SqlStore) -> None:
    store.ensure_account("acc", exchange="builtin", equity=1000.0)
    r = reserve(store, BTC, "c1")
    mine = fill(store, r.reservation, 50000.0)
    outside = ExchangePosition(ETH, "short", 0.5, 3000.0, 1500.0, 150.0, 10.0)
    out = store.sync_positions("acc", [outside])
    assert out["closed"] == [mine.id] and len(out["added"]) == 1
    acct = store.account("acc")
    assert [(p.symbol, p.side, p.notional) for p in acct.positions] == [(ETH, "short", 1500.0)]


def test_bad_input_and_unknown_account_are_refused(store: SqlStore) -> None:
    with pytest.raises(InvalidInput, match="equity"):
        store.ensure_account("acc", exchange="x", equity=float("nan"))
    with pytest.raises(InvalidInput, match="no such account"):
        store.account("nobody")
    store.ensure_account("acc", exchange="x", equity=10.0)
    with pytest.raises(InvalidInput, match="client_order_id"):
        storefix.reserve(store, "acc", lambda a: None, client_order_id="")  # type: ignore[arg-type,return-value]


def test_open_store_urls(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = open_store(str(tmp_path / "a.db"))
    assert s.url == f"sqlite:///{tmp_path / 'a.db'}"
    s.close()
    monkeypatch.setenv("SIZEGUARD_STORE", f"sqlite:///{tmp_path / 'b.db'}")
    s = open_store()
    assert (tmp_path / "b.db").exists()
    with s.tx() as tx:
        assert tx.one("PRAGMA journal_mode")[0] == "wal"
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.account("x")
    with pytest.raises(InvalidInput, match="store"):
        open_store("mysql://nope")
    with pytest.raises(StoreError, match="cannot open"):
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
