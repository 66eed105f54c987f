"""Ingress on a real stack: a frame the gateway refuses is never executed, in part or in full."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, GatewayStack

from gateway.sdk import Disconnected, HxClient

pytestmark = pytest.mark.timeout(90)
MAX_FRAME_BYTES = 64 * 1024  # the gateway's default: 1,024 structs


def drain(q: asyncio.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


async def test_oversize_binary_frame_is_closed_1009_and_nothing_in_it_trades():
    """1,025 resting orders in one frame (64 bytes over the limit): closed with 1009, none rests."""
    with GatewayStack() as st:
        key = Account.create().key
        c = await HxClient(st.url, "bin").connect()
        await c.login(key)
        frame = b"".join(
            c.new_order_struct(BTC_USD, "buy", 1000 + k, 1, client_order_id=k + 1, post_only=True)
            for k in range(MAX_FRAME_BYTES // 64 + 1)
        )
        assert len(frame) > MAX_FRAME_BYTES
        c.send_raw(frame)
        await c.wait_closed(10)
        assert c.close_info is not None and c.close_info[0] == 1009, c.close_info
        answers = [e for e in drain(c.events) if not isinstance(e, Disconnected)]
        assert not answers, "an order of the refused frame was answered"
        # the same account on a new connection: the book is empty and the gateway placed nothing
        watcher = await HxClient(st.url, "bin").connect()
        try:
            await watcher.login(key)
            await asyncio.sleep(0.5)  # anything forwarded would have rested by now
            book = await watcher.subscribe_book(BTC_USD)
            assert book.as_tuple() == ((), ()), "orders of a refused frame rested on the book"
            stats = await watcher.request({"op": "stats"})
            assert stats["orders"] == 0
            # a frame at the limit is still accepted whole
            ok = await watcher.place_many(
                [{"market": BTC_USD, "side": "buy", "price": 500 + k, "size": 1} for k in range(3)]
            )
            assert len(ok) == 3 and all(getattr(r, "order_id", 0) for r in ok)
        finally:
            await watcher.close()


async def test_an_empty_binary_frame_is_answered_bad_length():
    """Every frame gets an answer: an empty one from a logged-in client was silently dropped."""
    from engine.types.enums import RejectCode
    from gateway.sdk import OrderRejectedEvent

    with GatewayStack() as st:
        c = await HxClient(st.url, "bin").connect()
        try:
            await c.login(Account.create().key)
            c.send_raw(b"")
            ev = await asyncio.wait_for(c.events.get(), 3)
            assert isinstance(ev, OrderRejectedEvent) and (ev.code, ev.seq) == (RejectCode.BAD_LENGTH, 0)
        finally:
            await c.close()


async def test_a_text_frame_over_the_frame_limit_is_closed_1009_and_one_over_the_json_limit_is_answered():
    """docs/gateway.md's limits: a JSON frame over 16 KiB gets BAD_JSON and the connection stays;
    over the 64 KiB frame limit it is closed with 1009, as a binary frame is."""
    import orjson

    from engine.types.enums import RejectCode

    with GatewayStack() as st:
        c = await HxClient(st.url, "json").connect()
        try:
            pad = "x" * (20 * 1024)
            c.send_raw(orjson.dumps({"op": "markets", "id": 1, "pad": pad}), text=True)
            reply = await c.request({"op": "markets"})  # the connection is still up after the error
            assert reply.get("type") == "markets", reply
            error = c.control.get_nowait()  # (the gateway refused it unparsed: no id to match)
            assert (error.get("type"), error.get("code")) == ("error", int(RejectCode.BAD_JSON)), error
            c.send_raw(orjson.dumps({"op": "markets", "pad": "x" * (MAX_FRAME_BYTES + 1)}), text=True)
            await c.wait_closed(10)
            assert c.close_info is not None and c.close_info[0] == 1009, c.close_info
        finally:
            await c.close()
