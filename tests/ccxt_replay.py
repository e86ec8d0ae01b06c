"""Replays recorded HTTP responses into a real ccxt exchange object (offline tests).

The exchange's ``fetch`` (ccxt's one HTTP entry point) is replaced: each request is matched by
method, path and the ``when`` parameters of a route in a fixture file, and answered with the
route's body through ccxt's own error handling (``handle_errors`` and the HTTP status check),
so ccxt maps the exchange's error codes exactly as it does live. A route may instead ``raise`` a
ccxt exception by name (e.g. RequestTimeout), and ``after`` makes it answer only once an
earlier request matched (a stop that has filled). Unmatched requests fail the test loudly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"


class Replay:
    def __init__(self, name: str) -> None:
        self.doc = json.loads((FIXTURES / f"{name}.json").read_text())
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def install(self, exchange: Any) -> Any:
        self.x = exchange
        exchange.fetch = self.fetch
        exchange.enableRateLimit = False  # nothing goes out: no need to pace requests
        if "markets" in self.doc:
            exchange.set_markets(self.doc["markets"])
        return exchange

    @staticmethod
    def _params(url: str, body: Any) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(urlsplit(url).query))
        if isinstance(body, str) and body:
            if body.lstrip().startswith("{"):
                params.update(json.loads(body))
            else:
                params.update(parse_qsl(body))
        return params

    def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        path = urlsplit(url).path
        params = self._params(url, body)
        self.requests.append((method, path, params))
        for route in self.doc["routes"]:
            if route["method"] != method or route["path"] != path:
                continue
            if not self._matches(route, params):
                continue
            after = route.get("after")
            if after is not None and not any(
                    m == after["method"] and pth == after["path"] and self._matches(after, p)
                    for m, pth, p in self.requests[:-1]):
                continue
            if "raise" in route:
                raise getattr(ccxt, route["raise"])(f"{self.x.id} {method} {url} (replayed)")
            status = int(route.get("status", 200))
            text = json.dumps(route["body"])
            parsed = json.loads(text)
            self.x.handle_errors(status, "replayed", url, method, {}, text, parsed, headers, body)
            self.x.handle_http_status_code(status, "replayed", url, method, text)
            return parsed
        raise AssertionError(f"no recorded response for {method} {path} {params}")

    @staticmethod
    def _matches(route: dict[str, Any], params: dict[str, Any]) -> bool:
        return all(str(params.get(k)) == str(v) for k, v in route.get("when", {}).items())

    def sent(self, path: str) -> list[dict[str, Any]]:
        return [p for _m, pth, p in self.requests if pth == path]
