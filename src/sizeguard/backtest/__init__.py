"""Backtests and Monte Carlo of sizing policies.

Every entry is sized by :func:`sizeguard.core.decide.decide` (the single-decision pipeline);
the bar-walking loop is compiled with numba over the core float kernels. See docs/backtest.md.
"""
