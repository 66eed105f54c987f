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

from engine.types.enums import MsgType
from engine.wire.layout import SEQ_AT, SLOT_BYTES, field_offset
from gateway.binary import GATEWAY_REQUEST_BIT
from gateway.protocol.vocabulary import PRIVATE_EVENTS, SINGLE_ACCOUNT_PRIVATE_EVENTS

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

    def touch(self, account: int) -> None:
        """A session of ``account`` is alive here (login, and periodically while it lives)."""
        now = time.time()
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


class _History:
    __slots__ = ("items", "last_seq")

    def __init__(self) -> None:
        self.items: deque[tuple[int, bytes, float]] = deque()  # (seq, event, monotonic time kept)
        self.last_seq = 0


class ReplayBuffer:
    """Private events by account, bounded; ``resume`` serves what a reconnecting session missed."""

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

    def record(self, data: bytes) -> None:
        """Keep the private events of recently active accounts from one risk batch (one pass,
        a few dict and deque operations per event: this runs on every risk batch)."""
        recent = self.board.recent
        if not recent:
            return
        now = time.monotonic()
        histories = self.histories
        account_at = ACCOUNT_AT
        u32, u64 = _U32.unpack_from, _U64.unpack_from
        added = 0
        for off in range(0, len(data), SLOT_BYTES):
            at = account_at[data[off]]
            if at < 0:
                continue
            account = u32(data, off + at)[0]
            if not account and data[off] == _FILL:
                account = u32(data, off + _FILL_MAKER_AT)[0]
            if account not in recent:
                continue
            seq = u64(data, off + SEQ_AT)[0]
            h = histories.get(account)
            if h is None:
                h = histories[account] = _History()
            elif seq != h.last_seq + 1:
                self.gaps += 1  # a hole: what we hold can no longer be served
                added -= len(h.items)
                h = histories[account] = _History()
            h.items.append((seq, data[off : off + SLOT_BYTES], now))
            h.last_seq = seq
            added += 1
            if len(h.items) > self.max_events:
                h.items.popleft()
                added -= 1
        self.events += added
        if self.events * SLOT_BYTES > self.max_bytes:
            self._shed()

    def _shed(self) -> None:
        """Over the byte budget: drop the least recently active accounts' histories."""

        def last_kept(account: int) -> float:
            items = self.histories[account].items
            return items[-1][2] if items else 0.0

        for account in sorted(self.histories, key=last_kept):
            if self.events * SLOT_BYTES <= self.max_bytes * 3 // 4:
                break
            self.events -= len(self.histories.pop(account).items)

    def prune(self) -> None:
        """Age out events older than ``max_age_s``, and accounts no longer recent."""
        cutoff = time.monotonic() - self.max_age_s
        recent = self.board.recent
        for account in list(self.histories):
            h = self.histories[account]
            items = h.items
            while items and items[0][2] < cutoff:
                items.popleft()
                self.events -= 1
            if account not in recent:
                self.events -= len(items)
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
        first = h.items[0][0] if h.items else h.last_seq + 1
        if after_seq + 1 < first:
            return None, f"history starts at seq {first}, after {after_seq} (resync with open_orders)"
        return [e for seq, e, _ in h.items if seq > after_seq and is_sent(e)], ""
