"""Every float tolerance of the decision pipeline, named once.

Money is in floats, so "equal" and "strictly beyond" need a slack; these are the only two
slacks the pipeline uses (lot rounding has its own, documented in :mod:`sizeguard.core.lots`).

``FLOAT_SLACK`` (1e-12, relative) is float noise: two sizes this close are the same size, so a
cap "cuts" only when it cuts more than this, and a size "reaches" a minimum within it.

``SAFETY_SLACK`` (1e-9) is a margin kept on safety checks: a guarded leverage stays this much
below the limit (strictly beyond the guarded distance, not on it), a raised order must respect
a cap to within it, and whole-number leverage is nudged by it before rounding (2.9999999999 is
3, not 2).
"""

from __future__ import annotations

FLOAT_SLACK = 1e-12
SAFETY_SLACK = 1e-9

# Fixed-point rounds of step 7 (leverage, tier, guard); tiers only move down, so few settle it.
LEVERAGE_ROUNDS = 6
# Re-evaluations of a liquidation price with the bracket *at* that price.
LIQUIDATION_ROUNDS = 4
# Bisection steps for a continuous leverage (2^-40 of the interval: far below any tick).
BISECTION_STEPS = 40
