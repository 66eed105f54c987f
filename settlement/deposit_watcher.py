"""Deposit watcher: the Vault's ``Deposited`` events once they hold N confirmations, in id order.

Invariants: ``poll`` returns each deposit id at most once per watcher, in increasing order from
``next_id``, and only deposits whose block is at least ``confirmations`` deep; a log whose id is not
the next one (a gap: a log the node lost, or garbage) stops the scan there and raises
``gap`` to a message (the caller alarms; nothing after the gap is returned until it is filled); a
malformed log or answer raises ``ChainUnavailable`` and moves nothing. The caller journals what it
gets; on restart it makes a watcher with ``next_id`` = the engine's last seen id + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3

from settlement.batch_sender import ChainUnavailable
from settlement.chain import Artifact


@dataclass(frozen=True)
class ChainDeposit:
    deposit_id: int
    account: str
    token: str
    amount: int
    deposited_at: int
    block: int


class DepositWatcher:
    """Reads confirmed deposits of one Vault."""

    def __init__(
        self, rpc_url: str, vault: str, next_id: int = 1, confirmations: int = 1, from_block: int = 0,
        rpc_timeout_s: float = 5.0,
    ) -> None:  # fmt: skip
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": rpc_timeout_s}))
        self.vault = self.w3.eth.contract(address=to_checksum_address(vault), abi=Artifact.load("Vault").abi)
        self.next_id = next_id
        self.confirmations = max(1, confirmations)
        self.scanned = from_block - 1  # every block up to here is read
        self.gap = ""

    def poll(self, max_blocks: int = 5000) -> list[ChainDeposit]:
        """Deposits newly confirmed since the last call."""
        to = confirmed_up_to(self.w3, self.scanned, self.confirmations, max_blocks)
        if to is None:
            return []
        try:
            logs = self.vault.events.Deposited().get_logs(from_block=self.scanned + 1, to_block=to)
        except Exception as exc:
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc
        out: list[ChainDeposit] = []
        for log in sorted(logs, key=_log_id):
            d = _parse(log)
            if d.deposit_id < self.next_id:
                continue  # seen already (a rescan after an error)
            if d.deposit_id != self.next_id:
                self.gap = f"deposit {d.deposit_id} in block {d.block}, expected {self.next_id}"
                self.scanned = d.block - 1  # read again from the gap's block next time
                return out
            out.append(d)
            self.next_id += 1
        self.scanned = to
        self.gap = ""
        return out


def confirmed_up_to(w3: Web3, scanned: int, confirmations: int, max_blocks: int) -> int | None:
    """The last block a watcher that has read every block up to ``scanned`` may read now: at most
    ``max_blocks`` more, none with fewer than ``confirmations`` (None: nothing new is confirmed)."""
    try:
        head = int(w3.eth.block_number)
    except Exception as exc:
        raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc
    safe = head - confirmations + 1
    if safe <= scanned:
        return None
    return min(safe, scanned + max_blocks)


def _log_id(log: Any) -> int:
    try:
        return int(log["args"]["depositId"])
    except Exception as exc:
        raise ChainUnavailable(f"malformed Deposited log: {log!r}") from exc


def _parse(log: Any) -> ChainDeposit:
    try:
        a = log["args"]
        d = ChainDeposit(
            int(a["depositId"]), to_checksum_address(a["account"]), to_checksum_address(a["token"]),
            int(a["amount"]), int(a["depositedAt"]), int(log["blockNumber"]),
        )  # fmt: skip
    except Exception as exc:
        raise ChainUnavailable(f"malformed Deposited log: {exc}") from exc
    if d.amount <= 0 or d.deposit_id <= 0:
        raise ChainUnavailable(f"malformed Deposited log: {d}")
    return d
