"""The one place where the gateway puts validated commands into rings.

Today commands go straight to the shard that owns the market (``Topology.order_ring(g, s)``, one
ring per gateway and shard, this gateway the single producer). When the risk stage exists they go
to the account's risk partition instead; that is a second implementation of :class:`OrderRouter`
chosen by configuration (``route_via``), and nothing else in the gateway changes.

Contract: ``submit`` publishes each destination's share of a batch with one ring publish and
never waits: a ring without room for the whole share is backpressure, and the router returns the
indexes (into the batch) it could not publish so the caller can reject them with BACKPRESSURE.
A CANCEL_ALL for every market (0xFFFFFFFF) goes to every shard.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.ring import RingBuffer
from engine.wire.layout import ALL_MARKETS, SLOT_BYTES


class OrderRouter(Protocol):
    def submit(self, data: bytes | bytearray, markets: list[int]) -> list[int]:
        """Publish ``len(markets)`` structs; returns indexes refused for backpressure."""
        ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class ShardRingRouter:
    """Gateway -> shard order rings, by ``topology.shard_of(market)``."""

    def __init__(self, topology: object, gateway_index: int) -> None:
        self.topology = topology
        self.shards: int = topology.shards  # type: ignore[attr-defined]
        self.rings = [
            RingBuffer.attach(topology.order_ring(gateway_index, s))  # type: ignore[attr-defined]
            for s in range(self.shards)
        ]
        for ring in self.rings:
            ring.set_producer()
        self.published = 0

    def describe(self) -> str:
        return f"shard-rings(x{self.shards})"

    def submit(self, data: bytes | bytearray, markets: list[int]) -> list[int]:
        n = len(markets)
        if self.shards == 1:
            if self.rings[0].try_publish(data, n):
                self.published += n
                return []
            return list(range(n))
        shard_of = self.topology.shard_of  # type: ignore[attr-defined]
        dest = [-1 if m == ALL_MARKETS else shard_of(m) for m in markets]
        first = dest[0]
        if first >= 0 and all(d == first for d in dest):
            if self.rings[first].try_publish(data, n):
                self.published += n
                return []
            return list(range(n))
        a = np.frombuffer(data, np.uint8, n * SLOT_BYTES).reshape(n, SLOT_BYTES)
        d = np.asarray(dest)
        refused: set[int] = set()
        for s, ring in enumerate(self.rings):
            rows = np.flatnonzero((d == s) | (d == -1))
            if not len(rows):
                continue
            if ring.try_publish(a[rows].tobytes(), len(rows)):
                self.published += len(rows)
            else:
                refused.update(rows.tolist())
        return sorted(refused)

    def close(self) -> None:
        for ring in self.rings:
            ring.close()
        self.rings = []


def make_router(route_via: str, topology: object, gateway_index: int) -> OrderRouter:
    """``route_via``: ``shard`` (today). ``risk`` is reserved for the risk stage."""
    if route_via == "shard":
        return ShardRingRouter(topology, gateway_index)
    raise ValueError(f"unknown route_via {route_via!r} (supported: 'shard')")
