"""Group commit: concurrent requests of one process share one store transaction.

A decide + reserve is one locked, durable transaction; its commit waits for the disk (an
fsync), and the account lock makes the next decision wait for that commit. Alone, that bounds
a whole account at one decision per fsync. Here one thread at a time *leads*: it takes every
request waiting at that moment (up to ``max_batch``) and runs them, in arrival order, in one
transaction (:func:`sizeguard.app.services.decide_and_reserve`), so each sees the reservations
of those before it, and one commit makes all of them durable. Requests arriving meanwhile wait
for the next batch. Alone, a request is a batch of one: no waiting, no timer. While requests
keep coming, the committer (below) waits ``delay`` (``SIZEGUARD_BATCH_DELAY``, 0.5 ms) before
a batch of fewer than :data:`GATHER`, so that a commit's own cost (the transaction, the account,
the fsync: ~0.35 ms of CPU on SQLite) is paid for more than one or two decisions.

Two ways in:

* :meth:`GroupCommit.submit` from a thread (the thread pool): the first request to arrive
  leads and runs the batch itself; a waiting thread handed the lead runs the next one.
* ``await`` :meth:`GroupCommit.submit_async` from the event loop: no thread per request. The
  request waits on a future; the group's own committer thread leads the batches of such
  requests and answers each batch with one wake-up of the loop
  (``loop.call_soon_threadsafe``), so a decision costs no thread hand-off of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
GATHER = 4  # the committer waits for more (``delay``) only before a batch smaller than this
BUSY = 0.005  # ... and only when its last batch ended less than this many seconds ago
_monotonic = time.monotonic
_sleep = time.sleep
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "future", "item", "lead", "loop", "result")

    def __init__(self, item: T, loop: asyncio.AbstractEventLoop | None = None,
                 future: asyncio.Future[Any] | None = None) -> None:
        self.item = item
        self.loop = loop  # None: a thread waits on ``done``
        self.future = future
        self.done: threading.Event | None = threading.Event() if loop is None else None
        self.lead = False
        self.result: R | None = None
        self.error: BaseException | None = None


def _settle(slots: list[_Slot[Any, Any]]) -> None:
    """On the event loop: answer the futures of one batch (a cancelled one is skipped)."""
    for s in slots:
        f = s.future
        if f is None or f.done():
            continue
        if s.error is not None:
            f.set_exception(s.error)
        else:
            f.set_result(s.result)


class GroupCommit(Generic[T, R]):
    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 64,
                 delay: float = 0.0) -> None:
        self._run = run
        self._max = max_batch
        self._delay = delay  # see _gather
        self._last = -1.0  # when the committer's last batch ended (monotonic)
        self._lock = threading.Lock()
        self._queue: list[_Slot[T, R]] = []
        self._leading = False
        self._wake = threading.Condition(self._lock)
        self._committer: threading.Thread | None = None
        self._committer_due = False  # the committer is to lead the next batch
        self.batches = 0
        self.items = 0

    # -- from a thread ------------------------------------------------------------------
    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        assert slot.done is not None
        with self._lock:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.done.wait()
            if slot.lead:  # handed the lead: run the next batch (this slot is in it)
                slot.done.clear()
                slot.lead = False
                self._lead(committer=False)
        else:
            self._lead(committer=False)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    # -- from the event loop ------------------------------------------------------------
    async def submit_async(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        slot: _Slot[T, R] = _Slot(item, loop, future)
        with self._lock:
            self._queue.append(slot)
            if not self._leading:
                self._leading = True
                self._hand_to_committer()
        return await future

    def _hand_to_committer(self) -> None:
        """(lock held) The committer thread leads next (started on first use)."""
        self._committer_due = True
        if self._committer is None or not self._committer.is_alive():
            self._committer = threading.Thread(target=self._commit_loop, name="group-commit",
                                               daemon=True)
            self._committer.start()
        else:
            self._wake.notify()

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                while not self._committer_due:
                    if not self._wake.wait(60.0) and not self._committer_due:
                        self._committer = None  # idle a minute: the next request starts one
                        return
                self._committer_due = False
            self._lead(committer=True)

    # -- leading ------------------------------------------------------------------------
    def _lead(self, *, committer: bool) -> None:
        """Run batches while the requests waiting next are the committer's to lead (event-loop
        requests, when this is the committer); then hand the lead on, or release it."""
        while True:
            if committer and self._delay > 0:
                self._gather()
            with self._lock:
                batch, self._queue = self._queue[:self._max], self._queue[self._max:]
            try:
                results = self._run([s.item for s in batch])
                if len(results) != len(batch):
                    raise RuntimeError("a batch answered a different number of items")
                for s, r in zip(batch, results, strict=True):
                    s.result = r
            except BaseException as exc:  # the whole batch failed: every request learns why
                for s in batch:
                    s.error = exc
            with self._lock:
                self.batches += 1
                self.items += len(batch)
                nxt = self._queue[0] if self._queue else None
                if nxt is None:
                    self._leading = False
                elif nxt.loop is None:
                    nxt.lead = True  # a waiting thread leads its own batch
                elif not committer:
                    self._hand_to_committer()
            if committer:
                self._last = _monotonic()
            self._answer(batch)
            if nxt is None:
                return
            if nxt.loop is None:
                assert nxt.done is not None
                nxt.done.set()
                return
            if not committer:
                return

    def _gather(self) -> None:
        """(the committer, before a batch) While decisions keep coming (the last batch ended
        less than ``BUSY`` ago) and fewer than ``GATHER`` wait, wait ``delay`` for more: a
        commit's own cost (the transaction, the account, the fsync) is paid once for them. A
        decision after a quiet moment does not wait."""
        with self._lock:
            waiting = len(self._queue)
        if waiting < GATHER and _monotonic() - self._last < BUSY:
            _sleep(self._delay)

    @staticmethod
    def _answer(batch: list[_Slot[T, R]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Slot[Any, Any]]] = {}
        for s in batch:
            if s.loop is None:
                assert s.done is not None
                s.done.set()
            else:
                by_loop.setdefault(s.loop, []).append(s)
        for loop, slots in by_loop.items():
            # a loop closed meanwhile: nobody waits for these
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, slots)
