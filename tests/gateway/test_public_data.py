"""Public market data without login, past every timeout; the SDK reports closes and reconnects."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, GatewayStack

from gateway.sdk import ConnectionClosed, Disconnected, HxClient, Reconnected

pytestmark = pytest.mark.timeout(120)
SHORT = {"login_timeout_s": 1.0, "idle_timeout_s": 2.0, "challenge_ttl_s": 0.5}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def drain(q: asyncio.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


async def _quote(trader: HxClient, k: int) -> None:
    await trader.place(BTC_USD, "buy", 1000 + k, 1, post_only=True, client_order_id=100 + k)


async def test_anonymous_subscriber_outlives_login_and_idle_timeouts():
    with GatewayStack(gateway_options=SHORT) as st:
        trader = await HxClient(st.url, "bin").connect()
        watcher = await HxClient(st.url, "json").connect()  # never logs in, never sends after subscribe
        idle = await HxClient(st.url, "json").connect()  # neither logs in nor subscribes
        try:
            await trader.login(Account.create().key)
            book = await watcher.subscribe_book(BTC_USD)
            for k in range(5):  # 5 s: past the login timeout (1 s) and the idle timeout (2 s)
                await _quote(trader, k)
                await asyncio.sleep(1.0)
            assert not watcher.closed, watcher.close_info
            await asyncio.sleep(0.3)
            assert book.in_sync and [p for p, _, _ in book.bids()] == [1004, 1003, 1002, 1001, 1000]
            # the anonymous connection that did nothing was closed with a reason, and said so
            assert idle.closed and idle.close_info and "login timeout" in idle.close_info[1]
            assert [e for e in drain(idle.events) if isinstance(e, Disconnected)][0].code == 1008
            with pytest.raises(ConnectionClosed):
                await idle.request({"op": "ping"})
        finally:
            for c in (trader, watcher, idle):
                await c.close()


async def test_challenge_expires_before_the_login_timeout():
    """CHALLENGE_EXPIRED is reachable: the challenge TTL is below the login timeout."""
    with GatewayStack(gateway_options={"challenge_ttl_s": 0.3}) as st:
        c = await HxClient(st.url, "bin").connect()
        try:
            from gateway.protocol.signing import login_typed_data, sign_typed_data
            from gateway.sdk import RequestRejected

            key = Account.create()
            ch = await c.request({"op": "challenge"})
            await asyncio.sleep(0.6)
            typed = login_typed_data(
                ch["chain_id"], key.address.lower(), key.address.lower(), ch["nonce"], ch["expires_at"]
            )
            with pytest.raises(RequestRejected) as exc:
                await c.request(
                    {
                        "op": "login",
                        "account": key.address.lower(),
                        "nonce": ch["nonce"],
                        "signature": sign_typed_data(key.key, typed),
                    }
                )
            assert exc.value.reason == "CHALLENGE_EXPIRED"
        finally:
            await c.close()


async def test_sdk_reports_a_gateway_restart_then_reconnects_logs_in_and_resyncs():
    with GatewayStack() as st:
        key = Account.create().key
        trader = await HxClient(st.url, "bin").connect()
        watcher = await HxClient(st.url, "bin", reconnect=True).connect()
        try:
            await trader.login(key)
            await watcher.login(Account.create().key)
            book = await watcher.subscribe_book(BTC_USD)
            await _quote(trader, 0)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, st.pipeline.kill, "gateway-0")
            ev = await asyncio.wait_for(watcher.events.get(), 10)
            while not isinstance(ev, Disconnected):
                ev = await asyncio.wait_for(watcher.events.get(), 10)
            assert not book.in_sync  # never a stale book presented as live
            await loop.run_in_executor(None, st.pipeline.restart, "gateway-0")
            ev = await asyncio.wait_for(watcher.events.get(), 30)
            assert isinstance(ev, Reconnected), ev
            assert watcher.account_id  # logged in again
            await book.wait_synced(10)
            # the trader reconnects by hand and quotes again; the watcher's book follows
            trader = await HxClient(st.url, "bin").connect()
            await trader.login(key)
            await _quote(trader, 1)
            await asyncio.sleep(0.5)
            assert [p for p, _, _ in book.bids()] == [1001, 1000]
            assert (await watcher.request({"op": "ping"}))["type"] == "pong"
        finally:
            await trader.close()
            await watcher.close()


async def test_watch_book_example_keeps_printing_a_live_book_past_every_timeout():
    with GatewayStack(gateway_options=SHORT) as st:
        trader = await HxClient(st.url, "bin").connect()
        await trader.login(Account.create().key)
        proc = subprocess.Popen(
            [sys.executable, "examples/watch_book.py", "--url", st.url, "--market", str(BTC_USD)]
            + ["--seconds", "5", "--interval", "0.5"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for k in range(5):
                await asyncio.sleep(1.0)
                await _quote(trader, k)
            out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        finally:
            proc.kill()
            await trader.close()
        lines = out.splitlines()
        assert proc.returncode == 0
        assert not any("disconnected" in line for line in lines), out
        assert lines[-1].split("bids ")[1].startswith("[(1004, "), out  # the last quote is shown
