"""CPU time the hypervisor took from this VM while a bench ran (the ``steal`` column of /proc/stat).

Printed by the latency benches so that a tail caused by the host (here: every fsync reaching the
virtual disk stalls a vCPU for milliseconds) can be told apart from one caused by our code.
"""

from __future__ import annotations

import os

_TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def read_steal_ms(stat_path: str = "/proc/stat") -> float | None:
    """Steal time summed over all CPUs since boot, in ms; None where the kernel does not report it."""
    try:
        with open(stat_path, encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) * _TICK_MS


class StealMeter:
    """``with StealMeter() as m: ...`` then ``m.ms``: steal during the block (None if unknown)."""

    def __init__(self) -> None:
        self.ms: float | None = None
        self._start: float | None = None

    def __enter__(self) -> StealMeter:
        self._start = read_steal_ms()
        return self

    def __exit__(self, *exc: object) -> None:
        end = read_steal_ms()
        self.ms = None if end is None or self._start is None else round(end - self._start, 1)
