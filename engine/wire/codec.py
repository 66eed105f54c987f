"""Encode, decode and validate wire messages (see ``engine.wire.layout``).

Validation never raises on bad input: ``check_header`` returns a ``RejectCode`` so that every
boundary (gateway, shard) can reject a malformed struct with a reason and keep running. Decoding
into dicts is for the edges and tests; the hot path unpacks with the layout's ``struct`` directly.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Any

from engine.types.enums import RejectCode
from engine.wire.layout import BY_TYPE, HEADER_STRUCT, SLOT_BYTES, WIRE_VERSION


def encode(msg_type: int, market_id: int = 0, **fields: Any) -> bytes:
    """Pack one message; unspecified fields are 0. Raises ``struct.error``/KeyError on misuse."""
    layout = BY_TYPE[int(msg_type)]
    values = {
        "msg_type": int(msg_type),
        "version": WIRE_VERSION,
        "length": SLOT_BYTES,
        "market_id": market_id,
    }
    unknown = fields.keys() - layout.field_set
    if unknown:
        raise KeyError(f"{layout.msg_type.name} has no field(s) {sorted(unknown)}")
    values.update(fields)
    return layout.struct.pack(*(int(values.get(name, 0)) for name in layout.field_names))


def decode(buf: bytes | bytearray | memoryview, offset: int = 0) -> dict[str, int]:
    """Unpack one message into a dict of field -> int (header included). Validate first."""
    msg_type = buf[offset]
    layout = BY_TYPE[msg_type]
    return dict(zip(layout.field_names, layout.struct.unpack_from(buf, offset), strict=True))


def check_header(
    buf: bytes | bytearray | memoryview, offset: int = 0, allowed: Container[int] = BY_TYPE
) -> int:
    """RejectCode.OK if ``buf[offset:]`` starts with a well-formed single-slot message header.

    ``allowed`` narrows the accepted message types (a gateway takes only client commands).
    """
    if len(buf) - offset < SLOT_BYTES:
        return RejectCode.BAD_LENGTH
    msg_type, version, length, _market = HEADER_STRUCT.unpack_from(buf, offset)
    if msg_type not in allowed:
        return RejectCode.UNKNOWN_MSG_TYPE
    if version != WIRE_VERSION:
        return RejectCode.BAD_VERSION
    if length != SLOT_BYTES:
        return RejectCode.BAD_LENGTH
    return RejectCode.OK


def iter_frame(frame: bytes | bytearray | memoryview) -> Iterator[tuple[int, int]]:
    """Split a binary frame of concatenated messages: yields (offset, RejectCode) per message.

    A frame whose size is not a multiple of 64 yields a BAD_LENGTH for the trailing bytes. A
    message with a bad header does not stop the rest of the frame: each is judged on its own.
    """
    size = len(frame)
    offset = 0
    while offset < size:
        code = check_header(frame, offset)
        yield offset, code
        offset += SLOT_BYTES
