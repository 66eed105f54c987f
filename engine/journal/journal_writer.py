"""The journal writer: buffer records, group-commit them with one ``os.write``, fsync per policy.

Contract: once ``commit()`` returns, every record appended before it is in the OS (written with
``os.write``) and survives kill -9 of this process; callers acknowledge to clients only after
``commit()``. Surviving a machine crash needs an fsync: ``always`` fsyncs every commit, ``batch``
fsyncs on a commit at least ``batch_interval_ms`` after the previous fsync (and ``flush()``/
``close()`` always fsync), ``none`` fsyncs only on ``close()``, ``ack`` fsyncs from a background
thread as soon as a commit has written something (group commit: whatever arrived meanwhile goes in
the same fsync) so that a caller can hold acknowledgements until ``durable_seq`` covers them.

Invariants:

* seqs are consecutive from the journal's first seq (``first_seq`` for a new journal, default 1);
* one writer per directory (an exclusive ``flock`` on the directory);
* opening an existing journal scans the last segment, truncates a torn tail and continues with the
  next seq; corruption in the middle of a segment raises ``JournalCorruption`` instead;
* a commit goes to one segment; when it would push a non-empty segment past ``segment_bytes``,
  a new segment named by the commit's first seq is created first (and the directory fsynced).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterable

from crc32c import crc32c

from engine.journal.journal_error import JournalError, JournalLocked, NotAJournal
from engine.journal.record import RECORD_HEADER, SEQ
from engine.journal.segment import (
    SEGMENT_HEADER_BYTES,
    Segment,
    get_segment_name,
    list_segments,
    pack_segment_header,
)

FSYNC_POLICIES = ("always", "batch", "none", "ack")
DEFAULT_SEGMENT_BYTES = 64 << 20


class JournalWriter:
    """Appends records to the journal in ``directory`` (created if missing).

    Parameters
    ----------
    directory : str
        Journal directory; holds ``{first_seq:020d}.seg`` files.
    fsync_policy : {"batch", "always", "none"}
    segment_bytes : int
        Roll to a new segment before a commit would make the current one larger than this.
    batch_interval_ms : float
        Minimum time between fsyncs under the ``batch`` policy.
    first_seq : int
        Seq of the first record of a new journal; ignored when the journal already has segments.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        fsync_policy: str = "batch",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        batch_interval_ms: float = 2.0,
        first_seq: int = 1,
    ) -> None:
        if fsync_policy not in FSYNC_POLICIES:
            raise ValueError(f"fsync_policy {fsync_policy!r}: want one of {FSYNC_POLICIES}")
        if segment_bytes <= SEGMENT_HEADER_BYTES:
            raise ValueError(
                f"segment_bytes {segment_bytes} must exceed the {SEGMENT_HEADER_BYTES}-byte header"
            )
        if first_seq < 0:
            raise ValueError(f"first_seq {first_seq} must be >= 0")
        self.directory = os.fspath(directory)
        self.fsync_policy = fsync_policy
        self.segment_bytes = segment_bytes
        self._fsync_interval_ns = int(batch_interval_ms * 1_000_000)
        self._buf = bytearray()
        self._next_seq: int = first_seq
        self._committed_seq: int = first_seq - 1
        self._segment_path = ""
        self._segment_used = 0  # bytes in the current segment file
        self._fd = -1
        self._dir_fd = -1
        self._dirty = False  # written since the last fsync
        self._last_fsync_ns = 0
        self._durable_seq = first_seq - 1
        self._fd_lock = threading.Lock()  # the background syncer never fsyncs a closed or reused fd
        self._stop_sync = threading.Event()
        self._wake_sync = threading.Event()  # ``ack``: a commit wrote something
        self._syncer: threading.Thread | None = None
        self.torn_tail_truncated: tuple[str, int] | None = None
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise NotAJournal(f"{self.directory}: not a journal: not a directory")
        os.makedirs(self.directory, exist_ok=True)
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalLocked(f"{self.directory}: another JournalWriter holds this journal") from None
            self._recover(first_seq)
        except BaseException:
            self._close_fds()
            raise

    # ------------------------------------------------------------------ hot path

    def append(self, payload: bytes) -> int:
        """Buffer one record (the payload is copied); return its seq. Not written until ``commit()``."""
        seq = self._next_seq
        self._next_seq = seq + 1
        buf = self._buf
        buf += _pack_header(len(payload), _crc32c(payload, _crc32c(_pack_seq(seq))), seq)
        buf += payload
        return seq

    def append_many(self, payloads: Iterable[bytes]) -> int:
        """Buffer records in order; return the last seq (``next_seq - 1`` if ``payloads`` is empty)."""
        seq = self._next_seq
        buf = self._buf
        for payload in payloads:
            buf += _pack_header(len(payload), _crc32c(payload, _crc32c(_pack_seq(seq))), seq)
            buf += payload
            seq += 1
        self._next_seq = seq
        return seq - 1

    def commit(self) -> int:
        """Write the buffered records with one ``os.write``, fsync per policy; return the last seq.

        Calling it with nothing buffered still performs a due ``batch`` fsync, so an idle loop that
        keeps calling ``commit()`` bounds how long written data stays un-fsynced.
        """
        buf = self._buf
        if buf:
            if (
                self._segment_used > SEGMENT_HEADER_BYTES
                and self._segment_used + len(buf) > self.segment_bytes
            ):
                self._roll()
            self._write_all(buf)
            self._segment_used += len(buf)
            self._committed_seq = self._next_seq - 1
            buf.clear()
            self._dirty = True
            if self.fsync_policy == "always":
                self._fsync()
            elif self.fsync_policy == "ack":
                self._wake_sync.set()
        if self._dirty and self.fsync_policy == "batch" and self._syncer is None:
            if time.monotonic_ns() - self._last_fsync_ns >= self._fsync_interval_ns:
                self._fsync()
        return self._committed_seq

    def start_background_sync(self) -> None:
        """Under ``batch``, fsync from a background thread every interval instead of inside ``commit``.

        ``commit`` then never waits for the disk (an fsync here costs milliseconds, and the matching
        loop must not stall on it): records are written (safe from a process crash) when ``commit``
        returns and on disk within about one interval plus one fsync. ``durable_seq`` tells how far.
        """
        if self.fsync_policy not in ("batch", "ack") or self._syncer is not None:
            return
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync", daemon=True)
        self._syncer.start()

    @property
    def durable_seq(self) -> int:
        """Last seq known to be on disk (fsynced), whatever thread did it."""
        return self._durable_seq

    def _sync_loop(self) -> None:
        interval_s = self._fsync_interval_ns / 1e9
        if self.fsync_policy == "ack":  # as soon as anything is written
            while not self._stop_sync.is_set():
                self._wake_sync.wait(0.05)
                self._wake_sync.clear()
                with self._fd_lock:
                    if self._dirty and self._fd >= 0:
                        self._fsync()
            return
        while not self._stop_sync.wait(interval_s):
            with self._fd_lock:
                if self._dirty and self._fd >= 0:
                    self._fsync()

    # ------------------------------------------------------------------ state

    @property
    def next_seq(self) -> int:
        """Seq the next ``append`` will get."""
        return self._next_seq

    @property
    def committed_seq(self) -> int:
        """Last seq written by ``commit()`` (first seq - 1 when nothing was ever committed)."""
        return self._committed_seq

    @property
    def segment_path(self) -> str:
        return self._segment_path

    def sync(self) -> int:
        """fsync what is written so far, from any thread (the snapshot thread uses it while the owner
        keeps appending); returns the seq known durable."""
        with self._fd_lock:
            if self._fd >= 0:
                self._fsync()
        return self._durable_seq

    def flush(self) -> int:
        """Commit and fsync whatever the policy; return the last seq."""
        self.commit()
        if self._dirty:
            self._fsync()
        return self._committed_seq

    def close(self) -> None:
        """Commit, fsync (every policy) and release the directory."""
        if self._fd < 0:
            return
        if self._syncer is not None:
            self._stop_sync.set()
            self._wake_sync.set()
            self._syncer.join()
            self._syncer = None
        try:
            self.flush()
        finally:
            self._close_fds()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _recover(self, first_seq: int) -> None:
        segments = list_segments(self.directory)
        for name in os.listdir(self.directory):
            if name.endswith(".seg.tmp"):  # a rollover cut short before its rename
                os.unlink(os.path.join(self.directory, name))
        if not segments:
            self._open_segment(self._create_segment(first_seq))
            return
        last = Segment(segments[-1][1], is_last=True).scan()
        if last.torn_tail_at is not None:
            os.truncate(last.path, last.end_offset)
            fd = os.open(last.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self.torn_tail_truncated = (last.path, last.torn_tail_at)
        self._next_seq = last.next_seq
        self._committed_seq = last.next_seq - 1
        self._open_segment(last.path)

    def _create_segment(self, first_seq: int) -> str:
        path = os.path.join(self.directory, get_segment_name(first_seq))
        if os.path.exists(path):
            raise JournalError(f"{path}: segment already exists; refusing to overwrite it")
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, pack_segment_header(first_seq))
            if self.fsync_policy != "none":
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        if self.fsync_policy != "none":
            os.fsync(self._dir_fd)
        return path

    def _open_segment(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._segment_path = path
        self._segment_used = os.fstat(self._fd).st_size

    def _roll(self) -> None:
        with self._fd_lock:
            if self._dirty and self.fsync_policy != "none":
                self._fsync()  # older segments are whole on disk before a newer one exists
            os.close(self._fd)
            self._fd = -1
            self._open_segment(self._create_segment(self._committed_seq + 1))

    def _write_all(self, buf: bytearray) -> None:
        try:
            self._write_fully(buf)
        except BaseException:
            self._close_fds()  # the file may end in part of this commit: only recovery may go on
            raise

    def _write_fully(self, buf: bytearray) -> None:
        written = os.write(self._fd, buf)
        if written != len(buf):  # short writes are rare (signals, full disk); finish the job
            view = memoryview(buf)
            try:
                while written < len(buf):
                    written += os.write(self._fd, view[written:])
            finally:
                view.release()

    def _fsync(self) -> None:
        seq = self._committed_seq
        self._dirty = False
        os.fdatasync(self._fd)
        self._durable_seq = max(self._durable_seq, seq)
        self._last_fsync_ns = time.monotonic_ns()

    def _close_fds(self) -> None:
        with self._fd_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        if self._dir_fd >= 0:
            os.close(self._dir_fd)  # releases the flock
            self._dir_fd = -1


_pack_header = RECORD_HEADER.pack
_pack_seq = SEQ.pack
_crc32c = crc32c
