"""``TradeRecorder``: an EventSink keeping only fills, as the workload's TRADE records (replay output).

Fills are appended in the order they happen (within a market that is the market's event order).
Every other event is ignored; rejects are counted by reason for the replay summary.
"""

from __future__ import annotations

import numpy as np

from engine.shard.event_interfaces import EventIgnorer
from engine.types.enums import MsgType
from engine.wire.layout import layout_of

TRADE_DTYPE = np.dtype([("taker_oid", "<u8"), ("maker_oid", "<u8"), ("price", "<i8"), ("qty", "<i8")])


class TradeRecorder(EventIgnorer):
    """Keeps the fills (``trades()``) and counts rejects by reason; ignores every other event."""

    __slots__ = ("_flat", "rejects", "markets")
    wanted_events = frozenset({"on_fill", "on_rejected"})

    def __init__(self, with_markets: bool = False) -> None:
        self._flat: list[int] = []  # taker, maker, price, qty, taker, maker, ...
        self.rejects: dict[int, int] = {}
        self.markets: list[int] | None = [] if with_markets else None

    def __len__(self) -> int:
        return len(self._flat) // 4

    def trades(self) -> np.ndarray:
        """The fills so far as a TRADE array."""
        n = len(self._flat) // 4
        out = np.empty(n, dtype=TRADE_DTYPE)
        if n:
            flat = np.array(self._flat, dtype=np.int64).reshape(n, 4)
            out["taker_oid"] = flat[:, 0]
            out["maker_oid"] = flat[:, 1]
            out["price"] = flat[:, 2]
            out["qty"] = flat[:, 3]
        return out

    def market_ids(self) -> np.ndarray:
        return np.array(self.markets if self.markets is not None else [], dtype=np.uint32)

    def on_fill(
        self,
        market_id: int,
        seq: int,
        taker_order_id: int,
        maker_order_id: int,
        price_ticks: int,
        size_lots: int,
        taker_account: int,
        maker_account: int,
        taker_side: int,
        flags: int,
    ) -> None:
        self._flat += (taker_order_id, maker_order_id, price_ticks, size_lots)
        if self.markets is not None:
            self.markets.append(market_id)

    def on_rejected(
        self,
        market_id: int,
        seq: int,
        order_id: int,
        client_order_id: int,
        ts_ns: int,
        account: int,
        reason: int,
        command: int,
    ) -> None:
        rejects = self.rejects
        rejects[reason] = rejects.get(reason, 0) + 1


_FILL_DT = layout_of(MsgType.FILL).dtype
_REJECT_DT = layout_of(MsgType.REJECTED).dtype


def trades_from_events(events: bytes | bytearray | memoryview) -> np.ndarray:
    """The FILL events among packed 64-byte wire events, as TRADE records in event order (vectorised:
    what the replay does with the compiled core's output)."""
    fills = np.frombuffer(events, dtype=_FILL_DT)
    return fills_to_trades(fills[fills["msg_type"] == MsgType.FILL])


def fills_to_trades(fills: np.ndarray) -> np.ndarray:
    """Wire FILL records (the FILL dtype) as workload TRADE records, in the same order."""
    out = np.empty(len(fills), dtype=TRADE_DTYPE)
    out["taker_oid"] = fills["taker_order_id"]
    out["maker_oid"] = fills["maker_order_id"]
    out["price"] = fills["price_ticks"]
    out["qty"] = fills["size_lots"]
    return out


def reject_counts(events: bytes | bytearray | memoryview) -> dict[int, int]:
    """RejectCode -> count among packed wire events."""
    rows = np.frombuffer(events, dtype=_REJECT_DT)
    reasons = rows["reason"][rows["msg_type"] == MsgType.REJECTED]
    codes, counts = np.unique(reasons, return_counts=True)
    return {int(c): int(n) for c, n in zip(codes, counts, strict=True)}
