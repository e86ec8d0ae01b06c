"""Execution: decide -> reserve -> set leverage -> entry -> stop (and take-profit) -> record.

Uses the ports only (a StateStore, an Exchange, a MarketSource and a Clock), never an adapter.

``submit`` is idempotent by client order id: the same id never decides, reserves or orders
twice. If an earlier call stopped half-way (a crash after the reservation), the next call with
the same id resumes: it asks the exchange for the order first and records the fill if the
order exists, otherwise it places it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sizeguard.core import position
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketBook, MarketRules
from sizeguard.core.policy import Policy
from sizeguard.errors import DuplicateOrder, ExchangeError, InvalidOrder
from sizeguard.ports import (
    Exchange,
    MarketSource,
    OrderResult,
    Reservation,
    StateStore,
    StoredPosition,
)


@dataclass(frozen=True, slots=True)
class TradeResult:
    """``status``: "filled" (position recorded, protective orders placed), "skipped" (the
    decision said no), "rejected" (the exchange refused the entry; reservation released),
    "failed" (an exchange error; reservation released, or the position flattened when its stop
    could not be placed), "in_progress" (a concurrent submit with the same client order id
    holds the reservation)."""

    status: str
    client_order_id: str
    decision: Mapping[str, Any]
    journal_id: int
    position: StoredPosition | None = None
    orders: tuple[OrderResult, ...] = ()
    error: str | None = None
    retryable: bool = False
    duplicate: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "client_order_id": self.client_order_id,
            "journal_id": self.journal_id,
            "duplicate": self.duplicate,
            "error": self.error,
            "retryable": self.retryable,
            "position": self.position.to_dict() if self.position else None,
            "orders": [{"id": o.id, "client_order_id": o.client_order_id, "kind": o.kind,
                        "side": o.side, "amount": o.amount, "status": o.status,
                        "average": o.average, "fee": o.fee, "trigger_price": o.trigger_price}
                       for o in self.orders],
            "notes": list(self.notes),
            "decision": dict(self.decision),
        }


def new_client_order_id() -> str:
    return f"sg{uuid.uuid4().hex[:22]}"


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

    # -- submit -------------------------------------------------------------------------
    def submit(self, intent: Intent, client_order_id: str | None = None) -> TradeResult:
        cid = client_order_id or new_client_order_id()
        market = self.book[intent.symbol]
        policy = self.policy
        reserved = self.store.decide_and_reserve(
            self.account_id, lambda account: decide(intent, account, market, policy),
            client_order_id=cid, snapshot_id=self.markets.snapshot_id, ttl=self.ttl,
            claim=self.claim)
        d, jid, res = reserved.decision, reserved.journal_id, reserved.reservation
        if not reserved.accepted:
            return TradeResult("skipped", cid, d, jid, duplicate=reserved.duplicate)
        assert res is not None
        if reserved.duplicate:
            done = self._earlier(res, d, jid)
            if done is not None:
                return done
            if not self.store.claim_reservation(res.id, self.claim):
                return TradeResult("in_progress", cid, d, jid, duplicate=True,
                                   notes=("another submit with this client order id is still "
                                          "working on it",))
            found = self._find(intent.symbol, cid)
            if found is not None and found.status == "filled":  # crashed after the entry
                return self._protect(intent, market, res, d, jid, found, resumed=True)
        return self._execute(intent, market, res, d, jid)

    def _earlier(self, res: Reservation, d: Mapping[str, Any], jid: int) -> TradeResult | None:
        current = self.store.reservation(res.id)
        status = current.status if current is not None else "released"
        if status == "filled":
            pos = next((p for p in self.store.positions(self.account_id, open_only=False)
                        if p.client_order_id == res.client_order_id), None)
            return TradeResult("filled", res.client_order_id, d, jid, position=pos, duplicate=True)
        if status in ("released", "expired"):
            why = current.release_reason if current is not None else None
            return TradeResult("failed", res.client_order_id, d, jid, error=why, duplicate=True)
        return None  # still held: resume

    def _find(self, symbol: str, cid: str, conditional: bool = False) -> OrderResult | None:
        try:
            return self.exchange.find_order(symbol, cid, conditional)
        except ExchangeError:
            return None

    def _execute(self, intent: Intent, market: MarketRules, res: Reservation,
                 d: Mapping[str, Any], jid: int) -> TradeResult:
        cid = res.client_order_id
        try:
            if market.is_contract:
                self.exchange.set_margin_mode(intent.symbol, str(d["margin_mode"]))
                self.exchange.set_leverage(intent.symbol, float(d["leverage"]))
            entry = self.exchange.place_entry(intent.symbol, intent.side, str(d["amount"]),
                                              intent.price, cid)
        except DuplicateOrder as exc:
            # the exchange has an order with this id that find_order did not see: keep the
            # reservation (it may be filled) and let sync or a later retry settle it
            self.store.journal_event(self.account_id, "reject", symbol=intent.symbol,
                                     client_order_id=cid, note=str(exc),
                                     data={"error": "DuplicateOrder", "retryable": False})
            return TradeResult("failed", cid, d, jid, error=f"{exc} (reservation kept; run sync)")
        except ExchangeError as exc:
            self._learn(exc, market, float(d["notional"]), intent.price)
            self.store.release_reservation(res.id, f"entry refused: {exc}")
            self.store.journal_event(self.account_id, "reject", symbol=intent.symbol,
                                     client_order_id=cid, note=str(exc),
                                     data={"rule": getattr(exc, "rule", None),
                                           "minimum": getattr(exc, "minimum", None),
                                           "retryable": exc.retryable,
                                           "error": type(exc).__name__})
            status = "rejected" if isinstance(exc, InvalidOrder) else "failed"
            return TradeResult(status, cid, d, jid, error=str(exc), retryable=exc.retryable)
        self.store.journal_event(self.account_id, "order", symbol=intent.symbol, client_order_id=cid,
                                 data=_order_dict(entry))
        return self._protect(intent, market, res, d, jid, entry, resumed=False)

    def _protect(self, intent: Intent, market: MarketRules, res: Reservation,
                 d: Mapping[str, Any], jid: int, entry: OrderResult, resumed: bool) -> TradeResult:
        cid = res.client_order_id
        amount = entry.amount if entry.filled == 0 else _amount_str(entry.filled, entry.amount)
        price = entry.average or intent.price
        stop = d.get("stop_price")
        filled = position.opened(market, float(amount), price, res.leverage)
        pos = self.store.fill_reservation(res.id, amount=amount, entry_price=price,
                                          notional=filled.notional, margin=filled.margin,
                                          fee=entry.fee,
                                          stop_price=float(stop) if stop is not None else None,
                                          take_profit=intent.take_profit, order_id=entry.id)
        orders = [entry]
        notes = ["resumed after an interruption"] if resumed else []
        try:
            if stop is not None:
                orders.append(self._once(intent.symbol, f"{cid}-sl", lambda: self.exchange.place_stop(
                    intent.symbol, intent.side, amount, float(stop), f"{cid}-sl")))
            if intent.take_profit is not None:
                tp = float(intent.take_profit)
                orders.append(self._once(intent.symbol, f"{cid}-tp", lambda: self.exchange.place_take_profit(
                    intent.symbol, intent.side, amount, tp, f"{cid}-tp")))
        except ExchangeError as exc:
            # never leave a position without its stop: flatten it and say why
            self.store.journal_event(self.account_id, "protect_failed", symbol=intent.symbol,
                                     client_order_id=cid, note=str(exc))
            closed = self._flatten(pos, price, f"{cid}-x")
            return TradeResult("failed", cid, d, jid, position=closed, orders=tuple(orders),
                               error=f"protective order refused, position closed: {exc}",
                               retryable=exc.retryable, notes=tuple(notes))
        for o in orders[1:]:
            self.store.journal_event(self.account_id, "order", symbol=intent.symbol,
                                     client_order_id=o.client_order_id, data=_order_dict(o))
        return TradeResult("filled", cid, d, jid, position=pos, orders=tuple(orders),
                           notes=tuple(notes))

    def _once(self, symbol: str, cid: str, place: Any) -> OrderResult:
        """Place a protective order unless the exchange already has it (a resumed submit).
        Conditional orders may live where ``find_order`` does not look (Binance's algo
        orders): a duplicate-id refusal then also means "already placed"."""
        found = self._find(symbol, cid, conditional=True)
        if found is not None:
            return found
        try:
            result: OrderResult = place()
        except DuplicateOrder:
            kind = "stop" if cid.endswith("-sl") else "take_profit"
            return OrderResult("", cid, symbol, "", kind, "", "open",
                               raw={"note": "already placed (duplicate client order id)"})
        return result

    def _learn(self, exc: ExchangeError, market: MarketRules, notional: float, price: float) -> None:
        """A rejection about a minimum teaches that minimum (kept in the store)."""
        if not isinstance(exc, InvalidOrder) or exc.rule not in ("min_cost", "min_amount"):
            return
        if exc.rule == "min_cost":
            cost = exc.minimum if exc.minimum else notional * 1.000001
            self.store.learn_minimum(self.venue, market.symbol, min_cost=cost,
                                     source=f"rejection: {exc}")
        else:
            amount = (exc.minimum if exc.minimum
                      else position.amount_for(market, notional, price) * 1.000001)
            self.store.learn_minimum(self.venue, market.symbol, min_amount=amount,
                                     min_cost=position.notional(market, amount, price),
                                     source=f"rejection: {exc}")

    # -- close and sync -----------------------------------------------------------------
    def _flatten(self, pos: StoredPosition, price: float, cid: str) -> StoredPosition:
        try:
            order = self.exchange.close_position(pos.symbol, pos.side, pos.amount, price, cid)
            return self.store.close_position(pos.id, exit_price=order.average or price,
                                             fee=order.fee, note="flattened")
        except ExchangeError as exc:
            self.store.journal_event(self.account_id, "flatten_failed", symbol=pos.symbol,
                                     client_order_id=cid, note=str(exc))
            return pos

    def close(self, position_id: str, price: float, client_order_id: str | None = None
              ) -> StoredPosition:
        """Close an open position at ``price`` (market); PnL, streak and win rate follow."""
        pos = self.store.position(position_id)
        if pos is None or pos.account_id != self.account_id:
            from sizeguard.errors import InvalidInput  # noqa: PLC0415

            raise InvalidInput("position", position_id, "no such open position in this account")
        if pos.status != "open":
            return pos
        cid = client_order_id or new_client_order_id()
        order = self._find(pos.symbol, cid) or self.exchange.close_position(
            pos.symbol, pos.side, pos.amount, price, cid)
        return self.store.close_position(pos.id, exit_price=order.average or price, fee=order.fee)

    def sync(self) -> dict[str, Any]:
        """Reconcile with the exchange: its balance becomes the equity, its positions the open
        positions (those opened elsewhere count toward every limit from now on)."""
        found = list(self.exchange.positions())
        on_exchange = {(p.symbol, p.side) for p in found if p.amount}
        stopped: list[str] = []
        took_profit: list[str] = []
        for pos in self.store.positions(self.account_id):
            if (pos.symbol, pos.side) in on_exchange or not pos.client_order_id:
                continue
            # gone: if our stop or take-profit filled, close it with its real PnL
            for suffix in ("-sl", "-tp"):
                o = self._find(pos.symbol, pos.client_order_id + suffix, conditional=True)
                price = (o.average or o.trigger_price) if o is not None else None
                if o is not None and o.status == "filled" and price:
                    self.store.close_position(pos.id, exit_price=price, fee=o.fee,
                                              note=f"{o.kind} filled on the exchange")
                    (stopped if suffix == "-sl" else took_profit).append(pos.id)
                    break
        balance = self.exchange.balance()
        if balance.total > 0:
            self.store.set_equity(self.account_id, balance.total)
        changes = self.store.sync_positions(self.account_id, found)
        expired = self.store.expire_reservations(self.account_id)
        return {"equity": balance.total, "free": balance.free, "positions": len(found),
                "expired_reservations": expired, "stopped_out": stopped,
                "take_profit_filled": took_profit, **changes}


def _order_dict(o: OrderResult) -> dict[str, Any]:
    return {"id": o.id, "kind": o.kind, "side": o.side, "amount": o.amount, "status": o.status,
            "filled": o.filled, "average": o.average, "fee": o.fee,
            "trigger_price": o.trigger_price}


def _amount_str(filled: float, ordered: str) -> str:
    """The filled amount in the ordered amount's decimals (ccxt reports floats)."""
    decimals = len(ordered.split(".")[1]) if "." in ordered else 0
    text = f"{filled:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
