"""Where the oracle meets price feeds: one protocol for every adapter (simulated, on-chain, ...).

An adapter is asked, at each tick, for the quotes that arrived since the last call; the process
turns each into a SOURCE_QUOTE journal slot (parsing the raw value at the edge, so NaN or text
becomes a reason, never an exception) and the engine only ever sees the journal. A replay never
asks an adapter again, so an adapter may use threads, sockets and wall clocks freely.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RawQuote:
    """A feed's value as it came: ``price`` anything (int, float, str, None...), its own timestamp."""

    price: object
    source_ts_ns: int


class PriceSource(Protocol):
    """One feed of one asset."""

    asset_id: int
    feed: int  # its index among the asset's sources (the config's order), or the perp's external mids
    name: str
    # (optional) ``perp_market``: the perp whose external mid this feed quotes; absent or 0: an index feed

    def poll(self, now_ns: int) -> Sequence[RawQuote]:
        """Quotes since the last poll (oldest first); empty when nothing new. Never raises for a
        bad feed value: a bad value is a quote the edge will judge."""
        ...

    def close(self) -> None:
        """Stop any thread or connection."""
        ...
