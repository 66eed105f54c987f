"""Liquidation maths: bankruptcy price, step size, auto-deleveraging ranks, exact pro-rata splits.

Pure functions of integers (units in the names: ``_micro`` money and prices per whole unit,
``_atoms`` sizes, ``_ppm`` rates). Rounding protects solvency: a bankruptcy price is rounded so
that trading at it never leaves the account below zero (a long's up, a short's down), and a step
is rounded up to whole lots.

* **Bankruptcy price** of a position (the others held fixed): the mark at which the account's
  equity reaches zero. Equity moves by ``size * dp / 1e8`` when the position's mark moves by
  ``dp``, so ``p_b = mark - equity * 1e8 / size``: below the mark for a long, above it for a short
  (when equity > 0). A liquidation order never trades beyond it: a long is sold at no less, a
  short bought at no more.
* **Step**: the size to close so that, trading at the mark and paying ``fee_ppm``, the account's
  equity covers its maintenance margin with a buffer again, assuming closing ``d`` lowers the
  requirement by ``d * mark * rate_ppm`` (the position's marginal maintenance rate):
  ``d >= ((1 + buffer) * MM - equity) / (mark * ((1 + buffer) * rate - fee))``, in whole lots,
  at least one lot, at most the position. Partial before full: the largest-risk position first,
  by as little as restores the margin; the next round (after the fills and a recomputation)
  takes more if it is not enough.
* **ADL score** (auto-deleveraging, highest first): unrealised PnL as a fraction of the position's
  margin times its effective leverage: ``(upnl / margin) * (notional / equity)``. Only profitable
  positions score (> 0); accounts without an opposite position are never ranked.
* **ADL rank**: the quantile of a score among the scores of its side, 1 (lowest fifth) to 5
  (highest fifth), 0 when the position does not score, as venues show in their "lights".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.types.fixed import ATOMS_PER_UNIT, PPM

ADL_BUCKETS = 5


def calc_bankruptcy_price_micro(equity_micro: int, size_atoms: int, mark_micro: int) -> int:
    """``mark - equity * 1e8 / size``, rounded so that equity at it is >= 0 (up for a long, down
    for a short), never below 1 micro. ``size_atoms != 0``."""
    if size_atoms == 0:
        raise ValueError("a bankruptcy price needs a position")
    shift = equity_micro * ATOMS_PER_UNIT
    if size_atoms > 0:  # long: p_b = mark - shift / size, rounded up
        price = mark_micro - shift // size_atoms
    else:  # short: p_b = mark + shift / |size|, rounded down
        price = mark_micro + shift // -size_atoms
    return max(1, price)


def calc_liquidation_step_atoms(
    equity_micro: int,
    maintenance_micro: int,
    mark_micro: int,
    size_atoms: int,
    rate_ppm: int,
    fee_ppm: int,
    buffer_ppm: int,
    lot_atoms: int,
) -> int:
    """Atoms to close (a positive multiple of ``lot_atoms``, at most ``|size_atoms|``) to bring
    ``equity`` back above ``(1 + buffer) * maintenance`` (see the module docstring). The whole
    position when even that would not do (the marginal rate does not beat the fee)."""
    size = abs(size_atoms)
    if size == 0:
        return 0
    target = maintenance_micro * (PPM + buffer_ppm)  # micro * ppm
    gap = target - equity_micro * PPM  # micro * ppm still missing
    if gap <= 0:
        return 0
    per_unit = mark_micro * ((PPM + buffer_ppm) * rate_ppm // PPM - fee_ppm)  # micro * ppm per unit
    if per_unit <= 0:
        return size - size % lot_atoms or size
    need = -((-gap * ATOMS_PER_UNIT) // per_unit)  # atoms, rounded up
    lots = -((-need) // lot_atoms)
    return min(size, max(1, lots) * lot_atoms)


def calc_adl_score(upnl_micro: int, margin_micro: int, notional_micro: int, equity_micro: int) -> float:
    """``(upnl / margin) * (notional / equity)`` for a profitable position, else 0.0 (a ranking,
    not money: float is fine and deterministic)."""
    if upnl_micro <= 0 or margin_micro <= 0 or equity_micro <= 0:
        return 0.0
    return (upnl_micro / margin_micro) * (notional_micro / equity_micro)


def calc_adl_ranks(scores: Sequence[float]) -> list[int]:
    """Quantile rank 1..5 of each positive score among the positive ones (0 for the others).

    Ties share the lowest rank of their group, so the order of equal scores never matters."""
    positive = sorted(s for s in scores if s > 0)
    n = len(positive)
    out = []
    for s in scores:
        if s <= 0:
            out.append(0)
            continue
        below = _count_below(positive, s)
        out.append(1 + below * ADL_BUCKETS // n)
    return out


def calc_adl_ranks_array(positive: np.ndarray) -> np.ndarray:
    """``calc_adl_ranks`` of positive scores, vectorised in O(n) (the ranks the liquidator
    publishes for 100,000 positions at a time): ``1 + below * 5 // n`` exceeds ``k`` exactly when
    at least ``m = ceil(k n / 5)`` scores lie below, i.e. when the m-th smallest is below the score;
    so the four quantile edges (``np.partition``) and one comparison against them give the ranks,
    with no sort."""
    n = len(positive)
    if n == 0:
        return np.zeros(0, np.int8)
    kth = [(k * n + ADL_BUCKETS - 1) // ADL_BUCKETS - 1 for k in range(1, ADL_BUCKETS)]
    edges = np.partition(positive, np.unique(kth))[kth]  # ascending: the kth are
    return (1 + np.searchsorted(edges, positive, side="left")).astype(np.int8)


def _count_below(sorted_values: list[float], value: float) -> int:
    lo, hi = 0, len(sorted_values)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def calc_pro_rata_split(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total >= 0`` over ``weights >= 0`` (not all zero) exactly: floors first, then one
    unit each to the largest remainders (ties: earlier first). ``sum(result) == total``."""
    weight_sum = sum(weights)
    if total < 0 or weight_sum <= 0 or any(w < 0 for w in weights):
        raise ValueError("need total >= 0 and non-negative weights with a positive sum")
    shares = []
    remainders = []
    for i, w in enumerate(weights):
        share, rem = divmod(total * w, weight_sum)
        shares.append(share)
        remainders.append((-rem, i))
    for _, i in sorted(remainders)[: total - sum(shares)]:
        shares[i] += 1
    return shares
