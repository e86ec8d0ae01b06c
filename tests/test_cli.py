"""The CLI contract other tools script against: ``sizeguard size ... --json``."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import shared_path
from sizeguard.cli.main import app

runner = CliRunner()
REQUIRED = {"status", "reasons", "symbol", "side", "amount", "notional", "margin", "leverage",
            "risk", "risk_pct", "entry_price", "stop_price", "fees", "trace"}
NUMBERS = ("notional", "margin", "leverage", "risk", "risk_pct", "entry_price", "fees")


def size_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["size", *args, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # one object, one line
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def check_contract(obj: dict[str, Any]) -> None:
    assert set(obj) >= REQUIRED, REQUIRED - set(obj)
    assert obj["status"] in ("accepted", "skipped")
    assert isinstance(obj["reasons"], list) and all(isinstance(r, str) for r in obj["reasons"])
    assert isinstance(obj["amount"], str)
    Decimal(obj["amount"])  # an exact decimal string
    assert "e" not in obj["amount"].lower()
    for key in NUMBERS:
        assert isinstance(obj[key], int | float), key
    assert obj["side"] in ("long", "short")
    assert isinstance(obj["trace"], list) and obj["trace"]
    assert all(isinstance(s, dict) and isinstance(s["step"], str) for s in obj["trace"])


def test_accepted_json_ai_atr_risk() -> None:
    obj = size_json("BTC/USDT:USDT", "--side", "long", "--price", "87669", "--equity", "8930.41",
                    "--atr", "2000", "--confidence", "0.52", "--preset", "ai-atr-risk")
    check_contract(obj)
    assert obj["status"] == "accepted"
    assert obj["symbol"] == "BTC/USDT:USDT" and obj["side"] == "long"
    assert obj["amount"] == "0.014"  # the golden case: 1,250 capped -> 14 lots
    assert obj["entry_price"] == 87669
    assert obj["stop_price"] == pytest.approx(84_669.0)  # 87,669 - 1.5 x 2,000
    assert obj["leverage"] == 21  # the guard lowered 30x
    assert "LEVERAGE_LOWERED_FOR_LIQUIDATION" in obj["reasons"]
    assert obj["notional"] == pytest.approx(1_227.366)
    assert obj["margin"] == pytest.approx(1_227.366 / 21)
    # taker 0.05% at entry + 0.05% on the notional at the stop (84,669 / 87,669 of entry's):
    # 1,227.366 x (0.0005 + 0.0005 x 0.9657804) = 1,227.366 x 0.00098289 = 1.20637
    assert obj["fees"] == pytest.approx(1_227.366 * (0.0005 + 0.0005 * 84_669 / 87_669))
    assert obj["fees"] == pytest.approx(1.20637, abs=1e-5)
    assert obj["risk_pct"] == pytest.approx(obj["risk"] / 8_930.41 * 100)
    steps = [s["step"] for s in obj["trace"]]
    assert steps[0] == "validate" and steps[-1] == "decision"
    assert {"stop", "gates", "base_size", "adjust", "notional", "limits", "leverage",
            "exchange_rules"} <= set(steps)


def test_set_override_reproduces_the_reference_number() -> None:
    obj = size_json("BTC/USDT:USDT", "--side", "long", "--price", "87669", "--equity", "8930.41",
                    "--atr", "2000", "--confidence", "0.52", "--preset", "ai-atr-risk",
                    "--set", "sizing.fees_in_risk=false", "--set", "liquidation.guard=off")
    notional = next(s for s in obj["trace"] if s["step"] == "notional")
    assert round(notional["notional"], 1) == 1_304.9
    assert obj["leverage"] == 30


def test_stop_price_null_without_a_stop() -> None:
    obj = size_json("BTC/USDT:USDT", "--side", "long", "--price", "50000", "--equity", "100",
                    "--preset", "viper-fixed-margin")
    check_contract(obj)
    assert obj["stop_price"] is None
    assert obj["amount"] == "0.002"


def test_skipped_is_exit_0_with_reasons() -> None:
    # kraken-micro: 2.86 x 95% of BTC at 90,000 is below the 0.0001 BTC minimum
    obj = size_json("BTC/USD", "--side", "long", "--price", "90000", "--equity", "2.86",
                    "--preset", "kraken-micro")
    check_contract(obj)
    assert obj["status"] == "skipped"
    assert obj["amount"] == "0"
    assert obj["reasons"][-1] == "BELOW_MIN_AMOUNT"


def test_short_with_stop_price_and_leverage() -> None:
    obj = size_json("ETH/USDT:USDT", "--side", "short", "--price", "3000", "--equity", "1000",
                    "--stop", "3090", "--preset", "viper-50x", "--leverage", "10")
    check_contract(obj)
    assert obj["side"] == "short" and obj["stop_price"] == 3090
    # fees: 0.05% at entry + 0.05% on the notional at the stop (103% of entry's) = 0.1015%;
    # risk 20 / (3% + 0.1015%) = 644.85 -> 0.21495 -> 0.214 ETH at 10x
    assert obj["amount"] == "0.214" and obj["leverage"] == 10


def test_available_and_markets_file() -> None:
    path = shared_path("markets", "bybit.json")
    obj = size_json("BTC/USDT:USDT", "--side", "long", "--price", "90000", "--equity", "10000",
                    "--available", "100", "--stop-pct", "1", "--markets", str(path),
                    "--preset", "viper-50x")
    check_contract(obj)
    assert obj["margin"] + obj["notional"] * 0.0006 <= 100  # bybit taker 0.06%
    assert "CAPPED_AVAILABLE" in obj["reasons"] or "CAPPED_MARGIN" in obj["reasons"]


def test_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[sizing]\nmodel = "fixed_notional"\nnotional = 600.0\n'
                   '[leverage]\nvalue = 5\nmax = 5\n', encoding="utf-8")
    obj = size_json("ETH/USDT:USDT", "--side", "long", "--price", "3000", "--equity", "1000",
                    "--config", str(cfg))
    assert obj["amount"] == "0.2" and obj["leverage"] == 5  # 600 / 3,000


def test_installed_entry_point_prints_one_object() -> None:
    exe = Path(sys.executable).with_name("sizeguard")
    if not exe.exists():
        pytest.skip("the sizeguard script is not installed beside this interpreter")
    out = subprocess.run(
        [str(exe), "size", "ADA/USDT:USDT", "--side", "long", "--price", "1", "--equity", "100",
         "--preset", "viper-fixed-margin", "--json"],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    check_contract(obj)
    assert obj["amount"] == "100"
    bad = subprocess.run([str(exe), "size", "ADA/USDT:USDT", "--side", "long", "--price", "-1",
                          "--equity", "100", "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "price" in bad.stderr
