"""Sizing-policy sweeps: many policies x candle sets x strategies, each cell one backtest by
the same engine (:func:`~sizeguard.backtest.engine.run_backtest`, every entry sized by
``decide()``) plus a Monte Carlo of its trades, run on Dask.

The pieces, in the order a sweep uses them:

* :func:`expand` turns base policies and ``--grid``/``--sample`` specs into :class:`Cell` s;
  each cell carries its full policy as plain data and a content hash (:attr:`Cell.key`) of
  policy, candles, strategy, window, engine options and :func:`engine_version`;
* :func:`run_cell` is the one function a worker runs: backtest + Monte Carlo -> metrics;
* :func:`run_sweep` ships each candle set once per worker (``Client.scatter(broadcast=True)``),
  submits only the cells missing from the :class:`CellCache`, and stores each result as it lands,
  so an interrupted sweep started again computes only what is missing;
* :func:`walk_forward` chooses on the first part of the data and reports on the rest.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import sizeguard
from sizeguard.backtest.candles import Panel
from sizeguard.backtest.engine import BacktestResult, run_backtest
from sizeguard.backtest.montecarlo import simulate
from sizeguard.backtest.results import metrics
from sizeguard.backtest.signals import Signals, build_signals
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict, policy_to_dict
from sizeguard.errors import InvalidInput

RANK_DEFAULT = "calmar"
# metrics where smaller is better when ranking
SMALLER_IS_BETTER = frozenset({"max_drawdown", "liquidations", "probability_of_ruin",
                               "mc_max_drawdown_p50", "mc_max_drawdown_p95"})


@cache
def engine_version() -> str:
    """sizeguard's version and a digest of the code a cell's result depends on (core and the
    backtest engine): a cached cell is reused only by the code that computed it."""
    root = Path(sizeguard.__file__).parent
    h = hashlib.sha256(sizeguard.__version__.encode())
    files = sorted((root / "core").glob("*.py")) + [
        root / "backtest" / n for n in ("engine.py", "signals.py", "candles.py", "results.py",
                                        "montecarlo.py", "sweep.py")]
    for f in files:
        if f.exists():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return f"{sizeguard.__version__}+{h.hexdigest()[:12]}"


# ---------------------------------------------------------------------------- specifications

def _values(key: str, raw: str) -> list[Any]:
    """``0.005,0.01`` -> [0.005, 0.01], each value read as TOML like ``--set``."""
    from sizeguard.config.loader import parse_set  # noqa: PLC0415 - loads config on demand only

    out = [parse_set(f"{key}={v.strip()}")[1] for v in raw.split(",") if v.strip()]
    if not out:
        raise InvalidInput("--grid", f"{key}={raw}", "give at least one value")
    return out


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["sizing.risk=0.005,0.01", "leverage.max=10,20"]`` -> {dotted key: values}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key.count(".") < 1:
            raise InvalidInput("--grid", item, "must look like section.key=v1,v2,...")
        if key in grid:
            raise InvalidInput("--grid", item, f"{key} is given twice")
        grid[key] = _values(key, raw)
    return grid


@dataclass(frozen=True)
class Range:
    """A ``--range`` for random search: uniform in [lo, hi], log-uniform with ``log``, whole
    numbers with ``int``."""

    key: str
    lo: float
    hi: float
    kind: str = "float"  # float | int | log

    def draw(self, rng: random.Random) -> float | int:
        if self.kind == "int":
            return rng.randint(int(self.lo), int(self.hi))
        if self.kind == "log":
            return math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        return rng.uniform(self.lo, self.hi)


def parse_range(item: str) -> Range:
    """``sizing.risk=0.005:0.02[:log|:int]`` -> a :class:`Range`."""
    key, sep, raw = item.partition("=")
    parts = raw.split(":")
    if not sep or key.count(".") < 1 or len(parts) not in (2, 3):
        raise InvalidInput("--range", item, "must look like section.key=LO:HI[:int|:log]")
    kind = parts[2].strip() if len(parts) == 3 else "float"
    if kind not in ("float", "int", "log"):
        raise InvalidInput("--range", item, "the kind must be int, log or float")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidInput("--range", item, "LO and HI must be numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or (kind == "log" and lo <= 0):
        raise InvalidInput("--range", item, "needs finite LO <= HI (LO > 0 for log)")
    return Range(key.strip(), lo, hi, kind)


def param_sets(grid: Mapping[str, Sequence[Any]], ranges: Sequence[Range] = (),
               sample: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """The grid's cartesian product, or with ``sample`` N random points: ranges drawn, grid
    keys picked from their values. No grid and no sample: one empty parameter set."""
    if sample < 0:
        raise InvalidInput("--sample", sample, "must be >= 0")
    if sample:
        if not grid and not ranges:
            raise InvalidInput("--sample", sample, "give --range or --grid keys to sample")
        rng = random.Random(seed)
        out = []
        for _ in range(sample):
            p: dict[str, Any] = {k: rng.choice(list(v)) for k, v in grid.items()}
            p.update({r.key: r.draw(rng) for r in ranges})
            out.append(p)
        return out
    if ranges:
        raise InvalidInput("--range", ranges[0].key, "ranges need --sample N")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


@dataclass(frozen=True)
class EngineOptions:
    """Everything besides policy, candles and strategy that a cell's result depends on."""

    equity: float = 10_000.0
    funding: float = 0.0
    intrabar: str = "worst"
    tp_r: float | None = None
    long_only: bool = False
    fast: int = 12
    slow: int = 26
    channel: int = 20
    mc_paths: int = 1_000
    mc_method: str = "block"
    mc_block: int = 20
    ruin: float = 0.5
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class CandleSet:
    """One or more candle files traded together, with the market each one trades."""

    name: str
    panel: Panel
    markets: tuple[MarketRules, ...]
    digest: str  # content hash of the candles and markets

    @classmethod
    def build(cls, name: str, panel: Panel, markets: Sequence[MarketRules]) -> CandleSet:
        h = hashlib.sha256()
        for arr in (panel.timestamp, panel.open, panel.high, panel.low, panel.close):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(json.dumps([panel.symbols, panel.timeframe_ms,
                             [m.to_dict() for m in markets]], sort_keys=True,
                            default=str).encode())
        return cls(name, panel, tuple(markets), h.hexdigest())


@dataclass(frozen=True)
class Cell:
    base: str  # the preset or policy file the parameters were applied to
    params: dict[str, Any]
    policy: dict[str, Any]  # the full policy, as plain data
    candles: str  # CandleSet.name
    digest: str  # CandleSet.digest
    strategy: str
    window: tuple[int, int] | None = None  # bars [a, b) of the panel; None = all
    options: EngineOptions = field(default_factory=EngineOptions)

    @property
    def key(self) -> str:
        blob = json.dumps({"policy": self.policy, "candles": self.digest,
                           "strategy": self.strategy, "window": self.window,
                           "options": self.options.as_dict(), "engine": engine_version()},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def key_without_window(self) -> str:
        """What a fold carries from its training window to its test window."""
        blob = json.dumps({"policy": self.policy, "candles": self.digest,
                           "strategy": self.strategy}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def label(self) -> str:
        return " ".join([self.base, *(f"{k}={_short(v)}" for k, v in self.params.items())])


def _short(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def apply_params(policy: Policy, params: Mapping[str, Any]) -> Policy:
    """The policy with each dotted key set, validated like ``--set`` (a bad key or value names
    it)."""
    data = policy_to_dict(policy)
    for key, value in params.items():
        section, _, name = key.partition(".")
        if section not in data or not isinstance(data[section], dict) or "." in name:
            raise InvalidInput("--grid", key, "must be a section.key of the policy")
        data[section] = {**data[section], name: value}
    lev = data["leverage"]
    if "leverage.max" in params and "leverage.value" not in params and \
            _num(lev["value"]) > _num(lev["max"]):
        # sweeping the cap of a fixed-leverage preset means "at most this": the fixed value
        # follows it down instead of making the policy contradict itself
        data["leverage"] = {**lev, "value": lev["max"]}
    return policy_from_dict(data)


def _num(v: Any) -> float:
    return math.inf if v == "inf" else float(v)


def expand(bases: Sequence[Policy], params: Sequence[Mapping[str, Any]],
           candle_sets: Sequence[CandleSet], strategies: Sequence[str],
           options: EngineOptions, windows: Sequence[tuple[int, int] | None] = (None,)
           ) -> list[Cell]:
    """Every (base, params, candles, strategy, window) combination as a cell."""
    if not strategies:
        raise InvalidInput("--strategy", [], "give at least one strategy")
    cells = []
    for base in bases:
        for p in params or [{}]:
            pol = policy_to_dict(apply_params(base, p))
            for cs in candle_sets:
                for strat in strategies:
                    for w in windows:
                        cells.append(Cell(base.name, dict(p), pol, cs.name, cs.digest, strat, w,
                                          options))
    return cells


# ---------------------------------------------------------------------------- one cell

def slice_panel(panel: Panel, a: int, b: int) -> Panel:
    return replace(panel, timestamp=panel.timestamp[a:b], open=panel.open[a:b],
                   high=panel.high[a:b], low=panel.low[a:b], close=panel.close[a:b],
                   mark=panel.mark[a:b])


def slice_signals(sig: Signals, a: int, b: int) -> Signals:
    return replace(sig, entry=sig.entry[a:b], exit=sig.exit[a:b], atr=sig.atr[a:b],
                   atr_mult=sig.atr_mult[a:b], tp_r=sig.tp_r[a:b],
                   confidence=sig.confidence[a:b])


_SIGNALS: dict[tuple[str, str, tuple[Any, ...]], Signals] = {}


def _signals(cs: CandleSet, strategy: str, o: EngineOptions) -> Signals:
    """Signals of a candle set, computed once per worker process and strategy (on the whole
    panel, so indicators of a window are warmed up by the bars before it)."""
    k = (cs.digest, strategy, (o.fast, o.slow, o.channel, o.tp_r, o.long_only))
    if k not in _SIGNALS:
        if len(_SIGNALS) > 64:
            _SIGNALS.clear()
        _SIGNALS[k] = build_signals(cs.panel, strategy, fast=o.fast, slow=o.slow, n=o.channel,
                                    tp_r=o.tp_r, allow_short=not o.long_only)
    return _SIGNALS[k]


def cell_metrics(result: BacktestResult, o: EngineOptions) -> dict[str, Any]:
    """``backtest --json`` metrics of one result, plus the Monte Carlo of its trades and the
    ratios a sweep ranks by."""
    m = metrics(result)
    dd = m["max_drawdown"]
    m["calmar"] = m["cagr"] / dd if dd > 0 and math.isfinite(m["cagr"]) else 0.0
    m["return_over_drawdown"] = m["total_return"] / dd if dd > 0 else 0.0
    rets = [t["return_on_equity"] for t in result.trades]
    if o.mc_paths > 0 and rets:
        mc = simulate(rets, n_paths=o.mc_paths, method=o.mc_method, block=o.mc_block,
                      ruin=o.ruin, initial=o.equity, seed=o.seed, policy=result.name).summary()
        m["probability_of_ruin"] = mc["probability_of_ruin"]
        for k in ("final_equity_p5", "final_equity_p50", "final_equity_p95",
                  "max_drawdown_p50", "max_drawdown_p95", "probability_of_loss"):
            m[f"mc_{k}"] = mc[k]
    else:
        m["probability_of_ruin"] = 1.0 if m["final_equity"] <= o.ruin * o.equity else 0.0
    return {k: _plain(v) for k, v in m.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v


def run_cell(cs: CandleSet, cell: Cell) -> dict[str, Any]:
    """The one function a worker runs: the cell's backtest and Monte Carlo -> its metrics."""
    o = cell.options
    policy = policy_from_dict(cell.policy)
    sig = _signals(cs, cell.strategy, o)
    panel = cs.panel
    if cell.window is not None:
        a, b = cell.window
        panel, sig = slice_panel(panel, a, b), slice_signals(sig, a, b)
    r = run_backtest(panel, sig, list(cs.markets), policy, equity=o.equity,
                     funding_rate=o.funding, intrabar=o.intrabar)
    return cell_metrics(r, o)


# ---------------------------------------------------------------------------- the cache

class CellCache:
    """Finished cells as one JSON file each, named by the cell's content hash. A file is
    written whole then renamed, so an interrupted sweep leaves no half cell behind."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def get(self, key: str) -> dict[str, Any] | None:
        if self.root is None:
            return None
        p = self.root / f"{key}.json"
        try:
            return dict(json.loads(p.read_text("utf-8")))
        except (OSError, ValueError):
            return None

    def put(self, key: str, metrics: Mapping[str, Any]) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(metrics, sort_keys=True), "utf-8")
        tmp.replace(self.root / f"{key}.json")


# ---------------------------------------------------------------------------- the sweep

@dataclass
class SweepResult:
    cells: list[Cell]
    metrics: list[dict[str, Any]]
    computed: int  # cells run now (the others came from the cache)
    workers: int

    def rows(self) -> list[dict[str, Any]]:
        """``{"params", "metrics", ...}`` per cell: the ``--json`` contract."""
        return [{"params": c.params, "metrics": m, "policy": c.base, "candles": c.candles,
                 "strategy": c.strategy, "window": list(c.window) if c.window else None,
                 "key": c.key} for c, m in zip(self.cells, self.metrics, strict=True)]


def local_client(workers: int | None = None) -> Any:
    """A local Dask cluster on loopback: one single-threaded worker process per core (numba
    and the Python pipeline hold the GIL, so threads would not add speed)."""
    from distributed import Client, LocalCluster  # noqa: PLC0415 - Dask loads only for a sweep

    n = workers or os.cpu_count() or 1
    # one core each: numba's parallel Monte Carlo must not start a thread per core in every worker
    one_core = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                           host="127.0.0.1", silence_logs=logging.ERROR, env=one_core,
                           # no dashboard; the scheduler's own HTTP routes on a free loopback port
                           dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False})
    return Client(cluster)  # type: ignore[no-untyped-call]


def run_sweep(cells: Sequence[Cell], candle_sets: Sequence[CandleSet], *, client: Any = None,
              cache: CellCache | None = None,
              progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run the cells missing from ``cache`` on ``client`` (a ``distributed.Client``; ``None``
    runs them here, in order: the plain loop the bench compares Dask against)."""
    cache = cache or CellCache(None)
    by_name = {cs.name: cs for cs in candle_sets}
    out: list[dict[str, Any] | None] = [cache.get(c.key) for c in cells]
    todo = [i for i, m in enumerate(out) if m is None]
    total, done = len(cells), len(cells) - len(todo)
    if progress:
        progress(done, total)
    workers = 0
    if client is None:
        for i in todo:
            c = cells[i]
            out[i] = run_cell(by_name[c.candles], c)
            cache.put(c.key, out[i] or {})
            done += 1
            if progress:
                progress(done, total)
    elif todo:
        from distributed import as_completed  # noqa: PLC0415

        workers = len(client.scheduler_info().get("workers", {}))
        needed = {cells[i].candles for i in todo}
        # each candle set travels to each worker once; every cell refers to the worker's copy
        shipped = {name: client.scatter(by_name[name], broadcast=True, hash=False)
                   for name in needed}
        futures = {client.submit(run_cell, shipped[cells[i].candles], cells[i], pure=False,
                                 key=f"cell-{cells[i].key}-{i}"): i for i in todo}
        for fut in as_completed(futures):  # type: ignore[no-untyped-call]
            i = futures[fut]
            out[i] = fut.result()
            cache.put(cells[i].key, out[i] or {})
            done += 1
            if progress:
                progress(done, total)
    return SweepResult(list(cells), [m or {} for m in out], len(todo), workers)


def score(metrics: Mapping[str, Any], rank: str) -> float:
    v = metrics.get(rank)
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        return -math.inf
    return -float(v) if rank in SMALLER_IS_BETTER else float(v)


def ranked(result: SweepResult, rank: str = RANK_DEFAULT) -> list[int]:
    """Cell indices, best first by ``rank`` (ties: lower max drawdown first)."""
    return sorted(range(len(result.cells)),
                  key=lambda i: (-score(result.metrics[i], rank),
                                 result.metrics[i].get("max_drawdown") or 0.0))


def check_rank(rank: str, sample: Mapping[str, Any]) -> None:
    numeric = sorted(k for k, v in sample.items()
                     if isinstance(v, int | float) and not isinstance(v, bool))
    if rank not in numeric:
        close = difflib.get_close_matches(rank, numeric, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"one of {', '.join(numeric)}"
        raise InvalidInput("--rank", rank, f"not a metric; {hint}")


def parameter_effects(result: SweepResult, rank: str = RANK_DEFAULT
                      ) -> dict[str, list[tuple[Any, float, int]]]:
    """For each swept key: (value, mean of ``rank`` over the cells with it, cell count)."""
    effects: dict[str, list[tuple[Any, float, int]]] = {}
    keys = dict.fromkeys(k for c in result.cells for k in c.params)
    for key in keys:
        groups: dict[str, list[float]] = {}
        shown: dict[str, Any] = {}
        for c, m in zip(result.cells, result.metrics, strict=True):
            if key not in c.params:
                continue
            v = m.get(rank)
            tag = json.dumps(c.params[key], sort_keys=True, default=str)
            shown[tag] = c.params[key]
            if isinstance(v, int | float) and math.isfinite(v):
                groups.setdefault(tag, []).append(float(v))
        rows = [(shown[t], float(np.mean(vs)), len(vs)) for t, vs in groups.items()]
        with contextlib.suppress(TypeError):  # values of mixed types keep their order
            rows.sort(key=lambda r: r[0])
        effects[key] = rows
    return effects


# ---------------------------------------------------------------------------- walk-forward

def fold_windows(n_bars: int, folds: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Anchored walk-forward: the bars cut into ``folds`` equal parts; fold k chooses on parts
    [0, k) and reports on part k, for k = 1 .. folds-1."""
    if folds < 2:
        raise InvalidInput("--folds", folds, "must be >= 2 (choose on one part, report on the next)")
    if n_bars < 2 * folds:
        raise InvalidInput("--folds", folds, f"too many for {n_bars} bars")
    edges = [round(n_bars * i / folds) for i in range(folds + 1)]
    return [((0, edges[k]), (edges[k], edges[k + 1])) for k in range(1, folds)]


@dataclass
class Fold:
    train: tuple[int, int]
    test: tuple[int, int]
    chosen: int  # index into the parameter sets / cells of one window
    label: str
    in_sample: dict[str, Any]
    out_of_sample: dict[str, Any]


def walk_forward(windows: Sequence[tuple[tuple[int, int], tuple[int, int]]],
                 result: SweepResult, rank: str = RANK_DEFAULT) -> list[Fold]:
    """For each fold, the cell ranked first on its training window and the same policy, candles
    and strategy on the test window that follows."""
    by: dict[tuple[Any, ...], int] = {}
    for i, c in enumerate(result.cells):
        by[(c.key_without_window(), c.window)] = i
    folds = []
    for train, test in windows:
        cand = [i for i, c in enumerate(result.cells) if c.window == train]
        if not cand:
            continue
        best = max(cand, key=lambda i: score(result.metrics[i], rank))
        j = by.get((result.cells[best].key_without_window(), test))
        if j is None:
            continue
        folds.append(Fold(train, test, best, result.cells[best].label(), result.metrics[best],
                          result.metrics[j]))
    return folds


def flat_rows(result: SweepResult) -> list[dict[str, Any]]:
    """One flat row per cell (``param.<key>`` and metric columns) for Parquet/CSV."""
    rows = []
    for row in result.rows():
        flat: dict[str, Any] = {"key": row["key"], "policy": row["policy"],
                                "candles": row["candles"], "strategy": row["strategy"],
                                "window": json.dumps(row["window"])}
        for k, v in row["params"].items():
            flat[f"param.{k}"] = v if isinstance(v, int | float | str) else json.dumps(v)
        for k, v in row["metrics"].items():
            flat[k] = json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
        rows.append(flat)
    return rows


def write_table(result: SweepResult, path: str | Path) -> Path:
    """Every cell's parameters and metrics as Parquet (``.parquet``) or CSV."""
    p = Path(path)
    rows = flat_rows(result)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    df = pl.DataFrame([{c: r.get(c) for c in cols} for r in rows], infer_schema_length=None)
    if p.suffix.lower() in (".parquet", ".pq"):
        df.write_parquet(p)
    else:
        df.write_csv(p)
    return p


def iter_labels(cells: Iterable[Cell]) -> list[str]:
    return [c.label() for c in cells]
