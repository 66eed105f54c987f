"""The chain node killed -9 mid-stream: the sender's attempts are errors while it is away (nothing
moves), and once it is back with its saved state the sealed batch lands exactly once, the deposit
is credited once, and the watcher sees nothing twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from settlement_fixtures import USDC, USDC_ASSET
from test_batch_sender import OnChain

from settlement.anvil import DEV_PRIVATE_KEYS, Anvil, find_free_port
from settlement.batch_sender import ChainUnavailable
from settlement.chain import Chain


def _node(port: int, state: Path) -> Anvil:
    return Anvil(port=port, extra_args=("--state", str(state), "--state-interval", "1"))


def test_anvil_killed_9_loses_and_doubles_nothing(tmp_path: Path, artifacts: Any) -> None:
    port, state = find_free_port(), tmp_path / "anvil-state.json"
    node = _node(port, state).start()
    try:
        s = OnChain(node, Chain(node.url, DEV_PRIVATE_KEYS[0]))
        s.deposit("alice", USDC, 500 * 10**6)
        s.watch()
        s.settle()
        s.h.events(s.h.risk.balance(1, USDC_ASSET, -7), s.h.risk.balance(2, USDC_ASSET, 7))
        s.h.tick()
        b2 = s.h.engine.pending
        assert b2 is not None
        time.sleep(2.5)  # the node saves its state every second
        os.kill(node.pid or 0, signal.SIGKILL)
        node.stop()
        with pytest.raises(ChainUnavailable):
            s.sender.post(b2)  # away: an error, nothing half-done
        with pytest.raises(ChainUnavailable):
            s.watcher.poll()
        node = _node(port, state).start()
        block = s.sender.post(b2)
        s.h.confirm(block)
        ch = s.ch()
        assert ch.functions.lastBatchId().call() == 2 and ch.functions.lastBatchHash().call() == b2.hash
        assert ch.functions.lastCreditedDepositId().call() == 1
        assert s.sender.post(b2) == block and s.sender.sent == 2  # batch 1 and batch 2, once each
        s.watch()
        assert s.h.engine.deposits_seen == 1 and s.h.risk.balances[(1, USDC_ASSET)] == 500 * 10**6 - 7
    finally:
        node.stop()
