"""Prometheus text exposition, hand-written: request counts and latencies by route and status
(an ASGI middleware), plus the service's decision and order counters. Per process: with
several workers each reports its own (scrape them as separate targets or sum)."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.hist: dict[tuple[str, str], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            h = self.hist.get((method, route))
            if h is None:
                h = self.hist[(method, route)] = [0.0] * (len(BUCKETS) + 2)
            i = bisect.bisect_left(BUCKETS, seconds)
            if i < len(BUCKETS):
                h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def render(self, extra: dict[str, dict[str, int]],
               gauges: dict[str, tuple[str, dict[str, float]]] | None = None) -> str:
        """The exposition: request counters and histograms, the ``extra`` counters and the
        ``gauges`` (name -> (help, {labels: value}); a name ending ``_total`` is a counter)."""
        lines = ["# HELP sizeguard_http_requests_total HTTP requests answered.",
                 "# TYPE sizeguard_http_requests_total counter"]
        with self._lock:
            requests = dict(self.requests)
            hist = {k: list(v) for k, v in self.hist.items()}
        for (method, route, status), n in sorted(requests.items()):
            lines.append(f'sizeguard_http_requests_total{{method="{method}",route="{_esc(route)}",'
                         f'status="{status}"}} {n}')
        lines += ["# HELP sizeguard_http_request_duration_seconds Time to answer a request.",
                  "# TYPE sizeguard_http_request_duration_seconds histogram"]
        for (method, route), h in sorted(hist.items()):
            labels = f'method="{method}",route="{_esc(route)}"'
            cum = 0
            for le, count in zip(BUCKETS, h, strict=False):
                cum += int(count)
                lines.append(f'sizeguard_http_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                             f"{int(cum)}")
            lines.append(f'sizeguard_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} '
                         f"{int(h[-1])}")
            lines.append(f"sizeguard_http_request_duration_seconds_sum{{{labels}}} {h[-2]:.6f}")
            lines.append(f"sizeguard_http_request_duration_seconds_count{{{labels}}} {int(h[-1])}")
        for name, (help_text, table) in _extra(extra).items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for labels, n in sorted(table.items()):
                lines.append(f"{name}{{{labels}}} {n}" if labels else f"{name} {n}")
        for name, (help_text, values) in (gauges or {}).items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for labels, v in sorted(values.items()):
                lines.append(f"{name}{{{labels}}} {v:g}" if labels else f"{name} {v:g}")
        lines += ["# HELP sizeguard_process_start_time_seconds Start of this process.",
                  "# TYPE sizeguard_process_start_time_seconds gauge",
                  f"sizeguard_process_start_time_seconds {self.started:.3f}"]
        return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _extra(extra: dict[str, dict[str, int]]) -> dict[str, tuple[str, dict[str, int]]]:
    out: dict[str, tuple[str, dict[str, int]]] = {}
    dec = {f'status="{k.split(",")[0]}",reserve="{k.split(",")[1]}"': v
           for k, v in extra.get("decisions", {}).items()}
    out["sizeguard_decisions_total"] = ("Decisions answered, by status and reserve.", dec)
    orders = {f'status="{_esc(k)}"': v for k, v in extra.get("orders", {}).items()}
    out["sizeguard_orders_total"] = ("Orders submitted, by trade status.", orders)
    group = extra.get("group_commit", {})
    out["sizeguard_group_commit_batches_total"] = (
        "Store transactions that decided and reserved (each one commit).",
        {"": group.get("batches", 0)})
    out["sizeguard_group_commit_decisions_total"] = (
        "Decisions decided and reserved in those transactions.", {"": group.get("items", 0)})
    auth = {f'result="{_esc(k)}"': v for k, v in extra.get("auth", {}).items()}
    out["sizeguard_auth_failures_total"] = ("Requests refused for a missing or wrong token.", auth)
    return out


# set on a request the front (:class:`sizeguard.http.app.GateApp`) already counted, guarded and
# offered to the short way: the same middlewares inside Starlette's stack pass it on untouched
FRONT = "sizeguard.front"
LastResort = Callable[[Scope, BaseException, Send], Awaitable[None]]


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, with its duration.

    ``last_resort`` (the front's: outside Starlette's error middleware): answers an exception
    raised before the response started, as the application's last-resort handler does."""

    def __init__(self, app: ASGIApp, metrics: Metrics,
                 last_resort: LastResort | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.last_resort = last_resort

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or FRONT in scope:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500, 0]  # the status sent, whether the response started

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                status[1] = 1
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if self.last_resort is None or status[1]:
                raise
            status[0] = 500
            await self.last_resort(scope, exc, send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope.get("method", "?"), path, status[0],
                                 time.perf_counter() - start)
