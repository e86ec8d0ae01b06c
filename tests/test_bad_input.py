"""Bad input is refused clearly: InvalidInput (a ValueError) naming the field and the value, from
the Python API; exit code 2 and one line on stderr from the CLI."""

from __future__ import annotations

import math
from typing import Any

import pytest
from typer.testing import CliRunner

from sizeguard.adapters.market_files import load_markets
from sizeguard.cli.main import app
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.errors import InvalidInput, PolicyError, UnknownSymbol

BTC = "BTC/USDT:USDT"
NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def btc() -> Any:
    return load_markets(None)[BTC]


def check(btc: Any, field: str, value_text: str, intent: dict[str, Any] | None = None,
          account: dict[str, Any] | None = None, preset: str = "ai-atr-risk") -> InvalidInput:
    fields: dict[str, Any] = {"symbol": BTC, "side": "long", "price": 100.0, "stop_pct": 2.0,
                              **(intent or {})}
    acc: dict[str, Any] = {"equity": 1_000.0, **(account or {})}
    with pytest.raises(InvalidInput) as info:
        decide(Intent(**fields), Account(**acc), btc, load_policy(preset))
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field, str(err)
    assert str(err).startswith(f"{field}=")
    assert value_text in str(err), str(err)
    assert "\n" not in str(err)
    return err


API_CASES = [
    # id, field, value as printed, intent changes, account changes
    ("price-nan", "price", "nan", {"price": NAN}, {}),
    ("price-inf", "price", "inf", {"price": INF}, {}),
    ("price-negative", "price", "-5", {"price": -5.0}, {}),
    ("price-zero", "price", "0", {"price": 0.0}, {}),
    ("price-not-a-number", "price", "'100'", {"price": "100"}, {}),
    ("equity-nan", "equity", "nan", {}, {"equity": NAN}),
    ("equity-inf", "equity", "inf", {}, {"equity": INF}),
    ("equity-negative", "equity", "-1", {}, {"equity": -1.0}),
    ("equity-zero", "equity", "0", {}, {"equity": 0.0}),
    ("available-negative", "available", "-1", {}, {"available": -1.0}),
    ("available-nan", "available", "nan", {}, {"available": NAN}),
    ("peak-nan", "peak_equity", "nan", {}, {"peak_equity": NAN}),
    ("long-stop-above", "stop", "101", {"stop_pct": None, "stop": 101.0}, {}),
    ("long-stop-at-entry", "stop", "100", {"stop_pct": None, "stop": 100.0}, {}),
    ("short-stop-below", "stop", "99", {"side": "short", "stop_pct": None, "stop": 99.0}, {}),
    ("stop-nan", "stop", "nan", {"stop_pct": None, "stop": NAN}, {}),
    ("stop-pct-negative", "stop_pct", "-2", {"stop_pct": -2.0}, {}),
    ("stop-pct-100", "stop_pct", "100", {"stop_pct": 100.0}, {}),
    # an ATR stop that lands below zero: 100 - 1.5 x 80 = -20
    ("atr-stop-below-zero", "stop", "-20", {"stop_pct": None, "atr": 80.0}, {}),
    ("atr-negative", "atr", "-1", {"stop_pct": None, "atr": -1.0}, {}),
    ("stop-roe-nan", "stop_roe", "nan", {"stop_pct": None, "stop_roe": NAN}, {}),
    ("two-stops-price-pct", "stop_pct", "2", {"stop": 98.0}, {}),
    ("two-stops-pct-roe", "stop_roe", "10", {"stop_roe": 10.0}, {}),
    ("leverage-below-1", "leverage", "0.5", {"leverage": 0.5}, {}),
    ("leverage-zero", "leverage", "0", {"leverage": 0.0}, {}),
    ("leverage-inf", "leverage", "inf", {"leverage": INF}, {}),
    ("confidence-above-1", "confidence", "1.5", {"confidence": 1.5}, {}),
    ("confidence-negative", "confidence", "-0.1", {"confidence": -0.1}, {}),
    ("confidence-nan", "confidence", "nan", {"confidence": NAN}, {}),
    ("side", "side", "'sideways'", {"side": "sideways"}, {}),
    ("symbol-mismatch", "symbol", "'ETH/USDT:USDT'", {"symbol": "ETH/USDT:USDT"}, {}),
    ("regime-unknown", "regime", "'moon'", {"regime": "moon"}, {}),
    ("losing-streak-negative", "losing_streak", "-1", {}, {"losing_streak": -1}),
    ("position-notional-nan", "positions[0].notional", "nan", {},
     {"positions": (Position("X/USDT:USDT", "long", NAN, 10.0),)}),
    ("position-margin-nan", "positions[0].margin", "nan", {},
     {"positions": (Position("X/USDT:USDT", "long", 100.0, NAN),)}),
    ("position-margin-negative", "positions[0].margin", "-10", {},
     {"positions": (Position("X/USDT:USDT", "long", 100.0, -10.0),)}),
]


@pytest.mark.parametrize(("field", "value_text", "intent", "account"),
                         [pytest.param(*c[1:], id=c[0]) for c in API_CASES])
def test_api_refuses_bad_input(btc: Any, field: str, value_text: str, intent: dict[str, Any],
                               account: dict[str, Any]) -> None:
    check(btc, field, value_text, intent, account)


def test_spot_cannot_be_shorted() -> None:
    m = load_markets(None)["BTC/USDT"]
    with pytest.raises(InvalidInput, match="spot"):
        decide(Intent("BTC/USDT", "short", 100.0), Account(100.0), m, load_policy("kraken-micro"))


def test_stop_roe_that_wipes_the_price_is_refused(btc: Any) -> None:
    # 150% of margin at 1x is a 150% move: the stop would be below zero
    with pytest.raises(InvalidInput) as info:
        decide(Intent(BTC, "long", 100.0, stop_roe=150.0, leverage=1.0), Account(1_000.0), btc,
               load_policy("viper-50x"))
    assert info.value.field == "stop"


def test_risk_model_without_a_stop_names_the_stop(btc: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        decide(Intent(BTC, "long", 100.0), Account(1_000.0), btc, load_policy("viper-50x"))
    assert info.value.field == "stop"


def test_unknown_symbol_and_preset() -> None:
    with pytest.raises(UnknownSymbol) as info:
        load_markets(None)["BTC/USDT:USD"]
    assert isinstance(info.value, ValueError) and info.value.field == "symbol"
    assert "'BTC/USDT:USD'" in str(info.value)
    with pytest.raises(InvalidInput) as err:
        load_policy("viper-51x")
    assert err.value.field == "preset" and "'viper-51x'" in str(err.value)
    assert "viper-50x" in str(err.value)  # did you mean


def test_bad_policy_key_is_a_policy_error() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy("ai-atr-risk", sets=("limits.max_notionl=5",))
    assert isinstance(info.value, ValueError)
    assert info.value.field == "limits.max_notionl"


# -- CLI --------------------------------------------------------------------------------------

runner = CliRunner()


def cli(price: str = "100", equity: str = "1000", *extra: str) -> list[str]:
    return ["size", BTC, "--side", "long", "--price", price, "--equity", equity, *extra, "--json"]


CLI_CASES = [
    # id, arguments, field, value as printed
    ("price-nan", cli("nan", "1000", "--stop-pct", "2"), "price", "nan"),
    ("price-inf", cli("inf", "1000", "--stop-pct", "2"), "price", "inf"),
    ("price-negative", cli("-5", "1000", "--stop-pct", "2"), "price", "-5"),
    ("price-zero", cli("0", "1000", "--stop-pct", "2"), "price", "0"),
    ("equity-zero", cli("100", "0", "--stop-pct", "2"), "equity", "0"),
    ("equity-negative", cli("100", "-10", "--stop-pct", "2"), "equity", "-10"),
    ("equity-nan", cli("100", "nan", "--stop-pct", "2"), "equity", "nan"),
    ("stop-wrong-side", cli("100", "1000", "--stop", "101"), "stop", "101"),
    ("two-stops", cli("100", "1000", "--stop", "99", "--stop-pct", "2"), "stop_pct", "2"),
    ("leverage-below-1", cli("100", "1000", "--stop-pct", "2", "--leverage", "0.5"),
     "leverage", "0.5"),
    ("confidence-above-1", cli("100", "1000", "--stop-pct", "2", "--confidence", "1.5"),
     "confidence", "1.5"),
    ("confidence-negative", cli("100", "1000", "--stop-pct", "2", "--confidence", "-0.1"),
     "confidence", "-0.1"),
    ("unknown-preset", cli("100", "1000", "--stop-pct", "2", "--preset", "nope"),
     "preset", "nope"),
    ("bad-set", cli("100", "1000", "--stop-pct", "2", "--set", "limits.max_notional=-1"),
     "limits.max_notional", "-1"),
    ("unknown-regime", cli("100", "1000", "--stop-pct", "2", "--regime", "moon"),
     "regime", "moon"),
    ("side", ["size", BTC, "--side", "up", "--price", "100", "--equity", "1000", "--json"],
     "side", "up"),
]


@pytest.mark.parametrize(("args", "field", "value"), [pytest.param(*c[1:], id=c[0])
                                                      for c in CLI_CASES])
def test_cli_exit_2_with_one_line(args: list[str], field: str, value: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert field in lines[0] and value in lines[0], lines[0]
    assert result.stdout == ""


def test_cli_unknown_symbol_exit_2() -> None:
    result = runner.invoke(app, ["size", "BTC/USDT:USD", "--side", "long", "--price", "1",
                                 "--equity", "1"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "symbol" in line and "BTC/USDT:USD" in line and "BTC/USDT:USDT" in line
