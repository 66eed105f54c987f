"""The gateway process entry point: ``run_gateway`` (a blocking multiprocessing target).

Start-up: attach the rings the topology names (the supervisor created them; this gateway is the
producer of ``order_ring(index, s)`` and consumer ``gateway_consumer_index(index)`` of every
``event_ring(s)``, with a blocking wake-up FIFO so an idle gateway sleeps), load the market list,
open the shared account registry, listen with SO_REUSEPORT (several gateway processes share one
port; the kernel spreads connections), then set ``ready``. SIGTERM: close every connection
with a reason, stop the pump, detach the rings, return.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import uvloop
from picows import ws_create_server

from engine.host import apply_realtime_priority
from engine.ring import Blocking, RingBuffer
from engine.types.enums import MsgType
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS
from gateway.account_registry import AccountRegistry
from gateway.auth import Authenticator
from gateway.market_catalog import MarketCatalog
from gateway.order_router import make_router
from gateway.server import GatewayOptions, GatewayServer

log = logging.getLogger("hx.gateway")


async def serve(
    topology: Any,
    index: int,
    host: str,
    port: int,
    markets_path: str,
    state_dir: str,
    options: GatewayOptions,
    ready: Any = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one gateway on the current event loop until ``stop`` is set (or forever)."""
    catalog = MarketCatalog.load(markets_path)
    registry = AccountRegistry(Path(state_dir))
    auth = Authenticator(registry, options.chain_id, options.challenge_ttl_s)
    router = make_router(options.route_via, topology, index)
    rings = [RingBuffer.attach(topology.event_ring(s)) for s in range(topology.shards)]
    consumers = [
        ring.consumer(
            topology.gateway_consumer_index(index),
            Blocking(spins=0, max_park_ms=max(1, int(options.max_park_ms))),
        )
        for ring in rings
    ]
    if any(c.cursor or c.dropped for c in consumers):
        # Restarted mid-stream: our books missed history. Ask every shard to restate its books.
        router.submit(encode(MsgType.L2_SNAPSHOT_REQUEST, ALL_MARKETS), [ALL_MARKETS])
    server = GatewayServer(catalog, auth, router, consumers, options)
    stop = stop or asyncio.Event()
    ws_server = await ws_create_server(
        server.listener_factory,
        host,
        port,
        reuse_port=True,
        websocket_handshake_timeout=options.handshake_timeout_s,
        max_frame_size=options.max_frame_bytes,
        enable_auto_pong=False,
        disconnect_on_exception=True,
        logger_name="hx.gateway",
    )
    pump = asyncio.create_task(server.run_pump())
    sweeper = asyncio.create_task(server.run_sweeper())
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
        registry.close()


def run_gateway(
    topology: Any,
    index: int,
    host: str,
    port: int,
    markets_path: str,
    state_dir: str,
    ready: Any = None,
    **options: Any,
) -> None:
    """Blocking: serve gateway ``index`` on ``host:port`` until SIGTERM (SIGINT is the supervisor's).

    ``options`` are :class:`gateway.server.GatewayOptions` fields (rate limits, timeouts, caps,
    ``loop_mode``...). ``ready`` (a multiprocessing Event) is set once the port is listening.
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s gateway-%(process)d %(levelname)s %(message)s"
    )
    opts = GatewayOptions(**options)
    policy = apply_realtime_priority(opts.realtime_priority)
    if "refused" in policy:
        logging.warning("gateway %d runs %s", index, policy)
    uvloop.install()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's: it stops us in order
        await serve(topology, index, host, port, markets_path, state_dir, opts, ready, stop)

    asyncio.run(main())
