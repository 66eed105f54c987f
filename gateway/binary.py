"""Validation of client structs on ``/v1/bin`` (and of structs built by the JSON edge), and rejects.

A binary frame carries one or more 64-byte command structs back to back. Each is judged on its
own, in this order (the first failing rule gives the code):

1. header: ``msg_type`` is a client command (NEW_ORDER, CANCEL, AMEND, CANCEL_ALL, ORDER_QUERY,
   SET_LEVERAGE, ADJUST_MARGIN) else UNKNOWN_MSG_TYPE; ``version`` 1 else BAD_VERSION; ``length`` 64 else BAD_LENGTH (trailing bytes
   that do not make a whole struct: one BAD_LENGTH reject);
2. padding bytes zero, else MALFORMED;
3. ``market_id`` is a listed market (CANCEL_ALL and an ORDER_QUERY for all open orders may also
   use 0xFFFFFFFF = all) else UNKNOWN_MARKET;
4. ``account`` is 0 or the logged-in account, else WRONG_ACCOUNT; the gateway then writes the
   session's account id into it, so a client can never act for another account;
5. cheap field ranges: NEW_ORDER ``order_id`` 0 (the shard assigns ids) and ``client_order_id``
   non-zero and below 2^63 (BAD_FIELD: ids from 2^63 up are risk's liquidation orders), side/tif/order_type/flags in range (BAD_SIDE, BAD_TIF, BAD_ORDER_TYPE,
   BAD_FLAGS), ``size_lots`` > 0 (BAD_SIZE_LOT), ``price_ticks`` > 0 (BAD_PRICE_TICK), trigger and
   expiry >= 0; CANCEL/AMEND name an order (``order_id`` or ``client_order_id`` non-zero, else
   BAD_FIELD; a ``client_order_id`` from 2^63 up in CANCEL, AMEND or ORDER_QUERY: BAD_FIELD); AMEND price and size >= 0; ORDER_QUERY ``request_id`` below 2^63 (the gateway's
   own ids have the top bit; BAD_FIELD); SET_LEVERAGE leverage >= 1 and mode 0/1
   (LEVERAGE_OUT_OF_RANGE; the market's maximum is risk's check); ADJUST_MARGIN ``amount_micro``
   non-zero (AMOUNT_OUT_OF_RANGE).

Everything else (tick/lot multiples of the market, bands, status, ids) is the shard's job.

Two implementations of the same rules: :func:`check_struct` is the obvious per-struct reference;
:func:`validate_frame` adds fast paths for bulk NEW_ORDER frames (numpy for large frames,
``struct.iter_unpack`` for small ones) that only decide "all fine?" and defer every flagged struct
to :func:`check_struct` for its exact code. Tests run random and mutated frames through both. Invariant: a struct that passes either is well formed and carries the session's
account; nothing else is ever returned as accepted.
"""

from __future__ import annotations

import struct

import numpy as np

from engine.types.enums import STP_MASK, STP_SHIFT, MsgType, RejectCode
from engine.wire.codec import check_header, encode
from engine.wire.layout import (
    ALL_MARKETS,
    BY_TYPE,
    HEADER_BYTES,
    HEADER_STRUCT,
    MARKET_ID_AT,
    SLOT_BYTES,
    WIRE_VERSION,
    field_offset,
    word_index,
)
from engine.wire.layout import NEW_ORDER as NEW_ORDER_STRUCT

CLIENT_TYPES = (
    MsgType.NEW_ORDER,
    MsgType.CANCEL,
    MsgType.AMEND,
    MsgType.CANCEL_ALL,
    MsgType.ORDER_QUERY,  # answered by risk with ORDER_STATE events (risk in the path only)
    MsgType.SET_LEVERAGE,  # applied by risk; refused with REJECTED (risk in the path only)
    MsgType.ADJUST_MARGIN,  # likewise
)
RISK_TYPES = frozenset(  # need the risk stage
    {int(MsgType.ORDER_QUERY), int(MsgType.SET_LEVERAGE), int(MsgType.ADJUST_MARGIN)}
)
GATEWAY_REQUEST_BIT = 1 << 63  # ORDER_QUERY request ids with this bit are the gateway's own
# client order ids from 2^63 up are risk's own (its liquidation orders, on the liquidated account):
# a client can neither place one (risk would refuse it) nor cancel, amend or query one
RISK_COID_BIT = 1 << 63


ACCOUNT_OFFSET = {int(t): field_offset(t, "account") for t in CLIENT_TYPES}
_PAD_BYTES = {int(t): [i for a, b in BY_TYPE[t].pad_ranges for i in range(a, b)] for t in CLIENT_TYPES}

_FLAG_BITS = 0b0000_0111 | STP_MASK
_MAX_STP = 4
_NEW = int(MsgType.NEW_ORDER)
_CANCEL = int(MsgType.CANCEL)
_AMEND = int(MsgType.AMEND)
_CANCEL_ALL = int(MsgType.CANCEL_ALL)
_QUERY = int(MsgType.ORDER_QUERY)
_LEVERAGE = int(MsgType.SET_LEVERAGE)
_QUERY_RID = field_offset(_QUERY, "request_id")
_LEV = field_offset(_LEVERAGE, "leverage")
_LEV_MODE = field_offset(_LEVERAGE, "mode")
_ADJUST = int(MsgType.ADJUST_MARGIN)
_ADJ_AMOUNT = field_offset(_ADJUST, "amount_micro")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_HDR = HEADER_STRUCT
# byte offsets of the fields checked below (from the layout: no number is written by hand)
_NO_OID = field_offset(_NEW, "order_id")
_NO_COID = field_offset(_NEW, "client_order_id")
_NO_PRICE = field_offset(_NEW, "price_ticks")
_NO_SIZE = field_offset(_NEW, "size_lots")
_NO_TRIGGER = field_offset(_NEW, "trigger_price_ticks")
_NO_EXPIRE = field_offset(_NEW, "expire_ns")
_NO_ACCOUNT = field_offset(_NEW, "account")
_NO_SIDE = field_offset(_NEW, "side")
_NO_TIF = field_offset(_NEW, "tif")
_NO_TYPE = field_offset(_NEW, "order_type")
_NO_FLAGS = field_offset(_NEW, "flags")
# CANCEL and AMEND (and NEW_ORDER) name an order with the same two fields at the same offsets
_OID = field_offset(_CANCEL, "order_id")
_COID = field_offset(_CANCEL, "client_order_id")
assert all(
    field_offset(t, "order_id") == _OID and field_offset(t, "client_order_id") == _COID
    for t in CLIENT_TYPES[:3]
)
_AM_PRICE = field_offset(_AMEND, "price_ticks")
_AM_SIZE = field_offset(_AMEND, "size_lots")
# the same fields as word indexes of a frame viewed as int64 / uint32 rows (the vectorised path)
_W8_OID = word_index(_NEW, "order_id", 8)
_W8_COID = word_index(_NEW, "client_order_id", 8)
_W8_PRICE = word_index(_NEW, "price_ticks", 8)
_W8_SIZE = word_index(_NEW, "size_lots", 8)
_W8_TRIGGER = word_index(_NEW, "trigger_price_ticks", 8)
_W8_EXPIRE = word_index(_NEW, "expire_ns", 8)
_W4_MARKET = MARKET_ID_AT // 4
_W4_ACCOUNT = word_index(_NEW, "account", 4)
# side, tif, order_type and flags share one u32 word: a byte each, from its low byte up
_W4_ENUMS = word_index(_NEW, "side", 4)
_SH_TIF, _SH_TYPE, _SH_FLAGS = (
    8 * (field_offset(_NEW, n) - _NO_SIDE) for n in ("tif", "order_type", "flags")
)
assert [field_offset(_NEW, n) for n in ("side", "tif", "order_type", "flags")] == [
    *range(_NO_SIDE, _NO_SIDE + 4)
]


def check_struct(
    buf: bytes | bytearray | memoryview, offset: int, account_id: int, markets: frozenset[int] | set[int]
) -> int:
    """RejectCode for one struct at ``buf[offset:offset+64]`` (the scalar reference)."""
    code = check_header(buf, offset, ACCOUNT_OFFSET)
    if code:
        return code
    t, _version, _length, market = _HDR.unpack_from(buf, offset)
    for i in _PAD_BYTES[t]:
        if buf[offset + i]:
            return RejectCode.MALFORMED
    if market not in markets and not ((t == _CANCEL_ALL or t == _QUERY) and market == ALL_MARKETS):
        return RejectCode.UNKNOWN_MARKET
    acct = _U32.unpack_from(buf, offset + ACCOUNT_OFFSET[t])[0]
    if acct and acct != account_id:
        return RejectCode.WRONG_ACCOUNT
    if t == _NEW:
        coid = _Q.unpack_from(buf, offset + _NO_COID)[0]
        if _Q.unpack_from(buf, offset + _NO_OID)[0] != 0 or coid == 0 or coid & RISK_COID_BIT:
            return RejectCode.BAD_FIELD
        side, tif = buf[offset + _NO_SIDE], buf[offset + _NO_TIF]
        otype, flags = buf[offset + _NO_TYPE], buf[offset + _NO_FLAGS]
        if side > 1:
            return RejectCode.BAD_SIDE
        if tif > 3:
            return RejectCode.BAD_TIF
        if otype > 5:
            return RejectCode.BAD_ORDER_TYPE
        if flags & ~_FLAG_BITS & 0xFF or (flags & STP_MASK) >> STP_SHIFT > _MAX_STP:
            return RejectCode.BAD_FLAGS
        if _q.unpack_from(buf, offset + _NO_SIZE)[0] <= 0:
            return RejectCode.BAD_SIZE_LOT
        if _q.unpack_from(buf, offset + _NO_PRICE)[0] <= 0:
            return RejectCode.BAD_PRICE_TICK
        if _q.unpack_from(buf, offset + _NO_TRIGGER)[0] < 0:
            return RejectCode.BAD_TRIGGER_PRICE
        if _q.unpack_from(buf, offset + _NO_EXPIRE)[0] < 0:
            return RejectCode.BAD_EXPIRY
    elif t == _CANCEL or t == _AMEND:
        coid = _Q.unpack_from(buf, offset + _COID)[0]
        if (_Q.unpack_from(buf, offset + _OID)[0] == 0 and coid == 0) or coid & RISK_COID_BIT:
            return RejectCode.BAD_FIELD
        if t == _AMEND:
            if _q.unpack_from(buf, offset + _AM_PRICE)[0] < 0:
                return RejectCode.BAD_PRICE_TICK
            if _q.unpack_from(buf, offset + _AM_SIZE)[0] < 0:
                return RejectCode.AMEND_BAD_SIZE
    elif t == _QUERY:
        if _Q.unpack_from(buf, offset + _QUERY_RID)[0] & GATEWAY_REQUEST_BIT:
            return RejectCode.BAD_FIELD  # the gateway's own request ids: a client cannot spoof them
        if _Q.unpack_from(buf, offset + _COID)[0] & RISK_COID_BIT:
            return RejectCode.BAD_FIELD
        if market == ALL_MARKETS and (
            _Q.unpack_from(buf, offset + _OID)[0] or _Q.unpack_from(buf, offset + _COID)[0]
        ):
            return RejectCode.UNKNOWN_MARKET  # one order is asked for in its market
    elif t == _LEVERAGE:
        if _U16.unpack_from(buf, offset + _LEV)[0] == 0 or buf[offset + _LEV_MODE] > 1:
            return RejectCode.LEVERAGE_OUT_OF_RANGE
    elif t == _ADJUST:
        if _q.unpack_from(buf, offset + _ADJ_AMOUNT)[0] == 0:
            return RejectCode.AMOUNT_OUT_OF_RANGE
    return RejectCode.OK


class FrameResult:
    """Outcome of one frame: the accepted structs (account stamped) and the rejects."""

    __slots__ = ("accepted", "count", "markets", "rejects")

    def __init__(
        self, accepted: bytes | bytearray, count: int, markets: list[int], rejects: list[tuple[int, int]]
    ) -> None:
        self.accepted = accepted  # count x 64 bytes, in frame order
        self.count = count
        self.markets = markets  # market_id of each accepted struct
        self.rejects = rejects  # (offset in the frame, RejectCode)


def market_table(markets: frozenset[int] | set[int]) -> np.ndarray:
    """Bool lookup table by market id for the vectorised path (ids are small in practice)."""
    table = np.zeros(min(max(markets, default=0), 1 << 24) + 1, bool)
    for m in markets:
        if m < len(table):
            table[m] = True
    return table


_NEW_HDR = _HDR.pack(_NEW, WIRE_VERSION, SLOT_BYTES, 0)[:MARKET_ID_AT]  # type, version, length
_NEW_HDR_U32 = int.from_bytes(_NEW_HDR, "little")
VECTOR_MIN = 96  # from this many NEW_ORDERs in a frame numpy's fixed cost pays off


def validate_frame(
    frame: bytes | bytearray | memoryview,
    account_id: int,
    markets: frozenset[int],
    table: np.ndarray | None = None,
) -> FrameResult:
    """Validate every struct of a frame and stamp the account into the accepted ones.

    Bulk NEW_ORDER frames (the market-maker case) take a fast path: one pass that only asks "is
    every struct fine?" (vectorised with numpy from ``VECTOR_MIN`` structs, ``iter_unpack`` below
    it); structs it flags get their exact code from :func:`check_struct`. Other frames are
    checked struct by struct with :func:`check_struct`.
    """
    size = len(frame)
    n = size // SLOT_BYTES
    tail = size - n * SLOT_BYTES
    if n and not tail:
        if n >= VECTOR_MIN:
            a = np.frombuffer(frame, np.uint8, size).reshape(n, SLOT_BYTES)
            if (a.view("<u4")[:, 0] == _NEW_HDR_U32).all():
                return _new_orders_vector(
                    frame, a, n, account_id, markets, table if table is not None else market_table(markets)
                )
        else:
            res = _new_orders_scalar(frame, n, account_id, markets)
            if res is not None:
                return res
    return _validate_small(frame, n, tail, account_id, markets)


def _new_orders_scalar(
    frame: bytes | bytearray | memoryview, n: int, account_id: int, markets: frozenset[int]
) -> FrameResult | None:
    """All-NEW_ORDER frames with nothing to reject, or None (then the exact path decides)."""
    out_markets = []
    for (
        t,
        v,
        ln,
        m,
        oid,
        coid,
        price,
        size,
        trig,
        exp,
        acct,
        side,
        tif,
        otype,
        flags,
    ) in NEW_ORDER_STRUCT.iter_unpack(frame):
        if (
            t != _NEW
            or v != WIRE_VERSION
            or ln != SLOT_BYTES
            or m not in markets
            or oid
            or not coid
            or coid >> 63
            or price <= 0
            or size <= 0
            or trig < 0
            or exp >> 63
            or (acct and acct != account_id)
            or side > 1
            or tif > 3
            or otype > 5
            or flags & 0x88
            or flags >> STP_SHIFT > _MAX_STP
        ):
            return None
        out_markets.append(m)
    out = bytearray(frame)
    for k in range(n):
        _U32.pack_into(out, k * SLOT_BYTES + _NO_ACCOUNT, account_id)
    return FrameResult(out, n, out_markets, [])


def _new_orders_vector(
    frame: bytes | bytearray | memoryview,
    a: np.ndarray,
    n: int,
    account_id: int,
    markets: frozenset[int],
    table: np.ndarray,
) -> FrameResult:
    u32 = a.view("<u4")
    i64 = a.view("<i8")
    u64 = a.view("<u8")
    m = u32[:, _W4_MARKET]
    bad = (m >= len(table)) | ~table[np.minimum(m, len(table) - 1)]
    bad |= (
        (u64[:, _W8_OID] != 0)
        | (u64[:, _W8_COID] == 0)
        | ((u64[:, _W8_COID] >> np.uint64(63)) != 0)
        | (i64[:, _W8_PRICE] <= 0)
        | (i64[:, _W8_SIZE] <= 0)
        | (i64[:, _W8_TRIGGER] < 0)
        | (i64[:, _W8_EXPIRE] < 0)
    )
    acct = u32[:, _W4_ACCOUNT]
    bad |= (acct != 0) & (acct != account_id)
    w = u32[:, _W4_ENUMS]  # side | tif << 8 | order_type << 16 | flags << 24
    bad |= (
        ((w & 0xFF) > 1)
        | (((w >> _SH_TIF) & 0xFF) > 3)
        | (((w >> _SH_TYPE) & 0xFF) > 5)
        | ((w & ((~_FLAG_BITS & 0xFF) << _SH_FLAGS)) != 0)
        | (((w >> (_SH_FLAGS + STP_SHIFT)) & 7) > _MAX_STP)
    )
    rejects: list[tuple[int, int]] = []
    if bad.any():
        rows = np.flatnonzero(bad)
        for r in rows.tolist():
            code = check_struct(frame, r * SLOT_BYTES, account_id, markets)
            rejects.append((r * SLOT_BYTES, code or RejectCode.MALFORMED))
        good = a[~bad]
    else:
        good = a.copy()
    if not len(good):
        return FrameResult(b"", 0, [], rejects)
    g32 = good.view("<u4")
    g32[:, _W4_ACCOUNT] = account_id
    return FrameResult(good.tobytes(), len(good), g32[:, _W4_MARKET].tolist(), rejects)


def _validate_small(
    frame: bytes | bytearray | memoryview, n: int, tail: int, account_id: int, markets: frozenset[int]
) -> FrameResult:
    out = bytearray()
    accepted_markets: list[int] = []
    rejects: list[tuple[int, int]] = []
    for k in range(n):
        offset = k * SLOT_BYTES
        code = check_struct(frame, offset, account_id, markets)
        if code:
            rejects.append((offset, code))
            continue
        start = len(out)
        out += frame[offset : offset + SLOT_BYTES]
        _U32.pack_into(out, start + ACCOUNT_OFFSET[out[start]], account_id)
        accepted_markets.append(_U32.unpack_from(out, start + MARKET_ID_AT)[0])
    if tail:
        rejects.append((n * SLOT_BYTES, RejectCode.BAD_LENGTH))
    return FrameResult(out, len(accepted_markets), accepted_markets, rejects)


def reject_struct(
    frame: bytes | bytearray | memoryview, offset: int, reason: int, account_id: int, retry_after_ns: int = 0
) -> bytes:
    """A gateway REJECTED (seq 0) answering the struct at ``offset``: ids echoed when it has them.

    ``ts_ns`` carries the retry-after delay in nanoseconds for RATE_LIMITED and BACKPRESSURE
    (0 otherwise): gateway rejects have no engine clock to report.
    """
    command = market = order_id = client_order_id = 0
    if len(frame) - offset >= HEADER_BYTES:
        command, _v, _l, market = _HDR.unpack_from(frame, offset)
        if command in (_NEW, _CANCEL, _AMEND, _QUERY) and len(frame) - offset >= _COID + 8:
            order_id = _Q.unpack_from(frame, offset + _OID)[0]
            client_order_id = _Q.unpack_from(frame, offset + _COID)[0]
    elif len(frame) > offset:
        command = frame[offset]
    return encode(
        MsgType.REJECTED,
        market,
        seq=0,
        order_id=order_id,
        client_order_id=client_order_id,
        ts_ns=retry_after_ns,
        account=account_id,
        reason=int(reason),
        command=command,
    )
