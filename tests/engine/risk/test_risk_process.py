"""The risk stage through real processes: gateway -> risk -> shard -> risk -> gateway, over real rings."""

from __future__ import annotations

import asyncio

import pytest
from eth_account import Account
from gateway_harness import BTC_USD, GatewayStack

from engine.types.enums import RejectCode
from gateway.sdk.client import HxClient
from gateway.sdk.errors import OrderRejected
from gateway.sdk.events import Balance, Fill, Margin, Position


async def _next(client: HxClient, kind: type, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    while True:
        ev = await asyncio.wait_for(client.events.get(), timeout)
        if isinstance(ev, kind):
            return ev


@pytest.mark.parametrize("protocol", ["bin", "json"])
async def test_margin_gates_orders_and_private_channels_show_the_results(protocol: str) -> None:
    with GatewayStack(risk=1, gateway_options={"faucet": True}) as stack:
        maker = await HxClient(stack.url, protocol).connect()
        taker = await HxClient(stack.url, protocol).connect()
        try:
            await maker.login(Account.create().key)
            await taker.login(Account.create().key)
            with pytest.raises(OrderRejected) as refused:
                await maker.place(BTC_USD, "buy", "50000", "0.01")
            assert refused.value.code == RejectCode.INSUFFICIENT_MARGIN
            for client in (maker, taker):
                await client.faucet("USDC", "10000")
                bal = await _next(client, Balance)
                assert (bal.asset, bal.balance) == (0, 10_000 * 10**6)
            bid = await maker.place(BTC_USD, "buy", "50000", "0.01", client_order_id=7)
            await taker.place(BTC_USD, "sell", "50000", "0.01", client_order_id=8)
            fill = await _next(maker, Fill)
            assert fill.maker_order_id == bid.order_id
            assert (fill.taker_account, fill.taker_order_id) == (0, 0)  # the counterparty stays private
            assert fill.seq > 1  # on the maker's own gap-free private stream
            pos = await _next(maker, Position)
            assert pos.size_atoms == 1_000_000 and pos.cost_micro == 500 * 10**6
            margin = await _next(maker, Margin)
            assert margin.initial_micro > 0 and margin.equity_micro <= 10_000 * 10**6
            fee = await _next(taker, Balance)  # 500 ppm of $500
            assert fee.delta == -250_000
        finally:
            await maker.close()
            await taker.close()


def _commands(n_orders: int, seed: int = 5) -> list[bytes]:
    """Deposits for 20 accounts, a mark, then random crossing orders on the perp and the spot market."""
    import random

    from engine.types.enums import MsgType
    from engine.wire.codec import encode

    rng = random.Random(seed)
    out = [encode(MsgType.MARK_PRICE, BTC_USD, price_ticks=100_000)]  # $50,000
    out.append(encode(MsgType.MARK_PRICE, 2, price_ticks=200_000))  # ETH $2,000
    accounts = list(range(1, 21))
    for k, acct in enumerate(accounts):
        out.append(
            encode(MsgType.DEPOSIT, source=1, account=acct, asset=0, amount=20_000 * 10**6, deposit_id=k + 1)
        )
        out.append(
            encode(MsgType.DEPOSIT, source=1, account=acct, asset=2, amount=5 * 10**8, deposit_id=1000 + k)
        )
    for coid in range(1, n_orders + 1):
        market = BTC_USD if rng.random() < 0.6 else 2
        base = 100_000 if market == BTC_USD else 200_000
        out.append(
            encode(
                MsgType.NEW_ORDER,
                market,
                account=rng.choice(accounts),
                client_order_id=coid,
                side=rng.randint(0, 1),
                price_ticks=base + rng.randint(-30, 30),
                size_lots=rng.randint(1, 20),
                tif=rng.choice([0, 0, 1]),
            )
        )
    return out


def _drain(consumer, into: list[bytes]) -> int:  # type: ignore[no-untyped-def]
    view, n = consumer.peek()
    if n:
        into.append(bytes(view))
    view.release()
    consumer.release(n)
    return n


@pytest.mark.slow
def test_kill_minus_9_of_risk_loses_and_doubles_nothing_and_replays_to_the_same_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    import numpy as np
    from gateway_harness import MARKETS_TOML

    from engine.journal import SnapshotStore
    from engine.risk.process import rebuild_from_journal
    from engine.risk.risk_engine import RiskEngine
    from engine.types.enums import MsgType
    from engine.wire.codec import decode
    from hx.pipeline import Pipeline
    from hx.topology import Topology

    markets = tmp_path / "markets.toml"
    markets.write_text(MARKETS_TOML)
    topo = Topology(run_id=f"hx-t-riskkill-{os.getpid()}", shards=1, gateways=0, risk=1, recorders=1)
    commands = _commands(3000)
    events: list[bytes] = []
    with Pipeline(
        topo,
        markets_path=markets,
        state_dir=tmp_path / "state",
        fsync="none",
        snapshot_every=50,
        validate=True,
    ) as pipe:
        ring = pipe.rings[topo.risk_in_ring(0, 0)]
        consumer = pipe.rings[topo.risk_event_ring(0)].consumer(0)
        try:
            for start in range(0, len(commands), 100):
                chunk = b"".join(commands[start : start + 100])
                ring.publish(chunk, timeout_s=30)
                _drain(consumer, events)
                if start == 1500:
                    time.sleep(0.05)
                    pipe.kill("risk-0")
                    pipe.restart("risk-0")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if not _drain(consumer, events) and consumer.wait(1.0) == 0:
                    break
        finally:
            consumer.close()
        options = pipe.options_of("risk", 0)
        assert pipe.health()["risk-0"]
    stream = b"".join(events)
    rows = np.frombuffer(stream, np.uint8).reshape(-1, 64)
    per_account: dict[int, list[int]] = {}
    for off in range(0, len(stream), 64):
        ev = decode(stream, off)
        account = ev.get("account", ev.get("taker_account") or ev.get("maker_account"))
        if ev["msg_type"] != MsgType.HEARTBEAT and account:
            per_account.setdefault(account, []).append(ev["seq"])
    for account, seqs in per_account.items():  # every account's private stream is gap-free
        assert seqs == list(range(1, len(seqs) + 1)), f"account {account}: events lost or doubled"
    fills = (rows[:, 0] == MsgType.POSITION).sum()  # the perp traded
    assert fills > 100
    # the state the live process ended with (its SIGTERM snapshot) == its journal replayed from scratch
    replayed, last = rebuild_from_journal(options)
    seq, blob = SnapshotStore(tmp_path / "state" / "risk-0" / "snapshots").latest_valid()  # type: ignore[misc]
    assert seq == last
    from engine.risk.process import SNAP_META, SNAP_RING

    n_rings = SNAP_META.unpack_from(blob, 0)[1]
    offset = SNAP_META.size + SNAP_RING.size * (n_rings + len(options.commands) + len(options.shard_events))
    live = RiskEngine(replayed.config)
    live.restore(bytes(blob[offset:]))
    assert live.state_hash() == replayed.state_hash()
    replayed.validate()


def test_tiny_rings_never_deadlock_risk_and_the_shard(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Rings of 16 slots: risk's order ring and the shard's event ring fill at once (crossing orders
    make several events each). Risk holds its outputs and keeps taking the shard's events, so the
    shard always moves: every order is answered and the heartbeat sent last comes back through the
    shard (market_id 1)."""
    import os
    import time

    from gateway_harness import MARKETS_TOML

    from engine.types.enums import MsgType
    from engine.wire.codec import decode, encode
    from hx.pipeline import Pipeline
    from hx.topology import Topology

    markets = tmp_path / "markets.toml"
    markets.write_text(MARKETS_TOML)
    topo = Topology(
        run_id=f"hx-t-risktiny-{os.getpid()}",
        shards=1,
        gateways=0,
        risk=1,
        recorders=1,
        order_ring_slots=16,
        event_ring_slots=16,
    )
    commands = _commands(700) + [encode(MsgType.HEARTBEAT, ts_ns=424242)]
    events: list[bytes] = []
    with Pipeline(topo, markets_path=markets, state_dir=tmp_path / "state", fsync="none") as pipe:
        ring = pipe.rings[topo.risk_in_ring(0, 0)]
        out = pipe.rings[topo.risk_event_ring(0)].consumer(0)
        shard_side = pipe.rings[topo.event_ring(0)].consumer(1)  # the shard's recorder: keep it moving
        sink: list[bytes] = []
        try:
            for cmd in commands:
                while not ring.try_publish(cmd, 1):
                    _drain(out, events)
                    _drain(shard_side, sink)
            deadline = time.monotonic() + 60
            done = False
            while not done and time.monotonic() < deadline:
                _drain(shard_side, sink)
                if not _drain(out, events):
                    time.sleep(0.001)
                stream = b"".join(events)
                done = any(
                    stream[k] == MsgType.HEARTBEAT and decode(stream, k)["market_id"] == 1
                    for k in range(max(0, len(stream) - 64 * 64), len(stream), 64)
                )
        finally:
            out.close()
            shard_side.close()
        assert done, "risk and the shard stopped moving (deadlock)"
    stream = b"".join(events)
    kinds = [stream[k] for k in range(0, len(stream), 64)]
    assert kinds.count(MsgType.POSITION) > 30  # the perp traded through 16-slot rings
