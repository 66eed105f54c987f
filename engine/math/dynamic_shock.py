"""Dynamic shock multiplier: shocks widen with recent volatility, a closed session, a stale oracle.

The risk process samples each asset's mark at a fixed interval and keeps an EWMA of squared
returns (integers, so replay is bit-exact)::

    r_ppm   = (mark - prev_mark) * 1e6 / prev_mark                       (rounded toward 0)
    var     = ceil((lambda * var_prev + (1e6 - lambda) * r_ppm**2) / 1e6)  # ppm**2, rounded up
    vol_ppm = ceil(sqrt(var))
    multiplier = min(max(1, vol / base_vol), max_multiplier)   # never below the calibrated shock
                 x closed_multiplier (session closed) x stale_multiplier (oracle stale)

Parameters per asset: :class:`~engine.types.risk_spec.DynamicShock`. Every step rounds up (a
wider shock is against the account). The multiplier (ppm, >= 1e6) is the
``shock_multiplier_ppm`` input of the margin functions.
"""

from __future__ import annotations

from math import isqrt

from engine.types.fixed import PPM, div_ceil
from engine.types.risk_spec import DynamicShock


def calc_return_ppm(prev_mark_micro: int, mark_micro: int) -> int:
    """Relative move in ppm, rounded toward zero; 0 when there is no previous mark."""
    if prev_mark_micro <= 0:
        return 0
    diff = (mark_micro - prev_mark_micro) * PPM
    return diff // prev_mark_micro if diff >= 0 else -((-diff) // prev_mark_micro)


def calc_ewma_variance_ppm2(prev_variance_ppm2: int, return_ppm: int, lambda_ppm: int) -> int:
    """One EWMA step of the squared return (ppm**2), rounded up."""
    return div_ceil(lambda_ppm * prev_variance_ppm2 + (PPM - lambda_ppm) * return_ppm * return_ppm, PPM)


def calc_volatility_ppm(variance_ppm2: int) -> int:
    """``ceil(sqrt(variance))`` in ppm."""
    root = isqrt(variance_ppm2)
    return root if root * root == variance_ppm2 else root + 1


def calc_shock_multiplier_ppm(
    variance_ppm2: int, params: DynamicShock, session_closed: bool = False, oracle_stale: bool = False
) -> int:
    """The asset's shock multiplier in ppm (>= 1e6), see the module docstring."""
    vol = calc_volatility_ppm(variance_ppm2)
    mult = max(PPM, div_ceil(vol * PPM, params.base_vol_ppm))
    mult = min(mult, params.max_multiplier_ppm)
    if session_closed:
        mult = div_ceil(mult * params.closed_multiplier_ppm, PPM)
    if oracle_stale:
        mult = div_ceil(mult * params.stale_multiplier_ppm, PPM)
    return mult
