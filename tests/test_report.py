"""The interactive report (backtest/report.py) on real candles: one self-contained file with
plotly.js inlined once, every chart, each policy with its own colour and dash, the Monte Carlo
fan built from the same resampling as the summary, and the plain SVG of ``--plot`` with one
dash style per policy. The browser test (tests/test_browser.py) renders it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest.candles import align, load_many
from sizeguard.backtest.engine import BacktestResult, run_backtest
from sizeguard.backtest.montecarlo import simulate
from sizeguard.backtest.report import DASHES, equity_svg, html_report, montecarlo_fan
from sizeguard.backtest.signals import ema_cross
from sizeguard.config import load_policy

pytestmark = pytest.mark.timeout(180)
POLICIES = ("viper-fixed-margin", "ai-atr-risk", "viper-50x")


@pytest.fixture(scope="module")
def results() -> list[BacktestResult]:
    panel = align(load_many([shared_path("ohlcv", "coinbase", "BTC_USD-1d.csv")]))
    sig = ema_cross(panel, fast=5, slow=20, tp_r=2.0)
    book = load_markets(None)
    return [run_backtest(panel, sig, [book["BTC/USDT:USDT"]], load_policy(p)) for p in POLICIES]


def test_one_file_with_plotly_inlined_once_and_every_chart(results: list[BacktestResult]
                                                           ) -> None:
    mcs = [simulate([t["return_on_equity"] for t in r.trades], n_paths=300, method="block",
                    initial=10_000.0, policy=r.name) for r in results]
    html = html_report(results, montecarlo=mcs)
    assert html.count("plotly.js v") == 1  # the library once, not once per chart
    assert not re.search(r"<script[^>]*\bsrc=", html)  # nothing loaded from elsewhere
    for div in ("equity", "risk", "equity-panels", "drawdown", "per-trade", "skips",
                "montecarlo"):
        assert html.count(f'id="{div}"') == 1, div
    for p in POLICIES:
        assert f"{p}: risk per trade, % of equity" in html
        assert f"{p}: P(ruin)" in html
    # each policy's own dash style on the equity chart
    used = re.findall(r'"dash":"(\w+)"', html)
    assert set(DASHES[: len(POLICIES)]) <= set(used)


def test_the_fan_is_the_summarys_resampling(results: list[BacktestResult]) -> None:
    r = results[1]
    returns = [t["return_on_equity"] for t in r.trades]
    run = simulate(returns, n_paths=400, method="block", block=5, initial=10_000.0, seed=0)
    k, q = montecarlo_fan(returns, run, points=10, paths=400)
    assert k[0] == 0 and k[-1] == run.n_trades and np.all(np.diff(k) > 0)
    assert np.all(q[:, 0] == 10_000.0)  # every path starts at the initial equity
    assert np.all(np.diff(q, axis=0) >= 0)  # p5 <= p25 <= p50 <= p75 <= p95 at every k
    # after all n trades, with the same paths and seed: exactly the summary's percentiles
    np.testing.assert_allclose(q[:, -1], np.percentile(run.final, (5, 25, 50, 75, 95)))


def test_plot_svg_gives_each_policy_its_own_dash(results: list[BacktestResult]) -> None:
    svg = equity_svg(results)
    lines = re.findall(r"<polyline[^>]*>", svg)
    assert len(lines) == len(POLICIES)
    dashes = [m.group(1) if (m := re.search(r'stroke-dasharray="([^"]+)"', t)) else "solid"
              for t in lines]
    assert len(set(dashes)) == len(POLICIES)  # solid, dashed, dotted: none hides another
