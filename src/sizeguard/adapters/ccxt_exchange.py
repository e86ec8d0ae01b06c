"""A live exchange account through ccxt. The only module (with market_snapshot) that talks to
ccxt; every ccxt error is mapped here to sizeguard's own (:mod:`sizeguard.errors`).

Hedge mode ("two-way" positions): Binance wants ``positionSide`` LONG/SHORT on every order and
refuses ``reduceOnly`` beside it; Bitget wants ``tradeSide`` open/close, which ccxt derives from
``hedged: True``. One-way mode sends ``reduceOnly`` on stops and take-profits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ccxt

from sizeguard.core import position
from sizeguard.errors import (
    DuplicateOrder,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    NetworkError,
    RateLimited,
)
from sizeguard.ports import Balance, ExchangePosition, OrderResult

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
# (pattern, rule, does group 1 carry the minimum?)
_MINIMUM_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"notional must be no smaller than " + _NUMBER, re.I), "min_cost"),
    (re.compile(r"min(?:imum)?[ _]?notional[^0-9]*" + _NUMBER, re.I), "min_cost"),
    (re.compile(r"minimum (?:order )?(?:amount|value|cost)[^0-9]*" + _NUMBER, re.I), "min_cost"),
    (re.compile(r"less than the minimum (?:order )?(?:quantity|amount)[^0-9]*" + _NUMBER, re.I),
     "min_amount"),
]
_MINIMUM_WORDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"cost minimum not met|MIN_NOTIONAL|notional must be|minimum (?:order )?value",
                re.I), "min_cost"),
    (re.compile(r"order minimum not met|LOT_SIZE|minimum (?:order )?(?:quantity|amount)|"
                r"less than the minimum", re.I), "min_amount"),
    (re.compile(r"precision|step size", re.I), "step"),
    (re.compile(r"leverage", re.I), "leverage"),
]


def classify_invalid_order(message: str) -> tuple[str | None, float | None]:
    """(rule, minimum) read from an exchange's rejection text."""
    for pattern, rule in _MINIMUM_PATTERNS:
        m = pattern.search(message)
        if m:
            return rule, float(m.group(1))
    for pattern, rule in _MINIMUM_WORDS:
        if pattern.search(message):
            return rule, None
    return None, None


def map_ccxt_error(exc: Exception, exchange: str, symbol: str | None = None) -> ExchangeError:
    """The sizeguard error for a ccxt exception (order matters: ccxt's tree nests)."""
    text = str(exc)
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RateLimited(text, exchange=exchange, symbol=symbol)
    if isinstance(exc, ccxt.NetworkError):
        return NetworkError(text, exchange=exchange, symbol=symbol)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFunds(text, exchange=exchange, symbol=symbol)
    if isinstance(exc, ccxt.DuplicateOrderId):
        return DuplicateOrder(text, exchange=exchange, symbol=symbol)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadSymbol | ccxt.OperationRejected):
        rule, minimum = classify_invalid_order(text)
        if isinstance(exc, ccxt.BadSymbol):
            rule = "symbol"
        return InvalidOrder(text, exchange=exchange, symbol=symbol, rule=rule, minimum=minimum)
    if isinstance(exc, ccxt.ExchangeError):
        rule, minimum = classify_invalid_order(text)
        if rule in ("min_cost", "min_amount", "step"):
            return InvalidOrder(text, exchange=exchange, symbol=symbol, rule=rule, minimum=minimum)
        return ExchangeError(text, exchange=exchange, symbol=symbol)
    return ExchangeError(f"{type(exc).__name__}: {text}", exchange=exchange, symbol=symbol)


@contextmanager
def map_ccxt_errors(exchange: str, symbol: str | None = None) -> Iterator[None]:
    try:
        yield
    except ccxt.BaseError as exc:
        raise map_ccxt_error(exc, exchange, symbol) from exc


def _f(value: Any, default: float = 0.0) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


class CcxtExchange:
    """An :class:`~sizeguard.ports.Exchange` over a ccxt exchange object (keys set by the
    caller). ``hedge_mode`` sends the position side the exchange needs on every order."""

    def __init__(self, exchange: Any, *, hedge_mode: bool = False, quote: str = "USDT") -> None:
        self.x = exchange
        self.hedge_mode = hedge_mode
        self.quote = quote
        self.margin_modes: dict[str, str] = {}

    @property
    def name(self) -> str:
        return str(self.x.id)

    @contextmanager
    def _call(self, symbol: str | None = None) -> Iterator[None]:
        with map_ccxt_errors(self.name, symbol):
            yield

    def load_markets(self) -> dict[str, Any]:
        with self._call():
            markets: dict[str, Any] = self.x.load_markets()
        return markets

    # -- account ------------------------------------------------------------------------
    def balance(self) -> Balance:
        with self._call():
            b = self.x.fetch_balance()
        cur = b.get(self.quote) or {}
        return Balance(self.quote, _f(cur.get("total")), _f(cur.get("free")), _f(cur.get("used")))

    def positions(self) -> list[ExchangePosition]:
        with self._call():
            rows = self.x.fetch_positions()
        out = []
        for p in rows:
            contracts = _f(p.get("contracts"))
            if contracts == 0:
                continue
            side = p.get("side") or ("long" if contracts > 0 else "short")
            notional = abs(_f(p.get("notional")))
            lev = _f(p.get("leverage"), 1.0) or 1.0
            margin = _f(p.get("initialMargin")) or _f(p.get("collateral")) or \
                position.margin_of(notional, lev)
            out.append(ExchangePosition(str(p["symbol"]), str(side), abs(contracts),
                                        _f(p.get("entryPrice")), notional, margin, lev,
                                        _f(p.get("unrealizedPnl"))))
        return out

    def set_margin_mode(self, symbol: str, mode: str) -> None:
        if mode not in ("isolated", "cross"):
            return
        self.margin_modes[symbol] = mode
        try:
            with self._call(symbol):
                self.x.set_margin_mode(mode, symbol)
        except ExchangeError as exc:
            # Binance -4046 "No need to change margin type." and the like: already set
            if "no need to change" in str(exc).lower() or isinstance(exc.__cause__,
                                                                     ccxt.MarginModeAlreadySet):
                return
            raise

    def set_leverage(self, symbol: str, leverage: float) -> None:
        lev = int(leverage) if float(leverage).is_integer() else leverage
        with self._call(symbol):
            self.x.set_leverage(lev, symbol)

    # -- orders -------------------------------------------------------------------------
    def _side_params(self, symbol: str, side: str, closing: bool) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.name.startswith("bitget") and symbol in self.margin_modes:
            params["marginMode"] = self.margin_modes[symbol]  # bitget sends it on every order
        if self.hedge_mode:
            if self.name.startswith("binance"):
                params["positionSide"] = "LONG" if side == "long" else "SHORT"
            elif self.name.startswith("bitget"):
                params["hedged"] = True  # ccxt sends tradeSide open / close
            else:
                params["positionSide"] = side
            if closing and not self.name.startswith("binance"):
                params["reduceOnly"] = True
        elif closing:
            params["reduceOnly"] = True
        return params

    def _result(self, o: dict[str, Any], kind: str, amount: str, cid: str,
                trigger: float | None = None) -> OrderResult:
        fee = o.get("fee") or {}
        status = {"closed": "filled", "open": "open", "canceled": "canceled"}.get(
            str(o.get("status")), str(o.get("status") or "open"))
        filled = _f(o.get("filled"))
        if kind in ("entry", "close") and status == "open" and filled == 0 and o.get("type") == "market":
            status = "filled"  # some venues answer a market order before it is matched
            filled = float(amount)
        info: dict[str, Any] = o["info"] if isinstance(o.get("info"), dict) else {}
        average = (o.get("average") or o.get("price") or _f(info.get("actualPrice"))
                   or _f(info.get("avgPrice")) or None)
        return OrderResult(str(o.get("id") or ""), str(o.get("clientOrderId") or cid),
                           str(o.get("symbol") or ""), str(o.get("side") or ""), kind, amount,
                           status, filled, average,
                           _f(fee.get("cost")) if isinstance(fee, dict) else 0.0,
                           trigger, raw=o.get("info") or {})

    def place_entry(self, symbol: str, side: str, amount: str, price: float,
                    client_order_id: str) -> OrderResult:
        params = {"clientOrderId": client_order_id, **self._side_params(symbol, side, closing=False)}
        with self._call(symbol):
            o = self.x.create_order(symbol, "market", "buy" if side == "long" else "sell",
                                    float(amount), None, params)
        r = self._result(o, "entry", amount, client_order_id)
        return r if r.symbol else _with_symbol(r, symbol)

    def _protective(self, kind: str, symbol: str, side: str, amount: str, trigger: float,
                    client_order_id: str) -> OrderResult:
        key = "stopLossPrice" if kind == "stop" else "takeProfitPrice"
        params = {"clientOrderId": client_order_id, key: trigger,
                  **self._side_params(symbol, side, closing=True)}
        with self._call(symbol):
            o = self.x.create_order(symbol, "market", "sell" if side == "long" else "buy",
                                    float(amount), None, params)
        r = self._result(o, kind, amount, client_order_id, trigger)
        return r if r.symbol else _with_symbol(r, symbol)

    def place_stop(self, symbol: str, side: str, amount: str, stop_price: float,
                   client_order_id: str) -> OrderResult:
        return self._protective("stop", symbol, side, amount, stop_price, client_order_id)

    def place_take_profit(self, symbol: str, side: str, amount: str, price: float,
                          client_order_id: str) -> OrderResult:
        return self._protective("take_profit", symbol, side, amount, price, client_order_id)

    def close_position(self, symbol: str, side: str, amount: str, price: float | None,
                       client_order_id: str) -> OrderResult:
        params = {"clientOrderId": client_order_id, **self._side_params(symbol, side, closing=True)}
        with self._call(symbol):
            o = self.x.create_order(symbol, "market", "sell" if side == "long" else "buy",
                                    float(amount), None, params)
        r = self._result(o, "close", amount, client_order_id)
        return r if r.symbol else _with_symbol(r, symbol)

    def find_order(self, symbol: str, client_order_id: str, conditional: bool = False
                   ) -> OrderResult | None:
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if conditional:
            params["trigger"] = True  # Binance keeps conditional orders as algo orders
        try:
            with self._call(symbol):
                o = self.x.fetch_order(None, symbol, params)
        except InvalidOrder as exc:
            if isinstance(exc.__cause__, ccxt.OrderNotFound):
                return None
            raise
        except ExchangeError as exc:
            if isinstance(exc.__cause__, ccxt.OrderNotFound):
                return None
            raise
        amount = str(o.get("amount") or "0")
        kind = "entry"
        if conditional:
            kind = "take_profit" if client_order_id.endswith("-tp") else "stop"
        return self._result(o, kind, amount, client_order_id, _f(o.get("triggerPrice")) or None)


def _with_symbol(r: OrderResult, symbol: str) -> OrderResult:
    return OrderResult(r.id, r.client_order_id, symbol, r.side, r.kind, r.amount, r.status,
                       r.filled, r.average, r.fee, r.trigger_price, r.raw)


def make_exchange(name: str, *, api_key: str | None = None, secret: str | None = None,
                  password: str | None = None, sandbox: bool = False,
                  options: dict[str, Any] | None = None) -> Any:
    """A ccxt exchange object by id (``binanceusdm``, ``bitget``, ``kraken``, ...)."""
    cls = getattr(ccxt, name, None)
    if cls is None or not isinstance(cls, type):
        from sizeguard.errors import InvalidInput  # noqa: PLC0415

        raise InvalidInput("exchange", name, "not a ccxt exchange id (e.g. binanceusdm, bitget)")
    config: dict[str, Any] = {"enableRateLimit": True, "options": dict(options or {})}
    if api_key:
        config.update(apiKey=api_key, secret=secret, password=password)
    config["options"].setdefault("fetchCurrencies", False)  # markets only; needs no keys
    if name == "bitget":
        config["options"].setdefault("uta", False)  # classic accounts: the v2 mix API
    x = cls(config)
    if sandbox:
        x.set_sandbox_mode(True)
    return x
