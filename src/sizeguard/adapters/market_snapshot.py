"""Market sources: a snapshot file (or the built-in markets), and live refreshes through ccxt
saved as dated snapshots so later runs work offline.

A snapshot is the JSON document :func:`sizeguard.adapters.market_files.load_markets` reads:
``{"exchange", "precisionMode", "fetched_at", "markets", "tiers"}``. Its id, recorded with every
decision, is ``<exchange>@<fetched_at>#<first 12 hex of the file's sha256>``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from sizeguard.adapters.market_files import BUILTIN, load_markets
from sizeguard.core.market import MarketBook
from sizeguard.errors import ExchangeError, InvalidInput


def snapshot_dir() -> Path:
    from platformdirs import user_data_dir  # noqa: PLC0415

    return Path(user_data_dir("sizeguard", appauthor=False)) / "markets"


class FileMarketSource:
    """Markets from a file (a snapshot or a plain ccxt ``{symbol: market}`` dump), or the
    built-in examples when ``path`` is None."""

    def __init__(self, path: str | Path | None = None, tiers: str | Path | None = None) -> None:
        self.path = None if path is None or str(path) == BUILTIN else Path(path)
        self.tiers = Path(tiers) if tiers is not None else None
        self._book: MarketBook | None = None
        self._id: str | None = None

    @property
    def snapshot_id(self) -> str:
        if self._id is None:
            if self.path is None:
                self._id = BUILTIN
            else:
                try:
                    raw = self.path.read_bytes()
                except OSError:
                    raise InvalidInput("markets", str(self.path), "no such file") from None
                meta: dict[str, Any] = {}
                try:
                    doc = json.loads(raw)
                    if isinstance(doc, dict) and isinstance(doc.get("markets"), dict):
                        meta = doc
                except ValueError:
                    pass
                exchange = meta.get("exchange") or self.path.stem
                fetched = meta.get("fetched_at") or "file"
                self._id = f"{exchange}@{fetched}#{hashlib.sha256(raw).hexdigest()[:12]}"
            if self.tiers is not None:
                self._id += f"+tiers#{hashlib.sha256(self.tiers.read_bytes()).hexdigest()[:12]}"
        return self._id

    def markets(self) -> MarketBook:
        if self._book is None:
            from sizeguard.adapters.market_files import attach_tiers  # noqa: PLC0415

            book = load_markets(self.path)
            self._book = attach_tiers(book, self.tiers) if self.tiers is not None else book
        return self._book


def latest_snapshot(exchange: str, directory: Path | None = None) -> Path | None:
    """The newest saved snapshot of ``exchange`` (names sort by their UTC timestamp)."""
    d = directory or snapshot_dir()
    found = sorted(d.glob(f"{exchange}-*.json"))
    return found[-1] if found else None


def _plain(value: Any) -> Any:
    """ccxt markets are JSON already; this drops what is not (defensive)."""
    return json.loads(json.dumps(value, default=str))


def fetch_snapshot(exchange: Any) -> dict[str, Any]:
    """``load_markets`` (and ``fetch_leverage_tiers`` where the exchange has it) on a ccxt
    exchange object, as a snapshot document. ccxt errors become sizeguard's."""
    from sizeguard.adapters.ccxt_exchange import map_ccxt_errors  # noqa: PLC0415

    with map_ccxt_errors(exchange.id):
        markets = exchange.load_markets()
        tiers: dict[str, Any] = {}
        if exchange.has.get("fetchLeverageTiers"):
            try:
                tiers = exchange.fetch_leverage_tiers() or {}
            except Exception as exc:  # tiers are optional: keep the markets
                if not _is_ccxt_error(exc):
                    raise
                tiers = {}
    return {
        "exchange": exchange.id,
        "precisionMode": int(exchange.precisionMode),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "markets": _plain(markets),
        "tiers": _plain(tiers),
    }


def _is_ccxt_error(exc: Exception) -> bool:
    return type(exc).__module__.startswith("ccxt")


def save_snapshot(doc: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``doc`` as ``<exchange>-<fetched_at>.json`` under ``directory`` (atomically)."""
    d = directory or snapshot_dir()
    d.mkdir(parents=True, exist_ok=True)
    stamp = str(doc["fetched_at"]).replace(":", "").replace("-", "")
    path = d / f"{doc['exchange']}-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path


def refresh(exchange: Any, directory: Path | None = None) -> tuple[Path, FileMarketSource]:
    """Fetch live markets, save the dated snapshot and return it as a source."""
    doc = fetch_snapshot(exchange)
    if not doc["markets"]:
        raise ExchangeError(f"{exchange.id} returned no markets", exchange=exchange.id)
    path = save_snapshot(doc, directory)
    return path, FileMarketSource(path)


class BookSource:
    """A market book already in memory (e.g. just loaded from a live exchange) as a source."""

    def __init__(self, book: MarketBook, snapshot_id: str) -> None:
        self._book = book
        self._id = snapshot_id

    @property
    def snapshot_id(self) -> str:
        return self._id

    def markets(self) -> MarketBook:
        return self._book
