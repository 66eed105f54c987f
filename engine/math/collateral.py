"""Collateral weighting: how much of a holding counts towards equity.

For a positive quantity ``q`` (the asset's own unit: micro for USDC, atoms otherwise) the weighted
quantity sums each tier's part at its marginal weight::

    W(q) = sum_i  clamp(q - upper_{i-1}, 0, upper_i - upper_{i-1}) * weight_i / 1e6
         = (q * weight_k + addend_k) / 1e6        for q in tier k,
    addend_k = sum_{i<k} upper_i * (weight_i - weight_{i+1})   (>= 0, exact integers)

A negative quantity is a liability and counts in full: ``W(q) = q`` for ``q <= 0`` (no haircut
helps a debt). Invariants (hypothesis-tested): ``W`` is continuous, non-decreasing, concave on
``q >= 0``, 1-Lipschitz, ``W(q) <= q``; holding more never lowers the value.

Value in micro-USDC = ``W(q) * price_micro / qty_scale``, rounded DOWN (against the account: an
asset counts for less, a liability for more). ``min_k`` of the affine pieces (plus the slope-1
piece ``q``, which is the minimum exactly when ``q < 0``) gives the vectorised form in one pass per
tier.
"""

from __future__ import annotations

from bisect import bisect_left
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from engine.types.fixed import PPM
from engine.types.risk_spec import WeightTiers


def calc_weight_addends(tiers: WeightTiers) -> tuple[int, ...]:
    """``addend_k`` per tier (atoms*ppm): ``W(q) = (q * weight_k + addend_k) / 1e6`` in tier k."""
    out = [0]
    for i in range(1, len(tiers.weight_ppm)):
        out.append(out[-1] + tiers.upper_atoms[i - 1] * (tiers.weight_ppm[i - 1] - tiers.weight_ppm[i]))
    return tuple(out)


def calc_weighted_qty_exact(qty: int, tiers: WeightTiers) -> Fraction:
    """``W(q)`` exactly (same unit as ``qty``); ``q`` itself for ``q <= 0``."""
    if qty <= 0:
        return Fraction(qty)
    total = 0
    lower = 0
    for upper, weight in zip((*tiers.upper_atoms, None), tiers.weight_ppm, strict=True):
        top = qty if upper is None else min(qty, upper)
        if top <= lower:
            break
        total += (top - lower) * weight
        if upper is None:
            break
        lower = upper
    return Fraction(total, PPM)


def calc_marginal_weight_ppm(qty: int, tiers: WeightTiers) -> int:
    """Weight of the tier holding ``qty`` (the slope of ``W`` just below ``qty``); PPM for ``q <= 0``."""
    if qty <= 0:
        return PPM
    return tiers.weight_ppm[bisect_left(tiers.upper_atoms, qty)]


def calc_collateral_value_exact(qty: int, price_micro: int, qty_scale: int, tiers: WeightTiers) -> Fraction:
    """Exact weighted value in micro-USDC: ``W(q) * price / qty_scale``."""
    return calc_weighted_qty_exact(qty, tiers) * price_micro / qty_scale


def calc_collateral_value_micro(qty: int, price_micro: int, qty_scale: int, tiers: WeightTiers) -> int:
    """Weighted value in micro-USDC, rounded down (against the account)."""
    value = calc_collateral_value_exact(qty, price_micro, qty_scale, tiers)
    return value.numerator // value.denominator


def calc_weighted_qty_f64(
    qty: NDArray[np.float64] | NDArray[np.int64],
    tiers: WeightTiers,
    scale: float = 1.0,
    out: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Vectorised ``W(q) * scale`` (``q`` itself times ``scale`` where ``q <= 0``), float64.

    ``scale`` folds a price in (``price / qty_scale`` gives the value in micro-USDC); it must be
    >= 0. Computed as ``min(q, min_k((q * weight_k + addend_k) / 1e6)) * scale``.
    """
    if out is None:
        out = np.empty(np.shape(qty), dtype=np.float64)
    np.multiply(qty, scale, out=out)  # the slope-1 piece: the minimum exactly where q < 0
    tmp = np.empty_like(out)
    for weight, addend in zip(tiers.weight_ppm, calc_weight_addends(tiers), strict=True):
        np.multiply(qty, weight * scale / PPM, out=tmp)
        if addend:
            tmp += addend * scale / PPM
        np.minimum(out, tmp, out=out)
    return out
