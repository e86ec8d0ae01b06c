"""The one place where adapters are chosen and wired: the state store, the market source and
the exchange (paper or live), for the CLI and the HTTP service alike. Everything else in the
application layer sees only the ports.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from sizeguard.adapters.market_snapshot import FileMarketSource, latest_snapshot, refresh
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.errors import ExchangeError, InvalidInput
from sizeguard.ports import Exchange, ExchangePosition, MarketSource

__all__ = ["LiveExchange", "check_live", "live_exchange", "market_source", "open_state",
           "paper_exchange", "refresh_markets"]

ENV_KEY, ENV_SECRET, ENV_PASSWORD = ("SIZEGUARD_API_KEY", "SIZEGUARD_API_SECRET",
                                     "SIZEGUARD_API_PASSWORD")


def open_state(url: str | None = None, *, timeout: float | None = None) -> SqlStore:
    """The state store at ``url`` (see :func:`sizeguard.adapters.sql_store.open_store`;
    ``timeout`` bounds each PostgreSQL statement)."""
    return open_store(url, timeout=timeout)


def market_source(markets: str | Path | None = None, tiers: str | Path | None = None,
                  exchange: str | None = None) -> FileMarketSource:
    """A snapshot file, else the newest saved snapshot of ``exchange``, else the built-in
    markets."""
    if markets is None and exchange is not None:
        found = latest_snapshot(exchange)
        if found is None:
            raise InvalidInput("exchange", exchange, "no saved market snapshot; run "
                               f"`sizeguard markets refresh --exchange {exchange}` or give --markets")
        markets = found
    return FileMarketSource(markets, tiers)


def refresh_markets(exchange: str, directory: Path | None = None) -> tuple[Path, FileMarketSource]:
    """Fetch ``exchange``'s markets (and tiers) through ccxt and save a dated snapshot."""
    from sizeguard.adapters.ccxt_exchange import make_exchange  # noqa: PLC0415 - ccxt is heavy

    return refresh(make_exchange(exchange), directory)


def paper_exchange(store: SqlStore, account_id: str, markets: MarketSource,
                   name: str = "paper") -> PaperExchange:
    """The paper account as the store left it: equity, open positions and their stops and
    take-profits (as the trader placed them), read in one transaction."""
    with store.unit_of_work() as uow:
        rs = store.risk_state(account_id)
        held = store.positions(account_id)
        uow.commit()
    paper = PaperExchange(markets.markets(), balance=rs.equity, quote=rs.quote, name=name,
                          positions=[ExchangePosition(p.symbol, p.side, float(p.amount),
                                                      p.entry_price, p.notional, p.margin,
                                                      p.leverage) for p in held])
    for p in held:
        if not p.client_order_id or p.symbol not in paper.book:
            continue
        try:
            if p.stop_price:
                paper.place_stop(p.symbol, p.side, p.amount, p.stop_price, f"{p.client_order_id}-sl")
            if p.take_profit:
                paper.place_take_profit(p.symbol, p.side, p.amount, p.take_profit,
                                        f"{p.client_order_id}-tp")
        except ExchangeError:
            continue  # e.g. a stop already beyond the entry: the position stays, unprotected
    return paper


def check_live(exchange: str | None) -> str:
    """Refuse live trading without an exchange id and its key; returns the id."""
    if exchange in (None, "", "paper"):
        raise InvalidInput("exchange", exchange, "--live needs --exchange NAME (a ccxt exchange "
                           "id, e.g. binanceusdm)")
    if not os.environ.get(ENV_KEY):
        raise InvalidInput(ENV_KEY, None, "--live needs the exchange API key in the environment "
                           f"({ENV_KEY}, {ENV_SECRET})")
    return str(exchange)


def live_exchange(exchange: str | None, *, hedge_mode: bool, quote: str) -> Exchange:
    """The live account through ccxt, keys from the environment (read here, never logged)."""
    from sizeguard.adapters.ccxt_exchange import (  # noqa: PLC0415 - ccxt loads only when live
        CcxtExchange,
        make_exchange,
    )

    name = check_live(exchange)
    x = make_exchange(name, api_key=os.environ.get(ENV_KEY), secret=os.environ.get(ENV_SECRET),
                      password=os.environ.get(ENV_PASSWORD))
    return CcxtExchange(x, hedge_mode=hedge_mode, quote=quote)


class LiveExchange:
    """A process's one live exchange object, built on first use (ccxt objects are not
    thread-safe: callers serialise orders on it)."""

    def __init__(self, exchange: str, *, hedge_mode: bool, quote: Callable[[], str]) -> None:
        check_live(exchange)
        self.name, self.hedge_mode, self._quote = exchange, hedge_mode, quote
        self._exchange: Exchange | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Exchange:
        with self._lock:
            if self._exchange is None:
                self._exchange = live_exchange(self.name, hedge_mode=self.hedge_mode,
                                               quote=self._quote())
            return self._exchange
