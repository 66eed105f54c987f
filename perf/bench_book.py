"""In-process matching-engine benchmark on the standard order stream (one JSON line).

The stream is ``gen_workload.generate(ops, seed=1)`` (cached under var/workloads), translated once to
64-byte wire commands (``order_stream.to_commands``, timed separately as ``convert_s``). Each run
builds a fresh ``NativeEngine`` (the compiled core the shard runs) over the workload markets and
hands it the commands in ring-sized batches (``core.handle_batch``, ``BATCH`` commands a call),
taking the packed wire events after every batch, as the shard does before publishing them. Figures,
each the median over ``runs`` runs:

* ``ops_per_s``: commands per second over the whole stream, every event packed as a 64-byte wire
  struct and handed back to Python (no sampling inside the timed loop);
* ``p50_us``/``p99_us``/``p999_us``: per-command latency, ``perf_counter_ns`` around a one-command
  ``handle_batch`` call for every 16th command in a separate pass (so it includes the Python call);
* ``trades``: FILL events in the output, checked against the Python twin's fills on the baseline part;
* ``baseline_ops_per_s``: the Python twin ``MatchingEngine`` (the specification the core is tested
  against) on the first ``baseline_ops`` commands with the same wire-event output, measured in the same
  process; ``speedup`` = ops_per_s / baseline.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from typing import Any

import numpy as np

from engine.shard.matching_engine import MatchingEngine
from engine.shard.native_engine import NativeEngine
from engine.shard.order_stream import ORDER_DTYPE, to_commands
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import MsgType
from engine.types.market_spec import workload_markets
from perf.workloads.standard_stream import standard_stream

SAMPLE_EVERY = 16
BATCH = 256  # the shard's MAX_BATCH
_FILL = int(MsgType.FILL)


def _fills(events: bytes) -> int:
    return int(np.count_nonzero(np.frombuffer(events, dtype=np.uint8)[::64] == _FILL))


def _native_pass(buf: bytes, count: int, markets: dict) -> tuple[float, int]:
    """(seconds, fills) for the whole stream through a fresh native engine."""
    engine = NativeEngine(markets, WireEventWriter(), debug_validate=False)
    core = engine.core
    handle_batch, take = core.handle_batch, core.take_events
    fills = 0
    t0 = time.perf_counter()
    for start in range(0, count, BATCH):
        handle_batch(buf, min(BATCH, count - start), start * 64)
        fills += _fills(take())
    return time.perf_counter() - t0, fills


def _native_latencies(buf: bytes, count: int, markets: dict) -> np.ndarray:
    engine = NativeEngine(markets, WireEventWriter(), debug_validate=False)
    core = engine.core
    handle_batch, take = core.handle_batch, core.take_events
    clock = time.perf_counter_ns
    samples = []
    for i in range(count):
        if i % SAMPLE_EVERY:
            handle_batch(buf, 1, i * 64)
        else:
            t0 = clock()
            handle_batch(buf, 1, i * 64)
            samples.append(clock() - t0)
        if not i & 255:
            take()
    return np.array(samples, dtype=np.int64)


def _python_pass(buf: bytes, count: int, markets: dict) -> tuple[float, int]:
    """(seconds, fills) for the Python twin over the first ``count`` commands, wire events out."""
    writer = WireEventWriter(1 << 14)
    engine = MatchingEngine(markets, writer, debug_validate=False)
    handle = engine.handle
    fills = 0
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for start in range(0, count, BATCH):
            for i in range(start, min(start + BATCH, count)):
                handle(buf, i * 64)
            fills += _fills(writer.take())
        return time.perf_counter() - t0, fills
    finally:
        if was_enabled:
            gc.enable()


def run(ops: int = 1_000_000, runs: int = 5, baseline_ops: int = 200_000, seed: int = 1) -> dict[str, Any]:
    orders = standard_stream(ops, markets=1, seed=seed).astype(ORDER_DTYPE)
    markets = workload_markets(int(orders["market"].max()) + 1)
    t0 = time.perf_counter()
    buf = to_commands(orders).tobytes()
    convert_s = time.perf_counter() - t0
    rates, p50, p99, p999 = [], [], [], []
    trades = 0
    for _ in range(runs):
        seconds, trades = _native_pass(buf, ops, markets)
        rates.append(ops / seconds)
        lat = _native_latencies(buf, ops, markets) / 1000.0
        p50.append(float(np.percentile(lat, 50)))
        p99.append(float(np.percentile(lat, 99)))
        p999.append(float(np.percentile(lat, 99.9)))
    base_n = min(baseline_ops, ops)
    base_seconds, base_fills = _python_pass(buf, base_n, markets)
    _, native_fills_at_base = _native_pass(buf, base_n, markets)
    baseline = base_n / base_seconds
    median = statistics.median(rates)
    return {
        "bench": "book",
        "engine": "native (engine/native/_hxcore.c)",
        "ops": ops,
        "runs": runs,
        "ops_per_s": round(median),
        "ops_per_s_min": round(min(rates)),
        "ops_per_s_max": round(max(rates)),
        "events": "every event packed as a 64-byte wire struct and returned to Python per batch",
        "batch": BATCH,
        "trades": trades,
        "p50_us": round(statistics.median(p50), 2),
        "p99_us": round(statistics.median(p99), 2),
        "p999_us": round(statistics.median(p999), 2),
        "latency_sampling": f"every {SAMPLE_EVERY}th command, perf_counter_ns around a one-command call",
        "convert_s": round(convert_s, 3),
        "baseline": "Python twin MatchingEngine, same wire-event output",
        "baseline_ops": base_n,
        "baseline_ops_per_s": round(baseline),
        "baseline_fills_equal": base_fills == native_fills_at_base,
        "speedup": round(median / baseline, 1),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-ops", type=int, default=200_000)
    args = parser.parse_args()
    print(json.dumps(run(args.ops, args.runs, args.baseline_ops)))
