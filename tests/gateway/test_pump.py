"""Doorbell batching on the gateway's order rings (``RingBuffer.defer_wakes`` with the loop's
``call_soon``, as ``gateway.process.serve`` sets it): the frames of one loop iteration wake a parked
consumer (risk, a shard) once, after the last of them, and the event pump rings the doorbell before
it routes events rather than after."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from engine.ring import Blocking, RingBuffer
from gateway.options import GatewayOptions
from gateway.pump import EventPump


def _fifo_bytes(fd: int) -> int:
    try:
        return len(os.read(fd, 4096))
    except BlockingIOError:
        return 0


def test_the_frames_of_one_loop_iteration_wake_a_parked_consumer_once(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, capacity=64)
    cons = ring.consumer(0, Blocking(spins=0, max_park_ms=60_000))
    fd = cons.wait_strategy.fd
    seen: list[int] = []

    async def main() -> None:
        ring.defer_wakes(asyncio.get_running_loop().call_soon)
        cons.wait_strategy.set_waiting(1)  # the consumer is parked

        def frames() -> None:  # three frames read in one iteration, each published at once
            for k in range(3):
                assert ring.try_publish(bytes([k + 1]) * 64)
            seen.append(_fifo_bytes(fd))  # (the slots are visible: a spinning consumer sees them)
            seen.append(cons.available())

        asyncio.get_running_loop().call_soon(frames)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(_fifo_bytes(fd))

    try:
        asyncio.run(main())
        assert seen == [0, 3, 1], "no wake-up during the burst, all three slots visible, one byte after it"
    finally:
        cons.close()
        ring.close()


class _Fanout:
    """Just enough of EventFanout for the pump: records whether the doorbell rang before a poll."""

    conflating = False

    def __init__(self, ring: RingBuffer, fd: int, pump_box: list[Any]) -> None:
        self.ring, self.fd, self.pump_box = ring, fd, pump_box
        self.polls: list[int] = []

    def poll(self, max_events: int) -> int:
        self.polls.append(_fifo_bytes(self.fd))
        self.pump_box[0].stop()
        return 0

    def available(self) -> int:
        return 0


def test_the_pump_rings_the_doorbell_before_it_routes(ring_name: str) -> None:
    """A wake-up deferred by orders is written before the pump's poll (whose routing and socket
    writes take tens of microseconds), not after it by the loop's flush callback."""
    ring = RingBuffer.create(ring_name, capacity=64)
    cons = ring.consumer(0, Blocking(spins=0, max_park_ms=60_000))
    fd = cons.wait_strategy.fd
    box: list[Any] = [None]
    fanout = _Fanout(ring, fd, box)
    pump = EventPump(fanout, [], GatewayOptions())  # type: ignore[arg-type]
    box[0] = pump
    pump.doorbells.append(ring)

    async def main() -> None:
        ring.defer_wakes(lambda cb: None)  # a flush callback that never runs: only the pump rings
        cons.wait_strategy.set_waiting(1)
        assert ring.try_publish(b"\x01" * 64)
        assert _fifo_bytes(fd) == 0
        await pump.run()

    try:
        asyncio.run(main())
        assert fanout.polls == [1], "the waiter's byte was written before the poll"
    finally:
        cons.close()
        ring.close()
