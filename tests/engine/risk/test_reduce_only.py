"""Reduce-only orders stay reduce-only while they rest (engine/risk/reduce_only.py): risk cancels
those the holding no longer covers, and refuses new ones or amends that would not fit with the
others. Through an in-process exchange (risk + the matching core), on both risk engines."""

from __future__ import annotations

from typing import Any

import pytest
from risk_harness import BTC_PERP, ETH, ETH_USDC, USDC, LocalExchange, both_engines  # noqa: F401 (a fixture, used by name)

from engine.types.enums import CancelReason, MsgType, OrderFlag, RejectCode
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES

pytestmark = pytest.mark.usefixtures("both_engines")

ALICE, BOB, CAROL = 11, 12, 13
USDC_10K = 10_000 * 10**6
BUY, SELL = 0, 1
RO = int(OrderFlag.REDUCE_ONLY)


def _long_ten() -> LocalExchange:
    """Alice long 10 lots of the BTC perp (bought from Bob at $50,000); Carol funded."""
    x = LocalExchange()
    for account in (ALICE, BOB, CAROL):
        x.deposit(account, USDC, USDC_10K)
    x.order(BOB, BTC_PERP, SELL, 500_000, 10)
    x.order(ALICE, BTC_PERP, BUY, 500_000, 10)
    assert x.risk.book.perp_size[x.row(ALICE), 0] == 10 * 100_000
    return x


def _of(x: LocalExchange, account: int, kind: MsgType) -> list[dict[str, Any]]:
    return [e for e in x.risk_events if e["msg_type"] == kind and e["account"] == account]


def _resting(x: LocalExchange, account: int) -> list[tuple[int, int]]:
    """(client order id, open lots) of the account's resting orders, by the shard's book."""
    return sorted((o[6], o[4]) for o in x.engine.book(BTC_PERP).iter_orders() if o[1] == account)


def test_resting_reduce_only_orders_are_cancelled_newest_first_as_the_position_shrinks() -> None:
    x = _long_ten()
    six = x.order(ALICE, BTC_PERP, SELL, 600_000, 6, flags=RO)
    four = x.order(ALICE, BTC_PERP, SELL, 610_000, 4, flags=RO)
    assert _resting(x, ALICE) == [(six, 6), (four, 4)]
    x.order(ALICE, BTC_PERP, SELL, 620_000, 1, flags=RO)  # 6 + 4 + 1 > 10: all together must fit
    assert x.last_reject() == RejectCode.REDUCE_ONLY_WOULD_INCREASE
    x.order(CAROL, BTC_PERP, BUY, 490_000, 5)
    x.order(ALICE, BTC_PERP, SELL, 490_000, 5)  # an ordinary sell: long 5 now
    assert x.risk.book.perp_size[x.row(ALICE), 0] == 5 * 100_000
    # oldest first: the 6 no longer fits in 5 and is cancelled; the 4 does and stays
    assert _resting(x, ALICE) == [(four, 4)]
    cancelled = _of(x, ALICE, MsgType.CANCELLED)
    assert [(c["client_order_id"], c["reason"]) for c in cancelled] == [(six, CancelReason.REDUCE_ONLY)]
    assert not [r for r in _of(x, ALICE, MsgType.REJECTED) if r["command"] == MsgType.CANCEL]
    assert not x.risk.reduce_only.cancels
    # flat: nothing is left to reduce, so the last one goes too
    x.order(CAROL, BTC_PERP, BUY, 490_000, 5)
    x.order(ALICE, BTC_PERP, SELL, 490_000, 5)
    assert x.risk.book.perp_size[x.row(ALICE), 0] == 0
    assert _resting(x, ALICE) == []
    assert [c["reason"] for c in _of(x, ALICE, MsgType.CANCELLED)] == [CancelReason.REDUCE_ONLY] * 2
    assert not x.risk.reduce_only and x.risk.book.reserved[x.row(ALICE)] == 0


def test_a_reduce_only_order_that_fills_itself_cancels_nothing() -> None:
    x = _long_ten()
    ro = x.order(ALICE, BTC_PERP, SELL, 600_000, 10, flags=RO)
    x.order(CAROL, BTC_PERP, BUY, 600_000, 4)  # takes 4 of it: long 6, 6 open
    assert _resting(x, ALICE) == [(ro, 6)]
    x.order(CAROL, BTC_PERP, BUY, 600_000, 6)
    assert x.risk.book.perp_size[x.row(ALICE), 0] == 0
    assert not _of(x, ALICE, MsgType.CANCELLED) and not x.risk.reduce_only


def test_an_amend_may_not_raise_a_reduce_only_order_past_the_position() -> None:
    x = _long_ten()
    ro = x.order(ALICE, BTC_PERP, SELL, 600_000, 6, flags=RO)
    before = x.risk.state_hash()
    x.send(encode(MsgType.AMEND, BTC_PERP, account=ALICE, client_order_id=ro, size_lots=11))
    assert x.last_reject() == RejectCode.REDUCE_ONLY_WOULD_INCREASE
    assert _resting(x, ALICE) == [(ro, 6)]
    x.risk_events.clear()
    assert x.risk.state_hash() != before  # (the reject's private sequence number only)
    x.send(encode(MsgType.AMEND, BTC_PERP, account=ALICE, client_order_id=ro, size_lots=10))
    assert _resting(x, ALICE) == [(ro, 10)]


def test_a_client_order_id_reused_after_its_reduce_only_order_ended_is_an_ordinary_order() -> None:
    x = _long_ten()
    ro = x.order(ALICE, BTC_PERP, SELL, 600_000, 5, flags=RO)
    x.send(encode(MsgType.CANCEL, BTC_PERP, account=ALICE, client_order_id=ro))
    x.order(ALICE, BTC_PERP, SELL, 600_000, 20, client_order_id=ro)  # the same id, no flag: may flip
    x.order(CAROL, BTC_PERP, BUY, 490_000, 5)
    x.order(ALICE, BTC_PERP, SELL, 490_000, 5)  # long 5: a reduce-only 20 would be cancelled now
    assert _resting(x, ALICE) == [(ro, 20)]
    assert not x.risk.reduce_only


def test_when_the_order_ends_before_risks_cancel_arrives_the_account_sees_no_reject() -> None:
    """Risk's cancel and a fill of the order cross: the shard refuses the cancel (UNKNOWN_ORDER).
    That reject is risk's: the account never sent a cancel, so it never sees one."""
    x = _long_ten()
    ro = x.order(ALICE, BTC_PERP, SELL, 600_000, 6, flags=RO)
    x.order(CAROL, BTC_PERP, BUY, 490_000, 5)
    risk = x.risk
    risk.handle_command(encode(MsgType.NEW_ORDER, BTC_PERP, account=ALICE, side=SELL, price_ticks=490_000,
                               size_lots=5, client_order_id=900), 0)  # fmt: skip
    risk.end_of_record()
    orders, _ = risk.take_outputs()
    out = bytearray()
    for off in range(0, len(orders[0]), SLOT_BYTES):  # Alice's sell fills: long 5
        x.engine.handle(orders[0], off)
        out += x.writer.take()
    for off in range(0, len(out), SLOT_BYTES):
        risk.apply_event(out, off)
    risk.end_of_record()
    orders, _ = risk.take_outputs()
    cancel = bytes(orders[0])
    assert len(cancel) == SLOT_BYTES and decode(cancel, 0)["client_order_id"] == ro  # risk's, not sent yet
    x.order(BOB, BTC_PERP, BUY, 600_000, 6)  # Bob takes the order first: the position flips short 1
    assert _resting(x, ALICE) == []
    x.risk_events.clear()
    x.engine.handle(cancel, 0)
    refused = x.writer.take()
    assert refused[0] == MsgType.REJECTED
    risk.apply_event(refused, 0)
    risk.end_of_record()
    _, events = risk.take_outputs()
    assert events == b"" and not risk.reduce_only.cancels and not risk.reduce_only
    risk.validate()


def test_reduce_only_state_survives_a_snapshot() -> None:
    x = _long_ten()
    x.order(ALICE, BTC_PERP, SELL, 600_000, 6, flags=RO)
    y = LocalExchange()
    y.risk.restore(x.risk.snapshot())
    assert y.risk.state_hash() == x.risk.state_hash()
    live = x.risk._reduce_only_listed
    assert (
        y.risk.reduce_only.to_json(live) == x.risk.reduce_only.to_json(live) != {"orders": [], "cancels": []}
    )


def test_a_refused_reduce_only_order_leaves_the_state_hash_as_it_was() -> None:
    """Bad input changes nothing: a reduce-only order refused after an earlier one ended (its look
    at the account drops the ended one) leaves the same state hash, but for the reject's number."""
    x = _long_ten()
    six = x.order(ALICE, BTC_PERP, SELL, 600_000, 6, flags=RO)
    ended = x.order(ALICE, BTC_PERP, SELL, 600_000, 3, flags=RO)
    x.send(encode(MsgType.CANCEL, BTC_PERP, account=ALICE, client_order_id=ended))
    assert x.risk.reduce_only.orders == {ALICE: {BTC_PERP: [six, ended]}}  # (listed until a look)
    y = LocalExchange()
    y.risk.restore(x.risk.snapshot())
    x.order(ALICE, BTC_PERP, SELL, 600_000, 5, flags=RO)  # 6 + 5 > 10
    assert x.last_reject() == RejectCode.REDUCE_ONLY_WOULD_INCREASE
    assert x.risk.reduce_only.orders == {ALICE: {BTC_PERP: [six]}}  # the look dropped the ended one
    y.risk.next_seq(ALICE)  # (the reject's private sequence number, and the record's end)
    y.risk.end_of_record()
    assert x.risk.state_hash() == y.risk.state_hash()


def test_a_restored_engine_keeps_the_same_state_hash_whatever_order_its_entries_were_made_in() -> None:
    """Alice's only reduce-only order (BTC perp) ended: her entry is still listed live, but not in the
    snapshot. Bob places one, then Alice one in another market (ETH spot, which does not look at her
    perp entry): the live engine lists Alice before Bob, one restored from the snapshot Bob before
    Alice. The snapshot form is sorted, so both keep the same state hash."""
    x = _long_ten()  # (Bob is short the 10 Alice bought)
    x.deposit(ALICE, ETH, 10**8)
    x.send(encode(MsgType.MARK_PRICE, ETH_USDC, price_ticks=200_000))
    ended = x.order(ALICE, BTC_PERP, SELL, 600_000, 2, flags=RO)
    x.send(encode(MsgType.CANCEL, BTC_PERP, account=ALICE, client_order_id=ended))
    y = LocalExchange()
    y.risk.restore(x.risk.snapshot())
    for ex in (x, y):
        for account, market, side, price, coid in (
            (BOB, BTC_PERP, BUY, 400_000, 70),
            (ALICE, ETH_USDC, SELL, 300_000, 71),
        ):
            ex.risk.handle_command(encode(MsgType.NEW_ORDER, market, account=account, side=side, price_ticks=price,
                                          size_lots=10, client_order_id=coid, flags=RO), 0)  # fmt: skip
            ex.risk.end_of_record()
    assert list(x.risk.reduce_only.orders) == [ALICE, BOB] and list(y.risk.reduce_only.orders) == [BOB, ALICE]
    assert x.risk.state_hash() == y.risk.state_hash()
