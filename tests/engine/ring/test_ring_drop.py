"""Dropped consumers: overrun is detected, never returned; the re-attach/drop race, with processes.

A consumer is dropped by the producer (dead, stuck or on request); from then on the producer may
overwrite slots it had not released. The consumer must learn it (ConsumerDropped from peek, release
or read) and must never release a batch that may have been overwritten while it was reading it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import random
import signal
import time
from typing import Any

import numpy as np
import pytest

from engine.ring import ConsumerDropped, RingBuffer

WORDS = 8  # a 64-byte slot as 8 int64 words: [seq, seq*K+1, ..., checksum]
K = np.int64(0x9E3779B97F4A7C15 - (1 << 64))


def _payload(first: int, n: int) -> np.ndarray:
    seqs = np.arange(first, first + n, dtype="<i8")
    out = np.empty((n, WORDS), dtype="<i8")
    out[:, 0] = seqs
    with np.errstate(over="ignore"):
        for k in range(1, WORDS - 1):
            out[:, k] = seqs * K + k
    out[:, WORDS - 1] = np.bitwise_xor.reduce(out[:, : WORDS - 1], axis=1)
    return out


def _intact(block: np.ndarray, first: int) -> bool:
    return bool(np.array_equal(block, _payload(first, len(block))))


def test_release_refuses_a_batch_overwritten_while_read(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8, consumers=1, stuck_timeout_s=None) as ring:
        cons = ring.consumer(0)
        assert ring.try_publish(_payload(0, 8).tobytes())
        view, n = cons.peek(4)
        assert n == 4 and _intact(np.frombuffer(view, "<i8").reshape(n, WORDS), 0)
        assert ring.drop_consumer(0)
        assert not ring.is_active(0)
        assert ring.try_publish(_payload(8, 8).tobytes()), "a dropped consumer no longer gates"
        assert not _intact(np.frombuffer(view, "<i8").reshape(n, WORDS), 0), "the bytes were overwritten"
        view.release()
        assert cons.is_dropped()
        with pytest.raises(ConsumerDropped, match="requested") as err:
            cons.release(n)
        assert (err.value.reason, err.value.cursor, err.value.published_at_drop) == ("requested", 0, 8)
        assert cons.cursor == 0, "nothing was released"
        with pytest.raises(ConsumerDropped):
            cons.peek()
        with pytest.raises(ConsumerDropped):
            cons.read()
        assert cons.resume() == 16, "skipped everything up to the head"
        assert cons.dropped and cons.drop_reason == "requested"
        assert ring.is_active(0) and cons.available() == 0
        assert ring.try_publish(_payload(16, 3).tobytes())
        data = np.frombuffer(cons.read(), "<i8").reshape(-1, WORDS)
        assert _intact(data, 16)
        cons.close()


def test_drop_of_an_inactive_consumer_is_a_no_op(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8, consumers=2) as ring:
        assert ring.drop_consumer(1)
        assert not ring.drop_consumer(1)
        assert ring.drop_info(1) == ("requested", 0, 0)
        assert ring.drop_info(0) is None
        again = ring.consumer(1)
        assert again.dropped and again.drop_reason == "requested"
        assert ring.drop_consumer(1), "re-registered: active again, so droppable again"
        assert again.resume() == 0 and ring.is_active(1)
        assert again.resume() == 0, "resume of an active consumer changes nothing"
        again.close()


def test_release_more_than_published_is_an_error(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8) as ring:
        cons = ring.consumer(0)
        ring.try_publish(_payload(0, 2).tobytes())
        with pytest.raises(ValueError, match="only 2 messages are unread"):
            cons.release(3)
        with pytest.raises(ValueError):
            cons.release(-1)
        cons.release(2)
        cons.close()


# ---- the race, with real processes ---------------------------------------------------------------
def _producer(name: str, stop, out, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Publish sequence-stamped batches as fast as the ring takes them; drop consumer 0 at random
    (mostly while it holds the producer back, so its unread slots are then overwritten) and reap
    dead consumers, racing the consumer processes that attach, read, resume and die."""
    ring = RingBuffer.attach(name)
    ring.set_producer()
    rng = random.Random(seed)
    pub = drops = 0
    try:
        while not stop.is_set():
            n = rng.randint(1, 12)
            if ring.try_publish(_payload(pub, n).tobytes()):
                pub += n
                if rng.random() < 0.002:
                    drops += ring.drop_consumer(0)
            else:
                r = rng.random()
                if r < 0.02:
                    drops += ring.drop_consumer(0)
                elif r < 0.05:
                    drops += len(ring.reap_dead_consumers())
                elif r < 0.3:
                    time.sleep(0)
    finally:
        out.send(("producer", pub, drops))
        ring.close()


def _consumer(name: str, seed: int, lifetime_s: float, out) -> None:  # type: ignore[no-untyped-def]
    """Attach consumer 0, copy each batch, release it, and only then check the copy. Counts
    ``bad`` (a released batch that was not intact: must never happen) and ``torn`` (a batch seen
    overwritten that release then refused: the race caught)."""
    rng = random.Random(seed)
    ring = RingBuffer.attach(name)
    cons = ring.consumer(0)
    ok = bad = torn = told = 0
    end = time.monotonic() + lifetime_s
    try:
        while time.monotonic() < end:
            try:
                view, n = cons.peek(rng.randint(1, 24))
                if not n:
                    view.release()
                    continue
                first = cons.cursor
                block = np.frombuffer(view, "<i8").reshape(n, WORDS).copy()
                view.release()
                if rng.random() < 0.05:
                    time.sleep(0.0005)  # a slow reader: let the producer lap it if it is dropped
                try:
                    cons.release(n)
                except ConsumerDropped:
                    torn += not _intact(block, first)
                    raise
                if _intact(block, first):
                    ok += n
                else:
                    bad += 1
            except ConsumerDropped:
                told += 1
                if rng.random() < 0.5:
                    break  # this process goes away; the next one re-attaches the dropped index
                cons.resume()
    finally:
        out.send(("consumer", ok, bad, torn, told, int(cons.dropped)))
        cons.close()
        ring.close()


def _reports(conns: list[Any]) -> list[tuple[Any, ...]]:
    """What each child sent on its own pipe. A child killed mid-send leaves a torn message on its
    own pipe only (a shared mp.Queue would leave its write lock held by the dead child and hang
    every other writer, the producer included)."""
    reports = []
    for conn in conns:
        try:
            if conn.poll(1):
                reports.append(conn.recv())
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        conn.close()
    return reports


@pytest.mark.timeout(120)
def test_reattach_races_the_producer_dropping_it(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    ring = RingBuffer.create(ring_name, capacity=64, consumers=1, stuck_timeout_s=None)
    conns: list[Any] = []

    def pipe() -> Any:
        recv_end, send_end = ctx.Pipe(duplex=False)
        conns.append(recv_end)
        return send_end

    send_end = pipe()
    producer = ctx.Process(target=_producer, args=(ring_name, stop, send_end, 1))
    children: list[mp.process.BaseProcess] = []
    rng = random.Random(2)
    try:
        producer.start()
        send_end.close()  # only the child holds its end now: EOF as soon as it dies
        deadline, hard_deadline = time.monotonic() + 4.0, time.monotonic() + 60.0
        seed = 0
        # 4 s, and at least 80 consumer lifetimes however loaded the machine (the counts asserted below)
        while time.monotonic() < deadline or (len(children) < 80 and time.monotonic() < hard_deadline):
            seed += 1
            send_end = pipe()
            child = ctx.Process(target=_consumer, args=(ring_name, seed, rng.uniform(0.02, 0.2), send_end))
            child.start()
            send_end.close()
            children.append(child)
            if rng.random() < 0.3:  # killed mid-read: the producer's dead check races the next attach
                time.sleep(rng.uniform(0.005, 0.05))
                os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            child.join(30)
        stop.set()
        producer.join(30)
        assert producer.exitcode == 0
        reports = _reports(conns)
    finally:
        stop.set()
        for p in (producer, *children):
            if p.is_alive():
                p.kill()
                p.join()
        ring.close()
    consumers = [r for r in reports if r[0] == "consumer"]
    (published, drops) = next(r[1:] for r in reports if r[0] == "producer")
    ok = sum(r[1] for r in consumers)
    bad = sum(r[2] for r in consumers)
    told = sum(r[4] for r in consumers) + sum(r[5] for r in consumers)
    assert bad == 0, f"{bad} released batches were overwritten"
    assert ok > 1000 and published > ok
    assert drops > 0 and told > 0, (drops, told)
    print(
        f"published {published}, released intact {ok}, drops {drops}, told {told}, torn reads refused "
        f"{sum(r[3] for r in consumers)}"
    )
