"""Ring benchmark: producer and consumer in two processes over a shared-memory ring.

Two measurements, each the median of ``runs`` runs with fresh processes:

* throughput: the producer publishes ``messages`` 64-byte messages in batches of ``batch`` as fast
  as the ring takes them; the consumer checks every batch's last sequence number; msgs/s is
  measured by the consumer from the first message to the last;
* latency: the producer paces single-message publishes at ``rate`` msgs/s, stamping each with
  ``perf_counter_ns`` (CLOCK_MONOTONIC, shared by all processes); the consumer records
  ``now - stamp`` for every message: one-way latency under a paced load.

Baseline, in the same run: the same batched messages through a ``faster_fifo.Queue`` (the
transport the design keeps for control traffic), so the ring's figure has a ratio to stand on.

Wall-clock figures move with the machine's load (2 vCPUs shared with other work here). For a
repeatable cost per operation, ``ops`` runs producer and consumer in one process (try_publish,
wait, peek, release per batch) so that callgrind counts the same instructions every time; the
cost of a batch is the difference of two iteration counts, which cancels start-up::

    for n in 10000 20000; do PYTHONHASHSEED=0 OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null .venv/bin/python -m perf.bench_ring ops $n 64; done
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import struct
import time

import numpy as np

from engine.ring import RingBuffer, make_wait_strategy

STAMP = struct.Struct("<qq")  # (sequence, timestamp ns) at byte 8 of each slot


def _batch_template(batch: int) -> np.ndarray:
    arr = np.zeros((batch, 8), dtype="<i8")  # 8 int64 words = 64 bytes per message
    arr[:, 0] = 0x40_0001_40  # a plausible header word
    return arr


def _producer_throughput(name: str, messages: int, batch: int, wait_name: str) -> None:
    ring = RingBuffer.attach(name)
    strategy = make_wait_strategy(wait_name)
    arr = _batch_template(batch)
    steps = np.arange(batch, dtype="<i8")
    sent = 0
    while sent < messages:
        n = min(batch, messages - sent)
        arr[:, 1] = steps + sent
        ring.publish(arr[:n].data.cast("B"), wait=strategy)
        sent += n
    ring.close()


def _consumer_throughput(name: str, messages: int, wait_name: str, out: mp.Queue) -> None:
    ring = RingBuffer.attach(name)
    cons = ring.consumer(0, make_wait_strategy(wait_name))
    got = 0
    t0 = 0
    errors = 0
    while got < messages:
        cons.wait()
        view, n = cons.peek()
        if not t0:
            t0 = time.perf_counter_ns()
        last_seq = STAMP.unpack_from(view, (n - 1) * 64 + 8)[0]
        if last_seq != got + n - 1:
            errors += 1
        view.release()
        cons.release(n)
        got += n
    elapsed = time.perf_counter_ns() - t0
    cons.close()
    ring.close()
    out.put((messages / (elapsed / 1e9), errors))


def _producer_paced(name: str, messages: int, rate: int, wait_name: str) -> None:
    ring = RingBuffer.attach(name)
    buf = bytearray(64)
    period = 1e9 / rate
    now = time.perf_counter_ns
    t0 = now() + 20_000_000
    for i in range(messages):
        target = t0 + int(i * period)
        while now() < target:
            pass
        STAMP.pack_into(buf, 8, i, now())
        while not ring.try_publish(buf, 1):
            pass
    ring.close()


def _consumer_paced(name: str, messages: int, wait_name: str, out: mp.Queue) -> None:
    ring = RingBuffer.attach(name)
    cons = ring.consumer(0, make_wait_strategy(wait_name))
    lat = np.empty(messages, dtype=np.int64)
    got = 0
    now = time.perf_counter_ns
    unpack = STAMP.unpack_from
    while got < messages:
        cons.wait()
        view, n = cons.peek()
        t = now()
        for k in range(n):
            lat[got + k] = t - unpack(view, k * 64 + 8)[1]
        view.release()
        cons.release(n)
        got += n
    cons.close()
    ring.close()
    out.put(lat)


def _run_pair(target_p, target_c, name: str, p_args: tuple, c_args: tuple):  # type: ignore[no-untyped-def]
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    ring = RingBuffer.create(name, capacity=1 << 14, consumers=1)
    try:
        c = ctx.Process(target=target_c, args=(name, *c_args, out))
        p = ctx.Process(target=target_p, args=(name, *p_args))
        c.start()
        p.start()
        result = out.get(timeout=120)
        p.join(30)
        c.join(30)
        return result
    finally:
        for proc in (p, c):
            if proc.is_alive():
                proc.kill()
                proc.join()
        ring.close()


def _fifo_baseline(messages: int, batch: int) -> float:
    import faster_fifo

    messages -= messages % batch  # whole batches only: the consumer waits for exactly what is sent
    ctx = mp.get_context("fork")
    q = faster_fifo.Queue(max_size_bytes=64 << 20)
    done = ctx.Queue()
    payload = _batch_template(batch).tobytes()

    def consume() -> None:
        got = 0
        t0 = 0
        while got < messages:
            msgs = q.get_many(timeout=10)
            if not t0:
                t0 = time.perf_counter_ns()
            got += sum(len(m) for m in msgs) // 64
        done.put(messages / ((time.perf_counter_ns() - t0) / 1e9))

    c = ctx.Process(target=consume)
    c.start()
    try:
        for _ in range(messages // batch):
            q.put(payload, timeout=10)
        return float(done.get(timeout=120))
    finally:
        c.join(10)
        if c.is_alive():
            c.kill()
            c.join()


def run(
    messages: int = 2_000_000,
    batch: int = 64,
    rate: int = 100_000,
    paced_messages: int = 100_000,
    runs: int = 5,
    wait: str = "spin-then-backoff",
) -> dict:
    """Run both measurements ``runs`` times and return the report dict (medians)."""
    tag = f"hx-bench-{os.getpid()}"
    tputs, errors, p50s, p99s, p999s, maxes = [], 0, [], [], [], []
    for r in range(runs):
        tput, err = _run_pair(
            _producer_throughput,
            _consumer_throughput,
            f"{tag}-t{r}",
            (messages, batch, wait),
            (messages, wait),
        )
        tputs.append(tput)
        errors += err
        lat = _run_pair(
            _producer_paced,
            _consumer_paced,
            f"{tag}-l{r}",
            (paced_messages, rate, wait),
            (paced_messages, wait),
        )
        lat_us = lat / 1000.0
        p50s.append(float(np.percentile(lat_us, 50)))
        p99s.append(float(np.percentile(lat_us, 99)))
        p999s.append(float(np.percentile(lat_us, 99.9)))
        maxes.append(float(lat_us.max()))
    baseline = statistics.median(_fifo_baseline(min(messages, 1_000_000), batch) for _ in range(3))
    med = statistics.median(tputs)
    return {
        "bench": "ring",
        "msgs_per_s": round(med),
        "p50_us": round(statistics.median(p50s), 2),
        "p99_us": round(statistics.median(p99s), 2),
        "p999_us": round(statistics.median(p999s), 2),
        "max_us": round(statistics.median(maxes), 2),
        "runs": runs,
        "wait_strategy": make_wait_strategy(wait).describe(),
        "batch": batch,
        "messages": messages,
        "paced_rate_msgs_per_s": rate,
        "paced_messages": paced_messages,
        "throughput_runs": [round(t) for t in tputs],
        "p50_runs_us": [round(v, 2) for v in p50s],
        "p99_runs_us": [round(v, 2) for v in p99s],
        "sequence_errors": errors,
        "baseline": {"transport": "faster_fifo.Queue, same batches", "msgs_per_s": round(baseline)},
        "ratio_vs_baseline": round(med / baseline, 2),
        "cpus": os.cpu_count(),
    }


def ops(iterations: int, batch: int) -> None:
    """One process, ``iterations`` x (try_publish ``batch`` slots, wait, peek, release): for callgrind."""
    name = f"hx-bench-ops-{os.getpid()}"
    ring = RingBuffer.create(name, capacity=1 << 14, consumers=1)
    try:
        cons = ring.consumer(0)
        data = _batch_template(batch).data.cast("B")
        for _ in range(iterations):
            ring.try_publish(data, batch)
            cons.wait()
            view, n = cons.peek()
            view.release()
            cons.release(n)
        cons.close()
    finally:
        ring.close()


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "ops":
        ops(int(sys.argv[2]), int(sys.argv[3]))
    else:
        print(json.dumps(run()))
