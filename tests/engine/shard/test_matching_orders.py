"""Every order type, flag, STP mode and command, against both books (fast and reference)."""

from __future__ import annotations

import matching_constants as C
import pytest

from engine.types.enums import CancelReason, MarketStatus, MsgType, OrderFlag, OrderType, RejectCode, StpMode
from engine.wire.layout import ALL_MARKETS

M = C.BTC_PERP.market_id
ALICE, BOB, CAROL, BUY, SELL = C.ALICE, C.BOB, C.CAROL, C.BUY, C.SELL
STP = 4  # OrderFlag bits 4-6


@pytest.fixture(params=C.ENGINES)
def eng(request):  # type: ignore[no-untyped-def]
    return C.make_engine(request.param)


def place(e, oid, account, side, price, size, tif=0, otype=0, flags=0, trigger=0, expire=0, coid=0, market=M):  # type: ignore[no-untyped-def]
    return e.place(market, oid, coid, account, side, price, size, tif, otype, flags, trigger, expire)


def fills(rec):  # type: ignore[no-untyped-def]
    """(taker, maker, price, size) of every FILL."""
    return [(f[3], f[4], f[5], f[6]) for f in rec.of(MsgType.FILL)]


def cancels(rec):  # type: ignore[no-untyped-def]
    """(order id, size, reason) of every CANCELLED."""
    return [(c[3], c[5], c[8]) for c in rec.of(MsgType.CANCELLED)]


def rejects(rec):  # type: ignore[no-untyped-def]
    return [r[7] for r in rec.of(MsgType.REJECTED)]  # reason


def resting(e, market=M):  # type: ignore[no-untyped-def]
    return [(o[0], o[2], o[3], o[4]) for o in e.book(market).iter_orders()]


# ---- limit orders -------------------------------------------------------------------------------
def test_gtc_rests_and_emits_accepted_l2_bbo(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    assert place(e, 1, ALICE, BUY, 100, 5) == 0
    kinds = [ev[0] for ev in rec.events]
    assert kinds == [MsgType.ACCEPTED, MsgType.L2_DELTA, MsgType.BBO]
    assert rec.events[1][3:] == (100, 5, 1, BUY)  # price, size, count, side
    assert rec.events[2][3:7] == (100, 5, 0, 0)
    assert [ev[2] for ev in rec.events] == [1, 2, 3]  # gap-free per-market seq
    assert resting(e) == [(1, BUY, 100, 5)]


def test_price_time_priority_and_maker_price(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 101, 3)
    place(e, 2, BOB, SELL, 100, 2)
    place(e, 3, CAROL, SELL, 100, 2)
    place(e, 4, 44, BUY, 105, 6)  # GTC crossing: sweeps 100 (2 then 3) then 101
    assert fills(rec) == [(4, 2, 100, 2), (4, 3, 100, 2), (4, 1, 101, 2)]
    assert resting(e) == [(1, SELL, 101, 1)]
    trades = rec.of(MsgType.TRADE)
    assert [(t[3], t[4], t[6]) for t in trades] == [(100, 2, BUY), (100, 2, BUY), (101, 2, BUY)]
    fl = [f[10] for f in rec.of(MsgType.FILL)]
    assert fl == [2, 2, 1]  # maker done, maker done, taker done


def test_gtc_remainder_rests_after_sweep(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 2)
    place(e, 2, BOB, BUY, 100, 5)
    assert resting(e) == [(2, BUY, 100, 3)]
    assert e.book(M).bbo() == (100, 3, 0, 0)


def test_ioc_fills_what_it_can_and_cancels_rest(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 2)
    assert place(e, 2, BOB, BUY, 101, 5, tif=1) == 0
    assert fills(rec) == [(2, 1, 100, 2)]
    assert cancels(rec) == [(2, 3, CancelReason.IOC_REMAINDER)]
    assert resting(e) == []


def test_fok_fills_in_full_or_rejects(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 2)
    place(e, 2, ALICE, SELL, 101, 2)
    h = e.state_hash()
    assert place(e, 3, BOB, BUY, 101, 5, tif=2) == RejectCode.FOK_NOT_FILLABLE
    assert e.state_hash() == h
    assert place(e, 4, BOB, BUY, 100, 3, tif=2) == RejectCode.FOK_NOT_FILLABLE  # limit excludes 101
    assert place(e, 5, BOB, BUY, 101, 4, tif=2) == 0
    assert fills(rec) == [(5, 1, 100, 2), (5, 2, 101, 2)]


def test_gtt_expires_on_clock_only(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    e.advance_clock(1_000)
    assert place(e, 1, ALICE, BUY, 100, 1, tif=3, expire=5_000) == 0
    assert place(e, 2, ALICE, BUY, 99, 1, tif=3, expire=3_000) == 0
    assert place(e, 3, BOB, BUY, 98, 1, tif=3, expire=900) == RejectCode.EXPIRED
    assert place(e, 3, BOB, BUY, 98, 1, tif=3) == RejectCode.BAD_EXPIRY
    assert place(e, 3, BOB, BUY, 98, 1, expire=9_000) == RejectCode.BAD_EXPIRY
    e.advance_clock(4_999)
    assert cancels(rec) == [(2, 1, CancelReason.EXPIRED)]
    e.advance_clock(5_000)
    assert cancels(rec)[1:] == [(1, 1, CancelReason.EXPIRED)]
    assert resting(e) == []
    assert e.advance_clock(10) == RejectCode.STALE_SEQUENCE


# ---- post-only -----------------------------------------------------------------------------------
def test_post_only_rejects_when_taking_and_rests_otherwise(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 2)
    po = int(OrderFlag.POST_ONLY)
    assert place(e, 2, BOB, BUY, 100, 1, flags=po) == RejectCode.POST_ONLY_WOULD_TAKE
    assert place(e, 3, BOB, BUY, 99, 1, flags=po) == 0
    assert fills(rec) == []


def test_post_only_slide_reprices_behind_the_touch(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 2)
    place(e, 2, ALICE, BUY, 90, 2)
    slide = int(OrderFlag.POST_ONLY_SLIDE)
    assert place(e, 3, BOB, BUY, 105, 1, flags=slide) == 0
    assert place(e, 4, BOB, SELL, 80, 1, flags=slide) == 0
    assert fills(rec) == []
    assert (3, BUY, 99, 1) in resting(e) and (4, SELL, 100, 1) in resting(e)  # behind the new best bid 99
    acc = rec.of(MsgType.ACCEPTED)
    assert acc[-2][5] == 99 and acc[-1][5] == 100  # ACCEPTED carries the slid price


def test_post_only_flags_invalid_on_ioc_and_market(eng) -> None:  # type: ignore[no-untyped-def]
    e, _ = eng
    po = int(OrderFlag.POST_ONLY)
    assert place(e, 1, BOB, BUY, 100, 1, tif=1, flags=po) == RejectCode.BAD_FLAGS
    assert place(e, 1, BOB, BUY, 100, 1, tif=1, otype=1, flags=po) == RejectCode.BAD_FLAGS


# ---- market orders ---------------------------------------------------------------------------------
def test_market_order_respects_worst_price_and_cancels_rest(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 2)
    place(e, 2, ALICE, SELL, 110, 2)
    assert place(e, 3, BOB, BUY, 105, 5, tif=1, otype=1) == 0
    assert fills(rec) == [(3, 1, 100, 2)]
    assert cancels(rec) == [(3, 3, CancelReason.MARKET_NO_LIQUIDITY)]
    assert place(e, 4, BOB, BUY, 105, 5, tif=1, otype=1) == RejectCode.NO_LIQUIDITY
    assert place(e, 4, BOB, BUY, 105, 5, tif=0, otype=1) == RejectCode.BAD_TIF
    assert place(e, 4, BOB, BUY, 120, 2, tif=2, otype=1) == 0  # market FOK
    assert resting(e) == []


def test_reduce_only_is_carried(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    ro = int(OrderFlag.REDUCE_ONLY)
    assert place(e, 1, ALICE, SELL, 100, 2, flags=ro) == 0
    assert rec.of(MsgType.ACCEPTED)[0][12] == ro  # flags


# ---- stops -----------------------------------------------------------------------------------------
def test_stop_orders_trigger_on_mark_in_order_id_order(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    e.set_mark(M, 100)
    place(e, 1, ALICE, SELL, 120, 10)  # liquidity
    assert place(e, 2, BOB, BUY, 130, 3, otype=OrderType.STOP_LIMIT, trigger=110) == 0
    assert place(e, 3, CAROL, BUY, 125, 2, tif=1, otype=OrderType.STOP_MARKET, trigger=105) == 0
    assert place(e, 4, CAROL, SELL, 90, 2, otype=OrderType.TAKE_PROFIT_LIMIT, trigger=120) == 0
    assert (
        place(e, 5, CAROL, BUY, 90, 2, otype=OrderType.STOP_LIMIT, trigger=95) == RejectCode.BAD_TRIGGER_PRICE
    )
    assert place(e, 5, CAROL, BUY, 90, 2, otype=OrderType.STOP_LIMIT) == RejectCode.BAD_TRIGGER_PRICE
    assert place(e, 5, CAROL, BUY, 90, 2, trigger=95) == RejectCode.BAD_TRIGGER_PRICE
    assert resting(e) == [(1, SELL, 120, 10)]
    e.set_mark(M, 104)
    assert rec.of(MsgType.TRIGGERED) == []
    e.set_mark(M, 112)  # fires 2 and 3 (order-id order), not 4
    assert [t[3] for t in rec.of(MsgType.TRIGGERED)] == [2, 3]
    assert fills(rec) == [(2, 1, 120, 3), (3, 1, 120, 2)]
    e.set_mark(M, 121)
    assert [t[3] for t in rec.of(MsgType.TRIGGERED)] == [2, 3, 4]
    assert fills(rec)[-1] == (4, 4, 120, 2) or resting(e)  # sell 90 takes nothing: the book has no bids
    assert (4, SELL, 90, 2) in resting(e)


def test_stop_cancel_and_amend_and_cancel_all(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, BUY, 130, 3, otype=OrderType.STOP_LIMIT, trigger=110, coid=77)
    assert (
        place(e, 2, ALICE, BUY, 130, 3, otype=OrderType.STOP_LIMIT, trigger=110, coid=77)
        == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    )
    assert e.amend(M, 1, 0, ALICE, 131, 4) == 0
    assert e.cancel(M, 0, 77, BOB) == RejectCode.UNKNOWN_ORDER
    assert e.cancel(M, 1, 0, BOB) == RejectCode.UNKNOWN_ORDER  # (Alice's: not Bob's to know of)
    assert e.cancel(M, 0, 77, ALICE) == 0
    assert cancels(rec) == [(1, 4, CancelReason.USER)]
    place(e, 3, ALICE, BUY, 130, 3, otype=OrderType.STOP_LIMIT, trigger=110)
    e.cancel_all(M, ALICE)
    assert cancels(rec)[-1] == (3, 3, CancelReason.CANCEL_ALL)


def test_triggered_stop_outside_band_is_cancelled(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    mid = C.ETH_PERP_BANDED.market_id
    e.set_mark(mid, 100_000)
    assert place(e, 1, ALICE, BUY, 200_000, 10, otype=OrderType.STOP_LIMIT, trigger=101_000, market=mid) == 0
    e.set_mark(mid, 101_000)
    assert cancels(rec) == [(1, 10, CancelReason.PRICE_BAND)]


# ---- self-trade prevention -----------------------------------------------------------------------
def _stp_book(e):  # type: ignore[no-untyped-def]
    place(e, 1, BOB, SELL, 100, 2)
    place(e, 2, ALICE, SELL, 100, 3)
    place(e, 3, BOB, SELL, 101, 2)


def test_stp_none_allows_self_trade(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    _stp_book(e)
    place(e, 9, ALICE, BUY, 101, 7)
    assert fills(rec) == [(9, 1, 100, 2), (9, 2, 100, 3), (9, 3, 101, 2)]


def test_stp_cancel_newest(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    _stp_book(e)
    place(e, 9, ALICE, BUY, 101, 7, flags=StpMode.CANCEL_NEWEST << STP)
    assert fills(rec) == [(9, 1, 100, 2)]
    assert cancels(rec) == [(9, 5, CancelReason.SELF_TRADE)]
    assert resting(e) == [(2, SELL, 100, 3), (3, SELL, 101, 2)]


def test_stp_cancel_oldest(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    _stp_book(e)
    place(e, 9, ALICE, BUY, 101, 7, flags=StpMode.CANCEL_OLDEST << STP)
    assert fills(rec) == [(9, 1, 100, 2), (9, 3, 101, 2)]
    assert cancels(rec) == [(2, 3, CancelReason.SELF_TRADE)]
    assert resting(e) == [(9, BUY, 101, 3)]


def test_stp_cancel_both(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    _stp_book(e)
    place(e, 9, ALICE, BUY, 101, 7, tif=1, flags=StpMode.CANCEL_BOTH << STP)
    assert fills(rec) == [(9, 1, 100, 2)]
    assert cancels(rec) == [(2, 3, CancelReason.SELF_TRADE), (9, 5, CancelReason.SELF_TRADE)]
    assert resting(e) == [(3, SELL, 101, 2)]


def test_stp_decrement(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    _stp_book(e)
    place(e, 9, ALICE, BUY, 101, 4, flags=StpMode.DECREMENT << STP)
    # fills 2 from BOB, then overlaps ALICE's 3 with its remaining 2: both decremented by 2
    assert fills(rec) == [(9, 1, 100, 2)]
    amended = [(a[3], a[6]) for a in rec.of(MsgType.AMENDED)]
    assert amended == [(2, 1)]
    assert cancels(rec) == [(9, 2, CancelReason.SELF_TRADE)]
    assert resting(e) == [(2, SELL, 100, 1), (3, SELL, 101, 2)]


def test_fok_with_stp_counts_only_tradeable_liquidity(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    _stp_book(e)
    assert (
        place(e, 9, ALICE, BUY, 101, 4, tif=2, flags=StpMode.CANCEL_NEWEST << STP)
        == RejectCode.FOK_NOT_FILLABLE
    )
    assert place(e, 9, ALICE, BUY, 101, 4, tif=2, flags=StpMode.CANCEL_OLDEST << STP) == 0
    assert fills(rec) == [(9, 1, 100, 2), (9, 3, 101, 2)]


# ---- amend, cancel, cancel-all ------------------------------------------------------------------
def test_amend_size_down_keeps_priority(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 5)
    place(e, 2, BOB, SELL, 100, 5)
    assert e.amend(M, 1, 0, ALICE, 0, 3) == 0
    assert rec.of(MsgType.AMENDED)[-1][3:] == (1, 0, 100, 3, ALICE, 1)
    place(e, 3, CAROL, BUY, 100, 1)
    assert fills(rec) == [(3, 1, 100, 1)]


def test_amend_size_up_or_price_change_loses_priority(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 5)
    place(e, 2, BOB, SELL, 100, 5)
    assert e.amend(M, 1, 0, ALICE, 0, 6) == 0
    assert rec.of(MsgType.AMENDED)[-1][-1] == 0
    place(e, 3, CAROL, BUY, 100, 1)
    assert fills(rec) == [(3, 2, 100, 1)]
    assert e.amend(M, 2, 0, BOB, 101, 0) == 0
    place(e, 4, CAROL, BUY, 100, 1)
    assert fills(rec)[-1] == (4, 1, 100, 1)


def test_amend_into_cross_matches_as_taker(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, SELL, 100, 2)
    place(e, 2, BOB, BUY, 90, 5)
    assert e.amend(M, 2, 0, BOB, 100, 0) == 0
    assert fills(rec) == [(2, 1, 100, 2)]
    assert resting(e) == [(2, BUY, 100, 3)]
    # amended total counts what was filled: total 5 with 2 filled -> size 4 means open 2
    assert e.amend(M, 2, 0, BOB, 0, 4) == 0
    assert resting(e) == [(2, BUY, 100, 2)]
    assert e.amend(M, 2, 0, BOB, 0, 2) == RejectCode.AMEND_BAD_SIZE
    assert e.amend(M, 2, 0, BOB, 0, 4) == RejectCode.AMEND_NO_CHANGE
    assert e.amend(M, 2, 0, ALICE, 0, 3) == RejectCode.UNKNOWN_ORDER
    assert e.amend(M, 99, 0, BOB, 0, 3) == RejectCode.UNKNOWN_ORDER


def test_another_accounts_order_id_is_answered_as_if_it_did_not_exist(eng) -> None:  # type: ignore[no-untyped-def]
    """Order ids are sequential: a different answer for another account's live order (it was
    OWNER_MISMATCH) would let anyone probe which ids are live, resting or waiting for a trigger.
    Bob's cancel or amend of Alice's order gets the same REJECTED, field for field bar the id he
    named, as one of an id nobody holds, and changes nothing."""
    e, rec = eng
    place(e, 1, ALICE, BUY, 100, 2, coid=7)
    place(e, 2, ALICE, BUY, 130, 3, otype=OrderType.STOP_LIMIT, trigger=110, coid=8)
    h = e.state_hash()
    for live in (1, 2):
        rec.events.clear()
        assert e.cancel(M, live, 0, BOB) == RejectCode.UNKNOWN_ORDER
        assert e.cancel(M, 99, 0, BOB) == RejectCode.UNKNOWN_ORDER
        assert e.amend(M, live, 0, BOB, 101, 5) == RejectCode.UNKNOWN_ORDER
        assert e.amend(M, 99, 0, BOB, 101, 5) == RejectCode.UNKNOWN_ORDER
        cxl_live, cxl_none, amd_live, amd_none = rec.of(MsgType.REJECTED)
        for named, absent in ((cxl_live, cxl_none), (amd_live, amd_none)):
            assert (named[3], absent[3]) == (live, 99)  # the order id Bob named
            assert named[:3] + named[4:] == absent[:3] + absent[4:]
    assert e.state_hash() == h
    assert resting(e) == [(1, BUY, 100, 2)]


def test_post_only_amend_cannot_take(eng) -> None:  # type: ignore[no-untyped-def]
    e, _ = eng
    place(e, 1, ALICE, SELL, 100, 2)
    place(e, 2, BOB, BUY, 90, 5, flags=int(OrderFlag.POST_ONLY))
    h = e.state_hash()
    assert e.amend(M, 2, 0, BOB, 100, 0) == RejectCode.POST_ONLY_WOULD_TAKE
    assert e.state_hash() == h


def test_cancel_and_cancel_by_client_id(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, BUY, 100, 2, coid=501)
    place(e, 2, ALICE, BUY, 100, 3, coid=502)
    assert place(e, 3, ALICE, BUY, 100, 3, coid=502) == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    assert place(e, 3, BOB, BUY, 100, 3, coid=502) == 0  # client ids are per account
    assert e.cancel(M, 0, 501, ALICE) == 0
    assert e.cancel(M, 2, 0, BOB) == RejectCode.UNKNOWN_ORDER
    assert e.cancel(M, 2, 0, ALICE) == 0
    assert e.cancel(M, 2, 0, ALICE) == RejectCode.UNKNOWN_ORDER
    assert cancels(rec) == [(1, 2, CancelReason.USER), (2, 3, CancelReason.USER)]
    assert place(e, 4, ALICE, BUY, 100, 3, coid=501) == 0  # a cancelled client id may be reused


def test_cancel_all_one_market_and_all_markets(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    p = C.PRED_YES.market_id
    place(e, 1, ALICE, BUY, 100, 2)
    place(e, 2, BOB, BUY, 100, 2)
    place(e, 3, ALICE, SELL, 105, 2)
    place(e, 1, ALICE, BUY, 50, 2, market=p)
    e.cancel_all(M, ALICE)
    assert cancels(rec) == [(1, 2, CancelReason.CANCEL_ALL), (3, 2, CancelReason.CANCEL_ALL)]
    assert resting(e) == [(2, BUY, 100, 2)]
    assert resting(e, p) == [(1, BUY, 50, 2)]
    place(e, 4, ALICE, BUY, 99, 2)
    e.cancel_all(ALL_MARKETS, ALICE)
    assert resting(e, p) == [] and resting(e) == [(2, BUY, 100, 2)]
    assert e.cancel_all(999, ALICE) == RejectCode.UNKNOWN_MARKET


# ---- market status, band, limits ---------------------------------------------------------------
def test_market_status_rules(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    place(e, 1, ALICE, BUY, 10, 2, market=C.PRED_YES.market_id)
    p = C.PRED_YES.market_id
    assert e.set_status(p, MarketStatus.HALTED) == 0
    assert place(e, 2, BOB, BUY, 10, 2, market=p) == RejectCode.MARKET_HALTED
    assert e.cancel(p, 1, 0, ALICE) == 0  # cancels allowed while halted
    assert e.set_status(p, MarketStatus.POST_ONLY) == 0
    assert place(e, 2, BOB, BUY, 10, 2, market=p) == RejectCode.MARKET_POST_ONLY
    assert place(e, 2, BOB, BUY, 10, 2, market=p, flags=int(OrderFlag.POST_ONLY)) == 0
    assert e.set_status(p, MarketStatus.OPEN) == 0
    assert e.set_status(p, MarketStatus.RESOLVED) == 0
    assert cancels(rec)[-1] == (2, 2, CancelReason.MARKET_STATUS)
    assert place(e, 3, BOB, BUY, 10, 2, market=p) == RejectCode.MARKET_RESOLVED
    assert e.set_status(p, MarketStatus.OPEN) == RejectCode.MARKET_RESOLVED
    assert e.set_status(p, 17) == RejectCode.BAD_FIELD
    assert place(e, 1, BOB, BUY, 10, 2, market=C.AAPL_CLOSED.market_id) == RejectCode.MARKET_CLOSED
    statuses = [s[3] for s in rec.of(MsgType.MARKET_STATUS)]
    assert statuses == [MarketStatus.HALTED, MarketStatus.POST_ONLY, MarketStatus.OPEN, MarketStatus.RESOLVED]


def test_price_band_around_mark(eng) -> None:  # type: ignore[no-untyped-def]
    e, _ = eng
    mid = C.ETH_PERP_BANDED.market_id
    assert place(e, 1, ALICE, BUY, 200_000, 10, market=mid) == 0  # no mark yet: no band
    e.set_mark(mid, 100_000)
    assert place(e, 2, ALICE, BUY, 94_999, 10, market=mid) == RejectCode.PRICE_OUTSIDE_BAND
    assert place(e, 2, ALICE, BUY, 95_000, 10, market=mid) == 0
    assert place(e, 3, ALICE, SELL, 105_001, 10, market=mid) == RejectCode.PRICE_OUTSIDE_BAND
    assert e.amend(mid, 2, 0, ALICE, 90_000, 0) == RejectCode.PRICE_OUTSIDE_BAND


def test_order_id_watermark_and_engine_assigned_ids(eng) -> None:  # type: ignore[no-untyped-def]
    e, rec = eng
    assert place(e, 10, ALICE, BUY, 100, 1) == 0
    assert place(e, 10, ALICE, BUY, 100, 1) == RejectCode.DUPLICATE_ORDER_ID
    assert place(e, 5, ALICE, BUY, 100, 1) == RejectCode.DUPLICATE_ORDER_ID
    assert place(e, 0, ALICE, BUY, 100, 1) == 0
    assert rec.of(MsgType.ACCEPTED)[-1][3] == 11
    assert place(e, 1, ALICE, BUY, 100, 1, market=C.PRED_YES.market_id) == RejectCode.BAD_PRICE_TICK
    assert place(e, 1, ALICE, BUY, 99, 1, market=C.PRED_YES.market_id) == 0  # ids are per market
