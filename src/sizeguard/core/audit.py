"""Audit one policy against a set of markets: find trouble before money does.

The audit judges with the pipeline itself. Per market, a *reference intent* (a full-size
trade at the audited equity on a fresh account, neutral multipliers, the typical stop; a long
and, on contracts, a short) runs through :func:`~sizeguard.core.decide.decide`, and the
decision's reason codes become findings (:data:`RULE_REASONS` says which code belongs to which
rule). Nothing is sized, capped, levered or guarded here a second time. What stays in the audit
is what one decision cannot see: rules between policy keys (an inverted clamp) and rules about
several slots at once (max positions x slot margin against equity, the gross cap).

A *slot* is one full-size position at the audited equity: the reference intent decided on a
neutral reference market (the policy's leverage and taker fee, no exchange rules) with the
per-symbol and gross caps left to their own rules. Severities: ``error`` (the policy cannot do
what it says: orders would fail, margin is over-committed, the stop never fires), ``warning``
(a limit silently rewrites the sizing rule on every trade), ``info`` (a check could not run, or
a fact worth knowing).

Prices: a market's amount limits count base units, which need a price. ``prices`` may give one
per symbol; without it a market is judged at price 1 with its amount limits in base units set
aside (its limits in quote, its tiers in quote and a fixed-face contract's amounts still act),
and a coin-margined tier table, which counts coin, is set aside too (noted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import REASON_TEXT, Decision, Reason
from sizeguard.core.intent import LONG, SHORT, Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import MARGIN_MODELS, Policy
from sizeguard.core.tiers import find_tier
from sizeguard.core.tolerances import SAFETY_SLACK
from sizeguard.errors import InvalidInput

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)

# Rule codes, in the order they run, with what each checks.
RULES: dict[str, str] = {
    "CLAMP_INVERTED": "risk clamp: adjust.min is not above adjust.max",
    "MIN_NOTIONAL_ABOVE_MAX": "limits.min_notional is not above limits.max_notional",
    "LEVERAGE_ABOVE_POLICY_MAX": "a fixed leverage.value is not above leverage.max",
    "SLOTS_OVER_EQUITY": "max positions x slot margin fits in equity x margin utilisation",
    "SYMBOL_CAP_BELOW_SLOT": "the per-symbol cap is not below the slot notional",
    "GROSS_BELOW_SLOTS": "gross exposure holds max positions x slot notional",
    "LEVERAGE_ABOVE_TIER": "the policy's leverage is allowed by the market's tier at the slot notional",
    "STOP_BEYOND_LIQUIDATION": "the typical stop lies inside the liquidation distance (with buffer)",
    "MAX_NOTIONAL_BELOW_MIN_COST": "limits.max_notional reaches the market's minimum order value",
    "BELOW_MIN_COST": "the slot notional reaches the minimum order value (market or policy)",
    "NO_EDGE": "the Kelly model sees an edge at its win rate and payoff",
    "BELOW_MIN_AMOUNT": "the slot amount reaches the market's minimum amount and one lot",
    "ABOVE_EXCHANGE_MAX": "the slot fits the exchange's maximum amount and cost per order",
    "EXPOSURE_CAP_BELOW_SLOT": "the net and group exposure caps hold one full slot",
}

# The reason codes of a slot decision that each rule answers for: a rule that passes means the
# slot decision carries none of its codes (RAISED_TO_MINIMUM belongs to the minimum it met).
RULE_REASONS: dict[str, tuple[Reason, ...]] = {
    "LEVERAGE_ABOVE_POLICY_MAX": (Reason.CAPPED_LEVERAGE_POLICY,),
    "SLOTS_OVER_EQUITY": (Reason.CAPPED_MARGIN_UTILISATION, Reason.CAPPED_AVAILABLE),
    "SYMBOL_CAP_BELOW_SLOT": (Reason.CAPPED_SYMBOL,),
    "GROSS_BELOW_SLOTS": (Reason.CAPPED_GROSS_EXPOSURE,),
    "LEVERAGE_ABOVE_TIER": (Reason.CAPPED_LEVERAGE_TIER, Reason.CAPPED_TIER_NOTIONAL),
    "STOP_BEYOND_LIQUIDATION": (Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION,
                                Reason.SHRUNK_FOR_LIQUIDATION, Reason.STOP_BEYOND_LIQUIDATION),
    "BELOW_MIN_COST": (Reason.BELOW_MIN_COST, Reason.BELOW_MIN_NOTIONAL),
    "NO_EDGE": (Reason.NO_EDGE,),
    "BELOW_MIN_AMOUNT": (Reason.BELOW_MIN_AMOUNT, Reason.ZERO_SIZE),
    "ABOVE_EXCHANGE_MAX": (Reason.ABOVE_MAX_AMOUNT,),
    "EXPOSURE_CAP_BELOW_SLOT": (Reason.CAPPED_NET_EXPOSURE, Reason.CAPPED_GROUP_EXPOSURE),
}

_CAP_KEYS = {
    Reason.CAPPED_MAX_NOTIONAL: "limits.max_notional",
    Reason.CAPPED_EQUITY_LEVERAGE: "limits.max_equity_leverage",
    Reason.CAPPED_MARGIN_UTILISATION: "limits.max_margin_utilisation",
    Reason.CAPPED_AVAILABLE: "available margin",
}
_REFERENCE = "SLOT/USD:USD"  # the neutral market a slot is sized on


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str
    message: str
    keys: tuple[str, ...] = ()
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One full-size position at ``equity`` (``None`` where it cannot be known)."""

    equity: float
    leverage: float  # the policy's leverage (fixed value, or max in auto mode), before market caps
    stop_distance: float | None  # fraction of entry
    stop_source: str
    raw_notional: float | None  # what the sizing model asks for
    notional: float | None  # after the notional and margin caps of the policy
    margin: float | None  # notional / leverage
    binding: tuple[str, ...] = ()  # the policy keys that cut raw_notional to notional


@dataclass(frozen=True, slots=True)
class AuditReport:
    policy: str
    equity: float
    volatility_pct: float | None
    slot: Slot
    findings: tuple[Finding, ...]
    checked: tuple[str, ...]  # rule codes that ran
    markets: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    # the slot decisions the findings came from, by symbol (a long, and a short on contracts)
    decisions: Mapping[str, tuple[Decision, ...]] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == WARNING)

    @property
    def passed(self) -> tuple[str, ...]:
        failed = {f.code for f in self.findings if f.severity != INFO}
        return tuple(c for c in self.checked if c not in failed)


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "unlimited"
    return f"{x:,.2f}".rstrip("0").rstrip(".") if abs(x) < 100 else f"{x:,.0f}"


def policy_leverage(policy: Policy) -> float:
    lev = policy.leverage
    return lev.max if lev.mode == "auto" else min(lev.value, lev.max)


def typical_stop(policy: Policy, volatility_pct: float | None) -> tuple[float | None, str]:
    """The stop distance a typical trade has: the ATR multiple x the volatility given, else the
    policy's default stop, else none."""
    if volatility_pct is not None and volatility_pct > 0:
        return (policy.stop.atr_mult * volatility_pct / 100.0,
                f"stop.atr_mult {policy.stop.atr_mult:g} x volatility {volatility_pct:g}%")
    if policy.stop.default_pct > 0:
        return policy.stop.default_pct / 100.0, f"stop.default_pct {policy.stop.default_pct:g}%"
    return None, "no typical stop (give a volatility, or set stop.default_pct)"


# -- the reference intent and its decisions ----------------------------------------------

def reference_intent(policy: Policy, symbol: str, side: str, price: float,
                     volatility_pct: float | None) -> Intent:
    """The full-size trade the audit asks about: the typical stop (ATR = the volatility given,
    at the policy's multiple; else the policy's default stop), no confidence, regime or
    leverage of its own."""
    if volatility_pct is not None and volatility_pct > 0:
        return Intent(symbol, side, price, atr=price * volatility_pct / 100.0,
                      atr_mult=policy.stop.atr_mult)
    return Intent(symbol, side, price)


def _judged(m: MarketRules, price: float | None) -> tuple[MarketRules, float, str | None]:
    """The market as the audit can judge it, the price to judge it at, and a note."""
    if price is not None:
        return m, price, None
    fixed_face = m.inverse and not m.amount_in_base
    note = None
    if not fixed_face:  # amounts in base units mean nothing without a price: set them aside
        m = replace(m, amount_step=1e-12, min_amount=0.0, max_amount=math.inf,
                    market_min_amount=0.0, market_max_amount=math.inf)
    if m.tiers and m.tiers_in_coin:
        m = replace(m, tiers=())
        note = (f"{m.symbol}: tiers of a coin-margined market are in coin; tier rules need a "
                "price and were judged by the market's max leverage alone")
    return m, 1.0, note


def slot_decisions(policy: Policy, market: MarketRules, equity: float,
                   volatility_pct: float | None = None, price: float | None = None
                   ) -> tuple[Decision, ...]:
    """The reference intent decided on ``market`` on a fresh account: a long, and a short on
    contracts. Raises :class:`InvalidInput` when the policy cannot size it (no stop for a risk
    model, no volatility for the volatility model, an unbounded auto leverage)."""
    judged, at, _ = _judged(market, price)
    sides = (LONG, SHORT) if market.is_contract else (LONG,)
    account = Account(equity=equity)
    return tuple(decide(reference_intent(policy, market.symbol, side, at, volatility_pct),
                        account, judged, policy) for side in sides)


def _values(d: Decision, step: str, which: int = -1) -> dict[str, Any]:
    found = [s for s in d.trace if s.step == step]
    if not found:
        return {}
    s = found[which]
    out = dict(s.values)
    out["bound"], out["note"] = s.bound, s.note
    return out


def _slot_notional(d: Decision) -> float:
    """The notional the decision carried into the exchange rules (before lot rounding)."""
    last = 0.0
    for s in d.trace:
        if s.step == "exchange_rules":
            break
        for k, v in s.values:
            if k == "notional":
                last = v
    return last


# -- the slot ----------------------------------------------------------------------------

def slot(policy: Policy, equity: float, volatility_pct: float | None = None,
         leverage: float | None = None, taker: float | None = None) -> Slot:
    """The full-size position at ``equity``, decided on a neutral market; ``leverage`` (a
    market's cap) and ``taker`` (its fee) default to the policy's."""
    lev = policy_leverage(policy) if leverage is None else leverage
    dist, how = typical_stop(policy, volatility_pct)
    lim = policy.limits
    ref = MarketRules(symbol=_REFERENCE, kind="swap", linear=True, inverse=False,
                      contract_size=1.0, amount_step=1e-12, price_tick=1e-12,
                      max_leverage=lev if lev >= 1 else 1.0,
                      taker=policy.execution.taker if taker is None else taker)
    # the per-symbol and gross caps are rules of their own; the slot is judged before the guard
    own = replace(policy, limits=replace(lim, max_symbol_notional=math.inf,
                                         max_gross_exposure=math.inf),
                  liquidation=replace(policy.liquidation, guard="off"))
    try:
        d = decide(reference_intent(policy, _REFERENCE, LONG, 1.0, volatility_pct),
                   Account(equity=equity), ref, own)
    except InvalidInput:
        return Slot(equity, lev, dist, how, None, None, None)
    if Reason.NO_EDGE in d.reasons:
        return Slot(equity, lev, dist, how, 0.0, 0.0, 0.0 if math.isfinite(lev) else None)
    raw = _values(d, "notional").get("notional", 0.0)
    notional = _values(d, "limits").get("notional", raw)
    binding: tuple[str, ...] = ()
    bound = _values(d, "limit").get("bound")
    if notional < raw and bound is not None:
        code = Reason(bound)
        if code is Reason.CAPPED_MARGIN:
            key = ("limits.max_margin" if lim.max_margin <= lim.max_margin_pct * equity
                   else "limits.max_margin_pct")
        else:
            key = _CAP_KEYS.get(code, str(code))
        binding = (key,)
    margin = notional / lev if math.isfinite(lev) and lev > 0 else None
    return Slot(equity, lev, dist, how, raw, notional, margin, binding)


# -- rules between keys and between slots (what one decision cannot see) -----------------

def _policy_rules(p: Policy, sl: Slot, out: list[Finding]) -> None:
    a, lim, lev = p.adjust, p.limits, p.leverage
    if a.min > 0 and a.max > 0 and a.min > a.max:
        out.append(Finding("CLAMP_INVERTED", ERROR,
                           f"adjust.min {a.min:g} is above adjust.max {a.max:g}: the clamp cannot "
                           "hold both; every size would be forced to one of them",
                           ("adjust.min", "adjust.max")))
    if lim.min_notional > lim.max_notional:
        out.append(Finding("MIN_NOTIONAL_ABOVE_MAX", ERROR,
                           f"limits.min_notional {_fmt(lim.min_notional)} is above "
                           f"limits.max_notional {_fmt(lim.max_notional)}: no trade can pass both",
                           ("limits.min_notional", "limits.max_notional")))
    if lev.mode == "fixed" and lev.value > lev.max:
        out.append(Finding("LEVERAGE_ABOVE_POLICY_MAX", ERROR,
                           f"leverage.value {lev.value:g}x is above leverage.max {lev.max:g}x",
                           ("leverage.value", "leverage.max")))
    _slots_over_equity(p, sl, out)
    if sl.notional is not None and sl.notional > lim.max_symbol_notional:
        out.append(_symbol_cap_finding(p, sl.equity, sl.notional, sl.margin, sl.leverage))
    n = lim.max_positions
    if sl.notional is not None and n > 0:
        per = min(sl.notional, lim.max_symbol_notional)
        if n * per > lim.max_gross_exposure * (1 + SAFETY_SLACK):
            fit = lim.max_gross_exposure / per
            out.append(Finding(
                "GROSS_BELOW_SLOTS", WARNING,
                f"{n} positions x {_fmt(per)} = {_fmt(n * per)} exceed limits.max_gross_exposure "
                f"{_fmt(lim.max_gross_exposure)}: only {fit:.2f} full slots fit; the last "
                "positions are cut or refused", ("limits.max_gross_exposure", "limits.max_positions")))


def _slots_over_equity(p: Policy, sl: Slot, out: list[Finding]) -> None:
    lim, n = p.limits, p.limits.max_positions
    if sl.margin is None:
        return
    if n <= 0:
        out.append(Finding("SLOTS_OVER_EQUITY", INFO,
                           "limits.max_positions is 0 (unlimited): the margin of all slots "
                           "together cannot be checked", ("limits.max_positions",)))
        return
    room = lim.max_margin_utilisation * sl.equity
    total = n * sl.margin
    if total <= room * (1 + SAFETY_SLACK):
        return
    if p.sizing.model == "balance_fraction" and p.sizing.balance == "available":
        f = p.sizing.fraction
        last = f * (1 - f) ** (n - 1)
        out.append(Finding(
            "SLOTS_OVER_EQUITY", WARNING,
            f"{n} slots x {f:.0%} of the available balance add up to {n * f:.0%}: "
            f"the slots shrink as margin is used; the last gets {last:.1%} of equity, "
            f"not {f:.0%}", ("limits.max_positions", "sizing.fraction")))
        return
    out.append(Finding(
        "SLOTS_OVER_EQUITY", ERROR,
        f"{n} slots x margin {_fmt(sl.margin)} = {_fmt(total)} is "
        f"{total / sl.equity:.0%} of equity {_fmt(sl.equity)} (allowed "
        f"{lim.max_margin_utilisation:.0%}): the later positions cannot be funded",
        ("limits.max_positions", "sizing." + (
            "fraction" if p.sizing.model == "balance_fraction" else "margin"))))


def _symbol_cap_finding(p: Policy, equity: float, notional: float, margin: float | None,
                        lev: float) -> Finding:
    cap = p.limits.max_symbol_notional
    return Finding(
        "SYMBOL_CAP_BELOW_SLOT", WARNING,
        f"the slot notional at equity {_fmt(equity)} is {_fmt(notional)}"
        + (f" (margin {_fmt(margin)} x {lev:g}x)" if margin is not None else "")
        + f", but limits.max_symbol_notional is {_fmt(cap)}: every full-size "
        f"trade is cut to {_fmt(cap)} ({cap / notional:.0%} of the slot)",
        ("limits.max_symbol_notional",))


# -- per market: the slot decisions' reasons become findings ------------------------------

def _min_cost(m: MarketRules, policy: Policy) -> tuple[float, str]:
    lim = policy.limits
    own = lim.min_cost.get(m.symbol, lim.default_min_cost)
    if own > m.min_cost:
        return own, "the policy's limits.min_cost"
    return m.min_cost, "the market"


def _market_rules(p: Policy, sl: Slot, m: MarketRules, ds: tuple[Decision, ...],
                  out: list[Finding]) -> None:
    """Findings for one market from its slot decisions (one finding per rule and market)."""
    min_cost, src = _min_cost(m, p)
    if min_cost > 0 and p.limits.max_notional < min_cost:
        out.append(Finding(
            "MAX_NOTIONAL_BELOW_MIN_COST", ERROR,
            f"{m.symbol}: limits.max_notional {_fmt(p.limits.max_notional)} is below the minimum "
            f"order value {_fmt(min_cost)} ({src}): no order on this market can succeed",
            ("limits.max_notional",), m.symbol))
    if not ds:
        return
    stop = _stop_finding(p, sl, m, ds)
    if stop is not None:
        out.append(stop)
    for rule, codes in RULE_REASONS.items():
        if rule == "STOP_BEYOND_LIQUIDATION":
            continue
        hit = next((d for d in ds if any(c in d.reasons for c in codes)), None)
        if hit is not None:
            out.append(_finding(rule, p, sl, m, hit))
    raised = next((d for d in ds if Reason.RAISED_TO_MINIMUM in d.reasons), None)
    if raised is not None:
        out.append(_raised_finding(p, m, raised))


def _finding(rule: str, p: Policy, sl: Slot, m: MarketRules, d: Decision) -> Finding:
    sym = m.symbol
    if rule == "LEVERAGE_ABOVE_TIER":
        return _tier_finding(p, m, d)
    if rule == "BELOW_MIN_COST":
        return _min_cost_finding(p, sl, m, d)
    if rule == "SYMBOL_CAP_BELOW_SLOT":
        n = _values(d, "notional").get("notional", d.notional)
        f = _symbol_cap_finding(p, sl.equity, n, None, d.leverage)
        return replace(f, message=f"{sym}: {f.message}", symbol=sym)
    codes = [str(c) for c in RULE_REASONS[rule] if c in d.reasons]
    what = "; ".join(f"{c} ({REASON_TEXT[Reason(c)]})" for c in codes)
    keys = {
        "LEVERAGE_ABOVE_POLICY_MAX": ("leverage.value", "leverage.max"),
        "SLOTS_OVER_EQUITY": ("limits.max_margin_utilisation",),
        "GROSS_BELOW_SLOTS": ("limits.max_gross_exposure",),
        "NO_EDGE": ("sizing.win_rate", "sizing.payoff"),
        "BELOW_MIN_AMOUNT": ("sizing.model", "execution.below_minimum"),
        "ABOVE_EXCHANGE_MAX": ("limits.max_notional",),
        "EXPOSURE_CAP_BELOW_SLOT": ("limits.max_net_exposure", "limits.groups"),
    }[rule]
    severity = ERROR if not d.accepted else WARNING
    return Finding(rule, severity, f"{sym}: the slot {d.side} {_outcome(d)}: {what}", keys, sym)


def _outcome(d: Decision) -> str:
    return (f"is sized {_fmt(d.notional)} at {d.leverage:g}x" if d.accepted
            else "is refused")


def _tier_finding(p: Policy, m: MarketRules, d: Decision) -> Finding:
    """The tier at the slot notional does not allow the leverage: the decision either cut the
    leverage, or kept it and cut the size under a tier ceiling (or the table's top)."""
    lev_p = policy_leverage(p)
    keys = ("leverage.value" if p.leverage.mode == "fixed" else "leverage.max",)
    ceiling = _values(d, "tier")
    if ceiling:
        before, kept = ceiling["notional_before"], ceiling["notional"]
        over = find_tier(m.tiers, m.tier_units(before, d.entry_price)) or m.tiers[-1]
        return Finding(
            "LEVERAGE_ABOVE_TIER", WARNING,
            f"{m.symbol}: the policy asks {lev_p:g}x but at the slot notional {_fmt(before)} "
            f"{_where(m, over.tier)} allows at most {over.max_leverage:g}x: every full-size trade "
            f"is kept under the lower tier's ceiling, {_fmt(kept)} at {ceiling['leverage']:g}x",
            keys, m.symbol)
    lv = _values(d, "leverage")
    if Reason.CAPPED_LEVERAGE_TIER not in d.reasons:  # only the top of the table binds
        top = next(v for v in (_values(d, "limit", k) for k in range(_count(d, "limit")))
                   if v["bound"] == str(Reason.CAPPED_TIER_NOTIONAL))
        return Finding(
            "LEVERAGE_ABOVE_TIER", WARNING,
            f"{m.symbol}: the slot notional is above the top of the market's leverage tiers: "
            f"every full-size trade is cut to {_fmt(top['notional'])}", keys, m.symbol)
    notional = lv.get("notional", _slot_notional(d))
    allowed = lv.get("tier_max_leverage", d.leverage)
    return Finding(
        "LEVERAGE_ABOVE_TIER", WARNING,
        f"{m.symbol}: the policy asks {lev_p:g}x but at the slot notional {_fmt(notional)} "
        f"{_where(m, lv.get('tier', 0))} allows at most {allowed:g}x: leverage is cut on every trade"
        + (" and a margin-based size shrinks with it" if p.sizing.model in MARGIN_MODELS else ""),
        keys, m.symbol)


def _where(m: MarketRules, tier_no: int) -> str:
    tier = next((t for t in m.tiers if t.tier == tier_no), None)
    if tier is None:
        return "the market"
    return f"tier {tier.tier} ({_fmt(tier.min_notional)}-{_fmt(tier.max_notional)})"


def _count(d: Decision, step: str) -> int:
    return sum(1 for s in d.trace if s.step == step)


def _stop_finding(p: Policy, sl: Slot, m: MarketRules, ds: tuple[Decision, ...]) -> Finding | None:
    """STOP_BEYOND_LIQUIDATION from the side whose liquidation came closest: the guard's
    reasons, or (guard off) an accepted decision liquidated inside the buffered stop."""
    worst: tuple[float, Finding] | None = None
    for d in ds:
        found = _stop_finding_of(p, sl, m, d)
        if found is not None and (worst is None or found[0] < worst[0]):
            worst = found
    return None if worst is None else worst[1]


def _stop_finding_of(p: Policy, sl: Slot, m: MarketRules, d: Decision
                     ) -> tuple[float, Finding] | None:
    if d.stop_distance_pct is None:
        return None
    dist = d.stop_distance_pct / 100
    buffer = p.liquidation.buffer
    need = dist * (1 + buffer)
    g = _values(d, "liquidation_guard", 0)
    sev = WARNING
    if g and "leverage_before" in g:  # isolated: the guard lowered the leverage
        lev, lp, safe = g["leverage_before"], g["liquidation_price_before"], g["leverage"]
        shrinks = Reason.SHRUNK_FOR_LIQUIDATION in d.reasons
        tail = (f"The guard lowers leverage to {safe:g}x"
                + (" and shrinks the size" if shrinks else "") + " on every such trade.")
    elif g and "safe_leverage" in g:  # isolated: refused
        lev, lp, sev = g["leverage"], g["liquidation_price"], ERROR
        tail = "Every such trade is refused (STOP_BEYOND_LIQUIDATION)."
    elif g.get("bound") is not None or any(
            c in d.reasons for c in RULE_REASONS["STOP_BEYOND_LIQUIDATION"]):
        # cross margin (only the size moves liquidation), or no safe size settled
        sev = ERROR if Reason.STOP_BEYOND_LIQUIDATION in d.reasons else WARNING
        msg = (f"{m.symbol}: the typical stop ({sl.stop_source}) is {dist:.2%}; liquidation must "
               f"lie {need:.2%} away: {g.get('note') or 'the guard acted'}"
               + (" (the size is cut)" if Reason.SHRUNK_FOR_LIQUIDATION in d.reasons else ""))
        return 0.0, Finding("STOP_BEYOND_LIQUIDATION", sev, msg,
                            ("leverage.margin_mode", "liquidation.guard"), m.symbol)
    elif d.liquidation_distance_pct is not None and d.liquidation_distance_pct / 100 < need:
        lev, lp, sev = d.leverage, d.liquidation_price, ERROR  # the guard is off
        tail = "The guard is off: the stop would never fire."
    else:
        return None
    liq_d = abs(lp - d.entry_price) / d.entry_price if lp is not None and math.isfinite(lp) else math.inf
    inside = "beyond" if liq_d <= dist else "within the buffer of"
    keys = ("leverage.value" if p.leverage.mode == "fixed" else "leverage.max",
            "stop.atr_mult" if sl.stop_source.startswith("stop.atr_mult") else "stop.default_pct",
            "liquidation.guard")
    text = (f"{m.symbol}: at {lev:g}x liquidation lies {liq_d:.2%} from entry; the typical stop "
            f"({sl.stop_source}) is {dist:.2%}, {inside} it (needed: {need:.2%} with the "
            f"{buffer:.0%} buffer). ")
    return liq_d, Finding("STOP_BEYOND_LIQUIDATION", sev, text + tail, keys, m.symbol)


def _min_cost_finding(p: Policy, sl: Slot, m: MarketRules, d: Decision) -> Finding:
    ex = _values(d, "exchange_rules")
    min_cost = float(ex.get("min_cost", 0.0))
    src = {"policy": "the policy's limits.min_cost", "market": "the market"}.get(
        str(ex.get("min_cost_source")), str(ex.get("min_cost_source")))
    if Reason.BELOW_MIN_COST not in d.reasons:  # the policy's own minimum per trade binds
        min_cost, src = p.limits.min_notional, "the policy's limits.min_notional"
    notional = _slot_notional(d)
    equity = sl.equity
    fixed_size = p.sizing.model in ("fixed_margin", "fixed_notional")
    what = (f"{m.symbol}: the slot notional {_fmt(notional)}"
            + ("" if fixed_size else f" at equity {_fmt(equity)}")
            + f" is below the minimum order value {_fmt(min_cost)} ({src})")
    keys = ("sizing." + {"fixed_margin": "margin", "fixed_notional": "notional"}.get(
        p.sizing.model, "model"), "execution.below_minimum")
    if fixed_size or notional <= 0:
        return Finding("BELOW_MIN_COST", ERROR,
                       what + ": every order on this market is refused by the exchange rules "
                       "(the $2-order failure)", keys, m.symbol)
    need = equity * min_cost / notional
    return Finding("BELOW_MIN_COST", WARNING,
                   what + f": trades skip until equity reaches about {_fmt(need)}", keys, m.symbol)


def _raised_finding(p: Policy, m: MarketRules, d: Decision) -> Finding:
    """A raise to the minimum: a warning under the minimum it met (cost, else amount)."""
    ex = _values(d, "exchange_rules")
    min_cost = float(ex.get("min_cost", 0.0))
    notional = _slot_notional(d)
    keys = ("sizing." + {"fixed_margin": "margin", "fixed_notional": "notional"}.get(
        p.sizing.model, "model"), "execution.below_minimum")
    tol = f"(within execution.raise_tolerance {p.execution.raise_tolerance:.0%})"
    if min_cost > 0 and notional < min_cost:
        return Finding("BELOW_MIN_COST", WARNING,
                       f"{m.symbol}: the slot notional {_fmt(notional)} is below the minimum order "
                       f"value {_fmt(min_cost)}: every order is raised to the minimum {tol}",
                       keys, m.symbol)
    return Finding("BELOW_MIN_AMOUNT", WARNING,
                   f"{m.symbol}: the slot amount is below the market's minimum: every order is "
                   f"raised to it {tol}", keys, m.symbol)


def relevant_markets(policy: Policy, markets: Iterable[MarketRules]) -> list[MarketRules]:
    """The markets a policy is meant for: contracts when its leverage is above 1, else all."""
    ms = list(markets)
    if policy_leverage(policy) > 1:
        contracts = [m for m in ms if m.is_contract]
        return contracts or ms
    return ms


def audit(policy: Policy, markets: Iterable[MarketRules], equity: float = 10_000.0,
          volatility_pct: float | None = None, prices: Mapping[str, float] | None = None
          ) -> AuditReport:
    """Every finding for ``policy`` at ``equity`` on ``markets``, most severe first."""
    sl = slot(policy, equity, volatility_pct)
    findings: list[Finding] = []
    notes: list[str] = []
    _policy_rules(policy, sl, findings)
    if sl.notional is None:
        notes.append(f"the slot notional of model '{policy.sizing.model}' is unknown: "
                     f"{sl.stop_source}; slot rules were not checked")
    decisions: dict[str, tuple[Decision, ...]] = {}
    count = 0
    for m in markets:
        count += 1
        price = prices.get(m.symbol) if prices else None
        note = _judged(m, price)[2]
        if note:
            notes.append(note)
        try:
            ds = slot_decisions(policy, m, equity, volatility_pct, price)
        except InvalidInput as exc:
            if sl.notional is not None:  # else the slot note says it already
                notes.append(f"{m.symbol}: the reference trade cannot be sized ({exc}); "
                             "its market rules were not checked")
            ds = ()
        decisions[m.symbol] = ds
        _market_rules(policy, sl, m, ds, findings)
    findings = _one_per_policy_rule(findings)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    codes = list(RULES)
    skipped: set[str] = set()
    if sl.notional is None:
        skipped |= {"SLOTS_OVER_EQUITY", "SYMBOL_CAP_BELOW_SLOT", "GROSS_BELOW_SLOTS",
                    "LEVERAGE_ABOVE_TIER", "BELOW_MIN_COST", "NO_EDGE", "BELOW_MIN_AMOUNT",
                    "ABOVE_EXCHANGE_MAX", "EXPOSURE_CAP_BELOW_SLOT"}
    if policy.limits.max_positions <= 0:
        skipped |= {"SLOTS_OVER_EQUITY", "GROSS_BELOW_SLOTS"}
    if sl.stop_distance is None:
        skipped.add("STOP_BEYOND_LIQUIDATION")
        notes.append(sl.stop_source + ": the stop-versus-liquidation rule was not checked")
    findings.sort(key=lambda f: (order[f.severity], codes.index(f.code), f.symbol or ""))
    return AuditReport(policy.name, equity, volatility_pct, sl, tuple(findings),
                       tuple(c for c in codes if c not in skipped),
                       count, tuple(dict.fromkeys(notes)), decisions)


def _one_per_policy_rule(findings: list[Finding]) -> list[Finding]:
    """A policy-level finding (no symbol) makes the same rule's per-market echoes redundant."""
    policy_level = {f.code for f in findings if f.symbol is None and f.severity != INFO}
    return [f for f in findings if f.symbol is None or f.code not in policy_level]
