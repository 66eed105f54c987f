"""A ring as a process is told about it: its name and the nonce of the instance it must attach to.

The supervisor creates every ring of a run, then hands each process the refs of its rings. A
process attaches by name and checks the nonce (random per created ring), so a process can never
attach to another run's ring that happens to have the same name, nor to a ring recreated behind
its back: it refuses with a reason instead of waiting for answers that never come.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.ring.ring_buffer import RingBuffer, RingError


@dataclass(frozen=True)
class RingRef:
    name: str
    nonce: int = 0  # 0: any instance (tools that attach by name only)

    def attach(self) -> RingBuffer:
        """Map the ring; RingError names it when it is missing or is not the instance expected."""
        ring = RingBuffer.attach(self.name)
        if self.nonce and ring.nonce != self.nonce:
            found = ring.nonce
            ring.close()
            raise RingError(
                f"ring {self.name!r} is not this run's (nonce {found:#x}, expected {self.nonce:#x}): "
                "another exchange or a later start recreated it; refusing to attach"
            )
        return ring


@dataclass(frozen=True)
class ConsumerRef:
    """A ring this process consumes, and which cursor is its own."""

    ring: RingRef
    index: int
