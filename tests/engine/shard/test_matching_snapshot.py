"""Snapshot at any point + the rest of the stream == the uninterrupted run, byte for byte (wire events)."""

from __future__ import annotations

import matching_constants as C
import pytest

from engine.shard.engine_snapshot import SnapshotError
from engine.shard.matching_engine import MatchingEngine
from engine.shard.native_engine import NativeEngine
from engine.shard.reference_book import ReferenceBook
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import MsgType
from engine.wire.codec import decode

MSGS = C.random_commands(3_000, seed=11)


def _feed(engine: MatchingEngine, msgs: list[bytes]) -> None:
    for m in msgs:
        engine.handle(m, 0)


@pytest.fixture(scope="module")
def uninterrupted() -> bytes:
    writer = WireEventWriter(64)
    _feed(MatchingEngine(C.SMALL_MARKETS, writer), MSGS)
    return writer.take()


ENGINE_CLASSES = {"python": MatchingEngine, "native": NativeEngine}


@pytest.mark.parametrize("kind", sorted(ENGINE_CLASSES))
@pytest.mark.parametrize("cut", [0, 1, 700, 1_500, 2_999, 3_000])
def test_snapshot_restore_reproduces_the_event_bytes(uninterrupted: bytes, cut: int, kind: str) -> None:
    cls = ENGINE_CLASSES[kind]
    writer = WireEventWriter()
    engine = cls(C.SMALL_MARKETS, writer)
    _feed(engine, MSGS[:cut])
    head = writer.take()
    blob = engine.snapshot()
    restored_writer = WireEventWriter()
    restored = cls.restore(C.SMALL_MARKETS, restored_writer, blob, debug_validate=True)
    assert restored.state_hash() == engine.state_hash()
    _feed(restored, MSGS[cut:])
    assert head + restored_writer.take() == uninterrupted


def test_snapshot_is_canonical_across_book_implementations() -> None:
    fast = MatchingEngine(C.SMALL_MARKETS, WireEventWriter())
    ref = MatchingEngine(C.SMALL_MARKETS, WireEventWriter(), book_factory=ReferenceBook)
    _feed(fast, MSGS[:800])
    _feed(ref, MSGS[:800])
    assert fast.snapshot() == ref.snapshot()
    # a reference engine restored from the fast one's snapshot continues identically
    w1, w2 = WireEventWriter(), WireEventWriter()
    a = MatchingEngine.restore(C.SMALL_MARKETS, w1, fast.snapshot())
    b = MatchingEngine.restore(C.SMALL_MARKETS, w2, fast.snapshot(), book_factory=ReferenceBook)
    _feed(a, MSGS[800:1200])
    _feed(b, MSGS[800:1200])
    assert w1.take() == w2.take()
    # and the compiled core restores the Python twin's snapshot, and vice versa
    native = NativeEngine(C.SMALL_MARKETS, WireEventWriter())
    _feed(native, MSGS[:800])
    assert native.snapshot() == fast.snapshot()
    w3, w4 = WireEventWriter(), WireEventWriter()
    c = NativeEngine.restore(C.SMALL_MARKETS, w3, fast.snapshot())
    d = MatchingEngine.restore(C.SMALL_MARKETS, w4, native.snapshot())
    _feed(c, MSGS[800:1200])
    _feed(d, MSGS[800:1200])
    assert w3.take() == w4.take()


def test_wire_events_decode(uninterrupted: bytes) -> None:
    kinds = {decode(uninterrupted, off)["msg_type"] for off in range(0, len(uninterrupted), 64)}
    assert {
        MsgType.ACCEPTED,
        MsgType.FILL,
        MsgType.TRADE,
        MsgType.L2_DELTA,
        MsgType.BBO,
        MsgType.CANCELLED,
        MsgType.REJECTED,
    } <= kinds
    per_market: dict[int, int] = {}
    for off in range(0, len(uninterrupted), 64):
        ev = decode(uninterrupted, off)
        if ev["msg_type"] == MsgType.REJECTED:
            continue
        assert ev["seq"] == per_market.get(ev["market_id"], 0) + 1
        per_market[ev["market_id"]] = ev["seq"]


@pytest.mark.parametrize("kind", sorted(ENGINE_CLASSES))
def test_bad_snapshots_are_refused(kind: str) -> None:
    cls = ENGINE_CLASSES[kind]
    engine = cls(C.SMALL_MARKETS, WireEventWriter())
    blob = engine.snapshot()
    with pytest.raises(SnapshotError):
        cls.restore(C.SMALL_MARKETS, WireEventWriter(), b"nonsense" + blob[8:])
    with pytest.raises(SnapshotError):
        cls.restore(C.SMALL_MARKETS, WireEventWriter(), blob + b"\0")
    with pytest.raises(SnapshotError):
        cls.restore({7: C.SMALL_MARKETS[7]}, WireEventWriter(), blob)
