"""A live consumer that stops reading is dropped after the ring's stuck timeout; a slow one is not.

The rule (engine.ring.ring_buffer): while ``publish`` waits for room, every active consumer holding
it back whose cursor does not move is charged the waiting time; at ``stuck_timeout_s`` it is
dropped exactly as a dead consumer is, and publishing goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from engine.ring import DEFAULT_STUCK_TIMEOUT_S, ConsumerDropped, RingBuffer, RingFull, Sleep


def _slot(i: int) -> bytes:
    return i.to_bytes(8, "little") * 8


def _seq(data: bytes, k: int = 0) -> int:
    return int.from_bytes(data[k * 64 : k * 64 + 8], "little")


def _stops_reading(name: str, read_first: int, ready, go_on, out) -> None:  # type: ignore[no-untyped-def]
    """Consumer 1: read ``read_first`` messages, then stay alive without reading until ``go_on``."""
    ring = RingBuffer.attach(name)
    cons = ring.consumer(1)
    got = b""
    while len(got) < read_first * 64:
        got += cons.read(read_first - len(got) // 64, timeout_s=10)
    ready.set()
    go_on.wait(60)
    try:
        cons.peek()
        out.put(("not told",))
    except ConsumerDropped as err:
        skipped = cons.resume()
        out.put((err.reason, err.cursor, skipped, cons.cursor))
        data = cons.read(1, timeout_s=20)  # the next message published after the resume
        out.put(_seq(data) if data else -1)
    finally:
        cons.close()
        ring.close()


def _reads_everything(name: str, total: int, out) -> None:  # type: ignore[no-untyped-def]
    ring = RingBuffer.attach(name)
    cons = ring.consumer(0, Sleep(interval_us=200))
    expected = 0
    in_order = True
    while expected < total:
        data = cons.read(timeout_s=20)
        if not data:
            break
        for k in range(len(data) // 64):
            in_order &= _seq(data, k) == expected
            expected += 1
    out.put((expected, in_order))
    cons.close()
    ring.close()


@pytest.mark.timeout(120)
def test_stuck_consumer_is_dropped_and_publishing_goes_on(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    out_stuck, out_live = ctx.Queue(), ctx.Queue()
    ready, go_on = ctx.Event(), ctx.Event()
    capacity, total = 16, 400
    ring = RingBuffer.create(ring_name, capacity=capacity, consumers=2, stuck_timeout_s=0.3)
    stuck = ctx.Process(target=_stops_reading, args=(ring_name, 5, ready, go_on, out_stuck))
    live = ctx.Process(target=_reads_everything, args=(ring_name, total, out_live))
    try:
        stuck.start()
        live.start()
        for i in range(capacity):
            ring.publish(_slot(i), timeout_s=10)
        assert ready.wait(20)  # consumer 1 read 5 messages and stopped
        full = capacity + 5
        for i in range(capacity, full):
            ring.publish(_slot(i), timeout_s=10)
        t0 = time.monotonic()
        ring.publish(_slot(full), timeout_s=20)  # held back by consumer 1 until it is dropped
        waited = time.monotonic() - t0
        assert waited >= 0.3, f"dropped after {waited:.3f}s, before its timeout"
        assert waited < 10
        assert stuck.is_alive(), "dropped while alive: stuck, not dead"
        assert not ring.is_active(1) and ring.is_active(0)
        assert ring.drop_info(1) == ("stuck", 5, full)
        for i in range(full + 1, total):  # many laps past the dropped consumer's cursor
            ring.publish(_slot(i), timeout_s=20)
        assert out_live.get(timeout=60) == (total, True), "the live consumer saw everything in order"
        go_on.set()
        reason, cursor, skipped, resumed_at = out_stuck.get(timeout=30)
        assert (reason, cursor) == ("stuck", 5), "told why and where it was dropped"
        assert skipped == total - 5 and resumed_at == total, "resumed at the head"
        ring.publish(_slot(total), timeout_s=20)
        assert out_stuck.get(timeout=30) == total, "and reads on from there"
        stuck.join(30)
        live.join(30)
        assert stuck.exitcode == 0 and live.exitcode == 0
    finally:
        go_on.set()
        for p in (stuck, live):
            if p.is_alive():
                p.kill()
                p.join()
        ring.close()


def _reads_slowly(name: str, total: int, pause_s: float, out) -> None:  # type: ignore[no-untyped-def]
    ring = RingBuffer.attach(name)
    cons = ring.consumer(0)
    got = 0
    try:
        while got < total:
            data = cons.read(1, timeout_s=20)
            if not data:
                break
            got += 1
            time.sleep(pause_s)
        out.put(got)
    except ConsumerDropped as err:
        out.put(err.reason)
    finally:
        cons.close()
        ring.close()


@pytest.mark.timeout(120)
def test_slow_consumer_that_moves_is_backpressure_not_dropped(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    capacity, total = 4, 24
    ring = RingBuffer.create(ring_name, capacity=capacity, consumers=1, stuck_timeout_s=0.2)
    proc = ctx.Process(target=_reads_slowly, args=(ring_name, total, 0.05, out))
    try:
        proc.start()
        for i in range(total):  # ~1 s of waiting in all, never 0.2 s without the consumer moving
            ring.publish(_slot(i), timeout_s=20)
        assert out.get(timeout=60) == total
        assert ring.is_active(0) and ring.drop_info(0) is None
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        ring.close()


def test_without_stuck_timeout_a_live_consumer_is_never_dropped(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=4, consumers=1, stuck_timeout_s=None) as ring:
        assert ring.stuck_timeout_s is None
        cons = ring.consumer(0)
        ring.try_publish(b"".join(_slot(i) for i in range(4)))
        with pytest.raises(RingFull, match="consumer lag"):
            ring.publish(_slot(4), timeout_s=0.4)
        assert ring.is_active(0)
        cons.close()


def test_try_publish_never_drops_and_the_charge_counts_only_waiting_time(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=4, consumers=1, stuck_timeout_s=0.25) as ring:
        assert ring.stuck_timeout_s == 0.25
        cons = ring.consumer(0)
        ring.try_publish(b"".join(_slot(i) for i in range(4)))
        end = time.monotonic() + 0.4
        while time.monotonic() < end:
            assert not ring.try_publish(_slot(4))
        assert ring.is_active(0), "try_publish waits for nobody, so it drops nobody"
        with pytest.raises(RingFull):
            ring.publish(_slot(4), timeout_s=0.15)  # 0.15 s charged
        assert ring.is_active(0)
        time.sleep(0.3)  # not waiting: not charged
        t0 = time.monotonic()
        ring.publish(_slot(4), timeout_s=5)  # another 0.1 s or more of waiting reaches 0.25 s
        assert time.monotonic() - t0 >= 0.05, "the time spent not waiting was charged"
        assert not ring.is_active(0)
        assert ring.drop_info(0) == ("stuck", 0, 4)
        with pytest.raises(ConsumerDropped, match="stuck"):
            cons.read()
        cons.close()


def test_default_stuck_timeout_is_stored_in_the_ring(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=4) as ring:
        assert ring.stuck_timeout_s == DEFAULT_STUCK_TIMEOUT_S == 1.0
        other = RingBuffer.attach(ring_name)
        assert other.stuck_timeout_s == 1.0, "every producer handle reads the creator's setting"
        other.close()


def test_a_kept_consumer_is_never_dropped_as_dead_or_stuck() -> None:
    """A consumer that cannot recover what it missed (risk reading fills) is kept: the producer
    waits for it (RingFull after the timeout) instead of dropping it, whatever it does."""
    import os

    from engine.ring import RingBuffer, RingFull

    name = f"hx-t-keep-{os.getpid()}"
    ring = RingBuffer.create(name, 8, consumers=2, stuck_timeout_s=0.05, keep=(0,))
    try:
        kept, other = ring.consumer(0), ring.consumer(1)
        for _ in range(8):
            ring.publish(b"x" * 64)
        other.release(other.available())  # the droppable one keeps up; the kept one never reads
        import pytest

        with pytest.raises(RingFull):
            ring.publish(b"y" * 64, timeout_s=0.5)
        assert ring.is_active(0) and not kept.is_dropped()
        assert ring.reap_dead_consumers() == []
    finally:
        ring.close()
