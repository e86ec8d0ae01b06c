"""Differential test on real candles: at every entry of a backtest, the engine's size is the
single-decision API's size for the same account state, and that account state is the one an
independent replay of the ledger gives (equity, streak, today's PnL, symbol record, positions).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest import engine
from sizeguard.backtest.candles import Panel, align, load_many
from sizeguard.backtest.engine import BacktestResult, run_backtest
from sizeguard.backtest.signals import Signals, donchian, ema_cross
from sizeguard.config import load_policy
from sizeguard.core.decide import decide

BOOK = load_markets(None)


def day(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).toordinal()


def check(result: BacktestResult, panel: Panel) -> int:
    """Replay the ledger independently and compare with every recorded entry; returns the
    number of entries checked."""
    markets = {m: BOOK[m] for m in result.markets}
    trades = result.trades
    accepted = 0
    for rec in result.records:
        t = rec.bar
        # 1. the single-decision API, called afresh on the recorded state, agrees
        again = decide(rec.intent, rec.account, markets[rec.symbol], result.policy)
        assert again.status == rec.decision.status and again.amount == rec.decision.amount
        assert again.reasons == rec.decision.reasons and again.leverage == rec.decision.leverage
        if rec.trade >= 0:
            row = trades[rec.trade]
            assert row["amount"] == again.amount and row["entry_bar"] == t
            assert row["notional"] == again.notional and row["margin"] == again.margin
            assert row["engine_liquidation_price"] == pytest.approx(again.liquidation_price,
                                                                    rel=1e-12)
        # 2. the state it was decided on is the ledger's
        done = [x["exit_bar"] < t or (x["exit_bar"] == t and x["exit_reason"] == "signal")
                for x in trades[:accepted]]
        closed = [x for x, d in zip(trades, done, strict=False) if d]
        still = [x for x, d in zip(trades, done, strict=False) if not d]
        upnl = 0.0
        for x in still:
            j = result.markets.index(x["symbol"])
            px = panel.open[t, j] if not math.isnan(panel.open[t, j]) else panel.mark[t - 1, j]
            upnl += (1 if x["side"] == "long" else -1) * x["qty"] * (px - x["entry_price"])
        equity = (result.initial_equity + sum(x["net_pnl"] for x in closed)
                  - sum(x["entry_fee"] for x in still) + upnl)
        acc = rec.account
        assert acc.equity == pytest.approx(equity, rel=1e-9, abs=1e-6)
        streak = 0
        for x in sorted(closed, key=lambda x: (x["exit_bar"], x["trade"]))[::-1]:
            if x["net_pnl"] > 0:
                break
            streak += 1
        assert acc.losing_streak == streak
        today = sum(x["net_pnl"] for x in closed if day(x["exit_time"]) == day(int(panel.timestamp[t])))
        assert acc.realised_pnl_today == pytest.approx(today, abs=1e-6)
        for sym in result.markets:
            mine = [x for x in closed if x["symbol"] == sym]
            stats = acc.symbol_stats.get(sym)
            assert (stats.trades if stats else 0) == len(mine)
            assert (stats.wins if stats else 0) == sum(1 for x in mine if x["net_pnl"] > 0)
        assert sorted(p.symbol for p in acc.positions) == sorted(x["symbol"] for x in still)
        assert acc.peak_equity is not None and acc.peak_equity >= acc.equity
        if rec.trade >= 0:
            accepted += 1
    return len(result.records)


@pytest.mark.parametrize("preset", ["ai-atr-risk", "quantum-4x30", "viper-50x", "kraken-micro"])
def test_btc_1h_every_entry_matches_decide(preset: str) -> None:
    panel = align(load_many([shared_path("ohlcv", "coinbase", "BTC_USD-1h.csv")]))
    sig = ema_cross(panel, tp_r=2.0)
    r = run_backtest(panel, sig, [BOOK["BTC/USDT:USDT"]], load_policy(preset), record=True,
                     funding_rate=0.0 if preset != "viper-50x" else 0.0001)
    assert check(r, panel) == r.decisions > 500
    # the multipliers fed by the running state did act (ai-atr-risk: streak, win rate, drawdown)
    if preset == "ai-atr-risk":
        assert any(rec.account.losing_streak >= 3 for rec in r.records)
        assert len({rec.decision.risk_pct.__round__(3) for rec in r.records}) > 3


def test_two_symbols_with_open_positions_and_caps() -> None:
    files = [shared_path("ohlcv", "bitstamp", "BTC_USD-1d.csv"),
             shared_path("ohlcv", "bitstamp", "ETH_USD-1d.csv")]
    panel = align(load_many(files))
    sig = donchian(panel, 20, tp_r=3.0)
    markets = [BOOK["BTC/USDT:USDT"], BOOK["ETH/USDT:USDT"]]
    pol = load_policy("quantum-4x30", sets=["limits.max_positions=1"])
    r = run_backtest(panel, sig, markets, pol, record=True)
    assert check(r, panel) == r.decisions
    assert r.skips["MAX_POSITIONS"] > 0  # the gate saw the other symbol's open position
    assert any(rec.account.positions for rec in r.records)
    np.testing.assert_array_less(-1e-9, r.equity)


def test_dense_entries_every_one_matches_decide() -> None:
    """The bench's dense case (a 1-minute random walk, long EMA 60/240 crosses: ~2,600 entries
    per 1M bars, one position closing between most entries): each entry's account is rebuilt
    from the running state and sized by decide() with exactly these inputs."""
    n = 60_000
    rng = np.random.default_rng(7)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.0006, (n, 2))) * close[:, None]
    col = lambda a: np.ascontiguousarray(a.reshape(-1, 1))  # noqa: E731
    panel = Panel(("BTC",), 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 60_000,
                  col(open_), col(np.maximum(open_, close) + wick[:, 0]),
                  col(np.minimum(open_, close) - wick[:, 1]), col(close), col(close), 60_000)
    sig = ema_cross(panel, 60, 240, tp_r=2.0, allow_short=False)
    r = run_backtest(panel, sig, [BOOK["BTC/USDT:USDT"]], load_policy("ai-atr-risk"),
                     record=True)
    assert check(r, panel) == r.decisions == len(r.trades) > 100
    # the running state moved between entries: equity, streaks and the symbol's record
    assert len({rec.account.equity for rec in r.records}) == r.decisions
    assert max(rec.account.losing_streak for rec in r.records) >= 3
    assert r.records[-1].account.symbol_stats["BTC/USDT:USDT"].trades == r.decisions - 1


def test_entries_of_one_bar_share_the_account_until_one_enters() -> None:
    """Three symbols signal on the same bars and one slot is free: the first entry is taken,
    the next ones are refused. A refused entry changes nothing, so the entry after it is
    decided on the very same Account object; an accepted one changes the state, so the next
    entry gets a new Account holding that position. Every entry still matches decide() and
    the ledger's replay."""
    n, k = 3_000, 3
    rng = np.random.default_rng(11)
    start = np.array([30_000.0, 2_000.0, 0.5])
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.002, (n, k)), axis=0))
    open_ = np.vstack([start, close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.001, (n, k))) * close
    panel = Panel(("BTC", "ETH", "ADA"), 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 60_000,
                  open_, np.maximum(open_, close) + wick, np.minimum(open_, close) - wick, close,
                  close, 60_000)
    entry = np.zeros((n, k), np.int8)
    entry[20::60] = 1  # every symbol on the same bars
    exit_ = np.zeros((n, k), np.int8)
    exit_[50::60] = 1  # EXIT_LONG: flat again before the next round
    atr = np.full((n, k), np.nan)
    atr[:] = start * 0.004
    sig = Signals(entry, exit_, atr, np.full((n, k), np.nan), np.full((n, k), 2.0),
                  np.full((n, k), np.nan), "same-bars")
    markets = [BOOK["BTC/USDT:USDT"], BOOK["ETH/USDT:USDT"], BOOK["ADA/USDT:USDT"]]
    r = run_backtest(panel, sig, markets, load_policy("ai-atr-risk", sets=["limits.max_positions=1"]),
                     record=True)
    assert check(r, panel) == r.decisions
    assert r.skips["MAX_POSITIONS"] > 0
    shared = fresh = 0
    for before, rec in zip(r.records, r.records[1:], strict=False):
        if rec.bar != before.bar:
            continue
        if before.trade < 0:  # refused: nothing changed, the same object serves
            assert rec.account is before.account
            shared += 1
        else:  # accepted: the next entry sees the position it opened
            assert rec.account is not before.account
            assert [p.symbol for p in rec.account.positions] == [before.symbol]
            fresh += 1
    assert shared > 10 and fresh > 10


def test_the_loop_is_one_generator_stepped_at_each_entry_bar(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled loop is started once per run and stepped from one entry bar to the next
    (a generator: no argument conversion at each step); with progress reports it also stops
    at each chunk's end, and the results are the same."""
    n = 20_000
    rng = np.random.default_rng(3)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    col = lambda a: np.ascontiguousarray(a.reshape(-1, 1))  # noqa: E731
    panel = Panel(("BTC",), 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 60_000,
                  col(open_), col(np.maximum(open_, close) * 1.0005),
                  col(np.minimum(open_, close) * 0.9995), col(close), col(close), 60_000)
    sig = ema_cross(panel, 30, 120, tp_r=2.0)
    args = (panel, sig, [BOOK["BTC/USDT:USDT"]], load_policy("ai-atr-risk"))
    started: list[int] = []
    real = engine.walking

    def counted(*call: object) -> object:
        started.append(len(call))
        return real(*call)

    monkeypatch.setattr(engine, "walking", counted)
    direct = run_backtest(*args)
    assert direct.decisions > 50 and len(started) == 1
    reports: list[tuple[int, int]] = []
    chunked = run_backtest(*args, progress=lambda done, total: reports.append((done, total)))
    assert len(started) == 2
    done = [d for d, total in reports if total == n]
    assert len(done) == len(reports) > 100 and done == sorted(done) and done[-1] == n
    assert done[0] == n // 200  # a chunk of bars from the first
    assert chunked.trades == direct.trades and chunked.decisions == direct.decisions
    np.testing.assert_array_equal(chunked.equity, direct.equity)
