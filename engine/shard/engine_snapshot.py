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
"""

from __future__ import annotations

import struct
from heapq import heapify
from typing import Any

import numpy as np

from engine.shard.order import ORDER_FIELDS

MAGIC = b"HXSNAP\x00\x01"
_ENGINE = struct.Struct("<8sQI")
_MARKET = struct.Struct("<IQBqQqqqqII")

SNAP_ORDER = np.dtype(
    [
        ("oid", "<u8"),
        ("account", "<u4"),
        ("side", "u1"),
        ("tif", "u1"),
        ("order_type", "u1"),
        ("flags", "u1"),
        ("price", "<i8"),
        ("open", "<i8"),
        ("filled", "<i8"),
        ("coid", "<u8"),
        ("expire_ns", "<u8"),
        ("trigger", "<i8"),
    ]
)
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


def encode_snapshot(engine: Any) -> bytes:
    parts = [_ENGINE.pack(MAGIC, engine.now_ns, len(engine.market_ids()))]
    for mid in engine.market_ids():
        m = engine.market(mid)
        book = m.book
        orders = _to_array(list(book.iter_orders()))
        stops = _to_array([m.stops[k] for k in sorted(m.stops)])
        parts.append(
            _MARKET.pack(mid, book.seq, m.status, m.mark, m.last_oid, *book.last_bbo, len(orders), len(stops))
        )
        parts.append(orders.tobytes())
        parts.append(stops.tobytes())
    return b"".join(parts)


def decode_snapshot(engine: Any, blob: bytes) -> None:
    """Load ``blob`` into a freshly constructed engine (same markets); SnapshotError if it is invalid."""
    try:
        _decode(engine, blob)
    except (struct.error, ValueError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"snapshot truncated or malformed: {exc}") from exc


def _decode(engine: Any, blob: bytes) -> None:
    if len(blob) < _ENGINE.size:
        raise SnapshotError("snapshot too short")
    magic, now_ns, n_markets = _ENGINE.unpack_from(blob, 0)
    if magic != MAGIC:
        raise SnapshotError(f"bad snapshot magic {magic!r}")
    pos = _ENGINE.size
    engine.now_ns = now_ns
    seen = set()
    for _ in range(n_markets):
        (mid, seq, status, mark, last_oid, bp, bs, ap, az, n_orders, n_stops) = _MARKET.unpack_from(blob, pos)
        pos += _MARKET.size
        if mid not in engine.market_ids():
            raise SnapshotError(f"snapshot has market {mid}, which the engine was not given")
        seen.add(mid)
        m = engine.market(mid)
        book = m.book
        book.seq, book.now_ns, book.last_bbo = seq, now_ns, (bp, bs, ap, az)
        m.status, m.mark, m.last_oid = status, mark, last_oid
        m.refresh_fast()
        size = SNAP_ORDER.itemsize
        orders = np.frombuffer(blob, dtype=SNAP_ORDER, count=n_orders, offset=pos)
        pos += n_orders * size
        stops = np.frombuffer(blob, dtype=SNAP_ORDER, count=n_stops, offset=pos)
        pos += n_stops * size
        heap = []
        for o in _from_array(orders):
            book.restore_order(o)
            if o[10]:
                heap.append((o[10], o[0]))
        for s in _from_array(stops):
            m.stops[s[0]] = s
            if s[6]:
                m.stop_coids[(s[1], s[6])] = s
            if s[10]:
                heap.append((s[10], s[0]))
        heapify(heap)
        m.gtt = heap
    if pos != len(blob):
        raise SnapshotError(f"{len(blob) - pos} trailing bytes in snapshot")
    if seen != set(engine.market_ids()):
        raise SnapshotError(f"snapshot lacks markets {sorted(set(engine.market_ids()) - seen)}")
