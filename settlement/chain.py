"""Chain: a web3 connection with a signing account, forge artifacts, deploys and checked transactions.

Invariants: every transaction is sent with an explicit nonce from this object's counter (no gaps,
no reuse within the process); a transaction whose receipt has status 0 raises ``TxFailed``.
Artifacts come from ``contracts/out`` (written by ``forge build``); never from the network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3
from web3.contract import Contract

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "contracts" / "out"


class TxFailed(RuntimeError):
    """A transaction was mined with status 0, or could not be sent."""


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: ABI, creation bytecode, and the hash of the artifact file."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    file_sha256: str

    @classmethod
    def load(cls, name: str, artifacts_dir: Path = ARTIFACTS_DIR) -> Artifact:
        path = artifacts_dir / f"{name}.sol" / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: run `bash contracts/scripts/test.sh` or `forge build` first")
        raw = path.read_bytes()
        data = json.loads(raw)
        code = data["bytecode"]["object"]
        return cls(name, data["abi"], bytes.fromhex(code.removeprefix("0x")), hashlib.sha256(raw).hexdigest())


def create_address(sender: str, nonce: int) -> str:
    """Address of the contract ``sender`` creates with ``nonce`` (CREATE: keccak(rlp([sender, nonce])))."""
    raw = keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:]
    return to_checksum_address(raw)


class Chain:
    """A JSON-RPC endpoint and the account that signs for this process.

    Parameters
    ----------
    rpc_url : the endpoint (anvil or any EVM chain).
    private_key : hex key that signs every transaction.
    """

    def __init__(self, rpc_url: str, private_key: str, timeout_s: float = 60.0) -> None:
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
        self.account = Account.from_key(private_key)
        self.address: str = self.account.address
        self.chain_id: int = self.w3.eth.chain_id
        self._nonce: int = int(self.w3.eth.get_transaction_count(self.address, "pending"))
        self.timeout_s = timeout_s

    @property
    def next_nonce(self) -> int:
        return self._nonce

    def predict_address(self, ahead: int = 0) -> str:
        """Address of the contract this account's ``ahead``-th next deployment will have."""
        return create_address(self.address, self._nonce + ahead)

    def _send(self, tx: dict[str, Any]) -> dict[str, Any]:
        tx = {**tx, "from": self.address, "nonce": self._nonce, "chainId": self.chain_id}
        if "gas" not in tx:
            tx["gas"] = int(self.w3.eth.estimate_gas(tx) * 1.2) + 10_000  # type: ignore[arg-type]
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            base = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
            tip = self.w3.eth.max_priority_fee
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = 2 * int(base) + int(tip)
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        self._nonce += 1
        receipt = dict(self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout_s))
        if receipt["status"] != 1:
            raise TxFailed(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def deploy(self, artifact: Artifact, *args: Any) -> tuple[Contract, dict[str, Any]]:
        """Deploy ``artifact`` with constructor ``args``; returns the bound contract and the receipt."""
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*args).build_transaction({"from": self.address, "nonce": self._nonce})
        tx.pop("nonce", None)
        receipt = self._send({k: v for k, v in tx.items() if k in ("data", "gas", "value")})
        address = receipt["contractAddress"]
        return self.w3.eth.contract(address=address, abi=artifact.abi), receipt

    def transact(self, fn: Any, value: int = 0) -> dict[str, Any]:
        """Send a contract function call (``contract.functions.f(...)``); returns the receipt."""
        tx = fn.build_transaction({"from": self.address, "nonce": self._nonce, "value": value})
        return self._send({k: v for k, v in tx.items() if k in ("to", "data", "gas", "value")})

    def at(self, artifact: Artifact, address: str) -> Contract:
        """Bind ``artifact``'s ABI to ``address``."""
        return self.w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)

    def code_hash(self, address: str) -> str:
        """keccak256 of the runtime code at ``address`` (hex)."""
        return "0x" + keccak(bytes(self.w3.eth.get_code(to_checksum_address(address)))).hex()
