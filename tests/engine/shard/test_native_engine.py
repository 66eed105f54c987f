"""Differential tests: ``NativeEngine`` (C) against ``MatchingEngine``, byte for byte on the wire.

Why: the shard runs the native engine, and ``MatchingEngine`` is its specification. Both get the same
command streams (``command_streams``: every command kind, reject, cancel reason and edge) with a
``WireEventWriter`` sink; after EVERY command the event bytes and the return code must be equal,
and the canonical snapshots at checkpoints and at the end. Restoring the native engine from a
snapshot mid-stream (its own or the Python one's) must continue identically, ``handle_batch`` must
give the concatenation of the command-by-command events, and the edges of the API (short buffers,
corrupt snapshots, other sinks) must behave alike. ``test_streams_cover_everything`` holds the
streams themselves to reaching every event type, reject code, cancel reason and rare path.

These tests never skip: without the compiled core they FAIL (the build is part of ``make setup``).
``HX_DIFF_TARGET=python`` runs ``MatchingEngine`` on both sides: a self-check of the harness only.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Any

import command_streams as CS
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from engine.shard.engine_snapshot import SNAP_ORDER, SnapshotError
from engine.shard.event_sink import EventRecorder
from engine.shard.matching_engine import MatchingEngine
from engine.shard.order_stream import to_commands
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import STP_SHIFT, CancelReason, MarketStatus, MsgType, RejectCode
from engine.types.market_spec import workload_markets
from engine.wire.codec import decode
from engine.wire.layout import BY_TYPE, SLOT_BYTES, layout_of
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


# ---- describing a mismatch -------------------------------------------------------------------------
def describe(msg: bytes) -> str:
    """One 64-byte message as ``NAME {field: value}``, enum fields by name; raw hex when undecodable."""
    if len(msg) < SLOT_BYTES or msg[0] not in BY_TYPE:
        return f"<{len(msg)} bytes, type {msg[0] if msg else None}> {msg.hex()}"
    d = decode(msg)
    name = MsgType(d.pop("msg_type")).name
    if d.get("version") == 1 and d.get("length") == SLOT_BYTES:
        del d["version"], d["length"]
    if "reason" in d:
        enum = RejectCode if name == "REJECTED" else CancelReason
        d["reason"] = _name(enum, d["reason"])
    if "command" in d:
        d["command"] = _name(MsgType, d["command"])
    if name == "NEW_ORDER" and d.get("flags"):
        d["flags"] = f"{d['flags']:#04x} (stp {(d['flags'] >> STP_SHIFT) & 7})"
    return f"{name} {d}"


def _name(enum: Any, value: int) -> str:
    try:
        return f"{enum(value).name}({value})"
    except ValueError:
        return str(value)


def _slots(buf: bytes) -> list[bytes]:
    return [buf[i : i + SLOT_BYTES] for i in range(0, len(buf), SLOT_BYTES)]


def events_mismatch(
    label: str, index: int, command: bytes, expected: bytes, actual: bytes, exp_code: int, got_code: Any
) -> str:
    """The assertion message: the command, the first differing event, and both event lists."""
    lines = [f"{label}: command #{index} differs", f"  command: {describe(command)}"]
    if exp_code != got_code:
        lines.append(f"  return code: expected {_name(RejectCode, exp_code)}, got {got_code!r}")
    exp, got = _slots(expected), _slots(actual)
    if len(actual) % SLOT_BYTES:
        lines.append(f"  actual events are {len(actual)} bytes, not a multiple of {SLOT_BYTES}")
    first = next(
        (k for k, (a, b) in enumerate(zip(exp, got, strict=False)) if a != b), min(len(exp), len(got))
    )
    lines.append(f"  {len(exp)} events expected, {len(got)} actual; first difference at event {first}:")
    lines.append(f"    expected: {describe(exp[first]) if first < len(exp) else '(none)'}")
    lines.append(f"    actual:   {describe(got[first]) if first < len(got) else '(none)'}")
    for title, evs in (("expected", exp), ("actual", got)):
        lines.append(f"  all {title} events:")
        lines.extend(f"    [{k}] {describe(e)}" for k, e in enumerate(evs[:20]))
        if len(evs) > 20:
            lines.append(f"    ... {len(evs) - 20} more")
    return "\n".join(lines)


_ENGINE_HDR = struct.Struct("<8sQI")
_MARKET_HDR = struct.Struct("<IQBqQqqqqII")
_MARKET_FIELDS = "market_id seq status mark last_oid bid_px bid_sz ask_px ask_sz n_orders n_stops".split()


def _parse_snapshot(blob: bytes) -> tuple[int, list[tuple[dict[str, int], np.ndarray, np.ndarray]]]:
    _, now, n = _ENGINE_HDR.unpack_from(blob, 0)
    pos, out = _ENGINE_HDR.size, []
    for _ in range(n):
        hdr = dict(zip(_MARKET_FIELDS, _MARKET_HDR.unpack_from(blob, pos), strict=True))
        pos += _MARKET_HDR.size
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


# ---- the reference run, and running the engine under test against it ------------------------------
@dataclass(frozen=True)
class Reference:
    """MatchingEngine's outputs for one stream: events and code per command, snapshots by commands done."""

    events: list[bytes]
    codes: list[int]
    snapshots: dict[int, bytes]
    now_ns: int


def reference_run(cmds: list[bytes], markets: dict[int, Any] = MARKETS, every: int = CHECKPOINT) -> Reference:
    writer = WireEventWriter()
    engine = reference_engine(markets, writer)
    events, codes, snaps = [], [], {0: engine.snapshot()}
    for i, cmd in enumerate(cmds, 1):
        codes.append(int(engine.handle(cmd)))
        events.append(writer.take())
        if i % every == 0 or i == len(cmds):
            snaps[i] = engine.snapshot()
    return Reference(events, codes, snaps, engine.now_ns)


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
    return cmds, Reference(events, codes, snaps, gen.oracle.now_ns)


def check_against(
    engine: Any,
    writer: WireEventWriter,
    cmds: list[bytes],
    ref: Reference,
    label: str,
    start: int = 0,
    stop: int | None = None,
    whole_buffer: bool = False,
) -> None:
    """Feed ``cmds[start:stop]`` one at a time: events, codes, and snapshots at checkpoints equal ``ref``'s.

    ``whole_buffer``: pass the whole stream as one memoryview and an offset instead of one ``bytes``."""
    stop = len(cmds) if stop is None else stop
    whole = memoryview(b"".join(cmds)) if whole_buffer else None
    for i in range(start, stop):
        code = engine.handle(whole, i * SLOT_BYTES) if whole is not None else engine.handle(cmds[i])
        got = writer.take()
        if got != ref.events[i] or code != ref.codes[i]:
            raise AssertionError(events_mismatch(label, i, cmds[i], ref.events[i], got, ref.codes[i], code))
        done = i + 1
        if done in ref.snapshots:
            engine.validate()
            snap = engine.snapshot()
            if snap != ref.snapshots[done]:
                raise AssertionError(
                    snapshot_mismatch(f"{label} after {done} commands", ref.snapshots[done], snap)
                )
            check_book_views(engine, snap, f"{label} after {done} commands")
    if stop == len(cmds):
        assert engine.now_ns == ref.now_ns, f"{label}: now_ns {engine.now_ns} != {ref.now_ns}"


def check_book_views(engine: Any, blob: bytes, label: str) -> None:
    """``book(mid).depth(side)`` and ``.seq`` (the shard's BOOK_RESET restatement reads them) agree with
    the snapshot: levels best first, each with its total open size and order count."""
    for hdr, orders, _ in _parse_snapshot(blob)[1]:
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


def first_difference(expected: bytes, actual: bytes) -> int:
    """Byte offset of the first differing 64-byte slot."""
    for pos in range(0, max(len(expected), len(actual)), SLOT_BYTES):
        if expected[pos : pos + SLOT_BYTES] != actual[pos : pos + SLOT_BYTES]:
            return pos
    return -1


# ---- tests -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_stream_agrees_after_every_command(seed: int) -> None:
    """3000 commands: equal event bytes and codes after each, equal snapshots every 500, validate() holds."""
    engine_cls = engine_under_test()
    cmds, ref = seeded(seed)
    writer = WireEventWriter()
    engine = engine_cls(MARKETS, writer)
    label = f"random_commands({seed}, {N_COMMANDS})"
    check_against(engine, writer, cmds, ref, label, whole_buffer=bool(seed & 1))
    final = ref.snapshots[len(cmds)]
    assert engine.snapshot() == final
    assert engine.state_hash() == hashlib.blake2b(final, digest_size=32).digest()


def test_seeded_reference_is_a_plain_engine_run() -> None:
    """The generator's oracle (the reference of the seeded tests) saw exactly random_commands' stream."""
    cmds, ref = seeded(3)
    assert CS.random_commands(3, N_COMMANDS, MARKETS) == cmds
    replay = reference_run(cmds)
    assert replay.events == ref.events and replay.codes == ref.codes and replay.snapshots == ref.snapshots


@pytest.mark.parametrize("seed", [1])
def test_deep_book_stream_agrees(seed: int) -> None:
    """Thousands of resting orders, accounts and client ids, hundreds of levels, stops and GTT orders in
    one market: every pool, hash table and array of the native engine grows, and deletes from them."""
    engine_cls = engine_under_test()
    cmds, ref = seeded(seed, "deep")
    books = [_parse_snapshot(b)[1][0] for b in ref.snapshots.values()]
    peak = max(hdr["n_orders"] for hdr, _, _ in books)
    stops = max(hdr["n_stops"] for hdr, _, _ in books)
    accounts = max(len(set(orders["account"].tolist())) for _, orders, _ in books)
    # above 3/4 of 4096 (the native engine's initial hash table size), 64 (its initial stop tables)
    assert peak > 3_072 and accounts > 3_072 and stops > 500, f"not deep: {peak} orders, {accounts} accounts"
    writer = WireEventWriter()
    engine = engine_cls(DEEP_MARKETS, writer)
    cut = len(cmds) // 2
    check_against(engine, writer, cmds, ref, f"deep stream seed {seed}", stop=cut)
    w = WireEventWriter()
    restored = engine_cls.restore(DEEP_MARKETS, w, engine.snapshot())
    check_against(restored, w, cmds, ref, f"deep stream seed {seed}, restored at {cut}", start=cut)
    w = WireEventWriter()
    batch = engine_cls(DEEP_MARKETS, w)
    batch.handle_batch(b"".join(cmds), len(cmds))
    got = w.take()
    if got != b"".join(ref.events):
        raise AssertionError(batch_mismatch(f"deep stream seed {seed} handle_batch", cmds, ref, got))
    assert batch.snapshot() == ref.snapshots[len(cmds)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_restore_mid_stream_continues_identically(seed: int) -> None:
    """Snapshot the native engine at several points, restore it into a fresh one: same events onwards."""
    engine_cls = engine_under_test()
    cmds, ref = seeded(seed)
    writer = WireEventWriter()
    engine = engine_cls(MARKETS, writer)
    cuts = (0, 1, 777, 1_500, N_COMMANDS - 1)
    blobs = {}
    for i, cmd in enumerate(cmds):
        if i in cuts:
            blobs[i] = engine.snapshot()
        engine.handle(cmd)
    writer.take()
    for cut, blob in blobs.items():
        w = WireEventWriter()
        restored = engine_cls.restore(MARKETS, w, blob)
        assert restored.snapshot() == blob, f"seed {seed}: restore({cut}) then snapshot() changed the bytes"
        assert restored.now_ns == _parse_snapshot(blob)[0]
        restored.validate()
        check_against(restored, w, cmds, ref, f"seed {seed} restored at {cut}", start=cut)


@pytest.mark.parametrize("seed", [4, 5])
def test_snapshots_restore_across_implementations(seed: int) -> None:
    """Python's snapshot restores into the native engine and the native one into Python: same futures."""
    engine_cls = engine_under_test()
    cmds, ref = seeded(seed)
    cut = 1_500
    w = WireEventWriter()
    native = engine_cls.restore(MARKETS, w, ref.snapshots[cut])
    native.validate()
    check_against(native, w, cmds, ref, f"seed {seed}: native restored from Python's snapshot at {cut}", cut)
    w = WireEventWriter()
    engine = engine_cls(MARKETS, w)
    for cmd in cmds[:cut]:
        engine.handle(cmd)
    w = WireEventWriter()
    python = MatchingEngine.restore(MARKETS, w, engine.snapshot(), debug_validate=False)
    python.validate()
    check_against(
        python, w, cmds, ref, f"seed {seed}: Python restored from the native snapshot at {cut}", cut
    )


def batch_mismatch(label: str, cmds: list[bytes], ref: Reference, got: bytes) -> str:
    """Name the command whose events a batch run got wrong (by the reference's event boundaries)."""
    pos = first_difference(b"".join(ref.events), got)
    ends = np.cumsum([len(e) for e in ref.events])
    k = min(int(np.searchsorted(ends, pos, side="right")), len(cmds) - 1)
    start = int(ends[k - 1]) if k else 0
    window = got[start : start + max(len(ref.events[k]), SLOT_BYTES * 4)]
    label = f"{label} (first difference at byte {pos}; actual events shown from the same offset)"
    return events_mismatch(label, k, cmds[k], ref.events[k], window, ref.codes[k], ref.codes[k])


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_handle_batch_equals_command_by_command(seed: int) -> None:
    """One handle_batch over the stream (bytes, bytearray at an offset, memoryview chunks) == per command."""
    engine_cls = engine_under_test()
    cmds, ref = seeded(seed)
    blob = b"".join(cmds)
    expected = b"".join(ref.events)
    junk = bytes(range(64)) * 3  # three slots before the stream: offset must be honoured
    for how in ("bytes", "bytearray+offset", "memoryview chunks"):
        w = WireEventWriter()
        engine = engine_cls(MARKETS, w)
        if how == "bytes":
            engine.handle_batch(blob, len(cmds))
        elif how == "bytearray+offset":
            engine.handle_batch(bytearray(junk + blob), len(cmds), len(junk))
        else:
            view = memoryview(blob)
            for start in range(0, len(cmds), 61):
                count = min(61, len(cmds) - start)
                engine.handle_batch(view, count, start * SLOT_BYTES)
        got = w.take()
        if got != expected:
            raise AssertionError(batch_mismatch(f"seed {seed} handle_batch({how})", cmds, ref, got))
        assert engine.snapshot() == ref.snapshots[len(cmds)]


SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(CS.command_lists(MARKETS))
def test_hypothesis_streams_agree(cmds: list[bytes]) -> None:
    """Shrinkable streams: equal events after each command, and across a restore at the midpoint."""
    engine_cls = engine_under_test()
    ref = reference_run(cmds, every=max(1, len(cmds) // 2))
    writer = WireEventWriter()
    engine = engine_cls(MARKETS, writer)
    half = len(cmds) // 2
    check_against(engine, writer, cmds, ref, "hypothesis", stop=half)
    w = WireEventWriter()
    restored = engine_cls.restore(MARKETS, w, engine.snapshot())
    check_against(restored, w, cmds, ref, "hypothesis (restored at the midpoint)", start=half)
    assert restored.snapshot() == ref.snapshots[len(cmds)]


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
            outcomes.append(("events", [describe(e) for e in _slots(writer.take())]))
        except Exception as exc:
            outcomes.append(("raised", type(exc).__name__, [describe(e) for e in _slots(writer.take())]))
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
                f"command #{i} {describe(cmd)}:\n  expected calls {exp}\n  actual calls   {act}"
            )
        done = len(ref_rec.events)
    assert len(ref_rec.events) > 3_000


# ---- the streams themselves ------------------------------------------------------------------------
# Everything the engine can answer: every reject code it produces, every cancel reason it produces
# (LIQUIDATION and REDUCE_ONLY are reserved for the risk stage: the engine never emits them).
ENGINE_REJECTS = {
    RejectCode.BAD_VERSION,
    RejectCode.BAD_LENGTH,
    RejectCode.UNKNOWN_MSG_TYPE,
    RejectCode.BAD_FIELD,
    *(c for c in RejectCode if 300 <= c < 400 and c != RejectCode.REDUCE_ONLY_NO_POSITION),
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
