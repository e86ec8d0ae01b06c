"""The decision pipeline (DESIGN.md): intent + account + market + policy -> Decision.

1 validate, 2 gates, 3 base size, 4 adjustments, 5 notional, 6 limits, 7 leverage and
liquidation, 8 exchange rules, 9 decision. Every step appends to the trace.
"""

from __future__ import annotations

import math
from typing import Any

from sizeguard.core import liquidation as liq
from sizeguard.core.account import Account
from sizeguard.core.adjust import adjust
from sizeguard.core.decision import Decision, Reason, Status, TraceStep
from sizeguard.core.intent import LONG, SHORT, Intent
from sizeguard.core.limits import MarginBudget, gate, margin_budget, notional_caps
from sizeguard.core.lots import ceil_lots, floor_lots, format_amount
from sizeguard.core.market import MarketRules
from sizeguard.core.models import (
    fee_rate_to_stop,
    kelly_fraction,
    notional_for_volatility,
    notional_from_risk,
    risk_of_notional,
)
from sizeguard.core.policy import MARGIN_MODELS, Policy
from sizeguard.core.position import taker_fee
from sizeguard.core.tiers import Tier, find_tier
from sizeguard.errors import InvalidInput

_MAX_ROUNDS = 6  # leverage/tier/guard fixed-point iterations; tiers only move down, so few


def _finite(field: str, value: float | None, *, positive: bool = True, allow_zero: bool = False
            ) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, value, "must be a number")
    if math.isnan(value) or math.isinf(value):
        raise InvalidInput(field, value, "must be a finite number")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise InvalidInput(field, value, "must be >= 0" if allow_zero else "must be > 0")


def validate(intent: Intent, account: Account, market: MarketRules) -> None:
    """Step 1: raise :class:`InvalidInput` naming the first bad field."""
    if intent.symbol != market.symbol:
        raise InvalidInput("symbol", intent.symbol, f"does not match the market {market.symbol}")
    if intent.side not in (LONG, SHORT):
        raise InvalidInput("side", intent.side, "must be 'long' or 'short'")
    if market.kind == "spot" and intent.side == SHORT:
        raise InvalidInput("side", intent.side, f"{market.symbol} is spot: it cannot be shorted")
    _finite("price", intent.price)
    _finite("equity", account.equity)
    _finite("available", account.available, allow_zero=True)
    _finite("peak_equity", account.peak_equity)
    _finite("realised_pnl_today", account.realised_pnl_today, positive=False)
    if account.losing_streak < 0:
        raise InvalidInput("losing_streak", account.losing_streak, "must be >= 0")
    # a NaN here would silently switch off the caps and the margin budget (NaN compares false)
    if account.positions_suspect:
        for k, pos in enumerate(account.positions):
            _finite(f"positions[{k}].notional", pos.notional, positive=False)
            _finite(f"positions[{k}].margin", pos.margin, allow_zero=True)
            _finite(f"positions[{k}].maintenance_margin", pos.maintenance_margin, allow_zero=True)
            _finite(f"positions[{k}].unrealised_pnl", pos.unrealised_pnl, positive=False)
    _finite("wallet_balance", account.wallet_balance, positive=False)
    _finite("time", intent.time, positive=False)
    given = [n for n in ("stop", "stop_pct", "stop_roe") if getattr(intent, n) is not None]
    if len(given) > 1:
        raise InvalidInput(given[1], getattr(intent, given[1]),
                           f"give the stop one way only (also got {given[0]})")
    _finite("stop", intent.stop)
    _finite("stop_pct", intent.stop_pct)
    _finite("stop_roe", intent.stop_roe)
    _finite("atr", intent.atr)
    _finite("atr_mult", intent.atr_mult)
    _finite("take_profit", intent.take_profit)
    _finite("confidence", intent.confidence, allow_zero=True)
    _finite("leverage", intent.leverage)
    if intent.stop_pct is not None and intent.stop_pct >= 100:
        raise InvalidInput("stop_pct", intent.stop_pct, "must be below 100 (percent of entry)")
    if intent.stop is not None:
        if intent.is_long and intent.stop >= intent.price:
            raise InvalidInput("stop", intent.stop, f"a long's stop must be below entry {intent.price}")
        if not intent.is_long and intent.stop <= intent.price:
            raise InvalidInput("stop", intent.stop, f"a short's stop must be above entry {intent.price}")
    if intent.take_profit is not None:
        if intent.is_long and intent.take_profit <= intent.price:
            raise InvalidInput("take_profit", intent.take_profit, "a long's take-profit must be above entry")
        if not intent.is_long and intent.take_profit >= intent.price:
            raise InvalidInput("take_profit", intent.take_profit, "a short's take-profit must be below entry")
    if intent.confidence is not None and intent.confidence > 1:
        raise InvalidInput("confidence", intent.confidence, "must be within [0, 1]")
    if intent.leverage is not None and intent.leverage < 1:
        raise InvalidInput("leverage", intent.leverage, "must be >= 1")


class _Run:
    """Mutable scratch state of one decision; the pipeline's steps are its methods."""

    def __init__(self, intent: Intent, account: Account, market: MarketRules, policy: Policy):
        self.i, self.a, self.m, self.p = intent, account, market, policy
        self.trace: list[TraceStep] = []
        self.reasons: list[Reason] = []
        self.fee = taker_fee(market, policy.execution.taker)
        self.fee_rt = 2.0 * self.fee
        self.is_contract = market.is_contract
        self.cross = policy.leverage.margin_mode == "cross" and self.is_contract
        # ccxt's tier tables for coin-margined contracts count the notional in the settle coin
        # (Binance COIN-M brackets are in BTC); Kraken Futures' levels were converted to USD.
        self.coin_tiers = market.tiers_in_coin
        self.sign = 1.0 if intent.is_long else -1.0
        # a market without tiers: its max leverage and the policy's default maintenance rate
        self.default_tier = None if market.tiers else Tier(
            0, 0.0, math.inf, policy.leverage.default_mmr, market.max_leverage, 0.0)
        self.last_tier: Tier | None = None  # step 7 asks about the same few notionals often
        self.stop_price: float | None = None
        self.dist: float | None = None
        self.leverage = 1.0
        self.notional = 0.0
        self.anchor = "notional"  # which quantity a lower leverage keeps: "notional" or "margin"
        self.budget_money = math.inf  # the model's money budget (risk, margin or notional)
        self.budget_kind = ""
        self.tier: Tier | None = None
        self.caps: list[tuple[float, Reason, str]] = []
        self.mb: MarginBudget = margin_budget(account, policy.limits)

    # -- helpers -------------------------------------------------------------------------
    def step(self, name: str, bound: str | None = None, note: str | None = None,
             **values: Any) -> None:
        self.trace.append(TraceStep(name, tuple(values.items()), bound, note))

    def reason(self, code: Reason) -> None:
        if code not in self.reasons:
            self.reasons.append(code)

    def tier_for(self, notional: float) -> Tier:
        """The tier of a position of ``notional`` (quote) at the entry price."""
        return self._tier_by_units(notional / self.i.price if self.coin_tiers else notional)

    def tier_at_adverse_move(self, notional: float, move: float) -> Tier:
        """The tier of the position once the price has moved ``move`` (a fraction of entry)
        against it. Exchanges apply the bracket of the notional at the mark price (Binance's
        COIN-M FAQ: recompute with the level at the liquidation price), and on the way to the
        stop a short's linear notional and a long's coin notional grow: judging them by the
        entry bracket would understate the maintenance margin."""
        factor = 1.0 - self.sign * move  # price at the move / entry
        if self.coin_tiers:
            units = notional / (self.i.price * factor)
        elif self.m.inverse:  # Kraken inverse: the levels count USD contracts, fixed
            units = notional
        else:
            units = notional * factor
        return self._tier_by_units(units)

    def _tier_by_units(self, units: float) -> Tier:
        if self.default_tier is not None:
            return self.default_tier
        last = self.last_tier
        if last is not None and last.min_notional <= units < last.max_notional:
            return last
        m = self.m
        t = find_tier(m.tiers, units, m.tier_floors)
        if t is None:  # above the top tier: judged by the top tier (the limits step caps first)
            return m.tiers[-1]
        self.last_tier = t
        return t

    def liquidation_price(self, notional: float, collateral: float, tier: Tier) -> float:
        """Liquidation price with the bracket of the notional *at* that price: start from
        ``tier`` and recompute while the result lands in another bracket (Binance COIN-M FAQ,
        note under "Maintenance Margin Rate"). Maintenance margin is continuous in the notional,
        so the settled price is the one where equity meets maintenance."""
        entry = self.i.price
        lp = entry
        for _ in range(4):
            lp = liq.liquidation_price(self.i.is_long, self.m.inverse, entry, notional, collateral,
                                       tier.maintenance_margin_rate, self._cum_quote(tier))
            if not 0.0 < lp < math.inf:
                break
            at = self.tier_at_adverse_move(notional, abs(lp - entry) / entry)
            if at is tier:
                break
            tier = at
        return lp

    def guard_distance(self, stop_distance: float) -> float:
        """The adverse move liquidation must lie beyond: the stop distance plus the buffer.
        A linear long's liquidation price cannot fall below zero (a 100% move), and a long
        liquidated only at zero or below is never liquidated: its requirement stops there."""
        need = stop_distance * (1.0 + self.p.liquidation.buffer)
        return min(need, 1.0) if self.sign > 0 and not self.m.inverse else need

    def _cum_quote(self, tier: Tier) -> float:
        """The tier's maintenance amount in quote (a coin amount valued at entry)."""
        if self.coin_tiers:
            return tier.maintenance_amount * self.i.price
        return tier.maintenance_amount

    def fee_to_stop(self) -> float:
        """Fee rate (of the entry notional) of a round trip ending at the stop, 0 when the
        policy leaves fees out of the risk (models.fee_rate_to_stop)."""
        if not self.p.sizing.fees_in_risk or self.dist is None:
            return 0.0
        return fee_rate_to_stop(self.fee, self.fee, self.i.is_long, self.m.inverse, self.dist)

    def unit_value(self) -> float:
        """Quote value of one amount unit (a contract, or one base unit for spot)."""
        return self.m.unit_value(self.i.price)

    # -- step 1b: the stop -------------------------------------------------------------
    def resolve_stop(self, planned_leverage: float) -> None:
        i, sign = self.i, (1.0 if self.i.is_long else -1.0)
        how = None
        if i.stop is not None:
            self.stop_price, how = i.stop, "price"
        elif i.stop_pct is not None:
            self.stop_price, how = i.price * (1 - sign * i.stop_pct / 100), f"{i.stop_pct:g}% of entry"
        elif i.stop_roe is not None:
            d = i.stop_roe / 100 / planned_leverage
            self.stop_price = i.price * (1 - sign * d)
            how = f"{i.stop_roe:g}% loss on margin at {planned_leverage:g}x"
        elif (i.atr is not None and self.p.sizing.model != "volatility_target") or (
                i.atr is not None and i.atr_mult is not None):
            assert i.atr is not None
            k = i.atr_mult if i.atr_mult is not None else self.p.stop.atr_mult
            self.stop_price, how = i.price - sign * k * i.atr, f"{k:g} x ATR {i.atr:g}"
        elif self.p.stop.default_pct > 0:
            d = self.p.stop.default_pct
            self.stop_price, how = i.price * (1 - sign * d / 100), f"policy default {d:g}%"
        if self.stop_price is None:
            self.step("stop", note="no stop given")
            return
        if self.stop_price <= 0 or (i.is_long and self.stop_price >= i.price) or (
                not i.is_long and self.stop_price <= i.price):
            raise InvalidInput("stop", self.stop_price,
                               f"the stop ({how}) lies on the wrong side of entry {i.price}")
        self.dist = abs(i.price - self.stop_price) / i.price
        self.step("stop", stop_price=self.stop_price, distance_pct=self.dist * 100, source=how)

    # -- steps 3-5 ---------------------------------------------------------------------
    def planned_leverage(self) -> float:
        """Leverage the sizing and the margin caps start from (step 7 may only lower it)."""
        if not self.is_contract:
            return 1.0
        lp = self.p.leverage
        if lp.mode == "auto":
            cap = min(lp.max, self.m.max_leverage)
            if math.isinf(cap) and self.p.sizing.model in MARGIN_MODELS:
                raise InvalidInput("leverage.max", lp.max, "auto leverage with a margin-based "
                                   "model needs a finite leverage.max or market max")
            return cap
        wanted = self.i.leverage if self.i.leverage is not None else lp.value
        lev = wanted
        if lev > lp.max:
            lev = lp.max
            self.reason(Reason.CAPPED_LEVERAGE_POLICY)
        if lev > self.m.max_leverage:
            lev = self.m.max_leverage
            self.reason(Reason.CAPPED_LEVERAGE_TIER)
        return lev

    def size(self, lev0: float) -> Reason | None:
        p, s, a, i = self.p, self.p.sizing, self.a, self.i
        model = s.model
        if model == "fixed_margin":
            base, unit = s.margin, "margin"
        elif model == "fixed_notional":
            base, unit = s.notional, "notional"
        elif model == "balance_fraction":
            base, unit = s.fraction, "fraction of " + s.balance
        elif model in ("risk", "kelly"):
            if self.dist is None:
                raise InvalidInput("stop", None, f"the {model} model needs a stop: give stop, "
                                   "stop_pct, atr or stop_roe")
            if model == "risk":
                base = s.risk
            else:
                stats = a.symbol_stats.get(i.symbol)
                w = stats.win_rate if stats is not None and stats.trades >= s.min_trades else s.win_rate
                full = kelly_fraction(w, s.payoff)
                self.step("kelly", win_rate=w, payoff=s.payoff, full_kelly=full,
                          fraction=s.kelly_fraction)
                if full <= 0:
                    return Reason.NO_EDGE
                base = full * s.kelly_fraction
            unit = "risk fraction of equity"
        else:  # volatility_target
            if i.atr is None:
                raise InvalidInput("atr", None, "the volatility_target model needs atr")
            base, unit = s.target_volatility, "target volatility fraction"
        self.step("base_size", model=model, base=base, unit=unit)

        value, mults = adjust(base, p.adjust, i, a)
        self.trace.append(TraceStep("adjust", tuple(mults)))

        fee_in_risk = self.fee_to_stop()
        if model in ("fixed_margin", "balance_fraction"):
            balance = a.equity if s.balance == "equity" else a.available_margin
            margin = value if model == "fixed_margin" else balance * value
            self.anchor, self.budget_money, self.budget_kind = "margin", margin, "margin"
            self.notional = margin * lev0
            self.step("notional", margin=margin, leverage=lev0, notional=self.notional,
                      note="margin x leverage")
        elif model == "fixed_notional":
            self.notional = value
            self.budget_money, self.budget_kind = value, "notional"
            self.step("notional", notional=self.notional)
        elif model in ("risk", "kelly"):
            assert self.dist is not None
            risk_money = a.equity * value
            self.notional = notional_from_risk(risk_money, self.dist, fee_in_risk)
            self.budget_money, self.budget_kind = risk_money, "risk"
            self.step("notional", risk_money=risk_money, stop_distance_pct=self.dist * 100,
                      fee_round_trip_pct=fee_in_risk * 100, notional=self.notional,
                      note="risk / (stop distance + entry fee + exit fee at the stop)")
        else:
            assert i.atr is not None
            vol = i.atr / i.price
            self.notional = notional_for_volatility(a.equity, value, vol)
            self.budget_money, self.budget_kind = self.notional, "notional"
            self.step("notional", asset_volatility_pct=vol * 100, notional=self.notional,
                      note="equity x target / (ATR / price)")
        return None

    # -- step 6 ------------------------------------------------------------------------
    def limits(self, lev0: float) -> None:
        self.caps = notional_caps(self.i, self.a, self.p.limits)
        if self.is_contract and self.m.tiers:
            top = self.m.tiers[-1].max_notional
            if math.isfinite(top):
                unit = self.i.price if self.coin_tiers else 1.0
                self.caps.append((top * unit * (1 - 1e-12), Reason.CAPPED_TIER_NOTIONAL,
                                  "top of the exchange's leverage tiers"))
        before = self.notional
        for cap, code, what in self.caps:
            if self.notional > cap:
                self.notional = max(cap, 0.0)
                self.reason(code)
                self.step("limit", bound=str(code), note=what, notional=self.notional)
        mcap, mcode = self.mb.cap(lev0, self.fee)
        if self.notional > mcap and mcode is not None:
            self.notional = mcap
            self.reason(mcode)
            self.step("limit", bound=str(mcode), leverage=lev0, notional=self.notional,
                      note=f"margin budget {self.mb.smallest:g} (per trade {self.mb.per_trade:g}, "
                           f"utilisation room {self.mb.utilisation_room:g}, "
                           f"available {self.mb.available:g})")
        self.step("limits", notional_before=before, notional=self.notional)

    def static_cap(self) -> float:
        return min((max(c, 0.0) for c, _, _ in self.caps), default=math.inf)

    # -- step 7 ------------------------------------------------------------------------
    def choose_leverage(self, lev0: float) -> Reason | None:
        if not self.is_contract:
            self.leverage = 1.0
            self.step("leverage", leverage=1.0, note="spot: no leverage")
            return None
        lp, guard = self.p.leverage, self.p.liquidation.guard
        margin_kept = self.notional / lev0 if self.anchor == "margin" else 0.0
        lev = self._pick_tier(lev0, margin_kept) if self.m.tiers else lev0
        guard_cap = math.inf  # auto leverage never climbs back above what the guard lowered
        for _ in range(_MAX_ROUNDS):
            if self.notional <= 0:
                break
            tier = self.tier_for(self.notional)
            if lp.mode == "auto":
                want = self._auto_leverage()
                lev = min(want, lp.max, guard_cap)
            if lev > tier.max_leverage:
                lev = tier.max_leverage
                self.reason(Reason.CAPPED_LEVERAGE_TIER)
                if self.anchor == "margin":
                    self.notional = min(self.notional, margin_kept * lev)
            self._fit_margin(lev, None)
            tier = self.tier_for(self.notional)
            if lev > tier.max_leverage:
                continue  # the cut moved no tier boundary the right way yet; look again
            # the liquidation guard
            if self.dist is not None and guard != "off" and not self.cross:
                need = self.guard_distance(self.dist)
                gtier = self.tier_at_adverse_move(self.notional, need)
                safe = liq.max_safe_leverage(self.i.is_long, self.m.inverse, need,
                                             gtier.maintenance_margin_rate,
                                             self._cum_quote(gtier), self.notional)
                if lp.integer and math.isfinite(safe):
                    safe = math.floor(safe + 1e-9)
                elif math.isfinite(safe):  # strictly beyond the guarded distance, not on it
                    safe *= 1 - 1e-9
                if lev > safe + 1e-12:
                    liq_now = self.liquidation_price(self.notional, self.notional / lev, tier)
                    if guard == "refuse" or safe < 1:
                        self.step("liquidation_guard", bound=str(Reason.STOP_BEYOND_LIQUIDATION),
                                  leverage=lev, liquidation_price=liq_now,
                                  stop_price=self.stop_price, safe_leverage=safe,
                                  required_distance_pct=need * 100,
                                  note="refused" if guard == "refuse" else "not even 1x is safe")
                        return Reason.STOP_BEYOND_LIQUIDATION
                    old = lev
                    lev = guard_cap = float(safe)
                    self.reason(Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION)
                    keep_margin = guard == "shrink" or self.anchor == "margin"
                    before = self.notional
                    if keep_margin:
                        kept = margin_kept if self.anchor == "margin" else self.notional / old
                        if lp.mode == "auto" and self.anchor != "margin":
                            # auto leverage was the lowest that fit the budget; its rounding up
                            # left slack, so keeping notional / old would be arbitrary: keep the
                            # budget (then _fit_margin leaves room for the fee)
                            kept = self.mb.smallest
                        self.notional = min(self.notional, kept * lev)
                    self._fit_margin(lev, Reason.SHRUNK_FOR_LIQUIDATION)
                    if self.notional < before * (1 - 1e-12):
                        self.reason(Reason.SHRUNK_FOR_LIQUIDATION)
                        if lp.mode == "fixed":
                            lev = guard_cap = self._take_back(
                                lev, old, before, kept if keep_margin else None, need)
                    self.step("liquidation_guard", bound=str(Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION),
                              leverage_before=old, liquidation_price_before=liq_now,
                              stop_price=self.stop_price, leverage=lev,
                              required_distance_pct=need * 100, notional_before=before,
                              notional=self.notional, mode=guard,
                              note="liquidation came before the stop")
                    continue  # the new notional may sit in another tier: check again
            if self.dist is not None and guard != "off" and self.cross:
                need = self.guard_distance(self.dist)
                gtier = self.tier_at_adverse_move(self.notional, need)
                cap = liq.max_safe_notional_cross(self.i.is_long, self.m.inverse, need,
                                                  gtier.maintenance_margin_rate,
                                                  self._cum_quote(gtier),
                                                  self._cross_collateral()) * (1 - 1e-9)
                if self.notional > cap * (1 + 1e-12):
                    if guard == "refuse" or cap <= 0:
                        self.step("liquidation_guard", bound=str(Reason.STOP_BEYOND_LIQUIDATION),
                                  notional=self.notional, safe_notional=cap,
                                  collateral=self._cross_collateral(),
                                  required_distance_pct=need * 100,
                                  note="cross margin: refused" if guard == "refuse"
                                  else "cross margin: the account cannot carry any position")
                        return Reason.STOP_BEYOND_LIQUIDATION
                    self.step("liquidation_guard", bound=str(Reason.SHRUNK_FOR_LIQUIDATION),
                              notional_before=self.notional, notional=cap, mode=guard,
                              note="cross margin: only a smaller position moves liquidation")
                    self.notional = cap
                    self.reason(Reason.SHRUNK_FOR_LIQUIDATION)
                    continue
            break
        else:  # no round settled: never accept a size the last round did not verify
            if self.dist is not None and guard != "off":
                self.step("liquidation_guard", bound=str(Reason.STOP_BEYOND_LIQUIDATION),
                          note=f"no safe size settled in {_MAX_ROUNDS} rounds")
                return Reason.STOP_BEYOND_LIQUIDATION
            lev = min(lev, self.tier_for(self.notional).max_leverage)
        self.leverage = lev
        self.tier = self.tier_for(self.notional)
        self.step("leverage", leverage=lev, mode=lp.mode, tier=self.tier.tier,
                  tier_max_leverage=self.tier.max_leverage,
                  maintenance_margin_rate=self.tier.maintenance_margin_rate,
                  notional=self.notional, margin=self.notional / lev)
        return None

    def _pick_tier(self, lev0: float, margin_kept: float) -> float:
        """The tier giving the largest notional, and its leverage.

        Above a tier boundary the max leverage drops, so the margin budget may cut the notional
        below what stays under the boundary at the lower tier's higher leverage (150x up to 300k,
        100x above: 2,000 margin buys 299,999 at 150x but only 200,000 at 100x). Taking the best
        tier keeps the size monotone: a bigger account never gets a smaller trade.
        """
        unit = self.i.price if self.coin_tiers else 1.0
        best_lev, top_bound = lev0, False
        current = self.tier_for(self.notional)
        if lev0 <= current.max_leverage:
            return lev0  # the tier allows the wanted leverage: nothing to choose
        best_n = -1.0
        for t in self.m.tiers:
            lev = min(lev0, t.max_leverage)
            n = self.notional if self.anchor == "notional" else min(self.notional, margin_kept * lev)
            top = t.max_notional * unit * (1 - 1e-12)
            n = min(n, self.mb.cap(lev, self.fee)[0], top)
            if n >= t.min_notional * unit and n > best_n:
                best_n, best_lev, top_bound = n, lev, n == top
        if best_n < 0:
            return lev0
        if best_n < self.notional * (1 - 1e-9) and top_bound:
            self.reason(Reason.CAPPED_TIER_NOTIONAL)
            self.step("tier", bound=str(Reason.CAPPED_TIER_NOTIONAL), notional_before=self.notional,
                      notional=best_n, leverage=best_lev,
                      note="kept under a tier ceiling: the next tier's lower max leverage would "
                           "need more margin than the budget has")
        self.notional = best_n
        if best_lev < lev0:
            self.reason(Reason.CAPPED_LEVERAGE_TIER)
        return best_lev

    def _take_back(self, lev: float, wanted: float, before: float, kept: float | None,
                   need: float) -> float:
        """The highest leverage in ``[lev, wanted]`` that stays safe for the notional it gets.

        The guard lowered the leverage to what is safe for the notional ``before``; the margin
        budget (or the kept margin) then cut the notional, and a smaller notional is safe at a
        slightly higher leverage (``cum / N`` grows). Safety falls and the notional rises with
        the leverage, so the answer is found by bisection; without this, asking for more
        leverage could end with a smaller trade than asking for less.
        """
        def notional_at(x: float) -> float:
            n = before if kept is None else min(before, kept * x)
            return min(n, self.mb.cap(x, self.fee)[0])

        def safe_at(x: float) -> bool:
            n = notional_at(x)
            if n <= 0 or x > self.tier_for(n).max_leverage:
                return False
            t = self.tier_at_adverse_move(n, need)
            top = liq.max_safe_leverage(self.i.is_long, self.m.inverse, need,
                                        t.maintenance_margin_rate, self._cum_quote(t), n)
            return x <= (top + 1e-9 if self.p.leverage.integer else top * (1 - 1e-9))

        if self.p.leverage.integer:
            lo, hi = int(lev), math.floor(wanted + 1e-9)  # lo is safe: its notional only fell
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if safe_at(mid) else (lo, mid - 1)
            best = float(lo)
        else:
            best, top = lev, wanted
            for _ in range(40):
                x = (best + top) / 2
                best, top = (x, top) if safe_at(x) else (best, x)
        if best > lev:
            self.notional = notional_at(best)
        return best

    def _auto_leverage(self) -> float:
        """Lowest leverage whose margin plus entry fee fits the margin budget."""
        budget = self.mb.smallest
        if self.anchor == "margin":  # a margin model's margin is its budget, not all available
            budget = min(budget, self.budget_money)
        room = budget - self.notional * self.fee
        if room <= 0:  # not even the fee fits: the highest leverage, and step 7 shrinks
            top = min(self.p.leverage.max, self.tier_for(self.notional).max_leverage)
            if math.isinf(top):  # never a position without margin
                raise InvalidInput("leverage.max", self.p.leverage.max,
                                   "auto leverage needs a finite leverage.max or market max leverage "
                                   "when the margin budget cannot pay the entry fee")
            return top
        lev = max(1.0, self.notional / room)
        return float(math.ceil(lev - 1e-9)) if self.p.leverage.integer else lev

    def _fit_margin(self, lev: float, code: Reason | None) -> None:
        cap, which = self.mb.cap(lev, self.fee)
        if self.notional > cap:
            self.notional = cap
            self.reason(code or which or Reason.CAPPED_MARGIN)

    def _cross_collateral(self) -> float:
        a = self.a
        upnl = sum(p.unrealised_pnl for p in a.positions)
        wallet = a.wallet_balance if a.wallet_balance is not None else a.equity - upnl
        return wallet - sum(p.maintenance_margin for p in a.positions) + upnl

    # -- step 8 ------------------------------------------------------------------------
    def exchange_rules(self) -> tuple[int, Reason | None]:
        m, unit = self.m, self.unit_value()
        step = m.amount_step
        qty = self.notional / unit
        lots = floor_lots(qty, step)
        if lots > 0 and m.tiers and self.leverage > self.tier_for(lots * step * unit).max_leverage:
            lots -= 1  # the float nudge in floor_lots must not carry a size over a tier ceiling
        max_amount, max_source = m.max_amount, m.max_amount_source
        min_amount = m.min_amount
        if self.p.execution.order_type == "market":
            if m.market_max_amount < max_amount:
                max_amount, max_source = m.market_max_amount, m.market_max_source
            min_amount = max(min_amount, m.market_min_amount)
        if lots * step > max_amount:
            lots = floor_lots(max_amount, step)
            self.reason(Reason.ABOVE_MAX_AMOUNT)
        if lots * step * unit > m.max_cost:
            lots = floor_lots(m.max_cost / unit, step)
            self.reason(Reason.ABOVE_MAX_AMOUNT)
        if lots > 0 and lots * step < qty * (1 - 1e-12):
            self.reason(Reason.ROUNDED_TO_STEP)
        min_cost, cost_src = self._min_cost()
        lim = self.p.limits
        short: list[Reason] = []
        need = 1
        if lots * step < min_amount * (1 - 1e-12) or lots == 0:
            short.append(Reason.BELOW_MIN_AMOUNT if min_amount > step * (1 + 1e-9)
                         else Reason.ZERO_SIZE)
            need = max(need, ceil_lots(min_amount, step))
        if min_cost > 0 and lots * step * unit < min_cost * (1 - 1e-12):
            short.append(Reason.BELOW_MIN_COST)
            need = max(need, ceil_lots(min_cost / unit, step))
        if lim.min_notional > 0 and lots * step * unit < lim.min_notional * (1 - 1e-12):
            short.append(Reason.BELOW_MIN_NOTIONAL)
            need = max(need, ceil_lots(lim.min_notional / unit, step))
        self.step("exchange_rules", quantity=qty, lot_step=step, lots=lots,
                  amount=format_amount(lots, m.amount_step_decimal), min_amount=min_amount,
                  min_cost=min_cost, min_cost_source=cost_src, max_amount=max_amount,
                  max_amount_source=max_source)
        if not short:
            return lots, None
        if self.p.execution.below_minimum == "raise":
            ok, why = self._can_raise(need)
            if ok and (need * step > max_amount * (1 + 1e-12) or need * step * unit > m.max_cost):
                ok, why = False, "the exchange's maximum amount or cost would be broken"
            self.step("raise_to_minimum", lots=need, ok=ok, note=why)
            if ok:
                self.reason(Reason.RAISED_TO_MINIMUM)
                return need, None
        if self.notional <= 0 or (lots == 0 and self.mb.available <= 0):
            return 0, Reason.INSUFFICIENT_MARGIN if self.mb.available <= 0 else short[0]
        for code in short[1:]:
            self.reason(code)
        return lots, short[0]

    def _min_cost(self) -> tuple[float, str]:
        lim, sym = self.p.limits, self.i.symbol
        best, src = self.m.min_cost, "market"
        policy_min = lim.min_cost.get(sym, lim.default_min_cost)
        if policy_min > best:
            best, src = policy_min, "policy"
        learned = self.a.min_cost.get(sym, 0.0)
        if learned > best:
            best, src = learned, "learned from an exchange rejection"
        return best, src

    def _can_raise(self, lots: int) -> tuple[bool, str]:
        unit, step = self.unit_value(), self.m.amount_step
        n = lots * step * unit
        if n > self.static_cap() * (1 + 1e-9):
            return False, "a notional cap would be broken"
        lev = self.leverage
        tier = self.tier_for(n)
        if self.is_contract and lev > tier.max_leverage:
            return False, "the tier's max leverage would be broken"
        cap, _ = self.mb.cap(lev, self.fee)
        if n > cap * (1 + 1e-9):
            return False, "margin plus fee would not fit the margin budget"
        tol = 1 + self.p.execution.raise_tolerance
        if self.budget_kind == "risk":
            assert self.dist is not None
            if risk_of_notional(n, self.dist, self.fee_to_stop()) > self.budget_money * tol * (1 + 1e-9):
                return False, "risk would exceed the budget beyond the raise tolerance"
        elif self.budget_kind == "margin":
            if n / lev > self.budget_money * tol * (1 + 1e-9):
                return False, "margin would exceed the model's margin beyond the raise tolerance"
        elif n > self.budget_money * tol * (1 + 1e-9):
            return False, "notional would exceed the model's beyond the raise tolerance"
        if self.is_contract and self.dist is not None and self.p.liquidation.guard != "off":
            need = self.guard_distance(self.dist)
            tier = self.tier_at_adverse_move(n, need)
            if self.cross:
                safe_n = liq.max_safe_notional_cross(
                    self.i.is_long, self.m.inverse, need, tier.maintenance_margin_rate,
                    self._cum_quote(tier), self._cross_collateral())
                if n > safe_n:
                    return False, "liquidation would come before the stop"
            elif lev > liq.max_safe_leverage(self.i.is_long, self.m.inverse, need,
                                             tier.maintenance_margin_rate, self._cum_quote(tier),
                                             n) + 1e-9:
                return False, "liquidation would come before the stop"
        return True, "risk and every limit hold"

    # -- step 9 ------------------------------------------------------------------------
    def finish(self, lots: int, skip: Reason | None) -> Decision:
        i, m = self.i, self.m
        if skip is not None:
            self.reason(skip)
            lots = 0
        notional = lots * m.amount_step * self.unit_value()
        lev = self.leverage if self.is_contract else 1.0
        margin = notional / lev if notional else 0.0
        fees = notional * self.fee_rt
        tier = self.tier_for(notional) if (self.is_contract and notional > 0) else self.tier
        liq_price = liq_dist = mmr = None
        if self.is_contract and tier is not None and notional > 0:
            mmr = tier.maintenance_margin_rate
            collateral = self._cross_collateral() if self.cross else margin
            lp = liq_price = self.liquidation_price(notional, collateral, tier)
            liq_dist = liq.liquidation_distance(i.is_long, i.price, lp) * 100
            if self.dist is not None and liq_dist <= self.dist * 100:  # the guard was off
                self.step("liquidation_guard", liquidation_price=lp, stop_price=self.stop_price,
                          note="guard off: liquidation comes before the stop, which never fires")
        if self.dist is not None:
            risk, basis = risk_of_notional(notional, self.dist, self.fee_to_stop()), "stop"
        elif self.is_contract and not self.cross:
            risk, basis = margin + fees, "liquidation"
        else:
            risk, basis = notional + fees, "notional"
        status = Status.SKIPPED if skip is not None else Status.ACCEPTED
        amount = format_amount(lots, m.amount_step_decimal)
        self.step("decision", status=str(status), amount=amount, notional=notional, margin=margin,
                  leverage=lev, risk=risk, fees=fees, liquidation_price=liq_price)
        return Decision(
            status=status, reasons=tuple(self.reasons), symbol=i.symbol, side=i.side,
            amount=amount, lots=lots, notional=notional, margin=margin, leverage=lev, risk=risk,
            risk_pct=risk / self.a.equity * 100, risk_basis=basis, entry_price=i.price,
            stop_price=self.stop_price,
            stop_distance_pct=self.dist * 100 if self.dist is not None else None,
            fees=fees, liquidation_price=liq_price, liquidation_distance_pct=liq_dist,
            maintenance_margin_rate=mmr, tier=tier.tier if (tier and self.is_contract and m.tiers) else None,
            margin_mode="cross" if self.cross else ("isolated" if self.is_contract else "spot"),
            policy=self.p.name, trace=tuple(self.trace),
        )


def decide(intent: Intent, account: Account, market: MarketRules, policy: Policy) -> Decision:
    """Size one trade. Raises :class:`~sizeguard.errors.InvalidInput` for bad input; every
    business "no" is a skipped Decision with reason codes."""
    validate(intent, account, market)
    run = _Run(intent, account, market, policy)
    run.step("validate", symbol=intent.symbol, side=intent.side, price=intent.price,
             equity=account.equity, available=account.available_margin, taker_fee=run.fee,
             market_notes=market.notes)
    lev0 = run.planned_leverage()
    run.resolve_stop(lev0)

    code, note = gate(intent, account, policy.limits)
    run.step("gates", bound=str(code) if code else None, note=note)
    if code is not None:
        return run.finish(0, code)
    if run.mb.available <= 0:
        return run.finish(0, Reason.INSUFFICIENT_MARGIN)

    no_size = run.size(lev0)
    if no_size is not None:
        return run.finish(0, no_size)
    run.limits(lev0)
    if run.notional <= 0:
        return run.finish(0, run.reasons[-1] if run.reasons else Reason.ZERO_SIZE)
    code = run.choose_leverage(lev0)
    if code is not None:
        return run.finish(0, code)
    lots, code = run.exchange_rules()
    return run.finish(lots, code)
