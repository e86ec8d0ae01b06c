"""A self-contained HTML report comparing policies on the same candles.

Plots are inline SVG written here (no matplotlib, no JavaScript, no network): equity, drawdown,
notional and leverage per trade, skips by reason; and a metrics table.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sizeguard.backtest.engine import BacktestResult
from sizeguard.backtest.montecarlo import MonteCarloResult
from sizeguard.backtest.results import drawdown_curve, metrics

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 860, 320, 70, 20, 26, 40

Series = tuple[str, Any, Any]  # name, x, y


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _date(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).strftime("%Y-%m-%d")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _thin(x: Any, y: Any, limit: int = 1500) -> tuple[Any, Any]:
    """Keep at most ``limit`` points, always keeping each bucket's min and max."""
    n = len(x)
    if n <= limit:
        return x, y
    idx = np.linspace(0, n, limit // 2 + 1).astype(int)
    keep: list[int] = []
    for a, b in itertools.pairwise(idx):
        seg = y[a:b]
        if len(seg) == 0:
            continue
        lo, hi = a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))
        keep.extend(sorted({lo, hi}))
    k = np.array(keep)
    return x[k], y[k]


def svg_chart(series: Sequence[Series], title: str, *, kind: str = "line", log: bool = False,
              time_x: bool = True, y_label: str = "", percent: bool = False,
              x_percent: bool = False, width: int = W, height: int = H) -> str:
    """A line or scatter chart of several series as one SVG element."""
    pts = []
    for name, x, y in series:
        xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(xa) & np.isfinite(ya) & ((ya > 0) if log else True)
        xa, ya = xa[ok], ya[ok]
        if kind == "line":
            xa, ya = _thin(xa, ya)
        pts.append((name, xa, np.log10(ya) if log else ya))
    allx = np.concatenate([p[1] for p in pts]) if pts else np.zeros(0)
    ally = np.concatenate([p[2] for p in pts]) if pts else np.zeros(0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" '
           f'font-weight="bold">{html.escape(title)}</text>']
    if allx.size == 0:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text>')
        return "".join(out) + "</svg>"
    x0, x1 = float(allx.min()), float(allx.max())
    y0, y1 = float(ally.min()), float(ally.max())
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    top = PAD_T + 14 * math.ceil(len(pts) / 5)  # legend rows above the plot
    pw, ph = width - PAD_L - PAD_R, height - top - PAD_B

    def sx(v: Any) -> Any:
        return PAD_L + (v - x0) / (x1 - x0) * pw

    def sy(v: Any) -> Any:
        return top + ph - (v - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{PAD_L}" y="{top}" width="{pw}" height="{ph}" fill="none" '
               f'stroke="#999"/>')
    yt = _ticks(y0, y1) if not log else [float(v) for v in range(math.ceil(y0), math.floor(y1) + 1)]
    for v in yt:
        label = f"{v * 100:.0f}%" if percent else _fmt(10 ** v if log else v)
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" '
                   f'stroke="#eee"/><text x="{PAD_L - 4}" y="{sy(v) + 4:.1f}" '
                   f'text-anchor="end">{label}</text>')
    for v in _ticks(x0, x1, 6):
        label = _date(v) if time_x else (f"{v * 100:.0f}%" if x_percent else _fmt(v))
        out.append(f'<text x="{sx(v):.1f}" y="{top + ph + 16}" text-anchor="middle">{label}'
                   f'</text>')
    if y_label:
        out.append(f'<text x="14" y="{top + ph / 2}" transform="rotate(-90 14 {top + ph / 2})"'
                   f' text-anchor="middle">{html.escape(y_label)}</text>')
    for i, (name, xa, ya) in enumerate(pts):
        colour = COLOURS[i % len(COLOURS)]
        if kind == "line" and xa.size:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx(xa), sy(ya), strict=True))
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.3" '
                       f'points="{path}"/>')
        else:
            out.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{colour}" '
                       f'fill-opacity="0.6"/>' for a, b in zip(sx(xa), sy(ya), strict=True))
        lx = PAD_L + 8 + (i % 5) * 150
        ly = PAD_T + 4 + (i // 5) * 14
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 14}" y="{ly + 1}">{html.escape(name)}</text>')
    return "".join(out) + "</svg>"


def svg_bars(groups: dict[str, dict[str, int]], title: str, width: int = W) -> str:
    """Horizontal bars: for each policy, its skip count by reason."""
    reasons = sorted({r for g in groups.values() for r in g})
    rows = [(p, r, groups[p].get(r, 0)) for p in groups for r in reasons if groups[p].get(r, 0)]
    height = 40 + 18 * max(len(rows), 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11"><rect width="{width}" height="{height}" '
           f'fill="white"/><text x="{width / 2}" y="16" text-anchor="middle" font-size="13" '
           f'font-weight="bold">{html.escape(title)}</text>']
    if not rows:
        out.append(f'<text x="{width / 2}" y="34" text-anchor="middle">no skipped entries</text>')
    top = max((c for _, _, c in rows), default=1)
    names = list(groups)
    for i, (p, r, c) in enumerate(rows):
        y = 30 + 18 * i
        colour = COLOURS[names.index(p) % len(COLOURS)]
        bw = (width - 420) * c / top
        out.append(f'<text x="300" y="{y + 11}" text-anchor="end">{html.escape(p)}: '
                   f'{html.escape(r)}</text><rect x="306" y="{y}" width="{bw:.1f}" height="13" '
                   f'fill="{colour}"/><text x="{310 + bw:.1f}" y="{y + 11}">{c}</text>')
    return "".join(out) + "</svg>"


def equity_svg(results: Sequence[BacktestResult], title: str = "Equity") -> str:
    return svg_chart([(r.name, r.timestamp, r.equity) for r in results], title,
                     log=all(float(np.nanmin(r.equity)) > 0 for r in results),
                     y_label="equity (log)")


def _pct(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v * 100:.2f}%"


METRIC_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("final equity", "final_equity", lambda v: f"{v:,.2f}"),
    ("total return", "total_return", _pct),
    ("CAGR", "cagr", _pct),
    ("max drawdown", "max_drawdown", _pct),
    ("Sharpe", "sharpe", lambda v: f"{v:.2f}"),
    ("Sortino", "sortino", lambda v: f"{v:.2f}"),
    ("trades", "trades", str),
    ("win rate", "win_rate", _pct),
    ("entries decided", "decisions", str),
    ("skipped", "skipped", str),
    ("liquidations", "liquidations", str),
    ("avg leverage", "avg_leverage", lambda v: f"{v:.1f}x"),
    ("avg notional", "avg_notional", lambda v: f"{v:,.0f}"),
    ("avg exposure (gross / equity)", "avg_exposure", lambda v: f"{v:.2f}x"),
    ("max exposure", "max_exposure", lambda v: f"{v:.2f}x"),
    ("fees", "fees", lambda v: f"{v:,.2f}"),
    ("funding", "funding", lambda v: f"{v:,.2f}"),
    ("exits", "exits", lambda v: ", ".join(f"{k} {c}" for k, c in v.items()) or "-"),
    ("skips by reason", "skips", lambda v: ", ".join(f"{k} {c}" for k, c in v.items()) or "-"),
)


def metrics_table(results: Sequence[BacktestResult]) -> str:
    ms = [metrics(r) for r in results]
    head = "".join(f"<th>{html.escape(m['policy'])}</th>" for m in ms)
    body = "".join(
        f"<tr><td>{label}</td>" + "".join(f"<td>{html.escape(fmt(m[key]))}</td>" for m in ms)
        + "</tr>" for label, key, fmt in METRIC_ROWS)
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def montecarlo_section(runs: Sequence[MonteCarloResult]) -> str:
    """A table of the Monte Carlo summaries and the distribution of max drawdown per policy."""
    if not runs:
        return ""
    head = ("<tr><th>policy</th><th>method</th><th>paths x trades</th><th>final p5</th>"
            "<th>median</th><th>p95</th><th>max DD median</th><th>max DD p95</th>"
            "<th>P(ruin)</th></tr>")
    rows = []
    for m in runs:
        x = m.summary()
        rows.append(f"<tr><td>{html.escape(m.policy)}</td><td>{m.method}</td>"
                    f"<td>{m.n_paths:,} x {m.n_trades:,}</td><td>{x['final_equity_p5']:,.0f}</td>"
                    f"<td>{x['final_equity_p50']:,.0f}</td><td>{x['final_equity_p95']:,.0f}</td>"
                    f"<td>{x['max_drawdown_p50']:.1%}</td><td>{x['max_drawdown_p95']:.1%}</td>"
                    f"<td>{m.probability_of_ruin:.2%}</td></tr>")
    edges = np.linspace(0.0, 1.0, 51)
    mid = (edges[:-1] + edges[1:]) / 2
    hist = [(m.policy, mid, np.histogram(m.max_drawdown, edges)[0] / m.n_paths) for m in runs]
    ruin = runs[0].ruin
    return (f"<h2>Monte Carlo</h2><p>Trades resampled ({runs[0].method}); ruin = equity at or "
            f"below {ruin:.0%} of the start at any point.</p><table>{head}{''.join(rows)}</table>"
            + svg_chart(hist, "Max drawdown across paths (share of paths per 2% bin)",
                        time_x=False, y_label="share of paths", x_percent=True))


def html_report(results: Sequence[BacktestResult], *, title: str = "sizeguard backtest",
                notes: Sequence[str] = (), montecarlo: Sequence[MonteCarloResult] = ()) -> str:
    if not results:
        raise ValueError("no results to report")
    r0 = results[0]
    span = f"{_date(float(r0.timestamp[0]))} to {_date(float(r0.timestamp[-1]))}"
    dd = [(r.name, r.timestamp, -drawdown_curve(r.equity, r.initial_equity)) for r in results]
    idx = [(r.name, [t["entry_time"] for t in r.trades], [t["notional"] for t in r.trades])
           for r in results]
    lev = [(r.name, [t["entry_time"] for t in r.trades], [t["leverage"] for t in r.trades])
           for r in results]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Candles: {html.escape(', '.join(r0.symbols))} traded as "
        f"{html.escape(', '.join(r0.markets))}; {len(r0.timestamp):,} bars, {span}. Strategy: "
        f"{html.escape(r0.strategy)}. Initial equity {r0.initial_equity:,.2f}. Every entry was "
        "sized by sizeguard's decide() with the policy named in each column.</p>",
        "".join(f"<p>{html.escape(n)}</p>" for n in notes),
        "<h2>Metrics</h2>", metrics_table(results),
        "<h2>Equity</h2>", equity_svg(results),
        "<h2>Drawdown</h2>", svg_chart(dd, "Drawdown from peak", percent=True),
        "<h2>Size and leverage per trade</h2>",
        svg_chart(idx, "Notional per trade (log)", kind="scatter", log=True,
                  y_label="notional"),
        svg_chart(lev, "Leverage per trade", kind="scatter", y_label="leverage"),
        "<h2>Skipped entries</h2>",
        svg_bars({r.name: dict(r.skips) for r in results}, "Skipped entries by reason"),
        montecarlo_section(montecarlo),
    ]
    style = ("body{font-family:sans-serif;max-width:920px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}td:first-child{text-align:left}svg{display:block;"
             "margin:1em 0}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(results: Sequence[BacktestResult], path: str | Path, **kw: Any) -> Path:
    p = Path(path)
    p.write_text(html_report(results, **kw), encoding="utf-8")
    return p
