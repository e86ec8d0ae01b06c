"""Budgets: one account shared by several bots, each with a share of the equity and its own
position slots, all inside the account-wide limits.

No arithmetic of its own: a bot's decision is the core :func:`~sizeguard.core.decide.decide`
run twice on the same intent and market,

* once on the **account view**: the whole account (every bot's positions and live
  reservations) under the service's account-wide limits, and
* once on the **bot view**: an :class:`~sizeguard.core.account.Account` holding only the bot's
  own positions and reservations, whose equity (and peak, and today's PnL, so drawdown and
  loss *ratios* are unchanged) is the bot's share of the account's, under the same policy
  with the bot's own ``max_positions`` and the account-wide gross exposure cap scaled by the
  share;

and the stricter of the two answers wins: a skip beats an acceptance (the account view's skip
first), else the smaller notional. The caller runs this inside the store's atomic
decide + reserve transaction, so both views see the same committed state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy
from sizeguard.errors import InvalidInput

ACCOUNT = "account"
BOT = "bot"


@dataclass(frozen=True, slots=True)
class Budget:
    """``share`` of the account's equity (0 < share <= 1) and ``max_positions`` (0 = only the
    account-wide limit applies)."""

    share: float = 1.0
    max_positions: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.share) and 0 < self.share <= 1):
            raise InvalidInput("budget", self.share, "must be a share of equity in (0, 1] "
                               "(40% = 0.4)")
        if self.max_positions < 0:
            raise InvalidInput("max_positions", self.max_positions, "must be >= 0")

    @property
    def unlimited(self) -> bool:
        """The bot view can never be stricter than the account view."""
        return self.share >= 1.0 and self.max_positions == 0


def parse_budget(text: str) -> float:
    """``"40%"`` or ``"0.4"`` -> 0.4."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise InvalidInput("budget", text, "must be a percentage (40%) or a fraction (0.4)") from None
    Budget(value)  # validates
    return value


def account_policy(request_policy: Policy, service_policy: Policy) -> Policy:
    """The policy of the account view: the request's sizing (its preset) under the service's
    account-wide limits and leverage cap, so no request can loosen either by naming a laxer
    preset."""
    if request_policy is service_policy:
        return service_policy
    cap = min(request_policy.leverage.max, service_policy.leverage.max)
    return dataclasses.replace(request_policy, limits=service_policy.limits,
                               leverage=dataclasses.replace(request_policy.leverage, max=cap))


def bot_slots(share: float, max_positions: int, account_slots: int) -> int:
    """A bot's own slot count: the admin's (``max_positions`` > 0), else its budget's share of
    the account's slots, at least one (0: the account has no slot limit)."""
    if max_positions > 0 or account_slots <= 0 or share >= 1.0:
        return max_positions
    return max(1, math.floor(share * account_slots + 1e-9))


def bot_policy(policy: Policy, budget: Budget) -> Policy:
    """The bot view's policy: the bot's own slot count; the gross exposure cap is shared."""
    lim = policy.limits
    gross = lim.max_gross_exposure * budget.share if math.isfinite(lim.max_gross_exposure) \
        else lim.max_gross_exposure
    return dataclasses.replace(policy, limits=dataclasses.replace(
        lim, max_positions=budget.max_positions, max_gross_exposure=gross))


def bot_account(account: Account, own: tuple[Position, ...], budget: Budget) -> Account:
    """The bot's share of ``account`` holding only ``own`` positions and reservations.

    Available margin is the share's equity minus the bot's own margin in use, and never more
    than the account's own available margin."""
    share = budget.share
    equity = account.equity * share
    # the core's available margin of the share holding only the bot's own positions
    own_available = Account(equity=equity, positions=own).available_margin
    available = min(own_available, account.available_margin)
    return dataclasses.replace(
        account, equity=equity, available=max(available, 0.0), positions=own,
        peak_equity=account.peak_equity * share if account.peak_equity is not None else None,
        realised_pnl_today=account.realised_pnl_today * share,
        wallet_balance=account.wallet_balance * share if account.wallet_balance is not None
        else None)


def stricter(by_account: Decision, by_bot: Decision) -> tuple[Decision, str]:
    """The decision that satisfies both views: a skip first, else the smaller notional."""
    if not by_account.accepted:
        return by_account, ACCOUNT
    if not by_bot.accepted:
        return by_bot, BOT
    if by_bot.notional < by_account.notional:
        return by_bot, BOT
    return by_account, ACCOUNT


def decide_for_bot(intent: Intent, account: Account, own: tuple[Position, ...],
                   market: MarketRules, policy: Policy, budget: Budget) -> tuple[Decision, str]:
    """The decision a bot with ``budget`` gets on ``account``; returns it and which view bound
    it (``"account"`` or ``"bot"``). ``policy`` is already the account view's policy."""
    by_account = decide(intent, account, market, policy)
    if budget.unlimited or not by_account.accepted:
        return by_account, ACCOUNT
    by_bot = decide(intent, bot_account(account, own, budget), market, bot_policy(policy, budget))
    return stricter(by_account, by_bot)
