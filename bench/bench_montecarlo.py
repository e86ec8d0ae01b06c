"""Monte Carlo speed: 10,000 paths x 1,000 trades per method, goal <= 0.5 s.

    .venv/bin/python bench/bench_montecarlo.py [--paths 10000] [--trades 1000] [--repeat 5]

Trade returns: 1,000 seeded draws (mean +0.1%, sigma 2% of equity per trade). Each method
(bootstrap, block of 20) is warmed up (numba compilation excluded) and timed best of
``repeat``; the time includes drawing the random indices (numpy, seeded) and walking every path
(numba, parallel over paths): final equity, max drawdown, ruin at 50%.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchjson, also under runpy

from benchjson import Emitter, json_output
from sizeguard.backtest.montecarlo import simulate

GOAL_S = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", type=int, default=10_000)
    ap.add_argument("--trades", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true",
                    help="one JSON object per case per line on stdout (the report goes to stderr)")
    args = ap.parse_args()
    with json_output(args.json) as emit:
        run(args, emit)


def run(args: argparse.Namespace, emit: Emitter) -> None:
    returns = np.random.default_rng(0).normal(0.001, 0.02, 1_000)
    print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{args.paths:,} paths x {args.trades:,} trades, best of {args.repeat}")
    for method in ("bootstrap", "block"):
        simulate(returns, n_paths=100, n_trades=10, method=method)  # warm-up
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            m = simulate(returns, n_paths=args.paths, n_trades=args.trades, method=method,
                         block=20, seed=1)
            best = min(best, time.perf_counter() - t0)
        verdict = "meets" if best <= GOAL_S else "MISSES"
        print(f"{method:10s} {best * 1000:8.1f} ms  ({verdict} the {GOAL_S:g} s goal)  "
              f"P(ruin at 50%) {m.probability_of_ruin:.3f}, median final x"
              f"{float(np.median(m.final)):.3f}")
        emit("montecarlo", f"{method}, {args.paths:,} paths x {args.trades:,} trades",
             best * 1000, "ms", goal=f"<= {GOAL_S * 1000:g} ms", met=best <= GOAL_S)


if __name__ == "__main__":
    main()
