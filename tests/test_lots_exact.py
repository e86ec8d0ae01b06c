"""Lot rounding is exact at any lot count (issue 10, item 7 / measurement 5).

The rule, in exact decimals: ``floor_lots = floor((Q + e) / S)`` and
``ceil_lots = ceil((Q - e) / S)`` with Q the quantity's shortest repr (what ccxt's
``amount_to_precision`` truncates), S the step's and the float-noise nudge
``e = max(1e-9 x S, Q x 2^-51)`` (a billionth of a lot, or one to two ulps of the quantity).
The float fast path must agree with it everywhere, including at 1e14 lots where a lot is only a
few ulps of the quantity.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import pytest
from ccxt.base.decimal_to_precision import TICK_SIZE, TRUNCATE, decimal_to_precision
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import shared_path
from sizeguard import _native
from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.core.lots import ceil_lots, ceil_lots_float, floor_lots, floor_lots_float

REL = Fraction(1, 2**51)
STEPS = [10.0**-k for k in range(13)] + [0.5, 0.25, 5.0, 10.0, 100.0, 0.0025]


def exact(quantity: float, step: float) -> tuple[Fraction, Fraction]:
    """Q / S and the nudge in lots."""
    q, s = Fraction(repr(quantity)), Fraction(repr(step))
    return q / s, max(Fraction(1, 10**9), q * REL / s)


def test_kraken_doge_measurement_floors_exactly() -> None:
    # viper-50x on Kraken DOGE/USDT (spot, step 1e-8) at 0.04872, equity 658,247.0691195515:
    # margin cap 10% = 65,824.70691195515 / 0.04872 = 1,351,081.833168209 DOGE (float);
    # 135,108,183,316,820.9 lots -> 135,108,183,316,820 = 1351081.8331682 (it once gave ...821)
    assert floor_lots(1351081.833168209, 1e-8) == 135_108_183_316_820
    m = load_markets(shared_path("markets", "kraken.json"))["DOGE/USDT"]
    d = decide(Intent("DOGE/USDT", "long", 0.04872, stop_pct=2.0),
               Account(equity=658_247.0691195515), m, load_policy("viper-50x"))
    assert d.accepted
    assert d.amount == "1351081.8331682"
    assert d.amount == decimal_to_precision(1351081.833168209, TRUNCATE, 1e-8, TICK_SIZE)


@settings(max_examples=400, deadline=None)
@given(st.floats(1e-12, 1e12, allow_nan=False, allow_infinity=False), st.sampled_from(STEPS))
@example(1351081.833168209, 1e-8)
@example(0.003, 0.001)
@example(0.1 + 0.2, 0.1)
@example(8_562_584.048063919, 1e-06)
@example(2.717 / 0.25, 1e-8)
def test_floor_and_ceil_are_exact(quantity: float, step: float) -> None:
    x, nudge = exact(quantity, step)
    lots = floor_lots(quantity, step)
    assert lots == math.floor(x + nudge)
    assert ceil_lots(quantity, step) == max(math.ceil(x - nudge), 0)
    # never rounds up by more than the noise a float cannot tell from a whole lot
    assert lots <= x + nudge
    assert nudge <= max(Fraction(1, 10**9), x / 2**50)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**15), st.sampled_from(STEPS), st.integers(-3, 3))
def test_exact_multiples_and_their_neighbours(lots: int, step: float, ulps: int) -> None:
    # the float nearest lots x step, nudged a few ulps either way: exactly the decimal rule
    q = float(Fraction(lots) * Fraction(repr(step)))
    for _ in range(abs(ulps)):
        q = math.nextafter(q, math.inf if ulps > 0 else 0.0)
    if q <= 0:
        return
    x, nudge = exact(q, step)
    assert floor_lots(q, step) == math.floor(x + nudge)
    assert ceil_lots(q, step) == max(math.ceil(x - nudge), 0)


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-8, 1e9, allow_nan=False), st.sampled_from(STEPS))
def test_agrees_with_ccxt_truncation_away_from_the_nudge(quantity: float, step: float) -> None:
    x, nudge = exact(quantity, step)
    if math.floor(x + nudge) > math.floor(x):
        return  # within the float noise of the next lot: we forgive it, ccxt does not
    got = floor_lots(quantity, step)
    want = decimal_to_precision(quantity, TRUNCATE, step, TICK_SIZE)
    assert Fraction(got) * Fraction(repr(step)) == Fraction(want)


def test_float_kernels_compile_and_defer_when_ambiguous() -> None:
    source = _native.source("lots")  # numba compiles Python source, as the backtest does
    f, c = numba.njit(source.floor_lots_float), numba.njit(source.ceil_lots_float)
    assert f(0.003, 0.001) == floor_lots_float(0.003, 0.001) == 3
    assert c(0.0030000001, 0.001) == ceil_lots_float(0.0030000001, 0.001) == 4
    assert f(1351081.833168209, 1e-8) == -1  # too near a whole lot for floats alone
    assert f(0.0, 1.0) == 0 and c(-1.0, 1.0) == 0


@pytest.mark.parametrize(("quantity", "step", "lots"), [
    (0.003, 0.001, 3), (0.1 + 0.2, 0.1, 3), (8_562_584.048063919, 1e-06, 8_562_584_048_063),
    (1351081.833168209, 1e-8, 135_108_183_316_820),
    (2.717 / 0.25, 1e-8, 1_086_800_000),  # 10.867999999999999: float noise of 10.868
])
def test_floor_lots_examples(quantity: float, step: float, lots: int) -> None:
    assert floor_lots(quantity, step) == lots
