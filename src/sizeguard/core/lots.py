"""Integer lots, step rounding and the two ccxt precision modes.

An order amount is always ``lots * step`` with ``lots`` a whole number. Rounding is always *down*
(toward zero) so a size never exceeds what the risk and the limits allowed; raising to an exchange
minimum is a separate, explicit step of the pipeline.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

# ccxt's precision modes (ccxt/base/decimal_to_precision.py uses the same numbers).
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4

# The rule, in exact decimal arithmetic: lots = floor((Q + e) / S) and ceil((Q - e) / S), where
# Q is the quantity's shortest decimal repr (what ccxt's amount_to_precision truncates), S the
# step's, and the nudge e = max(a billionth of a lot, Q x 2^-51) forgives float noise: 2.99999..96
# lots where 3 is meant (0.003 / 0.001), or 10.867999999999999 for 2.717 / 0.25 = 10.868. The
# relative part is one to two ulps of the quantity, below which a float cannot tell a fraction
# of a lot from noise; it never admits more (a relative nudge of ~9 ulps once rounded DOGE at
# 1e14 lots *up*: 1351081.83316821 for 1351081.8331682).
_ABS_EPS = 1e-9
_REL_EPS = 2.0**-51
# The float quotient q / s is within ~3.3e-16 x (q / s) of Q / S (q and s each round their
# decimal by half an ulp, the division by another). Outside a window of twice that (plus a
# little for the nudge's own rounding) around a whole lot the float floor is the exact one;
# inside it the decimal check decides. Below ~1e6 lots the window is far under a billionth of a
# lot, so the decimal path is rare; at 1e14 lots (Kraken's 1e-8 steps) it is a tenth of a lot.
_REL_WINDOW = 8e-16
_ABS_WINDOW = 1e-15


def floor_lots_float(quantity: float, step: float) -> int:
    """:func:`floor_lots` from floats alone, or -1 when the float quotient lies too near a whole
    lot to tell (numba-compilable: a compiled caller falls back to :func:`floor_lots`)."""
    if quantity <= 0.0:
        return 0
    x = quantity / step
    y = x + max(_ABS_EPS, x * _REL_EPS)
    n = math.floor(y)
    frac = y - n
    window = x * _REL_WINDOW + _ABS_WINDOW
    if window < frac < 1.0 - window:
        return int(n)
    return -1


def ceil_lots_float(quantity: float, step: float) -> int:
    """:func:`ceil_lots` from floats alone, or -1 when ambiguous (numba-compilable)."""
    if quantity <= 0.0:
        return 0
    x = quantity / step
    y = x - max(_ABS_EPS, x * _REL_EPS)
    n = math.ceil(y)
    gap = n - y
    window = x * _REL_WINDOW + _ABS_WINDOW
    if window < gap < 1.0 - window:
        return int(n)
    return -1


def _decimals(quantity: float, step: float) -> tuple[Decimal, Decimal, Decimal]:
    """Q, S and the nudge e of the exact rule (call inside a wide decimal context)."""
    q, s = Decimal(repr(quantity)), decimal_step(step)
    return q, s, max(s * Decimal(_ABS_EPS), q * Decimal(_REL_EPS))


def floor_lots(quantity: float, step: float) -> int:
    """Whole lots of ``step`` in ``quantity``, rounded down (never negative, never up)."""
    n = floor_lots_float(quantity, step)
    if n >= 0:
        return n
    with localcontext() as ctx:
        ctx.prec = 60  # 1e20 lots of 1e-12 still divide exactly
        q, s, e = _decimals(quantity, step)
        return int((q + e) // s)  # positive: // truncates, which is the floor here


def ceil_lots(quantity: float, step: float) -> int:
    """Whole lots of ``step`` needed to reach ``quantity``, rounded up."""
    n = ceil_lots_float(quantity, step)
    if n >= 0:
        return n
    with localcontext() as ctx:
        ctx.prec = 60
        q, s, e = _decimals(quantity, step)
        below = q - e
        if below <= 0:
            return 0
        lots = int(below // s)
        return lots + 1 if lots * s < below else lots


def step_from_precision(value: float, mode: int) -> float:
    """The step (or tick) a ccxt ``precision`` entry means in the given precision mode.

    DECIMAL_PLACES: ``3`` means 0.001 and ``0`` means 1. TICK_SIZE: the value is the step itself.
    """
    if mode == DECIMAL_PLACES:
        if value != int(value) or value < 0:
            raise ValueError(f"decimal places must be a whole number >= 0, got {value!r}")
        return float(Decimal(1).scaleb(-int(value)))
    if mode == TICK_SIZE:
        if not value > 0:
            raise ValueError(f"tick size must be > 0, got {value!r}")
        return float(value)
    raise ValueError(f"unsupported precision mode {mode!r} (DECIMAL_PLACES=2 or TICK_SIZE=4)")


def decimal_step(step: float) -> Decimal:
    """The step as an exact decimal: the shortest repr of the float (0.001, not 0.00100000000000000002)."""
    return Decimal(repr(step)).normalize()


def decimal_units(step: Decimal) -> tuple[int, int]:
    """``step`` as whole ``units`` of ``10^-places`` (0.001: (1, 3); 0.25: (25, 2); 1E+1:
    (10, 0)), what :func:`format_lots` multiplies in integers."""
    _, digits, exponent = step.as_tuple()
    units = 0
    for d in digits:
        units = units * 10 + d
    assert isinstance(exponent, int), f"a lot step is a finite decimal, not {step}"
    if exponent >= 0:
        return units * 10**exponent, 0
    return units, -exponent


def format_lots(lots: int, units: int, places: int) -> str:
    """``lots x units x 10^-places`` as a plain decimal string with no exponent and no trailing
    zeros, exact at any size (whole numbers only, no decimal context to round)."""
    n = lots * units
    if n == 0:
        return "0"
    text = str(abs(n))
    if places > 0:
        if len(text) <= places:
            text = "0" * (places + 1 - len(text)) + text
        whole, frac = text[:-places], text[-places:].rstrip("0")
        text = whole + "." + frac if frac else whole
    return "-" + text if n < 0 else text


def format_amount(lots: int, step: Decimal) -> str:
    """``lots * step`` as a plain decimal string with no exponent and no trailing zeros."""
    units, places = decimal_units(step)
    return format_lots(lots, units, places)
