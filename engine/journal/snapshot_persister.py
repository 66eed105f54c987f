"""Making a stage's snapshots durable, in order with its journal, without stalling its loop.

A stage captures its state between records (cheap: a few milliseconds); making it durable - fsync
the journal up to that record, then write, fsync and rename the snapshot file, then prune old ones
- costs tens of milliseconds on this disk. For the periodic snapshots that happens on a thread while
the stage goes on (a synchronous one stalls every order behind it: it was the p99 of the round trip
with risk in the path); an operator's or a stopping stage's snapshot is synchronous. The order
(journal durable first) keeps "a snapshot on disk implies its journal prefix on disk". A snapshot
still being written when the next periodic one is due makes that one be skipped.
"""

from __future__ import annotations

import threading

from engine.journal.journal_writer import JournalWriter
from engine.journal.snapshot_store import SnapshotStore


class SnapshotPersister:
    def __init__(self, snapshots: SnapshotStore, name: str, keep: int = 2) -> None:
        self.snapshots = snapshots
        self.name = name
        self.keep = keep
        self._thread: threading.Thread | None = None

    def persist(self, journal: JournalWriter, seq: int, blob: bytes, background: bool = False) -> bool:
        """Make snapshot ``blob`` (state at journal record ``seq``) durable; False when a background
        one was skipped because the previous one is still being written."""
        if background:
            if self._thread is not None and self._thread.is_alive():
                return False
            journal.commit()
            self._thread = threading.Thread(
                target=self._write,
                args=(journal, seq, blob, False),
                name=f"{self.name}-snapshot",
                daemon=True,
            )
            self._thread.start()
            return True
        self.wait()
        journal.flush()
        self._write(journal, seq, blob, True)
        return True

    def _write(self, journal: JournalWriter, seq: int, blob: bytes, journal_synced: bool) -> None:
        if not journal_synced:
            journal.sync()
        self.snapshots.write(seq, blob)
        self.snapshots.prune(keep=self.keep)

    def wait(self) -> None:
        """Until the snapshot being written in the background (if any) is on disk."""
        thread = self._thread
        if thread is not None:
            thread.join()
            self._thread = None
