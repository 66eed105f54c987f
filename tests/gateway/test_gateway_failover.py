"""kill -9 the shard while clients stream orders through the gateway: nothing acknowledged is lost,
nothing is acknowledged twice, and trading carries on once the shard is back (as ``hx up`` restarts it).
"""

from __future__ import annotations

import asyncio
import collections
import time

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, GatewayStack

from engine.types.enums import MsgType
from engine.wire.codec import encode
from gateway.sdk import Fill, HxClient, OrderAccepted, OrderRejectedEvent

pytestmark = pytest.mark.timeout(180)

FRAMES, PER_FRAME = 40, 25  # per client
KILL_AFTER = 15  # frames sent by each client before the shard is killed


def _frame(side: int, price_ticks: int, first_coid: int) -> bytes:
    return b"".join(
        encode(
            MsgType.NEW_ORDER,
            BTC_USD,
            client_order_id=first_coid + k,
            price_ticks=price_ticks,
            size_lots=1,
            side=side,
        )
        for k in range(PER_FRAME)
    )


async def _answers(client: HxClient, want: int, deadline: float) -> tuple[collections.Counter, list, list]:
    accepted: collections.Counter = collections.Counter()
    rejected, fills = [], []
    while sum(accepted.values()) + len(rejected) < want and time.monotonic() < deadline:
        try:
            ev = await asyncio.wait_for(client.events.get(), 0.5)
        except TimeoutError:
            continue
        if isinstance(ev, OrderAccepted):
            accepted[ev.client_order_id] += 1
        elif isinstance(ev, OrderRejectedEvent):
            rejected.append(ev)
        elif isinstance(ev, Fill):
            fills.append(ev)
    await asyncio.sleep(0.5)  # anything sent twice would arrive now
    while not client.events.empty():
        ev = client.events.get_nowait()
        if isinstance(ev, OrderAccepted):
            accepted[ev.client_order_id] += 1
        elif isinstance(ev, Fill):
            fills.append(ev)
    return accepted, rejected, fills


async def test_shard_killed_under_load_loses_and_duplicates_no_acknowledged_order():
    with GatewayStack() as stack:
        buyer = await HxClient(stack.url, "bin").connect()
        seller = await HxClient(stack.url, "bin").connect()
        await buyer.login(Account.create().key)
        await seller.login(Account.create().key)
        loop = asyncio.get_running_loop()
        try:
            for f in range(FRAMES):
                # bids at 1000+, asks at 999-: every ask meets a bid sooner or later (one lot each)
                buyer.send_raw(_frame(0, 1000 + f, 1 + f * PER_FRAME))
                seller.send_raw(_frame(1, 999 - f, 1 + f * PER_FRAME))
                if f == KILL_AFTER:  # right behind a burst: frames in flight, the shard mid-stream
                    old_pid = stack.pipeline.procs["shard-0"].process.pid
                    await loop.run_in_executor(None, stack.pipeline.kill, "shard-0")
                    await loop.run_in_executor(None, stack.pipeline.restart, "shard-0")
                    assert stack.pipeline.procs["shard-0"].process.pid != old_pid
                if not KILL_AFTER - 5 <= f < KILL_AFTER:
                    await asyncio.sleep(0.01)
            deadline = time.monotonic() + 60
            want = FRAMES * PER_FRAME
            (b_acc, b_rej, b_fills), (s_acc, s_rej, s_fills) = await asyncio.gather(
                _answers(buyer, want, deadline), _answers(seller, want, deadline)
            )
        finally:
            await buyer.close()
            await seller.close()
        assert not b_rej and not s_rej
        for accepted in (b_acc, s_acc):
            assert set(accepted) == set(range(1, want + 1)), "every order acknowledged"
            assert set(accepted.values()) == {1}, "and only once"
        # every ask met a bid: one fill per lot, each seen once by both sides
        assert len(s_fills) == len(b_fills) == want
        assert len({(f.taker_order_id, f.maker_order_id, f.seq) for f in s_fills}) == want
        assert {f.seq for f in s_fills} == {f.seq for f in b_fills}
        assert stack.alive()
