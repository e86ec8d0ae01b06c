"""The paper exchange (the default): fills at a given price with taker fees and slippage, and
refuses exactly what the real market's rules refuse, with an exchange-style message.

Rules checked on an entry, in the order an exchange checks them: the symbol, the amount step,
the minimum and maximum amount (market-order limits included), the minimum cost, the leverage
set for the symbol against the tier that the notional falls in, and the margin (margin plus the
taker fee must fit the free balance). The messages copy Binance USD-M's codes and wording, the
most common venue in the presets; ``InvalidOrder.rule`` names the rule and ``minimum`` carries
the minimum that was broken, so a caller can learn it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sizeguard.core import position
from sizeguard.core.market import MarketBook, MarketRules
from sizeguard.core.policy import Execution
from sizeguard.core.tiers import Tier
from sizeguard.errors import DuplicateOrder, InsufficientFunds, InvalidOrder
from sizeguard.ports import Balance, ExchangePosition, OrderResult

DEFAULT_TAKER = Execution().taker  # the policy's fallback when a market publishes no fee
_TOL = 1e-9


@dataclass(slots=True)
class _Pos:
    symbol: str
    side: str
    amount: Decimal
    entry: float
    notional: float
    margin: float
    leverage: float


def _msg(code: int, text: str) -> str:
    return f'paper {{"code":{code},"msg":"{text}"}}'


class PaperExchange:
    """An in-memory account on ``book``'s markets. ``min_cost`` overrides let a test play an
    exchange whose real minimum is higher than its metadata says (Kraken's per-pair minimums)."""

    def __init__(self, book: MarketBook, *, balance: float, quote: str = "USDT",
                 name: str = "paper", slippage_bps: float = 0.0, default_leverage: float = 1.0,
                 min_cost: Mapping[str, float] | None = None,
                 positions: Sequence[ExchangePosition] = ()) -> None:
        if not (math.isfinite(balance) and balance >= 0):
            raise ValueError(f"balance must be a finite number >= 0, got {balance!r}")
        self.book = book
        self._name = name
        self.quote = quote
        self.wallet = float(balance)
        self.slippage = slippage_bps / 10_000
        self.default_leverage = default_leverage
        self.min_cost_override = dict(min_cost or {})
        self.leverage: dict[str, float] = {}
        self.margin_mode: dict[str, str] = {}
        self._positions: dict[tuple[str, str], _Pos] = {}
        self.orders: dict[str, OrderResult] = {}
        self._ids = itertools.count(1)
        for p in positions:
            self._positions[(p.symbol, p.side)] = _Pos(p.symbol, p.side, Decimal(repr(p.amount)),
                                                       p.entry_price, abs(p.notional), p.margin,
                                                       p.leverage)

    @property
    def name(self) -> str:
        return self._name

    # -- account ------------------------------------------------------------------------
    def balance(self) -> Balance:
        used = sum(p.margin for p in self._positions.values())
        return Balance(self.quote, self.wallet, self.wallet - used, used)

    def positions(self) -> list[ExchangePosition]:
        return [ExchangePosition(p.symbol, p.side, float(p.amount), p.entry, p.notional, p.margin,
                                 p.leverage) for p in self._positions.values()]

    # -- rules --------------------------------------------------------------------------
    def _market(self, symbol: str) -> MarketRules:
        if symbol not in self.book:
            raise InvalidOrder(_msg(-1121, "Invalid symbol."), exchange=self.name, symbol=symbol,
                               code="-1121", rule="symbol")
        return self.book[symbol]

    def set_margin_mode(self, symbol: str, mode: str) -> None:
        m = self._market(symbol)
        if mode not in ("isolated", "cross", "spot"):
            raise InvalidOrder(_msg(-4046, f"Margin type {mode} is not valid."), exchange=self.name,
                               symbol=symbol, code="-4046", rule="margin_mode")
        if m.is_contract:
            self.margin_mode[symbol] = mode

    def set_leverage(self, symbol: str, leverage: float) -> None:
        m = self._market(symbol)
        if not m.is_contract:
            if leverage != 1:
                raise InvalidOrder(_msg(-4028, "Leverage is not valid for spot."),
                                   exchange=self.name, symbol=symbol, code="-4028", rule="leverage")
            return
        if not (math.isfinite(leverage) and 1 <= leverage <= m.max_leverage * (1 + _TOL)):
            raise InvalidOrder(_msg(-4028, f"Leverage {leverage:g} is not valid"),
                               exchange=self.name, symbol=symbol, code="-4028", rule="leverage")
        self.leverage[symbol] = leverage

    @staticmethod
    def tier(m: MarketRules, notional: float, price: float) -> Tier | None:
        return position.tier_at(m, notional, price)

    def check(self, symbol: str, amount: str, price: float, *, reduce_only: bool = False
              ) -> tuple[MarketRules, Decimal, float]:
        """Raise what the exchange would for this market order; return (market, amount,
        notional)."""
        m = self._market(symbol)
        try:
            qty = Decimal(amount)
        except (InvalidOperation, TypeError):
            raise InvalidOrder(_msg(-1102, "Illegal characters found in parameter 'quantity'; "
                                    "legal range is '^([0-9]{1,20})(\\\\.[0-9]{1,20})?$'."),
                               exchange=self.name, symbol=symbol, code="-1102",
                               rule="amount") from None
        if not qty.is_finite() or qty <= 0:
            raise InvalidOrder(_msg(-4003, "Quantity less than or equal to zero."),
                               exchange=self.name, symbol=symbol, code="-4003", rule="min_amount",
                               minimum=m.amount_step)
        if not math.isfinite(price) or price <= 0:
            raise InvalidOrder(_msg(-4016, "Price is not valid."), exchange=self.name,
                               symbol=symbol, code="-4016", rule="price")
        step = m.amount_step_decimal
        if step > 0 and qty % step != 0:
            raise InvalidOrder(_msg(-1111, "Precision is over the maximum defined for this asset."),
                               exchange=self.name, symbol=symbol, code="-1111", rule="step")
        q = float(qty)
        min_amount = max(m.min_amount, m.market_min_amount)
        if not reduce_only and q < min_amount * (1 - _TOL):
            raise InvalidOrder(_msg(-4003, f"Filter failure: LOT_SIZE (quantity {amount} is below "
                                    f"the minimum {min_amount:g})."),
                               exchange=self.name, symbol=symbol, code="-4003", rule="min_amount",
                               minimum=min_amount)
        max_amount = min(m.max_amount, m.market_max_amount)
        if q > max_amount * (1 + _TOL):
            raise InvalidOrder(_msg(-4005, "Quantity greater than max quantity."),
                               exchange=self.name, symbol=symbol, code="-4005", rule="max_amount")
        notional = position.notional(m, q, price)
        min_cost = max(m.min_cost, self.min_cost_override.get(symbol, 0.0))
        if not reduce_only and min_cost > 0 and notional < min_cost * (1 - _TOL):
            raise InvalidOrder(_msg(-4164, f"Order's notional must be no smaller than {min_cost:g} "
                                    "(unless you choose reduce only)."),
                               exchange=self.name, symbol=symbol, code="-4164", rule="min_cost",
                               minimum=min_cost)
        if notional > m.max_cost * (1 + _TOL):
            raise InvalidOrder(_msg(-4005, "Order's notional is above the maximum."),
                               exchange=self.name, symbol=symbol, code="-4005", rule="max_amount")
        return m, qty, notional

    # -- orders -------------------------------------------------------------------------
    def _taker(self, m: MarketRules) -> float:
        return position.taker_fee(m, DEFAULT_TAKER)

    def _new_order(self, cid: str) -> str:
        if cid in self.orders:
            raise DuplicateOrder(_msg(-4116, "ClientOrderId is duplicated."), exchange=self.name,
                                 code="-4116")
        return f"paper-{next(self._ids)}"

    def place_entry(self, symbol: str, side: str, amount: str, price: float,
                    client_order_id: str) -> OrderResult:
        oid = self._new_order(client_order_id)
        m, qty, notional = self.check(symbol, amount, price)
        lev = self.leverage.get(symbol, self.default_leverage) if m.is_contract else 1.0
        lev = min(lev, m.max_leverage) if m.is_contract else 1.0
        tier = self.tier(m, notional, price) if m.is_contract else None
        if tier is not None and lev > tier.max_leverage * (1 + _TOL):
            raise InvalidOrder(_msg(-2027, "Exceeded the maximum allowable position at current "
                                    "leverage."), exchange=self.name, symbol=symbol, code="-2027",
                               rule="leverage")
        if tier is not None and m.tier_units(notional, price) > tier.max_notional * (1 + _TOL):
            raise InvalidOrder(_msg(-2027, "Exceeded the maximum allowable position at current "
                                    "leverage."), exchange=self.name, symbol=symbol, code="-2027",
                               rule="leverage")
        fee = position.fee_on(notional, self._taker(m))
        margin = position.margin_of(notional, lev)
        free = self.balance().free
        if margin + fee > free * (1 + _TOL) + 1e-12:
            raise InsufficientFunds(_msg(-2019, "Margin is insufficient."), exchange=self.name,
                                    symbol=symbol, code="-2019")
        sign = 1.0 if side == "long" else -1.0
        fill = price * (1 + sign * self.slippage)
        filled = position.opened(m, float(qty), fill, lev)
        fee = position.fee_on(filled.notional, self._taker(m))
        key = (symbol, side)
        old = self._positions.get(key)
        if old is None:
            self._positions[key] = _Pos(symbol, side, qty, fill, filled.notional, filled.margin,
                                        lev)
        else:
            entry = position.average_entry(old.notional, old.entry, filled.notional, fill)
            self._positions[key] = _Pos(symbol, side, old.amount + qty, entry,
                                        old.notional + filled.notional,
                                        old.margin + filled.margin, lev)
        self.wallet -= fee
        order = OrderResult(oid, client_order_id, symbol, "buy" if side == "long" else "sell",
                            "entry", amount, "filled", float(qty), fill, fee)
        self.orders[client_order_id] = order
        return order

    def _conditional(self, kind: str, symbol: str, side: str, amount: str, trigger: float,
                     client_order_id: str) -> OrderResult:
        oid = self._new_order(client_order_id)
        _m, qty, _n = self.check(symbol, amount, trigger, reduce_only=True)
        pos = self._positions.get((symbol, side))
        if pos is None or qty > pos.amount:
            raise InvalidOrder(_msg(-2022, "ReduceOnly Order is rejected."), exchange=self.name,
                               symbol=symbol, code="-2022", rule="reduce_only")
        below = (kind == "stop") == (side == "long")  # a long's stop and a short's TP lie below
        if (below and trigger >= pos.entry) or (not below and trigger <= pos.entry):
            raise InvalidOrder(_msg(-2021, "Order would immediately trigger."), exchange=self.name,
                               symbol=symbol, code="-2021", rule="price")
        order = OrderResult(oid, client_order_id, symbol, "sell" if side == "long" else "buy",
                            kind, amount, "open", trigger_price=trigger)
        self.orders[client_order_id] = order
        return order

    def place_stop(self, symbol: str, side: str, amount: str, stop_price: float,
                   client_order_id: str) -> OrderResult:
        return self._conditional("stop", symbol, side, amount, stop_price, client_order_id)

    def place_take_profit(self, symbol: str, side: str, amount: str, price: float,
                          client_order_id: str) -> OrderResult:
        return self._conditional("take_profit", symbol, side, amount, price, client_order_id)

    def close_position(self, symbol: str, side: str, amount: str, price: float | None,
                       client_order_id: str) -> OrderResult:
        oid = self._new_order(client_order_id)
        pos = self._positions.get((symbol, side))
        if pos is None:
            raise InvalidOrder(_msg(-2022, "ReduceOnly Order is rejected."), exchange=self.name,
                               symbol=symbol, code="-2022", rule="reduce_only")
        px = price if price is not None else pos.entry
        m, qty, _n = self.check(symbol, amount, px, reduce_only=True)
        qty = min(qty, pos.amount)
        sign = 1.0 if side == "long" else -1.0
        fill = px * (1 - sign * self.slippage)
        share = float(qty / pos.amount)
        notional = pos.notional * share
        pnl = position.pnl(side == "long", notional, pos.entry, fill)
        fee = position.fee_on(position.notional(m, float(qty), fill), self._taker(m))
        self.wallet += pnl - fee
        if qty == pos.amount:
            del self._positions[(symbol, side)]
            for cid, o in list(self.orders.items()):  # cancel its stop and take-profit
                if o.symbol == symbol and o.status == "open":
                    self.orders[cid] = OrderResult(o.id, o.client_order_id, o.symbol, o.side, o.kind,
                                                   o.amount, "canceled", trigger_price=o.trigger_price)
        else:
            pos.amount -= qty
            pos.notional -= notional
            pos.margin *= 1 - share
        order = OrderResult(oid, client_order_id, symbol, "sell" if side == "long" else "buy",
                            "close", format(qty, "f"), "filled", float(qty), fill, fee,
                            raw={"pnl": pnl})
        self.orders[client_order_id] = order
        return order

    def find_order(self, symbol: str, client_order_id: str, conditional: bool = False
                   ) -> OrderResult | None:
        o = self.orders.get(client_order_id)
        return o if o is not None and o.symbol == symbol else None

    def mark(self, symbol: str, price: float) -> list[OrderResult]:
        """The market trades at ``price``: stops and take-profits it crosses fill (at their
        trigger, with slippage and the taker fee) and close their position; returns them."""
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"price must be a finite number > 0, got {price!r}")
        filled = []
        for cid, o in list(self.orders.items()):
            if o.symbol != symbol or o.status != "open" or o.trigger_price is None:
                continue
            side = "long" if o.side == "sell" else "short"
            below = (o.kind == "stop") == (side == "long")
            if (below and price > o.trigger_price) or (not below and price < o.trigger_price):
                continue
            if (symbol, side) not in self._positions:
                continue
            close = self.close_position(symbol, side, o.amount, o.trigger_price, f"{cid}-fill")
            done = OrderResult(o.id, cid, symbol, o.side, o.kind, o.amount, "filled",
                               close.filled, close.average, close.fee, o.trigger_price,
                               raw=close.raw)
            self.orders[cid] = done
            filled.append(done)
        return filled
