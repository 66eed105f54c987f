"""Canonical binary snapshot of a ``MatchingEngine``: struct headers + numpy arrays, no pickle.

Layout (little-endian)::

    b"HXSNAP\\x00\\x01" | now_ns u64 | n_markets u32
    per market, ascending id:
      market_id u32 | seq u64 | status u8 | mark i64 | last_oid u64 | last BBO 4 x i64
      | n_orders u32 | n_stops u32
      n_orders x SNAP_ORDER   resting orders: bids best price first, then asks best first,
                              time priority within a level (restored by appending in this order)
      n_stops  x SNAP_ORDER   waiting stop/take-profit orders, by order id

The GTT heap is not stored: it is rebuilt from the live GTT orders, which gives the same expiries
(stale heap entries are skipped anyway). The encoding is canonical (same state -> same bytes,
whatever the book implementation), so ``state_hash`` is a hash of it.

A restore trusts nothing: every image is checked (``check_image``: records in range, ids and client
ids unique across resting and waiting orders, level totals within 2^62, the book not crossed, the
stored BBO the book's) before anything is loaded, and a refused snapshot is a ``SnapshotError`` with
the engine unchanged. The compiled core's ``restore_market`` applies the same rules in the same
order (tests feed both random and mutated snapshots and require the same verdict).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from heapq import heapify
from typing import Any

import numpy as np

from engine.shard.order import ORDER_FIELDS
from engine.types.enums import (
    MARKET_PRICED_ORDER_TYPES,
    STOP_ORDER_TYPES,
    STP_MASK,
    STP_SHIFT,
    MarketStatus,
    OrderFlag,
    OrderType,
    StpMode,
    TimeInForce,
)
from engine.types.fixed import INT64_MAX, MAX_LEVEL_TOTAL_LOTS
from engine.types.market_spec import MarketSpec
from engine.wire.layout import Field, dtype_of, struct_of

MAGIC = b"HXSNAP\x00\x01"
_ENGINE = struct.Struct("<8sQI")  # magic, now_ns, n_markets

# The snapshot's records as field tables (name, struct code, meaning), like the wire layouts: the
# struct, the numpy dtype and the C core's offsets (engine/native/hx_wire.h, generated) all derive
# from these two tables.
SNAP_MARKET_FIELDS: tuple[Field, ...] = (
    ("market_id", "I", "market"),
    ("seq", "Q", "the market's last event sequence number"),
    ("status", "B", "MarketStatus"),
    ("mark", "q", "last mark price, ticks (0 = none yet)"),
    ("last_oid", "Q", "highest order id accepted"),
    ("bid_price_ticks", "q", "last BBO emitted: best bid"),
    ("bid_size_lots", "q", "last BBO emitted: size at the best bid"),
    ("ask_price_ticks", "q", "last BBO emitted: best ask"),
    ("ask_size_lots", "q", "last BBO emitted: size at the best ask"),
    ("n_orders", "I", "resting order records that follow"),
    ("n_stops", "I", "waiting stop records that follow them"),
)
SNAP_ORDER_FIELDS: tuple[Field, ...] = (
    ("oid", "Q", "exchange order id"),
    ("account", "I", "owner"),
    ("side", "B", "Side"),
    ("tif", "B", "TimeInForce"),
    ("order_type", "B", "OrderType: LIMIT once resting; the stop's own type while it waits"),
    ("flags", "B", "OrderFlag bits and StpMode, as sent"),
    ("price", "q", "limit (or worst) price, ticks"),
    ("open", "q", "open size, lots (> 0)"),
    ("filled", "q", "lots filled so far"),
    ("coid", "Q", "client order id, 0 = none"),
    ("expire_ns", "Q", "GTT expiry, 0 = none"),
    ("trigger", "q", "stop/take-profit trigger, ticks; 0 for a resting order"),
)
_MARKET = struct_of(SNAP_MARKET_FIELDS)
SNAP_ORDER = dtype_of(SNAP_ORDER_FIELDS)
SNAP_ORDER_STRUCT = struct_of(SNAP_ORDER_FIELDS)
assert SNAP_ORDER.itemsize == SNAP_ORDER_STRUCT.size == 64
# SNAP_ORDER field name for each O_* index of an order record
_FIELD_OF_INDEX = (
    "oid",
    "account",
    "side",
    "price",
    "open",
    "filled",
    "coid",
    "tif",
    "order_type",
    "flags",
    "expire_ns",
    "trigger",
)
assert len(_FIELD_OF_INDEX) == ORDER_FIELDS


class SnapshotError(ValueError):
    pass


def _to_array(records: list[list[int]]) -> np.ndarray:
    arr = np.zeros(len(records), dtype=SNAP_ORDER)
    if records:
        cols = list(zip(*records, strict=True))
        for i, name in enumerate(_FIELD_OF_INDEX):
            arr[name] = cols[i]
    return arr


def _from_array(arr: np.ndarray) -> list[list[int]]:
    cols = [arr[name].tolist() for name in _FIELD_OF_INDEX]
    return [list(row) for row in zip(*cols, strict=True)] if len(arr) else []


@dataclass(frozen=True)
class MarketImage:
    """One market of a snapshot: its scalars and its records as raw SNAP_ORDER bytes."""

    market_id: int
    seq: int
    status: int
    mark: int
    last_oid: int
    last_bbo: tuple[int, int, int, int]
    orders: bytes  # resting orders, n x SNAP_ORDER, in the order of the module docstring
    stops: bytes  # waiting stops, n x SNAP_ORDER, by order id


def pack_snapshot(now_ns: int, markets: list[MarketImage]) -> bytes:
    """The canonical bytes of a snapshot (markets given in ascending id)."""
    size = SNAP_ORDER.itemsize
    parts = [_ENGINE.pack(MAGIC, now_ns, len(markets))]
    for m in markets:
        parts.append(
            _MARKET.pack(
                m.market_id,
                m.seq,
                m.status,
                m.mark,
                m.last_oid,
                *m.last_bbo,
                len(m.orders) // size,
                len(m.stops) // size,
            )
        )
        parts += (m.orders, m.stops)
    return b"".join(parts)


def parse_snapshot(blob: bytes, market_ids: list[int]) -> tuple[int, list[MarketImage]]:
    """(now_ns, markets) of ``blob``; SnapshotError unless it is whole and covers exactly ``market_ids``."""
    try:
        return _parse(blob, market_ids)
    except struct.error as exc:
        raise SnapshotError(f"snapshot truncated or malformed: {exc}") from exc


def _parse(blob: bytes, market_ids: list[int]) -> tuple[int, list[MarketImage]]:
    if len(blob) < _ENGINE.size:
        raise SnapshotError("snapshot too short")
    magic, now_ns, n_markets = _ENGINE.unpack_from(blob, 0)
    if magic != MAGIC:
        raise SnapshotError(f"bad snapshot magic {magic!r}")
    pos = _ENGINE.size
    size = SNAP_ORDER.itemsize
    known = set(market_ids)
    images = []
    for _ in range(n_markets):
        (mid, seq, status, mark, last_oid, bp, bs, ap, az, n_orders, n_stops) = _MARKET.unpack_from(blob, pos)
        pos += _MARKET.size
        if mid not in known:
            raise SnapshotError(f"snapshot has market {mid}, which the engine was not given")
        orders_end = pos + n_orders * size
        stops_end = orders_end + n_stops * size
        if stops_end > len(blob):
            raise SnapshotError(f"snapshot truncated in market {mid}")
        orders, stops = bytes(blob[pos:orders_end]), bytes(blob[orders_end:stops_end])
        images.append(MarketImage(mid, seq, status, mark, last_oid, (bp, bs, ap, az), orders, stops))
        pos = stops_end
    if pos != len(blob):
        raise SnapshotError(f"{len(blob) - pos} trailing bytes in snapshot")
    missing = known - {m.market_id for m in images}
    if missing:
        raise SnapshotError(f"snapshot lacks markets {sorted(missing)}")
    return now_ns, images


def encode_snapshot(engine: Any) -> bytes:
    images = []
    for mid in engine.market_ids():
        m = engine.market(mid)
        book = m.book
        orders = _to_array(list(book.iter_orders())).tobytes()
        stops = _to_array([m.stops[k] for k in sorted(m.stops)]).tobytes()
        images.append(MarketImage(mid, book.seq, m.status, m.mark, m.last_oid, book.last_bbo, orders, stops))
    return pack_snapshot(engine.now_ns, images)


# ---- what a valid image holds (the compiled core's restore_market checks the same, in the same order) --
_GTC, _IOC, _FOK, _GTT = (
    int(t) for t in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTT)
)
_KNOWN_FLAGS = int(OrderFlag.POST_ONLY | OrderFlag.POST_ONLY_SLIDE | OrderFlag.REDUCE_ONLY) | STP_MASK
_POST_BITS = int(OrderFlag.POST_ONLY | OrderFlag.POST_ONLY_SLIDE)


def record_problem(spec: MarketSpec, last_oid: int, o: list[int], waiting: bool) -> str | None:
    """What is wrong with one order record of a snapshot (None: nothing), as an engine could have
    written it: a resting order is a GTC/GTT LIMIT with no trigger; a waiting one is a stop type
    with a trigger and nothing filled; sides, flags, prices, sizes and ids in range."""
    oid, _account, side, price, open_, filled, _coid, tif, otype, flags, expire, trigger = o
    if side > 1:
        return "bad side"
    if waiting:
        if otype not in STOP_ORDER_TYPES:
            return "bad order type"
    elif otype != OrderType.LIMIT:
        return "bad order type"
    if tif > _GTT or (not waiting and tif not in (_GTC, _GTT)):
        return "bad time in force"
    if waiting and otype in MARKET_PRICED_ORDER_TYPES and tif not in (_IOC, _FOK):
        return "bad time in force"
    if (tif == _GTT) != (expire != 0):
        return "bad expiry"
    if (
        flags & ~_KNOWN_FLAGS
        or (flags & STP_MASK) >> STP_SHIFT > max(StpMode)
        or (waiting and flags & _POST_BITS)
    ):
        return "bad flags"
    if not 0 < price <= spec.max_price_ticks:
        return "bad price"
    if open_ <= 0 or filled < 0 or open_ > INT64_MAX - filled or (waiting and filled):
        return "bad size"
    if waiting:
        if not 0 < trigger <= spec.max_price_ticks:
            return "bad trigger"
    elif trigger:
        return "bad trigger"
    if not 0 < oid <= last_oid:
        return "bad order id"
    return None


def check_image(spec: MarketSpec, image: MarketImage) -> tuple[list[list[int]], list[list[int]]]:
    """The image's (resting, waiting) order records; SnapshotError naming the first problem when the
    image is not a state an engine could be in (a restore changes nothing then)."""
    mid = image.market_id

    def bad(what: str, oid: int | None = None) -> SnapshotError:
        return SnapshotError(f"market {mid}: {what}" + (f" (order {oid})" if oid is not None else ""))

    if image.status not in MarketStatus._value2member_map_:
        raise bad("bad status")
    if not 0 <= image.mark <= spec.max_price_ticks:
        raise bad("bad mark")
    oids: set[int] = set()
    coids: set[tuple[int, int]] = set()
    levels: dict[tuple[int, int], int] = {}
    resting = _from_array(np.frombuffer(image.orders, dtype=SNAP_ORDER))
    waiting = _from_array(np.frombuffer(image.stops, dtype=SNAP_ORDER))
    for records, is_stop in ((resting, False), (waiting, True)):
        for o in records:
            problem = record_problem(spec, image.last_oid, o, is_stop)
            if problem:
                raise bad(problem, o[0])
            if o[0] in oids:
                raise bad("duplicate order id", o[0])
            oids.add(o[0])
            if o[6]:
                if (o[1], o[6]) in coids:
                    raise bad("duplicate client order id", o[0])
                coids.add((o[1], o[6]))
            if not is_stop:
                total = levels.get((o[2], o[3]), 0) + o[4]
                if total > MAX_LEVEL_TOTAL_LOTS:
                    raise bad("level total beyond 2**62", o[0])
                levels[(o[2], o[3])] = total
    bids = [p for side, p in levels if side == 0]
    asks = [p for side, p in levels if side == 1]
    bid, ask = max(bids, default=0), min(asks, default=0)
    if bids and asks and bid >= ask:
        raise bad("crossed book")
    bbo = (bid, levels.get((0, bid), 0), ask, levels.get((1, ask), 0))
    if bbo != image.last_bbo:
        raise bad("last BBO differs from the book")
    return resting, waiting


def decode_snapshot(engine: Any, blob: bytes) -> None:
    """Load ``blob`` into a freshly constructed engine (same markets); SnapshotError if it is invalid,
    and then nothing is loaded (every image is checked before any is applied)."""
    now_ns, images = parse_snapshot(blob, engine.market_ids())
    checked = [check_image(engine.market(image.market_id).spec, image) for image in images]
    engine.now_ns = now_ns
    for image, (resting, waiting) in zip(images, checked, strict=True):
        m = engine.market(image.market_id)
        book = m.book
        book.seq, book.now_ns, book.last_bbo = image.seq, now_ns, image.last_bbo
        m.status, m.mark, m.last_oid = image.status, image.mark, image.last_oid
        m.refresh_fast()
        heap = []
        for o in resting:
            book.restore_order(o)
            if o[10]:
                heap.append((o[10], o[0]))
        for stop in waiting:
            m.stops[stop[0]] = stop
            m.stop_count[stop[1]] = m.stop_count.get(stop[1], 0) + 1
            if stop[6]:
                m.stop_coids[(stop[1], stop[6])] = stop
            if stop[10]:
                heap.append((stop[10], stop[0]))
        heapify(heap)
        m.gtt = heap
