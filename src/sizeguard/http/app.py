"""The FastAPI application: routes only parse, call :class:`~sizeguard.http.service.Gate` and
render. Dependencies (settings, store, markets, exchange factory, policy) are injected into
:func:`create_app`; :func:`app_from_env` builds them from ``SIZEGUARD_*`` (uvicorn workers).
"""


import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sizeguard import redact
from sizeguard.adapters.bots import Bot, BotRegistry
from sizeguard.adapters.retention import Retention, prune, store_size
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.app import bootstrap
from sizeguard.core.policy import Policy
from sizeguard.errors import SizeguardError
from sizeguard.http.admin import install_admin
from sizeguard.http.fastpath import PATH as DECISIONS
from sizeguard.http.fastpath import FastDecisions
from sizeguard.http.guard import BodyGuard, GuardedRoute
from sizeguard.http.metrics import FRONT, Metrics, MetricsMiddleware
from sizeguard.http.models import (
    CloseRequest,
    DecisionOut,
    DecisionRequest,
    FillRequest,
    OrderRequest,
    ProblemOut,
    TradeOut,
)
from sizeguard.http.problems import PROBLEM, Problem, dumps, problem_for, validation_problem
from sizeguard.http.service import Answer, ExchangeFactory, Gate
from sizeguard.http.settings import ServeSettings
from sizeguard.http.ui import mount_console
from sizeguard.ports import MarketSource

log = logging.getLogger("sizeguard.http")
HEALTH_TIMEOUT = 2.0  # seconds /healthz waits for the store

DESCRIPTION = """One risk gate for many bots sharing an account: every bot asks before it trades.

Authenticate with `Authorization: Bearer <token>` (`sizeguard bots add NAME --budget 40%`
prints one). Send `Idempotency-Key: <key>` on a POST or DELETE to make a retry return the first
answer. Errors are `application/problem+json` naming each invalid field; a business "no" is a
200 decision with status `skipped` and its reason codes."""

P = {"model": ProblemOut, "content": {PROBLEM: {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**P, "description": "Malformed request (invalid JSON, bad header)"},
    401: {**P, "description": "No bearer token, or a wrong one"},
    408: {**P, "description": "The body did not arrive in time"},
    413: {**P, "description": "The body is larger than the service accepts"},
    422: {**P, "description": "Invalid field (named in `field` and `errors`)"},
    503: {**P, "description": "Store or exchange unavailable; retry after Retry-After seconds"},
}
OWNED: dict[int | str, dict[str, Any]] = {
    **ERRORS, 403: {**P, "description": "Another bot's"}, 404: {**P, "description": "Not found"},
    409: {**P, "description": "Not in a state that allows this"}}

IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                       description="Retries with the same key get the first answer.")]


def respond(answer: Answer) -> Response:
    status, body, headers = answer
    return Response(dumps(body), status_code=status, headers=headers,
                    media_type=PROBLEM if status >= 400 else "application/json")


_JSON = b"application/json"
_PROBLEM = PROBLEM.encode("latin-1")


def raw_headers(answer: Answer, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers :func:`respond`'s ``Response`` sends for ``answer`` (its own, then the
    content length and type, each unless given), built without one."""
    status, _, headers = answer
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] \
        if headers else []
    if not headers or "content-length" not in {k.lower() for k in headers}:
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
    if not headers or "content-type" not in {k.lower() for k in headers}:
        raw.append((b"content-type", _PROBLEM if status >= 400 else _JSON))
    return raw


async def send_answer(answer: Answer, send: Send) -> None:
    """Send ``answer`` as :func:`respond` does (the same status, headers and body), as two
    ASGI messages: the short way's answer, without a ``Response`` object."""
    body = dumps(answer[1])
    await send({"type": "http.response.start", "status": answer[0],
                "headers": raw_headers(answer, body)})
    await send({"type": "http.response.body", "body": body})


def problem_response(p: Problem) -> Response:
    return respond((p.status, p.body(), p.headers))


TRACED_EVERY = 1.0  # seconds between two checks whether OpenTelemetry is configured


class GateApp(FastAPI):
    """FastAPI with a pure-ASGI *front* for ``POST /v1/decisions``: the metrics, the guard and
    the short way (:mod:`sizeguard.http.fastpath`) run before Starlette's and FastAPI's outer
    middleware (error handling, telemetry, body limit), so a decision the short way answers
    skips them. A request it passes on enters the whole application, where the same three
    middlewares pass it on untouched (``FRONT``): it is counted, guarded and answered once.
    An exception on the front before its response started is answered by ``last_resort``,
    as the application's own last-resort handler answers it behind Starlette's."""

    front: ASGIApp | None = None
    _traced_at: tuple[bool, float] = (False, -1.0)

    def traced(self) -> bool:
        """Whether OpenTelemetry is configured for this application (FastAPI's own telemetry,
        or OpenTelemetry's FastAPI instrumentation in its middleware): then the short way
        stands aside, and every decision goes through FastAPI and gets its span. Checked at
        most every :data:`TRACED_EVERY` seconds (it costs a few microseconds)."""
        now = time.monotonic()
        on, at = self._traced_at
        if now - at < TRACED_EVERY and at >= 0:
            return on
        native = getattr(self, "_native_telemetry", None)  # FastAPI >= 0.13x
        on = bool(native is not None and native.enabled()) or any(
            str(getattr(m.cls, "__module__", "")).startswith("opentelemetry")
            for m in self.user_middleware)
        self._traced_at = (on, now)
        return on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if (front is not None and scope["type"] == "http" and scope.get("path") == DECISIONS
                and scope.get("method") == "POST" and FRONT not in scope
                and not self.traced()):
            scope["app"] = self
            await front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def behind_front(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The front passes a request on: the whole application, its middlewares told."""
        scope[FRONT] = True
        await super().__call__(scope, receive, send)


async def last_resort(scope: Scope, exc: BaseException, send: Send) -> None:
    """A defect: answered 500 as problem+json and logged with its traceback."""
    log.error("%s %s failed: %s", scope.get("method"), scope.get("path"), type(exc).__name__,
              exc_info=exc)
    await problem_response(Problem(500, "internal error", "the request could not be answered; "
                                   "it was logged"))(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


_VOCABULARY: dict[str, frozenset[str]] = {}


def vocabulary(field: str) -> frozenset[str]:
    """Every ``regime`` (or ``volatility``) name a shipped preset knows: what a request may
    name under a policy without a table for it (where the name changes nothing)."""
    if not _VOCABULARY:
        from sizeguard.config.loader import PRESETS  # noqa: PLC0415
        from sizeguard.config.settings import load_policy  # noqa: PLC0415

        for f in ("regime", "volatility"):
            _VOCABULARY[f] = frozenset(k for name in PRESETS
                                       for k in getattr(load_policy(name).adjust, f))
    return _VOCABULARY[field]


def check_enumerations(gate: Gate, data: Mapping[str, Any]) -> None:
    """Refuse a ``regime`` or ``volatility`` the policy deciding the request does not know,
    naming the allowed values, before any gate can skip the decision and hide it."""
    policy = gate.policy_for(data.get("preset"))
    for field in ("regime", "volatility"):
        value = data.get(field)
        if value is None:
            continue
        table = getattr(policy.adjust, field)
        allowed = sorted(table) if table else sorted(vocabulary(field))
        if str(value).lower() not in allowed:
            raise Problem(422, "invalid request",
                          f"{field}: unknown value {value!r}; one of {', '.join(allowed)}",
                          errors=[{"field": field, "in": "body", "value": value,
                                   "reason": f"must be one of {', '.join(allowed)}",
                                   "allowed": allowed}])


GC_YOUNG = 20_000  # allocations between two young collections (CPython's default: 700)


def settle_heap() -> None:
    """The garbage collector of a serving process: what the start made (modules, the app, its
    routes and models: ~80,000 objects) is collected once and then frozen out of the
    collector's reach (``gc.freeze``), so a full collection scans only what requests made
    since; and the young generation is collected every ``GC_YOUNG`` allocations instead of 700
    (a decision allocates hundreds: a young collection every request or two, each traversing
    every request then in flight). Before, a full collection held the interpreter 20-95 ms,
    several times a minute under load (every request in flight waited that long: the open
    loop's p99), and the collector took ~30-60 us of CPU per decision."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


def create_app(settings: ServeSettings | None = None, *, store: SqlStore | None = None,
               markets: MarketSource | None = None, registry: BotRegistry | None = None,
               exchange_factory: ExchangeFactory | None = None, policy: Policy | None = None,
               owns_store: bool | None = None, freeze_heap: bool = False) -> FastAPI:
    """The application over the given dependencies (each defaults from ``settings``).

    ``freeze_heap``: :func:`settle_heap` once started (what ``sizeguard serve``'s processes do;
    an application embedded in another program leaves that program's collector alone)."""
    settings = settings or ServeSettings()
    own_store = owns_store if owns_store is not None else store is None
    redact.install()  # no log line of this process carries a password, token or key
    store = store or bootstrap.open_state(settings.store, timeout=settings.store_timeout)
    markets = markets or bootstrap.market_source(settings.markets, settings.tiers)
    registry = registry or BotRegistry(store, cache_ttl=settings.auth_cache_ttl)
    gate = Gate(settings, store, markets, registry, exchange_factory, policy)
    metrics = Metrics()
    auth_failures: dict[str, int] = {}

    retention = Retention(settings.retention_days, settings.idempotency_hours)
    pruned_rows = {"journal": 0, "reservations": 0, "bot_orders": 0, "idempotency": 0}

    async def prune_every(interval: float) -> None:
        """Retention, in this process, every ``interval`` seconds (the first one soon after
        the start). Several processes may prune the same store: deleting twice is harmless."""
        await anyio.sleep(min(interval, 30.0))
        while True:
            try:
                report = await anyio.to_thread.run_sync(prune, store, retention)
            except SizeguardError as exc:
                log.warning("prune: %s", exc)
            else:
                for table in pruned_rows:
                    pruned_rows[table] += getattr(report, table)
                if report.total:
                    log.info("pruned %d journal, %d reservation, %d ownership and %d idempotency "
                             "rows in %.2f s", report.journal, report.reservations,
                             report.bot_orders, report.idempotency, report.seconds)
            await anyio.sleep(interval)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        markets.markets()  # load once, before the first request
        if freeze_heap:
            settle_heap()
        async with anyio.create_task_group() as tasks:
            if settings.prune_interval > 0:
                tasks.start_soon(prune_every, settings.prune_interval)
            yield
            tasks.cancel_scope.cancel()
        if own_store:
            store.close()

    app = GateApp(title="sizeguard", version="1", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, openapi_url="/openapi.json", redoc_url=None)
    app.router.route_class = GuardedRoute  # routes take the body the guard parsed
    app.state.gate = gate
    app.state.metrics = metrics
    # a bot's reserving decision takes the short way (inside the guard: the body is parsed)
    decisions_route: list[Any] = []

    def route_of_decisions() -> Any:
        if not decisions_route:
            decisions_route.append(next(
                r for r in app.router.routes if getattr(r, "path", None) == "/v1/decisions"
                and "POST" in getattr(r, "methods", ())))
        return decisions_route[0]

    app.state.fast_path = {"answered": 0}
    fast = {"gate": gate, "registry": registry, "respond": send_answer, "check": check_enumerations,
            "route": route_of_decisions, "stats": app.state.fast_path,
            "stand_aside": app.traced}
    app.add_middleware(FastDecisions, **fast)
    # the guard runs inside the metrics, so its 408/413/400 answers are counted too
    app.add_middleware(BodyGuard, max_body=settings.max_body, body_timeout=settings.body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # the same three in front of Starlette for POST /v1/decisions (see GateApp)
    app.front = MetricsMiddleware(
        BodyGuard(FastDecisions(app.behind_front, **fast), max_body=settings.max_body,
                  body_timeout=settings.body_timeout), metrics, last_resort=last_resort)

    # -- errors -------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return problem_response(validation_problem(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "not found", 405: "method not allowed", 401: "unauthorized"}
        return problem_response(Problem(exc.status_code, titles.get(exc.status_code, "error"),
                                        str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return problem_response(exc)

    async def _known(request: Request, exc: Exception) -> Response:
        p = problem_for(exc, settings.retry_after)
        if p.status >= 500:
            log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return problem_response(p)

    # sizeguard's own errors and value errors, answered where they are raised (the inner
    # exception middleware), so the metrics and logs see the status actually sent
    for kind in (SizeguardError, ValueError, ArithmeticError):
        app.add_exception_handler(kind, _known)

    @app.exception_handler(Exception)
    async def _last_resort(request: Request, exc: Exception) -> Response:
        """A defect: answered 500 as problem+json and logged with its traceback."""
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__,
                  exc_info=exc)
        return problem_response(Problem(500, "internal error",
                                        "the request could not be answered; it was logged"))

    # -- authentication -------------------------------------------------------------------
    bearer = HTTPBearer(auto_error=False, description="The bot's token (`sizeguard bots add`).")

    async def current_bot(
            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Bot:
        if creds is None or creds.scheme.lower() != "bearer":
            auth_failures["missing"] = auth_failures.get("missing", 0) + 1
            raise Problem(401, "unauthorized", "send Authorization: Bearer <token>",
                          headers={"WWW-Authenticate": "Bearer"})
        known, bot = registry.cached(creds.credentials)
        if not known:
            bot = await run_in_threadpool(registry.authenticate, creds.credentials)
        if bot is None:
            auth_failures["invalid"] = auth_failures.get("invalid", 0) + 1
            raise Problem(401, "unauthorized", "the token is not valid",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if bot.account_id != settings.account:
            raise Problem(403, "wrong account", "this bot trades another account than this "
                          "service's")
        if bot.is_admin:
            raise Problem(403, "admin token", "the account admin's token administers "
                          "(/v1/admin/...); trade with a bot's token")
        return bot

    CurrentBot = Annotated[Bot, Depends(current_bot)]  # noqa: N806 - a type alias

    async def call(fn: Callable[..., Answer], *args: Any) -> Response:
        return respond(await run_in_threadpool(fn, *args))

    def keyed(bot: Bot, key: str | None, what: str, payload: Mapping[str, Any],
              fn: Callable[[], Answer]) -> Answer:
        return gate.idempotent(bot, key, what, payload, fn)

    # -- routes -------------------------------------------------------------------------
    @app.post("/v1/decisions", tags=["decisions"], response_model=None,
              responses={200: {"model": DecisionOut}, **ERRORS})
    async def post_decision(body: DecisionRequest, bot: CurrentBot, key: IdemKey = None) -> Response:
        """Size a trade (the same fields as `sizeguard size`). `reserve: true` holds the margin,
        notional and slot atomically with the decision. A "no" is status `skipped`."""
        data = body.model_dump()
        check_enumerations(gate, data)
        if gate.answers_on_the_loop(data):  # no thread: it waits for its group commit
            return respond(await gate.decide_async(bot, data, key))
        return await call(keyed, bot, key, "decisions", data,
                          lambda: gate.decide(bot, data, key))

    @app.post("/v1/orders", tags=["orders"], response_model=None,
              responses={200: {"model": TradeOut}, **ERRORS})
    async def post_order(body: OrderRequest, bot: CurrentBot, key: IdemKey = None) -> Response:
        """Size, reserve and place the entry with its stop (and take-profit) on the paper
        exchange (or the live one when the service runs with `--live`); record the position."""
        data = body.model_dump()
        check_enumerations(gate, data)
        return await call(keyed, bot, key, "orders", data, lambda: gate.order(bot, data, key))

    @app.post("/v1/fills", tags=["orders"], response_model=None, responses=OWNED)
    async def post_fill(body: FillRequest, bot: CurrentBot, key: IdemKey = None) -> Response:
        """A bot that executes itself reports the fill of its reservation: it becomes a
        position."""
        data = body.model_dump()
        return await call(keyed, bot, key, "fills", data, lambda: gate.fill(bot, data))

    @app.post("/v1/closes", tags=["orders"], response_model=None, responses=OWNED)
    async def post_close(body: CloseRequest, bot: CurrentBot, key: IdemKey = None) -> Response:
        """A bot that executes itself reports a close: PnL, streak and win rate follow."""
        data = body.model_dump()
        return await call(keyed, bot, key, "closes", data, lambda: gate.close(bot, data))

    @app.delete("/v1/reservations/{reservation_id}", tags=["orders"], response_model=None,
                responses=OWNED)
    async def delete_reservation(
            reservation_id: Annotated[str, Path(min_length=1, max_length=64)], bot: CurrentBot,
            key: IdemKey = None) -> Response:
        """Release a held reservation (the order will not be placed)."""
        return await call(keyed, bot, key, "release", {"id": reservation_id},
                          lambda: gate.release(bot, reservation_id))

    @app.get("/v1/positions", tags=["state"], responses=ERRORS)
    async def get_positions(bot: CurrentBot, scope: Annotated[Literal["bot", "account"], Query(
            description="The bot's own, or the whole account's (marked `mine`).")] = "bot"
                            ) -> Response:
        """Open positions and live reservations."""
        return await call(lambda: (200, gate.positions(bot, scope), {}))

    @app.get("/v1/state", tags=["state"], responses={**ERRORS, 404: P})
    async def get_state(bot: CurrentBot) -> Response:
        """The account's risk state (equity, peak, today's PnL, streak, win rates, slots,
        learned minimums) and the bot's budget use."""
        return await call(lambda: (200, gate.state(bot), {}))

    @app.get("/v1/journal", tags=["state"], responses=ERRORS)
    async def get_journal(
            bot: CurrentBot,
            symbol: Annotated[str | None, Query(max_length=64)] = None,
            last: Annotated[int, Query(ge=1, le=1000)] = 100,
            kind: Annotated[str | None, Query(max_length=32)] = None) -> Response:
        """The bot's decisions (with trace and market snapshot) and their events."""
        return await call(lambda: (200, gate.journal(bot, symbol, last, kind), {}))

    @app.get("/v1/markets/{symbol:path}", tags=["markets"], responses={**ERRORS, 404: P})
    async def get_market(symbol: str, bot: CurrentBot) -> Response:
        """One market's rules and leverage tiers, e.g. `/v1/markets/BTC/USDT:USDT`."""
        return await call(lambda: (200, gate.market_info(symbol), {}))

    health_threads: list[anyio.CapacityLimiter] = []

    @app.get("/healthz", tags=["service"], responses={503: ERRORS[503]})
    async def healthz() -> Response:
        """Liveness and the store's answer (503 when the store does not answer within
        2 s). Its own threads: a busy or hung store never leaves it without one."""
        if not health_threads:
            health_threads.append(anyio.CapacityLimiter(4))
        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                body = await anyio.to_thread.run_sync(gate.health, limiter=health_threads[0],
                                                      abandon_on_cancel=True)
        except TimeoutError:
            raise Problem(503, "state store unavailable",
                          f"the state store did not answer within {HEALTH_TIMEOUT:g} s",
                          headers={"Retry-After": str(settings.retry_after)},
                          extra={"retryable": True}) from None
        return respond((200, body, {}))

    sized: list[tuple[float, dict[str, int]]] = []

    async def store_gauges() -> dict[str, tuple[str, dict[str, float]]]:
        """The store's size and prunable rows, measured at most every 30 s (counting rows
        is not free); left out while the store does not answer."""
        now = time.monotonic()
        if not sized or now - sized[0][0] > 30:
            try:
                with anyio.fail_after(HEALTH_TIMEOUT):
                    size = await anyio.to_thread.run_sync(store_size, store,
                                                          abandon_on_cancel=True)
            except (TimeoutError, SizeguardError):
                return {}
            sized[:] = [(now, size)]
        size = sized[0][1]
        out = {"sizeguard_store_bytes": ("Size of the state store (bytes in use).",
                                         {"": float(size["bytes"])}),
               "sizeguard_store_rows": ("Rows of the tables retention prunes.",
                                        {f'table="{t}"': float(n) for t, n in size.items()
                                         if t != "bytes"})}
        out["sizeguard_store_pruned_rows_total"] = (
            "Rows retention deleted, by table (this process).",
            {f'table="{t}"': float(n) for t, n in pruned_rows.items()})
        return out

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def get_metrics() -> PlainTextResponse:
        """Prometheus text exposition (this process)."""
        text = metrics.render({"decisions": dict(gate.counters.decisions),
                               "orders": dict(gate.counters.orders),
                               "auth": dict(auth_failures),
                               "group_commit": {"batches": gate.group.batches,
                                                "items": gate.group.items}},
                              {**await store_gauges(), **gc_gauges()})
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # after the API's routes, so a request to /v1/... matches without trying the console's
    mount_console(app)  # /docs offline and the /ui console (sizeguard.http.ui)
    install_admin(app, gate)
    return app


def gc_gauges() -> dict[str, tuple[str, dict[str, float]]]:
    """The process's garbage collector: objects frozen out of its reach, collections by
    generation."""
    return {
        "sizeguard_gc_frozen_objects": ("Objects the collector no longer scans (frozen at start).",
                                        {"": float(gc.get_freeze_count())}),
        "sizeguard_gc_collections_total": (
            "Garbage collections of this process by generation.",
            {f'generation="{g}"': float(st["collections"]) for g, st in enumerate(gc.get_stats())}),
    }


def app_from_env() -> FastAPI:
    """The application from ``SIZEGUARD_*`` (``sizeguard serve`` sets them for its workers)."""
    return create_app(ServeSettings(), freeze_heap=True)
