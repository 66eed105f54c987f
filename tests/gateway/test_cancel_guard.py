"""Cancel on disconnect and the dead man's switch, on a real stack (opt-in, per session / account)."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, GatewayStack

from gateway.sdk import HxClient, RequestRejected

pytestmark = pytest.mark.timeout(90)


async def _bids(book) -> list[int]:  # type: ignore[no-untyped-def]
    await asyncio.sleep(0.5)
    return [p for p, _, _ in book.bids()]


async def test_cancel_on_disconnect_cancels_the_account_and_only_when_opted_in():
    with GatewayStack() as st:
        key = Account.create().key
        watcher = await HxClient(st.url, "bin").connect()
        book = await watcher.subscribe_book(BTC_USD)
        try:
            plain = await HxClient(st.url, "bin").connect()
            await plain.login(key)
            await plain.place(BTC_USD, "buy", 1000, 1, client_order_id=1)
            await plain.close()  # not opted in: the order stays
            assert await _bids(book) == [1000]

            guarded = await HxClient(st.url, "json").connect()
            await guarded.login(key)
            reply = await guarded.request({"op": "cancel_on_disconnect", "enabled": True})
            assert reply["enabled"] is True
            await guarded.place(BTC_USD, "buy", 1001, 1, client_order_id=2)
            assert await _bids(book) == [1001, 1000]
            await guarded.close()  # every order of the account goes, the other session's too
            assert await _bids(book) == []
        finally:
            await watcher.close()


async def test_dead_man_switch_fires_unless_renewed():
    with GatewayStack() as st:
        watcher = await HxClient(st.url, "bin").connect()
        book = await watcher.subscribe_book(BTC_USD)
        c = await HxClient(st.url, "bin").connect()
        try:
            await c.login(Account.create().key)
            with pytest.raises(RequestRejected) as exc:
                await c.request({"op": "dead_man", "timeout_ms": 10})
            assert exc.value.reason == "BAD_FIELD"
            await c.place(BTC_USD, "buy", 1000, 1, client_order_id=1)
            await c.request({"op": "dead_man", "timeout_ms": 1500})
            for _ in range(4):  # renewed every 0.5 s for 2 s: never fires
                await asyncio.sleep(0.5)
                await c.request({"op": "dead_man", "timeout_ms": 1500})
            assert await _bids(book) == [1000]
            await asyncio.sleep(2.0)  # not renewed: fires
            assert await _bids(book) == []
            notices = []
            while not c.control.empty():
                notices.append(c.control.get_nowait())
            assert any(n.get("type") == "dead_man_fired" for n in notices)
            # disarmed by 0
            await c.place(BTC_USD, "buy", 999, 1, client_order_id=2)
            await c.request({"op": "dead_man", "timeout_ms": 1000})
            await c.request({"op": "dead_man", "timeout_ms": 0})
            await asyncio.sleep(1.6)
            assert await _bids(book) == [999]
        finally:
            await c.close()
            await watcher.close()
