"""The oracle process: poll feeds, merge book events and requests, journal, compute, publish.

Deterministic like every stateful stage: what it consumes is journaled first, and its outputs are a
pure function of the journal (``OracleEngine``). Inputs, each framed as one journal record:

* one request ring per gateway (RESOLUTION_REQUEST; nothing else is kept);
* every shard's event ring, through a droppable cursor: of those events only the configured perps'
  L2_DELTA, TRADE and BOOK_RESET are kept (the oracle re-reads a book rather than hold up a shard);
* a *tick* record every ``tick_ms``, and at once when an adapter has a new quote (so a source
  update reaches the marks without waiting for the period): the SOURCE_QUOTE slots of the quotes
  the adapters returned since the previous tick (possibly none), then everything time-driven;
* a *lost* record when the producer dropped the oracle's cursor on a shard's ring: the engine
  forgets that shard's books and asks it to restate them (L2_SNAPSHOT_REQUEST).

Outputs: ``oin-s<s>`` into each shard, ``orisk-r<p>`` into each risk partition (the same bytes to
every partition), ``oev`` (public; gateways and recorders read it). Exactly once across kill -9,
as in the risk process: the snapshot stores each output ring's ``published`` count and the input
cursors; recovery replays the journal after the snapshot, publishes only what each ring has not
seen, and moves each input cursor past what the journal holds. Funding intervals, resolutions and
settlements are therefore sent once, in order, without a gap.

Control: SIGTERM -> snapshot and exit; SIGUSR1 -> snapshot now.
"""

from __future__ import annotations

import gc
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.host.health_board import open_health_slot
from engine.host.heap import keep_freed_memory
from engine.host.metrics import Metrics
from engine.host.process_identity import become_stage, handle_stage_signals, remove_pid_file
from engine.journal import JournalReader, JournalWriter, SnapshotStore
from engine.journal.ring_positions import (
    SNAP_RING,
    pack_positions,
    read_positions,
    release_consumed,
    replay_skips,
)
from engine.math.oracle_index import parse_price_micro
from engine.oracle.oracle_config import OracleConfig, load_oracle_config
from engine.oracle.oracle_engine import BOOK_EVENTS, OracleEngine, pack_source_quote
from engine.oracle.ports import PriceSource
from engine.ring import Blocking, ConsumerDropped, ConsumerRef, RingRef, make_wait_strategy
from engine.types.enums import MsgType
from engine.wire.layout import MARKET_ID_AT, SLOT_BYTES

# Journal record: [header slot][slots...]; header = input index (TICK / LOST: no ring), raw slots
# consumed, input cursor before the batch, input ring nonce, clock (ns), slots kept.
BATCH_HEADER = struct.Struct("<IIQQQI")
HEADER_SLOT = SLOT_BYTES
TICK = 0xFFFF_FFFF
LOST = 0xFFFF_FFFE  # count = the shard whose stream was lost
SNAP_META = struct.Struct("<QI")  # journal seq, output ring count
MAX_BATCH = 256
U64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
_BOOK_TYPES = np.array(sorted(int(t) for t in BOOK_EVENTS), np.uint8)


@dataclass(frozen=True)
class OracleOptions:
    """What the oracle is told: its rings (by ref), the config file, where its state lives."""

    requests: tuple[RingRef, ...]  # each gateway's ring into the oracle (consumer 0 of each)
    shard_events: tuple[ConsumerRef, ...]  # every shard's event ring, with the oracle's cursor
    shards: tuple[RingRef, ...]  # its ring into each shard, in shard order
    risk: tuple[RingRef, ...]  # its ring into each risk partition
    events: RingRef | None  # its public event ring (None: no consumer wants it)
    config_path: str
    state_dir: str
    run_dir: str = ""
    supervisor_pid: int = 0
    health_board: str = ""
    health_slot: int = -1
    wait: str = "spin-then-backoff"
    fsync: str = "batch"
    snapshot_every: int = 5000
    validate_every_record: bool = False  # debug: check the engine's invariants after each record
    # "module:function" building the adapters of the config's non-simulated feeds (the composition
    # root names settlement's chainlink adapter: the engine imports no web3)
    adapter_factory: str = ""

    @property
    def name(self) -> str:
        return "oracle-0"


def apply_record(engine: OracleEngine, record: bytes | memoryview, n_requests: int) -> None:
    """Apply one journal record to the engine (live and in recovery alike)."""
    idx, count, _cursor, _nonce, now_ns, kept = BATCH_HEADER.unpack_from(record, 0)
    engine.set_clock(now_ns)
    if idx == TICK:
        for k in range(kept):
            engine.apply_quote(record, HEADER_SLOT + k * SLOT_BYTES)
        engine.tick()
    elif idx == LOST:
        engine.on_shard_lost(count)
    elif idx < n_requests:
        for k in range(kept):
            engine.handle_request(record, HEADER_SLOT + k * SLOT_BYTES)
    else:
        for k in range(kept):
            engine.apply_event(record, HEADER_SLOT + k * SLOT_BYTES)


def make_sources(config: OracleConfig, adapter_factory: str = "") -> list[PriceSource]:
    """The adapters the config names: simulated ones here; the others (chainlink) from
    ``adapter_factory`` ("module:function", given the feeds' SourceConfigs). A config with such
    feeds and no factory is an error naming them."""
    import importlib

    from engine.oracle.simulated_source import make_simulated_sources

    out: list[PriceSource] = list(make_simulated_sources(config.sources, config.seed))
    other = [s for s in config.sources if s.kind != "simulated"]
    if other:
        if not adapter_factory:
            names = ", ".join(s.name for s in other)
            raise ValueError(f"feeds {names} need an adapter factory (OracleOptions.adapter_factory)")
        module, _, func = adapter_factory.partition(":")
        out += list(getattr(importlib.import_module(module), func)(other))
    return out


def quote_slots(sources: list[PriceSource], now_ns: int) -> bytes:
    """Poll every adapter once; each raw quote becomes a SOURCE_QUOTE slot, parsed at this edge."""
    parts = []
    for src in sources:
        try:
            quotes = src.poll(now_ns)
        except Exception:  # an adapter bug must not stop the oracle: that feed just goes stale
            continue
        for q in quotes:
            price, reason = parse_price_micro(q.price)
            if not -INT64_MAX <= price <= INT64_MAX:
                price, reason = 0, 1
            ts = q.source_ts_ns if isinstance(q.source_ts_ns, int) else 0
            parts.append(
                pack_source_quote(
                    src.asset_id,
                    src.feed,
                    int(reason),
                    price,
                    min(max(ts, 0), U64_MAX),
                    now_ns,
                    getattr(src, "perp_market", 0),
                )
            )
    return b"".join(parts)


class OracleProcess:
    def __init__(self, options: OracleOptions) -> None:
        self.options = options
        self.state_dir = Path(options.state_dir)
        self.config = load_oracle_config(options.config_path)
        self.engine = OracleEngine(self.config, len(options.shards))
        self.sources: list[PriceSource] = make_sources(self.config, options.adapter_factory)
        self.wait = make_wait_strategy(options.wait)
        self.n_requests = len(options.requests)
        inputs = [(ref, 0) for ref in options.requests] + [(c.ring, c.index) for c in options.shard_events]
        self.inputs = [ref.attach() for ref, _ in inputs]
        self.consumers = [
            ring.consumer(index, Blocking(spins=50, max_park_ms=5))
            for ring, (_, index) in zip(self.inputs, inputs, strict=True)
        ]
        outs = [*options.shards, *options.risk] + ([options.events] if options.events is not None else [])
        self.outputs = [ref.attach() for ref in outs]
        for ring in self.outputs:
            ring.set_producer()
        self.perp_ids = np.array(sorted(self.config.perps), np.uint32)
        self.snapshots = SnapshotStore(self.state_dir / "snapshots")
        self.records_since_snapshot = 0
        self.stop_requested = False
        self.snapshot_requested = False
        self.journal_seq = 0
        self.health = open_health_slot(options.health_board, options.health_slot)
        self.metrics = Metrics("oracle", self.health.metrics)
        self._recover()
        self.journal = JournalWriter(self.state_dir / "journal", fsync_policy=options.fsync)
        self.journal.start_background_sync()
        if self.fresh:
            self.write_snapshot()
            for shard in range(len(options.shard_events)):  # books may predate us: ask for them
                self._append(
                    BATCH_HEADER.pack(LOST, shard, 0, 0, time.time_ns(), 0).ljust(HEADER_SLOT, b"\0")
                )

    # ---- outputs ---------------------------------------------------------------------------------
    def _emit(self, skips: list[int]) -> list[int]:
        shards, risk, public = self.engine.take_outputs()
        datas = (
            [*shards]
            + [risk] * len(self.options.risk)
            + ([public] if self.options.events is not None else [])
        )
        out = []
        for ring, data, skip in zip(self.outputs, datas, skips, strict=True):
            n = len(data) // SLOT_BYTES
            if skip >= n:
                out.append(skip - n)
                continue
            view = memoryview(data)[skip * SLOT_BYTES :]
            chunk = max(1, ring.capacity // 2) * SLOT_BYTES
            self.health.waiting(True)
            for start in range(0, len(view), chunk):
                ring.publish(view[start : start + chunk], wait=self.wait)
            self.health.waiting(False)
            out.append(0)
        return out

    # ---- recovery --------------------------------------------------------------------------------
    def _recover(self) -> None:
        snap = self.snapshots.latest_valid()
        published_at_snap: dict[int, int] = {}
        cursors: dict[int, int] = {}
        if snap is not None:
            self.journal_seq, blob = snap
            _seq, n_rings = SNAP_META.unpack_from(blob, 0)
            published_at_snap, cursors, offset = read_positions(
                blob, SNAP_META.size, n_rings, len(self.inputs)
            )
            self.engine.restore(bytes(blob[offset:]))
        skips = replay_skips(self.outputs, published_at_snap)
        self.fresh = snap is None
        journal_dir = self.state_dir / "journal"
        if journal_dir.exists():
            for seq, record in JournalReader(journal_dir).replay(self.journal_seq + 1):
                apply_record(self.engine, record, self.n_requests)
                idx, count, cursor, nonce, _now, _kept = BATCH_HEADER.unpack_from(record, 0)
                if idx < len(self.inputs):
                    cursors[nonce] = cursor + count
                self.journal_seq = seq
                skips = self._emit(skips)
        release_consumed(self.inputs, self.consumers, cursors)

    def write_snapshot(self) -> None:
        parts = [SNAP_META.pack(self.journal_seq, len(self.outputs))]
        parts += pack_positions(self.outputs, self.inputs, self.consumers)
        parts.append(self.engine.snapshot())
        if hasattr(self, "journal"):
            self.journal.flush()
        self.snapshots.write(self.journal_seq, b"".join(parts))
        self.snapshots.prune(keep=2)
        self.records_since_snapshot = 0

    # ---- live loop -------------------------------------------------------------------------------
    def _append(self, record: bytes) -> None:
        self.journal_seq = self.journal.append(record)
        self.journal.commit()
        apply_record(self.engine, record, self.n_requests)
        if self.options.validate_every_record:
            self.engine.validate()
        self._emit([0] * len(self.outputs))
        self.records_since_snapshot += 1
        self.metrics.add("hx_records_total")

    def _frame(self, idx: int, consumer: Any, view: memoryview, n: int, clock: int) -> bytes:
        rows = np.frombuffer(view, np.uint8, n * SLOT_BYTES).reshape(n, SLOT_BYTES)
        if idx < self.n_requests:
            mask = rows[:, 0] == MsgType.RESOLUTION_REQUEST
        else:
            markets = rows[:, MARKET_ID_AT : MARKET_ID_AT + 4].copy().view("<u4").ravel()
            mask = np.isin(rows[:, 0], _BOOK_TYPES) & np.isin(markets, self.perp_ids)
        kept = int(mask.sum())
        body = rows[mask].tobytes() if kept else b""
        nonce = self.inputs[idx].nonce
        header = BATCH_HEADER.pack(idx, n, consumer.cursor, nonce, clock, kept).ljust(HEADER_SLOT, b"\0")
        return header + body

    def _tick(self, now: int, slots: bytes) -> None:
        kept = len(slots) // SLOT_BYTES
        self._append(BATCH_HEADER.pack(TICK, 0, 0, 0, now, kept).ljust(HEADER_SLOT, b"\0") + slots)
        state = self.engine.state
        self.metrics.set("hx_stale_assets", sum(1 for since in state["stale_since"].values() if since))
        self.metrics.set("hx_index_updates_total", self.engine.index_updates)

    def _read_input(self, idx: int, consumer: Any) -> bool:
        try:
            view, n = consumer.peek(MAX_BATCH)
        except ConsumerDropped:
            self._lost(idx, consumer)
            return True
        if not n:
            view.release()
            return False
        clock = max(time.time_ns(), self.engine.now_ns)
        record = self._frame(idx, consumer, view, n, clock)
        view.release()
        if consumer.is_dropped():  # the slots may have been overwritten while we copied them
            self._lost(idx, consumer)
            return True
        self._append(record)
        try:
            consumer.release(n)
        except ConsumerDropped:
            self._lost(idx, consumer)
        return True

    def _lost(self, idx: int, consumer: Any) -> None:
        consumer.resume()
        if idx >= self.n_requests:
            shard = idx - self.n_requests
            now = max(time.time_ns(), self.engine.now_ns)
            self._append(BATCH_HEADER.pack(LOST, shard, 0, 0, now, 0).ljust(HEADER_SLOT, b"\0"))

    def run(self, ready: Any = None) -> None:
        if ready is not None:
            ready.set()
        tick_ns = self.config.tick_ns
        next_tick = 0
        while not self.stop_requested:
            worked = False
            for idx, consumer in enumerate(self.consumers):
                worked |= self._read_input(idx, consumer)
            now = max(time.time_ns(), self.engine.now_ns)
            slots = quote_slots(self.sources, now)  # cheap when nothing is new
            if slots or now >= next_tick:  # a new quote is judged at once, not at the next period
                self._tick(now, slots)
                if now >= next_tick:
                    next_tick = now + tick_ns
                worked = True
            if self.snapshot_requested or self.records_since_snapshot >= self.options.snapshot_every:
                self.snapshot_requested = False
                self.write_snapshot()
            self.health.beat(self.journal_seq)
            if not worked:
                time.sleep(min(0.002, max(0.0, (next_tick - time.time_ns()) / 1e9)))
        self.write_snapshot()
        self.close()

    def close(self) -> None:
        self.journal.close()
        for src in self.sources:
            src.close()
        for consumer in self.consumers:
            consumer.close()
        for ring in (*self.inputs, *self.outputs):
            ring.close()


def rebuild_from_journal(
    options: OracleOptions, use_snapshot: bool = False
) -> tuple[OracleEngine, int, list[tuple[list[bytes], bytes, bytes]]]:
    """The engine the oracle's journal gives, without any ring, and what each record produced
    (per shard, for risk, public), from the start or from the latest snapshot. The live process's
    state must equal it, and its rings must hold exactly these bytes."""
    config = load_oracle_config(options.config_path)
    engine = OracleEngine(config, len(options.shards))
    n_inputs = len(options.requests) + len(options.shard_events)
    state_dir = Path(options.state_dir)
    start = 0
    if use_snapshot:
        snap = SnapshotStore(state_dir / "snapshots").latest_valid()
        if snap is not None:
            start, blob = snap
            _seq, n_rings = SNAP_META.unpack_from(blob, 0)
            engine.restore(bytes(blob[SNAP_META.size + SNAP_RING.size * (n_rings + n_inputs) :]))
    last = start
    outputs = []
    for seq, record in JournalReader(state_dir / "journal").replay(start + 1):
        apply_record(engine, record, len(options.requests))
        outputs.append(engine.take_outputs())
        last = seq
    return engine, last, outputs


def read_snapshot_engine(options: OracleOptions) -> tuple[OracleEngine, int] | None:
    """The engine of the oracle's latest snapshot (and its journal seq); None without one."""
    snap = SnapshotStore(Path(options.state_dir) / "snapshots").latest_valid()
    if snap is None:
        return None
    seq, blob = snap
    _seq, n_rings = SNAP_META.unpack_from(blob, 0)
    n_inputs = len(options.requests) + len(options.shard_events)
    engine = OracleEngine(load_oracle_config(options.config_path), len(options.shards))
    engine.restore(bytes(blob[SNAP_META.size + SNAP_RING.size * (n_rings + n_inputs) :]))
    return engine, seq


def run_oracle(options: OracleOptions, ready: Any = None) -> None:
    """Process entry point (a multiprocessing target)."""
    if options.supervisor_pid:
        become_stage(options.name, options.run_dir or options.state_dir, options.supervisor_pid)
    keep_freed_memory()  # (numpy temporaries of whole columns: no page faults)
    proc = OracleProcess(options)
    gc.collect()
    gc.freeze()

    handle_stage_signals(proc)
    try:
        proc.run(ready)
    except Exception as exc:
        print(f"hx oracle-0: {exc!r}", file=sys.stderr, flush=True)
        raise
    finally:
        if options.supervisor_pid:
            remove_pid_file(options.run_dir or options.state_dir, options.name)
