"""Bounded aggregates: a price level's total open size and an account's live orders per market.

Why: a level total is a sum of order sizes; with valid orders it used to overflow int64 in the core
(wrapping to a negative L2 size) and grow without bound in the twin (whose wire writer then failed
to pack it). And an account with unbounded resting orders could exhaust the shard's memory, and on
replay crash it again. Both engines now reject what would pass the market's bounds (LEVEL_FULL,
TOO_MANY_OPEN_ORDERS), and a stop that fires onto a full level is cancelled (CancelReason.LEVEL_FULL).
"""

from __future__ import annotations

import dataclasses

import matching_constants as C
import pytest

from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import CancelReason, MarketKind, MsgType, OrderType, RejectCode
from engine.types.fixed import MAX_LEVEL_TOTAL_LOTS, MAX_OPEN_ORDERS_PER_ACCOUNT
from engine.types.market_spec import MarketConfigError, MarketSpec
from engine.wire.codec import decode

ALICE, BOB, BUY, SELL = C.ALICE, C.BOB, C.BUY, C.SELL
GTC, IOC = 0, 1

# every order may be 2^62 lots: two of them at one price would sum past int64
HUGE = MarketSpec(
    market_id=9,
    symbol="HUGE",
    kind=MarketKind.SPOT,
    tick_size_micro=1,
    lot_size_atoms=1,
    max_size_lots=2**62,
    max_price_ticks=1,
)
# small bounds, to reach them with a few orders
TIGHT = MarketSpec(
    market_id=10,
    symbol="TIGHT",
    kind=MarketKind.SPOT,
    tick_size_micro=1,
    lot_size_atoms=100_000_000,
    max_size_lots=100,
    max_price_ticks=1_000,
    max_open_orders_per_account=3,
    max_level_total_lots=10,
)
MARKETS = {9: HUGE, 10: TIGHT}


@pytest.fixture(params=C.ENGINES)
def eng(request):  # type: ignore[no-untyped-def]
    return C.make_engine(request.param, MARKETS)


def place(e, oid, account, side, price, size, tif=GTC, otype=0, trigger=0, market=10):  # type: ignore[no-untyped-def]
    return e.place(market, oid, 0, account, side, price, size, tif, otype, 0, trigger, 0)


def cancel_reasons(rec):  # type: ignore[no-untyped-def]
    return [e["reason"] for e in rec.named(MsgType.CANCELLED)]


def test_two_valid_orders_cannot_overflow_a_level(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    assert place(e, 1, ALICE, BUY, 1, 2**62, market=9) == 0
    assert place(e, 2, BOB, BUY, 1, 2**62, market=9) == RejectCode.LEVEL_FULL
    assert place(e, 2, BOB, BUY, 1, 1, market=9) == RejectCode.LEVEL_FULL  # exactly at the bound
    assert e.book(9).depth(BUY) == [(1, 2**62, 1)]
    assert all(d["size_lots"] >= 0 for d in rec.named(MsgType.L2_DELTA))
    e.validate()


def test_the_twin_writes_every_level_it_accepts() -> None:
    """The twin's wire writer packs int64 sizes: an unbounded level total made it raise mid-command."""
    e = C.ref_engine(MARKETS, WireEventWriter(), debug_validate=True)
    e.place(9, 1, 0, ALICE, BUY, 1, 2**62)
    assert e.place(9, 2, 0, BOB, BUY, 1, 2**62) == RejectCode.LEVEL_FULL


def test_level_limit_on_new_orders_amends_and_fired_stops(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    assert place(e, 1, ALICE, BUY, 100, 6) == 0
    assert place(e, 2, BOB, BUY, 100, 5) == RejectCode.LEVEL_FULL
    assert place(e, 2, BOB, BUY, 100, 4) == 0  # the level is full now: 10
    assert place(e, 3, BOB, BUY, 100, 1, tif=IOC) == 0  # never rests: no bound to pass
    assert cancel_reasons(rec) == [CancelReason.IOC_REMAINDER]
    assert e.amend(10, 1, 0, ALICE, 0, 7) == RejectCode.LEVEL_FULL  # size up re-queues: 4 + 7 > 10
    assert e.amend(10, 1, 0, ALICE, 0, 5) == 0  # size down keeps its place
    assert e.amend(10, 2, 0, BOB, 0, 5) == 0  # re-queued at the same level: 5 + 5 = 10
    assert e.amend(10, 2, 0, BOB, 99, 0) == 0  # another level
    assert place(e, 4, BOB, BUY, 99, 6) == RejectCode.LEVEL_FULL  # 5 + 6 > 10
    assert place(e, 4, BOB, BUY, 99, 5) == 0
    assert e.amend(10, 1, 0, ALICE, 99, 0) == RejectCode.LEVEL_FULL
    assert e.book(10).depth(BUY) == [(100, 5, 1), (99, 10, 2)]
    # a stop that would rest on the full level 99 when it fires: TRIGGERED, then CANCELLED(LEVEL_FULL)
    e.set_mark(10, 500)
    assert place(e, 5, ALICE, BUY, 99, 1, otype=OrderType.STOP_LIMIT, trigger=600) == 0
    e.set_mark(10, 600)
    assert [t["order_id"] for t in rec.named(MsgType.TRIGGERED)] == [5]
    assert cancel_reasons(rec)[-1] == CancelReason.LEVEL_FULL
    e.validate()


def test_open_orders_per_account_are_capped(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    assert place(e, 1, ALICE, BUY, 100, 1) == 0
    assert place(e, 2, ALICE, BUY, 99, 1) == 0
    e.set_mark(10, 500)
    # waiting stops count too
    assert place(e, 3, ALICE, SELL, 900, 1, otype=OrderType.STOP_LIMIT, trigger=400) == 0
    assert place(e, 4, ALICE, BUY, 98, 1) == RejectCode.TOO_MANY_OPEN_ORDERS
    assert place(e, 4, ALICE, SELL, 400, 1, otype=OrderType.TAKE_PROFIT_LIMIT, trigger=600) == (
        RejectCode.TOO_MANY_OPEN_ORDERS
    )
    assert place(e, 4, BOB, BUY, 98, 1) == 0  # per account
    assert place(e, 5, ALICE, BUY, 900, 1, tif=IOC) == 0  # an order that cannot rest is not capped
    assert cancel_reasons(rec) == [CancelReason.IOC_REMAINDER]
    e.set_mark(10, 400)  # the stop fires and rests: still ALICE's third live order
    assert place(e, 6, ALICE, BUY, 97, 1) == RejectCode.TOO_MANY_OPEN_ORDERS
    assert e.cancel(10, 1, 0, ALICE) == 0
    assert place(e, 6, ALICE, BUY, 97, 1) == 0
    assert e.cancel_all(10, ALICE) == 0
    assert all(place(e, 7 + k, ALICE, BUY, 90 + k, 1) == 0 for k in range(3))
    e.validate()


def test_bounds_are_market_fields_within_the_global_limits() -> None:
    assert (C.BTC_PERP.max_open_orders_per_account, C.BTC_PERP.max_level_total_lots) == (
        MAX_OPEN_ORDERS_PER_ACCOUNT,
        MAX_LEVEL_TOTAL_LOTS,
    )
    for field, bad in (
        ("max_open_orders_per_account", 0),
        ("max_open_orders_per_account", MAX_OPEN_ORDERS_PER_ACCOUNT + 1),
        ("max_level_total_lots", 0),
        ("max_level_total_lots", MAX_LEVEL_TOTAL_LOTS + 1),
    ):
        with pytest.raises(MarketConfigError, match=field):
            dataclasses.replace(TIGHT, **{field: bad})


def test_rejects_carry_the_new_codes_on_the_wire() -> None:
    w = WireEventWriter()
    e = C.ref_engine(MARKETS, w)
    for k in range(3):
        e.place(10, k + 1, 0, ALICE, BUY, 100 - k, 1)
    w.take()
    e.place(10, 4, 0, ALICE, BUY, 50, 1)
    e.place(10, 4, 0, BOB, BUY, 200, 11)  # alone on its level, and still above the level's bound
    got = w.take()
    events = [decode(got[i : i + 64]) for i in range(0, len(got), 64)]
    assert [(ev["msg_type"], ev["reason"]) for ev in events] == [
        (MsgType.REJECTED, RejectCode.TOO_MANY_OPEN_ORDERS),
        (MsgType.REJECTED, RejectCode.LEVEL_FULL),
    ]
