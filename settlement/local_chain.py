"""The local chain stage: anvil on a loopback port, the contracts deployed once, a manifest written.

The embedded default of ``[settlement]`` (no ``rpc_url``): the chain process keeps anvil's state in
``<state_dir>/anvil-state.json`` (dumped every second and on exit, loaded on start), so a restart of
the exchange finds its contracts, deposits and batches again; the manifest (``manifest.json``) and
the endpoint (``rpc.json``) are written before the stage says it is ready, so settlement, started
after it, reads both. A state that lost the contracts (deleted, or a kill -9 before the first dump)
is redeployed and settlement, whose journal no longer matches the chain, halts with an alarm
instead of posting onto a stranger's history.

Roles on the local chain use anvil's public dev keys (never on any other chain): deployer 0, governor
1, operator 2, guardian 3, watcher 5. Windows are short so a local withdrawal pays within a minute.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.chain import Chain
from settlement.deploy import DeployConfig, deploy

LOCAL_OPERATOR_KEY = DEV_PRIVATE_KEYS[2]
LOCAL_ROLES = {"governor": 1, "operator": 2, "guardian": 3, "watcher": 5}


@dataclass(frozen=True)
class LocalChainOptions:
    state_dir: str
    port: int
    block_time_s: float = 1.0
    dispute_window_s: int = 60
    run_dir: str = ""
    supervisor_pid: int = 0
    health_board: str = ""
    health_slot: int = -1

    @property
    def name(self) -> str:
        return "chain-0"


def port_for(run_id: str) -> int:
    """A stable loopback port per run (so a restart finds its chain at the same URL)."""
    return 20_000 + int.from_bytes(run_id.encode()[-8:].rjust(8, b"\0"), "big") % 20_000


def _address(i: int) -> str:
    return str(Account.from_key(DEV_PRIVATE_KEYS[i]).address)


def ensure_deployed(url: str, manifest_path: Path, dispute_window_s: int) -> dict[str, Any]:
    """The manifest of the contracts on ``url``: the saved one if its ClearingHouse is there, else a
    fresh deployment."""
    chain = Chain(url, DEV_PRIVATE_KEYS[0])
    if manifest_path.exists():
        m: dict[str, Any] = json.loads(manifest_path.read_text())
        if m.get("chain_id") == chain.chain_id and chain.w3.eth.get_code(
            m["contracts"]["ClearingHouse"]["address"]
        ):
            return m
    m = deploy(
        chain,
        DeployConfig(
            governor=_address(LOCAL_ROLES["governor"]),
            operator=_address(LOCAL_ROLES["operator"]),
            guardian=_address(LOCAL_ROLES["guardian"]),
            watchers=(_address(LOCAL_ROLES["watcher"]),),
            dispute_window_s=dispute_window_s,
            test_tokens=True,
        ),
    )
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(m, indent=1))
    tmp.replace(manifest_path)
    return m


def _kill_orphan(pid_file: Path) -> None:
    """A chain stage killed -9 leaves its anvil running on the port its restart needs: stop the
    anvil the previous instance recorded (only if that pid is still an anvil)."""
    try:
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            is_anvil = b"anvil" in f.read()
    except (OSError, ValueError):
        return
    if is_anvil:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return
        for _ in range(100):  # until it is gone (or a zombie): its port is free again
            try:
                if b") Z" in Path(f"/proc/{pid}/stat").read_bytes():
                    break
            except OSError:
                break
            time.sleep(0.05)


def run_local_chain(options: LocalChainOptions, ready: Any = None) -> None:
    """Process entry point: anvil up, contracts there, ready; then wait for SIGTERM."""
    from engine.host.health_board import open_health_slot
    from engine.host.process_identity import become_stage, remove_pid_file

    if options.supervisor_pid:
        become_stage(options.name, options.run_dir or options.state_dir, options.supervisor_pid)
    state = Path(options.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    stop = {"now": False}

    def on_term(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _kill_orphan(state / "anvil.pid")
    node = Anvil(
        block_time_s=options.block_time_s,
        port=options.port,
        extra_args=("--state", str(state / "anvil-state.json"), "--state-interval", "1"),
    )
    node.start()
    if node.pid is not None:
        (state / "anvil.pid").write_text(str(node.pid))
    try:
        ensure_deployed(node.url, state / "manifest.json", options.dispute_window_s)
        (state / "rpc.json").write_text(json.dumps({"rpc_url": node.url}))
        if ready is not None:
            ready.set()
        health = open_health_slot(options.health_board, options.health_slot)
        beats = 0
        while not stop["now"] and node.is_running():
            beats += 1
            health.beat(beats)
            time.sleep(0.2)
    finally:
        node.stop()
        if options.supervisor_pid:
            remove_pid_file(options.run_dir or options.state_dir, options.name)
