"""SnapshotStore: atomic writes, picking the newest valid snapshot, pruning, bad files."""

from __future__ import annotations

import os
import struct

import pytest

from engine.journal import (
    HeaderMismatch,
    JournalCorruption,
    JournalReader,
    JournalWriter,
    NotAJournal,
    SnapshotStore,
    UnsupportedVersion,
)


def test_write_then_read_back(tmp_path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(42, b"state at 42")
    assert os.path.basename(path) == f"snapshot-{42:020d}.snap"
    assert store.read(path) == (42, b"state at 42")
    assert store.latest_valid() == (42, b"state at 42")
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_empty_store(tmp_path) -> None:
    assert SnapshotStore(tmp_path / "new").latest_valid() is None


def test_empty_payload(tmp_path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(0, b"")
    assert store.latest_valid() == (0, b"")


def test_latest_valid_skips_and_reports_corrupted(tmp_path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(10, b"ten")
    store.write(20, b"twenty")
    bad = store.write(30, b"thirty")
    with open(bad, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"X")
    truncated = store.write(40, b"forty")
    os.truncate(truncated, 34)
    assert store.latest_valid() == (20, b"twenty")
    assert [path for path, _ in store.skipped] == [truncated, bad]
    assert "checksum" in store.skipped[1][1] and bad in store.skipped[1][1]


def test_read_bad_files(tmp_path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.get_path(7)
    with open(path, "wb") as f:
        f.write(b"not a snapshot at all")
    with pytest.raises(NotAJournal, match=f"{path}.*bad magic"):
        store.read(path)
    good = store.write(8, b"x" * 10)
    data = bytearray(open(good, "rb").read())
    data[8:12] = struct.pack("<I", 9)
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(UnsupportedVersion, match=f"{path}.*version 9"):
        store.read(path)
    with open(path, "wb") as f:
        f.write(open(good, "rb").read())  # a valid seq-8 snapshot under the name for seq 7
    with pytest.raises(HeaderMismatch, match=f"{path}.*name says seq 7, header says 8"):
        store.read(path)
    with open(path, "wb") as f:
        f.write(open(good, "rb").read()[:-3])
    with pytest.raises(JournalCorruption, match=f"{path}.*says 10 payload bytes, file holds 7"):
        store.read(path)


def test_not_a_directory(tmp_path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"")
    with pytest.raises(NotAJournal, match="not a directory"):
        SnapshotStore(path)


def test_prune_keeps_newest_valid(tmp_path) -> None:
    store = SnapshotStore(tmp_path)
    for seq in (1, 2, 3, 4, 5):
        store.write(seq, f"s{seq}".encode())
    with open(store.get_path(5), "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"!")
    open(store.get_path(9) + ".123.tmp", "wb").close()  # a writer killed mid-write
    removed = store.prune(keep=2)
    assert sorted(os.path.basename(p) for p in removed) == [
        f"snapshot-{1:020d}.snap",
        f"snapshot-{2:020d}.snap",
        f"snapshot-{9:020d}.snap.123.tmp",
    ]
    assert store.list_seqs() == [3, 4, 5]  # 4 and 3 are the two newest valid; corrupt 5 left to inspect
    assert store.latest_valid() == (4, b"s4")
    with pytest.raises(ValueError):
        store.prune(keep=0)


def test_recovery_pattern_snapshot_then_replay(tmp_path) -> None:
    """State = sum of record values; snapshot at 60, replay the rest: same state as a full replay."""
    journal, snapshots = tmp_path / "journal", SnapshotStore(tmp_path / "snapshots")
    total = 0
    with JournalWriter(journal, fsync_policy="none", segment_bytes=1024) as writer:
        for seq in range(1, 101):
            writer.append(seq.to_bytes(8, "little"))
            writer.commit()
            total += seq
            if seq == 60:
                snapshots.write(seq, total.to_bytes(8, "little"))
    snap_seq, state = snapshots.latest_valid()
    recovered = int.from_bytes(state, "little")
    for seq, payload in JournalReader(journal).replay(snap_seq + 1):
        assert seq > snap_seq
        recovered += int.from_bytes(payload, "little")
    assert recovered == total
