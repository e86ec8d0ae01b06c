"""The CLI as people use it: config show/check/scan/aliases, explain, markets, presets, demo,
help, errors and shell completion."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sizeguard.cli.main import app
from sizeguard.config.loader import PRESETS

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
TREE = Path(__file__).resolve().parent / "fixtures" / "seed_tree"
SIZE_ARGS = ["BTC/USDT:USDT", "--side", "long", "--price", "87669", "--equity", "8930.41",
             "--atr", "2000", "--confidence", "0.52", "--preset", "ai-atr-risk"]


# -- config show -----------------------------------------------------------------------------

def test_config_show_json_sources() -> None:
    res = runner.invoke(app, ["config", "show", "--preset", "quantum-4x30", "--json",
                              "--set", "leverage.value=20"],
                        env={"QT_MAX_POSITIONS": "3", "SIZEGUARD_LIMITS__MAX_NOTIONAL": "60000"})
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["policy"]["limits.max_positions"] == 3
    assert out["policy"]["limits.max_margin_pct"] == "inf"
    assert out["sources"]["limits.max_positions"] == "env:QT_MAX_POSITIONS"
    assert out["sources"]["limits.max_notional"] == "env:SIZEGUARD_LIMITS__MAX_NOTIONAL"
    assert out["sources"]["leverage.value"] == "--set"
    assert out["sources"]["limits.max_symbol_notional"] == "preset:quantum-4x30"
    assert out["sources"]["execution.taker"] == "default"


def test_config_show_table_with_file(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text("[limits]\nmax_notional = 123.0\n", encoding="utf-8")
    res = runner.invoke(app, ["config", "show", "--config", str(f), "--changed"], env=WIDE)
    assert res.exit_code == 0
    assert "limits.max_notional" in res.stdout and "123" in res.stdout
    assert f"file:{f}" in res.stdout
    assert "execution.taker" not in res.stdout  # --changed hides defaults


def test_config_show_bad_set_is_exit_2() -> None:
    res = runner.invoke(app, ["config", "show", "--set", "limits.max_notonal=5"])
    assert res.exit_code == 2
    assert "did you mean 'max_notional'" in res.stderr and "[from --set]" in res.stderr


# -- config check ----------------------------------------------------------------------------

def test_config_check_catches_the_quantum_symbol_cap() -> None:
    res = runner.invoke(app, ["config", "check", "--preset", "quantum-4x30", "--equity", "10000"],
                        env=WIDE)
    assert res.exit_code == 0, res.output  # warnings only
    assert "SYMBOL_CAP_BELOW_SLOT" in res.stdout
    assert "75,000" in res.stdout and "40,000" in res.stdout
    assert "PASS with warnings" in res.stdout
    strict = runner.invoke(app, ["config", "check", "--preset", "quantum-4x30", "--strict"])
    assert strict.exit_code == 1


def test_config_check_json() -> None:
    res = runner.invoke(app, ["config", "check", "--preset", "quantum-4x30", "--json"])
    out = json.loads(res.stdout)
    codes = {f["code"]: f for f in out["findings"]}
    assert codes["SYMBOL_CAP_BELOW_SLOT"]["severity"] == "warning"
    assert codes["SYMBOL_CAP_BELOW_SLOT"]["sources"] == {
        "limits.max_symbol_notional": "preset:quantum-4x30"}
    assert out["slot"]["notional"] == 75_000 and out["errors"] == 0


def test_config_check_errors_exit_1() -> None:
    res = runner.invoke(app, ["config", "check", "--preset", "ai-atr-risk", "--set", "adjust.min=0.02",
                              "--volatility", "2.28", "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert [f["code"] for f in out["findings"] if f["severity"] == "error"] == ["CLAMP_INVERTED"]
    assert {f["code"] for f in out["findings"]} >= {"STOP_BEYOND_LIQUIDATION"}


def test_config_check_two_dollar_orders_env_and_symbol_filter() -> None:
    res = runner.invoke(app, ["config", "check", "--set", "sizing.model=fixed_notional",
                              "--set", "sizing.notional=2", "--symbol", "BTC/USDT:USDT",
                              "--set", "execution.below_minimum=skip", "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["markets"] == 1
    assert [(f["code"], f["symbol"]) for f in out["findings"] if f["severity"] == "error"] == [
        ("BELOW_MIN_COST", "BTC/USDT:USDT")]


def test_config_check_bad_symbol_and_equity() -> None:
    res = runner.invoke(app, ["config", "check", "--symbol", "BTC/USDT:USD"])
    assert res.exit_code == 2 and "did you mean" in res.stderr
    res = runner.invoke(app, ["config", "check", "--equity", "0"])
    assert res.exit_code == 2 and "equity" in res.stderr


# -- config scan / aliases -------------------------------------------------------------------

def test_config_scan_human_and_json() -> None:
    res = runner.invoke(app, ["config", "scan", str(TREE / "viper")], env=WIDE)
    assert res.exit_code == 0
    assert "MAX_LEVERAGE" in res.stdout and "DISAGREE" in res.stdout
    assert "docs/USER_GUIDE.md:6" in res.stdout
    res = runner.invoke(app, ["config", "scan", str(TREE), "--json"])
    out = json.loads(res.stdout)
    lev = next(s for s in out["settings"] if s["name"] == "MAX_LEVERAGE")
    assert lev["disagree"] and lev["values"] == ["25", "50"]
    assert "QT_MAX_POSITIONS" in out["disagreements"]
    assert runner.invoke(app, ["config", "scan", str(TREE), "--strict"]).exit_code == 1
    assert runner.invoke(app, ["config", "scan", str(TREE / "nope")]).exit_code == 2


def test_config_aliases_lists_every_name() -> None:
    out = json.loads(runner.invoke(app, ["config", "aliases", "--json"]).stdout)
    assert len(out) == 15
    assert next(a for a in out if a["name"] == "QT_MAX_NOTIONAL_PER_TRADE")["keys"] == [
        "limits.max_margin"]


# -- size / explain --------------------------------------------------------------------------

def test_size_json_contract_unchanged() -> None:
    res = runner.invoke(app, ["size", *SIZE_ARGS, "--json"])
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    for key in ("status", "reasons", "symbol", "side", "amount", "notional", "margin", "leverage",
                "risk", "risk_pct", "entry_price", "stop_price", "fees", "trace"):
        assert key in out
    assert out["amount"] == "0.014" and out["leverage"] == 21.0


def test_size_human_shows_limits_and_liquidation() -> None:
    res = runner.invoke(app, ["size", *SIZE_ARGS], env=WIDE)
    assert res.exit_code == 0
    text = res.stdout
    for word in ("margin", "notional", "leverage", "risk", "liquidation", "CAPPED_MAX_NOTIONAL",
                 "cut to the policy's max notional per trade", "30x -> 21x"):
        assert word in text, word


def test_size_skip_reason_in_plain_words() -> None:
    res = runner.invoke(app, ["size", "BTC/USD", "--side", "long", "--price", "90000", "--equity",
                              "2.86", "--preset", "kraken-micro"], env=WIDE)
    assert res.exit_code == 0
    assert "Skipped: below the exchange's minimum amount" in res.stdout


def test_size_errors_are_one_line_exit_2() -> None:
    res = runner.invoke(app, ["size", "BTC/USDT:USD", "--side", "long", "--price", "1",
                              "--equity", "1"])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "did you mean BTC/USDT:USDT" in res.stderr
    res = runner.invoke(app, ["size", *SIZE_ARGS[:-1], "ai-atr-riks"])
    assert res.exit_code == 2 and "did you mean 'ai-atr-risk'" in res.stderr


def test_explain_walks_every_step() -> None:
    res = runner.invoke(app, ["explain", *SIZE_ARGS], env=WIDE)
    assert res.exit_code == 0
    text = res.stdout
    for phrase in ("Stop at 84,669", "3.42% from entry", "x confidence 0.5",
                   "Notional = risk 44.65", "max notional per trade", "leverage lowered to 21x",
                   "rounds down to 14 lots of 0.001 = 0.014", "accepted"):
        assert phrase in text, phrase
    out = json.loads(runner.invoke(app, ["explain", *SIZE_ARGS, "--json"]).stdout)
    size = json.loads(runner.invoke(app, ["size", *SIZE_ARGS, "--json"]).stdout)
    assert [s["step"] for s in out["steps"]] == [s["step"] for s in size["trace"]]
    assert all(s["text"] for s in out["steps"])


def test_explain_errors_like_size() -> None:
    res = runner.invoke(app, ["explain", "BTC/USDT:USDT", "--side", "up", "--price", "1",
                              "--equity", "1"])
    assert res.exit_code == 2 and "side" in res.stderr


# -- markets / presets / demo ----------------------------------------------------------------

def test_markets_table_and_one_market() -> None:
    res = runner.invoke(app, ["markets"], env=WIDE)
    assert res.exit_code == 0 and "XRP/USD" in res.stdout and "linear swap" in res.stdout
    res = runner.invoke(app, ["markets", "ADA/USDT:USDT"], env=WIDE)
    assert res.exit_code == 0
    assert "leverage tiers" in res.stdout and "75x" in res.stdout and "10,000" in res.stdout
    out = json.loads(runner.invoke(app, ["markets", "BTC/USDT:USDT", "--json"]).stdout)
    assert out[0]["tiers"][0]["max_leverage"] == 150 and out[0]["min_cost"] == 5
    res = runner.invoke(app, ["markets", "DOGE/USDT:USDT"])
    assert res.exit_code == 2 and "unknown symbol" in res.stderr


def test_presets_name_then_wrapped_description() -> None:
    lines = runner.invoke(app, ["presets"], env={"COLUMNS": "80"}).stdout.strip().splitlines()
    assert [line for line in lines if not line.startswith(" ")] == list(PRESETS)
    assert all(len(line) <= 80 for line in lines)
    rows = json.loads(runner.invoke(app, ["presets", "--json"]).stdout)
    assert [r["name"] for r in rows] == list(PRESETS) and all(r["description"] for r in rows)


def test_demo_side_by_side() -> None:
    res = runner.invoke(app, ["demo"], env=WIDE)
    assert res.exit_code == 0
    for name in PRESETS:
        assert name in res.stdout
    assert "One trade, five policies" in res.stdout and "reference cases" in res.stdout
    out = json.loads(runner.invoke(app, ["demo", "--json"]).stdout)
    assert [d["preset"] for d in out["side_by_side"]] == list(PRESETS)
    assert len({d["symbol"] for d in out["side_by_side"]}) == 1
    refs = {(d["preset"], d["symbol"], d["equity"]): d for d in out["references"]}
    assert refs[("quantum-4x30", "BTC/USDT:USDT", 1500.0)]["amount"] == "0.125"
    assert refs[("viper-fixed-margin", "BTC/USDT:USDT", 100.0)]["notional"] == 100.0


def test_demo_ignores_the_environment() -> None:
    plain = runner.invoke(app, ["demo", "--json"]).stdout
    assert runner.invoke(app, ["demo", "--json"], env={"MAX_LEVERAGE": "2"}).stdout == plain


# -- help and completion ---------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["size"], ["explain"], ["markets"], ["demo"],
                                 ["config", "check"], ["config", "show"], ["config", "scan"]])
def test_help_has_examples(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"], env=WIDE)
    assert res.exit_code == 0 and "Examples" in res.stdout


def test_show_completion() -> None:
    res = runner.invoke(app, ["--show-completion", "bash"])
    assert res.exit_code == 0 and "_SIZEGUARD_COMPLETE" in res.stdout


def _complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "_SIZEGUARD_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(cword)}
    code = "from sizeguard.cli.main import app; app(prog_name='sizeguard')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    return out.stdout.split()


def test_completion_of_commands_presets_and_symbols() -> None:
    assert _complete("sizeguard con", 1) == ["config"]
    assert _complete("sizeguard config ch", 2) == ["check"]
    assert _complete("sizeguard size BTC/USDT:USDT --preset viper", 4) == [
        "viper-fixed-margin", "viper-50x"]
    assert "ETH/USDT:USDT" in _complete("sizeguard markets ETH", 2)


def test_docs_hold_real_config_check_runs() -> None:
    """Every `config check` run shown in docs/configuration.md is what the command prints now."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text("utf-8")
    blocks = [b.split("```", 1)[0] for b in doc.split("```console\n")[1:]]
    runs = [b for b in blocks if b.startswith("$ sizeguard config check")]
    assert len(runs) >= 2
    for block in runs:
        command, rest = block.split("\n", 1)
        shown, _, code = rest.partition("$ echo $?\n")
        res = runner.invoke(app, shlex.split(command)[2:], env={"COLUMNS": "100"})
        printed = "\n".join(line.rstrip() for line in res.stdout.splitlines())
        assert printed == shown.rstrip("\n"), command
        assert str(res.exit_code) == code.strip(), command


def test_config_show_says_what_a_seed_name_means() -> None:
    res = runner.invoke(app, ["config", "show", "--preset", "quantum-4x30", "--changed"],
                        env={"QT_MAX_NOTIONAL_PER_TRADE": "4000", **WIDE})
    assert res.exit_code == 0
    assert "env:QT_MAX_NOTIONAL_PER_TRADE" in res.stdout
    assert "QT_MAX_NOTIONAL_PER_TRADE -> limits.max_margin: MARGIN per trade" in res.stdout
