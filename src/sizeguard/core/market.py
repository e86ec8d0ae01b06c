"""MarketRules: what an exchange accepts for one symbol, built from a ccxt unified market dict.

Missing unified limits are filled from the raw ``info`` payload where the exchange publishes them
(Bybit's ``minNotionalValue``, Binance's MIN_NOTIONAL filter, Kraken's ``costmin``...). Every
such fallback is written into ``notes`` so the decision trace can say where a number came from.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from sizeguard.core import liquidation as liq
from sizeguard.core.lots import DECIMAL_PLACES, TICK_SIZE, decimal_step, step_from_precision
from sizeguard.core.position import notional_of, tier_units_of
from sizeguard.core.tiers import Tier, tiers_from_kraken_margin_levels
from sizeguard.errors import InvalidInput, UnknownSymbol

INF = math.inf


@dataclass(frozen=True, slots=True)
class MarketRules:
    """One market's trading rules. Absent minimums are 0, absent maximums are ``inf``.

    ``amount`` is in ccxt units: contracts for swaps/futures, base units for spot. A linear
    contract holds ``contract_size`` base; an inverse contract is worth ``contract_size`` quote
    (e.g. 100 USD on Binance COIN-M BTC).
    """

    symbol: str
    kind: str  # "spot" | "swap" | "future"
    linear: bool
    inverse: bool
    contract_size: float
    amount_step: float
    price_tick: float
    min_amount: float = 0.0
    max_amount: float = INF
    min_cost: float = 0.0
    max_cost: float = INF
    max_leverage: float = 1.0
    taker: float | None = None
    maker: float | None = None
    base: str = ""
    quote: str = ""
    settle: str = ""
    exchange: str = ""
    market_min_amount: float = 0.0
    market_max_amount: float = INF
    tiers: tuple[Tier, ...] = ()
    notes: tuple[str, ...] = ()
    # an inverse (coin-margined) contract whose amount counts base coin, not contracts of a fixed
    # quote face value (Bitget coin-M: ccxt says contractSize 1, but 1 means 1 BTC, not 1 USD)
    amount_in_base: bool = False
    # where the maximum amounts came from (the trace names the one that binds)
    max_amount_source: str = "limits.amount.max"
    market_max_source: str = "limits.market.max"
    amount_step_decimal: Decimal = field(default=Decimal(0), compare=False)
    # the tiers' floors, ascending, for one-bisection lookups (always rebuilt from ``tiers``)
    tier_floors: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tier_floors", tuple(t.min_notional for t in self.tiers))
        # dataclasses.replace() copies the cached decimal: recompute when the step changed
        if self.amount_step_decimal == 0 or float(self.amount_step_decimal) != self.amount_step:
            object.__setattr__(self, "amount_step_decimal", decimal_step(self.amount_step))

    @property
    def is_contract(self) -> bool:
        return self.kind != "spot"

    def unit_value(self, price: float) -> float:
        """Quote value of one amount unit at ``price``: an inverse contract's face value, else
        ``price x contract_size`` (spot base units, linear contracts, base-sized inverse)."""
        return notional_of(1.0, price, self.contract_size, self.inverse and not self.amount_in_base)

    @property
    def tiers_in_coin(self) -> bool:
        """Whether the tier table counts notional in the settle coin: ccxt's tables for
        coin-margined contracts do (Binance COIN-M brackets are in BTC); Kraken Futures' levels
        were converted to USD when loaded."""
        return self.inverse and self.exchange != "krakenfutures"

    @property
    def liquidation_formula(self) -> tuple[int, bool]:
        """The venue's liquidation formula (a ``core.liquidation`` id) and whether it is known:
        Binance's for binance/binanceusdm/binancecoinm, Bybit's, OKX's; any other exchange
        (Kraken Futures, Bitget, a market that names none) is judged by Binance's, assumed."""
        name = self.exchange.lower()
        if name.startswith("binance"):
            return liq.BINANCE, True
        if name.startswith("bybit"):
            return liq.BYBIT, True
        if name in ("okx", "okxus", "myokx"):
            return liq.OKX, True
        return liq.BINANCE, False

    def tier_units(self, notional: float, price: float) -> float:
        """A quote notional in the units of this market's tier table."""
        return tier_units_of(notional, price, self.tiers_in_coin)

    def to_dict(self) -> dict[str, Any]:
        """The market's rules as plain JSON data (absent maximums as None), tiers included."""
        def plain(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "symbol": self.symbol, "type": self.kind, "linear": self.linear,
            "inverse": self.inverse, "settle": self.settle, "quote": self.quote,
            "contract_size": self.contract_size, "amount_step": self.amount_step,
            "price_tick": self.price_tick, "min_amount": self.min_amount,
            "max_amount": plain(self.max_amount), "min_cost": self.min_cost,
            "max_cost": plain(self.max_cost), "max_leverage": plain(self.max_leverage),
            "max_amount_source": self.max_amount_source,
            "market_min_amount": self.market_min_amount,
            "market_max_amount": plain(self.market_max_amount),
            "market_max_source": self.market_max_source,
            "taker": self.taker, "maker": self.maker, "exchange": self.exchange,
            "notes": list(self.notes),
            "tiers": [{"tier": t.tier, "min_notional": t.min_notional,
                       "max_notional": plain(t.max_notional), "max_leverage": t.max_leverage,
                       "maintenance_margin_rate": t.maintenance_margin_rate,
                       "maintenance_amount": t.maintenance_amount} for t in self.tiers],
        }

    def with_tiers(self, tiers: Iterable[Tier], source: str) -> MarketRules:
        """A copy with leverage tiers attached (the tier table's max leverage then applies)."""
        tiers = tuple(tiers)
        top = max((t.max_leverage for t in tiers), default=self.max_leverage)
        return replace(self, tiers=tiers, max_leverage=top,
                       notes=(*self.notes, f"{len(tiers)} leverage tiers from {source}"))


def _num(value: Any) -> float | None:
    """A positive-or-zero float from a ccxt/raw field, or None when absent or empty."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def detect_precision_mode(markets: Iterable[Mapping[str, Any]]) -> int:
    """Guess ccxt's precision mode for a set of markets from one exchange.

    Any fractional ``precision`` value means TICK_SIZE. All-integer values mean DECIMAL_PLACES
    unless the raw Binance filters prove otherwise (a step of 1 is written 0 in DECIMAL_PLACES).
    """
    saw_any = False
    for market in markets:
        precision = market.get("precision") or {}
        for key in ("amount", "price"):
            value = _num(precision.get(key))
            if value is None:
                continue
            saw_any = True
            if value != int(value):
                return TICK_SIZE
            step = _binance_filter(market, "LOT_SIZE", "stepSize") if key == "amount" else None
            if step is not None and value >= 1 and math.isclose(step, value):
                return TICK_SIZE
    return DECIMAL_PLACES if saw_any else TICK_SIZE


def _binance_filter(market: Mapping[str, Any], filter_type: str, key: str) -> float | None:
    filters = _get(market, "info", "filters")
    if not isinstance(filters, list):
        return None
    for item in filters:
        if isinstance(item, Mapping) and item.get("filterType") == filter_type:
            return _num(item.get(key))
    return None


# Raw-info fallbacks for a missing unified min cost, in the order they are tried.
def _info_min_cost(market: Mapping[str, Any]) -> tuple[float, str] | None:
    candidates: list[tuple[Any, str]] = [
        (_get(market, "info", "lotSizeFilter", "minNotionalValue"),
         "info.lotSizeFilter.minNotionalValue"),
        (_get(market, "info", "lotSizeFilter", "minOrderAmt"), "info.lotSizeFilter.minOrderAmt"),
        (_binance_filter(market, "MIN_NOTIONAL", "notional"), "info.filters MIN_NOTIONAL.notional"),
        (_binance_filter(market, "MIN_NOTIONAL", "minNotional"),
         "info.filters MIN_NOTIONAL.minNotional"),
        (_binance_filter(market, "NOTIONAL", "minNotional"), "info.filters NOTIONAL.minNotional"),
        (_get(market, "info", "costmin"), "info.costmin"),
        (_get(market, "info", "minTradeUSDT"), "info.minTradeUSDT"),
    ]
    for raw, source in candidates:
        value = _num(raw)
        if value is not None and value > 0:
            return value, source
    return None


def _info_market_max(market: Mapping[str, Any], is_contract: bool) -> tuple[float, str] | None:
    """A market-order maximum amount from the raw ``info`` (ccxt units) where the unified
    ``limits.market.max`` lacks it: Bybit's ``lotSizeFilter.maxMktOrderQty``, OKX's
    ``maxMktSz`` (contracts for derivatives; for spot OKX counts it in quote, which the unified
    ``limits.cost.max`` already carries), Binance's MARKET_LOT_SIZE filter."""
    candidates: list[tuple[Any, str]] = [
        (_get(market, "info", "lotSizeFilter", "maxMktOrderQty"),
         "info.lotSizeFilter.maxMktOrderQty"),
        (_get(market, "info", "maxMktSz") if is_contract else None, "info.maxMktSz"),
        (_binance_filter(market, "MARKET_LOT_SIZE", "maxQty"),
         "info.filters MARKET_LOT_SIZE.maxQty"),
    ]
    for raw, source in candidates:
        value = _num(raw)
        if value is not None and value > 0:
            return value, source
    return None


def _info_max_amount(market: Mapping[str, Any]) -> tuple[float, str] | None:
    """A maximum order amount from the raw ``info`` where the unified ``limits.amount.max``
    lacks it: OKX's ``maxLmtSz`` (the limit-order maximum, the larger of OKX's two), Kraken
    Futures' ``maxPositionSize`` (no order can be larger than the position cap), Bybit's
    ``lotSizeFilter.maxOrderQty``, Binance's LOT_SIZE filter."""
    candidates: list[tuple[Any, str]] = [
        (_get(market, "info", "maxLmtSz"), "info.maxLmtSz"),
        (_get(market, "info", "maxPositionSize"), "info.maxPositionSize"),
        (_get(market, "info", "lotSizeFilter", "maxOrderQty"), "info.lotSizeFilter.maxOrderQty"),
        (_binance_filter(market, "LOT_SIZE", "maxQty"), "info.filters LOT_SIZE.maxQty"),
    ]
    for raw, source in candidates:
        value = _num(raw)
        if value is not None and value > 0:
            return value, source
    return None


def _maxima(market: Mapping[str, Any], is_contract: bool, notes: list[str]
            ) -> tuple[tuple[float, str], tuple[float, str]]:
    """The maximum amount and the market-order maximum with where each came from: ccxt's
    unified limits, else the raw ``info`` (noted)."""
    limits = market.get("limits") or {}
    max_amount = (_num(_get(limits, "amount", "max")) or INF, "limits.amount.max")
    if math.isinf(max_amount[0]):
        found = _info_max_amount(market)
        if found is not None:
            max_amount = found
            notes.append(f"max amount {found[0]:g} from {found[1]} "
                         "(unified limits.amount.max missing)")
    market_max = (_num(_get(limits, "market", "max")) or INF, "limits.market.max")
    if math.isinf(market_max[0]):
        found = _info_market_max(market, is_contract)
        if found is not None:
            market_max = found
            notes.append(f"market-order max amount {found[0]:g} from {found[1]} "
                         "(unified limits.market.max missing)")
    return max_amount, market_max


def _info_max_leverage(market: Mapping[str, Any]) -> tuple[float, str] | None:
    candidates: list[tuple[Any, str]] = [
        (_get(market, "info", "leverageFilter", "maxLeverage"), "info.leverageFilter.maxLeverage"),
        (_get(market, "info", "lever"), "info.lever"),
        (_get(market, "info", "maxLever"), "info.maxLever"),
    ]
    for raw, source in candidates:
        value = _num(raw)
        if value is not None and value >= 1:
            return value, source
    return None


def market_rules_from_ccxt(
    market: Mapping[str, Any], precision_mode: int = TICK_SIZE, exchange: str = ""
) -> MarketRules:
    """Build :class:`MarketRules` from one ccxt unified market dict.

    ``precision_mode`` is the exchange's ccxt ``precisionMode`` (DECIMAL_PLACES=2, TICK_SIZE=4);
    :func:`detect_precision_mode` guesses it for a file of markets.
    """
    symbol = str(market.get("symbol") or "")
    if not symbol:
        raise InvalidInput("market.symbol", market.get("symbol"), "a market needs a symbol")
    kind = str(market.get("type") or ("spot" if market.get("spot") else "swap"))
    if kind not in ("spot", "swap", "future"):
        raise InvalidInput(f"market[{symbol}].type", kind,
                           "only spot, swap and future markets can be sized")
    precision = market.get("precision") or {}
    raw_amount = _num(precision.get("amount"))
    if raw_amount is None:
        raise InvalidInput(f"market[{symbol}].precision.amount", precision.get("amount"),
                           "the market has no amount precision; it cannot be sized")
    notes: list[str] = []
    mode_name = "DECIMAL_PLACES" if precision_mode == DECIMAL_PLACES else "TICK_SIZE"
    try:
        amount_step = step_from_precision(raw_amount, precision_mode)
        raw_price = _num(precision.get("price"))
        price_tick = step_from_precision(raw_price, precision_mode) if raw_price else 0.0
    except ValueError as exc:
        raise InvalidInput(f"market[{symbol}].precision", dict(precision), str(exc)) from exc
    notes.append(f"amount step {amount_step:g} from precision.amount={raw_amount:g} ({mode_name})")

    is_contract = bool(market.get("contract")) or kind != "spot"
    inverse = bool(market.get("inverse")) and is_contract
    linear = is_contract and not inverse
    contract_size = _num(market.get("contractSize")) if is_contract else None
    info_cs = _num(_get(market, "info", "contractSize"))
    if (exchange == "krakenfutures" and linear and info_cs is not None
            and contract_size is not None and not math.isclose(info_cs, contract_size)):
        # ccxt's unified contractSize on Kraken Futures flexible perps mirrors the amount step;
        # the amount is in base units, so one "contract" is info.contractSize (1) base.
        notes.append(f"contract size {info_cs:g} from info.contractSize "
                     f"(unified contractSize {contract_size:g} mirrors the amount step)")
        contract_size = info_cs
    contract_size = contract_size or 1.0
    info = market.get("info")
    amount_in_base = inverse and (exchange.startswith("bitget") or (
        isinstance(info, Mapping) and "sizeMultiplier" in info))
    if amount_in_base:
        notes.append("inverse contract sized in base coin (Bitget coin-M): one unit is worth "
                     "the price in quote, not contractSize quote")

    limits = market.get("limits") or {}
    min_amount = _num(_get(limits, "amount", "min")) or 0.0
    (max_amount, max_amount_source), (market_max, market_max_source) = _maxima(
        market, is_contract, notes)
    if min_amount == 0.0:
        notes.append("no unified min amount: one step is the minimum")
    min_cost = _num(_get(limits, "cost", "min")) or 0.0
    if min_cost == 0.0:
        found = _info_min_cost(market)
        if found is not None:
            min_cost = found[0]
            notes.append(f"min cost {min_cost:g} from {found[1]} (unified limits.cost.min missing)")
    max_cost = _num(_get(limits, "cost", "max")) or INF
    market_min = _num(_get(limits, "market", "min")) or 0.0

    tiers: tuple[Tier, ...] = ()
    max_leverage = _num(_get(limits, "leverage", "max"))
    if max_leverage is None and is_contract:
        found_lev = _info_max_leverage(market)
        if found_lev is not None:
            max_leverage = found_lev[0]
            notes.append(f"max leverage {max_leverage:g} from {found_lev[1]}")
    levels = _get(market, "info", "marginLevels")
    if is_contract and isinstance(levels, list) and levels:
        tiers = tiers_from_kraken_margin_levels(levels, contract_size if inverse else 1.0)
        notes.append(f"{len(tiers)} margin tiers from info.marginLevels (Kraken Futures)")
        max_leverage = max(t.max_leverage for t in tiers)
    if max_leverage is None:
        max_leverage = 1.0 if not is_contract else INF
    if not is_contract:
        max_leverage = 1.0  # spot is never leveraged here; margin trading is out of scope

    return MarketRules(
        symbol=symbol,
        kind=kind,
        linear=linear,
        inverse=inverse,
        contract_size=contract_size,
        amount_step=amount_step,
        price_tick=price_tick,
        min_amount=min_amount,
        max_amount=max_amount,
        min_cost=min_cost,
        max_cost=max_cost,
        max_leverage=max_leverage,
        taker=_num(market.get("taker")),
        maker=_num(market.get("maker")),
        base=str(market.get("base") or ""),
        quote=str(market.get("quote") or ""),
        settle=str(market.get("settle") or market.get("quote") or ""),
        exchange=exchange,
        market_min_amount=market_min,
        market_max_amount=market_max,
        tiers=tiers,
        notes=tuple(notes),
        amount_in_base=amount_in_base,
        max_amount_source=max_amount_source,
        market_max_source=market_max_source,
    )


class MarketBook(Mapping[str, MarketRules]):
    """Markets by symbol; an unknown symbol raises :class:`UnknownSymbol` with suggestions."""

    def __init__(self, markets: Mapping[str, MarketRules], source: str = "") -> None:
        self._markets = dict(markets)
        self.source = source

    def __getitem__(self, symbol: str) -> MarketRules:
        try:
            return self._markets[symbol]
        except KeyError:
            raise UnknownSymbol(symbol, self.suggest(symbol)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._markets)

    def __len__(self) -> int:
        return len(self._markets)

    def suggest(self, symbol: str) -> tuple[str, ...]:
        wanted = symbol.upper()
        exact_base = [s for s in self._markets if s.split("/")[0] == wanted.split("/")[0]]
        close = difflib.get_close_matches(wanted, list(self._markets), n=3, cutoff=0.5)
        return tuple(dict.fromkeys([*close, *exact_base]))[:4]

    def with_tiers(self, tiers: Mapping[str, tuple[Tier, ...]], source: str) -> MarketBook:
        out = {s: (m.with_tiers(tiers[s], source) if s in tiers and m.is_contract else m)
               for s, m in self._markets.items()}
        return MarketBook(out, self.source)


def market_book_from_ccxt(
    markets: Mapping[str, Mapping[str, Any]], precision_mode: int | None = None,
    exchange: str = "", source: str = "",
) -> MarketBook:
    """Every sizeable market of a ccxt ``{symbol: market}`` dict (options and stubs left out)."""
    mode = precision_mode if precision_mode is not None else detect_precision_mode(
        markets.values())
    out: dict[str, MarketRules] = {}
    for symbol, market in markets.items():
        if market.get("type") == "option" or market.get("option"):
            continue
        if not market.get("precision") or _num((market.get("precision") or {}).get("amount")) is None:
            continue
        name = exchange or str(market.get("exchange") or "")
        out[symbol] = market_rules_from_ccxt(market, mode, name)
    return MarketBook(out, source)
