"""Random bits for ids (client order ids, the store's ids) without a system call per id.

``os.urandom`` releases the GIL around its ``getrandom`` call, so every id handed the
interpreter to another thread and back: in the HTTP service, the event loop and the group
commit's thread traded it twice per decision, each trade a pair of thread switches. Here the
bytes still come from ``os.urandom``, 4 KiB at a time per thread, and each byte is used once;
a forked child starts a pool of its own (it must not reuse its parent's bytes).
"""

from __future__ import annotations

import os
import threading

POOL = 4096  # bytes read from the system at a time (one call per ~500 ids)


class _Pool(threading.local):
    data = b""
    pos = 0


_pool = _Pool()


def random_hex(nbytes: int) -> str:
    """``nbytes`` random bytes (at most :data:`POOL`) as ``2 * nbytes`` hex digits."""
    pool = _pool
    start = pool.pos
    end = start + nbytes
    data = pool.data
    if end > len(data):
        data = pool.data = os.urandom(POOL)
        start, end = 0, nbytes
    pool.pos = end
    return data[start:end].hex()


def _forget() -> None:
    """(in a forked child: only the forking thread is left, and threads started later get
    empty pools of their own)"""
    _pool.data = b""
    _pool.pos = 0


os.register_at_fork(after_in_child=_forget)
