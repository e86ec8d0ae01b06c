"""The loop's flat stretch (engine.flat_run): bars with no position open, up to the next entry
signal, worked by hand: the equity is the cash, the peak follows it, and the day's PnL is reset
exactly when some bar of the stretch lies in another day than the account's."""

from __future__ import annotations

import numpy as np
import pytest

from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest import engine
from sizeguard.backtest.candles import Panel
from sizeguard.backtest.engine import DAY_MS, BacktestResult, run_backtest
from sizeguard.backtest.entries import A_CASH, A_DAY, A_DAY_PNL, A_PEAK, NA
from sizeguard.backtest.signals import ema_cross
from sizeguard.config import load_policy


def _run(days: list[float], entry_at: list[int], day: float = 5.0,
         open_nan: tuple[int, ...] = ()) -> tuple[int, np.ndarray, np.ndarray]:
    n = len(days)
    ts = (np.array(days) * DAY_MS).astype(np.int64)
    op = np.full((n, 1), 100.0)
    for t in open_nan:
        op[t, 0] = np.nan
    entry = np.zeros((n, 1), np.int8)
    entry[entry_at, 0] = 1
    acct = np.zeros(NA)
    acct[A_CASH], acct[A_PEAK], acct[A_DAY], acct[A_DAY_PNL] = 1_000.0, 1_200.0, day, -30.0
    equity = np.full(n, np.nan)
    gross = np.full(n, np.nan)
    end = engine.flat_run(0, n, ts, op, entry, np.flatnonzero(entry[:, 0]), acct, equity, gross)
    assert gross.tolist()[:end] == [0.0] * end and np.isnan(gross[end:]).all()  # no exposure
    return int(end), acct, equity


def test_stops_at_the_next_signal_with_an_open() -> None:
    # a signal on a bar without an open (NaN) is no entry: the stretch runs on to bar 4
    end, acct, equity = _run([5.1, 5.2, 5.3, 5.4, 5.5, 5.6], [2, 4], open_nan=(2,))
    assert end == 4
    assert equity.tolist()[:4] == [1_000.0] * 4 and np.isnan(equity[4:]).all()
    assert acct[A_PEAK] == 1_200.0  # the cash is below the peak
    assert acct[A_DAY] == 5.0 and acct[A_DAY_PNL] == -30.0  # the same day: PnL kept


def test_a_new_day_resets_the_day_pnl() -> None:
    end, acct, _ = _run([5.5, 5.9, 6.1, 6.2], [])
    assert end == 4 and acct[A_DAY] == 6.0 and acct[A_DAY_PNL] == 0.0


def test_timestamps_out_of_order_still_count_their_days() -> None:
    # day 5 -> 6 -> 5: the day changed (as a bar-by-bar walk sees it) and ends on day 5
    _, acct, _ = _run([5.5, 6.1, 5.7], [])
    assert acct[A_DAY] == 5.0 and acct[A_DAY_PNL] == 0.0
    # the account's first day (-1: none yet) is always left
    _, acct, _ = _run([5.5, 5.6], [], day=-1.0)
    assert acct[A_DAY] == 5.0 and acct[A_DAY_PNL] == 0.0


def test_a_signal_on_the_first_bar_runs_nothing() -> None:
    end, acct, equity = _run([5.5, 5.6], [0])
    assert end == 0 and np.isnan(equity).all() and acct[A_DAY_PNL] == -30.0


def test_the_peak_follows_the_cash() -> None:
    n = 3
    ts = (np.array([5.1, 5.2, 5.3]) * DAY_MS).astype(np.int64)
    acct = np.zeros(NA)
    acct[A_CASH], acct[A_PEAK], acct[A_DAY] = 1_500.0, 1_200.0, 5.0
    equity = np.full(n, np.nan)
    engine.flat_run(0, n, ts, np.full((n, 1), 1.0), np.zeros((n, 1), np.int8),
                    np.zeros(0, np.int64), acct, equity, np.empty(n))
    assert acct[A_PEAK] == 1_500.0 and equity.tolist() == [1_500.0] * 3


@pytest.mark.parametrize("sets", [[], ["limits.allow_add=true"], ['leverage.margin_mode="cross"']])
@pytest.mark.parametrize("chunked", [False, True])
def test_every_bar_of_the_curves_is_written(monkeypatch: pytest.MonkeyPatch, sets: list[str],
                                            chunked: bool) -> None:
    # the run allocates the equity and exposure curves without filling them: the loop writes
    # every bar (flat stretches, bars in position, entry bars, chunk ends, the last bar)
    marker = 7.777e77
    rng = np.random.default_rng(5)
    n, k = 6_000, 2
    close = np.array([30_000.0, 2_000.0]) * np.exp(np.cumsum(rng.normal(0, 0.003, (n, k)), 0))
    open_ = np.vstack([close[:1], close[:-1]])
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    for a in (open_, high, low, close):
        a[1_000:1_500, 1] = np.nan  # a hole in the second symbol
    mark = close.copy()
    mark[1_000:1_500, 1] = close[999, 1]
    ts = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 300_000
    panel = Panel(("BTC", "ETH"), ts, open_, high, low, close, mark, 300_000)
    book = load_markets(None)

    def run() -> BacktestResult:
        return run_backtest(panel, ema_cross(panel, 10, 40, tp_r=2.0),
                            [book["BTC/USDT:USDT"], book["ETH/USDT:USDT"]],
                            load_policy("ai-atr-risk", None, sets),
                            progress=(lambda done, total: None) if chunked else None)

    # once unpatched first: numba compiles the signals' and the loop's kernels here (in a fresh
    # checkout nothing is cached), and a kernel compiled while np.empty is the patch below
    # cannot be typed (the test failed in a clone whose first backtest this was)
    run()
    real_empty = np.empty
    monkeypatch.setattr(np, "empty", lambda shape, *a, **kw: np.full(shape, marker)
                        if isinstance(shape, int) else real_empty(shape, *a, **kw))
    result = run()
    assert result.decisions > 20
    assert not (result.equity == marker).any() and not (result.gross == marker).any()
    assert not np.isnan(result.equity).any() and not np.isnan(result.gross).any()
