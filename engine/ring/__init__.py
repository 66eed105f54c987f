"""Shared-memory rings: the hot-path transport between processes (Disruptor nouns)."""

from engine.ring.ring_buffer import (
    DEFAULT_STUCK_TIMEOUT_S,
    Consumer,
    ConsumerDropped,
    RingBuffer,
    RingError,
    RingFull,
    cleanup_rings,
)
from engine.ring.ring_ref import ConsumerRef, RingRef
from engine.ring.wait_strategy import (
    Blocking,
    BusySpin,
    Sleep,
    SpinBudget,
    SpinThenBackoff,
    WaitStrategy,
    make_wait_strategy,
)

__all__ = [
    "DEFAULT_STUCK_TIMEOUT_S",
    "Blocking",
    "BusySpin",
    "Consumer",
    "ConsumerDropped",
    "ConsumerRef",
    "RingBuffer",
    "RingError",
    "RingFull",
    "RingRef",
    "Sleep",
    "SpinBudget",
    "SpinThenBackoff",
    "WaitStrategy",
    "cleanup_rings",
    "make_wait_strategy",
]
