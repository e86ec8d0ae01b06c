"""Gates (DESIGN step 2) and caps (step 6). Each cap returns the notional bound and its code."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sizeguard.core.account import Account
from sizeguard.core.decision import Reason
from sizeguard.core.intent import LONG, Intent
from sizeguard.core.policy import Group, Limits


class LimitsView:
    """A :class:`Limits`' values, read once (the policy is frozen): the decision keeps one per
    policy object (``core.decide.PolicyView``), so the gates and caps read compiled fields."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.min_notional = limits.min_notional
        self.max_notional = limits.max_notional
        self.max_symbol_notional = limits.max_symbol_notional
        self.max_gross_exposure = limits.max_gross_exposure
        self.max_positions = limits.max_positions
        self.max_margin = limits.max_margin
        self.max_margin_pct = limits.max_margin_pct
        self.max_margin_utilisation = limits.max_margin_utilisation
        self.max_equity_leverage = limits.max_equity_leverage
        self.daily_loss = limits.daily_loss
        self.max_drawdown = limits.max_drawdown
        self.allow_add = limits.allow_add
        self.cooldown = limits.cooldown
        self.max_long_positions = limits.max_long_positions
        self.max_short_positions = limits.max_short_positions
        self.max_net_exposure = limits.max_net_exposure
        self.groups: Mapping[str, Group] = limits.groups  # the mapping itself, read when used


def _view(limits: Limits | LimitsView) -> LimitsView:
    return limits if isinstance(limits, LimitsView) else LimitsView(limits)


def gate(intent: Intent, account: Account, limits: Limits | LimitsView
         ) -> tuple[Reason | None, str]:
    """The first gate that closes, in DESIGN order, with a note; (None, note) when all are open.
    An account its admin halted is closed before every rule."""
    lim = _view(limits)
    if account.halted is not None:
        return Reason.HALTED_BY_ADMIN, f"halted by the account's admin: {account.halted}"
    pnl = account.realised_pnl_today
    if lim.daily_loss > 0 and pnl < 0:
        day_start = account.equity - pnl
        if day_start > 0 and -pnl >= lim.daily_loss * day_start * (1 - 1e-12):
            return Reason.HALTED_DAILY_LOSS, (
                f"realised {pnl:.2f} today is {(-pnl / day_start):.2%} of the day's starting "
                f"equity {day_start:.2f}; limit {lim.daily_loss:.2%}")
    # the tolerance: 1 - 9,000 / 10,000 is 0.09999999999999998 in floats, and a 10% limit
    # must halt at exactly 10%
    if lim.max_drawdown > 0 and account.drawdown >= lim.max_drawdown * (1 - 1e-12):
        return Reason.HALTED_DRAWDOWN, (
            f"drawdown {account.drawdown:.2%} >= limit {lim.max_drawdown:.2%}")
    symbol = intent.symbol
    adding = account.has_position(symbol)
    if lim.max_positions > 0 and len(account.positions) >= lim.max_positions and not (
            adding and lim.allow_add):
        return Reason.MAX_POSITIONS, (
            f"{len(account.positions)} open of {lim.max_positions} allowed")
    if adding and not lim.allow_add:
        return Reason.POSITION_OPEN, f"{symbol} already has an open position"
    if lim.max_long_positions > 0 or lim.max_short_positions > 0 or lim.groups:
        code, note = slot_gate(intent, account, lim)
        if code is not None:
            return code, note
    if lim.cooldown > 0:
        last = account.last_trade_at.get(symbol)
        if last is not None:
            if intent.time is None:
                return None, "cooldown not checked: the intent carries no time"
            if intent.time - last < lim.cooldown:
                return Reason.COOLDOWN, (
                    f"{intent.time - last:.0f}s since the last trade, cooldown {lim.cooldown:.0f}s")
    return None, "all gates open"


def slot_gate(intent: Intent, account: Account, limits: Limits | LimitsView
              ) -> tuple[Reason | None, str]:
    """The side and group slot caps. They count symbols with a position or a reservation (the
    store's reservations are positions to the caps, so concurrent reservers cannot overfill);
    a trade on a symbol already counted (an add) takes no new slot."""
    lim = _view(limits)
    sym = intent.symbol
    is_long = intent.side == LONG
    cap = lim.max_long_positions if is_long else lim.max_short_positions
    if cap > 0:
        held = account.side_symbols(intent.side)
        if sym not in held and len(held) >= cap:
            code = Reason.MAX_LONG_POSITIONS if is_long else Reason.MAX_SHORT_POSITIONS
            return code, f"{len(held)} {intent.side} positions of {cap} allowed"
    for name, group in lim.groups.items():
        if group.max_positions <= 0 or sym not in group.symbols:
            continue
        held = account.group_symbols(group.symbols)
        if sym not in held and len(held) >= group.max_positions:
            return Reason.MAX_GROUP_POSITIONS, (
                f"group {name}: {len(held)} of {group.max_positions} positions open")
    return None, ""


@dataclass(frozen=True, slots=True)
class MarginBudget:
    """The margin a trade may tie up: per-trade cap, utilisation room and available margin."""

    per_trade: float
    utilisation_room: float
    available: float

    def __init__(self, per_trade: float, utilisation_room: float, available: float) -> None:
        # the class's own __init__ (kept by the dataclass) is compiled; see Decision.__init__
        object.__setattr__(self, "per_trade", per_trade)
        object.__setattr__(self, "utilisation_room", utilisation_room)
        object.__setattr__(self, "available", available)

    def cap(self, leverage: float, fee: float) -> tuple[float, Reason | None]:
        """Largest notional whose margin fits every budget at ``leverage`` (entry fee counted
        against the available margin), and the code of the budget that binds."""
        best, reason = math.inf, None
        bound = self.per_trade * leverage
        if bound < best:
            best, reason = bound, Reason.CAPPED_MARGIN
        bound = self.utilisation_room * leverage
        if bound < best:
            best, reason = bound, Reason.CAPPED_MARGIN_UTILISATION
        bound = self.available / (1.0 / leverage + fee)
        if bound < best:
            best, reason = bound, Reason.CAPPED_AVAILABLE
        return max(best, 0.0), reason

    @property
    def smallest(self) -> float:
        return min(self.per_trade, self.utilisation_room, self.available)


def margin_budget(account: Account, limits: Limits | LimitsView) -> MarginBudget:
    lim = _view(limits)
    equity = account.equity
    per_trade = min(lim.max_margin, lim.max_margin_pct * equity)
    room = lim.max_margin_utilisation * equity - account.margin_in_use
    return MarginBudget(per_trade, max(room, 0.0), max(account.available_margin, 0.0))


class Cap:
    """A cap on the notional, its reason code, and what it is (``note``, written out only when
    asked: most caps never bind, and formatting numbers costs more than the whole cap)."""

    __slots__ = ("_args", "_template", "code", "notional")

    def __init__(self, notional: float, code: Reason, template: str, *args: Any) -> None:
        self.notional = notional
        self.code = code
        self._template = template
        self._args = args

    @property
    def note(self) -> str:
        return self._template.format(*self._args)


def notional_caps(intent: Intent, account: Account, limits: Limits | LimitsView) -> list[Cap]:
    """Caps on the notional that do not depend on leverage, in DESIGN order."""
    lim = _view(limits)
    open_symbol = account.symbol_exposure(intent.symbol)
    gross = account.gross_exposure
    caps = [
        Cap(lim.max_notional, Reason.CAPPED_MAX_NOTIONAL, "max notional per trade"),
        Cap(lim.max_symbol_notional - open_symbol, Reason.CAPPED_SYMBOL,
            "per-symbol cap {:g} less open {:g}", lim.max_symbol_notional, open_symbol),
        Cap(lim.max_gross_exposure - gross, Reason.CAPPED_GROSS_EXPOSURE,
            "gross cap {:g} less open {:g}", lim.max_gross_exposure, gross),
        Cap(lim.max_equity_leverage * account.equity, Reason.CAPPED_EQUITY_LEVERAGE,
            "equity x {:g}", lim.max_equity_leverage),
    ]
    if math.isfinite(lim.max_net_exposure) or lim.groups:
        caps.extend(side_and_group_caps(intent, account, lim))
    return caps


def side_and_group_caps(intent: Intent, account: Account, limits: Limits | LimitsView
                        ) -> list[Cap]:
    """The net exposure cap and each group's exposure cap the intent's symbol belongs to.

    Net: ``|long - short| <= cap`` after this trade; a trade on the lighter side lowers the net
    and is never cut by it, so only the upper bound ``cap - (own side - other side)`` applies.
    """
    lim = _view(limits)
    caps: list[Cap] = []
    if math.isfinite(lim.max_net_exposure):
        mine = account.side_exposure(intent.side)
        other = account.side_exposure("short" if intent.side == LONG else "long")
        caps.append(Cap(lim.max_net_exposure - (mine - other), Reason.CAPPED_NET_EXPOSURE,
                        "net cap {:g}: {} {:g} open against {:g}", lim.max_net_exposure,
                        intent.side, mine, other))
    for name, group in lim.groups.items():
        if math.isfinite(group.max_exposure) and intent.symbol in group.symbols:
            held = account.group_exposure(group.symbols)
            caps.append(Cap(group.max_exposure - held, Reason.CAPPED_GROUP_EXPOSURE,
                            "group {} cap {:g} less open {:g}", name, group.max_exposure, held))
    return caps
