"""The park/wake handshake loses no wake-up: a ping-pong between two processes over two rings, both
sides parked with a 60 s limit. Each message is the only one in flight, so one lost wake-up would
stall the exchange for the whole park limit (the old handshake bounded the loss with 5 ms parks).

The echo side answers at once or after up to 50 us, so the main side's parks fall both inside the
window between ``set_waiting(1)`` and the re-check and well after it. (On x86 the store-load
reordering the fences forbid lasts nanoseconds; this test guards the protocol, the fences are
argued in ``engine.ring.ring_buffer``.)"""

from __future__ import annotations

import multiprocessing as mp
import random
import time

import pytest

from engine.ring import Blocking, RingBuffer

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


@pytest.mark.timeout(180)
@pytest.mark.parametrize("spins", [0, 50])
def test_blocking_ping_pong_never_waits_for_the_park_limit(ring_name: str, spins: int) -> None:
    ctx = mp.get_context("fork")
    ping = RingBuffer.create(ring_name + "-ping", capacity=8)
    pong = RingBuffer.create(ring_name + "-pong", capacity=8)
    proc = ctx.Process(target=_echo, args=(ping.name, pong.name))
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
    assert slowest < 10, f"a round trip took {slowest:.1f}s: a wake-up was lost"
    print(f"{ROUND_TRIPS} round trips in {elapsed:.2f}s, slowest {slowest * 1e3:.1f} ms")
