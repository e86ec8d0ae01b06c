"""Market and leverage-tier files: ccxt unified JSON on disk, and the built-in example markets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from sizeguard.core.market import MarketBook, market_book_from_ccxt
from sizeguard.core.tiers import Tier, tiers_from_ccxt
from sizeguard.errors import InvalidInput

BUILTIN = "builtin"


def _read_json(path: Path, what: str) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InvalidInput(what, str(path), "no such file") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(what, str(path), f"not valid JSON: {exc}") from None


def load_markets(path: str | Path | None = None, *, exchange: str | None = None,
                 precision_mode: int | None = None) -> MarketBook:
    """Markets from a ccxt ``{symbol: market}`` JSON file, or the built-in examples (None).

    The exchange name defaults to the file's stem (``binanceusdm.json`` -> binanceusdm); the
    precision mode is detected from the values when not given.
    """
    if path is None or str(path) == BUILTIN:
        return builtin_markets()
    p = Path(path)
    data = _read_json(p, "markets")
    if not isinstance(data, Mapping):
        raise InvalidInput("markets", str(p), "must hold a JSON object {symbol: market}")
    if "markets" in data and isinstance(data["markets"], Mapping):  # a saved snapshot
        _check_shape(data["markets"], str(p))
        book = _book_from_document(data, str(p), exchange)
    else:
        _check_shape(data, str(p))
        book = market_book_from_ccxt(data, precision_mode, exchange or p.stem, str(p))
    if not book:
        raise InvalidInput("markets", str(p), "holds no market that can be sized")
    return book


def _check_shape(data: Mapping[str, Any], source: str) -> None:
    """Every entry a ccxt market object: refused naming the first entry that is not one."""
    for key, market in data.items():
        if not isinstance(market, Mapping) or not isinstance(market.get("symbol", key), str) or \
                not ("precision" in market or "limits" in market or "base" in market):
            raise InvalidInput("markets", source, f"entry {str(key)[:40]!r} is not a ccxt market "
                               "(expected {symbol: {symbol, base, quote, precision, limits, ...}})")


def _book_from_document(doc: Mapping[str, Any], source: str, exchange: str | None) -> MarketBook:
    mode = doc.get("precisionMode")
    book = market_book_from_ccxt(doc["markets"], int(mode) if mode is not None else None,
                                 exchange or str(doc.get("exchange") or ""), source)
    tiers = doc.get("tiers")
    if isinstance(tiers, Mapping) and tiers:
        book = book.with_tiers(tiers_by_symbol(tiers), source)
    return book


def builtin_markets() -> MarketBook:
    """The example markets shipped with the package (see ``data/example_markets.json``)."""
    text = resources.files("sizeguard").joinpath("data/example_markets.json").read_text("utf-8")
    return _book_from_document(json.loads(text), BUILTIN, None)


def tiers_by_symbol(data: Mapping[str, Any]) -> dict[str, tuple[Tier, ...]]:
    out: dict[str, tuple[Tier, ...]] = {}
    for symbol, rows in data.items():
        if isinstance(rows, list) and rows:
            out[symbol] = tiers_from_ccxt(rows, symbol)
    return out


def load_tiers(path: str | Path) -> dict[str, tuple[Tier, ...]]:
    """Leverage tiers from a ccxt ``{symbol: [tier, ...]}`` JSON file (e.g. binanceusdm)."""
    p = Path(path)
    data = _read_json(p, "tiers")
    if not isinstance(data, Mapping):
        raise InvalidInput("tiers", str(p), "must hold a JSON object {symbol: [tier, ...]}")
    bad = next((k for k, v in data.items() if not isinstance(v, list)), None)
    if bad is not None:
        raise InvalidInput("tiers", str(p), f"entry {str(bad)[:40]!r} is not a list of tiers (a "
                           "markets file given as --tiers?)")
    tiers = tiers_by_symbol(data)
    if not tiers:
        raise InvalidInput("tiers", str(p), "holds no leverage tiers")
    return tiers


def attach_tiers(book: MarketBook, path: str | Path) -> MarketBook:
    return book.with_tiers(load_tiers(path), Path(path).name)
