"""``sizeguard backtest`` and ``sizeguard montecarlo``: prove a policy on candles before it trades.

Registered on :data:`sizeguard.cli.app.app` when cli/main.py imports this module.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.backtest import METHODS, STRATEGIES
from sizeguard.backtest.markets import choose_markets
from sizeguard.cli.app import app, positive, starting_equity, writable_output
from sizeguard.cli.render import Record, print_fitting, with_percent
from sizeguard.config.loader import PRESETS
from sizeguard.config.settings import load_policy
from sizeguard.core.market import MarketBook, MarketRules
from sizeguard.core.policy import Policy
from sizeguard.errors import InvalidInput, SizeguardError

if TYPE_CHECKING:  # numba, polars and numpy load only when a backtest command runs
    from sizeguard.backtest.candles import Panel
    from sizeguard.backtest.engine import BacktestResult
    from sizeguard.backtest.montecarlo import MonteCarloResult
    from sizeguard.backtest.signals import Signals

PROGRESS_BARS = 200_000  # show a progress bar when bars x policies exceed this

CandlesOpt = Annotated[list[Path], typer.Option(
    "--candles", help="Candle file(s): CSV or Parquet with columns timestamp (ms), open, high, low, "
    "close, volume; or freqtrade's (json, feather, a date column; a data dir for its --symbol "
    "pairs).")]
SymbolOpt = Annotated[list[str] | None, typer.Option(
    "--symbol", help="Market traded with each --candles file, in order (default: the built-in "
    "linear perpetual with the same base, e.g. BTC_USD-1h.csv -> BTC/USDT:USDT).")]
PresetOpt = Annotated[list[str] | None, typer.Option(
    "--preset", help=f"Policy to compare (repeatable): {', '.join(PRESETS)}; NAME@MARKET "
    "trades its own market (see below).")]
ConfigOpt = Annotated[list[Path] | None, typer.Option(
    "--config", help="A policy TOML file to compare (repeatable).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a key of every policy, KEY=VALUE (repeatable; see below).")]
StrategyOpt = Annotated[str | None, typer.Option(
    "--strategy", metavar="|".join(STRATEGIES),
    help=f"Signals: {', '.join(STRATEGIES)} (default ema-cross; file, implied by --signals, "
         "replays your signal columns).")]
def _console() -> Console:
    """A console wide enough for the comparison tables when the output is not a terminal and
    no width was asked for (``COLUMNS``)."""
    return Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=160)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def strategy_for(strategy: str | None, signals_file: Path | None) -> str:
    """--strategy with --signals: the file strategy is implied; any other is refused."""
    if signals_file is not None:
        if strategy not in (None, "file"):
            raise InvalidInput("--strategy", strategy, "--signals replays a file: use --strategy "
                               "file (or leave --strategy out)")
        if not signals_file.is_file():
            raise InvalidInput("--signals", str(signals_file), "no such file")
        return "file"
    chosen = strategy or "ema-cross"
    if chosen not in STRATEGIES:
        close = difflib.get_close_matches(chosen, list(STRATEGIES), n=1)
        raise InvalidInput("--strategy", chosen, "unknown strategy; "
                           + (f"did you mean {close[0]}?" if close else
                              f"one of {', '.join(STRATEGIES)}"))
    if chosen == "file":
        raise InvalidInput("--strategy", chosen, "needs --signals FILE")
    return chosen


def choice(option: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidInput(option, value, f"must be one of {', '.join(allowed)}")
    return value


Plan = tuple[Policy, list[MarketRules]]


def _plans(presets: Sequence[str], configs: Sequence[Path], sets: Sequence[str],
           book: MarketBook, default: list[MarketRules]) -> list[Plan]:
    """Policies with the markets each trades: ``--preset NAME`` trades the default markets,
    ``--preset NAME@MARKET[,MARKET...]`` its own (one per candle file), e.g.
    ``kraken-micro@BTC/USD`` on spot."""
    out: list[Plan] = []
    items = [(p, True) for p in presets] + [(str(c), False) for c in configs]
    for item, is_preset in items or [(p, True) for p in PRESETS]:
        name, _, where = item.partition("@")
        pol = load_policy(name, None, sets) if is_preset else load_policy(None, name, sets)
        chosen = default
        if where:
            chosen = [book[m.strip()] for m in where.split(",")]
            if len(chosen) != len(default):
                raise InvalidInput("--preset", item, f"give one market per candle file "
                                   f"({len(default)})")
            pol = replace(pol, name=f"{pol.name}@{where}")
        out.append((pol, chosen))
    names = [p.name for p, _ in out]
    return [(replace(p, name=f"{p.name}#{i + 1}") if names.count(p.name) > 1 else p, m)
            for i, (p, m) in enumerate(out)]


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int, int], None] | None]]:
    if not enabled:
        yield lambda _name: None
        return
    with Progress(TextColumn("{task.description:<22}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=False) as prog:
        def make(name: str) -> Callable[[int, int], None]:
            task = prog.add_task(name, total=1)

            def update(done: int, total: int) -> None:
                prog.update(task, completed=done, total=total)
            return update
        yield make


def run_many(panel: Panel, signals: Signals, plans: Sequence[Plan], *, equity: float,
             funding: float, intrabar: str, show_progress: bool) -> list[BacktestResult]:
    from sizeguard.backtest.engine import run_backtest
    results = []
    with _progress(show_progress) as bar:
        for pol, markets in plans:
            results.append(run_backtest(panel, signals, markets, pol, equity=equity,
                                        funding_rate=funding, intrabar=intrabar,
                                        progress=bar(pol.name)))
    return results


def metric_records(results: Sequence[BacktestResult]) -> list[Record]:
    """One block per policy, for a terminal too narrow for the side-by-side table."""
    from sizeguard.backtest.report import METRIC_ROWS
    from sizeguard.backtest.results import metrics
    return [Record(m["policy"], [(label, fmt(m[key])) for label, key, fmt in METRIC_ROWS])
            for m in (metrics(r) for r in results)]


def metrics_table(results: Sequence[BacktestResult]) -> Table:
    from sizeguard.backtest.report import METRIC_ROWS
    from sizeguard.backtest.results import metrics
    table = Table(title="backtest", title_justify="left")
    table.add_column("")
    ms = [metrics(r) for r in results]
    for m in ms:
        table.add_column(m["policy"], justify="right", overflow="fold")
    for label, key, fmt in METRIC_ROWS:
        table.add_row(label, *[fmt(m[key]) for m in ms])
    return table


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _load(candles: list[Path], symbol: list[str] | None, markets: Path | None,
          tiers: Path | None) -> tuple[Panel, MarketBook, list[MarketRules], list[str]]:
    from sizeguard.backtest.candles import align, load_many
    from sizeguard.backtest.freqtrade_data import expand_candle_paths
    book = load_markets(markets)
    if tiers is not None:
        book = attach_tiers(book, tiers)
    loaded = load_many(expand_candle_paths(candles, symbol or ()))  # a freqtrade data dir: its pairs
    chosen, notes = choose_markets(loaded, book, symbol)
    return align(loaded), book, chosen, notes


def _warn(notes: Sequence[str]) -> None:
    """The warnings among ``notes`` on stderr (JSON output stays one object on stdout)."""
    for n in notes:
        if n.startswith("warning: "):
            typer.echo(n, err=True)


@app.command(epilog="Examples:\n\n  sizeguard backtest --candles BTC_USD-1h.csv --preset ai-atr-risk "
             "--preset quantum-4x30 --strategy ema-cross --report out.html\n\n"
             "  sizeguard backtest --candles BTC_USD-1h.csv --preset kraken-micro@BTC/USD "
             "--set limits.max_positions=2")
def backtest(
    candles: CandlesOpt,
    symbol: SymbolOpt = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    strategy: StrategyOpt = None,
    signals_file: Annotated[Path | None, typer.Option(
        "--signals", help="Your signal columns (CSV/Parquet), or a freqtrade backtest export to "
        "replay; implies --strategy file.")] = None,
    fast: Annotated[int, typer.Option(help="ema-cross fast span.")] = 12,
    slow: Annotated[int, typer.Option(help="ema-cross slow span.")] = 26,
    channel: Annotated[int, typer.Option("--channel", help="donchian lookback (bars).")] = 20,
    tp_r: Annotated[float | None, typer.Option(
        "--tp-r", help="Take-profit at this multiple of the stop distance.")] = None,
    long_only: Annotated[bool, typer.Option("--long-only", help="No short entries.")] = False,
    equity: Annotated[float | None, typer.Option(
        help="Starting equity, in the markets' settle currency (default 10,000 USDT; a "
        "coin-margined market such as BTC/USD:BTC needs it, in BTC).")] = None,
    funding: Annotated[float, typer.Option(
        help="Funding rate per 8h (0.0001 = 0.01%; longs pay when positive).")] = 0.0,
    intrabar: Annotated[str, typer.Option(
        help="Stop and take-profit in one bar: worst (the stop) or ordered (nearer first).")] = "worst",
    markets: Annotated[Path | None, typer.Option(help="ccxt markets JSON.")] = None,
    tiers: Annotated[Path | None, typer.Option(help="ccxt leverage tiers JSON.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    ledger: Annotated[Path | None, typer.Option(help="Write the trade ledger (.csv/.parquet).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the equity chart as an SVG file.")] = None,
    mc_paths: Annotated[int, typer.Option(
        "--montecarlo", help="Add a Monte Carlo of each policy's trades to the report "
        "(this many block-bootstrap paths; 0 = none).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bar (default: on long runs).")] = None,
) -> None:
    """Backtest one or more sizing policies on the same candles and signals."""
    from sizeguard.backtest.montecarlo import simulate
    from sizeguard.backtest.report import equity_svg, write_report
    from sizeguard.backtest.results import metrics, write_ledger
    from sizeguard.backtest.signals import build_signals
    try:  # every input and output checked before the first bar runs
        strategy = strategy_for(strategy, signals_file)
        choice("--intrabar", intrabar, ("worst", "ordered"))
        if equity is not None:
            positive("--equity", equity)
        if mc_paths < 0:
            raise InvalidInput("--montecarlo", mc_paths, "must be >= 0 paths")
        for option, value in (("--fast", fast), ("--slow", slow), ("--channel", channel)):
            if value < 1:
                raise InvalidInput(option, value, "must be >= 1 bar")
        writable_output("--report", report, (".html", ".htm"))
        writable_output("--ledger", ledger, (".csv", ".parquet"))
        writable_output("--plot", plot, (".svg",))
        panel, book, chosen, notes = _load(candles, symbol, markets, tiers)
        plans = _plans(preset or [], config or [], set_ or [], book, chosen)
        start = starting_equity(equity, [m for _, ms in plans for m in ms])
        sig = build_signals(panel, strategy, fast=fast, slow=slow, n=channel, tp_r=tp_r,
                            signals_file=signals_file, allow_short=not long_only)
        show = progress if progress is not None else panel.n_bars * len(plans) > PROGRESS_BARS
        results = run_many(panel, sig, plans, equity=start, funding=funding,
                           intrabar=intrabar, show_progress=show)
        if report is not None:
            mcs = [simulate([t["return_on_equity"] for t in r.trades], n_paths=mc_paths,
                            method="block", initial=start, policy=r.name)
                   for r in results if mc_paths > 0 and r.trades]
            write_report(results, report, montecarlo=mcs,
                         notes=[*notes, f"Intrabar rule: {intrabar}; funding {funding:g} per 8h."])
        if ledger is not None:
            write_ledger(results, ledger)
        if plot is not None:
            plot.write_text(equity_svg(results, f"Equity: {sig.name} on "
                                                f"{', '.join(panel.symbols)}") + "\n")
    except (SizeguardError, ValueError) as exc:
        _fail(exc)
        return
    if as_json:
        _warn(notes)
        sys.stdout.write(json.dumps([with_percent(_plain(metrics(r))) for r in results]) + "\n")
        return
    console = _console()
    for n in notes:
        console.print(n, style="yellow" if n.startswith("warning: ") else "dim")
    for r in results:
        for w in r.warnings:
            console.print(f"{r.name}: entry refused as invalid input: {w}", style="yellow")
    print_fitting(console, metrics_table(results), "backtest", metric_records(results))
    if report is not None:
        console.print(f"report: {report}")
    if ledger is not None:
        console.print(f"ledger: {ledger}")


def _mc_table(rows: Sequence[MonteCarloResult]) -> Table:
    table = Table(title=f"monte carlo (ruin: equity <= {rows[0].ruin:.0%} of the start)"
                  if rows else "monte carlo", title_justify="left")
    table.add_column("policy", overflow="fold")
    for col in ("method", "paths", "trades", "final p5", "p50", "p95", "maxDD p50", "p95",
                "P(ruin)"):
        table.add_column(col, justify="right")
    for m in rows:
        s = m.summary()
        table.add_row(m.policy, f"{m.method}" + (f"({m.block})" if m.method == "block" else ""),
                      f"{m.n_paths:,}", f"{m.n_trades:,}", f"{s['final_equity_p5']:,.0f}",
                      f"{s['final_equity_p50']:,.0f}", f"{s['final_equity_p95']:,.0f}",
                      f"{s['max_drawdown_p50']:.1%}", f"{s['max_drawdown_p95']:.1%}",
                      f"{m.probability_of_ruin:.2%}")
    return table


@app.command(epilog="Examples: sizeguard montecarlo --ledger trades.csv --paths 10000 ; "
             "sizeguard montecarlo --candles BTC_USD-1h.csv --preset ai-atr-risk --method block")
def montecarlo(
    ledger: Annotated[Path | None, typer.Option(
        help="A trade ledger from `backtest --ledger`, or a freqtrade backtest export.")] = None,
    candles: Annotated[list[Path] | None, typer.Option(
        "--candles", help="Or run a backtest on these candles first.")] = None,
    symbol: SymbolOpt = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    strategy: StrategyOpt = None,
    equity: Annotated[float, typer.Option(help="Starting equity of every path.")] = 10_000.0,
    paths: Annotated[int, typer.Option(help="Paths per policy.")] = 10_000,
    trades: Annotated[int | None, typer.Option(help="Trades per path (default: the ledger's).")] = None,
    method: Annotated[str, typer.Option(
        metavar="|".join(METHODS), help=f"One of {', '.join(METHODS)} (block keeps losing "
        "streaks together; the same default as backtest --montecarlo).")] = "block",
    block: Annotated[int, typer.Option(help="Block length for --method block.")] = 20,
    ruin: Annotated[float, typer.Option(help="Ruin: equity at or below this fraction of the start.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Resample a backtest's trades into many equity paths: final equity, drawdown, ruin."""
    from sizeguard.backtest.freqtrade_data import export_returns, is_freqtrade_export
    from sizeguard.backtest.montecarlo import simulate
    from sizeguard.backtest.results import read_ledger
    from sizeguard.backtest.signals import build_signals
    try:
        choice("--method", method, METHODS)
        positive("--equity", equity)
        for option, value in (("--paths", paths), ("--block", block), ("--trades", trades)):
            if value is not None and value < 1:
                raise InvalidInput(option, value, "must be >= 1")
        if not 0 <= ruin < 1:
            raise InvalidInput("--ruin", ruin, "is a fraction of the start: 0 <= ruin < 1")
        if ledger is not None and not ledger.is_file():
            raise InvalidInput("--ledger", str(ledger), "no such file")
        series: list[tuple[str, Any]] = []
        if ledger is not None and is_freqtrade_export(ledger):  # a freqtrade backtest's trades
            series.extend((name, rets) for name, rets, _ in export_returns(ledger))
        elif ledger is not None:
            df = read_ledger(ledger)
            for name in dict.fromkeys(df["policy"].to_list()):
                sub = df.filter(df["policy"] == name)
                series.append((str(name), (sub["net_pnl"] / sub["equity_at_entry"]).to_numpy()))
        elif candles:
            panel, book, chosen, notes = _load(candles, symbol, None, None)
            _warn(notes)
            sig = build_signals(panel, strategy_for(strategy, None))
            plans = _plans(preset or [], config or [], set_ or [], book, chosen)
            for r in run_many(panel, sig, plans, equity=equity, funding=0.0, intrabar="worst",
                              show_progress=False):
                series.append((r.name, [t["return_on_equity"] for t in r.trades]))
        else:
            raise InvalidInput("--ledger", None, "give --ledger FILE or --candles FILE")
        results = []
        for name, rets in series:
            if len(rets) == 0:
                typer.echo(f"{name}: no trades to resample", err=True)
                continue
            results.append(simulate(rets, n_paths=paths, n_trades=trades, method=method,
                                    block=block, ruin=ruin, initial=equity, seed=seed, policy=name))
    except (SizeguardError, ValueError) as exc:
        _fail(exc)
        return
    if as_json:
        sys.stdout.write(json.dumps([with_percent(m.summary()) for m in results]) + "\n")
    else:
        _console().print(_mc_table(results))
