"""Seed-compatible environment names: each mapped once, here, with its meaning and unit.

The bots sizeguard replaces read their limits from environment variables with names of their
own. sizeguard reads the same names (so a bot's existing ``.env`` keeps working) and turns each
into policy keys through exactly one row of :data:`ALIASES`. Explicit ``SIZEGUARD_*`` names
always win over these aliases; ``SIZEGUARD_SEED_ALIASES=off`` ignores them altogether.

Units: the seeds wrote fractions even where the name says PCT or PERCENT (``0.01`` = 1%);
sizeguard reads a fraction too, and also accepts an explicit percent sign (``1%`` = 0.01). A
bare value of 1 or more for a fraction is refused by the policy's validation, never divided by
100 behind your back.

Confidence multipliers: ``RM_HIGH_CONF_MULT`` and ``RM_LOW_CONF_MULT`` come from a bot that
applied x HIGH at confidence >= 0.85, x LOW below 0.60 and x 1 between. They rewrite
``adjust.confidence`` as the three tiers ``[[0.85, HIGH], [0.60, MID], [0.0, LOW]]``; a
multiplier not given (and MID) keeps the value the lower layers had at that threshold (1 when
they had none).

Leverage caps: ``MAX_LEVERAGE`` and ``RM_MAX_LEVERAGE`` set ``leverage.max``; a fixed
``leverage.value`` above the new cap is lowered to it (a cap never raises the leverage in use).
``RM_MAX_LEVERAGE`` also sets ``limits.max_equity_leverage``: that bot capped the notional at
equity x its max leverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sizeguard.errors import InvalidInput

Updates = dict[str, Any]
Getter = Callable[[str], Any]  # dotted key -> the value the lower layers give (or None)

HIGH_CONF, MID_CONF, LOW_CONF = 0.85, 0.60, 0.0


def _number(name: str, raw: str) -> float:
    text = raw.strip().strip('"').strip("'")
    scale = 1.0
    if text.endswith("%"):
        text, scale = text[:-1].strip(), 0.01
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(name, raw, "must be a number") from None
    if not math.isfinite(value):
        raise InvalidInput(name, raw, "must be a finite number")
    return value * scale


def _count(name: str, raw: str) -> int:
    value = _number(name, raw)
    if value != int(value) or value < 0:
        raise InvalidInput(name, raw, "must be a whole number >= 0")
    return int(value)


@dataclass(frozen=True, slots=True)
class Alias:
    """One seed environment name: the system that used it, the keys it sets, what it means."""

    name: str
    system: str
    keys: tuple[str, ...]
    meaning: str
    unit: str
    convert: Callable[[str, str, Getter], Updates]

    def apply(self, raw: str, current: Getter) -> Updates:
        """The policy keys (dotted) and values this alias sets, given the lower layers."""
        return self.convert(self.name, raw, current)


def _to(key: str, kind: str = "number") -> Callable[[str, str, Getter], Updates]:
    def convert(name: str, raw: str, _current: Getter) -> Updates:
        return {key: _count(name, raw) if kind == "count" else _number(name, raw)}
    return convert


def _leverage_cap(*extra: str) -> Callable[[str, str, Getter], Updates]:
    def convert(name: str, raw: str, current: Getter) -> Updates:
        cap = _number(name, raw)
        out: Updates = {"leverage.max": cap}
        value = current("leverage.value")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > cap:
            out["leverage.value"] = cap
        for key in extra:
            out[key] = cap
        return out
    return convert


def _tier_value(tiers: Any, threshold: float) -> float:
    """Multiplier of the highest threshold <= ``threshold`` in raw tier data (1 when none)."""
    best_t, best_m = -1.0, 1.0
    if isinstance(tiers, list | tuple):
        for pair in tiers:
            if (isinstance(pair, list | tuple) and len(pair) == 2
                    and all(isinstance(v, int | float) for v in pair)
                    and best_t < float(pair[0]) <= threshold):
                best_t, best_m = float(pair[0]), float(pair[1])
    return best_m


def _confidence(which: float) -> Callable[[str, str, Getter], Updates]:
    def convert(name: str, raw: str, current: Getter) -> Updates:
        mult = _number(name, raw)
        tiers = current("adjust.confidence")
        values = {t: _tier_value(tiers, t) for t in (HIGH_CONF, MID_CONF, LOW_CONF)}
        values[which] = mult
        return {"adjust.confidence": [[t, values[t]] for t in (HIGH_CONF, MID_CONF, LOW_CONF)]}
    return convert


AI = "ai-atr-risk bot (RM_)"
VIPER = "VIPER bot"
QT = "quantum bot (QT_)"

ALIASES: tuple[Alias, ...] = (
    Alias("RM_RISK_PER_TRADE_PCT", AI, ("sizing.risk",),
          "base risk per trade, before multipliers and the clamp", "fraction of equity (0.01 = 1%)",
          _to("sizing.risk")),
    Alias("RM_MIN_RISK_PCT", AI, ("adjust.min",), "floor of the risk clamp",
          "fraction of equity", _to("adjust.min")),
    Alias("RM_MAX_RISK_PCT", AI, ("adjust.max",), "ceiling of the risk clamp",
          "fraction of equity", _to("adjust.max")),
    Alias("RM_MIN_POSITION_USD", AI, ("limits.min_notional",),
          "smallest position; it was notional (exposure), not margin", "quote (USDT), notional",
          _to("limits.min_notional")),
    Alias("RM_MAX_POSITION_USD", AI, ("limits.max_notional",),
          "largest position; notional, not margin", "quote (USDT), notional",
          _to("limits.max_notional")),
    Alias("RM_MAX_LEVERAGE", AI, ("leverage.max", "leverage.value", "limits.max_equity_leverage"),
          "max leverage; that bot also capped notional at equity x this",
          "x; a fixed leverage.value above it is lowered to it",
          _leverage_cap("limits.max_equity_leverage")),
    Alias("RM_HIGH_CONF_MULT", AI, ("adjust.confidence",),
          "size multiplier at confidence >= 0.85", "x, tier [0.85, m] of adjust.confidence",
          _confidence(HIGH_CONF)),
    Alias("RM_LOW_CONF_MULT", AI, ("adjust.confidence",),
          "size multiplier at confidence < 0.60", "x, tier [0.0, m] of adjust.confidence",
          _confidence(LOW_CONF)),
    Alias("MAX_LEVERAGE", VIPER, ("leverage.max", "leverage.value"), "max leverage",
          "x; a fixed leverage.value above it is lowered to it", _leverage_cap()),
    Alias("RISK_PER_TRADE", VIPER, ("sizing.risk",), "risk per trade",
          "fraction of equity (0.02 = 2%)", _to("sizing.risk")),
    Alias("MAX_POSITION_SIZE_PERCENT", VIPER, ("limits.max_margin_pct",),
          "largest position as margin, as a share of equity", "fraction of equity (0.1 = 10%)",
          _to("limits.max_margin_pct")),
    Alias("QT_MAX_POSITIONS", QT, ("limits.max_positions",), "max concurrent positions",
          "count", _to("limits.max_positions", "count")),
    Alias("QT_MAX_NOTIONAL_PER_TRADE", QT, ("limits.max_margin",),
          "MARGIN per trade despite its name (5,000 margin = 150,000 notional at 30x)",
          "quote (USDT), margin", _to("limits.max_margin")),
    Alias("QT_MAX_GROSS_EXPOSURE", QT, ("limits.max_gross_exposure",),
          "total notional of all open positions", "quote (USDT), notional",
          _to("limits.max_gross_exposure")),
    Alias("QT_MAX_POSITION_PER_SYMBOL", QT, ("limits.max_symbol_notional",),
          "notional per symbol, open position included", "quote (USDT), notional",
          _to("limits.max_symbol_notional")),
)

BY_NAME: Mapping[str, Alias] = {a.name: a for a in ALIASES}
ALIAS_NAMES: tuple[str, ...] = tuple(BY_NAME)


def alias_table_markdown() -> str:
    """The alias table as Markdown (docs/configuration.md is checked against it by a test)."""
    rows = ["| name | seed system | sets | meaning | unit |", "|---|---|---|---|---|"]
    for a in ALIASES:
        keys = ", ".join(f"`{k}`" for k in a.keys)
        rows.append(f"| `{a.name}` | {a.system} | {keys} | {a.meaning} | {a.unit} |")
    return "\n".join(rows)
