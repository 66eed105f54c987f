"""Feed a command stream through running shard processes and collect what comes back.

Used by ``hx replay --shards N`` and ``hx bench shard``: this process is the single producer of
every shard's order ring (producer 0) and a recorder on every event ring. Publishing and draining
interleave in one loop, so a full event ring never deadlocks the feed. A HEARTBEAT after the last
command of each shard marks the end: its echo means the shard has processed everything before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from engine.ring import Consumer, RingBuffer
from engine.types.enums import MsgType
from engine.wire.codec import encode
from engine.wire.layout import SLOT_BYTES, layout_of
from hx.pipeline import Pipeline

HEADER_U1 = np.dtype({"names": ["msg_type"], "formats": ["u1"], "offsets": [0], "itemsize": SLOT_BYTES})
FILL_DT = layout_of(MsgType.FILL).dtype
REJECT_DT = layout_of(MsgType.REJECTED).dtype
HEARTBEAT_DT = layout_of(MsgType.HEARTBEAT).dtype


class EventTally:
    """Collect FILLs as TRADE rows, count events by type and rejects by reason, spot heartbeats."""

    def __init__(self) -> None:
        self.fills: list[np.ndarray] = []
        self.by_type = np.zeros(256, dtype=np.int64)
        self.rejects = np.zeros(1 << 16, dtype=np.int64)
        self.heartbeats: list[np.ndarray] = []

    def add(self, chunk: memoryview) -> None:
        kinds = np.frombuffer(chunk, dtype=HEADER_U1)["msg_type"]
        self.by_type += np.bincount(kinds, minlength=256)
        fill_mask = kinds == MsgType.FILL
        if fill_mask.any():
            self.fills.append(np.frombuffer(chunk, dtype=FILL_DT)[fill_mask].copy())
        rej = kinds == MsgType.REJECTED
        if rej.any():
            self.rejects += np.bincount(
                np.frombuffer(chunk, dtype=REJECT_DT)["reason"][rej], minlength=1 << 16
            )
        hb = kinds == MsgType.HEARTBEAT
        if hb.any():
            self.heartbeats.append(np.frombuffer(chunk, dtype=HEARTBEAT_DT)[hb].copy())

    def fills_array(self) -> np.ndarray:
        return np.concatenate(self.fills) if self.fills else np.zeros(0, dtype=FILL_DT)


def split_by_shard(commands: np.ndarray, shards: int) -> list[np.ndarray]:
    """Commands per shard, each in stream order (market m lives on shard m % shards)."""
    shard_of = commands["market_id"] % shards
    return [commands[shard_of == s] for s in range(shards)]


def feed(
    pipeline: Pipeline,
    commands: np.ndarray,
    *,
    chunk: int = 512,
    recorder: int = 0,
    on_chunk: Callable[[int, int], None] | None = None,
    timeout_s: float = 600.0,
) -> EventTally:
    """Publish ``commands`` (NEW_ORDER-dtype array) to the shards and drain events until all echoed."""
    topo = pipeline.topology
    per_shard = split_by_shard(commands, topo.shards)
    rings: list[RingBuffer] = [pipeline.rings[topo.order_ring(0, s)] for s in range(topo.shards)]
    consumers: list[Consumer] = [
        pipeline.rings[topo.event_ring(s)].consumer(topo.recorder_consumer_index(recorder))
        for s in range(topo.shards)
    ]
    marker = encode(MsgType.HEARTBEAT, 0, ts_ns=1)
    sent = [0] * topo.shards
    done_marker = [False] * topo.shards
    echoed = 0
    tally = EventTally()
    deadline = time.monotonic() + timeout_s
    next_health_check = 0.0
    try:
        while echoed < topo.shards:
            progress = False
            for s, ring in enumerate(rings):
                stream = per_shard[s]
                if sent[s] < len(stream):
                    n = min(chunk, len(stream) - sent[s], ring.free_slots(chunk))
                    if n > 0:
                        data = stream[sent[s] : sent[s] + n]
                        ring.try_publish(
                            data.data.cast("B") if data.flags.c_contiguous else data.tobytes(), n
                        )
                        if on_chunk is not None:
                            on_chunk(s, n)
                        sent[s] += n
                        progress = True
                elif not done_marker[s] and ring.try_publish(marker, 1):
                    done_marker[s] = True
            for consumer in consumers:
                view, n = consumer.peek()
                if n:
                    before = len(tally.heartbeats)
                    tally.add(view)
                    echoed += sum(len(h) for h in tally.heartbeats[before:])
                    progress = True
                view.release()
                if n:
                    consumer.release(n)
            if not progress:
                now = time.monotonic()
                if now > next_health_check:
                    next_health_check = now + 0.2
                    dead = [name for name, alive in pipeline.health().items() if not alive]
                    if dead:
                        raise RuntimeError(f"{', '.join(dead)} died while fed (sent {sent}, echoed {echoed})")
                if now > deadline:
                    raise TimeoutError(
                        f"shards did not finish within {timeout_s}s (sent {sent}, echoed {echoed})"
                    )
                time.sleep(0)
    finally:
        for consumer in consumers:
            consumer.close()
    return tally
