"""`hx up`: start a whole exchange on one machine, watch it, restart what dies, stop cleanly.

What happens to a process that dies is its stage's ``restart`` policy (``hx.stages``): ``recover``
and ``restart`` start it again with the options it had (a shard recovers from snapshot + journal);
``fatal`` stops the exchange. A restart that fails does not take the rest down: it is retried
with exponential backoff (0.5 s doubling to 30 s) and every attempt is reported.

A process that stops making progress (its loop has not gone round on the health board for
``stall_timeout_s`` while it was not waiting for room downstream: a deadlock, a stuck syscall, a
SIGSTOP) is killed and restarted like a dead one.

The children die with the supervisor even when it is killed with -9 (``PR_SET_PDEATHSIG``, see
``engine.host.process_identity``), so no shard or gateway keeps serving unsupervised; a clean
stop (Ctrl-C, SIGTERM) snapshots every stateful process and removes the run's rings.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.host.health_board import stalled
from hx.pipeline import Pipeline, RunError

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass
class _Retry:
    attempts: int = 0
    next_at: float = 0.0


def supervise(
    pipeline: Pipeline,
    *,
    duration_s: float | None,
    on_event: Callable[[str], None],
    poll_s: float = 0.2,
    stall_timeout_s: float = 10.0,
    metrics_port: int = 0,
) -> int:
    """Start the pipeline, restart dead stages per their policy, return an exit code."""
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    restarts = 0
    code = 0
    pending: dict[str, _Retry] = {}
    exporter = None
    try:
        pipeline.start()
        for name, handle in pipeline.procs.items():
            on_event(f"{name} up (pid {handle.process.pid})")
        for line in pipeline.endpoints():
            on_event(line)
        if metrics_port:
            from hx.metrics_exporter import start_exporter

            exporter = start_exporter(pipeline, pipeline.settings.host, metrics_port)
            on_event(f"metrics http://{pipeline.settings.host}:{metrics_port}/metrics")
        on_event("exchange running; Ctrl-C stops it")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop and (deadline is None or time.monotonic() < deadline):
            time.sleep(poll_s)
            if stop:
                break
            now = time.monotonic()
            beat_now = time.monotonic_ns()
            for name, handle in list(pipeline.procs.items()):
                if name in pending:
                    continue
                if handle.process.is_alive():
                    entry = pipeline.health_of(name)
                    if (
                        entry is not None
                        and entry["pid"] == handle.process.pid
                        and stalled(entry, beat_now, int(stall_timeout_s * 1e9))
                    ):
                        quiet = (beat_now - entry["beat_ns"]) / 1e9
                        on_event(
                            f"{name} (pid {handle.process.pid}) made no progress for {quiet:.1f}s; killing it"
                        )
                        pipeline.kill(name)
                    else:
                        continue
                policy = handle.stage.restart
                on_event(f"{name} died (exit {handle.process.exitcode}); policy: {policy}")
                if policy == "fatal":
                    stop, code = True, 1
                    break
                pending[name] = _Retry(next_at=now)
            for name, retry in list(pending.items()):
                if stop or time.monotonic() < retry.next_at:
                    continue
                try:
                    handle = pipeline.restart(name)
                except RunError as exc:
                    retry.attempts += 1
                    wait = min(BACKOFF_FIRST_S * 2 ** (retry.attempts - 1), BACKOFF_MAX_S)
                    retry.next_at = time.monotonic() + wait
                    on_event(f"{name} restart {retry.attempts} failed ({exc}); next try in {wait:.1f}s")
                    continue
                del pending[name]
                restarts += 1
                on_event(f"{name} restarted (pid {handle.process.pid})")
        return code
    finally:
        on_event("stopping")
        if exporter is not None:
            exporter.shutdown()
        pipeline.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        on_event(f"stopped ({restarts} restart(s))")
