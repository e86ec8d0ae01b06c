"""The sweep's HTML report: the frontier (return against max drawdown, coloured by probability
of ruin), each parameter's effect, the ranked cells and the walk-forward folds. One file with
inline SVG: opens offline, nothing fetched."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sizeguard.backtest.sweep import EngineOptions, Fold, SweepResult, parameter_effects, ranked

W, H, PAD = 720, 420, 60


def _ruin_colour(p: float | None) -> str:
    """Green (no ruin) through amber to red (certain ruin)."""
    if p is None or not math.isfinite(p):
        return "#888888"
    p = min(max(p, 0.0), 1.0)
    r = int(40 + 200 * min(1.0, 2 * p))
    g = int(170 - 130 * max(0.0, 2 * p - 1.0) - 40 * min(1.0, 2 * p))
    return f"#{r:02x}{g:02x}40"


def _axis_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


def _pct_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Ticks with as many decimals as their step needs (0.5% steps print 0.5%, not 0%)."""
    ticks = _axis_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    places = max(0, -math.floor(math.log10(step * 100) + 1e-9))
    return [(t, f"{t * 100:.{places}f}%".replace("-0%", "0%")) for t in ticks]


def frontier_svg(result: SweepResult, rank: str) -> str:
    """Each cell a dot at (max drawdown, total return), coloured by its probability of ruin;
    the cells no other cell beats on both axes are joined: the frontier."""
    pts = []
    for c, m in zip(result.cells, result.metrics, strict=True):
        x, y = m.get("max_drawdown"), m.get("total_return")
        if isinstance(x, int | float) and isinstance(y, int | float) and \
                math.isfinite(x) and math.isfinite(y):
            pts.append((float(x), float(y), m.get("probability_of_ruin"), c.label(), m.get(rank)))
    if not pts:
        return "<p>No cell has both a return and a drawdown.</p>"
    x0, x1 = 0.0, max(p[0] for p in pts) * 1.05 or 0.01
    y0, y1 = min(0.0, *(p[1] for p in pts)), max(p[1] for p in pts)
    y1 = y1 + (y1 - y0) * 0.05 or 0.01

    def sx(x: float) -> float:
        return PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD)

    def sy(y: float) -> float:
        return H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for t, text in _pct_ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{PAD}" y2="{H - PAD}" '
                   f'stroke="#eee"/><text x="{sx(t):.1f}" y="{H - PAD + 14}" '
                   f'text-anchor="middle">{text}</text>')
    for t, text in _pct_ticks(y0, y1):
        out.append(f'<line x1="{PAD}" x2="{W - PAD}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
                   f'stroke="#eee"/><text x="{PAD - 6}" y="{sy(t) + 4:.1f}" '
                   f'text-anchor="end">{text}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 18}" text-anchor="middle">max drawdown</text>')
    out.append(f'<text x="16" y="{H / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {H / 2})">total return</text>')
    best: list[tuple[float, float]] = []
    for x, y, *_ in sorted(pts, key=lambda p: (p[0], -p[1])):
        if not best or y > best[-1][1]:
            best.append((x, y))
    if len(best) > 1:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in best)
        out.append(f'<polyline points="{path}" fill="none" stroke="#333" stroke-dasharray="4 3"/>')
    same: dict[tuple[float, float, Any], list[str]] = {}
    for x, y, ruin, label, score in pts:  # cells with equal outcomes share one dot
        same.setdefault((x, y, ruin), []).append(f"{label} ({rank} {score:.4g})"
                                                if isinstance(score, float) else label)
    for (x, y, ruin), labels in same.items():
        tip = html.escape(f"return {y:.2%}, max drawdown {x:.2%}, P(ruin) {(ruin or 0):.1%}: "
                          + "; ".join(labels))
        r = 5 + 1.5 * math.log2(len(labels))
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r:.1f}" '
                   f'fill="{_ruin_colour(ruin)}" stroke="#222" stroke-width="0.5">'
                   f'<title>{tip}</title></circle>')
        if len(labels) > 1:
            out.append(f'<text x="{sx(x) + r + 2:.1f}" y="{sy(y) + 4:.1f}">x{len(labels)}</text>')
    for k, p in enumerate((0.0, 0.25, 0.5, 1.0)):
        lx = W - PAD - 200 + k * 52
        out.append(f'<circle cx="{lx}" cy="{PAD - 20}" r="5" fill="{_ruin_colour(p)}"/>'
                   f'<text x="{lx + 8}" y="{PAD - 16}">{p:.0%}</text>')
    out.append(f'<text x="{W - PAD - 210}" y="{PAD - 16}" text-anchor="end">P(ruin)</text>')
    out.append("</svg>")
    return "\n".join(out)


def effects_svg(key: str, rows: Sequence[tuple[Any, float, int]], rank: str) -> str:
    """Mean ``rank`` metric per value of one swept key, as bars."""
    w, h, pad = 340, 180, 40
    if not rows:
        return ""
    vals = [r[1] for r in rows]
    lo, hi = min(0.0, *vals), max(0.0, *vals)
    span = (hi - lo) or 1.0
    bw = (w - 2 * pad) / len(rows)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="10"><rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="14" text-anchor="middle" font-size="12">'
           f'{html.escape(key)}: mean {html.escape(rank)}</text>']
    zero = h - pad - (0 - lo) / span * (h - 2 * pad - 10)
    for k, (value, mean, count) in enumerate(rows):
        y = h - pad - (mean - lo) / span * (h - 2 * pad - 10)
        top, height = min(y, zero), abs(zero - y)
        x = pad + k * bw + bw * 0.15
        label = f"{value:.4g}" if isinstance(value, float) else str(value)
        out.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{bw * 0.7:.1f}" '
                   f'height="{max(height, 1):.1f}" fill="#4a7ab5"><title>'
                   f'{html.escape(f"{key}={label}: {mean:.4g} over {count} cell(s)")}</title></rect>'
                   f'<text x="{x + bw * 0.35:.1f}" y="{h - pad + 14}" text-anchor="middle">'
                   f'{html.escape(label)}</text><text x="{x + bw * 0.35:.1f}" y="{top - 3:.1f}" '
                   f'text-anchor="middle">{mean:.3g}</text>')
    out.append(f'<line x1="{pad}" x2="{w - pad}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#333"/>')
    out.append("</svg>")
    return "".join(out)


def _cell(v: Any, pct: bool = False) -> str:
    if not isinstance(v, int | float) or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.1%}" if pct else f"{v:,.3g}"


def sweep_html(result: SweepResult, *, rank: str, walk: Mapping[str, Sequence[Fold]],
               options: EngineOptions, computed: int, top: int = 30) -> str:
    order = ranked(result, rank)
    rows = []
    for pos, i in enumerate(order[:top], 1):
        c, m = result.cells[i], result.metrics[i]
        rows.append(f"<tr><td>{pos}</td><td>{html.escape(c.label())}</td>"
                    f"<td>{html.escape(c.candles)}</td><td>{html.escape(c.strategy)}</td>"
                    f"<td>{_cell(m.get(rank))}</td><td>{_cell(m.get('total_return'), True)}</td>"
                    f"<td>{_cell(m.get('max_drawdown'), True)}</td>"
                    f"<td>{_cell(m.get('probability_of_ruin'), True)}</td>"
                    f"<td>{m.get('trades', 0)}</td><td>{m.get('liquidations', 0)}</td></tr>")
    effects = parameter_effects(result, rank)
    folds = []
    for name, fs in walk.items():
        for k, f in enumerate(fs, 1):
            folds.append(f"<tr><td>{html.escape(name)}</td><td>{k}</td>"
                         f"<td>{f.train[0]}-{f.train[1]}</td><td>{f.test[0]}-{f.test[1]}</td>"
                         f"<td>{html.escape(f.label)}</td><td>{_cell(f.in_sample.get(rank))}</td>"
                         f"<td>{_cell(f.out_of_sample.get('total_return'), True)}</td>"
                         f"<td>{_cell(f.out_of_sample.get('max_drawdown'), True)}</td>"
                         f"<td>{_cell(f.out_of_sample.get(rank))}</td></tr>")
    walk_html = ""
    if folds:
        walk_html = (
            "<h2>Walk-forward</h2><p>The bars are cut into equal parts. Each fold chooses the "
            f"best cell by {html.escape(rank)} on the parts before it (in sample) and reports "
            "that same policy on the next part, which the choice never saw (out of sample). "
            "The ranking above is in sample over all the data; trust the out-of-sample "
            "column.</p><table><tr><th>candles</th><th>fold</th><th>chosen on bars</th>"
            "<th>reported on bars</th><th>chosen policy</th><th>in-sample "
            f"{html.escape(rank)}</th><th>OOS return</th><th>OOS max DD</th><th>OOS "
            f"{html.escape(rank)}</th></tr>{''.join(folds)}</table>")
    o = options
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>sizeguard sweep</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:3px 8px;
text-align:right}}td:nth-child(2),th:nth-child(2){{text-align:left}}.fx{{display:flex;flex-wrap:wrap;gap:8px}}
</style></head><body>
<h1>sizeguard sweep</h1>
<p>{len(result.cells)} cells ({computed} computed now, the rest reused from the cache); each
cell is one backtest with the same engine as <code>sizeguard backtest</code> (every entry sized
by <code>decide()</code>), starting equity {o.equity:,.0f}, intrabar rule {o.intrabar}, plus a
{o.mc_method} Monte Carlo of its trades ({o.mc_paths:,} paths; ruin = equity at or below
{o.ruin:.0%} of the start).</p>
<h2>Frontier</h2><p>Return against max drawdown; colour: probability of ruin. The dashed line
joins the cells no other cell beats on both.</p>
{frontier_svg(result, rank)}
<h2>Each parameter's effect</h2><div class="fx">
{''.join(effects_svg(k, rows_, rank) for k, rows_ in effects.items()) or '<p>No swept key.</p>'}
</div>
<h2>Best cells by {html.escape(rank)}</h2>
<table><tr><th>#</th><th>policy</th><th>candles</th><th>strategy</th><th>{html.escape(rank)}</th>
<th>return</th><th>max DD</th><th>P(ruin)</th><th>trades</th><th>liquidations</th></tr>
{''.join(rows)}</table>
{walk_html}
</body></html>
"""


def write_sweep_report(result: SweepResult, path: str | Path, **kw: Any) -> Path:
    p = Path(path)
    p.write_text(sweep_html(result, **kw), "utf-8")
    return p
