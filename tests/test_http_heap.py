"""The serving process's garbage collector (:func:`sizeguard.http.app.settle_heap`): what the
start made is frozen out of a full collection's reach, and the young generation is collected
less often; an application embedded in another program (``create_app`` without
``freeze_heap``) leaves that program's collector as it was. The served process's own figures
are checked on the real server in tests/test_http_e2e.py (``/metrics``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sizeguard.http.app import GC_YOUNG, create_app, settle_heap
from sizeguard.http.settings import ServeSettings


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _settings(tmp_path: Path) -> ServeSettings:
    return ServeSettings(store=f"sqlite:///{tmp_path / 'state.db'}", prune_interval=0)


def test_an_embedded_app_leaves_the_collector_alone(tmp_path: Path, collector: None) -> None:
    threshold = gc.get_threshold()
    with TestClient(create_app(_settings(tmp_path))) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == threshold
        assert "sizeguard_gc_frozen_objects 0" in client.get("/metrics").text


def test_a_serving_app_freezes_what_its_start_made(tmp_path: Path, collector: None) -> None:
    with TestClient(create_app(_settings(tmp_path), freeze_heap=True)) as client:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, the app, its routes and models
        assert gc.get_threshold()[0] == GC_YOUNG
        assert client.get("/healthz").status_code == 200
        made = object(), [1], {"a": []}  # made after the start: still the collector's
        assert gc.is_tracked(made) and any(o is made for o in gc.get_objects())
        # nothing is frozen after the start (a frozen object freed by its last reference
        # leaves the count)
        assert gc.get_freeze_count() <= frozen
        text = client.get("/metrics").text
        line = next(ln for ln in text.splitlines() if ln.startswith("sizeguard_gc_frozen_objects "))
        assert 10_000 < float(line.split()[1]) <= frozen


def test_settle_heap_collects_before_it_freezes(collector: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()  # garbage in a cycle: only the collector frees it
    gc.disable()
    try:
        before = gc.get_stats()[2]["collected"]
        settle_heap()
        assert gc.get_stats()[2]["collected"] > before  # collected, not frozen for ever
        assert not any(type(o) is Cycle for o in gc.get_objects())
    finally:
        gc.enable()
