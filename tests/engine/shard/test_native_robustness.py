"""The compiled core trusts nothing it is handed: snapshot records, batch counts, offsets, bytes.

Why: a shard restores from a snapshot file and replays journal records after every restart; a
corrupt or hostile input that crashes the core crash-loops the shard. Each check here failed (or
crashed) before the core learnt it: a stop restored with side 2 (an out-of-bounds side array on
its trigger), an order id both resting and waiting (the GTT expiry cancelled it twice), a batch
count past the buffer (one reject per missing slot: gigabytes for a large count). A refused
restore leaves the market exactly as it was, and both engines give the same verdict on every
snapshot, hand-made, mutated or random (fuzzed below with hypothesis), and the same events for
random and mutated command bytes.
"""

from __future__ import annotations

import random

import command_streams as CS
import matching_constants as C
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.shard.engine_snapshot import (
    SNAP_ORDER_STRUCT,
    MarketImage,
    SnapshotError,
    check_image,
    pack_snapshot,
    parse_snapshot,
)
from engine.shard.matching_engine import MatchingEngine
from engine.shard.native_engine import NativeEngine
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import OrderType, TimeInForce
from engine.wire.layout import HEADER_STRUCT, MARKET_ID_AT, MSG_TYPE_AT, SLOT_BYTES, WIRE_VERSION

M = C.BTC_PERP.market_id
MARKETS = {M: C.BTC_PERP}
STOP = OrderType.STOP_LIMIT
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def record(oid: int, side: int, price: int, open_: int = 1, *, account: int = 1, tif: int = 0, otype: int = 0,
           flags: int = 0, filled: int = 0, coid: int = 0, expire: int = 0, trigger: int = 0) -> bytes:  # fmt: skip
    return SNAP_ORDER_STRUCT.pack(
        oid, account, side, tif, otype, flags, price, open_, filled, coid, expire, trigger
    )


def image(orders: bytes = b"", stops: bytes = b"", *, last_oid: int = 100, bbo=(0, 0, 0, 0), mark: int = 0) -> bytes:  # type: ignore[no-untyped-def]  # fmt: skip
    return pack_snapshot(0, [MarketImage(M, 5, 0, mark, last_oid, bbo, orders, stops)])


def verdicts(blob: bytes, markets: dict = MARKETS) -> tuple[str, str]:  # type: ignore[type-arg]
    """("ok" or "refused") for the twin and the core restoring ``blob``."""
    out = []
    for cls in (MatchingEngine, NativeEngine):
        try:
            engine = cls.restore(markets, WireEventWriter(), blob)
        except SnapshotError:
            out.append("refused")
        else:
            engine.validate()
            out.append("ok")
    return out[0], out[1]


VALID_STOP = record(7, 0, 120, otype=STOP, trigger=110)
GOOD = image(record(1, 0, 100, 2) + record(2, 1, 105, 3), VALID_STOP, bbo=(100, 2, 105, 3))


def test_a_valid_image_restores_in_both() -> None:
    assert verdicts(GOOD) == ("ok", "ok")


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        ("stop with side 2", image(stops=record(7, 2, 120, otype=STOP, trigger=110))),
        ("resting order with side 255", image(record(1, 255, 100))),
        (
            "oid both resting and waiting",
            image(record(7, 0, 100, tif=3, expire=50), VALID_STOP, bbo=(100, 1, 0, 0)),
        ),
        ("duplicate resting oid", image(record(1, 0, 100) + record(1, 0, 99), bbo=(100, 2, 0, 0))),
        (
            "duplicate client id across kinds",
            image(
                record(1, 0, 100, coid=9),
                record(7, 0, 120, otype=STOP, trigger=110, coid=9),
                bbo=(100, 1, 0, 0),
            ),
        ),
        ("stop of a limit type", image(stops=record(7, 0, 120, trigger=110))),
        ("resting stop type", image(record(1, 0, 100, otype=STOP), bbo=(100, 1, 0, 0))),
        ("market stop with GTC", image(stops=record(7, 0, 120, otype=OrderType.STOP_MARKET, trigger=110))),
        ("GTT without expiry", image(record(1, 0, 100, tif=TimeInForce.GTT), bbo=(100, 1, 0, 0))),
        ("IOC resting", image(record(1, 0, 100, tif=TimeInForce.IOC), bbo=(100, 1, 0, 0))),
        ("zero open", image(record(1, 0, 100, 0), bbo=(100, 0, 0, 0))),
        ("negative filled", image(record(1, 0, 100, filled=-1), bbo=(100, 1, 0, 0))),
        ("open + filled beyond int64", image(record(1, 0, 100, 2**62, filled=2**62), bbo=(100, 2**62, 0, 0))),
        ("stop that has filled", image(stops=record(7, 0, 120, otype=STOP, trigger=110, filled=1))),
        ("stop without trigger", image(stops=record(7, 0, 120, otype=STOP))),
        ("post-only stop", image(stops=record(7, 0, 120, otype=STOP, trigger=110, flags=1))),
        ("unknown flag bit", image(record(1, 0, 100, flags=8), bbo=(100, 1, 0, 0))),
        ("price above max", image(record(1, 0, 10**9), bbo=(10**9, 1, 0, 0))),
        ("order id above the watermark", image(record(101, 0, 100), bbo=(100, 1, 0, 0))),
        ("order id 0", image(record(0, 0, 100), bbo=(100, 1, 0, 0))),
        ("crossed book", image(record(1, 0, 100) + record(2, 1, 100), bbo=(100, 1, 100, 1))),
        ("stale BBO", image(record(1, 0, 100), bbo=(99, 1, 0, 0))),
        ("level beyond 2**62", image(record(1, 0, 1, 2**62) + record(2, 0, 1, 1), bbo=(1, 2**62 + 1, 0, 0))),
        ("mark above max", image(mark=10**9)),
    ],
)
def test_both_engines_refuse_what_no_engine_could_have_written(name: str, blob: bytes) -> None:
    assert verdicts(blob) == ("refused", "refused"), name


def test_a_refused_restore_leaves_the_core_as_it_was() -> None:
    engine = NativeEngine(MARKETS, WireEventWriter())
    core = engine.core
    fresh = core.market_state(M)
    good = record(1, 0, 100, 2, tif=3, expire=500) + record(2, 1, 105, 3)
    for bad in (good + record(3, 7, 99), good + record(1, 0, 98)):  # a bad side; a duplicate id
        with pytest.raises(ValueError):
            core.restore_market(M, 5, 0, 0, 100, 100, 2, 105, 3, bad, b"")
        assert core.market_state(M) == fresh
        assert core.export_orders(M) == b"" and core.export_stops(M) == b"" and core.depth(M, 0) == []
        core.validate()
    core.restore_market(M, 5, 0, 0, 100, 100, 2, 105, 3, good, VALID_STOP)
    core.validate()
    core.advance_clock(600)  # the GTT heap was rebuilt once, not from the refused attempts
    assert [o[0] for o in engine.book(M).iter_orders()] == [2]
    core.validate()


@pytest.mark.parametrize("cls", [MatchingEngine, NativeEngine], ids=["twin", "core"])
@pytest.mark.parametrize(
    ("count", "offset"), [(-1, 0), (2, 0), (10**6, 0), (2**62, 0), (1, -64), (0, 200), (1, 64)]
)
def test_batch_count_and_offset_are_checked(cls, count: int, offset: int) -> None:  # type: ignore[no-untyped-def]
    w = WireEventWriter()
    engine = cls(MARKETS, w)
    buf = CS.encode(1, M, order_id=1, price_ticks=100, size_lots=1, account=1)  # one slot
    before = engine.snapshot()
    with pytest.raises(ValueError):
        engine.handle_batch(buf, count, offset)
    assert w.take() == b"" and engine.snapshot() == before


def test_core_handle_refuses_a_negative_offset_like_the_twin() -> None:
    for cls in (MatchingEngine, NativeEngine):
        with pytest.raises(ValueError):
            cls(MARKETS, WireEventWriter()).handle(bytes(64), -64)


# ---- fuzzing --------------------------------------------------------------------------------------
def _snapshots() -> list[bytes]:
    """Real snapshots: the dense streams' markets at a few points of two seeded streams."""
    out = []
    for seed in (0, 1):
        gen = CS.StreamGenerator(CS.STREAM_MARKETS, resolve_from=10**9)
        rng = CS.SeededRng(seed)
        for i in range(1, 1_201):
            gen.next(rng)
            if i % 300 == 0:
                out.append(gen.oracle.snapshot())
    return out


SNAPSHOTS = _snapshots()


@SETTINGS
@given(
    st.integers(0, len(SNAPSHOTS) - 1),
    st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_snapshots_get_the_same_verdict(which: int, edits: list[tuple[int, int]]) -> None:  # fmt: skip
    """Bytes changed anywhere in a real snapshot: both engines accept it (and then hold the same state)
    or both refuse it; never a crash."""
    blob = bytearray(SNAPSHOTS[which])
    for pos, value in edits:
        blob[pos % len(blob)] = value
    verdict = verdicts(bytes(blob), CS.STREAM_MARKETS)
    assert verdict[0] == verdict[1], verdict
    if verdict[0] == "ok":
        twin = MatchingEngine.restore(CS.STREAM_MARKETS, WireEventWriter(), bytes(blob))
        core = NativeEngine.restore(CS.STREAM_MARKETS, WireEventWriter(), bytes(blob))
        assert twin.snapshot() == core.snapshot()


_RECORD = st.builds(
    record,
    st.integers(0, 120),
    st.integers(0, 3),
    st.integers(-1, 130),
    st.integers(-2, 5),
    account=st.integers(0, 3),
    tif=st.integers(0, 4),
    otype=st.integers(0, 6),
    flags=st.sampled_from([0, 1, 2, 4, 8, 0x10, 0x40, 0x70]),
    filled=st.integers(-1, 2),
    coid=st.integers(0, 3),
    expire=st.sampled_from([0, 0, 7, 2**63]),
    trigger=st.integers(-1, 130),
)


@SETTINGS
@given(
    st.lists(_RECORD, max_size=6),
    st.lists(_RECORD, max_size=4),
    st.integers(-1, 6),
    st.integers(-5, 200),
    st.integers(0, 150),
    st.tuples(*[st.integers(-1, 130)] * 4),
    st.binary(max_size=130),
)
def test_random_images_get_the_same_verdict(orders, stops, status, mark, last_oid, bbo, junk) -> None:  # type: ignore[no-untyped-def]
    """Random records (mostly almost valid) into the core's restore_market and the twin's check: the
    same verdict; an accepted image validates; a refused one leaves the market fresh. Trailing junk
    (not a whole record) is refused by the core itself."""
    spec = C.BTC_PERP
    img = MarketImage(M, 3, status, mark, last_oid, bbo, b"".join(orders), b"".join(stops))
    try:
        check_image(spec, img)
        twin = "ok"
    except SnapshotError:
        twin = "refused"
    core = NativeEngine(MARKETS, WireEventWriter()).core
    fresh = core.market_state(M)
    try:
        core.restore_market(M, 3, status, mark, last_oid, *bbo, img.orders, img.stops)
        verdict = "ok"
    except (ValueError, OverflowError):
        verdict = "refused"
        assert core.market_state(M) == fresh and core.export_orders(M) == b""
    core.validate()
    assert verdict == twin
    partial = junk + b"\x01"
    partial = partial[:-1] if len(partial) % SLOT_BYTES == 0 else partial
    with pytest.raises(ValueError):  # not whole records
        NativeEngine(MARKETS, WireEventWriter()).core.restore_market(M, 3, 0, 0, 9, 0, 0, 0, 0, partial, b"")


def test_truncated_and_extended_snapshots_are_refused_alike() -> None:
    blob = SNAPSHOTS[-1]
    rng = random.Random(5)
    for cut in sorted({*rng.sample(range(1, len(blob)), 40), len(blob) - 1}):
        assert verdicts(blob[:cut], CS.STREAM_MARKETS) == ("refused", "refused"), cut
    assert verdicts(blob + bytes(64), CS.STREAM_MARKETS) == ("refused", "refused")
    now, images = parse_snapshot(blob, sorted(CS.STREAM_MARKETS))
    assert now >= 0 and len(images) == len(CS.STREAM_MARKETS)


@SETTINGS
@given(st.integers(0, 2**32), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12))
def test_mutated_command_batches_agree(seed: int, edits: list[tuple[int, int]]) -> None:
    """Real command streams with random bytes changed, through handle_batch of both engines: the same
    event bytes and the same state; the core never crashes."""
    rng = CS.SeededRng(seed)
    gen = CS.StreamGenerator(CS.STREAM_MARKETS, oracle=False)
    blob = bytearray(b"".join(gen.next(rng) for _ in range(60)))
    for pos, value in edits:
        blob[pos % len(blob)] = value
    outs = []
    for cls in (MatchingEngine, NativeEngine):
        w = WireEventWriter()
        engine = cls(CS.STREAM_MARKETS, w)
        engine.handle_batch(bytes(blob), len(blob) // SLOT_BYTES)
        outs.append((w.take(), engine.snapshot()))
    assert outs[0] == outs[1]


@SETTINGS
@given(st.binary(min_size=64, max_size=64 * 24).map(lambda b: b[: len(b) // 64 * 64]))
def test_random_command_batches_agree(blob: bytes) -> None:
    """Pure noise, and noise with a valid header, through handle_batch: equal events, no crash."""
    headed = bytearray(blob)
    for off in range(0, len(headed), SLOT_BYTES):
        market = sorted(CS.STREAM_MARKETS)[headed[off + MARKET_ID_AT] % 5]
        msg_type = (
            1 + headed[off + MSG_TYPE_AT] % 7
        )  # a command type, version 1, length 64: judged on its body
        HEADER_STRUCT.pack_into(headed, off, msg_type, WIRE_VERSION, SLOT_BYTES, market)
    for data in (blob, bytes(headed)):
        outs = []
        for cls in (MatchingEngine, NativeEngine):
            w = WireEventWriter()
            engine = cls(CS.STREAM_MARKETS, w)
            engine.handle_batch(data, len(data) // SLOT_BYTES)
            outs.append((w.take(), engine.snapshot()))
        assert outs[0] == outs[1]
