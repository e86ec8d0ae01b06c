"""The request guard: what every request passes before a route sees it.

An ASGI middleware that

* refuses a control character (NUL included) in the path or a query value (400/422, naming it),
  so no such byte reaches the store (where it was reported as an outage);
* reads the body itself, refusing it with 413 as soon as it is larger than ``max_body`` bytes,
  from the ``Content-Length`` header before reading anything, else while reading (a chunked body,
  or a header that lies), and with 408 when it does not arrive within ``body_timeout`` seconds
  (a ``Content-Length`` longer than the body held a connection until the client gave up);
* parses a JSON body strictly (:mod:`sizeguard.http.strict`), answering 400/422 naming the field;
  the parsed value is handed to FastAPI (:class:`GuardedRoute`), so the body is parsed once.

Every refusal is problem+json; a 408 closes the connection.
"""

from __future__ import annotations

import asyncio
import email.message
import functools
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from fastapi import Request, Response
from fastapi.routing import APIRoute

from sizeguard.http.metrics import FRONT
from sizeguard.http.problems import PROBLEM, Problem, dumps
from sizeguard.http.strict import BodyError, check_text, loads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PARSED = "sizeguard.json"  # the scope key holding the strictly parsed body
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_THREAD_PARSE = 256 * 1024  # parse larger bodies off the event loop


@functools.lru_cache(maxsize=256)
def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # FastAPI reads a body without a content type as JSON too
    if content_type.lower() == "application/json":  # nearly every request: no parse
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    sub = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (sub == "json"
                                                                 or sub.endswith("+json"))


class _Deadlines:
    """The time limits of the bodies being read on one event loop, watched by one timer.

    ``asyncio.timeout`` sets and cancels a timer per request (~5 us each on uvloop); here a
    request only enters its task and deadline in a dict. The timer runs at the earliest
    deadline it knows of and cancels every task whose deadline has passed (it can only be
    waiting for its body then), or sets itself again for the next one; with nothing being
    read it is not set. The task, cancelled, asks :meth:`expired` whether the cancellation
    was its time limit, as ``asyncio.timeout`` does (another cancellation stays one)."""

    __slots__ = ("cancelled", "loop", "reading", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reading: dict[asyncio.Task[Any], tuple[float, int]] = {}  # deadline, cancelling
        self.timer: asyncio.TimerHandle | None = None
        self.cancelled: set[asyncio.Task[Any]] = set()  # cancelled here, not yet told

    def add(self, task: asyncio.Task[Any], timeout: float) -> None:
        deadline = self.loop.time() + timeout
        self.reading[task] = (deadline, task.cancelling())
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._due)

    def remove(self, task: asyncio.Task[Any]) -> None:
        self.reading.pop(task, None)
        if self.cancelled:
            self.cancelled.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """True when this cancellation of ``task`` is its deadline's alone (then undone)."""
        if task not in self.cancelled:
            return False
        self.cancelled.discard(task)
        return task.uncancel() <= self.reading[task][1]

    def _due(self) -> None:
        self.timer = None
        now = self.loop.time()
        later: float | None = None
        for task, (deadline, _) in self.reading.items():
            if deadline <= now:
                if task not in self.cancelled:
                    self.cancelled.add(task)
                    task.cancel()
            elif later is None or deadline < later:
                later = deadline
        if later is not None:
            self.timer = self.loop.call_at(later, self._due)


class BodyGuard:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, max_body: int, body_timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self._watch: _Deadlines | None = None  # the bodies being read (this loop's)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or FRONT in scope:
            await self.app(scope, receive, send)
            return
        try:
            self._check_target(scope)
            if scope.get("method") not in _WITH_BODY:
                body = None
            else:
                length, content_type = self._headers(scope)
                body = await self._read(receive, length)
                if body is None:  # the client went away
                    return
                if body and _is_json(content_type):
                    scope[PARSED] = await self._parse(body)
        except Problem as p:
            # close when the rest of the request cannot be told from the next one
            await _answer(send, p, close=p.status == 408 or any(
                e.get("field") == "Content-Length" for e in p.errors))
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _headers(self, scope: Scope) -> tuple[int | None, str | None]:
        length: int | None = None
        content_type: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                text = value.decode("latin-1").strip()
                if not text.isdigit() or len(text) > 18:
                    raise Problem(400, "malformed request", "Content-Length is not a byte count",
                                  errors=[{"field": "Content-Length", "in": "header",
                                           "reason": "must be a non-negative integer"}])
                length = int(text)
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        # 413 keeps the connection: uvicorn reads and drops the rest of the body (closing at
        # once would reset a connection whose client is still sending, and lose the answer)
        if length is not None and length > self.max_body:
            raise self._too_large(length)
        return length, content_type

    async def _read(self, receive: Receive, length: int | None) -> bytes | None:
        body = bytearray()
        task = asyncio.current_task()
        assert task is not None
        watch = self._watch
        if watch is None or watch.loop is not task.get_loop():
            watch = self._watch = _Deadlines(task.get_loop())
        watch.add(task, self.body_timeout)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                if len(body) > self.max_body:
                    raise self._too_large(None)
                if not message.get("more_body", False):
                    return bytes(body)
        except asyncio.CancelledError:
            if not watch.expired(task):
                raise
            raise Problem(
                408, "request timeout", f"the body did not arrive within {self.body_timeout:g} s"
                + (f" ({len(body)} of {length} bytes)" if length is not None else ""),
                errors=[{"field": "body", "reason": "incomplete"}]) from None
        finally:
            watch.remove(task)

    @staticmethod
    async def _parse(body: bytes) -> Any:
        try:
            if len(body) > _THREAD_PARSE:
                return await anyio.to_thread.run_sync(loads, body)
            return loads(body)
        except BodyError as exc:
            title = "malformed request body" if exc.status == 400 else "invalid request"
            item: dict[str, Any] = {"field": exc.field, "in": "body", "reason": exc.reason}
            if exc.value is not None:
                item["value"] = exc.value
            raise Problem(exc.status, title, str(exc), errors=[item]) from None

    def _too_large(self, length: int | None) -> Problem:
        said = f"{length:,} bytes" if length is not None else "more"
        return Problem(413, "request body too large",
                       f"the body is {said}; at most {self.max_body:,} bytes are accepted",
                       errors=[{"field": "body", "reason": f"larger than {self.max_body} bytes"}])

    @staticmethod
    def _check_target(scope: Scope) -> None:
        try:
            check_text(scope.get("path", ""), "path")
        except BodyError as exc:
            raise Problem(400, "malformed request", str(exc),
                          errors=[{"field": "path", "in": "path", "reason": exc.reason}]) from None
        query = scope.get("query_string", b"")
        if query:
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                try:
                    check_text(name, "query")
                    check_text(value, name or "query")
                except BodyError as exc:
                    raise Problem(422, "invalid request", str(exc),
                                  errors=[{"field": exc.field, "in": "query",
                                           "reason": exc.reason, "value": exc.value}]) from None


async def _answer(send: Send, p: Problem, *, close: bool) -> None:
    body = dumps(p.body())
    headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in p.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": p.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Parsed(Request):
    async def json(self) -> Any:
        if PARSED in self.scope:
            return self.scope[PARSED]
        return await super().json()


class GuardedRoute(APIRoute):
    """A route that takes the body :class:`BodyGuard` parsed instead of parsing it again."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            return await handler(_Parsed(request.scope, request.receive))

        return guarded
