"""Fixtures for settlement tests: one real anvil per session (stopped at the end), forge artifacts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.chain import ARTIFACTS_DIR, Artifact, Chain

REPO_ROOT = Path(__file__).resolve().parents[2]
NEEDED = (
    "ClearingHouse",
    "EscapeHatch",
    "Vault",
    "InsuranceFund",
    "HxTimelock",
    "TestToken",
    "SumTreeVerifier",
    "MockSmartAccount",
)


@pytest.fixture(scope="session")
def artifacts() -> dict[str, Artifact]:
    """Forge artifacts; builds them (offline, solc-js) if `contracts/out` is missing or stale."""
    srcs = list((REPO_ROOT / "contracts" / "src").rglob("*.sol"))
    outs = [ARTIFACTS_DIR / f"{n}.sol" / f"{n}.json" for n in NEEDED]
    newest_src = max(p.stat().st_mtime for p in srcs)
    if not all(o.exists() for o in outs) or min(o.stat().st_mtime for o in outs) < newest_src:
        subprocess.run(["bash", str(REPO_ROOT / "contracts/scripts/setup.sh")], check=True)
        forge = REPO_ROOT / "node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
        subprocess.run([str(forge), "build", "--offline"], cwd=REPO_ROOT / "contracts", check=True)
    return {n: Artifact.load(n) for n in NEEDED}


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    node = Anvil()
    node.start()
    try:
        yield node
    finally:
        node.stop()
    assert not node.is_running()


@pytest.fixture(scope="session")
def deployer(anvil: Anvil) -> Chain:
    return Chain(anvil.url, DEV_PRIVATE_KEYS[0])


@pytest.fixture
def snapshot(deployer: Chain) -> Iterator[None]:
    """Revert the chain after the test (and resync the deployer's nonce)."""
    snap = deployer.w3.provider.make_request("evm_snapshot", [])["result"]
    nonce = deployer.next_nonce
    yield
    deployer.w3.provider.make_request("evm_revert", [snap])
    deployer._nonce = nonce
