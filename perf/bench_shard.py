"""Shard benchmark: orders through a ring into a shard process, events back through its event ring.

Throughput: the standard 1M-op stream is published in chunks as fast as the ring takes it, while
the same feeder process drains the event ring (another process than the shard); ops/s runs from
the first publish to the echo of the end marker, so every order has been journaled, matched and
its events consumed. Latency: orders are paced at ``rate`` ops/s; every ``sample``-th order is
published together with a HEARTBEAT that carries the order's publish time, and the shard echoes
it right after that order's events: latency = echo consumed - order published (order to last
event consumed). Default wait strategy: spin-then-backoff on both sides; fsync policy: batch.
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
from hx.replay_runner import workload_markets_file
from hx.stream_feeder import EventTally, feed
from hx.topology import Topology
from perf.workloads.standard_stream import standard_stream


def _pipeline(tmp: Path, markets: int, wait: str, fsync: str, tag: str) -> Pipeline:
    topo = Topology(run_id=f"hx-bs-{os.getpid()}-{tag}", shards=1, gateways=0, recorders=1)
    return Pipeline(
        topo,
        markets_path=workload_markets_file(tmp, markets),
        state_dir=tmp / tag,
        wait=wait,
        fsync=fsync,
        snapshot_every=1 << 30,
    )


def _throughput(tmp: Path, orders: np.ndarray, wait: str, fsync: str, tag: str) -> tuple[float, EventTally]:
    commands = to_commands(orders)
    with _pipeline(tmp, int(orders["market"].max()) + 1, wait, fsync, tag) as pipe:
        t0 = time.perf_counter_ns()
        tally = feed(pipe, commands, chunk=256)
        elapsed = time.perf_counter_ns() - t0
    return len(commands) / (elapsed / 1e9), tally


def _paced(
    tmp: Path, orders: np.ndarray, rate: int, sample: int, wait: str, fsync: str, tag: str
) -> np.ndarray:
    commands = to_commands(orders)
    raw = commands.tobytes()
    heartbeat = bytearray(encode(MsgType.HEARTBEAT, 0))
    pair = bytearray(128)
    latencies: list[int] = []
    with _pipeline(tmp, int(orders["market"].max()) + 1, wait, fsync, tag) as pipe:
        ring = pipe.rings[pipe.topology.order_ring(0, 0)]
        consumer = pipe.rings[pipe.topology.event_ring(0)].consumer(0)
        now = time.perf_counter_ns
        period = 1e9 / rate
        t0 = now() + 10_000_000
        n = len(commands)
        expected = 0
        i = 0
        while i < n or len(latencies) < expected:
            if i < n and now() >= t0 + int(i * period):
                order = raw[i * 64 : (i + 1) * 64]
                if i % sample == 0:
                    t = now()
                    HEARTBEAT_STRUCT.pack_into(heartbeat, 0, MsgType.HEARTBEAT, 1, 64, 0, t, i)
                    pair[:64] = order
                    pair[64:] = heartbeat
                    while not ring.try_publish(pair, 2):
                        pass
                    expected += 1
                else:
                    while not ring.try_publish(order, 1):
                        pass
                i += 1
            view, k = consumer.peek()
            if k:
                t = now()
                kinds = np.frombuffer(view, dtype=np.uint8).reshape(k, 64)[:, 0]
                for j in np.flatnonzero(kinds == MsgType.HEARTBEAT):
                    latencies.append(t - HEARTBEAT_STRUCT.unpack_from(view, int(j) * 64)[4])
                del kinds
                view.release()
                consumer.release(k)
            else:
                view.release()
        consumer.close()
    return np.array(latencies, dtype=np.int64)


def run(
    ops: int = 1_000_000,
    runs: int = 5,
    rate: int = 100_000,
    paced_ops: int = 100_000,
    sample: int = 4,
    wait: str = "spin-then-backoff",
    fsync: str = "batch",
) -> dict:
    orders = standard_stream(ops)
    tputs, p50, p99, p999, trades = [], [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="hx-bench-shard-") as tmpdir:
        tmp = Path(tmpdir)
        for r in range(runs):
            tput, tally = _throughput(tmp, orders, wait, fsync, f"t{r}")
            tputs.append(tput)
            trades = len(tally.fills_array())
            lat_us = _paced(tmp, orders[:paced_ops], rate, sample, wait, fsync, f"l{r}") / 1000.0
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
        "wait_strategy": wait,
        "fsync": fsync,
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
