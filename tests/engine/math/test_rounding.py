"""engine.math.rounding: nearest, ties to even, exact for any sign."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.math.rounding import div_round_half_even


@given(st.integers(-(10**30), 10**30), st.integers(1, 10**20))
def test_matches_pythons_round_of_the_exact_fraction(num: int, den: int) -> None:
    assert div_round_half_even(num, den) == round(Fraction(num, den))


def test_ties_go_to_even() -> None:
    assert [div_round_half_even(n, 2) for n in (-3, -1, 1, 3, 5)] == [-2, 0, 0, 2, 2]
    with pytest.raises(ValueError):
        div_round_half_even(1, 0)


@given(
    st.lists(st.integers(0, 2**50 - 1), max_size=40),
    st.one_of(st.integers(0, 10**30), st.sampled_from([0, 1, 10**8, 72 * 10**14])),
    st.one_of(st.integers(1, 2**60), st.sampled_from([1, 10**8, 10**17])),
)
@example([], 2**63, 1)  # (found by hypothesis in CI: a whole part past int64 over a column of no rows)
@example([0, 0], 10**30, 1)
def test_mul_div_floor_column_is_pythons_floor_and_remainder(values: list[int], b: int, d: int) -> None:
    """``(a * b) // d`` and ``% d`` over an int64 column, exactly, or None where it cannot."""
    import numpy as np

    from engine.math.rounding import mul_div_floor_column

    got = mul_div_floor_column(np.array(values, np.int64), b, d)
    if got is None:  # (only where a product's whole part leaves int64)
        assert max(values, default=0) * (b // d) > 2**63 - 1
        return
    q, r = got
    assert q.tolist() == [v * b // d for v in values] and r.tolist() == [v * b % d for v in values]
