"""The headline: a session whose gateway is killed (-9) mid-stream reconnects through another
gateway, resumes its private stream, and ends with exactly the stream of a session that never
disconnected: same events, same order, no gap, nothing twice."""

from __future__ import annotations

import asyncio
import time

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, GatewayStack

from gateway.sdk import Disconnected, HxClient, Reconnected, RequestRejected
from gateway.sdk.events import (
    Balance,
    Fill,
    Margin,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderRejectedEvent,
    Position,
)

pytestmark = pytest.mark.timeout(150)
PRIVATE = (OrderAccepted, OrderRejectedEvent, Fill, OrderCancelled, OrderAmended, Balance, Position, Margin)


async def _gateway_pid(c: HxClient) -> int:
    return int((await c.request({"op": "stats"}))["pid"])


async def _connect_on(st: GatewayStack, pid: int, key: bytes, *, other: bool) -> HxClient:
    """A logged-in client on the gateway with ``pid`` (or on another one): SO_REUSEPORT spreads
    connections, so try until one lands where wanted."""
    for _ in range(60):
        c = await HxClient(st.url, "bin").connect()
        if (await _gateway_pid(c) != pid) == other:
            await c.login(key)
            return c
        await c.close()
    raise AssertionError("could not reach the wanted gateway")


def _private(events: list) -> list:
    return [e for e in events if isinstance(e, PRIVATE) and e.seq > 0]


async def _drain_until_quiet(c: HxClient, quiet_s: float = 1.5) -> list:
    out = []
    while True:
        try:
            out.append(await asyncio.wait_for(c.events.get(), quiet_s))
        except TimeoutError:
            return out


async def test_session_resumes_through_another_gateway_after_kill_9() -> None:
    with GatewayStack(gateways=2, risk=1, gateway_options={"faucet": True}) as st:
        x_key, cp_key = Account.create().key, Account.create().key
        x = await HxClient(st.url, "bin", reconnect=True, reconnect_delay_s=3.0).connect()
        await x.login(x_key)
        doomed = await _gateway_pid(x)
        ref = await _connect_on(st, doomed, x_key, other=True)  # the same account, never disconnected
        cp = await _connect_on(st, doomed, cp_key, other=True)  # the counterparty
        try:
            await x.faucet("USDC", "100000")
            await cp.faucet("USDC", "100000")
            await cp.faucet("BTC", "10")
            await asyncio.sleep(1.5)  # both gateways now keep x's account's history
            bids = [await x.place(BTC_USD, "buy", 100_000 + k, 10, client_order_id=100 + k) for k in range(6)]
            await cp.place(BTC_USD, "sell", 100_005, 10, client_order_id=1, tif="ioc")
            await asyncio.sleep(0.3)

            name = next(
                f"gateway-{i}" for i, h in st.pipeline.of_kind("gateway").items() if h.process.pid == doomed
            )
            await asyncio.get_running_loop().run_in_executor(None, st.pipeline.kill, name)
            # while x is away: fills on its bids, a new order and a cancel by its other session
            for k in range(3):
                await cp.place(BTC_USD, "sell", 100_000, 10, client_order_id=10 + k, tif="ioc")
            extra = await ref.place(BTC_USD, "buy", 98_000, 20, client_order_id=200)
            await ref.cancel(BTC_USD, order_id=bids[0].order_id)

            t0 = time.monotonic()
            x_seen = []
            while True:
                ev = await asyncio.wait_for(x.events.get(), 30)
                x_seen.append(ev)
                if isinstance(ev, Reconnected):
                    break
            assert ev.resumed, x.login_reply
            assert x.login_reply["replayed"] > 0
            assert time.monotonic() - t0 < 30
            await ref.cancel(BTC_USD, order_id=extra.order_id)  # live, after the resume
            x_all = x_seen + await _drain_until_quiet(x)
            ref_all = await _drain_until_quiet(ref)
        finally:
            for c in (x, ref, cp):
                await c.close()
        assert sum(isinstance(e, Disconnected) for e in x_all) == 1
        x_events = _private(x_all)
        ref_events = _private(ref_all)
        first = ref_events[0].seq
        x_tail = [e for e in x_events if e.seq >= first]
        assert [e.seq for e in x_tail] == list(range(first, first + len(x_tail))), "gap-free, nothing twice"
        assert x_tail == ref_events
        assert any(isinstance(e, Fill) for e in x_tail) and any(
            isinstance(e, OrderCancelled) for e in x_tail
        ), x_tail


async def test_resume_is_refused_with_a_reason_when_it_cannot_be_served() -> None:
    with GatewayStack(gateways=1, risk=1, gateway_options={"faucet": True}) as st:
        c = await HxClient(st.url, "bin").connect()
        try:
            await c.login(Account.create().key, resume_from=12345)
            assert c.login_reply["resumed"] is False and "resync" in c.login_reply["resume_error"]
            with pytest.raises(RequestRejected):
                d = await HxClient(st.url, "bin").connect()
                try:
                    await d.login(Account.create().key, resume_from=-1)
                finally:
                    await d.close()
        finally:
            await c.close()
