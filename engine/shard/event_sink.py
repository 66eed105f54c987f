"""Where the matching engine sends its events: the ``EventSink`` protocol and two trivial sinks.

The engine calls exactly one method per event, synchronously, in the order the events happen; a
command's events are contiguous. ``seq`` is the market's gap-free event sequence (from 1); REJECTED
events are not part of that sequence (a reject changes nothing, not even ``seq``): they carry the
market's current seq so a consumer can place them, and 0 for an unknown market.

Implementations: :class:`NullSink` (benchmarks of the bare book), :class:`CountingSink`,
:class:`EventRecorder` (tests: a list of tuples), ``WireEventWriter`` (64-byte wire structs, what
the shard process publishes), ``TradeRecorder`` (fills in the workload TRADE dtype, for replay).
"""

from __future__ import annotations

from typing import Protocol

from engine.types.enums import MsgType


class EventSink(Protocol):
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
    ) -> None: ...

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
    ) -> None: ...

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
    ) -> None: ...

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
    ) -> None: ...

    def on_l2(
        self, market_id: int, seq: int, side: int, price_ticks: int, size_lots: int, order_count: int
    ) -> None: ...

    def on_trade(
        self, market_id: int, seq: int, price_ticks: int, size_lots: int, taker_side: int, ts_ns: int
    ) -> None: ...

    def on_bbo(
        self,
        market_id: int,
        seq: int,
        bid_price_ticks: int,
        bid_size_lots: int,
        ask_price_ticks: int,
        ask_size_lots: int,
        ts_ns: int,
    ) -> None: ...

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
    ) -> None: ...

    def on_triggered(
        self,
        market_id: int,
        seq: int,
        order_id: int,
        client_order_id: int,
        mark_price_ticks: int,
        account: int,
    ) -> None: ...

    def on_market_status(self, market_id: int, seq: int, status: int) -> None: ...


EVENT_METHODS = (
    "on_accepted",
    "on_rejected",
    "on_fill",
    "on_cancelled",
    "on_l2",
    "on_trade",
    "on_bbo",
    "on_amended",
    "on_triggered",
    "on_market_status",
)


def sink_method(sink: object, name: str):  # type: ignore[no-untyped-def]
    """``sink.name`` bound, or None when the sink declares (``wanted_events``) that it ignores it.

    A sink may set ``wanted_events`` (a set of method names) to spare the engine calls it would
    discard; sequence numbers are assigned exactly as if every event were delivered."""
    wanted = getattr(sink, "wanted_events", None)
    if wanted is not None and name not in wanted:
        return None
    return getattr(sink, name)


FILL_TAKER_DONE = 1  # FILL.flags bit 0
FILL_MAKER_DONE = 2  # FILL.flags bit 1


class NullSink:
    """Discards everything (the bare-book benchmark)."""

    wanted_events: frozenset[str] = frozenset()

    def on_accepted(self, *args: int) -> None:
        pass

    on_rejected = on_fill = on_cancelled = on_l2 = on_trade = on_bbo = on_amended = on_accepted
    on_triggered = on_market_status = on_accepted


class CountingSink:
    """Counts events by MsgType; ``rejects`` counts by reason code."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = dict.fromkeys((int(t) for t in MsgType if 32 <= t < 64), 0)
        self.rejects: dict[int, int] = {}

    def on_accepted(self, *a: int) -> None:
        self.counts[MsgType.ACCEPTED] += 1

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
        self.counts[MsgType.REJECTED] += 1
        self.rejects[reason] = self.rejects.get(reason, 0) + 1

    def on_fill(self, *a: int) -> None:
        self.counts[MsgType.FILL] += 1

    def on_cancelled(self, *a: int) -> None:
        self.counts[MsgType.CANCELLED] += 1

    def on_l2(self, *a: int) -> None:
        self.counts[MsgType.L2_DELTA] += 1

    def on_trade(self, *a: int) -> None:
        self.counts[MsgType.TRADE] += 1

    def on_bbo(self, *a: int) -> None:
        self.counts[MsgType.BBO] += 1

    def on_amended(self, *a: int) -> None:
        self.counts[MsgType.AMENDED] += 1

    def on_triggered(self, *a: int) -> None:
        self.counts[MsgType.TRIGGERED] += 1

    def on_market_status(self, *a: int) -> None:
        self.counts[MsgType.MARKET_STATUS] += 1


class EventRecorder:
    """Keeps every event as ``(MsgType, market_id, seq, *fields)`` in call order (tests)."""

    def __init__(self) -> None:
        self.events: list[tuple[int, ...]] = []

    def clear(self) -> None:
        self.events.clear()

    def of(self, msg_type: int) -> list[tuple[int, ...]]:
        return [e for e in self.events if e[0] == msg_type]

    def on_accepted(self, *a: int) -> None:
        self.events.append((MsgType.ACCEPTED, *a))

    def on_rejected(self, *a: int) -> None:
        self.events.append((MsgType.REJECTED, *a))

    def on_fill(self, *a: int) -> None:
        self.events.append((MsgType.FILL, *a))

    def on_cancelled(self, *a: int) -> None:
        self.events.append((MsgType.CANCELLED, *a))

    def on_l2(self, *a: int) -> None:
        self.events.append((MsgType.L2_DELTA, *a))

    def on_trade(self, *a: int) -> None:
        self.events.append((MsgType.TRADE, *a))

    def on_bbo(self, *a: int) -> None:
        self.events.append((MsgType.BBO, *a))

    def on_amended(self, *a: int) -> None:
        self.events.append((MsgType.AMENDED, *a))

    def on_triggered(self, *a: int) -> None:
        self.events.append((MsgType.TRIGGERED, *a))

    def on_market_status(self, *a: int) -> None:
        self.events.append((MsgType.MARKET_STATUS, *a))
