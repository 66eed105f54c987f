"""A single-producer, multi-consumer ring of fixed-size slots in POSIX shared memory.

Disruptor contract, across processes:

* one producer publishes by writing slots and then advancing the 8-byte aligned ``published``
  cursor; consumers read the cursor, then the slots (x86-64 keeps stores in order and loads in
  order, and CPython performs each aligned 8-byte cursor store as one ``mov``);
* each consumer owns a cursor (messages it has released) in its own cache lines; consumers are
  configured when the ring is created, so nothing published before a consumer attaches is lost;
* the producer never overwrites a slot that an active consumer has not released: a full ring is
  backpressure (``publish`` waits, ``try_publish`` says no), never data loss;
* a consumer process that dies is detected while the producer waits for it (pid and start time
  in its cursor block) and its cursor is dropped, so the producer is never stuck forever. A
  consumer that re-attaches after being dropped resumes at the head and is told (``dropped``).

Memory layout (little-endian, offsets in bytes): a control block of 64-bit words (magic, layout
version, slot size, capacity, consumer count, producer pid, ``published`` on its own cache line),
then 128 bytes per consumer, then the slots, page aligned.
"""

from __future__ import annotations

import _posixshmem
import mmap
import os
import stat
import tempfile
import time

from engine.ring.wait_strategy import SpinThenBackoff, WaitStrategy

MAGIC = int.from_bytes(b"HXRING01", "little")
LAYOUT_VERSION = 1
CONTROL_BYTES = 256
CONSUMER_BYTES = 128
PAGE = 4096

# word indexes into the control block (8-byte words)
W_MAGIC, W_VERSION, W_SLOT, W_CAPACITY, W_CONSUMERS, W_PRODUCER_PID, W_BLOCKERS, W_NONCE = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
)
W_PUBLISHED = 8  # byte 64: its own cache line
# word offsets inside a consumer block
C_CURSOR, C_STATE, C_PID, C_START, C_WAITING = 0, 1, 2, 3, 4
STATE_ACTIVE, STATE_DROPPED = 1, 2
DEAD_CHECK_INTERVAL_NS = 50_000_000


class RingError(Exception):
    """A ring cannot be created or attached; the message names the ring and the reason."""


class RingFull(RingError):
    """``publish`` timed out: every consumer is alive but one has not made room in time."""


def _data_offset(consumers: int) -> int:
    raw = CONTROL_BYTES + CONSUMER_BYTES * consumers
    return (raw + PAGE - 1) // PAGE * PAGE


class SharedSegment:
    """A named POSIX shared-memory segment, mapped; no resource tracker involved.

    ``multiprocessing.shared_memory`` in 3.11 registers every attach with a resource tracker that
    unlinks the segment when the attaching process exits (and warns about it). Ring lifetime is
    explicit instead: the owner unlinks on close, a supervisor removes a killed run's rings by
    prefix (``cleanup_rings``).
    """

    def __init__(self, name: str, create: bool, size: int = 0) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = _posixshmem.shm_open("/" + name, flags, mode=0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            else:
                size = os.fstat(fd).st_size
            self.size = size
            self._mmap = mmap.mmap(fd, size) if size else None
        finally:
            os.close(fd)
        self.name = name
        self.buf = memoryview(self._mmap) if self._mmap is not None else memoryview(b"")

    def close(self) -> None:
        self.buf.release()
        if self._mmap is not None:
            self._mmap.close()

    def unlink(self) -> None:
        _posixshmem.shm_unlink("/" + self.name)


def process_start_ticks(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (0 if it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return 0
    return int(fields[19])


def wake_path(ring_name: str, index: int) -> str:
    """The FIFO a blocking consumer parks on."""
    return os.path.join(tempfile.gettempdir(), f"hx-wake-{ring_name}-{index}")


class RingBuffer:
    """Handle on a ring; the creator owns it (``close`` unlinks), attachers only map it."""

    def __init__(self, shm: SharedSegment, name: str, owner: bool) -> None:
        self._shm = shm
        self.name = name
        self.owner = owner
        buf = shm.buf
        with buf[:CONTROL_BYTES].cast("q") as ctl:
            magic, version, slot, capacity, consumers = (
                ctl[W_MAGIC],
                ctl[W_VERSION],
                ctl[W_SLOT],
                ctl[W_CAPACITY],
                ctl[W_CONSUMERS],
            )
        if magic != MAGIC:
            raise RingError(f"ring {name!r}: shared-memory segment is not an hx ring (bad magic)")
        if version != LAYOUT_VERSION:
            raise RingError(f"ring {name!r}: layout version {version}, this code reads {LAYOUT_VERSION}")
        self.slot_bytes, self.capacity, self.consumers = int(slot), int(capacity), int(consumers)
        self.mask = self.capacity - 1
        need = _data_offset(self.consumers) + self.capacity * self.slot_bytes
        if shm.size < need:
            raise RingError(f"ring {name!r}: segment is {shm.size} bytes, layout needs {need}")
        self._ctl = buf[:CONTROL_BYTES].cast("q")
        self._cons = buf[CONTROL_BYTES : CONTROL_BYTES + CONSUMER_BYTES * self.consumers].cast("q")
        base = _data_offset(self.consumers)
        self.slots = buf[base : base + self.capacity * self.slot_bytes]
        self._gate = 0  # cached minimum of active consumer cursors
        self._next_dead_check = 0
        self._wake_fds: dict[int, int] = {}
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(
        cls, name: str, capacity: int = 1 << 16, consumers: int = 1, slot_bytes: int = 64
    ) -> RingBuffer:
        """Create a ring. ``capacity`` is a power of two; ``consumers`` cursors are active at once."""
        if capacity < 2 or capacity & (capacity - 1):
            raise RingError(f"ring {name!r}: capacity {capacity} is not a power of two >= 2")
        if consumers < 1 or consumers > 64:
            raise RingError(f"ring {name!r}: consumers must be 1..64, got {consumers}")
        if slot_bytes < 8 or slot_bytes % 8:
            raise RingError(f"ring {name!r}: slot size {slot_bytes} must be a positive multiple of 8")
        size = _data_offset(consumers) + capacity * slot_bytes
        try:
            shm = SharedSegment(name, create=True, size=size)
        except FileExistsError:
            raise RingError(f"ring {name!r} already exists (a stale run? `hx clean` removes it)") from None
        buf = shm.buf
        ctl = buf[:CONTROL_BYTES].cast("q")
        ctl[W_VERSION] = LAYOUT_VERSION
        ctl[W_SLOT] = slot_bytes
        ctl[W_CAPACITY] = capacity
        ctl[W_CONSUMERS] = consumers
        ctl[W_PRODUCER_PID] = os.getpid()
        ctl[W_NONCE] = int.from_bytes(os.urandom(8), "little") >> 1
        cons = buf[CONTROL_BYTES : CONTROL_BYTES + CONSUMER_BYTES * consumers].cast("q")
        for i in range(consumers):
            cons[i * 16 + C_STATE] = STATE_ACTIVE
        del cons
        ctl[W_MAGIC] = MAGIC  # last: an attacher never sees a half-initialised ring
        del ctl, buf
        return cls(shm, name, owner=True)

    @classmethod
    def attach(cls, name: str) -> RingBuffer:
        """Map an existing ring by name; RingError names the ring when it is missing or invalid."""
        try:
            shm = SharedSegment(name, create=False)
        except FileNotFoundError:
            raise RingError(f"ring {name!r} does not exist (is its producer running?)") from None
        if shm.size < CONTROL_BYTES:
            shm.close()
            raise RingError(f"ring {name!r}: segment of {shm.size} bytes is too small to be a ring")
        try:
            return cls(shm, name, owner=False)
        except RingError:
            shm.close()
            raise

    def close(self) -> None:
        """Unmap; the owner also unlinks the segment and the consumers' wake FIFOs."""
        if self._closed:
            return
        self._closed = True
        for fd in self._wake_fds.values():
            os.close(fd)
        self._wake_fds.clear()
        for view in ("_ctl", "_cons", "slots"):
            try:
                getattr(self, view).release()
            except BufferError:  # a caller still holds a numpy view of the slots: unmapped at GC
                pass
        try:
            self._shm.close()
        except BufferError:
            pass
        if self.owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
            for i in range(self.consumers):
                try:
                    os.unlink(wake_path(self.name, i))
                except FileNotFoundError:
                    pass

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- producer ------------------------------------------------------------------------------
    @property
    def nonce(self) -> int:
        """Random identity of this ring instance: a recreated ring with the same name differs."""
        return self._ctl[W_NONCE]

    def set_producer(self) -> None:
        """Record the calling process as the producer (for consumers' liveness checks)."""
        self._ctl[W_PRODUCER_PID] = os.getpid()

    @property
    def published(self) -> int:
        return self._ctl[W_PUBLISHED]

    def consumer_cursor(self, index: int) -> int:
        return self._cons[index * 16 + C_CURSOR]

    def is_active(self, index: int) -> bool:
        return self._cons[index * 16 + C_STATE] == STATE_ACTIVE

    def _min_cursor(self) -> int:
        cons = self._cons
        low = self._ctl[W_PUBLISHED]
        for i in range(self.consumers):
            b = i * 16
            if cons[b + C_STATE] == STATE_ACTIVE:
                c = cons[b + C_CURSOR]
                if c < low:
                    low = c
        return low

    def free_slots(self, needed: int = 1) -> int:
        """Slots the producer may write now without overtaking any active consumer.

        Answers from the cached gate when it shows at least ``needed`` free slots; otherwise
        re-reads every consumer cursor.
        """
        pub = self._ctl[W_PUBLISHED]
        free = self.capacity - (pub - self._gate)
        if free < needed:
            self._gate = self._min_cursor()
            free = self.capacity - (pub - self._gate)
        return free

    def try_publish(self, data: bytes | bytearray | memoryview, count: int | None = None) -> bool:
        """Publish ``data`` (whole slots) if there is room for all of it now; never partial."""
        n = count if count is not None else len(data) // self.slot_bytes
        if n > self.capacity:
            raise RingError(f"ring {self.name!r}: batch of {n} slots exceeds capacity {self.capacity}")
        pub = self._ctl[W_PUBLISHED]
        if self.capacity - (pub - self._gate) < n:
            self._gate = self._min_cursor()
            if self.capacity - (pub - self._gate) < n:
                return False
        self._write(pub, data, n)
        self._ctl[W_PUBLISHED] = pub + n
        if self._ctl[W_BLOCKERS]:
            self._wake()
        return True

    def publish(
        self,
        data: bytes | bytearray | memoryview,
        wait: WaitStrategy | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Publish, waiting for room; drops dead consumers; RingFull after ``timeout_s``."""
        n = len(data) // self.slot_bytes
        if self.try_publish(data, n):
            return
        strategy = wait or SpinThenBackoff()
        deadline = None if timeout_s is None else time.monotonic_ns() + int(timeout_s * 1e9)

        def room() -> int:
            if self.free_slots(n) >= n:
                return 1
            self._reap_dead_consumers()
            return 0

        while True:
            if strategy.wait(room, deadline) and self.try_publish(data, n):
                return
            if deadline is not None and time.monotonic_ns() >= deadline:
                lag = {
                    i: self.published - self.consumer_cursor(i)
                    for i in range(self.consumers)
                    if self.is_active(i)
                }
                raise RingFull(
                    f"ring {self.name!r}: no room for {n} slots after {timeout_s}s; consumer lag {lag}"
                )

    def _write(self, seq: int, data: bytes | bytearray | memoryview, n: int) -> None:
        sb = self.slot_bytes
        start = (seq & self.mask) * sb
        end = start + n * sb
        limit = self.capacity * sb
        if end <= limit:
            self.slots[start:end] = data[: n * sb] if len(data) != n * sb else data
        else:
            first = limit - start
            mv = memoryview(data)
            self.slots[start:limit] = mv[:first]
            self.slots[0 : end - limit] = mv[first : n * sb]

    def _wake(self) -> None:
        cons = self._cons
        for i in range(self.consumers):
            if cons[i * 16 + C_WAITING]:
                fd = self._wake_fds.get(i)
                if fd is None:
                    try:
                        fd = os.open(wake_path(self.name, i), os.O_RDWR | os.O_NONBLOCK)
                    except OSError:
                        continue
                    self._wake_fds[i] = fd
                try:
                    os.write(fd, b"\x01")
                except BlockingIOError:
                    pass

    def _reap_dead_consumers(self) -> None:
        now = time.monotonic_ns()
        if now < self._next_dead_check:
            return
        self._next_dead_check = now + DEAD_CHECK_INTERVAL_NS
        self.reap_dead_consumers()

    def reap_dead_consumers(self) -> list[int]:
        """Drop the cursor of every attached consumer whose process is gone; returns their indexes."""
        dropped = []
        cons = self._cons
        for i in range(self.consumers):
            b = i * 16
            pid = cons[b + C_PID]
            if cons[b + C_STATE] == STATE_ACTIVE and pid and process_start_ticks(pid) != cons[b + C_START]:
                cons[b + C_STATE] = STATE_DROPPED
                dropped.append(i)
        if dropped:
            self._gate = self._min_cursor()
        return dropped

    # ---- consumers -----------------------------------------------------------------------------
    def consumer(self, index: int, wait: WaitStrategy | None = None) -> Consumer:
        """Attach as consumer ``index``; resumes at its cursor, or at the head if it was dropped."""
        if not 0 <= index < self.consumers:
            raise RingError(f"ring {self.name!r}: consumer index {index} outside 0..{self.consumers - 1}")
        return Consumer(self, index, wait or SpinThenBackoff())


class Consumer:
    """One consumer cursor: ``available`` / ``peek`` / ``release`` (zero-copy), or ``read``."""

    def __init__(self, ring: RingBuffer, index: int, wait: WaitStrategy) -> None:
        self.ring = ring
        self.index = index
        self.wait_strategy = wait
        cons = ring._cons
        b = index * 16
        self._b = b
        self.dropped = cons[b + C_STATE] == STATE_DROPPED
        if self.dropped:
            cons[b + C_CURSOR] = ring.published
            cons[b + C_STATE] = STATE_ACTIVE
        pid = os.getpid()
        cons[b + C_START] = process_start_ticks(pid)
        cons[b + C_PID] = pid
        self.cursor = cons[b + C_CURSOR]
        self._fifo_fd = -1
        if wait.blocking:
            path = wake_path(ring.name, index)
            try:
                os.mkfifo(path, 0o600)
            except FileExistsError:
                if not stat.S_ISFIFO(os.stat(path).st_mode):
                    raise RingError(
                        f"ring {ring.name!r}: wake path {path} exists and is not a FIFO"
                    ) from None
            self._fifo_fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            wait.fd = self._fifo_fd  # type: ignore[attr-defined]
            wait.set_waiting = self._set_waiting  # type: ignore[attr-defined]
            ring._ctl[W_BLOCKERS] = 1  # sticky: from now on the producer checks waiting words
        self._ctl = ring._ctl
        self._cons = cons

    def _set_waiting(self, flag: int) -> None:
        self._cons[self._b + C_WAITING] = flag

    def available(self) -> int:
        """Messages published and not yet released by this consumer."""
        return self._ctl[W_PUBLISHED] - self.cursor

    def peek(self, max_n: int = 1 << 30) -> tuple[memoryview, int]:
        """A zero-copy view of up to ``max_n`` contiguous unread slots (stops at the wrap)."""
        ring = self.ring
        n = self._ctl[W_PUBLISHED] - self.cursor
        if n > max_n:
            n = max_n
        start = self.cursor & ring.mask
        if start + n > ring.capacity:
            n = ring.capacity - start
        sb = ring.slot_bytes
        return ring.slots[start * sb : (start + n) * sb], n

    def release(self, n: int) -> None:
        """Mark ``n`` slots consumed; the producer may reuse them."""
        self.cursor += n
        self._cons[self._b + C_CURSOR] = self.cursor

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait (per the strategy) until something is available; returns the count (0 on timeout)."""
        n = self._ctl[W_PUBLISHED] - self.cursor
        if n:
            return n
        deadline = None if timeout_s is None else time.monotonic_ns() + int(timeout_s * 1e9)
        return self.wait_strategy.wait(self.available, deadline)

    def read(self, max_n: int = 1 << 30, timeout_s: float | None = None) -> bytes:
        """Wait, copy out up to ``max_n`` contiguous messages and release them (b"" on timeout)."""
        if not self.wait(timeout_s):
            return b""
        view, n = self.peek(max_n)
        data = bytes(view)
        view.release()
        self.release(n)
        return data

    def producer_alive(self) -> bool:
        pid = self._ctl[W_PRODUCER_PID]
        return bool(pid) and process_start_ticks(pid) != 0

    def close(self) -> None:
        """Detach; the cursor stays active so a restarted consumer resumes without a gap."""
        self._cons[self._b + C_WAITING] = 0
        if self._fifo_fd >= 0:
            os.close(self._fifo_fd)
            self._fifo_fd = -1


def cleanup_rings(prefix: str) -> list[str]:
    """Unlink every shared-memory segment whose name starts with ``prefix`` (a run's rings)."""
    removed = []
    for entry in os.listdir("/dev/shm"):
        if entry.startswith(prefix):
            try:
                os.unlink(os.path.join("/dev/shm", entry))
                removed.append(entry)
            except FileNotFoundError:
                pass
    tmp = tempfile.gettempdir()
    for entry in os.listdir(tmp):
        if entry.startswith(f"hx-wake-{prefix}"):
            try:
                os.unlink(os.path.join(tmp, entry))
            except FileNotFoundError:
                pass
    return removed
