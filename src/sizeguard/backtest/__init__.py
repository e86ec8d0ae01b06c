"""Backtests and Monte Carlo of sizing policies.

Every entry is sized by :func:`sizeguard.core.decide.decide` (the single-decision pipeline);
the bar-walking loop is compiled with numba over the core float kernels. See docs/backtest.md.
"""

# Names the CLI needs at start-up, kept here so `sizeguard --help` does not import numba/polars.
STRATEGIES = ("ema-cross", "donchian", "file")
METHODS = ("bootstrap", "block")
