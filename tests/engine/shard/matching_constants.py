"""Shared fixtures of the shard tests as named constants and small helpers (dYdX testutil style).

Imported by name by the test modules (``pythonpath`` in pyproject puts this directory on sys.path).
"""

from __future__ import annotations

import functools
from typing import Any

from engine.shard.book import OrderBook
from engine.shard.event_sink import EventRecorder
from engine.shard.matching_engine import MatchingEngine
from engine.shard.native_engine import NativeEngine
from engine.shard.reference_book import ReferenceBook
from engine.types.enums import MarketKind, MarketStatus, MsgType
from engine.types.market_spec import MarketSpec
from engine.wire.codec import encode

BTC_PERP = MarketSpec(
    market_id=1,
    symbol="BTC-PERP",
    kind=MarketKind.PERP,
    tick_size_micro=100_000,
    lot_size_atoms=100_000,
    min_size_lots=1,
    max_size_lots=1_000_000,
    min_notional_micro=0,
    max_price_ticks=100_000_000,
    band_bps=0,
)
ETH_PERP_BANDED = MarketSpec(
    market_id=2,
    symbol="ETH-PERP",
    kind=MarketKind.PERP,
    tick_size_micro=10_000,
    lot_size_atoms=1_000_000,
    min_size_lots=2,
    max_size_lots=10_000,
    min_notional_micro=10_000_000,
    max_price_ticks=100_000_000,
    band_bps=500,
)
PRED_YES = MarketSpec(
    market_id=3,
    symbol="PRED-YES",
    kind=MarketKind.PREDICTION,
    tick_size_micro=10_000,
    lot_size_atoms=100_000_000,
    max_price_ticks=99,
)
AAPL_CLOSED = MarketSpec(
    market_id=4,
    symbol="AAPL",
    kind=MarketKind.EQUITY,
    tick_size_micro=10_000,
    lot_size_atoms=100_000_000,
    status=MarketStatus.CLOSED,
)
# notional in micro overflows int64 long before price*size does
WHALE = MarketSpec(
    market_id=5,
    symbol="WHALE",
    kind=MarketKind.SPOT,
    tick_size_micro=10**12,
    lot_size_atoms=10**12,
    max_size_lots=2**31,
    max_price_ticks=2**31,
)
# small bounds of the book's aggregates: two live orders per account, ten lots per price level
TIGHT = MarketSpec(
    market_id=6,
    symbol="TIGHT",
    kind=MarketKind.SPOT,
    tick_size_micro=1,
    lot_size_atoms=100_000_000,
    max_size_lots=100,
    max_price_ticks=1_000,
    max_open_orders_per_account=2,
    max_level_total_lots=10,
)
MARKETS = {s.market_id: s for s in (BTC_PERP, ETH_PERP_BANDED, PRED_YES, AAPL_CLOSED, WHALE, TIGHT)}

ALICE, BOB, CAROL = 11, 22, 33
BUY, SELL = 0, 1

BOOKS = {"fast": OrderBook, "reference": ReferenceBook}
# every engine implementation the behaviour tests run against: the Python twin with either book, and
# the compiled core (its events decoded and delivered through the same EventSink methods)
ENGINES = ("fast", "reference", "native")


def make_engine(
    book: str = "fast", markets: dict[int, MarketSpec] | None = None, sink: Any = None
) -> tuple[Any, EventRecorder]:
    """An engine over MARKETS recording its events, validating after every command."""
    rec = sink if sink is not None else EventRecorder()
    if book == "native":
        return NativeEngine(markets or MARKETS, rec, debug_validate=True), rec
    engine = MatchingEngine(markets or MARKETS, rec, book_factory=BOOKS[book], debug_validate=True)
    return engine, rec


def new_order(market: int = 1, **fields: int) -> bytes:
    return encode(MsgType.NEW_ORDER, market, **fields)


def cmd(msg_type: MsgType, market: int = 1, **fields: int) -> bytes:
    return encode(msg_type, market, **fields)


ref_engine = functools.partial(MatchingEngine, book_factory=ReferenceBook)


# ---- random command streams (property, differential and snapshot tests) -----------------------------
SMALL = MarketSpec(
    market_id=7,
    symbol="SMALL",
    kind=MarketKind.SPOT,
    tick_size_micro=1,
    lot_size_atoms=100_000_000,
    max_size_lots=1_000,
    max_price_ticks=1_000,
)
SMALL_MARKETS = {
    7: SMALL,
    8: MarketSpec(
        market_id=8,
        symbol="SMALL-2",
        kind=MarketKind.SPOT,
        tick_size_micro=1,
        lot_size_atoms=100_000_000,
        max_size_lots=1_000,
        max_price_ticks=1_000,
    ),
}


def command_from_draw(kind: int, a: int, b: int, c: int, d: int, e: int, f: int, oid: int) -> bytes:
    """Map a tuple of small random ints to one wire command on SMALL_MARKETS (7 mostly, 8 sometimes).

    kind 0-5 new orders (limit, all tifs, post-only/slide, STP modes, stops, market), 6 cancel,
    7 amend, 8 cancel-all, 9 clock, 10 mark price, 11 cancel by client id. Accounts 1..3 so
    self-trades happen. Ids of cancels/amends point at earlier orders (``a`` back from ``oid``).
    """
    market = 8 if f % 7 == 0 else 7
    account = 1 + b % 3
    if kind <= 5:
        side = a & 1
        price = 95 + c % 11
        size = 1 + d % 9
        tif = (0, 0, 1, 2, 3, 0)[kind]
        otype = 0
        flags = ((e % 5) << 4) if f % 3 == 0 else 0
        trigger = expire = 0
        if kind == 0 and e % 4 == 0:
            flags |= 1 if f & 1 else 2  # post-only, or slide
        if tif == 3:
            expire = 1_000 + 100 * (d % 20)
        if kind == 5:
            otype = 1 + (e % 5)  # market, stops
            if otype in (1, 3, 5):
                tif = 1 if f & 1 else 2
            if otype >= 2:
                trigger = 95 + (a * 7 + c) % 11
        return encode(
            MsgType.NEW_ORDER,
            market,
            order_id=oid,
            client_order_id=(oid if f % 2 else 0),
            price_ticks=price,
            size_lots=size,
            trigger_price_ticks=trigger,
            expire_ns=expire,
            account=account,
            side=side,
            tif=tif,
            order_type=otype,
            flags=flags,
        )
    target = max(1, oid - 1 - a % 40)
    if kind == 6:
        return encode(MsgType.CANCEL, market, order_id=target, account=account if c % 4 else 1 + (b + 1) % 3)
    if kind == 7:
        return encode(
            MsgType.AMEND,
            market,
            order_id=target,
            account=account,
            price_ticks=(95 + c % 11) if d % 2 else 0,
            size_lots=(1 + e % 12) if d % 3 else 0,
        )
    if kind == 8:
        return encode(MsgType.CANCEL_ALL, market if c % 2 else 0xFFFF_FFFF, account=account)
    if kind == 9:
        return encode(MsgType.CLOCK, market, now_ns=100 * oid + 37 * (c % 5))
    if kind == 10:
        return encode(MsgType.MARK_PRICE, market, price_ticks=95 + c % 11)
    return encode(MsgType.CANCEL, market, client_order_id=target, account=account)


def random_commands(n: int, seed: int) -> list[bytes]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        kind = rng.choices(range(12), weights=[30, 8, 8, 5, 3, 5, 15, 8, 1, 3, 3, 2])[0]
        vals = [rng.randrange(1000) for _ in range(6)]
        out.append(command_from_draw(kind, *vals, oid=i))
    return out
