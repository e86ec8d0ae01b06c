"""An add's held position, merged once per account (Account.held_fold, grown by with_position),
and the positions' sums a cross position's collateral counts (Account.held_sums) give the
decision the walk over every position gives, bit for bit: the walks in core.decide
(``_held_position``, ``Context.cross_collateral``) are the reference, taken here by making
held_fold and held_sums answer None. Run on the pure-Python and on the compiled build
(SIZEGUARD_PURE=1 or not)."""

from __future__ import annotations

import json
import math
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from sizeguard import InvalidInput, decide
from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.intent import Intent
from sizeguard.core.position import average_entry

BOOK = load_markets(None)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
PRICE = {BTC: 87_669.0, ETH: 3_000.0}
POLICIES = [load_policy("viper-fixed-margin", sets=["limits.allow_add=true"]),
            load_policy("ai-atr-risk", sets=["limits.allow_add=true"]),
            load_policy("ai-atr-risk", sets=["limits.allow_add=true",
                                             'liquidation.guard="shrink"']),
            load_policy("ai-atr-risk", sets=["limits.allow_add=true",
                                             'leverage.margin_mode="cross"']),
            load_policy("viper-fixed-margin", sets=["limits.allow_add=true",
                                                    'leverage.margin_mode="cross"'])]

money = st.floats(min_value=0.0, max_value=1e5)
notional = st.one_of(*[st.floats(min_value=1e-3, max_value=5e4)] * 6, st.just(0.0),
                     st.just(-0.0), st.floats(min_value=-5e4, max_value=-1e-3))
# an entry relative to the price: known (a factor, mostly), unknown (0 or negative), or NaN
known = st.floats(min_value=0.5, max_value=1.5)
entry = st.one_of(*[known] * 12, st.sampled_from([0.0, -1.0, math.nan]))
# the margin: at a leverage (mostly), any, or not a float
leverage = st.floats(min_value=1, max_value=60)
margin = st.one_of(*[st.none()] * 12, money, st.integers(min_value=0, max_value=1000))


@st.composite
def positions(draw: Any) -> Position:
    sym = draw(st.sampled_from([BTC, BTC, BTC, BTC, ETH]))
    factor, n, m = draw(entry), draw(notional), draw(margin)
    return Position(sym, draw(st.sampled_from(["long", "long", "long", "long", "short"])), n,
                    abs(n) / draw(leverage) if m is None else m, draw(money) / 100,
                    draw(st.one_of(*[st.floats(-1e3, 1e3)] * 8, st.integers(-10, 10))),
                    entry=factor * PRICE[sym] if factor > 0 else factor)


def walk(positions: tuple[Position, ...], symbol: str, side: str, price: float
         ) -> tuple[float, float, float, bool] | None:
    """The walk of core.decide's _held_position, as it was before the fold (the reference)."""
    held: tuple[float, float, float, bool] | None = None
    for p in positions:
        if p.symbol != symbol or p.side != side or p.notional == 0:
            continue
        n, known = abs(p.notional), p.entry > 0
        e = p.entry if known else price
        if held is None:
            held = (n, e, p.margin, known)
        else:
            held = (held[0] + n, average_entry(held[0], held[1], n, e), held[2] + p.margin,
                    held[3] and known)
    return held


def _answer(intent: Intent, account: Account, policy: Any) -> str:
    try:
        return json.dumps(decide(intent, account, BOOK[intent.symbol], policy).to_dict(),
                          sort_keys=True)
    except InvalidInput as exc:
        return str(exc)


def _walked(intent: Intent, account: Account, policy: Any) -> str:
    """The answer with the walk over the positions (the fold never given)."""
    with mock.patch.object(Account, "held_fold", lambda self, symbol, side: None), \
            mock.patch.object(Account, "held_sums", lambda self: None):
        return _answer(intent, account, policy)


@settings(max_examples=500, deadline=None)
@given(st.lists(positions(), min_size=3, max_size=16), st.integers(min_value=0, max_value=16),
       st.lists(st.booleans(), min_size=16, max_size=16), st.booleans(),
       st.sampled_from(["long", "short"]), st.floats(min_value=0.9, max_value=1.1),
       st.sampled_from(range(len(POLICIES))), st.floats(min_value=500, max_value=1e6),
       st.booleans())
def test_the_fold_decides_as_the_walk(held: list[Position], start: int, ask: list[bool],
                                      other: bool, side: str, move: float, k: int,
                                      equity: float, wallet: bool) -> None:
    # mostly an add to the first position's symbol and side, now and then a new position
    symbol = (ETH if held[0].symbol == BTC else BTC) if other else held[0].symbol
    side = side if other else held[0].side
    policy = POLICIES[k]
    intent = Intent(symbol, side, PRICE[symbol] * move, atr=PRICE[symbol] * 0.02,
                    confidence=0.6)
    given = equity * 0.9 if wallet else None
    direct = Account(equity=equity, positions=tuple(held), wallet_balance=given)
    # the same account grown a reservation at a time, the fold asked (and grown) on the way
    grown = Account(equity=equity, positions=tuple(held[:start]), wallet_balance=given)
    for j, p in enumerate(held[start:]):
        if ask[j]:
            grown.held_fold(symbol, side)
            grown.held_sums()
            _answer(intent, grown, policy)
        grown = grown.with_position(p)
    assert grown == direct
    for account in (direct, grown):  # the fold's bits (repr) are the walk's
        fold = account.held_fold(symbol, side)
        if fold is not None:
            merged = walk(account.positions, symbol, side, intent.price)
            assert repr(fold) == repr((*merged[:3], fold[3]) if merged else (0.0, 0.0, 0.0, 0))
            assert merged is None or merged[3]
        sums = account.held_sums()
        if sums is not None:  # as the walk adds them (and sum() on Python < 3.12)
            mm = upnl = 0.0
            for p in account.positions:
                mm += p.maintenance_margin
                upnl += p.unrealised_pnl
            assert repr(sums) == repr((mm, upnl))
    reference = _walked(intent, direct, policy)
    assert _answer(intent, direct, policy) == reference
    assert _answer(intent, direct, policy) == reference  # asked again: the fold kept
    assert _answer(intent, grown, policy) == reference


def test_the_fold_is_the_walk_merged_once() -> None:
    held = tuple(Position(BTC, "long", 100.0 + k, 2.0, entry=PRICE[BTC] + 7.0 * k)
                 for k in range(30))
    account = Account(equity=1e4, positions=(*held[:10], Position(BTC, "short", 5.0, 1.0, entry=9.0),
                                             Position(ETH, "long", 5.0, 1.0, entry=0.0),
                                             Position(BTC, "long", 0.0, 0.0)))
    for p in held[10:]:
        account = account.with_position(p)
    fold = account.held_fold(BTC, "long")
    assert fold is not None and fold[3] == 30 and fold[0] == sum(100.0 + k for k in range(30))
    assert account.held_fold(BTC, "long") is fold  # kept
    assert account.held_fold(BTC, "short") == (5.0, 9.0, 1.0, 1)
    assert account.held_fold(ETH, "long") is None  # an unknown entry: valued at the price
    assert account.held_fold(ETH, "short") == (0.0, 0.0, 0.0, 0)  # none held
    # an unknown entry joining a kept fold turns it into a walk
    assert account.with_position(Position(BTC, "long", 1.0, 1.0)).held_fold(BTC, "long") is None


def test_the_fold_is_no_part_of_the_account_value() -> None:
    held = (Position(BTC, "long", 100.0, 2.0, entry=PRICE[BTC]),)
    asked, fresh = Account(equity=1e4, positions=held), Account(equity=1e4, positions=held)
    asked.held_fold(BTC, "long")
    assert asked == fresh and repr(asked) == repr(fresh)
