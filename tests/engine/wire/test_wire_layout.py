"""The layout table is the single source of truth: structs and dtypes agree byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from engine.types.enums import MsgType
from engine.wire import layout
from engine.wire.codec import decode, encode
from engine.wire.protocol_doc import DOC_PATH, render


@pytest.mark.parametrize("spec", layout.LAYOUTS, ids=lambda s: s.msg_type.name)
def test_every_message_is_one_cache_line(spec: layout.MessageLayout) -> None:
    assert spec.struct.size == layout.SLOT_BYTES
    assert spec.dtype.itemsize == layout.SLOT_BYTES


@pytest.mark.parametrize("spec", layout.LAYOUTS, ids=lambda s: s.msg_type.name)
def test_struct_and_dtype_agree(spec: layout.MessageLayout) -> None:
    # distinct, in-range values per field so that any offset mistake shows up
    values = {}
    for i, name in enumerate(spec.field_names):
        kind = spec.dtype.fields[name][0]
        values[name] = (i * 37 + 5) % (np.iinfo(kind).max if kind.kind == "u" else 120)
    values.update(msg_type=int(spec.msg_type), version=layout.WIRE_VERSION, length=64)
    packed = spec.struct.pack(*(values[n] for n in spec.field_names))
    arr = np.frombuffer(packed, dtype=spec.dtype)
    for name in spec.field_names:
        assert int(arr[0][name]) == values[name], name
    rebuilt = np.zeros(1, dtype=spec.dtype)
    for name in spec.field_names:
        rebuilt[0][name] = values[name]
    assert rebuilt.tobytes() == packed


def test_every_msg_type_has_a_layout() -> None:
    assert {int(t) for t in MsgType} == set(layout.BY_TYPE)


def test_header_is_shared_prefix() -> None:
    msg = encode(MsgType.FILL, 7, seq=1)
    assert layout.HEADER_STRUCT.unpack_from(msg) == (int(MsgType.FILL), layout.WIRE_VERSION, 64, 7)


def test_encode_rejects_unknown_field() -> None:
    with pytest.raises(KeyError, match="no field"):
        encode(MsgType.CANCEL, 0, price_ticks=1)


def test_decode_round_trip_example() -> None:
    msg = encode(MsgType.NEW_ORDER, 3, client_order_id=9, price_ticks=-5, size_lots=2, side=1, flags=0x11)
    d = decode(msg)
    assert (
        d["market_id"],
        d["client_order_id"],
        d["price_ticks"],
        d["size_lots"],
        d["side"],
        d["flags"],
    ) == (3, 9, -5, 2, 1, 0x11)


def test_protocol_doc_is_fresh() -> None:
    assert DOC_PATH.read_text() == render(), (
        "docs/protocol.md is stale: run `python -m engine.wire.protocol_doc`"
    )


@pytest.mark.parametrize("spec", layout.LAYOUTS, ids=lambda s: s.msg_type.name)
def test_field_offsets_are_the_dtypes(spec: layout.MessageLayout) -> None:
    """field_offset (what hot paths name offsets with) agrees with the numpy dtype for every field."""
    for name in spec.field_names:
        assert layout.field_offset(spec.msg_type, name) == spec.dtype.fields[name][1] == spec.offsets[name]
    pads = sum(b - a for a, b in spec.pad_ranges)
    assert pads + sum(spec.dtype.fields[n][0].itemsize for n in spec.field_names) == layout.SLOT_BYTES


def test_header_constants_and_helpers() -> None:
    assert (layout.MSG_TYPE_AT, layout.VERSION_AT, layout.LENGTH_AT, layout.MARKET_ID_AT) == tuple(
        layout.HEADER_DTYPE.fields[n][1] for n in ("msg_type", "version", "length", "market_id")
    )
    assert layout.word_index(MsgType.FILL, "maker_account", 4) * 4 == layout.field_offset(
        MsgType.FILL, "maker_account"
    )
    with pytest.raises(ValueError, match="aligned"):
        layout.word_index(MsgType.NEW_ORDER, "tif", 4)
    with pytest.raises(KeyError, match="no field"):
        layout.field_offset(MsgType.CANCEL, "price_ticks")
    at, span = layout.field_span(MsgType.L2_DELTA, "seq", "side")
    msg = encode(MsgType.L2_DELTA, 3, seq=9, price_ticks=-7, size_lots=5, order_count=2, side=1)
    assert span.unpack_from(msg, at) == (9, -7, 5, 2, 1)
    assert layout.sink_fields(MsgType.L2_DELTA)[-1] == "side"  # prev_seq is stamped downstream
