"""Which market trades a candle file when the user names none."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sizeguard.core.market import MarketBook, MarketRules
from sizeguard.errors import InvalidInput

if TYPE_CHECKING:
    from sizeguard.backtest.candles import Candles

USD_LIKE = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "DAI", "USDE", "ZUSD"})


def guess_market(book: MarketBook, candle_symbol: str) -> MarketRules:
    """The linear perpetual of the candles' base (USDT-settled first), else an error."""
    base = re.split(r"[_\-/]", candle_symbol.upper())[0]
    found = [m for m in book.values() if m.base.upper() == base and m.is_contract and m.linear]
    found.sort(key=lambda m: (m.settle != "USDT", m.symbol))
    if not found:
        raise InvalidInput("symbol", candle_symbol, "no linear perpetual with this base in the "
                           "markets; give --symbol MARKET for each --candles file")
    return found[0]


def check_quote(candle_symbol: str, market: MarketRules, source: str) -> str | None:
    """The candle file's quote currency against the market's: None when they agree (the USD
    family counts as one), else what is wrong."""
    from sizeguard.backtest.candles import quote_from_symbol  # noqa: PLC0415 - polars on demand

    quote = quote_from_symbol(candle_symbol)
    theirs = (market.quote or "").upper()
    if quote is None or not theirs or quote == theirs or {quote, theirs} <= USD_LIKE:
        return None
    return (f"{source}: candles quoted in {quote}, but {market.symbol} is quoted in {theirs}; "
            "prices and PnL would be in the wrong currency")


def choose_markets(loaded: Sequence[Candles], book: MarketBook, symbols: Sequence[str] | None
                   ) -> tuple[list[MarketRules], list[str]]:
    """The market each candle file trades (named, or guessed) and the notes to show: gaps and
    conversions always, missing candles never filled. A guessed market quoted in another
    currency than its candles is refused; a named one is traded with a warning."""
    if symbols and len(symbols) != len(loaded):
        raise InvalidInput("--symbol", list(symbols), f"give one per --candles file ({len(loaded)})")
    chosen = [book[s] for s in symbols] if symbols else [guess_market(book, c.symbol) for c in loaded]
    notes = [("warning: " if c.gaps else "") + c.gap_report() for c in loaded]
    for c, m in zip(loaded, chosen, strict=True):
        notes.extend(f"warning: {w}" for w in c.warnings)
        wrong = check_quote(c.symbol, m, c.source)
        if wrong and not symbols:
            raise InvalidInput("--candles", c.source, wrong.split(": ", 1)[1] + "; give --symbol "
                               f"with a market quoted in {wrong.split('quoted in ')[1].split(',')[0]}")
        if wrong:
            notes.append(f"warning: {wrong}")
    return chosen, notes
