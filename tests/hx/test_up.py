"""``hx up`` as a newcomer runs it: a real subprocess on the embedded config (ports moved) with its
local chain, deposits made on that chain, clients on both protocols, a trade, a batch settled on
chain and the taker told, the metrics endpoint parsed, and a clean stop that leaves no process,
shared-memory segment or FIFO behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families

from engine.host.process_identity import read_pid_files
from engine.types.market_spec import load_markets
from gateway.sdk import Fill, HxClient
from gateway.sdk.events import Balance
from hx.config import DEFAULT_CONFIG
from hx.demo.chain_funding import ChainFunder

pytestmark = pytest.mark.timeout(240)

ETH_USDC = next(m for m, spec in load_markets(DEFAULT_CONFIG).items() if spec.symbol == "ETH-USDC")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, port: int, metrics_port: int) -> Path:
    """The embedded config with this test's ports (everything else as shipped)."""
    text = DEFAULT_CONFIG.read_text()
    text = re.sub(r"(?m)^port = \d+", f"port = {port}", text, count=1)
    text = re.sub(r"(?m)^metrics_port = \d+", f"metrics_port = {metrics_port}", text, count=1)
    path = tmp / "hx.toml"
    path.write_text(text)
    return path


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> list[str]:
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line.rstrip())
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} within {timeout_s}s; hx up said: {seen}")


def _status(state: Path) -> dict:
    path = state / "settlement-0" / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


async def _credited(client: HxClient, asset: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ev = await asyncio.wait_for(client.events.get(), 1.0)
        except TimeoutError:
            continue
        if isinstance(ev, Balance) and ev.asset == asset and ev.balance > 0:
            return
    raise AssertionError(f"asset {asset} never credited")


async def _trade(url: str, state: Path) -> tuple[int, int, dict]:
    """Deposits on the chain; a maker on the binary protocol, a taker on JSON: both see the fill,
    then a batch after it is accepted on chain and the taker hears it is settled."""
    funder = await asyncio.to_thread(ChainFunder.wait_for, state)
    maker_key, taker_key = ("0x" + bytes(Account.create().key).hex() for _ in range(2))
    async with HxClient(url, "bin") as maker, HxClient(url, "json") as taker:
        await maker.login(maker_key)
        await taker.login(taker_key)
        await asyncio.to_thread(funder.fund, maker_key, "ETH", 2)
        await _credited(maker, 2)
        await asyncio.to_thread(funder.fund, maker_key, "USDC", 100)  # fees: ETH counts once priced
        await _credited(maker, 0)
        await asyncio.to_thread(funder.fund, taker_key, "USDC", 10_000)
        await _credited(taker, 0)
        await maker.place(ETH_USDC, "sell", "3000", "1")
        await taker.place(ETH_USDC, "buy", "3000", "1", tif="ioc")
        fills = []
        for client in (maker, taker):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ev = await asyncio.wait_for(client.events.get(), 10)
                if isinstance(ev, Fill):
                    fills.append(ev.size_lots)
                    break
        settled: dict = {}
        deadline = time.monotonic() + 60
        while not settled and time.monotonic() < deadline:
            try:
                msg = await asyncio.wait_for(taker.control.get(), 1.0)
            except TimeoutError:
                continue
            if msg.get("type") == "settled":
                settled = msg
        return maker.account_id, len(fills), settled


def test_hx_up_serves_both_protocols_metrics_and_stops_clean(tmp_path: Path) -> None:
    port, metrics_port = _free_port(), _free_port()
    state = tmp_path / "state"
    name = f"t-up-{os.getpid()}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hx.cli",
            "up",
            "--config",
            str(_config(tmp_path, port, metrics_port)),
            "--state-dir",
            str(state),
            "--name",
            name,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        said = _wait_for_line(proc, "exchange running", 120)
        text = "\n".join(said)
        # the first lines name every endpoint it serves
        assert f"ws://127.0.0.1:{port}/v1/bin" in text and f"ws://127.0.0.1:{port}/v1/json" in text
        assert f"http://127.0.0.1:{metrics_port}/metrics" in text
        assert "chain rpc http://127.0.0.1:" in text  # the local chain's endpoint
        children = psutil.Process(proc.pid).children(recursive=True)
        names = {c.pid: " ".join(c.cmdline()) for c in children}
        assert len(children) >= 3, names  # shard, risk, gateway at least

        _account, fills, settled = asyncio.run(_trade(f"ws://127.0.0.1:{port}", state))
        assert fills == 2
        assert settled and settled["batch_id"] >= 1, settled  # the fill is in a batch accepted on chain
        status = _status(state)
        assert status["deposits_credited_on_chain"] >= 3 and not status["halted"], status

        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        up = {s.labels["process"]: s.value for s in families["hx_process_up"].samples}
        assert {"shard-0", "risk-0", "gateway-0"} <= set(up) and set(up.values()) == {1.0}
        assert "hx_ring_lag" in families

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=10)  # exiting takes a moment on a busy host
    assert not [names.get(p.pid) for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    run_id = f"hx-{name}"
    leftovers = [p for p in os.listdir("/dev/shm") if run_id in p]  # rings, health board, semaphores
    leftovers += [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"hx-wake-{run_id}")]
    assert leftovers == [], leftovers
    assert read_pid_files(state) == {}
