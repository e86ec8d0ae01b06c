"""The state store: ONE SQL implementation over two real databases, SQLite and PostgreSQL.

Everything that differs between the two lives in a small dialect (connecting, the placeholder,
the serial key type, how a transaction locks the account). The tables, the migrations and every
query are shared.

Atomicity of decide + reserve: the transaction first takes the account's write lock (SQLite
``BEGIN IMMEDIATE``, which holds the database's single writer lock; PostgreSQL ``SELECT ... FOR
UPDATE`` on the account row), then loads the account with its open positions and live
reservations, runs the core decision, journals it and inserts the reservation, and commits. Two
deciders, in threads or in processes, can never both see the same free slot.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from sizeguard.core.account import Account, Position, SymbolStats
from sizeguard.core.decision import Decision
from sizeguard.core.position import realised_pnl
from sizeguard.errors import InvalidInput, StoreError
from sizeguard.ids import random_hex
from sizeguard.ports import (
    Clock,
    ExchangePosition,
    JournalEntry,
    Reservation,
    Reserved,
    RiskState,
    StoredPosition,
)
from sizeguard.redact import redact

ENV_STORE = "SIZEGUARD_STORE"

# --------------------------------------------------------------------------- schema

# Each migration: (version, statements). Tokens: {serial} an auto-increment primary key,
# {float} a double. Never edit a shipped migration; append a new one.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            exchange TEXT NOT NULL,
            quote TEXT NOT NULL,
            equity {float} NOT NULL,
            peak_equity {float} NOT NULL,
            losing_streak INTEGER NOT NULL DEFAULT 0,
            created_at {float} NOT NULL,
            updated_at {float} NOT NULL)""",
        """CREATE TABLE daily_pnl (
            account_id TEXT NOT NULL REFERENCES accounts(id),
            day TEXT NOT NULL,
            realised {float} NOT NULL DEFAULT 0,
            trades INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (account_id, day))""",
        """CREATE TABLE symbol_stats (
            account_id TEXT NOT NULL REFERENCES accounts(id),
            symbol TEXT NOT NULL,
            trades INTEGER NOT NULL DEFAULT 0,
            wins INTEGER NOT NULL DEFAULT 0,
            last_trade_at {float},
            PRIMARY KEY (account_id, symbol))""",
        """CREATE TABLE journal (
            id {serial},
            account_id TEXT NOT NULL,
            at {float} NOT NULL,
            kind TEXT NOT NULL,
            symbol TEXT,
            side TEXT,
            status TEXT,
            reasons TEXT NOT NULL DEFAULT '',
            client_order_id TEXT,
            snapshot_id TEXT,
            note TEXT,
            data TEXT NOT NULL DEFAULT '{{}}')""",
        "CREATE INDEX journal_account_symbol ON journal (account_id, symbol, id)",
        "CREATE INDEX journal_client_order ON journal (client_order_id)",
        """CREATE TABLE reservations (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            amount TEXT NOT NULL,
            notional {float} NOT NULL,
            margin {float} NOT NULL,
            leverage {float} NOT NULL,
            client_order_id TEXT NOT NULL UNIQUE,
            journal_id BIGINT NOT NULL,
            created_at {float} NOT NULL,
            expires_at {float} NOT NULL,
            status TEXT NOT NULL,
            release_reason TEXT,
            released_at {float})""",
        "CREATE INDEX reservations_live ON reservations (account_id, status, expires_at)",
        """CREATE TABLE positions (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            amount TEXT NOT NULL,
            entry_price {float} NOT NULL,
            notional {float} NOT NULL,
            margin {float} NOT NULL,
            leverage {float} NOT NULL,
            stop_price {float},
            take_profit {float},
            client_order_id TEXT,
            reservation_id TEXT,
            order_id TEXT,
            source TEXT NOT NULL,
            status TEXT NOT NULL,
            opened_at {float} NOT NULL,
            closed_at {float},
            exit_price {float},
            pnl {float})""",
        "CREATE INDEX positions_open ON positions (account_id, status)",
        """CREATE TABLE learned_minimums (
            exchange TEXT NOT NULL,
            symbol TEXT NOT NULL,
            min_cost {float} NOT NULL DEFAULT 0,
            min_amount {float} NOT NULL DEFAULT 0,
            source TEXT,
            updated_at {float} NOT NULL,
            PRIMARY KEY (exchange, symbol))""",
        """CREATE TABLE market_snapshots (
            id TEXT PRIMARY KEY,
            exchange TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            path TEXT NOT NULL,
            recorded_at {float} NOT NULL)""",
    ]),
    # 2: a reservation is claimed by the submit working on it, so a concurrent duplicate of the
    # same client order id waits instead of ordering too; a crashed claim lapses and resumes.
    (2, ["ALTER TABLE reservations ADD COLUMN claimed_until {float}"]),
    (3, [  # the HTTP service: bots (hashed tokens, budgets), who decided what, idempotency
        """CREATE TABLE bots (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            account_id TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            budget {float} NOT NULL,
            max_positions INTEGER NOT NULL DEFAULT 0,
            created_at {float} NOT NULL)""",
        """CREATE TABLE bot_orders (
            client_order_id TEXT PRIMARY KEY,
            bot_id TEXT NOT NULL,
            account_id TEXT NOT NULL,
            created_at {float} NOT NULL)""",
        "CREATE INDEX bot_orders_bot ON bot_orders (bot_id, created_at)",
        """CREATE TABLE idempotency (
            bot_id TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            status INTEGER NOT NULL,
            body TEXT,
            created_at {float} NOT NULL,
            PRIMARY KEY (bot_id, key))""",
    ]),
    (4, [  # the application layer: typed decisions, roles, crash-safe idempotency
        # a reservation keeps the price it was decided at (fills are valued against it)
        "ALTER TABLE reservations ADD COLUMN entry_price {float}",
        # an idempotency claim is a lease (seconds, renewed by its holder) on one client order
        # id: a retry after a crash resumes that id instead of deciding again
        "ALTER TABLE idempotency ADD COLUMN client_order_id TEXT",
        "ALTER TABLE idempotency ADD COLUMN lease_until {float}",
        # "bot" or "admin" (account-wide writes: equity, halts, reservations, presets)
        "ALTER TABLE bots ADD COLUMN role TEXT NOT NULL DEFAULT 'bot'",
        # account-wide state only its admin (or the exchange sync) writes
        "ALTER TABLE accounts ADD COLUMN halted TEXT",
        "ALTER TABLE accounts ADD COLUMN presets TEXT",
    ]),
]
LATEST = max(v for v, _ in MIGRATIONS)


class SystemClock:
    def now(self) -> float:
        return time.time()


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _new_id(prefix: str) -> str:
    """``prefix_`` + the second (8 hex digits) + 64 random bits (16): ids of one second sort
    together, so an insert lands in the index's last pages instead of a random one (a commit
    writes fewer pages), and stay unique by their random part."""
    return f"{prefix}_{int(time.time()):08x}{random_hex(8)}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _dumps(value: Mapping[str, Any]) -> str:
    # Decisions are plain JSON already: orjson writes them (a tenth of json's time; a
    # non-finite number as null). What orjson refuses (an integer past 64 bits, a lone
    # surrogate) takes json, with the same clean-up of non-finite numbers.
    try:
        return orjson.dumps(value, option=_ORJSON).decode()
    except TypeError:
        pass
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(value), separators=(",", ":"), sort_keys=True)


_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


# --------------------------------------------------------------------------- the transaction


class Tx:
    """A transaction on one connection: rows(), one(), run() with ``?`` placeholders."""

    def __init__(self, store: SqlStore, conn: Any, locked: str | None = None) -> None:
        self._store = store
        self._conn = conn
        self.locked: set[str] = {locked} if locked is not None else set()  # accounts held

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        return self._conn.execute(self._store.sql(sql), tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._exec(sql, params).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self._exec(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._exec(sql, params)
        return int(cur.rowcount or 0)

    def many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        """The rows of each query, in order (PostgreSQL: sent together, one round trip)."""
        return self._store._many(self._conn, queries)  # noqa: SLF001 - the store's own driver


class _Joined:
    """The transaction already open on this thread, as :meth:`SqlStore.tx` joins it: its
    exceptions pass through, and it ends with the transaction that opened it."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    def __enter__(self) -> Tx:
        return self.tx

    def __exit__(self, *exc: object) -> None:
        return None


class _Rollback(Exception):
    """Thrown into a unit of work's transaction to end it without committing."""


class SqlUnitOfWork:
    """:class:`~sizeguard.ports.UnitOfWork` over a :class:`SqlStore`: every store call made on
    this thread inside ``with uow:`` joins one transaction, which commits only on
    :meth:`commit` (leaving the block without it, or by an exception, rolls back)."""

    def __init__(self, store: SqlStore, account_id: str | None) -> None:
        self.store = store
        self.account_id = account_id
        self._cm: AbstractContextManager[Tx] | None = None
        self._commit = False

    def __enter__(self) -> SqlUnitOfWork:
        if self._cm is not None:
            raise StoreError("internal: a unit of work is not re-entrant")
        self._commit = False
        self._cm = self.store.tx(self.account_id)
        self._cm.__enter__()
        return self

    def commit(self) -> None:
        self._commit = True

    def rollback(self) -> None:
        self._commit = False

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        cm, self._cm = self._cm, None
        assert cm is not None
        if exc is not None:
            cm.__exit__(kind, exc, tb)  # rolls back; the caller's exception propagates
        elif self._commit:
            cm.__exit__(None, None, None)
        else:
            cm.__exit__(_Rollback, _Rollback(), None)


_RES_COLS = ("id, account_id, symbol, side, amount, notional, margin, leverage, client_order_id, "
             "journal_id, created_at, expires_at, status, release_reason, entry_price")
_POS_COLS = ("id, account_id, symbol, side, amount, entry_price, notional, margin, leverage, "
             "stop_price, take_profit, client_order_id, source, opened_at, status, exit_price, pnl, "
             "closed_at")
_JOURNAL_COLS = ("id, account_id, at, kind, symbol, side, status, reasons, client_order_id, "
                 "snapshot_id, data, note")


def _reservation(row: tuple[Any, ...]) -> Reservation:
    return Reservation(row[0], row[1], row[2], row[3], row[4], float(row[5]), float(row[6]),
                       float(row[7]), row[8], int(row[9]), float(row[10]), float(row[11]), row[12],
                       row[13], float(row[14]) if row[14] is not None else None)


def _position(row: tuple[Any, ...]) -> StoredPosition:
    def f(v: Any) -> float | None:
        return float(v) if v is not None else None
    return StoredPosition(row[0], row[1], row[2], row[3], row[4], float(row[5]), float(row[6]),
                          float(row[7]), float(row[8]), f(row[9]), f(row[10]), row[11], row[12],
                          float(row[13]), row[14], f(row[15]), f(row[16]), f(row[17]))


def _journal(row: tuple[Any, ...]) -> JournalEntry:
    return JournalEntry(int(row[0]), row[1], float(row[2]), row[3], row[4], row[5], row[6],
                        tuple(r for r in (row[7] or "").split(",") if r), row[8], row[9],
                        json.loads(row[10] or "{}"), row[11])


# --------------------------------------------------------------------------- the store


class SqlStore:
    """Shared implementation; see :class:`SqliteStore` and :class:`PostgresStore`."""

    placeholder = "?"
    serial = ""
    float_type = "DOUBLE PRECISION"

    def __init__(self, url: str, clock: Clock | None = None) -> None:
        self._url = url
        self.safe_url = redact(url)  # for every message: the password never leaves
        self.clock: Clock = clock or SystemClock()
        self._local = threading.local()
        self.transactions = 0  # outermost transactions begun (tests and /metrics count them)
        self._count_lock = threading.Lock()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self.migrate()

    # -- dialect hooks ------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, conn: Any, lock_account: str | None, write: bool
               ) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _lock_migrations(self, tx: Tx) -> None:
        """Serialise migrating processes (SQLite's write lock already does)."""

    def _table_exists(self, tx: Tx, name: str) -> bool:
        raise NotImplementedError

    def _broken(self, conn: Any) -> bool:
        """True when ``conn`` can no longer be used (the server closed it)."""
        return False

    def _watch(self, conn: Any) -> AbstractContextManager[None]:
        """Bound the time a transaction may take on ``conn`` (PostgreSQL: a hung server)."""
        return contextlib.nullcontext()

    def _timed_out(self, conn: Any) -> bool:
        """True when ``conn`` was cut for taking too long (not worth a second try)."""
        return False

    def _client_error(self, exc: BaseException) -> InvalidInput | None:
        """The driver's refusal of a value (not of the store) as the client's error."""
        if isinstance(exc, OverflowError):
            return InvalidInput("value", None, f"a number out of range for the store ({exc})")
        return None

    # -- plumbing -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._url

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _conn(self) -> Any:
        """This thread's connection: opened on first use, and again when the last one broke
        (a database restart), so a restarted server is used at once."""
        if self._closed:
            raise StoreError(f"the store {self.safe_url} is closed")
        key = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == key and self._broken(conn):
            self._drop(conn)
            conn = None
        if conn is None or getattr(self._local, "pid", None) != key:
            try:
                conn = self._connect()
            except StoreError:
                raise
            except Exception as exc:  # a driver error: map it
                raise StoreError(f"cannot open the store {self.safe_url}: "
                                 f"{redact(str(exc))}") from exc
            self._local.conn, self._local.pid = conn, key
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _drop(self, conn: Any) -> None:
        """Forget this thread's broken connection (the next use opens a new one)."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._all_lock, contextlib.suppress(ValueError):
            self._all.remove(conn)
        with contextlib.suppress(Exception):  # it is broken: closing is best effort
            conn.close()

    def _mapped(self, exc: BaseException) -> BaseException:
        """A driver's exception as sizeguard's: the client's value refused -> InvalidInput
        (4xx), anything else from the database -> StoreError (503), URL passwords masked."""
        if isinstance(exc, StoreError | InvalidInput):
            return exc
        client = self._client_error(exc)
        if client is not None:
            return client
        if isinstance(exc, sqlite3.Error | OSError) or type(exc).__module__.startswith("psycopg"):
            return StoreError(f"{self.safe_url}: {redact(str(exc))}")
        return exc

    def tx(self, lock_account: str | None = None, write: bool = True
           ) -> AbstractContextManager[Tx]:
        """A transaction. Inside one already open on this thread (a unit of work) it joins
        that one: its statements commit or roll back with it. A connection found dead when the
        transaction begins (the database restarted since it was last used) is replaced and the
        transaction begun again: nothing had been sent on it, so the retry is safe."""
        current: Tx | None = getattr(self._local, "current", None)
        if current is not None and getattr(self._local, "pid", None) == os.getpid():
            if lock_account is not None and lock_account not in current.locked:
                self._lock_joined(current, lock_account)
                current.locked.add(lock_account)
            return _Joined(current)  # a class, not a generator: a store call's join is cheap
        return self._tx(lock_account, write)

    @contextmanager
    def _tx(self, lock_account: str | None, write: bool) -> Iterator[Tx]:
        for attempt in (1, 2):
            conn = self._conn()
            stack = contextlib.ExitStack()
            try:
                stack.enter_context(self._watch(conn))
                stack.enter_context(self._begin(conn, lock_account, write))
                break
            except Exception as exc:
                stack.close()
                if self._broken(conn):
                    self._drop(conn)
                    if attempt == 1 and not self._timed_out(conn):
                        continue
                mapped = self._mapped(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
        with self._count_lock:
            self.transactions += 1
        try:
            with stack:
                tx = Tx(self, conn, lock_account)
                self._local.current = tx
                try:
                    yield tx
                finally:
                    self._local.current = None
        except Exception as exc:
            if self._broken(conn):
                self._drop(conn)
            mapped = self._mapped(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _lock_joined(self, tx: Tx, account_id: str) -> None:
        """Lock ``account_id`` inside an open transaction (SQLite's write lock already covers it)."""

    def _many(self, conn: Any, queries: Sequence[tuple[str, Sequence[Any]]]
              ) -> list[list[tuple[Any, ...]]]:
        return [[tuple(r) for r in conn.execute(self.sql(q), tuple(p)).fetchall()]
                for q, p in queries]

    def unit_of_work(self, account_id: str | None = None) -> SqlUnitOfWork:
        """One transaction for several store calls (``with uow: ...; uow.commit()``); the
        account row is locked for its whole length when ``account_id`` is given."""
        return SqlUnitOfWork(self, account_id)

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()
        self._local = threading.local()
        self._closed = True

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the migrations not applied yet, in order, each in its own transaction."""
        for version, statements in sorted(MIGRATIONS, key=lambda m: m[0]):
            with self.tx() as tx:
                self._lock_migrations(tx)
                if not self._table_exists(tx, "schema_version"):
                    tx.run("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                           f"applied_at {self.float_type} NOT NULL)")
                applied = {int(r[0]) for r in tx.rows("SELECT version FROM schema_version")}
                current = max(applied, default=0)
                if current > LATEST:
                    raise StoreError(f"{self.safe_url} has schema version {current}, newer than this "
                                     f"sizeguard knows ({LATEST}); upgrade sizeguard")
                if version in applied:  # by set, not by max: every known migration runs once
                    continue
                for stmt in statements:
                    tx.run(stmt.format(serial=self.serial, float=self.float_type))
                tx.run("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                       (version, self.clock.now()))
        return self.schema_version()

    def schema_version(self) -> int:
        with self.tx(write=False) as tx:
            row = tx.one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    # -- accounts -----------------------------------------------------------------------
    def ensure_account(self, account_id: str, *, exchange: str, equity: float,
                       quote: str = "USDT") -> None:
        if not (math.isfinite(equity) and equity > 0):
            raise InvalidInput("equity", equity, "must be a finite number > 0")
        now = self.clock.now()
        with self.tx() as tx:
            tx.run("INSERT INTO accounts (id, exchange, quote, equity, peak_equity, losing_streak, "
                   "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?) "
                   "ON CONFLICT (id) DO NOTHING",
                   (account_id, exchange, quote, equity, equity, now, now))

    def has_account(self, account_id: str) -> bool:
        with self.tx(write=False) as tx:
            return tx.one("SELECT 1 FROM accounts WHERE id = ?", (account_id,)) is not None

    def set_equity(self, account_id: str, equity: float, *, peak: float | None = None) -> None:
        if not (math.isfinite(equity) and equity > 0):
            raise InvalidInput("equity", equity, "must be a finite number > 0")
        if peak is not None and not (math.isfinite(peak) and peak >= equity):
            raise InvalidInput("peak", peak, "must be a finite number >= equity")
        with self.tx(account_id) as tx:
            self._require_account(tx, account_id)
            if peak is None:
                tx.run("UPDATE accounts SET equity = ?, peak_equity = CASE WHEN peak_equity > ? "
                       "THEN peak_equity ELSE ? END, updated_at = ? WHERE id = ?",
                       (equity, equity, equity, self.clock.now(), account_id))
            else:
                tx.run("UPDATE accounts SET equity = ?, peak_equity = ?, updated_at = ? "
                       "WHERE id = ?", (equity, peak, self.clock.now(), account_id))

    def set_halt(self, account_id: str, reason: str | None) -> None:
        with self.tx(account_id) as tx:
            self._require_account(tx, account_id)
            tx.run("UPDATE accounts SET halted = ?, updated_at = ? WHERE id = ?",
                   (reason, self.clock.now(), account_id))
            self._insert_journal(tx, account_id, self.clock.now(),
                                 "halt" if reason is not None else "resume", None, None, None, "",
                                 None, None, {}, reason)

    def set_presets(self, account_id: str, presets: Sequence[str] | None) -> None:
        with self.tx(account_id) as tx:
            self._require_account(tx, account_id)
            tx.run("UPDATE accounts SET presets = ?, updated_at = ? WHERE id = ?",
                   (",".join(presets) if presets is not None else None, self.clock.now(),
                    account_id))

    def _require_account(self, tx: Tx, account_id: str) -> tuple[Any, ...]:
        row = tx.one("SELECT exchange, quote, equity, peak_equity, losing_streak, halted, presets "
                     "FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise InvalidInput("account", account_id, "no such account in the store "
                               "(create it with an equity first)")
        return row

    def _load_account(self, tx: Tx, account_id: str, now: float) -> Account:
        # the entry price lets an add value the position it joins (0: an older reservation)
        acct, held, reserved, pnl, stats_rows, mins_rows = tx.many((
            ("SELECT exchange, quote, equity, peak_equity, losing_streak, halted, presets "
             "FROM accounts WHERE id = ?", (account_id,)),
            ("SELECT 'p' || id, symbol, side, notional, margin, entry_price FROM positions "
             "WHERE account_id = ? AND status = 'open' ORDER BY opened_at, id", (account_id,)),
            ("SELECT 'r' || id, symbol, side, notional, margin, entry_price FROM reservations "
             "WHERE account_id = ? AND status = 'held' AND expires_at > ? ORDER BY created_at, id",
             (account_id, now)),
            ("SELECT realised FROM daily_pnl WHERE account_id = ? AND day = ?",
             (account_id, utc_day(now))),
            ("SELECT symbol, trades, wins, last_trade_at FROM symbol_stats WHERE account_id = ?",
             (account_id,)),
            ("SELECT symbol, min_cost FROM learned_minimums WHERE exchange = "
             "(SELECT exchange FROM accounts WHERE id = ?) AND min_cost > 0", (account_id,))))
        if not acct:
            raise InvalidInput("account", account_id, "no such account in the store "
                               "(create it with an equity first)")
        _exchange, _quote, equity, peak, streak, halted, _presets = acct[0]
        positions = self._positions(held, reserved)
        stats: dict[str, SymbolStats] = {}
        last: dict[str, float] = {}
        for symbol, trades, wins, at in stats_rows:
            stats[symbol] = SymbolStats(int(trades), int(wins))
            if at is not None:
                last[symbol] = float(at)
        mins = {s: float(c) for s, c in mins_rows}
        return Account(equity=float(equity), positions=tuple(positions), peak_equity=float(peak),
                       realised_pnl_today=float(pnl[0][0]) if pnl else 0.0,
                       losing_streak=int(streak), symbol_stats=stats, last_trade_at=last,
                       min_cost=mins, halted=halted)

    def _positions(self, *tables: list[tuple[Any, ...]]) -> list[Position]:
        """The account's positions from its rows (key, symbol, side, notional, margin, entry),
        in order. A row this thread read the last time the same, value for value, gives the
        same (immutable) Position again instead of a new one: an account holding a hundred
        reservations was rebuilt from a hundred new objects every batch."""
        seen: dict[Any, tuple[tuple[Any, ...], Position]] = getattr(self._local, "positions", None) \
            or {}
        kept: dict[Any, tuple[tuple[Any, ...], Position]] = {}
        out: list[Position] = []
        for rows in tables:
            for row in rows:
                hit = seen.get(row[0])
                if hit is None or hit[0] != row:
                    _, symbol, side, n, m, e = row
                    hit = (row, Position(symbol, side, float(n), float(m), entry=float(e or 0.0)))
                kept[row[0]] = hit
                out.append(hit[1])
        self._local.positions = kept
        return out

    def account(self, account_id: str) -> Account:
        with self.tx(write=False) as tx:
            return self._load_account(tx, account_id, self.clock.now())

    def risk_state(self, account_id: str) -> RiskState:
        now = self.clock.now()
        with self.tx(write=False) as tx:
            exchange, quote, equity, peak, streak, halted, presets = self._require_account(
                tx, account_id)
            acct = self._load_account(tx, account_id, now)
            n_pos = tx.one("SELECT COUNT(*) FROM positions WHERE account_id = ? AND status = 'open'",
                           (account_id,))
            n_res = tx.one("SELECT COUNT(*) FROM reservations WHERE account_id = ? AND "
                           "status = 'held' AND expires_at > ?", (account_id, now))
        return RiskState(account_id, exchange, quote, float(equity), float(peak),
                         acct.realised_pnl_today, utc_day(now), int(streak),
                         {s: (v.trades, v.wins) for s, v in acct.symbol_stats.items()},
                         int(n_pos[0]) if n_pos else 0, int(n_res[0]) if n_res else 0,
                         acct.margin_in_use, acct.gross_exposure, halted,
                         tuple(p for p in presets.split(",") if p) if presets is not None else None)

    # -- decide + reserve (the write half; the whole is sizeguard.app.services) -----------
    def record_decision(self, account_id: str, decision: Decision, *, client_order_id: str,
                        snapshot_id: str | None = None, ttl: float = 300.0,
                        claim: float = 60.0) -> Reserved:
        """Journal a decision and, when accepted, hold its reservation (claimed for ``claim``
        seconds), in the caller's unit of work (or a transaction of its own)."""
        if not client_order_id:
            raise InvalidInput("client_order_id", client_order_id, "must not be empty")
        with self.tx(account_id) as tx:
            now = self.clock.now()
            data = decision.to_dict()
            jid = self._insert_journal(
                tx, account_id, now, "decision", decision.symbol, decision.side,
                str(decision.status), ",".join(str(r) for r in decision.reasons),
                client_order_id, snapshot_id, data, None)
            reservation = None
            if decision.accepted:
                reservation = Reservation(
                    _new_id("res"), account_id, decision.symbol, decision.side, decision.amount,
                    decision.notional, decision.margin, decision.leverage, client_order_id, jid,
                    now, now + ttl, "held", None, decision.entry_price)
                tx.run(f"INSERT INTO reservations ({_RES_COLS}, claimed_until) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (reservation.id, account_id, reservation.symbol, reservation.side,
                        reservation.amount, reservation.notional, reservation.margin,
                        reservation.leverage, client_order_id, jid, now, now + ttl, "held", None,
                        decision.entry_price, now + claim))
        return Reserved(decision, jid, reservation, data=data)

    def claim_reservation(self, reservation_id: str, claim: float = 60.0) -> bool:
        """Take over a held reservation whose previous claim has lapsed (its submit crashed or
        gave up); False while another submit is still working on it."""
        res = self.reservation(reservation_id)
        if res is None:
            return False
        with self.tx(res.account_id) as tx:
            now = self.clock.now()
            return tx.run("UPDATE reservations SET claimed_until = ? WHERE id = ? AND "
                          "status = 'held' AND (claimed_until IS NULL OR claimed_until <= ?)",
                          (now + claim, reservation_id, now)) > 0

    def decided(self, account_id: str, client_order_id: str) -> Reserved | None:
        """The earlier answer for ``client_order_id`` (marked ``duplicate``), or None."""
        with self.tx(write=False) as tx:
            row = tx.one("SELECT id, data FROM journal WHERE account_id = ? AND kind = 'decision' "
                         "AND client_order_id = ? ORDER BY id LIMIT 1", (account_id, client_order_id))
            if row is None:
                return None
            res = tx.one(f"SELECT {_RES_COLS} FROM reservations WHERE client_order_id = ?",
                         (client_order_id,))
        return Reserved(Decision.from_dict(json.loads(row[1])), int(row[0]),
                        _reservation(res) if res else None, duplicate=True)

    def _journal_decision(self, tx: Tx, account_id: str, decision: Decision,
                          client_order_id: str | None, snapshot_id: str | None, now: float) -> int:
        return self._insert_journal(
            tx, account_id, now, "decision", decision.symbol, decision.side, str(decision.status),
            ",".join(str(r) for r in decision.reasons), client_order_id, snapshot_id,
            decision.to_dict(), None)

    def _insert_journal(self, tx: Tx, account_id: str, at: float, kind: str, symbol: str | None,
                        side: str | None, status: str | None, reasons: str,
                        client_order_id: str | None, snapshot_id: str | None,
                        data: Mapping[str, Any], note: str | None) -> int:
        row = tx.one("INSERT INTO journal (account_id, at, kind, symbol, side, status, reasons, "
                     "client_order_id, snapshot_id, data, note) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                     (account_id, at, kind, symbol, side, status, reasons, client_order_id,
                      snapshot_id, _dumps(data), note))
        assert row is not None
        return int(row[0])

    def journal_decision(self, account_id: str, decision: Decision, *,
                         client_order_id: str | None = None,
                         snapshot_id: str | None = None) -> int:
        with self.tx() as tx:
            return self._journal_decision(tx, account_id, decision, client_order_id, snapshot_id,
                                          self.clock.now())

    def journal_event(self, account_id: str, kind: str, *, symbol: str | None = None,
                      client_order_id: str | None = None, note: str | None = None,
                      data: Mapping[str, Any] | None = None) -> int:
        with self.tx() as tx:
            return self._insert_journal(tx, account_id, self.clock.now(), kind, symbol, None, None,
                                        "", client_order_id, None, data or {}, note)

    def last_price(self, account_id: str, symbol: str) -> float | None:
        """The latest price the account's journal holds for ``symbol``: the entry price of its
        last decision or fill, or the exit price of its last close."""
        with self.tx(write=False) as tx:
            row = tx.one("SELECT kind, data FROM journal WHERE account_id = ? AND symbol = ? AND "
                         "kind IN ('decision', 'fill', 'close') ORDER BY id DESC LIMIT 1",
                         (account_id, symbol))
        if row is None:
            return None
        price = json.loads(row[1]).get("exit_price" if row[0] == "close" else "entry_price")
        return float(price) if price else None

    def journal(self, account_id: str | None = None, *, symbol: str | None = None,
                last: int | None = None, kind: str | None = None) -> list[JournalEntry]:
        where, params = [], []
        for col, val in (("account_id", account_id), ("symbol", symbol), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = f"SELECT {_JOURNAL_COLS} FROM journal"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if last is not None:
            sql += f" LIMIT {int(last)}"
        with self.tx(write=False) as tx:
            rows = tx.rows(sql, params)
        return [_journal(r) for r in reversed(rows)]

    # -- reservations -------------------------------------------------------------------
    def reservation(self, reservation_id: str) -> Reservation | None:
        with self.tx(write=False) as tx:
            row = tx.one(f"SELECT {_RES_COLS} FROM reservations WHERE id = ?", (reservation_id,))
        return _reservation(row) if row else None

    def reservations(self, account_id: str, *, live_only: bool = True) -> list[Reservation]:
        sql = f"SELECT {_RES_COLS} FROM reservations WHERE account_id = ?"
        params: list[Any] = [account_id]
        if live_only:
            sql += " AND status = 'held' AND expires_at > ?"
            params.append(self.clock.now())
        with self.tx(write=False) as tx:
            return [_reservation(r) for r in tx.rows(sql + " ORDER BY created_at, id", params)]

    def _expire(self, tx: Tx, account_id: str | None, now: float) -> int:
        sql = ("UPDATE reservations SET status = 'expired', release_reason = 'ttl', released_at = ? "
               "WHERE status = 'held' AND expires_at <= ?")
        params: list[Any] = [now, now]
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        return tx.run(sql, params)

    def expire_reservations(self, account_id: str | None = None) -> int:
        with self.tx(account_id) as tx:
            return self._expire(tx, account_id, self.clock.now())

    def _held(self, tx: Tx, reservation_id: str) -> Reservation:
        row = tx.one(f"SELECT {_RES_COLS} FROM reservations WHERE id = ?", (reservation_id,))
        if row is None:
            raise InvalidInput("reservation", reservation_id, "no such reservation")
        return _reservation(row)

    def release_reservation(self, reservation_id: str, reason: str) -> bool:
        res = self.reservation(reservation_id)
        if res is None:
            raise InvalidInput("reservation", reservation_id, "no such reservation")
        with self.tx(res.account_id) as tx:
            now = self.clock.now()
            n = tx.run("UPDATE reservations SET status = 'released', release_reason = ?, "
                       "released_at = ? WHERE id = ? AND status = 'held'",
                       (reason, now, reservation_id))
            if n:
                self._insert_journal(tx, res.account_id, now, "release", res.symbol, res.side, None,
                                     "", res.client_order_id, None,
                                     {"reservation_id": reservation_id}, reason)
        return n > 0

    def fill_reservation(self, reservation_id: str, *, amount: str, entry_price: float,
                         notional: float, margin: float,
                         fee: float = 0.0, stop_price: float | None = None,
                         take_profit: float | None = None,
                         order_id: str | None = None) -> StoredPosition:
        """Record the fill of a held reservation as an open position. ``notional`` and
        ``margin`` are the core's values for the fill (:func:`sizeguard.core.position.opened`
        on the market): the store does no arithmetic of its own, so an inverse contract filled
        away from the decision's price keeps its face-value notional."""
        res = self.reservation(reservation_id)
        if res is None:
            raise InvalidInput("reservation", reservation_id, "no such reservation")
        with self.tx(res.account_id) as tx:
            now = self.clock.now()
            res = self._held(tx, reservation_id)
            existing = tx.one(f"SELECT {_POS_COLS} FROM positions WHERE reservation_id = ?",
                              (reservation_id,))
            if existing is not None:  # filled before: idempotent
                return _position(existing)
            if res.status not in ("held", "expired"):
                raise InvalidInput("reservation", reservation_id,
                                   f"is {res.status}; only a held reservation can fill")
            pos = StoredPosition(_new_id("pos"), res.account_id, res.symbol, res.side, amount,
                                 entry_price, notional, margin, res.leverage, stop_price,
                                 take_profit, res.client_order_id, "engine", now)
            self._insert_position(tx, pos, reservation_id, order_id)
            tx.run("UPDATE reservations SET status = 'filled', released_at = ?, "
                   "release_reason = 'filled' WHERE id = ?", (now, reservation_id))
            self._touch_symbol(tx, res.account_id, res.symbol, now, trade=None)
            self._add_realised(tx, res.account_id, -fee, now, count=False)
            self._insert_journal(tx, res.account_id, now, "fill", res.symbol, res.side, "filled", "",
                                 res.client_order_id, None,
                                 {"position_id": pos.id, "amount": amount,
                                  "entry_price": entry_price, "fee": fee, "order_id": order_id,
                                  "notional": notional, "margin": margin}, None)
        return pos

    def _insert_position(self, tx: Tx, pos: StoredPosition, reservation_id: str | None,
                         order_id: str | None) -> None:
        tx.run("INSERT INTO positions (id, account_id, symbol, side, amount, entry_price, notional, "
               "margin, leverage, stop_price, take_profit, client_order_id, reservation_id, "
               "order_id, source, status, opened_at) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
               (pos.id, pos.account_id, pos.symbol, pos.side, pos.amount, pos.entry_price,
                pos.notional, pos.margin, pos.leverage, pos.stop_price, pos.take_profit,
                pos.client_order_id, reservation_id, order_id, pos.source, pos.opened_at))

    # -- positions ----------------------------------------------------------------------
    def position(self, position_id: str) -> StoredPosition | None:
        with self.tx(write=False) as tx:
            row = tx.one(f"SELECT {_POS_COLS} FROM positions WHERE id = ?", (position_id,))
        return _position(row) if row else None

    def positions(self, account_id: str, *, open_only: bool = True) -> list[StoredPosition]:
        sql = f"SELECT {_POS_COLS} FROM positions WHERE account_id = ?"
        if open_only:
            sql += " AND status = 'open'"
        with self.tx(write=False) as tx:
            return [_position(r) for r in tx.rows(sql + " ORDER BY opened_at, id", (account_id,))]

    def close_position(self, position_id: str, *, exit_price: float, fee: float = 0.0,
                       note: str | None = None) -> StoredPosition:
        """Close at ``exit_price``: realised PnL (:func:`sizeguard.core.position.realised_pnl`,
        linear and inverse alike) less the exit ``fee`` goes into equity, today's PnL, the losing
        streak and the symbol's record."""
        if not (math.isfinite(exit_price) and exit_price > 0):
            raise InvalidInput("exit_price", exit_price, "must be a finite number > 0")
        pos = self.position(position_id)
        if pos is None:
            raise InvalidInput("position", position_id, "no such position")
        with self.tx(pos.account_id) as tx:
            now = self.clock.now()
            row = tx.one(f"SELECT {_POS_COLS} FROM positions WHERE id = ?", (position_id,))
            assert row is not None
            pos = _position(row)
            if pos.status != "open":
                return pos
            net = realised_pnl(pos.side == "long", pos.notional, pos.entry_price, exit_price, fee)
            tx.run("UPDATE positions SET status = 'closed', closed_at = ?, exit_price = ?, pnl = ? "
                   "WHERE id = ?", (now, exit_price, net, position_id))
            self._add_realised(tx, pos.account_id, net, now, count=True)
            tx.run("UPDATE accounts SET losing_streak = CASE WHEN ? < 0 THEN losing_streak + 1 "
                   "ELSE 0 END WHERE id = ?", (net, pos.account_id))
            self._touch_symbol(tx, pos.account_id, pos.symbol, now, trade=net > 0)
            self._insert_journal(tx, pos.account_id, now, "close", pos.symbol, pos.side, "closed", "",
                                 pos.client_order_id, None,
                                 {"position_id": position_id, "exit_price": exit_price,
                                  "pnl": net, "fee": fee}, note)
            row = tx.one(f"SELECT {_POS_COLS} FROM positions WHERE id = ?", (position_id,))
        assert row is not None
        return _position(row)

    def _add_realised(self, tx: Tx, account_id: str, amount: float, now: float, count: bool) -> None:
        if amount == 0 and not count:
            return
        tx.run("INSERT INTO daily_pnl (account_id, day, realised, trades) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (account_id, day) DO UPDATE SET realised = daily_pnl.realised + "
               "excluded.realised, trades = daily_pnl.trades + excluded.trades",
               (account_id, utc_day(now), amount, 1 if count else 0))
        tx.run("UPDATE accounts SET equity = equity + ?, updated_at = ? WHERE id = ?",
               (amount, now, account_id))
        tx.run("UPDATE accounts SET peak_equity = equity WHERE id = ? AND equity > peak_equity",
               (account_id,))

    def _touch_symbol(self, tx: Tx, account_id: str, symbol: str, now: float,
                      trade: bool | None) -> None:
        trades, wins = (0, 0) if trade is None else (1, 1 if trade else 0)
        tx.run("INSERT INTO symbol_stats (account_id, symbol, trades, wins, last_trade_at) "
               "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, symbol) DO UPDATE SET "
               "trades = symbol_stats.trades + excluded.trades, "
               "wins = symbol_stats.wins + excluded.wins, last_trade_at = excluded.last_trade_at",
               (account_id, symbol, trades, wins, now))

    def sync_positions(self, account_id: str, found: Sequence[ExchangePosition]
                       ) -> dict[str, list[str]]:
        """Reconcile with what the exchange reports: positions it has that the store lacks are
        added (source "exchange") so they count toward every limit; store positions the
        exchange no longer has are marked closed (PnL unknown: streak and stats untouched)."""
        out: dict[str, list[str]] = {"added": [], "closed": [], "kept": []}
        with self.tx(account_id) as tx:
            now = self.clock.now()
            self._require_account(tx, account_id)
            mine = [_position(r) for r in tx.rows(
                f"SELECT {_POS_COLS} FROM positions WHERE account_id = ? AND status = 'open'",
                (account_id,))]
            seen = {(p.symbol, p.side) for p in found if p.amount}
            for p in mine:
                if (p.symbol, p.side) in seen:
                    out["kept"].append(p.id)
                else:
                    tx.run("UPDATE positions SET status = 'closed', closed_at = ? WHERE id = ?",
                           (now, p.id))
                    out["closed"].append(p.id)
            have = {(p.symbol, p.side) for p in mine}
            for e in found:
                if not e.amount or (e.symbol, e.side) in have:
                    continue
                pos = StoredPosition(_new_id("pos"), account_id, e.symbol, e.side, repr(e.amount),
                                     e.entry_price, abs(e.notional), e.margin, e.leverage, None, None,
                                     None, "exchange", now)
                self._insert_position(tx, pos, None, None)
                out["added"].append(pos.id)
            self._insert_journal(tx, account_id, now, "sync", None, None, None, "", None, None,
                                 out, None)
        return out

    # -- learned minimums and snapshots ---------------------------------------------------
    def learn_minimum(self, exchange: str, symbol: str, *, min_cost: float | None = None,
                      min_amount: float | None = None, source: str = "") -> None:
        with self.tx() as tx:
            tx.run("INSERT INTO learned_minimums (exchange, symbol, min_cost, min_amount, source, "
                   "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (exchange, symbol) DO UPDATE "
                   "SET min_cost = CASE WHEN excluded.min_cost > learned_minimums.min_cost THEN "
                   "excluded.min_cost ELSE learned_minimums.min_cost END, "
                   "min_amount = CASE WHEN excluded.min_amount > learned_minimums.min_amount THEN "
                   "excluded.min_amount ELSE learned_minimums.min_amount END, "
                   "source = excluded.source, updated_at = excluded.updated_at",
                   (exchange, symbol, min_cost or 0.0, min_amount or 0.0, source, self.clock.now()))

    def learned_minimums(self, exchange: str) -> dict[str, dict[str, float]]:
        with self.tx(write=False) as tx:
            rows = tx.rows("SELECT symbol, min_cost, min_amount FROM learned_minimums "
                           "WHERE exchange = ? ORDER BY symbol", (exchange,))
        return {s: {"min_cost": float(c), "min_amount": float(a)} for s, c, a in rows}

    def record_snapshot(self, snapshot_id: str, *, exchange: str, fetched_at: str,
                        path: str) -> None:
        with self.tx() as tx:
            tx.run("INSERT INTO market_snapshots (id, exchange, fetched_at, path, recorded_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                   (snapshot_id, exchange, fetched_at, path, self.clock.now()))

    def integrity_check(self) -> str:
        return "ok"


# --------------------------------------------------------------------------- SQLite


ENV_SQLITE_SYNC = "SIZEGUARD_SQLITE_SYNCHRONOUS"
SQLITE_SYNC = ("full", "normal")


def sqlite_synchronous() -> str:
    """``$SIZEGUARD_SQLITE_SYNCHRONOUS``: ``full`` (the default: every commit waits for the
    disk, durable across a power loss) or ``normal`` (in WAL mode a commit does not wait for
    the disk: durable across a crash or ``kill -9`` of the process, not across a power loss or
    an OS crash, which may lose the last commits; a commit costs no fsync)."""
    value = os.environ.get(ENV_SQLITE_SYNC, "full").strip().lower() or "full"
    if value not in SQLITE_SYNC:
        raise InvalidInput(ENV_SQLITE_SYNC, value, "full or normal")
    return value


class SqliteStore(SqlStore):
    """A file (WAL, busy timeout). Writers serialise on ``BEGIN IMMEDIATE``. ``synchronous``:
    see :func:`sqlite_synchronous` (the default reads the environment)."""

    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    busy_timeout_ms = 60_000

    def __init__(self, path: str | Path, clock: Clock | None = None, *,
                 synchronous: str | None = None) -> None:
        self.synchronous = (synchronous or sqlite_synchronous()).lower()
        if self.synchronous not in SQLITE_SYNC:
            raise InvalidInput("synchronous", synchronous, "full or normal")
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc}") from exc
        super().__init__(f"sqlite:///{self.path}", clock)

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreError(f"{self.path}: could not switch to WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextmanager
    def _begin(self, conn: Any, lock_account: str | None, write: bool) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE" if write or lock_account else "BEGIN")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _table_exists(self, tx: Tx, name: str) -> bool:
        return tx.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (name,)) is not None

    def integrity_check(self) -> str:
        with self.tx(write=False) as tx:
            row = tx.one("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"


# --------------------------------------------------------------------------- PostgreSQL


class PostgresStore(SqlStore):
    """A PostgreSQL database by URL. ``?schema=NAME`` in the URL keeps the tables in that schema
    (created when missing); the account row is locked with ``SELECT ... FOR UPDATE``.

    Time bounds (``timeout`` seconds, default ``$SIZEGUARD_STORE_TIMEOUT``, else 5): connecting,
    each statement and each lock wait (``statement_timeout``, ``lock_timeout``, and
    ``idle_in_transaction_session_timeout`` for a client that vanished mid-transaction), and, for
    a server that does not answer at all, a watchdog that cuts the connection of a transaction
    still running ``1.5 x timeout + 0.5`` s after it began: a hung database costs a request
    that long (then 503), never a thread for good."""

    placeholder = "%s"
    serial = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str, clock: Clock | None = None, *, timeout: float | None = None
                 ) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.schema = query.pop("schema", None)
        if self.schema is not None and not self.schema.replace("_", "").isalnum():
            raise InvalidInput("store", redact(url), "the schema name must be letters, digits "
                               "and _")
        self._dsn = urlunsplit(parts._replace(query=urlencode(query)))
        self.timeout = timeout if timeout is not None else store_timeout()
        self._watchdog = _Watchdog(1.5 * self.timeout + 0.5)
        super().__init__(url, clock)

    def _connect(self) -> Any:
        import psycopg  # noqa: PLC0415 - only PostgreSQL users need the driver

        ms = max(1, int(self.timeout * 1000))
        conn = psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=max(2, math.ceil(self.timeout)),
            options=f"-c statement_timeout={ms} -c lock_timeout={ms} "
                    f"-c idle_in_transaction_session_timeout={max(ms * 4, 10_000)}")
        if self.schema is not None:
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                            (self.schema,)).fetchone() is None:
                with contextlib.suppress(psycopg.errors.UniqueViolation):  # a racing process
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(f'SET search_path TO "{self.schema}"')
        return conn

    def _broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def _watch(self, conn: Any) -> AbstractContextManager[None]:
        return self._watchdog.watch(conn)

    def _timed_out(self, conn: Any) -> bool:
        return self._watchdog.was_cut(conn)

    def _client_error(self, exc: BaseException) -> InvalidInput | None:
        import psycopg  # noqa: PLC0415

        if isinstance(exc, psycopg.DataError):  # NUL in text, a number out of range, ...
            return InvalidInput("value", None, f"refused by the store: {redact(str(exc))}")
        return super()._client_error(exc)

    @contextmanager
    def _begin(self, conn: Any, lock_account: str | None, write: bool) -> Iterator[None]:
        with conn.transaction():
            if lock_account is not None:
                conn.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (lock_account,))
            yield

    def _lock_joined(self, tx: Tx, account_id: str) -> None:
        tx.run("SELECT id FROM accounts WHERE id = ? FOR UPDATE", (account_id,))

    def _many(self, conn: Any, queries: Sequence[tuple[str, Sequence[Any]]]
              ) -> list[list[tuple[Any, ...]]]:
        """The queries in pipeline mode: sent together, their results read after one round
        trip (the account's load is six queries inside the account's lock)."""
        with conn.pipeline():
            cursors = [conn.execute(self.sql(q), tuple(p)) for q, p in queries]
            return [[tuple(r) for r in cur.fetchall()] for cur in cursors]

    def _lock_migrations(self, tx: Tx) -> None:
        # a migration may wait for another process's and may take long: no time bounds here
        tx.run("SET LOCAL statement_timeout = 0")
        tx.run("SET LOCAL lock_timeout = 0")
        tx.run("SELECT pg_advisory_xact_lock(?)", (0x5173_6775,))

    def _table_exists(self, tx: Tx, name: str) -> bool:
        row = tx.one("SELECT to_regclass(?)", (name,))
        return row is not None and row[0] is not None

    def drop_schema(self) -> None:
        """Tests: remove the schema and everything in it."""
        if self.schema is None:
            raise StoreError("drop_schema needs a store opened with ?schema=NAME")
        with self.tx() as tx:
            tx.run(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


# --------------------------------------------------------------------------- opening


def store_timeout() -> float:
    """Seconds a store statement may take: ``$SIZEGUARD_STORE_TIMEOUT``, else 5."""
    try:
        value = float(os.environ.get("SIZEGUARD_STORE_TIMEOUT", "5"))
    except ValueError:
        return 5.0
    return value if math.isfinite(value) and value > 0 else 5.0


class _Watchdog:
    """Cuts the connection of a transaction that outlives ``limit`` seconds: the server did not
    answer (a statement timeout would have ended it). One daemon thread per store, started on
    when needed, checking four times a second, gone when idle; a transaction costs a dict insert
    and delete."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._due: dict[int, tuple[float, Any]] = {}
        self._cut: set[int] = set()  # connections cut since, until asked about
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, conn: Any) -> Iterator[None]:
        key = id(conn)
        with self._lock:
            self._due[key] = (time.monotonic() + self.limit, conn)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="store-watchdog",
                                                daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._due.pop(key, None)

    def was_cut(self, conn: Any) -> bool:
        with self._lock:
            if id(conn) in self._cut:
                self._cut.discard(id(conn))
                return True
            return False

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self._lock:
                if not self._due:  # idle: the next watch starts a new thread
                    self._thread = None
                    return
                late = [(k, c) for k, (due, c) in self._due.items() if due <= now]
                for k, _ in late:
                    del self._due[k]
                    self._cut.add(k)
            for _, conn in late:
                _cut(conn)


def _cut(conn: Any) -> None:
    """Shut the connection's socket down: the thread blocked reading it gets an error at once
    (the driver marks the connection broken; the store opens a new one)."""
    import socket  # noqa: PLC0415

    # the socket object owns the duplicate and closes it exactly once (closing it twice could
    # close whatever descriptor took its number meanwhile)
    with contextlib.suppress(Exception), socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def default_store_url() -> str:
    env = os.environ.get(ENV_STORE)
    if env:
        return env
    from platformdirs import user_data_dir  # noqa: PLC0415

    return f"sqlite:///{Path(user_data_dir('sizeguard', appauthor=False)) / 'state.db'}"


def open_store(url: str | None = None, clock: Clock | None = None, *,
               timeout: float | None = None) -> SqlStore:
    """``postgresql://...`` (``?schema=NAME`` optional), ``sqlite:///path``, or a file path.
    None: $SIZEGUARD_STORE, else ``state.db`` in the user data dir. ``timeout``: PostgreSQL's
    time bounds (see :class:`PostgresStore`)."""
    url = url or default_store_url()
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, clock, timeout=timeout)
    if url.startswith("sqlite:///"):  # sqlite:////abs/path or sqlite:///relative/path
        return SqliteStore(url[len("sqlite:///"):], clock)
    if url.startswith("sqlite://"):
        return SqliteStore(url[len("sqlite://"):], clock)
    if "://" in url:
        raise InvalidInput("store", redact(url), "use postgresql://..., sqlite:///PATH or a file "
                           "path")
    return SqliteStore(url, clock)
