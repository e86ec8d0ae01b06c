"""The backtest's faster constructor for the core's frozen value dataclasses builds exactly the
object the dataclass's own ``__init__`` builds: same class, every slot (the private aggregates
``__post_init__`` computes included), defaults and default factories; and it gives the class
itself back where it cannot reproduce it."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizeguard.backtest import engine
from sizeguard.backtest.fastinit import constructor
from sizeguard.core.account import Account, Position, SymbolStats
from sizeguard.core.intent import LONG, SHORT, Intent


def slots(obj: Any) -> dict[str, Any]:
    """Every slot of ``obj`` (set or not), through the class's own descriptors."""
    out = {}
    for name in type(obj).__slots__:
        try:
            out[name] = getattr(obj, name)
        except AttributeError:
            out[name] = "<unset>"
    return out


def same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    assert slots(a) == slots(b)
    assert a == b and repr(a) == repr(b)


money = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
opt = st.none() | money
positions = st.lists(st.builds(Position, st.sampled_from(["BTC", "ETH"]),
                               st.sampled_from([LONG, SHORT]), money, money, money, money),
                     max_size=3).map(tuple)


@given(equity=money, available=opt, pos=positions, peak=opt, day=money,
       streak=st.integers(0, 50), n=st.integers(0, 9), halted=st.none() | st.just("ops"))
def test_account_equals_the_dataclass(equity: float, available: float | None,
                                      pos: tuple[Position, ...], peak: float | None, day: float,
                                      streak: int, n: int, halted: str | None) -> None:
    make = constructor(Account)
    stats = MappingProxyType({"BTC": SymbolStats(n + 1, n)})
    kw = dict(equity=equity, available=available, positions=pos, peak_equity=peak,
              realised_pnl_today=day, losing_streak=streak, symbol_stats=stats, halted=halted)
    built, real = make(**kw), Account(**kw)
    same(built, real)
    # the aggregates __post_init__ computes are there (a slot left unset would raise)
    assert built.margin_in_use == real.margin_in_use and built.gross_exposure == real.gross_exposure
    assert built.positions_suspect == real.positions_suspect
    # defaults and default factories: a fresh mapping each time, as the dataclass's
    same(make(equity), Account(equity))
    assert make(1.0)._by_symbol is not make(1.0)._by_symbol  # noqa: SLF001 - the factory ran


@given(price=st.floats(0.01, 1e6), atr=opt, conf=st.none() | st.floats(0, 1),
       when=st.none() | st.floats(0, 2e9), side=st.sampled_from([LONG, SHORT]))
def test_intent_equals_the_dataclass(price: float, atr: float | None, conf: float | None,
                                     when: float | None, side: str) -> None:
    make = constructor(Intent)
    kw = dict(symbol="BTC/USDT:USDT", side=side, price=price, atr=atr, confidence=conf,
              time=when)
    same(make(**kw), Intent(**kw))
    same(make("ETH", side, price), Intent("ETH", side, price))  # positional, as __init__


def test_the_engine_builds_entries_with_it() -> None:
    # what run_backtest calls is the generated builder, not the class (else the speed is gone)
    assert engine.make_intent is not Intent and engine.make_account is not Account
    with pytest.raises(TypeError):
        engine.make_account()  # equity is required, as Account(...) requires it


def test_what_it_cannot_reproduce_gets_the_class_back() -> None:
    @dataclasses.dataclass(frozen=True)  # no slots
    class Plain:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        x: int
        scale: dataclasses.InitVar[int] = 1

    @dataclasses.dataclass(frozen=True, slots=True)
    class KwOnly:
        x: int = dataclasses.field(kw_only=True)

    class NotADataclass:
        pass

    for cls in (Plain, WithInitVar, KwOnly, NotADataclass):
        assert constructor(cls) is cls
