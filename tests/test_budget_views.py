"""A bot's view of a shared account (sizeguard.budget) made cheaply gives the same decisions as
made afresh: the bot's policy and the account view's policy are kept per (policy object, budget
numbers), and the account over the bot's own positions per tuple, grown by a batch's
reservations. Compared here with the views built from scratch (the reference below), over
sequences of decisions, incl. an admin changing the bot's budget between two of them."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sizeguard.budget import (
    Budget,
    account_policy,
    bot_account,
    bot_policy,
    bot_slots,
    decide_for_bot,
    stricter,
)
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.policy import Policy
from storefix import many_symbols, notional_policy

BOOK = many_symbols(4)
SYMBOLS = [f"C{i:02d}/USDT:USDT" for i in range(4)]
POLICIES = {
    "capped": notional_policy(100.0, allow_add="true", max_positions=6, max_gross_exposure=900.0),
    "add": notional_policy(60.0, allow_add="true"),
    "cross": load_policy("viper-fixed-margin", sets=[
        'sizing.model="fixed_notional"', "sizing.notional=80", "leverage.value=10",
        "leverage.max=10", 'leverage.margin_mode="cross"', "limits.allow_add=true",
        "limits.max_positions=3"]),
    "risk": load_policy("ai-atr-risk", sets=["limits.allow_add=true", "limits.max_positions=8"]),
    "risk-cross": load_policy("ai-atr-risk", sets=["limits.allow_add=true",
                                                   'leverage.margin_mode="cross"']),
    "quantum": load_policy("quantum-4x30", sets=["limits.allow_add=true",
                                                 "limits.max_gross_exposure=60000"]),
}


# -- the reference: the views built from scratch, as before they were kept -----------------
def fresh_policy(policy: Policy, budget: Budget) -> Policy:
    lim = policy.limits
    gross = lim.max_gross_exposure * budget.share if math.isfinite(lim.max_gross_exposure) \
        else lim.max_gross_exposure
    return dataclasses.replace(policy, limits=dataclasses.replace(
        lim, max_positions=budget.max_positions, max_gross_exposure=gross))


def fresh_account(account: Account, own: tuple[Position, ...], budget: Budget) -> Account:
    share = budget.share
    equity = account.equity * share
    own_available = Account(equity=equity, positions=own).available_margin
    available = min(own_available, account.available_margin)
    return dataclasses.replace(
        account, equity=equity, available=max(available, 0.0), positions=own,
        peak_equity=account.peak_equity * share if account.peak_equity is not None else None,
        realised_pnl_today=account.realised_pnl_today * share,
        wallet_balance=account.wallet_balance * share if account.wallet_balance is not None
        else None)


def fresh_decide(intent: Intent, account: Account, own: tuple[Position, ...], policy: Policy,
                 budget: Budget) -> tuple[Decision, str]:
    market = BOOK[intent.symbol]
    by_account = decide(intent, account, market, policy)
    if budget.unlimited or not by_account.accepted:
        return by_account, "account"
    # copies of everything: no object the kept views hold is reused
    own = tuple(dataclasses.replace(p) for p in own)
    by_bot = decide(intent, fresh_account(dataclasses.replace(account), own, budget), market,
                    fresh_policy(dataclasses.replace(policy), budget))
    return stricter(by_account, by_bot)


def same(a: tuple[Decision, str], b: tuple[Decision, str]) -> None:
    assert a[1] == b[1]
    assert a[0].to_dict() == b[0].to_dict()


position = st.builds(
    Position, st.sampled_from(SYMBOLS), st.sampled_from(("long", "short")),
    st.floats(10.0, 400.0), st.floats(0.5, 40.0), st.floats(0.0, 3.0), st.floats(-20.0, 20.0),
    st.sampled_from((0.0, 49_000.0, 50_000.0, 50_123.5)))
step = st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(("long", "short")),
                 st.floats(45_000.0, 55_000.0), st.floats(300.0, 1_500.0),
                 st.sampled_from((None, 0.2, 0.5, 1.0)))  # None: the budget stays


@settings(max_examples=300, deadline=None)
@given(policy=st.sampled_from(sorted(POLICIES)), others=st.lists(position, max_size=6),
       own=st.lists(position, max_size=30), share=st.sampled_from((0.2, 0.5, 1.0)),
       max_positions=st.sampled_from((0, 2)), steps=st.lists(step, min_size=1, max_size=10),
       equity=st.floats(500.0, 20_000.0), wallet=st.sampled_from((None, 5_000.0)))
def test_kept_views_decide_as_fresh_ones(policy: str, others: list[Position],
                                         own: list[Position], share: float, max_positions: int,
                                         steps: list[tuple[str, str, float, float,
                                                           float | None]],
                                         equity: float, wallet: float | None) -> None:
    """A batch's decisions (the account and the bot's own positions grown by each accepted
    one, the budget changed by the admin now and then) are those of views made afresh."""
    pol = POLICIES[policy]
    mine = tuple(own)
    account = Account(equity=equity, positions=(*others, *mine), peak_equity=equity * 1.1,
                      realised_pnl_today=-equity * 0.01, wallet_balance=wallet)
    for symbol, side, price, atr, new_share in steps:
        if new_share is not None:
            share = new_share
        budget = Budget(share, bot_slots(share, max_positions, pol.limits.max_positions))
        intent = Intent(symbol, side, price, atr=atr)
        kept = decide_for_bot(intent, account, mine, BOOK[symbol], pol, budget)
        same(kept, fresh_decide(intent, account, mine, pol, budget))
        if kept[0].accepted:
            d = kept[0]
            held = Position(d.symbol, d.side, d.notional, d.margin, entry=d.entry_price)
            account = account.with_position(held)
            mine = (*mine, held)


def test_a_budget_change_is_never_served_a_stale_policy() -> None:
    """The same policy object under a changed budget gets the new budget's view."""
    pol = POLICIES["capped"]
    half, fifth = Budget(0.5, 3), Budget(0.2, 1)
    p_half = bot_policy(pol, half)
    assert bot_policy(pol, Budget(0.5, 3)) is p_half  # a new Budget, the same numbers
    p_fifth = bot_policy(pol, fifth)
    assert p_fifth is not p_half
    assert (p_fifth.limits.max_positions, p_fifth.limits.max_gross_exposure) == (1, 180.0)
    assert (p_half.limits.max_positions, p_half.limits.max_gross_exposure) == (3, 450.0)
    assert p_half == fresh_policy(pol, half) and p_fifth == fresh_policy(pol, fifth)
    # an equal policy that is another object is not taken for the first one
    twin = dataclasses.replace(pol)
    assert bot_policy(twin, half) == p_half and bot_policy(twin, half) is not p_half


def test_account_policy_is_kept_per_pair_of_policies() -> None:
    service, request = POLICIES["capped"], POLICIES["add"]
    made = account_policy(request, service)
    assert account_policy(request, service) is made
    assert made.limits == service.limits
    assert made.leverage.max == min(request.leverage.max, service.leverage.max)
    assert account_policy(service, request) is not made
    assert account_policy(service, service) is service


@pytest.mark.parametrize("n", [0, 1, 2, 25, 100])
def test_bot_account_equals_the_fresh_one(n: int) -> None:
    """Aggregates, folds and sums of the kept bot account, fresh, grown and reloaded (a
    batch's next decision; the next batch's copies of the same rows)."""
    own = tuple(Position(SYMBOLS[k % 3], ("long", "short")[k % 2], 10.0 + k, 1.0 + k / 7,
                         0.1, k - 5.0, entry=50_000.0 + 3 * k) for k in range(n))
    account = Account(equity=9_000.0, positions=own, peak_equity=9_500.0, wallet_balance=8_000.0)
    budget = Budget(0.4, 2)
    for mine in (own, tuple(own), own[:-1] + own[-1:], tuple(dataclasses.replace(p) for p in own)):
        kept, ref = bot_account(account, mine, budget), fresh_account(account, mine, budget)
        assert kept == ref
        assert (kept.margin_in_use, kept.gross_exposure, kept.available_margin) == \
            (ref.margin_in_use, ref.gross_exposure, ref.available_margin)
        assert kept.held_sums() == ref.held_sums()
        for s in SYMBOLS:
            for side in ("long", "short"):
                assert kept.held_fold(s, side) == ref.held_fold(s, side)
                assert kept.symbol_exposure(s) == ref.symbol_exposure(s)
        grown = (*mine, Position(SYMBOLS[0], "long", 33.0, 3.3, entry=50_001.0))
        assert bot_account(account, grown, budget) == fresh_account(account, grown, budget)
        assert bot_account(account, grown, budget).held_fold(SYMBOLS[0], "long") == \
            fresh_account(account, grown, budget).held_fold(SYMBOLS[0], "long")


def test_holding_is_replace_with_the_other_positions() -> None:
    mine = Account(equity=0.0, positions=(Position(SYMBOLS[0], "long", 50.0, 5.0),))
    account = Account(equity=1_000.0, losing_streak=2, halted="admin")
    view = account.holding(mine, equity=400.0)
    assert view == dataclasses.replace(account, positions=mine.positions, equity=400.0)
    assert view.margin_in_use == 5.0 and view.gross_exposure == 50.0
    with pytest.raises(TypeError):
        account.holding(mine, positions=())
    with pytest.raises(TypeError):
        account.holding(mine, _gross=1.0)
