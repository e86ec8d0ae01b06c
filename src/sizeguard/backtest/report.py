"""A self-contained, interactive HTML report comparing policies on the same candles.

The report's charts are plotly figures with plotly.js inlined once in the file (no CDN: it works
offline): equity on linear and log scales and one panel per policy, drawdown, risk per trade as a
share of equity, notional and leverage per trade as small multiples per policy with
liquidations marked, skipped entries by reason, and, with Monte Carlo runs, the fan of equity
percentiles and the probability of ruin. Each policy keeps one colour and one dash style
everywhere, so overlapping lines stay apart.

The plain SVG writers (:func:`svg_chart`, :func:`equity_svg`) remain for ``--plot``.
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

# Okabe-Ito: told apart with the common colour-vision deficiencies, and each has its own dash
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442", "#7f7f7f", "#882255")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SVG_DASHES = ("", "6 3", "2 2", "6 2 2 2", "10 4", "10 3 2 3")
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
            dash = SVG_DASHES[i % len(SVG_DASHES)]
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                       + (f'stroke-dasharray="{dash}" ' if dash else "") + f'points="{path}"/>')
        else:
            out.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{colour}" '
                       f'fill-opacity="0.6"/>' for a, b in zip(sx(xa), sy(ya), strict=True))
        lx = PAD_L + 8 + (i % 5) * 150
        ly = PAD_T + 4 + (i // 5) * 14
        dash = SVG_DASHES[i % len(SVG_DASHES)] if kind == "line" else ""
        out.append(f'<line x1="{lx - 4}" x2="{lx + 12}" y1="{ly - 3}" y2="{ly - 3}" '
                   f'stroke="{colour}" stroke-width="2.5"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + '/>'
                   f'<text x="{lx + 16}" y="{ly + 1}">{html.escape(name)}</text>')
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


def _money(v: float) -> str:
    """Money in the backtest's currency: two decimals, four below 1 (a coin-margined
    backtest counts in its coin: 0.8843 BTC)."""
    return f"{v:,.2f}" if v == 0 or abs(v) >= 1 else f"{v:,.4f}"


METRIC_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("currency", "currency", lambda v: v or "-"),
    ("final equity", "final_equity", _money),
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
    ("fees", "fees", _money),
    ("funding", "funding", _money),
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


def _style(i: int) -> dict[str, Any]:
    return {"color": COLOURS[i % len(COLOURS)], "dash": DASHES[i % len(DASHES)]}


def _dates(ms: Any) -> Any:
    return np.asarray(ms, dtype="int64").astype("datetime64[ms]")


def _liquidated(r: BacktestResult) -> list[dict[str, Any]]:
    return [t for t in r.trades if t.get("exit_reason") == "liquidation"]


def _fig_html(fig: Any, first: bool, div_id: str) -> str:
    import plotly.io as pio  # noqa: PLC0415 - plotly loads only when a report is written

    return str(pio.to_html(
        fig, full_html=False, include_plotlyjs=first, div_id=div_id,
        config={"displaylogo": False, "responsive": True,
                "toImageButtonOptions": {"format": "png", "scale": 2}}))


def _layout(fig: Any, title: str, height: int) -> None:
    fig.update_layout(title={"text": title, "x": 0.01}, height=height, template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 70, "b": 40}, hovermode="x unified",
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})


def equity_figure(results: Sequence[BacktestResult]) -> Any:
    """Equity of every policy on one chart: linear and log scales side by side, each policy its
    colour and dash, liquidations marked."""
    from plotly.subplots import make_subplots  # noqa: PLC0415

    fig = make_subplots(rows=1, cols=2, subplot_titles=("linear scale", "log scale"),
                        horizontal_spacing=0.08)
    for i, r in enumerate(results):
        x, y = _thin(np.asarray(r.timestamp, dtype=float), np.asarray(r.equity, dtype=float), 4000)
        final = float(r.equity[-1]) if r.equity.size else r.initial_equity
        for col in (1, 2):
            yy = np.where(y > 0, y, np.nan) if col == 2 else y
            fig.add_scatter(x=_dates(x), y=yy, mode="lines", name=f"{r.name} ({_fmt(final)})",
                            legendgroup=r.name, showlegend=col == 1,
                            line={**_style(i), "width": 2}, row=1, col=col)
        liq = _liquidated(r)
        if liq:
            at = np.searchsorted(r.timestamp, [t["exit_time"] for t in liq])
            at = np.clip(at, 0, len(r.equity) - 1)
            for col in (1, 2):
                fig.add_scatter(x=_dates([t["exit_time"] for t in liq]), y=r.equity[at],
                                mode="markers", name=f"{r.name}: liquidation",
                                legendgroup=r.name, showlegend=False,
                                marker={"symbol": "x", "size": 9, "color": COLOURS[i % len(COLOURS)],
                                        "line": {"width": 1, "color": "#b42318"}},
                                row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=2)
    _layout(fig, "Equity (final equity in the legend; x = a liquidation)", 500)
    fig.update_layout(legend={"orientation": "h", "y": -0.1, "yanchor": "top", "x": 0})
    return fig


SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star", "triangle-down",
           "hexagon")


def risk_figure(results: Sequence[BacktestResult]) -> Any:
    """Risk per trade as a percentage of the equity at entry, every policy on one log scale:
    the quantity that tells sizing policies apart (what a stop-out costs the account)."""
    import plotly.graph_objects as go  # noqa: PLC0415

    fig = go.Figure()
    for i, r in enumerate(results):
        ok = [t for t in r.trades if t["equity_at_entry"] > 0 and t["risk"] > 0]
        fig.add_scatter(x=_dates([t["entry_time"] for t in ok]),
                        y=[100.0 * t["risk"] / t["equity_at_entry"] for t in ok], mode="markers",
                        name=r.name, marker={"color": COLOURS[i % len(COLOURS)], "size": 5,
                                             "opacity": 0.75,
                                             "symbol": SYMBOLS[i % len(SYMBOLS)]},
                        hovertemplate="risk %{y:.3g}% of equity<extra>" + r.name + "</extra>")
    fig.update_yaxes(type="log", title_text="% of equity at entry", ticksuffix="%")
    _layout(fig, "Risk per trade: the loss at the stop (fees included) as % of equity", 420)
    fig.update_layout(hovermode="closest")
    return fig


def equity_panels_figure(results: Sequence[BacktestResult]) -> Any:
    """One equity panel per policy, each on its own scale: a policy that barely moves is a
    visible line, not one hidden under the others at the starting equity."""
    from plotly.subplots import make_subplots  # noqa: PLC0415

    n = len(results)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[r.name for r in results],
                        shared_xaxes=True, vertical_spacing=0.12 / max(rows, 1) + 0.04)
    for i, r in enumerate(results):
        x, y = _thin(np.asarray(r.timestamp, dtype=float), np.asarray(r.equity, dtype=float), 2000)
        fig.add_scatter(x=_dates(x), y=y, mode="lines", name=r.name, showlegend=False,
                        line={**_style(i), "width": 1.6}, row=i // cols + 1, col=i % cols + 1)
        fig.add_hline(y=r.initial_equity, line={"color": "#999", "width": 1, "dash": "dot"},
                      row=i // cols + 1, col=i % cols + 1)
    _layout(fig, "Equity per policy (each on its own scale; dotted: the initial equity)",
            max(320, 230 * rows))
    return fig


def drawdown_figure(results: Sequence[BacktestResult]) -> Any:
    import plotly.graph_objects as go  # noqa: PLC0415

    fig = go.Figure()
    for i, r in enumerate(results):
        dd = drawdown_curve(r.equity, r.initial_equity)
        x, y = _thin(np.asarray(r.timestamp, dtype=float), -np.asarray(dd, dtype=float), 4000)
        fig.add_scatter(x=_dates(x), y=y, mode="lines", name=r.name,
                        line={**_style(i), "width": 1.6})
    fig.update_yaxes(tickformat=".0%")
    _layout(fig, "Drawdown from the running peak", 380)
    return fig


PER_TRADE = (("risk_pct", "risk per trade, % of equity"), ("notional", "notional per trade"),
             ("leverage", "leverage per trade"))  # each panel on its own linear scale


def per_trade_figure(results: Sequence[BacktestResult]) -> Any:
    """Small multiples: one row per policy; risk as % of equity at entry, notional (log) and
    leverage per trade; a trade that ended in liquidation is a red x."""
    from plotly.subplots import make_subplots  # noqa: PLC0415

    n = len(results)
    titles = [f"{r.name}: {label}" for r in results for _, label in PER_TRADE]
    fig = make_subplots(rows=n, cols=3, subplot_titles=titles, shared_xaxes=True,
                        horizontal_spacing=0.07, vertical_spacing=min(0.3 / max(n, 1), 0.08))
    for i, r in enumerate(results):
        colour = COLOURS[i % len(COLOURS)]
        ts = [t["entry_time"] for t in r.trades]
        liq = [t.get("exit_reason") == "liquidation" for t in r.trades]
        values = {
            "risk_pct": [100.0 * t["risk"] / t["equity_at_entry"] if t["equity_at_entry"] > 0
                         else None for t in r.trades],
            "notional": [t["notional"] for t in r.trades],
            "leverage": [t["leverage"] for t in r.trades]}
        for c, (key, label) in enumerate(PER_TRADE, start=1):
            ys = values[key]
            fig.add_scatter(x=_dates(ts), y=ys, mode="markers", name=r.name, showlegend=False,
                            marker={"size": 5, "color": colour, "opacity": 0.7},
                            hovertemplate=f"{label}: %{{y:.4g}}<extra>{r.name}</extra>",
                            row=i + 1, col=c)
            lx = [t for t, q in zip(ts, liq, strict=True) if q]
            if lx:
                fig.add_scatter(x=_dates(lx), y=[y for y, q in zip(ys, liq, strict=True) if q],
                                mode="markers", name="liquidated", showlegend=False,
                                marker={"symbol": "x", "size": 10, "color": "#b42318"},
                                hovertemplate="liquidated: %{y:.4g}<extra>" + r.name + "</extra>",
                                row=i + 1, col=c)
            if not ts:
                fig.add_annotation(text="no trades", showarrow=False, xref="x domain",
                                   yref="y domain", x=0.5, y=0.5, row=i + 1, col=c)
        fig.update_yaxes(ticksuffix="%", row=i + 1, col=1)
        fig.update_yaxes(ticksuffix="x", row=i + 1, col=3)
    fig.update_annotations(font_size=11)
    _layout(fig, "Per trade, one row per policy (red x: the trade was liquidated)",
            max(300, 190 * n + 80))
    fig.update_layout(hovermode="closest")
    return fig


def skips_figure(results: Sequence[BacktestResult]) -> Any:
    import plotly.graph_objects as go  # noqa: PLC0415

    reasons = sorted({k for r in results for k in r.skips})
    skipping = [(i, r) for i, r in enumerate(results) if sum(r.skips.values())]
    fig = go.Figure()
    for i, r in skipping:  # a policy that skipped nothing gets no empty bars
        fig.add_bar(y=reasons, x=[r.skips.get(k, 0) for k in reasons], orientation="h",
                    name=f"{r.name} ({sum(r.skips.values())})",
                    marker={"color": COLOURS[i % len(COLOURS)]},
                    text=[r.skips.get(k, 0) or "" for k in reasons], textposition="outside")
    quiet = [r.name for r in results if not sum(r.skips.values())]
    note = f"no skipped entries: {', '.join(quiet)}" if quiet else ""
    if note:
        fig.add_annotation(text=note, showarrow=False, x=1, y=-0.25 if reasons else 0.5,
                           xref="paper", yref="paper", xanchor="right")
    fig.update_layout(barmode="group", bargap=0.3)
    _layout(fig, "Skipped entries by reason (the decision's last reason code)",
            max(260, 120 + 22 * len(reasons) * max(1, len(skipping))))
    fig.update_layout(hovermode="closest")
    return fig


def montecarlo_table(runs: Sequence[MonteCarloResult]) -> str:
    head = ("<tr><th>policy</th><th>method</th><th>paths x trades</th><th>final p5</th>"
            "<th>median</th><th>p95</th><th>max DD median</th><th>max DD p95</th>"
            "<th>P(ruin)</th><th>P(loss)</th></tr>")
    rows = []
    for m in runs:
        x = m.summary()
        rows.append(f"<tr><td>{html.escape(m.policy)}</td><td>{m.method}</td>"
                    f"<td>{m.n_paths:,} x {m.n_trades:,}</td><td>{x['final_equity_p5']:,.0f}</td>"
                    f"<td>{x['final_equity_p50']:,.0f}</td><td>{x['final_equity_p95']:,.0f}</td>"
                    f"<td>{x['max_drawdown_p50']:.1%}</td><td>{x['max_drawdown_p95']:.1%}</td>"
                    f"<td>{m.probability_of_ruin:.2%}</td>"
                    f"<td>{x['probability_of_loss']:.1%}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def montecarlo_fan(returns: Sequence[float], run: MonteCarloResult, points: int = 24,
                   paths: int = 2000) -> tuple[Any, Any]:
    """Equity percentiles (5, 25, 50, 75, 95) after k trades, k = 0..n: each point is the same
    resampling as ``run`` (:func:`~sizeguard.backtest.montecarlo.simulate`, its method, block and
    seed) over k trades. Returns (k, percentiles with shape (5, len(k)))."""
    from sizeguard.backtest.montecarlo import simulate  # noqa: PLC0415

    ks = np.unique(np.linspace(1, run.n_trades, min(points, run.n_trades)).astype(int))
    qs = [np.full(5, run.initial)]
    for k in ks:
        m = simulate(returns, n_paths=min(paths, run.n_paths), n_trades=int(k), method=run.method,
                     block=run.block, ruin=run.ruin, initial=run.initial, seed=0)
        qs.append(np.percentile(m.final, (5, 25, 50, 75, 95)))
    return np.concatenate([[0], ks]), np.array(qs).T


def montecarlo_figure(results: Sequence[BacktestResult], runs: Sequence[MonteCarloResult]) -> Any:
    """The fan per policy (5-95% and 25-75% bands, the median), the ruin line and P(ruin)."""
    from plotly.subplots import make_subplots  # noqa: PLC0415

    by_name = {r.name: r for r in results}
    n = len(runs)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    titles = [f"{m.policy}: P(ruin) {m.probability_of_ruin:.2%}" for m in runs]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        vertical_spacing=0.2 / max(rows, 1) + 0.04)
    names = [r.name for r in results]
    for j, m in enumerate(runs):
        i = names.index(m.policy) if m.policy in names else j
        colour = COLOURS[i % len(COLOURS)]
        row, col = j // cols + 1, j % cols + 1
        r = by_name.get(m.policy)
        if r is None or not r.trades:
            continue
        k, q = montecarlo_fan([t["return_on_equity"] for t in r.trades], m)
        rgb = tuple(int(colour[p:p + 2], 16) for p in (1, 3, 5))
        for lo, hi, alpha, label in ((0, 4, 0.15, "5-95%"), (1, 3, 0.3, "25-75%")):
            fig.add_scatter(x=k, y=q[hi], mode="lines", line={"width": 0}, showlegend=False,
                            hoverinfo="skip", row=row, col=col)
            fig.add_scatter(x=k, y=q[lo], mode="lines", line={"width": 0}, fill="tonexty",
                            fillcolor=f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha})",
                            name=label, showlegend=False, hoverinfo="skip", row=row, col=col)
        fig.add_scatter(x=k, y=q[2], mode="lines", name=f"{m.policy} median", showlegend=False,
                        line={"color": colour, "width": 2}, row=row, col=col)
        fig.add_hline(y=m.ruin * m.initial, line={"color": "#b42318", "width": 1, "dash": "dash"},
                      row=row, col=col)
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text="trades", row=rows, col=c)
    _layout(fig, "Monte Carlo: equity percentiles after k resampled trades (bands 5-95% and "
            "25-75%, line the median; red dashes: the ruin threshold)", max(340, 260 * rows))
    fig.update_layout(hovermode="closest")
    return fig


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;"
         "color:#1d2330}table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
         "td,th{border:1px solid #d0d4da;padding:3px 8px;text-align:right}"
         "td:first-child,th:first-child{text-align:left}h2{margin-top:1.6em}"
         ".key{display:inline-flex;align-items:center;margin-right:1.2em;font-size:13px}"
         ".key svg{margin-right:.35em}")


def _key(results: Sequence[BacktestResult]) -> str:
    """The policies and their colour and dash, once, above the charts."""
    dash = {"solid": "", "dash": "6 3", "dot": "2 2", "dashdot": "6 2 2 2", "longdash": "10 4",
            "longdashdot": "10 3 2 3"}
    out = []
    for i, r in enumerate(results):
        st = _style(i)
        d = dash[st["dash"]]
        out.append(f'<span class="key"><svg width="34" height="10"><line x1="0" x2="34" y1="5" '
                   f'y2="5" stroke="{st["color"]}" stroke-width="3"'
                   + (f' stroke-dasharray="{d}"' if d else "") + f'/></svg>{html.escape(r.name)}'
                   "</span>")
    return f'<p class="policies">{"".join(out)}</p>'


def html_report(results: Sequence[BacktestResult], *, title: str = "sizeguard backtest",
                notes: Sequence[str] = (), montecarlo: Sequence[MonteCarloResult] = ()) -> str:
    """The whole report as one HTML document (plotly.js inside it)."""
    if not results:
        raise ValueError("no results to report")
    r0 = results[0]
    span = f"{_date(float(r0.timestamp[0]))} to {_date(float(r0.timestamp[-1]))}"
    figures: list[tuple[str, str, Any]] = [
        ("Equity", "equity", equity_figure(results)),
        ("Risk per trade", "risk", risk_figure(results)),
        ("Equity per policy", "equity-panels", equity_panels_figure(results)),
        ("Drawdown", "drawdown", drawdown_figure(results)),
        ("Risk, size and leverage per trade", "per-trade", per_trade_figure(results)),
        ("Skipped entries", "skips", skips_figure(results)),
    ]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Candles: {html.escape(', '.join(r0.symbols))} traded as "
        f"{html.escape(', '.join(r0.markets))}; {len(r0.timestamp):,} bars, {span}. Strategy: "
        f"{html.escape(r0.strategy)}. Initial equity {r0.initial_equity:,.2f}. Every entry was "
        "sized by sizeguard's decide() with the policy named in each column. The charts are "
        "interactive: hover for values, drag to zoom, double-click to reset, click a legend "
        "entry to hide a policy.</p>",
        "".join(f"<p>{html.escape(n)}</p>" for n in notes),
        "<h2>Metrics</h2>", metrics_table(results), _key(results),
    ]
    first = True
    for heading, div_id, fig in figures:
        if heading:
            parts.append(f"<h2>{heading}</h2>")
        parts.append(_fig_html(fig, first, div_id))
        first = False
    if montecarlo:
        parts += [
            "<h2>Monte Carlo</h2>",
            f"<p>Each policy's trade returns resampled ({montecarlo[0].method}); ruin = equity at "
            f"or below {montecarlo[0].ruin:.0%} of the start at any point of a path.</p>",
            montecarlo_table(montecarlo),
            _fig_html(montecarlo_figure(results, montecarlo), False, "montecarlo")]
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(results: Sequence[BacktestResult], path: str | Path, **kw: Any) -> Path:
    p = Path(path)
    p.write_text(html_report(results, **kw), encoding="utf-8")
    return p
