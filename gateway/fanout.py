"""Event fan-out: shard event rings -> sessions, and the gateway's L2 books.

The gateway consumes every shard's event ring with its own cursor (from the start of the ring, so
its books see every L2_DELTA) in batches, and per batch:

* private events (ACCEPTED, REJECTED, CANCELLED, AMENDED, TRIGGERED by ``account``; FILL by
  ``taker_account`` and ``maker_account``) go to every session logged in to that account, and to
  nobody else;
* public events (L2_DELTA, TRADE, BBO, MARKET_STATUS) update the market's L2 book and go to the
  market's subscribers by channel. On the way out each L2_DELTA gets ``prev_seq`` (the ``seq`` of
  the market's previous L2_DELTA) written into its bytes 40-47, so a client can tell a gap from
  the normal holes that other events' sequence numbers leave;
* each touched session is flushed once (one socket write per batch, private and public data
  together), then its write buffer is checked for conflation or a slow-consumer close (see
  ``gateway.session``).

Two implementations of the same routing: batches up to ``SMALL_BATCH`` events (the common case at
moderate load, a few dozen events per shard batch) take a plain-Python pass, one loop over the
events; larger batches are vectorised with numpy (one sort per batch, not a loop per event). On
this interpreter a numpy call costs 2-10 us whatever its size, so the dozen calls of the
vectorised path cost ~80 us even for four events, while the loop costs well under 1 us per event.
Tests run random batches through both and compare what every session receives.

The fan-out never blocks on a client: it only appends to transports, so the event ring drains at
the gateway's speed, and the shards never wait on a slow client.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

import numpy as np
import orjson
from picows import WSCloseCode

from engine.host.health_board import NoHealth
from engine.host.metrics import Metrics
from engine.ring import ConsumerDropped
from engine.types.enums import MsgType
from engine.wire.layout import (
    MARKET_ID_AT,
    MSG_TYPE_AT,
    SEQ_AT,
    SLOT_BYTES,
    field_offset,
    field_span,
    layout_of,
    word_index,
)
from gateway.channels import channel_types, public_types
from gateway.protocol.json_events import event_json
from gateway.protocol.l2_book import BUY, SELL, L2Book
from gateway.protocol.market_info import MarketCatalog
from gateway.protocol.units import from_units
from gateway.protocol.vocabulary import SINGLE_ACCOUNT_PRIVATE_EVENTS
from gateway.session import Session

log = logging.getLogger("hx.gateway.fanout")

PREV_SEQ_OFFSET = field_offset(MsgType.L2_DELTA, "prev_seq")  # stamped on the way out
_L2, _FILL, _LIQ = int(MsgType.L2_DELTA), int(MsgType.FILL), int(MsgType.LIQUIDATION)
_LIQ_ACCOUNT_AT = field_offset(MsgType.LIQUIDATION, "account")
_STATUS = int(MsgType.MARKET_STATUS)
_STATUS_AT = field_offset(MsgType.MARKET_STATUS, "status")
# u32 word of the (first) account field per private event type; -1 = not private
_ACCOUNT_WORD = np.full(256, -1, np.intp)
for _t in SINGLE_ACCOUNT_PRIVATE_EVENTS:
    _ACCOUNT_WORD[_t] = word_index(_t, "account", 4)
_ACCOUNT_WORD[MsgType.FILL] = word_index(MsgType.FILL, "taker_account", 4)
_ACCOUNT_WORD[MsgType.SETTLED] = word_index(MsgType.SETTLED, "account", 4)  # settlement's, to the account
_W4_TAKER = word_index(MsgType.FILL, "taker_account", 4)
_W4_MAKER = word_index(MsgType.FILL, "maker_account", 4)
_W4_MARKET = MARKET_ID_AT // 4
_W8_SEQ = SEQ_AT // 8
_RESET = int(MsgType.BOOK_RESET)
_PUBLIC = np.zeros(256, bool)
_PUBLIC[[*public_types(), _RESET]] = True
SMALL_BATCH = 128  # measured crossover: ~140 events (subscribers) to ~190 (none)
# the same tables for the plain-Python path: byte offset of the (first) account field, or -1
_ACCOUNT_AT = tuple(int(w) * 4 if w >= 0 else -1 for w in _ACCOUNT_WORD)
_IS_PUBLIC = tuple(bool(x) for x in _PUBLIC)
_MAKER_AT = field_offset(MsgType.FILL, "maker_account")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_L2_AT, _L2_FIELDS = field_span(MsgType.L2_DELTA, "seq", "side")  # seq, price, size, order_count, side


def _span(name: str) -> tuple[int, int]:
    dtype, offset = layout_of(MsgType.FILL).dtype.fields[name][:2]
    return offset, offset + dtype.itemsize


_TAKER_SPANS = (_span("taker_account"), _span("taker_order_id"))
_MAKER_SPANS = (_span("maker_account"), _span("maker_order_id"))


def _zeroed(event: bytes, spans: tuple[tuple[int, int], ...]) -> bytes:
    out = bytearray(event)
    for lo, hi in spans:
        out[lo:hi] = bytes(hi - lo)
    return bytes(out)


def fill_for_taker(event: bytes) -> bytes:
    """The taker's copy of a FILL: the maker's account and order id zeroed."""
    return _zeroed(event, _MAKER_SPANS)


def fill_for_maker(event: bytes) -> bytes:
    """The maker's copy of a FILL: the taker's account and order id zeroed."""
    return _zeroed(event, _TAKER_SPANS)


_TS_AT = [0] * 256  # byte offset of the engine clock in events that carry one (0: none)
for _t in (MsgType.ACCEPTED, MsgType.CANCELLED, MsgType.TRADE, MsgType.BBO, MsgType.REJECTED):
    _TS_AT[_t] = layout_of(_t).dtype.fields["ts_ns"][1]


def _queue(sess: Session, part: Any, touched: set[Session]) -> None:
    """Queue a session's public part of a batch (bytes for binary, JSON frames otherwise)."""
    if part:
        if sess.binary:
            sess.parts.append(part)
        else:
            sess.parts.extend(part)
        touched.add(sess)


def _channel_mask(channels: frozenset[str]) -> np.ndarray:
    """The same set as ``channel_types`` as a lookup table by message type."""
    mask = np.zeros(256, bool)
    mask[list(channel_types(channels))] = True
    return mask


class EventFanout:
    """Routes event-ring batches to sessions and keeps the gateway's L2 books."""

    def __init__(
        self,
        consumers: list[Any],
        catalog: MarketCatalog,
        accounts: dict[int, set[Session]],
        market_subs: dict[int, set[Session]],
        on_lost: Any = None,
        private_from: list[bool] | None = None,
    ) -> None:
        self.tap: Any = None  # bytes -> bytes on private rings' batches (what the gateway answers itself)
        self.consumers = consumers
        # per consumer: route its private events? (no for shard rings when risk republishes them)
        self.private_from = private_from if private_from is not None else [True] * len(consumers)
        self.on_lost = on_lost or (lambda reason: None)  # events were lost: restate, tell the sessions
        self.catalog = catalog
        self.accounts = accounts  # account id -> live sessions (shared with the server)
        self.market_subs = market_subs  # market id -> sessions subscribed to any channel
        self.books: dict[int, L2Book] = {m: L2Book(m) for m in catalog.ids}
        self.statuses: dict[int, int] = {}  # market -> last MARKET_STATUS seen (else the config's)
        self.conflating: set[Session] = set()
        self.metrics = Metrics("gateway", NoHealth().metrics)  # the process sets the board's
        self._masks: dict[frozenset[str], np.ndarray] = {}
        self.events = 0
        self.batches = 0

    # ---- consuming -----------------------------------------------------------------------------
    def available(self) -> int:
        """Events waiting in all the rings."""
        return sum(c.available() for c in self.consumers)

    def poll(self, max_events: int = 4096) -> int:
        """Process what is available (up to ``max_events`` per ring); returns the count.

        Each batch is copied out of the ring before anything is sent, and used only if the
        consumer was not dropped meanwhile (a dropped consumer's slots may have been overwritten).
        Events are never skipped silently: a drop, or a batch the fan-out fails on, goes to
        ``on_lost``, which restates the books and closes every logged-in session with the reason
        (their private streams have a hole; they reconnect and resync)."""
        total = 0
        for consumer, private in zip(self.consumers, self.private_from, strict=True):
            try:
                view, n = consumer.peek(max_events)
            except ConsumerDropped as exc:
                self._lost(consumer, f"event stream dropped ({exc.reason})")
                continue
            if not n:
                view.release()
                continue
            data = bytes(view)
            view.release()
            at = _TS_AT[data[0]]
            if at:  # one latency sample per batch: the engine's clock of its first event to now
                self.metrics.observe(
                    "hx_event_latency_us", max(0, time.time_ns() - _U64.unpack_from(data, at)[0]) // 1000
                )
            if consumer.is_dropped():
                self._lost(consumer, "event stream dropped while reading")
                continue
            try:
                if private and self.tap is not None:
                    data = self.tap(data)
                if data:
                    self._process(data, len(data) // SLOT_BYTES, private)
            except Exception:  # a bug: tell the sessions instead of skipping their events
                log.exception("event batch of %d failed", n)
                self.on_lost("the gateway failed to route a batch of events")
            try:
                consumer.release(n)
            except ConsumerDropped as exc:
                self._lost(consumer, f"event stream dropped ({exc.reason})")
                continue
            total += n
        if total:
            self.events += total
            self.batches += 1
        return total

    def _lost(self, consumer: Any, reason: str) -> None:
        consumer.resume()
        log.error("ring %s consumer %d: %s", consumer.ring.name, consumer.index, reason)
        self.on_lost(reason)

    def _process(self, data: bytes, n: int, private: bool = True) -> None:
        if n <= SMALL_BATCH:
            if _RESET not in data[::SLOT_BYTES]:  # a restatement takes the vectorised path
                self._flush(self._process_small(data, private))
                return
        a = np.frombuffer(data, np.uint8, n * SLOT_BYTES).reshape(n, SLOT_BYTES)
        t = a[:, MSG_TYPE_AT]
        u32 = a.view("<u4")
        touched: set[Session] = set()
        if private and self.accounts:
            self._route_private(a, t, u32, touched)
        pub = _PUBLIC[t]
        if pub.any():
            self._route_public(a, t, u32, np.flatnonzero(pub), touched)
        self._flush(touched)

    def _flush(self, touched: set[Session]) -> None:
        """One write per touched session, then its slow-consumer check."""
        for sess in touched:
            sess.flush()
            self.check_buffer(sess)

    # ---- plain-Python path (small batches) -------------------------------------------------------
    def _process_small(self, data: bytes, route_private: bool = True) -> set[Session]:
        """Route a batch with one Python loop: events by account, public events by market."""
        private, public = self._group(data, route_private)
        touched: set[Session] = set()
        accounts = self.accounts
        for acct, events in private.items():
            sessions = accounts.get(acct)
            if sessions:
                blob = events[0] if len(events) == 1 else b"".join(events)
                self._give_private(sessions, blob, len(events), touched)
        for m in sorted(public):  # market order as in the vectorised path
            events = self._fold_market(m, data, public[m])
            if events:
                self._give_public(m, events, touched)
        return touched

    def _group(
        self, data: bytes, route_private: bool = True
    ) -> tuple[dict[int, list[bytes]], dict[int, list[int]]]:
        """Private events (copies) by account, in batch order; public events (offsets) by market.

        The appends are written out rather than calling ``_append``: this loop runs per event."""
        private: dict[int, list[bytes]] = {}
        public: dict[int, list[int]] = {}
        routed = route_private and bool(self.accounts)  # nobody logged in: they go nowhere
        unpack_u32 = _U32.unpack_from
        for off in range(0, len(data), SLOT_BYTES):
            t = data[off]
            at = _ACCOUNT_AT[t]
            if at >= 0:
                if not routed:
                    continue
                event = data[off : off + SLOT_BYTES]
                acct = unpack_u32(data, off + at)[0]
                if t == _FILL:
                    maker = unpack_u32(data, off + _MAKER_AT)[0]
                    if maker != acct:  # each side gets its own copy; a self-trade goes once, whole
                        _append(private, maker, fill_for_maker(event))
                        event = fill_for_taker(event)
                group = private.get(acct)
                if group is None:
                    private[acct] = [event]
                else:
                    group.append(event)
            elif _IS_PUBLIC[t]:
                market = unpack_u32(data, off + MARKET_ID_AT)[0]
                offsets = public.get(market)
                if offsets is None:
                    public[market] = [off]
                else:
                    offsets.append(off)
        return private, public

    def _fold_market(self, m: int, data: bytes, offsets: list[int]) -> list[tuple[int, bytes]]:
        """Fold market ``m``'s L2 deltas into its book; return its public events as sent
        (``(msg_type, struct)``, L2 deltas stamped with ``prev_seq``), or [] without subscribers."""
        book = self.books.get(m)
        if book is None:
            book = self.books[m] = L2Book(m)
        subs = bool(self.market_subs.get(m))
        prev = book.seq
        events: list[tuple[int, bytes]] = []
        for off in offsets:
            t = data[off]
            if t == _L2:
                seq, price, size, count, side = _L2_FIELDS.unpack_from(data, off + _L2_AT)
                book.apply(seq, side, price, size, count)
                if subs:
                    stamped = data[off : off + PREV_SEQ_OFFSET] + _U64.pack(prev)
                    events.append((t, stamped + data[off + PREV_SEQ_OFFSET + 8 : off + SLOT_BYTES]))
                prev = seq
            else:
                if t == _STATUS:
                    self.statuses[m] = data[off + _STATUS_AT]
                if subs:
                    events.append((t, data[off : off + SLOT_BYTES]))
        return events

    def _give_public(self, m: int, events: list[tuple[int, bytes]], touched: set[Session]) -> None:
        """Queue market ``m``'s public events on its subscribers, filtered by their channels."""
        cache: dict[tuple[frozenset[str], bool], Any] = {}
        for sess in self.market_subs.get(m, ()):
            if sess.closed:
                continue
            if sess.conflating:
                sess.dropped += len(events)
                continue
            chans = sess.sub_key.get(m, frozenset())
            key = (chans, sess.binary)
            part = cache.get(key)
            if part is None:
                wanted = channel_types(chans)
                sel = [ev for t, ev in events if t in wanted]
                block = b"".join(sel)
                part = cache[key] = block if sess.binary else self._public_json(block, len(sel))
            _queue(sess, part, touched)

    # ---- vectorised path (large batches) ---------------------------------------------------------
    def _route_private(self, a: np.ndarray, t: np.ndarray, u32: np.ndarray, touched: set[Session]) -> None:
        words = _ACCOUNT_WORD[t]
        rows = np.flatnonzero(words >= 0)
        if not len(rows):
            return
        k1 = u32[rows, words[rows]]
        fills = rows[t[rows] == _FILL]
        role = np.zeros(len(rows), np.int8)  # 1: a taker's copy, 2: a maker's (counterparty zeroed)
        if len(fills):
            makers = u32[fills, _W4_MAKER]
            other = makers != u32[fills, _W4_TAKER]  # a self-trade goes to the account once, whole
            role[np.isin(rows, fills[other])] = 1
            keys = np.concatenate((k1, makers[other]))
            idx = np.concatenate((rows, fills[other]))
            role = np.concatenate((role, np.full(int(other.sum()), 2, np.int8)))
            order = np.lexsort((idx, keys))
            keys, idx, role = keys[order], idx[order], role[order]
        else:
            order = np.argsort(k1, kind="stable")
            keys, idx, role = k1[order], rows[order], role[order]
        block = a[idx]  # a copy: stripping the counterparty never touches the ring
        if len(fills):
            for r, fields in ((1, _MAKER_SPANS), (2, _TAKER_SPANS)):
                sel = role == r
                if sel.any():
                    for lo, hi in fields:
                        block[sel, lo:hi] = 0
        uniq, starts = np.unique(keys, return_index=True)
        ends = np.append(starts[1:], len(keys))
        accounts = self.accounts
        for acct, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=True):
            sessions = accounts.get(acct)
            if sessions:
                self._give_private(sessions, block[s:e].tobytes(), e - s, touched)

    def _give_private(self, sessions: set[Session], blob: bytes, count: int, touched: set[Session]) -> None:
        """Queue one account's events (``count`` structs in ``blob``) on each of its sessions."""
        texts: list[bytes] | None = None
        for sess in sessions:
            if sess.closed:
                continue
            if sess.private_floor:  # resumed ahead of this gateway: skip what it already has
                own, n = _above_floor(sess, blob)
                if n:
                    self.give_events(sess, own, n)
                    touched.add(sess)
                continue
            if sess.binary:
                sess.parts.append(blob)
            else:
                if texts is None:
                    texts = self.json_texts(blob, count)
                sess.parts.extend(texts)
            touched.add(sess)

    def json_texts(self, blob: bytes, count: int) -> list[bytes]:
        """The JSON frames of ``count`` private structs."""
        return [
            orjson.dumps(j)
            for k in range(count)
            if (j := event_json(blob, k * SLOT_BYTES, self.catalog)) is not None
        ]

    def give_events(self, sess: Session, blob: bytes, count: int) -> None:
        """Queue structs on one session in its protocol (the caller flushes)."""
        if sess.binary:
            sess.parts.append(blob)
        else:
            sess.parts.extend(self.json_texts(blob, count))

    def _route_public(
        self, a: np.ndarray, t: np.ndarray, u32: np.ndarray, prow: np.ndarray, touched: set[Session]
    ) -> None:
        markets = u32[prow, _W4_MARKET]
        first = int(markets[0])
        groups = (
            [(first, prow)]
            if (markets == first).all()
            else [(m, prow[markets == m]) for m in np.unique(markets).tolist()]
        )
        for m, mrows in groups:
            mt = t[mrows]
            if (mt == _RESET).any():
                self._restate(m, a, mrows, mt)
                continue
            status_rows = mrows[mt == _STATUS]
            if len(status_rows):
                self.statuses[m] = int(a[status_rows[-1], _STATUS_AT])
            is_l2 = mt == _L2
            l2rows = mrows[is_l2]
            book = self.books.get(m)
            if book is None:
                book = self.books[m] = L2Book(m)
            prev = book.seq
            if len(l2rows):
                block = a[l2rows]  # a copy: the book may keep it until it folds
                seqs = block.view("<u8")[:, _W8_SEQ]
                book.apply_block(block)
            subs = self.market_subs.get(m)
            if not subs:
                continue
            out = a[mrows]  # a copy: stamping never touches the ring
            if len(l2rows):
                chain = np.empty(len(l2rows), np.uint64)
                chain[0] = prev
                chain[1:] = seqs[:-1]
                out.view("<u8")[is_l2, word_index(MsgType.L2_DELTA, "prev_seq", 8)] = chain
            cache: dict[tuple[frozenset[str], bool], Any] = {}
            for sess in subs:
                if sess.closed:
                    continue
                if sess.conflating:
                    sess.dropped += len(mrows)
                    continue
                key = (sess.sub_key.get(m, frozenset()), sess.binary)
                part = cache.get(key)
                if part is None:
                    mask = self._masks.get(key[0])
                    if mask is None:
                        mask = self._masks[key[0]] = _channel_mask(key[0])
                    sel = out[mask[mt]]
                    part = sel.tobytes() if sess.binary else self._public_json(sel.tobytes(), len(sel))
                    cache[key] = part
                _queue(sess, part, touched)

    def _restate(self, m: int, a: np.ndarray, mrows: np.ndarray, mt: np.ndarray) -> None:
        """A shard restated market ``m`` (BOOK_RESET + its levels, after a gateway restart).

        Rebuild the book from the last reset on (deltas before it are superseded) and send every
        book subscriber a fresh snapshot instead of this batch's market data for ``m``.
        """
        last_reset = int(np.flatnonzero(mt == _RESET)[-1])
        book = self.books[m] = L2Book(m)
        book.seq = int(a[mrows[last_reset]].view("<u8")[_W8_SEQ])
        after = mrows[last_reset + 1 :]
        l2rows = after[mt[last_reset + 1 :] == _L2]
        if len(l2rows):
            book.apply_block(a[l2rows])
        for sess in list(self.market_subs.get(m, ())):
            if not sess.closed and "book" in sess.sub_key.get(m, frozenset()):
                sess.send_json(self.snapshot(m, sess.binary, reason="restated"))

    def publish_liquidations(self, data: bytes) -> None:
        """The public ``liquidations`` channel: each LIQUIDATION of the batch, account and seq
        zeroed, to the market's subscribers of that channel (rare events: one pass, one flush)."""
        touched: set[Session] = set()
        for off in range(0, len(data), SLOT_BYTES):
            if data[off] != _LIQ:
                continue
            market = _U32.unpack_from(data, off + MARKET_ID_AT)[0]
            subs = [
                s for s in self.market_subs.get(market, ()) if "liquidations" in s.sub_key.get(market, ())
            ]
            if not subs:
                continue
            public = bytearray(data[off : off + SLOT_BYTES])
            public[_LIQ_ACCOUNT_AT : _LIQ_ACCOUNT_AT + 4] = bytes(4)
            public[SEQ_AT : SEQ_AT + 8] = bytes(8)
            text: bytes | None = None
            for sess in subs:
                if sess.closed:
                    continue
                if sess.binary:
                    sess.parts.append(bytes(public))
                else:
                    if text is None:
                        text = orjson.dumps(event_json(public, 0, self.catalog))
                    sess.parts.append(text)
                touched.add(sess)
        self._flush(touched)

    def _public_json(self, block: bytes, count: int) -> list[bytes]:
        """JSON texts of ``count`` public structs (L2 deltas already stamped with prev_seq)."""
        texts = []
        for k in range(count):
            j = event_json(block, k * SLOT_BYTES, self.catalog)
            if j is None:
                continue
            if j["type"] == "l2":
                j["prev_seq"] = _U64.unpack_from(block, k * SLOT_BYTES + PREV_SEQ_OFFSET)[0]
            texts.append(orjson.dumps(j))
        return texts

    # ---- slow consumers ------------------------------------------------------------------------
    def check_buffer(self, sess: Session) -> None:
        """After a write: conflate market data above the soft limit, close above the hard one."""
        buffered = sess.buffered()
        if buffered > sess.hard_bytes:
            self.conflating.discard(sess)
            sess.close(WSCloseCode.POLICY_VIOLATION, f"slow consumer: {buffered} bytes unsent")
        elif buffered > sess.soft_bytes and not sess.conflating:
            sess.conflating = True
            self.conflating.add(sess)
            sess.send_json(
                {
                    "type": "conflated",
                    "markets": sorted(sess.subs),
                    "buffered": buffered,
                    "message": "you are reading too slowly: market data paused, a fresh "
                    "snapshot follows when your buffer drains",
                }
            )

    def recover_conflated(self) -> None:
        """Sessions whose buffer drained get fresh snapshots and live data again."""
        for sess in list(self.conflating):
            if sess.closed:
                self.conflating.discard(sess)
            elif sess.buffered() <= sess.soft_bytes // 4:
                self.conflating.discard(sess)
                sess.conflating = False
                for m, chans in sess.subs.items():
                    if "book" in chans:
                        sess.send_json(self.snapshot(m, sess.binary, reason="conflated"))
                sess.send_json({"type": "resumed", "dropped": sess.dropped})
                sess.dropped = 0

    # ---- snapshots -----------------------------------------------------------------------------
    def snapshot(
        self, market: int, binary: bool, reason: str = "subscribe", depth: int | None = None
    ) -> dict[str, Any]:
        """A market's book as the ``snapshot`` message (ticks/lots on binary, decimals on JSON)."""
        book = self.books.get(market) or L2Book(market)
        bids = book.levels(BUY, depth)
        asks = book.levels(SELL, depth)
        if not binary:
            info = self.catalog.get(market)
            if info is not None:
                tick, lot = info.tick_size, info.lot_size
                bids = [[from_units(p, tick), from_units(s, lot), c] for p, s, c in bids]  # type: ignore[misc]
                asks = [[from_units(p, tick), from_units(s, lot), c] for p, s, c in asks]  # type: ignore[misc]
        return {
            "type": "snapshot",
            "market": market,
            "seq": book.seq,
            "bids": bids,
            "asks": asks,
            "reason": reason,
        }


def _above_floor(sess: Session, blob: bytes) -> tuple[bytes, int]:
    """The events of ``blob`` after the session's resume floor; the floor is lifted once passed."""
    floor = sess.private_floor
    keep = bytearray()
    for off in range(0, len(blob), SLOT_BYTES):
        seq = _U64.unpack_from(blob, off + SEQ_AT)[0]
        if seq > floor:
            keep += blob[off:]
            sess.private_floor = 0
            break
    return bytes(keep), len(keep) // SLOT_BYTES


def _append(groups: dict[int, list[Any]], key: int, item: Any) -> None:
    """``groups[key].append(item)``, creating the list on first use."""
    lst = groups.get(key)
    if lst is None:
        groups[key] = [item]
    else:
        lst.append(item)
