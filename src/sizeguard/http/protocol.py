"""uvicorn's HTTP protocol with a header timeout.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but waits for ever for the
headers of a request: a client that connects and sends nothing, or sends its headers a byte at a
time, holds a connection (and a file descriptor) as long as it likes. Here a request's headers
must be complete within ``SIZEGUARD_HEADER_TIMEOUT`` seconds (default 10) of the connection
opening or of the request's first byte; the body has its own limit in the guard middleware.
``sizeguard serve`` passes this class to uvicorn as its ``http`` protocol.
"""

from __future__ import annotations

import asyncio
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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol closing a connection whose request headers do not arrive in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_timeout = header_timeout()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
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
        self._disarm()
        super().on_headers_complete()


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn's connection bounds from the settings (the header timeout reaches the worker
    processes through the environment)."""
    os.environ["SIZEGUARD_HEADER_TIMEOUT"] = repr(settings.header_timeout)
    return {"http": f"{__name__}:GuardedHttpToolsProtocol",
            "timeout_keep_alive": settings.keep_alive}
