"""Run by test_state_crash: journal decisions (with reservations, fills and closes) forever,
printing ``committed <journal id>`` after each commit, until the parent kills it."""

from __future__ import annotations

import itertools
import sys
import uuid

import storefix
from sizeguard.adapters.sql_store import open_store
from sizeguard.core import position
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from storefix import many_symbols, notional_policy


def main(url: str) -> None:
    store = open_store(url)
    store.ensure_account("acc", exchange="test", equity=1e9)
    book = many_symbols(8)
    policy = notional_policy(100.0)
    tag = uuid.uuid4().hex[:8]
    for n in itertools.count():
        symbol = f"C{n % 8:02d}/USDT:USDT"
        intent = Intent(symbol, "long", 50000.0)
        r = storefix.reserve(store, "acc", lambda a, i=intent, s=symbol: decide(i, a, book[s], policy),
                                     client_order_id=f"{tag}-{n}", snapshot_id="crash")
        print(f"committed {r.journal_id}", flush=True)
        if r.reservation is not None and n % 2:
            o = position.opened(book[symbol], float(r.reservation.amount), 50000.0,
                                r.reservation.leverage)
            pos = store.fill_reservation(r.reservation.id, amount=r.reservation.amount,
                                         entry_price=50000.0, notional=o.notional, margin=o.margin)
            store.close_position(pos.id, exit_price=50100.0 if n % 4 == 1 else 49900.0)
        elif r.reservation is not None:
            store.release_reservation(r.reservation.id, "crash test")


if __name__ == "__main__":
    main(sys.argv[1])
