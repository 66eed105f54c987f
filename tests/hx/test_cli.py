"""The ``hx`` command refuses unusable scheduling settings before it starts anything."""

from __future__ import annotations

from click.testing import CliRunner

from hx.cli import main


def test_realtime_priority_with_a_spinning_wait_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["bench", "shard", "--realtime-priority", "5", "--wait", "busy-spin"])
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


def test_e2e_bench_drops_its_default_priority_for_a_spinning_wait(monkeypatch) -> None:
    """Asked for a spinning shard wait without a priority, the bench runs it at normal priority."""
    import perf.bench_e2e

    seen = {}
    monkeypatch.setattr(perf.bench_e2e, "run", lambda **kw: seen.update(kw) or {"bench": "e2e"})
    result = CliRunner().invoke(main, ["bench", "e2e", "--json", "--shard-wait", "spin-then-backoff"])
    assert result.exit_code == 0, result.output
    assert seen["realtime_priority"] == 0 and seen["shard_wait"] == "spin-then-backoff"
    result = CliRunner().invoke(main, ["bench", "e2e", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["realtime_priority"] == 10 and seen["shard_wait"] == "blocking"


def test_shard_bench_drops_its_default_priority_for_a_spinning_wait(monkeypatch) -> None:
    import perf.bench_shard

    seen = {}
    monkeypatch.setattr(perf.bench_shard, "run", lambda **kw: seen.update(kw) or {"bench": "shard"})
    result = CliRunner().invoke(main, ["bench", "shard", "--json", "--wait", "spin-then-backoff"])
    assert result.exit_code == 0, result.output
    assert seen["realtime_priority"] == 0 and seen["wait"] == "spin-then-backoff"
    result = CliRunner().invoke(main, ["bench", "shard", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["realtime_priority"] == 10 and seen["wait"] == "blocking"
