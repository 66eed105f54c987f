"""A run's health board: one 1 KiB slot per stage process in shared memory, written only by it.

Each slot (little-endian 8-byte words): ``pid``, ``beat_ns`` (CLOCK_MONOTONIC, the last time the
process's loop went round), ``progress`` (records or batches it has handled), ``waiting_since_ns``
(0, or when it started waiting for room in an output ring: backpressure from downstream, not a
fault of its own), ``started_ns``; from word 8, the process's metrics (``engine.host.metrics``:
counters, gauges and histogram buckets by index), which the supervisor's one exporter reads at
scrape time, so the hot path pays a store, never a lock or a thread. The supervisor owns the segment and reads it: a live process
whose beat is older than its stall timeout while it is not waiting on backpressure has stopped
making progress (a deadlock, an infinite loop, a stuck syscall) and is restarted; ``hx status``
shows beats, progress rates and what is waiting on what.

One writer per slot (the process), readers anywhere: an 8-byte aligned store is atomic on every
platform we run on, and a reader that sees a beat a moment late only delays a verdict.
"""

from __future__ import annotations

import os
import time

from engine.ring.ring_buffer import SharedSegment

SLOT = 1024
METRIC_BASE = 8  # first word of the metrics area of a slot
METRIC_WORDS = SLOT // 8 - METRIC_BASE
PID, BEAT, PROGRESS, WAITING, STARTED = range(5)
MAGIC = int.from_bytes(b"HXHEALTH", "little")


class HealthBoard:
    """The segment; ``create`` by the supervisor, ``attach`` by a process that writes its slot."""

    def __init__(self, segment: SharedSegment, owner: bool) -> None:
        self._seg = segment
        self.owner = owner
        self.slots = (segment.size - SLOT) // SLOT
        self._words = segment.buf.cast("q")
        if self._words[0] != MAGIC:
            raise ValueError(f"{segment.name}: not a health board")

    @classmethod
    def create(cls, name: str, slots: int) -> HealthBoard:
        seg = SharedSegment(name, create=True, size=SLOT * (slots + 1))
        with seg.buf.cast("q") as words:
            words[0] = MAGIC
        return cls(seg, owner=True)

    @classmethod
    def attach(cls, name: str) -> HealthBoard:
        return cls(SharedSegment(name, create=False), owner=False)

    def _base(self, slot: int) -> int:
        if not 0 <= slot < self.slots:
            raise IndexError(f"health slot {slot} outside 0..{self.slots - 1}")
        return (slot + 1) * SLOT // 8

    # ---- the process's side ------------------------------------------------------------------------
    def register(self, slot: int) -> HealthSlot:
        b = self._base(slot)
        now = time.monotonic_ns()
        w = self._words
        w[b + PROGRESS] = 0
        w[b + WAITING] = 0
        w[b + STARTED] = now
        w[b + BEAT] = now
        for k in range(METRIC_WORDS):
            w[b + METRIC_BASE + k] = 0
        w[b + PID] = os.getpid()
        return HealthSlot(w, b)

    # ---- the supervisor's side -------------------------------------------------------------------
    def read(self, slot: int) -> dict[str, int]:
        b = self._base(slot)
        w = self._words
        return {
            "pid": w[b + PID],
            "beat_ns": w[b + BEAT],
            "progress": w[b + PROGRESS],
            "waiting_since_ns": w[b + WAITING],
            "started_ns": w[b + STARTED],
        }

    def metrics(self, slot: int) -> list[int]:
        """The slot's metric words (see engine.host.metrics for their names)."""
        b = self._base(slot) + METRIC_BASE
        return list(self._words[b : b + METRIC_WORDS])

    def close(self) -> None:
        self._words.release()
        self._seg.close()
        if self.owner:
            try:
                self._seg.unlink()
            except FileNotFoundError:
                pass


class HealthSlot:
    """What a stage process holds: ``beat(progress)`` each loop, ``waiting()`` around backpressure,
    ``metrics``: its metric words (a memoryview of int64) for ``engine.host.metrics``."""

    __slots__ = ("_w", "_b", "metrics")

    def __init__(self, words: memoryview, base: int) -> None:
        self._w = words
        self._b = base
        self.metrics = words[base + METRIC_BASE : base + METRIC_BASE + METRIC_WORDS]

    def beat(self, progress: int) -> None:
        w, b = self._w, self._b
        w[b + PROGRESS] = progress
        w[b + BEAT] = time.monotonic_ns()

    def waiting(self, on: bool) -> None:
        self._w[self._b + WAITING] = time.monotonic_ns() if on else 0


def stalled(entry: dict[str, int], now_ns: int, timeout_ns: int) -> bool:
    """A registered process whose loop has not gone round for ``timeout_ns`` and that is not
    waiting for room downstream."""
    return bool(entry["pid"]) and not entry["waiting_since_ns"] and now_ns - entry["beat_ns"] > timeout_ns


class NoHealth:
    """Stands in for a slot when a process runs without a board (tests, tools)."""

    def __init__(self) -> None:
        self.metrics = memoryview(bytearray(8 * METRIC_WORDS)).cast("q")

    def beat(self, progress: int) -> None:
        pass

    def waiting(self, on: bool) -> None:
        pass


def open_health_slot(board: str, slot: int) -> HealthSlot | NoHealth:
    """This process's slot on the run's health board, or a no-op when there is none."""
    if not board or slot < 0:
        return NoHealth()
    return HealthBoard.attach(board).register(slot)
