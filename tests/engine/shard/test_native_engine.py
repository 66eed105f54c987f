"""Differential tests: ``NativeEngine`` (C) against ``MatchingEngine``, byte for byte on the wire.

Why: the shard runs the native engine, and ``MatchingEngine`` is its specification. This module is the
matching engine's use of the generic harness (``tests/support/differential.py``): one ``Twin`` (the
twin as reference, the core as candidate, both restorable), the seeded command streams of
``command_streams`` (every command kind, reject, cancel reason and edge) and the harness's checks: the
event bytes and the return code after EVERY command, the canonical snapshots (and ``validate()``, the
book views) at checkpoints, restores from the core's own snapshots mid-stream, cross-restores both
ways, and ``handle_batch`` against the concatenation of the command-by-command events. What is
matching-specific stays here: the snapshot-diff that names the differing order, the book-view check,
the API edges (short buffers, corrupt snapshots, other sinks), and ``test_streams_cover_everything``,
which holds the streams themselves to reaching every event type, reject code, cancel reason and rare
path.

These tests never skip: without the compiled core they FAIL (the build is part of ``make setup``).
``HX_DIFF_TARGET=python`` runs ``MatchingEngine`` on both sides: a self-check of the harness only.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
from typing import Any

import command_streams as CS
import numpy as np
import pytest
from differential import (
    Reference,
    Twin,
    check_batch,
    describe_message,
    events_mismatch,
    first_difference,
    reference_run,
    run_differential,
    slots,
)
from hypothesis import HealthCheck, given, settings

from engine.shard.engine_snapshot import _ENGINE, _MARKET, SNAP_MARKET_FIELDS, SNAP_ORDER, SnapshotError
from engine.shard.event_sink import EventRecorder
from engine.shard.matching_engine import MatchingEngine
from engine.shard.order_stream import to_commands
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import STP_SHIFT, CancelReason, MarketStatus, MsgType, RejectCode
from engine.types.market_spec import workload_markets
from engine.wire.layout import SLOT_BYTES, layout_of
from perf.workloads.standard_stream import standard_stream

MARKETS = CS.STREAM_MARKETS
DEEP_MARKETS = {CS.PLAIN.market_id: CS.PLAIN}  # one market: its book gets deep
SEEDS = range(20)
N_COMMANDS = 3_000
CHECKPOINT = 500  # compare snapshots (and validate the native engine) every this many commands
UNDER_TEST = os.environ.get("HX_DIFF_TARGET", "native")  # "python": harness self-check only


def engine_under_test() -> Any:
    """The class under test; FAILS the calling test (never skips) when the native core is missing."""
    if UNDER_TEST == "python":
        return MatchingEngine
    try:
        from engine.shard import native_engine
    except ImportError as exc:
        pytest.fail(
            f"engine.shard.native_engine does not import ({exc!r}); the native core is built by "
            "`make setup` and these differential tests do not skip",
            pytrace=False,
        )
    if not native_engine.native_available():
        pytest.fail(
            "native_available() is False: engine/native/_hxcore is not built. Run `make setup` (the "
            "native build is part of it); these differential tests do not skip",
            pytrace=False,
        )
    return native_engine.NativeEngine


def reference_engine(markets: dict[int, Any], sink: Any) -> MatchingEngine:
    # no per-command validate() even under HX_VALIDATE=1: the reference is the specification here
    return MatchingEngine(markets, sink, debug_validate=False)


def matching_twin(markets: dict[int, Any]) -> Twin:
    """The matching engine's pair for the harness: the twin is the reference, the core the candidate."""
    cls = engine_under_test()
    return Twin(
        name="matching",
        reference=lambda sink: reference_engine(markets, sink),
        candidate=lambda sink: cls(markets, sink),
        restore_reference=lambda sink, blob: MatchingEngine.restore(
            markets, sink, blob, debug_validate=False
        ),
        restore_candidate=lambda sink, blob: cls.restore(markets, sink, blob),
        snapshot_diff=snapshot_mismatch,
        state_check=check_views,
    )


# ---- matching-specific diagnostics -----------------------------------------------------------------
_MARKET_FIELDS = [name for name, _, _ in SNAP_MARKET_FIELDS]


def _parse_snapshot(blob: bytes) -> tuple[int, list[tuple[dict[str, int], np.ndarray, np.ndarray]]]:
    _, now, n = _ENGINE.unpack_from(blob, 0)
    pos, out = _ENGINE.size, []
    for _ in range(n):
        hdr = dict(zip(_MARKET_FIELDS, _MARKET.unpack_from(blob, pos), strict=True))
        pos += _MARKET.size
        orders = np.frombuffer(blob, SNAP_ORDER, hdr["n_orders"], pos)
        pos += orders.nbytes
        stops = np.frombuffer(blob, SNAP_ORDER, hdr["n_stops"], pos)
        pos += stops.nbytes
        out.append((hdr, orders, stops))
    return now, out


def snapshot_mismatch(label: str, expected: bytes, actual: bytes) -> str:
    """Where two canonical snapshots first differ: engine clock, a market header, or an order record."""
    lines = [f"{label}: snapshots differ ({len(expected)} vs {len(actual)} bytes)"]
    try:
        e_now, e_markets = _parse_snapshot(expected)
        a_now, a_markets = _parse_snapshot(actual)
    except Exception as exc:  # an unparsable native snapshot is itself the finding
        first = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), None)
        return "\n".join([*lines, f"  cannot parse: {exc!r}; first differing byte {first}"])
    if e_now != a_now:
        lines.append(f"  now_ns: expected {e_now}, actual {a_now}")
    for (eh, eo, es), (ah, ao, as_) in zip(e_markets, a_markets, strict=False):
        if eh != ah:
            lines.append(f"  market header expected {eh}\n                actual   {ah}")
        for kind, ex, ac in (("resting order", eo, ao), ("stop", es, as_)):
            for k in range(max(len(ex), len(ac))):
                x = ex[k].tolist() if k < len(ex) else None
                y = ac[k].tolist() if k < len(ac) else None
                if x != y:
                    lines.append(f"  market {eh['market_id']} {kind} #{k} ({SNAP_ORDER.names}):")
                    lines.append(f"    expected {x}\n    actual   {y}")
                    break
    return "\n".join(lines)


def check_views(engine: Any, blob: bytes, label: str) -> None:
    """``now_ns``, ``book(mid).depth(side)`` and ``.seq`` (the shard's BOOK_RESET restatement reads them)
    agree with the snapshot: levels best first, each with its total open size and order count."""
    now, markets = _parse_snapshot(blob)
    assert engine.now_ns == now, f"{label}: now_ns {engine.now_ns} != {now}"
    for hdr, orders, _ in markets:
        book = engine.book(hdr["market_id"])
        assert book.seq == hdr["seq"], f"{label}: market {hdr['market_id']} seq {book.seq} != {hdr['seq']}"
        for side in (0, 1):
            levels: dict[int, list[int]] = {}  # price -> [size, count], in snapshot (best first) order
            for o in orders[orders["side"] == side].tolist():
                level = levels.setdefault(o[6], [0, 0])
                level[0] += o[7]
                level[1] += 1
            expected = [(price, size, count) for price, (size, count) in levels.items()]
            got = [tuple(x) for x in book.depth(side)]
            assert got == expected, (
                f"{label}: market {hdr['market_id']} side {side} depth {got} != {expected}"
            )


# The seeded streams: (profile, markets, commands, checkpoint every). "dense" streams hit every path;
# the "deep" one grows books to thousands of orders, hundreds of levels and stops, thousands of accounts.
STREAMS = {
    "dense": (CS.DENSE, MARKETS, N_COMMANDS, CHECKPOINT),
    "deep": (CS.DEEP, DEEP_MARKETS, 30_000, 2_500),
}


@functools.cache
def seeded(seed: int, kind: str = "dense") -> tuple[list[bytes], Reference]:
    """``CS.random_commands(seed, n, markets, profile)`` and its reference outputs, in one pass: the
    generator's oracle is a ``MatchingEngine`` fed exactly this stream (tested below)."""
    profile, markets, n, every = STREAMS[kind]
    writer = WireEventWriter()
    gen = CS.StreamGenerator(markets, resolve_from=n - n // 5, profile=profile, sink=writer)
    rng = CS.SeededRng(seed)
    cmds, events, codes, snaps = [], [], [], {0: gen.oracle.snapshot()}
    for i in range(1, n + 1):
        cmds.append(gen.next(rng))
        codes.append(gen.last_code)
        events.append(writer.take())
        if i % every == 0 or i == n:
            snaps[i] = gen.oracle.snapshot()
    return cmds, Reference(events, codes, snaps)


# ---- the harness over the seeded streams ------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_stream_agrees_after_every_command(seed: int) -> None:
    """3000 commands: equal event bytes and codes after each, equal snapshots every 500, validate() holds."""
    cmds, ref = seeded(seed)
    twin = matching_twin(MARKETS)
    run_differential(
        twin, cmds, ref, whole_buffer=bool(seed & 1), label=f"random_commands({seed}, {N_COMMANDS})"
    )
    engine = twin.candidate(WireEventWriter())
    engine.handle_batch(b"".join(cmds), len(cmds))
    assert engine.state_hash() == hashlib.blake2b(ref.final, digest_size=32).digest()


def test_seeded_reference_is_a_plain_engine_run() -> None:
    """The generator's oracle (the reference of the seeded tests) saw exactly random_commands' stream."""
    cmds, ref = seeded(3)
    assert CS.random_commands(3, N_COMMANDS, MARKETS) == cmds
    replay = reference_run(matching_twin(MARKETS), cmds, CHECKPOINT)
    assert replay.events == ref.events and replay.codes == ref.codes and replay.snapshots == ref.snapshots


@pytest.mark.parametrize("seed", [1])
def test_deep_book_stream_agrees(seed: int) -> None:
    """Thousands of resting orders, accounts and client ids, hundreds of levels, stops and GTT orders in
    one market: every pool, hash table and array of the native engine grows, and deletes from them."""
    cmds, ref = seeded(seed, "deep")
    books = [_parse_snapshot(b)[1][0] for b in ref.snapshots.values()]
    peak = max(hdr["n_orders"] for hdr, _, _ in books)
    stops = max(hdr["n_stops"] for hdr, _, _ in books)
    accounts = max(len(set(orders["account"].tolist())) for _, orders, _ in books)
    # above 3/4 of 4096 (the native engine's initial hash table size), 64 (its initial stop tables)
    assert peak > 3_072 and accounts > 3_072 and stops > 500, f"not deep: {peak} orders, {accounts} accounts"
    twin = matching_twin(DEEP_MARKETS)
    run_differential(twin, cmds, ref, restore_at=[len(cmds) // 2], label=f"deep stream seed {seed}")
    check_batch(twin, cmds, ref, lambda e, blob: e.handle_batch(blob, len(cmds)), f"deep stream seed {seed}")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_restore_mid_stream_continues_identically(seed: int) -> None:
    """Snapshot the native engine at several points, restore it into a fresh one: same bytes back, same
    events onwards."""
    cmds, ref = seeded(seed)
    run_differential(matching_twin(MARKETS), cmds, ref, restore_at=(0, 1, 777, 1_500, N_COMMANDS - 1))


@pytest.mark.parametrize("seed", [4, 5])
def test_snapshots_restore_across_implementations(seed: int) -> None:
    """Python's snapshot restores into the native engine and the native one into Python: same futures."""
    cmds, ref = seeded(seed)
    run_differential(matching_twin(MARKETS), cmds, ref, cross_restore_at=1_500)


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_handle_batch_equals_command_by_command(seed: int) -> None:
    """One handle_batch over the stream (bytes, bytearray at an offset, memoryview chunks) == per command."""
    cmds, ref = seeded(seed)
    junk = bytes(range(64)) * 3  # three slots before the stream: offset must be honoured

    def chunks(engine: Any, blob: bytes) -> None:
        view = memoryview(blob)
        for start in range(0, len(cmds), 61):
            engine.handle_batch(view, min(61, len(cmds) - start), start * SLOT_BYTES)

    feeds = {
        "bytes": lambda e, blob: e.handle_batch(blob, len(cmds)),
        "bytearray+offset": lambda e, blob: e.handle_batch(bytearray(junk + blob), len(cmds), len(junk)),
        "memoryview chunks": chunks,
    }
    for how, feed in feeds.items():
        check_batch(matching_twin(MARKETS), cmds, ref, feed, f"seed {seed} handle_batch({how})")


SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(CS.command_lists(MARKETS))
def test_hypothesis_streams_agree(cmds: list[bytes]) -> None:
    """Shrinkable streams: equal events after each command, and across a restore at the midpoint."""
    twin = matching_twin(MARKETS)
    ref = reference_run(twin, cmds, every=max(1, len(cmds) // 2))
    run_differential(twin, cmds, ref, restore_at=[len(cmds) // 2], label="hypothesis")


@pytest.mark.parametrize(
    ("ops", "markets", "seed", "accounts"), [(30_000, 4, 11, 40), (20_000, 1, 1, 0)], ids=["4m-40acct", "1m"]
)
def test_standard_workload_stream_agrees(ops: int, markets: int, seed: int, accounts: int) -> None:
    """The standard workload through handle_batch: identical event bytes in bulk, identical final state."""
    engine_cls = engine_under_test()
    specs = workload_markets(markets)
    commands = to_commands(standard_stream(ops, markets=markets, seed=seed, accounts=accounts, cache=False))
    blob = commands.tobytes()
    ref_w, got_w = WireEventWriter(), WireEventWriter()
    ref, got = reference_engine(specs, ref_w), engine_cls(specs, got_w)
    ref.handle_batch(blob, len(commands))
    got.handle_batch(blob, len(commands))
    expected, actual = ref_w.take(), got_w.take()
    types = collections.Counter(np.frombuffer(expected, layout_of(MsgType.FILL).dtype)["msg_type"].tolist())
    assert types[MsgType.FILL] > 1_000 and types[MsgType.CANCELLED] > 100, (
        "the workload should trade and cancel"
    )
    if actual != expected:
        pos = first_difference(expected, actual)
        # replay one command at a time to name the command that diverged
        r_w, g_w = WireEventWriter(), WireEventWriter()
        r, g = reference_engine(specs, r_w), engine_cls(specs, g_w)
        for k in range(len(commands)):
            cmd = blob[k * SLOT_BYTES : (k + 1) * SLOT_BYTES]
            rc, gc = int(r.handle(cmd)), g.handle(cmd)
            e, a = r_w.take(), g_w.take()
            if e != a or rc != gc:
                raise AssertionError(
                    events_mismatch(f"workload {ops} ops (bulk diff at byte {pos})", k, cmd, e, a, rc, gc)
                )
        raise AssertionError(
            f"workload {ops} ops: handle_batch differs at byte {pos}, command by command does not"
        )
    assert got.snapshot() == ref.snapshot()


def test_short_and_offset_buffers_are_handled_alike() -> None:
    """A buffer shorter than 64 bytes from the offset is a BAD_LENGTH reject in both, not an exception."""
    engine_cls = engine_under_test()
    cmds, _ = seeded(0)
    cases = [b"", b"\x01", cmds[0][:63], cmds[0] + cmds[1][:40]]
    ref_w, got_w = WireEventWriter(), WireEventWriter()
    ref, got = reference_engine(MARKETS, ref_w), engine_cls(MARKETS, got_w)
    for k, buf in enumerate(cases):
        offset = 64 if k == 3 else 0
        rc = int(ref.handle(buf, offset))
        gc = got.handle(buf, offset)
        e, a = ref_w.take(), got_w.take()
        assert rc == RejectCode.BAD_LENGTH
        if e != a or rc != gc:
            raise AssertionError(events_mismatch(f"short buffer case {k}", k, buf, e, a, rc, gc))


def test_handle_batch_beyond_the_buffer_agrees() -> None:
    """A count running past the end of the buffer (the last slot cut short): the same outcome from both,
    whether events (the Python twin rejects each missing command with BAD_LENGTH) or an exception."""
    engine_cls = engine_under_test()
    cmds, ref = seeded(0)
    busy = [cmd for cmd, events in zip(cmds, ref.events, strict=True) if events][:4]  # commands with events
    buf = b"".join(busy[:3]) + busy[3][:20]
    outcomes = []
    for cls in (MatchingEngine, engine_cls):
        writer = WireEventWriter()
        engine = reference_engine(MARKETS, writer) if cls is MatchingEngine else cls(MARKETS, writer)
        try:
            engine.handle_batch(buf, 5)
            outcomes.append(("events", [describe_message(e) for e in slots(writer.take())]))
        except Exception as exc:
            outcomes.append(
                ("raised", type(exc).__name__, [describe_message(e) for e in slots(writer.take())])
            )
    assert outcomes[0] == outcomes[1], f"handle_batch(3 commands + 20 bytes, count=5): {outcomes}"


def test_restore_refuses_corrupt_snapshots_alike() -> None:
    """Corrupt snapshots are refused by both, with SnapshotError."""
    engine_cls = engine_under_test()
    _, ref = seeded(0)
    blob = ref.snapshots[CHECKPOINT]
    first = {k: MARKETS[k] for k in sorted(MARKETS)[:2]}
    cases = {
        "empty": (b"", MARKETS),
        "bad magic": (b"X" * 8 + blob[8:], MARKETS),
        "trailing byte": (blob + b"\0", MARKETS),
        "market the engine lacks": (blob, first),
        "market missing from the snapshot": (seeded_snapshot_of(first), MARKETS),
        "truncated header": (blob[:30], MARKETS),
        "truncated orders": (blob[:-10], MARKETS),
    }
    for name, (data, markets) in cases.items():
        for cls in (MatchingEngine, engine_cls):
            with pytest.raises(SnapshotError):
                cls.restore(markets, WireEventWriter(), data)
                pytest.fail(f"{cls.__name__}.restore accepted a snapshot with {name}")


def seeded_snapshot_of(markets: dict[int, Any]) -> bytes:
    return reference_engine(markets, WireEventWriter()).snapshot()


def test_generic_sink_receives_the_same_calls() -> None:
    """With a sink that is not a WireEventWriter (tests, tools) the same method calls, same arguments."""
    engine_cls = engine_under_test()
    cmds, _ = seeded(2)
    ref_rec, got_rec = EventRecorder(), EventRecorder()
    ref, got = reference_engine(MARKETS, ref_rec), engine_cls(MARKETS, got_rec)
    done = 0
    for i, cmd in enumerate(cmds):
        ref.handle(cmd)
        got.handle(cmd)
        exp, act = ref_rec.events[done:], got_rec.events[done:]
        if exp != act:
            raise AssertionError(
                f"command #{i} {describe_message(cmd)}:\n  expected calls {exp}\n  actual calls   {act}"
            )
        done = len(ref_rec.events)
    assert len(ref_rec.events) > 3_000


# ---- the streams themselves ------------------------------------------------------------------------
_NOT_THE_ENGINES = {RejectCode.REDUCE_ONLY_NO_POSITION, RejectCode.OWNER_MISMATCH}  # (risk's; retired)
# Everything the engine can answer: every reject code it produces, every cancel reason it produces
# (LIQUIDATION and REDUCE_ONLY are reserved for the risk stage: the engine never emits them).
ENGINE_REJECTS = {
    RejectCode.BAD_VERSION,
    RejectCode.BAD_LENGTH,
    RejectCode.UNKNOWN_MSG_TYPE,
    RejectCode.BAD_FIELD,
    *(c for c in RejectCode if 300 <= c < 400 and c not in _NOT_THE_ENGINES),
}
ENGINE_CANCEL_REASONS = set(CancelReason) - {CancelReason.LIQUIDATION, CancelReason.REDUCE_ONLY}
EVENT_TYPES = {t for t in MsgType if 32 <= t <= 41}


def test_streams_cover_everything() -> None:
    """The seeded streams reach every event type, reject code, cancel reason and the rare paths."""
    runs = [seeded(seed) for seed in SEEDS]
    cmds = b"".join(b"".join(c) for c, _ in runs)
    events = b"".join(b"".join(r.events) for _, r in runs)
    codes = np.array([code for _, r in runs for code in r.codes])
    per_cmd = [len(e) // SLOT_BYTES for _, r in runs for e in r.events]
    cov = coverage(cmds, events, codes, per_cmd)
    for key in ("events", "rejects", "reasons"):
        print(f"\n{key} ({len(cov[key])}):", dict(sorted(cov[key].items())))
    print("paths:", dict(sorted(cov["paths"].items())))
    types = {MsgType[k] for k in cov["events"]}
    assert EVENT_TYPES <= types, f"event types never produced: {EVENT_TYPES - types}"
    rejects = {RejectCode[k] for k in cov["rejects"]}
    assert len(rejects) >= 25
    assert rejects >= ENGINE_REJECTS, f"reject codes never produced: {ENGINE_REJECTS - rejects}"
    reasons = {CancelReason[k] for k in cov["reasons"]}
    assert reasons >= ENGINE_CANCEL_REASONS, f"never cancelled for: {ENGINE_CANCEL_REASONS - reasons}"
    assert RARE_PATHS <= set(cov["paths"]), f"paths never reached: {sorted(RARE_PATHS - set(cov['paths']))}"


RARE_PATHS = {
    "slide repriced",
    "slide rejected",
    "fill flags=1",
    "fill flags=2",
    "fill flags=3",
    "stops triggered and filled",
    "several stops fired at once",
    "cancel-all across markets",
    "expired on a clock tick",
    "several expired at once",
    "unknown market reject (seq 0)",
    "amended kept_priority=0",
    "amended kept_priority=1",
    "junk in padding, accepted",
    "level full: a new order",
    "level full: an amend",
    "level full: a fired stop cancelled",
    "open-order cap: a limit",
    "open-order cap: a stop",
    *(f"self-trade under stp {m}" for m in range(1, 5)),
    *(f"status -> {s.name}" for s in MarketStatus),
}


def coverage(cmds: bytes, events: bytes, codes: np.ndarray, per_cmd: list[int]) -> dict[str, Any]:
    """Counts of event types, reject codes, cancel reasons and named rare paths over a stream."""

    def view(t: MsgType) -> np.ndarray:
        return np.frombuffer(events, layout_of(t).dtype)

    cmd = np.frombuffer(cmds, layout_of(MsgType.NEW_ORDER).dtype)
    raw = np.frombuffer(cmds, np.uint8).reshape(-1, SLOT_BYTES)
    owner = np.repeat(np.arange(len(cmd)), per_cmd)  # the command of each event
    kind = view(MsgType.FILL)["msg_type"]
    ckind = cmd["msg_type"][owner]  # the command type of each event's command
    rej, cxl, acc = view(MsgType.REJECTED), view(MsgType.CANCELLED), view(MsgType.ACCEPTED)
    is_rej, is_cxl = kind == MsgType.REJECTED, kind == MsgType.CANCELLED
    is_new = (ckind == MsgType.NEW_ORDER) & (cmd["version"][owner] == 1)
    stp = (cmd["flags"][owner] >> STP_SHIFT) & 7
    slide = is_new & (cmd["flags"][owner] & 2 > 0)
    paths: collections.Counter[str] = collections.Counter()

    def hit(name: str, mask: np.ndarray) -> None:
        if int(mask.sum()):
            paths[name] += int(mask.sum())

    hit(
        "slide repriced",
        slide & (kind == MsgType.ACCEPTED) & (acc["price_ticks"] != cmd["price_ticks"][owner]),
    )
    hit("slide rejected", slide & is_rej & (rej["reason"] == RejectCode.POST_ONLY_WOULD_TAKE))
    for f in (1, 2, 3):
        hit(f"fill flags={f}", (kind == MsgType.FILL) & (view(MsgType.FILL)["flags"] == f))
    self_trade = is_new & ((is_cxl & (cxl["reason"] == CancelReason.SELF_TRADE)) | (kind == MsgType.AMENDED))
    for m in range(1, 5):
        hit(f"self-trade under stp {m}", self_trade & (stp == m))
    triggered = np.bincount(owner[kind == MsgType.TRIGGERED], minlength=len(cmd))
    filled = np.bincount(owner[kind == MsgType.FILL], minlength=len(cmd))
    hit("stops triggered and filled", (triggered > 0) & (filled > 0))
    hit("several stops fired at once", triggered > 1)
    pairs = {(int(o), int(mk)) for o, mk in zip(owner[is_cxl], cxl["market_id"][is_cxl], strict=True)}
    per_owner = collections.Counter(o for o, _ in pairs)
    hit(
        "cancel-all across markets",
        np.array([n > 1 and cmd["msg_type"][o] == MsgType.CANCEL_ALL for o, n in per_owner.items()]),
    )
    expired = is_cxl & (cxl["reason"] == CancelReason.EXPIRED) & (ckind == MsgType.CLOCK)
    hit("expired on a clock tick", expired)
    hit("several expired at once", np.bincount(owner[expired], minlength=len(cmd)) > 1)
    hit(
        "unknown market reject (seq 0)",
        is_rej & (rej["reason"] == RejectCode.UNKNOWN_MARKET) & (rej["seq"] == 0),
    )
    amd = view(MsgType.AMENDED)
    for k in (0, 1):
        hit(f"amended kept_priority={k}", (kind == MsgType.AMENDED) & (amd["kept_priority"] == k))
    stat = view(MsgType.MARKET_STATUS)
    for st in MarketStatus:
        hit(f"status -> {st.name}", (kind == MsgType.MARKET_STATUS) & (stat["status"] == st))
    junk = np.zeros(len(cmd), bool)
    for t, ranges in CS._PADS.items():
        for a, b in ranges:
            junk |= (cmd["msg_type"] == t) & raw[:, a:b].any(axis=1)
    hit("junk in padding, accepted", junk & (codes == 0))
    full = is_rej & (rej["reason"] == RejectCode.LEVEL_FULL)
    hit("level full: a new order", full & is_new)
    hit("level full: an amend", full & (ckind == MsgType.AMEND))
    hit("level full: a fired stop cancelled", is_cxl & (cxl["reason"] == CancelReason.LEVEL_FULL))
    capped = is_rej & is_new & (rej["reason"] == RejectCode.TOO_MANY_OPEN_ORDERS)
    hit("open-order cap: a limit", capped & (cmd["order_type"][owner] == 0))
    hit("open-order cap: a stop", capped & (cmd["order_type"][owner] >= 2))
    return {
        "events": collections.Counter(MsgType(k).name for k in kind.tolist()),
        "rejects": collections.Counter(RejectCode(k).name for k in rej["reason"][is_rej].tolist()),
        "reasons": collections.Counter(CancelReason(k).name for k in cxl["reason"][is_cxl].tolist()),
        "paths": paths,
    }


def test_order_capacity_only_presizes() -> None:
    """The shard sizes the core for many orders up front; any capacity gives the same events, and a
    nonsensical one is refused."""
    engine_cls = engine_under_test()
    if engine_cls is MatchingEngine:
        return
    cmds, _ = seeded(3)
    outputs = []
    for capacity in (1, 1 << 15):
        writer = WireEventWriter()
        engine = engine_cls(MARKETS, writer, order_capacity=capacity)
        for cmd in cmds:
            engine.handle(cmd)
        engine.validate()
        outputs.append(writer.take())
    assert outputs[0] == outputs[1] and outputs[0]
    with pytest.raises(ValueError):
        engine_cls(MARKETS, WireEventWriter(), order_capacity=0)
