"""Crash safety: a process journaling decisions is killed with SIGKILL at random points; every
decision it reported committed is in the journal afterwards, and the store opens cleanly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import storefix
from sizeguard.adapters.sql_store import open_store

store_url = storefix.store_url
CHILD = Path(__file__).with_name("crash_child.py")


def _run_and_kill(url: str, rng: random.Random, extra: dict[str, str] | None = None
                  ) -> list[int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(CHILD.parent), os.environ.get("PYTHONPATH", "")) if p), **(extra or {})}
    proc = subprocess.Popen([sys.executable, str(CHILD), url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the child is up and has committed once
    assert first.startswith("committed"), proc.stderr.read() if proc.stderr else first
    time.sleep(rng.uniform(0.05, 0.6))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lines = [first, *out.splitlines()]
    # a line cut by the kill was never fully reported: only whole lines count
    return [int(line.split()[1]) for line in lines
            if line.strip().startswith("committed") and line.strip().split()[-1].isdigit()]


@pytest.mark.timeout(150)
def test_sigkill_loses_no_reported_decision(store_url: str) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    reported: list[int] = []
    for _ in range(4):
        reported += _run_and_kill(store_url, rng)
        store = open_store(store_url)  # opens cleanly after the crash
        try:
            assert store.integrity_check() == "ok"
            ids = {e.id for e in store.journal("acc", kind="decision")}
            missing = [i for i in reported if i not in ids]
            assert not missing, f"reported committed but not in the journal: {missing[:10]}"
            # nothing half-done: every reservation points at its journaled decision
            for res in store.reservations("acc", live_only=False):
                assert res.journal_id in ids
            for pos in store.positions("acc", open_only=False):
                assert pos.status in ("open", "closed")
        finally:
            store.close()
    assert len(reported) > 4


@pytest.mark.timeout(150)
def test_sigkill_loses_nothing_with_synchronous_normal(tmp_path: Path) -> None:
    """``SIZEGUARD_SQLITE_SYNCHRONOUS=normal`` (WAL, no fsync per commit) is still durable
    across a killed process: what the process reported committed is in the journal."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    reported: list[int] = []
    for _ in range(3):
        reported += _run_and_kill(url, rng, {"SIZEGUARD_SQLITE_SYNCHRONOUS": "normal"})
    store = open_store(url)
    try:
        assert store.integrity_check() == "ok"
        ids = {e.id for e in store.journal("acc", kind="decision")}
        assert reported and set(reported) <= ids
    finally:
        store.close()


def test_the_sqlite_synchronous_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FULL unless the environment says NORMAL; anything else is refused, naming the variable."""
    from sizeguard.errors import InvalidInput

    def level(url: str) -> int:
        store = open_store(url)
        try:
            with store.tx(write=False) as tx:
                row = tx.one("PRAGMA synchronous")
            assert row is not None
            return int(row[0])
        finally:
            store.close()

    monkeypatch.delenv("SIZEGUARD_SQLITE_SYNCHRONOUS", raising=False)
    assert level(f"sqlite:///{tmp_path / 'a.db'}") == 2  # FULL
    monkeypatch.setenv("SIZEGUARD_SQLITE_SYNCHRONOUS", "normal")
    assert level(f"sqlite:///{tmp_path / 'b.db'}") == 1  # NORMAL
    monkeypatch.setenv("SIZEGUARD_SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(InvalidInput, match="SIZEGUARD_SQLITE_SYNCHRONOUS"):
        open_store(f"sqlite:///{tmp_path / 'c.db'}")
