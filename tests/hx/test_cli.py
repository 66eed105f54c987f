"""The ``hx`` command refuses unusable scheduling settings before it starts anything."""

from __future__ import annotations

from click.testing import CliRunner

from hx.cli import main


def test_realtime_priority_with_a_spinning_wait_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["bench", "shard", "--realtime-priority", "5"])
    assert result.exit_code == 2
    assert "starves the kernel threads" in result.output


def test_realtime_priority_out_of_range_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["up", "--realtime-priority", "60", "--wait", "blocking"])
    assert result.exit_code == 2
    assert "--realtime-priority" in result.output


def test_realtime_priority_for_the_e2e_bench_checks_the_shard_wait() -> None:
    result = CliRunner().invoke(
        main, ["bench", "e2e", "--realtime-priority", "5", "--shard-wait", "busy-spin"]
    )
    assert result.exit_code == 2
    assert "busy-spin" in result.output
