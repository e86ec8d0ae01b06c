"""Market loading on the real ccxt fixtures in ../shared/data/markets (read in place, never copied).

Precision modes: Binance's files are DECIMAL_PLACES (``precision.amount: 3`` = a 0.001 step),
the others TICK_SIZE (the value is the step, OKX/Kraken write 1e-08). Every normalised step is
cross-checked against the exchange's raw ``info`` (Binance LOT_SIZE/PRICE_FILTER, Bybit
qtyStep/basePrecision, OKX lotSz/tickSz/ctVal).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Reason
from sizeguard.core.intent import Intent
from sizeguard.core.lots import DECIMAL_PLACES, TICK_SIZE, format_amount, step_from_precision
from sizeguard.core.market import MarketBook, detect_precision_mode, market_rules_from_ccxt
from sizeguard.errors import InvalidInput, UnknownSymbol
from sizing_helpers import trace_step


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(shared_path("markets", f"{name}.json")).read_text("utf-8"))
    return data


def book(name: str) -> MarketBook:
    return load_markets(shared_path("markets", f"{name}.json"))


# -- precision modes -------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "mode"), [
    ("binance", DECIMAL_PLACES), ("binanceusdm", DECIMAL_PLACES), ("binancecoinm", DECIMAL_PLACES),
    ("bybit", TICK_SIZE), ("okx", TICK_SIZE), ("kraken", TICK_SIZE), ("krakenfutures", TICK_SIZE),
    ("bitget", TICK_SIZE),
])
def test_precision_mode_detected(name: str, mode: int) -> None:
    assert detect_precision_mode(raw(name).values()) == mode


def _binance_filter(market: dict[str, Any], kind: str, key: str) -> float:
    return next(float(f[key]) for f in market["info"]["filters"] if f["filterType"] == kind)


@pytest.mark.parametrize("name", ["binance", "binanceusdm", "binancecoinm"])
def test_binance_decimal_places_match_raw_filters(name: str) -> None:
    data, b = raw(name), book(name)
    assert len(b) >= 2
    for symbol, m in b.items():
        assert m.amount_step == _binance_filter(data[symbol], "LOT_SIZE", "stepSize"), symbol
        assert m.price_tick == _binance_filter(data[symbol], "PRICE_FILTER", "tickSize"), symbol


def test_binance_steps_by_hand() -> None:
    b = book("binance")
    assert b["BTC/USDT:USDT"].amount_step == 0.001  # precision.amount 3 -> 10^-3
    assert b["BTC/USDT:USDT"].price_tick == 0.1  # precision.price 1 -> 10^-1
    assert b["ADA/USDT:USDT"].amount_step == 1.0  # precision.amount 0 -> 1, not 0
    assert b["BTC/USDT"].amount_step == 1e-05
    assert b["BTC/USDT:USDT"].min_cost == 5.0
    assert b["BTC/USDT:USDT"].market_max_amount == 120.0  # limits.market for market orders


def test_bybit_tick_size_matches_raw() -> None:
    data, b = raw("bybit"), book("bybit")
    for symbol, m in b.items():
        lot = data[symbol]["info"]["lotSizeFilter"]
        step = lot.get("qtyStep") or lot.get("basePrecision")
        assert m.amount_step == float(step), symbol
        assert m.price_tick == float(data[symbol]["info"]["priceFilter"]["tickSize"]), symbol


def test_okx_tick_size_and_contract_sizes_match_raw() -> None:
    data, b = raw("okx"), book("okx")
    for symbol, m in b.items():
        info = data[symbol]["info"]
        assert m.amount_step == float(info["lotSz"]), symbol
        assert m.price_tick == float(info["tickSz"]), symbol
        if m.is_contract:
            assert m.contract_size == float(info["ctVal"]), symbol
    assert b["BTC/USDT"].amount_step == 1e-08  # written 1e-08 in the file


def test_tiny_steps_format_as_plain_decimals() -> None:
    m = book("kraken")["BTC/USD"]
    assert m.amount_step == 1e-08
    assert m.amount_step_decimal == Decimal("1E-8")
    assert format_amount(12_345, m.amount_step_decimal) == "0.00012345"
    assert format_amount(100_000_000, m.amount_step_decimal) == "1"


@pytest.mark.parametrize(("value", "mode", "step"), [
    (3, DECIMAL_PLACES, 0.001), (0, DECIMAL_PLACES, 1.0), (8, DECIMAL_PLACES, 1e-08),
    (0.001, TICK_SIZE, 0.001), (1e-08, TICK_SIZE, 1e-08), (5, TICK_SIZE, 5.0),
])
def test_step_from_precision(value: float, mode: int, step: float) -> None:
    assert step_from_precision(value, mode) == step


def test_step_from_precision_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="decimal places"):
        step_from_precision(0.5, DECIMAL_PLACES)
    with pytest.raises(ValueError, match="tick size"):
        step_from_precision(0, TICK_SIZE)


def test_binance_integer_step_not_mistaken_for_decimal_places() -> None:
    # TICK_SIZE data where every precision is a whole number (a step of 1 written 1): the raw
    # LOT_SIZE stepSize proves it is a tick size, not "1 decimal place"
    market = {"symbol": "X/USDT", "type": "spot", "precision": {"amount": 1, "price": 1},
              "info": {"filters": [{"filterType": "LOT_SIZE", "stepSize": "1.00000000"}]}}
    assert detect_precision_mode([market]) == TICK_SIZE
    assert detect_precision_mode([{**market, "info": {}}]) == DECIMAL_PLACES


# -- contract sizes, inverse -----------------------------------------------------------------

def test_okx_contract_sizes() -> None:
    b = book("okx")
    assert b["BTC/USDT:USDT"].contract_size == 0.01
    assert b["ETH/USDT:USDT"].contract_size == 0.1
    assert b["DOGE/USDT:USDT"].contract_size == 1000.0
    inv = b["BTC/USD:BTC"]
    assert inv.inverse and not inv.linear and inv.contract_size == 100.0


def test_okx_btc_contracts_sized_in_contracts() -> None:
    # 1,000 USDT of exposure at 100,000: 0.01 BTC = 1 contract of 0.01 BTC (not 0.01 contracts)
    policy = load_policy("viper-fixed-margin", sets=("sizing.margin=100", "leverage.value=10",
                                                     "leverage.max=10"))
    d = decide(Intent("BTC/USDT:USDT", "long", 100_000.0), Account(10_000.0),
               book("okx")["BTC/USDT:USDT"], policy)
    assert d.amount == "1"
    assert d.notional == pytest.approx(1_000.0)


def test_binance_coinm_inverse_100_usd_contracts() -> None:
    m = book("binancecoinm")["BTC/USD:BTC"]
    assert m.inverse and m.contract_size == 100.0 and m.amount_step == 1.0
    # fixed notional 1,050 USD -> 10.5 contracts of 100 USD -> 10 contracts = 1,000 USD, at any
    # price (an inverse contract's face value is fixed in USD)
    policy = load_policy("viper-fixed-margin", sets=("sizing.model='fixed_notional'",
                                                     "sizing.notional=1050"))
    for price in (30_000.0, 90_000.0):
        d = decide(Intent("BTC/USD:BTC", "long", price), Account(10_000.0), m, policy)
        assert d.amount == "10"
        assert d.notional == pytest.approx(1_000.0)


def test_bitget_coinm_is_sized_in_base_coin() -> None:
    # Bitget coin-M BTC/USD:BTC: ccxt says inverse with contractSize 1, but Bitget sizes these
    # orders in BTC (minTradeNum 0.001, sizeMultiplier 0.001, like its USDT-M BTC market; ccxt's
    # own bitget parse_position computes notional = amount x price). Treating 1 as 1 USD made a
    # 900 USD trade an order for 900 BTC.
    m = book("bitget")["BTC/USD:BTC"]
    assert m.inverse and m.amount_in_base
    assert any("base coin" in n for n in m.notes)
    policy = load_policy("viper-fixed-margin", sets=("sizing.model='fixed_notional'",
                                                     "sizing.notional=900"))
    d = decide(Intent("BTC/USD:BTC", "long", 90_000.0), Account(10_000.0), m, policy)
    assert d.amount == "0.01"  # 900 / 90,000 BTC
    assert d.notional == pytest.approx(900.0)
    # the other exchanges' inverse contracts keep their fixed USD face value
    assert not book("okx")["BTC/USD:BTC"].amount_in_base
    assert not book("binancecoinm")["BTC/USD:BTC"].amount_in_base


# -- info fallbacks --------------------------------------------------------------------------

def test_bybit_min_notional_fallback_noted_in_rules_and_trace() -> None:
    m = book("bybit")["BTC/USDT:USDT"]
    assert raw("bybit")["BTC/USDT:USDT"]["limits"]["cost"]["min"] is None
    assert m.min_cost == 5.0
    note = next(n for n in m.notes if "min cost" in n)
    assert "info.lotSizeFilter.minNotionalValue" in note
    # a 4 USDT order is refused for the 5 USDT minimum; the trace says where 5 came from
    policy = load_policy("viper-fixed-margin", sets=("sizing.model='fixed_notional'",
                                                     "sizing.notional=4"))
    d = decide(Intent("BTC/USDT:USDT", "long", 1_000.0), Account(100.0), m, policy)
    assert not d.accepted
    assert d.reasons[-1] is Reason.BELOW_MIN_COST
    assert note in trace_step(d, "validate")["market_notes"]
    assert trace_step(d, "exchange_rules")["min_cost"] == 5.0
    assert any(note in (s.get("market_notes") or []) for s in (x.to_dict() for x in d.trace))


def test_kraken_costmin_fallback() -> None:
    m = book("kraken")["BTC/USDT"]
    assert m.min_cost == 0.5 and m.min_amount == 0.0001
    assert any("info.costmin" in n for n in m.notes)
    assert m.max_leverage == 1.0  # spot: never leveraged, whatever limits.leverage says


# -- Kraken Futures --------------------------------------------------------------------------

def test_kraken_futures_contract_size_quirk() -> None:
    data, m = raw("krakenfutures"), book("krakenfutures")["BTC/USD:USD"]
    assert data["BTC/USD:USD"]["contractSize"] == 0.0001  # the unified value mirrors the step
    assert m.contract_size == 1.0  # info.contractSize: the amount is in BTC
    assert m.amount_step == 0.0001
    assert any("info.contractSize" in n for n in m.notes)
    policy = load_policy("viper-fixed-margin", sets=("sizing.model='fixed_notional'",
                                                     "sizing.notional=1000"))
    d = decide(Intent("BTC/USD:USD", "long", 90_000.0), Account(10_000.0), m, policy)
    assert d.amount == "0.0111"  # 1,000 / 90,000 = 0.01111 BTC -> 111 steps of 0.0001
    assert d.notional == pytest.approx(999.0)


def test_kraken_futures_margin_levels_become_tiers() -> None:
    m = book("krakenfutures")["BTC/USD:USD"]
    # PF_XBTUSD: >= 0 IM 2% / MM 1%, >= 500k IM 4% / MM 2%, ... 6 levels
    assert len(m.tiers) == 6
    t1, t2 = m.tiers[0], m.tiers[1]
    assert (t1.min_notional, t1.max_notional) == (0.0, 500_000.0)
    assert t1.max_leverage == pytest.approx(50.0)  # 1 / 0.02
    assert t1.maintenance_margin_rate == 0.01
    assert t2.max_leverage == pytest.approx(25.0)  # 1 / 0.04
    # maintenance continuous at 500k: 500,000 x (0.02 - 0.01) = 5,000
    assert t2.maintenance_amount == pytest.approx(5_000.0)
    assert m.max_leverage == pytest.approx(50.0)
    inverse = book("krakenfutures")["BTC/USD:BTC"]
    assert inverse.inverse and len(inverse.tiers) == 8
    assert inverse.tiers[1].min_notional == pytest.approx(500_000.0)  # contracts x 1 USD


def test_kraken_futures_has_no_unified_limits() -> None:
    m = book("krakenfutures")["ETH/USD:USD"]
    assert m.min_amount == 0.0 and m.min_cost == 0.0
    assert any("one step is the minimum" in n for n in m.notes)


# -- what is left out, and unknown symbols ---------------------------------------------------

@pytest.mark.parametrize(("name", "left_out"), [
    ("binance", {"BTC/USDT:USDT-231229", "ETH/USDT:USDT-231229-800-C"}),  # stub, option
    ("bybit", {"BTC/USDT:USDT-250530-70000-C", "ETH/USDT:USDT-250530-1700-P",
               "SOL/USDT:USDT-250530-90-P"}),
    ("okx", {"BTC/USD:BTC-241227-60000-P"}),
    ("kraken", set()),
])
def test_options_and_stubs_skipped(name: str, left_out: set[str]) -> None:
    assert set(raw(name)) - set(book(name)) == left_out


def test_an_option_refused_when_built_directly() -> None:
    option = raw("bybit")["BTC/USDT:USDT-250530-70000-C"]
    with pytest.raises(InvalidInput, match="only spot, swap and future"):
        market_rules_from_ccxt(option)
    stub = raw("binance")["BTC/USDT:USDT-231229"]
    with pytest.raises(InvalidInput, match="precision"):
        market_rules_from_ccxt(stub, DECIMAL_PLACES)


def test_unknown_symbol_raises_with_suggestions() -> None:
    b = book("bybit")
    with pytest.raises(UnknownSymbol) as info:
        b["BTC/USDT:USD"]
    err = info.value
    assert isinstance(err, InvalidInput) and isinstance(err, ValueError)
    assert "BTC/USDT:USDT" in err.suggestions
    assert "symbol='BTC/USDT:USD'" in str(err) and "did you mean" in str(err)
    with pytest.raises(UnknownSymbol) as info:
        b["NOPE/XYZ"]
    assert info.value.field == "symbol"


def test_builtin_markets_load_offline() -> None:
    b = load_markets(None)
    assert {"BTC/USDT:USDT", "ETH/USDT:USDT", "ADA/USDT:USDT", "BTC/USDT", "XRP/USD"} <= set(b)
    btc = b["BTC/USDT:USDT"]
    assert btc.amount_step == 0.001 and btc.min_cost == 5.0 and btc.taker == 0.0005
    assert btc.tiers[0].max_leverage == 150.0 and btc.tiers[1].maintenance_amount == 300.0
