"""Machine-readable bench output shared by the bench scripts (``--json``).

With ``--json`` a bench script prints its human-readable report on stderr and, on stdout, one
JSON object per case per line::

    {"bench": "backtest", "case": "1M bars, 2,617 entries", "value": 96.1, "unit": "ms",
     "baseline": "vectorbt from_signals", "baseline_value": 102.3, "ratio": 1.06, ...}

``ratio`` is sizeguard's speed over the alternative's (> 1: sizeguard is faster): for a time
the baseline's time over ours, for a rate ours over the baseline's. Optional keys: ``goal``
(a sentence), ``met`` (bool), ``cpu`` / ``wall`` and anything a case wants to add.
``bench/perf_table.py`` turns these lines into the README's performance table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

RATES = ("/s",)  # units where higher is better


def ratio(value: float, baseline_value: float, unit: str) -> float:
    """Sizeguard's speed over the baseline's (> 1 means sizeguard is faster)."""
    if unit.endswith(RATES):
        return value / baseline_value if baseline_value else math.inf
    return baseline_value / value if value else math.inf


def record(bench: str, case: str, value: float, unit: str, *, baseline: str | None = None,
           baseline_value: float | None = None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"bench": bench, "case": case, "value": value, "unit": unit}
    if baseline is not None and baseline_value is not None:
        row.update(baseline=baseline, baseline_value=baseline_value,
                   ratio=ratio(value, baseline_value, unit))
    row.update(extra)
    return row


def machine() -> dict[str, Any]:
    """Where the figures were taken (added to every line)."""
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "load": round(os.getloadavg()[0], 2)}


class Emitter:
    """Collects records and prints them as JSON lines on the real stdout."""

    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out, self.enabled = out, enabled
        self.where = machine()

    def __call__(self, bench: str, case: str, value: float, unit: str, **kw: Any) -> None:
        if not self.enabled:
            return
        row = record(bench, case, value, unit, **kw)
        row.update(self.where)
        row = {k: _plain(v) for k, v in row.items()}
        self.out.write(json.dumps(row, allow_nan=False) + "\n")
        self.out.flush()


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python numbers, inf/nan to null."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@contextmanager
def json_output(enabled: bool) -> Iterator[Emitter]:
    """With ``enabled``, send the human report to stderr and keep stdout for JSON lines."""
    real = sys.stdout
    if enabled:
        sys.stdout = sys.stderr
    try:
        yield Emitter(real, enabled)
    finally:
        sys.stdout = real
