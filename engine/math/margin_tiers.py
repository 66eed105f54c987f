"""Tiered rates on a notional: requirement, cumulative deduction ("maintenance amount"), marginal rate.

A :class:`~engine.types.risk_spec.RateTiers` charges the part of a notional inside tier ``i`` at
``rate_i``. For a notional ``N`` (micro-USDC) in tier ``i``::

    requirement(N) = (N * rate_i - deduction_i) / 1e6            # micro-USDC
    deduction_i    = deduction_{i-1} + upper_{i-1} * (rate_i - rate_{i-1})   # micro*ppm, exact

which is the "notional x rate - maintenance amount" form Binance and Bybit publish. Invariants:
the requirement is continuous at every tier edge, non-decreasing and convex in ``N`` (rates are
non-decreasing), equal to ``max_i(N * rate_i - deduction_i) / 1e6``; its slope on ``[0, N]`` never
exceeds :func:`calc_marginal_rate_ppm` at ``N``. Tier ``i`` is the half-open ``(upper_{i-1},
upper_i]``, so a notional exactly on an edge belongs to the lower tier.

Rounding: :func:`calc_tiered_requirement_micro` rounds up (a requirement is against the account);
the exact value is :func:`calc_tiered_requirement_exact`. The float version serves the vectorised
recompute, which adds its own safety margin before rounding.
"""

from __future__ import annotations

from bisect import bisect_left
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from engine.types.fixed import PPM, div_ceil
from engine.types.risk_spec import RateTiers


def calc_tier_index(notional_micro: int | Fraction, tiers: RateTiers) -> int:
    """Index of the tier holding ``|notional|`` (edges belong to the lower tier)."""
    if isinstance(notional_micro, int):
        return bisect_left(tiers.upper_micro, abs(notional_micro))
    edges: tuple[Fraction | int, ...] = tiers.upper_micro
    return bisect_left(edges, abs(notional_micro))


def calc_deduction_micro_ppm(tiers: RateTiers) -> tuple[int, ...]:
    """Cumulative deduction per tier, micro*ppm (exact integers; ``/ 1e6`` gives micro-USDC)."""
    return tiers.deduction_micro_ppm


def calc_tiered_requirement_exact(notional_micro: int | Fraction, tiers: RateTiers) -> Fraction:
    """Exact requirement on ``|notional|``, micro-USDC: ``(|N| * rate_i - deduction_i) / 1e6``."""
    n = abs(Fraction(notional_micro))
    i = calc_tier_index(n, tiers)
    return (n * tiers.rate_ppm[i] - tiers.deduction_micro_ppm[i]) / PPM


def calc_tiered_requirement_micro(notional_micro: int, tiers: RateTiers) -> int:
    """Requirement on ``|notional|`` in micro-USDC, rounded up (against the account)."""
    n = abs(notional_micro)
    i = calc_tier_index(n, tiers)
    return div_ceil(n * tiers.rate_ppm[i] - tiers.deduction_micro_ppm[i], PPM)


def calc_marginal_rate_ppm(notional_micro: int | Fraction, tiers: RateTiers) -> int:
    """Rate of the tier holding ``|notional|``: the largest slope of the requirement on ``[0, |N|]``."""
    return tiers.rate_ppm[calc_tier_index(notional_micro, tiers)]


def calc_tiered_requirement_f64(
    notional_micro: NDArray[np.float64], tiers: RateTiers, out: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Vectorised requirement on ``|notional|`` (float64 micro): ``max_i(|N| rate_i - ded_i) / 1e6``.

    The maximum of the affine pieces equals the tiered formula because the requirement is convex.
    Rounding is the caller's (the vectorised recompute adds a safety margin, then rounds up).
    ``notional_micro`` must already be non-negative.
    """
    if out is None:
        out = np.empty_like(notional_micro)
    rates = tiers.rate_ppm
    deductions = tiers.deduction_micro_ppm
    np.multiply(notional_micro, rates[0] / PPM, out=out)
    if len(rates) > 1:
        tmp = np.empty_like(out)
        for rate, ded in zip(rates[1:], deductions[1:], strict=True):
            np.multiply(notional_micro, rate / PPM, out=tmp)
            tmp -= ded / PPM
            np.maximum(out, tmp, out=out)
    return out
