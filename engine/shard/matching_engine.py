"""``MatchingEngine``: the deterministic state machine of one shard (one book per market).

Input: 64-byte wire commands (``handle(buf, offset)``) or the same commands as int arguments (the
``place``/``cancel``/``amend``/... methods, which ``handle`` calls after unpacking: one code path).
Output: events through an ``EventSink`` (see ``event_sink``), with a per-market gap-free ``seq``.

Determinism: the engine never reads a clock. Its clock moves only with CLOCK commands (GTT expiry
happens there, in market-id order, then (expiry, order id) order); triggers fire only on
MARK_PRICE, in order-id order. Outputs are a pure function of the command stream, and
``snapshot()`` + the rest of the stream reproduces the uninterrupted run byte for byte.

Rejects: every refused command produces one REJECTED event and changes nothing (not even ``seq``:
REJECTED carries the market's current seq). Rules:

* order ids: a NEW_ORDER's ``order_id`` must exceed every id this market has accepted (the
  sequencer hands out increasing ids; a replayed or reused id is DUPLICATE_ORDER_ID). ``order_id 0``
  asks the engine to assign last + 1. A rejected order does not consume its id.
* client order ids: unique among the account's live orders in the market (resting or waiting for a
  trigger) when nonzero, else DUPLICATE_CLIENT_ORDER_ID. CANCEL/AMEND with order_id 0 address the
  order by (account, client_order_id).
* cancel/amend of an order that is not live, or is another account's -> UNKNOWN_ORDER: the same
  answer for both, so an order id (they are sequential) tells nobody whether someone else's order
  is live (OWNER_MISMATCH, 361, is retired). CANCEL_ALL of an account with nothing open succeeds
  silently.
* post-only that would take -> POST_ONLY_WOULD_TAKE (slide variant: repriced one tick behind the
  opposite best instead); FOK that cannot fill in full -> FOK_NOT_FILLABLE; market order with no
  opposite liquidity within its worst price -> NO_LIQUIDITY (a partial fill cancels the rest with
  MARKET_NO_LIQUIDITY). Reduce-only is carried and accepted (risk enforces it once positions exist).
* market status: HALTED/CLOSED keep resting orders (cancels only); RESOLVED cancels everything
  (reason MARKET_STATUS) and is final; POST_ONLY admits only post-only orders and non-crossing amends.
* CLOCK going backwards -> STALE_SEQUENCE.
* bounded aggregates (``MarketSpec.max_open_orders_per_account``, ``.max_level_total_lots``, at most
  ``engine.types.fixed``'s limits): a NEW_ORDER that would rest or wait (a GTC/GTT limit, any stop)
  from an account that already has that many live (resting + waiting) orders in the market ->
  TOO_MANY_OPEN_ORDERS (checked right after the order id); a GTC/GTT limit order, or an amend that
  re-queues one, whose size would take its price level past the bound -> LEVEL_FULL (checked last,
  at the final price after a slide; matching never touches the order's own side, so the level
  cannot change before it rests). A level's total is thus <= 2^62 and int64 sums never overflow.

Stops (STOP_*/TAKE_PROFIT_*) wait in a per-market trigger list, are addressable by cancel/amend/
cancel-all, fire on a MARK_PRICE that reaches their trigger (TRIGGERED, then the underlying LIMIT or
MARKET order is matched; outside the band -> CANCELLED(PRICE_BAND); FOK unfillable ->
CANCELLED(FOK_UNFILLED); no liquidity -> CANCELLED(MARKET_NO_LIQUIDITY); a GTC/GTT limit whose level
is full -> CANCELLED(LEVEL_FULL)). Triggers do not fire while the market is not OPEN.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any, Final

from engine.shard.book import OrderBook
from engine.shard.event_sink import EVENT_METHODS, sink_method
from engine.shard.order import (
    O_ACCOUNT,
    O_COID,
    O_EXPIRE,
    O_FILLED,
    O_FLAGS,
    O_OID,
    O_OPEN,
    O_PRICE,
    O_SIDE,
    O_TIF,
    O_TRIGGER,
    O_TYPE,
)
from engine.shard.order_validator import (
    check_amend,
    check_band,
    check_new_order,
    is_triggered_by,
)
from engine.types.enums import CancelReason, MarketStatus, MsgType, OrderType, RejectCode
from engine.types.fixed import BASE_ATOMS_PER_UNIT, INT64_MAX, MAX_LEVEL_TOTAL_LOTS
from engine.types.market_spec import MarketSpec
from engine.wire.layout import ALL_MARKETS, BY_TYPE, HEADER_STRUCT, SLOT_BYTES, WIRE_VERSION

# Module constants, bound once (Final: never rebound).
_NEW_ORDER: Final = BY_TYPE[MsgType.NEW_ORDER].struct.unpack_from
_CANCEL: Final = BY_TYPE[MsgType.CANCEL].struct.unpack_from
_AMEND: Final = BY_TYPE[MsgType.AMEND].struct.unpack_from
_CANCEL_ALL: Final = BY_TYPE[MsgType.CANCEL_ALL].struct.unpack_from
_MARK: Final = BY_TYPE[MsgType.MARK_PRICE].struct.unpack_from
_STATUS: Final = BY_TYPE[MsgType.SET_MARKET_STATUS].struct.unpack_from
_CLOCK: Final = BY_TYPE[MsgType.CLOCK].struct.unpack_from
_HEADER: Final = HEADER_STRUCT.unpack_from

_GTC: Final = 0
_IOC: Final = 1
_FOK: Final = 2
_GTT: Final = 3
_REST: Final = -1
_IOC_REMAINDER: Final = int(CancelReason.IOC_REMAINDER)
_MARKET_NO_LIQ: Final = int(CancelReason.MARKET_NO_LIQUIDITY)
_USER: Final = int(CancelReason.USER)
_FOK_UNFILLED: Final = int(CancelReason.FOK_UNFILLED)
_UNKNOWN_ORDER: Final = int(RejectCode.UNKNOWN_ORDER)
_POST_BITS: Final = 0b11
_SLIDE: Final = 0b10
_OPEN: Final = int(MarketStatus.OPEN)

_NEW: Final = int(MsgType.NEW_ORDER)
_CXL: Final = int(MsgType.CANCEL)
_AMD: Final = int(MsgType.AMEND)
_CXLALL: Final = int(MsgType.CANCEL_ALL)
_MARKP: Final = int(MsgType.MARK_PRICE)
_STAT: Final = int(MsgType.SET_MARKET_STATUS)
_CLK: Final = int(MsgType.CLOCK)

DEBUG_VALIDATE_ENV: Final = (
    "HX_VALIDATE"  # "1": run validate() after every command (the suite runs once with it)
)


class MarketState:
    """Per-market engine state around the book: rules, status, mark, id watermark, stops, GTT heap."""

    __slots__ = (
        "spec",
        "book",
        "status",
        "mark",
        "last_oid",
        "stops",
        "stop_coids",
        "gtt",
        "fast",
        "min_size",
        "max_size",
        "max_price",
        "stop_count",
        "max_open",
        "max_level",
    )

    def __init__(self, spec: MarketSpec, book: Any) -> None:
        self.spec = spec
        self.book = book
        self.status: int = int(spec.status)
        self.mark = 0  # last MARK_PRICE, 0 = unknown
        self.last_oid = 0  # highest order id accepted
        self.stops: dict[int, list[int]] = {}  # order id -> waiting stop/take-profit order
        self.stop_coids: dict[tuple[int, int], list[int]] = {}
        self.gtt: list[tuple[int, int]] = []  # heap of (expire_ns, order id), lazily cleaned
        self.stop_count: dict[int, int] = {}  # account -> its waiting stops (for the open-order cap)
        self.max_open = spec.max_open_orders_per_account
        self.max_level = spec.max_level_total_lots
        self.min_size = spec.min_size_lots
        self.max_size = spec.max_size_lots
        self.max_price = spec.max_price_ticks
        self.fast = False
        self.refresh_fast()

    def refresh_fast(self) -> None:
        """``fast``: a plain limit order within [min,max] size and (0,max] price needs no other check
        (market open, no active band, no min notional, notional cannot overflow)."""
        s = self.spec
        worst = s.max_price_ticks * s.max_size_lots
        self.fast = (
            self.status == _OPEN
            and (s.band_bps == 0 or self.mark == 0)
            and s.min_notional_micro == 0
            and worst * s.tick_size_micro * s.lot_size_atoms // BASE_ATOMS_PER_UNIT <= INT64_MAX
        )


def ensure_batch_fits(nbytes: int, count: int, offset: int) -> None:
    """ValueError unless ``count`` >= 0 whole 64-byte slots from ``offset`` >= 0 fit in ``nbytes``."""
    if count < 0 or offset < 0 or count > (nbytes - offset) // SLOT_BYTES:
        raise ValueError(f"batch of {count} slots at offset {offset} does not fit a {nbytes}-byte buffer")


def _uncount_stop(m: MarketState, account: int) -> None:
    n = m.stop_count[account] - 1
    if n:
        m.stop_count[account] = n
    else:
        del m.stop_count[account]


class MatchingEngine:
    """One shard's markets. Construct with the market specs and an EventSink.

    ``book_factory`` selects the book implementation (``OrderBook``; tests also run
    ``ReferenceBook``). ``debug_validate`` (default: env HX_VALIDATE=1) runs ``validate()`` after every
    command.
    """

    def __init__(
        self,
        markets: dict[int, MarketSpec],
        sink: Any,
        book_factory: Callable[[int, Any], Any] = OrderBook,
        debug_validate: bool | None = None,
    ) -> None:
        self.markets = dict(markets)
        self.sink = sink
        self.now_ns = 0
        self._book_factory = book_factory
        self._m: dict[int, MarketState] = {
            mid: MarketState(spec, book_factory(mid, sink)) for mid, spec in sorted(self.markets.items())
        }
        self._callbacks = {name: sink_method(sink, name) for name in EVENT_METHODS}
        self._on_rejected = self._callbacks["on_rejected"]
        if debug_validate is None:
            debug_validate = os.environ.get(DEBUG_VALIDATE_ENV, "") == "1"
        self.debug_validate = debug_validate
        self._handlers: dict[int, Callable[[Any, int, int], int]] = {
            _NEW: self._handle_new,
            _CXL: self._handle_cancel,
            _AMD: self._handle_amend,
            _CXLALL: self._handle_cancel_all,
            _MARKP: self._handle_mark,
            _STAT: self._handle_status,
            _CLK: self._handle_clock,
        }

    # ---- queries ---------------------------------------------------------------------------------
    def book(self, market_id: int) -> Any:
        return self._m[market_id].book

    def market(self, market_id: int) -> MarketState:
        return self._m[market_id]

    def market_ids(self) -> list[int]:
        return list(self._m)

    # ---- wire entry point ------------------------------------------------------------------------
    def handle(self, buf: Any, offset: int = 0) -> int:
        """Process one 64-byte command at ``buf[offset:]``; returns its RejectCode (0 = ok). A buffer cut
        short is a BAD_LENGTH reject; a negative offset is a caller's bug (ValueError)."""
        if offset < 0:
            raise ValueError(f"negative offset {offset}")
        if len(buf) - offset < SLOT_BYTES:
            mtype = buf[offset] if len(buf) > offset else 0
            return self._reject(0, mtype, 0, 0, 0, RejectCode.BAD_LENGTH)
        mtype, version, length, market_id = _HEADER(buf, offset)
        if version != WIRE_VERSION:
            return self._reject(market_id, mtype, 0, 0, 0, RejectCode.BAD_VERSION)
        if length != SLOT_BYTES:
            return self._reject(market_id, mtype, 0, 0, 0, RejectCode.BAD_LENGTH)
        handler = self._handlers.get(mtype)
        if handler is None:
            return self._reject(market_id, mtype, 0, 0, 0, RejectCode.UNKNOWN_MSG_TYPE)
        return handler(buf, offset, market_id)

    def handle_batch(self, buf: Any, count: int, offset: int = 0) -> None:
        """``count`` consecutive 64-byte commands (a ring batch). ValueError, with nothing handled, unless
        the ``count`` slots from ``offset`` lie inside ``buf`` (the count is never trusted)."""
        ensure_batch_fits(len(buf), count, offset)
        handle = self.handle
        for i in range(count):
            handle(buf, offset + i * SLOT_BYTES)

    def _handle_new(self, buf: Any, off: int, mid: int) -> int:
        (_, _, _, mid, oid, coid, price, size, trigger, expire, account, side, tif, otype, flags) = (
            _NEW_ORDER(buf, off)
        )
        return self.place(mid, oid, coid, account, side, price, size, tif, otype, flags, trigger, expire)

    def _handle_cancel(self, buf: Any, off: int, mid: int) -> int:
        _, _, _, mid, oid, coid, account = _CANCEL(buf, off)
        return self.cancel(mid, oid, coid, account)

    def _handle_amend(self, buf: Any, off: int, mid: int) -> int:
        _, _, _, mid, oid, coid, price, size, account = _AMEND(buf, off)
        return self.amend(mid, oid, coid, account, price, size)

    def _handle_cancel_all(self, buf: Any, off: int, mid: int) -> int:
        _, _, _, mid, account = _CANCEL_ALL(buf, off)
        return self.cancel_all(mid, account)

    def _handle_mark(self, buf: Any, off: int, mid: int) -> int:
        _, _, _, mid, price, ts = _MARK(buf, off)
        return self.set_mark(mid, price, ts)

    def _handle_status(self, buf: Any, off: int, mid: int) -> int:
        _, _, _, mid, status = _STATUS(buf, off)
        return self.set_status(mid, status)

    def _handle_clock(self, buf: Any, off: int, mid: int) -> int:
        _, _, _, mid, now = _CLOCK(buf, off)
        return self.advance_clock(now, mid)

    # ---- commands ----------------------------------------------------------------------------------
    def _reject(self, market_id: int, command: int, oid: int, coid: int, account: int, code: int) -> int:
        if self._on_rejected is not None:
            m = self._m.get(market_id)
            self._on_rejected(
                market_id, m.book.seq if m is not None else 0, oid, coid, self.now_ns, account, code, command
            )
        return code

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
        """NEW_ORDER. Returns the RejectCode (0: accepted; its events went to the sink)."""
        try:
            m = self._m[market_id]
        except KeyError:
            return self._reject(
                market_id, _NEW, order_id, client_order_id, account, RejectCode.UNKNOWN_MARKET
            )
        if not (
            m.fast
            and not flags
            and not order_type
            and tif < 3
            and not trigger_ticks
            and not expire_ns
            and 0 < price <= m.max_price
            and m.min_size <= size <= m.max_size
            and (side == 0 or side == 1)
        ):
            code = check_new_order(
                m.spec,
                m.status,
                m.mark,
                self.now_ns,
                side,
                price,
                size,
                tif,
                order_type,
                flags,
                trigger_ticks,
                expire_ns,
            )
            if code:
                return self._reject(market_id, _NEW, order_id, client_order_id, account, code)
        if order_id <= m.last_oid:
            if order_id:
                return self._reject(
                    market_id, _NEW, order_id, client_order_id, account, RejectCode.DUPLICATE_ORDER_ID
                )
            order_id = m.last_oid + 1
        book = m.book
        if (order_type >= 2 or (not order_type and (tif == _GTC or tif == _GTT))) and (
            book.open_count(account) + m.stop_count.get(account, 0) >= m.max_open
        ):  # it would rest or wait: the account's live orders are capped
            return self._reject(
                market_id, _NEW, order_id, client_order_id, account, RejectCode.TOO_MANY_OPEN_ORDERS
            )
        if order_type >= 2:  # stop / take-profit: wait for the trigger
            return self._accept_stop(
                m,
                order_id,
                client_order_id,
                account,
                side,
                price,
                size,
                tif,
                order_type,
                flags,
                trigger_ticks,
                expire_ns,
            )
        if client_order_id and m.stop_coids and (account, client_order_id) in m.stop_coids:
            return self._reject(
                market_id, _NEW, order_id, client_order_id, account, RejectCode.DUPLICATE_CLIENT_ORDER_ID
            )
        if tif == _GTC or tif == _GTT:
            reason = _REST
        else:
            reason = _IOC_REMAINDER
        if flags & _POST_BITS or order_type or tif == _FOK:
            if client_order_id and book.get_by_client_id(account, client_order_id) is not None:
                return self._reject(
                    market_id, _NEW, order_id, client_order_id, account, RejectCode.DUPLICATE_CLIENT_ORDER_ID
                )
            if flags & _POST_BITS and book.would_cross(side, price):
                if not flags & _SLIDE:
                    return self._reject(
                        market_id, _NEW, order_id, client_order_id, account, RejectCode.POST_ONLY_WOULD_TAKE
                    )
                price = book.best_price(1) - 1 if side == 0 else book.best_price(0) + 1
                if not 0 < price <= m.max_price:
                    return self._reject(
                        market_id, _NEW, order_id, client_order_id, account, RejectCode.POST_ONLY_WOULD_TAKE
                    )
            if order_type:  # MARKET: price is the worst acceptable price
                if not book.would_cross(side, price):
                    return self._reject(
                        market_id, _NEW, order_id, client_order_id, account, RejectCode.NO_LIQUIDITY
                    )
                reason = _MARKET_NO_LIQ
            if tif == _FOK:
                if not book.fillable(side, price, size, account, (flags >> 4) & 7):
                    return self._reject(
                        market_id, _NEW, order_id, client_order_id, account, RejectCode.FOK_NOT_FILLABLE
                    )
                reason = _FOK_UNFILLED
        if reason == _REST and size > m.max_level - book.level_size(side, price):
            return self._reject(market_id, _NEW, order_id, client_order_id, account, RejectCode.LEVEL_FULL)
        code = book.submit(
            order_id, client_order_id, account, side, price, size, tif, order_type, flags, expire_ns, reason
        )
        if code:
            return self._reject(market_id, _NEW, order_id, client_order_id, account, code)
        m.last_oid = order_id
        if tif == _GTT:
            heappush(m.gtt, (expire_ns, order_id))
        if self.debug_validate:
            self.validate()
        return 0

    def _accept_stop(
        self,
        m: MarketState,
        order_id: int,
        client_order_id: int,
        account: int,
        side: int,
        price: int,
        size: int,
        tif: int,
        order_type: int,
        flags: int,
        trigger_ticks: int,
        expire_ns: int,
    ) -> int:
        book = m.book
        mid = m.spec.market_id
        if client_order_id and (
            book.get_by_client_id(account, client_order_id) is not None
            or (account, client_order_id) in m.stop_coids
        ):
            return self._reject(
                mid, _NEW, order_id, client_order_id, account, RejectCode.DUPLICATE_CLIENT_ORDER_ID
            )
        m.last_oid = order_id
        stop = [
            order_id,
            account,
            side,
            price,
            size,
            0,
            client_order_id,
            tif,
            order_type,
            flags,
            expire_ns,
            trigger_ticks,
        ]
        m.stops[order_id] = stop
        m.stop_count[account] = m.stop_count.get(account, 0) + 1
        if client_order_id:
            m.stop_coids[(account, client_order_id)] = stop
        if tif == _GTT:
            heappush(m.gtt, (expire_ns, order_id))
        self._emit(
            book,
            "on_accepted",
            order_id,
            client_order_id,
            price,
            size,
            self.now_ns,
            account,
            side,
            tif,
            order_type,
            flags,
        )
        if self.debug_validate:
            self.validate()
        return 0

    def _emit(self, book: Any, method: str, *fields: int) -> None:
        """Emit an engine-level event (cold paths) through the market's seq."""
        book.seq += 1
        callback = self._callbacks[method]
        if callback is not None:
            callback(book.market_id, book.seq, *fields)

    def _find(self, m: MarketState, order_id: int, client_order_id: int, account: int) -> list[int] | None:
        book = m.book
        if order_id:
            o = book.get(order_id)
            return o if o is not None else m.stops.get(order_id)
        o = book.get_by_client_id(account, client_order_id) if client_order_id else None
        return o if o is not None else m.stop_coids.get((account, client_order_id))

    def cancel(self, market_id: int, order_id: int, client_order_id: int, account: int) -> int:
        """CANCEL by order id (or by client order id when order_id is 0)."""
        try:
            m = self._m[market_id]
        except KeyError:
            return self._reject(
                market_id, _CXL, order_id, client_order_id, account, RejectCode.UNKNOWN_MARKET
            )
        if order_id:
            code = m.book.cancel_by_id(order_id, account, _USER)
            if not code:
                if self.debug_validate:
                    self.validate()
                return 0
            if code != _UNKNOWN_ORDER or not m.stops:
                return self._reject(market_id, _CXL, order_id, client_order_id, account, code)
        o = self._find(m, order_id, client_order_id, account)
        if o is None or o[O_ACCOUNT] != account:  # (another account's order: not this one's to know)
            return self._reject(market_id, _CXL, order_id, client_order_id, account, RejectCode.UNKNOWN_ORDER)
        if o[O_TYPE] >= 2:
            self._drop_stop(m, o, _USER)
        else:
            m.book.cancel(o, _USER)
        if self.debug_validate:
            self.validate()
        return 0

    def _drop_stop(self, m: MarketState, stop: list[int], reason: int) -> None:
        del m.stops[stop[O_OID]]
        _uncount_stop(m, stop[O_ACCOUNT])
        if stop[O_COID]:
            del m.stop_coids[(stop[O_ACCOUNT], stop[O_COID])]
        self._emit(
            m.book,
            "on_cancelled",
            stop[O_OID],
            stop[O_COID],
            stop[O_OPEN],
            self.now_ns,
            stop[O_ACCOUNT],
            reason,
            stop[O_SIDE],
        )

    def amend(
        self,
        market_id: int,
        order_id: int,
        client_order_id: int,
        account: int,
        price_ticks: int,
        size_lots: int,
    ) -> int:
        """AMEND: new price (0 keeps) and new TOTAL size including what is filled (0 keeps)."""
        m = self._m.get(market_id)
        if m is None:
            return self._reject(
                market_id, _AMD, order_id, client_order_id, account, RejectCode.UNKNOWN_MARKET
            )
        o = self._find(m, order_id, client_order_id, account)
        if o is None or o[O_ACCOUNT] != account:  # (another account's order: as in ``cancel``)
            return self._reject(market_id, _AMD, order_id, client_order_id, account, RejectCode.UNKNOWN_ORDER)
        oid, coid = o[O_OID], o[O_COID]
        old_price, filled, old_open = o[O_PRICE], o[O_FILLED], o[O_OPEN]
        new_price = price_ticks or old_price
        new_total = size_lots or old_open + filled
        if new_price == old_price and new_total == old_open + filled:
            return self._reject(market_id, _AMD, oid, coid, account, RejectCode.AMEND_NO_CHANGE)
        is_stop = o[O_TYPE] >= 2
        post_only = bool(o[O_FLAGS] & _POST_BITS) or m.status == MarketStatus.POST_ONLY
        code = check_amend(
            m.spec, m.status, 0 if is_stop else m.mark, post_only, new_price, new_total, filled
        )
        if code:
            return self._reject(market_id, _AMD, oid, coid, account, code)
        book = m.book
        new_open = new_total - filled
        side = o[O_SIDE]
        if is_stop:
            o[O_PRICE], o[O_OPEN] = new_price, new_open
            self._emit(book, "on_amended", oid, coid, new_price, new_open, account, 1)
        elif new_price == old_price and new_open < old_open:
            book.reduce(o, new_open)
        else:
            if post_only and book.would_cross(side, new_price):
                code = (
                    RejectCode.POST_ONLY_WOULD_TAKE
                    if o[O_FLAGS] & _POST_BITS
                    else RejectCode.MARKET_POST_ONLY
                )
                return self._reject(market_id, _AMD, oid, coid, account, code)
            room = m.max_level - book.level_size(side, new_price)
            if new_price == old_price:
                room += old_open  # the order leaves the level before it rejoins it
            if new_open > room:
                return self._reject(market_id, _AMD, oid, coid, account, RejectCode.LEVEL_FULL)
            self._emit(book, "on_amended", oid, coid, new_price, new_open, account, 0)
            book.remove(o)
            book.submit(
                oid,
                coid,
                account,
                side,
                new_price,
                new_open,
                o[O_TIF],
                0,
                o[O_FLAGS],
                o[O_EXPIRE],
                _REST,
                filled,
                False,
            )
        if self.debug_validate:
            self.validate()
        return 0

    def cancel_all(self, market_id: int, account: int) -> int:
        """CANCEL_ALL of ``account`` in one market or every market (``ALL_MARKETS``), in order-id order."""
        if market_id == ALL_MARKETS:
            states = list(self._m.values())
        else:
            m = self._m.get(market_id)
            if m is None:
                return self._reject(market_id, _CXLALL, 0, 0, account, RejectCode.UNKNOWN_MARKET)
            states = [m]
        for m in states:
            book = m.book
            mine = book.orders_of(account)
            if mine:
                book.cancel_many(mine, CancelReason.CANCEL_ALL)
            for stop in sorted(
                (s for s in m.stops.values() if s[O_ACCOUNT] == account), key=lambda s: s[O_OID]
            ):
                self._drop_stop(m, stop, CancelReason.CANCEL_ALL)
        if self.debug_validate:
            self.validate()
        return 0

    def set_mark(self, market_id: int, price_ticks: int, ts_ns: int = 0) -> int:
        """MARK_PRICE: recentres the band and fires the stops it reaches (order-id order)."""
        m = self._m.get(market_id)
        if m is None:
            return self._reject(market_id, _MARKP, 0, 0, 0, RejectCode.UNKNOWN_MARKET)
        if not 0 < price_ticks <= m.max_price:
            return self._reject(market_id, _MARKP, 0, 0, 0, RejectCode.BAD_PRICE_TICK)
        m.mark = price_ticks
        m.refresh_fast()
        if m.stops and m.status == _OPEN:
            fired = sorted(
                (
                    s
                    for s in m.stops.values()
                    if is_triggered_by(s[O_TYPE], s[O_SIDE], s[O_TRIGGER], price_ticks)
                ),
                key=lambda s: s[O_OID],
            )
            for stop in fired:
                # a stop fired earlier in this loop may have taken a later one with it (none does
                # today; an OCO link would): skip what is gone, as the core does
                if stop[O_OID] in m.stops:
                    self._fire(m, stop, price_ticks)
        if self.debug_validate:
            self.validate()
        return 0

    def _fire(self, m: MarketState, stop: list[int], mark: int) -> None:
        book = m.book
        oid, account, side, price, size, coid, tif, otype, flags, expire = (
            stop[O_OID],
            stop[O_ACCOUNT],
            stop[O_SIDE],
            stop[O_PRICE],
            stop[O_OPEN],
            stop[O_COID],
            stop[O_TIF],
            stop[O_TYPE],
            stop[O_FLAGS],
            stop[O_EXPIRE],
        )
        del m.stops[oid]
        _uncount_stop(m, account)
        if coid:
            del m.stop_coids[(account, coid)]
        self._emit(book, "on_triggered", oid, coid, mark, account)
        is_market = otype in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
        cancel_reason = -1
        if check_band(m.spec, mark, price):
            cancel_reason = CancelReason.PRICE_BAND
        elif is_market and not book.would_cross(side, price):
            cancel_reason = CancelReason.MARKET_NO_LIQUIDITY
        elif tif == _FOK and not book.fillable(side, price, size, account, (flags >> 4) & 7):
            cancel_reason = CancelReason.FOK_UNFILLED
        elif (
            not is_market
            and (tif == _GTC or tif == _GTT)
            and size > m.max_level - book.level_size(side, price)
        ):  # it would rest on a full level
            cancel_reason = CancelReason.LEVEL_FULL
        if cancel_reason >= 0:
            self._emit(book, "on_cancelled", oid, coid, size, self.now_ns, account, cancel_reason, side)
            return
        if is_market:
            reason = _MARKET_NO_LIQ if tif == _IOC else int(CancelReason.FOK_UNFILLED)
        elif tif == _GTC or tif == _GTT:
            reason = _REST
        else:
            reason = _IOC_REMAINDER if tif == _IOC else int(CancelReason.FOK_UNFILLED)
        book.submit(
            oid,
            coid,
            account,
            side,
            price,
            size,
            tif,
            OrderType.MARKET if is_market else OrderType.LIMIT,
            flags,
            expire,
            reason,
            0,
            False,
        )

    def set_status(self, market_id: int, status: int) -> int:
        """SET_MARKET_STATUS. RESOLVED cancels every order (reason MARKET_STATUS) and is final."""
        m = self._m.get(market_id)
        if m is None:
            return self._reject(market_id, _STAT, 0, 0, 0, RejectCode.UNKNOWN_MARKET)
        if status not in MarketStatus._value2member_map_:
            return self._reject(market_id, _STAT, 0, 0, 0, RejectCode.BAD_FIELD)
        if m.status == MarketStatus.RESOLVED and status != MarketStatus.RESOLVED:
            return self._reject(market_id, _STAT, 0, 0, 0, RejectCode.MARKET_RESOLVED)
        if status == m.status:
            return 0
        m.status = status
        m.refresh_fast()
        book = m.book
        self._emit(book, "on_market_status", status)
        if status == MarketStatus.RESOLVED:
            everything = sorted(book.iter_orders(), key=lambda o: o[O_OID])
            if everything:
                book.cancel_many(everything, CancelReason.MARKET_STATUS)
            for stop in sorted(m.stops.values(), key=lambda s: s[O_OID]):
                self._drop_stop(m, stop, CancelReason.MARKET_STATUS)
        if self.debug_validate:
            self.validate()
        return 0

    def advance_clock(self, now_ns: int, market_id: int = ALL_MARKETS) -> int:
        """CLOCK: moves the engine clock (never backwards) and expires due GTT orders."""
        if now_ns < self.now_ns:
            return self._reject(market_id, _CLK, 0, 0, 0, RejectCode.STALE_SEQUENCE)
        self.now_ns = now_ns
        for m in self._m.values():
            book = m.book
            book.now_ns = now_ns
            heap = m.gtt
            if not heap or heap[0][0] > now_ns:
                continue
            due: list[list[int]] = []
            due_stops: list[list[int]] = []
            while heap and heap[0][0] <= now_ns:
                expire, oid = heappop(heap)
                o = book.get(oid)
                if o is not None and o[O_EXPIRE] == expire:
                    o[O_EXPIRE] = 0  # collected once, even if the heap held it twice
                    due.append(o)
                else:
                    stop = m.stops.get(oid)
                    if stop is not None and stop[O_EXPIRE] == expire:
                        due_stops.append(stop)
            if due:
                book.cancel_many(due, CancelReason.EXPIRED)
            for stop in due_stops:
                if stop[O_OID] in m.stops:
                    self._drop_stop(m, stop, CancelReason.EXPIRED)
        if self.debug_validate:
            self.validate()
        return 0

    # ---- invariants, hashing, snapshots --------------------------------------------------------------
    def validate(self) -> None:
        """Assert every invariant of every market (books and the engine's own indexes)."""
        for mid, m in self._m.items():
            m.book.validate()
            assert m.book.now_ns == self.now_ns, f"market {mid}: book clock differs"
            for oid, stop in m.stops.items():
                assert stop[O_OID] == oid and stop[O_TYPE] >= 2 and stop[O_OPEN] > 0
                assert oid <= m.last_oid
                assert m.book.get(oid) is None, f"order {oid} both resting and waiting"
            assert len(m.stop_coids) == sum(1 for s in m.stops.values() if s[O_COID])
            counts: dict[int, int] = {}
            for stop in m.stops.values():
                counts[stop[O_ACCOUNT]] = counts.get(stop[O_ACCOUNT], 0) + 1
            assert counts == m.stop_count, f"market {mid}: stop counts per account"
            for o in m.book.iter_orders():
                assert o[O_OID] <= m.last_oid, f"market {mid}: order id {o[O_OID]} above watermark"
            for side in (0, 1):
                for price, size, _ in m.book.depth(side):
                    assert 0 < size <= MAX_LEVEL_TOTAL_LOTS, f"market {mid}: level {price} size {size}"

    def snapshot(self) -> bytes:
        """The whole state as canonical bytes (see ``engine_snapshot``)."""
        from engine.shard.engine_snapshot import encode_snapshot

        return encode_snapshot(self)

    def state_hash(self) -> bytes:
        """BLAKE2b-256 of the canonical snapshot: equal states hash equal, whatever the book implementation."""
        return hashlib.blake2b(self.snapshot(), digest_size=32).digest()

    @classmethod
    def restore(
        cls,
        markets: dict[int, MarketSpec],
        sink: Any,
        blob: bytes,
        book_factory: Callable[[int, Any], Any] = OrderBook,
        debug_validate: bool | None = None,
    ) -> MatchingEngine:
        """An engine in the state ``blob`` (from ``snapshot``) describes, emitting to ``sink``."""
        from engine.shard.engine_snapshot import decode_snapshot

        engine = cls(markets, sink, book_factory=book_factory, debug_validate=debug_validate)
        decode_snapshot(engine, blob)
        return engine
