"""Notifiers: alerts to people through Apprise URLs (Telegram, Discord, Slack, ntfy, e-mail,
plain JSON webhooks, ...), deduplicated and rate-limited.

:class:`AppriseNotifier` delivers on a background thread, so a slow or dead chat service never
holds up a decision. :class:`Throttled` sits in front of any notifier: the same alert key again
within the dedup window is dropped, and at most ``per_minute`` alerts leave in any 60 seconds
(the next one sent says how many were held back). Apprise URLs carry secrets (bot tokens,
webhook ids): they are never logged, only their scheme.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from sizeguard.errors import InvalidInput
from sizeguard.ports import Alert, Notifier

log = logging.getLogger("sizeguard.notify")

LEVELS = ("info", "success", "warning", "failure")


def split_urls(text: str | None) -> list[str]:
    """Apprise URLs from a setting: separated by whitespace or commas."""
    return [u for u in (text or "").replace(",", " ").split() if u]


def scheme(url: str) -> str:
    """What may be logged of an Apprise URL: its scheme (the rest may hold a secret)."""
    return url.split("://", 1)[0] if "://" in url else "?"


class AppriseNotifier:
    """Sends each alert to every configured Apprise URL from one background thread."""

    def __init__(self, urls: Sequence[str], *, timeout: float = 5.0, queue_size: int = 256
                 ) -> None:
        import apprise  # noqa: PLC0415 - loads only when notifications are configured

        self._apprise = apprise.Apprise()
        for i, url in enumerate(urls):
            if not self._apprise.add(url):
                # never echo the URL: it usually holds a token
                raise InvalidInput("notify", f"URL {i + 1} ({scheme(url)}://...)",
                                   "not a valid Apprise URL (e.g. tgram://BOT/CHAT, "
                                   "json://host:port/path, ntfy://topic)")
        self._timeout = timeout
        self._queue: queue.Queue[Alert | None] = queue.Queue(queue_size)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="sizeguard-notify", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._apprise)

    def notify(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            log.warning("alert queue full: dropped %s alert %r", alert.kind, alert.title)

    def _run(self) -> None:
        import apprise  # noqa: PLC0415

        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                level = alert.level if alert.level in LEVELS else "warning"
                ok = self._apprise.notify(body=alert.body, title=alert.title,
                                          notify_type=apprise.NotifyType(level))
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                    log.warning("alert %r not delivered to every notification URL", alert.title)
            except Exception as exc:  # a notifier never takes the service down
                self.failed += 1
                log.warning("alert %r failed: %s", getattr(alert, "title", ""),
                            type(exc).__name__)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alert was attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(self._timeout)


class Throttled:
    """Deduplicates and rate-limits alerts in front of ``inner``."""

    def __init__(self, inner: Notifier, *, dedup: float = 600.0, per_minute: int = 20,
                 clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.dedup = dedup
        self.per_minute = per_minute
        self.clock = clock
        self.deduplicated = 0
        self.held_back = 0
        self._unreported = 0  # held back since the last alert that went out
        self._seen: dict[str, float] = {}
        self._sent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def notify(self, alert: Alert) -> None:
        now = self.clock()
        with self._lock:
            last = self._seen.get(alert.key)
            if last is not None and now - last < self.dedup:
                self.deduplicated += 1
                return
            while self._sent and now - self._sent[0] >= 60.0:
                self._sent.popleft()
            if len(self._sent) >= self.per_minute:
                self.held_back += 1
                self._unreported += 1
                return  # not marked seen: the condition may alert again once there is room
            self._sent.append(now)
            self._seen[alert.key] = now
            if len(self._seen) > 4096:  # forget keys older than the window
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.dedup}
            held, self._unreported = self._unreported, 0
        if held:
            alert = Alert(alert.kind, alert.title,
                          f"{alert.body}\n({held} more alert(s) held back by the rate limit of "
                          f"{self.per_minute} a minute)", alert.key, alert.level, alert.at)
        self.inner.notify(alert)
