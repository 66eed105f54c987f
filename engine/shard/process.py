"""The shard process: merge order rings, journal, match, publish events. A deterministic state machine.

Loop: take a batch from one input ring (round robin), frame it as one journal record (a batch
header, a CLOCK command stamped now, the commands as received), commit the record (group commit),
apply the record to the matching engine, publish the events to the event ring, release the input.
The journal, not the rings, is the sequence: applying the same records to the same snapshot gives
the same event bytes, so recovery = latest snapshot + replay of the journal tail.

Exactly-once across a crash: the snapshot stores how many events the shard had published and the
input cursors; on restart the shard replays the journal, re-derives every event, publishes only
those the event ring has not seen (its ``published`` counter survives in shared memory), and moves
each input cursor past what the journal already holds. Ring identity (a nonce) guards against
applying cursors to a ring that was recreated.

Control: SIGTERM -> snapshot and exit; SIGUSR1 -> snapshot now. HEARTBEAT commands are journaled
and answered with a HEARTBEAT event (``last_seq`` = the journal record), so a feeder can tell when
everything before it has been processed.
"""

from __future__ import annotations

import collections
import gc
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.host import apply_realtime_priority, ensure_realtime_priority
from engine.host.health_board import open_health_slot
from engine.host.metrics import Metrics
from engine.host.process_identity import become_stage, handle_stage_signals, remove_pid_file
from engine.journal import JournalReader, JournalWriter, SnapshotStore
from engine.journal.snapshot_persister import SnapshotPersister
from engine.ring import RingBuffer, RingRef, make_wait_strategy
from engine.shard.native_engine import make_engine, restore_engine
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import MsgType
from engine.types.market_spec import load_markets
from engine.wire.layout import ALL_MARKETS, HEADER_STRUCT, HEARTBEAT_STRUCT, SLOT_BYTES

# Journal record: [batch header slot][commands...]; header = input index, command count,
# input cursor before the batch, input ring nonce, engine clock (ns).
BATCH_HEADER = struct.Struct("<IIQQQ")
HEADER_SLOT = SLOT_BYTES
# Snapshot: meta header then the engine blob.
SNAP_META = struct.Struct("<QQQI")  # journal seq, events published, event ring nonce, input count
SNAP_INPUT = struct.Struct("<QQ")  # input ring nonce, input cursor after the snapshot's last record
MAX_BATCH = 256
_HEARTBEAT = int(MsgType.HEARTBEAT)
_L2_SNAPSHOT_REQUEST = int(MsgType.L2_SNAPSHOT_REQUEST)


@dataclass(frozen=True)
class ShardOptions:
    """What one shard process is told: its rings (by ref), its markets, where its state lives."""

    shard: int
    inputs: tuple[RingRef, ...]  # order rings, one per producer; this shard is consumer 0 of each
    events: RingRef  # its event ring (this shard is the producer)
    market_ids: tuple[int, ...]  # the markets this shard owns
    markets_path: str
    state_dir: str
    run_dir: str = ""  # the run's state directory (pid files); "" = none
    supervisor_pid: int = 0  # die with this parent (0: no such request)
    health_board: str = ""  # the run's health board (shared memory) and this process's slot in it
    health_slot: int = -1
    wait: str = "spin-then-backoff"
    fsync: str = "batch"
    cpu: int | None = None
    snapshot_every: int = 5000  # journal records between snapshots
    max_batch: int = MAX_BATCH
    realtime_priority: int = 0  # SCHED_FIFO priority (0: off); needs a wait that parks

    def __post_init__(self) -> None:
        ensure_realtime_priority(self.realtime_priority, self.wait)


class ShardState:
    """Engine + event writer + journal bookkeeping: the part replay and live processing share."""

    def __init__(self, engine: Any, writer: WireEventWriter) -> None:
        self.engine = engine  # NativeEngine, or the Python twin MatchingEngine (HX_ENGINE=python)
        self.writer = writer
        self._core = getattr(engine, "core", None)

    def apply(self, record: memoryview | bytes, journal_seq: int) -> None:
        """Apply one journal record; its events accumulate in ``writer``."""
        _idx, count, _cursor, _nonce, now_ns = BATCH_HEADER.unpack_from(record, 0)
        core = self._core
        if core is None:
            engine = self.engine
            if now_ns > engine.now_ns:
                engine.advance_clock(now_ns)
            for k in range(count):
                self._apply_one(record, HEADER_SLOT + k * SLOT_BYTES, journal_seq)
            return
        # compiled core: the whole record in one call (it echoes heartbeats itself, as _apply_one
        # does); only a restatement request stops it, to be answered here
        if now_ns > core.now_ns:
            core.advance_clock(now_ns)
        writer = self.writer
        k = 0
        while k < count:
            done = core.handle_batch(record, count - k, HEADER_SLOT + k * SLOT_BYTES, True, journal_seq)
            if core.pending_events:
                writer.extend(core.take_events())
            k += done
            if k < count:
                self._apply_one(record, HEADER_SLOT + k * SLOT_BYTES, journal_seq)
                k += 1

    def _apply_one(self, record: memoryview | bytes, offset: int, journal_seq: int) -> None:
        """One command: the shard's own (heartbeat, restatement request) or the engine's."""
        kind = record[offset]
        if kind == _HEARTBEAT:  # echo the sender's clock, add our journal position
            sender_ts = HEARTBEAT_STRUCT.unpack_from(record, offset)[4]
            self.writer.on_heartbeat(0, sender_ts, journal_seq)
        elif kind == _L2_SNAPSHOT_REQUEST:
            self.restate_books(HEADER_STRUCT.unpack_from(record, offset)[3])
        else:
            self.engine.handle(record, offset)

    def restate_books(self, market_id: int) -> None:
        """BOOK_RESET + one L2_DELTA per level for the market (or all): a read, state unchanged."""
        engine = self.engine
        writer = self.writer
        for mid in engine.market_ids():
            if market_id != ALL_MARKETS and mid != market_id:
                continue
            book = engine.book(mid)
            bids, asks = book.depth(0), book.depth(1)
            writer.on_book_reset(mid, book.seq, len(bids), len(asks))
            for side, levels in ((0, bids), (1, asks)):
                for price, size, count in levels:
                    writer.on_l2(mid, book.seq, price, size, count, side)


def _publish(ring: RingBuffer, data: memoryview | bytes, skip_events: int, wait: Any) -> int:
    """Publish whole events, skipping the first ``skip_events`` (already in the ring); returns skips left."""
    n = len(data) // SLOT_BYTES
    if skip_events >= n:
        return skip_events - n
    view = memoryview(data)[skip_events * SLOT_BYTES :]
    chunk = max(1, ring.capacity // 2) * SLOT_BYTES
    for start in range(0, len(view), chunk):
        ring.publish(view[start : start + chunk], wait=wait)
    return 0


class Shard:
    """One shard's live process state: rings, journal, snapshots and the loop."""

    def __init__(self, options: ShardOptions) -> None:
        self.options = options
        self.state_dir = Path(options.state_dir)
        all_markets = load_markets(options.markets_path)
        owned = set(options.market_ids)
        self.markets = {m: spec for m, spec in all_markets.items() if m in owned}
        # under SCHED_FIFO a blocking wait keeps >= 10% of the time parked (see Blocking)
        share = 0.1 if options.realtime_priority else 0.0
        self.wait = make_wait_strategy(options.wait, min_parked_share=share)
        self.inputs = [ref.attach() for ref in options.inputs]
        self.consumers = [
            ring.consumer(
                0, make_wait_strategy(options.wait, min_parked_share=share) if len(self.inputs) == 1 else None
            )
            for ring in self.inputs
        ]
        self.events = options.events.attach()
        self.events.set_producer()
        self.snapshots = SnapshotStore(self.state_dir / "snapshots")
        self.persister = SnapshotPersister(self.snapshots, "shard")
        self.records_since_snapshot = 0
        self.held: collections.deque[tuple[int, bytes]] = collections.deque()  # `ack`: (seq, events)
        self.stop_requested = False
        self.snapshot_requested = False
        self.health = open_health_slot(options.health_board, options.health_slot)
        self.metrics = Metrics("shard", self.health.metrics)
        self.state = self._recover()
        self.journal = JournalWriter(self.state_dir / "journal", fsync_policy=options.fsync)
        self.journal.start_background_sync()  # `batch`: the matching loop never waits for the disk
        if self.fresh_event_ring and self.had_state:
            # A new event ring (the whole exchange restarted) knows nothing of the recovered books:
            # restate them for its consumers, then snapshot so a later recovery counts from here.
            self.state.restate_books(ALL_MARKETS)
            _publish(self.events, self.state.writer.take(), 0, self.wait)
            self.write_snapshot()

    # ---- recovery ------------------------------------------------------------------------------
    def _recover(self) -> ShardState:
        writer = WireEventWriter()
        snap = self.snapshots.latest_valid()
        if snap is None:
            engine = make_engine(self.markets, writer)
            journal_seq, events_at_snap, event_nonce, cursors = 0, 0, self.events.nonce, {}
        else:
            journal_seq, blob = snap
            seq, events_at_snap, event_nonce, n_inputs = SNAP_META.unpack_from(blob, 0)
            assert seq == journal_seq, "snapshot meta disagrees with its file"
            cursors = {}
            offset = SNAP_META.size
            for _ in range(n_inputs):
                nonce, cursor = SNAP_INPUT.unpack_from(blob, offset)
                cursors[nonce] = cursor
                offset += SNAP_INPUT.size
            engine = restore_engine(self.markets, writer, bytes(blob[offset:]))
        state = ShardState(engine, writer)
        # Events already in the ring need not be published again (same ring instance only).
        same_ring = event_nonce == self.events.nonce
        self.fresh_event_ring = not same_ring
        skip = self.events.published - events_at_snap if same_ring else 1 << 62
        journal_dir = self.state_dir / "journal"
        if journal_dir.exists():
            for seq, record in JournalReader(journal_dir).replay(journal_seq + 1):
                state.apply(record, seq)
                idx, count, cursor, nonce, _now = BATCH_HEADER.unpack_from(record, 0)
                cursors[nonce] = cursor + count
                journal_seq = seq
                skip = _publish(self.events, writer.take(), skip, self.wait)
        for ring, consumer in zip(self.inputs, self.consumers, strict=True):
            done = cursors.get(ring.nonce, 0)
            if consumer.cursor < done <= ring.published:
                consumer.release(done - consumer.cursor)
        self.journal_seq = journal_seq
        self.had_state = snap is not None or journal_seq > 0
        return state

    def write_snapshot(self, background: bool = False) -> None:
        """Snapshot the engine at ``journal_seq``.

        The state is captured here, between batches (the compiled core exports it in a few
        milliseconds even for a deep book). Making it durable -- fsync the journal up to that record,
        then write, fsync and rename the snapshot file -- costs tens of milliseconds on this disk, so
        with ``background`` it happens on the snapshot thread while matching goes on; the order
        (journal durable first) keeps "a snapshot on disk implies its journal prefix on disk".
        A snapshot still being written when the next one is due makes the loop skip that one.
        Under ``ack`` the held events are published first: a snapshot counts what the ring has."""
        if self.held:
            self._publish_durable(everything=True)
        parts = [SNAP_META.pack(self.journal_seq, self.events.published, self.events.nonce, len(self.inputs))]
        parts += [
            SNAP_INPUT.pack(ring.nonce, cons.cursor)
            for ring, cons in zip(self.inputs, self.consumers, strict=True)
        ]
        parts.append(self.state.engine.snapshot())
        self.records_since_snapshot = 0
        seq, blob = self.journal_seq, b"".join(parts)
        self.persister.persist(self.journal, seq, blob, background)

    # ---- live loop -----------------------------------------------------------------------------
    def _ready_count(self) -> int:
        total = 0
        for consumer in self.consumers:
            total += consumer.available()
        return total

    def run(self, ready: Any = None) -> None:
        if ready is not None:
            ready.set()
        consumers = self.consumers
        journal = self.journal
        state = self.state
        writer = state.writer
        events = self.events
        wait = self.wait
        max_batch = self.options.max_batch
        header = bytearray(HEADER_SLOT)
        now = time.time_ns
        idle_wait = consumers[0].wait_strategy if len(consumers) == 1 else wait
        half_ring = events.capacity // 2
        hold = self.options.fsync == "ack"
        while not self.stop_requested:
            worked = False
            for idx, consumer in enumerate(consumers):
                view, n = consumer.peek(max_batch)
                if not n:
                    view.release()
                    continue
                worked = True
                clock = now()
                if clock < state.engine.now_ns:  # the wall clock stepped back: the engine's never does
                    clock = state.engine.now_ns
                BATCH_HEADER.pack_into(header, 0, idx, n, consumer.cursor, self.inputs[idx].nonce, clock)
                record = b"".join((header, view))
                view.release()
                self.journal_seq = journal.append(record)
                journal.commit()
                state.apply(record, self.journal_seq)
                if hold:  # `ack`: the events wait until their record is on disk
                    if writer.count:
                        self.held.append((self.journal_seq, writer.take()))
                    self._publish_durable()
                else:
                    published = writer.peek()  # straight from the writer's buffer: no copy per batch
                    count = writer.count
                    if count > half_ring or not events.try_publish(published, count):
                        self.health.waiting(True)
                        _publish(events, published, 0, wait)  # in chunks, waiting for room
                        self.health.waiting(False)
                    published.release()
                    writer.reset()
                consumer.release(n)
                self.records_since_snapshot += 1
                m = self.metrics
                m.add("hx_records_total")
                m.add("hx_commands_total", n)
            if self.snapshot_requested or self.records_since_snapshot >= self.options.snapshot_every:
                self.snapshot_requested = False
                self.write_snapshot(background=True)
            if self.held:
                self._publish_durable()
                if not worked and self.held:
                    idle_wait.wait(self._ready_count, time.monotonic_ns() + 50_000)  # fsync due soon
                continue
            if not worked:
                idle_wait.wait(self._ready_count, time.monotonic_ns() + 100_000_000)
            self.health.beat(self.journal_seq)
        self.write_snapshot()
        self.close()

    def _publish_durable(self, everything: bool = False) -> None:
        """``ack``: publish the held events whose journal record is on disk (all of them, after an
        fsync here, with ``everything``), in order."""
        held = self.held
        durable = self.journal.sync() if everything else self.journal.durable_seq
        while held and held[0][0] <= durable:
            _publish(self.events, held.popleft()[1], 0, self.wait)

    def close(self) -> None:
        self.persister.wait()
        self.journal.close()
        for consumer in self.consumers:
            consumer.close()
        for ring in (*self.inputs, self.events):
            ring.close()


def run_shard(options: ShardOptions, ready: Any = None) -> None:
    """Process entry point (a multiprocessing target)."""
    name = f"shard-{options.shard}"
    if options.supervisor_pid:
        become_stage(name, options.run_dir or options.state_dir, options.supervisor_pid)
    if options.cpu is not None:
        try:
            os.sched_setaffinity(0, {options.cpu})
        except OSError:
            pass
    policy = apply_realtime_priority(options.realtime_priority)
    if "refused" in policy:
        print(f"hx shard {options.shard}: runs {policy}", file=sys.stderr, flush=True)
    shard = Shard(options)
    # The engine's records form no reference cycles; collector passes over a million live orders
    # would cost more than the matching itself. Freeze what exists, then collect by hand if ever.
    gc.collect()
    gc.freeze()
    gc.disable()

    handle_stage_signals(shard)
    try:
        shard.run(ready)
    finally:
        if options.supervisor_pid:
            remove_pid_file(options.run_dir or options.state_dir, name)
