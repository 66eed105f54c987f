"""No leaks: after close (or cleanup_rings) nothing of a ring is left in /dev/shm or the temp dir,
including when a consumer process, or the owner itself, was killed with its FIFO open."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile

from engine.ring import Blocking, RingBuffer, cleanup_rings


def _leftovers(name: str) -> list[str]:
    shm = [f"/dev/shm/{e}" for e in os.listdir("/dev/shm") if e.startswith(name)]
    tmp = tempfile.gettempdir()
    fifos = [os.path.join(tmp, e) for e in os.listdir(tmp) if e.startswith(f"hx-wake-{name}")]
    return shm + fifos


def _park_as_consumer(name: str, index: int, ready) -> None:  # type: ignore[no-untyped-def]
    ring = RingBuffer.attach(name)
    cons = ring.consumer(index, Blocking(spins=0, max_park_ms=60_000))
    ready.set()
    cons.read(timeout_s=60)  # parked on its FIFO until killed


def test_close_removes_everything_after_a_consumer_is_killed(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    ring = RingBuffer.create(ring_name, capacity=8, consumers=3)
    ready = ctx.Event()
    child = ctx.Process(target=_park_as_consumer, args=(ring_name, 1, ready))
    child.start()
    try:
        assert ready.wait(20)
        mine = ring.consumer(2, Blocking(spins=0))
        other = RingBuffer.attach(ring_name)
        assert len(_leftovers(ring_name)) == 3, "the segment and two wake FIFOs"
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
        assert ring.try_publish(b"\0" * 64)  # wakes nobody alive; must not fail either
        mine.close()
        other.close()
        assert len(_leftovers(ring_name)) == 3, "an attacher's close unlinks nothing"
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        ring.close()
    assert _leftovers(ring_name) == []


def _own_and_park(name: str, ready) -> None:  # type: ignore[no-untyped-def]
    ring = RingBuffer.create(name, capacity=8, consumers=2)
    cons = ring.consumer(0, Blocking(spins=0, max_park_ms=60_000))
    ready.set()
    cons.read(timeout_s=60)


def test_cleanup_rings_removes_a_killed_owners_segment_and_fifos(ring_name: str) -> None:
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_own_and_park, args=(ring_name, ready))
    child.start()
    try:
        assert ready.wait(20)
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
        assert len(_leftovers(ring_name)) == 2, "a killed owner leaves its segment and FIFO"
        assert cleanup_rings(ring_name) == [ring_name]
        assert _leftovers(ring_name) == []
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        cleanup_rings(ring_name)


def test_failed_create_leaves_nothing(ring_name: str) -> None:
    with RingBuffer.create(ring_name, capacity=8):
        pass
    assert _leftovers(ring_name) == []
    try:
        RingBuffer.create(ring_name, capacity=1 << 40, slot_bytes=1 << 20)  # cannot be sized
    except (OSError, ValueError, OverflowError):
        pass
    assert _leftovers(ring_name) == []
