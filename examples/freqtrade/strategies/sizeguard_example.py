"""The same trend strategy sized three ways: ``PlainTrend`` the usual freqtrade way (a fixed 20x
leverage, the wallet split over max_open_trades, a 3 x ATR stop), ``PlainTrendNoStop`` (the
same with freqtrade's static -99% stoploss only) and ``SizeguardTrend``, which
adds :class:`sizeguard.integrations.freqtrade.SizeguardMixin` and nothing else: the policy in
the config's ``"sizeguard"`` section decides leverage, stake and stop.

Signals: a 20/50 EMA cross on the candle's close enters long (up) or short (down); the opposite
cross exits. ``sizeguard_atr`` (ATR 14) tells sizeguard the volatility: its stop is
``atr_mult x ATR`` from the entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from freqtrade.strategy import IStrategy, stoploss_from_absolute

from sizeguard.integrations.freqtrade import SizeguardMixin


def _ema(s: pd.Series, n: int) -> pd.Series:
    return s.ewm(span=n, adjust=False).mean()


def _atr(df: pd.DataFrame, n: int = 14) -> pd.Series:
    prev = df["close"].shift(1)
    tr = pd.concat([df["high"] - df["low"], (df["high"] - prev).abs(),
                    (df["low"] - prev).abs()], axis=1).max(axis=1)
    return tr.ewm(alpha=1 / n, adjust=False).mean()


class TrendBase(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    can_short = True
    stoploss = -0.99  # replaced by each strategy's stop after the fill
    minimal_roi = {"0": 100}  # exits come from the signal and the stop
    startup_candle_count = 60
    process_only_new_candles = True
    use_exit_signal = True

    def populate_indicators(self, df: pd.DataFrame, metadata: dict[str, Any]) -> pd.DataFrame:
        df["ema_fast"] = _ema(df["close"], 20)
        df["ema_slow"] = _ema(df["close"], 50)
        df["sizeguard_atr"] = _atr(df)
        return df

    def populate_entry_trend(self, df: pd.DataFrame, metadata: dict[str, Any]) -> pd.DataFrame:
        above = df["ema_fast"] > df["ema_slow"]
        df["enter_long"] = (above & ~above.shift(1, fill_value=False)).astype(int)
        df["enter_short"] = (~above & above.shift(1, fill_value=False)).astype(int)
        return df

    def populate_exit_trend(self, df: pd.DataFrame, metadata: dict[str, Any]) -> pd.DataFrame:
        df["exit_long"] = df["enter_short"]
        df["exit_short"] = df["enter_long"]
        return df


class PlainTrend(TrendBase):
    """How such a strategy is often sized: a fixed leverage, the wallet split over the slots,
    a 3 x ATR stop converted to freqtrade's margin-relative ratio."""

    use_custom_stoploss = True

    def leverage(self, pair: str, current_time: datetime, current_rate: float,
                 proposed_leverage: float, max_leverage: float, entry_tag: str | None, side: str,
                 **kwargs: Any) -> float:
        return min(20.0, max_leverage)

    def custom_stoploss(self, pair: str, trade: Any, current_time: datetime, current_rate: float,
                        current_profit: float, after_fill: bool, **kwargs: Any) -> float | None:
        df, _ = self.dp.get_analyzed_dataframe(pair, self.timeframe)
        entry = df.loc[df["date"] < trade.open_date_utc]
        if entry.empty or not np.isfinite(entry["sizeguard_atr"].iloc[-1]):
            return None
        dist = 3 * float(entry["sizeguard_atr"].iloc[-1])
        stop = trade.open_rate + dist if trade.is_short else trade.open_rate - dist
        return -stoploss_from_absolute(stop, current_rate, trade.is_short, trade.leverage)


class PlainTrendNoStop(PlainTrend):
    """PlainTrend with freqtrade's static stoploss only: -99% of the margin, which at 20x is a
    4.95% price move, beyond the liquidation price (about 4.6% away at 20x)."""

    use_custom_stoploss = False


class SizeguardTrend(SizeguardMixin, TrendBase):
    """The same signals, sized by sizeguard (policy: the config's "sizeguard" section)."""
