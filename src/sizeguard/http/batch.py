"""Group commit: concurrent requests of one process share one store transaction.

A decide + reserve is one locked, durable transaction; its commit waits for the disk (an
fsync), and the account lock makes the next decision wait for that commit. Alone, that bounds
a whole account at one decision per fsync. Here the first request to arrive becomes the
*leader*: it takes every request waiting at that moment (up to ``max_batch``) and runs them,
in arrival order, in one transaction (:meth:`BotRegistry.decide_and_reserve_many`), so each
sees the reservations of those before it, and one commit makes all of them durable. Requests
arriving meanwhile wait for the next batch, led by the first of them. Alone, a request is a
batch of one: no waiting, no timer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 64) -> None:
        self._run = run
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[T, R]] = []
        self._leading = False
        self.batches = 0
        self.items = 0

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.done.wait()
            if slot.lead:  # handed the lead: run the next batch (this slot is in it)
                slot.done.clear()
                slot.lead = False
                self._lead()
        else:
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
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
            else:
                nxt.lead = True
        for s in batch:
            s.done.set()
        if nxt is not None:
            nxt.done.set()
