"""Names and wiring of one running exchange: which rings exist, who produces and who consumes.

Pure data, shared by the supervisor, the shard processes and the gateways so that every process
derives the same ring names from the same few numbers. Rings have one producer each, so each
gateway gets its own order ring into each shard (until the risk stage sits between them), and
each shard one event ring that every gateway (and any recorder) consumes with its own cursor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    """``run_id`` prefixes every ring name (``hx clean RUN_ID`` removes a killed run's rings)."""

    run_id: str
    shards: int = 1
    gateways: int = 1
    recorders: int = 0  # extra event-ring consumers (tests, audit tools), indexes after the gateways
    order_ring_slots: int = 1 << 16
    event_ring_slots: int = 1 << 18

    def __post_init__(self) -> None:
        if self.shards < 1 or self.gateways < 0 or self.recorders < 0:
            raise ValueError(f"topology needs >= 1 shard and >= 0 gateways/recorders: {self}")
        if not self.run_id or "/" in self.run_id:
            raise ValueError(f"run_id {self.run_id!r} must be a non-empty name without '/'")

    def shard_of(self, market_id: int) -> int:
        """Markets are spread over shards by id; a market lives on exactly one shard."""
        return market_id % self.shards

    def order_ring(self, producer: int, shard: int) -> str:
        """Ring from order producer ``producer`` (gateway index, or the replay feeder) into ``shard``."""
        return f"{self.run_id}-in-p{producer}-s{shard}"

    def event_ring(self, shard: int) -> str:
        return f"{self.run_id}-ev-s{shard}"

    @property
    def order_producers(self) -> int:
        """Producers writing into each shard: every gateway, or one feeder when there is none."""
        return max(self.gateways, 1)

    @property
    def event_consumers(self) -> int:
        return self.gateways + self.recorders

    def gateway_consumer_index(self, gateway: int) -> int:
        return gateway

    def recorder_consumer_index(self, recorder: int) -> int:
        return self.gateways + recorder
