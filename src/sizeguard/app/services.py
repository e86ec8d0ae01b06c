"""The application's use cases, each a function over the ports: decide-and-reserve, execute,
fill, close, release and sync. The CLI's trader, the HTTP service's single requests and its
group commit all call these, so every path holds the same rules.

Each use case is one unit of work per store visit (``with store.unit_of_work(account): ...;
uow.commit()``): what it writes commits together or not at all. Exchange calls happen between
units of work, never inside one (a locked transaction must not wait on a network).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sizeguard.core import position
from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.errors import DuplicateOrder, ExchangeError, InvalidInput, InvalidOrder
from sizeguard.ids import random_hex
from sizeguard.ports import (
    Exchange,
    OrderResult,
    OwnDecideFn,
    Owners,
    Reservation,
    Reserved,
    StateStore,
    StoredPosition,
)


def new_client_order_id() -> str:
    """``sg`` + the second (8 hex digits) + 56 random bits (14): 24 characters, as
    exchanges allow; ids of one second sort together, so the store's indexes of client order
    ids grow at their end (a commit writes fewer pages than for random ids)."""
    return f"sg{int(time.time()):08x}{random_hex(7)}"


# --------------------------------------------------------------------------- decide + reserve


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """One decide-and-reserve.

    ``decide`` gets the account (every open position and live reservation) and, when ``owner``
    is given and ``own`` is set, the owner's own positions and reservations (a bot's budget
    view). ``fresh``: the client order id is new, so no earlier answer is looked up.
    ``on_answer`` runs inside the same unit of work with what was recorded: whatever it writes
    (an idempotent request's answer) commits with the reservation or not at all."""

    decide: OwnDecideFn
    client_order_id: str
    snapshot_id: str | None = None
    ttl: float = 300.0
    claim: float = 60.0
    owner: str | None = None
    own: bool = False
    fresh: bool = False
    on_answer: Callable[[Reserved], None] | None = None


def decide_and_reserve(store: StateStore, account_id: str, requests: Sequence[ReserveRequest],
                       owners: Owners | None = None) -> list[Reserved | InvalidInput]:
    """THE decide-and-reserve: one unit of work with the account locked, in which each request
    in order gets the earlier answer for its client order id, or is decided on the account as
    the requests before it left it, journaled and (when accepted) reserved.

    One request is a batch of one. A request whose input is invalid gets its InvalidInput and
    writes nothing; any other error rolls the whole unit back and is raised. The account is
    loaded once; each accepted request's reservation is added to it exactly as the store loads
    one (symbol, side, notional, margin): nothing else an account holds changes inside the
    unit of work. Likewise an owner's own positions (``owners``) are loaded once, by its first
    request that asks for them, and grown by its accepted requests after it."""
    out: list[Reserved | InvalidInput] = []
    with store.unit_of_work(account_id) as uow:
        store.expire_reservations(account_id)
        account: Account | None = None
        owned: dict[str, tuple[Position, ...]] = {}  # the owners' own positions, as the account
        for req in requests:
            cid = req.client_order_id
            if not cid:
                out.append(InvalidInput("client_order_id", cid, "must not be empty"))
                continue
            earlier = None if req.fresh else store.decided(account_id, cid)
            if earlier is not None:
                if req.on_answer is not None:
                    req.on_answer(earlier)
                out.append(earlier)
                continue
            if account is None:
                account = store.account(account_id)
            mine: tuple[Position, ...] = ()
            if owners is not None and req.owner is not None and req.own:
                got = owned.get(req.owner)
                if got is None:  # loaded once per owner, then grown like the account
                    got = owned[req.owner] = owners.own_positions(req.owner, account_id)
                mine = got
            try:
                decision = req.decide(account, mine)
            except InvalidInput as exc:
                out.append(exc)
                continue
            if owners is not None and req.owner is not None:
                owners.record_owner(cid, req.owner, account_id)
            done = store.record_decision(account_id, decision, client_order_id=cid,
                                         snapshot_id=req.snapshot_id, ttl=req.ttl,
                                         claim=req.claim)
            if decision.accepted:
                held = Position(decision.symbol, decision.side, decision.notional,
                                decision.margin, entry=decision.entry_price)
                account = account.with_position(held)
                if req.owner is not None and req.owner in owned:
                    owned[req.owner] = (*owned[req.owner], held)
            if req.on_answer is not None:
                req.on_answer(done)
            out.append(done)
        uow.commit()
    return out


def reserve_one(store: StateStore, account_id: str, request: ReserveRequest,
                owners: Owners | None = None) -> Reserved:
    """:func:`decide_and_reserve` for one request; its InvalidInput is raised."""
    (answer,) = decide_and_reserve(store, account_id, [request], owners)
    if isinstance(answer, InvalidInput):
        raise answer
    return answer


def quote(store: StateStore, account_id: str, decide: OwnDecideFn, *, client_order_id: str,
          snapshot_id: str | None = None, owner: str | None = None,
          owners: Owners | None = None) -> tuple[Decision, int]:
    """Decide without reserving (a quote): decided, journaled and owned in one unit of work."""
    with store.unit_of_work() as uow:
        mine = owners.own_positions(owner, account_id) if owners and owner else ()
        decision = decide(store.account(account_id), mine)
        jid = store.journal_decision(account_id, decision, client_order_id=client_order_id,
                                     snapshot_id=snapshot_id)
        if owners is not None and owner is not None:
            owners.record_owner(client_order_id, owner, account_id)
        uow.commit()
    return decision, jid


# --------------------------------------------------------------------------- execute


@dataclass(frozen=True, slots=True)
class TradeResult:
    """``status``: "filled" (position recorded, protective orders placed), "skipped" (the
    decision said no), "rejected" (the exchange refused the entry; reservation released),
    "failed" (an exchange error; reservation released, or the position flattened when its stop
    could not be placed), "in_progress" (a concurrent submit with the same client order id
    holds the reservation)."""

    status: str
    client_order_id: str
    decision: Decision
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
            "decision": self.decision.to_dict(),
        }


@dataclass
class Execution:
    """What executing a reserved decision needs: the ports and the account."""

    store: StateStore
    exchange: Exchange
    account_id: str
    venue: str
    claim: float = 60.0

    def find(self, symbol: str, cid: str, conditional: bool = False) -> OrderResult | None:
        try:
            return self.exchange.find_order(symbol, cid, conditional)
        except ExchangeError:
            return None


def execute(x: Execution, intent: Intent, market: MarketRules, reserved: Reserved) -> TradeResult:
    """Turn a reserved decision into orders: leverage, entry, record, stop and take-profit.

    A duplicate (the client order id was decided before) returns the earlier outcome, or
    resumes a held reservation whose claim lapsed (its process died): the exchange is asked
    for the entry first, so a crash after the entry never orders twice."""
    d, jid, res = reserved.decision, reserved.journal_id, reserved.reservation
    cid = res.client_order_id if res is not None else ""
    if not reserved.accepted or res is None:
        return TradeResult("skipped", cid, d, jid, duplicate=reserved.duplicate)
    if reserved.duplicate:
        done = _earlier(x, res, d, jid)
        if done is not None:
            return done
        if not x.store.claim_reservation(res.id, x.claim):
            return TradeResult("in_progress", cid, d, jid, duplicate=True,
                               notes=("another submit with this client order id is still "
                                      "working on it",))
        found = x.find(intent.symbol, cid)
        if found is not None and found.status == "filled":  # crashed after the entry
            return _protect(x, intent, market, res, d, jid, found, resumed=True)
    return _enter(x, intent, market, res, d, jid)


def _earlier(x: Execution, res: Reservation, d: Decision, jid: int) -> TradeResult | None:
    current = x.store.reservation(res.id)
    status = current.status if current is not None else "released"
    if status == "filled":
        pos = next((p for p in x.store.positions(x.account_id, open_only=False)
                    if p.client_order_id == res.client_order_id), None)
        orders, notes = _ensure_protection(x, pos) if pos is not None else ((), ())
        return TradeResult("filled", res.client_order_id, d, jid, position=pos, orders=orders,
                           duplicate=True, notes=notes)
    if status in ("released", "expired"):
        why = current.release_reason if current is not None else None
        return TradeResult("failed", res.client_order_id, d, jid, error=why, duplicate=True)
    return None  # still held: resume


def _enter(x: Execution, intent: Intent, market: MarketRules, res: Reservation, d: Decision,
           jid: int) -> TradeResult:
    cid = res.client_order_id
    try:
        if market.is_contract:
            x.exchange.set_margin_mode(intent.symbol, d.margin_mode)
            x.exchange.set_leverage(intent.symbol, d.leverage)
        entry = x.exchange.place_entry(intent.symbol, intent.side, d.amount, intent.price, cid)
    except DuplicateOrder as exc:
        # the exchange has an order with this id that find_order did not see: keep the
        # reservation (it may be filled) and let sync or a later retry settle it
        x.store.journal_event(x.account_id, "reject", symbol=intent.symbol, client_order_id=cid,
                              note=str(exc), data={"error": "DuplicateOrder", "retryable": False})
        return TradeResult("failed", cid, d, jid, error=f"{exc} (reservation kept; run sync)")
    except ExchangeError as exc:
        with x.store.unit_of_work(x.account_id) as uow:
            _learn(x, exc, market, d.notional, intent.price)
            x.store.release_reservation(res.id, f"entry refused: {exc}")
            x.store.journal_event(x.account_id, "reject", symbol=intent.symbol,
                                  client_order_id=cid, note=str(exc),
                                  data={"rule": getattr(exc, "rule", None),
                                        "minimum": getattr(exc, "minimum", None),
                                        "retryable": exc.retryable,
                                        "error": type(exc).__name__})
            uow.commit()
        status = "rejected" if isinstance(exc, InvalidOrder) else "failed"
        return TradeResult(status, cid, d, jid, error=str(exc), retryable=exc.retryable)
    return _protect(x, intent, market, res, d, jid, entry, resumed=False)


def _protect(x: Execution, intent: Intent, market: MarketRules, res: Reservation, d: Decision,
             jid: int, entry: OrderResult, resumed: bool) -> TradeResult:
    cid = res.client_order_id
    amount = entry.amount if entry.filled == 0 else _amount_str(entry.filled, entry.amount)
    price = entry.average or intent.price
    stop = d.stop_price
    with x.store.unit_of_work(x.account_id) as uow:
        if not resumed:
            x.store.journal_event(x.account_id, "order", symbol=intent.symbol,
                                  client_order_id=cid, data=_order_dict(entry))
        filled = position.opened(market, float(amount), price, res.leverage)
        pos = x.store.fill_reservation(res.id, amount=amount, entry_price=price,
                                       notional=filled.notional, margin=filled.margin,
                                       fee=entry.fee, stop_price=stop, take_profit=intent.take_profit,
                                       order_id=entry.id)
        uow.commit()
    orders = [entry]
    notes = ["resumed after an interruption"] if resumed else []
    try:
        if stop is not None:
            orders.append(_once(x, intent.symbol, f"{cid}-sl", lambda: x.exchange.place_stop(
                intent.symbol, intent.side, amount, stop, f"{cid}-sl")))
        if intent.take_profit is not None:
            tp = float(intent.take_profit)
            orders.append(_once(x, intent.symbol, f"{cid}-tp", lambda: x.exchange.place_take_profit(
                intent.symbol, intent.side, amount, tp, f"{cid}-tp")))
    except ExchangeError as exc:
        # never leave a position without its stop: flatten it and say why
        x.store.journal_event(x.account_id, "protect_failed", symbol=intent.symbol,
                              client_order_id=cid, note=str(exc))
        closed = _flatten(x, pos, price, f"{cid}-x")
        return TradeResult("failed", cid, d, jid, position=closed, orders=tuple(orders),
                           error=f"protective order refused, position closed: {exc}",
                           retryable=exc.retryable, notes=tuple(notes))
    if len(orders) > 1:
        with x.store.unit_of_work() as uow:
            for o in orders[1:]:
                x.store.journal_event(x.account_id, "order", symbol=intent.symbol,
                                      client_order_id=o.client_order_id, data=_order_dict(o))
            uow.commit()
    return TradeResult("filled", cid, d, jid, position=pos, orders=tuple(orders),
                       notes=tuple(notes))


def _ensure_protection(x: Execution, pos: StoredPosition
                       ) -> tuple[tuple[OrderResult, ...], tuple[str, ...]]:
    """A filled position whose submit died before its stop (or take-profit) was placed gets
    them now: a retry never leaves a position unprotected. Orders already there are kept."""
    if pos.status != "open" or not pos.client_order_id:
        return (), ()
    cid = pos.client_order_id
    wanted: list[tuple[str, float, Callable[[str, str, str, float, str], OrderResult]]] = []
    if pos.stop_price is not None:
        wanted.append((f"{cid}-sl", pos.stop_price, x.exchange.place_stop))
    if pos.take_profit is not None:
        wanted.append((f"{cid}-tp", pos.take_profit, x.exchange.place_take_profit))
    orders: list[OrderResult] = []
    placed: list[OrderResult] = []
    for oid, price, place in wanted:
        found = x.find(pos.symbol, oid, conditional=True)
        if found is None:
            found = _once(x, pos.symbol, oid, functools.partial(
                place, pos.symbol, pos.side, pos.amount, price, oid))
            placed.append(found)
        orders.append(found)
    if placed:
        with x.store.unit_of_work() as uow:
            for o in placed:
                x.store.journal_event(x.account_id, "order", symbol=pos.symbol,
                                      client_order_id=o.client_order_id, data=_order_dict(o))
            uow.commit()
    notes = ("resumed after an interruption: protective orders placed",) if placed else ()
    return tuple(orders), notes


def _once(x: Execution, symbol: str, cid: str, place: Callable[[], OrderResult]) -> OrderResult:
    """Place a protective order unless the exchange already has it (a resumed submit).
    Conditional orders may live where ``find_order`` does not look (Binance's algo orders):
    a duplicate-id refusal then also means "already placed"."""
    found = x.find(symbol, cid, conditional=True)
    if found is not None:
        return found
    try:
        return place()
    except DuplicateOrder:
        kind = "stop" if cid.endswith("-sl") else "take_profit"
        return OrderResult("", cid, symbol, "", kind, "", "open",
                           raw={"note": "already placed (duplicate client order id)"})


def _learn(x: Execution, exc: ExchangeError, market: MarketRules, notional: float,
           price: float) -> None:
    """A rejection about a minimum teaches that minimum (kept in the store)."""
    if not isinstance(exc, InvalidOrder) or exc.rule not in ("min_cost", "min_amount"):
        return
    if exc.rule == "min_cost":
        cost = exc.minimum if exc.minimum else notional * 1.000001
        x.store.learn_minimum(x.venue, market.symbol, min_cost=cost, source=f"rejection: {exc}")
    else:
        amount = (exc.minimum if exc.minimum
                  else position.amount_for(market, notional, price) * 1.000001)
        x.store.learn_minimum(x.venue, market.symbol, min_amount=amount,
                              min_cost=position.notional(market, amount, price),
                              source=f"rejection: {exc}")


def _flatten(x: Execution, pos: StoredPosition, price: float, cid: str) -> StoredPosition:
    try:
        order = x.exchange.close_position(pos.symbol, pos.side, pos.amount, price, cid)
        return x.store.close_position(pos.id, exit_price=order.average or price, fee=order.fee,
                                      note="flattened")
    except ExchangeError as exc:
        x.store.journal_event(x.account_id, "flatten_failed", symbol=pos.symbol,
                              client_order_id=cid, note=str(exc))
        return pos


# --------------------------------------------------------------------------- fill, close, release


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a report from a bot that executes itself may claim: a fill within
    ``fill_band`` (a fraction) of its decided price and no larger than its reservation; a
    close within ``close_band`` of the last price the account knows for the symbol; a fee no
    larger than the trade's notional."""

    fill_band: float = 0.05
    close_band: float = 0.25


def _within(field: str, price: float, reference: float | None, band: float, what: str) -> None:
    if reference is None or reference <= 0:
        return
    if not (reference * (1 - band) <= price <= reference * (1 + band)):
        raise InvalidInput(field, price, f"more than {band:.0%} from {what} {reference:g}")


def fill(store: StateStore, reservation_id: str, *, market: MarketRules, amount: str,
         price: float, fee: float = 0.0, stop_price: float | None = None,
         take_profit: float | None = None, order_id: str | None = None,
         bounds: Bounds | None = None) -> StoredPosition:
    """A reservation filled (by a bot that executes itself): it becomes a position, valued by
    the core on ``market`` (an inverse contract keeps its face value at any fill price). With
    ``bounds``, a fill larger than its reservation, or priced outside the band around the
    decided price, or with a fee above the reserved notional, is refused (InvalidInput)."""
    res = store.reservation(reservation_id)
    if res is None:
        raise InvalidInput("reservation", reservation_id, "no such reservation")
    if bounds is not None:
        if Decimal(amount) > Decimal(res.amount):
            raise InvalidInput("amount", amount, f"more than the reservation's {res.amount}")
        _within("price", price, res.entry_price, bounds.fill_band, "the decided price")
        if fee > res.notional:
            raise InvalidInput("fee", fee, f"more than the reserved notional {res.notional:g}")
    filled = position.opened(market, float(amount), price, res.leverage)
    return store.fill_reservation(reservation_id, amount=amount, entry_price=price,
                                  notional=filled.notional, margin=filled.margin, fee=fee,
                                  stop_price=stop_price, take_profit=take_profit,
                                  order_id=order_id)


def close(x: Execution, position_id: str, price: float, client_order_id: str | None = None
          ) -> StoredPosition:
    """Close an open position at ``price`` (market) on the exchange and record its PnL."""
    pos = x.store.position(position_id)
    if pos is None or pos.account_id != x.account_id:
        raise InvalidInput("position", position_id, "no such open position in this account")
    if pos.status != "open":
        return pos
    cid = client_order_id or new_client_order_id()
    order = x.find(pos.symbol, cid) or x.exchange.close_position(
        pos.symbol, pos.side, pos.amount, price, cid)
    return x.store.close_position(pos.id, exit_price=order.average or price, fee=order.fee)


def record_close(store: StateStore, position_id: str, *, price: float, fee: float = 0.0,
                 note: str | None = None, bounds: Bounds | None = None) -> StoredPosition:
    """A close made elsewhere (a bot that executes itself): PnL, streak and win rate follow.
    With ``bounds``, a price outside the band around the last known price of the symbol, or a
    fee above the position's notional, is refused (InvalidInput)."""
    if bounds is not None:
        pos = store.position(position_id)
        if pos is not None and pos.status == "open":
            last = store.last_price(pos.account_id, pos.symbol) or pos.entry_price
            _within("price", price, last, bounds.close_band, "the last known price")
            if fee > pos.notional:
                raise InvalidInput("fee", fee, f"more than the position's notional {pos.notional:g}")
    return store.close_position(position_id, exit_price=price, fee=fee, note=note)


def release(store: StateStore, reservation_id: str, reason: str) -> bool:
    """Release a held reservation (the order will not be placed)."""
    return store.release_reservation(reservation_id, reason)


def sync(x: Execution) -> dict[str, Any]:
    """Reconcile with the exchange: its balance becomes the equity, its positions the open
    positions (those opened elsewhere count toward every limit from now on)."""
    found = list(x.exchange.positions())
    on_exchange = {(p.symbol, p.side) for p in found if p.amount}
    stopped: list[tuple[str, float, float, str, str]] = []
    for pos in x.store.positions(x.account_id):
        if (pos.symbol, pos.side) in on_exchange or not pos.client_order_id:
            continue
        # gone: if our stop or take-profit filled, close it with its real PnL
        for suffix in ("-sl", "-tp"):
            o = x.find(pos.symbol, pos.client_order_id + suffix, conditional=True)
            price = (o.average or o.trigger_price) if o is not None else None
            if o is not None and o.status == "filled" and price:
                stopped.append((pos.id, price, o.fee, f"{o.kind} filled on the exchange", suffix))
                break
    balance = x.exchange.balance()
    with x.store.unit_of_work(x.account_id) as uow:
        for pid, price, fee, note, _ in stopped:
            x.store.close_position(pid, exit_price=price, fee=fee, note=note)
        if balance.total > 0:
            x.store.set_equity(x.account_id, balance.total)
        changes = x.store.sync_positions(x.account_id, found)
        expired = x.store.expire_reservations(x.account_id)
        uow.commit()
    return {"equity": balance.total, "free": balance.free, "positions": len(found),
            "expired_reservations": expired,
            "stopped_out": [s[0] for s in stopped if s[4] == "-sl"],
            "take_profit_filled": [s[0] for s in stopped if s[4] == "-tp"], **changes}


def _order_dict(o: OrderResult) -> dict[str, Any]:
    return {"id": o.id, "kind": o.kind, "side": o.side, "amount": o.amount, "status": o.status,
            "filled": o.filled, "average": o.average, "fee": o.fee,
            "trigger_price": o.trigger_price}


def _amount_str(filled: float, ordered: str) -> str:
    """The filled amount in the ordered amount's decimals (ccxt reports floats)."""
    decimals = len(ordered.split(".")[1]) if "." in ordered else 0
    text = f"{filled:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


__all__ = ["Bounds", "Execution", "ReserveRequest", "TradeResult", "close", "decide_and_reserve",
           "execute", "fill", "new_client_order_id", "quote", "record_close", "release",
           "reserve_one", "sync"]
