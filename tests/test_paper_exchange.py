"""The paper exchange accepts every amount the engine produces on the real markets of
../shared/data/markets/, and refuses hand-made bad orders for the reasons the exchange would."""

from __future__ import annotations

import math
import random

import pytest

from conftest import shared_path
from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.adapters.paper import PaperExchange
from sizeguard.config import load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.errors import DuplicateOrder, InsufficientFunds, InvalidOrder

FILES = ["binance", "binanceusdm", "binancecoinm", "bybit", "okx", "kraken", "krakenfutures",
         "bitget"]
PRICES = {"BTC": (20_000.0, 120_000.0), "ETH": (800.0, 6_000.0), "LTC": (30.0, 300.0),
          "SUSHI": (0.3, 5.0), "FTM": (0.1, 2.0)}
POLICIES = [
    ("viper-fixed-margin", []),
    ("quantum-4x30", []),
    ("ai-atr-risk", []),
    ("viper-50x", []),
    ("kraken-micro", []),
    ("ai-atr-risk", ['leverage.mode="auto"', "leverage.max=20"]),
    ("ai-atr-risk", ['execution.below_minimum="raise"', "execution.raise_tolerance=5"]),
]


def _price(rng: random.Random, base: str) -> float:
    lo, hi = PRICES.get(base, (0.01, 50.0))
    return float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.6g}")


@pytest.mark.shared_data
@pytest.mark.parametrize("name", FILES)
def test_paper_accepts_every_amount_the_engine_produces(name: str) -> None:
    book = load_markets(shared_path("markets", f"{name}.json"))
    if name == "binanceusdm":
        book = attach_tiers(book, shared_path("leverage_tiers", "binanceusdm.json"))
    rng = random.Random(f"paper-{name}")
    policies = [load_policy(p, sets=s) for p, s in POLICIES]
    accepted = 0
    for symbol, market in book.items():
        for _ in range(30):
            policy = rng.choice(policies)
            side = "long" if market.kind == "spot" else rng.choice(["long", "short"])
            price = _price(rng, market.base)
            equity = float(f"{math.exp(rng.uniform(math.log(5), math.log(2e6))):.2f}")
            stop_pct = rng.choice([None, 0.5, 1.5, 3.0, 8.0])
            intent = Intent(symbol, side, price, stop_pct=stop_pct,
                            atr=price * rng.uniform(0.002, 0.03) if stop_pct is None else None,
                            confidence=rng.choice([None, 0.5, 0.7, 0.9]))
            d = decide(intent, Account(equity=equity), market, policy)
            if not d.accepted:
                continue
            paper = PaperExchange(book, balance=equity)
            paper.set_margin_mode(symbol, d.margin_mode)
            paper.set_leverage(symbol, d.leverage)
            order = paper.place_entry(symbol, side, d.amount, price, f"c{accepted}")
            assert order.status == "filled" and order.amount == d.amount
            accepted += 1
    assert accepted > 20, f"too few accepted decisions on {name} to mean anything"


BOOK = load_markets(None)
BTC = "BTC/USDT:USDT"


def paper(balance: float = 10_000.0, **kw: object) -> PaperExchange:
    return PaperExchange(BOOK, balance=balance, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("amount", "rule", "code"), [
    ("0.0015", "step", "-1111"),        # BTC perp step is 0.001
    ("0", "min_amount", "-4003"),
    ("-1", "min_amount", "-4003"),
    ("0.0001", "step", "-1111"),
    ("abc", "amount", "-1102"),
    ("2000", "max_amount", "-4005"),    # above the market-order max
])
def test_bad_amounts_are_refused_like_binance(amount: str, rule: str, code: str) -> None:
    p = paper(1e9)
    p.set_leverage(BTC, 1)
    with pytest.raises(InvalidOrder) as info:
        p.place_entry(BTC, "long", amount, 50_000.0, "c1")
    assert info.value.rule == rule and info.value.code == code
    assert f'"code":{code}' in str(info.value)


def test_below_min_cost_names_the_minimum() -> None:
    p = paper()
    p.set_leverage(BTC, 10)
    with pytest.raises(InvalidOrder, match="no smaller than 5") as info:
        p.place_entry(BTC, "long", "0.001", 1_000.0, "c1")  # notional 1 < 5
    assert info.value.rule == "min_cost" and info.value.minimum == 5.0


def test_below_min_amount_names_the_minimum() -> None:
    p = PaperExchange(BOOK, balance=100.0)
    with pytest.raises(InvalidOrder, match="LOT_SIZE") as info:
        p.place_entry("XRP/USD", "long", "5", 0.5, "c1")  # Kraken XRP minimum is 10
    assert info.value.rule == "min_amount" and info.value.minimum == 10.0


def test_leverage_above_the_tier_is_refused() -> None:
    p = paper(1e9)
    p.set_leverage(BTC, 150)  # allowed for the first tier only
    with pytest.raises(InvalidOrder, match="maximum allowable position") as info:
        p.place_entry(BTC, "long", "10", 50_000.0, "c1")  # 500,000 notional: a higher tier
    assert info.value.rule == "leverage"
    with pytest.raises(InvalidOrder, match="Leverage 151"):
        p.set_leverage(BTC, 151)


def test_insufficient_margin() -> None:
    p = paper(100.0)
    p.set_leverage(BTC, 10)
    with pytest.raises(InsufficientFunds, match="Margin is insufficient"):
        p.place_entry(BTC, "long", "0.021", 50_000.0, "c1")  # margin 105 > 100
    assert p.place_entry(BTC, "long", "0.019", 50_000.0, "c2").status == "filled"


def test_unknown_symbol_and_duplicate_client_order_id() -> None:
    p = paper()
    with pytest.raises(InvalidOrder, match="Invalid symbol") as info:
        p.place_entry("NOPE/USDT:USDT", "long", "1", 1.0, "c1")
    assert info.value.rule == "symbol"
    p.set_leverage(BTC, 10)
    p.place_entry(BTC, "long", "0.01", 50_000.0, "c1")
    with pytest.raises(DuplicateOrder):
        p.place_entry(BTC, "long", "0.01", 50_000.0, "c1")


def test_fills_with_fees_and_slippage_and_closes_with_pnl() -> None:
    p = paper(10_000.0, slippage_bps=10)
    p.set_leverage(BTC, 10)
    o = p.place_entry(BTC, "long", "0.1", 50_000.0, "c1")
    assert o.average == pytest.approx(50_050.0)
    assert o.fee == pytest.approx(0.1 * 50_050.0 * 0.0005)
    assert p.balance().used == pytest.approx(500.5)
    sl = p.place_stop(BTC, "long", "0.1", 49_000.0, "c1-sl")
    assert sl.status == "open" and sl.side == "sell"
    with pytest.raises(InvalidOrder, match="immediately trigger"):
        p.place_stop(BTC, "long", "0.1", 51_000.0, "c1-sl2")
    with pytest.raises(InvalidOrder, match="ReduceOnly"):
        p.place_take_profit(BTC, "short", "0.1", 40_000.0, "c1-tp")
    c = p.close_position(BTC, "long", "0.1", 51_000.0, "c1-x")
    assert c.average == pytest.approx(50_949.0)
    assert p.positions() == []
    assert p.orders["c1-sl"].status == "canceled"
    pnl = 0.1 * (50_949.0 - 50_050.0)
    assert p.balance().total == pytest.approx(10_000.0 - o.fee + pnl - c.fee)
