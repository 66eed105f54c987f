"""SnapshotPersister: the journal is durable before the snapshot, background writes do not block,
one still being written makes the next periodic one be skipped, stop waits for it."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.journal.journal_writer import JournalWriter
from engine.journal.snapshot_persister import SnapshotPersister
from engine.journal.snapshot_store import SnapshotStore


class _GatedStore(SnapshotStore):
    """A store whose writes wait for a gate (a slow disk) and record the journal's state then."""

    def __init__(self, directory: Path, journal: JournalWriter) -> None:
        super().__init__(directory)
        self.gate = threading.Event()
        self.journal = journal
        self.synced_at_write: list[int] = []

    def write(self, seq: int, payload: bytes) -> str:
        self.gate.wait(10)
        self.synced_at_write.append(self.journal.sync())
        return super().write(seq, payload)


def test_background_snapshot_is_written_after_the_journal_and_skips_while_busy(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path / "journal", fsync_policy="none")
    store = _GatedStore(tmp_path / "snapshots", journal)
    persister = SnapshotPersister(store, "test")
    for i in range(3):
        journal.append(b"record %d" % i)
    assert persister.persist(journal, 3, b"state at 3", background=True)
    assert not persister.persist(journal, 4, b"state at 4", background=True)  # the first is still writing
    assert store.latest_valid() is None
    store.gate.set()
    persister.wait()
    assert store.latest_valid() == (3, b"state at 3")
    assert store.synced_at_write == [3]  # every record up to the snapshot was durable first
    journal.append(b"record 3")
    assert persister.persist(journal, 4, b"state at 4")  # synchronous: on disk on return
    assert store.latest_valid() == (4, b"state at 4")
    for seq in (5, 6, 7):
        persister.persist(journal, seq, b"state %d" % seq)
    assert store.list_seqs() == [6, 7]  # the older ones pruned
    journal.close()
