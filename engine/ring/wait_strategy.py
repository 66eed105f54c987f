"""How a ring consumer (or a producer facing a full ring) waits for progress.

Two cores serve the engine, the gateway and the load generator here, so the default is
``SpinThenBackoff``: spin briefly (a waiting message arrives within microseconds), then yield,
then sleep with growing intervals so an idle process costs nearly nothing. ``BusySpin`` gives the
lowest latency and burns a core; ``Sleep`` polls at a fixed interval; ``Blocking`` parks the
consumer on a FIFO that the producer writes after publishing (a wake costs ~30-40 us here).

A strategy is stateless between calls: ``wait(ready, deadline_ns)`` polls ``ready()`` (which
returns a count, 0 meaning not yet) until it is non-zero or the monotonic deadline passes, and
returns the last count. ``deadline_ns`` of None waits forever.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

Ready = Callable[[], int]
_now = time.monotonic_ns


class WaitStrategy:
    """Base: poll ``ready`` until it is non-zero or ``deadline_ns`` passes."""

    name = "base"
    blocking = False

    def wait(self, ready: Ready, deadline_ns: int | None) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class BusySpin(WaitStrategy):
    name = "busy-spin"

    def wait(self, ready: Ready, deadline_ns: int | None) -> int:
        n = ready()
        while not n:
            if deadline_ns is not None and _now() >= deadline_ns:
                return 0
            n = ready()
        return n


class SpinThenBackoff(WaitStrategy):
    """Spin ``spins`` polls, yield ``yields`` times, then sleep from 1 us doubling to ``max_sleep_us``."""

    name = "spin-then-backoff"

    def __init__(self, spins: int = 5000, yields: int = 50, max_sleep_us: int = 200) -> None:
        self.spins, self.yields, self.max_sleep_us = spins, yields, max_sleep_us

    def wait(self, ready: Ready, deadline_ns: int | None) -> int:
        for _ in range(self.spins):
            n = ready()
            if n:
                return n
        if deadline_ns is not None and _now() >= deadline_ns:
            return 0
        for _ in range(self.yields):
            os.sched_yield()
            n = ready()
            if n:
                return n
        sleep_s = 1e-6
        max_s = self.max_sleep_us * 1e-6
        while True:
            if deadline_ns is not None and _now() >= deadline_ns:
                return ready()
            time.sleep(sleep_s)
            n = ready()
            if n:
                return n
            sleep_s = min(sleep_s * 2, max_s)

    def describe(self) -> str:
        return f"{self.name}(spins={self.spins},yields={self.yields},max_sleep_us={self.max_sleep_us})"


class Sleep(WaitStrategy):
    name = "sleep"

    def __init__(self, interval_us: int = 100) -> None:
        self.interval_s = interval_us * 1e-6

    def wait(self, ready: Ready, deadline_ns: int | None) -> int:
        n = ready()
        while not n:
            if deadline_ns is not None and _now() >= deadline_ns:
                return 0
            time.sleep(self.interval_s)
            n = ready()
        return n

    def describe(self) -> str:
        return f"{self.name}(interval_us={int(self.interval_s * 1e6)})"


class SpinBudget:
    """How many polls a waiter may spin before it parks, bounded for a SCHED_FIFO process.

    ``min_parked_share`` > 0 bounds the spinning: a wait spins first only while the process has
    spent at least that share of the current 100 ms window parked, and parks at once otherwise. A
    SCHED_FIFO process needs it: spinning through the gaps between messages a few microseconds apart
    keeps it on the CPU all the time, and the kernel then throttles it for 50 ms of every second
    (measured: p99 9-33 ms), while sparse traffic (a frame every few hundred microseconds) still
    gets the spin that catches the next frame without a wake-up. ``Blocking`` keeps one; a stage
    with its own loop over several rings (risk) keeps its own and reports its parks to it.
    """

    WINDOW_NS = 100_000_000

    def __init__(self, spins: int, min_parked_share: float = 0.0) -> None:
        self.spins, self.min_parked_share = spins, min_parked_share
        self._window_start_ns = -(1 << 62)  # the first wait opens a window
        self._parked_ns = 0  # parked in the current window

    def spins_now(self) -> int:
        if not self.min_parked_share:
            return self.spins
        now = _now()
        elapsed = now - self._window_start_ns
        if elapsed >= self.WINDOW_NS:
            self._window_start_ns, self._parked_ns = now, 0
            return self.spins
        return self.spins if self._parked_ns >= self.min_parked_share * elapsed else 0

    def parked(self, ns: int) -> None:
        """The process was parked ``ns`` (counts toward the current window's share)."""
        self._parked_ns += ns


class Blocking(WaitStrategy):
    """Park on a wake-up file descriptor (a FIFO the producer writes to after publishing).

    Before parking, the consumer sets its ``waiting`` word (``set_waiting(1)``: a store and a
    seq_cst fence, in C) and re-checks ``ready()``; the producer stores ``published``, fences and
    then reads the waiting words (see ``engine.ring.ring_buffer``, ordering note 3). One of the two
    always sees the other, so no wake-up is lost and a park may be long: ``max_park_ms`` (default
    1 s) is only a safety net (e.g. a producer that cannot open the FIFO) and the bound that lets a
    deadline be honoured.

    ``min_parked_share`` > 0 bounds the spinning under SCHED_FIFO (see ``SpinBudget``).
    """

    name = "blocking"
    blocking = True

    def __init__(self, spins: int = 200, max_park_ms: int = 1000, min_parked_share: float = 0.0) -> None:
        self.budget = SpinBudget(spins, min_parked_share)
        self.max_park_ms = max_park_ms
        self.fd: int = -1  # set by the consumer that owns this strategy
        self._fallback = SpinThenBackoff(spins=0)
        self.set_waiting: Callable[[int], None] = lambda flag: None

    @property
    def spins(self) -> int:
        return self.budget.spins

    @property
    def min_parked_share(self) -> float:
        return self.budget.min_parked_share

    @min_parked_share.setter
    def min_parked_share(self, share: float) -> None:
        self.budget.min_parked_share = share

    def wait(self, ready: Ready, deadline_ns: int | None) -> int:
        for _ in range(self.budget.spins_now()):
            n = ready()
            if n:
                return n
        if self.fd < 0:  # nobody wakes this waiter (a producer facing a full ring): poll politely
            return self._fallback.wait(ready, deadline_ns)
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            self.set_waiting(1)
            n = ready()
            if n:
                self.set_waiting(0)
                return n
            park_ms = self.max_park_ms
            if deadline_ns is not None:
                left_ms = (deadline_ns - _now()) / 1e6
                if left_ms <= 0:
                    self.set_waiting(0)
                    return ready()
                park_ms = min(park_ms, max(1, int(left_ms)))
            parked_at = _now()
            woken = poller.poll(park_ms)
            self.budget.parked(_now() - parked_at)
            if woken:
                try:
                    os.read(self.fd, 4096)
                except BlockingIOError:
                    pass
            self.set_waiting(0)
            n = ready()
            if n:
                return n

    def describe(self) -> str:
        return f"{self.name}(max_park_ms={self.max_park_ms})"


STRATEGIES: dict[str, Callable[[], WaitStrategy]] = {
    "busy-spin": BusySpin,
    "spin-then-backoff": SpinThenBackoff,
    "sleep": Sleep,
    "blocking": Blocking,
}


def make_wait_strategy(name: str, *, min_parked_share: float = 0.0) -> WaitStrategy:
    """A fresh strategy by name; ValueError lists the valid names. ``min_parked_share`` bounds a
    ``blocking`` wait's spinning (see ``Blocking``; a SCHED_FIFO process passes 0.1)."""
    try:
        strategy = STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown wait strategy {name!r}; choose one of {sorted(STRATEGIES)}") from None
    if isinstance(strategy, Blocking):
        strategy.min_parked_share = min_parked_share
    return strategy
