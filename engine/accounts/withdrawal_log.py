"""Signed withdrawals, from the gateways to settlement: one append-only file in the run's state dir.

A withdrawal needs two things to be paid: risk's hold (the gateway's WITHDRAW_REQUEST) and the
account's EIP-712 signature, which only the chain checks for good and which does not fit a ring
slot. Gateways append the signed request here (``withdrawals.log``), then send the hold request;
settlement tails the file from the offset its journal holds, so each line is read once however
often either side restarts.

Format: one JSON object a line, keys ``account_id account token amount destination nonce expiry
signature`` (addresses and the signature 0x-hex, integers as decimal strings). Lines are written
whole under an exclusive ``fcntl`` lock; a reader takes complete lines only.

The typed data is the ClearingHouse's (``settlement.withdrawal`` holds the same and is checked
against the contract on anvil; a test holds the two equal): domain ``hx ClearingHouse`` version
``2``, ``Withdrawal(address account,address token,uint256 amount,address destination,uint256
nonce,uint256 expiry)``.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_typed_data

from engine.types.withdrawal_typed_data import withdrawal_typed_data

FILE_NAME = "withdrawals.log"


@dataclass(frozen=True)
class SignedWithdrawal:
    account_id: int
    account: str
    token: str
    amount: int  # token base units
    destination: str
    nonce: int
    expiry: int  # unix seconds
    signature: str  # 0x-hex, 65 bytes

    def to_line(self) -> bytes:
        doc = {
            "account_id": str(self.account_id),
            "account": self.account,
            "token": self.token,
            "amount": str(self.amount),
            "destination": self.destination,
            "nonce": str(self.nonce),
            "expiry": str(self.expiry),
            "signature": self.signature,
        }
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_line(cls, line: bytes) -> SignedWithdrawal:
        """Parse one line (``ValueError`` when it is not a well-formed record)."""
        d = json.loads(line)
        return cls(
            int(d["account_id"]),
            str(d["account"]),
            str(d["token"]),
            int(d["amount"]),
            str(d["destination"]),
            int(d["nonce"]),
            int(d["expiry"]),
            str(d["signature"]),
        )


def recover_withdrawal_signer(w: SignedWithdrawal, chain_id: int, clearing_house: str) -> str | None:
    """The address whose key signed ``w`` (lower-case), or None when the signature is malformed."""
    try:
        data = withdrawal_typed_data(
            w.account, w.token, w.amount, w.destination, w.nonce, w.expiry, chain_id, clearing_house
        )
        signer = Account.recover_message(encode_typed_data(full_message=data), signature=w.signature)
    except Exception:
        return None
    return str(signer).lower()


class WithdrawalLog:
    """Appends (gateways) and tails (settlement) the run's ``withdrawals.log``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, w: SignedWithdrawal) -> None:
        line = w.to_line()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)

    def read_from(self, offset: int) -> list[tuple[int, SignedWithdrawal | None]]:
        """Complete lines after ``offset``: ``(end offset of the line, record or None if malformed)``."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        out: list[tuple[int, SignedWithdrawal | None]] = []
        pos = 0
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                break
            try:
                rec: SignedWithdrawal | None = SignedWithdrawal.from_line(data[pos:end])
            except (ValueError, KeyError, TypeError):
                rec = None
            pos = end + 1
            out.append((offset + pos, rec))
        return out
