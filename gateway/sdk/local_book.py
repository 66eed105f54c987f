"""A client-side L2 book: snapshot + deltas, with gap detection and automatic resync.

The gateway sends a snapshot (``seq`` = the last L2_DELTA folded into it), then every L2_DELTA of
the market with its ``seq`` and ``prev_seq`` (the previous L2_DELTA's ``seq``). The book applies a
delta when ``prev_seq`` equals its own ``seq``; a delta with ``seq`` at or below the book's is
stale (already in the snapshot) and skipped; anything else is a gap: the book marks itself out of
sync, drops deltas and asks for a fresh snapshot (``request_snapshot``), which replaces it. The
stream is ordered, so every delta sent before the snapshot reply is covered by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.protocol.l2_book import BUY, SELL, L2Book


class LocalBook:
    """One market's L2 book kept from snapshot + deltas; asks for a snapshot on a gap."""

    def __init__(self, market_id: int, request_snapshot: Callable[[int], Any]) -> None:
        self.market_id = market_id
        self.book = L2Book(market_id)
        self.in_sync = False
        self.gaps = 0
        self.resyncs = 0
        self._request_snapshot = request_snapshot
        self._synced = asyncio.Event()

    # ---- feed ----------------------------------------------------------------------------------
    def on_snapshot(self, seq: int, bids: list[Any], asks: list[Any]) -> None:
        """Replace the book by a snapshot at ``seq``."""
        if self.book.seq or self.gaps:
            self.resyncs += 1
        self.book.load(seq, bids, asks)
        self.in_sync = True
        self._synced.set()

    def on_delta(
        self, seq: int, prev_seq: int, side: int, price_ticks: int, size_lots: int, count: int
    ) -> None:
        """Apply one delta, skip a stale one, or resync on a gap (see the module docstring)."""
        if not self.in_sync:
            return  # waiting for the snapshot that will cover this delta
        if seq <= self.book.seq:
            return
        if prev_seq != self.book.seq:
            self.gaps += 1
            self.mark_stale()
            return
        self.book.apply(seq, side, price_ticks, size_lots, count)

    def mark_stale(self) -> None:
        """Out of sync (a gap, or the gateway conflated us): ask for a snapshot."""
        if self.in_sync:
            self.in_sync = False
            self._synced.clear()
            self._request_snapshot(self.market_id)

    def on_disconnected(self) -> None:
        """The connection closed: out of sync until a resubscription's snapshot arrives."""
        self.in_sync = False
        self._synced.clear()

    async def wait_synced(self, timeout_s: float = 5.0) -> None:
        """Wait until the book holds a snapshot (TimeoutError after ``timeout_s``)."""
        await asyncio.wait_for(self._synced.wait(), timeout_s)

    # ---- reading -------------------------------------------------------------------------------
    @property
    def seq(self) -> int:
        """The sequence number of the last delta in the book."""
        return self.book.seq

    def bids(self, depth: int | None = None) -> list[tuple[int, int, int]]:
        """[(price_ticks, size_lots, count)] best first."""
        return self.book.levels(BUY, depth)

    def asks(self, depth: int | None = None) -> list[tuple[int, int, int]]:
        """[(price_ticks, size_lots, count)] best first."""
        return self.book.levels(SELL, depth)

    def as_tuple(self) -> Any:
        """(bids, asks), comparable."""
        return self.book.as_tuple()
