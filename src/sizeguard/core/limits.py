"""Gates (DESIGN step 2) and caps (step 6). Each cap returns the notional bound and its code."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sizeguard.core.account import Account
from sizeguard.core.decision import Reason
from sizeguard.core.intent import Intent
from sizeguard.core.policy import Limits


def gate(intent: Intent, account: Account, limits: Limits) -> tuple[Reason | None, str]:
    """The first gate that closes, in DESIGN order, with a note; (None, note) when all are open.
    An account its admin halted is closed before every rule."""
    if account.halted is not None:
        return Reason.HALTED_BY_ADMIN, f"halted by the account's admin: {account.halted}"
    pnl = account.realised_pnl_today
    if limits.daily_loss > 0 and pnl < 0:
        day_start = account.equity - pnl
        if day_start > 0 and -pnl >= limits.daily_loss * day_start * (1 - 1e-12):
            return Reason.HALTED_DAILY_LOSS, (
                f"realised {pnl:.2f} today is {(-pnl / day_start):.2%} of the day's starting "
                f"equity {day_start:.2f}; limit {limits.daily_loss:.2%}")
    # the tolerance: 1 - 9,000 / 10,000 is 0.09999999999999998 in floats, and a 10% limit
    # must halt at exactly 10%
    if limits.max_drawdown > 0 and account.drawdown >= limits.max_drawdown * (1 - 1e-12):
        return Reason.HALTED_DRAWDOWN, (
            f"drawdown {account.drawdown:.2%} >= limit {limits.max_drawdown:.2%}")
    adding = account.has_position(intent.symbol)
    if limits.max_positions > 0 and len(account.positions) >= limits.max_positions and not (
            adding and limits.allow_add):
        return Reason.MAX_POSITIONS, (
            f"{len(account.positions)} open of {limits.max_positions} allowed")
    if adding and not limits.allow_add:
        return Reason.POSITION_OPEN, f"{intent.symbol} already has an open position"
    code, note = slot_gate(intent, account, limits)
    if code is not None:
        return code, note
    if limits.cooldown > 0:
        last = account.last_trade_at.get(intent.symbol)
        if last is not None:
            if intent.time is None:
                return None, "cooldown not checked: the intent carries no time"
            if intent.time - last < limits.cooldown:
                return Reason.COOLDOWN, (
                    f"{intent.time - last:.0f}s since the last trade, cooldown {limits.cooldown:.0f}s")
    return None, "all gates open"


def slot_gate(intent: Intent, account: Account, limits: Limits) -> tuple[Reason | None, str]:
    """The side and group slot caps. They count symbols with a position or a reservation (the
    store's reservations are positions to the caps, so concurrent reservers cannot overfill);
    a trade on a symbol already counted (an add) takes no new slot."""
    sym = intent.symbol
    cap = limits.max_long_positions if intent.is_long else limits.max_short_positions
    if cap > 0:
        held = account.side_symbols(intent.side)
        if sym not in held and len(held) >= cap:
            code = Reason.MAX_LONG_POSITIONS if intent.is_long else Reason.MAX_SHORT_POSITIONS
            return code, f"{len(held)} {intent.side} positions of {cap} allowed"
    for name, group in limits.groups.items():
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
        for bound, code in (
            (self.per_trade * leverage, Reason.CAPPED_MARGIN),
            (self.utilisation_room * leverage, Reason.CAPPED_MARGIN_UTILISATION),
            (self.available / (1.0 / leverage + fee), Reason.CAPPED_AVAILABLE),
        ):
            if bound < best:
                best, reason = bound, code
        return max(best, 0.0), reason

    @property
    def smallest(self) -> float:
        return min(self.per_trade, self.utilisation_room, self.available)


def margin_budget(account: Account, limits: Limits) -> MarginBudget:
    per_trade = min(limits.max_margin, limits.max_margin_pct * account.equity)
    room = limits.max_margin_utilisation * account.equity - account.margin_in_use
    return MarginBudget(per_trade, max(room, 0.0), max(account.available_margin, 0.0))


def notional_caps(intent: Intent, account: Account, limits: Limits
                  ) -> list[tuple[float, Reason, str]]:
    """Caps on the notional that do not depend on leverage, in DESIGN order."""
    return [
        (limits.max_notional, Reason.CAPPED_MAX_NOTIONAL, "max notional per trade"),
        (limits.max_symbol_notional - account.symbol_exposure(intent.symbol), Reason.CAPPED_SYMBOL,
         f"per-symbol cap {limits.max_symbol_notional:g} less open "
         f"{account.symbol_exposure(intent.symbol):g}"),
        (limits.max_gross_exposure - account.gross_exposure, Reason.CAPPED_GROSS_EXPOSURE,
         f"gross cap {limits.max_gross_exposure:g} less open {account.gross_exposure:g}"),
        (limits.max_equity_leverage * account.equity, Reason.CAPPED_EQUITY_LEVERAGE,
         f"equity x {limits.max_equity_leverage:g}"),
        *side_and_group_caps(intent, account, limits),
    ]


def side_and_group_caps(intent: Intent, account: Account, limits: Limits
                        ) -> list[tuple[float, Reason, str]]:
    """The net exposure cap and each group's exposure cap the intent's symbol belongs to.

    Net: ``|long - short| <= cap`` after this trade; a trade on the lighter side lowers the net
    and is never cut by it, so only the upper bound ``cap - (own side - other side)`` applies.
    """
    caps: list[tuple[float, Reason, str]] = []
    if math.isfinite(limits.max_net_exposure):
        mine = account.side_exposure(intent.side)
        other = account.side_exposure("short" if intent.is_long else "long")
        caps.append((limits.max_net_exposure - (mine - other), Reason.CAPPED_NET_EXPOSURE,
                     f"net cap {limits.max_net_exposure:g}: {intent.side} {mine:g} open against "
                     f"{other:g}"))
    for name, group in limits.groups.items():
        if math.isfinite(group.max_exposure) and intent.symbol in group.symbols:
            held = account.group_exposure(group.symbols)
            caps.append((group.max_exposure - held, Reason.CAPPED_GROUP_EXPOSURE,
                         f"group {name} cap {group.max_exposure:g} less open {held:g}"))
    return caps
