"""Real gateway + real shard processes + real WebSocket connections: login, orders, routing, fuzz."""

from __future__ import annotations

import asyncio
import os
import random
import sys

import orjson
import pytest
from eth_account import Account
from gateway_harness import BTC_USD, GatewayStack

from engine.types.enums import MsgType, RejectCode
from engine.wire.codec import encode
from gateway.sdk import (
    Fill,
    HxClient,
    LoginFailed,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderRejectedEvent,
    RequestRejected,
)

pytestmark = pytest.mark.timeout(120)
# Codes the gateway guarantees never to let through: if the engine ever answers one, a malformed
# struct reached a ring.
STRUCTURAL = {c for c in RejectCode if 100 <= c < 200} | {
    RejectCode.UNKNOWN_MARKET,
    RejectCode.BAD_SIDE,
    RejectCode.BAD_TIF,
    RejectCode.BAD_ORDER_TYPE,
    RejectCode.BAD_FLAGS,
}


@pytest.fixture(scope="module")
def stack():
    with GatewayStack(gateway_options={"challenge_ttl_s": 3.0}) as s:
        yield s


async def connect(stack: GatewayStack, protocol: str = "bin", key=None) -> HxClient:
    c = await HxClient(stack.url, protocol).connect()
    if key is not None:
        await c.login(key)
    return c


def drain(q: asyncio.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


async def settle(*clients: HxClient, delay: float = 0.3) -> None:
    await asyncio.sleep(delay)


# ---- login ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_gateway_login_good_bad_replayed_expired(stack, protocol):
    key = Account.create()
    c = await connect(stack, protocol)
    try:
        # orders before login are refused
        if protocol == "bin":
            c.send_raw(encode(MsgType.NEW_ORDER, BTC_USD, client_order_id=1, price_ticks=10, size_lots=1))
            ev = await asyncio.wait_for(c.events.get(), 5)
            assert isinstance(ev, OrderRejectedEvent) and ev.code == RejectCode.NOT_AUTHENTICATED
        else:
            with pytest.raises(OrderRejected) as exc:
                await c.place(BTC_USD, "buy", "10", "0.001")
            assert exc.value.code == RejectCode.NOT_AUTHENTICATED
        a = key.address.lower()
        from gateway.protocol.signing import login_typed_data, sign_typed_data

        # bad signature (another key signs)
        ch = await c.request({"op": "challenge"})
        sig = sign_typed_data(
            Account.create().key, login_typed_data(31337, a, a, ch["nonce"], ch["expires_at"])
        )
        with pytest.raises(RequestRejected) as exc:
            await c.request({"op": "login", "account": a, "nonce": ch["nonce"], "signature": sig})
        assert exc.value.code == RejectCode.BAD_SIGNATURE
        # replayed: the same challenge again (even with a good signature) is unknown now
        sig = sign_typed_data(key.key, login_typed_data(31337, a, a, ch["nonce"], ch["expires_at"]))
        with pytest.raises(RequestRejected) as exc:
            await c.request({"op": "login", "account": a, "nonce": ch["nonce"], "signature": sig})
        assert exc.value.code == RejectCode.CHALLENGE_UNKNOWN
        # expired
        ch = await c.request({"op": "challenge"})
        await asyncio.sleep(3.2)
        sig = sign_typed_data(key.key, login_typed_data(31337, a, a, ch["nonce"], ch["expires_at"]))
        with pytest.raises(RequestRejected) as exc:
            await c.request({"op": "login", "account": a, "nonce": ch["nonce"], "signature": sig})
        assert exc.value.code == RejectCode.CHALLENGE_EXPIRED
        # good
        account_id = await c.login(key.key)
        assert account_id > 0 and not c.is_agent
        # a signed login captured from this connection cannot be replayed on another one
        other = await connect(stack, protocol)
        try:
            with pytest.raises(RequestRejected) as exc:
                await other.request({"op": "login", "account": a, "nonce": ch["nonce"], "signature": sig})
            assert exc.value.code == RejectCode.CHALLENGE_UNKNOWN
        finally:
            await other.close()
    finally:
        await c.close()


async def test_gateway_agent_key_trades_but_cannot_withdraw_or_manage(stack):
    main, agent = Account.create(), Account.create()
    c = await connect(stack, "bin", main.key)
    a = await connect(stack, "json")
    try:
        with pytest.raises(LoginFailed) as exc:
            await a.login(agent.key, account=main.address)
        assert exc.value.code == RejectCode.AGENT_NOT_AUTHORISED
        await c.approve_agent(agent.address)
        a2 = await connect(stack, "json")
        try:
            assert await a2.login(agent.key, account=main.address) == c.account_id and a2.is_agent
            ack = await a2.place(BTC_USD, "buy", "1000", "0.001")
            assert ack.order_id > 0
            for op in ("withdraw", "approve_agent"):
                with pytest.raises(RequestRejected) as e2:
                    await a2.request(
                        {"op": op, "agent": Account.create().address, "nonce": 1, "signature": "0x"}
                    )
                assert e2.value.code == RejectCode.PERMISSION_DENIED
            await c.approve_agent(agent.address, revoke=True)
            a3 = await connect(stack, "bin")
            with pytest.raises(LoginFailed):
                await a3.login(agent.key, account=main.address)
            await a3.close()
        finally:
            await a2.close()
    finally:
        await c.close()
        await a.close()


# ---- order messages, both protocols -----------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_gateway_every_order_message(stack, protocol):
    c = await connect(stack, protocol, Account.create().key)
    try:
        ack = await c.place(BTC_USD, "buy", "1000.5", "0.003", client_order_id=77)
        assert isinstance(ack, OrderAccepted) and ack.client_order_id == 77 and ack.order_id > 0
        assert (ack.price_ticks, ack.size_lots) == (2001, 3)
        with pytest.raises(OrderRejected) as exc:  # duplicate live client order id: the engine refuses
            await c.place(BTC_USD, "buy", "1000", "0.001", client_order_id=77)
        assert exc.value.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID and exc.value.seq > 0
        am = await c.amend(BTC_USD, order_id=ack.order_id, size="0.002")
        assert am.order_id == ack.order_id and am.size_lots == 2 and am.kept_priority
        cx = await c.cancel(BTC_USD, client_order_id=77)
        assert isinstance(cx, OrderCancelled) and cx.order_id == ack.order_id
        with pytest.raises(OrderRejected) as exc:
            await c.cancel(BTC_USD, order_id=ack.order_id)
        assert exc.value.code == RejectCode.UNKNOWN_ORDER
        acks = await c.place_many(
            [{"market": BTC_USD, "side": "sell", "price": 50_000 + k, "size": 1} for k in range(5)]
        )
        assert all(isinstance(x, OrderAccepted) for x in acks)
        drain(c.events)
        c.cancel_all(BTC_USD)
        got = set()
        while len(got) < 5:
            ev = await asyncio.wait_for(c.events.get(), 5)
            if isinstance(ev, OrderCancelled):
                got.add(ev.order_id)
        assert got == {x.order_id for x in acks}
        # gateway-side rejects carry specific codes
        with pytest.raises(OrderRejected) as exc:
            await c.place(BTC_USD, "buy", "1000.25", "0.001")
        assert exc.value.code == RejectCode.BAD_DECIMAL
        with pytest.raises(OrderRejected) as exc:
            await c.place(99, "buy", 10, 1)
        assert exc.value.code == RejectCode.UNKNOWN_MARKET
    finally:
        await c.close()


# ---- routing ----------------------------------------------------------------------------------------
async def test_gateway_private_events_reach_only_the_accounts_sessions(stack):
    ka, kb = Account.create(), Account.create()
    a1 = await connect(stack, "bin", ka.key)
    a2 = await connect(stack, "json", ka.key)  # the same account's other session
    b = await connect(stack, "bin", kb.key)
    outsider = await connect(stack, "json", Account.create().key)
    anon = await connect(stack, "bin")
    try:
        await outsider.subscribe(BTC_USD, "trades")
        buy = await a1.place(BTC_USD, "buy", "500", "0.002")
        sell = await b.place(BTC_USD, "sell", "500", "0.002")
        await settle()
        ev_a1, ev_a2, ev_b = drain(a1.events), drain(a2.events), drain(b.events)
        ev_out, ev_anon = drain(outsider.events), drain(anon.events)
        for evs in (ev_a1, ev_a2):
            assert any(isinstance(e, OrderAccepted) and e.order_id == buy.order_id for e in evs)
            assert any(isinstance(e, Fill) and e.maker_order_id == buy.order_id for e in evs)
            assert not any(isinstance(e, OrderAccepted) and e.order_id == sell.order_id for e in evs)
        assert any(isinstance(e, Fill) and e.taker_order_id == sell.order_id for e in ev_b)
        assert not any(isinstance(e, OrderAccepted) and e.order_id == buy.order_id for e in ev_b)
        assert not any(isinstance(e, (OrderAccepted, Fill, OrderCancelled)) for e in ev_out + ev_anon)
        assert any(type(e).__name__ == "Trade" for e in ev_out)  # public print, no accounts in it
    finally:
        for c in (a1, a2, b, outsider, anon):
            await c.close()


# ---- fuzz -------------------------------------------------------------------------------------------
def _mutations(rnd: random.Random) -> list[tuple[bytes, bool]]:
    good = encode(MsgType.NEW_ORDER, BTC_USD, client_order_id=5, price_ticks=100, size_lots=1)
    frames: list[tuple[bytes, bool]] = [
        (b"", False),
        (b"\x01", False),
        (good[:63], False),
        (good + b"\x00", False),
        (bytes(64), False),
        (bytes([99]) + good[1:], False),
        (encode(MsgType.FILL, 1), False),
        (
            encode(MsgType.NEW_ORDER, BTC_USD, client_order_id=5, price_ticks=1, size_lots=1, account=12345),
            False,
        ),
        (encode(MsgType.CANCEL_ALL, BTC_USD, account=999), False),
    ]
    for _ in range(150):
        b = bytearray(good * rnd.randint(1, 3))
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        frames.append((bytes(b), False))
    for _ in range(40):
        frames.append((os.urandom(rnd.choice([64, 128, 200, 640])), False))
    texts = [
        b"\xff\xfe\x00",
        b"not json",
        b"[1,2,3]",
        b"{}",
        b'{"op": 5}',
        b'{"op": "nope"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"op":"place","market":1,"side":"buy","price":1.5,"size":"1"}',
        b'{"op":"place","market":1,"side":"buy","price":"1e999999","size":"1","client_order_id":1}',
        b'{"op":"place","market":1,"side":"buy","price":"10","size":"1","client_order_id":-1}',
        b'{"op":"place","market":1,"side":"up","price":"10","size":"1","client_order_id":3}',
        b'{"op":"place","market":"1","side":"buy","price":"10","size":"1","client_order_id":3}',
        b'{"op":"place","market":1,"side":"buy","price":"10","size":"1","client_order_id":1e40}',
        b'{"op":"cancel","market":1}',
        b'{"op":"subscribe","channel":"book","market":[1]}',
        b'{"op":"place","market":1,"side":"buy","price":"10","size":"1","client_order_id":3,"account":4242}',
        b'{"op":"login","account":{"a":1}}',
        b'{"op":"place"' + b" " * 20000 + b"}",
    ]
    frames += [(t, True) for t in texts]
    return frames


async def test_gateway_fuzz_frames_get_specific_errors_and_gateway_stays_up(stack):
    rnd = random.Random(1234)
    bystander = await connect(stack, "json", Account.create().key)
    fz_bin = await connect(stack, "bin", Account.create().key)
    fz_json = await connect(stack, "json", Account.create().key)
    try:
        for frame, text in _mutations(rnd):
            for c in (fz_bin, fz_json) if text else (fz_bin,):
                if not c.closed:
                    c.send_raw(frame, text=text)
        fz_json.send_raw(b"\x00" * 64)  # binary on /v1/json: closed with a reason
        await settle(delay=1.0)
        assert fz_json.closed and fz_json.close_info and "binary" in fz_json.close_info[1]
        events = drain(fz_bin.events)
        rejects = [e for e in events if isinstance(e, OrderRejectedEvent)]
        assert rejects and all(e.code != 0 for e in rejects)
        gateway_codes = {e.code for e in rejects if e.seq == 0}
        assert {RejectCode.UNKNOWN_MSG_TYPE, RejectCode.BAD_LENGTH, RejectCode.WRONG_ACCOUNT} <= gateway_codes
        engine_codes = {e.code for e in rejects if e.seq > 0}
        assert not engine_codes & STRUCTURAL, (
            f"malformed structs reached the engine: {engine_codes & STRUCTURAL}"
        )
        errors = drain(fz_bin.control)
        assert {RejectCode.BAD_JSON, RejectCode.UNKNOWN_OP} <= {e.get("code") for e in errors}
        # the gateway is up, and other connections were unaffected
        assert stack.alive()
        assert not bystander.closed
        assert (await bystander.request({"op": "ping"}))["type"] == "pong"
        ack = await bystander.place(BTC_USD, "buy", "1", "0.001")
        assert ack.order_id > 0
        assert not fz_bin.closed
        assert (await fz_bin.request({"op": "ping"}))["type"] == "pong"
    finally:
        for c in (bystander, fz_bin, fz_json):
            await c.close()


async def test_gateway_oversized_and_fragmented_frames_close_with_reason(stack):
    c = await connect(stack, "bin", Account.create().key)
    try:
        c.send_raw(bytes(200_000))  # above max_frame_bytes (64 KiB)
        await c.wait_closed(5)
        assert c.close_info is not None
    finally:
        await c.close()
    c = await connect(stack, "bin")
    try:
        from picows import WSMsgType

        c.transport.send(WSMsgType.TEXT, orjson.dumps({"op": "ping"})[:5], fin=False)
        await c.wait_closed(5)
        assert c.close_info and "fragment" in c.close_info[1]
    finally:
        await c.close()
    assert stack.alive()


# ---- real-time scheduling --------------------------------------------------------------------------
def _fifo_allowed() -> bool:
    """Whether this host grants SCHED_FIFO, asked of a throwaway child (the test process keeps its policy)."""
    import subprocess

    probe = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


async def test_stack_under_realtime_priority_trades_and_reports_its_scheduling():
    """Shard and gateway under SCHED_FIFO (where the host grants it): orders still round-trip, and the
    pipeline reports what the kernel actually runs each stage under."""
    expected = "fifo:3" if _fifo_allowed() else "normal"
    with GatewayStack(wait="blocking", realtime_priority=3) as rt:
        assert rt.pipeline.scheduling() == {"shard-0": expected, "gateway-0": expected}
        maker = await connect(rt, "bin", Account.create().key)
        taker = await connect(rt, "bin", Account.create().key)
        try:
            bid = await maker.place(BTC_USD, "buy", "1000", "0.001", client_order_id=5)
            assert isinstance(bid, OrderAccepted) and bid.client_order_id == 5
            hit = await taker.place(BTC_USD, "sell", "1000", "0.001", client_order_id=6)
            assert isinstance(hit, OrderAccepted)
            for client, ids in ((maker, (bid.order_id, 0)), (taker, (0, hit.order_id))):
                ev = await asyncio.wait_for(client.events.get(), 5)
                while not isinstance(ev, Fill):
                    ev = await asyncio.wait_for(client.events.get(), 5)
                # each side sees its own order and account, never the counterparty's
                assert (ev.maker_order_id, ev.taker_order_id) == ids
                assert client.account_id in (ev.maker_account, ev.taker_account)
                assert 0 in (ev.maker_account, ev.taker_account)
        finally:
            await maker.close()
            await taker.close()
        assert rt.alive()
