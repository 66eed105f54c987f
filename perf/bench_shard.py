"""Shard benchmark: orders through a ring into a shard process, events back through its event ring.

Throughput: the standard 1M-op stream is published in chunks as fast as the ring takes it, while
the same feeder process drains the event ring (another process than the shard); ops/s runs from
the first publish to the echo of the end marker, so every order has been journaled, matched and
its events consumed. Latency: orders are paced at ``rate`` ops/s; every ``sample``-th order is
published together with a HEARTBEAT that carries the order's publish time, and the shard echoes
it right after that order's events: latency = echo consumed - order published (order to last
event consumed); the first 5% of each run's samples are a warm-up and are dropped. Defaults: the
shard parks on a blocking wait and runs under SCHED_FIFO 10 where the host allows it (the feeder,
the load generator, polls at normal priority); fsync policy batch. Each paced run starts after an
``os.sync()`` (the throughput run's journal is not flushed on its time) and reports the CPU time
the hypervisor stole during it (``paced_steal_ms``): on a VM every fsync costs vCPU time there.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.shard.order_stream import to_commands
from engine.types.enums import MsgType
from engine.wire.codec import encode
from engine.wire.layout import HEARTBEAT_STRUCT
from hx.pipeline import Pipeline
from hx.topology import Topology
from perf.cpu_steal import StealMeter
from perf.replay_runner import workload_markets_file
from perf.stream_feeder import EventTally, feed
from perf.workloads.standard_stream import standard_stream

WARMUP_FRACTION = 0.05


def _pipeline(tmp: Path, markets: int, wait: str, fsync: str, tag: str, realtime: int = 0) -> Pipeline:
    topo = Topology(run_id=f"hx-bs-{os.getpid()}-{tag}", shards=1, gateways=0, recorders=1)
    return Pipeline(
        topo,
        markets_path=workload_markets_file(tmp, markets),
        state_dir=tmp / tag,
        wait=wait,
        fsync=fsync,
        snapshot_every=1 << 30,
        realtime_priority=realtime,
    )


def _throughput(
    tmp: Path, orders: np.ndarray, wait: str, fsync: str, tag: str, realtime: int
) -> tuple[float, EventTally]:
    commands = to_commands(orders)
    with _pipeline(tmp, int(orders["market"].max()) + 1, wait, fsync, tag, realtime) as pipe:
        t0 = time.perf_counter_ns()
        tally = feed(pipe, commands, chunk=256)
        elapsed = time.perf_counter_ns() - t0
    return len(commands) / (elapsed / 1e9), tally


def _paced(
    tmp: Path,
    orders: np.ndarray,
    rate: int,
    sample: int,
    wait: str,
    fsync: str,
    tag: str,
    realtime: int = 0,
) -> tuple[np.ndarray, float | None, dict[str, str]]:
    """Order published -> its last event consumed, for every ``sample``-th order, at ``rate`` ops/s.

    Each order is published at its scheduled time (one slot, or two with the HEARTBEAT that carries
    the publish time of a sampled order, right behind it). When the feeder finds itself late it
    publishes every order that is due in one go, so it never falls behind schedule; the latency is
    still counted from the moment each sampled order actually entered the ring. The event side is
    scanned for HEARTBEAT echoes without numpy (cheap for the handful of events of a small batch).
    Returns the latencies (ns), the hypervisor's steal during the run (ms) and the stage scheduling.
    """
    commands = to_commands(orders)
    raw = commands.tobytes()
    n = len(commands)
    # the stream with a HEARTBEAT slot behind every sampled order (its clock filled in on publish)
    heartbeat = encode(MsgType.HEARTBEAT, 0)
    slots: list[bytes] = []
    hb_at: list[int] = []  # slot index of each heartbeat
    order_end: list[int] = []  # slot index just past order i (and its heartbeat)
    for i in range(n):
        slots.append(raw[i * 64 : (i + 1) * 64])
        if i % sample == 0:
            hb_at.append(len(slots))
            slots.append(heartbeat)
        order_end.append(len(slots))
    stream = bytearray(b"".join(slots))
    hb_of_slot = dict.fromkeys(hb_at)
    latencies: list[int] = []
    pack_hb = HEARTBEAT_STRUCT.pack_into
    hb_type = int(MsgType.HEARTBEAT)
    with _pipeline(tmp, int(orders["market"].max()) + 1, wait, fsync, tag, realtime) as pipe:
        scheduling = pipe.scheduling()
        ring = pipe.rings[pipe.topology.order_ring(0, 0)]
        consumer = pipe.rings[pipe.topology.event_ring(0)].consumer(0)
        now = time.perf_counter_ns
        period = 1e9 / rate
        t0 = now() + 10_000_000
        expected = len(hb_at)
        i = 0  # next order to publish
        slot = 0  # next slot to publish
        with StealMeter() as steal:
            while i < n or len(latencies) < expected:
                if i < n:
                    t = now()
                    due = min(n, int((t - t0) / period) + 1) if t >= t0 else 0
                    if due > i:
                        end_slot = order_end[due - 1]
                        for k in range(slot, end_slot):
                            if k in hb_of_slot:
                                pack_hb(stream, k * 64, hb_type, 1, 64, 0, t, k)
                        view = memoryview(stream)[slot * 64 : end_slot * 64]
                        while not ring.try_publish(view, end_slot - slot):
                            pass
                        view.release()
                        slot = end_slot
                        i = due
                if consumer.available():
                    view, k = consumer.peek()
                    got = now()
                    kinds = view[::64].tobytes() if k > 1 else view[:1].tobytes()
                    j = kinds.find(b"\x40")
                    while j >= 0:
                        latencies.append(got - HEARTBEAT_STRUCT.unpack_from(view, j * 64)[4])
                        j = kinds.find(b"\x40", j + 1)
                    view.release()
                    consumer.release(k)
        consumer.close()
    return np.array(latencies, dtype=np.int64), steal.ms, scheduling


def run(
    ops: int = 1_000_000,
    runs: int = 5,
    rate: int = 100_000,
    paced_ops: int = 100_000,
    sample: int = 4,
    wait: str = "blocking",
    fsync: str = "batch",
    realtime_priority: int = 10,
) -> dict:
    orders = standard_stream(ops)
    tputs, p50, p99, p999, steal_ms, trades = [], [], [], [], [], 0
    scheduling: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="hx-bench-shard-") as tmpdir:
        tmp = Path(tmpdir)
        for r in range(runs):
            tput, tally = _throughput(tmp, orders, wait, fsync, f"t{r}", realtime_priority)
            tputs.append(tput)
            trades = len(tally.fills_array())
            # The throughput run leaves ~100 MB of journal dirty in the page cache; flushed during the
            # paced run it would stall the vCPUs (see perf.cpu_steal) and be charged to that run.
            os.sync()
            lat_ns, steal, scheduling = _paced(
                tmp, orders[:paced_ops], rate, sample, wait, fsync, f"l{r}", realtime_priority
            )
            steal_ms.append(steal)
            lat_us = lat_ns / 1000.0
            lat_us = lat_us[int(len(lat_us) * WARMUP_FRACTION) :]  # first touches of rings and pools
            p50.append(float(np.percentile(lat_us, 50)))
            p99.append(float(np.percentile(lat_us, 99)))
            p999.append(float(np.percentile(lat_us, 99.9)))
    return {
        "bench": "shard",
        "ops_per_s": round(statistics.median(tputs)),
        "trades": trades,
        "p50_us": round(statistics.median(p50), 1),
        "p99_us": round(statistics.median(p99), 1),
        "p999_us": round(statistics.median(p999), 1),
        "runs": runs,
        "ops": ops,
        "throughput_runs": [round(t) for t in tputs],
        "paced_rate_ops_per_s": rate,
        "paced_ops": paced_ops,
        "latency_sample_every": sample,
        "latency_warmup_dropped": f"first {WARMUP_FRACTION:.0%} of the samples of each run",
        "wait_strategy": wait,
        "fsync": fsync,
        "scheduling": scheduling,
        "paced_p99_us_runs": [round(v, 1) for v in p99],
        "paced_steal_ms": steal_ms,
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
