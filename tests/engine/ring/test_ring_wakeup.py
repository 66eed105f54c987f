"""The park/wake handshake loses no wake-up: a ping-pong between two processes over two rings, both
sides parked with a 60 s limit. Each message is the only one in flight, so one lost wake-up would
stall the exchange for the whole park limit (the old handshake bounded the loss with 5 ms parks).

The echo side answers at once or after up to 50 us, so the main side's parks fall both inside the
window between ``set_waiting(1)`` and the re-check and well after it. (On x86 the store-load
reordering the fences forbid lasts nanoseconds; this test guards the protocol, the fences are
argued in ``engine.ring.ring_buffer``.)"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import threading
import time
from typing import Any

import pytest

from engine.ring import Blocking, RingBuffer
from engine.ring.ring_buffer import Consumer

ROUND_TRIPS = 1500
PARK_MS = 60_000


def _echo(ping: str, pong: str) -> None:
    rin, rout = RingBuffer.attach(ping), RingBuffer.attach(pong)
    rout.set_producer()
    cons = rin.consumer(0, Blocking(spins=0, max_park_ms=PARK_MS))
    rng = random.Random(7)
    for _ in range(ROUND_TRIPS):
        data = cons.read(1, timeout_s=120)
        assert data
        if rng.random() < 0.5:
            until = time.perf_counter_ns() + rng.randint(0, 50_000)
            while time.perf_counter_ns() < until:
                pass
        assert rout.try_publish(data)
    cons.close()
    rin.close()
    rout.close()


def _ping_pong(ring_name: str, echo: Any, spins: int) -> tuple[float, float]:
    """ROUND_TRIPS messages through ``echo`` in a forked process, each the only one in flight;
    returns (slowest round trip, elapsed) in seconds."""
    ctx = mp.get_context("fork")
    ping = RingBuffer.create(ring_name + "-ping", capacity=8)
    pong = RingBuffer.create(ring_name + "-pong", capacity=8)
    proc = ctx.Process(target=echo, args=(ping.name, pong.name))
    try:
        proc.start()
        cons = pong.consumer(0, Blocking(spins=spins, max_park_ms=PARK_MS))
        slowest = 0.0
        t0 = time.monotonic()
        for i in range(ROUND_TRIPS):
            start = time.monotonic()
            msg = i.to_bytes(8, "little") * 8
            assert ping.try_publish(msg)
            assert cons.read(1, timeout_s=120) == msg
            slowest = max(slowest, time.monotonic() - start)
        elapsed = time.monotonic() - t0
        cons.close()
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        ping.close()
        pong.close()
    return slowest, elapsed


@pytest.mark.timeout(180)
@pytest.mark.parametrize("spins", [0, 50])
def test_blocking_ping_pong_never_waits_for_the_park_limit(ring_name: str, spins: int) -> None:
    slowest, elapsed = _ping_pong(ring_name, _echo, spins)
    assert slowest < 10, f"a round trip took {slowest:.1f}s: a wake-up was lost"
    print(f"{ROUND_TRIPS} round trips in {elapsed:.2f}s, slowest {slowest * 1e3:.1f} ms")


def _waiting_consumer(ring: RingBuffer) -> tuple[Consumer, int]:
    """A consumer flagged as parked (as ``Blocking`` does before it polls its FIFO), and its FIFO."""
    cons = ring.consumer(0, Blocking(spins=0, max_park_ms=PARK_MS))
    cons.wait_strategy.set_waiting(1)
    return cons, cons.wait_strategy.fd


def _fifo_bytes(fd: int) -> int:
    try:
        return len(os.read(fd, 4096))
    except BlockingIOError:
        return 0


def test_deferred_wakes_write_a_waiters_fifo_once_after_the_burst(ring_name: str) -> None:
    """``defer_wakes``: three publishes to a parked consumer schedule one flush and write nothing;
    the flush writes one byte; a publish from another thread still wakes at once; ``close`` writes
    what is pending (late, never lost)."""
    ring = RingBuffer.create(ring_name, capacity=64)
    try:
        cons, fd = _waiting_consumer(ring)
        scheduled: list = []
        ring.defer_wakes(scheduled.append)
        for i in range(3):
            assert ring.try_publish(bytes([i]) * 64)
        assert len(scheduled) == 1, "one flush per burst, whatever the publishes"
        assert _fifo_bytes(fd) == 0, "nothing written before the flush"
        scheduled.pop()()
        assert _fifo_bytes(fd) == 1
        cons.release(cons.peek(8)[1])

        t = threading.Thread(target=lambda: ring.try_publish(b"\x09" * 64))
        t.start()
        t.join()
        assert _fifo_bytes(fd) == 1 and not scheduled, "another thread's publish wakes at once"

        assert ring.try_publish(b"\x0a" * 64) and len(scheduled) == 1
        cons.wait_strategy.set_waiting(1)
        ring.close()
        assert _fifo_bytes(fd) == 1, "close writes the pending wake-up"
        cons.close()
    finally:
        ring.close()


def _echo_deferred(ping: str, pong: str) -> None:
    """``_echo``, publishing from an event loop with ``defer_wakes``: the answer's wake-up is
    written by the loop's flush callback, after the publish."""
    rin, rout = RingBuffer.attach(ping), RingBuffer.attach(pong)
    rout.set_producer()
    cons = rin.consumer(0, Blocking(spins=0, max_park_ms=PARK_MS))

    async def run() -> None:
        rout.defer_wakes(asyncio.get_running_loop().call_soon)
        for _ in range(ROUND_TRIPS):
            data = cons.read(1, timeout_s=120)
            assert data
            assert rout.try_publish(data)
            await asyncio.sleep(0)  # the loop's iteration ends: the flush writes the FIFO

    asyncio.run(run())
    cons.close()
    rin.close()
    rout.close()


@pytest.mark.timeout(180)
def test_deferred_wakes_lose_no_wake_up_across_processes(ring_name: str) -> None:
    """The ping-pong above with the echo deferring its wake-ups to its loop's flush: a wake-up that
    the deferral lost would stall a round trip for the 60 s park limit."""
    slowest, _ = _ping_pong(ring_name, _echo_deferred, 0)
    assert slowest < 10, f"a round trip took {slowest:.1f}s: a deferred wake-up was lost"


def test_the_publishes_of_one_loop_iteration_wake_a_parked_consumer_once(ring_name: str) -> None:
    """As ``gateway.process.serve`` sets it (``defer_wakes(loop.call_soon)``), in a real loop: the
    frames one iteration reads are three publishes, all visible at once, and the parked consumer's
    FIFO gets one byte after the iteration, none during it."""
    ring = RingBuffer.create(ring_name, capacity=64)
    cons, fd = _waiting_consumer(ring)
    seen: list[int] = []

    async def main() -> None:
        ring.defer_wakes(asyncio.get_running_loop().call_soon)

        def frames() -> None:
            for k in range(3):
                assert ring.try_publish(bytes([k + 1]) * 64)
            seen.extend((_fifo_bytes(fd), cons.available()))

        asyncio.get_running_loop().call_soon(frames)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(_fifo_bytes(fd))

    try:
        asyncio.run(main())
        assert seen == [0, 3, 1], "no wake-up during the burst, every slot visible, one byte after it"
    finally:
        cons.close()
        ring.close()
