"""Shared-memory rings: the hot-path transport between processes (Disruptor nouns)."""

from engine.ring.ring_buffer import Consumer, RingBuffer, RingError, RingFull, cleanup_rings
from engine.ring.ring_ref import ConsumerRef, RingRef
from engine.ring.wait_strategy import (
    Blocking,
    BusySpin,
    Sleep,
    SpinThenBackoff,
    WaitStrategy,
    make_wait_strategy,
)

__all__ = [
    "Blocking",
    "BusySpin",
    "Consumer",
    "ConsumerRef",
    "RingBuffer",
    "RingError",
    "RingFull",
    "RingRef",
    "Sleep",
    "SpinThenBackoff",
    "WaitStrategy",
    "cleanup_rings",
    "make_wait_strategy",
]
