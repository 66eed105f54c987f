"""ShardState.apply, the step the shard loop and its recovery share: a journal record in, events out.

The compiled core answers HEARTBEATs inside its batch call and stops only at a restatement request;
the Python twin answers both in ``_apply_one``. Both must give the same bytes, in the same order.
"""

from __future__ import annotations

import matching_constants as C
import pytest

from engine.shard.matching_engine import MatchingEngine
from engine.shard.native_engine import NativeEngine, native_available
from engine.shard.process import BATCH_HEADER, ShardState
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import MsgType
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS, HEARTBEAT_STRUCT, SLOT_BYTES

MARKET = C.BTC_PERP.market_id


def _record(commands: list[bytes], now_ns: int = 5_000) -> bytes:
    header = bytearray(SLOT_BYTES)
    BATCH_HEADER.pack_into(header, 0, 0, len(commands), 0, 0, now_ns)
    return bytes(header) + b"".join(commands)


def _heartbeat(ts_ns: int) -> bytes:
    return encode(MsgType.HEARTBEAT, 0, ts_ns=ts_ns, last_seq=999)


def _order(coid: int, side: int, price: int, size: int = 3) -> bytes:
    return encode(
        MsgType.NEW_ORDER,
        MARKET,
        client_order_id=coid,
        price_ticks=price,
        size_lots=size,
        side=side,
        account=coid,
    )


def _state(kind: str) -> ShardState:
    writer = WireEventWriter()
    markets = {MARKET: C.BTC_PERP}
    engine = NativeEngine(markets, writer) if kind == "native" else MatchingEngine(markets, writer)
    return ShardState(engine, writer)


RECORDS = [
    [_order(1, 0, 100), _heartbeat(111), _order(2, 1, 100, 2), _heartbeat(222)],
    [_heartbeat(333), _heartbeat(444)],
    [_order(3, 1, 101), encode(MsgType.L2_SNAPSHOT_REQUEST, ALL_MARKETS), _heartbeat(555), _order(4, 0, 99)],
    [_heartbeat(666), b"\x40" + bytes(63), _order(5, 0, 0)],  # a bare heartbeat; an order the engine rejects
]


def _events(kind: str) -> list[bytes]:
    state = _state(kind)
    out = []
    for seq, commands in enumerate(RECORDS, start=7):
        state.apply(_record(commands), seq)
        out.append(bytes(state.writer.peek()))
        state.writer.reset()
    return out


@pytest.mark.skipif(not native_available(), reason="compiled core not built")
def test_core_and_twin_give_the_same_bytes_with_heartbeats_and_restatements() -> None:
    assert _events("native") == _events("python")


@pytest.mark.parametrize("kind", ["native", "python"])
def test_heartbeats_are_echoed_in_place_with_the_journal_seq(kind: str) -> None:
    if kind == "native" and not native_available():
        pytest.skip("compiled core not built")
    batches = _events(kind)
    echoes = []
    for seq, data in enumerate(batches, start=7):
        kinds = [data[i] for i in range(0, len(data), SLOT_BYTES)]
        for i, k in enumerate(kinds):
            if k == MsgType.HEARTBEAT:
                fields = HEARTBEAT_STRUCT.unpack_from(data, i * SLOT_BYTES)
                assert fields[3] == 0 and fields[5] == seq  # market 0, last_seq = the record's seq
                echoes.append(fields[4])
        if seq == 7:  # order 1 accepted before the first echo, the fill of order 2 before the second
            first, second = kinds.index(MsgType.HEARTBEAT), len(kinds) - 1
            assert kinds[0] == MsgType.ACCEPTED and kinds[second] == MsgType.HEARTBEAT
            assert MsgType.FILL in kinds[first:second]
        if seq == 9:  # the restatement (BOOK_RESET) comes before the echo that follows it
            assert kinds.index(MsgType.BOOK_RESET) < kinds.index(MsgType.HEARTBEAT)
    assert echoes == [111, 222, 333, 444, 555, 666, 0]
