"""``WireEventWriter``: an EventSink that packs each event as a 64-byte wire struct into one buffer.

The shard process lets the engine run a batch of commands, then publishes ``peek()`` (or
``take()``) to its event ring and calls ``reset()``. The buffer is preallocated and grows by
doubling into a NEW bytearray (never resized in place, so a memoryview handed out earlier stays
valid until ``reset``). The bytes are exactly what ``engine.wire.codec.decode`` reads back, and
exactly what the compiled core packs for the same events (both are generated from the layout).
"""

from __future__ import annotations

from engine.shard.event_interfaces import WireEventPacker
from engine.wire.layout import SLOT_BYTES


class WireEventWriter(WireEventPacker):
    """Packs events into a contiguous run of 64-byte slots; ``count`` events since the last reset.

    The EventSink methods (one per event, each packing its struct) are generated from the layout
    (``engine.shard.event_interfaces.WireEventPacker``); this class owns the buffer."""

    __slots__ = ("_buf", "_pos", "_cap")

    def __init__(self, capacity_events: int = 4096) -> None:
        self._cap = max(1, capacity_events) * SLOT_BYTES
        self._buf = bytearray(self._cap)
        self._pos = 0

    @property
    def count(self) -> int:
        return self._pos // SLOT_BYTES

    def peek(self) -> memoryview:
        """The packed events so far (valid until ``reset``)."""
        return memoryview(self._buf)[: self._pos]

    def take(self) -> bytes:
        """A copy of the packed events, and reset."""
        out = bytes(self._buf[: self._pos])
        self._pos = 0
        return out

    def reset(self) -> None:
        self._pos = 0

    def raw(self, message: bytes | bytearray | memoryview) -> None:
        """Append one already packed 64-byte message (the shard's own events, e.g. heartbeat echoes)."""
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        self._buf[pos : pos + SLOT_BYTES] = message

    def extend(self, data: bytes | bytearray | memoryview) -> None:
        """Append already packed events (a whole batch from the compiled core)."""
        pos = self._reserve(len(data))
        self._buf[pos : self._pos] = data

    def _slot(self) -> int:
        return self._reserve(SLOT_BYTES)

    def _reserve(self, nbytes: int) -> int:
        """Room for ``nbytes`` more; returns where they go. Grows by doubling into a new bytearray."""
        pos = self._pos
        end = pos + nbytes
        if end > self._cap:
            while end > self._cap:
                self._cap *= 2
            buf = bytearray(self._cap)
            buf[:pos] = self._buf[:pos]
            self._buf = buf
        self._pos = end
        return pos
