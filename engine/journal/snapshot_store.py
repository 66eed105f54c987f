"""Snapshots: whole-state images at a seq, written atomically, the newest valid one wins.

File ``snapshot-{seq:020d}.snap`` (little-endian)::

    header (32 bytes): 8s magic b"HXSNAP01" | u32 format version | u64 seq | u64 payload bytes
                       | u32 crc32c(header[0:28] + payload)
    payload

Invariants: a snapshot file is either absent or whole (written to a temporary file, fsynced,
renamed, directory fsynced); ``latest_valid`` never returns a snapshot that fails validation.
Recovery: load the latest snapshot at seq S, then replay the journal from S + 1.
"""

from __future__ import annotations

import logging
import os
import re
import struct

from crc32c import crc32c

from engine.journal.journal_error import (
    HeaderMismatch,
    JournalCorruption,
    JournalError,
    NotAJournal,
    UnsupportedVersion,
)

SNAPSHOT_MAGIC = b"HXSNAP01"
SNAPSHOT_VERSION = 1
SNAPSHOT_HEADER = struct.Struct("<8sIQQI")
SNAPSHOT_HEADER_BYTES = SNAPSHOT_HEADER.size  # 32
_NAME = re.compile(r"^snapshot-(\d{20})\.snap$")

log = logging.getLogger(__name__)


class SnapshotStore:
    """Snapshots in ``directory`` (created if missing).

    ``skipped`` lists (path, reason) for every invalid snapshot the latest ``latest_valid`` or
    ``prune`` call passed over; each is also logged as a warning.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise NotAJournal(f"{self.directory}: not a snapshot store: not a directory")
        os.makedirs(self.directory, exist_ok=True)
        self.skipped: list[tuple[str, str]] = []

    def get_path(self, seq: int) -> str:
        return os.path.join(self.directory, f"snapshot-{seq:020d}.snap")

    def write(self, seq: int, payload: bytes) -> str:
        """Write the snapshot taken after applying record ``seq``; return its path."""
        if seq < 0:
            raise ValueError(f"snapshot seq {seq} must be >= 0")
        head = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, seq, len(payload), 0)[:-4]
        crc = crc32c(payload, crc32c(head))
        path = self.get_path(seq)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            data = head + struct.pack("<I", crc) + bytes(payload)
            view = memoryview(data)
            written = 0
            while written < len(data):
                written += os.write(fd, view[written:])
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path

    def list_seqs(self) -> list[int]:
        """Seqs of the snapshot files present (valid or not), ascending."""
        seqs = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            if match is not None:
                seqs.append(int(match.group(1)))
        return sorted(seqs)

    def read(self, path: str) -> tuple[int, bytes]:
        """Validate one snapshot file; return (seq, payload) or raise a ``JournalError`` subclass."""
        with open(path, "rb") as f:
            data = f.read()
        if data[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC:
            raise NotAJournal(f"{path}: not a snapshot: bad magic {data[:8]!r}, want {SNAPSHOT_MAGIC!r}")
        if len(data) < SNAPSHOT_HEADER_BYTES:
            raise JournalCorruption(
                path, 0, f"snapshot header cut short ({len(data)} of {SNAPSHOT_HEADER_BYTES} bytes)"
            )
        _, version, seq, length, crc = SNAPSHOT_HEADER.unpack_from(data, 0)
        if version != SNAPSHOT_VERSION:
            raise UnsupportedVersion(
                f"{path}: snapshot format version {version}, this code reads {SNAPSHOT_VERSION}"
            )
        if SNAPSHOT_HEADER_BYTES + length != len(data):
            raise JournalCorruption(
                path,
                SNAPSHOT_HEADER_BYTES,
                f"snapshot says {length} payload bytes, file holds {len(data) - SNAPSHOT_HEADER_BYTES}",
            )
        payload = data[SNAPSHOT_HEADER_BYTES:]
        if crc32c(payload, crc32c(data[: SNAPSHOT_HEADER_BYTES - 4])) != crc:
            raise JournalCorruption(path, 0, "snapshot checksum mismatch")
        match = _NAME.match(os.path.basename(path))
        if match is not None and int(match.group(1)) != seq:
            raise HeaderMismatch(f"{path}: file name says seq {int(match.group(1))}, header says {seq}")
        return seq, payload

    def latest_valid(self) -> tuple[int, bytes] | None:
        """(seq, payload) of the newest snapshot that validates; invalid newer ones are skipped."""
        self.skipped = []
        for seq in reversed(self.list_seqs()):
            found = self._read_or_skip(self.get_path(seq))
            if found is not None:
                return found
        return None

    def prune(self, keep: int = 2) -> list[str]:
        """Delete snapshots older than the ``keep`` newest valid ones; return the deleted paths.

        Invalid snapshots newer than those are left in place for inspection (they are listed in
        ``skipped``); stale temporary files are deleted.
        """
        if keep < 1:
            raise ValueError(f"keep {keep} must be >= 1")
        self.skipped = []
        valid = 0
        removed = []
        for seq in reversed(self.list_seqs()):
            path = self.get_path(seq)
            if valid >= keep:
                os.unlink(path)
                removed.append(path)
            elif self._read_or_skip(path) is not None:
                valid += 1
        for name in os.listdir(self.directory):
            if name.startswith("snapshot-") and name.endswith(".tmp"):
                path = os.path.join(self.directory, name)
                os.unlink(path)
                removed.append(path)
        return removed

    def _read_or_skip(self, path: str) -> tuple[int, bytes] | None:
        try:
            return self.read(path)
        except JournalError as exc:
            self.skipped.append((path, str(exc)))
            log.warning("skipping invalid snapshot: %s", exc)
            return None
