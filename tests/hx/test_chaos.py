"""Chaos: kill -9 the shard, then risk, then the gateway, then settlement, then the chain (anvil),
under load from clients on both protocols, money deposited on the local chain.

After every restart no acknowledged order is lost or acknowledged twice, no fill is seen twice, the
final book and balances equal those of an uninterrupted run fed the same acknowledged orders, and
the chain reconciles: settlement carries on past the kills without a halt, and ``hx audit`` rebuilds
every batch's trees from the chain alone and finds them equal to the roots posted.

The market is the default config's prediction market (no fees) and every order is one share at
one price: whichever side happens to take, each fill moves the same money, so the uninterrupted
run's result does not depend on how the two clients' streams interleave - only on which orders
were accepted, which is what a lost or doubled order or fill would change.

The gateway is killed between bursts (all answers in): an order in flight on a killed gateway has
an unknown fate to its client until it resumes its session (the gateway tests cover resume).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.risk.process import rebuild_from_journal
from engine.types.market_spec import load_markets
from gateway.sdk import Fill, HxClient, OrderAccepted
from gateway.sdk.events import Balance
from hx.config import DEFAULT_CONFIG, load_config
from hx.demo.chain_funding import ChainFunder
from hx.pipeline import Pipeline
from hx.topology import Topology
from settlement.audit import audit

pytestmark = pytest.mark.timeout(300)

MARKET = next(m for m, spec in load_markets(DEFAULT_CONFIG).items() if spec.symbol == "PRES28-YES")
PRICE = "0.5"
BURST = 25  # orders per client per burst
BUY_BURSTS, SELL_BURSTS = 8, 6  # bids outnumber asks: the final book keeps resting bids
KEYS = {"buyer": "0x" + "11" * 32, "seller": "0x" + "22" * 32}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Trader:
    role: str
    side: str
    protocol: str
    client: HxClient | None = None
    account_id: int = 0
    acked: collections.Counter[int] = field(default_factory=collections.Counter)
    fills: collections.Counter[tuple[int, int, int]] = field(default_factory=collections.Counter)
    next_coid: int = 1

    async def connect(self, url: str, fund: bool, funder: ChainFunder | None = None) -> None:
        self.client = await HxClient(url, self.protocol, timeout_s=60).connect()
        self.account_id = await self.client.login(KEYS[self.role])
        if not fund:
            return
        # the seller sells YES short, on margin
        if funder is None:
            await self.client.faucet("USDC", "100000")
        else:  # a deposit on the chain, credited by settlement
            await asyncio.to_thread(funder.fund, KEYS[self.role], "USDC", 100_000)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                ev = await asyncio.wait_for(self.client.events.get(), 1.0)
            except TimeoutError:
                continue  # the deadline, not pytest's timeout, ends a wait for a credit that never comes
            if isinstance(ev, Balance) and ev.asset == 0 and ev.balance > 0:
                return
        raise AssertionError(f"{self.role}: never credited")

    def drain(self) -> None:
        assert self.client is not None
        while not self.client.events.empty():
            ev = self.client.events.get_nowait()
            if isinstance(ev, Fill):
                self.fills[(ev.seq, ev.taker_order_id, ev.maker_order_id)] += 1

    def burst(self, coids: list[int] | None = None) -> asyncio.Future[Any]:
        """Send one burst (fire now, answers later); coids default to the next BURST."""
        assert self.client is not None
        if coids is None:
            coids = list(range(self.next_coid, self.next_coid + BURST))
            self.next_coid += BURST
        orders = [
            {"market": MARKET, "side": self.side, "price": PRICE, "size": "1", "client_order_id": c}
            for c in coids
        ]
        return asyncio.ensure_future(self.client.place_many(orders))

    def record(self, results: list[Any]) -> None:
        for r in results:
            assert isinstance(r, OrderAccepted), r
            self.acked[r.client_order_id] += 1


class Exchange:
    """A real pipeline (shard, risk, gateway processes) on the default config; with ``chain`` also
    the local chain and settlement (money by deposit), else the faucet."""

    def __init__(self, root: Path, chain: bool) -> None:
        self.port = _free_port()
        self.root = root
        topology = Topology(
            run_id=f"hx-chaos-{os.getpid()}-{time.monotonic_ns() % 10**9}",
            shards=1,
            risk=1,
            gateways=1,
            settlement=int(chain),
            chain=int(chain),
            order_ring_slots=1 << 14,
            event_ring_slots=1 << 16,
        )
        self.pipeline = Pipeline(
            topology,
            markets_path=DEFAULT_CONFIG,
            state_dir=root,
            wait="blocking",
            fsync="none",
            host="127.0.0.1",
            port=self.port,
            gateway={"faucet": not chain},
            settlement=asdict(load_config(DEFAULT_CONFIG).settlement) if chain else {},
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def kill_and_restart(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        old = self.pipeline.procs[name].process.pid
        await loop.run_in_executor(None, self.pipeline.kill, name)
        await loop.run_in_executor(None, self.pipeline.restart, name)
        assert self.pipeline.procs[name].process.pid != old

    async def kill_anvil(self) -> None:
        """kill -9 the chain node itself (the connection every chain call depends on); its stage
        exits, and is restarted on the state anvil dumped (as the supervisor would)."""
        loop = asyncio.get_running_loop()
        pid = int((self.root / "chain" / "anvil.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        handle = self.pipeline.procs["chain-0"]
        await loop.run_in_executor(None, handle.process.join, 30)
        await loop.run_in_executor(None, self.pipeline.restart, "chain-0")

    def status(self) -> dict[str, Any]:
        path = self.root / "settlement-0" / "status.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def start(self) -> None:
        self.pipeline.start()
        self.risk_options = self.pipeline.options_of("risk", 0)

    def balances(self, accounts: dict[str, int]) -> dict[str, tuple[int, ...]]:
        """Every trader's balances as risk's journal rebuilds them (after the pipeline stopped)."""
        engine, _ = rebuild_from_journal(self.risk_options, use_snapshot=True)
        book = engine.book
        return {role: tuple(int(x) for x in book.balance[book.rows[a]]) for role, a in accounts.items()}


async def _book(url: str) -> tuple[Any, ...]:
    async with HxClient(url, "json") as watcher:
        book = await watcher.subscribe_book(MARKET)
        deadline = time.monotonic() + 10
        while book.seq == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        return (tuple(book.bids()), tuple(book.asks()))


async def _chaos_run(root: Path) -> tuple[dict[str, Trader], tuple[Any, ...], dict[str, tuple[int, ...]]]:
    ex = Exchange(root, chain=True)
    ex.start()
    traders = {"buyer": Trader("buyer", "buy", "bin"), "seller": Trader("seller", "sell", "json")}
    try:
        funder = await asyncio.to_thread(ChainFunder.wait_for, root)
        for t in traders.values():
            await t.connect(ex.url, fund=True, funder=funder)
        kills = {1: "shard-0", 2: "settlement-0", 3: "risk-0"}  # while both sides trade
        before_last = 0
        for burst in range(BUY_BURSTS):
            sends = [traders["buyer"].burst()]
            if burst < SELL_BURSTS:
                sends.append(traders["seller"].burst())
            if burst in kills:  # right behind a burst: orders in the rings, the process mid-stream
                await ex.kill_and_restart(kills[burst])
            if burst == 4:
                await ex.kill_anvil()
                before_last = ex.status().get("confirmed_batch", 0)
            for t, results in zip(traders.values(), await asyncio.gather(*sends), strict=False):
                t.record(results)
            if burst == 5:  # every answer is in: kill the gateway, reconnect, go on
                for t in traders.values():
                    t.drain()
                await ex.kill_and_restart("gateway-0")
                for t in traders.values():
                    await t.connect(ex.url, fund=False)
        await asyncio.sleep(1.0)
        for t in traders.values():
            t.drain()
        book = await _book(ex.url)
        for t in traders.values():
            assert t.client is not None
            await t.client.close()
        # the chain reconciles: the trades after the last kill are settled in new batches, nothing
        # is pending or halted, and the audit rebuilds every posted tree from the chain's data alone
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = ex.status()
            if status.get("confirmed_batch", 0) > before_last and status.get("pending_batch") is None:
                break
            await asyncio.sleep(0.5)
        assert status["confirmed_batch"] > before_last and not status["halted"], status
        assert status["deposits_credited_on_chain"] == 2, status
        chain = json.loads((root / "settlement-chain.json").read_text())
        manifest = json.loads((root / "chain" / "manifest.json").read_text())
        report = await asyncio.to_thread(audit, chain["rpc_url"], manifest)
        assert report.ok and report.batches >= status["confirmed_batch"], report
        assert all(h.process.is_alive() for h in ex.pipeline.procs.values())
    finally:
        ex.pipeline.stop()
    return traders, book, ex.balances({r: t.account_id for r, t in traders.items()})


async def _clean_run(
    root: Path, chaos: dict[str, Trader]
) -> tuple[tuple[Any, ...], dict[str, tuple[int, ...]]]:
    """The same acknowledged orders, in the same bursts, with nothing killed."""
    ex = Exchange(root, chain=False)
    ex.start()
    traders = {role: Trader(role, t.side, t.protocol) for role, t in chaos.items()}
    try:
        for t in traders.values():
            await t.connect(ex.url, fund=True)
        for role, t in traders.items():
            coids = sorted(chaos[role].acked)
            for i in range(0, len(coids), BURST):
                t.record(await t.burst(coids[i : i + BURST]))
        await asyncio.sleep(1.0)
        book = await _book(ex.url)
        for t in traders.values():
            assert t.client is not None
            await t.client.close()
    finally:
        ex.pipeline.stop()
    return book, ex.balances({r: t.account_id for r, t in traders.items()})


async def test_kill_shard_risk_and_gateway_under_load_loses_and_doubles_nothing() -> None:
    with tempfile.TemporaryDirectory(prefix="hx-chaos-") as tmp:
        traders, book, balances = await _chaos_run(Path(tmp) / "chaos")
        for role, bursts in (("buyer", BUY_BURSTS), ("seller", SELL_BURSTS)):
            t = traders[role]
            assert set(t.acked) == set(range(1, bursts * BURST + 1)), f"{role}: every order acknowledged"
            assert set(t.acked.values()) == {1}, f"{role}: and only once"
            assert set(t.fills.values()) <= {1}, f"{role}: no fill seen twice"
        resting = (BUY_BURSTS - SELL_BURSTS) * BURST
        assert sum(level[1] for level in book[0]) == resting and not book[1], book

        clean_book, clean_balances = await _clean_run(Path(tmp) / "clean", traders)
        assert book == clean_book
        assert balances == clean_balances
        usdc, shares = 0, 4  # asset ids in the default config
        filled = SELL_BURSTS * BURST
        assert clean_balances["seller"][shares] == -filled * 10**8
        assert clean_balances["seller"][usdc] - clean_balances["buyer"][usdc] == filled * 10**6
