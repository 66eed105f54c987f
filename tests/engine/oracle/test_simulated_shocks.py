"""engine.oracle.simulated_source: the scheduled shocks the demo uses (a crash, then a rally)."""

from __future__ import annotations

import math

from engine.oracle.oracle_config import NS_PER_S
from engine.oracle.simulated_source import TruePath


def test_shocks_alternate_down_then_up_on_schedule_and_nothing_moves_between() -> None:
    path = TruePath(100.0, 0, 0, 0, seed=1, shock_every_s=10, shock_ppm=80_000, shock_over_s=5)
    at = lambda s: path.price_at(int(s * NS_PER_S))  # noqa: E731
    assert at(0) == 100.0 and at(9.9) == 100.0  # no shock before the first period ends
    assert math.isclose(at(15), 100 / 1.08, rel_tol=1e-9)  # shock 1: down by 8% (of the end price)
    assert math.isclose(at(12.45), 100 / 1.08**0.5, rel_tol=1e-9)  # evenly over 5 s: 25 of 50 steps
    assert math.isclose(at(19.9), at(15), rel_tol=1e-12)
    assert math.isclose(at(25), 100.0, rel_tol=1e-9)  # shock 2: back up


def test_no_shock_configured_is_the_plain_walk() -> None:
    a = TruePath(100.0, 300, 0, 0, seed=4)
    b = TruePath(100.0, 300, 0, 0, seed=4, shock_every_s=0, shock_ppm=80_000)
    assert [a.price_at(k * NS_PER_S) for k in range(30)] == [b.price_at(k * NS_PER_S) for k in range(30)]
