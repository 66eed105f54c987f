"""Property tests: every message round-trips; bad type, version and length are refused by code."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from engine.types.enums import RejectCode
from engine.wire import layout
from engine.wire.codec import check_header, decode, encode, iter_frame
from engine.wire.layout import LENGTH_AT, MSG_TYPE_AT, VERSION_AT

_RANGES = {
    "B": (0, 2**8 - 1),
    "H": (0, 2**16 - 1),
    "I": (0, 2**32 - 1),
    "Q": (0, 2**64 - 1),
    "q": (-(2**63), 2**63 - 1),
}


@st.composite
def messages(draw):  # type: ignore[no-untyped-def]
    spec = draw(st.sampled_from(layout.LAYOUTS))
    fields = {}
    for name, code, _ in spec.body:
        if code.endswith("x"):
            continue
        lo, hi = _RANGES[code]
        fields[name] = draw(st.integers(lo, hi))
    market = draw(st.integers(0, 2**32 - 1))
    return spec, market, fields


@given(messages())
def test_round_trip(msg) -> None:  # type: ignore[no-untyped-def]
    spec, market, fields = msg
    packed = encode(spec.msg_type, market, **fields)
    assert check_header(packed) == RejectCode.OK
    out = decode(packed)
    assert out["market_id"] == market and out["msg_type"] == int(spec.msg_type)
    for name, value in fields.items():
        assert out[name] == value


@given(messages(), st.integers(0, 255))
def test_unknown_type_is_refused(msg, bad_type: int) -> None:  # type: ignore[no-untyped-def]
    spec, market, fields = msg
    packed = bytearray(encode(spec.msg_type, market, **fields))
    packed[MSG_TYPE_AT] = bad_type
    expected = RejectCode.OK if bad_type in layout.BY_TYPE else RejectCode.UNKNOWN_MSG_TYPE
    assert check_header(packed) == expected


@given(messages(), st.integers(0, 255).filter(lambda v: v != layout.WIRE_VERSION))
def test_bad_version_is_refused(msg, version: int) -> None:  # type: ignore[no-untyped-def]
    spec, market, fields = msg
    packed = bytearray(encode(spec.msg_type, market, **fields))
    packed[VERSION_AT] = version
    assert check_header(packed) == RejectCode.BAD_VERSION


@given(messages(), st.integers(0, 2**16 - 1).filter(lambda v: v != 64))
def test_bad_length_field_is_refused(msg, length: int) -> None:  # type: ignore[no-untyped-def]
    spec, market, fields = msg
    packed = bytearray(encode(spec.msg_type, market, **fields))
    struct.pack_into("<H", packed, LENGTH_AT, length)
    assert check_header(packed) == RejectCode.BAD_LENGTH


@given(st.binary(max_size=63))
def test_short_buffer_is_refused(data: bytes) -> None:
    assert check_header(data) == RejectCode.BAD_LENGTH


@given(st.lists(messages(), min_size=1, max_size=8), st.binary(max_size=63))
def test_frame_split_judges_each_message(msgs, tail: bytes) -> None:  # type: ignore[no-untyped-def]
    frame = b"".join(encode(s.msg_type, m, **f) for s, m, f in msgs) + tail
    verdicts = list(iter_frame(frame))
    assert [off for off, _ in verdicts[: len(msgs)]] == [64 * i for i in range(len(msgs))]
    assert all(code == RejectCode.OK for _, code in verdicts[: len(msgs)])
    if tail:
        assert verdicts[-1] == (64 * len(msgs), RejectCode.BAD_LENGTH)
    else:
        assert len(verdicts) == len(msgs)
