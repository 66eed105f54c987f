"""hypothesis: random payload sizes, commit boundaries and segment sizes round-trip; replay from
any seq is exactly the suffix; a cut anywhere in the last segment is a torn tail that recovery
truncates; a flipped byte before the last record is always reported at its record."""

from __future__ import annotations

import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.journal import JournalCorruption, JournalReader, JournalWriter
from engine.journal.record import RECORD_HEADER_BYTES
from engine.journal.segment import SEGMENT_HEADER_BYTES

SETTINGS = settings(max_examples=60, deadline=None)

# (payload size, commit after it)
ops = st.lists(st.tuples(st.integers(0, 300), st.booleans()), min_size=1, max_size=120)
segment_sizes = st.sampled_from([64, 300, 1000, 1 << 20])


def payload_for(seq: int, size: int) -> bytes:
    return bytes((seq * 31 + i) & 0xFF for i in range(size))


def write(directory: str, plan: list[tuple[int, bool]], segment_bytes: int, first_seq: int = 1) -> list:
    expected = []
    with JournalWriter(
        directory, fsync_policy="none", segment_bytes=segment_bytes, first_seq=first_seq
    ) as writer:
        for size, commit in plan:
            seq = writer.next_seq
            payload = payload_for(seq, size)
            assert writer.append(payload) == seq
            expected.append((seq, payload))
            if commit:
                writer.commit()
    return expected


@SETTINGS
@given(plan=ops, segment_bytes=segment_sizes, first_seq=st.integers(0, 2**40), data=st.data())
def test_round_trip_and_suffix(plan, segment_bytes, first_seq, data) -> None:
    with tempfile.TemporaryDirectory() as directory:
        expected = write(directory, plan, segment_bytes, first_seq)
        reader = JournalReader(directory)
        assert list(reader.replay(0)) == expected
        k = data.draw(st.integers(first_seq - 2, first_seq + len(plan) + 2), label="from_seq")
        assert list(reader.replay(k)) == [(seq, p) for seq, p in expected if seq >= k]
        assert reader.torn_tail_at is None


@SETTINGS
@given(plan=ops, segment_bytes=segment_sizes, data=st.data())
def test_cut_anywhere_in_last_segment_is_torn_tail(plan, segment_bytes, data) -> None:
    with tempfile.TemporaryDirectory() as directory:
        expected = write(directory, plan, segment_bytes)
        last = os.path.join(directory, sorted(os.listdir(directory))[-1])
        size = os.path.getsize(last)
        cut = data.draw(st.integers(SEGMENT_HEADER_BYTES, size), label="cut")
        os.truncate(last, cut)
        got = list(JournalReader(directory).replay())
        assert got == expected[: len(got)]  # a prefix, intact
        lost = expected[len(got) :]
        if lost:  # only records of the last segment can be lost
            assert int(os.path.basename(last)[:20]) <= lost[0][0]
        with JournalWriter(directory, fsync_policy="none", segment_bytes=segment_bytes) as writer:
            assert writer.next_seq == len(got) + 1
            writer.append(b"after recovery")
        again = list(JournalReader(directory).replay())
        assert again == got + [(len(got) + 1, b"after recovery")]


@SETTINGS
@given(sizes=st.lists(st.integers(0, 200), min_size=2, max_size=40), data=st.data())
def test_flipped_byte_before_the_last_record_is_reported(sizes, data) -> None:
    with tempfile.TemporaryDirectory() as directory:
        write(directory, [(size, True) for size in sizes], 1 << 20)
        path = os.path.join(directory, os.listdir(directory)[0])
        index = data.draw(st.integers(0, len(sizes) - 2), label="record")
        start = SEGMENT_HEADER_BYTES + sum(RECORD_HEADER_BYTES + s for s in sizes[:index])
        pos = data.draw(st.integers(start, start + RECORD_HEADER_BYTES + sizes[index] - 1), label="byte")
        bit = data.draw(st.integers(0, 7), label="bit")
        with open(path, "r+b") as f:
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ (1 << bit)]))
        returned = []
        try:
            for seq, payload in JournalReader(directory).replay():
                returned.append(seq)
                assert payload == payload_for(seq, sizes[seq - 1])
        except JournalCorruption as exc:
            assert exc.path == path and exc.offset == start
            assert returned == list(range(1, index + 1))
        else:
            raise AssertionError(f"flip at {pos} (record {index + 1}) was not reported")
