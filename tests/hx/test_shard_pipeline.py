"""The shard process between real rings: sharded runs equal in-process runs; kill -9 loses nothing.

Real processes, real shared memory, real journal files. Event streams are compared byte for byte
after zeroing the wall-clock fields (``ts_ns``), the only input a rerun does not reproduce.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from engine.shard.order_stream import to_commands
from engine.shard.replay import replay_orders
from engine.types.enums import MsgType
from engine.wire.codec import encode
from engine.wire.layout import LAYOUTS, SLOT_BYTES
from hx.pipeline import Pipeline
from hx.topology import Topology
from perf.replay_runner import replay_sharded, workload_markets_file
from perf.workloads.standard_stream import standard_stream

TS_FIELDS = {
    int(spec.msg_type): spec.dtype.fields["ts_ns"][1]
    for spec in LAYOUTS
    if "ts_ns" in spec.field_names and int(spec.msg_type) >= 32
}


def mask_timestamps(events: bytes) -> bytes:
    raw = np.frombuffer(events, dtype=np.uint8).reshape(-1, SLOT_BYTES).copy()
    for msg_type, offset in TS_FIELDS.items():
        raw[raw[:, 0] == msg_type, offset : offset + 8] = 0
    return raw.tobytes()


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    return standard_stream(30_000, markets=4, seed=11, accounts=40, cache=False)


@pytest.mark.parametrize("shards", [1, 4])
def test_sharded_replay_equals_in_process(stream: np.ndarray, shards: int, tmp_path: Path) -> None:
    expected, _ = replay_orders(stream)
    got, summary = replay_sharded(stream, shards, tmp_path)
    assert summary["trades"] == len(expected) > 1000
    assert np.array_equal(got, expected)


_END_MARK = 0x5EED_F00D  # the HEARTBEAT sent after the last command: its echo ends the recording


def _record_events(pipe: Pipeline, commands: np.ndarray, kill_after: int | None) -> bytes:
    """Feed commands in chunks; optionally SIGKILL the shard after ``kill_after`` and restart it.
    Ends when the shard echoes the HEARTBEAT sent after the last command (everything before it was
    published: with ``ack``, once durable), whatever the machine's load; the echo is left out."""
    topo = pipe.topology
    ring = pipe.rings[topo.order_ring(0, 0)]
    consumer = pipe.rings[topo.event_ring(0)].consumer(0)
    events: list[bytes] = []
    sent = 0
    killed = kill_after is None
    marked = done = False
    deadline = time.monotonic() + 240
    raw = commands.tobytes()
    try:
        while not done:
            assert time.monotonic() < deadline, "the shard never echoed the end mark"
            if sent < len(commands):
                n = min(200, len(commands) - sent, ring.free_slots(200))
                if n > 0 and ring.try_publish(raw[sent * 64 : (sent + n) * 64], n):
                    sent += n
            elif not marked:
                marked = ring.try_publish(encode(MsgType.HEARTBEAT, 0, ts_ns=_END_MARK), 1)
            if not killed and sent >= kill_after:
                time.sleep(0.05)  # let the shard get part-way through what was sent
                pipe.kill("shard-0")
                pipe.restart("shard-0")
                killed = True
            view, k = consumer.peek()
            if k:
                block = np.frombuffer(bytes(view), dtype=np.uint8).reshape(k, 64)
                beat = block[:, 0] == MsgType.HEARTBEAT
                ends = beat & (block[:, 8:16].copy().view("<u8")[:, 0] == _END_MARK)
                done = bool(ends.any())
                events.append(block[~beat].tobytes())
            view.release()
            consumer.release(k)
    finally:
        consumer.close()
    return b"".join(events)


@pytest.mark.parametrize("fsync", ["none", "ack"])
def test_kill_minus_9_mid_stream_recovers_the_same_event_stream(
    stream: np.ndarray, tmp_path: Path, fsync: str
) -> None:
    """Under every policy; ``ack`` holds each batch's events until its record is fsynced, and a
    snapshot publishes what it held first (else a recovery from it would never publish them)."""
    commands = to_commands(stream[stream["market"] == 0][:8000])
    markets = workload_markets_file(tmp_path, 4)
    runs = {}
    for name, kill_after in (("clean", None), ("killed", 4000)):
        topo = Topology(run_id=f"hx-kill-{os.getpid()}-{name}", shards=1, gateways=0, recorders=1)
        with Pipeline(
            topo, markets_path=markets, state_dir=tmp_path / name, fsync=fsync, snapshot_every=7
        ) as pipe:
            runs[name] = _record_events(pipe, commands, kill_after)
    assert len(runs["clean"]) > 8000 * SLOT_BYTES
    fills = np.frombuffer(runs["clean"], dtype=np.uint8).reshape(-1, 64)[:, 0] == MsgType.FILL
    assert fills.sum() > 100
    assert mask_timestamps(runs["killed"]) == mask_timestamps(runs["clean"])


def test_restart_on_new_rings_restates_the_recovered_books(stream: np.ndarray, tmp_path: Path) -> None:
    """A whole-exchange restart (fresh rings, same state dir) tells consumers the recovered books."""
    from engine.wire.layout import layout_of

    commands = to_commands(stream[stream["market"] == 0][:3000])
    markets = workload_markets_file(tmp_path, 4)
    state = tmp_path / "state"
    first = Topology(run_id=f"hx-restate-{os.getpid()}-a", shards=1, gateways=0, recorders=1)
    with Pipeline(first, markets_path=markets, state_dir=state, fsync="none") as pipe:
        events = _record_events(pipe, commands, kill_after=None)
    l2 = np.frombuffer(events, dtype=layout_of(MsgType.L2_DELTA).dtype)
    book: dict[tuple[int, int], int] = {}
    for row in l2[(l2["msg_type"] == MsgType.L2_DELTA) & (l2["market_id"] == 0)]:
        book[(int(row["side"]), int(row["price_ticks"]))] = int(row["size_lots"])
    expected = {key: size for key, size in book.items() if size}
    assert expected, "the stream leaves a resting book"

    second = Topology(run_id=f"hx-restate-{os.getpid()}-b", shards=1, gateways=0, recorders=1)
    with Pipeline(second, markets_path=markets, state_dir=state, fsync="none") as pipe:
        consumer = pipe.rings[second.event_ring(0)].consumer(0)
        assert consumer.wait(10)
        time.sleep(0.2)
        restated = consumer.read()
        consumer.close()
    rows = np.frombuffer(restated, dtype=layout_of(MsgType.L2_DELTA).dtype)
    resets = rows[(rows["msg_type"] == MsgType.BOOK_RESET) & (rows["market_id"] == 0)]
    assert len(resets) == 1
    levels = rows[(rows["msg_type"] == MsgType.L2_DELTA) & (rows["market_id"] == 0)]
    got = {(int(r["side"]), int(r["price_ticks"])): int(r["size_lots"]) for r in levels}
    assert got == expected
