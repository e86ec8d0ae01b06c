"""Built-in strategies and the user's own signal file: sides, timing (no look-ahead), ATR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sizeguard.backtest.candles import Panel
from sizeguard.backtest.signals import (
    EXIT_LONG,
    EXIT_SHORT,
    atr_wilder,
    build_signals,
    donchian,
    ema_cross,
    signals_from_file,
)
from sizeguard.errors import InvalidInput

H = 3_600_000


def panel_of(close: np.ndarray) -> Panel:
    c = close.reshape(-1, 1).astype(float)
    return Panel(("X",), np.arange(len(close), dtype=np.int64) * H, c.copy(), c + 1.0, c - 1.0,
                 c.copy(), c.copy(), H)


def vee(n: int = 120) -> np.ndarray:
    return np.concatenate([np.linspace(200, 100, n // 2), np.linspace(100, 200, n // 2)])


def test_ema_cross_goes_long_after_the_turn_and_acts_next_bar() -> None:
    close = np.concatenate([vee(), np.linspace(200, 120, 60)])
    s = ema_cross(panel_of(close), fast=5, slow=20, tp_r=2.0)
    longs, shorts = np.nonzero(s.entry[:, 0] == 1)[0], np.nonzero(s.entry[:, 0] == -1)[0]
    assert len(longs) == 1 and len(shorts) >= 1 and 60 < longs[0] < 120 and shorts[-1] > 120
    t = longs[0]
    assert s.exit[t, 0] == EXIT_SHORT and s.exit[shorts[-1], 0] == EXIT_LONG
    assert 0.5 <= s.confidence[t, 0] < 1.0 and s.tp_r[t, 0] == 2.0
    assert s.atr[t, 0] == pytest.approx(atr_wilder(close + 1, close - 1, close, 14)[t - 1])
    # no look-ahead: changing the close of the bar where the signal acts changes nothing
    close2 = close.copy()
    close2[t] = 10.0
    assert ema_cross(panel_of(close2), fast=5, slow=20).entry[t, 0] == 1


def test_donchian_breakout_and_exit_channel() -> None:
    close = np.concatenate([np.full(30, 100.0), np.linspace(100, 130, 10), np.linspace(130, 90, 20)])
    s = donchian(panel_of(close), n=10)
    first_long = int(np.argmax(s.entry[:, 0] == 1))
    assert 30 < first_long <= 32  # the first close above the previous 10 highs, acting next bar
    assert (s.exit[:, 0] & EXIT_LONG)[first_long + 10:].any()
    assert (s.entry[:, 0] == -1).any()


def test_atr_wilder_by_hand() -> None:
    h = np.array([10.0, 11, 12, 13])
    lo = np.array([9.0, 9, 10, 12])
    c = np.array([9.5, 10, 11, 12.5])
    a = atr_wilder(h, lo, c, 2)
    # TR: 1, max(2, 1.5, 0.5) = 2, max(2, 2, 0) = 2, max(1, 2, 1) = 2
    assert np.isnan(a[0]) and a[1] == pytest.approx(1.5) and a[2] == pytest.approx(1.75)
    assert a[3] == pytest.approx(1.875)


def test_signals_from_file(tmp_path: Path) -> None:
    p = panel_of(np.linspace(100, 120, 30))
    f = tmp_path / "sig.csv"
    f.write_text(f"timestamp,entry,exit,confidence,tp_r\n{5 * H},long,0,0.9,3\n{9 * H},0,1,,\n"
                 f"{12 * H},-1,0,0.4,\n")
    s = signals_from_file(p, f)
    assert s.entry[6, 0] == 1 and s.confidence[6, 0] == 0.9 and s.tp_r[6, 0] == 3.0
    assert s.exit[10, 0] == EXIT_LONG and s.entry[13, 0] == -1
    assert not np.isnan(s.atr[20, 0])
    bad = tmp_path / "bad.csv"
    bad.write_text(f"timestamp,entry\n{5 * H + 1},1\n")
    with pytest.raises(InvalidInput, match="row 1 timestamp"):
        signals_from_file(p, bad)
    with pytest.raises(InvalidInput, match="strategy"):
        build_signals(p, "macd")
