"""Backtest speed: sizeguard's engine vs vectorbt and backtrader, in one run, on the same bars.

    .venv/bin/python bench/bench_backtest.py [--bars 1000000] [--bt-bars 50000] [--ema 240/960 ...]

Inputs, identical for the three: a seeded random walk of 1-minute OHLC bars (BTC-like, from
30,000, 0.1% sigma per bar), long-only EMA-cross entries and exits (computed once, outside the
timings; two densities by default, because sizeguard's cost grows with the entries), a stop
at 1.5 x ATR(14) and a take-profit at 2R, taker fees 0.05% both ways, starting equity 10,000.

* **sizeguard**: the ``ai-atr-risk`` preset on the built-in BTC/USDT:USDT perpetual: every entry
  sized by core ``decide()`` (risk 1% of equity, confidence/streak/win-rate/drawdown
  multipliers, limits, Binance tiers, the liquidation guard, lot rounding), stops, take-profits,
  liquidation checks, fees and equity marking in the numba loop.
* **vectorbt**: ``Portfolio.from_signals`` with the same entries/exits, ``sl_stop``/``tp_stop``
  arrays, high/low for intrabar stops and the same fee; size 10% of equity (its "plain run":
  no leverage tiers, no liquidation, no sizing pipeline).
* **backtrader**: a strategy that buys on the same signals with a bracket (stop + limit) order
  and a risk-based ``Sizer`` (1% of equity to the stop). backtrader is slow: it runs on the
  first ``--bt-bars`` bars and its time is **scaled linearly** to the full length (printed as
  such).

Every engine is warmed up first (numba compilation is excluded from the timings). Each is
timed as wall time and as this process's CPU time (all three run single-threaded here); the
ratios and the JSON ``value`` use CPU time, steadier on a shared machine, with the wall figures
beside them. The sizeguard time is also split into the compiled loop and the decide() calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchjson, also under runpy

from benchjson import Emitter, json_output
from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest import engine as eng
from sizeguard.backtest.candles import Panel
from sizeguard.backtest.signals import ema_cross
from sizeguard.config import load_policy

FEE = 0.0005
ATR_MULT = 1.5
TP_R = 2.0


def random_walk(n: int, seed: int = 42) -> Panel:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.0006, (n, 2))) * close[:, None]
    high = np.maximum(open_, close) + wick[:, 0]
    low = np.minimum(open_, close) - wick[:, 1]
    ts = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    col = lambda a: np.ascontiguousarray(a.reshape(-1, 1))  # noqa: E731
    return Panel(("BTC",), ts, col(open_), col(high), col(low), col(close), col(close), 60_000)


def long_only(sig: Any) -> Any:
    entry = np.where(sig.entry > 0, 1, 0).astype(np.int8)
    return type(sig)(entry, sig.exit, sig.atr, sig.atr_mult, sig.tp_r, sig.confidence, sig.name)


def best_of(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """Best of ``repeat`` runs: (wall seconds, CPU seconds of this process, the last result).
    CPU time is the steadier figure on a shared machine (every engine here is single-threaded
    in these runs); wall time is what a user waits."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def time_sizeguard(panel: Panel, sig: Any, repeat: int, margin_mode: str = "isolated"
                   ) -> dict[str, Any]:
    market = load_markets(None)["BTC/USDT:USDT"]
    policy = load_policy("ai-atr-risk", None, [f"leverage.margin_mode={margin_mode}"])
    calls = {"t": 0.0}
    real = eng.decide

    def timed(*a: Any) -> Any:
        t0 = time.process_time()
        out = real(*a)
        calls["t"] += time.process_time() - t0
        return out

    eng.run_backtest(_slice(panel, 5000), _slice_sig(sig, 5000), [market], policy)  # warm-up
    wall, cpu, r = best_of(lambda: eng.run_backtest(panel, sig, [market], policy), repeat)
    # the trade rows (dicts) are rendered when first asked for, like vectorbt's trade records
    c0 = time.process_time()
    r.trades  # noqa: B018
    ledger_cpu = time.process_time() - c0
    eng.decide = timed  # a second run only to split the time (the wrapper costs a little)
    try:
        eng.run_backtest(panel, sig, [market], policy)
    finally:
        eng.decide = real
    # the engine's own share: the same run with each entry's decision computed once and then
    # served from a cache (same decisions, same trades), so only decide() itself is left out
    cache: dict[tuple[int, float], Any] = {}

    def cached(intent: Any, account: Any, mkt: Any, pol: Any) -> Any:
        key = (round(intent.time * 1000), intent.price)
        d = cache.get(key)
        if d is None:
            d = cache[key] = real(intent, account, mkt, pol)
        return d

    eng.decide = cached
    try:
        eng.run_backtest(panel, sig, [market], policy)  # fills the cache
        _, floor_cpu, _ = best_of(lambda: eng.run_backtest(panel, sig, [market], policy), repeat)
    finally:
        eng.decide = real
    quiet = type(sig)(np.zeros_like(sig.entry), sig.exit, sig.atr, sig.atr_mult, sig.tp_r,
                      sig.confidence, sig.name)
    # the same bars with no entry: the loop's cost per bar
    bare_wall, bare_cpu, _ = best_of(lambda: eng.run_backtest(panel, quiet, [market], policy),
                                     repeat)
    return {"wall": wall, "cpu": cpu, "decide_cpu": calls["t"], "bare_wall": bare_wall,
            "bare_cpu": bare_cpu, "floor_cpu": floor_cpu, "ledger_cpu": ledger_cpu, "result": r}


def _slice(p: Panel, n: int) -> Panel:
    return Panel(p.symbols, p.timestamp[:n], p.open[:n], p.high[:n], p.low[:n], p.close[:n],
                 p.mark[:n], p.timeframe_ms)


def _slice_sig(s: Any, n: int) -> Any:
    return type(s)(s.entry[:n], s.exit[:n], s.atr[:n], s.atr_mult[:n], s.tp_r[:n],
                   s.confidence[:n], s.name)


def time_vectorbt(panel: Panel, sig: Any, repeat: int) -> tuple[float, float, int] | None:
    try:
        import pandas as pd
        import vectorbt as vbt
    except ImportError:
        return None
    n = panel.n_bars
    idx = pd.date_range("2020-09-13", periods=n, freq="1min")
    close = pd.Series(panel.close[:, 0], index=idx)
    kw: dict[str, Any] = {
        "open": pd.Series(panel.open[:, 0], index=idx),
        "high": pd.Series(panel.high[:, 0], index=idx),
        "low": pd.Series(panel.low[:, 0], index=idx),
    }
    entries = pd.Series(sig.entry[:, 0] > 0, index=idx)
    exits = pd.Series((sig.exit[:, 0] & 1) > 0, index=idx)
    stop = np.nan_to_num(ATR_MULT * sig.atr[:, 0] / panel.open[:, 0], nan=0.01)
    price = pd.Series(panel.open[:, 0], index=idx)  # fill at the open, as ours

    def run(m: int) -> Any:
        return vbt.Portfolio.from_signals(
            close.iloc[:m], entries.iloc[:m], exits.iloc[:m], price=price.iloc[:m],
            open=kw["open"].iloc[:m], high=kw["high"].iloc[:m], low=kw["low"].iloc[:m],
            sl_stop=stop[:m], tp_stop=TP_R * stop[:m], fees=FEE, size=0.1,
            size_type="percent", init_cash=10_000.0, freq="1min")

    run(5000)  # warm-up: numba compilation
    wall, cpu, pf = best_of(lambda: run(n), repeat)
    return wall, cpu, int(pf.trades.count())


def time_backtrader(panel: Panel, sig: Any, bars: int) -> tuple[float, float, int] | None:
    try:
        import backtrader as bt
        import pandas as pd
    except ImportError:
        return None
    m = min(bars, panel.n_bars)
    idx = pd.date_range("2020-09-13", periods=m, freq="1min")
    df = pd.DataFrame({"open": panel.open[:m, 0], "high": panel.high[:m, 0],
                       "low": panel.low[:m, 0], "close": panel.close[:m, 0],
                       "volume": np.ones(m)}, index=idx)
    entry = sig.entry[:m, 0]
    exit_ = sig.exit[:m, 0]
    atr = sig.atr[:m, 0]

    class RiskSizer(bt.Sizer):  # type: ignore[misc]
        def _getsizing(self, comminfo: Any, cash: float, data: Any, isbuy: bool) -> float:
            i = len(data) - 1
            dist = ATR_MULT * atr[i] / data.open[0] if atr[i] == atr[i] else 0.01
            value = self.broker.getvalue()
            return float(0.01 * value / (dist + 2 * FEE) / data.open[0])

    class Cross(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.filled = 0
            self.bracket: list[Any] = []

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.filled += 1

        def next(self) -> None:
            i = len(self.data) - 1
            if i + 1 >= m:
                return
            # decide on the signal acting at the next bar's open, like the other engines
            nxt = i + 1
            if self.position and (exit_[nxt] & 1):
                for o in self.bracket:
                    self.cancel(o)
                self.close()
            elif not self.position and entry[nxt] > 0 and atr[nxt] == atr[nxt]:
                ref = self.data.close[0]
                d = ATR_MULT * atr[nxt]
                self.bracket = self.buy_bracket(exectype=bt.Order.Market, stopprice=ref - d,
                                                limitprice=ref + TP_R * d)

    def run(k: int) -> int:
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=df.iloc[:k]))
        cerebro.addstrategy(Cross)
        cerebro.addsizer(RiskSizer)
        cerebro.broker.setcash(10_000.0)
        cerebro.broker.setcommission(commission=FEE, leverage=30.0)
        strat = cerebro.run()[0]
        return int(strat.filled)

    run(min(2000, m))
    wall, cpu, orders = best_of(lambda: run(m), 1)
    return wall, cpu, orders


def one_density(panel: Panel, fast: int, slow: int, args: argparse.Namespace,
                emit: Emitter) -> dict[str, float]:
    sig = long_only(ema_cross(panel, fast, slow, tp_r=TP_R, allow_short=False))
    print(f"\n## {args.bars:,} random-walk 1m bars ({args.margin_mode} margin), "
          f"{sig.n_entries:,} long entry signals "
          f"(EMA {fast}/{slow}), stop 1.5 x ATR, take-profit 2R, fees {FEE:.2%}")
    sg = time_sizeguard(panel, sig, args.repeat, args.margin_mode)
    r = sg["result"]
    n_dec = max(r.decisions, 1)
    per_entry = (sg["cpu"] - sg["bare_cpu"]) / n_dec
    out = {"entries": float(r.decisions), "sizeguard": sg["cpu"], "sizeguard_wall": sg["wall"]}
    print(f"sizeguard   {sg['cpu'] * 1000:9.1f} ms CPU {sg['wall'] * 1000:9.1f} ms wall  "
          f"{len(r.trades):,} trades, {r.decisions:,} decide() calls "
          f"({sg['decide_cpu'] * 1e6 / n_dec:.0f} us CPU each, {sg['decide_cpu'] * 1000:.0f} ms); "
          f"the same bars without entries {sg['bare_cpu'] * 1000:.1f} ms; "
          f"{per_entry * 1e6:.0f} us per entry in all; {r.liquidations} liquidations; the "
          f"ledger's rows rendered on first use {sg['ledger_cpu'] * 1000:.1f} ms")
    vb = time_vectorbt(panel, sig, args.repeat)
    if vb is None:
        print("vectorbt    skipped: not installed (pip install 'sizeguard[bench]')")
    else:
        out["vectorbt"], out["vectorbt_wall"] = vb[1], vb[0]
        even = ((vb[1] - sg["bare_cpu"]) / per_entry * 1e6 / args.bars if per_entry > 0
                else float("inf"))
        print(f"vectorbt    {vb[1] * 1000:9.1f} ms CPU {vb[0] * 1000:9.1f} ms wall  {vb[2]:,} "
              f"trades   sizeguard is {vb[1] / sg['cpu']:.2f}x vectorbt's speed (CPU; wall "
              f"{vb[0] / sg['wall']:.2f}x); break-even at about {max(even, 0):,.0f} entries per "
              f"1M bars")
        budget = (vb[1] - sg["floor_cpu"]) / n_dec
        out["decide_budget"] = budget
        print(f"            the engine without decide() (decisions cached) {sg['floor_cpu'] * 1000:.1f}"
              f" ms CPU, {vb[1] / sg['floor_cpu']:.2f}x vectorbt: 1.0x needs decide() <= "
              f"{budget * 1e6:.1f} us CPU here if the engine's share stayed as cached")
    btr = time_backtrader(panel, sig, args.bt_bars)
    if btr is None:
        print("backtrader  skipped: not installed (pip install 'sizeguard[bench]')")
    else:
        m = min(args.bt_bars, args.bars)
        scaled = btr[1] * args.bars / m
        out["backtrader"] = scaled
        print(f"backtrader  {scaled * 1000:9.1f} ms CPU (measured {btr[1]:.2f} s CPU on the first "
              f"{m:,} bars, {btr[2]:,} filled orders, scaled x{args.bars / m:g})   sizeguard is "
              f"{scaled / sg['cpu']:.0f}x faster")
    extra: dict[str, Any] = {
        "entries": r.decisions, "trades": len(r.trades), "liquidations": r.liquidations,
        "per_entry_us": per_entry * 1e6, "decide_us": sg["decide_cpu"] * 1e6 / n_dec,
        "no_entries_ms": sg["bare_cpu"] * 1000, "wall": sg["wall"] * 1000,
        "engine_only_ms": sg["floor_cpu"] * 1000, "ledger_rows_ms": sg["ledger_cpu"] * 1000,
        "ema": f"{fast}/{slow}", "bars": args.bars, "time": "CPU",
        "margin_mode": args.margin_mode}
    if "backtrader" in out:
        extra.update(backtrader_value=out["backtrader"] * 1000,
                     backtrader_ratio=out["backtrader"] / sg["cpu"])
    if "vectorbt" in out:
        extra.update(baseline="vectorbt from_signals", baseline_value=out["vectorbt"] * 1000,
                     baseline_wall=out["vectorbt_wall"] * 1000,
                     wall_ratio=out["vectorbt_wall"] / sg["wall"],
                     decide_budget_us=out["decide_budget"] * 1e6,
                     goal=">= 1.0x vectorbt", met=out["vectorbt"] / sg["cpu"] >= 1.0)
    emit("backtest", f"{args.bars / 1e6:g}M bars, {r.decisions:,} entries", sg["cpu"] * 1000,
         "ms", **extra)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--bt-bars", type=int, default=50_000)
    ap.add_argument("--ema", action="append", default=None,
                    help="FAST/SLOW spans of the entry signals (repeatable; default 240/960 and "
                         "60/240: a sparse and a dense entry density)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="best of N for sizeguard and vectorbt (each run is short: the best "
                         "of 5 filters a loaded machine's disturbances better than of 3)")
    ap.add_argument("--margin-mode", choices=("isolated", "cross"), default="isolated",
                    help="sizeguard's margin mode (cross: the account judged at every bar)")
    ap.add_argument("--json", action="store_true",
                    help="one JSON object per case per line on stdout (the report goes to stderr)")
    args = ap.parse_args()
    with json_output(args.json) as emit:
        run(args, emit)


def run(args: argparse.Namespace, emit: Emitter) -> None:
    spans = [tuple(int(x) for x in e.split("/")) for e in (args.ema or ["240/960", "60/240"])]
    panel = random_walk(args.bars)
    print(f"# {platform.python_implementation()} {platform.python_version()} on "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; best of {args.repeat} (backtrader: one run); ratios on "
          f"CPU time")
    rows = [one_density(panel, fast, slow, args, emit) for fast, slow in spans]
    print("\n# summary: entries, sizeguard ms, vs vectorbt (goal > 1x), vs backtrader (goal >= 500x)")
    for o in rows:
        vb = f"{o['vectorbt'] / o['sizeguard']:.2f}x" if "vectorbt" in o else "n/a"
        bt = f"{o['backtrader'] / o['sizeguard']:.0f}x" if "backtrader" in o else "n/a"
        print(f"{int(o['entries']):>7,} entries  {o['sizeguard'] * 1000:8.1f} ms  "
              f"vectorbt {vb:>7}  backtrader {bt:>6}")


if __name__ == "__main__":
    main()
