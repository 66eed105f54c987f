"""``NativeEngine``: the compiled matching core (``engine/native/_hxcore.c``) behind ``MatchingEngine``'s API.

The C core is the same state machine as ``MatchingEngine`` (the Python twin is its specification and
``tests/engine/shard/test_native_engine.py`` holds the two to identical event bytes and snapshots).
It reads 64-byte wire commands and packs 64-byte wire events into one buffer, so a ring batch costs
one call and no Python object per order or per event. After every call the packed events go to the
sink: in bulk to a ``WireEventWriter`` (the shard's case), discarded for a ``NullSink``, or decoded
and delivered method by method to any other ``EventSink`` (tests, tools).

``make_engine`` picks the implementation: native unless ``HX_ENGINE=python`` (or the extension is not
built, which ``make setup`` always does).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any, Final

from engine.shard.engine_snapshot import (
    SNAP_ORDER_STRUCT,
    MarketImage,
    SnapshotError,
    pack_snapshot,
    parse_snapshot,
)
from engine.shard.event_sink import NullSink, sink_method
from engine.shard.matching_engine import ensure_batch_fits
from engine.shard.order import ORDER_FIELDS
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.commands import (
    Amend,
    Cancel,
    CancelAll,
    Clock,
    MarkPrice,
    NewOrder,
    SetMarketStatus,
    encode_command,
)
from engine.types.market_spec import MarketSpec
from engine.wire.layout import ALL_MARKETS, BY_TYPE, ENGINE_EVENTS, SLOT_BYTES, sink_fields

try:
    from engine.native._hxcore import Core
except ImportError:  # pragma: no cover - make setup builds it; native_available() reports it
    Core = None

ENGINE_ENV: Final = "HX_ENGINE"  # "python": the Python twin; anything else: native
_SNAP_ORDER = SNAP_ORDER_STRUCT  # one engine_snapshot.SNAP_ORDER record, unpacked


def native_available() -> bool:
    """Is the compiled core importable (built by ``make setup``)?"""
    return Core is not None


SHARD_ORDER_CAPACITY: Final = 1 << 15  # live orders per market a shard's core is sized for (~8 MB)


def _use_native() -> bool:
    return os.environ.get(ENGINE_ENV, "native") != "python" and native_available()


def make_engine(markets: dict[int, MarketSpec], sink: Any, order_capacity: int = SHARD_ORDER_CAPACITY) -> Any:
    """The shard's engine: ``NativeEngine`` unless ``HX_ENGINE=python`` or the core is not built."""
    if _use_native():
        return NativeEngine(markets, sink, order_capacity=order_capacity)
    from engine.shard.matching_engine import MatchingEngine

    return MatchingEngine(markets, sink)


def restore_engine(
    markets: dict[int, MarketSpec], sink: Any, blob: bytes, order_capacity: int = SHARD_ORDER_CAPACITY
) -> Any:
    """``make_engine``'s implementation, restored from a snapshot (the formats are the same)."""
    if _use_native():
        return NativeEngine.restore(markets, sink, blob, order_capacity=order_capacity)
    from engine.shard.matching_engine import MatchingEngine

    return MatchingEngine.restore(markets, sink, blob)


# ---- events -> EventSink methods ------------------------------------------------------------------
def _routes() -> tuple[tuple[int, str, Any, Any], ...]:
    """Per engine event: its type, its sink method, its struct's unpacker and the getter of the sink's
    arguments among the unpacked fields (all derived from ``ENGINE_EVENTS`` and the layout)."""
    out = []
    for msg_type, method in ENGINE_EVENTS.items():
        layout = BY_TYPE[int(msg_type)]
        index = tuple(layout.field_names.index(name) for name in sink_fields(msg_type))
        out.append((int(msg_type), method, layout.struct.unpack_from, itemgetter(*index)))
    return tuple(out)


_ROUTES = _routes()


class _Dispatcher:
    """Decodes packed wire events and calls the sink's methods (the generic, slow delivery)."""

    def __init__(self, sink: Any) -> None:
        self._routes: dict[int, tuple[Callable[..., Any], Any, Any]] = {}
        for msg_type, method, unpack, args in _ROUTES:
            callback = sink_method(sink, method)
            if callback is not None:
                self._routes[msg_type] = (callback, unpack, args)

    def __call__(self, data: bytes) -> None:
        routes = self._routes
        for off in range(0, len(data), SLOT_BYTES):
            route = routes.get(data[off])
            if route is not None:
                callback, unpack, args = route
                callback(*args(unpack(data, off)))


class NativeBookView:
    """Read-only view of one market's book in the core (what the shard and tools query)."""

    __slots__ = ("_core", "market_id")

    def __init__(self, core: Any, market_id: int) -> None:
        self._core = core
        self.market_id = market_id

    @property
    def seq(self) -> int:
        return int(self._core.market_state(self.market_id)[0])

    @property
    def last_bbo(self) -> tuple[int, int, int, int]:
        s = self._core.market_state(self.market_id)
        return s[4], s[5], s[6], s[7]

    def bbo(self) -> tuple[int, int, int, int]:
        return self.last_bbo

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        """(price, size, count) per level, best first."""
        return list(self._core.depth(self.market_id, side))

    def order_count(self) -> int:
        return int(self._core.market_state(self.market_id)[8])

    def get(self, order_id: int) -> list[int] | None:
        """A live order as an ``engine.shard.order`` record (a copy), or None."""
        rec = self._core.get_order(self.market_id, order_id)
        return None if rec is None else _record(rec, 0)

    def iter_orders(self) -> Iterator[list[int]]:
        """Copies of the resting orders: bids best level first, then asks; time priority in a level."""
        data = self._core.export_orders(self.market_id)
        for off in range(0, len(data), _SNAP_ORDER.size):
            yield _record(data, off)


def _record(data: bytes, offset: int) -> list[int]:
    """A SNAP_ORDER struct as an ``engine.shard.order`` record (list indexed by ``O_*``)."""
    oid, account, side, tif, otype, flags, price, open_, filled, coid, expire, trigger = (
        _SNAP_ORDER.unpack_from(data, offset)
    )
    out = [oid, account, side, price, open_, filled, coid, tif, otype, flags, expire, trigger]
    assert len(out) == ORDER_FIELDS
    return out


class NativeMarketView:
    """Read-only view of one market's engine state (status, mark, id watermark)."""

    __slots__ = ("spec", "book", "_core")

    def __init__(self, core: Any, spec: MarketSpec) -> None:
        self._core = core
        self.spec = spec
        self.book = NativeBookView(core, spec.market_id)

    @property
    def status(self) -> int:
        return int(self._core.market_state(self.spec.market_id)[1])

    @property
    def mark(self) -> int:
        return int(self._core.market_state(self.spec.market_id)[2])

    @property
    def last_oid(self) -> int:
        return int(self._core.market_state(self.spec.market_id)[3])

    @property
    def stops(self) -> dict[int, list[int]]:
        """Copies of the waiting stop/take-profit orders by order id."""
        data = self._core.export_stops(self.spec.market_id)
        records = (_record(data, off) for off in range(0, len(data), _SNAP_ORDER.size))
        return {r[0]: r for r in records}


def _spec_tuple(spec: MarketSpec) -> tuple[int, ...]:
    return (
        spec.market_id,
        spec.tick_size_micro,
        spec.lot_size_atoms,
        spec.min_size_lots,
        spec.max_size_lots,
        spec.min_notional_micro,
        spec.max_price_ticks,
        spec.band_bps,
        int(spec.status),
        spec.max_level_total_lots,
        spec.max_open_orders_per_account,
    )


class NativeEngine:
    """``MatchingEngine``'s API over the compiled core (see the module docstring)."""

    def __init__(
        self,
        markets: dict[int, MarketSpec],
        sink: Any,
        debug_validate: bool | None = None,
        order_capacity: int = 1024,
        **_: Any,
    ) -> None:
        """``order_capacity``: live orders per market the core sizes its pools and maps for up front
        (they grow past it, but each growth rehashes every live order at once: a stall the shard
        avoids by asking for room in advance)."""
        if Core is None:
            raise RuntimeError("the compiled core engine/native/_hxcore is not built: run `make setup`")
        self.markets = dict(markets)
        self.sink = sink
        self._core = Core([_spec_tuple(s) for _, s in sorted(self.markets.items())], order_capacity)
        self._views = {mid: NativeMarketView(self._core, spec) for mid, spec in sorted(self.markets.items())}
        if debug_validate is None:
            debug_validate = os.environ.get("HX_VALIDATE", "") == "1"
        self.debug_validate = debug_validate
        if isinstance(sink, WireEventWriter):
            self._deliver: Callable[[bytes], Any] = sink.extend
        elif isinstance(sink, NullSink):
            self._deliver = _discard
        else:
            self._deliver = _Dispatcher(sink)

    @property
    def core(self) -> Any:
        """The ``_hxcore.Core`` itself (the shard drives it directly)."""
        return self._core

    @property
    def now_ns(self) -> int:
        return int(self._core.now_ns)

    # ---- queries -------------------------------------------------------------------------------
    def book(self, market_id: int) -> NativeBookView:
        return self._views[market_id].book

    def market(self, market_id: int) -> NativeMarketView:
        return self._views[market_id]

    def market_ids(self) -> list[int]:
        return list(self._views)

    # ---- commands -------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._core.pending_events:
            self._deliver(self._core.take_events())
        if self.debug_validate:
            self._core.validate()

    def handle(self, buf: Any, offset: int = 0) -> int:
        """Process one 64-byte command at ``buf[offset:]``; returns its RejectCode (0 = ok)."""
        code = int(self._core.handle(buf, offset))
        self._flush()
        return code

    def handle_batch(self, buf: Any, count: int, offset: int = 0) -> None:
        """``count`` consecutive 64-byte commands (a ring batch), events delivered at the end."""
        if self.debug_validate:
            ensure_batch_fits(len(buf), count, offset)
            for i in range(count):
                self.handle(buf, offset + i * SLOT_BYTES)
            return
        self._core.handle_batch(buf, count, offset)
        self._flush()

    def place(
        self,
        market_id: int,
        order_id: int,
        client_order_id: int,
        account: int,
        side: int,
        price: int,
        size: int,
        tif: int = 0,
        order_type: int = 0,
        flags: int = 0,
        trigger_ticks: int = 0,
        expire_ns: int = 0,
    ) -> int:
        return self.handle(
            encode_command(
                NewOrder(
                    market_id=market_id,
                    order_id=order_id,
                    client_order_id=client_order_id,
                    price_ticks=price,
                    size_lots=size,
                    trigger_price_ticks=trigger_ticks,
                    expire_ns=expire_ns,
                    account=account,
                    side=side,
                    tif=tif,
                    order_type=order_type,
                    flags=flags,
                )
            )
        )

    def cancel(self, market_id: int, order_id: int, client_order_id: int, account: int) -> int:
        cmd = Cancel(market_id=market_id, order_id=order_id, client_order_id=client_order_id, account=account)
        return self.handle(encode_command(cmd))

    def amend(
        self,
        market_id: int,
        order_id: int,
        client_order_id: int,
        account: int,
        price_ticks: int,
        size_lots: int,
    ) -> int:
        cmd = Amend(
            market_id=market_id,
            order_id=order_id,
            client_order_id=client_order_id,
            price_ticks=price_ticks,
            size_lots=size_lots,
            account=account,
        )
        return self.handle(encode_command(cmd))

    def cancel_all(self, market_id: int, account: int) -> int:
        return self.handle(encode_command(CancelAll(market_id=market_id, account=account)))

    def set_mark(self, market_id: int, price_ticks: int, ts_ns: int = 0) -> int:
        return self.handle(
            encode_command(MarkPrice(market_id=market_id, price_ticks=price_ticks, ts_ns=ts_ns))
        )

    def set_status(self, market_id: int, status: int) -> int:
        return self.handle(encode_command(SetMarketStatus(market_id=market_id, status=status)))

    def advance_clock(self, now_ns: int, market_id: int = ALL_MARKETS) -> int:
        return self.handle(encode_command(Clock(market_id=market_id, now_ns=now_ns)))

    # ---- invariants, hashing, snapshots ---------------------------------------------------------
    def validate(self) -> None:
        self._core.validate()

    def snapshot(self) -> bytes:
        """The canonical snapshot bytes of ``engine_snapshot`` (equal to the Python twin's)."""
        core = self._core
        images = []
        for mid in self._views:
            seq, status, mark, last_oid, bp, bs, ap, az, _n_orders, _n_stops = core.market_state(mid)
            images.append(
                MarketImage(
                    mid,
                    seq,
                    status,
                    mark,
                    last_oid,
                    (bp, bs, ap, az),
                    core.export_orders(mid),
                    core.export_stops(mid),
                )
            )
        return pack_snapshot(core.now_ns, images)

    def state_hash(self) -> bytes:
        return hashlib.blake2b(self.snapshot(), digest_size=32).digest()

    @classmethod
    def restore(
        cls,
        markets: dict[int, MarketSpec],
        sink: Any,
        blob: bytes,
        debug_validate: bool | None = None,
        order_capacity: int = 1024,
        **_: Any,
    ) -> NativeEngine:
        engine = cls(markets, sink, debug_validate=debug_validate, order_capacity=order_capacity)
        core = engine._core
        now_ns, images = parse_snapshot(blob, engine.market_ids())
        core.now_ns = now_ns
        for m in images:
            try:
                core.restore_market(
                    m.market_id, m.seq, m.status, m.mark, m.last_oid, *m.last_bbo, m.orders, m.stops
                )
            except ValueError as exc:
                raise SnapshotError(str(exc)) from exc
        return engine


def _discard(data: bytes) -> None:
    pass
