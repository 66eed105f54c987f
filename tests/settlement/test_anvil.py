"""Anvil lifecycle: starts on a free loopback port, answers, stops and is reaped."""

from __future__ import annotations

import psutil
import pytest

from settlement.anvil import Anvil, _rpc


def test_start_answer_stop_reaped() -> None:
    with Anvil() as a:
        pid = a.pid
        assert pid is not None and a.is_running()
        assert a.url.startswith("http://127.0.0.1:")
        assert int(str(_rpc(a.url, "eth_chainId")), 16) == 31337
    assert not a.is_running()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    a.stop()  # idempotent


def test_two_instances_get_distinct_ports() -> None:
    with Anvil() as a, Anvil(chain_id=1337) as b:
        assert a.port != b.port
        assert int(str(_rpc(b.url, "eth_chainId")), 16) == 1337


def test_missing_binary_raises() -> None:
    with pytest.raises(RuntimeError, match="not found"):
        Anvil(binary="/nonexistent/anvil").start()
