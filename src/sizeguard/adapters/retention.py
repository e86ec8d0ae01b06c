"""Retention: what the store may forget, and how big it is.

Every quote journals its decision with the whole trace (~8 KB), and every keyed request keeps
its answer; nothing removed them. :func:`prune` deletes, in batches of short transactions:

* journal rows older than ``journal_days`` (default 90), except those of a decision still in
  play (its reservation held or its position open);
* reservations no longer held (released, expired, filled) older than ``journal_days``, except
  one whose position is still open;
* bot ownership records (``bot_orders``) older than ``journal_days`` of nothing held or open;
* idempotency answers older than ``idempotency_hours`` (default 24), except one whose
  decision is still in play: a retry later than that is a new request.

Positions, accounts, daily PnL, symbol statistics, bots and learned minimums are never pruned.
The HTTP service prunes every ``SIZEGUARD_PRUNE_INTERVAL`` seconds; ``sizeguard store prune``
does it by hand (``--dry-run`` counts only).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from sizeguard.adapters.sql_store import PostgresStore, SqliteStore, SqlStore
from sizeguard.errors import InvalidInput

JOURNAL_DAYS = 90.0
IDEMPOTENCY_HOURS = 24.0
BATCH = 2000  # rows per transaction: a prune never holds the store for long

# A journal row (alias j) whose decision is still in play.
_IN_PLAY = ("j.client_order_id IS NOT NULL AND ("
            "EXISTS (SELECT 1 FROM reservations r WHERE r.client_order_id = j.client_order_id "
            "AND r.status = 'held') OR "
            "EXISTS (SELECT 1 FROM positions p WHERE p.client_order_id = j.client_order_id "
            "AND p.status = 'open'))")

# (table, key columns, the rows to forget: alias j, one ? for the cutoff)
_RULES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "journal": ("journal", ("id",), f"j.at < ? AND NOT ({_IN_PLAY})"),
    "reservations": ("reservations", ("id",),
                     "j.status <> 'held' AND COALESCE(j.released_at, j.created_at) < ? AND "
                     "NOT EXISTS (SELECT 1 FROM positions p WHERE p.reservation_id = j.id AND "
                     "p.status = 'open')"),
    "bot_orders": ("bot_orders", ("client_order_id",), f"j.created_at < ? AND NOT ({_IN_PLAY})"),
    "idempotency": ("idempotency", ("bot_id", "key"), f"j.created_at < ? AND NOT ({_IN_PLAY})"),
}


@dataclass(frozen=True)
class Retention:
    """How long rows are kept (see the module docstring)."""

    journal_days: float = JOURNAL_DAYS
    idempotency_hours: float = IDEMPOTENCY_HOURS

    def __post_init__(self) -> None:
        for name, value, most in (("journal_days", self.journal_days, 36_500.0),
                                  ("idempotency_hours", self.idempotency_hours, 876_000.0)):
            if not (isinstance(value, int | float) and 0 < value <= most):
                raise InvalidInput(name, value, f"must be a number > 0 and <= {most:g}")

    @classmethod
    def from_env(cls) -> Retention:
        """``SIZEGUARD_RETENTION_DAYS`` and ``SIZEGUARD_IDEMPOTENCY_HOURS``, else the defaults."""
        def num(name: str, default: float) -> float:
            text = os.environ.get(name)
            if not text:
                return default
            try:
                return float(text)
            except ValueError:
                raise InvalidInput(name, text, "must be a number") from None
        return cls(num("SIZEGUARD_RETENTION_DAYS", JOURNAL_DAYS),
                   num("SIZEGUARD_IDEMPOTENCY_HOURS", IDEMPOTENCY_HOURS))


@dataclass(frozen=True)
class PruneReport:
    journal: int
    reservations: int
    bot_orders: int
    idempotency: int
    journal_before: float  # the cutoffs (epoch seconds)
    idempotency_before: float
    dry_run: bool
    seconds: float

    @property
    def total(self) -> int:
        return self.journal + self.reservations + self.bot_orders + self.idempotency

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def prune(store: SqlStore, retention: Retention | None = None, *, dry_run: bool = False,
          batch: int = BATCH) -> PruneReport:
    """Forget what ``retention`` allows (count it only with ``dry_run``)."""
    retention = retention or Retention()
    start = time.monotonic()
    now = store.clock.now()
    cut_journal = now - retention.journal_days * 86_400
    cut_idem = now - retention.idempotency_hours * 3600
    counts: dict[str, int] = {}
    for name, (table, key, where) in _RULES.items():
        cutoff = cut_idem if name == "idempotency" else cut_journal
        if dry_run:
            with store.tx(write=False) as tx:
                row = tx.one(f"SELECT COUNT(*) FROM {table} j WHERE {where}", (cutoff,))
            counts[name] = int(row[0]) if row else 0
            continue
        total = 0
        while True:
            with store.tx() as tx:
                cols = ", ".join(key)
                picked = ", ".join(f"j.{c}" for c in key)
                n = tx.run(f"DELETE FROM {table} WHERE ({cols}) IN (SELECT {picked} FROM {table} j "
                           f"WHERE {where} LIMIT {int(batch)})", (cutoff,))
            total += n
            if n < batch:
                break
        counts[name] = total
    return PruneReport(counts["journal"], counts["reservations"], counts["bot_orders"],
                       counts["idempotency"], cut_journal, cut_idem, dry_run,
                       time.monotonic() - start)


def store_size(store: SqlStore) -> dict[str, int]:
    """The store's size in bytes (``bytes``: SQLite's pages in use, PostgreSQL's tables with
    their indexes and TOAST in the store's schema) and the row counts of the tables retention
    prunes."""
    out: dict[str, int] = {}
    with store.tx(write=False) as tx:
        if isinstance(store, SqliteStore):
            # the pages in use: a prune frees pages (reused later) without shrinking the file
            pages = tx.one("PRAGMA page_count")
            free = tx.one("PRAGMA freelist_count")
            size = tx.one("PRAGMA page_size")
            total = ((int(pages[0]) - int(free[0])) * int(size[0])
                     if pages and free and size else 0)
        elif isinstance(store, PostgresStore):
            row = tx.one("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                         "JOIN pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE n.nspname = current_schema() AND c.relkind = 'r'")
            total = int(row[0]) if row else 0
        else:
            total = 0
        out["bytes"] = total
        for table in ("journal", "idempotency", "reservations", "bot_orders"):
            row = tx.one(f"SELECT COUNT(*) FROM {table}")
            out[table] = int(row[0]) if row else 0
    return out
