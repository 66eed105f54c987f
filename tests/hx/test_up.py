"""``hx up`` as a newcomer runs it: a real subprocess on the embedded config (ports moved), clients
on both protocols, a trade, the metrics endpoint parsed, and a clean stop that leaves no process,
shared-memory segment or semaphore behind."""

from __future__ import annotations

import asyncio
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
from hx.config import DEFAULT_CONFIG

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


async def _trade(url: str) -> tuple[int, int]:
    """A maker on the binary protocol, a taker on JSON: both see the fill."""
    async with HxClient(url, "bin") as maker, HxClient(url, "json") as taker:
        await maker.login(Account.create().key)
        await taker.login(Account.create().key)
        await maker.faucet("ETH", "2")
        await maker.faucet("USDC", "100")  # fees: ETH counts for nothing until it has a price
        await taker.faucet("USDC", "10000")
        await asyncio.sleep(0.5)  # the deposits reach risk before the orders
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
        return maker.account_id, len(fills)


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
        children = psutil.Process(proc.pid).children(recursive=True)
        names = {c.pid: " ".join(c.cmdline()) for c in children}
        assert len(children) >= 3, names  # shard, risk, gateway at least

        _account, fills = asyncio.run(_trade(f"ws://127.0.0.1:{port}"))
        assert fills == 2

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
