"""Who a stage process is, to the kernel and to the operator: its title, its pid file, its parent.

* ``hx shard-0`` in ``ps`` and ``top`` (setproctitle), so processes can be told apart;
* ``<state>/pids/<name>.pid`` holds its pid while it runs, so ``hx status`` finds it;
* it dies with its supervisor: ``PR_SET_PDEATHSIG`` asks the kernel for SIGTERM when the parent
  exits (even by ``kill -9``), so no shard or gateway keeps serving a port unsupervised. The
  signal arrives as a normal SIGTERM, so the process still snapshots and exits cleanly. If the
  parent died before the request took effect, the process exits at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def set_title(name: str) -> None:
    """``hx <name>`` as the process title (no-op where setproctitle is missing)."""
    try:
        from setproctitle import setproctitle
    except ImportError:  # pragma: no cover - a dependency of the project
        return
    setproctitle(f"hx {name}")


def die_with_parent(expected_parent: int, sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when the parent exits; True if the request is in force.

    Returns False (and sends ``sig`` to ourselves) when the parent is already gone.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)
        return False
    return True


def pid_path(state_dir: str | Path, name: str) -> Path:
    return Path(state_dir) / "pids" / f"{name}.pid"


def write_pid_file(state_dir: str | Path, name: str) -> Path:
    """Write our pid to ``<state>/pids/<name>.pid`` (atomically); returns the path."""
    path = pid_path(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)
    return path


def remove_pid_file(state_dir: str | Path, name: str) -> None:
    """Remove our pid file if it still names us (a successor may have replaced it)."""
    path = pid_path(state_dir, name)
    try:
        if int(path.read_text().strip() or 0) == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass


def read_pid_files(state_dir: str | Path) -> dict[str, int]:
    """``{process name: pid}`` for every pid file under ``<state>/pids`` (stale ones included)."""
    out: dict[str, int] = {}
    folder = Path(state_dir) / "pids"
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.pid")):
        try:
            out[path.stem] = int(path.read_text().strip())
        except ValueError:
            continue
    return out


def become_stage(name: str, state_dir: str | Path, parent_pid: int) -> None:
    """Everything a freshly spawned stage process does first: title, pid file, die with parent,
    structured (JSON) logs."""
    from engine.host.json_log import setup_json_logging

    set_title(name)
    die_with_parent(parent_pid)
    write_pid_file(state_dir, name)
    setup_json_logging(name)


def handle_stage_signals(proc: Any) -> None:
    """The signals every stateful stage answers the same way: SIGTERM sets ``proc.stop_requested``
    (it snapshots and exits at the end of its record), SIGUSR1 ``proc.snapshot_requested``; SIGINT
    is ignored (Ctrl-C is the supervisor's, which stops the stages in order)."""

    def on_term(signum: int, frame: Any) -> None:
        proc.stop_requested = True

    def on_usr1(signum: int, frame: Any) -> None:
        proc.snapshot_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, on_usr1)
