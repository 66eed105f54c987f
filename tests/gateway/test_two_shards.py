"""A gateway over two shards, straight and through risk: markets split across shards, commands for
every market broadcast, private events and books from both."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, ETH_USD, GatewayStack

from gateway.sdk import HxClient, OrderCancelled

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("risk", [0, 1])
async def test_two_shards_split_and_broadcast(risk: int) -> None:
    opts = {"faucet": True} if risk else {}
    with GatewayStack(shards=2, risk=risk, gateway_options=opts) as st:
        assert BTC_USD % 2 != ETH_USD % 2  # the two markets live on different shards
        c = await HxClient(st.url, "json").connect()
        watcher = await HxClient(st.url, "bin").connect()
        try:
            await c.login(Account.create().key)
            if risk:
                await c.faucet("USDC", "1000000")
                await asyncio.sleep(0.5)
            btc_book = await watcher.subscribe_book(BTC_USD)
            eth_book = await watcher.subscribe_book(ETH_USD)
            # one bulk call, both markets: each order reaches its own shard and is answered
            acks = await c.place_many(
                [
                    {"market": BTC_USD, "side": "buy", "price": "100", "size": "0.001", "client_order_id": 1},
                    {"market": ETH_USD, "side": "buy", "price": "10", "size": "0.01", "client_order_id": 2},
                    {
                        "market": BTC_USD,
                        "side": "buy",
                        "price": "99.5",
                        "size": "0.002",
                        "client_order_id": 3,
                    },
                ]
            )
            assert [a.market for a in acks] == [BTC_USD, ETH_USD, BTC_USD]
            await asyncio.sleep(0.3)
            assert [p for p, _, _ in btc_book.bids()] == [200, 199]  # ticks of 0.5
            assert [(p, s) for p, s, _ in eth_book.bids()] == [(1000, 1)]
            # cancel_all for every market goes to both shards
            c.cancel_all()
            cancelled = set()
            while len(cancelled) < 3:
                ev = await asyncio.wait_for(c.events.get(), 10)
                if isinstance(ev, OrderCancelled):
                    cancelled.add(ev.client_order_id)
            await asyncio.sleep(0.3)
            assert btc_book.as_tuple() == ((), ()) and eth_book.as_tuple() == ((), ())
        finally:
            await c.close()
            await watcher.close()
