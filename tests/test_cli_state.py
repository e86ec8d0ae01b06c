"""The state CLI: trade (paper), close, positions, state, journal, sync, markets refresh —
each with --json and --store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import storefix
from ccxt_replay import Replay
from sizeguard.adapters.ccxt_exchange import make_exchange
from sizeguard.cli.main import app

store_url = storefix.store_url
runner = CliRunner()
BTC = "BTC/USDT:USDT"
TRADE = ["trade", BTC, "--side", "long", "--price", "87669", "--atr", "2000",
         "--confidence", "0.7", "--take-profit", "95000"]


def run(*args: str, code: int = 0) -> Any:
    r = runner.invoke(app, list(args))
    assert r.exit_code == code, (r.output, r.stderr if hasattr(r, "stderr") else "")
    return json.loads(r.stdout) if "--json" in args and code == 0 else r


def test_trade_positions_state_journal_close(store_url: str) -> None:
    s = ["--store", store_url]
    out = run(*TRADE, "--equity", "10000", "--client-order-id", "cli-1", "--json", *s)
    assert out["status"] == "filled" and out["decision"]["status"] == "accepted"
    assert [o["kind"] for o in out["orders"]] == ["entry", "stop", "take_profit"]
    again = run(*TRADE, "--client-order-id", "cli-1", "--json", *s)
    assert again["duplicate"] and again["position"]["id"] == out["position"]["id"]
    pos = run("positions", "--json", *s)
    assert [p["symbol"] for p in pos["positions"]] == [BTC] and pos["reservations"] == []
    st = run("state", "--json", *s)
    assert st["open_positions"] == 1 and st["schema_version"] >= 1
    j = run("journal", "--json", "--symbol", BTC, "--last", "2", *s)
    assert len(j["entries"]) == 2
    decisions = run("journal", "--json", "--kind", "decision", *s)["entries"]
    assert len(decisions) == 1 and decisions[0]["snapshot_id"] == "builtin"
    assert decisions[0]["data"]["trace"][0]["step"] == "validate"
    closed = run("close", out["position"]["id"], "--price", "86000", "--json", *s)
    assert closed["position"]["status"] == "closed" and closed["state"]["losing_streak"] == 1
    assert run("positions", "--json", *s)["positions"] == []
    human = run("journal", *s)
    assert "decision" in human.stdout and "close" in human.stdout


def test_trade_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    s = ["--store", str(tmp_path / "s.db")]
    r = run(*TRADE, *s, code=2)
    assert "give --equity" in r.output
    r = run("trade", BTC, "--side", "sideways", "--price", "1", "--equity", "10", *s, code=2)
    assert "side" in r.output
    r = run("journal", "--last", "0", *s, code=2)
    assert "last" in r.output


def test_skipped_trade_is_exit_0_and_journaled(tmp_path: Path) -> None:
    s = ["--store", str(tmp_path / "s.db")]
    out = run(*TRADE, "--equity", "10000", "--set", "limits.max_positions=1", "--json", *s)
    assert out["status"] == "filled"
    out = run("trade", "ETH/USDT:USDT", "--side", "short", "--price", "3000", "--stop-pct", "2",
              "--set", "limits.max_positions=1", "--json", *s)
    assert out["status"] == "skipped" and out["decision"]["reasons"] == ["MAX_POSITIONS"]
    assert len(run("journal", "--json", "--kind", "decision", *s)["entries"]) == 2


def test_env_store_and_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIZEGUARD_STORE", str(tmp_path / "env.db"))
    run(*TRADE, "--equity", "5000", "--json")
    out = run("sync", "--json")
    assert out["positions"] == 1 and out["added"] == [] and out["closed"] == []
    assert (tmp_path / "env.db").exists()


def test_markets_refresh_then_trade_on_the_snapshot(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def replayed(name: str, **kw: Any) -> Any:
        return Replay("binanceusdm").install(make_exchange(name, **kw))

    monkeypatch.setattr("sizeguard.adapters.ccxt_exchange.make_exchange", replayed)
    out = run("markets", "refresh", "--exchange", "binanceusdm", "--dir", str(tmp_path), "--json")
    assert out["markets"] == 2 and Path(out["path"]).exists()
    assert run("markets", "--json")[0]["symbol"] == BTC  # the original command still works
    s = ["--store", str(tmp_path / "s.db")]
    t = run("trade", BTC, "--side", "long", "--price", "50000", "--stop", "49000", "--equity", "1000",
            "--preset", "viper-fixed-margin", "--set", "sizing.margin=50", "--markets", out["path"],
            "--json", *s)
    assert t["status"] == "filled"
    [d] = run("journal", "--json", "--kind", "decision", *s)["entries"]
    assert d["snapshot_id"] == out["snapshot_id"]
    from sizeguard.adapters.sql_store import open_store

    st = open_store(s[1])
    with st.tx() as tx:
        assert tx.one("SELECT path FROM market_snapshots WHERE id = ?", (d["snapshot_id"],)) == (
            str(Path(out["path"]).resolve()),)
    st.close()
    r = run("markets", "refresh", code=2)
    assert "--exchange" in r.output


def test_live_trade_and_sync_on_a_replayed_exchange(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def replayed(name: str, **kw: Any) -> Any:
        return Replay("binanceusdm").install(make_exchange(name, **kw))

    monkeypatch.setattr("sizeguard.adapters.ccxt_exchange.make_exchange", replayed)
    snap = run("markets", "refresh", "--exchange", "binanceusdm", "--dir", str(tmp_path), "--json")
    s = ["--store", str(tmp_path / "live.db"), "--account", "live"]
    args = ["trade", BTC, "--side", "long", "--price", "50000", "--stop", "49000",
            "--take-profit", "55000", "--preset", "viper-fixed-margin", "--set", "sizing.margin=50",
            "--set", "leverage.value=10", "--markets", snap["path"], "--exchange", "binanceusdm",
            "--live", "--hedge-mode", "--client-order-id", "sg-1", "--json", *s]
    monkeypatch.delenv("SIZEGUARD_API_KEY", raising=False)
    assert "SIZEGUARD_API_KEY" in run(*[a for a in args if a != "--json"], code=2).output
    monkeypatch.setenv("SIZEGUARD_API_KEY", "k")
    monkeypatch.setenv("SIZEGUARD_API_SECRET", "s")
    out = run(*args)
    assert out["status"] == "filled" and out["decision"]["amount"] == "0.01"
    st = run("state", "--json", *s)
    assert st["equity"] == 1005.5  # synced from the exchange before deciding
    assert st["open_positions"] == 2  # the ETH short found on the exchange, and ours
    out = run("sync", "--live", "--exchange", "binanceusdm", "--json", *s)
    assert out["positions"] == 1 and len(out["closed"]) == 1  # the exchange no longer shows BTC


def test_paper_stop_fills_through_sync_mark(tmp_path: Path) -> None:
    s = ["--store", str(tmp_path / "s.db")]
    out = run(*TRADE, "--equity", "10000", "--json", *s)
    stop = out["decision"]["stop_price"]
    nothing = run("sync", "--mark", f"{BTC}={stop + 100}", "--json", *s)
    assert nothing["stopped_out"] == [] and nothing["positions"] == 1
    hit = run("sync", "--mark", f"{BTC}={stop - 1}", "--json", *s)
    assert hit["stopped_out"] == [out["position"]["id"]] and hit["positions"] == 0
    st = run("state", "--json", *s)
    assert st["losing_streak"] == 1 and st["open_positions"] == 0
    assert st["realised_pnl_today"] < 0
    r = run("sync", "--mark", "nonsense", *s, code=2)
    assert "SYMBOL=PRICE" in r.output
