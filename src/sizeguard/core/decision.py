"""The Decision, its reason codes and its trace: what was decided and why, step by step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    ACCEPTED = "accepted"
    SKIPPED = "skipped"


class Reason(StrEnum):
    """Reason codes. Caps and adjustments accompany accepted decisions; the rest end in a skip."""

    HALTED_DAILY_LOSS = "HALTED_DAILY_LOSS"
    HALTED_BY_ADMIN = "HALTED_BY_ADMIN"
    HALTED_DRAWDOWN = "HALTED_DRAWDOWN"
    MAX_POSITIONS = "MAX_POSITIONS"
    POSITION_OPEN = "POSITION_OPEN"
    COOLDOWN = "COOLDOWN"
    NO_EDGE = "NO_EDGE"
    CAPPED_MAX_NOTIONAL = "CAPPED_MAX_NOTIONAL"
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"
    CAPPED_SYMBOL = "CAPPED_SYMBOL"
    CAPPED_GROSS_EXPOSURE = "CAPPED_GROSS_EXPOSURE"
    CAPPED_MARGIN = "CAPPED_MARGIN"
    CAPPED_MARGIN_UTILISATION = "CAPPED_MARGIN_UTILISATION"
    CAPPED_AVAILABLE = "CAPPED_AVAILABLE"
    CAPPED_EQUITY_LEVERAGE = "CAPPED_EQUITY_LEVERAGE"
    CAPPED_LEVERAGE_POLICY = "CAPPED_LEVERAGE_POLICY"
    CAPPED_LEVERAGE_TIER = "CAPPED_LEVERAGE_TIER"
    CAPPED_TIER_NOTIONAL = "CAPPED_TIER_NOTIONAL"
    LEVERAGE_LOWERED_FOR_LIQUIDATION = "LEVERAGE_LOWERED_FOR_LIQUIDATION"
    SHRUNK_FOR_LIQUIDATION = "SHRUNK_FOR_LIQUIDATION"
    STOP_BEYOND_LIQUIDATION = "STOP_BEYOND_LIQUIDATION"
    ROUNDED_TO_STEP = "ROUNDED_TO_STEP"
    RAISED_TO_MINIMUM = "RAISED_TO_MINIMUM"
    BELOW_MIN_AMOUNT = "BELOW_MIN_AMOUNT"
    BELOW_MIN_COST = "BELOW_MIN_COST"
    ABOVE_MAX_AMOUNT = "ABOVE_MAX_AMOUNT"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    ZERO_SIZE = "ZERO_SIZE"
    LIQUIDATION_FORMULA_ASSUMED = "LIQUIDATION_FORMULA_ASSUMED"
    MAX_LONG_POSITIONS = "MAX_LONG_POSITIONS"
    MAX_SHORT_POSITIONS = "MAX_SHORT_POSITIONS"
    MAX_GROUP_POSITIONS = "MAX_GROUP_POSITIONS"
    CAPPED_NET_EXPOSURE = "CAPPED_NET_EXPOSURE"
    CAPPED_GROUP_EXPOSURE = "CAPPED_GROUP_EXPOSURE"
    ADD_CAPPED_BY_RISK = "ADD_CAPPED_BY_RISK"
    ADD_CAPPED_BY_LIQUIDATION = "ADD_CAPPED_BY_LIQUIDATION"


# Plain words for people (CLI, explain, HTTP problem details).
REASON_TEXT: dict[Reason, str] = {
    Reason.HALTED_DAILY_LOSS: "trading is halted: today's realised loss reached the daily limit",
    Reason.HALTED_BY_ADMIN: "trading is halted by the account's admin",
    Reason.HALTED_DRAWDOWN: "trading is halted: drawdown from peak equity reached the limit",
    Reason.MAX_POSITIONS: "every position slot is taken",
    Reason.POSITION_OPEN: "a position on this symbol is already open and adding is not allowed",
    Reason.COOLDOWN: "the symbol is cooling down after its last trade",
    Reason.NO_EDGE: "the Kelly fraction is zero or negative: no edge, no trade",
    Reason.CAPPED_MAX_NOTIONAL: "cut to the policy's max notional per trade",
    Reason.BELOW_MIN_NOTIONAL: "below the policy's min notional per trade",
    Reason.CAPPED_SYMBOL: "cut to the per-symbol exposure cap (open position included)",
    Reason.CAPPED_GROSS_EXPOSURE: "cut to the gross exposure still free",
    Reason.CAPPED_MARGIN: "cut to the max margin per trade",
    Reason.CAPPED_MARGIN_UTILISATION: "cut so total margin stays within the utilisation limit",
    Reason.CAPPED_AVAILABLE: "cut so margin plus entry fee fits the available margin",
    Reason.CAPPED_EQUITY_LEVERAGE: "cut to equity x the policy's max account leverage",
    Reason.CAPPED_LEVERAGE_POLICY: "leverage cut to the policy's max leverage",
    Reason.CAPPED_LEVERAGE_TIER: "leverage cut to the exchange tier's max for this notional",
    Reason.CAPPED_TIER_NOTIONAL: "cut to the top of the exchange's leverage tiers",
    Reason.LEVERAGE_LOWERED_FOR_LIQUIDATION: "leverage lowered so liquidation lies beyond the stop",
    Reason.SHRUNK_FOR_LIQUIDATION: "size cut so liquidation lies beyond the stop",
    Reason.STOP_BEYOND_LIQUIDATION: "the stop lies beyond the liquidation price: it would never fire",
    Reason.ROUNDED_TO_STEP: "amount rounded down to the exchange's lot step",
    Reason.RAISED_TO_MINIMUM: "raised to the exchange minimum (risk and limits still hold)",
    Reason.BELOW_MIN_AMOUNT: "below the exchange's minimum amount",
    Reason.BELOW_MIN_COST: "below the exchange's minimum order value",
    Reason.ABOVE_MAX_AMOUNT: "cut to the exchange's maximum amount per order",
    Reason.INSUFFICIENT_MARGIN: "not enough available margin for even the smallest order",
    Reason.ZERO_SIZE: "the size rounds to zero lots",
    Reason.LIQUIDATION_FORMULA_ASSUMED: "no published liquidation formula is known for this "
                                        "exchange: Binance's was assumed",
    Reason.MAX_LONG_POSITIONS: "every long slot is taken",
    Reason.MAX_SHORT_POSITIONS: "every short slot is taken",
    Reason.MAX_GROUP_POSITIONS: "every slot of the symbol's group is taken",
    Reason.CAPPED_NET_EXPOSURE: "cut so |long - short| exposure stays within the net cap",
    Reason.CAPPED_GROUP_EXPOSURE: "cut to the exposure still free in the symbol's group",
    Reason.ADD_CAPPED_BY_RISK: "add cut so the whole position's risk to the stop stays within "
                               "the budget",
    Reason.ADD_CAPPED_BY_LIQUIDATION: "add cut so the position's liquidation at its new average "
                                      "entry stays beyond the stop by the buffer",
}


class Text:
    """A text value of the trace, written out when read: a format string and its arguments
    (``Text("{:g} x ATR {:g}", 1.5, 2000.0)`` reads "1.5 x ATR 2000"). Formatting floats costs
    more than most steps of a decision, and most traces are never read. A :class:`TraceStep`
    hands out the string, never this object."""

    __slots__ = ("args", "template")

    def __init__(self, template: str, *args: Any) -> None:
        self.template = template
        self.args = args

    def __str__(self) -> str:
        return self.template.format(*self.args)


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, Text) else value


class TraceStep:
    """One pipeline step: its name, the values it produced, and what bound it (if anything).

    Immutable (read-only properties). ``values`` are ``(name, value)`` pairs. The pipeline
    records a step flat, its names (a constant tuple) and its values apart (``keys`` and
    ``recorded``), and the pairs are built on the first read of ``values``: a decision records
    about a dozen steps and most are only ever written to JSON (:meth:`to_dict` reads the flat
    form), so a decision allocates two tuples a step instead of one per value.
    """

    __slots__ = ("_bound", "_keys", "_note", "_pairs", "_step", "_vals")

    def __init__(self, step: str, values: tuple[tuple[str, Any], ...] = (),
                 bound: str | None = None, note: str | None = None, *,
                 keys: tuple[str, ...] = (), recorded: tuple[Any, ...] | None = None) -> None:
        self._step = step
        self._bound = bound
        self._note = note
        self._keys = keys
        if recorded is None:
            self._pairs: tuple[tuple[str, Any], ...] | None = tuple(values)
            self._vals: tuple[Any, ...] = ()
        else:
            if len(recorded) != len(keys):
                raise ValueError(f"step {step}: {len(keys)} names for {len(recorded)} values")
            self._pairs = None
            self._vals = recorded

    @property
    def step(self) -> str:
        return self._step

    @property
    def values(self) -> tuple[tuple[str, Any], ...]:
        pairs = self._pairs
        if pairs is None:
            pairs = self._pairs = tuple((k, _text(v))
                                        for k, v in zip(self._keys, self._vals, strict=True))
        return pairs

    @property
    def bound(self) -> str | None:
        return self._bound

    @property
    def note(self) -> str | None:
        return self._note

    def _key(self) -> tuple[str, tuple[tuple[str, Any], ...], str | None, str | None]:
        return (self._step, self.values, self._bound, self._note)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TraceStep):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"TraceStep(step={self._step!r}, values={self.values!r}, bound={self._bound!r}, "
                f"note={self._note!r})")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self._step}
        pairs = self._pairs
        if pairs is None:
            keys, vals = self._keys, self._vals  # the same length (checked when recorded)
            for i in range(len(keys)):
                out[keys[i]] = _plain(vals[i])
        else:
            for key, value in pairs:
                out[key] = _plain(value)
        if self._bound is not None:
            out["bound"] = self._bound
        if self._note is not None:
            out["note"] = self._note
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceStep:
        """The step :meth:`to_dict` wrote (lists come back as tuples)."""
        values = tuple((k, _typed(v)) for k, v in data.items() if k not in _STEP_KEYS)
        return cls(str(data["step"]), values, data.get("bound"), data.get("note"))


_STEP_KEYS = frozenset(("step", "bound", "note"))


def _typed(value: Any) -> Any:
    return tuple(_typed(v) for v in value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return _round10(value)
    if type(value) is str:  # the common case after floats; a StrEnum is a str, not this
        return value
    if isinstance(value, Text):
        return str(value)
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _round10(value: float) -> float | None:
    """``round(value, 10)``, bit for bit, without its decimal conversion (~0.4 us a float);
    None for NaN and infinity (JSON has neither).

    ``round`` rounds the exact binary value to 10 decimals, half to even, and reads that
    decimal back as the nearest double. Here, for ``|value * 1e10| < 2**52``: ``p`` is that
    product rounded, so within half an ulp of p (at most 1/4) of the exact one; ``n`` is p
    rounded to an integer, half to even (adding and removing 2**52, where the ulp is 1), and
    ``d = p - n`` is exact. Unless d is +-1/2, |d| is at least an ulp of p short of a half (p,
    n and 1/2 are multiples of it), so the exact product rounds to n too. On a half, the exact
    product's error ``e`` decides (Dekker's product: 1e10 has 24 significant bits, so the split
    halves multiply exactly): none is a true tie (n is the even side), else the product goes
    the way e points. Then ``n / 1e10`` (two exact doubles, one correctly rounded division) is
    the double nearest the decimal n x 10**-10, as ``round`` reads it back. From 2**20 up an ulp
    exceeds 2e-10, so the decimal lies within a quarter ulp and reads back as the value itself;
    in between (|value| from about 450,360 to 2**20) ``round`` does it. The steps assume
    IEEE doubles without fused multiply-adds (x86-64 builds have none), and
    tests/test_decision_record.py holds them to ``round`` over arbitrary floats, on both builds."""
    p = value * 1e10
    if -4503599627370496.0 < p < 4503599627370496.0:
        if p >= 0.0:
            n = (p + 4503599627370496.0) - 4503599627370496.0
        else:
            n = (p - 4503599627370496.0) + 4503599627370496.0
        d = p - n
        if abs(d) == 0.5:
            c = 134217729.0 * value  # Veltkamp's split of value: 26 + 27 bits
            high = c - (c - value)
            e = (high * 1e10 - p) + (value - high) * 1e10  # exact product - p
            if (e > 0.0 and d > 0.0) or (e < 0.0 and d < 0.0):
                n += d + d
        if n == 0.0:
            return math.copysign(0.0, value)
        return n / 1e10
    if math.isnan(value) or math.isinf(value):
        return None
    if value >= 1048576.0 or value <= -1048576.0:
        return value
    return round(value, 10)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer. Money is in the quote currency; ``amount`` is an exact decimal string.

    ``tier``, ``maintenance_margin_rate`` and ``maintenance_amount`` are the bracket the
    liquidation price used: the notional's bracket *at* that price (a long's linear notional
    shrinks on the way down, so it may sit lower than ``entry_tier``).

    ``risk`` is the loss if the stop fills, fees included (``risk_basis`` "stop"); without a
    stop it is the most the position can lose: its isolated margin plus fees ("liquidation") or
    its notional plus fees for spot and cross ("notional"). ``fees`` are the taker fees of the
    round trip: entry fee on the entry notional plus exit fee on the notional at the stop when
    there is a stop, else both on the entry notional.
    """

    status: Status
    reasons: tuple[Reason, ...]
    symbol: str
    side: str
    amount: str
    lots: int
    notional: float
    margin: float
    leverage: float
    risk: float
    risk_pct: float
    risk_basis: str
    entry_price: float
    stop_price: float | None
    stop_distance_pct: float | None
    fees: float
    liquidation_price: float | None
    liquidation_distance_pct: float | None
    maintenance_margin_rate: float | None
    tier: int | None
    margin_mode: str
    policy: str
    trace: tuple[TraceStep, ...]
    # the maintenance amount (Binance's cum, in quote) of the tier the liquidation price used
    maintenance_amount: float | None = None
    # the tier of the notional at entry (sets the max leverage); ``tier`` is the one at the
    # liquidation price, where the maintenance rate and amount are charged
    entry_tier: int | None = None

    # Written out rather than generated: the dataclass keeps an __init__ of the class's own,
    # and mypyc compiles this one (object.__setattr__ with a literal name becomes a direct
    # store; the generated __init__ would run as Python, several microseconds a decision).
    def __init__(self, status: Status, reasons: tuple[Reason, ...], symbol: str, side: str,
                 amount: str, lots: int, notional: float, margin: float, leverage: float,
                 risk: float, risk_pct: float, risk_basis: str, entry_price: float,
                 stop_price: float | None, stop_distance_pct: float | None, fees: float,
                 liquidation_price: float | None, liquidation_distance_pct: float | None,
                 maintenance_margin_rate: float | None, tier: int | None, margin_mode: str,
                 policy: str, trace: tuple[TraceStep, ...],
                 maintenance_amount: float | None = None, entry_tier: int | None = None) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reasons", reasons)
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "lots", lots)
        object.__setattr__(self, "notional", notional)
        object.__setattr__(self, "margin", margin)
        object.__setattr__(self, "leverage", leverage)
        object.__setattr__(self, "risk", risk)
        object.__setattr__(self, "risk_pct", risk_pct)
        object.__setattr__(self, "risk_basis", risk_basis)
        object.__setattr__(self, "entry_price", entry_price)
        object.__setattr__(self, "stop_price", stop_price)
        object.__setattr__(self, "stop_distance_pct", stop_distance_pct)
        object.__setattr__(self, "fees", fees)
        object.__setattr__(self, "liquidation_price", liquidation_price)
        object.__setattr__(self, "liquidation_distance_pct", liquidation_distance_pct)
        object.__setattr__(self, "maintenance_margin_rate", maintenance_margin_rate)
        object.__setattr__(self, "tier", tier)
        object.__setattr__(self, "margin_mode", margin_mode)
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "trace", trace)
        object.__setattr__(self, "maintenance_amount", maintenance_amount)
        object.__setattr__(self, "entry_tier", entry_tier)

    @property
    def accepted(self) -> bool:
        return self.status is Status.ACCEPTED

    @property
    def amount_float(self) -> float:
        return float(self.amount)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the CLI prints and the HTTP service returns."""
        return {
            "status": str(self.status),
            "reasons": [str(r) for r in self.reasons],
            "symbol": self.symbol,
            "side": self.side,
            "amount": self.amount,
            "lots": self.lots,
            "notional": _plain(self.notional),
            "margin": _plain(self.margin),
            "leverage": _plain(self.leverage),
            "risk": _plain(self.risk),
            "risk_pct": _plain(self.risk_pct),
            "risk_basis": self.risk_basis,
            "entry_price": self.entry_price,
            "stop_price": self.stop_price,
            "stop_distance_pct": _plain(self.stop_distance_pct),
            "fees": _plain(self.fees),
            "liquidation_price": _plain(self.liquidation_price),
            "liquidation_distance_pct": _plain(self.liquidation_distance_pct),
            "maintenance_margin_rate": self.maintenance_margin_rate,
            "tier": self.tier,
            "maintenance_amount": _plain(self.maintenance_amount),
            "entry_tier": self.entry_tier,
            "margin_mode": self.margin_mode,
            "policy": self.policy,
            "trace": [s.to_dict() for s in self.trace],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """The decision :meth:`to_dict` wrote (a journal row, an HTTP answer): one typed record
        across the store and the service. JSON has no infinity, so a number ``to_dict`` wrote
        as null comes back as NaN where the field is not optional; floats keep the 10 decimals
        ``to_dict`` rounds to. Unknown keys (an answer's ``reservation``, ``journal_id``) are
        ignored."""
        def num(key: str) -> float:
            value = data.get(key)
            return math.nan if value is None else float(value)

        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        tier, entry_tier = data.get("tier"), data.get("entry_tier")
        return cls(
            status=Status(data["status"]),
            reasons=tuple(Reason(r) for r in data.get("reasons", ())),
            symbol=str(data["symbol"]),
            side=str(data["side"]),
            amount=str(data["amount"]),
            lots=int(data["lots"]),
            notional=num("notional"),
            margin=num("margin"),
            leverage=num("leverage"),
            risk=num("risk"),
            risk_pct=num("risk_pct"),
            risk_basis=str(data["risk_basis"]),
            entry_price=float(data["entry_price"]),
            stop_price=opt("stop_price"),
            stop_distance_pct=opt("stop_distance_pct"),
            fees=num("fees"),
            liquidation_price=opt("liquidation_price"),
            liquidation_distance_pct=opt("liquidation_distance_pct"),
            maintenance_margin_rate=opt("maintenance_margin_rate"),
            tier=int(tier) if tier is not None else None,
            margin_mode=str(data["margin_mode"]),
            policy=str(data["policy"]),
            trace=tuple(TraceStep.from_dict(step) for step in data.get("trace", ())),
            maintenance_amount=opt("maintenance_amount"),
            entry_tier=int(entry_tier) if entry_tier is not None else None,
        )
