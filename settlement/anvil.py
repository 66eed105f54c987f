"""Anvil: a local EVM chain process from the npm-installed binary, on a free 127.0.0.1 port.

Invariants: ``start()`` returns only once the JSON-RPC endpoint answers ``eth_chainId``; ``stop()``
terminates the process (then kills it after a grace period) and reaps it, so nothing outlives the owner.
Used by the tests and, later, by the supervisor as the embedded default chain.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_BIN = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
LOCAL_CHAIN_ID = 31337

# anvil's default mnemonic ("test test ... junk") accounts: public knowledge, local chains only.
DEV_PRIVATE_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
)


def find_free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, params: list[object] | None = None, timeout_s: float = 2.0) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())["result"]


class Anvil:
    """One anvil process. Use as a context manager, or ``start()``/``stop()``.

    Parameters
    ----------
    chain_id : chain id to report (31337 keeps TestToken deployable).
    block_time_s : seconds per block; ``None`` mines one block per transaction (fastest for tests).
    port : fixed port, or ``None`` for a free one.
    binary : path of the anvil binary (default: ``node_modules``; env ``HX_ANVIL_BIN`` overrides).
    """

    def __init__(
        self,
        chain_id: int = LOCAL_CHAIN_ID,
        block_time_s: float | None = None,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.chain_id = chain_id
        self.block_time_s = block_time_s
        self.port = port
        self.binary = Path(binary or os.environ.get("HX_ANVIL_BIN") or ANVIL_BIN)
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The JSON-RPC endpoint."""
        if self.port is None:
            raise RuntimeError("anvil not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> Anvil:
        """Start anvil and wait until it answers; raises ``RuntimeError`` on failure (process reaped)."""
        if self.is_running():
            return self
        if not self.binary.exists():
            raise RuntimeError(f"anvil binary not found at {self.binary}: run `make setup`")
        fixed_port = self.port
        err = ""
        for _attempt in range(3):  # a probed free port can be taken before anvil binds it: retry
            port = fixed_port or find_free_port()
            cmd = [
                str(self.binary),
                "--host", "127.0.0.1",
                "--port", str(port),
                "--chain-id", str(self.chain_id),
                "--silent",
                *(("--block-time", str(self.block_time_s)) if self.block_time_s else ()),
                *self.extra_args,
            ]  # fmt: skip
            # stderr to a file, not a pipe: nobody drains a pipe, and a full one would block anvil
            self._stderr = tempfile.TemporaryFile()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
            self.port = port
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    if int(str(_rpc(self.url, "eth_chainId")), 16) == self.chain_id:
                        return self
                except OSError:
                    time.sleep(0.05)
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace").strip()
            self.stop()
            self.port = fixed_port
            if fixed_port is not None or "in use" not in err:
                break
        raise RuntimeError(f"anvil did not start: {err or 'timeout'}")

    def stop(self, grace_s: float = 5.0) -> None:
        """Terminate (then kill) and reap the process. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
