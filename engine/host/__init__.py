"""The host the processes run on: how a hot-path process asks the kernel for CPU time."""

from engine.host.realtime_priority import (
    REALTIME_PRIORITY_MAX,
    SPINNING_WAITS,
    apply_realtime_priority,
    ensure_realtime_priority,
    get_scheduling,
)

__all__ = [
    "REALTIME_PRIORITY_MAX",
    "SPINNING_WAITS",
    "apply_realtime_priority",
    "ensure_realtime_priority",
    "get_scheduling",
]
