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

from sizeguard.backtest import entries
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
    assert entries.make_intent is not Intent and entries.make_account is not Account
    with pytest.raises(TypeError):
        entries.make_account()  # equity is required, as Account(...) requires it


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


@given(equity=money, available=opt, peak=opt, day=money, streak=st.integers(0, 50),
       n=st.integers(0, 9), halted=st.none() | st.just("ops"))
def test_a_flat_account_equals_the_dataclass(equity: float, available: float | None,
                                             peak: float | None, day: float, streak: int,
                                             n: int, halted: str | None) -> None:
    # positions held at (): __post_init__ ran once, on a prototype; every object gets its slots
    make = constructor(Account, {"positions": ()})
    stats = MappingProxyType({"BTC": SymbolStats(n + 1, n)})
    built = make(equity, available, peak, day, streak, stats, halted=halted)
    real = Account(equity, available, (), peak, day, streak, stats, halted=halted)
    same(built, real)
    assert built.margin_in_use == 0.0 and not built.positions_suspect
    assert not built.has_position("BTC")
    # the aggregate dict is each object's own, as a run of __post_init__ gives
    assert make(1.0)._by_symbol is not make(1.0)._by_symbol  # noqa: SLF001
    with pytest.raises(TypeError):
        make(1.0, positions=())  # no longer a parameter
    # what the engine builds with it, positional (its fields in order, less positions)
    same(entries.make_flat_account(equity, None, peak, day, streak, stats, stats, stats),
         Account(equity, None, (), peak, day, streak, stats, stats, stats))


def test_fixed_fields_it_cannot_honour_are_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Scaled:
        x: float
        y: float = 0.0
        total: float = dataclasses.field(init=False, default=0.0)

        def __post_init__(self) -> None:  # reads y, which is not held
            object.__setattr__(self, "total", self.x + self.y)

    with pytest.raises(TypeError, match="reads more than"):
        constructor(Scaled, {"x": 1.0})
    with pytest.raises(TypeError, match="no init fields"):
        constructor(Scaled, {"total": 1.0})
    make = constructor(Scaled, {"x": 1.0, "y": 2.0})
    same(make(), Scaled(1.0, 2.0))

    @dataclasses.dataclass(frozen=True, slots=True)
    class Normalised:
        x: float
        y: float = 0.0

        def __post_init__(self) -> None:  # writes an init field: not reproducible by copying
            object.__setattr__(self, "y", abs(self.x))

    with pytest.raises(TypeError, match="sets an init field"):
        constructor(Normalised, {"x": -1.0})


@pytest.fixture(params=[True, False], ids=["slot-writes", "generated"])
def native(request: pytest.FixtureRequest) -> bool:
    """Both ways a Builder builds: writing each slot (what the compiled module does; plain
    object.__setattr__ as Python) and fastinit's generated constructor."""
    return bool(request.param)


def _builder(cls: type[Any], native: bool, fixed: dict[str, Any] | None = None
             ) -> entries.Builder:
    b = entries.Builder(cls, fixed)
    b.native = native
    return b


@given(equity=money, available=opt, pos=positions, peak=opt, day=money,
       streak=st.integers(0, 50), n=st.integers(0, 9), halted=st.none() | st.just("ops"))
def test_builder_account_equals_the_dataclass(equity: float, available: float | None,
                                              pos: tuple[Position, ...], peak: float | None,
                                              day: float, streak: int, n: int,
                                              halted: str | None) -> None:
    stats = MappingProxyType({"BTC": SymbolStats(n + 1, n)})
    real = Account(equity, available, pos, peak, day, streak, stats, halted=halted)
    flat = Account(equity, available, (), peak, day, streak, stats, stats, stats)
    for native in (True, False):
        every = (equity, available, pos, peak, day, streak, stats, MappingProxyType({}),
                 MappingProxyType({}), None, halted)
        same(_builder(Account, native).build(every), real)
        same(_builder(Account, native, {"positions": ()}).build(
            (equity, available, peak, day, streak, stats, stats, stats)), flat)


def test_builder_defaults_and_fresh_objects(native: bool) -> None:
    # the parameters left out take their defaults (a default factory runs for each object);
    # a held dict is each object's own copy, as a run of __post_init__ gives
    build = _builder(Account, native).build
    same(build((5.0,)), Account(5.0))
    assert build((5.0,)).symbol_stats is not build((5.0,)).symbol_stats  # the factory ran
    flat = _builder(Account, native, {"positions": ()}).build
    assert flat((1.0,))._by_symbol is not flat((1.0,))._by_symbol  # noqa: SLF001
    same(flat((1.0,)), Account(1.0))
    with pytest.raises(TypeError):
        build(())  # equity is required, as Account(...) requires it
    same(_builder(SymbolStats, native).build((3, 1)), SymbolStats(3, 1))


@given(price=st.floats(0.01, 1e6), atr=opt, conf=st.none() | st.floats(0, 1),
       when=st.none() | st.floats(0, 2e9), side=st.sampled_from([LONG, SHORT]))
def test_builder_intent_equals_the_dataclass(price: float, atr: float | None,
                                             conf: float | None, when: float | None,
                                             side: str) -> None:
    # as the engine builds it: every field, in order
    for native in (True, False):
        built = _builder(Intent, native).build(("BTC", side, price, None, None, atr, 1.5, None,
                                                conf, "trend", None, None, None, when))
        same(built, Intent("BTC", side, price, atr=atr, atr_mult=1.5, confidence=conf,
                           regime="trend", time=when))


def test_the_compiled_module_writes_the_slots() -> None:
    # the compiled build's Builders write the slots; the Python source's call the generated
    # constructors (its own faster way)
    assert entries.INTENT.native is entries.NATIVE and entries.ACCOUNT.native is entries.NATIVE
    assert entries.NATIVE is not str(entries.__file__).endswith(".py")
