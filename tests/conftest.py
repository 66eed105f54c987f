"""Suite-wide guards: no test may leave shared-memory segments or child processes behind."""

from __future__ import annotations

import os

import psutil
import pytest
from hypothesis import HealthCheck, settings

# Suite-wide hypothesis profile. Two noisy vCPUs shared with the processes under test make a
# per-example wall-clock deadline and the "generation too slow" check measure the machine, not the
# code (CI flaked on them); a test's own @settings still overrides what it names.
settings.register_profile("hx", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("hx")


def _hx_segments() -> set[str]:
    """Segments this test session owns: hx rings are named with the creating process's pid."""
    pid = str(os.getpid())
    return {name for name in os.listdir("/dev/shm") if name.startswith("hx") and pid in name}


def _is_leak(proc: psutil.Process) -> bool:
    """A live child that is not multiprocessing's own long-lived helper (resource tracker)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    return "resource_tracker" not in cmd and "forkserver" not in cmd


@pytest.fixture(scope="session", autouse=True)
def no_leaks():
    before = _hx_segments()
    yield
    leaked = _hx_segments() - before
    for name in leaked:  # clean up so one failure does not cascade, then fail loudly
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except FileNotFoundError:
            pass
    children = [p for p in psutil.Process().children(recursive=True) if _is_leak(p)]
    for child in children:
        child.kill()
    assert not leaked, f"tests leaked shared-memory segments: {sorted(leaked)}"
    assert not children, f"tests leaked processes: {[(c.pid, c.cmdline()) for c in children]}"


@pytest.fixture
def ring_name(request) -> str:
    """A ring name unique to this test and process."""
    return f"hx-test-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"
