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
import operator
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
    preset. The same two policies give the same object back (see :func:`_memo`)."""
    if request_policy is service_policy:
        return service_policy
    key = ("account", id(request_policy), id(service_policy))
    hit = _POLICIES.get(key)
    if hit is not None and hit[0] is request_policy and hit[1] is service_policy:
        return hit[2]
    cap = min(request_policy.leverage.max, service_policy.leverage.max)
    made = dataclasses.replace(request_policy, limits=service_policy.limits,
                               leverage=dataclasses.replace(request_policy.leverage, max=cap))
    return _memo(key, request_policy, service_policy, made)


# Derived policies by (kind, id of the policies, budget numbers) -> (the policies they were made
# from, held so their ids stay theirs, the derived policy). The decision core compiles a
# policy's views once per policy *object* (core.decide.policy_view): a new object per decision
# would compile them every time. Policies are frozen, so one made from the same objects and
# numbers is the same policy; a budget the admin changes is a new key.
_POLICIES: dict[tuple[object, ...], tuple[Policy, Policy | None, Policy]] = {}
_POLICIES_MAX = 256


def _memo(key: tuple[object, ...], source: Policy, other: Policy | None, made: Policy) -> Policy:
    if len(_POLICIES) >= _POLICIES_MAX:  # bounded: policies reloaded again and again
        _POLICIES.clear()
    _POLICIES[key] = (source, other, made)
    return made


def bot_slots(share: float, max_positions: int, account_slots: int) -> int:
    """A bot's own slot count: the admin's (``max_positions`` > 0), else its budget's share of
    the account's slots, at least one (0: the account has no slot limit)."""
    if max_positions > 0 or account_slots <= 0 or share >= 1.0:
        return max_positions
    return max(1, math.floor(share * account_slots + 1e-9))


def bot_policy(policy: Policy, budget: Budget) -> Policy:
    """The bot view's policy: the bot's own slot count; the gross exposure cap is shared. The
    same policy object and budget numbers give the same object back."""
    key = ("bot", id(policy), budget.share, budget.max_positions)
    hit = _POLICIES.get(key)
    if hit is not None and hit[0] is policy:
        return hit[2]
    lim = policy.limits
    gross = lim.max_gross_exposure * budget.share if math.isfinite(lim.max_gross_exposure) \
        else lim.max_gross_exposure
    return _memo(key, policy, None, dataclasses.replace(policy, limits=dataclasses.replace(
        lim, max_positions=budget.max_positions, max_gross_exposure=gross)))


def bot_account(account: Account, own: tuple[Position, ...], budget: Budget) -> Account:
    """The bot's share of ``account`` holding only ``own`` positions and reservations.

    Available margin is the share's equity minus the bot's own margin in use, and never more
    than the account's own available margin. The account over ``own`` (its aggregates and held
    folds) is made once per ``own`` tuple, and grown from the previous one when ``own`` is it
    plus one position (a batch's next decision, see :func:`_own_account`)."""
    share = budget.share
    held = _own_account(own)
    equity = account.equity * share
    # the core's available margin of the share holding only the bot's own positions
    own_available = equity - held.margin_in_use
    available = min(own_available, account.available_margin)
    return account.holding(
        held, equity=equity, available=max(available, 0.0),
        peak_equity=account.peak_equity * share if account.peak_equity is not None else None,
        realised_pnl_today=account.realised_pnl_today * share,
        wallet_balance=account.wallet_balance * share if account.wallet_balance is not None
        else None)


# Accounts over a bot's own positions by (id of the last position, how many) -> (the positions,
# held so the ids stay theirs, the account). Only the positions make an account's aggregates
# and folds, so the same tuple (or one holding the same objects) gives the same account.
_OWN: dict[tuple[int, int], tuple[tuple[Position, ...], Account]] = {}
_OWN_MAX = 256
_NO_POSITIONS = Account(equity=0.0)


def _same(a: tuple[Position, ...], b: tuple[Position, ...]) -> bool:
    return len(a) == len(b) and all(map(operator.is_, a, b))


def _own_account(own: tuple[Position, ...]) -> Account:
    """An account holding ``own`` (equity 0: :func:`bot_account` gives it the share's)."""
    n = len(own)
    if n == 0:
        return _NO_POSITIONS
    key = (id(own[-1]), n)
    hit = _OWN.get(key)
    if hit is not None and (hit[0] is own or _same(hit[0], own)):
        return hit[1]
    prev = _OWN.get((id(own[-2]), n - 1)) if n > 1 else None
    if prev is not None and _same(prev[0], own[:-1]):
        made = prev[1].with_position(own[-1])
    else:
        made = Account(equity=0.0, positions=own)
    if len(_OWN) >= _OWN_MAX:
        _OWN.clear()
    _OWN[key] = (own, made)
    return made


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
