"""Liquidation maths: bankruptcy price, step, ADL ranks, exact splits."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.math.liquidation import (
    calc_adl_ranks,
    calc_adl_ranks_array,
    calc_adl_score,
    calc_bankruptcy_price_micro,
    calc_liquidation_step_atoms,
    calc_pro_rata_split,
)

BTC = 10**8


def test_bankruptcy_price_worked_example() -> None:
    # long 1 BTC at a $50,000 mark with $2,000 of equity: bankrupt at $48,000; short 2 BTC: $51,000
    assert calc_bankruptcy_price_micro(2_000 * 10**6, BTC, 50_000 * 10**6) == 48_000 * 10**6
    assert calc_bankruptcy_price_micro(2_000 * 10**6, -2 * BTC, 50_000 * 10**6) == 51_000 * 10**6
    # negative equity: already beyond the mark
    assert calc_bankruptcy_price_micro(-1_000 * 10**6, BTC, 50_000 * 10**6) == 51_000 * 10**6


@given(
    st.integers(-(10**12), 10**12),
    st.integers(1, 10**11).flatmap(lambda s: st.sampled_from([s, -s])),
    st.integers(10**6, 10**11),
)
def test_at_the_bankruptcy_price_equity_is_zero_or_just_above(equity: int, size: int, mark: int) -> None:
    p_b = calc_bankruptcy_price_micro(equity, size, mark)
    if p_b == 1:
        return  # clamped at the floor
    after = Fraction(equity) + Fraction(size * (p_b - mark), BTC)
    assert 0 <= after < Fraction(abs(size), BTC)  # never below zero, by less than one micro-step


@given(
    st.integers(0, 10**12),
    st.integers(1, 10**12),
    st.integers(10**6, 10**11),
    st.integers(1, 10**12),
    st.integers(1_000, 200_000),
    st.integers(0, 1_000),
    st.integers(0, 500_000),
)
def test_the_step_restores_the_margin_when_the_position_allows(
    equity: int, mm: int, mark: int, size: int, rate: int, fee: int, buffer: int
) -> None:
    lot = 100_000
    size = max(lot, size - size % lot)
    d = calc_liquidation_step_atoms(equity, mm, mark, size, rate, fee, buffer, lot)
    if equity * 10**6 >= mm * (10**6 + buffer):
        assert d == 0
        return
    assert 0 < d <= size and d % lot == 0
    if d < size:  # not capped: the model says the margin is restored
        eq_after = Fraction(equity) - Fraction(d * mark * fee, BTC * 10**6)
        mm_after = Fraction(mm) - Fraction(d * mark * rate, BTC * 10**6)
        assert eq_after >= mm_after * Fraction(10**6 + buffer, 10**6) - 1


def test_adl_ranks_are_quantiles_of_the_profitable() -> None:
    scores = [calc_adl_score(u, 100, 1_000, 500) for u in (-5, 0, 10, 20, 30, 40, 50)]
    ranks = calc_adl_ranks(scores)
    assert ranks[:2] == [0, 0]
    assert ranks[2:] == [1, 2, 3, 4, 5]
    assert calc_adl_ranks([1.0, 1.0]) == [1, 1]


@given(st.lists(st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.5, 1e-9, 7e6]) | st.floats(1e-6, 1e6), max_size=60))
def test_vectorised_adl_ranks_equal_the_readable_ones(scores: list[float]) -> None:
    """The O(n) quantile edges give every rank the sort-and-count specification gives (ties too)."""
    import numpy as np

    assert calc_adl_ranks_array(np.array(scores, np.float64)).tolist() == calc_adl_ranks(scores)


@given(
    st.integers(0, 10**15),
    st.lists(st.integers(0, 10**9), min_size=1, max_size=30).filter(lambda w: sum(w) > 0),
)
def test_pro_rata_split_is_exact(total: int, weights: list[int]) -> None:
    shares = calc_pro_rata_split(total, weights)
    assert sum(shares) == total
    for share, w in zip(shares, weights, strict=True):
        exact = Fraction(total * w, sum(weights))
        assert exact - 1 < share < exact + 1
    with pytest.raises(ValueError):
        calc_pro_rata_split(1, [0, 0])
