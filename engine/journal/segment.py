"""A segment: one append-only file of consecutive records, named by its first sequence number.

File layout (little-endian)::

    header (32 bytes): 8s magic b"HXJRNL01" | u32 format version | u32 header bytes (32)
                       | u64 first seq | 4x pad | u32 crc32c(header[0:28])
    records back to back (see ``record``), the first one carrying ``first_seq``

Invariants:

* the file is named ``{first_seq:020d}.seg`` and its header says the same ``first_seq``;
* a segment is created atomically (header written to a temporary file, renamed into place), so a
  segment file always has a whole header;
* records inside a segment are consecutive and checksummed. A bad record with no valid record
  after it is a torn tail (a write cut short by a crash); a bad record followed by valid data is
  corruption and raises ``JournalCorruption``; nothing bad is ever returned.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator

from crc32c import crc32c

from engine.journal.journal_error import (
    HeaderMismatch,
    JournalCorruption,
    NotAJournal,
    UnsupportedVersion,
)
from engine.journal.record import RECORD_HEADER, RECORD_HEADER_BYTES, find_valid_record

SEGMENT_MAGIC = b"HXJRNL01"
SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sIIQ4xI")
SEGMENT_HEADER_BYTES = SEGMENT_HEADER.size  # 32
SEGMENT_SUFFIX = ".seg"
_NAME = re.compile(r"^(\d{20})\.seg$")
RESYNC_SEQS = 64  # after a bad record, look this many seqs ahead for valid data


def get_segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def pack_segment_header(first_seq: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, SEGMENT_HEADER_BYTES, first_seq, 0)
    return head[:-4] + struct.pack("<I", crc32c(head[:-4]))


def list_segments(directory: str) -> list[tuple[int, str]]:
    """(first_seq, path) of every segment in ``directory``, ascending by first_seq.

    Raises ``NotAJournal`` if the directory is missing or not a directory, or holds a ``.seg`` file
    whose name is not a segment name. Other files (temporaries, a lock) are ignored.
    """
    if not os.path.exists(directory):
        raise NotAJournal(f"{directory}: journal directory does not exist")
    if not os.path.isdir(directory):
        raise NotAJournal(f"{directory}: not a journal: not a directory")
    found = []
    for name in os.listdir(directory):
        if not name.endswith(SEGMENT_SUFFIX):
            continue
        match = _NAME.match(name)
        if match is None:
            raise NotAJournal(f"{os.path.join(directory, name)}: not a segment name (want 20 digits + .seg)")
        found.append((int(match.group(1)), os.path.join(directory, name)))
    found.sort()
    return found


def check_segment_header(path: str, data: bytes) -> int:
    """Validate the header at the start of ``data`` (the file's bytes); return its first_seq."""
    if len(data) < len(SEGMENT_MAGIC) or data[: len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
        raise NotAJournal(
            f"{path}: not a journal segment: bad magic {bytes(data[:8])!r}, want {SEGMENT_MAGIC!r}"
        )
    if len(data) < SEGMENT_HEADER_BYTES:
        raise JournalCorruption(
            path, 0, f"segment header cut short ({len(data)} of {SEGMENT_HEADER_BYTES} bytes)"
        )
    first_seq: int
    _, version, header_bytes, first_seq, crc = SEGMENT_HEADER.unpack_from(data, 0)
    if crc32c(bytes(data[: SEGMENT_HEADER_BYTES - 4])) != crc:
        if version != SEGMENT_VERSION:
            raise UnsupportedVersion(
                f"{path}: segment format version {version}, this code reads {SEGMENT_VERSION}"
            )
        raise JournalCorruption(path, 0, "segment header checksum mismatch")
    if version != SEGMENT_VERSION:
        raise UnsupportedVersion(
            f"{path}: segment format version {version}, this code reads {SEGMENT_VERSION}"
        )
    if header_bytes != SEGMENT_HEADER_BYTES:
        raise JournalCorruption(path, 0, f"segment header size {header_bytes}, want {SEGMENT_HEADER_BYTES}")
    match = _NAME.match(os.path.basename(path))
    if match is not None and int(match.group(1)) != first_seq:
        raise HeaderMismatch(
            f"{path}: file name says first seq {int(match.group(1))}, header says {first_seq}"
        )
    return first_seq


class Segment:
    """A segment file read whole into memory and scanned record by record.

    After ``records()`` is exhausted: ``next_seq`` is the seq after the last good record,
    ``end_offset`` the byte just past it, and ``torn_tail_at`` the offset of a torn tail (or None).
    ``is_last`` says whether a torn tail is allowed (only the newest segment may have one).
    """

    def __init__(self, path: str, is_last: bool) -> None:
        with open(path, "rb") as f:
            self.data = f.read()
        self.path = path
        self.is_last = is_last
        self.first_seq = check_segment_header(path, self.data)
        self.next_seq = self.first_seq
        self.end_offset = SEGMENT_HEADER_BYTES
        self.torn_tail_at: int | None = None

    def records(self, from_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield (seq, payload) of every good record with seq >= from_seq, in order."""
        data = self.data
        view = memoryview(data)
        end = len(data)
        off = SEGMENT_HEADER_BYTES
        seq = self.first_seq
        unpack = RECORD_HEADER.unpack_from
        try:
            while end - off >= RECORD_HEADER_BYTES:
                n, crc, rseq = unpack(data, off)
                stop = off + RECORD_HEADER_BYTES + n
                if stop > end:
                    self._on_bad_record(off, seq, f"payload length {n} runs past end of file ({end})")
                    return
                if crc32c(view[off + 8 : stop]) != crc:
                    self._on_bad_record(off, seq, f"record checksum mismatch (seq field {rseq}, want {seq})")
                    return
                if rseq != seq:
                    raise JournalCorruption(self.path, off, f"seq {rseq} where {seq} was expected")
                if seq >= from_seq:
                    yield seq, data[off + RECORD_HEADER_BYTES : stop]
                seq += 1
                off = stop
                self.next_seq = seq
                self.end_offset = off
            if off != end:
                self._on_bad_record(
                    off, seq, f"record header cut short ({end - off} of {RECORD_HEADER_BYTES} bytes)"
                )
        finally:
            view.release()

    def scan(self) -> Segment:
        """Run through every record (validating it) without keeping payloads; return self."""
        for _ in self.records(1 << 64):
            pass
        return self

    def _on_bad_record(self, off: int, seq: int, what: str) -> None:
        """A bad record at ``off``: torn tail if nothing valid follows in the last segment, else raise."""
        valid_after = find_valid_record(self.data, off, range(seq + 1, seq + 1 + RESYNC_SEQS))
        if valid_after != -1:
            raise JournalCorruption(
                self.path, off, f"{what}; valid record found after it at offset {valid_after}"
            )
        if not self.is_last:
            raise JournalCorruption(
                self.path, off, f"{what}; segment is not the last one, so not a torn tail"
            )
        self.torn_tail_at = off
