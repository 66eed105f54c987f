"""SDK request correlation and event queue, in-process: every pending future ends, exactly once."""

from __future__ import annotations

import asyncio

import pytest

from engine.types.enums import MsgType, RejectCode
from gateway.sdk.errors import ConnectionClosed, OrderRejected
from gateway.sdk.event_queue import EventQueue
from gateway.sdk.requests import PendingRequests, order_key


async def test_answers_resolve_the_right_future_and_a_close_fails_the_rest() -> None:
    p = PendingRequests()
    rid, req = p.new_request()
    place = p.new_place(42)
    cancel_by_coid = p.new_cancel(order_key(0, 42))
    amend = p.new_amend(order_key(9, 0))
    other = p.new_place(43)

    assert p.answer(rid, {"type": "pong"}) and (await req) == {"type": "pong"}
    assert not p.answer(rid + 1, {}) and not p.refuse("nope", RuntimeError())
    p.placed(42, "ack")
    assert await place == "ack"
    p.cancelled(9, 42, "gone")  # named by client order id: found by either key
    assert await cancel_by_coid == "gone"
    p.rejected(MsgType.AMEND, 9, 0, OrderRejected(RejectCode.UNKNOWN_ORDER))
    with pytest.raises(OrderRejected):
        await amend
    p.rejected(MsgType.AMEND, 9, 0, OrderRejected(RejectCode.UNKNOWN_ORDER))  # twice: no error
    p.fail_all(ConnectionClosed(1006, "lost"))
    with pytest.raises(ConnectionClosed):
        await other
    assert not (p.requests or p.places or p.cancels or p.amends)


async def test_event_queue_keeps_or_drops_on_request() -> None:
    kept, dropped = EventQueue(True), EventQueue(False)
    for q in (kept, dropped):
        q.push("event")
    assert kept.get_nowait() == "event" and dropped.empty()
    dropped.put_nowait("marker")  # markers go in regardless (the client puts them directly)
    assert await asyncio.wait_for(dropped.get(), 1) == "marker"
