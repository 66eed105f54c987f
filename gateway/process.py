"""The gateway process entry point: ``run_gateway`` (a blocking multiprocessing target).

Start-up: attach the rings its options name (the supervisor created them and checks their
identity: see ``engine.ring.RingRef``): this gateway produces one order ring per destination
(shards, or risk partitions when risk is in the path) and consumes every event ring it is given
(each shard's, each risk partition's) with its own cursor and a blocking wake-up FIFO so an idle
gateway sleeps. Then load the market list, open the shared account registry, listen with
SO_REUSEPORT (several gateway processes share one port; the kernel spreads connections), and set
``ready``. SIGTERM: close every connection with a reason, stop the pump, detach the rings, return.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from picows import ws_create_server

from engine.accounts.account_registry import AccountRegistry
from engine.host import apply_realtime_priority
from engine.host.health_board import open_health_slot
from engine.host.metrics import Metrics
from engine.host.process_identity import become_stage, remove_pid_file
from engine.ring import Blocking, ConsumerRef, RingRef
from engine.types.enums import MsgType
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS
from gateway.auth import Authenticator
from gateway.order_router import RingRouter
from gateway.protocol.market_info import MarketCatalog
from gateway.server import GatewayOptions, GatewayServer
from gateway.what_if import RiskSpecSource

log = logging.getLogger("hx.gateway")


@dataclass(frozen=True)
class GatewayProcessOptions:
    """What one gateway process is told: where to listen, its rings (by ref), its settings."""

    index: int
    host: str
    port: int
    markets_path: str
    state_dir: str  # the run's state directory: the shared account registry lives here
    destinations: tuple[RingRef, ...]  # order rings, in destination order
    route: str  # "market" (destinations are shards) or "account" (risk partitions)
    events: tuple[ConsumerRef, ...]  # every event ring this gateway reads, with its cursor
    private_from: tuple[bool, ...] = ()  # per event ring: route its private events (default: all)
    oracle: RingRef | None = None  # its ring into the oracle (the ``resolve`` op); None: no oracle
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    supervisor_pid: int = 0  # die with this parent (0: no such request)
    health_board: str = ""  # the run's health board (shared memory) and this process's slot in it
    health_slot: int = -1

    @property
    def name(self) -> str:
        return f"gateway-{self.index}"


async def serve(
    process: GatewayProcessOptions,
    ready: Any = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one gateway on the current event loop until ``stop`` is set (or forever)."""
    options = process.gateway
    catalog = MarketCatalog.load(process.markets_path)
    registry = AccountRegistry(Path(process.state_dir))
    auth = Authenticator(registry, options.chain_id, options.challenge_ttl_s)
    router = RingRouter(process.destinations, process.route)
    rings = [ref.ring.attach() for ref in process.events]
    consumers = [
        ring.consumer(ref.index, Blocking(spins=0, max_park_ms=max(1, int(options.max_park_ms))))
        for ring, ref in zip(rings, process.events, strict=True)
    ]
    if any(c.cursor or c.dropped for c in consumers):
        # Restarted mid-stream: our books missed history. Ask every shard to restate its books.
        router.submit(encode(MsgType.L2_SNAPSHOT_REQUEST, ALL_MARKETS), [ALL_MARKETS])
    private = list(process.private_from) if process.private_from else [True] * len(consumers)
    server = GatewayServer(catalog, auth, router, consumers, options, private)
    server.faucet_index = process.index
    oracle_ring = process.oracle.attach() if process.oracle is not None else None
    if oracle_ring is not None:
        oracle_ring.set_producer()
    server.oracle_ring = oracle_ring
    # doorbell batching: the frames one loop iteration reads reach risk (or the shard) as one burst
    # with one wake-up, not one wake-up (and one preempting batch downstream) per frame
    loop = asyncio.get_running_loop()
    for ring in (*router.rings, *([oracle_ring] if oracle_ring is not None else [])):
        ring.defer_wakes(loop.call_soon)
        server.doorbells.append(ring)
    server.risk_spec = RiskSpecSource(process.markets_path)
    if process.route == "account":
        server.enable_risk(process.index, process.state_dir)
    server.health = open_health_slot(process.health_board, process.health_slot)
    server.metrics = server.fanout.metrics = Metrics("gateway", server.health.metrics)
    stop = stop or asyncio.Event()
    ws_server = await ws_create_server(
        server.listener_factory,
        process.host,
        process.port,
        reuse_port=True,
        websocket_handshake_timeout=options.handshake_timeout_s,
        max_frame_size=options.max_frame_bytes,
        enable_auto_pong=False,
        disconnect_on_exception=True,
        logger_name="hx.gateway",
    )
    pump = asyncio.create_task(server.run_pump())
    sweeper = asyncio.create_task(server.run_sweeper())
    # what start-up built lives as long as the process: out of the collector's sight, so that a
    # full collection walks only what sessions have made since (as the shard and risk do)
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        ws_server.close()
        server.close_all()
        await asyncio.sleep(0.05)  # let close frames go out
        server.stop_pump()
        sweeper.cancel()
        for task in (pump, sweeper):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for consumer in consumers:
            consumer.close()
        for ring in rings:
            ring.close()
        router.close()
        if oracle_ring is not None:
            oracle_ring.close()
        registry.close()


def run_gateway(process: GatewayProcessOptions, ready: Any = None) -> None:
    """Blocking: serve ``process`` until SIGTERM (SIGINT is the supervisor's).

    ``ready`` (a multiprocessing Event) is set once the port is listening.
    """
    if process.supervisor_pid:
        become_stage(process.name, process.state_dir, process.supervisor_pid)
    if not process.supervisor_pid:  # a stage process logs JSON (become_stage); alone: plain text
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s gateway-%(process)d %(levelname)s %(message)s"
        )
    policy = apply_realtime_priority(process.gateway.realtime_priority)
    if "refused" in policy:
        logging.warning("gateway %d runs %s", process.index, policy)
    uvloop.install()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's: it stops us in order
        await serve(process, ready, stop)

    try:
        asyncio.run(main())
    finally:
        if process.supervisor_pid:
            remove_pid_file(process.state_dir, process.name)
