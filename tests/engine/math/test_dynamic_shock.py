"""engine.math.dynamic_shock: EWMA volatility and the shock multiplier (integers, rounded up)."""

from __future__ import annotations

from math import sqrt

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.math.dynamic_shock import (
    calc_ewma_variance_ppm2,
    calc_return_ppm,
    calc_shock_multiplier_ppm,
    calc_volatility_ppm,
)
from engine.types.fixed import PPM
from engine.types.risk_spec import DynamicShock

PARAMS = DynamicShock(
    base_vol_ppm=1_000,
    max_multiplier_ppm=3 * PPM,
    closed_multiplier_ppm=3 * PPM // 2,
    stale_multiplier_ppm=2 * PPM,
)


def test_returns_and_ewma() -> None:
    assert calc_return_ppm(100, 101) == 10_000 and calc_return_ppm(100, 99) == -10_000
    assert calc_return_ppm(3, 2) == -333_333  # toward zero
    assert calc_return_ppm(0, 5) == 0
    assert calc_ewma_variance_ppm2(0, 1_000, 900_000) == 100_000  # 0.1 * 1000^2
    assert calc_ewma_variance_ppm2(1, 0, 500_000) == 1  # 0.5 rounded up
    assert calc_volatility_ppm(1_000_000) == 1_000 and calc_volatility_ppm(1_000_001) == 1_001


def test_multiplier() -> None:
    assert calc_shock_multiplier_ppm(0, PARAMS) == PPM  # calm: never below the calibrated shock
    assert calc_shock_multiplier_ppm(2_000**2, PARAMS) == 2 * PPM
    assert calc_shock_multiplier_ppm(10_000**2, PARAMS) == 3 * PPM  # capped
    assert calc_shock_multiplier_ppm(0, PARAMS, session_closed=True) == 3 * PPM // 2
    assert calc_shock_multiplier_ppm(2_000**2, PARAMS, session_closed=True, oracle_stale=True) == 6 * PPM


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12), st.integers(-(10**6), 10**6), st.integers(1, PPM - 1), st.integers(0, 10**12))
def test_monotone_and_rounded_up(var: int, ret: int, lam: int, more: int) -> None:
    new = calc_ewma_variance_ppm2(var, ret, lam)
    assert new * PPM >= lam * var + (PPM - lam) * ret * ret
    assert calc_ewma_variance_ppm2(var + more, ret, lam) >= new
    vol = calc_volatility_ppm(var)
    assert vol * vol >= var and (vol - 1) ** 2 < var or var == 0
    assert abs(vol - sqrt(var)) <= 1
    assert calc_shock_multiplier_ppm(var + more, PARAMS) >= calc_shock_multiplier_ppm(var, PARAMS) >= PPM
