"""The oracle behind a real gateway: ``mark``/``index``/``funding`` channels and the ``resolve`` op on
both protocols, through the SDK's typed events (shard, risk, oracle and gateway processes)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from test_oracle_process import FAST_ORACLE, write_config

from engine.types.enums import PriceStatus, RejectCode, ResolutionState
from gateway.sdk import FundingRate, HxClient, Mark, OrderRejectedEvent, ResolutionStatus
from gateway.sdk.errors import RequestRejected
from hx.pipeline import Pipeline
from hx.topology import Topology

PREDICTION = """
[[oracle.prediction]]
market = "PRES28-YES"
authority = 1              # the first account to log in
close_at_s = 1             # long closed: proposals are accepted
dispute_window_s = 3600
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _next(client: HxClient, kind: type, timeout: float = 15.0, **match: Any) -> Any:
    while True:
        ev = await asyncio.wait_for(client.events.get(), timeout)
        if isinstance(ev, kind) and all(getattr(ev, k) == v for k, v in match.items()):
            return ev


@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_marks_funding_and_resolution_reach_sdk_clients(tmp_path: Path, protocol: str) -> None:
    config = write_config(tmp_path, FAST_ORACLE + PREDICTION)
    port = _port()
    topo = Topology(run_id=f"hx-t-ogw-{os.getpid()}-{protocol}", shards=1, gateways=1, risk=1, oracle=1)
    pipe = Pipeline(topo, markets_path=config, state_dir=tmp_path / "state", fsync="none", port=port)
    with pipe:
        url = f"ws://127.0.0.1:{port}"
        authority = await HxClient(url, protocol).connect()
        other = await HxClient(url, protocol).connect()
        try:
            assert await authority.login(Account.create().key) == 1
            assert await other.login(Account.create().key) == 2
            await authority.subscribe(100, "mark")
            await authority.subscribe(100, "funding")
            await authority.subscribe(400, "trades")  # any channel of the market: its resolution too
            mark = await _next(authority, Mark, market=100)
            assert 60_000_000_000 < mark.mark_micro < 68_000_000_000
            assert 60_000_000_000 < mark.index_micro < 68_000_000_000 and mark.status == PriceStatus.OK
            rate = await _next(authority, FundingRate, market=100)
            assert rate.interval_ns == 10**9 and rate.next_funding_ns > rate.interval_ns
            await other.resolve(400, "yes")  # the gateway forwards; the oracle refuses
            refused = await _next(other, OrderRejectedEvent, market=400)
            assert refused.code == RejectCode.NOT_RESOLUTION_AUTHORITY
            await authority.resolve(400, "yes")
            status = await _next(authority, ResolutionStatus, market=400)
            assert (status.state, status.outcome) == (ResolutionState.PROPOSED, 1)
            with pytest.raises(RequestRejected) as bad:
                await authority.resolve(400, "maybe")
            assert bad.value.code == RejectCode.BAD_FIELD
        finally:
            await authority.close()
            await other.close()
