"""Test harness: a real stack (rings, shard processes, gateway processes) on free loopback ports.

``GatewayStack`` wraps :class:`hx.pipeline.Pipeline` (real shard processes, real rings) and starts
gateway processes (``gateway.process.run_gateway``) as stages of the same pipeline.
Always use it as a context manager: ``stop`` kills every process and removes every ring.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from hx.pipeline import Pipeline
from hx.topology import Topology

MARKETS_TOML = """
[[asset]]
asset_id = 0
symbol = "USDC"
kind = "stable"

[[asset]]
asset_id = 1
symbol = "BTC"
kind = "crypto"

[[asset]]
asset_id = 2
symbol = "ETH"
kind = "crypto"

[[market]]
market_id = 1
symbol = "BTC-USD"
kind = "perp"
tick_size_micro = 500000      # 0.5 quote per tick
lot_size_atoms = 100000       # 0.001 base per lot
max_price_ticks = 10000000
max_size_lots = 100000000
base_asset = "BTC"
taker_fee_ppm = 500

[[market]]
market_id = 2
symbol = "ETH-USD"
kind = "spot"
tick_size_micro = 10000       # 0.01
lot_size_atoms = 1000000      # 0.01
base_asset = "ETH"
"""
BTC_USD = 1
ETH_USD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayStack:
    def __init__(
        self,
        gateways: int = 1,
        shards: int = 1,
        risk: int = 0,
        gateway_options: dict[str, Any] | None = None,
        port: int | None = None,
        wait: str = "spin-then-backoff",
        realtime_priority: int = 0,
    ) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="hx-gw-")
        root = Path(self.tmp.name)
        self.markets_path = root / "markets.toml"
        self.markets_path.write_text(MARKETS_TOML)
        self.state_dir = root / "state"
        run_id = f"hx-gwt-{os.getpid()}-{int(time.monotonic_ns() % 10**9)}"
        self.topology = Topology(
            run_id=run_id,
            shards=shards,
            gateways=gateways,
            risk=risk,
            order_ring_slots=1 << 14,
            event_ring_slots=1 << 16,
        )
        self.port = port or free_port()
        self.gateway_options = dict(gateway_options or {})
        self.pipeline = Pipeline(
            self.topology,
            markets_path=self.markets_path,
            state_dir=self.state_dir,
            wait=wait,
            fsync="none",
            realtime_priority=realtime_priority,
            host="127.0.0.1",
            port=self.port,
            gateway=self.gateway_options,
        )
        self.n_gateways = gateways

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> GatewayStack:
        try:
            self.pipeline.start()
        except BaseException:
            self.stop()
            raise
        return self

    def gateway_pids(self) -> list[int]:
        return [h.process.pid for h in self.pipeline.of_kind("gateway").values()]

    def alive(self) -> bool:
        return all(self.pipeline.health().values())

    def stop(self) -> None:
        try:
            self.pipeline.stop()
        finally:
            self.tmp.cleanup()

    def __enter__(self) -> GatewayStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
