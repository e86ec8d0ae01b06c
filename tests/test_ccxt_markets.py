"""Every market of every file in ../shared/data/markets/, sized over many seeded random intents,
checked against ccxt itself (offline: ``set_markets``, no network).

For each accepted decision:
* the amount equals ``exchange.amount_to_precision(symbol, amount)`` (ccxt truncates to the
  market's precision; a whole number of lots comes back unchanged);
* it equals ccxt's truncation of the engine's own pre-rounding quantity (from the trace), so our
  floor-to-lots is ccxt's TRUNCATE, not one lot off, unless the engine raised it to a minimum or
  cut it to a maximum;
* it passes the market's unified limits: amount min/max (and Binance's ``limits.market`` for
  market orders) and cost min/max, the cost computed the way ccxt defines it (spot: amount x
  price; linear: amount x contractSize x price; inverse: amount x contractSize in USD).

The Binance files are in ccxt's DECIMAL_PLACES mode (see the data README), so their exchange
object gets ``precisionMode = DECIMAL_PLACES``; every other file is TICK_SIZE.
"""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from conftest import SHARED_DATA, shared_path
from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Reason
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict

FILES = ["binance", "binanceusdm", "binancecoinm", "bybit", "okx", "kraken", "krakenfutures",
         "bitget"]
INTENTS_PER_MARKET = 150
# rough real prices by base coin (the fixtures carry none); each intent moves them x0.5..x2
PRICES = {"BTC": 90_000.0, "ETH": 3_000.0, "LTC": 80.0, "ADA": 0.5, "XRP": 0.6, "DOGE": 0.15,
          "TRX": 0.25, "ZRX": 0.3, "FTM": 0.5, "SUSHI": 1.0, "SOL": 150.0}


def ccxt_exchange(name: str, markets: dict[str, Any]) -> Any:
    ex = getattr(ccxt, name)()
    if name.startswith("binance"):
        ex.precisionMode = ccxt.DECIMAL_PLACES
    ex.set_markets(markets)
    return ex


def random_policy(rng: random.Random, spot: bool) -> Policy:
    model = rng.choice(["risk", "risk", "fixed_notional", "balance_fraction", "fixed_margin"])
    sizing: dict[str, Any] = {"model": model}
    if model == "risk":
        sizing["risk"] = rng.choice([0.002, 0.01, 0.03])
    elif model == "fixed_notional":
        sizing["notional"] = 10 ** rng.uniform(0.5, 5)
    elif model == "fixed_margin":
        sizing["margin"] = 10 ** rng.uniform(0, 4)
    else:
        sizing["fraction"] = rng.choice([0.05, 0.25, 0.95])
    lev = 1 if spot else rng.choice([1, 2, 5, 10, 20])
    return policy_from_dict({
        "sizing": sizing,
        "leverage": {"value": lev, "max": max(lev, 20)},
        "liquidation": {"guard": rng.choice(["lower_leverage", "shrink", "off"])},
        "execution": {"below_minimum": rng.choice(["skip", "raise"]), "raise_tolerance": 0.5},
    })


def random_intent(rng: random.Random, m: MarketRules) -> Intent:
    price = PRICES.get(m.base, 1.0) * 2 ** rng.uniform(-1, 1)
    side = "long" if m.kind == "spot" else rng.choice(["long", "short"])
    return Intent(m.symbol, side, price, stop_pct=rng.choice([0.2, 1.0, 2.5, 8.0]))


def ccxt_cost(market: dict[str, Any], amount: float, price: float) -> float:
    if not market.get("contract"):
        return amount * price
    size = float(market.get("contractSize") or 1)
    if market.get("inverse") and "sizeMultiplier" not in (market.get("info") or {}):
        return amount * size  # contracts of a fixed quote face value
    return amount * size * price  # linear, and Bitget coin-M (sized in base coin)


def limit(market: dict[str, Any], *path: str) -> float | None:
    value: Any = market.get("limits") or {}
    for key in path:
        value = (value or {}).get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


@pytest.mark.parametrize("name", FILES)
def test_every_market_sized_matches_ccxt(name: str) -> None:
    path = shared_path("markets", f"{name}.json")
    raw: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    book = load_markets(path)
    if name == "binanceusdm":  # real tiers too: leverage and liquidation by bracket
        book = attach_tiers(book, shared_path("leverage_tiers", "binanceusdm.json"))
    sizeable = {s for s, m in raw.items()
                if m.get("type") != "option" and (m.get("precision") or {}).get("amount") is not None}
    assert set(book) == sizeable  # every sizeable market loaded; only options and stubs left out
    ex = ccxt_exchange(name, raw)
    checked = 0
    for symbol in sorted(book):
        m, unified = book[symbol], raw[symbol]
        rng = random.Random(f"{name}:{symbol}")
        accepted = 0
        for _ in range(INTENTS_PER_MARKET):
            intent = random_intent(rng, m)
            equity = 10 ** rng.uniform(0.5, 6)
            d = decide(intent, Account(equity=equity), m, random_policy(rng, m.kind == "spot"))
            if not d.accepted:
                assert d.amount == "0"
                continue
            accepted += 1
            amount = Decimal(d.amount)
            assert Decimal(ex.amount_to_precision(symbol, float(d.amount))) == amount, (symbol, d.amount)
            if not {Reason.RAISED_TO_MINIMUM, Reason.ABOVE_MAX_AMOUNT} & set(d.reasons):
                qty = next(dict(s.values)["quantity"] for s in d.trace if s.step == "exchange_rules")
                lots_exact = qty / m.amount_step
                # not a float hair (a few ulps of the lot count) off a whole lot
                if abs(lots_exact - round(lots_exact)) > 1e-6 + 1e-14 * lots_exact:
                    assert Decimal(ex.amount_to_precision(symbol, qty)) == amount, (symbol, qty)
            a = float(amount)
            lo, hi = limit(unified, "amount", "min"), limit(unified, "amount", "max")
            assert lo is None or a >= lo * (1 - 1e-12), (symbol, a, lo)
            assert hi is None or a <= hi, (symbol, a, hi)
            mlo, mhi = limit(unified, "market", "min"), limit(unified, "market", "max")
            assert mlo is None or a >= mlo * (1 - 1e-12)
            assert mhi is None or a <= mhi
            cost = ccxt_cost(unified, a, intent.price)
            clo, chi = limit(unified, "cost", "min"), limit(unified, "cost", "max")
            assert clo is None or cost >= clo * (1 - 1e-12), (symbol, cost, clo)
            assert chi is None or cost <= chi
            assert d.notional >= m.min_cost * (1 - 1e-12)  # incl. info fallbacks (Bybit 5)
            if m.tiers:
                tier = next(t for t in m.tiers if t.min_notional <= d.notional < t.max_notional)
                assert d.leverage <= tier.max_leverage
            assert math.isfinite(d.risk) and d.risk >= 0
        assert accepted >= INTENTS_PER_MARKET // 10, (symbol, accepted)  # not vacuous
        checked += accepted
    assert checked > 0


def test_shared_data_path_is_the_one_conftest_uses() -> None:
    # the test above reads the files in place: nothing from shared/data lives in the repo
    assert shared_path("markets").parent == SHARED_DATA
    repo = Path(__file__).resolve().parents[1]
    assert not list(repo.glob("**/markets/bybit.json"))
