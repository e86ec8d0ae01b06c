"""The decision pipeline (DESIGN.md): intent + account + market + policy -> Decision.

Read :func:`decide` at the bottom first: it runs the steps in DESIGN order, and each step is a
small function over three things:

* :class:`Context`: what the decision is taken against, the four inputs and what follows from
  them alone (the taker fee, the margin mode, the margin budget, tier lookups, liquidation
  prices). It never changes during a decision.
* :class:`Sizing`: what the steps move, the stop, the model's budget, the notional, the
  leverage, the notional caps and the tier.
* :class:`Log`: what the decision will say, its reason codes and its trace.

1 validate, 2 gates, 3 base size, 4 adjustments, 5 notional, 6 limits, 7 leverage and
liquidation, 8 exchange rules, 9 decision. Every step appends to the trace; the tolerances are
in :mod:`sizeguard.core.tolerances`.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final, NamedTuple

from sizeguard.core import liquidation as liq
from sizeguard.core import position
from sizeguard.core.account import Account
from sizeguard.core.adjust import ADJUST_KEYS, AdjustView, adjust
from sizeguard.core.decision import Decision, Reason, Status, Text, TraceStep
from sizeguard.core.intent import LONG, SHORT, Intent
from sizeguard.core.limits import Cap, LimitsView, gate, margin_budget, notional_caps
from sizeguard.core.lots import ceil_lots, decimal_units, floor_lots, format_lots
from sizeguard.core.market import MarketRules
from sizeguard.core.models import (
    fee_rate_to_stop,
    kelly_fraction,
    notional_for_volatility,
    notional_from_risk,
    risk_of_notional,
)
from sizeguard.core.policy import MARGIN_MODELS, MONEY_MODELS, Policy
from sizeguard.core.tiers import Tier, tier_index
from sizeguard.core.tolerances import (
    BISECTION_STEPS,
    FLOAT_SLACK,
    LEVERAGE_ROUNDS,
    LIQUIDATION_ROUNDS,
    SAFETY_SLACK,
)
from sizeguard.errors import InvalidInput

Values = tuple[tuple[str, Any], ...]

# The kinds of money a sizing model budgets (what a raise to the exchange minimum must respect).
MARGIN, NOTIONAL, RISK = "margin", "notional", "risk"


# -- step 1: validate -------------------------------------------------------------------

def _finite(field: str, value: object, *, positive: bool = True, allow_zero: bool = False
            ) -> None:
    """Raise :class:`InvalidInput` unless ``value`` is None or a finite number (positive by
    default). ``value`` is typed ``object``: it is what the caller sent, not yet a float."""
    if value is None or (type(value) is float and 0.0 < value < math.inf):
        return  # the common case: a positive finite float (NaN fails both comparisons)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, value, "must be a number")
    if math.isnan(value) or math.isinf(value):
        raise InvalidInput(field, value, "must be a finite number")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise InvalidInput(field, value, "must be >= 0" if allow_zero else "must be > 0")


def validate(intent: Intent, account: Account, market: MarketRules) -> None:
    """Step 1: raise :class:`InvalidInput` naming the first bad field."""
    # read through ``Any``: the values are what the caller sent, not yet the annotated types
    # (a compiled build would otherwise refuse a string with a TypeError before we can name it)
    i: Any = intent
    if i.symbol != market.symbol:
        raise InvalidInput("symbol", i.symbol, f"does not match the market {market.symbol}")
    if i.side not in (LONG, SHORT):
        raise InvalidInput("side", i.side, "must be 'long' or 'short'")
    if market.kind == "spot" and i.side == SHORT:
        raise InvalidInput("side", i.side, f"{market.symbol} is spot: it cannot be shorted")
    _finite("price", i.price)
    _validate_account(account)
    _finite("time", i.time, positive=False)
    _validate_stop(intent)
    _finite("atr", i.atr)
    _finite("atr_mult", i.atr_mult)
    _finite("take_profit", i.take_profit)
    _finite("confidence", i.confidence, allow_zero=True)
    _finite("leverage", i.leverage)
    if i.take_profit is not None:
        if i.is_long and i.take_profit <= i.price:
            raise InvalidInput("take_profit", i.take_profit, "a long's take-profit must be above entry")
        if not i.is_long and i.take_profit >= i.price:
            raise InvalidInput("take_profit", i.take_profit, "a short's take-profit must be below entry")
    if i.confidence is not None and i.confidence > 1:
        raise InvalidInput("confidence", i.confidence, "must be within [0, 1]")
    if i.leverage is not None and i.leverage < 1:
        raise InvalidInput("leverage", i.leverage, "must be >= 1")


def _validate_account(account: Account) -> None:
    a: Any = account  # as sent (see validate)
    _finite("equity", a.equity)
    _finite("available", a.available, allow_zero=True)
    _finite("peak_equity", a.peak_equity)
    _finite("realised_pnl_today", a.realised_pnl_today, positive=False)
    if a.losing_streak < 0:
        raise InvalidInput("losing_streak", a.losing_streak, "must be >= 0")
    # a NaN here would silently switch off the caps and the margin budget (NaN compares false)
    if a.positions_suspect:
        for k, pos in enumerate(a.positions):
            p: Any = pos
            _finite(f"positions[{k}].notional", p.notional, positive=False)
            _finite(f"positions[{k}].margin", p.margin, allow_zero=True)
            _finite(f"positions[{k}].maintenance_margin", p.maintenance_margin, allow_zero=True)
            _finite(f"positions[{k}].unrealised_pnl", p.unrealised_pnl, positive=False)
    _finite("wallet_balance", a.wallet_balance, positive=False)


def _validate_stop(intent: Intent) -> None:
    i: Any = intent  # as sent (see validate)
    stop, pct, roe = i.stop, i.stop_pct, i.stop_roe
    if (stop is not None) + (pct is not None) + (roe is not None) > 1:
        given = [n for n in ("stop", "stop_pct", "stop_roe") if getattr(i, n) is not None]
        raise InvalidInput(given[1], getattr(i, given[1]),
                           f"give the stop one way only (also got {given[0]})")
    _finite("stop", stop)
    _finite("stop_pct", pct)
    _finite("stop_roe", roe)
    if pct is not None and pct >= 100:
        raise InvalidInput("stop_pct", pct, "must be below 100 (percent of entry)")
    if stop is not None:
        if i.is_long and i.stop >= i.price:
            raise InvalidInput("stop", i.stop, f"a long's stop must be below entry {i.price}")
        if not i.is_long and i.stop <= i.price:
            raise InvalidInput("stop", i.stop, f"a short's stop must be above entry {i.price}")


# -- what a decision is taken against, what it moves, what it says ----------------------

class TierRow:
    """A :class:`~sizeguard.core.tiers.Tier`'s numbers as the pipeline reads them (Tier itself
    stays a plain Python class: the sweep ships it to other processes)."""

    __slots__ = ("maintenance_amount", "maintenance_margin_rate", "max_leverage", "max_notional",
                 "min_notional", "tier")

    def __init__(self, tier: int, min_notional: float, max_notional: float,
                 maintenance_margin_rate: float, max_leverage: float,
                 maintenance_amount: float) -> None:
        self.tier = tier
        self.min_notional = min_notional
        self.max_notional = max_notional
        self.maintenance_margin_rate = maintenance_margin_rate
        self.max_leverage = max_leverage
        self.maintenance_amount = maintenance_amount


def _row(t: Tier) -> TierRow:
    return TierRow(t.tier, t.min_notional, t.max_notional, t.maintenance_margin_rate,
                   t.max_leverage, t.maintenance_amount)


class MarketView:
    """What the pipeline reads of a market, read once per :class:`MarketRules` object (a frozen
    dataclass: its values never change) instead of once per question."""

    def __init__(self, m: MarketRules) -> None:
        self.market = m
        self.symbol = m.symbol
        self.is_contract = m.is_contract
        self.spot = not self.is_contract
        self.inverse = m.inverse
        self.coin_tiers = m.tiers_in_coin
        self.contract_size = m.contract_size
        self.fixed_face = position.fixed_face(m)
        self.amount_step = m.amount_step
        self.step_decimal = m.amount_step_decimal
        self.step_units, self.step_places = decimal_units(m.amount_step_decimal)
        self.min_amount = m.min_amount
        self.max_amount = m.max_amount
        self.max_amount_source = m.max_amount_source
        self.market_min_amount = m.market_min_amount
        self.market_max_amount = m.market_max_amount
        self.market_max_source = m.market_max_source
        self.min_cost = m.min_cost
        self.max_cost = m.max_cost
        self.max_leverage = m.max_leverage
        self.taker = m.taker
        self.exchange = m.exchange
        self.notes = m.notes
        self.formula, self.formula_known = m.liquidation_formula
        self.formula_name = liq.formula_name(self.formula, self.inverse)
        self.has_tiers = bool(m.tiers)
        self.rows = [_row(t) for t in m.tiers]
        self.floors = list(m.tier_floors)
        self.top_notional = m.tiers[-1].max_notional if m.tiers else math.inf


class PolicyView:
    """What the pipeline reads of a policy, read once per :class:`Policy` object (frozen)."""

    def __init__(self, p: Policy) -> None:
        self.policy = p
        self.name = p.name
        s = p.sizing
        self.model = s.model
        self.margin = s.margin
        self.notional = s.notional
        self.fraction = s.fraction
        self.balance = s.balance
        self.risk = s.risk
        self.target_volatility = s.target_volatility
        self.kelly_fraction = s.kelly_fraction
        self.win_rate = s.win_rate
        self.payoff = s.payoff
        self.min_trades = s.min_trades
        self.fees_in_risk = s.fees_in_risk
        self.money_model = s.model in MONEY_MODELS
        self.margin_model = s.model in MARGIN_MODELS
        self.atr_mult = p.stop.atr_mult
        self.default_pct = p.stop.default_pct
        self.adjust = AdjustView(p.adjust)
        self.adjust_min = p.adjust.min
        self.adjust_max = p.adjust.max
        self.limits = LimitsView(p.limits)
        self.min_notional = p.limits.min_notional
        self.default_min_cost = p.limits.default_min_cost
        self.policy_min_cost = p.limits.min_cost
        lev = p.leverage
        self.auto = lev.mode == "auto"
        self.lev_mode = lev.mode
        self.lev_value = lev.value
        self.lev_max = lev.max
        self.integer = lev.integer
        self.default_mmr = lev.default_mmr
        self.cross_mode = lev.margin_mode == "cross"
        self.guard = p.liquidation.guard
        self.guard_on = self.guard != "off"
        self.buffer = p.liquidation.buffer
        self.below_minimum = p.execution.below_minimum
        self.raise_tolerance = p.execution.raise_tolerance
        self.market_orders = p.execution.order_type == "market"
        self.taker = p.execution.taker


# Views by the identity of the (frozen) object they were read from; each keeps its object, so
# an id is never reused while its view is here. Bounded: a long run over many markets or
# policies starts over rather than grow.
# builtins.sum adds floats one by one, in order, before Python 3.12 (which compensates): the
# sum Account.held_sums keeps is then sum()'s
_SUM_ADDS_IN_ORDER: Final = sys.version_info < (3, 12)

_MARKET_VIEWS: dict[int, MarketView] = {}
_POLICY_VIEWS: dict[int, PolicyView] = {}
_MAX_VIEWS = 256


def market_view(m: MarketRules) -> MarketView:
    v = _MARKET_VIEWS.get(id(m))
    if v is None or v.market is not m:
        if len(_MARKET_VIEWS) >= _MAX_VIEWS:
            _MARKET_VIEWS.clear()
        v = _MARKET_VIEWS[id(m)] = MarketView(m)
    return v


def policy_view(p: Policy) -> PolicyView:
    v = _POLICY_VIEWS.get(id(p))
    if v is None or v.policy is not p:
        if len(_POLICY_VIEWS) >= _MAX_VIEWS:
            _POLICY_VIEWS.clear()
        v = _POLICY_VIEWS[id(p)] = PolicyView(p)
    return v


class Context:
    """The inputs of one decision and what follows from them alone; never changes.

    Its methods are the questions every step asks the market: the tier of a notional (at entry
    or after an adverse move), a liquidation price, the guarded distance, the cross collateral.
    ``m`` and ``p`` are the market's and the policy's values (:class:`MarketView`,
    :class:`PolicyView`), read once per market and policy object.
    """

    __slots__ = ("_last_tier", "account", "buffer", "coin_tiers", "cross", "default_tier", "fee",
                 "fee_rt", "formula", "formula_known", "held", "held_known", "intent", "inverse",
                 "is_contract", "is_long", "m", "market", "mb", "p", "policy", "price", "sign",
                 "symbol", "unit")

    def __init__(self, intent: Intent, account: Account, market: MarketRules, policy: Policy):
        self.intent, self.account, self.market, self.policy = intent, account, market, policy
        m = self.m = market_view(market)
        p = self.p = policy_view(policy)
        # read once: every step asks for these, and the inputs are plain Python objects
        self.symbol, self.price = intent.symbol, intent.price
        self.is_long, self.inverse = intent.side == LONG, m.inverse
        self.buffer = p.buffer
        # quote value of one amount unit (MarketRules.unit_value)
        self.unit = position.notional_of(1.0, self.price, m.contract_size, m.fixed_face)
        self.fee = m.taker if m.taker is not None else p.taker  # position.taker_fee
        self.fee_rt = 2.0 * self.fee
        self.is_contract = m.is_contract
        self.cross = p.cross_mode and self.is_contract
        # ccxt's tier tables for coin-margined contracts count the notional in the settle coin
        # (Binance COIN-M brackets are in BTC); Kraken Futures' levels were converted to USD.
        self.coin_tiers = m.coin_tiers
        self.sign = 1.0 if self.is_long else -1.0
        # a market without tiers: its max leverage and the policy's default maintenance rate
        self.default_tier = None if m.has_tiers else _row(position.no_tier(market, p.default_mmr))
        self.mb = margin_budget(account, p.limits)
        self._last_tier: TierRow | None = None  # step 7 asks about the same few notionals often
        # the venue's liquidation formula (Binance's, assumed, for a venue we know none of)
        self.formula, self.formula_known = m.formula, m.formula_known
        self.held: Held | None = None  # the position an add joins (held_position), found once
        self.held_known = False

    def tier_for(self, notional: float) -> TierRow:
        """The tier of a position of ``notional`` (quote) at the entry price."""
        return self._tier_by_units(position.tier_units_of(notional, self.price, self.coin_tiers))

    def tier_at_adverse_move(self, notional: float, move: float) -> TierRow:
        """The tier of the position once the price has moved ``move`` (a fraction of entry)
        against it. Exchanges apply the bracket of the notional at the mark price (Binance's
        COIN-M FAQ: recompute with the level at the liquidation price), and on the way to the
        stop a short's linear notional and a long's coin notional grow: judging them by the
        entry bracket would understate the maintenance margin."""
        if self.formula == liq.BYBIT:  # Bybit charges the maintenance of the value at entry
            return self.tier_for(notional)
        factor = 1.0 - self.sign * move  # price at the move / entry
        if self.coin_tiers:
            units = notional / (self.price * factor)
        elif self.inverse:  # Kraken inverse: the levels count USD contracts, fixed
            units = notional
        else:
            units = notional * factor
        return self._tier_by_units(units)

    def _tier_by_units(self, units: float) -> TierRow:
        default = self.default_tier
        if default is not None:
            return default
        last = self._last_tier
        if last is not None and last.min_notional <= units < last.max_notional:
            return last
        # the tier covering units (tiers.tier_index: half-open intervals); below the first, the
        # first; above the top tier, judged by the top tier (the limits step caps first)
        t = self.m.rows[max(tier_index(self.m.floors, units), 0)]
        self._last_tier = t
        return t

    def fee_to_stop(self, distance: float) -> float:
        """Fee rate (of the entry notional) of a round trip ending at a stop ``distance`` away:
        the exit fee on the notional at the stop (models.fee_rate_to_stop); 0 when the policy
        leaves fees out of the risk."""
        if not self.p.fees_in_risk:
            return 0.0
        return fee_rate_to_stop(self.fee, self.fee, self.is_long, self.inverse, distance)

    def cum_quote(self, tier: TierRow) -> float:
        """The tier's maintenance amount in quote (a coin amount valued at entry;
        position.maintenance_amount_quote)."""
        return position.amount_in_quote(tier.maintenance_amount, self.price, self.coin_tiers)

    def liquidation(self, notional: float, collateral: float, tier: TierRow
                    ) -> tuple[float, TierRow]:
        """Liquidation price with the bracket of the notional *at* that price, and that bracket.

        Start from ``tier`` and recompute while the result lands in another bracket (Binance
        COIN-M FAQ, note under "Maintenance Margin Rate"). Maintenance margin is continuous in
        the notional, so the settled price is the one where equity meets maintenance.
        """
        entry, is_long, inverse = self.price, self.is_long, self.inverse
        lp, used = entry, tier
        for _ in range(LIQUIDATION_ROUNDS):
            used = tier
            lp = liq.venue_liquidation_price(self.formula, is_long, inverse, entry, notional,
                                             collateral, used.maintenance_margin_rate,
                                             self.cum_quote(used), self.fee)
            if not 0.0 < lp < math.inf:
                break
            tier = self.tier_at_adverse_move(notional, abs(lp - entry) / entry)
            if tier is used:
                break
        return lp, used

    def guard_distance(self, stop_distance: float) -> float:
        """The adverse move liquidation must lie beyond: the stop distance plus the buffer.
        A linear long's liquidation price cannot fall below zero (a 100% move), and a long
        liquidated only at zero or below is never liquidated: its requirement stops there."""
        need = stop_distance * (1.0 + self.buffer)
        return min(need, 1.0) if self.sign > 0 and not self.inverse else need

    def safe_leverage(self, notional: float, need: float) -> float:
        """The highest isolated leverage keeping liquidation ``need`` beyond entry (tier judged
        at that move)."""
        t = self.tier_at_adverse_move(notional, need)
        return liq.venue_max_safe_leverage(self.formula, self.is_long, self.inverse, need,
                                           t.maintenance_margin_rate, self.cum_quote(t), notional,
                                           self.fee)

    def safe_cross_notional(self, notional: float, need: float) -> float:
        """The largest cross-margin notional keeping liquidation ``need`` beyond entry."""
        t = self.tier_at_adverse_move(notional, need)
        return liq.venue_max_safe_notional_cross(self.formula, self.is_long, self.inverse, need,
                                                 t.maintenance_margin_rate, self.cum_quote(t),
                                                 self.cross_collateral(), self.fee)

    def cross_collateral(self) -> float:
        """The collateral a new cross position is backed by (core.position.cross_collateral):
        the wallet (given, or the equity less the positions' unrealised PnL) less every held
        position's maintenance margin plus their unrealised PnL."""
        a = self.account
        held = a.positions
        if held:
            sums = a.held_sums()  # added once per account (and per reservation added)
            if sums is not None and (a.wallet_balance is not None or _SUM_ADDS_IN_ORDER):
                mm, pnl = sums  # each a sum in order from 0.0, as the walk below adds them
                wallet = a.wallet_balance if a.wallet_balance is not None else a.equity - pnl
                return position.cross_collateral(wallet, [mm], [pnl], -1)
        upnl = [p.unrealised_pnl for p in held]
        wallet = a.wallet_balance if a.wallet_balance is not None else a.equity - sum(upnl)
        return position.cross_collateral(wallet, [p.maintenance_margin for p in held], upnl, -1)

    def unit_value(self) -> float:
        """Quote value of one amount unit (a contract, or one base unit for spot)."""
        return self.unit


class Stop:
    """The stop: its price, its distance (a fraction of entry) and how it was given."""

    __slots__ = ("distance", "price", "source")

    def __init__(self, price: float, distance: float, source: str | Text) -> None:
        self.price = price
        self.distance = distance
        self.source = source


class Budget:
    """The sizing model's money: a margin, a notional or a risk amount. A margin model keeps
    its margin when the leverage falls (its notional shrinks); the others keep the notional."""

    __slots__ = ("kind", "money")

    def __init__(self, kind: str, money: float) -> None:
        self.kind = kind
        self.money = money


NO_BUDGET = Budget(NOTIONAL, math.inf)  # before step 5 sets the model's


class Sizing:
    """What the steps move, from the base size to the exchange rules."""

    __slots__ = ("budget", "caps", "formatted", "leverage", "notional", "stop", "tier")

    def __init__(self, stop: Stop | None = None) -> None:
        self.stop = stop
        self.budget = NO_BUDGET
        self.notional = 0.0
        self.leverage = 1.0
        self.caps: list[Cap] = []
        self.tier: TierRow | None = None
        self.formatted = (-1, "")  # lots and their amount string, formatted once

    @property
    def keeps_margin(self) -> bool:
        return self.budget.kind == MARGIN

    def static_cap(self) -> float:
        return min((max(c.notional, 0.0) for c in self.caps), default=math.inf)


class Log:
    """The reason codes (each once, in the order they arose) and the trace of a decision."""

    __slots__ = ("reasons", "trace")

    def __init__(self) -> None:
        self.reasons: list[Reason] = []
        self.trace: list[TraceStep] = []

    def step(self, name: str, keys: tuple[str, ...] = (), values: tuple[Any, ...] = (),
             bound: Reason | None = None, note: str | None = None) -> None:
        """Record a step: its value names (a constant tuple) and its values, in the same order
        (the trace's (name, value) pairs are built only when read: TraceStep)."""
        self.trace.append(TraceStep(name, (), None if bound is None else str(bound), note,
                                    keys=keys, recorded=values))

    def step_pairs(self, name: str, pairs: Values, bound: Reason | None = None) -> None:
        """Record a step whose values come as (name, value) pairs."""
        self.trace.append(TraceStep(name, pairs, None if bound is None else str(bound)))

    def reason(self, code: Reason) -> None:
        if code not in self.reasons:
            self.reasons.append(code)


# -- leverage planned before sizing, and the stop ---------------------------------------

def planned_leverage(ctx: Context, log: Log) -> float:
    """Leverage the sizing and the margin caps start from (step 7 may only lower it)."""
    if not ctx.is_contract:
        return 1.0
    p, m = ctx.p, ctx.m
    if p.auto:
        cap = min(p.lev_max, m.max_leverage)
        if math.isinf(cap) and p.margin_model:
            raise InvalidInput("leverage.max", p.lev_max, "auto leverage with a margin-based "
                               "model needs a finite leverage.max or market max")
        return cap
    wanted = ctx.intent.leverage
    lev = wanted if wanted is not None else p.lev_value
    if lev > p.lev_max:
        lev = p.lev_max
        log.reason(Reason.CAPPED_LEVERAGE_POLICY)
    if lev > m.max_leverage:
        lev = m.max_leverage
        log.reason(Reason.CAPPED_LEVERAGE_TIER)
    return lev


def _stop_price(ctx: Context, planned_lev: float) -> tuple[float, str | Text] | None:
    """The stop price the intent (or the policy's default) asks for, and how it was given (a
    Text: written out only when the trace is read)."""
    i, p = ctx.intent, ctx.p
    sign, price = ctx.sign, ctx.price
    stop = i.stop
    if stop is not None:
        return stop, "price"
    pct = i.stop_pct
    if pct is not None:
        return price * (1 - sign * pct / 100), Text("{:g}% of entry", pct)
    roe = i.stop_roe
    if roe is not None:
        d = roe / 100 / planned_lev
        return price * (1 - sign * d), Text("{:g}% loss on margin at {:g}x", roe, planned_lev)
    atr, mult = i.atr, i.atr_mult
    if atr is not None and (p.model != "volatility_target" or mult is not None):
        k = mult if mult is not None else p.atr_mult
        return price - sign * k * atr, Text("{:g} x ATR {:g}", k, atr)
    if p.default_pct > 0:
        d = p.default_pct
        return price * (1 - sign * d / 100), Text("policy default {:g}%", d)
    return None


def resolve_stop(ctx: Context, log: Log, planned_lev: float) -> Stop | None:
    """Step 1b: the stop price and its distance from entry (None without a stop)."""
    found = _stop_price(ctx, planned_lev)
    if found is None:
        log.step("stop", note="no stop given")
        return None
    price, how = found
    entry, is_long = ctx.price, ctx.is_long
    if price <= 0 or (is_long and price >= entry) or (not is_long and price <= entry):
        raise InvalidInput("stop", price, f"the stop ({how}) lies on the wrong side of entry {entry}")
    dist = abs(entry - price) / entry
    log.step("stop", ("stop_price", "distance_pct", "source"),
             (price, dist * 100, how))
    return Stop(price, dist, how)


# -- step 2: gates ----------------------------------------------------------------------

def gates(ctx: Context, log: Log) -> Reason | None:
    """Step 2: the first closed gate, or no margin available at all."""
    code, note = gate(ctx.intent, ctx.account, ctx.p.limits)
    log.step("gates", bound=code, note=note)
    if code is not None:
        return code
    return Reason.INSUFFICIENT_MARGIN if ctx.mb.available <= 0 else None


# -- steps 3-5: base size, adjustments, notional -----------------------------------------

def base_size(ctx: Context, log: Log, stop: Stop | None) -> float | None:
    """Step 3: the model's base (None when Kelly sees no edge)."""
    s, i = ctx.p, ctx.intent
    model = s.model
    if model == "fixed_margin":
        base, unit = s.margin, "margin"
    elif model == "fixed_notional":
        base, unit = s.notional, "notional"
    elif model == "balance_fraction":
        base, unit = s.fraction, "fraction of " + s.balance
    elif model in ("risk", "kelly"):
        if stop is None:
            raise InvalidInput("stop", None, f"the {model} model needs a stop: give stop, "
                               "stop_pct, atr or stop_roe")
        if model == "risk":
            base = s.risk
        else:
            stats = ctx.account.symbol_stats.get(ctx.symbol)
            w = stats.win_rate if stats is not None and stats.trades >= s.min_trades else s.win_rate
            full = kelly_fraction(w, s.payoff)
            log.step("kelly", ("win_rate", "payoff", "full_kelly", "fraction"),
                     (w, s.payoff, full, s.kelly_fraction))
            if full <= 0:
                return None
            base = full * s.kelly_fraction
        unit = "risk fraction of equity"
    else:  # volatility_target
        if i.atr is None:
            raise InvalidInput("atr", None, "the volatility_target model needs atr")
        base, unit = s.target_volatility, "target volatility fraction"
    log.step("base_size", ("model", "base", "unit"),
             (model, base, unit))
    return base


def adjusted(ctx: Context, log: Log, base: float) -> float:
    """Step 4: the clamped, graded base (every multiplier traced)."""
    p = ctx.p
    model = p.model
    money = p.money_model  # the clamp bounds fractions, never money
    value, mults = adjust(base, p.adjust, ctx.intent, ctx.account, clamp=not money)
    note = None
    if money and (p.adjust_min > 0 or p.adjust_max > 0):
        note = (f"adjust.min/max ({p.adjust_min:g}, {p.adjust_max:g}) bound fractions; {model} sizes money, "
                "so they are not applied (limits.max_margin / max_notional bound money)")
    log.step("adjust", ADJUST_KEYS, mults, note=note)
    return value


def to_notional(ctx: Context, log: Log, sz: Sizing, value: float, lev0: float) -> None:
    """Step 5: the model's money becomes a notional, and the budget a raise must respect."""
    s, a, i = ctx.p, ctx.account, ctx.intent
    model = s.model
    if model in ("fixed_margin", "balance_fraction"):
        balance = a.equity if s.balance == "equity" else a.available_margin
        margin = value if model == "fixed_margin" else balance * value
        sz.budget, sz.notional = Budget(MARGIN, margin), margin * lev0
        log.step("notional", ("margin", "leverage", "notional"),
                 (margin, lev0, sz.notional),
                 note="margin x leverage")
    elif model == "fixed_notional":
        sz.budget, sz.notional = Budget(NOTIONAL, value), value
        log.step("notional", ("notional",),
                 (value,))
    elif model in ("risk", "kelly"):
        assert sz.stop is not None
        fee_in_risk = ctx.fee_to_stop(sz.stop.distance)
        risk_money = a.equity * value
        sz.budget = Budget(RISK, risk_money)
        sz.notional = notional_from_risk(risk_money, sz.stop.distance, fee_in_risk)
        log.step("notional", ("risk_money", "stop_distance_pct", "fee_round_trip_pct", "notional"),
                 (risk_money, sz.stop.distance * 100, fee_in_risk * 100,
                  sz.notional),
                 note="risk / (stop distance + entry fee + exit fee at the stop)")
    else:
        assert i.atr is not None
        vol = i.atr / ctx.price
        sz.notional = notional_for_volatility(a.equity, value, vol)
        sz.budget = Budget(NOTIONAL, sz.notional)
        log.step("notional", ("asset_volatility_pct", "notional"),
                 (vol * 100, sz.notional),
                 note="equity x target / (ATR / price)")


# -- step 6: limits ---------------------------------------------------------------------

def apply_limits(ctx: Context, log: Log, sz: Sizing, lev0: float) -> Reason | None:
    """Step 6: every notional cap, then the margin budget at the planned leverage; the code of
    the last binding cap when nothing is left."""
    sz.caps = notional_caps(ctx.intent, ctx.account, ctx.p.limits)
    m = ctx.m
    if ctx.is_contract and m.has_tiers:
        top = m.top_notional
        if math.isfinite(top):
            unit = ctx.price if ctx.coin_tiers else 1.0
            sz.caps.append(Cap(top * unit * (1 - FLOAT_SLACK), Reason.CAPPED_TIER_NOTIONAL,
                               "top of the exchange's leverage tiers"))
    before = sz.notional
    for cap in sz.caps:
        if sz.notional > cap.notional:
            sz.notional = max(cap.notional, 0.0)
            log.reason(cap.code)
            log.step("limit", ("notional",), (sz.notional,), bound=cap.code, note=cap.note)
    mb = ctx.mb
    mcap, mcode = mb.cap(lev0, ctx.fee)
    if sz.notional > mcap and mcode is not None:
        sz.notional = mcap
        log.reason(mcode)
        log.step("limit", ("leverage", "notional"),
                 (lev0, sz.notional), bound=mcode,
                 note=f"margin budget {mb.smallest:g} (per trade {mb.per_trade:g}, "
                      f"utilisation room {mb.utilisation_room:g}, available {mb.available:g})")
    log.step("limits", ("notional_before", "notional"),
             (before, sz.notional))
    if sz.notional <= 0:
        return log.reasons[-1] if log.reasons else Reason.ZERO_SIZE
    return None


# -- adding to a position (limits.allow_add): steps 5b, 7b and 8b -------------------------

class Held(NamedTuple):
    """The open position (and reservations) an add joins: same symbol, same side, merged."""

    notional: float
    entry: float  # average entry; the intent's price stands in for an unknown one
    margin: float
    entry_known: bool


def held_position(ctx: Context) -> Held | None:
    """What the intent adds to, or None when it opens a new position (found once: steps 5b,
    7b and 8b all ask)."""
    if not ctx.held_known:
        ctx.held, ctx.held_known = _held_position(ctx), True
    return ctx.held


def _held_position(ctx: Context) -> Held | None:
    """What the intent adds to, or None when it opens a new position."""
    account = ctx.account
    if not account.has_position(ctx.symbol):
        return None
    side = ctx.intent.side
    fold = account.held_fold(ctx.symbol, side)
    if fold is not None:  # every entry known: merged once per account (and per reservation)
        return Held(fold[0], fold[1], fold[2], True) if fold[3] else None
    # the walk (the fold's reference): an unknown entry is valued at this price
    held: Held | None = None
    for p in account.positions:
        if p.symbol != ctx.symbol or p.side != side or p.notional == 0:
            continue
        n, known = abs(p.notional), p.entry > 0
        e = p.entry if known else ctx.price
        if held is None:
            held = Held(n, e, p.margin, known)
        else:
            total, avg, margin = position.merged(held.notional, held.entry, held.margin, n, e,
                                                 p.margin)
            held = Held(total, avg, margin, held.entry_known and known)
    return held


def _held_risk(ctx: Context, held: Held, stop: Stop) -> float:
    """The held position's risk to the (new) stop, fees as the policy counts them."""
    fee = ctx.fee if ctx.p.fees_in_risk else 0.0
    return position.risk_to_stop(ctx.is_long, ctx.inverse, held.notional,
                                 held.entry, stop.price, fee, fee)


def add_within_risk(ctx: Context, log: Log, sz: Sizing) -> Reason | None:
    """Step 5b: an add to a position of a risk-budget model is cut so the whole position's risk
    to the stop (the held part's, at its entry, plus the add's) stays within the budget. A held
    part whose stop locks in profit counts as zero, never as room. The add's budget becomes
    the room left, so a raise to the exchange minimum respects the whole position too."""
    held = held_position(ctx)
    if held is None or sz.stop is None or sz.budget.kind != RISK:
        return None
    held_risk = _held_risk(ctx, held, sz.stop)
    room = sz.budget.money - max(held_risk, 0.0)
    cap = max(notional_from_risk(room, sz.stop.distance, ctx.fee_to_stop(sz.stop.distance)), 0.0)
    bound = Reason.ADD_CAPPED_BY_RISK if sz.notional > cap else None
    log.step("add", ("held_notional", "held_entry", "held_risk", "risk_budget", "risk_room",
                     "notional_before", "notional"),
             (held.notional, held.entry, held_risk, sz.budget.money, room, sz.notional,
              min(sz.notional, cap)), bound=bound,
             note=None if held.entry_known else "held entry unknown: valued at this price")
    sz.budget = Budget(RISK, max(room, 0.0))
    if bound is None:
        return None
    log.reason(bound)
    sz.notional = cap
    return bound if cap <= 0 else None


def _add_is_safe(ctx: Context, held: Held, stop: Stop, notional: float, leverage: float) -> bool:
    """Whether the merged position's isolated liquidation lies beyond the stop by the guard's
    buffer (``buffer x`` the stop's distance from this price, as for a new position)."""
    tier = ctx.tier_for(held.notional + notional)
    lp = position.combined_liquidation(
        ctx.is_long, ctx.inverse, held.notional, held.entry, held.margin, notional, ctx.price,
        notional / leverage, tier.maintenance_margin_rate,
        ctx.cum_quote(tier), ctx.formula, ctx.fee)
    need = stop.price - ctx.sign * ctx.buffer * abs(ctx.price - stop.price)
    return ctx.sign * (need - lp) >= 0


def guard_add(ctx: Context, log: Log, sz: Sizing) -> Reason | None:
    """Step 7b: the largest add (at the leverage step 7 chose) whose merged position keeps its
    liquidation beyond the stop by the buffer; a skip when even the held part alone does not.
    Isolated margin only: a cross position's guard already counts the account's positions."""
    held = held_position(ctx)
    stop = sz.stop
    if (held is None or stop is None or not ctx.is_contract or ctx.cross
            or not ctx.p.guard_on or sz.notional <= 0):
        return None
    if _add_is_safe(ctx, held, stop, sz.notional, sz.leverage):
        return None
    before = sz.notional
    if _add_is_safe(ctx, held, stop, 0.0, sz.leverage):
        lo, hi = 0.0, before
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _add_is_safe(ctx, held, stop, mid, sz.leverage) else (lo, mid)
        sz.notional = lo
    else:
        sz.notional = 0.0
    log.reason(Reason.ADD_CAPPED_BY_LIQUIDATION)
    log.step("add_liquidation", ("notional_before", "notional", "leverage"),
             (before, sz.notional, sz.leverage),
             bound=Reason.ADD_CAPPED_BY_LIQUIDATION,
             note="the merged position's liquidation came before the stop plus the buffer")
    return Reason.ADD_CAPPED_BY_LIQUIDATION if sz.notional <= 0 else None


def report_add(ctx: Context, log: Log, sz: Sizing, lots: int) -> Reason | None:
    """Step 8b: the merged position the accepted add leaves, in the trace: new average entry,
    amount, notional, margin, risk to the stop and liquidation; a skip if rounding broke the
    liquidation guard."""
    held = held_position(ctx)
    if held is None or lots <= 0:
        return None
    i, m = ctx.intent, ctx.market
    add_n = position.notional(m, position.amount_of_lots(m, lots), ctx.price)
    margin = add_n / sz.leverage if ctx.is_contract else add_n
    entry = position.average_entry(held.notional, held.entry, add_n, i.price)
    values: list[tuple[str, Any]] = [
        ("average_entry", entry),
        ("amount", position.amount_for(m, held.notional, held.entry)
         + position.amount_of_lots(m, lots)),
        ("notional", held.notional + add_n), ("margin", held.margin + margin)]
    stop = sz.stop
    if stop is not None:
        fee = ctx.fee if ctx.p.fees_in_risk else 0.0
        values.append(("risk", position.risk_to_stop(i.is_long, m.inverse, held.notional + add_n,
                                                     entry, stop.price, fee, fee)))
    unsafe = False
    if ctx.is_contract and not ctx.cross:
        tier = ctx.tier_for(held.notional + add_n)
        values.append(("liquidation_price", position.combined_liquidation(
            i.is_long, m.inverse, held.notional, held.entry, held.margin, add_n, i.price, margin,
            tier.maintenance_margin_rate, ctx.cum_quote(tier), ctx.formula, ctx.fee)))
        unsafe = (stop is not None and ctx.p.guard_on
                  and not _add_is_safe(ctx, held, stop, add_n, sz.leverage))
    log.step_pairs("position_after_add", tuple(values),
             bound=Reason.ADD_CAPPED_BY_LIQUIDATION if unsafe else None)
    return Reason.ADD_CAPPED_BY_LIQUIDATION if unsafe else None


# -- step 7: leverage and liquidation ---------------------------------------------------

def choose_leverage(ctx: Context, log: Log, sz: Sizing, lev0: float) -> Reason | None:
    """Step 7: the leverage, capped by the tier of the notional and lowered (or the size shrunk)
    until liquidation lies beyond the stop plus the buffer; repeated while the notional moves
    across a tier boundary."""
    if not ctx.is_contract:
        sz.leverage = 1.0
        log.step("leverage", ("leverage",),
                 (1.0,), note="spot: no leverage")
        return None
    p = ctx.p
    guarded = sz.stop is not None and p.guard_on
    margin_kept = sz.notional / lev0 if sz.keeps_margin else 0.0
    lev = _pick_tier(ctx, log, sz, lev0, margin_kept) if ctx.m.has_tiers else lev0
    guard_cap = math.inf  # auto leverage never climbs back above what the guard lowered
    for _ in range(LEVERAGE_ROUNDS):
        if sz.notional <= 0:
            break
        if p.auto:
            lev = min(_auto_leverage(ctx, sz), p.lev_max, guard_cap)
        lev = _cap_to_tier(ctx, log, sz, lev, margin_kept)
        if lev > ctx.tier_for(sz.notional).max_leverage:
            continue  # the cut moved no tier boundary the right way yet; look again
        if guarded and not ctx.cross:
            lev, again, refused = _guard_isolated(ctx, log, sz, lev, margin_kept)
            if refused is not None:
                return refused
            if again:
                guard_cap = lev
                continue  # the new notional may sit in another tier: check again
        if guarded and ctx.cross:
            again, refused = _guard_cross(ctx, log, sz)
            if refused is not None:
                return refused
            if again:
                continue
        break
    else:  # no round settled: never accept a size the last round did not verify
        if guarded:
            log.step("liquidation_guard", bound=Reason.STOP_BEYOND_LIQUIDATION,
                     note=f"no safe size settled in {LEVERAGE_ROUNDS} rounds")
            return Reason.STOP_BEYOND_LIQUIDATION
        lev = min(lev, ctx.tier_for(sz.notional).max_leverage)
    sz.leverage = lev
    t = sz.tier = ctx.tier_for(sz.notional)
    log.step("leverage", ("leverage", "mode", "tier", "tier_max_leverage", "maintenance_margin_rate",
                          "notional", "margin"),
             (lev, p.lev_mode, t.tier, t.max_leverage, t.maintenance_margin_rate, sz.notional,
              sz.notional / lev))
    return None


def _cap_to_tier(ctx: Context, log: Log, sz: Sizing, lev: float, margin_kept: float) -> float:
    """The leverage cut to the tier's max (a margin model's notional shrinks with it), then the
    notional cut to the margin budget at that leverage."""
    tier = ctx.tier_for(sz.notional)
    if lev > tier.max_leverage:
        lev = tier.max_leverage
        log.reason(Reason.CAPPED_LEVERAGE_TIER)
        if sz.keeps_margin:
            sz.notional = min(sz.notional, margin_kept * lev)
    _fit_margin(ctx, log, sz, lev, None)
    return lev


def _guarded_leverage(ctx: Context, notional: float, need: float) -> float:
    """The safe leverage as the guard applies it: whole when leverage is whole, else strictly
    below the limit (liquidation beyond the guarded distance, not on it)."""
    safe = ctx.safe_leverage(notional, need)
    if not math.isfinite(safe):
        return safe
    if ctx.p.integer:
        # float() keeps both builds alike: Python's math.floor gives an int, mypyc's a float
        return float(math.floor(safe + SAFETY_SLACK))
    return safe * (1 - SAFETY_SLACK)


def _guard_isolated(ctx: Context, log: Log, sz: Sizing, lev: float, margin_kept: float
                    ) -> tuple[float, bool, Reason | None]:
    """The isolated guard: (leverage, whether it changed the size, a refusal)."""
    assert sz.stop is not None
    p = ctx.p
    guard = p.guard
    need = ctx.guard_distance(sz.stop.distance)
    safe = _guarded_leverage(ctx, sz.notional, need)
    if lev <= safe + FLOAT_SLACK:
        return lev, False, None
    liq_now = ctx.liquidation(sz.notional, sz.notional / lev, ctx.tier_for(sz.notional))[0]
    if guard == "refuse" or safe < 1:
        log.step("liquidation_guard", ("leverage", "liquidation_price", "stop_price", "safe_leverage",
                                       "required_distance_pct"),
                 (lev, liq_now, sz.stop.price, safe, need * 100),
                 bound=Reason.STOP_BEYOND_LIQUIDATION,
                 note="refused" if guard == "refuse" else "not even 1x is safe")
        return lev, False, Reason.STOP_BEYOND_LIQUIDATION
    old, lev = lev, float(safe)
    log.reason(Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION)
    kept: float | None = None
    before = sz.notional
    if guard == "shrink" or sz.keeps_margin:
        kept = margin_kept if sz.keeps_margin else sz.notional / old
        if p.auto and not sz.keeps_margin:
            # auto leverage was the lowest that fit the budget; its rounding up left slack, so
            # keeping notional / old would be arbitrary: keep the budget (then _fit_margin
            # leaves room for the fee)
            kept = ctx.mb.smallest
        sz.notional = min(sz.notional, kept * lev)
    _fit_margin(ctx, log, sz, lev, Reason.SHRUNK_FOR_LIQUIDATION)
    if sz.notional < before * (1 - FLOAT_SLACK):
        log.reason(Reason.SHRUNK_FOR_LIQUIDATION)
        if p.lev_mode == "fixed":
            lev = _take_back(ctx, sz, lev, old, before, kept, need)
    log.step("liquidation_guard", ("leverage_before", "liquidation_price_before", "stop_price", "leverage",
                                   "required_distance_pct", "notional_before", "notional", "mode"),
             (old, liq_now, sz.stop.price, lev, need * 100, before, sz.notional,
              guard),
             bound=Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION, note="liquidation came before the stop")
    return lev, True, None


def _guard_cross(ctx: Context, log: Log, sz: Sizing) -> tuple[bool, Reason | None]:
    """The cross guard: only a smaller position moves a cross liquidation. (whether it shrank
    the size, a refusal)."""
    assert sz.stop is not None
    guard = ctx.p.guard
    need = ctx.guard_distance(sz.stop.distance)
    cap = ctx.safe_cross_notional(sz.notional, need) * (1 - SAFETY_SLACK)
    if sz.notional <= cap * (1 + FLOAT_SLACK):
        return False, None
    if guard == "refuse" or cap <= 0:
        log.step("liquidation_guard", ("notional", "safe_notional", "collateral", "required_distance_pct"),
                 (sz.notional, cap, ctx.cross_collateral(), need * 100),
                 bound=Reason.STOP_BEYOND_LIQUIDATION,
                 note="cross margin: refused" if guard == "refuse"
                 else "cross margin: the account cannot carry any position")
        return False, Reason.STOP_BEYOND_LIQUIDATION
    log.step("liquidation_guard", ("notional_before", "notional", "mode"),
             (sz.notional, cap, guard),
             bound=Reason.SHRUNK_FOR_LIQUIDATION,
             note="cross margin: only a smaller position moves liquidation")
    sz.notional = cap
    log.reason(Reason.SHRUNK_FOR_LIQUIDATION)
    return True, None


def _pick_tier(ctx: Context, log: Log, sz: Sizing, lev0: float, margin_kept: float) -> float:
    """The tier giving the largest notional, and its leverage.

    Above a tier boundary the max leverage drops, so the margin budget may cut the notional
    below what stays under the boundary at the lower tier's higher leverage (150x up to 300k,
    100x above: 2,000 margin buys 299,999 at 150x but only 200,000 at 100x). Taking the best
    tier keeps the size monotone: a bigger account never gets a smaller trade.
    """
    if lev0 <= ctx.tier_for(sz.notional).max_leverage:
        return lev0  # the tier allows the wanted leverage: nothing to choose
    unit = ctx.intent.price if ctx.coin_tiers else 1.0
    best_lev, best_n, top_bound = lev0, -1.0, False
    for t in ctx.m.rows:
        lev = min(lev0, t.max_leverage)
        n = min(sz.notional, margin_kept * lev) if sz.keeps_margin else sz.notional
        top = t.max_notional * unit * (1 - FLOAT_SLACK)
        n = min(n, ctx.mb.cap(lev, ctx.fee)[0], top)
        if n >= t.min_notional * unit and n > best_n:
            best_n, best_lev, top_bound = n, lev, n == top
    if best_n < 0:
        return lev0
    if best_n < sz.notional * (1 - SAFETY_SLACK) and top_bound:
        log.reason(Reason.CAPPED_TIER_NOTIONAL)
        log.step("tier", ("notional_before", "notional", "leverage"),
                 (sz.notional, best_n, best_lev),
                 bound=Reason.CAPPED_TIER_NOTIONAL,
                 note="kept under a tier ceiling: the next tier's lower max leverage would "
                      "need more margin than the budget has")
    sz.notional = best_n
    if best_lev < lev0:
        log.reason(Reason.CAPPED_LEVERAGE_TIER)
    return best_lev


def _take_back(ctx: Context, sz: Sizing, lev: float, wanted: float, before: float,
               kept: float | None, need: float) -> float:
    """The highest leverage in ``[lev, wanted]`` that stays safe for the notional it gets.

    The guard lowered the leverage to what is safe for the notional ``before``; the margin
    budget (or the kept margin) then cut the notional, and a smaller notional is safe at a
    slightly higher leverage (``cum / N`` grows). Safety falls and the notional rises with
    the leverage, so the answer is found by bisection; without this, asking for more
    leverage could end with a smaller trade than asking for less.
    """
    integer = ctx.p.integer

    def notional_at(x: float) -> float:
        n = before if kept is None else min(before, kept * x)
        return min(n, ctx.mb.cap(x, ctx.fee)[0])

    def safe_at(x: float) -> bool:
        n = notional_at(x)
        if n <= 0 or x > ctx.tier_for(n).max_leverage:
            return False
        top = ctx.safe_leverage(n, need)
        return x <= (top + SAFETY_SLACK if integer else top * (1 - SAFETY_SLACK))

    if integer:
        lo, hi = int(lev), math.floor(wanted + SAFETY_SLACK)  # lo is safe: its notional only fell
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if safe_at(mid) else (lo, mid - 1)
        best = float(lo)
    else:
        best, top = lev, wanted
        for _ in range(BISECTION_STEPS):
            x = (best + top) / 2
            best, top = (x, top) if safe_at(x) else (best, x)
    if best > lev:
        sz.notional = notional_at(best)
    return best


def _auto_leverage(ctx: Context, sz: Sizing) -> float:
    """Lowest leverage whose margin plus entry fee fits the margin budget."""
    budget = ctx.mb.smallest
    if sz.keeps_margin:  # a margin model's margin is its budget, not all available
        budget = min(budget, sz.budget.money)
    room = budget - sz.notional * ctx.fee
    p = ctx.p
    if room <= 0:  # not even the fee fits: the highest leverage, and step 7 shrinks
        top = min(p.lev_max, ctx.tier_for(sz.notional).max_leverage)
        if math.isinf(top):  # never a position without margin
            raise InvalidInput("leverage.max", p.lev_max,
                               "auto leverage needs a finite leverage.max or market max leverage "
                               "when the margin budget cannot pay the entry fee")
        return top
    lev = max(1.0, sz.notional / room)
    return float(math.ceil(lev - SAFETY_SLACK)) if p.integer else lev


def _fit_margin(ctx: Context, log: Log, sz: Sizing, lev: float, code: Reason | None) -> None:
    cap, which = ctx.mb.cap(lev, ctx.fee)
    if sz.notional > cap:
        sz.notional = cap
        log.reason(code or which or Reason.CAPPED_MARGIN)


# -- step 8: exchange rules -------------------------------------------------------------

def exchange_rules(ctx: Context, log: Log, sz: Sizing) -> tuple[int, Reason | None]:
    """Step 8: whole lots within the exchange's maxima; below a minimum, skip or raise."""
    m, unit = ctx.m, ctx.unit
    step = m.amount_step
    qty = sz.notional / unit
    min_amount, max_amount = m.min_amount, m.max_amount
    max_source = m.max_amount_source
    if ctx.p.market_orders:
        if m.market_max_amount < max_amount:
            max_amount, max_source = m.market_max_amount, m.market_max_source
        min_amount = max(min_amount, m.market_min_amount)
    lots = _lots_within_maxima(ctx, log, sz, qty, max_amount)
    if lots > 0 and lots * step < qty * (1 - FLOAT_SLACK):
        log.reason(Reason.ROUNDED_TO_STEP)
    min_cost, cost_src = _min_cost(ctx)
    short, need = _shortfall(ctx, lots, min_amount, min_cost)
    sz.formatted = (lots, format_lots(lots, m.step_units, m.step_places))
    log.step("exchange_rules", ("quantity", "lot_step", "lots", "amount", "min_amount", "min_cost",
                                "min_cost_source", "max_amount", "max_amount_source"),
             (qty, step, lots, sz.formatted[1], min_amount, min_cost, cost_src, max_amount,
              max_source))
    if not short:
        return lots, None
    if ctx.p.below_minimum == "raise" and _raise_to_minimum(
            ctx, log, sz, need, max_amount):
        return need, None
    if sz.notional <= 0 or (lots == 0 and ctx.mb.available <= 0):
        return 0, Reason.INSUFFICIENT_MARGIN if ctx.mb.available <= 0 else short[0]
    for code in short[1:]:
        log.reason(code)
    return lots, short[0]


def _lots_within_maxima(ctx: Context, log: Log, sz: Sizing, qty: float, max_amount: float) -> int:
    m, unit = ctx.m, ctx.unit
    step = m.amount_step
    lots = floor_lots(qty, step)
    if lots > 0 and m.has_tiers and sz.leverage > ctx.tier_for(lots * step * unit).max_leverage:
        lots -= 1  # the float nudge in floor_lots must not carry a size over a tier ceiling
    if lots * step > max_amount:
        lots = floor_lots(max_amount, step)
        log.reason(Reason.ABOVE_MAX_AMOUNT)
    if lots * step * unit > m.max_cost:
        lots = floor_lots(m.max_cost / unit, step)
        log.reason(Reason.ABOVE_MAX_AMOUNT)
    return lots


def _shortfall(ctx: Context, lots: int, min_amount: float, min_cost: float
               ) -> tuple[list[Reason], int]:
    """The minimums ``lots`` misses (first is the skip reason) and the lots that meet them all."""
    unit, step = ctx.unit, ctx.m.amount_step
    min_notional = ctx.p.min_notional
    short: list[Reason] = []
    need = 1
    if lots * step < min_amount * (1 - FLOAT_SLACK) or lots == 0:
        short.append(Reason.BELOW_MIN_AMOUNT if min_amount > step * (1 + SAFETY_SLACK)
                     else Reason.ZERO_SIZE)
        need = max(need, ceil_lots(min_amount, step))
    if min_cost > 0 and lots * step * unit < min_cost * (1 - FLOAT_SLACK):
        short.append(Reason.BELOW_MIN_COST)
        need = max(need, ceil_lots(min_cost / unit, step))
    if min_notional > 0 and lots * step * unit < min_notional * (1 - FLOAT_SLACK):
        short.append(Reason.BELOW_MIN_NOTIONAL)
        need = max(need, ceil_lots(min_notional / unit, step))
    return short, need


def _min_cost(ctx: Context) -> tuple[float, str]:
    p, sym = ctx.p, ctx.symbol
    best, src = ctx.m.min_cost, "market"
    policy_min = p.policy_min_cost.get(sym, p.default_min_cost)
    if policy_min > best:
        best, src = policy_min, "policy"
    learned = ctx.account.min_cost.get(sym, 0.0)
    if learned > best:
        best, src = learned, "learned from an exchange rejection"
    return best, src


def _raise_to_minimum(ctx: Context, log: Log, sz: Sizing, need: int, max_amount: float) -> bool:
    unit, step = ctx.unit, ctx.m.amount_step
    ok, why = _can_raise(ctx, sz, need)
    if ok and (need * step > max_amount * (1 + FLOAT_SLACK) or need * step * unit > ctx.m.max_cost):
        ok, why = False, "the exchange's maximum amount or cost would be broken"
    log.step("raise_to_minimum", ("lots", "ok"),
             (need, ok), note=why)
    if ok:
        log.reason(Reason.RAISED_TO_MINIMUM)
    return ok


def _can_raise(ctx: Context, sz: Sizing, lots: int) -> tuple[bool, str]:
    """Whether ``lots`` keeps every limit, the model's budget (within the raise tolerance) and
    the liquidation guard; and why not."""
    n = lots * ctx.m.amount_step * ctx.unit
    lev = sz.leverage
    if n > sz.static_cap() * (1 + SAFETY_SLACK):
        return False, "a notional cap would be broken"
    if ctx.is_contract and lev > ctx.tier_for(n).max_leverage:
        return False, "the tier's max leverage would be broken"
    if n > ctx.mb.cap(lev, ctx.fee)[0] * (1 + SAFETY_SLACK):
        return False, "margin plus fee would not fit the margin budget"
    over = _over_budget(ctx, sz, n)
    if over:
        return False, over
    if ctx.is_contract and sz.stop is not None and ctx.p.guard_on:
        need = ctx.guard_distance(sz.stop.distance)
        if ctx.cross:
            unsafe = n > ctx.safe_cross_notional(n, need)
        else:
            unsafe = lev > ctx.safe_leverage(n, need) + SAFETY_SLACK
        if unsafe:
            return False, "liquidation would come before the stop"
    return True, "risk and every limit hold"


def _over_budget(ctx: Context, sz: Sizing, n: float) -> str:
    """Why a notional ``n`` breaks the model's budget beyond the raise tolerance ("" if not)."""
    limit = sz.budget.money * (1 + ctx.p.raise_tolerance) * (1 + SAFETY_SLACK)
    if sz.budget.kind == RISK:
        assert sz.stop is not None
        if risk_of_notional(n, sz.stop.distance, ctx.fee_to_stop(sz.stop.distance)) > limit:
            return "risk would exceed the budget beyond the raise tolerance"
    elif sz.budget.kind == MARGIN:
        if n / sz.leverage > limit:
            return "margin would exceed the model's margin beyond the raise tolerance"
    elif n > limit:
        return "notional would exceed the model's beyond the raise tolerance"
    return ""


# -- step 9: the decision ---------------------------------------------------------------

def finish(ctx: Context, log: Log, sz: Sizing, lots: int, skip: Reason | None) -> Decision:
    """Step 9: the Decision. Its tier, maintenance rate and amount are those its liquidation
    price used (the bracket of the notional *at* that price); ``entry_tier`` is the bracket at
    entry, which sets the max leverage."""
    m, price = ctx.m, ctx.price
    if skip is not None:
        if ctx.is_contract and not ctx.formula_known and skip in _LIQUIDATION_SKIPS:
            log.reason(Reason.LIQUIDATION_FORMULA_ASSUMED)  # before the skip: that stays last
        log.reason(skip)
        lots = 0
    amount = sz.formatted[1] if sz.formatted[0] == lots else format_lots(lots, m.step_units,
                                                                           m.step_places)
    # position.notional of position.amount_of_lots: the float nearest the exact amount (the
    # amount string is that exact decimal, and float() of it is correctly rounded)
    notional = position.notional_of(float(amount), price, m.contract_size, m.fixed_face)
    lev = sz.leverage if ctx.is_contract else 1.0
    margin = notional / lev if notional else 0.0
    stop = sz.stop
    # the taker fees of the round trip: to the stop when there is one (exit fee on the notional
    # at the stop, as the risk counts them), else both ways on the entry notional
    fees = notional * (ctx.fee_rt if stop is None else fee_rate_to_stop(
        ctx.fee, ctx.fee, ctx.is_long, ctx.inverse, stop.distance))
    entry_tier = ctx.tier_for(notional) if (ctx.is_contract and notional > 0) else sz.tier
    liq_tier: TierRow | None = None
    liq_price = liq_dist = None
    if ctx.is_contract and entry_tier is not None and notional > 0:
        liq_price, liq_tier, liq_dist = _liquidation(ctx, log, stop, notional, margin, entry_tier)
    if stop is not None:
        risk, basis = risk_of_notional(notional, stop.distance,
                                       ctx.fee_to_stop(stop.distance)), "stop"
    elif ctx.is_contract and not ctx.cross:
        risk, basis = margin + fees, "liquidation"
    else:
        risk, basis = notional + fees, "notional"
    status = Status.SKIPPED if skip is not None else Status.ACCEPTED
    log.step("decision", ("status", "amount", "notional", "margin", "leverage", "risk", "fees",
                          "liquidation_price"),
             (str(status), amount, notional, margin, lev, risk, fees,
              liq_price))
    # a skipped decision has no liquidation: it reports the tier step 7 settled on, if any
    tier = liq_tier if liq_tier is not None else entry_tier
    numbered = ctx.is_contract and m.has_tiers
    return Decision(
        status=status, reasons=tuple(log.reasons), symbol=ctx.symbol, side=ctx.intent.side,
        amount=amount, lots=lots, notional=notional, margin=margin, leverage=lev, risk=risk,
        risk_pct=risk / ctx.account.equity * 100, risk_basis=basis, entry_price=price,
        stop_price=stop.price if stop is not None else None,
        stop_distance_pct=stop.distance * 100 if stop is not None else None,
        fees=fees, liquidation_price=liq_price, liquidation_distance_pct=liq_dist,
        maintenance_margin_rate=liq_tier.maintenance_margin_rate if liq_tier else None,
        tier=tier.tier if (tier and numbered) else None,
        margin_mode="cross" if ctx.cross else ("isolated" if ctx.is_contract else "spot"),
        policy=ctx.p.name, trace=tuple(log.trace),
        maintenance_amount=ctx.cum_quote(liq_tier) if liq_tier else None,
        entry_tier=entry_tier.tier if (entry_tier and numbered) else None,
    )


# skips that the liquidation formula decided (the guard found no safe size)
_LIQUIDATION_SKIPS = frozenset((Reason.STOP_BEYOND_LIQUIDATION,))


def _liquidation(ctx: Context, log: Log, stop: Stop | None, notional: float, margin: float,
                 entry_tier: TierRow) -> tuple[float, TierRow, float]:
    """The decision's liquidation price, its bracket and distance (%), and the ``liquidation``
    trace step naming the venue's formula (``binance-usdm``, ``bybit-linear``, ``okx-inverse``);
    a venue without a known formula is judged by Binance's and says so
    (``LIQUIDATION_FORMULA_ASSUMED``)."""
    collateral = ctx.cross_collateral() if ctx.cross else margin
    liq_price, liq_tier = ctx.liquidation(notional, collateral, entry_tier)
    liq_dist = liq.liquidation_distance(ctx.is_long, ctx.price, liq_price) * 100
    name = ctx.m.formula_name
    note = None
    if not ctx.formula_known:
        venue = ctx.m.exchange or "a market naming no exchange"
        note = f"no published liquidation formula known for {venue}: {name} assumed"
        log.reason(Reason.LIQUIDATION_FORMULA_ASSUMED)
    log.step("liquidation", ("formula", "liquidation_price", "collateral", "maintenance_margin_rate",
                             "maintenance_amount"),
             (name, liq_price, collateral, liq_tier.maintenance_margin_rate,
              ctx.cum_quote(liq_tier)), note=note)
    if stop is not None and liq_dist <= stop.distance * 100:  # the guard was off
        log.step("liquidation_guard", ("liquidation_price", "stop_price"),
                 (liq_price, stop.price),
                 note="guard off: liquidation comes before the stop, which never fires")
    return liq_price, liq_tier, liq_dist


# -- the pipeline -----------------------------------------------------------------------

def decide(intent: Intent, account: Account, market: MarketRules, policy: Policy) -> Decision:
    """Size one trade. Raises :class:`~sizeguard.errors.InvalidInput` for bad input; every
    business "no" is a skipped Decision with reason codes."""
    validate(intent, account, market)  # 1
    ctx, log = Context(intent, account, market, policy), Log()
    log.step("validate", ("symbol", "side", "price", "equity", "available", "taker_fee", "market_notes"),
             (ctx.symbol, intent.side, ctx.price, account.equity, account.available_margin, ctx.fee,
              ctx.m.notes))
    lev0 = planned_leverage(ctx, log)
    sz = Sizing(stop=resolve_stop(ctx, log, lev0))
    skip = gates(ctx, log)  # 2
    if skip is not None:
        return finish(ctx, log, sz, 0, skip)
    base = base_size(ctx, log, sz.stop)  # 3
    if base is None:
        return finish(ctx, log, sz, 0, Reason.NO_EDGE)
    to_notional(ctx, log, sz, adjusted(ctx, log, base), lev0)  # 4, 5
    skip = add_within_risk(ctx, log, sz) or apply_limits(ctx, log, sz, lev0)  # 5b, 6
    if skip is None:
        skip = choose_leverage(ctx, log, sz, lev0) or guard_add(ctx, log, sz)  # 7, 7b
    if skip is not None:
        return finish(ctx, log, sz, 0, skip)
    lots, skip = exchange_rules(ctx, log, sz)  # 8
    if skip is None:
        skip = report_add(ctx, log, sz, lots)  # 8b
    return finish(ctx, log, sz, lots, skip)  # 9
