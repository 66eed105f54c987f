"""The ``hx`` command refuses unusable scheduling settings before it starts anything."""

from __future__ import annotations

import importlib

import pytest
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


@pytest.mark.parametrize(
    ("bench", "module", "wait_option", "wait_key"),
    [
        ("e2e", "perf.bench_e2e", "--shard-wait", "shard_wait"),
        ("shard", "perf.bench_shard", "--wait", "wait"),
    ],
)
def test_bench_drops_its_default_priority_for_a_spinning_wait(
    monkeypatch, bench: str, module: str, wait_option: str, wait_key: str
) -> None:
    """Asked for a spinning shard wait without a priority, a bench runs it at normal priority."""
    seen: dict = {}
    monkeypatch.setattr(
        importlib.import_module(module), "run", lambda **kw: seen.update(kw) or {"bench": bench}
    )
    result = CliRunner().invoke(main, ["bench", bench, "--json", wait_option, "spin-then-backoff"])
    assert result.exit_code == 0, result.output
    assert seen["realtime_priority"] == 0 and seen[wait_key] == "spin-then-backoff"
    result = CliRunner().invoke(main, ["bench", bench, "--json"])
    assert result.exit_code == 0, result.output
    assert seen["realtime_priority"] == 10 and seen[wait_key] == "blocking"
