"""Rounding to the nearest integer, ties to even: the one rounding that favours neither side; and
exact floors of products over int64 columns (``mul_div_floor_column``).

``engine.types.fixed`` holds the directed pairs (``_floor`` / ``_ceil``) used where a rounding must
go against an account; prices that both sides settle at (a TWAP, a mark component, an EMA) use
this one instead.
"""

from __future__ import annotations

import numpy as np

from engine.types.fixed import INT64_MAX


def div_round_half_even(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest integer, ties to even, exactly (``den > 0``)."""
    if den <= 0:
        raise ValueError(f"denominator must be > 0, got {den}")
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q % 2 == 1):
        q += 1
    return q


# Values below this keep mul_div_floor_column's float-guided quotients within one of the exact ones
# (their relative error is ~2^-52), which one correction step then makes exact (11M BTC in atoms).
COLUMN_MAX = 1 << 50


def mul_div_floor_column(a: np.ndarray, b: int, d: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a * b) // d`` and ``(a * b) % d`` for int64 ``a`` in ``[0, 2^50)``, exactly, without leaving
    int64; None when the arguments are outside that (the caller then takes Python's integers).

    ``b = bh * d + bl`` with ``0 <= bl < d``, so ``a * b / d = a * bh + a * bl / d``. The second
    quotient is estimated in float64 (within 1 of the truth for ``a < 2^50``); the remainder of that
    estimate, ``a * bl - q * d``, is exact in wrapping int64 arithmetic (it is taken modulo 2^64 and
    its true value lies in ``(-2d, 2d)``), and one step moves ``q`` to the floor."""
    if b < 0 or not 0 < d < 1 << 61:
        return None
    bh, bl = divmod(b, d)
    top = int(a.max(initial=0))
    if int(a.min(initial=0)) < 0 or top >= COLUMN_MAX or top * bh > INT64_MAX:
        return None
    if top == 0:  # an empty or all-zero column: every product is 0 (and bh may not fit int64)
        return np.zeros(len(a), np.int64), np.zeros(len(a), np.int64)
    q = np.floor(a.astype(np.float64) * (bl / d)).astype(np.int64)
    with np.errstate(over="ignore"):
        r = a * np.int64(bl) - q * np.int64(d)  # (wraps; the true value fits)
    low, high = r < 0, r >= d
    q -= low
    q += high
    r += np.int64(d) * low.astype(np.int64) - np.int64(d) * high.astype(np.int64)
    if r.size and (int(r.min()) < 0 or int(r.max()) >= d):  # (cannot happen within the bounds)
        return None
    return a * np.int64(bh) + q, r
