"""`hx status`: what runs for an exchange, read from its state directory (pid files, the run lock).

Reads only files and /proc (psutil), so it works from any shell while the exchange runs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import psutil

from engine.host.process_identity import read_pid_files


def _supervisor(state_dir: Path) -> int | None:
    """The pid holding the run lock, or None when no supervisor runs."""
    path = state_dir / "hx.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def collect_status(state_dir: Path | str) -> dict[str, Any]:
    """``{"supervisor": pid|None, "processes": [{name, pid, alive, cpu_s, rss_mb}, ...]}``."""
    state_dir = Path(state_dir)
    procs = []
    for name, pid in read_pid_files(state_dir).items():
        entry: dict[str, Any] = {"name": name, "pid": pid, "alive": False}
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                times = p.cpu_times()
                entry.update(
                    alive=True,
                    cpu_s=round(times.user + times.system, 2),
                    rss_mb=round(p.memory_info().rss / 2**20, 1),
                )
        except psutil.Error:
            pass
        procs.append(entry)
    return {"supervisor": _supervisor(state_dir), "processes": procs}
