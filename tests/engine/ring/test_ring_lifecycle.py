"""Creation, attach by name, backpressure, dead-consumer detection, bad input and cleanup."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest

from engine.ring import RingBuffer, RingError, RingFull, cleanup_rings
from engine.ring.ring_buffer import wake_path
from engine.ring.wait_strategy import Blocking, make_wait_strategy


def _slot(i: int) -> bytes:
    return i.to_bytes(8, "little") * 8


def test_attach_missing_ring_names_it() -> None:
    with pytest.raises(RingError, match="'hx-no-such-ring' does not exist"):
        RingBuffer.attach("hx-no-such-ring")


def test_attach_foreign_segment_is_refused(ring_name: str) -> None:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=ring_name, create=True, size=8192)
    try:
        with pytest.raises(RingError, match=f"{ring_name}.*not an hx ring"):
            RingBuffer.attach(ring_name)
    finally:
        shm.close()
        os.unlink(f"/dev/shm/{ring_name}")


def test_attach_wrong_version_is_refused(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, capacity=8, consumers=1)
    try:
        ring._ctl[1] = 99
        with pytest.raises(RingError, match="layout version 99"):
            RingBuffer.attach(ring_name)
    finally:
        ring._ctl[1] = 1
        ring.close()


def test_truncated_segment_is_refused(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, capacity=1024, consumers=1)
    try:
        os.truncate(f"/dev/shm/{ring_name}", 4096)
        with pytest.raises(RingError, match="segment is 4096 bytes"):
            RingBuffer.attach(ring_name)
    finally:
        ring.close()


@pytest.mark.parametrize("capacity", [0, 3, 100])
def test_capacity_must_be_power_of_two(ring_name: str, capacity: int) -> None:
    with pytest.raises(RingError, match="power of two"):
        RingBuffer.create(ring_name, capacity=capacity)


def test_duplicate_create_is_refused(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8):
        with pytest.raises(RingError, match="already exists"):
            RingBuffer.create(ring_name, capacity=8)


def test_full_ring_is_backpressure_not_overwrite(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=4, consumers=2) as ring:
        c0, c1 = ring.consumer(0), ring.consumer(1)
        for i in range(4):
            assert ring.try_publish(_slot(i))
        assert not ring.try_publish(_slot(99))
        assert c0.read() == b"".join(_slot(i) for i in range(4))
        assert not ring.try_publish(_slot(99)), "the slower consumer still gates the producer"
        with pytest.raises(RingFull, match="consumer lag"):
            ring.publish(_slot(99), timeout_s=0.05)
        assert c1.read(2) == _slot(0) + _slot(1)
        assert ring.try_publish(_slot(4) + _slot(5))
        assert c1.read() == _slot(2) + _slot(3)
        assert c1.read() == _slot(4) + _slot(5), "wrapped batch reads back in order"
        c0.close()
        c1.close()


def test_batch_larger_than_ring_is_an_error(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=4) as ring:
        with pytest.raises(RingError, match="exceeds capacity"):
            ring.try_publish(b"\0" * 64 * 5)


def test_messages_published_before_attach_are_kept(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8) as ring:
        ring.try_publish(_slot(1) + _slot(2))
        other = RingBuffer.attach(ring_name)
        cons = other.consumer(0)
        assert cons.read() == _slot(1) + _slot(2)
        cons.close()
        other.close()


def test_consumer_resumes_at_its_cursor(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8) as ring:
        ring.try_publish(_slot(1) + _slot(2) + _slot(3))
        first = ring.consumer(0)
        assert first.read(1) == _slot(1)
        first.close()
        again = ring.consumer(0)
        assert not again.dropped
        assert again.read() == _slot(2) + _slot(3)
        again.close()


def _attach_and_hang(name: str, ready) -> None:  # type: ignore[no-untyped-def]
    ring = RingBuffer.attach(name)
    ring.consumer(1)
    ready.set()
    time.sleep(60)


def test_dead_consumer_is_dropped_and_producer_continues(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    with RingBuffer.create(ring_name, capacity=4, consumers=2) as ring:
        ready = ctx.Event()
        proc = ctx.Process(target=_attach_and_hang, args=(ring_name, ready))
        proc.start()
        try:
            assert ready.wait(10)
            live = ring.consumer(0)
            for i in range(4):
                assert ring.try_publish(_slot(i))
            live.read()
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            ring.publish(_slot(4), timeout_s=5)  # would wait forever without dead detection
            assert not ring.is_active(1)
            assert live.read() == _slot(4)
            reattached = ring.consumer(1)
            assert reattached.dropped, "a dropped consumer is told it missed messages"
            assert reattached.available() == 0
            reattached.close()
            live.close()
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join()


def test_zombie_consumer_counts_as_dead(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    with RingBuffer.create(ring_name, capacity=2, consumers=1) as ring:
        ready = ctx.Event()
        proc = ctx.Process(target=_attach_index0_and_hang, args=(ring_name, ready))
        proc.start()
        try:
            assert ready.wait(10)
            ring.try_publish(_slot(0) + _slot(1))
            os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.2)  # not joined yet: the child is a zombie
            assert ring.reap_dead_consumers() == [0]
        finally:
            proc.join()


def _attach_index0_and_hang(name: str, ready) -> None:  # type: ignore[no-untyped-def]
    ring = RingBuffer.attach(name)
    ring.consumer(0)
    ready.set()
    time.sleep(60)


def test_blocking_consumer_is_woken(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    with RingBuffer.create(ring_name, capacity=8) as ring:
        strategy = Blocking(spins=0, max_park_ms=10_000)
        cons = ring.consumer(0, strategy)
        assert os.path.exists(wake_path(ring_name, 0))

        def later() -> None:
            time.sleep(0.2)
            r = RingBuffer.attach(ring_name)
            r.try_publish(_slot(7))
            r.close()

        proc = ctx.Process(target=later)
        proc.start()
        t0 = time.monotonic()
        data = cons.read(timeout_s=20)
        waited = time.monotonic() - t0
        proc.join()
        cons.close()
        assert data == _slot(7)
        assert waited < 5, "woken by the producer, not by the 10 s park limit"
    assert not os.path.exists(wake_path(ring_name, 0)), "owner removes the wake FIFO"


def test_unknown_wait_strategy_lists_choices() -> None:
    with pytest.raises(ValueError, match="busy-spin"):
        make_wait_strategy("nap")


def test_blocking_spins_only_while_it_keeps_its_parked_share(ring_name: str) -> None:
    """The SCHED_FIFO shard's wait: it spins before parking only while it has spent its share of the
    current window parked; otherwise it parks at once (and is still woken by the producer)."""
    assert make_wait_strategy("blocking").min_parked_share == 0.0
    waiter = make_wait_strategy("blocking", min_parked_share=0.5)  # margins a loaded CI machine keeps
    assert isinstance(waiter, Blocking)
    waiter.budget.WINDOW_NS = 60_000_000_000  # one window for the whole test, however slow the machine
    with RingBuffer.create(ring_name, capacity=8, consumers=1) as ring:
        consumer = ring.consumer(0, waiter)
        polls = 0

        def ready() -> int:
            nonlocal polls
            polls += 1
            return consumer.available()

        def polls_of_a_wait(timeout_ns: int) -> int:
            nonlocal polls
            polls = 0
            waiter.wait(ready, time.monotonic_ns() + timeout_ns)
            return polls

        assert polls_of_a_wait(200_000_000) > waiter.spins  # a fresh window: spin, then park 200 ms
        assert polls_of_a_wait(0) > waiter.spins  # parked nearly all the window so far: spin again
        time.sleep(0.3)  # busy (not parked) for a while: under 50% parked now
        assert polls_of_a_wait(0) <= 2  # no spin phase: straight to the park protocol
        ring.try_publish(_slot(3), 1)
        assert polls_of_a_wait(1_000_000_000) == 1 and consumer.available() == 1  # data: no wait at all
        consumer.close()


def test_consumer_index_out_of_range(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8, consumers=2) as ring:
        with pytest.raises(RingError, match="outside 0..1"):
            ring.consumer(2)


def test_cleanup_rings_removes_a_killed_runs_segments(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, capacity=8)
    ring.owner = False  # simulate an owner that died without closing
    ring.close()
    assert os.path.exists(f"/dev/shm/{ring_name}")
    assert cleanup_rings(ring_name) == [ring_name]
    assert not os.path.exists(f"/dev/shm/{ring_name}")
