"""The risk process: merge its input rings, journal, check and account, publish. Deterministic.

Inputs: one command ring per gateway (orders, and the money commands the faucet sends in
development), then every shard's event ring (this partition's cursor on each), then any other
producer's command ring (settlement, oracle) the options name. Outputs: one order ring into each
shard, and the partition's event ring (rejects, balances, positions, margin).

Loop: take a batch from one input (round robin), frame it as one journal record (a header slot,
then the slots: commands as received; of a shard's events only those risk reads, ACCEPTED,
REJECTED, FILL, CANCELLED and AMENDED, so the journal does not copy the market data), commit,
apply the record to the engine, publish its outputs, release the input. The journal, not the
rings, is the sequence: recovery = latest snapshot + replay of the journal tail, publishing only
what each output ring has not seen (its ``published`` counter survives in shared memory) and
moving each input cursor past what the journal already holds, exactly as the shard does.

Control: SIGTERM -> snapshot and exit; SIGUSR1 -> snapshot now.
"""

from __future__ import annotations

import gc
import os
import select
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.host import apply_realtime_priority, ensure_realtime_priority
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
from engine.journal.snapshot_persister import SnapshotPersister
from engine.ring import Blocking, ConsumerRef, RingFull, RingRef, SpinBudget, make_wait_strategy
from engine.risk.liquidator import LIQUIDATION_COID_BASE, NO_CUT, LiquidationParams
from engine.risk.native_risk import make_risk_engine
from engine.risk.risk_config import load_risk_config
from engine.risk.risk_engine import SHARD_EVENTS, SHARD_EVENTS_SOURCE, RiskEngine, Source
from engine.types.enums import MsgType
from engine.wire.layout import BY_TYPE, SLOT_BYTES

# Journal record: [header slot][slots...]; header = input index, raw slots consumed, input cursor
# before the batch, input ring nonce, clock (ns), slots kept in the record.
BATCH_HEADER = struct.Struct("<IIQQQI")
HEADER_SLOT = SLOT_BYTES
# A record of inputs acts on at most LIQUIDATION.accounts_per_record (0) accounts under
# liquidation (the first orders of a cascade leave from the price record's nearest-first scan,
# which is not bounded); the rest is left in Liquidator.pending to continuation records (input
# index CONTINUE, no slots), one after every pass over the inputs while some is left. A
# continuation record stops at a waiting command (after at least one account: a client's order
# waits behind one account's liquidation, not a cascade's) and, after CONTINUE_SLICE_NS, at a
# shard's waiting events; where it stopped is journaled with it (RiskProcess._continue). The
# fund's own deleveraging closes against at most FUND_ADL_PER_RECORD counterparties per
# continuation record (~3 us each in the compiled core, ~25 in Python), stopped by the same rule
# (the count journaled with it in the header's cursor field), and goes on in the records after it.
# docs/liquidation.md, "Normal flow during a cascade".
CONTINUE = 0xFFFF_FFFF
CONTINUE_SLICE_NS = 500_000
# a client's waiting input goes before a continuation record, unless the last one is this old;
# then that record runs a whole slice before a client's input stops it (RiskProcess._yield_rule)
CONTINUE_DEFER_NS = 1_000_000
FUND_ADL_PER_RECORD = 256
LIQUIDATION = LiquidationParams(accounts_per_record=0, fund_adl_per_record=FUND_ADL_PER_RECORD)
SNAP_META = struct.Struct("<QI")  # journal seq, output ring count
# slots of commands per record: each record costs ~0.3 ms whatever its size (journal write, the
# recompute of the rows it touched, the scan, publishing), and 256-slot records held risk to 200-300K
# orders/s through its rings (hx bench risk: 390-530K with 1,024); only a backlog fills a record,
# and a paced flow's records stay as small as what has arrived
MAX_BATCH = 1024
# slots of a shard's events per record: the margin recomputation at the end of a record costs about
# half a millisecond whatever the number of accounts it touches, so bigger event records share it
MAX_EVENT_BATCH = 1024
# ... and while a cascade's work is under way (Liquidator.work_left, cases open): the events of
# risk's own liquidation orders are applied in Python (~4 us each), and a record of 1,024 of them
# held a client's order ~4 ms in the stress cascade; a record's fixed cost is small beside them
CASCADE_EVENT_BATCH = 256
# polls of every input with nothing to do before the loop parks; under SCHED_FIFO fewer, and only
# while the process keeps FIFO_PARKED_SHARE of its time parked (see RiskProcess.spin)
IDLE_POLLS, FIFO_IDLE_POLLS, FIFO_PARKED_SHARE = 200, 20, 0.3
_KEEP = np.zeros(256, bool)
_KEEP[[int(t) for t in SHARD_EVENTS]] = True
# shard events that name their order's client order id (at one offset in all); a client's is below
# LIQUIDATION_COID_BASE. A continuation record stops at once for these when they answer a client
# (and for a heartbeat's echo), not after CONTINUE_SLICE_NS as for its own orders' events.
_COID_NAMED = (MsgType.ACCEPTED, MsgType.REJECTED, MsgType.CANCELLED, MsgType.AMENDED, MsgType.TRIGGERED)
_NAMES_COID = np.zeros(256, bool)
_NAMES_COID[[int(t) for t in _COID_NAMED]] = True
_COID_AT = BY_TYPE[MsgType.ACCEPTED].dtype.fields["client_order_id"][1]  # (the wire layout's)
assert all(BY_TYPE[t].dtype.fields["client_order_id"][1] == _COID_AT for t in _COID_NAMED)


def answers_a_client(slots: np.ndarray) -> bool:
    """Do these shard events (``(n, SLOT_BYTES)`` uint8) answer a client: a heartbeat's echo, or an
    event naming a client's order (accepted, refused, cancelled, amended, triggered)? A fill names
    order ids only; a client's taking order has its ACCEPTED or CANCELLED beside its fills."""
    kinds = slots[:, 0]
    if (kinds == MsgType.HEARTBEAT).any():
        return True
    named = slots[_NAMES_COID[kinds]]
    if not len(named):
        return False
    coid = np.ascontiguousarray(named[:, _COID_AT : _COID_AT + 8]).view("<u8").ravel()
    return bool((coid < np.uint64(LIQUIDATION_COID_BASE)).any())


@dataclass(frozen=True)
class RiskOptions:
    """What one risk partition is told: its rings (by ref), the config, where its state lives."""

    partition: int
    partitions: int
    commands: tuple[RingRef, ...]  # gateways' rings into this partition (it is consumer 0 of each)
    shard_events: tuple[ConsumerRef, ...]  # every shard's event ring, with this partition's cursor
    orders: tuple[RingRef, ...]  # its order ring into each shard, in shard order
    events: RingRef  # its own event ring
    markets_path: str
    state_dir: str
    run_dir: str = ""
    supervisor_pid: int = 0
    health_board: str = ""  # the run's health board (shared memory) and this process's slot in it
    health_slot: int = -1
    wait: str = "spin-then-backoff"
    fsync: str = "batch"
    snapshot_every: int = 5000
    realtime_priority: int = 0
    validate_every_record: bool = False  # debug: check every invariant after each record
    oracle: tuple[RingRef, ...] = ()  # the oracle's ring into this partition
    settlement: tuple[RingRef, ...] = ()  # settlement's ring into this partition

    @property
    def command_sources(self) -> tuple[int, ...]:
        """The Source of each command input, in input order (commands, oracle, settlement)."""
        return (
            (Source.GATEWAY,) * len(self.commands)
            + (Source.ORACLE,) * len(self.oracle)
            + (Source.SETTLEMENT,) * len(self.settlement)
        )

    def __post_init__(self) -> None:
        ensure_realtime_priority(self.realtime_priority, self.wait)

    @property
    def name(self) -> str:
        return f"risk-{self.partition}"


def apply_record(
    engine: RiskEngine,
    record: bytes | memoryview,
    sources: tuple[int, ...],
    yield_to: Callable[[], bool] | None = None,
) -> None:
    """Apply one journal record: its slots are commands (input ``i < len(sources)``, from
    ``sources[i]``) or, past them, one shard's events; or a continuation record (``CONTINUE``),
    whose header's count is the row its liquidation scan stopped at (``Liquidator.cut``).
    ``yield_to``: live, a continuation record's scan stops where it says to (an input waits)."""
    idx, count, cursor, _nonce, now_ns, kept = BATCH_HEADER.unpack_from(record, 0)
    if now_ns > engine.now_ns:
        engine.now_ns = now_ns
    if idx == CONTINUE:
        liq = engine.liquidator
        if yield_to is None:  # (its cursor field: the fund's closes in it, Liquidator.fund_closed)
            liq.cut_at, liq.fund_cut_at = count, cursor
        liq.yield_to, liq.continuing = yield_to, True
        try:
            engine.end_of_record()
        finally:
            liq.cut_at = liq.yield_to = liq.fund_cut_at = None
            liq.continuing = False
        return
    source = sources[idx] if idx < len(sources) else SHARD_EVENTS_SOURCE
    engine.apply_slots(record, HEADER_SLOT, kept, source)
    # a record of client commands does only its own work: the liquidation work earlier records
    # left goes on in the records of shard events, the oracle's and continuation records
    engine.end_of_record(resume=source != Source.GATEWAY)


class RiskProcess:
    def __init__(self, options: RiskOptions) -> None:
        self.options = options
        self.state_dir = Path(options.state_dir)
        config = load_risk_config(options.markets_path)
        self.engine = make_risk_engine(
            config, options.partition, options.partitions, len(options.orders), liquidation=LIQUIDATION
        )
        self.wait = make_wait_strategy(options.wait)
        commands = (*options.commands, *options.oracle, *options.settlement)
        inputs = [(ref, 0) for ref in commands] + [(c.ring, c.index) for c in options.shard_events]
        self.sources = options.command_sources
        self.n_commands = len(self.sources)
        self.inputs = [ref.attach() for ref, _ in inputs]
        self.consumers = [
            ring.consumer(index, Blocking(spins=200, max_park_ms=5))
            for ring, (_, index) in zip(self.inputs, inputs, strict=True)
        ]
        # A SCHED_FIFO risk polling 200 times through the gaps of 20,000 orders/s hardly left its
        # core: the clients and the gateway waited behind it and the kernel's real-time throttling
        # stalled it (hx bench e2e --risk 1: p99 - p50 13 ms, p999 35 ms; with 20 polls while 30%
        # of the time is parked, 1.4-2 ms and 3-7 ms; docs/benchmarks.md)
        fifo = bool(options.realtime_priority)
        self.spin = SpinBudget(FIFO_IDLE_POLLS if fifo else IDLE_POLLS, FIFO_PARKED_SHARE if fifo else 0.0)
        self.outputs = [ref.attach() for ref in (*options.orders, options.events)]
        for ring in self.outputs:
            ring.set_producer()
        self.held = [bytearray() for _ in self.outputs]  # outputs waiting for room in their ring
        self.snapshots = SnapshotStore(self.state_dir / "snapshots")
        self.persister = SnapshotPersister(self.snapshots, "risk")
        self.records_since_snapshot = 0
        self.continued_ns = 0  # when the last continuation record ended (perf_counter_ns)
        self.stop_requested = False
        self.snapshot_requested = False
        self.journal_seq = 0
        self.health = open_health_slot(options.health_board, options.health_slot)
        self.metrics = Metrics("risk", self.health.metrics)
        self._recover()
        self.journal = JournalWriter(self.state_dir / "journal", fsync_policy=options.fsync)
        self.journal.start_background_sync()
        # a first snapshot names the output rings, so a recovery can tell them apart (never one
        # while outputs are held: it would count them as published)
        if self.fresh and not any(self.held):
            self.write_snapshot()

    # ---- applying records (live and in recovery) -------------------------------------------------
    def apply(self, record: bytes | memoryview, yield_to: Callable[[], bool] | None = None) -> None:
        apply_record(self.engine, record, self.sources, yield_to)
        if self.options.validate_every_record:
            self.engine.validate()

    def _hold(self) -> None:
        """Live: the record's outputs join what each ring already holds back, then as much as fits
        goes out now, without waiting (``_flush``)."""
        orders, events = self.engine.take_outputs()
        for ring, held, data in zip(self.outputs, self.held, (*orders, events), strict=True):
            if not data:
                continue
            n = len(data) // SLOT_BYTES
            if not held and n <= ring.capacity and ring.try_publish(data, n):
                continue  # the usual case: straight out, no copy
            held += data
        if any(self.held):
            self._flush()

    def _flush(self) -> bool:
        """Publish held outputs, in order, as far as each ring has room; True when nothing is held.

        Why risk never blocks on a full ring here: a shard whose order ring is full waits for risk
        to take its events, and risk waiting on that ring would wait for the shard forever. So
        outputs wait in memory instead, risk stops taking commands (which would add to them) and
        goes on applying shard events (which let the shard move) until the rings have room."""
        for ring, held in zip(self.outputs, self.held, strict=True):
            while held:
                n = len(held) // SLOT_BYTES
                k = min(n, ring.free_slots(n), max(1, ring.capacity // 2))
                if k <= 0 or not ring.try_publish(bytes(held[: k * SLOT_BYTES]), k):
                    break
                del held[: k * SLOT_BYTES]
        return not any(self.held)

    def _wait_for_room(self) -> None:
        """Nothing to apply and outputs held: wait a little on the first full ring (``publish``
        also drops dead and stuck consumers), then try them all again."""
        for ring, held in zip(self.outputs, self.held, strict=True):
            if held:
                n = min(len(held) // SLOT_BYTES, max(1, ring.capacity // 2))
                try:
                    ring.publish(bytes(held[: n * SLOT_BYTES]), wait=self.wait, timeout_s=0.002)
                except RingFull:
                    return
                del held[: n * SLOT_BYTES]
                return

    def _emit(self, skips: list[int]) -> list[int]:
        """Recovery: what the journal regenerates, less what each ring already holds (``skips``,
        returned updated), joins the held outputs: published as the rings have room, never waited
        for here (the shards may themselves be waiting for risk to take their events)."""
        orders, events = self.engine.take_outputs()
        out = []
        for held, data, skip in zip(self.held, (*orders, events), skips, strict=True):
            n = len(data) // SLOT_BYTES
            if skip >= n:
                out.append(skip - n)
                continue
            held += data[skip * SLOT_BYTES :]
            out.append(0)
        self._flush()
        return out

    # ---- recovery ------------------------------------------------------------------------------
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
        skips = replay_skips(self.outputs, published_at_snap)  # (engine/journal/ring_positions.py)
        self.fresh = snap is None
        journal_dir = self.state_dir / "journal"
        if journal_dir.exists():
            for seq, record in JournalReader(journal_dir).replay(self.journal_seq + 1):
                self.apply(record)
                idx, count, cursor, nonce, _now, _kept = BATCH_HEADER.unpack_from(record, 0)
                if idx != CONTINUE:
                    cursors[nonce] = cursor + count
                self.journal_seq = seq
                skips = self._emit(skips)
        release_consumed(self.inputs, self.consumers, cursors)

    def write_snapshot(self, background: bool = False) -> None:
        """Snapshot the engine at ``journal_seq``: the state is captured here, between records;
        ``SnapshotPersister`` makes it durable (on a thread with ``background``, the periodic ones)."""
        parts = [SNAP_META.pack(self.journal_seq, len(self.outputs))]
        parts += pack_positions(self.outputs, self.inputs, self.consumers)
        parts.append(self.engine.snapshot())
        self.records_since_snapshot = 0
        seq, blob = self.journal_seq, b"".join(parts)
        self.persister.persist(self.journal, seq, blob, background)

    # ---- live loop -----------------------------------------------------------------------------
    def _frame(self, idx: int, consumer: Any, view: memoryview, n: int, clock: int) -> bytes:
        nonce = self.inputs[idx].nonce
        if idx < self.n_commands:
            body: bytes | memoryview = view
            kept = n
        else:  # of a shard's events, only what risk reads
            kinds = np.frombuffer(view, np.uint8, n * SLOT_BYTES)[::SLOT_BYTES]
            mask = _KEEP[kinds]
            kept = int(mask.sum())
            if kept == n:
                body = view
            else:
                rows = np.frombuffer(view, np.uint8, n * SLOT_BYTES).reshape(n, SLOT_BYTES)
                body = rows[mask].tobytes()
        header = BATCH_HEADER.pack(idx, n, consumer.cursor, nonce, clock, kept).ljust(HEADER_SLOT, b"\0")
        return b"".join((header, body))

    def _event_batch(self) -> int:
        liq = self.engine.liquidator
        return CASCADE_EVENT_BATCH if liq.work_left or liq.cases else MAX_EVENT_BATCH

    def _client_waiting(self, looked: list[int]) -> tuple[bool, bool]:
        """(a client's input waits: a command, or a shard's events that answer a client
        (``answers_a_client``); any shard's events wait). ``looked``: per shard, the waiting
        events already looked at (each is looked at once)."""
        commands, events = self.consumers[: self.n_commands], self.consumers[self.n_commands :]
        if any(c.available() for c in commands):
            return True, False
        waiting = False
        for i, c in enumerate(events):
            n = c.available()
            if not n:
                continue
            waiting = True
            if n > looked[i]:
                view, got = c.peek(MAX_EVENT_BATCH)
                try:
                    slots = np.frombuffer(view, np.uint8, got * SLOT_BYTES).reshape(got, SLOT_BYTES)
                    client = answers_a_client(slots[looked[i] :])
                    del slots
                finally:
                    view.release()
                looked[i] = got
                if client:
                    return True, True
        return False, waiting

    def _yield_rule(self, overdue: bool) -> Callable[[], bool]:
        """When a continuation record stops: at once for a client's input (``_client_waiting``: a
        command, or a shard's events answering a client, as the echo a client's heartbeat waits
        for), after CONTINUE_SLICE_NS for other shard events (the fills of its own orders: too
        small a slice and the scan's fixed cost per record is most of the work). ``overdue`` (it
        was put off for clients' inputs for CONTINUE_DEFER_NS): a client's input stops it only
        after CONTINUE_SLICE_NS too, so that a cascade keeps about a third of the process's time
        under any flow (a slice at least every CONTINUE_DEFER_NS + CONTINUE_SLICE_NS)."""
        start = time.perf_counter_ns()
        looked = [0] * (len(self.consumers) - self.n_commands)

        def stop() -> bool:
            client, waiting = self._client_waiting(looked)
            if not (client or waiting):
                return False
            sliced = time.perf_counter_ns() - start >= CONTINUE_SLICE_NS
            return sliced or (client and not overdue)

        return stop

    def _overdue(self) -> bool | None:
        """A continuation record now (False), or now and overdue (True), or the inputs first (None):
        a client's waiting input goes first (the record would stop for it after one account anyway,
        and cost its fixed cost for it), unless the last continuation record is CONTINUE_DEFER_NS
        old."""
        client = self._client_waiting([0] * (len(self.consumers) - self.n_commands))[0]
        if time.perf_counter_ns() - self.continued_ns >= CONTINUE_DEFER_NS:
            return client
        return None if client else False

    def _continue(self, overdue: bool = False) -> None:
        """A continuation record: the liquidation scan goes on with the accounts earlier records
        had no room for, until an input waits (``_yield_rule``) or ``CONTINUE_ACCOUNTS``. Applied
        first, then journaled with where its scan stopped: nothing of it leaves before that (no
        early flush), so a record lost in a crash was never seen, and a replay stops at the same
        row."""
        engine = self.engine
        clock = max(time.time_ns(), engine.now_ns)
        live = BATCH_HEADER.pack(CONTINUE, NO_CUT, 0, 0, clock, 0).ljust(HEADER_SLOT, b"\0")
        early, engine.early_flush = engine.early_flush, None
        try:
            self.apply(live, self._yield_rule(overdue))
        finally:
            engine.early_flush = early
        liq = engine.liquidator
        record = BATCH_HEADER.pack(CONTINUE, liq.cut, liq.fund_closed, 0, clock, 0).ljust(HEADER_SLOT, b"\0")
        self.journal_seq = self.journal.append(record)
        self.journal.commit()
        self._hold()
        self.records_since_snapshot += 1
        self.continued_ns = time.perf_counter_ns()
        self.metrics.add("hx_continuation_records_total")
        self._publish_metrics()

    def _publish_metrics(self) -> None:
        e, m = self.engine, self.metrics
        m.add("hx_records_total")
        m.set("hx_orders_checked_total", e.counters["checked"])
        m.set("hx_orders_rejected_total", e.counters["rejected"])
        m.set("hx_fills_applied_total", e.counters["fills"])
        m.set("hx_liquidations_total", e.liquidator.started)
        m.set("hx_margin_calls", len(e.liquidator.cases))
        m.set("hx_liquidation_pending", len(e.liquidator.pending))
        m.set("hx_fund_deleveraging", int(e.liquidator.fund_adl is not None))
        m.set("hx_insurance_fund_micro", int(e.book.balance[e.insurance_row, 0]))
        m.set("hx_accounts", e.book.count)

    def _park(self) -> None:
        """Wait for any input: flag every consumer as waiting, re-check, poll all wake FIFOs."""
        strategies = [c.wait_strategy for c in self.consumers]
        for s in strategies:
            s.set_waiting(1)
        try:
            if any(c.available() for c in self.consumers):
                return
            poller = select.poll()
            for s in strategies:
                poller.register(s.fd, select.POLLIN)
            parked_at = time.monotonic_ns()
            woken = poller.poll(5)
            self.spin.parked(time.monotonic_ns() - parked_at)
            for fd, _ev in woken:
                try:
                    os.read(fd, 4096)
                except BlockingIOError:
                    pass
        finally:
            for s in strategies:
                s.set_waiting(0)

    def run(self, ready: Any = None) -> None:
        # outputs of a record may leave before its end (a cascade's first liquidation orders): the
        # record is journaled before it is applied, and recovery counts what each ring holds
        self.engine.early_flush = self._hold
        if ready is not None:
            ready.set()
        idle = 0
        backed_up = any(self.held)  # (recovery may leave outputs held)
        while not self.stop_requested:
            worked = False
            for idx, consumer in enumerate(self.consumers):
                if backed_up and idx < self.n_commands:
                    continue  # a ring is full: only shard events now (they let the shards move)
                view, n = consumer.peek(MAX_BATCH if idx < self.n_commands else self._event_batch())
                if not n:
                    view.release()
                    continue
                worked = True
                clock = max(time.time_ns(), self.engine.now_ns)
                record = self._frame(idx, consumer, view, n, clock)
                view.release()
                self.journal_seq = self.journal.append(record)
                self.journal.commit()
                self.apply(record)
                self._hold()
                consumer.release(n)
                self.records_since_snapshot += 1
                self._publish_metrics()
                backed_up = any(self.held)
            if not backed_up and self.engine.liquidator.work_left:
                overdue = self._overdue()
                if overdue is not None:
                    self._continue(overdue)  # accounts earlier scans had no room for (a command stops it)
                    backed_up = any(self.held)
                worked = True
            if backed_up:
                self.health.waiting(True)  # backpressure from downstream: not a stall of ours
                backed_up = not self._flush()
                if backed_up and not worked:
                    self._wait_for_room()
                    backed_up = not self._flush()
                self.health.waiting(False)
                if backed_up:
                    self.health.beat(self.journal_seq)
                    continue
            # a snapshot only with nothing held (what is held is output of records before it)
            if self.snapshot_requested:  # an operator's (SIGUSR1): durable before the loop goes on
                self.snapshot_requested = False
                self.write_snapshot()
            elif self.records_since_snapshot >= self.options.snapshot_every:
                self.write_snapshot(background=True)
            self.health.beat(self.journal_seq)
            if worked:
                idle = 0
                continue
            idle += 1
            if idle < self.spin.spins_now():
                continue
            self._park()
        deadline = time.monotonic() + 5.0
        while not self._flush() and time.monotonic() < deadline:  # stopping: what is held goes out first
            self._wait_for_room()
        if not any(self.held):  # else the last snapshot and the journal give it again on restart
            self.write_snapshot()
        self.close()

    def close(self) -> None:
        self.persister.wait()
        self.journal.close()
        for consumer in self.consumers:
            consumer.close()
        for ring in (*self.inputs, *self.outputs):
            ring.close()


def rebuild_from_journal(options: RiskOptions, use_snapshot: bool = False) -> tuple[RiskEngine, int]:
    """The engine a partition's journal gives, without any ring: from the start (or its latest
    snapshot) through the last record. Returns the engine and the last journal seq applied.

    A recovery that published or skipped wrongly shows here: the live engine's state must equal
    this one's (``replay_identical``)."""
    config = load_risk_config(options.markets_path)
    engine = make_risk_engine(
        config, options.partition, options.partitions, len(options.orders), liquidation=LIQUIDATION
    )
    sources = options.command_sources
    n_commands = len(sources)
    state_dir = Path(options.state_dir)
    start = 0
    if use_snapshot:
        snap = SnapshotStore(state_dir / "snapshots").latest_valid()
        if snap is not None:
            start, blob = snap
            _seq, n_rings = SNAP_META.unpack_from(blob, 0)
            offset = SNAP_META.size + SNAP_RING.size * (n_rings + n_commands + len(options.shard_events))
            engine.restore(bytes(blob[offset:]))
    last = start
    for seq, record in JournalReader(state_dir / "journal").replay(start + 1):
        apply_record(engine, record, sources)
        engine.take_outputs()
        last = seq
    return engine, last


def run_risk(options: RiskOptions, ready: Any = None) -> None:
    """Process entry point (a multiprocessing target)."""
    if options.supervisor_pid:
        become_stage(options.name, options.run_dir or options.state_dir, options.supervisor_pid)
    policy = apply_realtime_priority(options.realtime_priority)
    if "refused" in policy:
        print(f"hx {options.name}: runs {policy}", file=sys.stderr, flush=True)
    keep_freed_memory()  # (numpy temporaries of whole columns: no page faults)
    proc = RiskProcess(options)
    gc.collect()
    gc.freeze()

    handle_stage_signals(proc)
    try:
        proc.run(ready)
    finally:
        if options.supervisor_pid:
            remove_pid_file(options.run_dir or options.state_dir, options.name)
