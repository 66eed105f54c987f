"""`hx up`: start a whole exchange on one machine, watch it, restart what dies, stop cleanly.

The supervisor owns the rings of its run (named ``hx-<run_id>-*``) and removes them on exit,
including after Ctrl-C; a run killed with -9 leaves rings that the next start with the same run id
(or ``hx clean``) removes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hx.pipeline import Pipeline
from hx.topology import Topology


def supervise(
    pipeline: Pipeline,
    *,
    host: str,
    port: int,
    duration_s: float | None,
    on_event: Callable[[str], None],
    gateway_options: dict[str, Any] | None = None,
) -> int:
    """Start the pipeline and its gateways, restart crashed stages, return an exit code."""
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    restarts = 0
    try:
        pipeline.start()
        on_event(f"shards up: {sorted(pipeline.shards)} (state in {pipeline.state_dir})")
        for g in range(pipeline.topology.gateways):
            pipeline.start_gateway(g, host, port, **(gateway_options or {}))
        if pipeline.topology.gateways:
            on_event(f"gateways up: {pipeline.topology.gateways} on ws://{host}:{port} (/v1/bin, /v1/json)")
        on_event("exchange running; Ctrl-C stops it")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
            if stop:
                break
            for shard, stage in list(pipeline.shards.items()):
                if not stage.process.is_alive():
                    on_event(
                        f"shard {shard} died (exit {stage.process.exitcode}); recovering from snapshot + journal"
                    )
                    pipeline.shards.pop(shard)
                    pipeline.start_shard(shard)
                    restarts += 1
            for index, stage in list(pipeline.gateways.items()):
                if not stage.process.is_alive():
                    on_event(f"gateway {index} died (exit {stage.process.exitcode}); restarting")
                    pipeline.gateways.pop(index)
                    pipeline.start_gateway(index, host, port, **(gateway_options or {}))
                    restarts += 1
        return 0
    finally:
        on_event("stopping")
        pipeline.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        on_event(f"stopped ({restarts} restart(s))")


def default_pipeline(
    state_dir: Path,
    shards: int,
    gateways: int,
    markets_path: Path,
    wait: str,
    fsync: str,
    run_id: str = "hx-main",
    realtime_priority: int = 0,
) -> Pipeline:
    return Pipeline(
        Topology(run_id=run_id, shards=shards, gateways=gateways),
        markets_path=markets_path,
        state_dir=state_dir,
        wait=wait,
        fsync=fsync,
        realtime_priority=realtime_priority,
    )
