"""Bots of the HTTP service, kept in the state store beside the account they trade (migration 2
of :mod:`sizeguard.adapters.sql_store`): who they are, their budget, their hashed bearer token,
which decisions (client order ids) are theirs, and the responses kept for idempotent retries.

Tokens are ``sg_<bot id>_<secret>``; only their SHA-256 is stored, and checking one compares
digests in constant time. The token itself is returned once, by :meth:`BotRegistry.add`.

The registry is the service's :class:`~sizeguard.ports.Owners`: the application's
decide-and-reserve (:func:`sizeguard.app.services.decide_and_reserve`) reads a bot's own
positions and records the decision's owner through it, inside its unit of work, so all of it
commits, or rolls back, together.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sizeguard.adapters.sql_store import SqlStore, Tx
from sizeguard.core.account import Position
from sizeguard.errors import InvalidInput
from sizeguard.ports import JournalEntry, Reservation, StoredPosition

TOKEN_PREFIX = "sg_"
BOT, ADMIN = "bot", "admin"



@dataclass(frozen=True, slots=True)
class Bot:
    id: str
    name: str
    account_id: str
    budget: float  # share of the account's equity, (0, 1]
    max_positions: int  # 0 = its budget's share of the account's slots
    created_at: float
    token_hash: str
    role: str = BOT  # "bot" trades; "admin" administers the account (never trades)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def to_dict(self) -> dict[str, Any]:
        """Everything but the token hash."""
        return {"id": self.id, "name": self.name, "account_id": self.account_id,
                "budget": self.budget, "max_positions": self.max_positions,
                "created_at": self.created_at, "role": self.role}


@dataclass(frozen=True, slots=True)
class Replay:
    """An earlier request with the same idempotency key. ``status`` 0: still being answered."""

    request_hash: str
    status: int
    body: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """This request holds an idempotency key until ``lease_until`` (also its fencing token:
    a take-over writes another), answering it under ``client_order_id``."""

    client_order_id: str
    lease_until: float
    resumed: bool = False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _bot(row: tuple[Any, ...]) -> Bot:
    return Bot(row[0], row[1], row[2], float(row[3]), int(row[4]), float(row[5]), row[6],
               str(row[7] or BOT))


_BOT_COLS = "id, name, account_id, budget, max_positions, created_at, token_hash, role"


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
            max_positions: int = 0, role: str = BOT) -> tuple[Bot, str]:
        """Create a bot (or, ``role="admin"``, the account's admin); returns it and its bearer
        token (shown once, never stored)."""
        from sizeguard.budget import Budget  # noqa: PLC0415 - validation of the two numbers

        Budget(budget, max_positions)
        if role not in (BOT, ADMIN):
            raise InvalidInput("role", role, f"must be {BOT} or {ADMIN}")
        bot_id = uuid.uuid4().hex[:16]
        token = f"{TOKEN_PREFIX}{bot_id}_{secrets.token_urlsafe(32)}"
        bot = Bot(bot_id, _valid_name(name), account_id, float(budget), int(max_positions),
                  self.store.clock.now(), token_digest(token), role)
        with self.store.tx() as tx:
            if tx.one("SELECT 1 FROM bots WHERE name = ?", (name,)) is not None:
                raise InvalidInput("name", name, "a bot with this name exists (remove it first)")
            tx.run(f"INSERT INTO bots ({_BOT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (bot.id, bot.name, bot.account_id, bot.budget, bot.max_positions,
                    bot.created_at, bot.token_hash, bot.role))
        return bot, token

    def set_slots(self, name_or_id: str, max_positions: int) -> Bot:
        """The admin sets a bot's own slot count (0: its share of the account's, by budget)."""
        from sizeguard.budget import Budget  # noqa: PLC0415

        Budget(1.0, max_positions)
        with self.store.tx() as tx:
            if not tx.run("UPDATE bots SET max_positions = ? WHERE (name = ? OR id = ?) AND "
                          "role = ?", (int(max_positions), name_or_id, name_or_id, BOT)):
                raise InvalidInput("bot", name_or_id, "no such bot")
        with self._lock:
            self._cache.clear()
        bot = self.get(name_or_id)
        assert bot is not None
        return bot

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

    # -- ownership inside the caller's unit of work (sizeguard.ports.Owners) -------------
    @staticmethod
    def _own(tx: Tx, bot_id: str, account_id: str, now: float) -> tuple[Position, ...]:
        rows = tx.rows(
            "SELECT p.symbol, p.side, p.notional, p.margin, p.entry_price FROM positions p "
            "JOIN bot_orders b ON b.client_order_id = p.client_order_id WHERE "
            "p.account_id = ? AND p.status = 'open' AND b.bot_id = ? ORDER BY p.opened_at, p.id",
            (account_id, bot_id))
        rows += tx.rows(
            "SELECT r.symbol, r.side, r.notional, r.margin, r.entry_price FROM reservations r "
            "JOIN bot_orders b ON b.client_order_id = r.client_order_id WHERE "
            "r.account_id = ? AND r.status = 'held' AND r.expires_at > ? AND b.bot_id = ? "
            "ORDER BY r.created_at, r.id", (account_id, now, bot_id))
        # in the account's order (the store's account load): a batch grows them as it grows
        # the account (app.services.decide_and_reserve), a new reservation last.
        # The entry price lets an add value the position it joins (0: unknown)
        return tuple(Position(s, side, float(n), float(m), entry=float(e or 0.0))
                     for s, side, n, m, e in rows)

    def own_positions_of(self, owner: str, account_id: str) -> tuple[Position, ...]:
        """A bot's open positions and live reservations (joins an open unit of work)."""
        with self.store.tx(write=False) as tx:
            return self._own(tx, owner, account_id, self.store.clock.now())

    def record_owner(self, client_order_id: str, owner: str, account_id: str) -> None:
        """``owner`` decided ``client_order_id`` (joins an open unit of work)."""
        with self.store.tx() as tx:
            tx.run("INSERT INTO bot_orders (client_order_id, bot_id, account_id, created_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (client_order_id) DO NOTHING",
                   (client_order_id, owner, account_id, self.store.clock.now()))

    def own_positions(self, bot: Bot | str, account_id: str | None = None
                      ) -> tuple[Position, ...]:
        """A bot's own open positions and live reservations: ``own_positions(bot)``, or by
        id as :class:`sizeguard.ports.Owners` asks (``own_positions(bot_id, account_id)``)."""
        if isinstance(bot, Bot):
            return self.own_positions_of(bot.id, bot.account_id)
        return self.own_positions_of(bot, account_id or "")

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

    # -- idempotency ----------------------------------------------------------------------
    def idempotency_begin(self, bot: Bot, key: str, request_hash: str, *, lease: float = 10.0,
                          client_order_id: str = "") -> Claim | Replay:
        """Claim ``key`` for this request, or find the earlier request's record.

        A new key is claimed with ``client_order_id`` for ``lease`` seconds: a :class:`Claim`
        (answer it, keeping the answer with :meth:`idempotency_finish`). A claim whose lease
        ran out unanswered (its process died) is taken over with the SAME client order id
        (``resumed``): whatever the dead request committed under that id is found again, never
        decided twice. Otherwise the earlier record is a :class:`Replay` (``status`` 0: still
        being answered)."""
        now = self.store.clock.now()
        until = now + lease
        with self.store.tx() as tx:
            if tx.run("INSERT INTO idempotency (bot_id, key, request_hash, status, body, "
                      "created_at, client_order_id, lease_until) VALUES (?, ?, ?, 0, NULL, ?, ?, ?) "
                      "ON CONFLICT (bot_id, key) DO NOTHING",
                      (bot.id, key, request_hash, now, client_order_id, until)):
                return Claim(client_order_id, until, resumed=False)
            row = tx.one("SELECT request_hash, status, body, client_order_id, lease_until, "
                         "created_at FROM idempotency WHERE bot_id = ? AND key = ?", (bot.id, key))
            if row is None:  # removed meanwhile (an aborted request): treat as new next time
                return Replay(request_hash, 0, None)
            held, status, body, cid, old, created = row
            # a row written before schema 4 has no lease: its claim lasted 120 s
            expires = float(old) if old is not None else float(created) + 120.0
            if int(status) == 0 and held == request_hash and expires <= now and tx.run(
                    "UPDATE idempotency SET lease_until = ?, client_order_id = ? WHERE bot_id = ? "
                    "AND key = ? AND status = 0 AND (lease_until = ? OR lease_until IS NULL)",
                    (until, cid or client_order_id, bot.id, key, old)):
                return Claim(str(cid or client_order_id), until, resumed=True)
        return Replay(str(held), int(status), body)

    def idempotency_renew(self, bot: Bot, key: str, claim: Claim, lease: float) -> Claim | None:
        """Extend a live claim (a long request); None when it was lost to a take-over."""
        until = self.store.clock.now() + lease
        with self.store.tx() as tx:
            n = tx.run("UPDATE idempotency SET lease_until = ? WHERE bot_id = ? AND key = ? AND "
                       "status = 0 AND lease_until = ?", (until, bot.id, key, claim.lease_until))
        return Claim(claim.client_order_id, until, claim.resumed) if n else None

    def idempotency_finish(self, bot: Bot, key: str, status: int, body: str,
                           claim: Claim | None = None) -> bool:
        """Keep the answer (joins an open unit of work). With ``claim``, only while that
        claim still holds the key: False when another request took it over."""
        sql = "UPDATE idempotency SET status = ?, body = ? WHERE bot_id = ? AND key = ? AND status = 0"
        params: list[Any] = [status, body, bot.id, key]
        if claim is not None:
            sql += " AND lease_until = ?"
            params.append(claim.lease_until)
        with self.store.tx() as tx:
            return tx.run(sql, params) > 0

    def idempotency_yield(self, bot: Bot, key: str, claim: Claim) -> None:
        """End this request's lease now, keeping its client order id: the next retry takes
        the request over at once and resumes what it committed."""
        with self.store.tx() as tx:
            tx.run("UPDATE idempotency SET lease_until = ? WHERE bot_id = ? AND key = ? AND "
                   "status = 0 AND lease_until = ?",
                   (self.store.clock.now(), bot.id, key, claim.lease_until))

    def idempotency_abort(self, bot: Bot, key: str, claim: Claim | None = None) -> None:
        """Forget a claim whose request failed in a way a retry may fix (5xx)."""
        sql = "DELETE FROM idempotency WHERE bot_id = ? AND key = ? AND status = 0"
        params: list[Any] = [bot.id, key]
        if claim is not None:
            sql += " AND lease_until = ?"
            params.append(claim.lease_until)
        with self.store.tx() as tx:
            tx.run(sql, params)
