"""A REAL freqtrade backtest (``examples/freqtrade/backtest.sh``: freqtrade in its own
environment, offline, Binance USD-M futures with leverage, the BTC and XRP perpetual candles
of the shared data, the real Binance markets injected) of the example strategy with
:class:`~sizeguard.integrations.freqtrade.SizeguardMixin`, checked on freqtrade's own trade
export against sizeguard:

* each trade's stake is its margin: stake x leverage = amount x open rate;
* each amount is a whole number of the market's lots and is exactly what ``decide()`` gives for
  the account state the mixin logged, and that account is freqtrade's (its equity is the
  starting balance plus the profit of the trades closed before);
* leverage is never above the tier for the trade's notional;
* freqtrade's liquidation price lies beyond the stop, and the stop freqtrade placed is the
  decision's;
* max positions and the exposure caps hold;
* ``sizeguard backtest`` reads freqtrade's candles and replays the export to the same exits.

Needs the freqtrade environment (``examples/freqtrade/setup.sh``; ``scripts/test`` prepares
it): skipped with the reason without it, failed under CI=true. Runtime 60-100 s (freqtrade
starting and backtesting two months of 5-minute candles, then the replay).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, SHARED_DATA, shared_path
from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position, SymbolStats
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketBook
from sizeguard.core.tiers import find_tier

pytestmark = [pytest.mark.freqtrade, pytest.mark.timeout(900)]

VENV = Path(os.environ.get("FREQTRADE_VENV", ROOT / ".venv-freqtrade"))
STRATEGY = "SizeguardTrend"
PAIRS = {"BTC/USDT:USDT", "XRP/USDT:USDT"}


def _freqtrade_ready() -> None:
    if not (VENV / "bin" / "freqtrade").exists():
        why = f"freqtrade's environment {VENV} is missing: run examples/freqtrade/setup.sh"
        if os.environ.get("CI"):
            pytest.fail(why + " (scripts/test prepares it under CI)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared_path("markets", "binanceusdm.json")
    _freqtrade_ready()
    out = tmp_path_factory.mktemp("freqtrade")
    env = {**os.environ, "SIZEGUARD_SHARED_DATA": str(SHARED_DATA)}
    env.pop("SIZEGUARD_DECISION_LOG", None)
    done = subprocess.run([str(ROOT / "examples" / "freqtrade" / "backtest.sh"), str(out), STRATEGY],
                          env=env, capture_output=True, text=True, timeout=850, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


@pytest.fixture(scope="module")
def trades(run: Path) -> list[dict[str, Any]]:
    (archive,) = glob.glob(str(run / STRATEGY / "backtest-result-*.zip"))
    with zipfile.ZipFile(archive) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".json") and not n.endswith("_config.json")]
        result = json.loads(z.read(name))
    out: list[dict[str, Any]] = result["strategy"][STRATEGY]["trades"]
    return out


@pytest.fixture(scope="module")
def decisions(run: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The accepted decisions freqtrade acted on, by (pair, side, time)."""
    out = {}
    for d in _jsonl(run / STRATEGY / "decisions.jsonl"):
        if d["status"] == "accepted":
            out[(d["pair"], d["side"], d["time"])] = d  # the last decision at that time wins
    return out


@pytest.fixture(scope="module")
def stops(run: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The stops the mixin placed after each fill, with freqtrade's liquidation price."""
    return {(e["pair"], e["side"], e["time"]): e for e in _jsonl(run / STRATEGY / "events.jsonl")
            if e["event"] == "stop"}


@pytest.fixture(scope="module")
def book() -> MarketBook:
    return attach_tiers(load_markets(shared_path("markets", "binanceusdm.json")),
                        shared_path("leverage_tiers", "binanceusdm.json"))


@pytest.fixture(scope="module")
def settings(run: Path) -> dict[str, Any]:
    config = json.loads((run / "config.json").read_text())
    section: dict[str, Any] = config["sizeguard"]
    return {**section, "starting_balance": config["dry_run_wallet"]}


def _iso(ts: str) -> str:
    return datetime.fromisoformat(ts).isoformat()


def _key(t: dict[str, Any]) -> tuple[str, str, str]:
    return t["pair"], "short" if t["is_short"] else "long", _iso(t["open_date"])


def test_the_backtest_traded_both_pairs_both_ways(trades: list[dict[str, Any]]) -> None:
    assert len(trades) > 50
    assert {t["pair"] for t in trades} == PAIRS
    assert {t["is_short"] for t in trades} == {True, False}
    assert {t["leverage"] for t in trades} - {1.0}, "futures with leverage"


def test_stake_is_the_margin(trades: list[dict[str, Any]]) -> None:
    for t in trades:
        assert t["stake_amount"] * t["leverage"] == pytest.approx(t["amount"] * t["open_rate"],
                                                                  rel=1e-9), t


def test_amount_is_on_the_lot_and_is_the_decision(trades: list[dict[str, Any]], book: MarketBook,
                                                  decisions: dict[tuple[str, str, str],
                                                                  dict[str, Any]],
                                                  settings: dict[str, Any]) -> None:
    policy = load_policy(settings["preset"], None,
                         [f"{k}={json.dumps(v)}" for k, v in settings["overrides"].items()])
    closed_profit = 0.0
    by_close = sorted(trades, key=lambda t: t["close_timestamp"])
    for t in sorted(trades, key=lambda t: t["open_timestamp"]):
        market = book[t["pair"]]
        lots = t["amount"] / market.amount_step
        assert lots == pytest.approx(round(lots), abs=1e-6), t  # a whole number of lots
        d = decisions[_key(t)]
        assert float(d["amount"]) == t["amount"] and d["leverage"] == t["leverage"], (d, t)
        # the account the mixin decided on is freqtrade's wallet: the starting balance plus
        # the profit of every trade closed before this one opened (one closed on the same
        # candle counts or not, by the order freqtrade walks the pairs in)
        closed_profit = sum(x["profit_abs"] for x in by_close
                            if x["close_timestamp"] < t["open_timestamp"])
        same = sum(x["profit_abs"] for x in by_close if x is not t
                   and x["close_timestamp"] == t["open_timestamp"])
        acc = d["account"]
        assert any(acc["equity"] == pytest.approx(settings["starting_balance"] + closed_profit + c,
                                                  rel=1e-9) for c in {0.0, same}), t
        account = Account(
            equity=acc["equity"], available=acc["available"],
            positions=tuple(Position(p["symbol"], p["side"], p["notional"], p["margin"])
                            for p in acc["positions"]),
            peak_equity=acc["peak_equity"], realised_pnl_today=acc["realised_pnl_today"],
            losing_streak=acc["losing_streak"],
            symbol_stats={s: SymbolStats(n, w) for s, (n, w) in acc["symbol_stats"].items()},
            last_trade_at=acc["last_trade_at"])
        again = decide(Intent(symbol=t["pair"], side=d["side"], **d["intent"]), account, market,
                       policy)
        assert again.accepted and again.amount == d["amount"], (again.to_dict(), t)
        assert again.leverage == t["leverage"]
        assert float(again.amount) == t["amount"]
    assert closed_profit != 0.0


def test_leverage_within_the_tier(trades: list[dict[str, Any]], book: MarketBook) -> None:
    for t in trades:
        market = book[t["pair"]]
        tier = find_tier(market.tiers, t["amount"] * t["open_rate"])
        assert tier is not None and t["leverage"] <= tier.max_leverage, t


def test_liquidation_lies_beyond_the_decided_stop(trades: list[dict[str, Any]],
                                                  stops: dict[tuple[str, str, str],
                                                              dict[str, Any]],
                                                  decisions: dict[tuple[str, str, str],
                                                                  dict[str, Any]],
                                                  book: MarketBook) -> None:
    liquidated = [t for t in trades if t["exit_reason"] == "liquidation"]
    assert liquidated == []
    for t in trades:
        d = decisions[_key(t)]
        e = stops[_key(t)]
        stop, liq = d["stop_price"], e["liquidation_price"]
        assert e["stop_price"] == stop and liq is not None
        tick = book[t["pair"]].price_tick
        if t["is_short"]:
            assert liq > stop, t
        else:
            assert liq < stop, t
        # the stop freqtrade placed is the decision's, on its price tick
        assert t["stop_loss_abs"] == pytest.approx(stop, abs=tick * 1.0001), (t, stop)


def test_max_positions_and_exposure_caps(trades: list[dict[str, Any]],
                                         decisions: dict[tuple[str, str, str], dict[str, Any]],
                                         settings: dict[str, Any]) -> None:
    over = settings["overrides"]
    capped = 0
    for t in trades:
        open_now = [x for x in trades
                    if x["open_timestamp"] <= t["open_timestamp"] < x["close_timestamp"]]
        assert len(open_now) <= over["limits.max_positions"]
        notional = t["amount"] * t["open_rate"]
        assert notional <= over["limits.max_notional"] * (1 + 1e-9)
        assert sum(x["amount"] * x["open_rate"] for x in open_now) <= over[
            "limits.max_gross_exposure"] * (1 + 1e-9)
        d = decisions[_key(t)]
        assert notional <= d["account"]["equity"] * over["limits.max_equity_leverage"] * (1 + 1e-9)
        capped += "CAPPED_MAX_NOTIONAL" in d["reasons"]
    assert capped > 0, "the max notional cap bound at least once"


def test_sizeguard_replays_the_export_on_freqtrades_candles(run: Path, trades: list[dict[str, Any]],
                                                            settings: dict[str, Any]) -> None:
    """``sizeguard backtest`` reads the candles freqtrade used (its data dir) and replays the
    export's entries under the same policy."""
    from typer.testing import CliRunner

    from sizeguard.cli.main import app

    (archive,) = glob.glob(str(run / STRATEGY / "backtest-result-*.zip"))
    sets = [x for k, v in settings["overrides"].items() for x in ("--set", f"{k}={json.dumps(v)}")]
    result = CliRunner().invoke(app, [
        "backtest", "--candles", str(run / "data" / "binance"), "--symbol", "BTC/USDT:USDT",
        "--symbol", "XRP/USDT:USDT", "--markets", str(shared_path("markets", "binanceusdm.json")),
        "--tiers", str(shared_path("leverage_tiers", "binanceusdm.json")),
        "--preset", settings["preset"], *sets, "--signals", archive, "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    (metrics,) = json.loads(result.stdout)
    assert metrics["decisions"] + metrics["ignored_in_position"] == len(trades)
    assert metrics["trades"] > 50 and metrics["liquidations"] == 0
    # two engines, one story: sizeguard's bar loop ends the replayed trades the way freqtrade did
    reasons = [t["exit_reason"] for t in trades]
    assert metrics["exits"].get("stop", 0) == reasons.count("stop_loss")
    assert metrics["exits"].get("signal", 0) == reasons.count("exit_signal")
