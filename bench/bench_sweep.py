"""Sweep throughput: cells per second on a local Dask cluster with 1 and 2 workers, against
the plain loop that runs the same cells one after another in this process.

    .venv/bin/python bench/bench_sweep.py [--cells 16] [--bars 20000] [--paths 1000] [--json]

Candles: a seeded random walk of ``--bars`` hourly bars (offline, the same every run). Cells:
ai-atr-risk with ``sizing.risk`` x ``leverage.max`` (``--cells`` of them), EMA 12/26, each a
backtest plus a ``--paths`` block Monte Carlo. Every case computes every cell (no cache) and is
checked equal to the plain loop's metrics, so the bench cannot time a broken sweep. numba
compilation is excluded: the loop is warmed up first, and each cluster runs one cell before the
clock starts (its workers then load the compiled engine from numba's cache).

Printed: cells per second per case, the ratio to the plain loop, and the overhead per cell of
Dask with one worker (its time per cell minus the loop's: scheduling, shipping results, the
candles shipped once per worker). With ``--json``, one object per case per line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest import sweep as sw
from sizeguard.backtest.candles import Panel
from sizeguard.config.settings import load_policy


def walk_panel(n: int, seed: int = 1) -> Panel:
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.008, n)))
    op = np.concatenate([[close[0]], close[:-1]])
    hi = np.maximum(op, close) * (1 + rng.uniform(0, 0.005, n))
    lo = np.minimum(op, close) * (1 - rng.uniform(0, 0.005, n))
    ts = np.arange(n, dtype=np.int64) * 3_600_000

    def col(a: Any) -> Any:
        return np.ascontiguousarray(a.reshape(n, 1))
    return Panel(("BTC",), ts, col(op), col(hi), col(lo), col(close), col(close.copy()), 3_600_000)


def make_cells(cs: sw.CandleSet, count: int, paths: int) -> list[sw.Cell]:
    risks = np.linspace(0.0025, 0.03, max(2, count // 4)).round(5).tolist()
    levs = [5, 10, 20, 30]
    params = [{"sizing.risk": r, "leverage.max": lv} for r in risks for lv in levs][:count]
    return sw.expand([load_policy("ai-atr-risk")], params, [cs], ["ema-cross"],
                     sw.EngineOptions(mc_paths=paths))


def timed(cells: list[sw.Cell], cs: sw.CandleSet, client: Any) -> tuple[float, sw.SweepResult]:
    t0 = time.perf_counter()
    r = sw.run_sweep(cells, [cs], client=client)
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--bars", type=int, default=20_000)
    ap.add_argument("--paths", type=int, default=1_000)
    ap.add_argument("--json", action="store_true", help="one JSON object per case per line")
    args = ap.parse_args()
    book = load_markets()
    cs = sw.CandleSet.build("walk", walk_panel(args.bars), [book["BTC/USDT:USDT"]])
    cells = make_cells(cs, args.cells, args.paths)
    sw.run_sweep(cells[:1], [cs])  # compile numba here
    loop_s, ref = timed(cells, cs, None)
    rows = [("plain loop", loop_s, 0)]
    for n in (1, 2):
        client = sw.local_client(n)
        try:
            client.run(sw.run_cell, cs, cells[0])  # every worker loads the compiled engine
            s, r = timed(cells, cs, client)
            assert r.metrics == ref.metrics, "a Dask cell differs from the plain loop"
            assert r.workers == n
            rows.append((f"dask, {n} worker{'s' if n > 1 else ''}", s, n))
        finally:
            cluster = client.cluster
            client.close()
            cluster.close()
    n_cells = len(cells)
    loop_rate = n_cells / loop_s
    # with --json the report goes to stderr and stdout holds one JSON object per case
    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    say(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {n_cells} cells "
        f"x {args.bars:,} bars, {args.paths:,} Monte Carlo paths each")
    say(f"{'case':<18} {'seconds':>8} {'cells/s':>8} {'vs loop':>8}")
    for name, s, _n in rows:
        rate = n_cells / s
        say(f"{name:<18} {s:>8.2f} {rate:>8.2f} {rate / loop_rate:>7.2f}x")
        if args.json:
            rec: dict[str, Any] = {"bench": "sweep", "case": name, "value": round(rate, 3),
                                   "unit": "cells/s", "cells": n_cells, "bars": args.bars,
                                   "seconds": round(s, 4)}
            if name != "plain loop":
                rec.update(baseline="plain loop", baseline_value=round(loop_rate, 3),
                           ratio=round(rate / loop_rate, 3))
            print(json.dumps(rec))
    one = next(s for name, s, n in rows if n == 1)
    overhead_ms = (one - loop_s) / n_cells * 1000
    say(f"Dask overhead per cell (1 worker vs the loop): {overhead_ms:+.1f} ms "
        f"(a cell takes {loop_s / n_cells * 1000:.0f} ms in the loop)")
    if args.json:
        print(json.dumps({"bench": "sweep", "case": "dask overhead per cell (1 worker)",
                          "value": round(overhead_ms, 2), "unit": "ms"}))

if __name__ == "__main__":
    main()
