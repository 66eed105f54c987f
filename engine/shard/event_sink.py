"""Where the matching engine sends its events: the ``EventSink`` protocol and a few trivial sinks.

The engine calls exactly one method per event, synchronously, in the order the events happen; a
command's events are contiguous. ``seq`` is the market's gap-free event sequence (from 1); REJECTED
events are not part of that sequence (a reject changes nothing, not even ``seq``): they carry the
market's current seq so a consumer can place them, and 0 for an unknown market.

The vocabulary is defined once, in ``engine.wire.layout`` (``ENGINE_EVENTS`` and the layouts): a
method's arguments are its event's fields in wire order. ``EventSink`` itself is generated from it
(``engine.shard.event_interfaces``, re-exported here), as are ``WireEventWriter``'s packers and the
C core's emitters.

Implementations: :class:`NullSink` (benchmarks of the bare book), :class:`CountingSink`,
:class:`EventRecorder` (tests: a list of tuples), ``WireEventWriter`` (64-byte wire structs, what
the shard process publishes), ``TradeRecorder`` (fills in the workload TRADE dtype, for replay).
"""

from __future__ import annotations

from engine.shard.event_interfaces import EVENT_METHODS, EventIgnorer, EventSink
from engine.types.enums import MsgType
from engine.wire.layout import ENGINE_EVENTS, sink_fields

__all__ = [
    "EVENT_METHODS",
    "CountingSink",
    "EventIgnorer",
    "EventRecorder",
    "EventSink",
    "NullSink",
    "sink_method",
]


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


class NullSink(EventIgnorer):
    """Discards everything (the bare-book benchmark); tells the engine not to call it at all."""

    __slots__ = ()
    wanted_events: frozenset[str] = frozenset()


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
        ts_ns: int,
        account: int,
        reason: int,
        command: int,
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
    """Keeps every event as ``(MsgType, market_id, seq, *fields)`` in call order (tests); the fields
    are the sink arguments, i.e. the event's wire fields in wire order (``fields_of`` names them)."""

    def __init__(self) -> None:
        self.events: list[tuple[int, ...]] = []

    def clear(self) -> None:
        self.events.clear()

    def of(self, msg_type: int) -> list[tuple[int, ...]]:
        return [e for e in self.events if e[0] == msg_type]

    def named(self, msg_type: int) -> list[dict[str, int]]:
        """The events of one type as {field: value} (field names from the layout)."""
        names = fields_of(msg_type)
        return [dict(zip(names, e[1:], strict=True)) for e in self.of(msg_type)]

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


def fields_of(msg_type: int) -> tuple[str, ...]:
    """The sink arguments of an engine event, by name (``market_id``, ``seq``, ...)."""
    return sink_fields(msg_type)


assert set(EVENT_METHODS) == set(ENGINE_EVENTS.values())
