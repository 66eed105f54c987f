"""In-process matching-engine benchmark on the standard order stream (one JSON line).

The stream is ``gen_workload.generate(ops, seed=1)`` (cached under var/workloads). Each run builds a
fresh ``MatchingEngine`` over the workload markets and feeds every record through
``MatchingEngine.place``/``cancel`` (the same methods ``handle`` calls after unpacking the wire
struct). Reported figures, each the median over ``runs`` runs:

* ``ops_per_s``: sink = ``TradeRecorder`` (what ``hx replay`` uses: fills and rejects are recorded,
  the other events are sequenced but not delivered), timed over the whole stream with no sampling;
* ``p50_us``/``p99_us``/``p999_us``: per-command latency, ``perf_counter_ns`` around every 16th
  command in a separate pass (so the timer calls do not slow the throughput pass);
* ``ops_per_s_wire_events``: sink = ``WireEventWriter`` (every event packed as a 64-byte wire
  struct, the buffer drained every 256 commands as a shard process would publish it);
* ``baseline_ops_per_s``: the same engine with the obvious ``ReferenceBook`` on the first
  ``baseline_ops`` records (it is O(book) per command), and ``speedup`` = ops_per_s / baseline.

The garbage collector is paused while the loops run (the engine creates no reference cycles).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from typing import Any

import numpy as np

from engine.shard.market_spec import workload_markets
from engine.shard.matching_engine import MatchingEngine
from engine.shard.reference_book import ReferenceBook
from engine.shard.replay import ORDER_DTYPE, TIF_MAP, feed_orders, owners_of
from engine.shard.trade_recorder import TradeRecorder
from engine.shard.wire_event_writer import WireEventWriter
from perf.workloads.standard_stream import standard_stream

SAMPLE_EVERY = 16


def _columns(orders: np.ndarray) -> tuple[list[Any], ...]:
    owner = owners_of(orders)
    tif = np.minimum(orders["tif"].astype(np.int64), 3)
    is_new = orders["op"] == 1
    acct = np.where(is_new, orders["account"], owner[np.minimum(orders["oid"], len(owner) - 1)])
    return (
        is_new.tolist(),
        orders["side"].tolist(),
        np.array([t for t, _ in TIF_MAP])[tif].tolist(),
        np.array([f for _, f in TIF_MAP])[tif].tolist(),
        orders["market"].tolist(),
        orders["oid"].tolist(),
        acct.tolist(),
        orders["price"].tolist(),
        orders["qty"].tolist(),
    )


def _throughput(orders: np.ndarray, markets: dict, sink: Any, book_factory: Any = None) -> tuple[float, Any]:
    kwargs = {"book_factory": book_factory} if book_factory else {}
    engine = MatchingEngine(markets, sink, debug_validate=False, **kwargs)
    t0 = time.perf_counter()
    feed_orders(engine, orders)
    return time.perf_counter() - t0, engine


def _wire_throughput(orders: np.ndarray, markets: dict) -> float:
    writer = WireEventWriter(1 << 14)
    engine = MatchingEngine(markets, writer, debug_validate=False)
    place, cancel, reset = engine.place, engine.cancel, writer.reset
    cols = _columns(orders)
    gc.disable()
    try:
        t0 = time.perf_counter()
        i = 0
        for new, side, tif, flags, market, oid, account, price, qty in zip(*cols, strict=True):
            if new:
                place(market, oid, oid, account, side, price, qty, tif, 0, flags)
            else:
                cancel(market, oid, 0, account)
            i += 1
            if not i & 255:
                reset()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def _latencies(orders: np.ndarray, markets: dict) -> np.ndarray:
    engine = MatchingEngine(markets, TradeRecorder(), debug_validate=False)
    place, cancel = engine.place, engine.cancel
    clock = time.perf_counter_ns
    samples: list[int] = []
    cols = _columns(orders)
    gc.disable()
    try:
        i = 0
        for new, side, tif, flags, market, oid, account, price, qty in zip(*cols, strict=True):
            i += 1
            if i % SAMPLE_EVERY:
                if new:
                    place(market, oid, oid, account, side, price, qty, tif, 0, flags)
                else:
                    cancel(market, oid, 0, account)
                continue
            t0 = clock()
            if new:
                place(market, oid, oid, account, side, price, qty, tif, 0, flags)
            else:
                cancel(market, oid, 0, account)
            samples.append(clock() - t0)
    finally:
        gc.enable()
    return np.array(samples, dtype=np.int64)


def run(ops: int = 1_000_000, runs: int = 5, baseline_ops: int = 20_000, seed: int = 1) -> dict[str, Any]:
    orders = standard_stream(ops, markets=1, seed=seed).astype(ORDER_DTYPE)
    markets = workload_markets(int(orders["market"].max()) + 1)
    rates, wire_rates, p50, p99, p999 = [], [], [], [], []
    trades = 0
    for _ in range(runs):
        rec = TradeRecorder()
        seconds, _engine = _throughput(orders, markets, rec)
        rates.append(ops / seconds)
        trades = len(rec)
        wire_rates.append(ops / _wire_throughput(orders, markets))
        lat = _latencies(orders, markets) / 1000.0
        p50.append(float(np.percentile(lat, 50)))
        p99.append(float(np.percentile(lat, 99)))
        p999.append(float(np.percentile(lat, 99.9)))
    base_orders = orders[:baseline_ops]
    base_seconds, _ = _throughput(base_orders, markets, TradeRecorder(), ReferenceBook)
    baseline = len(base_orders) / base_seconds
    median = statistics.median(rates)
    return {
        "bench": "book",
        "ops": ops,
        "runs": runs,
        "ops_per_s": round(median),
        "ops_per_s_min": round(min(rates)),
        "ops_per_s_max": round(max(rates)),
        "ops_per_s_wire_events": round(statistics.median(wire_rates)),
        "trades": trades,
        "p50_us": round(statistics.median(p50), 2),
        "p99_us": round(statistics.median(p99), 2),
        "p999_us": round(statistics.median(p999), 2),
        "latency_sampling": f"every {SAMPLE_EVERY}th command, perf_counter_ns",
        "baseline": "ReferenceBook",
        "baseline_ops": len(base_orders),
        "baseline_ops_per_s": round(baseline),
        "speedup": round(median / baseline, 1),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-ops", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(run(args.ops, args.runs, args.baseline_ops)))
