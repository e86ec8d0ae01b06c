"""Market-order maxima from the raw ``info`` where ccxt's unified limits lack them (issue 10,
item 7 / measurement 4), named in the market's notes and the decision's trace."""

from __future__ import annotations

import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Reason
from sizeguard.core.intent import Intent
from sizing_helpers import trace_step


def book(name: str):  # type: ignore[no-untyped-def]
    return load_markets(shared_path("markets", f"{name}.json"))


def test_bybit_trx_short_stays_under_max_market_order_qty() -> None:
    # viper-50x, equity 183,850.83, short at 0.24198 with a 0.29% stop: the risk sizing wants
    # ~3.7 million TRX; Bybit's lotSizeFilter.maxMktOrderQty is 1,356,000 (ccxt's unified
    # limits carry only maxOrderQty 5,417,800), so a market order is cut to 1,356,000.
    m = book("bybit")["TRX/USDT:USDT"]
    assert (m.market_max_amount, m.market_max_source) == (
        1_356_000.0, "info.lotSizeFilter.maxMktOrderQty")
    assert any("maxMktOrderQty" in n for n in m.notes)
    plain = m.to_dict()  # what `sizeguard markets --json` and GET /v1/markets/{symbol} give
    assert (plain["market_max_amount"], plain["market_max_source"]) == (
        1_356_000.0, "info.lotSizeFilter.maxMktOrderQty")
    d = decide(Intent("TRX/USDT:USDT", "short", 0.24198, stop_pct=0.29),
               Account(equity=183_850.83), m, load_policy("viper-50x"))
    assert d.accepted
    assert float(d.amount) <= 1_356_000  # it was 3703519
    assert d.amount == "1356000"
    assert Reason.ABOVE_MAX_AMOUNT in d.reasons
    rules = trace_step(d, "exchange_rules")
    assert rules["max_amount"] == 1_356_000.0
    assert rules["max_amount_source"] == "info.lotSizeFilter.maxMktOrderQty"
    # a limit order is bound by the order maximum only
    limit = decide(Intent("TRX/USDT:USDT", "short", 0.24198, stop_pct=0.29),
                   Account(equity=183_850.83), m,
                   load_policy("viper-50x", sets=['execution.order_type="limit"']))
    assert float(limit.amount) > 1_356_000
    assert trace_step(limit, "exchange_rules")["max_amount_source"] == "limits.amount.max"


@pytest.mark.parametrize(("symbol", "mkt", "lmt"), [
    ("BTC/USDT:USDT", 12_000.0, 100_000_000.0), ("TRX/USDT:USDT", 4_000.0, 1_000_000.0),
    ("BTC/USD:BTC", 30_000.0, 100_000_000.0),
])
def test_okx_contracts_read_max_mkt_sz_and_max_lmt_sz(symbol: str, mkt: float, lmt: float) -> None:
    m = book("okx")[symbol]
    assert (m.market_max_amount, m.market_max_source) == (mkt, "info.maxMktSz")
    assert (m.max_amount, m.max_amount_source) == (lmt, "info.maxLmtSz")


def test_okx_spot_max_mkt_sz_is_quote_and_left_to_the_cost_limit() -> None:
    # OKX counts a spot market order's maxMktSz in quote (USDT): ccxt's limits.cost.max has it
    m = book("okx")["BTC/USDT"]
    assert m.market_max_amount == float("inf")
    assert m.max_cost == 1_000_000.0


def test_okx_market_order_cut_to_max_mkt_sz() -> None:
    # OKX TRX/USDT:USDT: 1,000 TRX per contract, maxMktSz 4,000 contracts. A fixed notional of
    # 2,000,000 at 0.25 is 8,000 contracts -> cut to 4,000 for a market order.
    m = book("okx")["TRX/USDT:USDT"]
    policy = load_policy("viper-fixed-margin", sets=[
        'sizing.model="fixed_notional"', "sizing.notional=2000000", "leverage.value=5",
        "leverage.max=5"])
    d = decide(Intent("TRX/USDT:USDT", "long", 0.25), Account(equity=10_000_000.0), m, policy)
    assert d.amount == "4000"
    assert trace_step(d, "exchange_rules")["max_amount_source"] == "info.maxMktSz"


def test_kraken_futures_max_position_size_bounds_an_order() -> None:
    m = book("krakenfutures")["BTC/USD:USD"]
    assert (m.max_amount, m.max_amount_source) == (1_200.0, "info.maxPositionSize")


def test_binance_market_lot_size_still_comes_from_unified_limits() -> None:
    m = book("binanceusdm")["BTC/USDT:USDT"]
    assert (m.market_max_amount, m.market_max_source) == (120.0, "limits.market.max")
