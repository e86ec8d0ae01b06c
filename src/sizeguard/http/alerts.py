"""What the service tells its operators about: halts, liquidation-guard refusals, exchange
rejections, store outages and recoveries, bots whose budget is used up.

:class:`Alerter` reads the answers the gate gives (it wraps the gate's ``decide``, ``order``
and ``health`` where the application is assembled, so the gate itself stays unaware of it) and
sends :class:`~sizeguard.ports.Alert` s through a :class:`~sizeguard.ports.Notifier`
(Apprise, deduplicated and rate-limited: :mod:`sizeguard.adapters.notify`). The last alerts are
also kept for the console.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sizeguard.errors import StoreError
from sizeguard.ports import Alert, Notifier

log = logging.getLogger("sizeguard.alerts")

HALTS = ("HALTED_BY_ADMIN", "HALTED_DAILY_LOSS", "HALTED_DRAWDOWN")
LIQUIDATION_GUARD = "STOP_BEYOND_LIQUIDATION"


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d")


class Alerter:
    """Turns gate answers into alerts (kept in :attr:`recent`, sent to ``notifier``)."""

    def __init__(self, notifier: Notifier | None, account: str, *,
                 clock: Callable[[], float] = time.time, keep: int = 200) -> None:
        self.notifier = notifier
        self.account = account
        self.clock = clock
        self.recent: collections.deque[Alert] = collections.deque(maxlen=keep)
        self.store_down_since: float | None = None
        self._lock = threading.Lock()

    def emit(self, kind: str, title: str, body: str, key: str, level: str = "warning") -> None:
        alert = Alert(kind, f"sizeguard {self.account}: {title}", body, key, level, self.clock())
        with self._lock:
            self.recent.append(alert)
        log.warning("alert %s: %s", kind, title)
        if self.notifier is not None:
            try:
                self.notifier.notify(alert)
            except Exception as exc:  # an alert never breaks an answer
                log.warning("notifier failed: %s", type(exc).__name__)

    # -- what the gate answered -----------------------------------------------------------
    def decision(self, bot: str, out: Mapping[str, Any]) -> None:
        """A decision answer (``/v1/decisions``, or the one inside an order)."""
        if out.get("status") != "skipped":
            return
        reasons = [str(r) for r in out.get("reasons") or ()]
        symbol = str(out.get("symbol") or "")
        halts = [r for r in reasons if r in HALTS]
        if halts:
            self.emit("halt", f"trading halted ({halts[0]})",
                      f"{bot}'s {out.get('side')} {symbol} was refused: {', '.join(halts)}. "
                      + _halt_note(out), f"halt:{halts[0]}:{_day(self.clock())}", "failure")
        elif LIQUIDATION_GUARD in reasons:
            self.emit("liquidation_guard", f"liquidation guard refused {symbol}",
                      f"{bot}'s {out.get('side')} {symbol} at {out.get('entry_price')}: the stop "
                      f"{out.get('stop_price')} lies beyond the liquidation price "
                      f"{out.get('liquidation_price')}.", f"liq:{bot}:{symbol}")
        elif out.get("bound_by") == "bot":
            last = reasons[-1] if reasons else "skipped"
            self.emit("budget_used", f"{bot}'s budget is used up ({last})",
                      f"{bot}'s {out.get('side')} {symbol} was refused by its own budget: "
                      f"{', '.join(reasons)}.", f"budget:{bot}:{last}")

    def order(self, bot: str, out: Mapping[str, Any]) -> None:
        """An order answer (``/v1/orders``)."""
        decision = out.get("decision") or {}
        if out.get("status") == "rejected":
            symbol = decision.get("symbol", "")
            error = str(out.get("error") or "rejected")
            self.emit("exchange_reject", f"exchange rejected {symbol}",
                      f"{bot}'s order {out.get('client_order_id')} on {symbol} was rejected: "
                      f"{error}", f"reject:{symbol}:{error[:80]}", "failure")
        elif isinstance(decision, Mapping):
            self.decision(bot, {**decision, "bound_by": out.get("bound_by")})

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, StoreError) and self.store_down_since is None:
            self.store_down_since = self.clock()
            self.emit("store_down", "state store unavailable",
                      "the state store does not answer: every decision is refused with 503 "
                      "until it is back.", f"store_down:{self.store_down_since}", "failure")

    def answered(self) -> None:
        since = self.store_down_since
        if since is not None:
            self.store_down_since = None
            self.emit("store_up", "state store back",
                      f"the state store answers again after {self.clock() - since:.0f} s.",
                      f"store_up:{since}", "success")

    # -- a store outage with no traffic --------------------------------------------------
    def watch_store(self, probe: Callable[[], Any], every: float) -> threading.Event:
        """Ask the store every ``every`` seconds (``probe``: the gate's health, which this
        alerter observes), so an outage alerts even when no bot is asking. A daemon thread;
        set the returned event to stop it."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every):
                with contextlib.suppress(Exception):  # the wrapper saw it: failed() alerted
                    probe()
        threading.Thread(target=run, name="sizeguard-store-watch", daemon=True).start()
        return stop

    # -- wiring -----------------------------------------------------------------------------
    def _observed(self, on_answer: Callable[..., None] | None, args: tuple[Any, ...],
                  answer: Any) -> Any:
        """After a gate call answered (sync or async alike): the store is back, and the answer
        is checked for alerts; a failing check never breaks the answer."""
        self.answered()
        if on_answer is not None:
            try:
                on_answer(args[0].name, answer[1])
            except Exception as exc:
                log.warning("alert check failed: %s", type(exc).__name__)
        return answer

    def install(self, gate: Any) -> None:
        """Observe ``gate``'s decide (in a thread or on the event loop), order and health
        answers (instance attributes, so the routes, which look them up at call time, go
        through here)."""

        def watch(fn: Callable[..., Any], on_answer: Callable[..., None] | None) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                try:
                    answer = fn(*args, **kwargs)
                except Exception as exc:
                    self.failed(exc)
                    raise
                return self._observed(on_answer, args, answer)
            return wrapped

        def watch_async(fn: Callable[..., Awaitable[Any]], on_answer: Callable[..., None]
                        ) -> Callable[..., Awaitable[Any]]:
            @functools.wraps(fn)
            async def wrapped(*args: Any, **kwargs: Any) -> Any:
                try:
                    answer = await fn(*args, **kwargs)
                except Exception as exc:
                    self.failed(exc)
                    raise
                return self._observed(on_answer, args, answer)
            return wrapped

        gate.decide = watch(gate.decide, self.decision)
        gate.decide_async = watch_async(gate.decide_async, self.decision)
        gate.order = watch(gate.order, self.order)
        gate.health = watch(gate.health, None)


def _halt_note(out: Mapping[str, Any]) -> str:
    for step in out.get("trace") or ():
        if isinstance(step, Mapping) and step.get("note") and step.get("step") == "gates":
            return str(step["note"])
    return ""
