"""Generate every source that restates the wire tables: the C core's header and the event interfaces.

One source for every byte: message types, enum values, field offsets and the event vocabulary are
written once, in ``engine/wire/layout.py`` (layouts, ``ENGINE_EVENTS``), ``engine/types/enums.py``,
``engine/types/fixed.py`` (limits) and ``engine/shard/engine_snapshot.py`` (the snapshot records).
This module renders from them:

* ``engine/native/hx_wire.h``: constants, enum values, the byte offset of every field of every
  message and snapshot record, typed readers of every field and one writer per message (header,
  fields in wire order = the EventSink argument order, zero padding), used by ``_hxcore.c`` in place
  of hand-written numbers;
* ``engine/shard/event_interfaces.py``: the ``EventSink`` protocol (one method per engine event,
  arguments in wire order), ``WireEventPacker`` (those methods, each packing its 64-byte struct:
  the body of ``WireEventWriter``) and ``EventIgnorer`` (every method, doing nothing);
* ``docs/protocol.md`` (``engine.wire.protocol_doc``).

``python -m engine.native.codegen`` rewrites all three (``make generate``); a test renders them
again and fails when a committed file differs, exactly like the protocol document's test. The
output is deterministic and already in the project's format (``ruff format`` leaves it alone).

Bootstrapping: the snapshot tables live in ``engine.shard``, whose package imports the generated
``event_interfaces``; a stale one still imports (it reads the layout at import), but a deleted or
hand-broken one must be restored from git before this module can run.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable, Sequence
from enum import IntEnum
from pathlib import Path

from engine.shard.engine_snapshot import SNAP_MARKET_FIELDS, SNAP_ORDER_FIELDS
from engine.types import enums, fixed
from engine.wire import protocol_doc
from engine.wire.layout import (
    ALL_MARKETS,
    BY_TYPE,
    ENGINE_EVENTS,
    HEADER_FIELDS,
    LAYOUTS,
    SHARD_EVENTS,
    SLOT_BYTES,
    STAMPED_DOWNSTREAM,
    WIRE_VERSION,
    Field,
    code_size,
    field_offsets,
    sink_fields,
)

ROOT = Path(__file__).resolve().parents[2]
HEADER_PATH = ROOT / "engine" / "native" / "hx_wire.h"
INTERFACES_PATH = ROOT / "engine" / "shard" / "event_interfaces.py"
RISK_HEADER_PATH = ROOT / "engine" / "native" / "hx_risk.h"
LINE = 110  # ruff's line length for the generated Python

_C_TYPE = {"B": "uint8_t", "H": "uint16_t", "I": "uint32_t", "Q": "uint64_t", "q": "int64_t"}
_C_READ = {"B": "hx_rd_u8", "H": "hx_rd_u16", "I": "hx_rd_u32", "Q": "hx_rd_u64", "q": "hx_rd_i64"}
_C_WRITE = {"B": "hx_wr_u8", "H": "hx_wr_u16", "I": "hx_wr_u32", "Q": "hx_wr_u64", "q": "hx_wr_i64"}
# C name prefix of each enum's values
_ENUMS: tuple[tuple[type[IntEnum], str], ...] = (
    (enums.MsgType, "HX_MSG"),
    (enums.Side, "HX_SIDE"),
    (enums.TimeInForce, "HX_TIF"),
    (enums.OrderType, "HX_ORDER_TYPE"),
    (enums.OrderFlag, "HX_FLAG"),
    (enums.StpMode, "HX_STP"),
    (enums.MarketKind, "HX_KIND"),
    (enums.MarketStatus, "HX_STATUS"),
    (enums.CancelReason, "HX_CANCEL"),
    (enums.RejectCode, "HX_REJECT"),
)
_LIMITS = (
    ("HX_BASE_ATOMS_PER_UNIT", fixed.BASE_ATOMS_PER_UNIT, "atoms per whole unit of a market's base asset"),
    ("HX_MAX_LEVEL_TOTAL_LOTS", fixed.MAX_LEVEL_TOTAL_LOTS, "bound of one price level's total open size"),
    (
        "HX_MAX_OPEN_ORDERS_PER_ACCOUNT",
        fixed.MAX_OPEN_ORDERS_PER_ACCOUNT,
        "bound of a market's open-order cap per account",
    ),
)


# ---- C header ----------------------------------------------------------------------------------------
def _c_comment(text: str) -> str:
    return text.replace("*/", "* /")


def _c_enum(enum: type[IntEnum], prefix: str) -> list[str]:
    doc = (enum.__doc__ or "").strip().splitlines()[0] if enum.__doc__ else ""
    out = [f"/* {enum.__name__}{': ' + _c_comment(doc) if doc else ''} */", "enum {"]
    out += [f"    {prefix}_{m.name} = {int(m)}," for m in enum]
    out.append("};")
    if all(int(m) == i for i, m in enumerate(enum)):  # dense 0..n-1: the range check is one compare
        out.append(f"#define {prefix}_MAX {max(int(m) for m in enum)}")
    return out + [""]


def _c_set(name: str, members: Iterable[int]) -> list[str]:
    test = " || ".join(f"v == {int(m)}" for m in sorted(members))
    return [f"static inline int {name}(int v) {{ return {test}; }}"]


def _c_record(prefix: str, title: str, fields: Sequence[Field], header: bool = False) -> list[str]:
    """Offsets, typed readers and one writer of a field table. ``header``: a message, whose first
    fields are the common header (their offsets and readers are HX_OFF_HEADER_* / hx_header_*, and
    the writer fills msg_type, version and length itself, taking only market_id)."""
    offsets = field_offsets(fields)
    size = sum(code_size(code) for _, code, _ in fields)
    lname = prefix.lower()
    first = len(HEADER_FIELDS) if header else 0
    stamped = STAMPED_DOWNSTREAM.get(enums.MsgType[prefix], ()) if header else ()
    own = [(n, c, t) for n, c, t in fields[first:] if not c.endswith("x")]
    out = [f"/* ---- {_c_comment(title)} */"]
    if not header:
        out.append(f"#define HX_{prefix}_BYTES {size}")
    for name, code, text in own:
        out.append(
            f"#define HX_OFF_{prefix}_{name.upper()} {offsets[name]} /* {_TYPE_NAME[code]}: {_c_comment(text)} */"
        )
    for name, code, _ in own:
        out.append(
            f"static inline {_C_TYPE[code]} hx_{lname}_{name}(const uint8_t *p) "
            f"{{ return {_C_READ[code]}(p + HX_OFF_{prefix}_{name.upper()}); }}"
        )
    args = [(n, c) for n, c, _ in own if n not in stamped]
    if header:
        args.insert(0, ("market_id", "I"))
    params = ", ".join(["uint8_t *p", *(f"{_C_TYPE[c]} {n}" for n, c in args)])
    out.append(f"static inline void hx_put_{lname}({params}) {{")
    if header:
        msg_type = int(enums.MsgType[prefix])
        out += [
            "    memset(p, 0, HX_SLOT_BYTES);",
            f"    p[HX_OFF_HEADER_MSG_TYPE] = {msg_type}; /* {prefix} */",
            "    p[HX_OFF_HEADER_VERSION] = HX_WIRE_VERSION;",
            "    hx_wr_u16(p + HX_OFF_HEADER_LENGTH, HX_SLOT_BYTES);",
            "    hx_wr_u32(p + HX_OFF_HEADER_MARKET_ID, market_id);",
        ]
        args = args[1:]
    else:
        out.append(f"    memset(p, 0, HX_{prefix}_BYTES);")
    for n, c in args:
        out.append(f"    {_C_WRITE[c]}(p + HX_OFF_{prefix}_{n.upper()}, {n});")
    out.append("}")
    return out + [""]


_TYPE_NAME = {"B": "u8", "H": "u16", "I": "u32", "Q": "u64", "q": "i64"}


def render_c_header() -> str:
    """``engine/native/hx_wire.h``."""
    out = [
        "/*",
        " * hx_wire.h: the wire tables for the compiled core. GENERATED by `python -m engine.native.codegen`",
        " * from engine/wire/layout.py, engine/types/enums.py, engine/types/fixed.py and",
        " * engine/shard/engine_snapshot.py. Do not edit: change those and regenerate (a test fails when this",
        " * file is stale).",
        " *",
        " * Per message NAME: HX_OFF_NAME_FIELD (byte offset of a body field), hx_name_field(p) (its typed",
        " * little-endian read) and hx_put_name(p, market_id, fields...) (the whole 64-byte struct: header,",
        " * the fields in wire order, zero padding). An engine event's hx_put_ arguments are its EventSink",
        " * arguments in the same order (fields stamped downstream, e.g. L2_DELTA.prev_seq, stay 0). The",
        " * header's fields are HX_OFF_HEADER_* / hx_header_*; snapshot records are HX_OFF_SNAP_*.",
        " */",
        "#ifndef HX_WIRE_H",
        "#define HX_WIRE_H",
        "",
        "#include <stdint.h>",
        "#include <string.h>",
        "",
        f"#define HX_SLOT_BYTES {SLOT_BYTES}",
        f"#define HX_WIRE_VERSION {WIRE_VERSION}",
        f"#define HX_ALL_MARKETS 0x{ALL_MARKETS:X}u",
        "",
        "/* ---- limits (engine/types/fixed.py) */",
    ]
    out += [f"#define {name} {value}LL /* {text} */" for name, value, text in _LIMITS]
    out += ["", "/* ---- enumerations (engine/types/enums.py) */"]
    for enum, prefix in _ENUMS:
        out += _c_enum(enum, prefix)
    known_flags = sum(int(f) for f in enums.OrderFlag) | enums.STP_MASK
    out += [
        f"#define HX_FLAGS_STP_SHIFT {enums.STP_SHIFT} /* StpMode in bits 4-6 of NEW_ORDER.flags */",
        f"#define HX_FLAGS_STP_MASK {enums.STP_MASK:#x}",
        f"#define HX_FLAGS_KNOWN_BITS {known_flags:#x}",
        f"#define HX_FLAGS_POST_ONLY_BITS {int(enums.OrderFlag.POST_ONLY | enums.OrderFlag.POST_ONLY_SLIDE):#x}",
    ]
    out += _c_set("hx_is_stop_order_type", enums.STOP_ORDER_TYPES)
    out += _c_set("hx_is_market_priced_order_type", enums.MARKET_PRICED_ORDER_TYPES)
    out += [
        "",
        "/* ---- little-endian access (memcpy: no alignment or aliasing assumption) */",
        "static inline uint8_t hx_rd_u8(const uint8_t *p) { return p[0]; }",
        "static inline uint16_t hx_rd_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }",
        "static inline uint32_t hx_rd_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }",
        "static inline uint64_t hx_rd_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }",
        "static inline int64_t hx_rd_i64(const uint8_t *p) { int64_t v; memcpy(&v, p, 8); return v; }",
        "static inline void hx_wr_u8(uint8_t *p, uint8_t v) { p[0] = v; }",
        "static inline void hx_wr_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }",
        "static inline void hx_wr_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }",
        "static inline void hx_wr_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }",
        "static inline void hx_wr_i64(uint8_t *p, int64_t v) { memcpy(p, &v, 8); }",
        "",
        "#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__",
        '#error "hx_wire.h reads and writes the wire format with memcpy: a little-endian host is assumed"',
        "#endif",
        "",
        "/* ---- messages (engine/wire/layout.py) */",
    ]
    out += _c_record("HEADER", "the header of every message", HEADER_FIELDS)
    for layout in LAYOUTS:
        name = layout.msg_type.name
        method = ENGINE_EVENTS.get(layout.msg_type)
        title = f"{name} (msg_type {int(layout.msg_type)}): {layout.summary}"
        if method:
            title += f" EventSink.{method}."
        out += _c_record(name, title, layout.fields, header=True)
    out += ["/* ---- snapshot records (engine/shard/engine_snapshot.py) */"]
    out += _c_record("SNAP_MARKET", "snapshot: one market's header", SNAP_MARKET_FIELDS)
    out += _c_record("SNAP_ORDER", "snapshot: one resting or waiting order", SNAP_ORDER_FIELDS)
    out += ["#endif /* HX_WIRE_H */", ""]
    return "\n".join(out)


# ---- Python event interfaces ---------------------------------------------------------------------------
def _py_call(head: str, args: Sequence[str], tail: str, indent: int) -> list[str]:
    """``head(args)tail`` laid out as ruff format would: one line, else the arguments on one indented
    line, else one argument per line with a trailing comma."""
    pad = " " * indent
    one = f"{pad}{head}({', '.join(args)}){tail}"
    if len(one) <= LINE:
        return [one]
    inner = f"{pad}    {', '.join(args)}"
    if len(inner) <= LINE:
        return [f"{pad}{head}(", inner, f"{pad}){tail}"]
    return [f"{pad}{head}(", *(f"{pad}    {a}," for a in args), f"{pad}){tail}"]


def _py_doc(text: str, indent: int) -> list[str]:
    pad = " " * indent
    lines = textwrap.wrap(text, width=LINE - indent - 6)
    if len(lines) == 1:
        return [f'{pad}"""{lines[0]}"""']
    return [f'{pad}"""{lines[0]}', *(f"{pad}{line}" for line in lines[1:]), f'{pad}"""']


def render_event_interfaces() -> str:
    """``engine/shard/event_interfaces.py``."""
    events = [(t, m, sink_fields(t)) for t, m in ENGINE_EVENTS.items()]
    out = [
        '"""The matching engine\'s event interfaces. GENERATED by ``python -m engine.native.codegen`` from',
        "``ENGINE_EVENTS`` and the layouts of ``engine/wire/layout.py``: do not edit, change the layout and",
        "regenerate (a test fails when this file is stale).",
        "",
        "* ``EventSink``: what the engine calls, one method per event, synchronously, in event order. The",
        "  arguments are the event's fields in WIRE order (``market_id``, ``seq``, then the body), the",
        "  same order as the C core's ``hx_put_*`` emitters; fields a later stage stamps are left out.",
        "* ``WireEventPacker``: those methods, each packing its 64-byte struct into ``self._buf`` at",
        "  ``self._slot()`` (the body of ``WireEventWriter``), and the same for the messages the shard",
        "  emits itself (``SHARD_EVENTS``: ``on_book_reset``, ``on_heartbeat``).",
        "* ``EventIgnorer``: every method, doing nothing (a base for sinks that keep a few events).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final, Protocol",
        "",
        "from engine.wire.layout import BY_TYPE",
        "",
        "EVENT_METHODS: Final = (",
        *(f'    "{m}",' for _, m, _ in events),
        ")",
        "",
        "",
        "class EventSink(Protocol):",
        '    """Receives the engine\'s events (see the module docstring)."""',
    ]
    for t, method, args in events:
        out.append("")
        out += _py_call(f"def {method}", ["self", *(f"{a}: int" for a in args)], " -> None:", 4)
        out += _py_doc(f"{t.name}: {BY_TYPE[int(t)].summary}", 8)
        out.append("        ...")
    out += ["", ""]
    packed = events + [(t, m, sink_fields(t)) for t, m in SHARD_EVENTS.items()]
    for t, _, _ in packed:
        out.append(f"_P_{t.name}: Final = BY_TYPE[{int(t)}].struct.pack_into")
    out += [
        "",
        "",
        "class WireEventPacker:",
        '    """EventSink methods packing each event as its wire struct. Needs ``_buf`` (a bytearray) and',
        '    ``_slot()`` (the offset of a fresh 64-byte slot, possibly after swapping in a larger buffer)."""',
        "",
        "    __slots__ = ()",
        "    _buf: bytearray",
        "",
        "    def _slot(self) -> int:",
        "        raise NotImplementedError",
    ]
    for t, method, args in packed:
        names = BY_TYPE[int(t)].field_names
        stamped = STAMPED_DOWNSTREAM.get(t, ())
        values = [str(int(t)), str(WIRE_VERSION), str(SLOT_BYTES)]
        values += ["0" if n in stamped else n for n in names[3:]]
        out.append("")
        out += _py_call(f"def {method}", ["self", *(f"{a}: int" for a in args)], " -> None:", 4)
        out.append("        pos = self._slot()  # may swap in a larger buffer: evaluate before self._buf")
        out += _py_call(f"_P_{t.name}", ["self._buf", "pos", *values], "", 8)
    out += [
        "",
        "",
        "class EventIgnorer:",
        '    """Every EventSink method, doing nothing: subclass and override the events you keep."""',
        "",
        "    __slots__ = ()",
    ]
    for _, method, args in events:
        out.append("")
        out += _py_call(f"def {method}", ["self", *(f"{a}: int" for a in args)], " -> None:", 4)
        out.append("        pass")
    return "\n".join(out) + "\n"


# ---- the risk core's header ---------------------------------------------------------------------------
def render_risk_header() -> str:
    """``engine/native/hx_risk.h``: the risk stage's constants and enumerations for ``_hxrisk.c``."""
    from engine.math import pre_trade
    from engine.risk import risk_engine
    from engine.risk.liquidator import LIQUIDATION_COID_BASE
    from engine.types import risk_spec

    consts = (
        ("HXR_SYSTEM_ACCOUNT_BASE", risk_engine.SYSTEM_ACCOUNT_BASE, "ids above it belong to the exchange"),
        ("HXR_INSURANCE_ACCOUNT_BASE", risk_engine.INSURANCE_ACCOUNT_BASE, "+ partition: its insurance fund"),
        (
            "HXR_MAX_POSITION_ATOMS",
            risk_engine.MAX_POSITION_ATOMS,
            "|position| + an order's size stays below",
        ),
        ("HXR_LIQUIDATION_COID_BASE", LIQUIDATION_COID_BASE, "client order ids of risk's own orders"),
        ("HXR_PPM", fixed.PPM, "parts per million: 1.0"),
        ("HXR_ATOMS_PER_UNIT", fixed.ATOMS_PER_UNIT, "atoms per whole unit of a non-USDC asset"),
        ("HXR_MICRO_PER_UNIT", fixed.MICRO_PER_UNIT, "micro-units per USDC"),
        ("HXR_ROUNDING_SLACK_MICRO", pre_trade.ROUNDING_SLACK_MICRO, "pre-trade bound: reference rounding"),
        ("HXR_EXPOSURE_SLACK_MICRO", pre_trade.EXPOSURE_SLACK_MICRO, "pre-trade bound: float exposure"),
    )
    out = [
        "/*",
        " * hx_risk.h: the risk stage's constants for the compiled risk core (_hxrisk.c). GENERATED by",
        " * `python -m engine.native.codegen` from engine/risk/risk_engine.py, engine/risk/liquidator.py,",
        " * engine/math/pre_trade.py, engine/types/fixed.py, engine/types/enums.py and",
        " * engine/types/risk_spec.py. Do not edit (a test fails when this file is stale).",
        " */",
        "#ifndef HX_RISK_H",
        "#define HX_RISK_H",
        "",
    ]
    out += [f"#define {name} {value}ULL /* {text} */" for name, value, text in consts]
    out.append("")
    out += _c_enum(enums.BalanceReason, "HXR_REASON")
    out += _c_enum(risk_spec.AssetKind, "HXR_ASSET")
    out += ["#endif /* HX_RISK_H */", ""]
    return "\n".join(out)


# ---- all generated files -----------------------------------------------------------------------------
def generated() -> dict[Path, str]:
    """Every generated file and what it must contain."""
    return {
        HEADER_PATH: render_c_header(),
        INTERFACES_PATH: render_event_interfaces(),
        RISK_HEADER_PATH: render_risk_header(),
        protocol_doc.DOC_PATH: protocol_doc.render(),
    }


def stale() -> list[Path]:
    """Generated files whose committed text differs from what the tables render now."""
    return [p for p, text in generated().items() if not p.exists() or p.read_text() != text]


def main() -> None:
    for path, text in generated().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")
        else:
            sys.stdout.write(f"unchanged {path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
