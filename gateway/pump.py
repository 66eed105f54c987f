"""The event pump: drains the event rings into the fan-out for ever, on the gateway's event loop.

How it waits when the rings are empty is the loop mode (``GatewayOptions.loop_mode``): ``park``
announces it sleeps on each ring's wait word, re-checks, and awaits a producer's wake-up fd, a
``kick`` (orders just went in) or ``max_park_ms``; ``adaptive`` yields to the loop ``spin_polls``
times first; ``busy-poll`` never parks. The re-check after announcing closes the lost-wake-up race;
the timeout bounds the cost of any race left.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from gateway.fanout import EventFanout
from gateway.options import GatewayOptions


class EventPump:
    """Owns the wait between polls; ``kick`` wakes it early."""

    def __init__(self, fanout: EventFanout, consumers: list[Any], options: GatewayOptions) -> None:
        self.fanout = fanout
        self.consumers = consumers
        self.options = options
        self.wake_fds = [c.wait_strategy.fd for c in consumers if getattr(c.wait_strategy, "fd", -1) >= 0]
        self._wake: asyncio.Future[None] | None = None
        self._running = False

    def kick(self) -> None:
        """Orders just went in: wake a parked pump so it polls for their events."""
        fut = self._wake
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_wake_fd(self, fd: int) -> None:
        try:
            os.read(fd, 4096)
        except (BlockingIOError, OSError):
            pass
        self.kick()

    def _set_waiting(self, flag: int) -> None:
        for c in self.consumers:
            s = c.wait_strategy
            if hasattr(s, "set_waiting"):
                s.set_waiting(flag)

    async def run(self) -> None:
        """Drain the event rings until ``stop``; how it waits when idle is the loop mode."""
        loop = asyncio.get_running_loop()
        o = self.options
        fanout = self.fanout
        poll = fanout.poll
        max_n = o.max_events_per_poll
        spin = {"adaptive": o.spin_polls, "busy-poll": 1 << 62, "park": 0}[o.loop_mode]
        park_s = o.max_park_ms / 1000.0
        for fd in self.wake_fds:
            loop.add_reader(fd, self._on_wake_fd, fd)
        idle = 0
        self._running = True
        try:
            while self._running:
                if poll(max_n):
                    idle = 0
                    await asyncio.sleep(0)
                    continue
                idle += 1
                if idle <= spin:
                    await asyncio.sleep(0)
                    continue
                # park: announce we sleep, re-check, then wait for a wake-up, a kick or the timeout
                self._set_waiting(1)
                if fanout.available():
                    self._set_waiting(0)
                    continue
                self._wake = loop.create_future()
                handle = loop.call_later(park_s, self.kick)
                try:
                    await self._wake
                finally:
                    handle.cancel()
                    self._wake = None
                    self._set_waiting(0)
                idle = 0
                if fanout.conflating:
                    fanout.recover_conflated()
        finally:
            for fd in self.wake_fds:
                loop.remove_reader(fd)

    def stop(self) -> None:
        self._running = False
        self.kick()
