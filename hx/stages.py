"""The stage table: every kind of process of an exchange, as data.

A row says how many processes of a kind run (from the topology), what each is told (frozen
options holding its ring refs, never the topology), its entry point, and what the supervisor does
when one dies. Ring creation (``Topology.rings``), start-up order (the order of ``STAGES``),
supervision, ``hx status`` and the process titles all derive from it: adding a kind of process
is adding a row here and its rings in ``hx.topology``.

Start order is shards, then risk, then the oracle (it feeds both), then gateways, then the demo
(a client of the gateways): every ring exists before any process starts and every consumer's
cursor is fixed when its ring is created, so nothing published is lost whatever the order;
starting the consumers of orders first means a gateway never accepts an order that
nobody can process yet. Stop order is the reverse (gateways stop taking orders first).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.ring import ConsumerRef, RingRef
from hx.topology import Topology

Restart = Literal["recover", "restart", "fatal"]


@dataclass(frozen=True)
class RunSettings:
    """How a run is configured (the CLI and config file fill it; every stage reads from it)."""

    markets_path: Path
    state_dir: Path
    wait: str = "spin-then-backoff"
    fsync: str = "batch"
    snapshot_every: int = 5000
    realtime_priority: int = 0  # SCHED_FIFO for shards and gateways (0: off); see engine.host
    pin_cpus: bool | None = None  # None: pin shards only when the machine has cores to spare
    host: str = "127.0.0.1"
    port: int = 8765
    gateway: dict[str, Any] = field(default_factory=dict)  # GatewayOptions fields
    validate: bool = False  # debug: stateful stages check every invariant after each record
    settlement: dict[str, Any] = field(default_factory=dict)  # hx.config.SettlementSection fields
    demo_shock_every_s: float = 120.0  # the demo provokes a sharp move this often


@dataclass(frozen=True)
class Run:
    """What option builders see: the topology, the settings and the nonce of every created ring."""

    topology: Topology
    settings: RunSettings
    nonces: dict[str, int]
    supervisor_pid: int
    health_board: str = ""  # the run's health board segment
    health_slots: dict[str, int] = field(default_factory=dict)  # process name -> slot

    def health(self, process: str) -> dict[str, Any]:
        return {"health_board": self.health_board, "health_slot": self.health_slots.get(process, -1)}

    def ref(self, ring: str) -> RingRef:
        return RingRef(ring, self.nonces.get(ring, 0))

    def inputs(self, process: str) -> tuple[ConsumerRef, ...]:
        return tuple(ConsumerRef(self.ref(name), index) for name, index in self.topology.inputs_of(process))

    def outputs(self, process: str) -> tuple[RingRef, ...]:
        return tuple(self.ref(name) for name in self.topology.outputs_of(process))


@dataclass(frozen=True)
class Stage:
    """One kind of process."""

    kind: str
    count: Callable[[Topology], int]
    options: Callable[[Run, int], Any]  # frozen options of instance i (built in the parent)
    entry: Callable[[Any, Any], None]  # entry(options, ready_event), a module-level function
    restart: Restart  # recover: restart from snapshot + journal; restart: fresh; fatal: stop all
    ready_timeout_s: float = 60.0

    def name(self, index: int) -> str:
        return f"{self.kind}-{index}"


# ---- shard -------------------------------------------------------------------------------------
def _cpu_for(run: Run, shard: int) -> int | None:
    cpus = sorted(os.sched_getaffinity(0))
    pin = run.settings.pin_cpus
    if pin is None:
        pin = len(cpus) >= run.topology.shards + 2
    return cpus[(shard + 1) % len(cpus)] if pin else None


def _shard_options(run: Run, shard: int) -> Any:
    from engine.shard.process import ShardOptions
    from engine.types.market_spec import load_markets

    topo, s = run.topology, run.settings
    name = f"shard-{shard}"
    inputs = run.inputs(name)
    return ShardOptions(
        shard=shard,
        inputs=tuple(ref.ring for ref in inputs),
        events=run.outputs(name)[0],
        market_ids=tuple(m for m in sorted(load_markets(s.markets_path)) if topo.shard_of(m) == shard),
        markets_path=str(s.markets_path),
        state_dir=str(s.state_dir / name),
        run_dir=str(s.state_dir),
        supervisor_pid=run.supervisor_pid,
        wait=s.wait,
        fsync=s.fsync,
        cpu=_cpu_for(run, shard),
        snapshot_every=s.snapshot_every,
        realtime_priority=s.realtime_priority,
        **run.health(name),
    )


def _run_shard(options: Any, ready: Any) -> None:
    from engine.shard.process import run_shard

    run_shard(options, ready)


# ---- risk --------------------------------------------------------------------------------------
def _risk_options(run: Run, partition: int) -> Any:
    from engine.risk.process import RiskOptions

    topo, s = run.topology, run.settings
    name = f"risk-{partition}"

    def fed_by(kind: str) -> tuple[Any, ...]:
        """This partition's input rings whose producer is of ``kind`` (consumer 0 of each)."""
        return tuple(
            run.ref(spec.name)
            for spec in topo.rings
            if name in spec.consumers and spec.producer.split("-")[0] == kind
        )

    outputs = run.outputs(name)
    return RiskOptions(
        partition=partition,
        partitions=topo.risk,
        commands=fed_by("gateway") + fed_by("feeder"),
        oracle=fed_by("oracle"),
        settlement=fed_by("settlement"),
        shard_events=tuple(
            ref for ref in run.inputs(name) if topo.ring(ref.ring.name).producer.startswith("shard-")
        ),
        orders=tuple(ref for ref in outputs if topo.ring(ref.name).consumers[0].startswith("shard-")),
        events=run.ref(topo.risk_event_ring(partition)),
        markets_path=str(s.markets_path),
        state_dir=str(s.state_dir / name),
        run_dir=str(s.state_dir),
        supervisor_pid=run.supervisor_pid,
        wait=s.wait,
        fsync=s.fsync,
        snapshot_every=s.snapshot_every,
        realtime_priority=s.realtime_priority,
        validate_every_record=s.validate,
        **run.health(name),
    )


def _run_risk(options: Any, ready: Any) -> None:
    from engine.risk.process import run_risk

    run_risk(options, ready)


# ---- gateway -----------------------------------------------------------------------------------
def _gateway_options(run: Run, index: int) -> Any:
    from gateway.process import GatewayProcessOptions
    from gateway.server import GatewayOptions

    s = run.settings
    name = f"gateway-{index}"
    topo = run.topology
    events = run.inputs(name)  # the shards', risk's and the oracle's event rings
    settings = dict(s.gateway)
    settings.setdefault("realtime_priority", s.realtime_priority)
    return GatewayProcessOptions(
        index=index,
        host=s.host,
        port=s.port,
        markets_path=str(s.markets_path),
        state_dir=str(s.state_dir),
        destinations=tuple(ref for ref in run.outputs(name) if not _into_oracle(run, ref.name)),
        route="account" if run.topology.risk else "market",
        events=events,
        # with risk in the path, every private event comes from risk on the account's own stream
        # (and the oracle's REJECTED of a ``resolve`` from the oracle's ring)
        private_from=tuple(
            topo.ring(ref.ring.name).producer.startswith(("risk-", "oracle-", "settlement-")) or not topo.risk
            for ref in events
        ),
        oracle=run.ref(topo.oracle_request_ring(index)) if topo.oracle else None,
        gateway=GatewayOptions(**settings),  # a bad option fails here, in the parent, with its reason
        supervisor_pid=run.supervisor_pid,
        **run.health(name),
    )


def _into_oracle(run: Run, ring: str) -> bool:
    """A gateway's request ring into the oracle (not an order destination)."""
    return all(c.startswith("oracle-") for c in run.topology.ring(ring).consumers)


def _run_gateway(options: Any, ready: Any) -> None:
    from gateway.process import run_gateway

    run_gateway(options, ready)


# ---- oracle ------------------------------------------------------------------------------------
# the oracle's non-simulated feeds (the engine imports no web3: the composition root names the adapter)
ORACLE_ADAPTER_FACTORY = "settlement.chainlink_source:make_chainlink_sources"


def _oracle_options(run: Run, index: int) -> Any:
    from engine.oracle.process import OracleOptions

    topo, s = run.topology, run.settings
    name = f"oracle-{index}"
    inputs = run.inputs(name)
    has_events = any(spec.name == topo.oracle_event_ring() for spec in topo.rings)
    return OracleOptions(
        requests=tuple(
            ref.ring for ref in inputs if topo.ring(ref.ring.name).producer.startswith("gateway-")
        ),
        shard_events=tuple(ref for ref in inputs if topo.ring(ref.ring.name).producer.startswith("shard-")),
        shards=tuple(run.ref(topo.oracle_shard_ring(k)) for k in range(topo.shards)),
        risk=tuple(run.ref(topo.oracle_risk_ring(r)) for r in range(topo.risk)),
        events=run.ref(topo.oracle_event_ring()) if has_events else None,
        config_path=str(s.markets_path),
        state_dir=str(s.state_dir / name),
        run_dir=str(s.state_dir),
        supervisor_pid=run.supervisor_pid,
        fsync=s.fsync,
        snapshot_every=s.snapshot_every,
        adapter_factory=ORACLE_ADAPTER_FACTORY,
        validate_every_record=s.validate,
        **run.health(name),
    )


# ---- demo --------------------------------------------------------------------------------------
def _demo_options(run: Run, index: int) -> Any:
    from hx.demo.process import DemoOptions

    s = run.settings
    name = f"demo-{index}"
    return DemoOptions(
        url=f"ws://{s.host}:{s.port}",
        markets_path=str(s.markets_path),
        state_dir=str(s.state_dir),
        events=run.inputs(name),
        shock_every_s=s.demo_shock_every_s,
        bots=run.topology.gateways > 0,
        chain=run.topology.settlement > 0,
        supervisor_pid=run.supervisor_pid,
        **run.health(name),
    )


def _run_oracle(options: Any, ready: Any) -> None:
    from engine.oracle.process import run_oracle

    run_oracle(options, ready)


def _run_demo(options: Any, ready: Any) -> None:
    from hx.demo.process import run_demo

    run_demo(options, ready)


# ---- chain and settlement ---------------------------------------------------------------------
def _chain_options(run: Run, index: int) -> Any:
    from settlement.local_chain import LocalChainOptions, port_for

    s = run.settings
    return LocalChainOptions(
        state_dir=str(s.state_dir / "chain"),
        port=int(s.settlement.get("local_port") or port_for(run.topology.run_id)),
        block_time_s=float(s.settlement.get("block_time_s", 1.0)),
        dispute_window_s=int(s.settlement.get("dispute_window_s", 60)),
        run_dir=str(s.state_dir),
        supervisor_pid=run.supervisor_pid,
        **run.health("chain-0"),
    )


def _run_chain(options: Any, ready: Any) -> None:
    from settlement.local_chain import run_local_chain

    run_local_chain(options, ready)


def _settlement_options(run: Run, index: int) -> Any:
    import json

    from settlement.process import SettlementOptions

    topo, s = run.topology, run.settings
    cfg = s.settlement
    name = f"settlement-{index}"
    rpc_url, manifest = cfg.get("rpc_url", ""), cfg.get("manifest", "")
    if not rpc_url:  # the local chain stage, started (and ready) before this
        chain_dir = s.state_dir / "chain"
        rpc_url = json.loads((chain_dir / "rpc.json").read_text())["rpc_url"]
        manifest = str(chain_dir / "manifest.json")
    sev = topo.settlement_event_ring()
    return SettlementOptions(
        risk_events=tuple(
            ref for ref in run.inputs(name) if topo.ring(ref.ring.name).producer.startswith("risk-")
        ),
        to_risk=tuple(run.ref(topo.settlement_ring(r)) for r in range(topo.risk)),
        events=run.ref(sev) if sev in {spec.name for spec in topo.rings} else None,
        markets_path=str(s.markets_path),
        state_dir=str(s.state_dir / name),
        run_dir=str(s.state_dir),
        rpc_url=rpc_url,
        manifest_path=manifest,
        operator_key_env=cfg.get("operator_key_env", "HX_OPERATOR_KEY"),
        token_assets=tuple(cfg.get("token_assets", ("USDC", "ETH", "BTC"))),
        fee_address=cfg.get("fee_address", ""),
        confirmations=int(cfg.get("confirmations", 1)),
        batch_interval_s=float(cfg.get("batch_interval_s", 1.0)),
        batch_max_events=int(cfg.get("batch_max_events", 10_000)),
        fsync=s.fsync,
        supervisor_pid=run.supervisor_pid,
        wait=s.wait,
        **run.health(name),
    )


def _run_settlement(options: Any, ready: Any) -> None:
    from settlement.process import run_settlement

    run_settlement(options, ready)


SHARD = Stage("shard", lambda t: t.shards, _shard_options, _run_shard, restart="recover")
RISK = Stage("risk", lambda t: t.risk, _risk_options, _run_risk, restart="recover")
ORACLE = Stage("oracle", lambda t: t.oracle, _oracle_options, _run_oracle, restart="recover")
GATEWAY = Stage("gateway", lambda t: t.gateways, _gateway_options, _run_gateway, restart="restart")

DEMO = Stage("demo", lambda t: t.demo, _demo_options, _run_demo, restart="restart")

CHAIN = Stage(
    "chain", lambda t: t.chain, _chain_options, _run_chain, restart="restart", ready_timeout_s=120.0
)
SETTLEMENT = Stage(
    "settlement",
    lambda t: t.settlement,
    _settlement_options,
    _run_settlement,
    restart="recover",
    ready_timeout_s=120.0,
)

STAGES: tuple[Stage, ...] = (CHAIN, SHARD, RISK, ORACLE, SETTLEMENT, GATEWAY, DEMO)
BY_KIND: dict[str, Stage] = {stage.kind: stage for stage in STAGES}


def process_names(topology: Topology) -> list[str]:
    """Every process of a run, in start order."""
    return [stage.name(i) for stage in STAGES for i in range(stage.count(topology))]
