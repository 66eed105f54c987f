"""``engine.types.commands``: frozen commands and the one encoder/decoder, held to the layout."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.types import commands as C
from engine.types.enums import MsgType, Side
from engine.wire.codec import check_header, encode
from engine.wire.layout import BY_TYPE, SLOT_BYTES

_RANGES = {
    "B": (0, 2**8 - 1),
    "H": (0, 2**16 - 1),
    "I": (0, 2**32 - 1),
    "Q": (0, 2**64 - 1),
    "q": (-(2**63), 2**63 - 1),
}


def _strategy(cls: type) -> st.SearchStrategy[C.Command]:
    layout = BY_TYPE[C.MSG_TYPE_OF[cls]]
    codes = {name: code for name, code, _ in layout.fields}
    return st.builds(cls, **{f.name: st.integers(*_RANGES[codes[f.name]]) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("cls", list(C.MSG_TYPE_OF), ids=lambda c: c.__name__)
def test_fields_are_the_wire_fields(cls: type) -> None:
    layout = BY_TYPE[C.MSG_TYPE_OF[cls]]
    assert tuple(f.name for f in dataclasses.fields(cls)) == ("market_id", *layout.field_names[4:])
    assert MsgType(C.MSG_TYPE_OF[cls]) < 32 or MsgType(C.MSG_TYPE_OF[cls]) >= 64  # commands and control only


@pytest.mark.parametrize("cls", list(C.MSG_TYPE_OF), ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip_and_same_bytes_as_the_codec(cls: type, data: st.DataObject) -> None:
    cmd = data.draw(_strategy(cls))
    raw = C.encode_command(cmd)
    assert len(raw) == SLOT_BYTES and check_header(raw) == 0
    assert C.decode_command(raw) == cmd
    fields = dataclasses.asdict(cmd)
    assert raw == encode(C.MSG_TYPE_OF[cls], fields.pop("market_id"), **fields)
    buf = bytearray(3 * SLOT_BYTES)
    C.encode_command_into(buf, SLOT_BYTES, cmd)
    assert bytes(buf[SLOT_BYTES : 2 * SLOT_BYTES]) == raw and C.decode_command(buf, SLOT_BYTES) == cmd


def test_defaults_and_immutability() -> None:
    order = C.NewOrder(market_id=1, price_ticks=100, size_lots=2, side=Side.SELL)
    assert (order.order_id, order.account, order.tif, order.order_type, order.flags) == (0, 0, 0, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.price_ticks = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        C.NewOrder(1, 0, 0, 100, 2)  # type: ignore[misc]  # keyword-only: no positional packing


def test_out_of_range_and_foreign_messages_raise() -> None:
    import struct

    with pytest.raises(struct.error):
        C.encode_command(C.Cancel(market_id=-1))
    with pytest.raises(KeyError):
        C.decode_command(encode(MsgType.FILL, 1))
