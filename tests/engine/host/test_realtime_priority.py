"""SCHED_FIFO for hot-path processes: refused where it would starve the core, never fatal where denied."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.host import (
    REALTIME_PRIORITY_MAX,
    apply_realtime_priority,
    ensure_realtime_priority,
    get_scheduling,
)


@pytest.mark.parametrize(
    ("priority", "wait"),
    [
        (0, "busy-spin"),
        (0, "spin-then-backoff"),
        (1, "blocking"),
        (10, "sleep"),
        (49, "park"),
        (5, "adaptive"),
    ],
)
def test_usable_priorities_pass(priority: int, wait: str) -> None:
    ensure_realtime_priority(priority, wait)


@pytest.mark.parametrize(
    ("priority", "wait", "reason"),
    [
        (-1, "blocking", "want 0 \\(off\\) or 1-49"),
        (REALTIME_PRIORITY_MAX + 1, "blocking", "want 0 \\(off\\) or 1-49"),
        (99, "blocking", "interrupt threads"),
        (True, "blocking", "must be an integer"),
        ("5", "blocking", "must be an integer"),
        (2.0, "blocking", "must be an integer"),
        (10, "busy-spin", "starves the kernel threads"),
        (10, "spin-then-backoff", "starves the kernel threads"),
        (1, "busy-poll", "starves the kernel threads"),
    ],
)
def test_unusable_priorities_are_refused_with_the_reason(priority: object, wait: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ensure_realtime_priority(priority, wait)  # type: ignore[arg-type]


def test_priority_zero_leaves_the_process_alone() -> None:
    assert apply_realtime_priority(0) == "normal"
    assert get_scheduling(os.getpid()) == "normal"


def test_apply_reports_what_the_kernel_did() -> None:
    """In a child (the test process keeps its policy): granted -> fifo:N; refused -> normal and why."""
    code = (
        "import os; from engine.host import apply_realtime_priority, get_scheduling; "
        "print(apply_realtime_priority(7)); print(get_scheduling(os.getpid()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    said, actual = done.stdout.splitlines()
    if said == "fifo:7":
        assert actual == "fifo:7"
    else:  # no CAP_SYS_NICE here: the process carries on as it was, and says why
        assert said.startswith("normal (fifo:7 refused:") and actual == "normal"


def test_options_refuse_realtime_with_a_spinning_wait() -> None:
    from engine.ring import RingRef
    from engine.risk.process import RiskOptions
    from engine.shard.process import ShardOptions
    from gateway.server import GatewayOptions

    ring = RingRef("r")
    shard = {
        "shard": 0,
        "inputs": (ring,),
        "events": ring,
        "market_ids": (1,),
        "markets_path": "m",
        "state_dir": "s",
    }
    risk = {
        "partition": 0,
        "partitions": 1,
        "commands": (ring,),
        "shard_events": (),
        "orders": (ring,),
        "events": ring,
        "markets_path": "m",
        "state_dir": "s",
    }
    for make in (lambda **kw: ShardOptions(**shard, **kw), lambda **kw: RiskOptions(**risk, **kw)):
        with pytest.raises(ValueError, match="starves"):
            make(wait="busy-spin", realtime_priority=3)
        assert make(wait="blocking", realtime_priority=3).realtime_priority == 3
    with pytest.raises(ValueError, match="starves"):
        GatewayOptions(loop_mode="busy-poll", realtime_priority=3)
    assert GatewayOptions(loop_mode="park", realtime_priority=3).realtime_priority == 3


def test_json_logs_carry_one_field_set() -> None:
    import io
    import json
    import logging

    from engine.host.json_log import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("risk-0"))
    log = logging.getLogger("hx.test.json")
    log.addHandler(handler)
    try:
        log.warning("account %d liquidated", 7, extra={"account": 7})
    finally:
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert {k: line[k] for k in ("level", "process", "logger", "msg", "account")} == {
        "level": "warning",
        "process": "risk-0",
        "logger": "hx.test.json",
        "msg": "account 7 liquidated",
        "account": 7,
    }
    assert line["ts"].endswith("+00:00") and isinstance(line["pid"], int)
