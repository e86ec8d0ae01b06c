"""The policy: plain frozen data, built and validated from a mapping (a parsed TOML file).

Every key is checked: an unknown key names its closest known sibling, a bad value names the
dotted key, the value and the rule it breaks. Reading files and layering overrides live in
:mod:`sizeguard.config`; this module only turns a mapping into a :class:`Policy`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, get_type_hints

from sizeguard.errors import PolicyError

INF = math.inf
Tiers = tuple[tuple[float, float], ...]

MODELS = ("fixed_margin", "fixed_notional", "balance_fraction", "risk", "volatility_target",
          "kelly")
MARGIN_MODELS = ("fixed_margin", "balance_fraction")
# Models whose base is money (quote), not a fraction: the adjust clamp does not apply to them.
MONEY_MODELS = ("fixed_margin", "fixed_notional")


@dataclass(frozen=True, slots=True)
class Sizing:
    """How the base size is found (DESIGN step 3)."""

    model: str = "risk"
    margin: float = 0.0  # fixed_margin: collateral per trade, quote
    notional: float = 0.0  # fixed_notional: exposure per trade, quote
    fraction: float = 0.0  # balance_fraction: margin = balance x fraction (1 / slots)
    balance: str = "available"  # balance_fraction: "equity" or "available"
    risk: float = 0.01  # risk: fraction of equity lost when the stop fills
    target_volatility: float = 0.0  # volatility_target: notional = equity x target / (atr/price)
    kelly_fraction: float = 0.5  # kelly: share of the full Kelly fraction to risk
    win_rate: float = 0.5  # kelly prior, replaced by the symbol's record after min_trades
    payoff: float = 1.5  # kelly: average win / average loss
    min_trades: int = 20
    fees_in_risk: bool = True  # count taker entry + exit fees inside the risk


@dataclass(frozen=True, slots=True)
class Stop:
    atr_mult: float = 1.5  # stop distance = atr_mult x ATR when only --atr is given
    default_pct: float = 0.0  # used when the intent gives no stop (0 = none)


@dataclass(frozen=True, slots=True)
class Adjust:
    """Multipliers (DESIGN step 4). Tier lists are (threshold, multiplier) pairs.

    ``min``/``max`` clamp the adjusted base when it is a fraction: the risk fraction (risk,
    kelly), the balance fraction (balance_fraction), the target volatility; 0 means no bound.
    A model sizing money (fixed_margin, fixed_notional) is never clamped by them (a preset's
    risk clamp of [0.005, 0.015] would turn 80 USDT of margin into 0.015): money is bounded by
    ``limits`` (max_margin, min_notional, max_notional), and the trace says the clamp was left
    out.
    """

    min: float = 0.0
    max: float = 0.0
    confidence: Tiers = ()  # the highest threshold <= confidence applies
    regime: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    volatility: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    win_rate: Tiers = ()  # the lowest threshold > the symbol's win rate applies
    win_rate_min_trades: int = 10
    losing_streak: Tiers = ()  # the highest threshold <= the streak applies
    drawdown: Tiers = ()  # the highest threshold <= drawdown (a fraction) applies


@dataclass(frozen=True, slots=True)
class Group:
    """A named group of symbols with caps of its own (``[limits.groups.NAME]``): the count of
    its symbols with a position open or reserved, and their gross notional."""

    symbols: tuple[str, ...] = ()
    max_positions: int = 0  # 0 = unlimited
    max_exposure: float = INF  # gross notional of the group's positions after this trade


@dataclass(frozen=True, slots=True)
class Limits:
    """Gates and caps (DESIGN steps 2 and 6). ``inf`` or 0 counts disable a limit."""

    min_notional: float = 0.0
    max_notional: float = INF
    max_symbol_notional: float = INF
    max_gross_exposure: float = INF
    max_positions: int = 0  # 0 = unlimited
    max_margin: float = INF  # per trade, quote
    max_margin_pct: float = INF  # per trade, fraction of equity
    max_margin_utilisation: float = 1.0  # all margin in use / equity after this trade
    max_equity_leverage: float = INF  # notional <= equity x this
    daily_loss: float = 0.0  # halt when today's realised loss reaches this fraction (0 = off)
    max_drawdown: float = 0.0  # halt when drawdown from peak reaches this fraction (0 = off)
    allow_add: bool = False  # may a second entry add to an open position on the symbol
    cooldown: float = 0.0  # seconds after the last trade on a symbol
    default_min_cost: float = 0.0  # a per-pair minimum cost of the policy's own
    min_cost: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    max_long_positions: int = 0  # symbols held long (open or reserved); 0 = unlimited
    max_short_positions: int = 0  # symbols held short; 0 = unlimited
    max_net_exposure: float = INF  # |long - short| notional after this trade
    groups: Mapping[str, Group] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Leverage:
    mode: str = "fixed"  # "fixed" or "auto"
    value: float = 1.0  # fixed leverage
    max: float = INF  # never above this, whatever the tier allows
    integer: bool = True  # exchanges set whole leverage; safe leverage is floored
    default_mmr: float = 0.005  # maintenance margin rate when a market has no tiers
    margin_mode: str = "isolated"  # "isolated" or "cross"


@dataclass(frozen=True, slots=True)
class Liquidation:
    guard: str = "lower_leverage"  # lower_leverage | shrink | refuse | off
    buffer: float = 0.25  # liquidation at least (1 + buffer) x the stop distance from entry


@dataclass(frozen=True, slots=True)
class Execution:
    below_minimum: str = "skip"  # "skip" or "raise" (only when risk and every limit hold)
    raise_tolerance: float = 0.0  # a raise may exceed the risk budget by this fraction
    order_type: str = "market"  # market orders also obey limits.market on Binance
    taker: float = 0.0005  # fee when the market gives none
    maker: float = 0.0002


@dataclass(frozen=True, slots=True)
class Policy:
    name: str = "custom"
    description: str = ""
    sizing: Sizing = field(default_factory=Sizing)
    stop: Stop = field(default_factory=Stop)
    adjust: Adjust = field(default_factory=Adjust)
    limits: Limits = field(default_factory=Limits)
    leverage: Leverage = field(default_factory=Leverage)
    liquidation: Liquidation = field(default_factory=Liquidation)
    execution: Execution = field(default_factory=Execution)


SECTIONS: dict[str, type] = {
    "sizing": Sizing, "stop": Stop, "adjust": Adjust, "limits": Limits, "leverage": Leverage,
    "liquidation": Liquidation, "execution": Execution,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "sizing.model": MODELS,
    "sizing.balance": ("equity", "available"),
    "leverage.mode": ("fixed", "auto"),
    "leverage.margin_mode": ("isolated", "cross"),
    "liquidation.guard": ("lower_leverage", "shrink", "refuse", "off"),
    "execution.below_minimum": ("skip", "raise"),
    "execution.order_type": ("market", "limit"),
}

# Bounds as (low, high, low inclusive); every numeric key not listed must be >= 0.
FRACTIONS = {
    "sizing.fraction", "sizing.risk", "sizing.win_rate", "sizing.kelly_fraction", "adjust.min",
    "limits.daily_loss", "limits.max_drawdown", "execution.taker", "execution.maker",
    "leverage.default_mmr",
}
AT_LEAST_ONE = {"leverage.value", "leverage.max"}
POSITIVE = {"sizing.payoff", "limits.max_margin_utilisation"}


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(sorted(options))}"


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "none"):
            return INF
        raise PolicyError(key, value, "must be a number")
    number = float(value)
    if math.isnan(number):
        raise PolicyError(key, value, "must be a number, not NaN")
    if key in AT_LEAST_ONE and number < 1:
        raise PolicyError(key, value, "must be >= 1")
    if key == "leverage.value" and math.isinf(number):
        raise PolicyError(key, value, "must be a finite leverage (use leverage.mode = 'auto')")
    if key in POSITIVE and number <= 0:
        raise PolicyError(key, value, "must be > 0")
    if number < 0:
        raise PolicyError(key, value, "must be >= 0")
    if key in FRACTIONS and number >= 1 and key != "sizing.fraction":
        raise PolicyError(key, value, "is a fraction: must be below 1 (0.01 = 1%)")
    if key == "sizing.fraction" and number > 1:
        raise PolicyError(key, value, "is a fraction of the balance: must be <= 1")
    return number


def _tiers(key: str, value: Any) -> Tiers:
    if not isinstance(value, list | tuple):
        raise PolicyError(key, value, "must be a list of [threshold, multiplier] pairs")
    out: list[tuple[float, float]] = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise PolicyError(f"{key}[{i}]", pair, "must be a [threshold, multiplier] pair")
        out.append((_number(f"{key}[{i}]", pair[0]), _number(f"{key}[{i}]", pair[1])))
    return tuple(out)


def _mapping(key: str, value: Any) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise PolicyError(key, value, "must be a table of name = number")
    return MappingProxyType({str(k): _number(f"{key}.{k}", v) for k, v in value.items()})


def _groups(key: str, value: Any) -> Mapping[str, Group]:
    """``[limits.groups.NAME]`` tables, each checked key by key like a section."""
    if not isinstance(value, Mapping):
        raise PolicyError(key, value, "must be a table of named groups")
    out: dict[str, Group] = {}
    for name, table in value.items():
        where = f"{key}.{name}"
        if isinstance(table, Group):
            out[str(name)] = table
            continue
        if not isinstance(table, Mapping):
            raise PolicyError(where, table, "must be a table with symbols, max_positions, "
                              "max_exposure")
        data = dict(table)
        symbols = data.pop("symbols", None)
        if not isinstance(symbols, list | tuple) or not symbols or not all(
                isinstance(x, str) and x for x in symbols):
            raise PolicyError(f"{where}.symbols", symbols, "must be a non-empty list of symbols")
        group = _section(where, Group, data)
        out[str(name)] = replace(group, symbols=tuple(symbols))
    return MappingProxyType(out)


def _convert(key: str, hint: Any, value: Any) -> Any:
    text = str(hint)
    if key == "limits.groups":
        return _groups(key, value)
    if hint is bool:
        if not isinstance(value, bool):
            raise PolicyError(key, value, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise PolicyError(key, value, "must be a whole number")
        if value < 0:
            raise PolicyError(key, value, "must be >= 0")
        return int(value)
    if hint is float:
        return _number(key, value)
    if hint is str:
        if not isinstance(value, str):
            raise PolicyError(key, value, "must be a string")
        choices = CHOICES.get(key)
        if choices and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PolicyError(key, value, f"must be one of {', '.join(choices)}{hint}")
        return value
    if "Mapping" in text:
        return _mapping(key, value)
    if "tuple" in text:
        return _tiers(key, value)
    raise PolicyError(key, value, f"unsupported setting type {text}")  # pragma: no cover


def _section(name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise PolicyError(name, data, "must be a table")
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise PolicyError(f"{name}.{key}", value, "unknown key" + _suggest(key, known))
        kwargs[key] = _convert(f"{name}.{key}", hints[key], value)
    return cls(**kwargs)


def policy_from_dict(data: Mapping[str, Any], *, cross_check: bool = True) -> Policy:
    """Build and validate a :class:`Policy` from a mapping shaped like a policy TOML file.

    ``cross_check=False`` checks every key and value but not the rules between keys (min above
    max...), so an audit (:mod:`sizeguard.core.audit`) can report all of them at once."""
    known = ["name", "description", *SECTIONS]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("name", "description"):
            if not isinstance(value, str):
                raise PolicyError(key, value, "must be a string")
            kwargs[key] = value
        elif key in SECTIONS:
            kwargs[key] = _section(key, SECTIONS[key], value)
        else:
            raise PolicyError(key, value, "unknown section" + _suggest(key, known))
    policy = Policy(**kwargs)
    if cross_check:
        _cross_check(policy)
    return policy


def _cross_check(p: Policy) -> None:
    a, lim, s = p.adjust, p.limits, p.sizing
    if a.min and a.max and a.min > a.max:
        raise PolicyError("adjust.min", a.min, f"is above adjust.max={a.max}")
    if lim.min_notional > lim.max_notional:
        raise PolicyError("limits.min_notional", lim.min_notional,
                          f"is above limits.max_notional={lim.max_notional}")
    if p.leverage.value > p.leverage.max and p.leverage.mode == "fixed":
        raise PolicyError("leverage.value", p.leverage.value,
                          f"is above leverage.max={p.leverage.max}")
    needs = {"fixed_margin": ("margin", s.margin), "fixed_notional": ("notional", s.notional),
             "balance_fraction": ("fraction", s.fraction),
             "volatility_target": ("target_volatility", s.target_volatility)}
    if s.model in needs and needs[s.model][1] <= 0:
        key = needs[s.model][0]
        raise PolicyError(f"sizing.{key}", needs[s.model][1],
                          f"must be > 0 for sizing.model='{s.model}'")
    if s.model == "risk" and s.risk <= 0:
        raise PolicyError("sizing.risk", s.risk, "must be > 0 for sizing.model='risk'")


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The policy as plain data (TOML/JSON friendly; inf as the string 'inf')."""
    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isinf(value):
            return "inf"
        if isinstance(value, Group):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    out: dict[str, Any] = {"name": policy.name, "description": policy.description}
    for name in SECTIONS:
        section = getattr(policy, name)
        out[name] = {f.name: plain(getattr(section, f.name)) for f in fields(section)}
    return out


def defaults_of(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def with_changes(policy: Policy, section: str, **changes: Any) -> Policy:
    """A copy of ``policy`` with some keys of one section replaced (validated)."""
    data = policy_to_dict(policy)
    data[section].update(changes)
    return policy_from_dict(data)


__all__ = ["Policy", "policy_from_dict", "policy_to_dict", "replace", "with_changes"]
