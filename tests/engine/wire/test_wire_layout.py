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
