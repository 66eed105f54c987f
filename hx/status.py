"""`hx status`: what runs for an exchange, read from its state directory (pid files, the run lock).

Reads only files and /proc (psutil), so it works from any shell while the exchange runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
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


def _health_and_lag(
    state_dir: Path, sample_s: float
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """From the run's manifest: each process's beat age, progress rate and backpressure, and each
    ring's lag per consumer (published - cursor). Empty when the run is not up."""
    try:
        manifest = json.loads((state_dir / "run.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}, []
    from engine.host.health_board import HealthBoard
    from engine.ring import RingBuffer, RingError

    health: dict[str, dict[str, Any]] = {}
    try:
        board = HealthBoard.attach(manifest["health_board"])
    except (FileNotFoundError, ValueError):
        return {}, []
    try:
        first = {name: board.read(slot) for name, slot in manifest["slots"].items()}
        time.sleep(sample_s)
        now = time.monotonic_ns()
        for name, slot in manifest["slots"].items():
            entry = board.read(slot)
            if not entry["pid"]:
                continue
            rate = (entry["progress"] - first[name]["progress"]) / sample_s
            health[name] = {
                "beat_age_ms": round((now - entry["beat_ns"]) / 1e6, 1),
                "progress": entry["progress"],
                "progress_per_s": round(rate, 1),
                "waiting_on_downstream_ms": round((now - entry["waiting_since_ns"]) / 1e6, 1)
                if entry["waiting_since_ns"]
                else 0.0,
            }
    finally:
        board.close()
    lags = []
    for spec in manifest["rings"]:
        try:
            ring = RingBuffer.attach(spec["name"])
        except RingError:
            continue
        try:
            lags.append(
                {
                    "ring": spec["name"],
                    "producer": spec["producer"],
                    "published": ring.published,
                    "lag": {
                        c: ring.published - ring.consumer_cursor(i) for i, c in enumerate(spec["consumers"])
                    },
                }
            )
        finally:
            ring.close()
    return health, lags


def collect_status(state_dir: Path | str, sample_s: float = 0.5) -> dict[str, Any]:
    """``{"supervisor", "processes": [{name, pid, alive, cpu_s, rss_mb, health}], "rings": [...]}``."""
    state_dir = Path(state_dir)
    health, lags = _health_and_lag(state_dir, sample_s) if _supervisor(state_dir) else ({}, [])
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
        if name in health:
            entry["health"] = health[name]
        procs.append(entry)
    return {"supervisor": _supervisor(state_dir), "processes": procs, "rings": lags}
