"""Bots of the HTTP service, kept in the state store beside the account they trade (migration 2
of :mod:`sizeguard.adapters.sql_store`): who they are, their budget, their hashed bearer token,
which decisions (client order ids) are theirs, and the responses kept for idempotent retries.

Tokens are ``sg_<bot id>_<secret>``; only their SHA-256 is stored, and checking one compares
digests in constant time. The token itself is returned once, by :meth:`BotRegistry.add`.

:meth:`BotRegistry.decide_and_reserve` is the store's own atomic decide + reserve: the decide
function runs inside the store's transaction (the account row locked), and from there this
module reads the bot's own positions and reservations and records the decision's owner on the
same connection, so all of it commits, or rolls back, together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sizeguard.adapters.sql_store import SqlStore, Tx
from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision
from sizeguard.errors import InvalidInput, StoreError
from sizeguard.ports import JournalEntry, Reservation, Reserved, StoredPosition

TOKEN_PREFIX = "sg_"

BotDecideFn = Callable[[Account, tuple[Position, ...]], Decision]


@dataclass(frozen=True, slots=True)
class Bot:
    id: str
    name: str
    account_id: str
    budget: float  # share of the account's equity, (0, 1]
    max_positions: int  # 0 = only the account-wide limit
    created_at: float
    token_hash: str

    def to_dict(self) -> dict[str, Any]:
        """Everything but the token hash."""
        return {"id": self.id, "name": self.name, "account_id": self.account_id,
                "budget": self.budget, "max_positions": self.max_positions,
                "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class Pending:
    """One bot's decide + reserve waiting for a group commit."""

    bot: Bot
    decide_fn: BotDecideFn
    client_order_id: str
    snapshot_id: str | None = None
    ttl: float = 300.0
    own: bool = True
    claim: float = 60.0
    fresh: bool = False  # a new random client order id: no earlier answer to look for


@dataclass(frozen=True, slots=True)
class Replay:
    """An earlier request with the same idempotency key. ``status`` 0: still being answered."""

    request_hash: str
    status: int
    body: str | None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _bot(row: tuple[Any, ...]) -> Bot:
    return Bot(row[0], row[1], row[2], float(row[3]), int(row[4]), float(row[5]), row[6])


_BOT_COLS = "id, name, account_id, budget, max_positions, created_at, token_hash"


def _valid_name(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise InvalidInput("name", name, "a bot name is 1-64 letters, digits, '-', '_' or '.'")
    return name


class BotRegistry:
    """Bots, ownership and idempotency records in ``store`` (a :class:`SqlStore`)."""

    def __init__(self, store: SqlStore, *, cache_ttl: float = 2.0) -> None:
        self.store = store
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[Bot | None, float]] = {}
        self._lock = threading.Lock()

    # -- bots ----------------------------------------------------------------------------
    def add(self, name: str, *, account_id: str, budget: float = 1.0,
            max_positions: int = 0) -> tuple[Bot, str]:
        """Create a bot; returns it and its bearer token (shown once, never stored)."""
        from sizeguard.budget import Budget  # noqa: PLC0415 - validation of the two numbers

        Budget(budget, max_positions)
        bot_id = uuid.uuid4().hex[:16]
        token = f"{TOKEN_PREFIX}{bot_id}_{secrets.token_urlsafe(32)}"
        bot = Bot(bot_id, _valid_name(name), account_id, float(budget), int(max_positions),
                  self.store.clock.now(), token_digest(token))
        with self.store.tx() as tx:
            if tx.one("SELECT 1 FROM bots WHERE name = ?", (name,)) is not None:
                raise InvalidInput("name", name, "a bot with this name exists (remove it first)")
            tx.run(f"INSERT INTO bots ({_BOT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (bot.id, bot.name, bot.account_id, bot.budget, bot.max_positions,
                    bot.created_at, bot.token_hash))
        return bot, token

    def bots(self, account_id: str | None = None) -> list[Bot]:
        sql = f"SELECT {_BOT_COLS} FROM bots"
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql, params = sql + " WHERE account_id = ?", (account_id,)
        with self.store.tx(write=False) as tx:
            return [_bot(r) for r in tx.rows(sql + " ORDER BY name", params)]

    def get(self, name_or_id: str) -> Bot | None:
        with self.store.tx(write=False) as tx:
            row = tx.one(f"SELECT {_BOT_COLS} FROM bots WHERE name = ? OR id = ?",
                         (name_or_id, name_or_id))
        return _bot(row) if row else None

    def remove(self, name_or_id: str) -> bool:
        """Revoke a bot's token (its positions and journal stay in the account)."""
        with self.store.tx() as tx:
            n = tx.run("DELETE FROM bots WHERE name = ? OR id = ?", (name_or_id, name_or_id))
        with self._lock:
            self._cache.clear()
        return n > 0

    def cached(self, token: str) -> tuple[bool, Bot | None]:
        """``(True, bot or None)`` when the answer is known without the store (a cached row, or
        a token that cannot be one), else ``(False, None)``: call :meth:`authenticate`."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return True, None
        bot_id = token[len(TOKEN_PREFIX):].split("_", 1)[0]
        with self._lock:
            hit = self._cache.get(bot_id)
        if hit is None or time.monotonic() - hit[1] > self.cache_ttl:
            return False, None
        return True, self._check(token, hit[0])

    @staticmethod
    def _check(token: str, bot: Bot | None) -> Bot | None:
        if bot is None:
            hmac.compare_digest(token_digest(token), "0" * 64)  # same work either way
            return None
        return bot if hmac.compare_digest(token_digest(token), bot.token_hash) else None

    def authenticate(self, token: str) -> Bot | None:
        """The bot whose token this is, or None. Rows are cached ``cache_ttl`` seconds per
        process (a removed bot's token stops working within that time)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        bot_id = token[len(TOKEN_PREFIX):].split("_", 1)[0]
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(bot_id)
        if hit is None or now - hit[1] > self.cache_ttl:
            with self.store.tx(write=False) as tx:
                row = tx.one(f"SELECT {_BOT_COLS} FROM bots WHERE id = ?", (bot_id,))
            hit = (_bot(row) if row else None, now)
            with self._lock:
                if len(self._cache) >= 10_000:  # made-up ids must not grow it without bound
                    self._cache.clear()
                self._cache[bot_id] = hit
        return self._check(token, hit[0])

    # -- deciding inside the store's transaction ----------------------------------------
    def _current_tx(self) -> Tx:
        """The store's transaction open on this thread (inside ``decide_and_reserve``)."""
        conn = self.store._conn()  # the thread's connection, mid-transaction
        if isinstance(conn, sqlite3.Connection):
            busy = conn.in_transaction
        else:
            busy = int(conn.info.transaction_status) != 0  # psycopg: not IDLE
        if not busy:
            raise StoreError("internal: no open transaction for the bot's view")
        return Tx(self.store, conn)

    @staticmethod
    def _own(tx: Tx, bot_id: str, account_id: str, now: float) -> tuple[Position, ...]:
        rows = tx.rows(
            "SELECT p.symbol, p.side, p.notional, p.margin FROM positions p JOIN bot_orders b "
            "ON b.client_order_id = p.client_order_id WHERE p.account_id = ? AND "
            "p.status = 'open' AND b.bot_id = ?", (account_id, bot_id))
        rows += tx.rows(
            "SELECT r.symbol, r.side, r.notional, r.margin FROM reservations r JOIN bot_orders b "
            "ON b.client_order_id = r.client_order_id WHERE r.account_id = ? AND "
            "r.status = 'held' AND r.expires_at > ? AND b.bot_id = ?", (account_id, now, bot_id))
        return tuple(Position(s, side, float(n), float(m)) for s, side, n, m in rows)

    def decide_and_reserve(self, bot: Bot, decide_fn: BotDecideFn, *, client_order_id: str,
                           snapshot_id: str | None = None, ttl: float = 300.0,
                           own: bool = True, claim: float = 60.0) -> Reserved:
        """The store's atomic decide + reserve, with the bot's own positions and reservations
        handed to ``decide_fn`` and the decision's owner recorded, all in one transaction.
        A client order id decided before returns that earlier answer (``duplicate``), and a
        ``own=False`` skips reading the bot's own positions (a bot without a budget);
        ``claim`` is the store's claim on the new reservation (0: a trader may take it over
        at once).
        Client order ids are the service's own (random, or derived from the bot and its
        idempotency key), so two bots never share one."""

        def inside(account: Account) -> Decision:
            tx = self._current_tx()
            now = self.store.clock.now()
            mine = self._own(tx, bot.id, bot.account_id, now) if own else ()
            decision = decide_fn(account, mine)
            tx.run("INSERT INTO bot_orders (client_order_id, bot_id, account_id, created_at) "
                   "VALUES (?, ?, ?, ?)", (client_order_id, bot.id, bot.account_id, now))
            return decision

        return self.store.decide_and_reserve(bot.account_id, inside,
                                             client_order_id=client_order_id,
                                             snapshot_id=snapshot_id, ttl=ttl, claim=claim)

    def decide_and_reserve_many(self, account_id: str, items: Sequence[Pending]
                                ) -> list[Reserved | InvalidInput]:
        """Group commit: several bots' decide + reserve in ONE locked transaction, in order,
        each seeing the reservations of the ones before it; one commit (one fsync) for all.

        Per item it is what the store's ``decide_and_reserve`` does for one (the earlier answer
        for a client order id decided before, else load, decide, journal, reserve, claim),
        plus the owner. The account is loaded once per batch and each accepted item's
        reservation is added to it as the store would load it (symbol, side, notional,
        margin): nothing else an account holds changes inside the transaction.
        ``tests/test_http_batch.py`` checks decisions and rows equal the one-by-one path's.
        An item whose input is invalid gets its InvalidInput and writes nothing; any other
        error rolls the whole batch back and is raised."""
        store = self.store
        out: list[Reserved | InvalidInput] = []
        with store.tx(account_id) as tx:
            now = store.clock.now()
            store._expire(tx, account_id, now)
            account = store._load_account(tx, account_id, now)
            for it in items:
                cid = it.client_order_id
                if not cid:
                    out.append(InvalidInput("client_order_id", cid, "must not be empty"))
                    continue
                earlier = None if it.fresh else store._decided(tx, account_id, cid)
                if earlier is not None:
                    out.append(earlier)
                    continue
                mine = self._own(tx, it.bot.id, account_id, now) if it.own else ()
                try:
                    decision = it.decide_fn(account, mine)
                except InvalidInput as exc:
                    out.append(exc)
                    continue
                tx.run("INSERT INTO bot_orders (client_order_id, bot_id, account_id, created_at) "
                       "VALUES (?, ?, ?, ?)", (cid, it.bot.id, account_id, now))
                done = store._record_decision(tx, account_id, decision, cid, it.snapshot_id, now,
                                              it.ttl, it.claim)
                if decision.accepted:
                    account = dataclasses.replace(account, positions=(*account.positions, Position(
                        decision.symbol, decision.side, decision.notional, decision.margin)))
                out.append(done)
        return out

    def own_positions(self, bot: Bot) -> tuple[Position, ...]:
        with self.store.tx(write=False) as tx:
            return self._own(tx, bot.id, bot.account_id, self.store.clock.now())

    def quote(self, bot: Bot, decide_fn: BotDecideFn, *, client_order_id: str,
              snapshot_id: str | None = None) -> tuple[Decision, int]:
        """Decide without reserving (a quote), journal it and record its owner."""
        now = self.store.clock.now()
        with self.store.tx(write=False) as tx:
            own = self._own(tx, bot.id, bot.account_id, now)
        decision = decide_fn(self.store.account(bot.account_id), own)
        jid = self.store.journal_decision(bot.account_id, decision,
                                          client_order_id=client_order_id,
                                          snapshot_id=snapshot_id)
        with self.store.tx() as tx:
            tx.run("INSERT INTO bot_orders (client_order_id, bot_id, account_id, created_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (client_order_id) DO NOTHING",
                   (client_order_id, bot.id, bot.account_id, now))
        return decision, jid

    # -- ownership -----------------------------------------------------------------------
    def owner(self, client_order_id: str | None) -> str | None:
        """The id of the bot that decided ``client_order_id`` (None: no bot did)."""
        if client_order_id is None:
            return None
        with self.store.tx(write=False) as tx:
            row = tx.one("SELECT bot_id FROM bot_orders WHERE client_order_id = ?",
                         (client_order_id,))
        return str(row[0]) if row else None

    def _cids(self, bot: Bot) -> set[str]:
        with self.store.tx(write=False) as tx:
            return {str(r[0]) for r in tx.rows(
                "SELECT client_order_id FROM bot_orders WHERE bot_id = ?", (bot.id,))}

    def positions(self, bot: Bot, *, open_only: bool = True) -> list[StoredPosition]:
        mine = self._cids(bot)
        return [p for p in self.store.positions(bot.account_id, open_only=open_only)
                if p.client_order_id in mine]

    def reservations(self, bot: Bot, *, live_only: bool = True) -> list[Reservation]:
        mine = self._cids(bot)
        return [r for r in self.store.reservations(bot.account_id, live_only=live_only)
                if r.client_order_id in mine]

    def journal(self, bot: Bot, *, symbol: str | None = None, last: int = 100,
                kind: str | None = None) -> list[JournalEntry]:
        """The bot's entries of the account's journal (its decisions and their events)."""
        from sizeguard.adapters.sql_store import _JOURNAL_COLS, _journal  # noqa: PLC0415

        where = ["j.account_id = ?", "b.bot_id = ?"]
        params: list[Any] = [bot.account_id, bot.id]
        for col, val in (("j.symbol", symbol), ("j.kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        cols = ", ".join(f"j.{c.strip()}" for c in _JOURNAL_COLS.split(","))
        sql = (f"SELECT {cols} FROM journal j JOIN bot_orders b ON b.client_order_id = "
               f"j.client_order_id WHERE {' AND '.join(where)} ORDER BY j.id DESC "
               f"LIMIT {int(last)}")
        with self.store.tx(write=False) as tx:
            rows = tx.rows(sql, params)
        return [_journal(r) for r in reversed(rows)]

    # -- idempotency ---------------------------------------------------------------------
    def idempotency_begin(self, bot: Bot, key: str, request_hash: str,
                          stale: float = 120.0) -> Replay | None:
        """Claim ``key`` for this request: None when claimed (answer it, then call
        :meth:`idempotency_finish`), else the earlier request's record. A claim left
        unanswered for ``stale`` seconds (its process died) is taken over."""
        now = self.store.clock.now()
        with self.store.tx() as tx:
            n = tx.run("INSERT INTO idempotency (bot_id, key, request_hash, status, body, "
                       "created_at) VALUES (?, ?, ?, 0, NULL, ?) ON CONFLICT (bot_id, key) "
                       "DO NOTHING", (bot.id, key, request_hash, now))
            if n or tx.run("UPDATE idempotency SET created_at = ? WHERE bot_id = ? AND key = ? "
                           "AND request_hash = ? AND status = 0 AND created_at < ?",
                           (now, bot.id, key, request_hash, now - stale)):
                return None
            row = tx.one("SELECT request_hash, status, body FROM idempotency WHERE bot_id = ? "
                         "AND key = ?", (bot.id, key))
        if row is None:  # removed meanwhile (an aborted request): treat as new next time
            return Replay(request_hash, 0, None)
        return Replay(str(row[0]), int(row[1]), row[2])

    def idempotency_finish(self, bot: Bot, key: str, status: int, body: str) -> None:
        with self.store.tx() as tx:
            tx.run("UPDATE idempotency SET status = ?, body = ? WHERE bot_id = ? AND key = ?",
                   (status, body, bot.id, key))

    def idempotency_abort(self, bot: Bot, key: str) -> None:
        """Forget a claim whose request failed in a way a retry may fix (5xx)."""
        with self.store.tx() as tx:
            tx.run("DELETE FROM idempotency WHERE bot_id = ? AND key = ? AND status = 0",
                   (bot.id, key))
