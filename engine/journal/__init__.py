"""Journal and durability: append-only checksummed segments, group commit, replay, snapshots.

Recovery pattern: ``SnapshotStore(d).latest_valid()`` gives (S, state); then
``JournalReader(j).replay(S + 1)`` gives every record after it. See ``journal_writer`` for the
durability contract (a record is OS-durable once ``commit()`` returns).
"""

from engine.journal.journal_error import (
    HeaderMismatch,
    JournalCorruption,
    JournalError,
    JournalLocked,
    NotAJournal,
    UnsupportedVersion,
)
from engine.journal.journal_reader import JournalReader
from engine.journal.journal_writer import FSYNC_POLICIES, JournalWriter
from engine.journal.snapshot_store import SnapshotStore

__all__ = [
    "FSYNC_POLICIES",
    "HeaderMismatch",
    "JournalCorruption",
    "JournalError",
    "JournalLocked",
    "JournalReader",
    "JournalWriter",
    "NotAJournal",
    "SnapshotStore",
    "UnsupportedVersion",
]
