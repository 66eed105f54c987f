"""Random but *interesting* wire command streams, for differential tests of the matching engines.

Why: a second implementation (the native engine) must agree with ``MatchingEngine`` byte for byte on
every stream, and the disagreements hide in the rare paths: rejects of every kind, stops firing
(and being banded), slides off the price range, self-trade prevention, GTT expiry, status changes,
id and client-id collisions, int64 edges, malformed headers. Plain random orders never reach most
of them, so one stateful generator aims each field at its edges (it tracks the clock, the marks,
the ids it sent and the orders it placed, and targets cancels/amends at them).

A ``MatchingEngine`` runs alongside as an oracle, so cancels and amends mostly aim at orders that are
really live, halted markets get reopened, and (given a sink) it yields the reference outputs. A
``Profile`` sets the shape: ``DENSE`` (small books, three accounts: every path, often) or ``DEEP``
(thousands of orders, accounts and stops in one book: every pool and hash table grows).

Two drivers share the generator: ``random_commands(seed, n, markets, profile)`` (a seeded
``random.Random``, for long streams) and the hypothesis strategy ``command_lists(markets)``, where
each command reads its decisions from a tape of u16s, 0 meaning the most common choice, so a failing
stream shrinks to fewer commands with plainer fields. Every command is one 64-byte wire struct; u64
ids stay below 2**62.

Imported by name by the test modules (``pythonpath`` in pyproject puts this directory on sys.path).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from differential import SeededRng
from hypothesis import strategies as st

from engine.shard.event_sink import NullSink
from engine.shard.matching_engine import MatchingEngine
from engine.shard.order import O_ACCOUNT, O_COID, O_FILLED, O_OID, O_OPEN, O_PRICE
from engine.types.enums import (
    MARKET_PRICED_ORDER_TYPES,
    STOP_ORDER_TYPES,
    STP_SHIFT,
    MarketKind,
    MarketStatus,
    MsgType,
    OrderType,
    TimeInForce,
)
from engine.types.market_spec import MarketSpec
from engine.wire.layout import (
    ALL_MARKETS,
    BY_TYPE,
    LENGTH_AT,
    MARKET_ID_AT,
    MSG_TYPE_AT,
    SLOT_BYTES,
    VERSION_AT,
    WIRE_VERSION,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
ID_LIMIT = 2**62  # every u64 id (order, client order) stays below this
U32_MAX = 2**32 - 1
CLIENT_POOL = 12  # client order ids 1..12 per account: repeats (duplicates, cancel-by-coid hits) are common

# ---- markets ---------------------------------------------------------------------------------------
# Varied rules; ids are sparse so an implementation that indexes markets by id densely is exercised.
PLAIN = MarketSpec(  # the fast path: no band, no min notional, notional = price * size
    market_id=1,
    symbol="PLAIN",
    kind=MarketKind.SPOT,
    tick_size_micro=1,
    lot_size_atoms=100_000_000,
    min_size_lots=1,
    max_size_lots=500,
    max_price_ticks=100_000,
)
BANDED = MarketSpec(  # 3% band, min size 2, min notional: price*size >= 300
    market_id=2,
    symbol="BANDED",
    kind=MarketKind.PERP,
    tick_size_micro=10_000,
    lot_size_atoms=1_000_000,
    min_size_lots=2,
    max_size_lots=60,
    min_notional_micro=30_000,
    max_price_ticks=10_000,
    band_bps=300,
)
PRED = MarketSpec(  # prices 1..99: post-only slides fall off both ends; tight aggregate bounds
    market_id=3,
    symbol="PRED",
    kind=MarketKind.PREDICTION,
    tick_size_micro=10_000,
    lot_size_atoms=100_000_000,
    max_size_lots=1_000,
    max_price_ticks=99,
    max_open_orders_per_account=5,  # three accounts reach it: TOO_MANY_OPEN_ORDERS
    max_level_total_lots=30,  # a few orders fill a level: LEVEL_FULL (orders, amends, fired stops)
)
WHALE = MarketSpec(  # notional = price*size*1e16 micro: overflows int64 once price*size > 922
    market_id=40,
    symbol="WHALE",
    kind=MarketKind.SPOT,
    tick_size_micro=10**12,
    lot_size_atoms=10**12,
    max_size_lots=2**31,
    max_price_ticks=2**31,
    band_bps=2_000,
)
EQUITY = MarketSpec(  # starts CLOSED; a narrow 0.5% band; min size 5; tick 100 micro
    market_id=77_777,
    symbol="EQUITY",
    kind=MarketKind.EQUITY,
    tick_size_micro=100,
    lot_size_atoms=100_000_000,
    min_size_lots=5,
    max_size_lots=10_000,
    max_price_ticks=1_000_000,
    band_bps=50,
    status=MarketStatus.CLOSED,
)
STREAM_MARKETS: dict[int, MarketSpec] = {s.market_id: s for s in (PLAIN, BANDED, PRED, WHALE, EQUITY)}
MARKET_WEIGHTS = {1: 30, 2: 25, 3: 15, 40: 15, 77_777: 15}  # others: 15

UNKNOWN_MARKETS = (0, 4, 39, 41, 77_776, 77_778, 0xFFFF_FFFE, ALL_MARKETS)
BAD_MSG_TYPES = (
    0,
    8,
    9,
    31,
    32,
    33,
    42,
    63,
    64,
    65,
    66,
    127,
    255,
)  # 8: L2_SNAPSHOT_REQUEST, not a shard command
BAD_VERSIONS = (0, 2, 3, 255)
BAD_LENGTHS = (0, 1, 32, 63, 65, 128, 192, 0xFFFF)


_FIELD_NAMES = {t: BY_TYPE[t].field_names[4:] for t in BY_TYPE}
_PACK = {t: BY_TYPE[t].struct.pack for t in BY_TYPE}


def encode(msg_type: int, market_id: int, **fields: int) -> bytes:
    """``codec.encode`` without its per-call checks (the generator's hot path); unset fields are 0."""
    t = int(msg_type)
    return _PACK[t](t, WIRE_VERSION, SLOT_BYTES, market_id, *(fields.get(n, 0) for n in _FIELD_NAMES[t]))


def _pad_ranges(msg_type: MsgType) -> list[tuple[int, int]]:
    """(start, end) byte ranges of a layout's padding: the generator sometimes fills them with junk."""
    out, pos = [], 0
    for _, code, _ in BY_TYPE[int(msg_type)].fields:
        size = struct.calcsize("<" + code)
        if code.endswith("x"):
            out.append((pos, pos + size))
        pos += size
    return out


_PADS = {t: _pad_ranges(t) for t in MsgType if int(t) in BY_TYPE}


# ---- randomness: seeded, or a hypothesis tape ------------------------------------------------------
class TapeRng:
    """Decisions read from a list of ints (hypothesis draws); an exhausted tape reads 0.

    0 always means the first (most common, plainest) option and ``chance`` False, so shrinking the
    tape towards zeros shrinks the command towards a plain one."""

    def __init__(self, tape: Sequence[int] = ()) -> None:
        self.tape = list(tape)
        self.pos = 0

    def _next(self) -> int:
        if self.pos < len(self.tape):
            self.pos += 1
            return self.tape[self.pos - 1]
        return 0

    def int(self, lo: int, hi: int) -> int:
        return lo + self._next() % (hi - lo + 1)

    def chance(self, p: float) -> bool:
        return self._next() % 10_000 >= 10_000 * (1 - p)

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self._next() % len(seq)]

    def weighted(self, options: Sequence[tuple[int, Any]]) -> Any:
        v = self._next() % sum(w for w, _ in options)
        for w, value in options:
            if v < w:
                return value
            v -= w
        raise AssertionError("unreachable")


Rng = SeededRng | TapeRng


# ---- stream shapes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """The shape of a stream; the generator's logic is the same for every profile."""

    name: str
    kinds: tuple[tuple[int, str], ...]  # command mix (weights)
    spread: int  # limit prices: buys mid-spread..mid+1, sells mid-1..mid+spread
    reach: int  # market orders' worst price: up to this far through the mid
    sweep: tuple[int, int]  # size over the minimum of the occasional sweeping order
    accounts: tuple[tuple[int, int], ...]  # (weight, n): an account in 1..n
    trigger: int  # a stop waits up to this many ticks away from the mark
    mark_jump: float  # chance that a mark moves by half a spread at once (many stops fire)
    lifetime: tuple[int, int]  # usual GTT lifetime (ns)
    clock_step: int  # usual clock step (ns); sometimes 10x-50x that
    live_target: int  # percent of cancels/amends aimed at a live order (the oracle knows which)
    coids: tuple[int, ...]  # client order id weights: none, = order id, pool, another's, random
    pause: int  # a halted/closed/post-only market is reopened after this many commands


# Small books over a few levels, three accounts: every command interacts, every rare path is hit.
DENSE = Profile(
    name="dense",
    kinds=((550, "new"), (70, "cancel"), (100, "amend"), (70, "mark"), (70, "clock"), (20, "status"))
    + ((7, "cxlall"), (20, "bad")),
    spread=5,
    reach=6,
    sweep=(7, 40),
    accounts=((100, 3),),
    trigger=4,
    mark_jump=0.0,
    lifetime=(1, 5_000),
    clock_step=150,
    live_target=75,
    coids=(30, 25, 28, 10, 7),
    pause=150,
)
# Thousands of resting orders and hundreds of levels and stops per market, thousands of accounts:
# grows every pool, index and hash table an implementation starts small (and deletes from them).
DEEP = Profile(
    name="deep",
    kinds=((800, "new"), (45, "cancel"), (45, "amend"), (30, "mark"), (40, "clock"), (1, "status"))
    + ((1, "cxlall"), (8, "bad")),
    spread=150,
    reach=200,
    sweep=(50, 400),
    accounts=((85, 50_000), (15, 3)),
    trigger=150,
    mark_jump=0.05,
    lifetime=(2_000, 2_000_000),
    clock_step=150,
    live_target=60,
    coids=(5, 50, 5, 5, 35),
    pause=40,
)


# ---- the stateful generator ------------------------------------------------------------------------
class _Sent:
    """An order the generator sent (accepted or not: it does not know), for cancels and amends."""

    __slots__ = ("oid", "account", "coid", "price", "size", "rests")

    def __init__(self, oid: int, account: int, coid: int, price: int, size: int, rests: bool) -> None:
        self.oid, self.account, self.coid = oid, account, coid
        self.price, self.size, self.rests = price, size, rests  # rests: GTC/GTT limit or a stop


class _Market:
    """What the generator believes about a market: price centre, mark, status, ids, recent orders."""

    def __init__(self, spec: MarketSpec, profile: Profile) -> None:
        self.spec = spec
        self.id = spec.market_id
        top = spec.max_price_ticks
        self.spread = max(3, min(profile.spread, top // 2 - 1))
        if top < 200:  # a narrow range: live near both ends and the middle
            self.centers: tuple[int, ...] = (2, top // 2, top - 2)
        elif spec.band_bps:  # the band (about 0.7 spread wide) rejects the outer levels once a mark is known
            self.centers = (min(top // 2, max(10, self.spread * 7_000 // spec.band_bps)),)
        else:
            self.centers = (min(top // 2, max(100, self.spread + 10)),)
        self.wander = max(12, self.spread // 3)  # how far the mid walks from its centres
        self.mid = self.centers[0]
        self.mark = 0
        self.status = int(spec.status)
        self.status_since = 0  # command index of the last status change
        self.hi = 0  # highest order id sent (or assigned, as far as the generator can tell)
        self.recent: deque[_Sent] = deque(maxlen=64)


class StreamGenerator:
    """Produces one 64-byte command per ``next()``, drawing every decision from ``rng``.

    ``resolve_from``: command index from which RESOLVED (final) may be sent, so that a long stream
    does not lose its markets early."""

    def __init__(
        self,
        markets: dict[int, MarketSpec],
        resolve_from: int = 0,
        profile: Profile = DENSE,
        oracle: bool = True,
        sink: Any = None,
    ) -> None:
        if not markets:
            raise ValueError("need at least one market")
        self.p = profile
        self.markets = [_Market(markets[k], profile) for k in sorted(markets)]
        # the reference engine run alongside, so cancels and amends can aim at orders that are live;
        # with a ``sink`` its events (and ``last_code``) are the reference outputs of the stream
        sink = NullSink() if sink is None else sink
        self.oracle = MatchingEngine(markets, sink, debug_validate=False) if oracle else None
        self.last_code = 0
        self.market_choice = [(MARKET_WEIGHTS.get(m.id, 15), m) for m in self.markets]
        self.now = 0
        self.index = 0
        self.resolve_from = resolve_from

    # ---- helpers -------------------------------------------------------------------------------------
    def _market(self, r: Rng) -> _Market:
        return r.weighted(self.market_choice)

    def _account_draw(self, r: Rng) -> int:
        kind = r.weighted([(95, 0), (2, 1), (2, 2), (1, 3)])
        if kind == 0:
            return r.int(1, r.weighted(self.p.accounts))  # (few accounts: self-trades happen)
        return (0, 0, r.int(4, 1_000), U32_MAX)[kind]

    def _bad_price(self, r: Rng, m: _Market) -> int:
        top = m.spec.max_price_ticks
        return r.pick(
            (0, -1, -r.int(2, 1_000), top + 1, top + r.int(2, 1_000), 2**40, 2**62, INT64_MAX, INT64_MIN)
        )

    def _bad_size(self, r: Rng, m: _Market) -> int:
        s = m.spec
        return r.pick(
            (
                0,
                -1,
                -r.int(2, 1_000),
                s.min_size_lots - 1,
                s.max_size_lots + 1,
                s.max_size_lots + r.int(2, 99),
                2**62,
            )
        )

    def _target(self, r: Rng, m: _Market) -> _Sent | None:
        if not m.recent:
            return None
        if self.oracle is not None and r.int(0, 99) < self.p.live_target:
            state = self.oracle.market(m.id)
            o = None
            if state.book.order_count() + len(state.stops) <= 64:
                live = list(state.book.iter_orders()) + list(state.stops.values())
                o = live[r.int(0, len(live) - 1)] if live else None
            else:  # a big book: probe ids until one is live
                for _ in range(8):
                    oid = r.int(1, max(1, m.hi))
                    o = state.book.get(oid) or state.stops.get(oid)
                    if o is not None:
                        break
            if o is not None:
                return _Sent(o[O_OID], o[O_ACCOUNT], o[O_COID], o[O_PRICE], o[O_OPEN] + o[O_FILLED], True)
        n = len(m.recent)
        how = r.weighted([(70, 0), (15, 1), (15, 2)])
        if how == 0:  # an order that may still rest: the common, interesting case
            live = [s for s in m.recent if s.rests]
            if live:
                return live[len(live) - 1 - r.int(0, min(15, len(live) - 1))]
        if how == 2:
            return m.recent[r.int(0, n - 1)]
        return m.recent[n - 1 - r.int(0, min(11, n - 1))]

    def _finish(self, r: Rng, msg_type: MsgType, buf: bytes) -> bytes:
        """Sometimes junk in the padding (layouts say zero; both engines must ignore it alike)."""
        pads = _PADS[msg_type]
        if pads and r.chance(0.02):
            b = bytearray(buf)
            for start, end in pads:
                for i in range(start, end):
                    b[i] = r.int(0, 255)
            return bytes(b)
        return buf

    # ---- commands ------------------------------------------------------------------------------------
    def next(self, r: Rng) -> bytes:
        kind = r.weighted(self.p.kinds)
        self.index += 1
        paused = [
            m for m in self.markets if m.status not in (0, 3) and self.index - m.status_since > self.p.pause
        ]
        if paused:  # reopen a market paused long enough (its orders would be rejected for the whole stream)
            buf = encode(MsgType.SET_MARKET_STATUS, paused[0].id, status=MarketStatus.OPEN)
        elif kind == "bad":
            buf = self._malformed(r)
        else:
            buf = getattr(self, "_" + kind)(r)
            if kind != "clock" and r.chance(0.02):  # an unknown market id in the header
                b = bytearray(buf)
                struct.pack_into("<I", b, MARKET_ID_AT, r.pick(UNKNOWN_MARKETS))
                buf = bytes(b)
        if self.oracle is not None:
            self.last_code = int(self.oracle.handle(buf))
            for m in self.markets:
                state = self.oracle.market(m.id)
                if state.status != m.status:
                    m.status, m.status_since = state.status, self.index
                m.mark = state.mark
        return buf

    def _malformed(self, r: Rng) -> bytes:
        inner = r.weighted([(50, "new"), (20, "cancel"), (10, "amend"), (10, "mark"), (10, "clock")])
        b = bytearray(getattr(self, "_" + inner)(r))
        what = r.weighted([(35, "type"), (30, "version"), (30, "length"), (5, "all")])
        if what in ("type", "all"):
            b[MSG_TYPE_AT] = r.pick(BAD_MSG_TYPES)
            if r.chance(0.5):  # unknown type: its body means nothing, make it noise
                for i in range(8, 64):
                    b[i] = r.int(0, 255)
        if what in ("version", "all"):
            b[VERSION_AT] = r.pick(BAD_VERSIONS)
        if what in ("length", "all"):
            struct.pack_into("<H", b, LENGTH_AT, r.pick(BAD_LENGTHS))
        return bytes(b)

    def _new(self, r: Rng) -> bytes:
        m = self._market(r)
        spec = m.spec
        otype = r.weighted(
            [
                (64, OrderType.LIMIT),
                (12, OrderType.MARKET),
                (6, OrderType.STOP_LIMIT),
                (6, OrderType.STOP_MARKET),
                (6, OrderType.TAKE_PROFIT_LIMIT),
                (6, OrderType.TAKE_PROFIT_MARKET),
                (1, -1),
            ]
        )
        if otype == -1:
            otype = r.int(6, 255)
        side = r.weighted([(50, 0), (49, 1), (1, -1)])
        if side == -1:
            side = r.int(2, 255)
        if otype in MARKET_PRICED_ORDER_TYPES:
            tif = r.weighted([(50, TimeInForce.IOC), (45, TimeInForce.FOK), (5, -1)])
        else:
            tif = r.weighted(
                [
                    (50, TimeInForce.GTC),
                    (16, TimeInForce.IOC),
                    (10, TimeInForce.FOK),
                    (22, TimeInForce.GTT),
                    (2, -1),
                ]
            )
        if tif == -1:
            tif = r.pick((TimeInForce.GTC, TimeInForce.GTT, r.int(4, 255)))
        tif = int(tif)

        flags = 0
        resting_limit = otype == OrderType.LIMIT and tif in (TimeInForce.GTC, TimeInForce.GTT)
        if (resting_limit and r.chance(0.3)) or r.chance(0.01):
            flags |= r.weighted([(45, 1), (45, 2), (10, 3)])  # post-only, slide, both bits
        if r.chance(0.08):
            flags |= 4  # reduce-only: carried, not enforced
        flags |= r.weighted([(40, 0), (15, 1), (15, 2), (15, 3), (15, 4)]) << STP_SHIFT
        if r.chance(0.01):
            flags |= r.pick((5 << STP_SHIFT, 6 << STP_SHIFT, 7 << STP_SHIFT, 0x08, 0x80))  # invalid bits

        # price: near the mid, both sides overlapping so orders cross; market orders: a worst price
        if m.centers[1:] and r.chance(0.03):
            m.mid = r.pick(m.centers)
        if otype == OrderType.MARKET or (tif in (TimeInForce.IOC, TimeInForce.FOK) and r.chance(0.3)):
            reach = r.int(-2, self.p.reach)  # a worst price through the mid: sweeps levels
            price = m.mid + reach if side == 0 else m.mid - reach
        else:
            # buys mostly below the mid, sells above, overlapping by a tick or two: a few levels a side
            price = m.mid + (r.int(-m.spread, 1) if side == 0 else r.int(-1, m.spread))
        size_kind = r.weighted([(88, 0), (8, 1), (4, 2)])
        if size_kind == 0:
            size = spec.min_size_lots + r.int(0, 6)
        elif size_kind == 1:  # sweeps several levels
            size = min(spec.max_size_lots, spec.min_size_lots + r.int(*self.p.sweep))
        else:
            size = self._bad_size(r, m)

        trigger = 0
        if otype in STOP_ORDER_TYPES:
            ref = m.mark or m.mid
            fires_up = (otype in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET)) == (side == 0)
            trig_kind = r.weighted([(88, 0), (8, 1), (4, 2)])
            if trig_kind == 0:  # on the side where the mark has not reached it yet
                d = r.int(1, 4) if r.chance(0.5) else r.int(1, self.p.trigger)
                trigger = ref + d if fires_up else ref - d
            elif trig_kind == 1:  # already reached: rejected when a mark is known
                trigger = ref - r.int(0, 3) if fires_up else ref + r.int(0, 3)
            else:
                trigger = r.pick((0, -1, spec.max_price_ticks + 1, INT64_MAX))
            if otype in (OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT):
                # the limit near the trigger; sometimes far from it, outside the band when it fires
                price = trigger + (r.int(-3, 3) if not r.chance(0.15) else r.pick((-1, 1)) * r.int(5, 30))
            else:
                reach = r.int(-2, 8)
                price = trigger + reach if side == 0 else trigger - reach
        elif r.chance(0.02):
            trigger = m.mid
        bad = r.weighted([(96, 0), (2, 1), (2, 2)])
        if bad == 1:
            price = self._bad_price(r, m)
        elif bad == 2:  # price * size beyond int64 with each in range
            price, size = r.pick(((2**32, 2**31), (2**40, 2**23 + 1), (2**62, 2), (INT64_MAX, 2), (3, 2**62)))

        expire = 0
        if tif == TimeInForce.GTT:
            ek = r.weighted([(84, 0), (4, 1), (4, 2), (4, 3), (4, 4)])
            soon = self.now + (r.int(*self.p.lifetime) if r.chance(0.6) else r.int(1, 299))
            if r.chance(0.3):  # a round expiry: ties in the GTT heap are ordered by order id
                soon += -soon % 500
            expire = (
                soon,
                0,
                self.now,
                max(0, self.now - r.int(1, 100)),
                2**62 + r.int(0, 99),
            )[ek]
        elif r.chance(0.02):
            expire = self.now + 100

        ok = r.weighted([(35, 0), (50, 1), (6, 2), (4, 3), (5, 4)])
        if ok == 0:  # the shard assigns last + 1
            oid, record = 0, m.hi + 1
            m.hi += 1
        elif ok == 1:
            m.hi += 1 if r.weighted([(80, 0), (20, 1)]) == 0 else r.int(2, 5)  # sometimes a gap
            oid = record = m.hi
        elif ok == 2:  # an old id: duplicate
            oid = record = (self._target(r, m).oid if m.recent else 0) or r.int(1, max(1, m.hi))
        elif ok == 3:
            oid = record = max(1, m.hi)
        else:  # a jump far ahead
            m.hi = min(ID_LIMIT - 1, m.hi + r.int(1_000, 100_000))
            oid = record = m.hi

        account = self._account_draw(r)
        ck = r.weighted(list(zip(self.p.coids, range(5), strict=True)))
        if ck == 0:
            coid = 0
        elif ck == 1:
            coid = record  # coid == oid: the books' no-index case
        elif ck == 2:
            coid = r.int(1, CLIENT_POOL)
        elif ck == 3:
            t = self._target(r, m)
            coid = (t.coid or t.oid) if t is not None else 1
        else:
            coid = r.int(1, ID_LIMIT - 1)

        rests = otype in STOP_ORDER_TYPES or (
            otype == OrderType.LIMIT and tif in (TimeInForce.GTC, TimeInForce.GTT)
        )
        m.recent.append(_Sent(record, account, coid, price, size, rests))
        buf = encode(
            MsgType.NEW_ORDER,
            m.id,
            order_id=oid,
            client_order_id=coid,
            price_ticks=_i64(price),
            size_lots=_i64(size),
            trigger_price_ticks=_i64(trigger),
            expire_ns=expire,
            account=account,
            side=side,
            tif=tif,
            order_type=otype,
            flags=flags,
        )
        return buf

    def _cancel(self, r: Rng) -> bytes:
        m = self._market(r)
        t = self._target(r, m)
        how = r.weighted([(70, 0), (22, 1), (8, 2)])
        if t is None or how == 2:  # nothing to aim at / an order that never existed
            oid = r.pick((m.hi + r.int(1, 50), 0, r.int(1, ID_LIMIT - 1)))
            return self._finish(
                r,
                MsgType.CANCEL,
                encode(
                    MsgType.CANCEL,
                    m.id,
                    order_id=oid,
                    client_order_id=r.int(0, 3),
                    account=self._account_draw(r),
                ),
            )
        account = t.account if r.chance(0.8) else self._account_draw(r)
        if how == 0:  # by id (a client id alongside is only echoed)
            coid = t.coid if r.chance(0.2) else 0
            buf = encode(MsgType.CANCEL, m.id, order_id=t.oid, client_order_id=coid, account=account)
        else:  # by client id
            coid = t.coid or r.int(0, CLIENT_POOL)
            buf = encode(MsgType.CANCEL, m.id, order_id=0, client_order_id=coid, account=account)
        return self._finish(r, MsgType.CANCEL, buf)

    def _amend(self, r: Rng) -> bytes:
        m = self._market(r)
        t = self._target(r, m)
        if t is None:
            t = _Sent(r.int(1, 5), 1, 0, m.mid, 3, True)
        account = t.account if r.chance(0.9) else self._account_draw(r)
        by_coid = t.coid and r.chance(0.2)
        pk = r.weighted([(35, 0), (40, 1), (10, 2), (10, 3), (5, 4)])
        near = m.mid + r.int(-min(3, m.spread), min(3, m.spread))
        price = (0, near, t.price, t.price + r.pick((-1, 1)), self._bad_price(r, m))[pk]
        sk = r.weighted([(35, 0), (18, 1), (18, 2), (10, 3), (12, 4), (7, 5)])
        size = (
            0,
            t.size - r.int(1, 3),
            t.size + r.int(1, 5),
            t.size,
            r.int(1, 3),
            r.pick((-1, -r.int(2, 99), m.spec.max_size_lots + 1, 2**62)),
        )[sk]
        if 0 < price <= m.spec.max_price_ticks:
            t.price = price
        if 0 < size <= m.spec.max_size_lots:
            t.size = size
        buf = encode(
            MsgType.AMEND,
            m.id,
            order_id=0 if by_coid else t.oid,
            client_order_id=t.coid if (by_coid or r.chance(0.1)) else 0,
            price_ticks=_i64(price),
            size_lots=_i64(size),
            account=account,
        )
        return self._finish(r, MsgType.AMEND, buf)

    def _cxlall(self, r: Rng) -> bytes:
        m = self._market(r)
        mk = r.weighted([(55, 0), (40, 1), (5, 2)])
        mid = (m.id, ALL_MARKETS, r.pick(UNKNOWN_MARKETS[:-1]))[mk]
        return self._finish(
            r, MsgType.CANCEL_ALL, encode(MsgType.CANCEL_ALL, mid, account=self._account_draw(r))
        )

    def _mark(self, r: Rng) -> bytes:
        m = self._market(r)
        if m.centers[1:] and r.chance(0.1):
            m.mid = r.pick(m.centers)
        lo = max(1, m.centers[0] - m.wander)
        hi = min(m.spec.max_price_ticks, m.centers[-1] + m.wander)
        step = r.int(-2, 2) if not r.chance(self.p.mark_jump) else r.pick((-1, 1)) * (m.spread // 2)
        m.mid = min(hi, max(lo, m.mid + step))
        price = m.mid + r.int(-1, 1)
        if r.chance(0.05):
            price = r.pick((0, -1, m.spec.max_price_ticks + 1, INT64_MIN))
        if 0 < price <= m.spec.max_price_ticks:
            m.mark = price
        buf = encode(MsgType.MARK_PRICE, m.id, price_ticks=_i64(price), ts_ns=r.int(0, ID_LIMIT - 1))
        return self._finish(r, MsgType.MARK_PRICE, buf)

    def _status(self, r: Rng) -> bytes:
        closed = [m for m in self.markets if m.status not in (MarketStatus.OPEN, MarketStatus.RESOLVED)]
        m = r.pick(closed) if closed and r.chance(0.7) else self._market(r)
        options = [
            (40, MarketStatus.OPEN),
            (15, MarketStatus.HALTED),
            (10, MarketStatus.CLOSED),
            (25, MarketStatus.POST_ONLY),
            (7, -1),
        ]
        if self.index >= self.resolve_from:
            options.append((5, MarketStatus.RESOLVED))
        if m.status != MarketStatus.OPEN:
            options[0] = (150, MarketStatus.OPEN)
        status = r.weighted(options)
        if status == -1:
            status = r.int(5, 255)
        elif m.status != MarketStatus.RESOLVED and status != m.status:
            m.status, m.status_since = int(status), self.index
        return self._finish(
            r, MsgType.SET_MARKET_STATUS, encode(MsgType.SET_MARKET_STATUS, m.id, status=status)
        )

    def _clock(self, r: Rng) -> bytes:
        ck = r.weighted([(80, 0), (10, 1), (6, 2), (4, 3)])
        step = self.p.clock_step
        if ck == 0:
            now = self.now + r.int(0, step)
        elif ck == 1:  # backwards: STALE_SEQUENCE
            now = max(0, self.now - r.int(1, 60))
        elif ck == 2:  # a long pause: everything near expires
            now = self.now + r.int(10 * step, 50 * step)
        else:
            now = self.now
        self.now = max(self.now, now)
        mid = r.weighted([(70, ALL_MARKETS), (20, self._market(r).id), (10, r.pick(UNKNOWN_MARKETS))])
        return self._finish(r, MsgType.CLOCK, encode(MsgType.CLOCK, mid, now_ns=now))


def _i64(v: int) -> int:
    """Clamp to the i64 wire range (the generator's arithmetic may step past an edge)."""
    return min(INT64_MAX, max(INT64_MIN, v))


# ---- drivers ---------------------------------------------------------------------------------------
def random_commands(
    seed: int, n: int, markets: dict[int, MarketSpec] = STREAM_MARKETS, profile: Profile = DENSE
) -> list[bytes]:
    """``n`` 64-byte commands from ``seed`` (same seed, same bytes); RESOLVED only in the last fifth."""
    gen = StreamGenerator(markets, resolve_from=n - n // 5, profile=profile)
    rng = SeededRng(seed)
    return [gen.next(rng) for _ in range(n)]


def decode_tapes(
    tapes: Sequence[Sequence[int]], markets: dict[int, MarketSpec] = STREAM_MARKETS
) -> list[bytes]:
    """One command per tape (hypothesis draws), through the same generator."""
    gen = StreamGenerator(markets)
    return [gen.next(TapeRng(tape)) for tape in tapes]


TAPE_LEN = 40  # decisions per command (a NEW_ORDER takes about 30; an exhausted tape reads 0)
# one binary draw per command (a list of integer draws is ~50x slower to generate), read as u16s
TAPE = st.binary(min_size=2 * TAPE_LEN, max_size=2 * TAPE_LEN).map(
    lambda b: struct.unpack(f"<{len(b) // 2}H", b)
)


def command_lists(
    markets: dict[int, MarketSpec] = STREAM_MARKETS, max_size: int = 100
) -> st.SearchStrategy[list[bytes]]:
    """Hypothesis strategy of command streams; shrinks to fewer, plainer commands.

    The length is drawn first (uniform up to ``max_size``: plain ``st.lists`` averages a handful of
    elements, too short to build a book), then one tape per command."""
    return (
        st.integers(1, max_size)
        .flatmap(lambda n: st.lists(TAPE, min_size=n, max_size=n))
        .map(lambda tapes: decode_tapes(tapes, markets))
    )
