"""Files that are not journals, wrong versions, mismatched headers, corruption and torn tails."""

from __future__ import annotations

import os
import struct

import pytest
from crc32c import crc32c

from engine.journal import (
    HeaderMismatch,
    JournalCorruption,
    JournalError,
    JournalReader,
    JournalWriter,
    NotAJournal,
    UnsupportedVersion,
)
from engine.journal.record import RECORD_HEADER_BYTES
from engine.journal.segment import SEGMENT_HEADER_BYTES, get_segment_name, pack_segment_header

PAYLOAD_64 = bytes(range(64))
RECORD_BYTES = RECORD_HEADER_BYTES + len(PAYLOAD_64)


def write_records(directory, count: int, **kwargs) -> str:
    """``count`` 64-byte records in one segment; return the segment path."""
    with JournalWriter(directory, fsync_policy="none", **kwargs) as writer:
        for _ in range(count):
            writer.append(PAYLOAD_64)
            writer.commit()
        return writer.segment_path


def record_offset(index: int) -> int:
    return SEGMENT_HEADER_BYTES + index * RECORD_BYTES


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def test_every_error_is_a_journal_error() -> None:
    for cls in (NotAJournal, UnsupportedVersion, HeaderMismatch, JournalCorruption):
        assert issubclass(cls, JournalError)


def test_missing_directory(tmp_path) -> None:
    with pytest.raises(NotAJournal, match="does not exist"):
        JournalReader(tmp_path / "nope")


def test_a_file_is_not_a_journal_directory(tmp_path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"hello")
    with pytest.raises(NotAJournal, match=f"{path}.*not a directory"):
        JournalReader(path)
    with pytest.raises(NotAJournal, match=f"{path}.*not a directory"):
        JournalWriter(path)


def test_segment_with_wrong_magic(tmp_path) -> None:
    path = tmp_path / get_segment_name(1)
    path.write_bytes(b"GARBAGE!" + bytes(100))
    with pytest.raises(NotAJournal, match=f"{path}.*bad magic"):
        list(JournalReader(tmp_path).replay())
    with pytest.raises(NotAJournal, match=f"{path}.*bad magic"):
        JournalWriter(tmp_path)


def test_empty_segment_file_is_not_a_journal(tmp_path) -> None:
    path = tmp_path / get_segment_name(1)
    path.write_bytes(b"")
    with pytest.raises(NotAJournal, match=str(path)):
        list(JournalReader(tmp_path).replay())


def test_segment_with_header_cut_short(tmp_path) -> None:
    path = tmp_path / get_segment_name(1)
    path.write_bytes(pack_segment_header(1)[:20])
    with pytest.raises(JournalCorruption, match=f"{path}.*offset 0.*cut short"):
        list(JournalReader(tmp_path).replay())


def test_unexpected_segment_file_name(tmp_path) -> None:
    (tmp_path / "1.seg").write_bytes(pack_segment_header(1))
    with pytest.raises(NotAJournal, match="1.seg.*not a segment name"):
        JournalReader(tmp_path)


def test_other_files_are_ignored(tmp_path) -> None:
    write_records(tmp_path, 3)
    (tmp_path / "README").write_text("notes")
    assert len(list(JournalReader(tmp_path).replay())) == 3


def _header_with(version: int, first_seq: int) -> bytes:
    head = struct.pack("<8sIIQ4x", b"HXJRNL01", version, SEGMENT_HEADER_BYTES, first_seq)
    return head + struct.pack("<I", crc32c(head))


def test_segment_of_another_format_version(tmp_path) -> None:
    path = tmp_path / get_segment_name(1)
    path.write_bytes(_header_with(2, 1))
    with pytest.raises(UnsupportedVersion, match=f"{path}.*version 2.*reads 1"):
        list(JournalReader(tmp_path).replay())
    with pytest.raises(UnsupportedVersion, match=str(path)):
        JournalWriter(tmp_path)


def test_segment_header_first_seq_disagrees_with_file_name(tmp_path) -> None:
    path = tmp_path / get_segment_name(5)
    path.write_bytes(_header_with(1, 7))
    with pytest.raises(HeaderMismatch, match=f"{path}.*name says first seq 5, header says 7"):
        list(JournalReader(tmp_path).replay())
    with pytest.raises(HeaderMismatch, match=str(path)):
        JournalWriter(tmp_path)


def test_segment_header_checksum(tmp_path) -> None:
    path = write_records(tmp_path, 3)
    flip_byte(path, 16)  # inside first_seq
    with pytest.raises(JournalCorruption, match=f"{path}.*offset 0.*header checksum"):
        list(JournalReader(tmp_path).replay())


@pytest.mark.parametrize("field_offset", [0, 2, 4, 8, 15, 16, 40, RECORD_BYTES - 1])
def test_flipped_byte_in_the_middle_raises_with_path_and_offset(tmp_path, field_offset: int) -> None:
    path = write_records(tmp_path, 20)
    bad = record_offset(9)
    flip_byte(path, bad + field_offset)
    reader = JournalReader(tmp_path)
    seen = []
    with pytest.raises(JournalCorruption) as info:
        for seq, payload in reader.replay():
            assert payload == PAYLOAD_64  # nothing corrupt is ever returned
            seen.append(seq)
    assert seen == list(range(1, 10))  # records before the damage, nothing after it
    assert info.value.path == path and info.value.offset == bad
    assert f"{path}: corrupt at byte offset {bad}" in str(info.value)
    size = os.path.getsize(path)
    with pytest.raises(JournalCorruption, match=f"offset {bad}"):
        JournalWriter(tmp_path)  # recovery refuses too ...
    assert os.path.getsize(path) == size  # ... and truncates nothing


def test_replay_from_past_the_damage_still_raises(tmp_path) -> None:
    path = write_records(tmp_path, 20)
    flip_byte(path, record_offset(3) + 30)
    with pytest.raises(JournalCorruption, match=f"offset {record_offset(3)}"):
        list(JournalReader(tmp_path).replay(15))


def test_valid_checksum_but_wrong_seq_is_corruption(tmp_path) -> None:
    path = write_records(tmp_path, 5)
    off = record_offset(2)
    with open(path, "r+b") as f:  # rewrite record 3 as a well-formed record claiming seq 9
        f.seek(off)
        f.write(struct.pack("<IIQ", 64, crc32c(PAYLOAD_64, crc32c(struct.pack("<Q", 9))), 9) + PAYLOAD_64)
    with pytest.raises(JournalCorruption, match=f"offset {off}.*seq 9 where 3 was expected"):
        list(JournalReader(tmp_path).replay())


@pytest.mark.parametrize(
    "cut", [1, RECORD_HEADER_BYTES - 1, RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + 1, RECORD_BYTES - 1]
)
def test_truncated_last_record_is_a_torn_tail(tmp_path, cut: int) -> None:
    path = write_records(tmp_path, 10)
    os.truncate(path, record_offset(9) + cut)
    reader = JournalReader(tmp_path)
    assert [seq for seq, _ in reader.replay()] == list(range(1, 10))
    assert reader.torn_tail_at == record_offset(9)
    assert reader.torn_tail_path == path
    with JournalWriter(tmp_path, fsync_policy="none") as writer:
        assert writer.torn_tail_truncated == (path, record_offset(9))
        assert os.path.getsize(path) == record_offset(9)
        assert writer.append(b"next") == 10
    reader = JournalReader(tmp_path)
    assert [seq for seq, _ in reader.replay()][-2:] == [9, 10]
    assert reader.torn_tail_at is None


def test_bad_crc_in_the_last_record_is_a_torn_tail(tmp_path) -> None:
    path = write_records(tmp_path, 10)
    flip_byte(path, record_offset(9) + 50)
    reader = JournalReader(tmp_path)
    assert [seq for seq, _ in reader.replay()] == list(range(1, 10))
    assert reader.torn_tail_at == record_offset(9)


def test_zeroed_tail_is_a_torn_tail(tmp_path) -> None:
    path = write_records(tmp_path, 10)
    with open(path, "ab") as f:
        f.write(bytes(4096))  # a crash can leave a zero-filled extent after the last write
    reader = JournalReader(tmp_path)
    assert [seq for seq, _ in reader.replay()] == list(range(1, 11))
    assert reader.torn_tail_at == record_offset(10)
    with JournalWriter(tmp_path, fsync_policy="none") as writer:
        assert writer.next_seq == 11
    assert os.path.getsize(path) == record_offset(10)


def test_torn_tail_in_an_older_segment_is_corruption(tmp_path) -> None:
    with JournalWriter(tmp_path, fsync_policy="none", segment_bytes=500) as writer:
        for _ in range(12):
            writer.append(PAYLOAD_64)
            writer.commit()
    first = str(tmp_path / get_segment_name(1))
    os.truncate(first, os.path.getsize(first) - 5)
    with pytest.raises(JournalCorruption, match=f"{first}.*not the last"):
        list(JournalReader(tmp_path).replay())


def test_missing_segment_is_a_gap(tmp_path) -> None:
    with JournalWriter(tmp_path, fsync_policy="none", segment_bytes=500) as writer:
        for _ in range(20):
            writer.append(PAYLOAD_64)
            writer.commit()
    names = sorted(os.listdir(tmp_path))
    assert len(names) >= 3
    os.unlink(tmp_path / names[1])
    with pytest.raises(JournalCorruption, match=f"{names[2]}.*starts at seq"):
        list(JournalReader(tmp_path).replay())
