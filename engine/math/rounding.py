"""Rounding to the nearest integer, ties to even: the one rounding that favours neither side.

``engine.types.fixed`` holds the directed pairs (``_floor`` / ``_ceil``) used where a rounding must
go against an account; prices that both sides settle at (a TWAP, a mark component, an EMA) use
this one instead.
"""

from __future__ import annotations


def div_round_half_even(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest integer, ties to even, exactly (``den > 0``)."""
    if den <= 0:
        raise ValueError(f"denominator must be > 0, got {den}")
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q % 2 == 1):
        q += 1
    return q
