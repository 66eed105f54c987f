"""The oracle as a real process in a real pipeline (shard, risk, recorder) over shared-memory rings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from oracle_harness import ROOT

from engine.journal import JournalReader
from engine.oracle.process import BATCH_HEADER as ORACLE_HEADER
from engine.oracle.process import read_snapshot_engine, rebuild_from_journal
from engine.types.enums import MsgType
from engine.wire.codec import decode
from engine.wire.layout import SLOT_BYTES
from hx.pipeline import Pipeline
from hx.topology import Topology

BTC_PERP = 100
RISK_HEADER = ORACLE_HEADER  # the risk process frames records the same way ("<IIQQQI")

FAST_ORACLE = """
[oracle]
tick_ms = 20
staleness_ms = 2000
halt_after_ms = 60000
band_ppm = 20000
min_sources = 2
max_move_ppm_per_s = 1000000
seed = 3

[[oracle.source]]
asset = "BTC"
name = "a"
price = "64000"
every_ms = 20

[[oracle.source]]
asset = "BTC"
name = "b"
price = "64000"
every_ms = 20

[[oracle.source]]
asset = "BTC"
name = "c"
price = "64000"
every_ms = 20
mode = "garbage"

[[oracle.perp]]
market = "BTC-PERP"
payment_interval_s = 1
premium_sample_ms = 100
"""


def write_config(tmp: Path, oracle: str = FAST_ORACLE) -> Path:
    base = (ROOT / "config" / "hx.toml").read_text().split("# ---- oracle")[0]
    path = tmp / "hx.toml"
    path.write_text(base + oracle)
    return path


def _slots(record: bytes, header_slots: int = 1) -> list[dict[str, int]]:
    kept = RISK_HEADER.unpack_from(record, 0)[5]
    return [decode(record, (header_slots + k) * SLOT_BYTES) for k in range(kept)]


def _journal_inputs(journal: Path, idx: int, header: object = RISK_HEADER) -> list[bytes]:
    """Every slot a process journaled from its input ``idx``, in order."""
    out = []
    for _seq, record in JournalReader(journal).replay(1):
        fields = header.unpack_from(record, 0)  # type: ignore[attr-defined]
        if fields[0] == idx:
            n = fields[5] if len(fields) > 5 else fields[1]
            out.append(bytes(record[SLOT_BYTES : SLOT_BYTES + n * SLOT_BYTES]))
    return out


@pytest.mark.slow
def test_kill_minus_9_of_the_oracle_pays_each_interval_once_skips_none_and_leaves_no_gap(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    topo = Topology(run_id=f"hx-t-oracle-{os.getpid()}", shards=1, gateways=0, risk=1, recorders=1, oracle=1)
    public: list[bytes] = []
    with Pipeline(
        topo, markets_path=config, state_dir=tmp_path / "state", fsync="none", snapshot_every=40
    ) as pipe:
        oev = pipe.rings[topo.oracle_event_ring()].consumer(0)
        try:

            def drain() -> None:
                while True:
                    data = oev.read(4096, timeout_s=0)
                    if not data:
                        return
                    public.append(data)

            for _ in range(2):
                time.sleep(2.2)
                drain()
                pipe.kill("oracle-0")
                time.sleep(0.3)  # an interval may end while it is down
                pipe.restart("oracle-0")
            time.sleep(2.2)
            options = pipe.options_of("oracle", 0)
            oracle = pipe.procs["oracle-0"].process
            oracle.terminate()  # a clean stop: it snapshots
            oracle.join(10)
            time.sleep(1.0)  # risk and the shard read what it sent
            drain()
        finally:
            oev.close()
    # the public stream: gap-free and without a repeat, across two kill -9
    stream = b"".join(public)
    events = [decode(stream, k) for k in range(0, len(stream), SLOT_BYTES)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    marks = [e for e in events if e["msg_type"] == MsgType.MARK]
    assert marks and all(60_000_000_000 < e["mark_micro"] < 68_000_000_000 for e in marks)
    assert any(e["msg_type"] == MsgType.FUNDING_RATE for e in events)
    # what risk consumed from the oracle (input 1: after the feeder's ring), from risk's journal
    risk_bytes = b"".join(_journal_inputs(tmp_path / "state" / "risk-0" / "journal", 1))
    risk_msgs = [decode(risk_bytes, k) for k in range(0, len(risk_bytes), SLOT_BYTES)]
    funding = [m["interval_id"] for m in risk_msgs if m["msg_type"] == MsgType.FUNDING]
    assert len(funding) >= 5
    assert funding == list(range(funding[0], funding[0] + len(funding)))  # once each, in order, none skipped
    # exactly the bytes the oracle's journal gives, no more, no less
    replayed, last, outputs = rebuild_from_journal(options)
    assert risk_bytes == b"".join(risk for _shards, risk, _pub in outputs)
    assert stream == b"".join(pub for _shards, _risk, pub in outputs)
    # the shard got the marks (its journal holds the MARK_PRICE commands of input 1: the oracle's ring)
    shard_in = b"".join(_journal_inputs(tmp_path / "state" / "shard-0" / "journal", 1, _SHARD_HEADER))
    assert shard_in == b"".join(shards[0] for shards, _risk, _pub in outputs)
    assert any(shard_in[k] == MsgType.MARK_PRICE for k in range(0, len(shard_in), SLOT_BYTES))
    # the live state (its SIGTERM snapshot) == the journal replayed from scratch
    snap = read_snapshot_engine(options)
    assert snap is not None and snap[1] == last
    assert snap[0].state_hash() == replayed.state_hash()


class _ShardHeader:
    """The shard's journal header ("<IIQQQ": no kept count; a CLOCK slot precedes the commands)."""

    import struct

    _s = struct.Struct("<IIQQQ")

    def unpack_from(self, record: bytes, off: int) -> tuple[int, ...]:
        idx, count, cursor, nonce, clock = self._s.unpack_from(record, off)
        return idx, count, cursor, nonce, clock


_SHARD_HEADER = _ShardHeader()


def test_a_dropped_cursor_on_a_shard_ring_is_journaled_and_the_shard_asked_to_restate(tmp_path: Path) -> None:
    """In-process, with rings this test produces: the oracle reads book events, is dropped by the
    shard's ring, resumes at the head, journals a LOST record and sends L2_SNAPSHOT_REQUEST."""
    from engine.oracle.process import LOST, OracleOptions, OracleProcess
    from engine.ring import ConsumerRef, RingBuffer, RingRef
    from engine.wire.codec import encode
    from engine.wire.layout import ALL_MARKETS

    config = write_config(tmp_path)
    tag = f"hx-t-odrop-{os.getpid()}"
    events = RingBuffer.create(f"{tag}-ev", 1 << 10, consumers=1)
    into_shard = RingBuffer.create(f"{tag}-oin", 1 << 10, consumers=1)
    events.set_producer()
    reader = into_shard.consumer(0)
    options = OracleOptions(
        requests=(),
        shard_events=(ConsumerRef(RingRef(events.name, events.nonce), 0),),
        shards=(RingRef(into_shard.name, into_shard.nonce),),
        risk=(),
        events=None,
        config_path=str(config),
        state_dir=str(tmp_path / "oracle"),
        fsync="none",
    )
    proc = OracleProcess(options)
    try:
        fresh = reader.read(16, timeout_s=1)  # a fresh oracle asks every shard for its books
        assert fresh[0] == MsgType.L2_SNAPSHOT_REQUEST
        events.publish(encode(MsgType.L2_DELTA, BTC_PERP, seq=1, price_ticks=640_000, size_lots=3, side=0))
        assert proc._read_input(0, proc.consumers[0])
        assert proc.engine.state["books"][BTC_PERP][0] == {640_000: 3}
        assert events.drop_consumer(0)
        assert proc._read_input(0, proc.consumers[0])  # learns it was dropped
        assert proc.engine.state["books"][BTC_PERP] == ({}, {})
        request = decode(reader.read(16, timeout_s=1), 0)
        assert (request["msg_type"], request["market_id"]) == (MsgType.L2_SNAPSHOT_REQUEST, ALL_MARKETS)
        headers = [
            ORACLE_HEADER.unpack_from(r, 0)[0]
            for _s, r in JournalReader(tmp_path / "oracle" / "journal").replay(1)
        ]
        assert headers.count(LOST) == 2  # the fresh start's, and the drop's
        events.publish(encode(MsgType.L2_DELTA, BTC_PERP, seq=2, price_ticks=641_000, size_lots=1, side=1))
        assert proc._read_input(0, proc.consumers[0])  # reading again from the head
        assert proc.engine.state["books"][BTC_PERP][1] == {641_000: 1}
    finally:
        proc.stop_requested = True
        proc.write_snapshot()
        proc.close()
        reader.close()
        events.close()
        into_shard.close()
