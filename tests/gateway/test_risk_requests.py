"""Requests risk answers through the gateway: open orders, order status, leverage, binary ORDER_QUERY."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, ETH_USD, GatewayStack

from engine.types.enums import BalanceReason, MsgType, OrderState, RejectCode
from engine.wire.codec import encode
from gateway.sdk import Balance, HxClient, Margin, OrderRejectedEvent, RequestRejected
from gateway.sdk import OrderState as OrderStateEvent

pytestmark = pytest.mark.timeout(120)


async def _funded(stack: GatewayStack, protocol: str) -> HxClient:
    c = await HxClient(stack.url, protocol).connect()
    await c.login(Account.create().key)
    await c.faucet("USDC", "100000")
    await asyncio.sleep(0.3)
    return c


async def _next(client: HxClient, kind: type, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    while True:
        ev = await asyncio.wait_for(client.events.get(), timeout)
        if isinstance(ev, kind):
            return ev


@pytest.fixture(scope="module")
def stack():
    with GatewayStack(risk=1, gateway_options={"faucet": True}) as s:
        yield s


@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_open_orders_and_order_status_tell_open_from_gone(stack: GatewayStack, protocol: str) -> None:
    c = await _funded(stack, protocol)
    try:
        assert await c.open_orders() == []
        a = await c.place(BTC_USD, "buy", "50000", "0.01", client_order_id=11)
        b = await c.place(ETH_USD, "buy", "100", "1", client_order_id=12)
        orders = await c.open_orders()
        assert [(o.market, o.order_id, o.client_order_id, o.state) for o in orders] == [
            (BTC_USD, a.order_id, 11, OrderState.OPEN),
            (ETH_USD, b.order_id, 12, OrderState.OPEN),
        ]
        assert orders[0].price_ticks == 100_000 and orders[0].open_lots == 10
        assert [o.client_order_id for o in await c.open_orders(ETH_USD)] == [12]
        st = await c.order_status(BTC_USD, client_order_id=11)
        assert st is not None and st.order_id == a.order_id and st.state == OrderState.OPEN
        await c.cancel(BTC_USD, order_id=a.order_id)
        assert await c.order_status(BTC_USD, order_id=a.order_id) is None  # no longer open
        assert await c.order_status(BTC_USD, client_order_id=999) is None  # never placed
        with pytest.raises(RequestRejected) as exc:
            await c.order_status(BTC_USD)
        assert exc.value.reason == "BAD_FIELD"
        # the gateway's own answers never show up as events
        await asyncio.sleep(0.2)
        assert not any(isinstance(e, OrderStateEvent) for e in _drain(c.events))
    finally:
        await c.close()


async def test_binary_order_query_is_answered_with_order_state_events(stack: GatewayStack) -> None:
    c = await _funded(stack, "bin")
    try:
        a = await c.place(BTC_USD, "buy", "50000", "0.01", client_order_id=21)
        c.send_raw(encode(MsgType.ORDER_QUERY, 0xFFFFFFFF, request_id=77))
        ev = await _next(c, OrderStateEvent)
        assert (ev.request_id, ev.order_id, ev.state, ev.last) == (77, a.order_id, OrderState.OPEN, True)
        c.send_raw(encode(MsgType.ORDER_QUERY, 0xFFFFFFFF, request_id=(1 << 63) | 5))  # a spoofed id
        rej = await _next(c, OrderRejectedEvent)
        assert rej.code == RejectCode.BAD_FIELD and rej.seq == 0
    finally:
        await c.close()


@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_set_leverage_is_confirmed_or_refused_by_risk(stack: GatewayStack, protocol: str) -> None:
    c = await _funded(stack, protocol)
    try:
        ok = await c.set_leverage(BTC_USD, 2, "cross")
        assert ok["type"] == "leverage" and ok["leverage"] == 2 and ok["mode"] == "cross"
        with pytest.raises(RequestRejected) as exc:
            await c.set_leverage(BTC_USD, 1000)  # above the market's maximum: risk refuses
        assert exc.value.reason == "LEVERAGE_OUT_OF_RANGE"
        with pytest.raises(RequestRejected) as exc:
            await c.set_leverage(ETH_USD, 2)  # a spot market has no leverage
        assert exc.value.reason == "UNKNOWN_MARKET"
        with pytest.raises(RequestRejected) as exc:
            await c.set_leverage(BTC_USD, 2, "sideways")
        assert exc.value.reason == "BAD_FIELD"
        # the chosen leverage caps orders: 2x on 100,000 USDC cannot buy 10 BTC at 50,000
        with pytest.raises(Exception) as big:
            await c.place(BTC_USD, "buy", "50000", "10")
        assert getattr(big.value, "reason", "") in ("LEVERAGE_EXCEEDED", "INSUFFICIENT_MARGIN")
    finally:
        await c.close()


@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_an_isolated_position_gets_its_own_margin_and_locks_the_mode(
    stack: GatewayStack, protocol: str
) -> None:
    """docs/gateway.md: mode isolated moves notional / leverage into the position; its balance and
    margin events name the perp; the mode cannot change while it is open."""
    a, b = await _funded(stack, protocol), await _funded(stack, protocol)
    try:
        await a.set_leverage(BTC_USD, 10, "isolated")
        await b.place(BTC_USD, "sell", "60000", "0.1")  # (above the other tests' resting bids)
        await a.place(BTC_USD, "buy", "60000", "0.1")
        moved = await _next(a, Balance)
        while moved.market == 0 or moved.reason != BalanceReason.MARGIN_TRANSFER:
            moved = await _next(a, Balance)
        assert (moved.market, moved.balance, moved.delta) == (BTC_USD, 600 * 10**6, 600 * 10**6)
        own = await _next(a, Margin)
        while own.market != BTC_USD:
            own = await _next(a, Margin)
        assert 599 * 10**6 < own.equity_micro <= 600 * 10**6 and own.maintenance_micro > 0
        with pytest.raises(RequestRejected) as exc:
            await a.set_leverage(BTC_USD, 10, "cross")
        assert exc.value.reason == "MARGIN_MODE_LOCKED"
        ok = await a.adjust_margin(BTC_USD, "150.5")  # more margin: $600 -> $750.5
        assert ok == {"type": "margin_adjusted", "id": ok["id"], "market": BTC_USD, "amount": "150.5"}
        moved = await _next(a, Balance)
        while moved.market != BTC_USD or moved.reason != BalanceReason.MARGIN_TRANSFER:
            moved = await _next(a, Balance)
        assert (moved.balance, moved.delta) == (750_500_000, 150_500_000)
        await a.adjust_margin(BTC_USD, "-400")  # out, down to $350.5: above its initial margin
        with pytest.raises(RequestRejected) as exc:
            await a.adjust_margin(BTC_USD, "-300")  # would leave it below its initial margin
        assert exc.value.reason == "INSUFFICIENT_MARGIN"
        with pytest.raises(RequestRejected) as exc:
            await b.adjust_margin(BTC_USD, "10")  # b's short is cross
        assert exc.value.reason == "NO_ISOLATED_POSITION"
        for bad, code in (("0", "AMOUNT_OUT_OF_RANGE"), ("1e3", "BAD_DECIMAL"), (5.5, "BAD_FIELD")):
            with pytest.raises(RequestRejected) as exc:
                await a.adjust_margin(BTC_USD, bad)  # type: ignore[arg-type]
            assert exc.value.reason == code
        if protocol == "bin":  # the struct itself: applied silently, or refused with its code
            a.send_raw(encode(MsgType.ADJUST_MARGIN, BTC_USD, amount_micro=0))
            rej = await _next(a, OrderRejectedEvent)
            while rej.code != RejectCode.AMOUNT_OUT_OF_RANGE:  # (risk's refusals above come first)
                rej = await _next(a, OrderRejectedEvent)
            assert rej.command == MsgType.ADJUST_MARGIN
            a.send_raw(encode(MsgType.ADJUST_MARGIN, BTC_USD, amount_micro=-1_000_000))
            moved = await _next(a, Balance)
            while moved.delta != 1_000_000:  # (the earlier adjustments' events come first)
                moved = await _next(a, Balance)
            assert (moved.market, moved.reason) == (0, BalanceReason.MARGIN_TRANSFER)  # back in the account
    finally:
        await a.close()
        await b.close()


async def test_without_risk_the_risk_ops_are_refused_with_a_reason() -> None:
    with GatewayStack() as st:
        c = await HxClient(st.url, "bin").connect()
        try:
            await c.login(Account.create().key)
            for call in (c.open_orders(), c.set_leverage(BTC_USD, 2)):
                with pytest.raises(RequestRejected) as exc:
                    await call
                assert exc.value.reason == "ENGINE_UNAVAILABLE"
            c.send_raw(encode(MsgType.SET_LEVERAGE, BTC_USD, leverage=2))
            rej = await _next(c, OrderRejectedEvent)
            assert rej.code == RejectCode.ENGINE_UNAVAILABLE and rej.command == MsgType.SET_LEVERAGE
        finally:
            await c.close()


def _drain(q: asyncio.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


async def test_order_queries_have_their_own_account_budget_not_the_order_rate(stack: GatewayStack) -> None:
    """Each ORDER_QUERY is answered with up to every open order of the account: at the order rate
    (20,000/s) one account could make risk emit millions of events and stall everyone's orders.
    Queries (binary and JSON) draw from the account's query bucket (burst 40); the rest are
    RATE_LIMITED by the gateway (seq 0) and never reach risk."""
    c = await _funded(stack, "bin")
    try:
        c.send_raw(b"".join(encode(MsgType.ORDER_QUERY, 0xFFFFFFFF, request_id=k + 1) for k in range(100)))
        answered, limited = set(), []
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        while loop.time() < end and len(answered) + len(limited) < 100:
            try:
                ev = await asyncio.wait_for(c.events.get(), 0.5)
            except TimeoutError:
                continue
            if isinstance(ev, OrderStateEvent):
                answered.add(ev.request_id)
            elif isinstance(ev, OrderRejectedEvent):
                assert (ev.code, ev.seq, ev.command) == (RejectCode.RATE_LIMITED, 0, MsgType.ORDER_QUERY)
                limited.append(ev)
        assert len(answered) + len(limited) == 100 and 40 <= len(answered) <= 45, (
            len(answered),
            len(limited),
        )
        with pytest.raises(RequestRejected) as exc:  # the JSON queries share the account's budget
            await c.open_orders()
        assert exc.value.reason == "RATE_LIMITED"
    finally:
        await c.close()
