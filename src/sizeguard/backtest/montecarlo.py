"""Monte Carlo of a trade sequence: resample the trades' returns into many equity paths.

Each trade's return is its net PnL over the equity it was sized against
(``return_on_equity`` in the ledger), so a path compounds ``equity *= 1 + r`` trade by trade.
``bootstrap`` draws trades independently with replacement; ``block`` draws circular blocks of
``block`` consecutive trades, keeping streaks and regimes (losing runs) together. For each path:
the final equity, the maximum drawdown, and whether equity ever fell to or below
``ruin`` x the start (ruin). Trades that overlapped in time (several symbols) are compounded one
after another: an approximation, said in the docs.

Random numbers come from numpy's seeded ``Generator`` (reproducible); the paths are walked by a
numba kernel, in parallel over paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from sizeguard.errors import InvalidInput

F64 = npt.NDArray[np.float64]
from sizeguard.backtest import METHODS  # noqa: E402  (re-exported)


def _paths(returns: F64, starts: Any, block: int, n_trades: int, ruin: float
           ) -> tuple[F64, F64, Any]:  # pragma: no cover - compiled
    n_paths = starts.shape[0]
    n = returns.shape[0]
    final = np.empty(n_paths)
    max_dd = np.empty(n_paths)
    ruined = np.zeros(n_paths, np.bool_)
    for p in numba.prange(n_paths):
        e = 1.0
        peak = 1.0
        dd = 0.0
        hit = False
        for i in range(n_trades):
            k = (np.int64(starts[p, i // block]) + i % block) % n
            e *= 1.0 + returns[k]
            e = max(e, 0.0)
            peak = max(peak, e)
            dd = max(dd, 1.0 - e / peak)
            if e <= ruin:
                hit = True
        final[p] = e
        max_dd[p] = dd
        ruined[p] = hit
    return final, max_dd, ruined


walk_paths = numba.njit(cache=True, parallel=True)(_paths)


@dataclass(frozen=True)
class MonteCarloResult:
    policy: str
    method: str
    block: int
    n_trades: int
    ruin: float
    initial: float
    final: F64  # final equity of each path, in money
    max_drawdown: F64
    ruined: npt.NDArray[np.bool_]

    @property
    def n_paths(self) -> int:
        return int(self.final.shape[0])

    @property
    def probability_of_ruin(self) -> float:
        return float(self.ruined.mean())

    def summary(self) -> dict[str, Any]:
        q = (5, 25, 50, 75, 95)
        fe = np.percentile(self.final, q)
        dd = np.percentile(self.max_drawdown, q)
        return {
            "policy": self.policy, "method": self.method, "block": self.block,
            "paths": self.n_paths, "trades_per_path": self.n_trades, "initial": self.initial,
            "final_equity_mean": float(self.final.mean()),
            **{f"final_equity_p{k}": float(v) for k, v in zip(q, fe, strict=True)},
            **{f"max_drawdown_p{k}": float(v) for k, v in zip(q, dd, strict=True)},
            "ruin_threshold": self.ruin,
            "probability_of_ruin": self.probability_of_ruin,
            "probability_of_loss": float((self.final < self.initial).mean()),
        }


def simulate(returns: Any, *, n_paths: int = 10_000, n_trades: int | None = None,
             method: str = "bootstrap", block: int = 20, ruin: float = 0.5,
             initial: float = 1.0, seed: int | None = 0, policy: str = "") -> MonteCarloResult:
    """Resample ``returns`` (one per trade, as fractions of equity) into ``n_paths`` paths of
    ``n_trades`` trades (default: as many as given)."""
    r = np.ascontiguousarray(np.asarray(returns, dtype=np.float64))
    if r.ndim != 1 or r.size == 0:
        raise InvalidInput("returns", r.shape, "need at least one trade return")
    if not np.isfinite(r).all() or (r < -1.0).any():
        raise InvalidInput("returns", float(r.min()), "must be finite and >= -1 (-100%)")
    if method not in METHODS:
        raise InvalidInput("method", method, f"must be one of {', '.join(METHODS)}")
    if n_paths < 1:
        raise InvalidInput("paths", n_paths, "must be >= 1")
    t = int(n_trades) if n_trades is not None else int(r.size)
    if t < 1:
        raise InvalidInput("trades", t, "must be >= 1")
    if not 0.0 <= ruin < 1.0:
        raise InvalidInput("ruin", ruin, "is a fraction of the starting equity in [0, 1)")
    b = 1 if method == "bootstrap" else max(1, min(int(block), r.size))
    rng = np.random.default_rng(seed)
    n_blocks = math.ceil(t / b)
    starts = rng.integers(0, r.size, size=(n_paths, n_blocks), dtype=np.uint32)
    final, dd, ruined = walk_paths(r, starts, b, t, ruin)
    return MonteCarloResult(policy, method, b, t, ruin, initial, np.asarray(final) * initial,
                            np.asarray(dd), np.asarray(ruined))
