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


def test_up_on_a_port_in_use_names_the_port_and_starts_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["up", "--port", str(port), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert f"port {port}" in result.output and "in use" in result.output
    assert not (tmp_path / "s").exists()


def test_up_chooses_the_wait_from_the_machine_and_says_so() -> None:
    from hx.cli import _auto_wait

    assert _auto_wait(2)[0] == "blocking"
    assert _auto_wait(8)[0] == "spin-then-backoff"
    assert "2 cores" in _auto_wait(2)[1]


def test_status_lists_the_stage_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os

    from hx.pipeline import Pipeline
    from hx.topology import Topology
    from perf.replay_runner import workload_markets_file

    topo = Topology(run_id=f"hx-t-status-{os.getpid()}", shards=1, gateways=0, recorders=1)
    with Pipeline(topo, markets_path=workload_markets_file(tmp_path, 1), state_dir=tmp_path / "s") as pipe:
        pid = pipe.procs["shard-0"].process.pid
        for _ in range(100):
            report = json.loads(
                CliRunner().invoke(main, ["status", "--state-dir", str(tmp_path / "s"), "--json"]).output
            )
            if report["processes"]:
                break
            import time

            time.sleep(0.05)
        assert report["supervisor"] == os.getpid()
        assert [(p["name"], p["pid"], p["alive"]) for p in report["processes"]] == [("shard-0", pid, True)]
        assert report["processes"][0]["health"]["beat_age_ms"] < 5_000  # beating on the health board
        assert {r["ring"] for r in report["rings"]} == set(pipe.rings)  # lag per consumer of each ring
    after = json.loads(
        CliRunner().invoke(main, ["status", "--state-dir", str(tmp_path / "s"), "--json"]).output
    )
    assert after == {"supervisor": None, "processes": [], "rings": []}


def test_risk_what_if_on_the_example_and_a_bad_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "what_if_portfolio.json"
    result = CliRunner().invoke(main, ["risk", "what-if", str(example), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"equity", "initial_margin", "maintenance_margin", "free_collateral", "scenarios"} <= set(report)
    assert report["liquidation_prices"].keys() == {"BTC-PERP", "ETH-PERP"}
    doc = json.loads(example.read_text())
    doc["positions"][0]["size"] = "lots"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["risk", "what-if", str(bad)])
    assert result.exit_code == 1 and "positions[0].size" in result.output
