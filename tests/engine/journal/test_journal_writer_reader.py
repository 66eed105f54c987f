"""JournalWriter and JournalReader on real files: round trips, rollover, replay from any seq,
fsync policies, recovery on reopen, the directory lock."""

from __future__ import annotations

import os

import pytest

from engine.journal import JournalLocked, JournalReader, JournalWriter
from engine.journal.segment import SEGMENT_HEADER_BYTES, get_segment_name

PAYLOAD_64 = bytes(range(64))


def payload_for(seq: int) -> bytes:
    """Deterministic payload of varying size (0..99 bytes) derived from seq."""
    n = seq * 37 % 100
    return (seq.to_bytes(8, "little") * (n // 8 + 1))[:n]


def write_journal(directory, last_seq: int, commit_every: int = 7, **kwargs) -> None:
    with JournalWriter(directory, fsync_policy="none", **kwargs) as writer:
        for seq in range(writer.next_seq, last_seq + 1):
            assert writer.append(payload_for(seq)) == seq
            if seq % commit_every == 0:
                assert writer.commit() == seq


def test_round_trip_single_segment(tmp_path) -> None:
    write_journal(tmp_path, 500)
    assert os.listdir(tmp_path) == [get_segment_name(1)]
    got = list(JournalReader(tmp_path).replay())
    assert got == [(seq, payload_for(seq)) for seq in range(1, 501)]


def test_empty_journal(tmp_path) -> None:
    JournalWriter(tmp_path).close()
    reader = JournalReader(tmp_path)
    assert list(reader.replay()) == []
    assert reader.get_last_seq() is None
    assert reader.torn_tail_at is None


def test_append_many_and_commit_return_last_seq(tmp_path) -> None:
    with JournalWriter(tmp_path, fsync_policy="none") as writer:
        assert writer.append_many([PAYLOAD_64] * 10) == 10
        assert writer.committed_seq == 0
        assert writer.commit() == 10
        assert writer.append(b"x") == 11
        assert writer.append_many([]) == 11
        assert writer.commit() == 11
        assert writer.commit() == 11  # nothing buffered
    assert [seq for seq, _ in JournalReader(tmp_path).replay()] == list(range(1, 12))


def test_commit_makes_records_visible_before_close(tmp_path) -> None:
    writer = JournalWriter(tmp_path, fsync_policy="none")
    try:
        writer.append_many([PAYLOAD_64] * 3)
        assert list(JournalReader(tmp_path).replay()) == []
        writer.commit()
        assert list(JournalReader(tmp_path).replay()) == [(1, PAYLOAD_64), (2, PAYLOAD_64), (3, PAYLOAD_64)]
    finally:
        writer.close()


def test_payload_is_copied_at_append(tmp_path) -> None:
    buf = bytearray(PAYLOAD_64)
    with JournalWriter(tmp_path, fsync_policy="none") as writer:
        writer.append(memoryview(buf))
        buf[:] = bytes(64)  # the caller reuses its slot before the commit
    assert list(JournalReader(tmp_path).replay()) == [(1, PAYLOAD_64)]


def test_rollover_names_segments_by_first_seq_and_bounds_their_size(tmp_path) -> None:
    segment_bytes = 4096
    with JournalWriter(tmp_path, fsync_policy="batch", segment_bytes=segment_bytes) as writer:
        for seq in range(1, 1001):
            writer.append(PAYLOAD_64)
            if seq % 10 == 0:
                writer.commit()
    names = sorted(os.listdir(tmp_path))
    assert len(names) > 10
    firsts = [int(name[:20]) for name in names]
    assert firsts[0] == 1 and all((f - 1) % 10 == 0 for f in firsts)  # a commit never splits
    assert all(os.path.getsize(tmp_path / name) <= segment_bytes for name in names)
    assert [seq for seq, _ in JournalReader(tmp_path).replay()] == list(range(1, 1001))


def test_oversized_commit_goes_whole_into_one_segment(tmp_path) -> None:
    with JournalWriter(tmp_path, fsync_policy="none", segment_bytes=256) as writer:
        writer.append(b"a")
        writer.commit()
        writer.append_many([PAYLOAD_64] * 20)  # 1600 bytes, more than a segment
        writer.commit()
        writer.append(b"b")
        writer.commit()
    assert sorted(os.listdir(tmp_path)) == [get_segment_name(1), get_segment_name(2), get_segment_name(22)]
    assert [seq for seq, _ in JournalReader(tmp_path).replay()] == list(range(1, 23))


@pytest.mark.parametrize("segment_bytes", [300, 4096, 1 << 20])
def test_replay_from_any_seq_returns_exactly_the_suffix(tmp_path, segment_bytes: int) -> None:
    write_journal(tmp_path, 300, segment_bytes=segment_bytes)
    reader = JournalReader(tmp_path)
    for from_seq in [0, 1, 2, 7, 8, 9, 150, 299, 300, 301, 10_000]:
        got = list(reader.replay(from_seq))
        assert got == [(seq, payload_for(seq)) for seq in range(max(from_seq, 1), 301)], from_seq


def test_reopen_continues_with_next_seq(tmp_path) -> None:
    write_journal(tmp_path, 100, segment_bytes=1000)
    write_journal(tmp_path, 250, segment_bytes=1000)
    assert list(JournalReader(tmp_path).replay()) == [(seq, payload_for(seq)) for seq in range(1, 251)]
    assert JournalReader(tmp_path).get_last_seq() == 250


def test_first_seq_for_a_new_journal(tmp_path) -> None:
    with JournalWriter(tmp_path, fsync_policy="none", first_seq=1000) as writer:
        assert writer.committed_seq == 999
        assert writer.append(b"a") == 1000
    assert os.listdir(tmp_path) == [get_segment_name(1000)]
    assert list(JournalReader(tmp_path).replay()) == [(1000, b"a")]
    with JournalWriter(tmp_path, fsync_policy="none", first_seq=5) as writer:  # existing journal wins
        assert writer.next_seq == 1001


def test_close_is_idempotent_and_commits(tmp_path) -> None:
    writer = JournalWriter(tmp_path, fsync_policy="none")
    writer.append(b"a")
    writer.close()
    writer.close()
    assert list(JournalReader(tmp_path).replay()) == [(1, b"a")]


def test_second_writer_on_same_directory_is_refused(tmp_path) -> None:
    with JournalWriter(tmp_path):
        with pytest.raises(JournalLocked, match=str(tmp_path)):
            JournalWriter(tmp_path)
    JournalWriter(tmp_path).close()  # released on close


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="fsync_policy"):
        JournalWriter(tmp_path, fsync_policy="sometimes")
    with pytest.raises(ValueError, match="segment_bytes"):
        JournalWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES)


@pytest.fixture
def fsync_calls(monkeypatch):
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


def test_policy_always_fsyncs_every_commit(tmp_path, fsync_calls) -> None:
    with JournalWriter(tmp_path, fsync_policy="always") as writer:
        for _ in range(5):
            writer.append(PAYLOAD_64)
            writer.commit()
        assert len(fsync_calls) == 5
        writer.commit()  # nothing new: nothing to sync
        assert len(fsync_calls) == 5
    assert len(fsync_calls) == 5  # close: already clean


def test_policy_none_fsyncs_only_on_close(tmp_path, fsync_calls) -> None:
    writer = JournalWriter(tmp_path, fsync_policy="none")
    for _ in range(5):
        writer.append(PAYLOAD_64)
        writer.commit()
    assert fsync_calls == []
    writer.close()
    assert len(fsync_calls) == 1


def test_policy_batch_fsyncs_at_most_once_per_interval(tmp_path, fsync_calls) -> None:
    with JournalWriter(tmp_path, fsync_policy="batch", batch_interval_ms=60_000) as writer:
        for _ in range(5):
            writer.append(PAYLOAD_64)
            writer.commit()
        assert len(fsync_calls) == 1  # the first commit: no fsync for a minute before it
        writer.append(PAYLOAD_64)
        assert writer.flush() == 6
        assert len(fsync_calls) == 2  # flush always fsyncs
        writer.append(PAYLOAD_64)
    assert len(fsync_calls) == 3  # close always fsyncs


def test_policy_batch_with_elapsed_interval_fsyncs_even_an_empty_commit(tmp_path, fsync_calls) -> None:
    with JournalWriter(tmp_path, fsync_policy="batch", batch_interval_ms=0) as writer:
        writer.append(PAYLOAD_64)
        writer.commit()
        assert len(fsync_calls) == 1
        writer._last_fsync_ns = 0  # as if no fsync for a long time ...
        writer._dirty = True  # ... with data written since
        writer.commit()  # an idle loop's empty commit pays the due fsync
        assert len(fsync_calls) == 2


@pytest.mark.parametrize("policy", ["always", "batch", "none"])
def test_every_policy_round_trips_across_rollover(tmp_path, policy: str) -> None:
    with JournalWriter(tmp_path, fsync_policy=policy, segment_bytes=2048) as writer:
        for seq in range(1, 201):
            writer.append(payload_for(seq))
            if seq % 3 == 0:
                writer.commit()
    assert list(JournalReader(tmp_path).replay()) == [(seq, payload_for(seq)) for seq in range(1, 201)]


def test_background_sync_makes_records_durable_without_commit_waiting(tmp_path) -> None:
    """Under ``batch`` with the background syncer, durable_seq catches up with no further commits."""
    import time as _time

    from engine.journal import JournalReader as _Reader
    from engine.journal import JournalWriter as _Writer

    writer = _Writer(tmp_path / "j", fsync_policy="batch", batch_interval_ms=1)
    writer.start_background_sync()
    try:
        for i in range(100):
            writer.append(i.to_bytes(8, "little") * 8)
        last = writer.commit()
        deadline = _time.monotonic() + 10
        while writer.durable_seq < last and _time.monotonic() < deadline:
            _time.sleep(0.005)
        assert writer.durable_seq == last == 100
    finally:
        writer.close()
    assert [seq for seq, _ in _Reader(tmp_path / "j").replay()] == list(range(1, 101))


def test_sync_from_another_thread_makes_committed_records_durable(tmp_path, fsync_calls) -> None:
    """The shard's snapshot thread fsyncs while the owner keeps appending: durable_seq follows."""
    import threading

    with JournalWriter(tmp_path, fsync_policy="none") as writer:
        for _ in range(3):
            writer.append(PAYLOAD_64)
        writer.commit()
        assert writer.durable_seq < 3
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(writer.sync()))
        thread.start()
        writer.append(PAYLOAD_64)  # buffered, not committed: not covered by that sync
        thread.join()
        assert result == [3] and writer.durable_seq == 3 and len(fsync_calls) == 1


def test_ack_policy_fsyncs_soon_after_each_commit_from_its_own_thread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`ack`: commit never fsyncs itself; the background thread makes every commit durable, so a
    caller holding acknowledgements until durable_seq covers them is never stuck."""
    import time

    from engine.journal import JournalWriter

    w = JournalWriter(tmp_path / "j", fsync_policy="ack")
    w.start_background_sync()
    try:
        for _k in range(5):
            seq = w.append(b"x" * 64)
            w.commit()
            deadline = time.monotonic() + 10
            while w.durable_seq < seq:
                assert time.monotonic() < deadline, f"record {seq} never became durable"
                time.sleep(0.0005)
        assert w.durable_seq == 5
    finally:
        w.close()
