"""``sizeguard sweep``: search sizing policies (grid or random) over candle sets and strategies,
each cell a backtest plus a Monte Carlo, on Dask. See docs/sweep.md."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sizeguard.backtest import STRATEGIES
from sizeguard.cli.app import app, clean_floats, fail, starting_equity, writable_output
from sizeguard.cli.render import with_percent
from sizeguard.config.settings import load_policy
from sizeguard.errors import InvalidInput, SizeguardError

if TYPE_CHECKING:
    from sizeguard.backtest.sweep import CandleSet, SweepResult

SCHEDULER_ENV = "SIZEGUARD_SCHEDULER"


def default_cache() -> Path:
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("sizeguard")) / "sweep"


def _candle_sets(candles: list[str], symbols: list[str] | None, markets: Path | None,
                 tiers: Path | None) -> list[CandleSet]:
    """Each ``--candles A.csv[,B.csv]`` is one candle set (files joined by commas trade
    together); ``--symbol`` gives the markets of each set the same way. Markets are chosen and
    checked as ``backtest`` does (guessed from the base, refused when quoted in another
    currency); the warnings go to stderr."""
    from sizeguard.adapters.market_files import attach_tiers, load_markets
    from sizeguard.backtest.candles import align, load_many
    from sizeguard.backtest.freqtrade_data import expand_candle_paths
    from sizeguard.backtest.markets import choose_markets
    from sizeguard.backtest.sweep import CandleSet
    book = load_markets(markets)
    if tiers is not None:
        book = attach_tiers(book, tiers)
    if symbols and len(symbols) != len(candles):
        raise InvalidInput("--symbol", symbols, f"give one per --candles set ({len(candles)})")
    out = []
    for k, item in enumerate(candles):
        files = [Path(p.strip()) for p in item.split(",") if p.strip()]
        names = [s.strip() for s in symbols[k].split(",")] if symbols else None
        loaded = load_many(expand_candle_paths(files, names or ()))
        chosen, notes = choose_markets(loaded, book, names)
        for n in notes:
            if n.startswith("warning: "):
                typer.echo(n, err=True)
        out.append(CandleSet.build("+".join(f.stem for f in files), align(loaded), chosen))
    names_ = [c.name for c in out]
    if len(set(names_)) != len(names_):
        raise InvalidInput("--candles", candles, "the same candle set is given twice")
    return out


def _table(result: SweepResult, order: list[int], rank: str, top: int) -> Table:
    table = Table(title=f"sweep: {len(result.cells)} cells, best by {rank}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("policy", overflow="fold", min_width=16)
    for col in (rank, "return", "maxDD", "P(ruin)", "trades", "liqs"):
        table.add_column(col, justify="right")
    for pos, i in enumerate(order[:top], 1):
        c, m = result.cells[i], result.metrics[i]
        where = "" if len({x.candles for x in result.cells}) == 1 else f" on {c.candles}"
        strat = "" if len({x.strategy for x in result.cells}) == 1 else f" ({c.strategy})"
        table.add_row(str(pos), c.label() + where + strat, _num(m.get(rank)),
                      _pct(m.get("total_return")), _pct(m.get("max_drawdown")),
                      _pct(m.get("probability_of_ruin")), str(m.get("trades", 0)),
                      str(m.get("liquidations", 0)))
    return table


def _num(v: Any) -> str:
    return f"{v:,.3g}" if isinstance(v, int | float) and math.isfinite(v) else "-"


def _pct(v: Any) -> str:
    return f"{v:.1%}" if isinstance(v, int | float) and math.isfinite(v) else "-"


@app.command(epilog="Example: sizeguard sweep --candles BTC_USD-1h.csv --preset ai-atr-risk "
             "--grid sizing.risk=0.005,0.01,0.02 --grid leverage.max=10,20,30 --report sweep.html")
def sweep(
    candles: Annotated[list[str], typer.Option(
        "--candles", help="A candle set (repeatable): FILE, or FILE,FILE traded together.")],
    symbol: Annotated[list[str] | None, typer.Option(
        "--symbol", help="Markets of each candle set, in order (default: guessed as in "
        "backtest).")] = None,
    preset: Annotated[list[str] | None, typer.Option(
        "--preset", help="Base policy (repeatable): a preset name, see `sizeguard presets`.")
    ] = None,
    config: Annotated[list[Path] | None, typer.Option(
        "--config", help="Base policy TOML file (repeatable).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a key of every base policy (repeatable).")] = None,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="A swept policy key and its values, KEY=V1,V2,... (repeatable).")] = None,
    sample: Annotated[int, typer.Option(
        "--sample", min=0, max=1_000_000, help="Random search: this many points from --range "
        "(and --grid values).")] = 0,
    range_: Annotated[list[str] | None, typer.Option(
        "--range", help="Random-search range KEY=LO:HI, KEY=LO:HI:int or KEY=LO:HI:log "
        "(repeatable).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed.")] = 0,
    strategy: Annotated[list[str] | None, typer.Option(
        "--strategy", help=f"Signals (repeatable): {', '.join(s for s in STRATEGIES if s != 'file')}"
        ".")] = None,
    tp_r: Annotated[float | None, typer.Option(
        "--tp-r", min=0.0, help="Take-profit at this multiple of the stop distance.")] = None,
    long_only: Annotated[bool, typer.Option("--long-only", help="No short entries.")] = False,
    equity: Annotated[float | None, typer.Option(
        min=0.0, help="Starting equity (default 10,000; a coin-margined market needs it, in "
        "its coin).")] = None,
    funding: Annotated[float, typer.Option(help="Funding rate per 8h.")] = 0.0,
    intrabar: Annotated[str, typer.Option(help="worst or ordered.")] = "worst",
    mc_paths: Annotated[int, typer.Option(
        "--montecarlo", min=0, max=1_000_000, help="Monte Carlo paths per cell (0 = none).")] = 1_000,
    ruin: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Ruin: equity at or below this fraction of the start.")] = 0.5,
    folds: Annotated[int, typer.Option(
        "--folds", min=0, max=50, help="Walk-forward: choose on the first parts, report on the "
        "next (K >= 2; 0 = off).")] = 0,
    rank: Annotated[str, typer.Option(help="Metric to rank by (calmar, sharpe, total_return, "
                                      "...).")] = "calmar",
    top: Annotated[int, typer.Option(min=1, max=10_000, help="Rows in the ranked table.")] = 15,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", envvar=SCHEDULER_ENV, show_envvar=False,
        help="A running Dask scheduler, tcp://HOST:PORT (default: a local cluster; the "
        "environment can set it, see above).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=0, max=512, help="Local cluster workers (default: every core; 0 = no Dask, "
        "a plain loop here).")] = None,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="Finished cells are kept here and reused (default: the user cache "
        "dir).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compute every cell.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Every cell's parameters and metrics (.parquet or .csv).")] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="HTML report: frontier, parameter effects, walk-forward.")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write the frontier (return vs max drawdown) as an SVG file.")] = None,
    markets: Annotated[Path | None, typer.Option(help="ccxt markets JSON.")] = None,
    tiers: Annotated[Path | None, typer.Option(help="ccxt leverage tiers JSON.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every cell as JSON.")] = False,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bar (default: on a terminal).")] = None,
) -> None:
    """Sweep sizing-policy keys (grid or random) and rank the cells by return, drawdown and ruin.

    SIZEGUARD_SCHEDULER in the environment names the Dask scheduler when --scheduler is not \
given.
    """
    from sizeguard.backtest import sweep as sw
    try:
        writable_output("--out", out, (".parquet", ".pq", ".csv"))
        writable_output("--report", report, (".html", ".htm"))
        writable_output("--plot", plot, (".svg",))
        strategies = _strategies(strategy, intrabar, folds)
        params = sw.param_sets(sw.parse_grid(grid or []),
                               [sw.parse_range(r) for r in range_ or []], sample, seed)
        bases = [load_policy(p, None, set_ or []) for p in preset or []] + \
                [load_policy(None, c, set_ or []) for c in config or []]
        sets = _candle_sets(candles, symbol, markets, tiers)
        start = starting_equity(equity, [m for cs in sets for m in cs.markets])
        options = sw.EngineOptions(equity=start, funding=funding, intrabar=intrabar, tp_r=tp_r,
                                   long_only=long_only, mc_paths=mc_paths, ruin=ruin, seed=seed)
        cells, fold_plan = _cells(sets, bases or [load_policy(None, None, set_ or [])], params,
                                  strategies, options, folds)
        store = sw.CellCache(None if no_cache else (cache or default_cache()))
        result = _run(cells, sets, store, scheduler, workers, progress)
        whole = _only(result, lambda c: c.window is None)
        if whole.metrics:
            sw.check_rank(rank, whole.metrics[0])
        walk = {name: sw.walk_forward(plan, _only(result, _on(name)), rank)
                for name, plan in fold_plan.items()}
        _write(result, whole, out, report, plot, rank, walk, options)
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    order = sw.ranked(whole, rank)
    if as_json:
        rows = [{**r, "metrics": with_percent(r["metrics"])} for r in result.rows()]
        full = [r for r in rows if r["window"] is None]
        doc: dict[str, Any] = {"rank": rank, "computed": result.computed,
                               "cells": [full[i] for i in order]}
        if folds:
            doc["folds_cells"] = [r for r in rows if r["window"] is not None]
            doc["walk_forward"] = {name: [_fold_json(f) for f in fs] for name, fs in walk.items()}
        sys.stdout.write(json.dumps(clean_floats(doc), default=str) + "\n")
        return
    _print(result, whole, order, rank, top, walk, {"cells": out, "report": report,
                                                   "frontier": plot})


def _strategies(strategy: list[str] | None, intrabar: str, folds: int) -> list[str]:
    if intrabar not in ("worst", "ordered"):
        raise InvalidInput("--intrabar", intrabar, "must be 'worst' or 'ordered'")
    if folds == 1:
        raise InvalidInput("--folds", folds, "must be >= 2 (or 0 for no walk-forward)")
    chosen = strategy or ["ema-cross"]
    for s in chosen:
        if s not in STRATEGIES or s == "file":
            raise InvalidInput("--strategy", s, "must be one of "
                               + ", ".join(x for x in STRATEGIES if x != "file"))
    return chosen


def _cells(sets: list[CandleSet], bases: list[Any], params: list[dict[str, Any]],
           strategies: list[str], options: Any, folds: int
           ) -> tuple[list[Any], dict[str, Any]]:
    """Every cell on the whole data, plus with ``folds`` each fold's training and test window."""
    from sizeguard.backtest import sweep as sw
    cells, fold_plan = [], {}
    for cs in sets:
        windows: list[tuple[int, int] | None] = [None]
        if folds:
            plan = sw.fold_windows(cs.panel.n_bars, folds)
            fold_plan[cs.name] = plan
            windows += list(dict.fromkeys(w for pair in plan for w in pair))
        cells += sw.expand(bases, params, [cs], strategies, options, windows)
    return cells, fold_plan


def _write(result: SweepResult, whole: SweepResult, out: Path | None, report: Path | None,
           plot: Path | None, rank: str, walk: dict[str, Any], options: Any) -> None:
    from sizeguard.backtest import sweep as sw
    from sizeguard.backtest.sweep_report import frontier_svg, write_sweep_report
    if out is not None:
        sw.write_table(result, out)
    if report is not None:
        write_sweep_report(whole, report, rank=rank, walk=walk, options=options,
                           computed=result.computed)
    if plot is not None:
        plot.write_text(frontier_svg(whole, rank) + "\n", "utf-8")


def _print(result: SweepResult, whole: SweepResult, order: list[int], rank: str, top: int,
           walk: dict[str, Any], files: dict[str, Path | None]) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=100)
    console.print(_table(whole, order, rank, top))
    cached = len(result.cells) - result.computed
    console.print(f"{result.computed} cell(s) computed"
                  + (f" on {result.workers} Dask worker(s)" if result.workers else "")
                  + (f", {cached} reused from the cache" if cached else ""), style="dim")
    for name, fs in walk.items():
        for k, f in enumerate(fs, 1):
            console.print(f"walk-forward {name} fold {k}: chose {f.label} on bars "
                          f"{f.train[0]}-{f.train[1]} ({rank} {_num(f.in_sample.get(rank))}); "
                          f"out of sample bars {f.test[0]}-{f.test[1]}: return "
                          f"{_pct(f.out_of_sample.get('total_return'))}, max drawdown "
                          f"{_pct(f.out_of_sample.get('max_drawdown'))}")
    for what, path in files.items():
        if path is not None:
            console.print(f"{what}: {path}")


def _on(candles: str) -> Callable[[Any], bool]:
    return lambda c: bool(c.candles == candles)


def _only(result: SweepResult, keep: Callable[[Any], bool]) -> SweepResult:
    from sizeguard.backtest.sweep import SweepResult
    idx = [i for i, c in enumerate(result.cells) if keep(c)]
    return SweepResult([result.cells[i] for i in idx], [result.metrics[i] for i in idx],
                       result.computed, result.workers)


def _fold_json(f: Any) -> dict[str, Any]:
    return {"train": list(f.train), "test": list(f.test), "chosen": f.label,
            "in_sample": f.in_sample, "out_of_sample": f.out_of_sample}


def _run(cells: list[Any], sets: list[CandleSet], store: Any, scheduler: str | None,
         workers: int | None, progress: bool | None) -> SweepResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from sizeguard.backtest import sweep as sw
    show = progress if progress is not None else sys.stderr.isatty()
    client = None
    try:
        if scheduler:
            from distributed import Client
            try:
                client = Client(scheduler, timeout="5s")  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError) as exc:
                raise InvalidInput("--scheduler", scheduler, f"no Dask scheduler answers ({exc})"
                                   ) from None
        elif workers != 0 and any(store.get(c.key) is None for c in cells):
            client = sw.local_client(workers or os.cpu_count() or 1)
        if not show:
            return sw.run_sweep(cells, sets, client=client, cache=store)
        with Progress("sweep", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True)) as prog:
            task = prog.add_task("sweep", total=len(cells))

            def update(done: int, total: int) -> None:
                prog.update(task, completed=done, total=total)
            return sw.run_sweep(cells, sets, client=client, cache=store, progress=update)
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()  # type: ignore[no-untyped-call]
            if cluster is not None and not scheduler:
                cluster.close()
