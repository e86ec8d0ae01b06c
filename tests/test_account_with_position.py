"""Account.with_position (the batch's way to add a reservation) equals rebuilding the account
with the position appended, aggregates included, for any positions, odd values too."""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

from hypothesis import given
from hypothesis import strategies as st

from sizeguard.core.account import Account, Position, SymbolStats

money = st.one_of(st.floats(min_value=-1e9, max_value=1e12), st.just(math.nan),
                  st.just(math.inf), st.just(-0.0))
positions = st.builds(Position, st.sampled_from(["BTC", "ETH", "SOL"]),
                      st.sampled_from(["long", "short"]), money, money, money, money,
                      st.floats(min_value=0, max_value=1e6))


def _aggregates(a: Account) -> tuple[object, ...]:
    return (repr(a.margin_in_use), repr(a.gross_exposure), a.positions_suspect,
            {s: repr(a.symbol_exposure(s)) for s in ("BTC", "ETH", "SOL")},
            {s: a.has_position(s) for s in ("BTC", "ETH", "SOL")})


@given(st.lists(positions, max_size=8), positions, st.floats(min_value=1, max_value=1e9),
       st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)))
def test_with_position_equals_the_rebuilt_account(held: list[Position], new: Position,
                                                  equity: float, available: float | None) -> None:
    account = Account(equity, available, tuple(held), peak_equity=equity * 2,
                      realised_pnl_today=-3.5, losing_streak=2,
                      symbol_stats=MappingProxyType({"BTC": SymbolStats(3, 1)}),
                      last_trade_at=MappingProxyType({"BTC": 1.0}),
                      min_cost=MappingProxyType({"ETH": 5.0}), wallet_balance=equity / 2,
                      halted="maintenance")
    before = _aggregates(account)
    added = account.with_position(new)
    rebuilt = dataclasses.replace(account, positions=(*held, new))
    assert added == rebuilt  # every field an Account is made of
    assert _aggregates(added) == _aggregates(rebuilt)  # bit for bit (repr), NaN included
    assert _aggregates(account) == before  # the original is untouched
    assert added.available_margin == rebuilt.available_margin or (
        math.isnan(added.available_margin) and math.isnan(rebuilt.available_margin))
