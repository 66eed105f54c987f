"""The journal reader: replay records in seq order across segments, from any seq.

Invariants: every record returned passed its checksum and is the seq right after the one before;
a torn tail at the end of the last segment ends the replay (``torn_tail_at`` says where); any other
bad record, a torn tail in an older segment, or a gap between segments raises ``JournalCorruption``.
The reader takes no lock and may run while a writer appends (it sees what was on disk when each
segment was opened).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator

from engine.journal.journal_error import JournalCorruption
from engine.journal.segment import SEGMENT_HEADER_BYTES, Segment, list_segments


class JournalReader:
    """Reads the journal in ``directory``; raises ``NotAJournal`` if it is not one."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        list_segments(self.directory)  # fail early on a path that is not a journal
        self.torn_tail_at: int | None = None
        """Byte offset of the torn tail in the last segment found by the latest replay, or None."""
        self.torn_tail_path: str | None = None

    def replay(self, from_seq: int = 1) -> Iterator[tuple[int, bytes]]:
        """Yield (seq, payload) for every record with seq >= ``from_seq``, in order.

        The first segment read is the last one whose first seq is <= ``from_seq`` (by file name);
        records before ``from_seq`` in it are validated and skipped. Seqs below the journal's
        first seq are simply absent: ``replay(1)`` on a journal starting at 1000 starts at 1000.
        """
        self.torn_tail_at = None
        self.torn_tail_path = None
        segments = list_segments(self.directory)
        if not segments:
            return
        firsts = [first for first, _ in segments]
        start = max(0, bisect.bisect_right(firsts, from_seq) - 1)
        expected: int | None = None
        for i in range(start, len(segments)):
            segment = Segment(segments[i][1], is_last=i == len(segments) - 1)
            if expected is not None and segment.first_seq != expected:
                raise JournalCorruption(
                    segment.path,
                    SEGMENT_HEADER_BYTES,
                    f"segment starts at seq {segment.first_seq} but the previous one ended before {expected}",
                )
            yield from segment.records(from_seq)
            expected = segment.next_seq
            if segment.torn_tail_at is not None:
                self.torn_tail_at = segment.torn_tail_at
                self.torn_tail_path = segment.path

    def get_last_seq(self) -> int | None:
        """Seq of the last good record (scans the last non-empty segment), or None if there is none."""
        segments = list_segments(self.directory)
        for i in range(len(segments) - 1, -1, -1):
            segment = Segment(segments[i][1], is_last=i == len(segments) - 1).scan()
            if segment.next_seq > segment.first_seq:
                return segment.next_seq - 1
        return None
