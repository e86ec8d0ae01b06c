"""``examples/ccxt_bot.py`` end to end, offline: the real gate (``sizeguard serve`` on loopback),
the bot in its own process on real hourly BTC candles, trading the paper exchange. Every
decision is the gate's, every fill and close is reported: the gate's positions, journal and
risk state agree with what the bot did. Runtime ~15 s."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, shared_path
from httpfix import BTC, add_bot, auth, clean_env, serving

pytestmark = pytest.mark.timeout(180)


def test_the_bot_asks_the_gate_and_reports_everything(tmp_path: Path) -> None:
    candles = shared_path("ohlcv", "coinbase", "BTC_USD-1h.csv")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    # the replay crosses months of 2017 between two decisions: BTC moves more than the gate's
    # default 25% band for a reported close around the last price it saw (live, it sees them)
    env = {"SIZEGUARD_PRESET": "ai-atr-risk", "SIZEGUARD_CLOSE_PRICE_BAND": "10"}
    with serving(url, tmp_path, env=env) as server:
        token = add_bot(url, "ccxt-bot")
        env = clean_env({"PYTHONPATH": str(ROOT / "src")})
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "ccxt_bot.py"), "--gate", server.url,
             "--token", token, "--candles", str(candles), "--symbol", BTC, "--bars", "600",
             "--json"], env=env, capture_output=True, text=True, timeout=150, check=False)
        assert done.returncode == 0, done.stderr
        stats = json.loads(done.stdout)
        h = auth(token)
        closed = httpx.get(f"{server.url}/v1/journal", headers=h, params={"last": 1000},
                           timeout=30).json()["entries"]
        state = httpx.get(f"{server.url}/v1/state", headers=h, timeout=30).json()
        held = httpx.get(f"{server.url}/v1/positions", headers=h, timeout=30).json()
    assert stats["trades"] >= 5 and stats["refused"] == 0
    assert stats["trades"] == stats["accepted"]
    # every trade was closed (by its stop or the next cross) and reported, except the last
    assert stats["stopped"] + stats["closed"] + stats["open"] == stats["trades"]
    assert stats["open"] == len(held["positions"]) <= 1 and held["reservations"] == []
    decisions = [e for e in closed if e["kind"] == "decision"]
    assert len(decisions) == stats["accepted"] + stats["skipped"]
    for e in decisions:
        if e["status"] == "accepted":
            # ai-atr-risk: the amount is a whole number of BTC/USDT:USDT lots (0.001)
            assert Decimal(e["data"]["amount"]) % Decimal("0.001") == 0
    # the gate's record of wins and losses is the bot's closed trades
    stats_btc = state["symbol_stats"][BTC]
    assert stats_btc["trades"] == stats["stopped"] + stats["closed"]
    assert state["open_positions"] == stats["open"]
