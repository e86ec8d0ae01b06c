"""The intrabar rule on real candles: a guarded position (its stop inside the liquidation price)
is liquidated only when a bar opens beyond the stop and the liquidation price; every other
liquidation belongs to a position without a stop inside its liquidation price."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.backtest.candles import Panel, align, load_many
from sizeguard.backtest.engine import BacktestResult, run_backtest
from sizeguard.backtest.signals import ema_cross
from sizeguard.config import load_policy


def check_liquidations(r: BacktestResult, panel: Panel) -> None:
    for t in r.trades:
        if t["exit_reason"] != "liquidation":
            continue
        j = r.markets.index(t["symbol"])
        s = 1.0 if t["side"] == "long" else -1.0
        stop, liq = t["stop_price"], t["engine_liquidation_price"]
        opened = float(panel.open[t["exit_bar"], j])
        if stop is not None and s * (stop - liq) > 0:  # guarded: only a gap through both
            assert s * (opened - stop) <= 0 and s * (opened - liq) <= 0, t


@pytest.mark.parametrize("intrabar", ["worst", "ordered"])
def test_ltc_daily_ai_atr_risk_is_never_liquidated_through_its_stop(intrabar: str) -> None:
    # Regression: the old `worst` rule liquidated 5 of these 29 trades (every bar whose range
    # spanned the stop and the liquidation price); the stop lies inside liquidation and no bar
    # opened beyond it, so all of them are stops now.
    book = attach_tiers(load_markets(shared_path("markets", "binanceusdm.json")),
                        shared_path("leverage_tiers", "binanceusdm.json"))
    panel = align(load_many([shared_path("ohlcv", "bitstamp", "LTC_USD-1d.csv")]))
    r = run_backtest(panel, ema_cross(panel), [book["LTC/USDT:USDT"]],
                     load_policy("ai-atr-risk"), intrabar=intrabar)
    assert len(r.trades) == 29 and r.liquidations == 0
    assert Counter(t["exit_reason"] for t in r.trades) == {"signal": 20, "stop": 8, "end": 1}
    for t in r.trades:
        if t["exit_reason"] == "stop":  # the ATR stop, no gap on these daily bars
            assert t["exit_price"] == t["stop_price"]


@pytest.mark.parametrize("preset", ["viper-fixed-margin", "ai-atr-risk", "viper-50x"])
def test_btc_1h_liquidations_only_where_a_path_reaches_them(preset: str) -> None:
    book = load_markets(None)
    panel = align(load_many([shared_path("ohlcv", "coinbase", "BTC_USD-1h.csv")]))
    r = run_backtest(panel, ema_cross(panel, tp_r=2.0), [book["BTC/USDT:USDT"]],
                     load_policy(preset))
    assert r.trades
    check_liquidations(r, panel)
    assert all(not math.isnan(t["net_pnl"]) for t in r.trades)
