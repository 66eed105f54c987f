"""engine.explain.field_reader: exact human units in, named field paths in every error."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.explain.field_reader import (
    ExplainInputError,
    child,
    pct_ppb,
    read_count,
    read_rate_ppb,
    read_rate_ppm,
    read_seconds_ns,
    read_size_atoms,
    read_usdc_micro,
    usdc,
)


def test_paths() -> None:
    assert child("", "sources") == "sources"
    assert child(child("sources", 2), "price") == "sources[2].price"


def test_units_are_exact() -> None:
    assert read_usdc_micro("64000.5", "p") == 64_000_500_000
    assert read_usdc_micro(0.1, "p") == 100_000  # a JSON float through its shortest repr
    assert read_usdc_micro(Decimal("1e3"), "p") == 1_000_000_000
    assert read_size_atoms("-1.23456789", "s") == -123_456_789
    assert read_rate_ppb("0.01%", "r") == 100_000
    assert read_rate_ppb("0.0001", "r") == 100_000
    assert read_rate_ppb(" -0.05% ", "r") == -500_000
    assert read_rate_ppm("1%", "b") == 10_000
    assert read_seconds_ns("1700000000.25", "t") == 1_700_000_000_250_000_000
    assert read_count(3, "n") == 3 and read_count("3", "n") == 3
    assert usdc(64_000_500_000) == "64000.5" and usdc(-1) == "-0.000001" and usdc(0) == "0"
    assert pct_ppb(12_500) == "0.00125%"


@pytest.mark.parametrize(
    ("reader", "value", "problem"),
    [
        (read_usdc_micro, "0", "must be > 0"),
        (read_usdc_micro, "-3", "must be > 0"),
        (read_usdc_micro, "1.0000001", "more precision than 1e-6 USDC"),
        (read_usdc_micro, "NaN", "not finite"),
        (read_usdc_micro, "abc", "not a decimal number"),
        (read_usdc_micro, True, "must be a number"),
        (read_usdc_micro, [1], "must be a number"),
        (read_usdc_micro, "1e30", "absurdly large"),
        (read_usdc_micro, "1e999999999", "absurdly large"),
        (read_size_atoms, "0.000000001", "more precision than 1e-8"),
        (read_rate_ppb, "150%", "more than 100%"),
        (read_rate_ppb, "0.0000000001", "more precision than 1e-9"),
        (read_rate_ppm, "-1%", "must be >= 0"),
        (read_seconds_ns, "-1", "must be >= 0"),
        (read_count, "2.5", "whole number"),
    ],
)
def test_bad_values_name_the_field(reader: object, value: object, problem: str) -> None:
    with pytest.raises(ExplainInputError) as err:
        reader(value, "sources[2].price")  # type: ignore[operator]
    assert str(err.value).startswith("sources[2].price: ")
    assert problem in str(err.value)
    assert err.value.path == "sources[2].price"
