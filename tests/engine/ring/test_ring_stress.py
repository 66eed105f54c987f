"""Multi-process stress: 1 producer, 3 consumers at different speeds, every wait strategy.

Each message carries its sequence number and words derived from it plus a checksum word, so a
consumer can prove, vectorised per batch, that it saw every message exactly once, in order, intact.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from engine.ring import RingBuffer, make_wait_strategy

WORDS = 8  # 64-byte slots as 8 int64 words: [header, seq, f1..f5, checksum]
MUL = np.int64(0x9E3779B97F4A7C15 - (1 << 64))


def _payload(seqs: np.ndarray) -> np.ndarray:
    out = np.empty((len(seqs), WORDS), dtype="<i8")
    out[:, 0] = 0x40_0001_22
    out[:, 1] = seqs
    with np.errstate(over="ignore"):
        for k in range(2, 7):
            out[:, k] = seqs * MUL + k
        out[:, 7] = np.bitwise_xor.reduce(out[:, 1:7], axis=1)
    return out


def _check(block: np.ndarray, first_seq: int) -> bool:
    expect = _payload(np.arange(first_seq, first_seq + len(block), dtype="<i8"))
    return bool(np.array_equal(block, expect))


def _produce(name: str, total: int, wait: str) -> None:
    ring = RingBuffer.attach(name)
    strategy = make_wait_strategy(wait)
    rng = np.random.default_rng(7)
    sent = 0
    while sent < total:
        n = min(int(rng.integers(1, 300)), total - sent)
        ring.publish(_payload(np.arange(sent, sent + n, dtype="<i8")).tobytes(), wait=strategy, timeout_s=60)
        sent += n
    ring.close()


def _consume(name: str, index: int, total: int, wait: str, style: str, out: mp.Queue) -> None:
    ring = RingBuffer.attach(name)
    cons = ring.consumer(index, make_wait_strategy(wait))
    seen, bad_batches, batches = 0, 0, 0
    try:
        while seen < total:
            if not cons.wait(timeout_s=30):
                break
            view, n = cons.peek(7 if style == "small" else 1 << 20)
            block = np.frombuffer(view, dtype="<i8").reshape(n, WORDS)
            if not _check(block, seen):
                bad_batches += 1
            del block
            view.release()
            cons.release(n)
            seen += n
            batches += 1
            if style == "slow" and batches % 50 == 0:
                time.sleep(0.002)
    finally:
        cons.close()
        ring.close()
        out.put((index, seen, bad_batches))


@pytest.mark.parametrize(
    ("wait", "total"),
    [("spin-then-backoff", 2_000_000), ("busy-spin", 300_000), ("sleep", 500_000), ("blocking", 1_000_000)],
)
def test_three_consumers_see_everything_in_order(ring_name: str, wait: str, total: int) -> None:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    ring = RingBuffer.create(ring_name, capacity=1 << 12, consumers=3)
    procs = [
        ctx.Process(target=_consume, args=(ring_name, i, total, wait, style, out))
        for i, style in enumerate(("fast", "small", "slow"))
    ]
    procs.append(ctx.Process(target=_produce, args=(ring_name, total, wait)))
    try:
        for p in procs:
            p.start()
        results = sorted(out.get(timeout=240) for _ in range(3))
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        ring.close()
    assert results == [(0, total, 0), (1, total, 0), (2, total, 0)]
