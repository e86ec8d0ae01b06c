"""Audit one policy against a set of markets: find trouble before money does.

Pure functions of a :class:`Policy`, :class:`MarketRules` and a few assumptions (the equity to
audit at, a typical volatility). The arithmetic is the decision pipeline's own: sizing kernels
from :mod:`sizeguard.core.models`, tiers from :mod:`sizeguard.core.tiers`, liquidation from
:mod:`sizeguard.core.liquidation`; nothing is re-derived here.

A *slot* is one full-size position at the audited equity with neutral multipliers (no
confidence, regime or record adjustments; the clamp applies). Severities: ``error`` (the policy
cannot do what it says: orders would fail, margin is over-committed, the stop never fires),
``warning`` (a limit silently rewrites the sizing rule on every trade), ``info`` (a check could
not run, or a fact worth knowing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sizeguard.core import liquidation as liq
from sizeguard.core.account import Account
from sizeguard.core.adjust import adjust
from sizeguard.core.decision import Reason
from sizeguard.core.intent import Intent
from sizeguard.core.limits import margin_budget, notional_caps
from sizeguard.core.market import MarketRules
from sizeguard.core.models import (
    kelly_fraction,
    notional_for_volatility,
    notional_from_margin,
    notional_from_risk,
)
from sizeguard.core.policy import MARGIN_MODELS, Policy
from sizeguard.core.tiers import Tier, find_tier

ERROR, WARNING, INFO = "error", "warning", "info"
_CAP_KEYS = {
    Reason.CAPPED_MAX_NOTIONAL: "limits.max_notional",
    Reason.CAPPED_EQUITY_LEVERAGE: "limits.max_equity_leverage",
    Reason.CAPPED_MARGIN_UTILISATION: "limits.max_margin_utilisation",
    Reason.CAPPED_AVAILABLE: "available margin",
}
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
    "BELOW_MIN_COST": "the slot notional reaches the market's minimum order value",
}


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


_NEUTRAL = Intent("audit", "long", 1.0)  # no confidence, regime or volatility bucket


def _adjusted(base: float, policy: Policy, equity: float) -> float:
    """The base after the pipeline's own adjustments with neutral inputs: only the clamp acts."""
    return adjust(base, policy.adjust, _NEUTRAL, Account(equity=equity))[0]


def slot(policy: Policy, equity: float, volatility_pct: float | None = None,
         leverage: float | None = None, taker: float | None = None) -> Slot:
    """The full-size position at ``equity``; ``leverage`` (a market's cap) and ``taker`` (its fee)
    default to the policy's."""
    s, lim = policy.sizing, policy.limits
    lev = policy_leverage(policy) if leverage is None else leverage
    fee = policy.execution.taker if taker is None else taker
    dist, how = typical_stop(policy, volatility_pct)
    fee_rt = 2.0 * fee if s.fees_in_risk else 0.0
    raw: float | None = None
    if s.model == "fixed_margin":
        raw = notional_from_margin(_adjusted(s.margin, policy, equity), lev) if math.isfinite(lev) else None
    elif s.model == "balance_fraction":
        raw = (notional_from_margin(equity * _adjusted(s.fraction, policy, equity), lev)
               if math.isfinite(lev) else None)
    elif s.model == "fixed_notional":
        raw = _adjusted(s.notional, policy, equity)
    elif s.model in ("risk", "kelly") and dist is not None:
        base = s.risk if s.model == "risk" else max(
            kelly_fraction(s.win_rate, s.payoff) * s.kelly_fraction, 0.0)
        raw = notional_from_risk(equity * _adjusted(base, policy, equity), dist, fee_rt)
    elif s.model == "volatility_target" and volatility_pct:
        raw = notional_for_volatility(equity, _adjusted(s.target_volatility, policy, equity),
                                      volatility_pct / 100.0)
    if raw is None:
        return Slot(equity, lev, dist, how, None, None, None)
    # the pipeline's own caps on a fresh account; symbol and gross caps are rules of their own
    account = Account(equity=equity)
    caps = [(cap, _CAP_KEYS[code]) for cap, code, _ in notional_caps(_NEUTRAL, account, lim)
            if code in _CAP_KEYS]
    if math.isfinite(lev):
        cap, code = margin_budget(account, lim).cap(lev, fee)
        if code is Reason.CAPPED_MARGIN:
            key = ("limits.max_margin" if lim.max_margin <= lim.max_margin_pct * equity
                   else "limits.max_margin_pct")
        else:
            key = _CAP_KEYS.get(code, "available margin") if code is not None else ""
        caps.append((cap, key))
    notional, binding = raw, []
    for cap, key in caps:
        if cap < notional:
            notional = cap
            binding = [key]
        elif cap == notional and binding:
            binding.append(key)
    margin = notional / lev if math.isfinite(lev) and lev > 0 else None
    return Slot(equity, lev, dist, how, raw, notional, margin, tuple(binding))


def auto_leverage(policy: Policy, notional: float, equity: float, cap: float,
                  fee: float = 0.0) -> float:
    """The leverage auto mode picks for ``notional`` on a fresh account: the lowest whose margin
    plus entry fee fits the smallest margin budget (as the pipeline's auto mode)."""
    room = margin_budget(Account(equity=equity), policy.limits).smallest - notional * fee
    if room <= 0:
        return cap
    lev = max(1.0, notional / room)
    if policy.leverage.integer:
        lev = float(math.ceil(lev - 1e-9))
    return min(lev, cap)


def _tier_at(m: MarketRules, notional: float, policy: Policy) -> Tier:
    t = find_tier(m.tiers, notional) if m.tiers else None
    if t is not None:
        return t
    if m.tiers:
        return m.tiers[-1]
    return Tier(0, 0.0, math.inf, policy.leverage.default_mmr, m.max_leverage, 0.0)


def _min_cost(m: MarketRules, policy: Policy) -> tuple[float, str]:
    lim = policy.limits
    own = lim.min_cost.get(m.symbol, lim.default_min_cost)
    if own > m.min_cost:
        return own, "the policy's limits.min_cost"
    return m.min_cost, "the market"


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

    n = lim.max_positions
    if sl.margin is not None:
        if n <= 0:
            out.append(Finding("SLOTS_OVER_EQUITY", INFO,
                               "limits.max_positions is 0 (unlimited): the margin of all slots "
                               "together cannot be checked", ("limits.max_positions",)))
        else:
            room = lim.max_margin_utilisation * sl.equity
            total = n * sl.margin
            available_basis = p.sizing.model == "balance_fraction" and p.sizing.balance == "available"
            if total > room * (1 + 1e-9):
                if available_basis:
                    f = p.sizing.fraction
                    last = f * (1 - f) ** (n - 1)
                    out.append(Finding(
                        "SLOTS_OVER_EQUITY", WARNING,
                        f"{n} slots x {f:.0%} of the available balance add up to {n * f:.0%}: "
                        f"the slots shrink as margin is used; the last gets {last:.1%} of equity, "
                        f"not {f:.0%}", ("limits.max_positions", "sizing.fraction")))
                else:
                    out.append(Finding(
                        "SLOTS_OVER_EQUITY", ERROR,
                        f"{n} slots x margin {_fmt(sl.margin)} = {_fmt(total)} is "
                        f"{total / sl.equity:.0%} of equity {_fmt(sl.equity)} (allowed "
                        f"{lim.max_margin_utilisation:.0%}): the later positions cannot be funded",
                        ("limits.max_positions", "sizing." + (
                            "fraction" if p.sizing.model == "balance_fraction" else "margin"))))

    if sl.notional is not None and sl.notional > lim.max_symbol_notional:
        out.append(Finding(
            "SYMBOL_CAP_BELOW_SLOT", WARNING,
            f"the slot notional at equity {_fmt(sl.equity)} is {_fmt(sl.notional)}"
            + (f" (margin {_fmt(sl.margin)} x {sl.leverage:g}x)" if sl.margin is not None else "")
            + f", but limits.max_symbol_notional is {_fmt(lim.max_symbol_notional)}: every full-size "
            f"trade is cut to {_fmt(lim.max_symbol_notional)} "
            f"({lim.max_symbol_notional / sl.notional:.0%} of the slot)",
            ("limits.max_symbol_notional",)))
    if sl.notional is not None and n > 0:
        per = min(sl.notional, lim.max_symbol_notional)
        if n * per > lim.max_gross_exposure * (1 + 1e-9):
            fit = lim.max_gross_exposure / per
            out.append(Finding(
                "GROSS_BELOW_SLOTS", WARNING,
                f"{n} positions x {_fmt(per)} = {_fmt(n * per)} exceed limits.max_gross_exposure "
                f"{_fmt(lim.max_gross_exposure)}: only {fit:.2f} full slots fit; the last "
                "positions are cut or refused", ("limits.max_gross_exposure", "limits.max_positions")))


def _market_rules(p: Policy, m: MarketRules, equity: float, volatility_pct: float | None,
                  out: list[Finding], notes: list[str]) -> None:
    lev_p = policy_leverage(p) if m.is_contract else 1.0
    lev_m = min(lev_p, m.max_leverage) if m.is_contract else 1.0
    sl = slot(p, equity, volatility_pct, lev_m, m.taker)
    if sl.notional is not None and sl.notional > p.limits.max_symbol_notional:
        # one position on one symbol: the per-symbol cap applies before tiers and minimums
        per = p.limits.max_symbol_notional
        sl = replace(sl, notional=per, margin=per / sl.leverage if sl.margin is not None else None)
    sym = m.symbol
    coin_tiers = m.tiers_in_coin and bool(m.tiers)

    fixed = p.leverage.mode == "fixed"
    if (fixed and m.is_contract and sl.notional is not None and math.isfinite(lev_p)
            and not coin_tiers):
        intended = min(slot(p, equity, volatility_pct, lev_p, m.taker).notional or sl.notional,
                       p.limits.max_symbol_notional)
        tier = _tier_at(m, intended, p)
        if lev_p > tier.max_leverage:
            where = (f"tier {tier.tier} ({_fmt(tier.min_notional)}-{_fmt(tier.max_notional)})"
                     if m.tiers else "the market")
            out.append(Finding(
                "LEVERAGE_ABOVE_TIER", WARNING,
                f"{sym}: the policy asks {lev_p:g}x but at the slot notional {_fmt(intended)} "
                f"{where} allows at most {tier.max_leverage:g}x: leverage is cut on every trade"
                + (" and a margin-based size shrinks with it" if p.sizing.model in MARGIN_MODELS
                   else ""), ("leverage.value" if p.leverage.mode == "fixed" else "leverage.max",),
                sym))
    elif coin_tiers:
        notes.append(f"{sym}: tiers of a coin-margined market are in coin; tier rules need a price "
                     "and were not checked")

    if m.is_contract and sl.stop_distance is not None and sl.notional and not coin_tiers:
        d = sl.stop_distance
        tier = _tier_at(m, sl.notional, p)
        lev = min(lev_m if fixed else auto_leverage(p, sl.notional, equity, lev_m,
                                                               m.taker if m.taker is not None
                                                               else p.execution.taker),
                  tier.max_leverage)
        need = d * (1 + p.liquidation.buffer)
        dists = [liq.liquidation_distance(
            is_long, 1.0, liq.isolated_liquidation_price(
                is_long, m.inverse, 1.0, lev, tier.maintenance_margin_rate,
                tier.maintenance_amount, sl.notional)) for is_long in (True, False)]
        liq_d = min(dists)
        if liq_d < need:
            safe = min(liq.max_safe_leverage(is_long, m.inverse, need, tier.maintenance_margin_rate,
                                             tier.maintenance_amount, sl.notional)
                       for is_long in (True, False))
            if p.leverage.integer and math.isfinite(safe):
                safe = math.floor(safe + 1e-9)
            guard = p.liquidation.guard
            inside = "beyond" if liq_d <= d else "within the buffer of"
            text = (f"{sym}: at {lev:g}x liquidation lies {liq_d:.2%} from entry; the typical stop "
                    f"({sl.stop_source}) is {d:.2%}, {inside} it (needed: {need:.2%} with the "
                    f"{p.liquidation.buffer:.0%} buffer). ")
            if guard == "off":
                sev, tail = ERROR, "The guard is off: the stop would never fire."
            elif guard == "refuse" or safe < 1:
                sev, tail = ERROR, "Every such trade is refused (STOP_BEYOND_LIQUIDATION)."
            elif guard == "shrink":
                sev, tail = WARNING, f"The guard lowers leverage to {safe:g}x and shrinks the size."
            else:
                sev, tail = WARNING, f"The guard lowers leverage to {safe:g}x on every such trade."
            out.append(Finding("STOP_BEYOND_LIQUIDATION", sev, text + tail,
                               ("leverage.value", "stop.atr_mult", "liquidation.guard"), sym))

    _min_cost_rules(p, m, sl, equity, out)


def _min_cost_rules(p: Policy, m: MarketRules, sl: Slot, equity: float, out: list[Finding]) -> None:
    sym = m.symbol
    min_cost, src = _min_cost(m, p)
    if min_cost <= 0:
        return
    lim = p.limits
    if lim.max_notional < min_cost:
        out.append(Finding(
            "MAX_NOTIONAL_BELOW_MIN_COST", ERROR,
            f"{sym}: limits.max_notional {_fmt(lim.max_notional)} is below the minimum order value "
            f"{_fmt(min_cost)} ({src}): no order on this market can succeed",
            ("limits.max_notional",), sym))
        return
    if sl.notional is None or sl.notional >= min_cost:
        return
    fixed_size = p.sizing.model in ("fixed_margin", "fixed_notional")
    raise_ok = (p.execution.below_minimum == "raise"
                and sl.notional * (1 + p.execution.raise_tolerance) >= min_cost)
    what = (f"{sym}: the slot notional {_fmt(sl.notional)}"
            + ("" if fixed_size else f" at equity {_fmt(equity)}")
            + f" is below the minimum order value {_fmt(min_cost)} ({src})")
    keys = ("sizing." + {"fixed_margin": "margin", "fixed_notional": "notional"}.get(
        p.sizing.model, "model"), "execution.below_minimum")
    if raise_ok:
        out.append(Finding("BELOW_MIN_COST", WARNING,
                           what + ": every order is raised to the minimum (within "
                           f"execution.raise_tolerance {p.execution.raise_tolerance:.0%})", keys, sym))
    elif fixed_size:
        out.append(Finding("BELOW_MIN_COST", ERROR,
                           what + ": every order on this market is refused by the exchange rules "
                           "(the $2-order failure)", keys, sym))
    else:
        need = equity * min_cost / sl.notional
        out.append(Finding("BELOW_MIN_COST", WARNING,
                           what + f": trades skip until equity reaches about {_fmt(need)}", keys, sym))


def relevant_markets(policy: Policy, markets: Iterable[MarketRules]) -> list[MarketRules]:
    """The markets a policy is meant for: contracts when its leverage is above 1, else all."""
    ms = list(markets)
    if policy_leverage(policy) > 1:
        contracts = [m for m in ms if m.is_contract]
        return contracts or ms
    return ms


def audit(policy: Policy, markets: Iterable[MarketRules], equity: float = 10_000.0,
          volatility_pct: float | None = None) -> AuditReport:
    """Every finding for ``policy`` at ``equity`` on ``markets``, most severe first."""
    sl = slot(policy, equity, volatility_pct)
    findings: list[Finding] = []
    notes: list[str] = []
    _policy_rules(policy, sl, findings)
    if sl.notional is None:
        notes.append(f"the slot notional of model '{policy.sizing.model}' is unknown: "
                     f"{sl.stop_source}; slot rules were not checked")
    count = 0
    for m in markets:
        count += 1
        _market_rules(policy, m, equity, volatility_pct, findings, notes)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    codes = list(RULES)
    skipped: set[str] = set()
    if sl.notional is None:
        skipped |= {"SLOTS_OVER_EQUITY", "SYMBOL_CAP_BELOW_SLOT", "GROSS_BELOW_SLOTS",
                    "LEVERAGE_ABOVE_TIER", "BELOW_MIN_COST"}
    if policy.limits.max_positions <= 0:
        skipped |= {"SLOTS_OVER_EQUITY", "GROSS_BELOW_SLOTS"}
    if sl.stop_distance is None:
        skipped.add("STOP_BEYOND_LIQUIDATION")
        notes.append(sl.stop_source + ": the stop-versus-liquidation rule was not checked")
    findings.sort(key=lambda f: (order[f.severity], codes.index(f.code), f.symbol or ""))
    return AuditReport(policy.name, equity, volatility_pct, sl, tuple(findings),
                       tuple(c for c in codes if c not in skipped),
                       count, tuple(dict.fromkeys(notes)))
