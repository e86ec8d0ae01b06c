"""What the HTTP routes call: plain values in, plain JSON-able dicts out, sizeguard errors (or
:class:`~sizeguard.http.problems.Problem`) raised. No HTTP framework here, no arithmetic and no
transaction of its own: every decision is the core's ``decide`` through :mod:`sizeguard.budget`,
made and recorded by the application's use cases (:mod:`sizeguard.app.services`), the same ones
the CLI's trader calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sizeguard.adapters.bots import Bot, BotRegistry, Claim, Replay
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.app import bootstrap, services
from sizeguard.app.services import Bounds, Execution, ReserveRequest, new_client_order_id
from sizeguard.budget import ACCOUNT, Budget, account_policy, bot_slots, decide_for_bot
from sizeguard.config.settings import env_from_os, resolve
from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy
from sizeguard.errors import InvalidInput, UnknownSymbol
from sizeguard.http.batch import GroupCommit
from sizeguard.http.problems import Problem, problem_for
from sizeguard.http.settings import ServeSettings
from sizeguard.ports import Exchange, MarketSource, Reserved

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
    """The paper account as the store has it (:func:`sizeguard.app.bootstrap.paper_exchange`)."""
    return bootstrap.paper_exchange(gate.store, gate.account_id, gate.markets,
                                    name=gate.settings.exchange)


class LiveExchange:
    """The live account through ccxt (``--live``): one exchange object per process, built on
    first use by :class:`sizeguard.app.bootstrap.LiveExchange` from ``SIZEGUARD_API_KEY``,
    ``SIZEGUARD_API_SECRET`` and ``SIZEGUARD_API_PASSWORD`` (read there, never logged or
    answered). Orders on it are serialised per process (ccxt objects are not thread-safe)."""

    def __init__(self) -> None:
        self._live: bootstrap.LiveExchange | None = None
        self._lock = threading.Lock()

    @staticmethod
    def check(settings: ServeSettings) -> None:
        """Refuse to start live without an exchange id and its key."""
        bootstrap.check_live(settings.exchange)

    def __call__(self, gate: Gate) -> Exchange:
        with self._lock:
            if self._live is None:
                self._live = bootstrap.LiveExchange(
                    gate.settings.exchange, hedge_mode=gate.settings.hedge_mode,
                    quote=lambda: gate.store.risk_state(gate.account_id).quote)
        return self._live()


@dataclass(slots=True)
class _Item:
    """One decide-and-reserve of the group commit. ``key``/``digest``: an idempotent request
    answered on the event loop, whose key is claimed and whose answer is kept inside the batch's
    own unit of work (:meth:`Gate._batch`): the claim, the decision, the reservation and the
    kept answer commit together, or none of them does."""

    request: ReserveRequest
    cid: str
    bound: list[str]
    bot: Bot | None = None
    key: str | None = None
    digest: str | None = None


@dataclass
class _Request:
    """The idempotency claim of the request this thread is answering (set by
    :meth:`Gate.idempotent`), and whether its answer was already kept with its reservation."""

    claim: Claim | None = None
    key: str | None = None
    kept: bool = False


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
        self._presets: tuple[frozenset[str], float] | None = None
        self._account_open = False
        self.bounds = Bounds(settings.fill_price_band, settings.close_price_band)
        self._lock = threading.Lock()
        self._live_lock = threading.Lock()
        self._local = threading.local()
        self.group: GroupCommit[_Item, Reserved | InvalidInput | Answer | Problem] = \
            GroupCommit(self._batch, max_batch=settings.max_batch, delay=settings.batch_delay)

    # -- helpers ------------------------------------------------------------------------
    @property
    def account_id(self) -> str:
        return self.settings.account

    def policy_for(self, preset: str | None) -> Policy:
        """The policy a request gets: the service's, or a preset the admin allows, always under
        the service's limits and leverage cap."""
        if preset is None or preset == self.settings.preset:
            return self.policy
        allowed = self.allowed_presets()
        if preset not in allowed:
            raise Problem(403, "preset not allowed",
                          f"this account allows {', '.join(sorted(allowed)) or 'no preset'} "
                          "(the account's admin sets the list)",
                          errors=[{"field": "preset", "value": preset,
                                   "reason": "not in the account's allow-list",
                                   "allowed": sorted(allowed)}])
        cached = self._policies.get(preset)
        if cached is None:
            cached = account_policy(resolve(preset, None, (), None).policy, self.policy)
            self._policies[preset] = cached
        return cached

    def allowed_presets(self) -> frozenset[str]:
        """The admin's allow-list (cached ``auth_cache_ttl`` seconds per process); by default
        only the service's own policy."""
        now = time.monotonic()
        with self._lock:
            hit = self._presets
        if hit is None or now - hit[1] > self.settings.auth_cache_ttl:
            names: tuple[str, ...] | None = None
            if self.store.has_account(self.account_id):
                names = self.store.risk_state(self.account_id).presets
            own = {self.settings.preset} if self.settings.preset else set()
            hit = (frozenset(own | set(names or ())), now)
            with self._lock:
                self._presets = hit
        return hit[0]

    def market(self, symbol: str) -> MarketRules:
        return self.markets.markets()[symbol]

    def _open_account(self, equity: float | None, market: MarketRules) -> None:
        """Open the account on first use: a request's equity opens an account that has none
        (compatibility), and never writes one that exists (see :meth:`_decide_fn`)."""
        if self._account_open:
            return
        if not self.store.has_account(self.account_id):
            if equity is None:
                raise InvalidInput("equity", None, f"the account '{self.account_id}' is new: "
                                   "give equity once to open it")
            self.store.ensure_account(self.account_id, exchange=self.settings.exchange,
                                      equity=equity, quote=market.settle or market.quote or "USDT")
        self._account_open = True

    def budget(self, bot: Bot) -> Budget:
        """The bot's budget: its share, and its own slots (the admin's number, else its share
        of the account's slots)."""
        return Budget(bot.budget, bot_slots(bot.budget, bot.max_positions,
                                            self.policy.limits.max_positions))

    @staticmethod
    def _intent(body: Mapping[str, Any]) -> Intent:
        return Intent(symbol=body["symbol"], side=body["side"], price=body["price"],
                      take_profit=body.get("take_profit"),
                      **{k: body.get(k) for k in INTENT_FIELDS})

    def _request(self) -> _Request:
        req: _Request | None = getattr(self._local, "request", None)
        return req if req is not None else _Request()

    def client_order_id(self, bot: Bot, idempotency_key: str | None) -> str:
        """The id the request's decision is made under: the one its idempotency claim holds
        (a retry that takes over a dead request's claim resumes that id), else a fresh one."""
        claim = self._request().claim
        return claim.client_order_id if claim is not None else new_client_order_id()

    def _decide_fn(self, bot: Bot, body: Mapping[str, Any], bound: list[str]
                   ) -> Callable[[Account, tuple[Position, ...]], Decision]:
        intent = self._intent(body)
        market = self.market(intent.symbol)
        policy = self.policy_for(body.get("preset"))
        budget = self.budget(bot)
        equity, available = body.get("equity"), body.get("available")

        def fn(account: Account, own: tuple[Position, ...]) -> Decision:
            # a request narrows its own view, never the account's: the stricter value wins
            if equity is not None and equity < account.equity:
                account = dataclasses.replace(account, equity=equity)
            if available is not None and available < account.available_margin:
                account = dataclasses.replace(account, available=available)
            decision, view = decide_for_bot(intent, account, own, market, policy, budget)
            bound.append(view)
            return decision
        return fn

    def _reserve_request(self, bot: Bot, body: Mapping[str, Any], cid: str, bound: list[str],
                         claim: float, on_answer: Callable[[Reserved], None] | None = None
                         ) -> ReserveRequest:
        req = self._request()
        return ReserveRequest(
            self._decide_fn(bot, body, bound), cid, self.markets.snapshot_id,
            body.get("ttl") or self.settings.reservation_ttl, claim, owner=bot.id,
            own=not self.budget(bot).unlimited,
            fresh=req.claim is None or not req.claim.resumed, on_answer=on_answer)

    # -- decisions ----------------------------------------------------------------------
    def decide(self, bot: Bot, body: Mapping[str, Any], idempotency_key: str | None) -> Answer:
        market = self.market(body["symbol"])
        self._open_account(body.get("equity"), market)
        cid = self.client_order_id(bot, idempotency_key)
        bound: list[str] = []
        if body.get("reserve"):
            req = self._request()

            def keep(reserved: Reserved) -> None:
                """The answer, kept with the reservation in the same unit of work: a retry
                after any crash replays it."""
                out = self._decision_answer(reserved, cid, bound)
                if req.claim is not None and req.key is not None:
                    self.registry.idempotency_finish(bot, req.key, 200, json.dumps(out, default=str),
                                                     req.claim)
                    req.kept = True

            answer = self.group.submit(_Item(self._reserve_request(
                bot, body, cid, bound, self.settings.idempotency_lease, keep), cid, bound))
            if isinstance(answer, InvalidInput):
                raise answer
            assert isinstance(answer, Reserved)
            out = self._decision_answer(answer, cid, bound)
        else:
            decision, jid = services.quote(self.store, self.account_id,
                                           self._decide_fn(bot, body, bound), client_order_id=cid,
                                           snapshot_id=self.markets.snapshot_id, owner=bot.id,
                                           owners=self.registry)
            out = self._decision_answer(Reserved(decision, jid, None), cid, bound)
        self.counters.add(self.counters.decisions,
                          f'{out["status"]},{"true" if body.get("reserve") else "false"}')
        return 200, out, {}

    def answers_on_the_loop(self, body: Mapping[str, Any]) -> bool:
        """True when :meth:`decide_async` answers this request: a reserving decision on an
        account already open, for a known market. Anything else (the first request, which may
        open the account; an unknown symbol, whose refusal an idempotent request keeps) takes
        :meth:`decide` in a thread."""
        return (bool(body.get("reserve")) and self._account_open
                and body.get("symbol") in self.markets.markets())

    async def decide_async(self, bot: Bot, body: Mapping[str, Any],
                           idempotency_key: str | None) -> Answer:
        """:meth:`decide` of a reserving request (see :meth:`answers_on_the_loop`) from the
        event loop: no thread of its own; the decision waits for its group commit, in which an
        ``Idempotency-Key`` is claimed and its answer kept (:meth:`_batch`)."""
        digest = None
        if idempotency_key is not None:
            self._check_key(idempotency_key)
            digest = self.request_digest("decisions", body)
        cid = new_client_order_id()
        bound: list[str] = []
        item = _Item(self._reserve_request(bot, body, cid, bound, self.settings.idempotency_lease),
                     cid, bound, bot, idempotency_key, digest)
        got = await self.group.submit_async(item)
        if isinstance(got, InvalidInput | Problem):
            raise got
        if isinstance(got, Reserved):
            answer: Answer = (200, self._decision_answer(got, item.cid, bound), {})
        else:
            answer = got
        if answer[0] == 200 and "Idempotent-Replayed" not in answer[2]:
            self.counters.add(self.counters.decisions, f'{answer[1]["status"]},true')
        return answer

    def _batch(self, items: Sequence[_Item]) -> Sequence[Reserved | InvalidInput | Answer | Problem]:
        """The group commit's transaction: :func:`services.decide_and_reserve` of the batch, and,
        in the same unit of work, each idempotent item's key claimed before it is decided and
        its answer kept after (a key answered before is replayed, and not decided again)."""
        if not any(it.key is not None for it in items):
            return services.decide_and_reserve(self.store, self.account_id,
                                               [it.request for it in items], self.registry)
        out: list[Reserved | InvalidInput | Answer | Problem | None] = [None] * len(items)
        with self.store.unit_of_work(self.account_id) as uow:
            todo: list[int] = []
            claims: dict[int, Claim] = {}
            for i, it in enumerate(items):
                if it.key is None or it.bot is None or it.digest is None:
                    todo.append(i)
                    continue
                got = self.registry.idempotency_begin(
                    it.bot, it.key, it.digest, lease=self.settings.idempotency_lease,
                    client_order_id=it.cid)
                if isinstance(got, Claim):
                    claims[i] = got
                    if got.resumed:  # a dead request's claim: resume its client order id
                        it.cid = got.client_order_id
                        it.request = dataclasses.replace(it.request, client_order_id=it.cid,
                                                         fresh=False)
                    todo.append(i)
                else:
                    out[i] = self._replay(got, it.digest)
            results = services.decide_and_reserve(self.store, self.account_id,
                                                  [items[i].request for i in todo], self.registry)
            for i, r in zip(todo, results, strict=True):
                it = items[i]
                claim = claims.get(i)
                if claim is None or it.bot is None or it.key is None:
                    out[i] = r
                    continue
                if isinstance(r, InvalidInput):
                    p = problem_for(r, self.settings.retry_after)
                    answer: Answer = (p.status, p.body(), p.headers)
                else:
                    answer = (200, self._decision_answer(r, it.cid, it.bound), {})
                self.registry.idempotency_finish(it.bot, it.key, answer[0],
                                                 json.dumps(answer[1], default=str), claim)
                out[i] = answer
            uow.commit()
        return [o for o in out if o is not None]

    @staticmethod
    def _decision_answer(reserved: Reserved, cid: str, bound: list[str]) -> dict[str, Any]:
        out = dict(reserved.data) if reserved.data is not None else reserved.decision.to_dict()
        out["reservation"] = reserved.reservation.to_dict() if reserved.reservation else None
        out["journal_id"] = reserved.journal_id
        out["duplicate"] = reserved.duplicate
        out["client_order_id"] = cid
        out["bound_by"] = bound[0] if bound else None
        return out

    # -- orders -------------------------------------------------------------------------
    def order(self, bot: Bot, body: Mapping[str, Any], idempotency_key: str | None) -> Answer:
        """Reserve once (one unit of work), then execute once: leverage, entry, record,
        protective orders (:func:`sizeguard.app.services.execute`)."""
        intent = self._intent(body)
        market = self.market(intent.symbol)
        self._open_account(body.get("equity"), market)
        cid = self.client_order_id(bot, idempotency_key)
        bound: list[str] = []
        # the reservation is claimed as long as the request's idempotency lease: a retry
        # that takes a dead request over may resume it after that, never before
        reserved = services.reserve_one(self.store, self.account_id, self._reserve_request(
            bot, body, cid, bound, self.settings.idempotency_lease), self.registry)
        if not reserved.accepted:
            out: dict[str, Any] = {
                "status": "skipped", "client_order_id": cid, "journal_id": reserved.journal_id,
                "duplicate": reserved.duplicate, "error": None, "retryable": False,
                "position": None, "orders": [], "notes": [],
                "decision": reserved.decision.to_dict()}
        else:
            with self._live_lock if self.settings.live else contextlib.nullcontext():
                exchange = self.exchange_factory(self)
                result = services.execute(
                    Execution(self.store, exchange, self.account_id, self.settings.exchange,
                              claim=self.settings.idempotency_lease), intent, market, reserved)
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
        pos = services.fill(
            self.store, res.id, market=self.market(res.symbol), amount=body["amount"], price=body["price"],
            fee=body.get("fee") or 0.0, stop_price=body.get("stop_price"),
            take_profit=body.get("take_profit"), order_id=body.get("order_id"),
            bounds=self.bounds)
        return 200, {"position": pos.to_dict()}, {}

    def close(self, bot: Bot, body: Mapping[str, Any]) -> Answer:
        pos = self.store.position(body["position_id"])
        if pos is None or pos.account_id != bot.account_id:
            raise Problem(404, "no such position", f"position {body['position_id']!r} not found",
                          errors=[{"field": "position_id", "reason": "not found"}])
        if self.registry.owner(pos.client_order_id) != bot.id:
            raise Problem(403, "not your position", "this position belongs to another bot "
                          "(or was found on the exchange by sync)")
        closed = services.record_close(self.store, pos.id, price=body["price"],
                                       fee=body.get("fee") or 0.0, note=f"closed by {bot.name}",
                                       bounds=self.bounds)
        return 200, {"position": closed.to_dict(),
                     "state": self.store.risk_state(self.account_id).to_dict()}, {}

    def release(self, bot: Bot, reservation_id: str) -> Answer:
        res = self._own_reservation(bot, reservation_id)
        if res.status != "held":  # docs/http.md: a reservation not held any more is a 409
            raise Problem(409, "reservation not held",
                          f"the reservation is {res.status}; only a held one can be released",
                          errors=[{"field": "reservation_id", "reason": f"is {res.status}"}])
        released = services.release(self.store, res.id, f"released by bot {bot.name}")
        now = self.store.reservation(res.id)
        return 200, {"released": released,
                     "reservation": now.to_dict() if now else res.to_dict()}, {}

    # -- the account's admin ------------------------------------------------------------
    def _admin_account(self) -> None:
        if not self.store.has_account(self.account_id):
            raise Problem(404, "no account yet", f"the account '{self.account_id}' opens with "
                          "its admin's equity or the first decision that gives one")

    def admin_equity(self, admin: Bot, body: Mapping[str, Any]) -> Answer:
        """Set the paper account's equity (and its peak, when given); a live account's equity
        comes from the exchange (``POST /v1/admin/sync``)."""
        if self.settings.live:
            raise Problem(409, "equity comes from the exchange",
                          "a live account's equity is the exchange's balance: sync it",
                          errors=[{"field": "equity", "reason": "live accounts sync it"}])
        equity, peak = body["equity"], body.get("peak")
        if not self.store.has_account(self.account_id):
            self.store.ensure_account(self.account_id, exchange=self.settings.exchange,
                                      equity=equity, quote=body.get("quote") or "USDT")
        self.store.set_equity(self.account_id, equity, peak=peak)
        self.store.journal_event(self.account_id, "equity", note=f"set by admin {admin.name}",
                                 data={"equity": equity, "peak": peak})
        return 200, self.store.risk_state(self.account_id).to_dict(), {}

    def admin_halt(self, admin: Bot, reason: str | None) -> Answer:
        """Halt trading (every decision skips HALTED_BY_ADMIN) or, ``reason`` None, resume."""
        self._admin_account()
        self.store.set_halt(self.account_id, f"{reason} ({admin.name})" if reason else None)
        return 200, self.store.risk_state(self.account_id).to_dict(), {}

    def admin_release(self, admin: Bot, reservation_id: str) -> Answer:
        res = self.store.reservation(reservation_id)
        if res is None or res.account_id != self.account_id:
            raise Problem(404, "no such reservation", f"reservation {reservation_id!r} not found",
                          errors=[{"field": "reservation_id", "reason": "not found"}])
        released = services.release(self.store, res.id, f"released by admin {admin.name}")
        now = self.store.reservation(res.id)
        return 200, {"released": released,
                     "reservation": now.to_dict() if now else res.to_dict()}, {}

    def admin_presets(self, admin: Bot, presets: list[str] | None) -> Answer:
        """The presets a request may name (None: only the service's own policy)."""
        self._admin_account()
        for name in presets or ():
            resolve(name, None, (), None)  # an unknown preset is refused here, not per request
        self.store.set_presets(self.account_id, presets)
        with self._lock:
            self._presets = None
        return 200, {"presets": sorted(self.allowed_presets())}, {}

    def admin_slots(self, admin: Bot, bot_name: str, max_positions: int) -> Answer:
        bot = self.registry.get(bot_name)
        if bot is None or bot.account_id != self.account_id or bot.is_admin:
            raise Problem(404, "no such bot", f"bot {bot_name!r} not found",
                          errors=[{"field": "bot", "reason": "not found"}])
        bot = self.registry.set_slots(bot.id, max_positions)
        return 200, {**bot.to_dict(), "slots": self.budget(bot).max_positions}, {}

    def admin_state(self, admin: Bot) -> Answer:
        self._admin_account()
        bots = [{**b.to_dict(), "slots": self.budget(b).max_positions}
                for b in self.registry.bots(self.account_id) if not b.is_admin]
        return 200, {**self.store.risk_state(self.account_id).to_dict(), "bots": bots}, {}

    def admin_sync(self, admin: Bot) -> Answer:
        """Reconcile with the exchange: the live account's equity and positions."""
        self._admin_account()
        with self._live_lock if self.settings.live else contextlib.nullcontext():
            exchange = self.exchange_factory(self)
            out = services.sync(Execution(self.store, exchange, self.account_id,
                                          self.settings.exchange))
        return 200, out, {}

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
    def _give_up(self, bot: Bot, key: str, claim: Claim) -> None:
        """A 5xx: a retry may fix it. When the request left a held or filled reservation
        (a defect after the reserve, or after the entry), the retry must resume that client
        order id, so the lease just ends; otherwise (nothing held: the entry was refused and
        released) the claim goes and a retry decides afresh."""
        earlier = self.store.decided(self.account_id, claim.client_order_id)
        res = earlier.reservation if earlier is not None else None
        if res is not None and res.status in ("held", "filled"):
            self.registry.idempotency_yield(bot, key, claim)
        else:
            self.registry.idempotency_abort(bot, key, claim)

    @staticmethod
    def _check_key(key: str) -> None:
        if not (0 < len(key) <= 200) or not key.isprintable():
            raise Problem(400, "invalid Idempotency-Key", "1 to 200 printable characters",
                          errors=[{"field": "Idempotency-Key", "in": "header",
                                   "reason": "must be 1 to 200 printable characters"}])

    @staticmethod
    def request_digest(what: str, payload: Any) -> str:
        """What identifies an idempotent request (a key reused with another one is refused)."""
        return hashlib.sha256(json.dumps([what, payload], sort_keys=True,
                                         default=str).encode()).hexdigest()

    def _replay(self, got: Replay, digest: str) -> Answer | Problem:
        """The answer to a request whose key was used before: its first answer, or a refusal
        (another request under the key: 422; the first still being answered: 409)."""
        if got.request_hash != digest:
            return Problem(422, "Idempotency-Key reused",
                           "this key was used with a different request",
                           errors=[{"field": "Idempotency-Key", "in": "header",
                                    "reason": "reused with a different request"}])
        if got.status == 0 or got.body is None:
            return Problem(409, "request in progress",
                           "a request with this Idempotency-Key is still being answered",
                           headers={"Retry-After": str(max(1, round(
                               self.settings.idempotency_lease)))})
        return got.status, json.loads(got.body), {"Idempotent-Replayed": "true"}

    def idempotent(self, bot: Bot, key: str | None, what: str, payload: Any,
                   answer: Callable[[], Answer]) -> Answer:
        """Answer once per (bot, key): a retry gets the first answer (2xx and 4xx are kept;
        a 5xx is not, so a retry tries again). The same key with another request is refused.

        The claim on the key is a lease (``idempotency_lease`` seconds): while it runs, a retry
        gets 409; after it (the process answering died), a retry takes the request over under
        the same client order id. A reserved decision's answer is kept in the unit of work
        that reserves it, so no crash can separate the two."""
        if key is None:
            return answer()
        self._check_key(key)
        digest = self.request_digest(what, payload)
        got = self.registry.idempotency_begin(bot, key, digest,
                                              lease=self.settings.idempotency_lease,
                                              client_order_id=new_client_order_id())
        if not isinstance(got, Claim):
            replay = self._replay(got, digest)
            if isinstance(replay, Problem):
                raise replay
            return replay
        req = _Request(got, key)
        self._local.request = req
        try:
            status, body, headers = answer()
        except Exception as exc:
            problem = problem_for(exc, self.settings.retry_after)
            if problem.status >= 500:
                self._give_up(bot, key, got)
                raise
            status, body, headers = problem.status, problem.body(), problem.headers
        finally:
            self._local.request = None
        if not req.kept:
            self.registry.idempotency_finish(bot, key, status, json.dumps(body, default=str), got)
        return status, body, headers
