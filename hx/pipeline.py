"""The composition root: create the rings of a run and start its stages in order.

Order of start-up is consumers before producers, so that nothing is published before everyone
who must see it has a cursor: rings first (all of them, owned here), then shard processes (they
consume order rings and produce event rings; their event-ring consumers are configured at ring
creation, so events wait for them), then gateways. ``stop`` reverses it and removes the rings.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.host import get_scheduling
from engine.ring import RingBuffer, cleanup_rings
from hx.topology import Topology


@dataclass
class StageProcess:
    name: str
    process: Any
    ready: Any


@dataclass
class Pipeline:
    """A running (or startable) exchange: rings, shard processes and, optionally, gateways."""

    topology: Topology
    markets_path: Path
    state_dir: Path
    wait: str = "spin-then-backoff"
    fsync: str = "batch"
    pin_cpus: bool | None = None  # None: pin only when the machine has cores to spare
    snapshot_every: int = 5000
    realtime_priority: int = 0  # SCHED_FIFO for shards and gateways (0: off); see engine.host
    rings: dict[str, RingBuffer] = field(default_factory=dict)
    shards: dict[int, StageProcess] = field(default_factory=dict)
    gateways: dict[int, StageProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self.state_dir = Path(self.state_dir)
        self.markets_path = Path(self.markets_path)

    # ---- rings ---------------------------------------------------------------------------------
    def create_rings(self) -> None:
        topo = self.topology
        cleanup_rings(topo.run_id + "-")  # a killed earlier run with the same id
        for s in range(topo.shards):
            for p in range(topo.order_producers):
                name = topo.order_ring(p, s)
                self.rings[name] = RingBuffer.create(name, topo.order_ring_slots, consumers=1)
            name = topo.event_ring(s)
            self.rings[name] = RingBuffer.create(
                name, topo.event_ring_slots, consumers=max(topo.event_consumers, 1)
            )

    # ---- shards --------------------------------------------------------------------------------
    def _cpu_for(self, shard: int) -> int | None:
        cpus = sorted(os.sched_getaffinity(0))
        pin = self.pin_cpus if self.pin_cpus is not None else len(cpus) >= self.topology.shards + 2
        return cpus[(shard + 1) % len(cpus)] if pin else None

    def start_shard(self, shard: int, timeout_s: float = 60.0) -> None:
        from engine.shard.process import ShardOptions, run_shard

        options = ShardOptions(
            topology=self.topology,
            shard=shard,
            markets_path=str(self.markets_path),
            state_dir=str(self.state_dir / f"shard-{shard}"),
            wait=self.wait,
            fsync=self.fsync,
            cpu=self._cpu_for(shard),
            snapshot_every=self.snapshot_every,
            realtime_priority=self.realtime_priority,
        )
        ready = self._ctx.Event()
        proc = self._ctx.Process(
            target=run_shard, args=(options, ready), name=f"hx-shard-{shard}", daemon=True
        )
        proc.start()
        self.shards[shard] = StageProcess(f"shard-{shard}", proc, ready)
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.1):
            if not proc.is_alive():
                raise RuntimeError(f"shard {shard} exited during start-up (exit code {proc.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"shard {shard} not ready after {timeout_s}s")

    def kill_shard(self, shard: int) -> None:
        """SIGKILL a shard (failure testing); ``start_shard`` recovers it from snapshot + journal."""
        stage = self.shards.pop(shard)
        os.kill(stage.process.pid, signal.SIGKILL)
        stage.process.join()

    # ---- gateways ------------------------------------------------------------------------------
    def start_gateway(
        self, index: int, host: str, port: int, timeout_s: float = 60.0, **options: Any
    ) -> None:
        from gateway.process import run_gateway
        from gateway.server import GatewayOptions

        options.setdefault("realtime_priority", self.realtime_priority)
        GatewayOptions(**options)  # a bad option fails here, with its reason, not in the child
        ready = self._ctx.Event()
        proc = self._ctx.Process(
            target=run_gateway,
            name=f"hx-gateway-{index}",
            daemon=True,
            args=(self.topology, index, host, port, str(self.markets_path), str(self.state_dir)),
            kwargs={"ready": ready, **options},
        )
        proc.start()
        self.gateways[index] = StageProcess(f"gateway-{index}", proc, ready)
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.1):
            if not proc.is_alive():
                raise RuntimeError(f"gateway {index} exited during start-up (exit code {proc.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway {index} not ready after {timeout_s}s")

    # ---- whole run -----------------------------------------------------------------------------
    def start(self) -> Pipeline:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.create_rings()
        try:
            for s in range(self.topology.shards):
                self.start_shard(s)
        except BaseException:
            self.stop()
            raise
        return self

    def health(self) -> dict[str, bool]:
        stages = list(self.shards.values()) + list(self.gateways.values())
        return {stage.name: stage.process.is_alive() for stage in stages}

    def scheduling(self) -> dict[str, str]:
        """What the kernel runs each live stage under (``fifo:N`` or ``normal``), for reports."""
        stages = list(self.shards.values()) + list(self.gateways.values())
        return {s.name: get_scheduling(s.process.pid) for s in stages if s.process.is_alive()}

    def stop(self, timeout_s: float = 10.0) -> None:
        """Gateways first, then shards (SIGTERM: they snapshot and exit), then the rings."""
        for group in (self.gateways, self.shards):
            for stage in group.values():
                if stage.process.is_alive():
                    stage.process.terminate()
            for stage in group.values():
                stage.process.join(timeout_s)
                if stage.process.is_alive():
                    stage.process.kill()
                    stage.process.join()
            group.clear()
        for ring in self.rings.values():
            ring.close()
        self.rings.clear()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
