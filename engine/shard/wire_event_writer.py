"""``WireEventWriter``: an EventSink that packs each event as a 64-byte wire struct into one buffer.

The shard process lets the engine run a batch of commands, then publishes ``peek()`` (or
``take()``) to its event ring and calls ``reset()``. The buffer is preallocated and grows by
doubling into a NEW bytearray (never resized in place, so a memoryview handed out earlier stays
valid until ``reset``). The bytes are exactly what ``engine.wire.codec.decode`` reads back.
"""

from __future__ import annotations

from typing import Final

from engine.types.enums import MsgType
from engine.wire.layout import BY_TYPE, SLOT_BYTES, WIRE_VERSION


def _pack(msg_type: MsgType):  # type: ignore[no-untyped-def]
    return BY_TYPE[int(msg_type)].struct.pack_into


_P_ACCEPTED: Final = _pack(MsgType.ACCEPTED)
_P_REJECTED: Final = _pack(MsgType.REJECTED)
_P_FILL: Final = _pack(MsgType.FILL)
_P_CANCELLED: Final = _pack(MsgType.CANCELLED)
_P_L2: Final = _pack(MsgType.L2_DELTA)
_P_TRADE: Final = _pack(MsgType.TRADE)
_P_BBO: Final = _pack(MsgType.BBO)
_P_AMENDED: Final = _pack(MsgType.AMENDED)
_P_TRIGGERED: Final = _pack(MsgType.TRIGGERED)
_P_STATUS: Final = _pack(MsgType.MARKET_STATUS)
_V: Final = WIRE_VERSION
_L: Final = SLOT_BYTES


class WireEventWriter:
    """Packs events into a contiguous run of 64-byte slots; ``count`` events since the last reset."""

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

    def on_accepted(
        self,
        market_id: int,
        seq: int,
        order_id: int,
        client_order_id: int,
        price_ticks: int,
        size_lots: int,
        account: int,
        side: int,
        tif: int,
        order_type: int,
        flags: int,
        ts_ns: int,
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_ACCEPTED(
            self._buf,
            pos,
            32,
            _V,
            _L,
            market_id,
            seq,
            order_id,
            client_order_id,
            price_ticks,
            size_lots,
            ts_ns,
            account,
            side,
            tif,
            order_type,
            flags,
        )

    def on_rejected(
        self,
        market_id: int,
        seq: int,
        order_id: int,
        client_order_id: int,
        account: int,
        reason: int,
        command: int,
        ts_ns: int,
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_REJECTED(
            self._buf,
            pos,
            33,
            _V,
            _L,
            market_id,
            seq,
            order_id,
            client_order_id,
            ts_ns,
            account,
            reason,
            command,
        )

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
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_FILL(
            self._buf,
            pos,
            34,
            _V,
            _L,
            market_id,
            seq,
            taker_order_id,
            maker_order_id,
            price_ticks,
            size_lots,
            taker_account,
            maker_account,
            taker_side,
            flags,
        )

    def on_cancelled(
        self,
        market_id: int,
        seq: int,
        order_id: int,
        client_order_id: int,
        size_lots: int,
        account: int,
        reason: int,
        side: int,
        ts_ns: int,
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_CANCELLED(
            self._buf,
            pos,
            35,
            _V,
            _L,
            market_id,
            seq,
            order_id,
            client_order_id,
            size_lots,
            ts_ns,
            account,
            reason,
            side,
        )

    def on_l2(
        self, market_id: int, seq: int, side: int, price_ticks: int, size_lots: int, order_count: int
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_L2(self._buf, pos, 36, _V, _L, market_id, seq, price_ticks, size_lots, order_count, side, 0)

    def on_trade(
        self, market_id: int, seq: int, price_ticks: int, size_lots: int, taker_side: int, ts_ns: int
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_TRADE(self._buf, pos, 37, _V, _L, market_id, seq, price_ticks, size_lots, ts_ns, taker_side)

    def on_bbo(
        self,
        market_id: int,
        seq: int,
        bid_price_ticks: int,
        bid_size_lots: int,
        ask_price_ticks: int,
        ask_size_lots: int,
        ts_ns: int,
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_BBO(
            self._buf,
            pos,
            38,
            _V,
            _L,
            market_id,
            seq,
            bid_price_ticks,
            bid_size_lots,
            ask_price_ticks,
            ask_size_lots,
            ts_ns,
        )

    def on_amended(
        self,
        market_id: int,
        seq: int,
        order_id: int,
        client_order_id: int,
        price_ticks: int,
        open_size_lots: int,
        account: int,
        kept_priority: int,
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_AMENDED(
            self._buf,
            pos,
            39,
            _V,
            _L,
            market_id,
            seq,
            order_id,
            client_order_id,
            price_ticks,
            open_size_lots,
            account,
            kept_priority,
        )

    def on_triggered(
        self,
        market_id: int,
        seq: int,
        order_id: int,
        client_order_id: int,
        mark_price_ticks: int,
        account: int,
    ) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_TRIGGERED(
            self._buf, pos, 40, _V, _L, market_id, seq, order_id, client_order_id, mark_price_ticks, account
        )

    def on_market_status(self, market_id: int, seq: int, status: int) -> None:
        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf
        _P_STATUS(self._buf, pos, 41, _V, _L, market_id, seq, status)
