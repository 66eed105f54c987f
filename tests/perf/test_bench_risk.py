"""The risk benchmark's machinery at toy sizes (no figure is asserted: only that each part runs to
its end, on both engines, and that the feeder never stalls risk)."""

from __future__ import annotations

import pytest

from engine.risk.native_risk import native_available
from perf import bench_risk


@pytest.mark.parametrize("native", [False, True])
def test_checks_in_process_runs_on_both_engines(native: bool) -> None:
    if native and not native_available():
        pytest.skip("the compiled risk core is not built")
    assert bench_risk.checks_in_process(orders=3_000, accounts=200, runs=1, native=native) > 0


@pytest.mark.parametrize("native", [False, True])
def test_checks_through_rings_reach_the_end_marker(native: bool) -> None:
    """Through real processes; the shard's event ring has no unread recorder (it would stop the
    shard), and the feeder drains risk's events all along."""
    if native and not native_available():
        pytest.skip("the compiled risk core is not built")
    assert bench_risk.checks_through_rings(orders=3_000, accounts=100, native=native) > 0


def test_recompute_and_positions_engine() -> None:
    figures = bench_risk.recompute(accounts=500, touched=16, runs=1)
    assert set(figures) == {"recompute_ms", "recompute_touched_ms"}
