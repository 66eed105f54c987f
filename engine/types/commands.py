"""Commands into the engine as frozen values, and the ONE encoder/decoder between them and the wire.

Every command a client, an operator or the sequencer sends is one 64-byte struct of
``engine.wire.layout``. At the edges (the SDK, the JSON API, the native binding's helpers, the
benches) it is built as one of the frozen dataclasses below and packed by :func:`encode_command`;
nothing else in the tree packs a command by position or writes a field at a literal offset. Inside
the engine commands stay flat 64-byte slots (exchange-core: ``ApiPlaceOrder`` at the edge,
``OrderCommand`` inside, one translator between).

Invariants (checked at import, so the layout stays the single source of truth): each class's fields
are exactly ``market_id`` followed by its message's body fields, same names, same (wire) order; the
encoder packs them with the layout's precompiled ``struct.Struct``, so ``decode_command`` of
``encode_command(c)`` is ``c``. Fields are keyword-only; the ones a sender usually leaves alone
default to 0 (``order_id`` 0: the shard assigns the next id; ``account`` 0: the gateway stamps the
session's account). Values are not validated here: the gateway and the shard judge them and reject
with a ``RejectCode`` (a command is data; an out-of-range field raises ``struct.error`` when packed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Final

from engine.types.enums import MsgType, OrderType, TimeInForce
from engine.wire.layout import BY_TYPE, SLOT_BYTES, WIRE_VERSION

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOrder:
    """Place an order (NEW_ORDER). ``flags``: OrderFlag bits, StpMode in bits 4-6."""

    market_id: int
    order_id: int = 0
    client_order_id: int = 0
    price_ticks: int
    size_lots: int
    trigger_price_ticks: int = 0
    expire_ns: int = 0
    account: int = 0
    side: int
    tif: int = TimeInForce.GTC
    order_type: int = OrderType.LIMIT
    flags: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """Cancel one order by ``order_id``, or by ``client_order_id`` when ``order_id`` is 0."""

    market_id: int
    order_id: int = 0
    client_order_id: int = 0
    account: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Amend:
    """New price and/or new TOTAL size (0 keeps either) of an order, addressed like :class:`Cancel`."""

    market_id: int
    order_id: int = 0
    client_order_id: int = 0
    price_ticks: int = 0
    size_lots: int = 0
    account: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelAll:
    """Cancel an account's open orders in one market, or in all (``market_id`` = ALL_MARKETS)."""

    market_id: int
    account: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkPrice:
    """A market's mark price (oracle): fires stops, centres the price band."""

    market_id: int
    price_ticks: int
    ts_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMarketStatus:
    """Open, halt, close or resolve a market (operator). ``status``: MarketStatus."""

    market_id: int
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Clock:
    """The sequencer's clock: expires GTT orders (``market_id`` ALL_MARKETS: every market)."""

    market_id: int
    now_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class L2SnapshotRequest:
    """Ask a shard to restate a market's L2 book (ALL_MARKETS: every market of the shard)."""

    market_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Liveness: the sender's clock and the last sequence it produced or processed."""

    market_id: int = 0
    ts_ns: int = 0
    last_seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotRequest:
    """Ask a stateful process to snapshot now."""

    market_id: int = 0
    request_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown:
    """Ask a process to snapshot and stop cleanly."""

    market_id: int = 0
    request_id: int = 0


Command = (
    NewOrder
    | Cancel
    | Amend
    | CancelAll
    | MarkPrice
    | SetMarketStatus
    | Clock
    | L2SnapshotRequest
    | Heartbeat
    | SnapshotRequest
    | Shutdown
)

MSG_TYPE_OF: Final[dict[type[Any], MsgType]] = {
    NewOrder: MsgType.NEW_ORDER,
    Cancel: MsgType.CANCEL,
    Amend: MsgType.AMEND,
    CancelAll: MsgType.CANCEL_ALL,
    MarkPrice: MsgType.MARK_PRICE,
    SetMarketStatus: MsgType.SET_MARKET_STATUS,
    Clock: MsgType.CLOCK,
    L2SnapshotRequest: MsgType.L2_SNAPSHOT_REQUEST,
    Heartbeat: MsgType.HEARTBEAT,
    SnapshotRequest: MsgType.SNAPSHOT_REQUEST,
    Shutdown: MsgType.SHUTDOWN,
}
CLASS_OF: Final[dict[int, type[Any]]] = {int(t): cls for cls, t in MSG_TYPE_OF.items()}


class _Codec:
    """One command class's packer: its header values, its layout's struct, its field getter."""

    __slots__ = ("msg_type", "cls", "names", "pack", "pack_into", "unpack_from", "values")

    def __init__(self, cls: type[Any], msg_type: MsgType) -> None:
        layout = BY_TYPE[int(msg_type)]
        names = tuple(f.name for f in fields(cls))
        wire = ("market_id", *layout.field_names[4:])
        if names != wire:  # the layout is the source: a class that drifts from it fails at import
            raise TypeError(f"{cls.__name__} fields {names} are not {msg_type.name}'s wire fields {wire}")
        self.msg_type = int(msg_type)
        self.cls = cls
        self.names = names
        self.pack = layout.struct.pack
        self.pack_into = layout.struct.pack_into
        self.unpack_from = layout.struct.unpack_from
        self.values: Callable[[Any], tuple[int, ...]] = _getter(names)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[int, ...]]:
    """The field values of a command in wire order (``attrgetter``: one C call for all of them)."""
    if len(names) > 1:
        getter: Callable[[Any], tuple[int, ...]] = attrgetter(*names)
        return getter
    name = names[0]
    return lambda obj: (getattr(obj, name),)


_CODECS: Final[dict[type[Any], _Codec]] = {cls: _Codec(cls, t) for cls, t in MSG_TYPE_OF.items()}
_BY_MSG_TYPE: Final[dict[int, _Codec]] = {c.msg_type: c for c in _CODECS.values()}


def encode_command(cmd: Command) -> bytes:
    """The 64-byte wire struct of ``cmd`` (padding zero). ``struct.error`` if a field is out of range."""
    c = _CODECS[type(cmd)]
    return c.pack(c.msg_type, WIRE_VERSION, SLOT_BYTES, *c.values(cmd))


def encode_command_into(buf: bytearray | memoryview, offset: int, cmd: Command) -> None:
    """Pack ``cmd`` into ``buf[offset:offset + 64]`` (a ring slot, a frame being built)."""
    c = _CODECS[type(cmd)]
    c.pack_into(buf, offset, c.msg_type, WIRE_VERSION, SLOT_BYTES, *c.values(cmd))


def decode_command(buf: Buffer, offset: int = 0) -> Command:
    """The command in ``buf[offset:offset + 64]``. Header not validated (use ``codec.check_header``
    first); KeyError for a message type that is not a command, ``struct.error`` for a short buffer."""
    c = _BY_MSG_TYPE[buf[offset]]
    values = c.unpack_from(buf, offset)[3:]
    cmd: Command = c.cls(**dict(zip(c.names, values, strict=True)))
    return cmd
