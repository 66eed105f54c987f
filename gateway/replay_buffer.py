"""A bounded per-account history of the private stream, so a reconnecting session resumes exactly.

With risk in the order path every private event carries the account's own gap-free sequence
number (``seq``: 1, 2, 3, ... per account, whatever the market). Each gateway records, from risk's
rings, the private events of accounts that have had a session recently (on any gateway: logins
touch a marker file in the run's state directory, ``SessionBoard``), and a session that logs in
with ``resume_from = N`` (the last seq it processed) gets every recorded event after N before any
live one, so its stream continues as if it had never disconnected, even through another gateway
after a ``kill -9`` of the first.

Bounds: per account at most ``max_events`` events and ``max_age_s`` seconds of them; all accounts
together at most ``max_bytes`` (the least recently active accounts' histories go first). A gap in
an account's sequence (this gateway lost events) drops that account's history and starts again:
a history with a hole is never served. A resume the history cannot cover (too old, or after a
gap) is refused with the reason, and the client resyncs (``open_orders``, balances).
"""

from __future__ import annotations

import os
import struct
import time
from collections import deque
from pathlib import Path

import numpy as np

from engine.types.enums import MsgType
from engine.wire.layout import SEQ_AT, SLOT_BYTES, field_offset
from gateway.binary import GATEWAY_REQUEST_BIT
from gateway.protocol.vocabulary import PRIVATE_EVENTS, SINGLE_ACCOUNT_PRIVATE_EVENTS

try:
    from gateway.native import _hxreplay
except ImportError:  # pragma: no cover - the build makes it; the Python reading runs without it
    _hxreplay = None  # type: ignore[assignment]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
ACCOUNT_AT = [-1] * 256  # byte offset of the receiving account per private type
for _t in SINGLE_ACCOUNT_PRIVATE_EVENTS:
    ACCOUNT_AT[_t] = field_offset(_t, "account")
ACCOUNT_AT[MsgType.FILL] = field_offset(MsgType.FILL, "taker_account")
_FILL = int(MsgType.FILL)
_FILL_MAKER_AT = field_offset(MsgType.FILL, "maker_account")
_STATE = int(MsgType.ORDER_STATE)
_STATE_RID_AT = field_offset(MsgType.ORDER_STATE, "request_id")
assert all(field_offset(t, "seq") == SEQ_AT for t in PRIVATE_EVENTS)
_ACCOUNT_AT = np.array(ACCOUNT_AT, np.int16)


def event_account(data: bytes, off: int) -> int:
    """The account a private event belongs to (its copy of a FILL: the side not zeroed), else 0."""
    at = ACCOUNT_AT[data[off]]
    if at < 0:
        return 0
    account = _U32.unpack_from(data, off + at)[0]
    if not account and data[off] == _FILL:
        account = _U32.unpack_from(data, off + _FILL_MAKER_AT)[0]
    return int(account)


def is_sent(event: bytes) -> bool:
    """Whether a recorded event goes to the account's sessions (a gateway's own ORDER_STATE
    answers do not: the gateway answers those requests in one reply)."""
    return not (event[0] == _STATE and _U64.unpack_from(event, _STATE_RID_AT)[0] & GATEWAY_REQUEST_BIT)


class SessionBoard:
    """Which accounts had a session recently, on any gateway of the run (marker files' mtimes)."""

    def __init__(self, state_dir: str | Path | None, window_s: float) -> None:
        self.dir = Path(state_dir) / "sessions" if state_dir else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.window_s = window_s
        self.recent: dict[int, float] = {}  # account -> last seen (time.time())
        self.version = 0  # moves whenever the set of recent accounts may have

    def touch(self, account: int) -> None:
        """A session of ``account`` is alive here (login, and periodically while it lives)."""
        now = time.time()
        if account not in self.recent:
            self.version += 1
        self.recent[account] = now
        if self.dir is not None:
            path = self.dir / str(account)
            try:
                path.touch()
                os.utime(path, (now, now))
            except OSError:
                pass

    def refresh(self) -> None:
        """Learn other gateways' sessions; forget accounts not seen within the window."""
        now = time.time()
        if self.dir is not None:
            try:
                for entry in os.scandir(self.dir):
                    if entry.name.isdigit():
                        seen = entry.stat().st_mtime
                        if now - seen <= self.window_s:
                            account = int(entry.name)
                            self.recent[account] = max(self.recent.get(account, 0.0), seen)
            except OSError:
                pass
        for account in [a for a, seen in self.recent.items() if now - seen > self.window_s]:
            del self.recent[account]
        self.version += 1


class _History:
    """One account's kept events: chunks of consecutive seqs, each one batch's events of it."""

    __slots__ = ("chunks", "count", "last_seq")

    def __init__(self) -> None:
        self.chunks: deque[tuple[int, bytes, float]] = deque()  # (first seq, events, monotonic time kept)
        self.count = 0
        self.last_seq = 0


class ReplayBuffer:
    """Private events by account, bounded; ``resume`` serves what a reconnecting session missed.

    A risk batch is read in one pass in C (``gateway.native._hxreplay.split``: the account and seq
    of every event) and each recent account's events of it are kept as one chunk of bytes: a few
    Python operations per account and batch, not per event (this runs on every batch from risk,
    ~3 events an order; the per-event Python reading took a fifth of the gateway's time at
    300,000 orders/s). A deque entry per event is the specification (tests/gateway/replay_spec.py)."""

    def __init__(
        self,
        board: SessionBoard,
        max_events: int = 10_000,
        max_age_s: float = 60.0,
        max_bytes: int = 64 << 20,
    ) -> None:
        self.board = board
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.histories: dict[int, _History] = {}
        self.events = 0  # held, all accounts
        self.gaps = 0  # histories dropped because of a gap
        self._recent_version = -1
        self._recent = np.empty(0, np.uint32)
        self.compiled = _hxreplay is not None  # (tests turn it off to run the Python reading)

    def _recent_accounts(self) -> np.ndarray:
        if self._recent_version != self.board.version:
            self._recent_version = self.board.version
            self._recent = np.sort(np.fromiter(self.board.recent, np.uint32, len(self.board.recent)))
        return self._recent

    def record(self, data: bytes) -> None:
        """Keep the private events of recently active accounts from one risk batch (this runs on
        every batch from risk, ~3 events an order: in C, one pass, when it is built)."""
        if not self.board.recent or len(data) < SLOT_BYTES:
            return
        if _hxreplay is not None and self.compiled:
            now = time.monotonic()
            for account, first, breaks, kept, last, blob in _hxreplay.split(
                data, _ACCOUNT_AT, self._recent_accounts(), _FILL, _FILL_MAKER_AT, SEQ_AT
            ):
                self._append(account, first, breaks, kept, last, blob, now)
        else:
            self._record_python(data)
        if self.events * SLOT_BYTES > self.max_bytes:
            self._shed()

    def _record_python(self, data: bytes) -> None:
        """``_hxreplay.split``'s reading, one event at a time."""
        recent = self.board.recent
        account_at = ACCOUNT_AT
        u32, u64 = _U32.unpack_from, _U64.unpack_from
        found: dict[int, tuple[list[int], list[int]]] = {}  # account -> (seqs, offsets), in batch order
        for off in range(0, len(data) - SLOT_BYTES + 1, SLOT_BYTES):
            at = account_at[data[off]]
            if at < 0:
                continue
            account = u32(data, off + at)[0]
            if not account and data[off] == _FILL:
                account = u32(data, off + _FILL_MAKER_AT)[0]
            if account not in recent:
                continue
            got = found.get(account)
            if got is None:
                got = found[account] = ([], [])
            got[0].append(u64(data, off + SEQ_AT)[0])
            got[1].append(off)
        now = time.monotonic()
        for account, (seqs, offs) in found.items():
            breaks = [i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
            kept = breaks[-1] if breaks else 0
            blob = b"".join(data[o : o + SLOT_BYTES] for o in offs[kept:])
            self._append(account, seqs[0], len(breaks), seqs[kept], seqs[-1], blob, now)

    def _append(
        self, account: int, first: int, breaks: int, kept: int, last: int, blob: bytes, now: float
    ) -> None:
        """One account's events of a batch: the first seq, the holes between them (``breaks``),
        the events from the last hole on (``blob``, from seq ``kept`` to ``last``). A hole, here or
        against what is held, drops everything before it, as many gaps counted as there are."""
        h = self.histories.get(account)
        replace = h is None or breaks > 0
        if h is not None and first != h.last_seq + 1:
            self.gaps += 1
            replace = True
        self.gaps += breaks
        if replace:
            if h is not None:
                self.events -= h.count
            h = self.histories[account] = _History()
        assert h is not None
        k = len(blob) // SLOT_BYTES
        h.chunks.append((kept, blob, now))
        h.count += k
        h.last_seq = last
        self.events += k
        over = h.count - self.max_events
        while over > 0:  # the oldest events beyond the per-account bound
            seq0, old, t = h.chunks[0]
            held = len(old) // SLOT_BYTES
            if held <= over:
                h.chunks.popleft()
                cut = held
            else:
                h.chunks[0] = (seq0 + over, old[over * SLOT_BYTES :], t)
                cut = over
            h.count -= cut
            self.events -= cut
            over -= cut

    def _shed(self) -> None:
        """Over the byte budget: drop the least recently active accounts' histories."""

        def last_kept(account: int) -> float:
            chunks = self.histories[account].chunks
            return chunks[-1][2] if chunks else 0.0

        for account in sorted(self.histories, key=last_kept):
            if self.events * SLOT_BYTES <= self.max_bytes * 3 // 4:
                break
            self.events -= self.histories.pop(account).count

    def prune(self) -> None:
        """Age out events older than ``max_age_s``, and accounts no longer recent."""
        cutoff = time.monotonic() - self.max_age_s
        recent = self.board.recent
        for account in list(self.histories):
            h = self.histories[account]
            chunks = h.chunks
            while chunks and chunks[0][2] < cutoff:
                held = len(chunks.popleft()[1]) // SLOT_BYTES
                h.count -= held
                self.events -= held
            if account not in recent:
                self.events -= h.count
                del self.histories[account]

    def last_seq(self, account: int) -> int:
        h = self.histories.get(account)
        return h.last_seq if h is not None else 0

    def resume(self, account: int, after_seq: int) -> tuple[list[bytes] | None, str]:
        """The events after ``after_seq`` to send first, or (None, why it cannot be done)."""
        h = self.histories.get(account)
        if h is None:
            return None, "no history of this account on this gateway (resync with open_orders)"
        if after_seq >= h.last_seq:
            return [], ""  # nothing missed (or this gateway is behind: the session skips to after_seq)
        first = h.chunks[0][0] if h.chunks else h.last_seq + 1
        if after_seq + 1 < first:
            return None, f"history starts at seq {first}, after {after_seq} (resync with open_orders)"
        out = []
        for seq0, blob, _t in h.chunks:
            for off in range(max(0, after_seq + 1 - seq0) * SLOT_BYTES, len(blob), SLOT_BYTES):
                event = blob[off : off + SLOT_BYTES]
                if is_sent(event):
                    out.append(event)
        return out, ""
