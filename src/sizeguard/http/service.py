"""What the HTTP routes call: plain values in, plain JSON-able dicts out, sizeguard errors (or
:class:`~sizeguard.http.problems.Problem`) raised. No HTTP framework here, no arithmetic: every
decision is the core's ``decide`` through :mod:`sizeguard.budget`, inside the store's atomic
decide + reserve (:meth:`sizeguard.adapters.bots.BotRegistry.decide_and_reserve`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sizeguard.adapters.bots import Bot, BotRegistry, Pending
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.budget import ACCOUNT, Budget, account_policy, decide_for_bot
from sizeguard.config.settings import env_from_os, resolve
from sizeguard.core import position
from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy
from sizeguard.errors import InvalidInput, UnknownSymbol
from sizeguard.http.batch import GroupCommit
from sizeguard.http.problems import Problem, problem_for
from sizeguard.http.settings import ServeSettings
from sizeguard.ports import Exchange, ExchangePosition, MarketSource, Reserved
from sizeguard.trader import Trader, new_client_order_id

ExchangeFactory = Callable[["Gate"], Exchange]
Answer = tuple[int, dict[str, Any], dict[str, str]]

INTENT_FIELDS = ("stop", "stop_pct", "atr", "atr_mult", "stop_roe", "confidence", "regime",
                 "volatility", "leverage")


@dataclass
class Counters:
    """What /metrics reports beyond the request counters (per process)."""

    decisions: dict[str, int] = field(default_factory=dict)  # "accepted"/"skipped" x reserve
    orders: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, table: dict[str, int], key: str) -> None:
        with self.lock:
            table[key] = table.get(key, 0) + 1


def paper_exchange(gate: Gate) -> Exchange:
    """The paper account as the store has it: equity and open positions."""
    store, account = gate.store, gate.settings.account
    rs = store.risk_state(account)
    held = [ExchangePosition(p.symbol, p.side, float(p.amount), p.entry_price, p.notional,
                             p.margin, p.leverage) for p in store.positions(account)]
    return PaperExchange(gate.markets.markets(), balance=rs.equity, quote=rs.quote,
                         positions=held, name=gate.settings.exchange)


class LiveExchange:
    """The live account through ccxt (``--live``): one exchange object per process, built on
    first use from ``SIZEGUARD_API_KEY``, ``SIZEGUARD_API_SECRET`` and
    ``SIZEGUARD_API_PASSWORD`` (read here, never logged or answered). Orders on it are
    serialised per process (ccxt objects are not thread-safe)."""

    def __init__(self) -> None:
        self._exchange: Exchange | None = None
        self._lock = threading.Lock()

    @staticmethod
    def check(settings: ServeSettings) -> None:
        """Refuse to start live without an exchange id and its key."""
        if settings.exchange in ("", "paper"):
            raise InvalidInput("exchange", settings.exchange, "--live needs --exchange NAME "
                               "(a ccxt exchange id, e.g. binanceusdm)")
        if not os.environ.get("SIZEGUARD_API_KEY"):
            raise InvalidInput("SIZEGUARD_API_KEY", None, "--live needs the exchange API key "
                               "in the environment (SIZEGUARD_API_KEY, SIZEGUARD_API_SECRET)")

    def __call__(self, gate: Gate) -> Exchange:
        with self._lock:
            if self._exchange is None:
                from sizeguard.adapters.ccxt_exchange import (  # noqa: PLC0415 - live only
                    CcxtExchange,
                    make_exchange,
                )

                self.check(gate.settings)
                x = make_exchange(gate.settings.exchange,
                                  api_key=os.environ.get("SIZEGUARD_API_KEY"),
                                  secret=os.environ.get("SIZEGUARD_API_SECRET"),
                                  password=os.environ.get("SIZEGUARD_API_PASSWORD"))
                quote = gate.store.risk_state(gate.account_id).quote
                self._exchange = CcxtExchange(x, hedge_mode=gate.settings.hedge_mode, quote=quote)
            return self._exchange


class Gate:
    """One account's risk gate shared by its bots."""

    def __init__(self, settings: ServeSettings, store: SqlStore, markets: MarketSource,
                 registry: BotRegistry, exchange_factory: ExchangeFactory | None = None,
                 policy: Policy | None = None) -> None:
        self.settings = settings
        self.store = store
        self.markets = markets
        self.registry = registry
        if exchange_factory is None and settings.live:
            LiveExchange.check(settings)
            exchange_factory = LiveExchange()
        self.exchange_factory = exchange_factory or paper_exchange
        self.policy = policy or resolve(settings.preset, settings.config, (), env_from_os()).policy
        self.counters = Counters()
        self._policies: dict[str, Policy] = {}
        self._account_open = False
        self._equity: float | None = None
        self._lock = threading.Lock()
        self._live_lock = threading.Lock()
        self.group: GroupCommit[Pending, Reserved | InvalidInput] = GroupCommit(
            lambda items: registry.decide_and_reserve_many(self.account_id, items),
            max_batch=settings.max_batch)

    # -- helpers ------------------------------------------------------------------------
    @property
    def account_id(self) -> str:
        return self.settings.account

    def policy_for(self, preset: str | None) -> Policy:
        if preset is None:
            return self.policy
        cached = self._policies.get(preset)
        if cached is None:
            cached = account_policy(resolve(preset, None, (), None).policy, self.policy)
            self._policies[preset] = cached
        return cached

    def market(self, symbol: str) -> MarketRules:
        return self.markets.markets()[symbol]

    def _open_account(self, equity: float | None, market: MarketRules) -> None:
        """Open the account on first use; keep the stored equity in step with the bots'."""
        if not self._account_open:
            if not self.store.has_account(self.account_id):
                if equity is None:
                    raise InvalidInput("equity", None, f"the account '{self.account_id}' is new: "
                                       "give equity once to open it")
                self.store.ensure_account(self.account_id, exchange=self.settings.exchange,
                                          equity=equity,
                                          quote=market.settle or market.quote or "USDT")
                with self._lock:
                    self._equity = equity
            self._account_open = True
        if equity is not None and equity != self._equity:
            self.store.set_equity(self.account_id, equity)
            with self._lock:
                self._equity = equity

    @staticmethod
    def _intent(body: Mapping[str, Any]) -> Intent:
        return Intent(symbol=body["symbol"], side=body["side"], price=body["price"],
                      take_profit=body.get("take_profit"),
                      **{k: body.get(k) for k in INTENT_FIELDS})

    @staticmethod
    def client_order_id(bot: Bot, idempotency_key: str | None) -> str:
        """A fresh id for every attempt. Retries are recognised by the idempotency record,
        not by this id, so a retry after a 5xx (the attempt's reservation released) decides
        again instead of finding the failed attempt."""
        return new_client_order_id()

    def _decide_fn(self, bot: Bot, body: Mapping[str, Any], bound: list[str]
                   ) -> Callable[[Account, tuple[Position, ...]], Decision]:
        intent = self._intent(body)
        market = self.market(intent.symbol)
        policy = self.policy_for(body.get("preset"))
        budget = Budget(bot.budget, bot.max_positions)
        available = body.get("available")

        def fn(account: Account, own: tuple[Position, ...]) -> Decision:
            if available is not None:
                account = dataclasses.replace(account, available=available)
            decision, view = decide_for_bot(intent, account, own, market, policy, budget)
            bound.append(view)
            return decision
        return fn

    # -- decisions ----------------------------------------------------------------------
    def decide(self, bot: Bot, body: Mapping[str, Any], idempotency_key: str | None) -> Answer:
        market = self.market(body["symbol"])
        self._open_account(body.get("equity"), market)
        cid = self.client_order_id(bot, idempotency_key)
        bound: list[str] = []
        fn = self._decide_fn(bot, body, bound)
        if body.get("reserve"):
            answer = self.group.submit(Pending(
                bot, fn, cid, self.markets.snapshot_id,
                body.get("ttl") or self.settings.reservation_ttl,
                own=not Budget(bot.budget, bot.max_positions).unlimited, fresh=True))
            if isinstance(answer, InvalidInput):
                raise answer
            reserved = answer
            out = dict(reserved.decision)
            out["reservation"] = reserved.reservation.to_dict() if reserved.reservation else None
            out["journal_id"] = reserved.journal_id
            out["duplicate"] = reserved.duplicate
        else:
            decision, jid = self.registry.quote(bot, fn, client_order_id=cid,
                                                snapshot_id=self.markets.snapshot_id)
            out = decision.to_dict()
            out["reservation"] = None
            out["journal_id"] = jid
            out["duplicate"] = False
        out["client_order_id"] = cid
        out["bound_by"] = bound[0] if bound else None
        self.counters.add(self.counters.decisions,
                          f'{out["status"]},{"true" if body.get("reserve") else "false"}')
        return 200, out, {}

    # -- orders -------------------------------------------------------------------------
    def order(self, bot: Bot, body: Mapping[str, Any], idempotency_key: str | None) -> Answer:
        intent = self._intent(body)
        market = self.market(intent.symbol)
        self._open_account(body.get("equity"), market)
        cid = self.client_order_id(bot, idempotency_key)
        bound: list[str] = []
        fn = self._decide_fn(bot, body, bound)
        ttl = body.get("ttl") or self.settings.reservation_ttl
        reserved = self.registry.decide_and_reserve(
            bot, fn, client_order_id=cid, snapshot_id=self.markets.snapshot_id, ttl=ttl,
            own=not Budget(bot.budget, bot.max_positions).unlimited, claim=0.0)
        if not reserved.accepted:
            out: dict[str, Any] = {
                "status": "skipped", "client_order_id": cid, "journal_id": reserved.journal_id,
                "duplicate": reserved.duplicate, "error": None, "retryable": False,
                "position": None, "orders": [], "notes": [], "decision": dict(reserved.decision)}
        else:
            # The reservation is held under ``cid``: the trader finds it (a duplicate of its own
            # decide + reserve) and goes on to leverage, entry, stop and record.
            with self._live_lock if self.settings.live else contextlib.nullcontext():
                exchange = self.exchange_factory(self)
                trader = Trader(self.store, exchange, self.markets, self.policy_for(body.get("preset")),
                                account_id=self.account_id, venue=self.settings.exchange, ttl=ttl)
                result = trader.submit(intent, cid)
            out = result.to_dict()
            out["duplicate"] = reserved.duplicate
        out["bound_by"] = bound[0] if bound else None
        self.counters.add(self.counters.orders, str(out["status"]))
        if out["status"] == "failed" and out.get("retryable"):
            raise Problem(503, "exchange unavailable", str(out.get("error") or "retry later"),
                          headers={"Retry-After": str(self.settings.retry_after)},
                          extra={"retryable": True, "result": out})
        return 200, out, {}

    # -- bots that execute themselves ---------------------------------------------------
    def _own_reservation(self, bot: Bot, reservation_id: str) -> Any:
        res = self.store.reservation(reservation_id)
        if res is None or res.account_id != bot.account_id:
            raise Problem(404, "no such reservation", f"reservation {reservation_id!r} not found",
                          errors=[{"field": "reservation_id", "reason": "not found"}])
        if self.registry.owner(res.client_order_id) != bot.id:
            raise Problem(403, "not your reservation",
                          "this reservation belongs to another bot")
        return res

    def fill(self, bot: Bot, body: Mapping[str, Any]) -> Answer:
        res = self._own_reservation(bot, body["reservation_id"])
        if res.status not in ("held", "expired", "filled"):
            raise Problem(409, "reservation not held",
                          f"the reservation is {res.status}; only a held one can fill",
                          errors=[{"field": "reservation_id", "reason": f"is {res.status}"}])
        filled = position.opened(self.markets.markets()[res.symbol], float(body["amount"]),
                                 body["price"], res.leverage)
        pos = self.store.fill_reservation(
            res.id, amount=body["amount"], entry_price=body["price"], notional=filled.notional,
            margin=filled.margin, fee=body.get("fee") or 0.0,
            stop_price=body.get("stop_price"), take_profit=body.get("take_profit"),
            order_id=body.get("order_id"))
        return 200, {"position": pos.to_dict()}, {}

    def close(self, bot: Bot, body: Mapping[str, Any]) -> Answer:
        pos = self.store.position(body["position_id"])
        if pos is None or pos.account_id != bot.account_id:
            raise Problem(404, "no such position", f"position {body['position_id']!r} not found",
                          errors=[{"field": "position_id", "reason": "not found"}])
        if self.registry.owner(pos.client_order_id) != bot.id:
            raise Problem(403, "not your position", "this position belongs to another bot "
                          "(or was found on the exchange by sync)")
        closed = self.store.close_position(pos.id, exit_price=body["price"],
                                           fee=body.get("fee") or 0.0, note=f"closed by {bot.name}")
        return 200, {"position": closed.to_dict(),
                     "state": self.store.risk_state(self.account_id).to_dict()}, {}

    def release(self, bot: Bot, reservation_id: str) -> Answer:
        res = self._own_reservation(bot, reservation_id)
        released = self.store.release_reservation(res.id, f"released by bot {bot.name}")
        now = self.store.reservation(res.id)
        return 200, {"released": released,
                     "reservation": now.to_dict() if now else res.to_dict()}, {}

    # -- views --------------------------------------------------------------------------
    def positions(self, bot: Bot, scope: str) -> dict[str, Any]:
        if scope == ACCOUNT:
            mine = {p.id for p in self.registry.positions(bot)}
            held = {r.id for r in self.registry.reservations(bot)}
            return {"scope": scope,
                    "positions": [{**p.to_dict(), "mine": p.id in mine}
                                  for p in self.store.positions(self.account_id)],
                    "reservations": [{**r.to_dict(), "mine": r.id in held}
                                     for r in self.store.reservations(self.account_id)]}
        return {"scope": "bot",
                "positions": [p.to_dict() for p in self.registry.positions(bot)],
                "reservations": [r.to_dict() for r in self.registry.reservations(bot)]}

    def state(self, bot: Bot) -> dict[str, Any]:
        if not self.store.has_account(self.account_id):
            raise Problem(404, "no account yet", f"the account '{self.account_id}' opens with "
                          "the first decision that gives equity")
        rs = self.store.risk_state(self.account_id)
        own = self.registry.own_positions(bot)
        return {**rs.to_dict(), "learned_minimums": self.store.learned_minimums(rs.exchange),
                "schema_version": self.store.schema_version(),
                "policy": self.policy.name,
                "bot": {**bot.to_dict(), "equity_share": rs.equity * bot.budget,
                        "open_positions_and_reservations": len(own),
                        "margin_in_use": sum(p.margin for p in own),
                        "gross_exposure": sum(abs(p.notional) for p in own)}}

    def journal(self, bot: Bot, symbol: str | None, last: int, kind: str | None) -> dict[str, Any]:
        return {"entries": [e.to_dict() for e in self.registry.journal(
            bot, symbol=symbol, last=last, kind=kind)]}

    def market_info(self, symbol: str) -> dict[str, Any]:
        try:
            return self.market(symbol).to_dict()
        except UnknownSymbol as exc:
            raise Problem(404, "unknown symbol", str(exc),
                          errors=[{"field": "symbol", "reason": exc.reason}]) from None

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "schema_version": self.store.schema_version(),
                "markets": self.markets.snapshot_id, "account": self.account_id,
                "exchange": self.settings.exchange, "live": self.settings.live}

    # -- idempotency --------------------------------------------------------------------
    def idempotent(self, bot: Bot, key: str | None, what: str, payload: Any,
                   answer: Callable[[], Answer]) -> Answer:
        """Answer once per (bot, key): a retry gets the first answer (2xx and 4xx are kept;
        a 5xx is not, so a retry tries again). The same key with another request is refused."""
        if key is None:
            return answer()
        if not (0 < len(key) <= 200) or not key.isprintable():
            raise Problem(400, "invalid Idempotency-Key", "1 to 200 printable characters",
                          errors=[{"field": "Idempotency-Key", "in": "header",
                                   "reason": "must be 1 to 200 printable characters"}])
        digest = hashlib.sha256(json.dumps([what, payload], sort_keys=True,
                                           default=str).encode()).hexdigest()
        earlier = self.registry.idempotency_begin(bot, key, digest)
        if earlier is not None:
            if earlier.request_hash != digest:
                raise Problem(422, "Idempotency-Key reused",
                              "this key was used with a different request",
                              errors=[{"field": "Idempotency-Key", "in": "header",
                                       "reason": "reused with a different request"}])
            if earlier.status == 0 or earlier.body is None:
                raise Problem(409, "request in progress",
                              "a request with this Idempotency-Key is still being answered",
                              headers={"Retry-After": "1"})
            return earlier.status, json.loads(earlier.body), {"Idempotent-Replayed": "true"}
        try:
            status, body, headers = answer()
        except Exception as exc:
            problem = problem_for(exc, self.settings.retry_after)
            if problem.status >= 500:
                self.registry.idempotency_abort(bot, key)
                raise
            status, body, headers = problem.status, problem.body(), problem.headers
        self.registry.idempotency_finish(bot, key, status, json.dumps(body, default=str))
        return status, body, headers
