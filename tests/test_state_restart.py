"""A restart keeps the losing streak, the daily-loss halt and the reservations: stopping and
reopening the store in the middle of a sequence gives the same next decision."""

from __future__ import annotations

import storefix
from sizeguard.adapters.market_files import load_markets
from sizeguard.adapters.market_snapshot import BookSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.config import load_policy
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.trader import Trader
from storefix import FakeClock

store_url = storefix.store_url
clock = storefix.clock

BOOK = load_markets(None)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
POLICY = load_policy("ai-atr-risk", sets=["limits.daily_loss=0.03", "limits.max_positions=2"])
NEXT = Intent(BTC, "long", 87669.0, atr=2000.0, confidence=0.9)


def trader(store: SqlStore) -> Trader:
    return Trader(store, PaperExchange(BOOK, balance=10_000.0), BookSource(BOOK, "builtin"),
                  POLICY, account_id="acc", venue="builtin")


def lose(t: Trader, n: int, exit_price: float) -> None:
    r = t.submit(Intent(BTC, "long", 87669.0, atr=2000.0, confidence=0.9), f"loss-{n}")
    assert r.status == "filled" and r.position is not None
    t.close(r.position.id, exit_price)


def test_restart_keeps_streak_halt_and_reservations(store_url: str, clock: FakeClock) -> None:
    store = open_store(store_url, clock)
    store.ensure_account("acc", exchange="builtin", equity=10_000.0)
    t = trader(store)
    for n in range(3):
        lose(t, n, 87000.0)
    held = storefix.reserve(store,
        "acc", lambda a: decide(Intent(ETH, "long", 3000.0, stop_pct=2.0), a, BOOK[ETH], POLICY),
        client_order_id="held-eth", ttl=3600)
    assert held.accepted
    predicted = decide(NEXT, store.account("acc"), BOOK[BTC], POLICY).to_dict()
    assert store.risk_state("acc").losing_streak == 3
    store.close()

    store = open_store(store_url, clock)  # the restart
    acct = store.account("acc")
    assert acct.losing_streak == 3
    assert [p.symbol for p in acct.positions] == [ETH]  # the reservation survived
    t = trader(store)
    after = t.submit(NEXT, "next").decision.to_dict()
    assert after == predicted
    adjust = next(s for s in after["trace"] if s["step"] == "adjust")
    assert "losing_streak" in str(adjust)

    # a big loss halts trading for the day; the halt survives another restart
    pos = store.positions("acc")[-1]
    t.close(pos.id, 60_000.0)
    store.release_reservation(held.reservation.id, "test")
    store.close()
    store = open_store(store_url, clock)
    r = trader(store).submit(Intent(ETH, "long", 3000.0, stop_pct=2.0), "after-halt")
    assert r.status == "skipped" and list(r.decision.reasons) == ["HALTED_DAILY_LOSS"]
    clock.advance(86_400)  # the next UTC day lifts the daily halt
    r = trader(store).submit(Intent(ETH, "long", 3000.0, stop_pct=2.0), "next-day")
    assert r.status == "filled"
    store.close()
