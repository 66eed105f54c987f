"""Names and wiring of one running exchange: which rings exist, who produces and who consumes each.

Pure data derived from a few counts, so that the supervisor creates exactly the rings every
process expects. Rings have one producer each (DESIGN section 1), so every producer-consumer pair
that needs one gets its own ring:

* order rings into each shard, one per producer: each risk partition when the risk stage runs
  (``risk >= 1``), else each gateway, else one feeder (replay and benches with no gateway);
* one event ring per shard, consumed by every risk partition, every gateway and every recorder,
  each with its own cursor (consumers are fixed when the ring is created, so nothing published
  before a consumer attaches is lost);
* with risk: one in-ring per gateway and partition, and one event ring per partition (its rejects
  and account events), consumed by every gateway and recorder.

Process names are ``<kind>-<index>`` (``shard-0``, ``gateway-1``); ring names start with the run
id, so two exchanges on one host never share a ring and ``hx clean RUN_ID`` removes a killed run's
rings. A process receives its own ring names (``inputs_of`` / ``outputs_of``) in frozen options,
never the topology.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

KEPT_KINDS = ("risk", "shard", "settlement", "recorder")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")


def run_id_for(state_dir: Path | str, name: str | None = None) -> str:
    """The run id of an exchange: ``hx-<name>`` when named, else derived from its state directory.

    Two exchanges with different state directories get different ids (and so different rings);
    the same directory always gives the same id, so a restart finds its own rings.
    """
    if name is not None:
        if not _RUN_NAME.match(name):
            raise ValueError(f"run name {name!r}: use 1-41 letters, digits, '.', '_' or '-'")
        return f"hx-{name}"
    digest = hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:10]
    return f"hx-{digest}"


@dataclass(frozen=True)
class RingSpec:
    """One ring: its name, its single producer and its consumers (cursor index = position)."""

    name: str
    producer: str
    consumers: tuple[str, ...]
    slots: int
    keep_all: bool = False  # a command ring: its consumer is never dropped, whatever its kind

    def consumer_index(self, process: str) -> int:
        return self.consumers.index(process)

    @property
    def keep(self) -> tuple[int, ...]:
        """Consumers the producer must never drop (dead or stuck): those that cannot recover what
        they missed. A gateway restates its books and an oracle re-reads the book, so they may be
        dropped; a risk partition (fills), a shard (orders), settlement and recorders may not, nor
        the consumer of a command ring (``keep_all``: the oracle on a gateway's resolve requests)."""
        if self.keep_all:
            return tuple(range(len(self.consumers)))
        return tuple(i for i, name in enumerate(self.consumers) if name.split("-")[0] in KEPT_KINDS)


@dataclass(frozen=True)
class Topology:
    """Counts of every process kind and ring sizes; everything else is derived."""

    run_id: str
    shards: int = 1
    gateways: int = 1
    risk: int = 0  # risk partitions (accounts by id); 0: gateways route straight to the shards
    recorders: int = 0  # extra event-ring consumers (tests, replay, audit tools)
    settlement: int = 0  # 1: a settlement process (chain deposits in, batches out)
    chain: int = 0  # 1: a local anvil chain process with the contracts deployed (settlement's default)
    demo: int = 0  # 1: the demo process (bots + dashboard), a droppable reader of every event ring
    oracle: int = 0  # 1: an oracle process (prices, marks, funding, sessions, resolutions)
    order_ring_slots: int = 1 << 16
    event_ring_slots: int = 1 << 18

    def __post_init__(self) -> None:
        if self.shards < 1 or self.gateways < 0 or self.recorders < 0 or self.risk < 0:
            raise ValueError(f"topology needs >= 1 shard and >= 0 gateways/risk/recorders: {self}")
        if self.oracle not in (0, 1):
            raise ValueError(f"topology runs 0 or 1 oracle, got {self.oracle}")
        if not self.run_id or "/" in self.run_id:
            raise ValueError(f"run_id {self.run_id!r} must be a non-empty name without '/'")

    # ---- routing rules (the same functions every process uses) ----------------------------------
    def shard_of(self, market_id: int) -> int:
        """Markets are spread over shards by id; a market lives on exactly one shard."""
        return market_id % self.shards

    def risk_of(self, account: int) -> int:
        """Accounts are spread over risk partitions by id."""
        return account % self.risk if self.risk else 0

    # ---- processes -----------------------------------------------------------------------------
    @property
    def shard_feeders(self) -> tuple[str, ...]:
        """Producers writing into each shard's order ring (their index is the producer index)."""
        if self.risk:
            return tuple(f"risk-{r}" for r in range(self.risk))
        if self.gateways:
            return tuple(f"gateway-{g}" for g in range(self.gateways))
        return ("feeder-0",)

    @property
    def risk_feeders(self) -> tuple[str, ...]:
        """Producers writing into each risk partition's command ring: every gateway, or one feeder."""
        if self.gateways:
            return tuple(f"gateway-{g}" for g in range(self.gateways))
        return ("feeder-0",)

    def _event_consumers(self, with_risk: bool) -> tuple[str, ...]:
        risk = tuple(f"risk-{r}" for r in range(self.risk)) if with_risk else ()
        settlement = tuple(f"settlement-{k}" for k in range(self.settlement)) if not with_risk else ()
        return (
            risk
            + tuple(f"gateway-{g}" for g in range(self.gateways))
            + settlement
            + tuple(f"recorder-{k}" for k in range(self.recorders))
            + tuple(f"demo-{k}" for k in range(self.demo))
            + (("oracle-0",) if with_risk and self.oracle else ())  # droppable: it re-reads books
        ) or ("recorder-0",)

    def _oracle_event_consumers(self) -> tuple[str, ...]:
        """Readers of the oracle's public ring: gateways (``mark``/``index``/``funding`` channels,
        resolutions, and the REJECTED of a ``resolve``), recorders, the demo's dashboard."""
        return (
            tuple(f"gateway-{g}" for g in range(self.gateways))
            + tuple(f"recorder-{k}" for k in range(self.recorders))
            + tuple(f"demo-{k}" for k in range(self.demo))
        )

    # ---- rings ---------------------------------------------------------------------------------
    def order_ring(self, producer: int, shard: int) -> str:
        """Ring from shard feeder ``producer`` (risk partition, gateway, or the feeder) into ``shard``."""
        return f"{self.run_id}-in-p{producer}-s{shard}"

    def event_ring(self, shard: int) -> str:
        return f"{self.run_id}-ev-s{shard}"

    def risk_in_ring(self, producer: int, partition: int) -> str:
        """Ring from risk feeder ``producer`` (a gateway, or the feeder) into ``partition``."""
        return f"{self.run_id}-rin-p{producer}-r{partition}"

    def risk_event_ring(self, partition: int) -> str:
        return f"{self.run_id}-rev-r{partition}"

    def settlement_event_ring(self) -> str:
        """Settlement's own events (SETTLED), routed by gateways to the account's private stream."""
        return f"{self.run_id}-sev"

    def settlement_ring(self, partition: int) -> str:
        """Settlement's ring into a risk partition (chain deposits, withdrawal results)."""
        return f"{self.run_id}-set-r{partition}"

    def oracle_shard_ring(self, shard: int) -> str:
        """The oracle's ring into a shard (MARK_PRICE, SET_MARKET_STATUS, L2_SNAPSHOT_REQUEST)."""
        return f"{self.run_id}-oin-s{shard}"

    def oracle_risk_ring(self, partition: int) -> str:
        """The oracle's ring into a risk partition (the same bytes into every partition)."""
        return f"{self.run_id}-orisk-r{partition}"

    def oracle_event_ring(self) -> str:
        """The oracle's public events (MARK, FUNDING_RATE, RESOLUTION_STATUS; REJECTED to a requester)."""
        return f"{self.run_id}-oev"

    def oracle_request_ring(self, gateway: int) -> str:
        """A gateway's ring into the oracle (RESOLUTION_REQUEST)."""
        return f"{self.run_id}-oreq-g{gateway}"

    @cached_property
    def rings(self) -> tuple[RingSpec, ...]:
        """Every ring of the run, in creation order."""
        out: list[RingSpec] = []
        for s in range(self.shards):
            for p, feeder in enumerate(self.shard_feeders):
                out.append(RingSpec(self.order_ring(p, s), feeder, (f"shard-{s}",), self.order_ring_slots))
            out.append(
                RingSpec(self.event_ring(s), f"shard-{s}", self._event_consumers(True), self.event_ring_slots)
            )
        for r in range(self.risk):
            for p, feeder in enumerate(self.risk_feeders):
                out.append(RingSpec(self.risk_in_ring(p, r), feeder, (f"risk-{r}",), self.order_ring_slots))
            for k in range(self.settlement):
                out.append(
                    RingSpec(
                        self.settlement_ring(r), f"settlement-{k}", (f"risk-{r}",), self.order_ring_slots
                    )
                )
            out.append(
                RingSpec(
                    self.risk_event_ring(r), f"risk-{r}", self._event_consumers(False), self.event_ring_slots
                )
            )
        if self.oracle:  # created last: the rings above keep their order (and journals their indexes)
            oracle = "oracle-0"
            for s in range(self.shards):
                out.append(
                    RingSpec(self.oracle_shard_ring(s), oracle, (f"shard-{s}",), self.order_ring_slots)
                )
            for r in range(self.risk):
                out.append(RingSpec(self.oracle_risk_ring(r), oracle, (f"risk-{r}",), self.order_ring_slots))
            if self._oracle_event_consumers():
                out.append(
                    RingSpec(
                        self.oracle_event_ring(),
                        oracle,
                        self._oracle_event_consumers(),
                        self.event_ring_slots,
                    )
                )
            for g in range(self.gateways):
                out.append(
                    RingSpec(
                        self.oracle_request_ring(g),
                        f"gateway-{g}",
                        (oracle,),
                        self.order_ring_slots,
                        keep_all=True,
                    )
                )
        readers = tuple(f"gateway-{g}" for g in range(self.gateways)) + tuple(
            f"demo-{k}" for k in range(self.demo)
        )
        if self.settlement and readers:  # droppable readers only: SETTLED is a notice, the chain the truth
            out.append(RingSpec(self.settlement_event_ring(), "settlement-0", readers, self.order_ring_slots))
        return tuple(out)

    @cached_property
    def _by_name(self) -> dict[str, RingSpec]:
        return {spec.name: spec for spec in self.rings}

    def ring(self, name: str) -> RingSpec:
        return self._by_name[name]

    def outputs_of(self, process: str) -> tuple[str, ...]:
        """Rings ``process`` produces, in creation order."""
        return tuple(spec.name for spec in self.rings if spec.producer == process)

    def inputs_of(self, process: str) -> tuple[tuple[str, int], ...]:
        """``(ring, consumer index)`` for every ring ``process`` consumes, in creation order."""
        return tuple(
            (spec.name, spec.consumer_index(process)) for spec in self.rings if process in spec.consumers
        )

    # ---- consumer indexes kept for tools and tests -----------------------------------------------
    def recorder_consumer_index(self, recorder: int) -> int:
        """Cursor index of ``recorder`` on every shard event ring."""
        return self.ring(self.event_ring(0)).consumer_index(f"recorder-{recorder}")

    def gateway_consumer_index(self, gateway: int) -> int:
        return self.ring(self.event_ring(0)).consumer_index(f"gateway-{gateway}")
