"""Where a journaling stage's rings stood at a snapshot, and what its replay must not repeat.

A stage that journals what it consumes (risk, the oracle, settlement) keeps, with each snapshot of
its engine, the published count of each output ring and its cursor on each input ring, each under
the ring instance's nonce. Recovery restores the engine and replays the journal after the snapshot;
then, for each output ring, the replay skips what the ring already holds (what was published since
the snapshot, if it is the same instance; everything, if it is a new one: the whole exchange
restarted and its readers rebuild from their own journals), and on each input ring it releases what
the journal already holds. The three stages share these steps; each keeps its own header in front.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from engine.ring import ConsumerDropped

SNAP_RING = struct.Struct("<QQ")  # ring nonce, published count (outputs) / cursor (inputs)
ALL = 1 << 62  # a skip larger than anything a replay publishes: the ring already has it all


def pack_positions(outputs: Sequence[Any], inputs: Sequence[Any], consumers: Sequence[Any]) -> list[bytes]:
    """The outputs' published counts, then the inputs' cursors (after the stage's own header)."""
    parts = [SNAP_RING.pack(ring.nonce, ring.published) for ring in outputs]
    parts += [SNAP_RING.pack(ring.nonce, c.cursor) for ring, c in zip(inputs, consumers, strict=True)]
    return parts


def read_positions(
    blob: bytes | memoryview, offset: int, n_outputs: int, n_inputs: int
) -> tuple[dict[int, int], dict[int, int], int]:
    """``pack_positions`` read back from ``offset``: (published by nonce, cursor by nonce, the
    offset of what follows: the engine's snapshot)."""
    published: dict[int, int] = {}
    cursors: dict[int, int] = {}
    for i in range(n_outputs + n_inputs):
        nonce, value = SNAP_RING.unpack_from(blob, offset)
        (published if i < n_outputs else cursors)[nonce] = value
        offset += SNAP_RING.size
    return published, cursors, offset


def replay_skips(outputs: Sequence[Any], published_at_snapshot: dict[int, int]) -> list[int]:
    """Per output ring, how many of the slots the replay regenerates the ring already holds."""
    return [
        ring.published - published_at_snapshot[ring.nonce] if ring.nonce in published_at_snapshot else ALL
        for ring in outputs
    ]


def release_consumed(inputs: Sequence[Any], consumers: Sequence[Any], cursors: dict[int, int]) -> None:
    """Move each input cursor past what the journal holds (``cursors``: consumed up to, by nonce);
    a consumer the ring dropped meanwhile resumes at the ring's oldest slot."""
    for ring, consumer in zip(inputs, consumers, strict=True):
        done = cursors.get(ring.nonce, 0)
        try:
            if consumer.cursor < done <= ring.published:
                consumer.release(done - consumer.cursor)
        except ConsumerDropped:
            consumer.resume()
