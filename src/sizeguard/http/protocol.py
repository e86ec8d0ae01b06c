"""uvicorn's HTTP protocol with a header timeout.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but waits for ever for the
headers of a request: a client that connects and sends nothing, or sends its headers a byte at a
time, holds a connection (and a file descriptor) as long as it likes. Here a request's headers
must be complete within ``SIZEGUARD_HEADER_TIMEOUT`` seconds (default 10) of the connection
opening or of the request's first byte, and hold at most 64 KiB; the body has its own limits
in the guard middleware.
``sizeguard serve`` passes this class to uvicorn as its ``http`` protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from sizeguard.http.settings import ServeSettings


def header_timeout() -> float:
    try:
        value = float(os.environ.get("SIZEGUARD_HEADER_TIMEOUT", "10"))
    except ValueError:
        return 10.0
    return value if value > 0 else 10.0


MAX_HEADER_BYTES = 65_536  # request line and headers; more is 431


def _problem(status: int, reason: bytes, title: str, detail: str, field: str) -> bytes:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail,
                       "errors": [{"field": field, "reason": detail}], "field": field},
                      separators=(",", ":")).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncontent-length: %d"
            b"\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol closing a connection whose request headers do not arrive in time or
    pass :data:`MAX_HEADER_BYTES` (431), and answering a request it cannot parse with a
    problem+json 400 (uvicorn's is plain text).

    The headers' deadline is a number set when a request (or the connection) begins and
    cleared when its headers are complete; one timer per connection looks at it when it is
    due and sets itself again for a later deadline, so a request costs no timer of its own
    (a keep-alive connection answering requests back to back sets one every
    ``SIZEGUARD_HEADER_TIMEOUT`` seconds at most)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_deadline: float | None = None  # reading headers until then
        self._header_timeout = header_timeout()
        self._header_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        # still reading headers after this much: refuse (the parser would buffer them all)
        if self._header_deadline is not None and self._header_bytes > MAX_HEADER_BYTES \
                and not self.transport.is_closing():
            self._disarm()
            self.transport.write(_problem(
                431, b"Request Header Fields Too Large", "request headers too large",
                f"the request line and headers pass {MAX_HEADER_BYTES} bytes", "headers"))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(_problem(400, b"Bad Request", "malformed request",
                                      "not an HTTP/1.1 request this server can parse", "request"))
        self.transport.close()

    def _arm(self) -> None:
        deadline = self.loop.time() + self._header_timeout
        self._header_deadline = deadline
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(deadline, self._headers_due)

    def _disarm(self) -> None:
        self._header_deadline = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_due(self) -> None:
        self._header_timer = None
        deadline = self._header_deadline
        if deadline is None:  # between requests: the keep-alive timeout watches the connection
            return
        if self.loop.time() < deadline:  # a later request's headers: look again then
            self._header_timer = self.loop.call_at(deadline, self._headers_due)
        elif not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._header_deadline = None  # the timer, when due, finds nothing to do
        self._header_bytes = 0
        super().on_headers_complete()


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn's connection bounds from the settings (the header timeout reaches the worker
    processes through the environment)."""
    os.environ["SIZEGUARD_HEADER_TIMEOUT"] = repr(settings.header_timeout)
    return {"http": f"{__name__}:GuardedHttpToolsProtocol",
            "timeout_keep_alive": settings.keep_alive}
