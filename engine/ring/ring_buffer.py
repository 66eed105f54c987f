"""A single-producer, multi-consumer ring of fixed-size slots in POSIX shared memory.

Disruptor contract, across processes:

* one producer publishes by writing slots and then advancing ``published``; consumers load
  ``published``, then read the slots; batch reads are the normal case;
* each consumer owns a cursor (messages it has released); consumers are configured when the ring
  is created, so nothing published before a consumer attaches is lost;
* the producer never overwrites a slot that an *active* consumer has not released: a full ring is
  backpressure (``publish`` waits, ``try_publish`` says no), never silent data loss;
* a consumer stops being active only when the producer drops it, and only ``publish`` (a producer
  that is waiting for room) or an explicit ``reap_dead_consumers``/``drop_consumer`` drops anyone:
  - *dead*: its process is gone (pid and start time in its block, checked every 50 ms while waiting);
  - *stuck*: while the producer waited for room, the consumer held it back and its cursor did not
    move for ``stuck_timeout_s`` of waiting in total (per ring, set at ``create``; default
    ``DEFAULT_STUCK_TIMEOUT_S`` = 1 s; ``None`` or 0 never drops a live consumer). A consumer that
    moves at all is slow, not stuck, and keeps its backpressure. Never attached counts as not moving.
  ``try_publish`` never drops anyone: a producer that would rather reject than wait keeps full
  backpressure (the gateway's order rings, whose consumer is a shard that resumes from its cursor);
* a dropped consumer is told, never fed overwritten bytes: ``peek``, ``release``, ``read`` and
  ``wait`` (rather than park) raise ``ConsumerDropped`` (reason, where it was, the head at the
  drop), and ``release`` refuses a batch that may have been overwritten while it was being read.
  ``resume()`` re-registers at the head; a process that attaches a dropped index
  (``RingBuffer.consumer``) resumes at the head with ``dropped`` set. One process at a time may
  register a given consumer index.

Memory layout (layout version 2; little-endian 8-byte words; offsets in bytes). Every word has one
writer (the creator's initial values aside, written before ``magic``):

    control block, 256 bytes
      0    magic, version, slot_bytes, capacity, consumers, stuck_timeout_ns, nonce,
           keep (bit i: consumer i is never dropped as dead or stuck)               creator, once
      64   published                                                                 producer
      128  producer_pid                                                              producer
    consumer block i, 256 bytes at 256 + 256 i
      +0   cursor, ack_gen, pid, start_ticks       consumer (ack/pid/start only when registering)
      +128 waiting                                 consumer
      +192 drop_gen, drop_reason, drop_cursor, drop_published                        producer
    slots, from the first page boundary after the consumer blocks: capacity x slot_bytes

Consumer i is *active* when ``ack_gen == drop_gen``. The producer drops it by bumping ``drop_gen``
(after recording why and where); the consumer re-registers by copying ``drop_gen`` into ``ack_gen``.
Neither ever writes the other's word, so no update can be lost to a concurrent writer.

Memory ordering. The words are loaded and stored only by ``engine.native._hxring`` with C11 atomics
(numbers as in that file); correctness does not depend on x86's ordering, so it holds on ARM64:

1. Publish: the producer copies the slot bytes (plain stores), then stores ``published`` with
   *release*; a consumer loads ``published`` with *acquire*, then reads the slots. Release/acquire
   makes every slot byte written before the store visible after the load. The bytes themselves may
   be moved by any code (C ``memcpy`` in ``try_publish``; numpy or ``bytes()`` reading a ``peek``
   memoryview in Python, after the C call returned): the ordering instructions the atomics compile
   to (ARM64 ``stlr``/``ldar``/``dmb``; on x86 the ordinary ``mov`` under TSO and a locked
   instruction for a seq_cst fence) order every memory access of the thread, not only C ones, and
   no compiler can move an access across the call into the extension.
2. Reuse: a consumer stores its cursor with *release* after reading the slots; the producer loads
   cursors with *acquire* before it computes which slots it may overwrite. So no consumer read of a
   slot can observe bytes written for its next lap.
3. Park/wake (Dekker): a consumer stores ``waiting=1``, issues a *seq_cst fence*, then loads
   ``published``; the producer stores ``published``, issues a *seq_cst fence*, then loads every
   waiting word and writes the FIFO of each waiter. By the fence rule (C11 7.17.3p11) at least one
   side sees the other's store: either the consumer sees the message and does not park, or the
   producer sees the flag and the FIFO byte wakes the parked poll (a byte written before the poll
   starts still wakes it). No wake-up is lost, so a ``Blocking`` wait may park for long.
   A producer on an event loop may defer the FIFO write (``defer_wakes``): the waiters seen by
   each publish are OR-ed into a pending mask and written once, by a callback the loop runs at
   the end of its current iteration. The byte is later, never lost (``close`` writes what is
   pending), so the argument above holds with "writes the FIFO" read as "will write it".
4. Drop (a seqlock on ``drop_gen``): the producer stores ``drop_gen+1`` (release) then a
   *seq_cst fence* before any later slot store that relies on the drop; a consumer, in ``release``
   (and ``is_dropped``), issues an *acquire fence* after its slot reads and then loads ``drop_gen``.
   If any read saw a byte of an overwrite, the fences synchronise and the load sees the new
   generation: an unchanged generation proves the batch intact; a changed one raises. (As for
   every seqlock, the torn read itself is a race the C11 model leaves undefined for plain
   accesses; what makes it safe is that the bytes are discarded, and the hardware models of x86
   and ARMv8 give the message-passing guarantee used here.)
5. Registration (Dekker again): a consumer re-registering after a drop stores a provisional
   cursor, stores ``ack_gen`` (release), issues a *seq_cst fence*, loads ``published`` and resumes
   exactly there; the producer issues a *seq_cst fence* before it loads the acks to compute its
   gate. Either the producer sees the registration (and then a cursor at least the provisional one),
   or the consumer's head is at least every ``published`` the producer stored before computing a
   gate that ignored it; a gate never exceeds the ``published`` it was computed at, so no slot at
   or after that head can be overwritten before the producer sees the registration.
6. The producer caches its gate (a lower bound of the active cursors) and re-reads the cursors only
   when the cached gate shows too little room; cursors only grow and a re-registered consumer
   resumes at or above any gate computed without it (5), so the cache stays a lower bound.

Lifetime: the creator owns the ring: ``close`` unlinks the segment and every consumer's wake FIFO
(a consumer creates its FIFO; a killed consumer's FIFO is still removed by the owner), and
``cleanup_rings(prefix)`` removes both for a run whose owner was killed.
"""

from __future__ import annotations

import _posixshmem
import logging
import mmap
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable

from engine.native._hxring import CONSUMER_BYTES, CONTROL_BYTES, ConsumerCore, RingCore
from engine.ring.wait_strategy import SpinThenBackoff, WaitStrategy

log = logging.getLogger("hx.ring")

MAGIC = int.from_bytes(b"HXRING01", "little")
LAYOUT_VERSION = 2
PAGE = 4096
MAX_CONSUMERS = 64  # the producer's wake mask is one 64-bit word

# word indexes into the control block (8-byte words)
W_MAGIC, W_VERSION, W_SLOT, W_CAPACITY, W_CONSUMERS, W_STUCK_NS, W_NONCE, W_KEEP = 0, 1, 2, 3, 4, 5, 6, 7
W_PUBLISHED = 8  # byte 64: its own cache line
W_PRODUCER_PID = 16  # byte 128

DEFAULT_STUCK_TIMEOUT_S: float | None = 1.0
REAP_INTERVAL_NS = 50_000_000  # how often a waiting producer checks for dead and stuck consumers

DROP_DEAD, DROP_STUCK, DROP_REQUESTED = 1, 2, 3
DROP_REASONS = {DROP_DEAD: "dead", DROP_STUCK: "stuck", DROP_REQUESTED: "requested"}


class RingError(Exception):
    """A ring cannot be created or attached; the message names the ring and the reason."""


class RingFull(RingError):
    """``publish`` timed out: every consumer is alive but one has not made room in time."""


class ConsumerDropped(RingError):
    """The producer dropped this consumer: messages from ``cursor`` on may have been overwritten.

    Nothing was released; the consumer's cursor is void. ``Consumer.resume()`` continues at the
    head. ``reason`` is ``"dead"``, ``"stuck"`` or ``"requested"``; ``published_at_drop`` is the
    head when the producer dropped it.
    """

    def __init__(self, ring: str, index: int, reason: str, cursor: int, published_at_drop: int) -> None:
        super().__init__(
            f"ring {ring!r}: consumer {index} was dropped by the producer ({reason}) at cursor {cursor}, "
            f"head {published_at_drop}; unread messages may be overwritten, resume() continues at the head"
        )
        self.ring, self.index, self.reason = ring, index, reason
        self.cursor, self.published_at_drop = cursor, published_at_drop

    def __reduce__(self) -> tuple[type, tuple[str, int, str, int, int]]:  # crosses process queues
        return type(self), (self.ring, self.index, self.reason, self.cursor, self.published_at_drop)


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
        except BaseException:
            if create:
                _posixshmem.shm_unlink("/" + name)  # never leave a half-made segment behind
            raise
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


class RingBuffer(RingCore):
    """Handle on a ring; the creator owns it (``close`` unlinks), attachers only map it.

    Inherited from the C core (see the module docstring for the ordering each one provides):
    ``try_publish(data, count=None) -> bool``, ``free_slots(needed=1) -> int``, ``published``,
    ``consumer_cursor(i)``, ``is_active(i)``, ``min_cursor()``.
    """

    def __init__(self, shm: SharedSegment, name: str, owner: bool) -> None:
        self._shm = shm
        self.name = name
        self.owner = owner
        buf = shm.buf
        with buf[:CONTROL_BYTES].cast("q") as ctl:
            magic, version, slot, capacity, consumers, stuck_ns = (
                ctl[W_MAGIC],
                ctl[W_VERSION],
                ctl[W_SLOT],
                ctl[W_CAPACITY],
                ctl[W_CONSUMERS],
                ctl[W_STUCK_NS],
            )
        if magic != MAGIC:
            raise RingError(f"ring {name!r}: shared-memory segment is not an hx ring (bad magic)")
        if version != LAYOUT_VERSION:
            raise RingError(f"ring {name!r}: layout version {version}, this code reads {LAYOUT_VERSION}")
        if not 1 <= consumers <= MAX_CONSUMERS or capacity < 2 or capacity & (capacity - 1) or slot % 8:
            raise RingError(f"ring {name!r}: corrupt header (capacity {capacity}, consumers {consumers})")
        self.slot_bytes, self.capacity, self.consumers = int(slot), int(capacity), int(consumers)
        self.mask = self.capacity - 1
        self.stuck_timeout_ns = int(stuck_ns)
        with buf[:CONTROL_BYTES].cast("q") as ctl:
            self.keep_mask = int(ctl[W_KEEP])
        base = _data_offset(self.consumers)
        need = base + self.capacity * self.slot_bytes
        if shm.size < need:
            raise RingError(f"ring {name!r}: segment is {shm.size} bytes, layout needs {need}")
        self._ctl = buf[:CONTROL_BYTES].cast("q")  # header words; the atomic words go through the core
        self.slots = buf[base : base + self.capacity * self.slot_bytes]
        super().__init__(buf, self.slots, self.consumers, self.slot_bytes, self.capacity, base)
        self._wake_fds: dict[int, int] = {}
        self._pending_wake = 0  # consumers to wake at the next flush_wakes (defer_wakes)
        self._schedule: Callable[[Callable[[], None]], object] | None = None
        self._schedule_thread = 0
        self._next_reap_ns = 0
        self._last_reap_ns = 0
        self._stuck: dict[int, tuple[int, int]] = {}  # consumer -> (cursor seen, ns it held us back)
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        capacity: int = 1 << 16,
        consumers: int = 1,
        slot_bytes: int = 64,
        stuck_timeout_s: float | None = DEFAULT_STUCK_TIMEOUT_S,
        keep: tuple[int, ...] = (),
    ) -> RingBuffer:
        """Create a ring. ``capacity`` is a power of two; ``consumers`` cursors are active at once.

        ``stuck_timeout_s``: a waiting ``publish`` drops a live consumer that held it back without
        moving for this long in total (``None`` or 0: never; dead consumers are dropped anyway).
        ``keep``: consumers never dropped, dead or stuck (the producer waits for them instead): a
        consumer that cannot recover what it missed (a risk partition reading fills, a shard
        reading orders) must find its cursor where it left it when it is restarted.
        """
        if capacity < 2 or capacity & (capacity - 1):
            raise RingError(f"ring {name!r}: capacity {capacity} is not a power of two >= 2")
        if consumers < 1 or consumers > MAX_CONSUMERS:
            raise RingError(f"ring {name!r}: consumers must be 1..{MAX_CONSUMERS}, got {consumers}")
        if slot_bytes < 8 or slot_bytes % 8:
            raise RingError(f"ring {name!r}: slot size {slot_bytes} must be a positive multiple of 8")
        if stuck_timeout_s is not None and stuck_timeout_s < 0:
            raise RingError(f"ring {name!r}: stuck_timeout_s must be >= 0 or None, got {stuck_timeout_s}")
        size = _data_offset(consumers) + capacity * slot_bytes
        try:
            shm = SharedSegment(name, create=True, size=size)
        except FileExistsError:
            raise RingError(f"ring {name!r} already exists (a stale run? `hx clean` removes it)") from None
        try:
            with shm.buf[:CONTROL_BYTES].cast("q") as ctl:
                ctl[W_VERSION] = LAYOUT_VERSION
                ctl[W_SLOT] = slot_bytes
                ctl[W_CAPACITY] = capacity
                ctl[W_CONSUMERS] = consumers
                ctl[W_STUCK_NS] = int((stuck_timeout_s or 0) * 1e9)
                for index in keep:
                    if not 0 <= index < min(consumers, 63):
                        raise RingError(
                            f"ring {name!r}: keep index {index} outside 0..{min(consumers, 63) - 1}"
                        )
                ctl[W_KEEP] = sum(1 << i for i in set(keep))
                ctl[W_PRODUCER_PID] = os.getpid()
                ctl[W_NONCE] = int.from_bytes(os.urandom(8), "little") >> 1
                ctl[W_MAGIC] = MAGIC  # last: an attacher never sees a half-initialised ring
            return cls(shm, name, owner=True)
        except BaseException:
            shm.close()
            shm.unlink()
            raise

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
        self.flush_wakes()  # a deferred wake-up is late, never lost
        self._closed = True
        self._release_memory()  # from now on the core refuses every call instead of touching memory
        for fd in self._wake_fds.values():
            os.close(fd)
        self._wake_fds.clear()
        for view in ("_ctl", "slots"):
            try:
                getattr(self, view).release()
            except BufferError:  # a caller still holds a view of the slots: unmapped at GC
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
        return int(self._ctl[W_NONCE])

    @property
    def stuck_timeout_s(self) -> float | None:
        """How long a waiting ``publish`` lets a live consumer hold it back without moving."""
        return self.stuck_timeout_ns / 1e9 if self.stuck_timeout_ns else None

    def set_producer(self) -> None:
        """Record the calling process as the producer (for consumers' liveness checks)."""
        self._ctl[W_PRODUCER_PID] = os.getpid()

    def publish(
        self,
        data: bytes | bytearray | memoryview,
        wait: WaitStrategy | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Publish, waiting for room; drops dead and stuck consumers; RingFull after ``timeout_s``."""
        if self.try_publish(data):
            return
        n = memoryview(data).nbytes // self.slot_bytes
        strategy = wait or SpinThenBackoff()
        deadline = None if timeout_s is None else time.monotonic_ns() + int(timeout_s * 1e9)
        self._last_reap_ns = time.monotonic_ns()  # a consumer is stuck only for time spent waiting

        def room() -> int:
            if self.free_slots(n) >= n:
                return 1
            self._reap(n)
            return 0

        while True:
            if strategy.wait(room, deadline) and self.try_publish(data):
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

    def _raise_batch_too_big(self, n: int) -> None:  # called by the core's try_publish
        raise RingError(f"ring {self.name!r}: batch of {n} slots exceeds capacity {self.capacity}")

    def defer_wakes(self, schedule: Callable[[Callable[[], None]], object] | None) -> None:
        """Doorbell batching: wake waiting consumers once per burst of publishes, not per publish.

        ``schedule`` is the producer's event loop's ``call_soon``: the first publish that finds a
        waiting consumer schedules ``flush_wakes`` and later ones only add to the pending mask, so
        a gateway that reads forty frames in one loop iteration writes each waiter's FIFO once,
        after the last of them. Why: with the FIFO written per publish, a parked risk or shard
        process (SCHED_FIFO) preempted the gateway at the first frame and took it alone; each stage
        then paid its per-batch costs (a journal record, a margin pass, a wake of its own) for a
        few dozen orders. The wake-up moves to the end of the iteration (microseconds later);
        the slots themselves are visible to a spinning consumer at once. Publishes from any other
        thread wake at once. A callback of the same loop iteration that may run long should call
        ``flush_wakes`` first (the gateway does before a JSON op). ``None``: wake per publish again
        (after flushing what is pending)."""
        self.flush_wakes()
        self._schedule = schedule
        self._schedule_thread = threading.get_ident()

    def flush_wakes(self) -> None:
        """Write the deferred wake-ups (``defer_wakes``) now."""
        mask, self._pending_wake = self._pending_wake, 0
        if mask and not self._closed:
            self._write_wakes(mask)

    def _wake(self, mask: int) -> None:
        """Wake every consumer in ``mask`` (called by the core's publish): now, or at the end of the
        producer's loop iteration under ``defer_wakes``."""
        schedule = self._schedule
        if schedule is not None and threading.get_ident() == self._schedule_thread:
            if not self._pending_wake:
                try:
                    schedule(self.flush_wakes)
                except RuntimeError:  # the loop is closed: nothing will run the flush
                    self._write_wakes(mask)
                    return
            self._pending_wake |= mask
            return
        self._write_wakes(mask)

    def _write_wakes(self, mask: int) -> None:
        """Write one byte to the FIFO of every consumer in ``mask``."""
        i = 0
        while mask:
            if mask & 1:
                fd = self._wake_fds.get(i)
                if fd is None:
                    try:
                        fd = os.open(wake_path(self.name, i), os.O_RDWR | os.O_NONBLOCK)
                    except OSError:
                        fd = None
                    if fd is not None:
                        self._wake_fds[i] = fd
                if fd is not None:
                    try:
                        os.write(fd, b"\x01")
                    except BlockingIOError:  # the FIFO is full of wake-ups already
                        pass
            mask >>= 1
            i += 1

    def _reap(self, needed: int) -> None:
        """While waiting for room: drop dead consumers, then stuck ones (at most every 50 ms)."""
        now = time.monotonic_ns()
        if now < self._next_reap_ns:
            return
        waited = now - self._last_reap_ns
        self._last_reap_ns = now
        self._next_reap_ns = now + REAP_INTERVAL_NS
        self.reap_dead_consumers()
        if self.stuck_timeout_ns:
            self._reap_stuck(needed, waited)

    def _reap_stuck(self, needed: int, waited_ns: int) -> list[int]:
        """Charge ``waited_ns`` to every active consumer holding back ``needed`` slots whose cursor
        has not moved; drop those charged ``stuck_timeout_ns``. A moved cursor clears the charge."""
        dropped = []
        limit = self.published + needed - self.capacity  # cursors below this hold the producer back
        for i in range(self.consumers):
            if not self.is_active(i) or self.keep_mask >> i & 1:
                self._stuck.pop(i, None)
                continue
            cursor = self.consumer_cursor(i)
            seen, charged = self._stuck.get(i, (-1, 0))
            if cursor >= limit or cursor != seen:
                self._stuck[i] = (cursor, 0)
                continue
            charged += waited_ns
            if charged >= self.stuck_timeout_ns and self._drop(i, DROP_STUCK):
                log.warning(
                    "ring %s: consumer %d made no progress for %.2fs while the producer waited; dropped",
                    self.name,
                    i,
                    charged / 1e9,
                )
                self._stuck.pop(i, None)
                dropped.append(i)
            else:
                self._stuck[i] = (cursor, charged)
        return dropped

    def reap_dead_consumers(self) -> list[int]:
        """Drop every active consumer whose process is gone; returns their indexes. Producer only."""
        dropped = []
        for i in range(self.consumers):
            if self.keep_mask >> i & 1:  # kept: the producer waits for its restart
                continue
            _cursor, ack, pid, start, _w, gen, *_ = self._consumer_words(i)
            if ack != gen or not pid or process_start_ticks(pid) == start:
                continue
            # a new process may have registered this index since: only drop the one we judged dead
            _cursor, ack, pid2, start2, _w, gen, *_ = self._consumer_words(i)
            if (pid2, start2) == (pid, start) and self._drop(i, DROP_DEAD):
                dropped.append(i)
        return dropped

    def drop_consumer(self, index: int) -> bool:
        """Drop consumer ``index`` now (reason "requested"); False if it was not active. Producer
        only: the drop word has one writer. The consumer learns it at its next peek or release."""
        if not 0 <= index < self.consumers:
            raise RingError(f"ring {self.name!r}: consumer index {index} outside 0..{self.consumers - 1}")
        return bool(self._drop(index, DROP_REQUESTED))

    def drop_info(self, index: int) -> tuple[str, int, int] | None:
        """Why and where consumer ``index`` was last dropped: (reason, its cursor, the head), or
        None if it never was."""
        _c, _a, _p, _s, _w, gen, reason, cursor, head = self._consumer_words(index)
        if not gen:
            return None
        return DROP_REASONS.get(reason, f"reason {reason}"), cursor, head

    # ---- consumers -----------------------------------------------------------------------------
    def consumer(self, index: int, wait: WaitStrategy | None = None) -> Consumer:
        """Attach as consumer ``index``; resumes at its cursor, or at the head if it was dropped."""
        if not 0 <= index < self.consumers:
            raise RingError(f"ring {self.name!r}: consumer index {index} outside 0..{self.consumers - 1}")
        return Consumer(self, index, wait or SpinThenBackoff())


class Consumer(ConsumerCore):
    """One consumer cursor: ``available`` / ``peek`` / ``release`` (zero-copy), or ``read``.

    Inherited from the C core: ``available() -> int``, ``peek(max_n) -> (memoryview, n)``,
    ``release(n)``, ``is_dropped() -> bool``, ``set_waiting(flag)``, ``cursor``.

    A batch from ``peek`` is known intact only once ``release`` returns (or ``is_dropped()`` is
    False after reading it): a consumer that acts on bytes before releasing them and must never act
    on overwritten ones copies first and checks, as ``read`` does. Only a dropped consumer can be
    overwritten, and only a dead, stuck or explicitly dropped one is dropped.
    """

    def __init__(self, ring: RingBuffer, index: int, wait: WaitStrategy) -> None:
        super().__init__(ring, index)
        self.ring = ring
        self.index = index
        self.wait_strategy = wait
        self.dropped = False  # True once this handle resumed at the head after a drop
        self.drop_reason: str | None = None
        self._register_here()
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
            wait.set_waiting = self.set_waiting  # type: ignore[attr-defined]

    def _register_here(self) -> int:
        pid = os.getpid()
        old = self.cursor
        was_dropped, _cursor = self._register(pid, process_start_ticks(pid))
        if was_dropped:
            self.dropped = True
            info = self.ring.drop_info(self.index)
            self.drop_reason = info[0] if info else None
            return self.cursor - old
        return 0

    def _raise_dropped(self) -> None:  # called by the core's peek and release
        info = self.ring.drop_info(self.index)
        reason, _cursor, head = info if info else ("unknown", self.cursor, self.ring.published)
        raise ConsumerDropped(self.ring.name, self.index, reason, self.cursor, head)

    def resume(self) -> int:
        """After ``ConsumerDropped``: re-register at the head; returns how many messages were skipped
        (0 if this consumer was not dropped)."""
        return self._register_here()

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait (per the strategy) until something is available; returns the count (0 on timeout).

        A dropped consumer is told (ConsumerDropped) before it would wait."""
        n = self.available()
        if n:
            return n
        if self.is_dropped():
            self._raise_dropped()
        deadline = None if timeout_s is None else time.monotonic_ns() + int(timeout_s * 1e9)
        return self.wait_strategy.wait(self.available, deadline)

    def read(self, max_n: int = 1 << 30, timeout_s: float | None = None) -> bytes:
        """Wait, copy out up to ``max_n`` contiguous messages and release them (b"" on timeout).

        Never returns overwritten bytes: the copy is validated by ``release`` (ConsumerDropped)."""
        if not self.wait(timeout_s):
            return b""
        view, n = self.peek(max_n)
        data = bytes(view)
        view.release()
        self.release(n)
        return data

    def producer_alive(self) -> bool:
        pid = self.ring._ctl[W_PRODUCER_PID]
        return bool(pid) and process_start_ticks(pid) != 0

    def close(self) -> None:
        """Detach; the cursor stays active so a restarted consumer resumes without a gap."""
        if not self.ring._memory_released:
            self.set_waiting(0)
        if self._fifo_fd >= 0:
            os.close(self._fifo_fd)
            self._fifo_fd = -1


def cleanup_rings(prefix: str) -> list[str]:
    """Unlink every shared-memory segment and wake FIFO whose ring name starts with ``prefix``
    (a run's rings); returns the segments removed."""
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
