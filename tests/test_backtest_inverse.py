"""Inverse (coin-margined) contracts in the backtest: the account's money is in the coin.

The market: an inverse perpetual TEST/USD:TEST on Binance COIN-M terms, one contract = 100 USD
face, taker fee 0.1%, one tier in coin (maintenance rate 0.5%, no maintenance amount). The
wallet holds 1 TEST; ``decide()`` sizes in USD with the coin valued at the entry's price. Each
entry a fixed 10,000 USD notional (100 contracts) at 10x: margin 1,000 USD = 0.1 TEST at 10,000.

An inverse position's PnL in coin is ``N (1/entry - 1/exit)`` for a long (``-`` for a short),
fees ``rate x N / price`` in coin at the fill price; Binance's COIN-M liquidation price of a long
is ``EP (1 + mmr) / (1 + C/N)``, of a short ``EP (1 - mmr) / (1 - C/N)`` (core.liquidation).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest.candles import Panel, align, load_many
from sizeguard.backtest.engine import run_backtest
from sizeguard.backtest.signals import Signals, ema_cross
from sizeguard.cli.main import app
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict
from sizeguard.core.tiers import Tier
from sizeguard.errors import InvalidInput

H = 3_600_000
N = 10_000.0
INV = MarketRules(symbol="TEST/USD:TEST", kind="swap", linear=False, inverse=True,
                  contract_size=100.0, amount_step=1.0, price_tick=0.1, min_amount=1.0,
                  taker=0.001, maker=0.0005, max_leverage=125.0, base="TEST", quote="USD",
                  settle="TEST", exchange="binancecoinm",
                  tiers=(Tier(1, 0.0, math.inf, 0.005, 125.0, 0.0),))
FLAT = (10_000.0, 10_000.0, 10_000.0, 10_000.0)


def panel(bars: list[tuple[float, float, float, float]]) -> Panel:
    a = np.array(bars, dtype=float)
    return Panel(("TEST",), np.arange(len(bars), dtype=np.int64) * H, a[:, [0]], a[:, [1]],
                 a[:, [2]], a[:, [3]], a[:, [3]].copy(), H)


def signals(n: int, entries: dict[int, int], atr: float = 200.0) -> Signals:
    entry = np.zeros((n, 1), np.int8)
    for t, s in entries.items():
        entry[t, 0] = s
    return Signals(entry, np.zeros((n, 1), np.int8), np.full((n, 1), atr),
                   np.full((n, 1), np.nan), np.full((n, 1), np.nan), np.full((n, 1), np.nan),
                   "hand")


def policy(mode: str = "isolated", **extra: Any) -> Policy:
    return policy_from_dict({
        "name": "inverse", "sizing": {"model": "fixed_notional", "notional": N},
        "stop": {"atr_mult": 1.5}, "leverage": {"value": 10, "max": 100, "margin_mode": mode},
        "liquidation": {"guard": "off"}, **extra})


def test_inverse_long_stop_in_coin() -> None:
    # Long 100 contracts at 10,000 (stop 10,000 - 1.5 x 200 = 9,700). Bar 2's low 9,600 spans
    # the stop, which lies inside liquidation (10,000 x 1.005 / 1.1 = 9,136.36): it fills at
    # 9,700. PnL 10,000 (1/10,000 - 1/9,700) = -0.0309278 TEST; entry fee 10 USD / 10,000 =
    # 0.001 TEST, exit fee 10 USD / 9,700 = 0.00103093 TEST; net -0.0329588; equity 0.9670412.
    r = run_backtest(panel([FLAT, FLAT, (10_000, 10_050, 9_600, 9_650), FLAT]),
                     signals(4, {1: 1}), [INV], policy(), equity=1.0)
    (t,) = r.trades
    assert r.currency == "TEST"
    assert t["amount"] == "100" and t["notional"] == pytest.approx(N)
    # margin and risk in TEST too: the decision's 1,000 USD of margin at 10,000, and its risk,
    # 10,000 x (3% + 0.1% + 0.1%) = 320 USD, at 10,000 (the price its equity was valued at)
    assert t["margin"] == pytest.approx(0.1) and t["risk"] == pytest.approx(0.032)
    assert t["stop_price"] == pytest.approx(9_700.0)
    assert t["liquidation_price"] == pytest.approx(10_000 * 1.005 / 1.1)
    assert t["engine_liquidation_price"] == pytest.approx(t["liquidation_price"])
    assert t["exit_reason"] == "stop" and t["exit_price"] == pytest.approx(9_700.0)
    assert t["gross_pnl"] == pytest.approx(N * (1 / 10_000 - 1 / 9_700))
    assert t["entry_fee"] == pytest.approx(0.001) and t["exit_fee"] == pytest.approx(10 / 9_700)
    assert t["net_pnl"] == pytest.approx(-0.0329588, abs=1e-7)
    assert t["equity_at_entry"] == pytest.approx(1.0)  # in TEST, as the ledger's money
    assert r.equity[1] == pytest.approx(0.999)  # marked at 10,000: only the entry fee
    assert r.equity[-1] == pytest.approx(1 - 0.0329588, abs=1e-7)


def test_inverse_short_stop_in_coin() -> None:
    # Short at 10,000, stop 10,300; bar 2's high 10,400 fills it at 10,300. PnL
    # -10,000 (1/10,000 - 1/10,300) = -0.0291262 TEST (less than the long's -0.0309 for the
    # same 3% move: the coin is worth more when the short loses); exit fee 10 / 10,300 =
    # 0.00097087; net -0.0291262 - 0.001 - 0.00097087 = -0.0310971. Liquidation
    # 10,000 x 0.995 / 0.9 = 11,055.56.
    r = run_backtest(panel([FLAT, FLAT, (10_000, 10_400, 9_950, 10_350), FLAT]),
                     signals(4, {1: -1}), [INV], policy(), equity=1.0)
    (t,) = r.trades
    assert t["liquidation_price"] == pytest.approx(10_000 * 0.995 / 0.9)
    assert t["exit_reason"] == "stop" and t["exit_price"] == pytest.approx(10_300.0)
    assert t["gross_pnl"] == pytest.approx(-N * (1 / 10_000 - 1 / 10_300))
    assert t["exit_fee"] == pytest.approx(10 / 10_300)
    assert t["net_pnl"] == pytest.approx(-0.0310971, abs=1e-7)
    assert r.equity[-1] == pytest.approx(1 - 0.0310971, abs=1e-7)


def test_inverse_liquidation_loses_the_coin_collateral() -> None:
    # No stop: a long at 10,000, 10x, is liquidated at 9,136.36 (bar 2's low 9,000); its
    # collateral, 1,000 USD at entry = 0.1 TEST, is lost whole: net -0.1 - 0.001 = -0.101.
    r = run_backtest(panel([FLAT, FLAT, (10_000, 10_000, 9_000, 9_100), FLAT]),
                     signals(4, {1: 1}, atr=math.nan), [INV], policy(), equity=1.0)
    (t,) = r.trades
    assert t["exit_reason"] == "liquidation"
    assert t["exit_price"] == pytest.approx(10_000 * 1.005 / 1.1)
    assert t["gross_pnl"] == pytest.approx(-0.1) and t["net_pnl"] == pytest.approx(-0.101)
    assert r.liquidations == 1 and r.equity[-1] == pytest.approx(0.899)


def test_inverse_funding_is_paid_in_coin_and_moves_liquidation() -> None:
    # Funding 1% at bar 1's close (one 8h funding time inside bars of 8h): a long pays
    # 1% x 10,000 USD / 10,000 = 0.01 TEST, from the wallet and its collateral (0.1 -> 0.09
    # TEST, 900 USD at entry): liquidation moves to 10,000 x 1.005 / 1.09 = 9,220.18. Bar 2's low
    # 9,200 reaches it (and not the old 9,136.36): net -0.09 - 0.001 - 0.01 = -0.101.
    eight = 8 * H
    p = panel([FLAT, FLAT, (10_000, 10_000, 9_200, 9_300), FLAT])
    p = Panel(p.symbols, np.arange(4, dtype=np.int64) * eight, p.open, p.high, p.low, p.close,
              p.mark, eight)
    r = run_backtest(p, signals(4, {1: 1}, atr=math.nan), [INV], policy(), equity=1.0,
                     funding_rate=0.01)
    (t,) = r.trades
    assert t["funding"] == pytest.approx(0.01)
    assert t["exit_reason"] == "liquidation" and t["exit_bar"] == 2
    assert t["exit_price"] == pytest.approx(10_000 * 1.005 / 1.09)
    assert t["gross_pnl"] == pytest.approx(-0.09) and t["net_pnl"] == pytest.approx(-0.101)


def test_inverse_cross_shares_the_coin_wallet() -> None:
    # Cross: the collateral is the wallet, 1 - 0.001 (fee) = 0.999 TEST = 9,990 USD at entry:
    # LP = 10,000 x 1.005 / (1 + 0.999) = 5,027.51. A low of 6,000 liquidates nothing (it
    # would liquidate the isolated position at 9,136); the position closes at the end, 6,500:
    # PnL 10,000 (1/10,000 - 1/6,500) = -0.538462; exit fee 10 / 6,500; equity
    # 0.999 - 0.538462 - 0.001538 = 0.459.
    bars = [FLAT, FLAT, (10_000, 10_000, 6_000, 6_500), (6_500, 6_500, 6_500, 6_500)]
    r = run_backtest(panel(bars), signals(4, {1: 1}, atr=math.nan), [INV], policy("cross"),
                     equity=1.0)
    (t,) = r.trades
    assert t["exit_reason"] == "end" and r.liquidations == 0
    assert r.equity[-1] == pytest.approx(0.999 + N * (1 / 10_000 - 1 / 6_500) - 10 / 6_500)
    # a low of 5,000 reaches 5,027.51: the wallet is lost, equity 0
    bars[2] = (10_000, 10_000, 5_000, 5_500)
    r = run_backtest(panel(bars), signals(4, {1: 1}, atr=math.nan), [INV], policy("cross"),
                     equity=1.0)
    (t,) = r.trades
    assert t["exit_reason"] == "liquidation"
    assert t["exit_price"] == pytest.approx(10_000 * 1.005 / 1.999)
    assert t["gross_pnl"] == pytest.approx(-0.999) and r.equity[-1] == pytest.approx(0.0)


def test_mixed_settle_currencies_are_refused() -> None:
    linear = MarketRules(symbol="TEST/USDT:USDT", kind="swap", linear=True, inverse=False,
                         contract_size=1.0, amount_step=0.001, price_tick=0.1, taker=0.001,
                         base="TEST", quote="USDT", settle="USDT")
    two = Panel(("A", "B"), np.arange(2, dtype=np.int64) * H, *([np.full((2, 2), 1e4)] * 5), H)
    sig = Signals(*(np.zeros((2, 2), np.int8),) * 2, *(np.full((2, 2), np.nan),) * 4)
    with pytest.raises(InvalidInput, match=r"TEST/USDT:USDT.*coin"):
        run_backtest(two, sig, [INV, linear], policy())
    other = replace(INV, symbol="ETH/USD:ETH", base="ETH", settle="ETH")
    with pytest.raises(InvalidInput, match=r"different coins \(ETH, TEST\)"):
        run_backtest(two, sig, [INV, other], policy())


def test_binance_coinm_btc_on_real_candles() -> None:
    """Binance COIN-M BTC/USD:BTC (ccxt's market: 100 USD contracts, taker 0.05%, no tiers:
    the policy's 0.5%) on Coinbase BTC/USD 1h, 1 BTC: every trade's gross result is the coin
    formula recomputed from the ledger, every fee is in coin at its fill, and the ledger adds up
    to the final equity in BTC."""
    m = load_markets(shared_path("markets", "binancecoinm.json"))["BTC/USD:BTC"]
    assert m.inverse and m.contract_size == 100.0
    p = align(load_many([shared_path("ohlcv", "coinbase", "BTC_USD-1h.csv")]))
    pol = policy_from_dict({"name": "coinm", "sizing": {"model": "risk", "risk": 0.01},
                            "stop": {"atr_mult": 1.5}, "leverage": {"value": 5, "max": 20}})
    r = run_backtest(p, ema_cross(p, tp_r=2.0), [m], pol, equity=1.0)
    assert r.currency == "BTC" and len(r.trades) > 100
    for t in r.trades:
        n, e, x = t["notional"], t["entry_price"], t["exit_price"]
        assert n == pytest.approx(float(t["amount"]) * 100.0)  # fixed USD face
        assert t["entry_fee"] == pytest.approx(n * 0.0005 / e)
        if t["exit_reason"] != "liquidation":
            s = 1.0 if t["side"] == "long" else -1.0
            assert t["gross_pnl"] == pytest.approx(s * n * (1 / e - 1 / x))
            assert t["exit_fee"] == pytest.approx(n * 0.0005 / x)
    total = sum(t["net_pnl"] for t in r.trades)
    assert r.equity[-1] == pytest.approx(1.0 + total)
    # 1% of equity at risk per trade, in BTC: a losing stop costs about 0.01 of the equity
    # decide() sized 1% of the equity valued in USD at the entry: a stop costs about 1% of the
    # equity in BTC (fees in the risk; a gap through the stop costs more)
    stops = [-t["net_pnl"] / t["equity_at_entry"] for t in r.trades if t["exit_reason"] == "stop"]
    assert 0.0095 < float(np.median(stops)) <= 0.01 and max(stops) < 0.0125
    # and the ledger's risk, in BTC like the equity, is the 1% the policy asked for, less what
    # rounding down to whole 100 USD contracts takes off
    planned = [t["risk"] / t["equity_at_entry"] for t in r.trades]
    assert max(planned) <= 0.01 * (1 + 1e-9) and float(np.median(planned)) > 0.0098


def test_cli_backtests_a_coin_margined_market_cross_and_isolated() -> None:
    """``sizeguard backtest`` takes the COIN-M market and a cross policy (it refused both)."""
    args = ["backtest", "--candles", str(shared_path("ohlcv", "bitstamp", "BTC_USD-1d.csv")),
            "--markets", str(shared_path("markets", "binancecoinm.json")),
            "--symbol", "BTC/USD:BTC", "--equity", "1", "--preset", "ai-atr-risk", "--json"]
    out = {}
    for mode in ("isolated", "cross"):
        r = CliRunner().invoke(app, [*args, "--set", f"leverage.margin_mode={mode}"])
        assert r.exit_code == 0, r.output
        (m,) = json.loads(r.stdout)
        assert m["currency"] == "BTC" and m["trades"] > 10
        assert 0.5 < m["final_equity"] < 2.0  # BTC, not 10,000 of anything
        out[mode] = m
    # the same entries: cross margin moves liquidation prices, not the trades' sizes here
    assert out["cross"]["trades"] == out["isolated"]["trades"]


def test_inverse_add_merges_contracts_at_the_harmonic_entry() -> None:
    # Long 10,000 USD at 10,000, then (limits.allow_add) 10,000 more at 9,000, no stop: the
    # faces add (20,000) at the contract-weighted harmonic mean 20,000 / (1 + 10/9) = 9,473.68;
    # the coin collateral 0.1 + 1,000/9,000 = 0.211111 TEST (2,000 USD at 9,473.68):
    # liquidation 9,473.68 x 1.005 / 1.1 = 8,655.50. Fees 0.001 + 10/9,000 TEST. At 9,000 the
    # equity is 0.999 - 0.001111 + 20,000 (1/9,473.68 - 1/9,000) = 0.886778; closed at 10,000:
    # PnL 20,000 (1/9,473.68 - 1/10,000) = 0.111111 (= the second fill's 10,000 (1/9,000 -
    # 1/10,000)), exit fee 0.002, net 0.107.
    bars = [FLAT, FLAT, (9_000.0,) * 4, FLAT]
    r = run_backtest(panel(bars), signals(4, {1: 1, 2: 1}, atr=math.nan), [INV],
                     policy(limits={"allow_add": True}), equity=1.0)
    (t,) = r.trades
    assert r.adds == 1 and t["amount"] == "200" and t["notional"] == pytest.approx(20_000)
    assert t["entry_price"] == pytest.approx(20_000 / (1 + 10 / 9))
    assert t["margin"] == pytest.approx(0.1 + 1_000 / 9_000)  # TEST
    assert t["liquidation_price"] == pytest.approx(t["entry_price"] * 1.005 / 1.1)
    assert t["entry_fee"] == pytest.approx(0.001 + 10 / 9_000)
    assert r.equity[2] == pytest.approx(0.999 - 10 / 9_000 + 20_000 * (1 / t["entry_price"]
                                                                        - 1 / 9_000))
    assert t["gross_pnl"] == pytest.approx(10_000 * (1 / 9_000 - 1 / 10_000))
    assert t["net_pnl"] == pytest.approx(0.107) and r.equity[-1] == pytest.approx(1.107)


@pytest.mark.parametrize("command", ["backtest", "sweep"])
def test_cli_asks_for_the_equity_of_a_coin_margined_account(command: str, tmp_path: Path) -> None:
    """A coin-margined account is kept in the coin: the linear default (10,000) would start the
    run with 10,000 BTC. Without --equity the command refuses (exit 2, one line naming the
    option, the market and the coin; the candles' gap warnings aside) and writes nothing."""
    report = tmp_path / "r.html"
    args = [command, "--candles", str(shared_path("ohlcv", "bitstamp", "BTC_USD-1d.csv")),
            "--markets", str(shared_path("markets", "binancecoinm.json")),
            "--symbol", "BTC/USD:BTC", "--preset", "ai-atr-risk", "--report", str(report)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    (line,) = [x for x in r.stderr.splitlines() if not x.startswith("warning: ")]  # candle gaps
    assert line.startswith("error: ") and "--equity" in line and "BTC/USD:BTC" in line and "BTC" in line
    assert not report.exists()
