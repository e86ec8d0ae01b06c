"""Ids' random bits come from a per-thread pool of os.urandom bytes (no system call, and no
hand-over of the GIL, per id): every byte is used once, threads do not share bytes, and a forked
child does not repeat its parent's."""

from __future__ import annotations

import os
import re
import sys
import threading

import pytest

from sizeguard import ids
from sizeguard.adapters.sql_store import _new_id
from sizeguard.app.services import new_client_order_id


def test_ids_keep_their_form_and_never_repeat() -> None:
    cids = [new_client_order_id() for _ in range(3 * ids.POOL)]  # several pools' worth
    assert all(re.fullmatch(r"sg[0-9a-f]{22}", c) for c in cids)
    assert len(set(cids)) == len(cids)
    res = [_new_id("res") for _ in range(2 * ids.POOL)]
    assert all(re.fullmatch(r"res_[0-9a-f]{24}", r) for r in res)
    assert len(set(res)) == len(res)


def test_threads_draw_from_pools_of_their_own() -> None:
    out: dict[int, list[str]] = {}

    def draw(i: int) -> None:
        out[i] = [ids.random_hex(8) for _ in range(1000)]

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [h for hs in out.values() for h in hs]
    assert len(set(every)) == len(every) == 4000


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    ids.random_hex(8)  # the parent's pool is filled; its next bytes are known to it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, ids.random_hex(8).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert child != ids.random_hex(8)
