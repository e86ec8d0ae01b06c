"""Monte Carlo properties (seeded): reproducible, exact on sequences whose order cannot
matter, ruin and drawdown behave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sizeguard.backtest.montecarlo import simulate
from sizeguard.errors import InvalidInput

RETURNS = np.random.default_rng(7).normal(0.002, 0.03, 300)


def test_seeded_and_reproducible() -> None:
    a = simulate(RETURNS, n_paths=500, seed=3)
    b = simulate(RETURNS, n_paths=500, seed=3)
    c = simulate(RETURNS, n_paths=500, seed=4)
    np.testing.assert_array_equal(a.final, b.final)
    assert not np.array_equal(a.final, c.final)


def test_constant_returns_are_exact() -> None:
    m = simulate(np.full(10, 0.01), n_paths=100, n_trades=50, initial=1000.0)
    np.testing.assert_allclose(m.final, 1000.0 * 1.01**50)
    assert m.max_drawdown.max() == 0.0 and m.probability_of_ruin == 0.0


def test_full_circular_blocks_only_rotate_the_sequence() -> None:
    # one block as long as the ledger = a rotation of the trades: same product on every path
    m = simulate(RETURNS, n_paths=200, method="block", block=RETURNS.size)
    np.testing.assert_allclose(m.final, np.prod(1 + RETURNS), rtol=1e-9)


def test_a_total_loss_ruins_the_paths_that_draw_it() -> None:
    r = np.array([0.05, 0.05, -1.0, 0.05])
    m = simulate(r, n_paths=4000, n_trades=4, seed=1)
    drew = m.final == 0.0
    assert drew.any() and (~drew).any()
    np.testing.assert_array_equal(m.ruined, drew | (m.final <= 0.5))
    # P(at least one -100% in 4 draws of 4) = 1 - (3/4)^4 = 0.684
    assert m.probability_of_ruin == pytest.approx(1 - 0.75**4, abs=0.03)
    assert m.max_drawdown[drew].min() == 1.0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5), min_size=1, max_size=40), st.integers(0, 2**31),
       st.sampled_from(["bootstrap", "block"]))
def test_properties(returns: list[float], seed: int, method: str) -> None:
    m = simulate(returns, n_paths=64, n_trades=30, method=method, block=5, seed=seed, ruin=0.3)
    assert (m.max_drawdown >= 0).all() and (m.max_drawdown <= 1).all()
    assert (m.final >= 0).all()
    # ending below the ruin level means ruin was hit
    assert m.ruined[m.final <= 0.3].all()
    # a stricter threshold can only ruin more paths
    assert simulate(returns, n_paths=64, n_trades=30, method=method, block=5, seed=seed,
                    ruin=0.6).probability_of_ruin >= m.probability_of_ruin
    s = m.summary()
    assert s["final_equity_p5"] <= s["final_equity_p50"] <= s["final_equity_p95"]


def test_bad_input() -> None:
    with pytest.raises(InvalidInput, match="returns"):
        simulate([])
    with pytest.raises(InvalidInput, match="-1"):
        simulate([-1.5])
    with pytest.raises(InvalidInput, match="method"):
        simulate([0.1], method="jackknife")
