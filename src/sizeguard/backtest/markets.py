"""Which market trades a candle file when the user names none."""

from __future__ import annotations

import re

from sizeguard.core.market import MarketBook, MarketRules
from sizeguard.errors import InvalidInput


def guess_market(book: MarketBook, candle_symbol: str) -> MarketRules:
    """The linear perpetual of the candles' base (USDT-settled first), else an error."""
    base = re.split(r"[_\-/]", candle_symbol.upper())[0]
    found = [m for m in book.values() if m.base.upper() == base and m.is_contract and m.linear]
    found.sort(key=lambda m: (m.settle != "USDT", m.symbol))
    if not found:
        raise InvalidInput("symbol", candle_symbol, "no linear perpetual with this base in the "
                           "markets; give --symbol MARKET for each --candles file")
    return found[0]
