"""The reserving decision's short way through the application: ``POST /v1/decisions`` with
``reserve: true``, as bots send it before every order, answered without FastAPI's routing and
dependency machinery (a third of the service's time per decision went there).

An ASGI middleware inside the guard (:mod:`sizeguard.http.guard`: the body is already read,
bounded and strictly parsed). In the service it runs in the *front*
(:class:`sizeguard.http.app.GateApp`): the metrics, the guard and this, before Starlette's and
FastAPI's own middleware; a request it passes on enters the whole application unchanged.
It answers only a request it can answer exactly as the route would, with the route's own
functions:

* one ``Authorization: Bearer <token>`` whose bot is in the registry's cache (a trading bot of
  this service's account), at most one ``Idempotency-Key`` of at most 200 characters;
* a body the route's model (:class:`~sizeguard.http.models.DecisionRequest`) validates, whose
  ``regime``/``volatility`` the policy knows (:func:`~sizeguard.http.app.check_enumerations`),
  and that :meth:`Gate.answers_on_the_loop` takes.

Anything else (a missing or unknown token, a token not cached, an invalid field, the account's
first decision, a quote without ``reserve``) goes on to FastAPI unchanged, which answers it,
refusals included, as before: nothing was decided or written on the short way until then. Once
the decision is submitted, its errors are answered here as the application's handlers answer
them (problem+json; 5xx logged), and the metrics count it under the route's path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sizeguard.errors import SizeguardError
from sizeguard.http.guard import PARSED
from sizeguard.http.metrics import FRONT
from sizeguard.http.models import DecisionRequest
from sizeguard.http.problems import Problem, problem_for

if TYPE_CHECKING:
    from sizeguard.adapters.bots import BotRegistry
    from sizeguard.http.service import Answer, Gate

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("sizeguard.http")
PATH = "/v1/decisions"
MAX_KEY = 200  # the route's Idempotency-Key bound (a longer one is the route's 422)


class FastDecisions:
    """See the module docstring. ``respond`` sends an answer as the routes do; ``check``
    is the route's enumeration check; ``route`` the route object (for the metrics' label);
    ``stats["answered"]`` counts the decisions answered here."""

    def __init__(self, app: ASGIApp, *, gate: Gate, registry: BotRegistry,
                 respond: Callable[[Answer, Send], Awaitable[None]],
                 check: Callable[[Gate, Any], None],
                 route: Callable[[], Any], stats: dict[str, int],
                 stand_aside: Callable[[], bool] = lambda: False) -> None:
        self.app = app
        self.gate = gate
        self.registry = registry
        self.respond = respond
        self.check = check
        self.route = route
        self.stats = stats  # {"answered": decisions answered here}
        self.stand_aside = stand_aside  # True: FastAPI answers everything (tracing is on)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path") != PATH or PARSED not in scope or FRONT in scope
                or self.stand_aside()):
            await self.app(scope, receive, send)
            return
        taken = self._take(scope)
        if taken is None:
            await self.app(scope, receive, send)
            return
        bot, data, key = taken
        scope["route"] = self.route()
        try:
            answer = await self.gate.decide_async(bot, data, key)
        except (Problem, SizeguardError, ValueError, ArithmeticError) as exc:
            problem = problem_for(exc, self.gate.settings.retry_after)
            if problem.status >= 500 and not isinstance(exc, Problem):
                log.warning("POST %s: %s: %s", PATH, type(exc).__name__, exc)
            answer = (problem.status, problem.body(), problem.headers)
        self.stats["answered"] += 1
        await self.respond(answer, send)

    def _take(self, scope: Scope) -> tuple[Any, dict[str, Any], str | None] | None:
        """The bot, the validated body and the key, or None: FastAPI answers this one."""
        token: str | None = None
        key: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                if token is not None or not value.startswith(b"Bearer "):
                    return None
                token = value[7:].decode("latin-1").strip()
            elif name == b"idempotency-key":
                if key is not None:
                    return None
                key = value.decode("latin-1")
                if len(key) > MAX_KEY:
                    return None
        if not token:
            return None
        known, bot = self.registry.cached(token)
        if not known or bot is None or bot.is_admin \
                or bot.account_id != self.gate.settings.account:
            return None
        parsed = scope[PARSED]
        if not isinstance(parsed, dict):
            return None
        try:
            # its fields are plain values (no nested model), so the model's own dict is
            # what model_dump() copies out (a test holds them equal)
            data = DecisionRequest.model_validate(parsed).__dict__
            self.check(self.gate, data)
            if not self.gate.answers_on_the_loop(data):
                return None
        except (ValidationError, Problem, SizeguardError, ValueError):
            return None  # the route refuses it, naming the field
        return bot, data, key
