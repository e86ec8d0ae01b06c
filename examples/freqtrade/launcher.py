"""Run freqtrade offline on a ccxt market file: ``python launcher.py MARKETS.json freqtrade ARGS``.

freqtrade always reloads markets through ccxt (``load_markets(reload=True)``), which needs the
network. This launcher replaces ccxt's Binance ``fetch_markets`` (sync and async) with the
file's markets before freqtrade starts. The file (ccxt's static fixture) gives precision as
DECIMAL_PLACES while ccxt's Binance counts TICK_SIZE, so precision digits become step sizes
(without that, freqtrade truncates every amount to nothing and makes no trade); entries without
any precision (a dated-future stub) are left out.
"""

from __future__ import annotations

import copy
import json
import sys
from decimal import Decimal
from typing import Any


def step(digits: Any) -> Any:
    """10 ** -digits, exactly (3 -> 0.001)."""
    if isinstance(digits, int | float) and float(digits).is_integer():
        return float(Decimal(1).scaleb(-int(digits)))
    return digits


def markets_from(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    out = []
    for market in raw.values():
        precision = market.get("precision") or {}
        if precision.get("amount") is None or precision.get("price") is None:
            continue  # a stub without precision cannot be traded
        m = copy.deepcopy(market)
        m["precision"] = {k: step(v) if k in ("amount", "price", "base", "quote", "cost") else v
                          for k, v in precision.items()}
        out.append(m)
    return out


def install(path: str) -> None:
    import ccxt
    import ccxt.async_support

    markets = markets_from(path)

    def fetch_markets(self: Any, params: Any = None) -> list[dict[str, Any]]:
        return copy.deepcopy(markets)

    async def fetch_markets_async(self: Any, params: Any = None) -> list[dict[str, Any]]:
        return copy.deepcopy(markets)

    async def fetch_currencies_async(self: Any, params: Any = None) -> dict[str, Any]:
        return {}

    for cls in (ccxt.binance, ccxt.binanceusdm):
        cls.fetch_markets = fetch_markets
        cls.fetch_currencies = lambda self, params=None: {}
    for acls in (ccxt.async_support.binance, ccxt.async_support.binanceusdm):
        acls.fetch_markets = fetch_markets_async
        acls.fetch_currencies = fetch_currencies_async


def main() -> None:
    install(sys.argv[1])
    from freqtrade.main import main as freqtrade_main

    sys.argv = sys.argv[2:]
    freqtrade_main()


if __name__ == "__main__":
    main()
