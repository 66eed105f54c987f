"""Generated sources stay fresh and agree with the tables they are generated from.

``engine/native/hx_wire.h`` (the C core's constants, offsets, readers and event writers) and
``engine/shard/event_interfaces.py`` (EventSink, the WireEventWriter packers) are rendered from
``engine/wire/layout.py``, ``engine/types/enums.py``, ``engine/types/fixed.py`` and the snapshot
record tables; like ``docs/protocol.md`` they are committed, and these tests render them again.
"""

from __future__ import annotations

import inspect
import re

import pytest

from engine.native import codegen
from engine.shard.engine_snapshot import SNAP_ORDER, SNAP_ORDER_FIELDS
from engine.shard.event_interfaces import EVENT_METHODS, EventIgnorer, EventSink, WireEventPacker
from engine.shard.wire_event_writer import WireEventWriter
from engine.types import enums
from engine.types.enums import MsgType
from engine.wire.codec import decode
from engine.wire.layout import BY_TYPE, ENGINE_EVENTS, LAYOUTS, SHARD_EVENTS, field_offset, sink_fields


@pytest.mark.parametrize("path", sorted(codegen.generated(), key=str), ids=lambda p: p.name)
def test_generated_file_is_fresh(path) -> None:  # type: ignore[no-untyped-def]
    assert path.read_text() == codegen.generated()[path], (
        f"{path.relative_to(codegen.ROOT)} is stale: run `python -m engine.native.codegen` (make generate)"
    )


def _defines() -> dict[str, int]:
    text = codegen.HEADER_PATH.read_text()
    out = {name: int(value.rstrip("uL"), 0) for name, value in re.findall(r"#define (\w+) (\S+)", text)}
    for name, value in re.findall(r"^\s+(HX_\w+) = (-?\d+),$", text, re.M):
        out[name] = int(value)
    return out


def test_header_offsets_are_the_layouts() -> None:
    """Every field of every message has its offset in the header, equal to the layout's."""
    defines = _defines()
    for layout in LAYOUTS:
        for name in layout.field_names[4:]:
            key = f"HX_OFF_{layout.msg_type.name}_{name.upper()}"
            assert defines[key] == field_offset(layout.msg_type, name), key
    for k, (name, _, _) in enumerate(SNAP_ORDER_FIELDS):
        assert defines[f"HX_OFF_SNAP_ORDER_{name.upper()}"] == SNAP_ORDER.fields[name][1], k
    assert defines["HX_SNAP_ORDER_BYTES"] == SNAP_ORDER.itemsize


def test_header_enum_values_are_the_enums() -> None:
    defines = _defines()
    for enum, prefix in codegen._ENUMS:
        for member in enum:
            assert defines[f"{prefix}_{member.name}"] == int(member)
    assert defines["HX_FLAGS_STP_SHIFT"] == enums.STP_SHIFT


def test_event_vocabulary_is_defined_once() -> None:
    """The EventSink methods, the writer's packers and the ignorer all carry the layout's sink fields."""
    assert set(EVENT_METHODS) == set(ENGINE_EVENTS.values())
    for msg_type, method in ENGINE_EVENTS.items():
        expected = ["self", *sink_fields(msg_type)]
        for cls in (EventSink, WireEventPacker, EventIgnorer):
            assert list(inspect.signature(getattr(cls, method)).parameters) == expected, (cls, method)


@pytest.mark.parametrize("msg_type", [*ENGINE_EVENTS, *SHARD_EVENTS], ids=lambda t: t.name)
def test_writer_packs_each_event_in_wire_order(msg_type: MsgType) -> None:
    """Distinct values through the generated packer come back under the same field names."""
    methods = {**ENGINE_EVENTS, **SHARD_EVENTS}
    names = sink_fields(msg_type)
    values = {n: 1 + 3 * k for k, n in enumerate(names)}
    w = WireEventWriter()
    getattr(w, methods[msg_type])(*values.values())
    d = decode(w.take())
    assert d["msg_type"] == msg_type and d["version"] == 1 and d["length"] == 64
    assert {n: d[n] for n in names} == values
    others = set(BY_TYPE[msg_type].field_names) - set(names) - {"msg_type", "version", "length"}
    assert all(d[n] == 0 for n in others)  # fields stamped downstream (L2_DELTA.prev_seq) stay 0
