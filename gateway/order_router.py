"""The one place where the gateway puts validated commands into rings.

A gateway produces one ring per destination: each shard (``route="market"``: market m goes to
destination ``m % n``) or, when the risk stage sits in the order path, each risk partition
(``route="account"``: account a goes to partition ``a % n``). The supervisor decides which and
hands the gateway its ring refs in that order (``hx.topology``); nothing else in the gateway
changes with the route.

Contract: ``submit`` publishes each destination's share of a batch with one ring publish and
never waits: a ring without room for the whole share is backpressure, and the router returns the
indexes (into the batch) it could not publish so the caller can reject them with BACKPRESSURE.
A command for every market (``0xFFFFFFFF``: CANCEL_ALL, a restatement request) goes to every
destination when routing by market, and to the account's partition when routing by account (the
partition forwards it to every shard).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.ring import RingBuffer, RingRef
from engine.wire.layout import ALL_MARKETS, SLOT_BYTES

ROUTES = ("market", "account")


class OrderRouter(Protocol):
    def submit(self, data: bytes | bytearray, markets: list[int], account: int = 0) -> list[int]:
        """Publish ``len(markets)`` structs of ``account``; returns indexes refused for backpressure."""
        ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class RingRouter:
    """Gateway -> destination rings, by market (shards) or by account (risk partitions)."""

    def __init__(self, destinations: tuple[RingRef, ...], route: str) -> None:
        if route not in ROUTES:
            raise ValueError(f"route {route!r}: choose one of {ROUTES}")
        if not destinations:
            raise ValueError("a router needs at least one destination ring")
        self.route = route
        self.rings = [ref.attach() for ref in destinations]
        for ring in self.rings:
            ring.set_producer()
        self.n = len(self.rings)
        self.published = 0

    def describe(self) -> str:
        return f"{'shard' if self.route == 'market' else 'risk'}-rings(x{self.n})"

    def _publish_all(self, ring: RingBuffer, data: bytes | bytearray, n: int) -> list[int]:
        if ring.try_publish(data, n):
            self.published += n
            return []
        return list(range(n))

    def submit(self, data: bytes | bytearray, markets: list[int], account: int = 0) -> list[int]:
        n = len(markets)
        if self.n == 1:
            return self._publish_all(self.rings[0], data, n)
        if self.route == "account":
            return self._publish_all(self.rings[account % self.n], data, n)
        dest = [-1 if m == ALL_MARKETS else m % self.n for m in markets]
        first = dest[0]
        if first >= 0 and all(d == first for d in dest):
            return self._publish_all(self.rings[first], data, n)
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
