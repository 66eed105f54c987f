"""engine.math.rounding: nearest, ties to even, exact for any sign."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.math.rounding import div_round_half_even


@given(st.integers(-(10**30), 10**30), st.integers(1, 10**20))
def test_matches_pythons_round_of_the_exact_fraction(num: int, den: int) -> None:
    assert div_round_half_even(num, den) == round(Fraction(num, den))


def test_ties_go_to_even() -> None:
    assert [div_round_half_even(n, 2) for n in (-3, -1, 1, 3, 5)] == [-2, 0, 0, 2, 2]
    with pytest.raises(ValueError):
        div_round_half_even(1, 0)
