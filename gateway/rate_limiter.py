"""Token-bucket rate limits: ``rate`` tokens per second refill a bucket of at most ``burst`` tokens.

A command costs one token; when the bucket is short the command is refused with RATE_LIMITED and
the time until a token is available (``retry_after_s``), and the connection stays up. Time is the
monotonic clock in seconds, injectable for tests. ``rate <= 0`` disables the limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp", "_clock")

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self.tokens = self.burst
        self._clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now

    def try_take(self, n: int = 1) -> int:
        """Take up to ``n`` tokens; returns how many were granted (all-or-some, in order)."""
        if self.rate <= 0:
            return n
        if self.tokens < n:
            self._refill()
        granted = min(n, int(self.tokens))
        if granted > 0:
            self.tokens -= granted
        return granted

    def retry_after_s(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens will be available (0 if they are now)."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        missing = n - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate
