"""Integer lots, step rounding and the two ccxt precision modes.

An order amount is always ``lots * step`` with ``lots`` a whole number. Rounding is always *down*
(toward zero) so a size never exceeds what the risk and the limits allowed; raising to an exchange
minimum is a separate, explicit step of the pipeline.
"""

from __future__ import annotations

import math
from decimal import Decimal

# ccxt's precision modes (ccxt/base/decimal_to_precision.py uses the same numbers).
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4

# Float division leaves 2.9999999999999996 where 3 is meant (0.003 / 0.001); a nudge of a
# billionth of a lot, plus a relative term for huge counts, keeps exact multiples exact without
# ever admitting a meaningful fraction of a lot.
_ABS_EPS = 1e-9
# The relative term is ~10 ulps of the lot count: 1e-12 admitted 7% of a lot at 7e10 lots
# (DOGE at a 1e-6 step) and rounded up where ccxt's amount_to_precision truncates.
_REL_EPS = 2e-15


def floor_lots(quantity: float, step: float) -> int:
    """Whole lots of ``step`` in ``quantity``, rounded down (never negative)."""
    if quantity <= 0.0:
        return 0
    x = quantity / step
    return int(math.floor(x + _ABS_EPS + x * _REL_EPS))


def ceil_lots(quantity: float, step: float) -> int:
    """Whole lots of ``step`` needed to reach ``quantity``, rounded up."""
    if quantity <= 0.0:
        return 0
    x = quantity / step
    return int(math.ceil(x - _ABS_EPS - x * _REL_EPS))


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


def format_amount(lots: int, step: Decimal) -> str:
    """``lots * step`` as a plain decimal string with no exponent and no trailing zeros."""
    value = (Decimal(lots) * step).normalize()
    text = format(value, "f")
    return text if text != "-0" else "0"
