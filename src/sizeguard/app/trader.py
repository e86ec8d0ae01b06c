"""Execution for one account: decide -> reserve -> set leverage -> entry -> stop (and
take-profit) -> record, as calls of :mod:`sizeguard.app.services` over the ports.

``submit`` is idempotent by client order id: the same id never decides, reserves or orders
twice. If an earlier call stopped half-way (a crash after the reservation), the next call with
the same id resumes: it asks the exchange for the order first and records the fill if the
order exists, otherwise it places it.
"""

from __future__ import annotations

from typing import Any

from sizeguard.app import services
from sizeguard.app.services import Execution, ReserveRequest, TradeResult, new_client_order_id
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketBook
from sizeguard.core.policy import Policy
from sizeguard.ports import Exchange, MarketSource, StateStore, StoredPosition

__all__ = ["TradeResult", "Trader", "new_client_order_id"]


class Trader:
    def __init__(self, store: StateStore, exchange: Exchange, markets: MarketSource,
                 policy: Policy, *, account_id: str, venue: str | None = None,
                 ttl: float = 300.0, claim: float = 60.0) -> None:
        self.store = store
        self.exchange = exchange
        self.markets = markets
        self.policy = policy
        self.account_id = account_id
        self.ttl = ttl
        self.claim = claim
        self._book: MarketBook | None = None
        self.venue = venue or self.store.risk_state(account_id).exchange

    @property
    def book(self) -> MarketBook:
        if self._book is None:
            self._book = self.markets.markets()
        return self._book

    @property
    def execution(self) -> Execution:
        return Execution(self.store, self.exchange, self.account_id, self.venue, self.claim)

    def submit(self, intent: Intent, client_order_id: str | None = None) -> TradeResult:
        cid = client_order_id or new_client_order_id()
        market = self.book[intent.symbol]
        policy = self.policy

        def fn(account: Account, _own: tuple[Position, ...]) -> Decision:
            return decide(intent, account, market, policy)

        reserved = services.reserve_one(self.store, self.account_id, ReserveRequest(
            fn, cid, self.markets.snapshot_id, self.ttl, self.claim))
        return services.execute(self.execution, intent, market, reserved)

    def close(self, position_id: str, price: float, client_order_id: str | None = None
              ) -> StoredPosition:
        """Close an open position at ``price`` (market); PnL, streak and win rate follow."""
        return services.close(self.execution, position_id, price, client_order_id)

    def sync(self) -> dict[str, Any]:
        """Reconcile with the exchange (see :func:`sizeguard.app.services.sync`)."""
        return services.sync(self.execution)
