"""A revoked agent key stops trading at once: its live sessions are closed, not only its next login
refused (docs/gateway.md section 2: a stolen agent key trades "until it is revoked")."""

from __future__ import annotations

import asyncio
import time

import pytest
from eth_account import Account
from gateway_harness import GatewayStack

from engine.accounts.account_registry import AccountRegistry
from gateway.sdk import Disconnected, HxClient

pytestmark = pytest.mark.timeout(90)


async def _closed(c: HxClient, timeout: float) -> Disconnected | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            ev = await asyncio.wait_for(c.events.get(), end - time.monotonic())
        except TimeoutError:
            return None
        if isinstance(ev, Disconnected):
            return ev
    return None


async def test_revoking_an_agent_closes_its_live_sessions_here_and_from_another_gateway():
    main, agent = Account.create(), Account.create()
    with GatewayStack() as st:
        m = await HxClient(st.url, "json").connect()
        try:
            await m.login(main.key)
            # revoked through this gateway's op: the agent's session here closes at once
            await m.approve_agent(agent.address)
            a = await HxClient(st.url, "json").connect()
            await a.login(agent.key, account=main.address)
            await m.approve_agent(agent.address, revoke=True)
            ev = await _closed(a, 3.0)
            assert ev is not None and ev.code == 1008 and "revoked" in ev.reason
            await a.close()
            # revoked by another gateway (its line in the shared registry): closed within seconds
            await m.approve_agent(agent.address)
            a = await HxClient(st.url, "json").connect()
            await a.login(agent.key, account=main.address)
            other = AccountRegistry(st.state_dir)
            try:
                account_id = other.get_account_id(main.address)
                assert account_id is not None
                assert other.revoke_agent(account_id, agent.address, time.time_ns() // 1000 + 10**6)
            finally:
                other.close()
            ev = await _closed(a, 5.0)
            assert ev is not None and ev.code == 1008 and "revoked" in ev.reason
            await a.close()
        finally:
            await m.close()
