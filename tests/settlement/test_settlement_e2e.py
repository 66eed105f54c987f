"""Deposit -> credited -> trade -> settle -> withdraw, end to end: the whole exchange (local chain stage,
shard, risk, settlement, gateway) as separate processes, clients on the JSON WebSocket, money on anvil.

Bob deposits WETH and Alice USDC through the Vault (the SDK's ``deposit``); settlement credits them
once through risk; Bob sells Alice 1 ETH on ETH-USDC; the batches prove it on chain (the published
data rebuilds the leaves: Alice holds 1 WETH); Alice gets SETTLED on her private stream; Bob
withdraws 1000 USDC to Carol with his signature (the SDK's ``withdraw``), the batch carries it, and
after the dispute window settlement executes the payout: Carol holds the tokens."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from gateway.sdk import funds
from gateway.sdk.client import HxClient
from hx.pipeline import Pipeline
from hx.topology import Topology
from settlement.account_trees import AccountTrees
from settlement.anvil import DEV_PRIVATE_KEYS
from settlement.chain import Artifact
from settlement.sum_tree import CLAIM

REPO_ROOT = Path(__file__).resolve().parents[2]
ALICE, BOB, CAROL = DEV_PRIVATE_KEYS[6], DEV_PRIVATE_KEYS[7], "0x" + "ca" * 20
MINTER = DEV_PRIVATE_KEYS[4]
USDC, WETH = 0, 1
ETH_USDC = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(cond: Any, what: str, timeout_s: float = 60.0, diag: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {diag()}")


def _mint(w3: Web3, token: str, to: str, amount: int) -> None:
    acct = Account.from_key(MINTER)
    tok = w3.eth.contract(address=Web3.to_checksum_address(token), abi=Artifact.load("TestToken").abi)
    tx = tok.functions.mint(Web3.to_checksum_address(to), amount).build_transaction(
        {"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address)}
    )
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    )


@pytest.fixture
def exchange(tmp_path: Path, artifacts: Any) -> Any:
    port = _free_port()
    p = Pipeline(
        Topology(
            run_id=f"hx-st-{uuid.uuid4().hex[:8]}", shards=1, gateways=1, risk=1, settlement=1, chain=1,
            order_ring_slots=1 << 12, event_ring_slots=1 << 14,
        ),
        markets_path=REPO_ROOT / "config" / "hx.toml",
        state_dir=tmp_path,
        fsync="none",
        port=port,
        settlement={"block_time_s": 0, "batch_interval_s": 0.3, "dispute_window_s": 60, "local_port": _free_port()},
    )  # fmt: skip
    p.start()
    try:
        yield p, port
    finally:
        p.stop()


def test_deposit_trade_settle_withdraw_through_the_gateway(exchange: Any, tmp_path: Path) -> None:
    pipeline, port = exchange
    chain = json.loads((tmp_path / "settlement-chain.json").read_text())
    rpc = chain["rpc_url"]
    w3 = Web3(HTTPProvider(rpc))
    usdc, weth = chain["tokens"][USDC]["address"], chain["tokens"][WETH]["address"]
    alice, bob = Account.from_key(ALICE).address, Account.from_key(BOB).address
    _mint(w3, usdc, alice, 10_000 * 10**6)
    _mint(w3, weth, bob, 2 * 10**18)
    _mint(w3, usdc, bob, 5_000 * 10**6)
    funds.deposit(rpc, ALICE, chain, usdc, 10_000 * 10**6)
    funds.deposit(rpc, BOB, chain, weth, 2 * 10**18)
    funds.deposit(rpc, BOB, chain, usdc, 5_000 * 10**6)  # no oracle here: margin in USDC
    status_path = tmp_path / "settlement-0" / "status.json"

    def status() -> dict[str, Any]:
        try:
            return dict(json.loads(status_path.read_text()))
        except (OSError, ValueError):
            return {}

    _wait(lambda: status().get("deposits_credited_on_chain") == 3, "the deposits credited on chain")

    async def trade_and_withdraw() -> dict[str, Any]:
        url = f"ws://127.0.0.1:{port}"
        async with HxClient(url, "json") as a, HxClient(url, "json") as b:
            await a.login(ALICE)
            await b.login(BOB)
            await b.place(ETH_USDC, "sell", "3000", "1")
            await a.place(ETH_USDC, "buy", "3000", "1", tif="ioc")
            settled = None
            deadline = time.monotonic() + 30
            while settled is None and time.monotonic() < deadline:
                try:
                    msg = await asyncio.wait_for(a.control.get(), 1.0)
                except TimeoutError:
                    continue
                if msg.get("type") == "settled":
                    settled = msg
            assert settled is not None, "no SETTLED event on alice's stream"
            # (risk lets a token other than USDC out only at a known price, and no oracle runs here)
            answer = await funds.withdraw(b, BOB, chain, usdc, 1_000 * 10**6, CAROL, nonce=77)
            return {"settled": settled, "answer": answer}

    out = asyncio.run(trade_and_withdraw())
    assert out["answer"] == {
        "type": "withdraw",
        "nonce": 77,
        "status": "requested",
        "id": out["answer"]["id"],
    }
    ch = w3.eth.contract(address=chain["clearing_house"], abi=Artifact.load("ClearingHouse").abi)
    alarms = tmp_path / "settlement-0" / "alarms.log"
    _wait(
        lambda: ch.functions.nonceUsed(bob, 77).call(),
        "the withdrawal in an accepted batch",
        diag=lambda: f"{status()} {alarms.read_text() if alarms.exists() else ''}",
    )
    # the published data alone: alice holds 1 WETH, bob 1 WETH and 8000 - 1000 (queued for carol) USDC
    blobs = [p.read_bytes() for p in sorted((tmp_path / "settlement-0" / "batches").glob("*.hxd1"))]
    trees = AccountTrees.replay([t["address"] for t in chain["tokens"]], blobs)
    _wait(lambda: status().get("pending_batch") is None, "the batch confirmed")
    assert trees.leaf(alice, WETH, CLAIM) == 10**18
    assert trees.leaf(bob, WETH, CLAIM) == 10**18
    assert trees.leaf(bob, USDC, CLAIM) == 7_000 * 10**6
    w3.provider.make_request("evm_increaseTime", [61])
    w3.provider.make_request("evm_mine", [])
    tok = w3.eth.contract(address=Web3.to_checksum_address(usdc), abi=Artifact.load("TestToken").abi)
    _wait(
        lambda: tok.functions.balanceOf(Web3.to_checksum_address(CAROL)).call() == 1_000 * 10**6, "carol paid"
    )
    assert not status()["halted"], alarms.read_text() if alarms.exists() else ""
