"""The replay buffer's specification: one event at a time, a deque of (seq, event, time) per
account. ``gateway.replay_buffer.ReplayBuffer`` keeps a batch's events of one account as one chunk
of bytes and must give the same answers: ``test_replay_buffer.py`` holds the two to it."""

from __future__ import annotations

import time
from collections import deque

from engine.wire.layout import SEQ_AT, SLOT_BYTES
from gateway.replay_buffer import _FILL, _FILL_MAKER_AT, _U32, _U64, ACCOUNT_AT, SessionBoard, is_sent


class _History:
    __slots__ = ("items", "last_seq")

    def __init__(self) -> None:
        self.items: deque[tuple[int, bytes, float]] = deque()  # (seq, event, monotonic time kept)
        self.last_seq = 0


class PerEventReplayBuffer:
    """Private events by account, bounded, one deque entry per event (the specification)."""

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
