"""Aggregated price-level book of one market, rebuilt from the shard's L2_DELTA events.

Each L2_DELTA gives a level's new total size and order count (size 0 = the level is gone), so the
book is a pure fold of the deltas in sequence order. ``seq`` is the sequence number of the last
delta applied: a snapshot taken at ``seq`` followed by the deltas with a larger ``seq`` is the
book at any later point. Used by the gateway (to serve snapshots) and by the SDK (local book).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.types.enums import MsgType
from engine.wire.layout import field_offset, word_index

BUY, SELL = 0, 1
FOLD_AT_ROWS = 1 << 16
# where an L2_DELTA keeps each field, as word indexes of a (k, 64) uint8 block (from the layout)
_W8_SEQ = word_index(MsgType.L2_DELTA, "seq", 8)
_W8_PRICE = word_index(MsgType.L2_DELTA, "price_ticks", 8)
_W8_SIZE = word_index(MsgType.L2_DELTA, "size_lots", 8)
_W4_COUNT = word_index(MsgType.L2_DELTA, "order_count", 4)
_SIDE_AT = field_offset(MsgType.L2_DELTA, "side")


class L2Book:
    """``apply`` folds one delta now; ``apply_block`` queues raw L2_DELTA structs and folds them
    lazily (on the next read, or past ``FOLD_AT_ROWS``): only the last delta of each level counts,
    so a vectorised pass keeps the Python work per *level touched*, not per delta."""

    __slots__ = ("market_id", "bids", "asks", "seq", "_pending", "_pending_rows")

    def __init__(self, market_id: int) -> None:
        self.market_id = market_id
        self.bids: dict[int, tuple[int, int]] = {}  # price_ticks -> (size_lots, order_count)
        self.asks: dict[int, tuple[int, int]] = {}
        self.seq = 0
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def apply_block(self, block: np.ndarray) -> None:
        """Queue L2_DELTA structs (an owned ``(k, 64)`` uint8 array, in sequence order)."""
        if not len(block):
            return
        self._pending.append(block)
        self._pending_rows += len(block)
        self.seq = int(block[-1].view("<u8")[_W8_SEQ])
        if self._pending_rows >= FOLD_AT_ROWS:
            self.fold()

    def fold(self) -> None:
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending = []
        self._pending_rows = 0
        i64 = block.view("<i8")
        price = i64[:, _W8_PRICE]
        side = block[:, _SIDE_AT].astype(np.int64)
        key = (price << 1) | side
        # index of the last delta per level: unique over the reversed keys
        _, first_rev = np.unique(key[::-1], return_index=True)
        last = np.sort(len(key) - 1 - first_rev)
        bids, asks = self.bids, self.asks
        for s, p, q, c in zip(
            side[last].tolist(),
            price[last].tolist(),
            i64[last, _W8_SIZE].tolist(),
            block.view("<u4")[last, _W4_COUNT].tolist(),
            strict=True,
        ):
            levels = bids if s == BUY else asks
            if q > 0:
                levels[p] = (q, c)
            else:
                levels.pop(p, None)

    def apply(self, seq: int, side: int, price_ticks: int, size_lots: int, order_count: int) -> None:
        self.fold()
        levels = self.bids if side == BUY else self.asks
        if size_lots > 0:
            levels[price_ticks] = (size_lots, order_count)
        else:
            levels.pop(price_ticks, None)
        self.seq = seq

    def load(self, seq: int, bids: list[Any], asks: list[Any]) -> None:
        """Replace the book by a snapshot (levels as [price, size, count])."""
        self._pending = []
        self._pending_rows = 0
        self.bids = {int(p): (int(s), int(c)) for p, s, c in bids}
        self.asks = {int(p): (int(s), int(c)) for p, s, c in asks}
        self.seq = seq

    def levels(self, side: int, depth: int | None = None) -> list[tuple[int, int, int]]:
        """[(price, size, count)] best first."""
        self.fold()
        book = self.bids if side == BUY else self.asks
        prices = sorted(book, reverse=side == BUY)
        if depth is not None:
            prices = prices[:depth]
        return [(p, *book[p]) for p in prices]

    def best_bid(self) -> tuple[int, int] | None:
        self.fold()
        return (p := max(self.bids), self.bids[p][0]) if self.bids else None  # type: ignore[return-value]

    def best_ask(self) -> tuple[int, int] | None:
        self.fold()
        return (p := min(self.asks), self.asks[p][0]) if self.asks else None  # type: ignore[return-value]

    def as_tuple(self) -> tuple[tuple[tuple[int, int, int], ...], tuple[tuple[int, int, int], ...]]:
        """Comparable form: (bids, asks), each best first."""
        return tuple(self.levels(BUY)), tuple(self.levels(SELL))

    def is_crossed(self) -> bool:
        self.fold()
        return bool(self.bids and self.asks and max(self.bids) >= min(self.asks))
