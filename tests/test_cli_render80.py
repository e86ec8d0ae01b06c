"""What a person reads fits 80 columns without losing what they need (issue #12): ids, symbols
and amounts appear whole on one line, never cut to ``pos…`` or wrapped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sizeguard.adapters.market_files import builtin_markets
from sizeguard.cli.main import app
from sizeguard.cli.render import money
from sizeguard.config.aliases import ALIASES

runner = CliRunner()
NARROW = {"COLUMNS": "80"}
BTC = "BTC/USDT:USDT"


def read(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    res = runner.invoke(app, args, env={**NARROW, **(env or {})})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    return lines


def whole(value: str, lines: list[str]) -> bool:
    """``value`` on one line, not followed by an ellipsis."""
    return any(value in line and f"{value}…" not in line for line in lines)


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = str(tmp_path / "s.db")
    for side, price in (("long", "90000"), ("short", "3000")):
        sym = BTC if side == "long" else "ETH/USDT:USDT"
        res = runner.invoke(app, ["trade", sym, "--side", side, "--price", price, "--equity",
                                  "10000", "--stop-pct", "2", "--store", url, "--json"])
        assert res.exit_code == 0, res.output
    return url


def test_positions_show_every_id_and_amount_whole(store: str) -> None:
    data = json.loads(runner.invoke(app, ["positions", "--json", "--store", store]).stdout)
    lines = read(["positions", "--store", store])
    assert len(data["positions"]) == 2
    for p in data["positions"]:
        for value in (p["id"], p["symbol"], p["amount"], f"{p['notional']:.2f}",
                      f"{p['margin']:.2f}"):
            assert whole(value, lines), (value, lines)
        # the id `close` needs is alone at the start of its line: copy-paste works
        assert any(line.split()[:1] == [p["id"]] for line in lines)


def test_journal_keeps_ids_symbols_and_client_order_ids(store: str) -> None:
    entries = json.loads(runner.invoke(app, ["journal", "--json", "--store", store]).stdout
                         )["entries"]
    lines = read(["journal", "--store", store])
    for e in entries:
        assert whole(f"#{e['id']} ", lines)
        for value in (e["symbol"], e["client_order_id"]):
            if value:
                assert whole(value, lines), (value, lines)


def test_markets_list_every_symbol_and_limit_whole() -> None:
    lines = read(["markets"])
    for m in builtin_markets().values():
        assert whole(m.symbol, lines)
        if m.is_contract:
            assert any(m.symbol in line for line in lines)
            assert "max leverage" in "\n".join(lines)


def test_config_aliases_names_and_keys_whole() -> None:
    lines = read(["config", "aliases"])
    for a in ALIASES:
        assert whole(a.name, lines)
        for key in a.keys:
            assert whole(key, lines)


def test_config_show_keys_values_and_sources_whole() -> None:
    env = {"QT_MAX_POSITIONS": "3", "SIZEGUARD_LIMITS__MAX_NOTIONAL": "60000"}
    data = json.loads(runner.invoke(app, ["config", "show", "--preset", "quantum-4x30",
                                          "--json"], env=env).stdout)
    lines = read(["config", "show", "--preset", "quantum-4x30"], env)
    for key, source in data["sources"].items():
        assert whole(key, lines) and whole(source, lines), (key, source)
    assert whole("env:QT_MAX_POSITIONS", lines)
    assert whole("env:SIZEGUARD_LIMITS__MAX_NOTIONAL", lines)


def test_demo_keeps_every_amount_and_figure_whole() -> None:
    data = json.loads(runner.invoke(app, ["demo", "--json"]).stdout)
    lines = read(["demo"])
    for d in data["side_by_side"]:
        for value in (d["amount"], money(d["notional"]), money(d["margin"]), f"{d['leverage']:g}x"):
            assert whole(value, lines), (d["preset"], value)
    for d in data["references"]:
        assert whole(f"{d['status']} {d['amount']}", lines)
        assert whole(f"notional {money(d['notional'])}", lines)
        assert whole(f"margin {money(d['margin'])} at {d['leverage']:g}x", lines)


def test_backtest_comparison_keeps_every_policy_and_figure_whole(tmp_path: Path) -> None:
    rows = ["timestamp,open,high,low,close,volume"] + [
        f"{1_600_000_000_000 + i * 3_600_000},{100 + i % 9},{103 + i % 9},{98 + i % 9},"
        f"{101 + i % 9},1" for i in range(300)]
    (tmp_path / "BTC_USD-1h.csv").write_text("\n".join(rows) + "\n")
    args = ["backtest", "--candles", str(tmp_path / "BTC_USD-1h.csv")]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    lines = read(args)
    for m in data:
        assert any(line.strip() == m["policy"] or m["policy"] in line.split() for line in lines)
        assert whole(f"final equity {m['final_equity']:,.2f}", lines), m["policy"]


def test_bots_list_keeps_names_and_ids_whole(tmp_path: Path) -> None:
    url = str(tmp_path / "s.db")
    for name in ("viper-fixed-margin-bot", "quantum"):
        assert runner.invoke(app, ["bots", "add", name, "--budget", "40%", "--store", url,
                                   "--json"]).exit_code == 0
    bots = json.loads(runner.invoke(app, ["bots", "list", "--json", "--store", url]).stdout)
    lines = read(["bots", "list", "--store", url])
    for b in bots:
        assert any(line.split()[:2] == [b["name"], b["id"]] for line in lines), lines


def _command_paths() -> list[list[str]]:
    from typer.main import get_command

    def walk(cmd: object, path: list[str]) -> list[list[str]]:
        subs = getattr(cmd, "commands", {})
        return [path] + [p for name, sub in subs.items() for p in walk(sub, [*path, name])]
    return walk(get_command(app), [])


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "sizeguard")
def test_every_help_fits_80_columns_uncut(path: list[str]) -> None:
    """A flag, an environment variable or an example in --help is never cut to ``SIZEGUARD_SC…``
    (rich shortens a word longer than its column: such words belong in the full-width text)."""
    lines = read([*path, "--help"])
    assert not [line for line in lines if "…" in line]
