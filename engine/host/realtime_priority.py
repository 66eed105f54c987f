"""Real-time scheduling (SCHED_FIFO) for the processes on the order path: opt-in, checked, never fatal.

Why: on a small machine every core is shared with kernel threads. Under the default scheduler a
kernel thread that wakes on a shard's or gateway's core runs a whole slice (1.5-2 ms measured here,
e.g. ``kdamond``) before the woken hot-path process gets its core back, and every order in flight
waits for it: that is the p99 - p50 of the round trip. A SCHED_FIFO process preempts normal
threads the moment it wakes, so they only run in its idle time.

The price: a SCHED_FIFO process that never sleeps starves everything else on its core (the kernel
keeps back only 50 ms of every second for the rest). So priority is refused for wait strategies that spin
(``SPINNING_WAITS``); the process must park when idle (``blocking`` or ``sleep``). Priority 0 means
off (the default); 1-49 stays below the kernel's own real-time threads (interrupt threads run at 50).
"""

from __future__ import annotations

import os

REALTIME_PRIORITY_MAX = 49
SPINNING_WAITS = frozenset({"busy-spin", "spin-then-backoff", "busy-poll"})


def ensure_realtime_priority(priority: int, wait: str) -> None:
    """Raise ValueError (with the reason) unless ``priority`` is usable with wait strategy ``wait``."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"realtime priority must be an integer, got {priority!r}")
    if not 0 <= priority <= REALTIME_PRIORITY_MAX:
        raise ValueError(
            f"realtime priority {priority}: want 0 (off) or 1-{REALTIME_PRIORITY_MAX} "
            "(below the kernel's interrupt threads at 50)"
        )
    if priority and wait in SPINNING_WAITS:
        raise ValueError(
            f"realtime priority {priority} with wait {wait!r}: a SCHED_FIFO process that spins starves "
            "the kernel threads of its core; use a wait that parks (blocking, sleep) or priority 0"
        )


def apply_realtime_priority(priority: int) -> str:
    """Put the calling process (and threads it starts later) under SCHED_FIFO at ``priority``.

    Returns what the process now runs under: ``"normal"`` (priority 0), ``"fifo:N"``, or
    ``"normal (fifo:N refused: ...)"`` when the kernel says no (no CAP_SYS_NICE, an RLIMIT_RTPRIO
    below N, a container without real-time budget): the process then runs as before rather than fail.
    """
    if not priority:
        return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"normal (fifo:{priority} refused: {exc.strerror or exc})"
    return f"fifo:{priority}"


def get_scheduling(pid: int) -> str:
    """What the kernel runs process ``pid`` under: ``"fifo:N"``, ``"rr:N"`` or ``"normal"``."""
    policy = os.sched_getscheduler(pid)
    if policy in (os.SCHED_FIFO, os.SCHED_RR):
        name = "fifo" if policy == os.SCHED_FIFO else "rr"
        return f"{name}:{os.sched_getparam(pid).sched_priority}"
    return "normal"
