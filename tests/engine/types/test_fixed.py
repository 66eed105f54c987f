"""engine.types.fixed: exact conversions and rounding directions."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.types.fixed import (
    ATOMS_PER_UNIT,
    MICRO_PER_UNIT,
    FixedPointError,
    check_int64,
    div_ceil,
    from_fixed,
    mul_div_ceil,
    mul_div_floor,
    to_fixed,
    value_micro_ceil,
    value_micro_floor,
)

ints = st.integers(-(10**18), 10**18)
positive = st.integers(1, 10**12)


@given(ints, ints, positive)
def test_mul_div_brackets_the_exact_quotient(a: int, b: int, c: int) -> None:
    lo, hi = mul_div_floor(a, b, c), mul_div_ceil(a, b, c)
    assert lo * c <= a * b <= hi * c
    assert hi - lo in (0, 1)
    assert (hi == lo) == ((a * b) % c == 0)


@given(ints, positive)
def test_div_ceil(a: int, b: int) -> None:
    assert div_ceil(a, b) == -((-a) // b)
    assert div_ceil(a, b) * b >= a


@given(ints, st.integers(1, 10**12))
def test_value_rounding_is_against_the_holder(qty: int, price: int) -> None:
    lo, hi = value_micro_floor(qty, price), value_micro_ceil(qty, price)
    exact = Decimal(qty) * price / ATOMS_PER_UNIT
    assert lo <= exact <= hi


def test_to_fixed_exact_and_refusals() -> None:
    assert to_fixed("1.5", MICRO_PER_UNIT) == 1_500_000
    assert to_fixed(2, ATOMS_PER_UNIT) == 200_000_000
    assert from_fixed(1_500_000, MICRO_PER_UNIT) == Decimal("1.5")
    for bad in ("1.0000001", "nan", "inf", "abc", "1e30"):
        with pytest.raises(FixedPointError):
            to_fixed(bad, MICRO_PER_UNIT, "amount")
    with pytest.raises(FixedPointError, match="not float"):
        to_fixed(0.1, MICRO_PER_UNIT)  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match="notional"):
        check_int64(2**63, "notional")
