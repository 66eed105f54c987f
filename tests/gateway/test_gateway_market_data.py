"""Market data end to end: SDK book == engine's book, gap -> resync, slow-client conflation, limits."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys

import psutil
import pytest
from eth_account import Account
from gateway_harness import BTC_USD, ETH_USD, GatewayStack

from engine.types.enums import RejectCode
from gateway.sdk import (
    ConnectionClosed,
    Fill,
    HxClient,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    RequestRejected,
)

pytestmark = pytest.mark.timeout(150)


def drain(q: asyncio.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


class OpenOrders:
    """The engine's book as implied by one account's private order lifecycle (independent of L2)."""

    def __init__(self) -> None:
        self.orders: dict[int, list[int]] = {}  # order_id -> [side, price, open size]

    def apply(self, ev: object) -> None:
        if isinstance(ev, OrderAccepted):
            self.orders[ev.order_id] = [ev.side, ev.price_ticks, ev.size_lots]
        elif isinstance(ev, Fill):
            for oid in (ev.taker_order_id, ev.maker_order_id):
                if oid in self.orders:
                    self.orders[oid][2] -= ev.size_lots
        elif isinstance(ev, OrderCancelled):
            self.orders.pop(ev.order_id, None)
        elif isinstance(ev, OrderAmended):
            if ev.order_id in self.orders:
                self.orders[ev.order_id][1:] = [ev.price_ticks, ev.size_lots]

    def book(self) -> tuple:
        levels: dict[tuple[int, int], list[int]] = {}
        for side, price, size in self.orders.values():
            if size > 0:
                lv = levels.setdefault((side, price), [0, 0])
                lv[0] += size
                lv[1] += 1
        bids = tuple(sorted(((p, s, c) for (sd, p), (s, c) in levels.items() if sd == 0), reverse=True))
        asks = tuple(sorted((p, s, c) for (sd, p), (s, c) in levels.items() if sd == 1))
        return bids, asks


async def _random_flow(c: HxClient, rnd: random.Random, n: int, market: int) -> None:
    """n random orders in bulk frames: resting and crossing limits, IOCs, cancels and amends."""
    live: list[int] = []
    sent = 0
    while sent < n:
        batch = []
        for _ in range(rnd.randint(1, 40)):
            side = rnd.choice(["buy", "sell"])
            mid = 2000
            price = mid + rnd.randint(-30, 30) + (5 if side == "sell" else -5)
            batch.append(
                {
                    "market": market,
                    "side": side,
                    "price": price,
                    "size": rnd.randint(1, 20),
                    "tif": rnd.choice(["gtc"] * 6 + ["ioc"]),
                }
            )
        results = await c.place_many(batch)
        live += [r.order_id for r in results if isinstance(r, OrderAccepted)]
        sent += len(batch)
        for _ in range(rnd.randint(0, 6)):
            if not live:
                break
            oid = live.pop(rnd.randrange(len(live)))
            try:
                if rnd.random() < 0.7:
                    await c.cancel(market, order_id=oid)
                else:
                    await c.amend(market, order_id=oid, size=rnd.randint(1, 25))
                    live.append(oid)
            except RequestRejected:
                pass  # already filled: the engine says UNKNOWN_ORDER, nothing changes


@pytest.fixture(scope="module")
def stack():
    with GatewayStack(gateway_options={"order_rate": 0, "account_order_rate": 0, "request_rate": 0}) as s:
        yield s


async def test_gateway_sdk_book_equals_engine_book_after_random_orders(stack):
    rnd = random.Random(42)
    key = Account.create().key
    trader = await HxClient(stack.url, "bin").connect()
    await trader.login(key)
    watcher_bin = await HxClient(stack.url, "bin").connect()
    watcher_json = await HxClient(stack.url, "json").connect()
    try:
        book_bin = await watcher_bin.subscribe_book(BTC_USD)
        book_json = await watcher_json.subscribe_book(BTC_USD)
        await _random_flow(trader, rnd, 2500, BTC_USD)
        await asyncio.sleep(1.0)
        implied = OpenOrders()
        for ev in drain(trader.events):
            implied.apply(ev)
        engine_book = implied.book()
        assert book_bin.in_sync and book_json.in_sync
        assert book_bin.as_tuple() == engine_book
        assert book_json.as_tuple() == engine_book
        assert not book_bin.book.is_crossed()
        late = await HxClient(stack.url, "json").connect()  # a fresh snapshot agrees too
        try:
            assert (await late.subscribe_book(BTC_USD)).as_tuple() == engine_book
        finally:
            await late.close()
        assert book_bin.gaps == 0 and book_json.gaps == 0
    finally:
        for c in (trader, watcher_bin, watcher_json):
            await c.close()


@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_gateway_forced_gap_triggers_resync(stack, protocol):
    rnd = random.Random(7)
    trader = await HxClient(stack.url, "bin").connect()
    await trader.login(Account.create().key)
    watcher = await HxClient(stack.url, protocol).connect()
    try:
        book = await watcher.subscribe_book(ETH_USD)
        await _random_flow(trader, rnd, 100, ETH_USD)
        watcher.drop_next_deltas(ETH_USD, 3)  # as if the network lost three deltas
        await _random_flow(trader, rnd, 200, ETH_USD)
        await asyncio.sleep(1.0)
        assert book.gaps >= 1 and book.resyncs >= 1 and book.in_sync
        fresh = await HxClient(stack.url, "bin").connect()
        try:
            assert (await fresh.subscribe_book(ETH_USD)).as_tuple() == book.as_tuple()
        finally:
            await fresh.close()
    finally:
        await trader.close()
        await watcher.close()


# ---- slow consumers ---------------------------------------------------------------------------------
_SLOW_READER = """
import asyncio, json, socket, sys
from gateway.sdk import HxClient

async def main(url, key, market):
    c = await HxClient(url, "bin").connect()
    sock = c.transport.underlying_transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    if key != "-":
        await c.login(key)
    book = await c.subscribe_book(market) if market >= 0 else None
    print("ready", sock.getsockname()[1], flush=True)
    notices = []
    while not c.closed:
        try:
            msg = await asyncio.wait_for(c.control.get(), 0.2)
        except asyncio.TimeoutError:
            continue
        notices.append(msg.get("type"))
        if msg.get("type") == "resumed" and book is not None:
            await asyncio.sleep(1.5)
            print(json.dumps({"notices": notices, "book": book.as_tuple(), "resyncs": book.resyncs,
                              "in_sync": book.in_sync}), flush=True)
            return
    print(json.dumps({"notices": notices, "close": c.close_info}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _start_reader(url: str, key: str, market: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_READER, url, key, str(market)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    line = proc.stdout.readline().split()  # type: ignore[union-attr]
    assert line and line[0] == "ready", line
    return proc, int(line[1])


def _gateway_has(st: GatewayStack, port: int) -> bool:
    return any(
        c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        for pid in st.gateway_pids()
        for c in psutil.Process(pid).net_connections("tcp")
    )


async def _flow_until_closing(trader: HxClient, rnd: random.Random) -> None:
    """Private events for the (stopped) reader's account until the gateway is closing it.

    Small batches, so the caller learns soon after the close began: the close's stall clock
    (``close_stall_s``) runs from then, and a loaded machine makes a batch slow."""
    for _ in range(48):
        await _random_flow(trader, rnd, 500, ETH_USD)
        await asyncio.sleep(0.1)
        if (await trader.request({"op": "stats"}))["closing"]:
            return
    raise AssertionError("the gateway never closed a slow consumer past the hard limit")


async def test_gateway_slow_client_is_conflated_then_resynced_or_closed():
    """A stopped reader (SIGSTOP) gets conflated and resynced; past the hard limit it is closed."""
    opts = {
        "order_rate": 0,
        "account_order_rate": 0,
        "request_rate": 0,
        "soft_buffer_bytes": 32 << 10,
        "hard_buffer_bytes": 512 << 10,
        "sndbuf_bytes": 8 << 10,
        "close_stall_s": 10.0,
    }
    with GatewayStack(gateway_options=opts) as st:
        key = "0x" + bytes(Account.create().key).hex()
        trader = await HxClient(st.url, "bin").connect()
        await trader.login(key)
        fast = await HxClient(st.url, "bin").connect()
        slow, _ = _start_reader(st.url, "-", BTC_USD)
        try:
            fast_book = await fast.subscribe_book(BTC_USD)
            os.kill(slow.pid, signal.SIGSTOP)
            rnd = random.Random(3)
            await _random_flow(trader, rnd, 4000, BTC_USD)
            await asyncio.sleep(0.3)
            os.kill(slow.pid, signal.SIGCONT)
            out = json.loads(await asyncio.to_thread(slow.stdout.readline))  # type: ignore[union-attr]
            assert "conflated" in out["notices"] and "resumed" in out["notices"]
            assert out["in_sync"] and out["resyncs"] >= 1
            assert [tuple(map(tuple, side)) for side in out["book"]] == list(fast_book.as_tuple())
            assert fast_book.gaps == 0  # the fast client was never affected

            # private events are never dropped: past the hard limit the connection is closed with
            # 1008 and a reason queued behind the backlog, so a reader that resumes reads it all
            victim, port = _start_reader(st.url, key, -1)
            os.kill(victim.pid, signal.SIGSTOP)
            try:
                await _flow_until_closing(trader, rnd)
                await asyncio.sleep(1.0)  # stopped a while longer, yet well under close_stall_s
                os.kill(victim.pid, signal.SIGCONT)
                out = json.loads(await asyncio.to_thread(victim.stdout.readline))  # type: ignore[union-attr]
                assert out["close"] and out["close"][0] == 1008 and "slow consumer" in out["close"][1], out
            finally:
                os.kill(victim.pid, signal.SIGCONT)
                victim.kill()
                victim.wait(10)
            # a reader that never reads again is reset once its backlog stalls (close_stall_s)
            stalled, port = _start_reader(st.url, key, -1)
            os.kill(stalled.pid, signal.SIGSTOP)
            try:
                await _flow_until_closing(trader, rnd)
                for _ in range(150):
                    if not _gateway_has(st, port):
                        break
                    await asyncio.sleep(0.2)
                assert not _gateway_has(st, port), "the gateway kept a stalled reader past close_stall_s"
            finally:
                os.kill(stalled.pid, signal.SIGCONT)
                stalled.kill()
                stalled.wait(10)
            assert not trader.closed and st.alive()
        finally:
            slow.kill()
            slow.wait(10)
            for c in (trader, fast):
                await c.close()


# ---- limits -----------------------------------------------------------------------------------------
async def test_gateway_rate_limits_reject_with_retry_after_and_keep_connection():
    opts = {
        "order_rate": 20,
        "order_burst": 10,
        "request_rate": 5,
        "request_burst": 5,
        "max_subscriptions": 2,
        "max_connections_per_ip": 4,
    }
    with GatewayStack(gateway_options=opts) as st:
        c = await HxClient(st.url, "bin").connect()
        try:
            await c.login(Account.create().key)
            results = await c.place_many(
                [{"market": BTC_USD, "side": "buy", "price": 100 + k, "size": 1} for k in range(25)]
            )
            limited = [r for r in results if isinstance(r, RequestRejected)]
            assert len(limited) >= 14 and all(r.code == RejectCode.RATE_LIMITED for r in limited)
            assert all(r.retry_after_s > 0 for r in limited)
            await asyncio.sleep(max(r.retry_after_s for r in limited) + 0.1)
            assert isinstance(await c.place(BTC_USD, "buy", 50, 1), OrderAccepted)  # still connected
            errors = []
            for _ in range(12):
                c._send_json({"op": "ping"})
            await asyncio.sleep(0.5)
            errors = [m for m in drain(c.control) if m.get("code") == RejectCode.RATE_LIMITED]
            assert errors and all(m["retry_after_ms"] > 0 for m in errors)
            assert not c.closed
            await asyncio.sleep(1.2)
            await c.subscribe(BTC_USD, "book")
            await c.subscribe(BTC_USD, "trades")
            with pytest.raises(RequestRejected) as exc:
                await c.subscribe(BTC_USD, "bbo")
            assert exc.value.code == RejectCode.TOO_MANY_SUBSCRIPTIONS
            extra = [await HxClient(st.url, "json").connect() for _ in range(3)]  # 4 with c
            over = HxClient(st.url, "json")
            with pytest.raises((ConnectionClosed, asyncio.TimeoutError)):
                await over.connect()
            assert over.closed and over.close_info and "too many connections" in over.close_info[1]
            for e in extra:
                await e.close()
        finally:
            await c.close()


async def test_gateway_two_processes_share_one_port():
    with GatewayStack(gateways=2) as st:
        pids = st.gateway_pids()
        assert len(set(pids)) == 2
        clients = []
        try:
            for _ in range(16):
                c = await HxClient(st.url, "bin").connect()
                await c.login(Account.create().key)
                clients.append(c)
            served = [
                sum(
                    1
                    for conn in psutil.Process(pid).net_connections("tcp")
                    if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == st.port
                )
                for pid in pids
            ]
            assert all(n > 0 for n in served) and sum(served) == len(clients), served
            # orders through either gateway reach the engine; both gateways fan events out
            acks = await asyncio.gather(*(c.place(BTC_USD, "buy", 10 + i, 1) for i, c in enumerate(clients)))
            assert len({a.order_id for a in acks}) == len(clients)
            watcher = await HxClient(st.url, "json").connect()
            book = await watcher.subscribe_book(BTC_USD)
            assert {p for p, _s, _c in book.bids()} >= {10 + i for i in range(len(clients))}
            await watcher.close()
            assert st.alive()
        finally:
            for c in clients:
                await c.close()


async def test_gateway_killed_and_restarted_serves_the_full_book():
    """kill -9 a gateway under a live book: the restarted one asks the shard to restate its books."""
    with GatewayStack() as stack:
        rnd = random.Random(7)
        trader = await HxClient(stack.url, "bin").connect()
        await trader.login(Account.create().key)
        try:
            await _random_flow(trader, rnd, 600, BTC_USD)
            await asyncio.sleep(1.0)
            implied = OpenOrders()
            for ev in drain(trader.events):
                implied.apply(ev)
            engine_book = implied.book()
            assert engine_book[0] and engine_book[1], "the flow leaves resting orders on both sides"
        finally:
            await trader.close()
        stack.pipeline.kill("gateway-0")
        stack.pipeline.restart("gateway-0")
        late = await HxClient(stack.url, "json").connect()
        try:
            book = await late.subscribe_book(BTC_USD)
            for _ in range(50):  # the restatement may land just after the first snapshot
                if book.as_tuple() == engine_book:
                    break
                await asyncio.sleep(0.1)
            assert book.as_tuple() == engine_book
        finally:
            await late.close()
