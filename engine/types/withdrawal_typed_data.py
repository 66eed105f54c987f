"""The ClearingHouse's EIP-712 ``Withdrawal``: the one definition of what a withdrawal's signature
covers, used by the gateway's withdraw op (through ``engine.accounts.withdrawal_log``), settlement
(which also hashes it the contract's way) and the SDK, which sign or check the same bytes.

Pure data (the ``eth_signTypedData_v4`` form); signing and recovery live with their callers.
"""

from __future__ import annotations

from typing import Any

DOMAIN_NAME = "hx ClearingHouse"
DOMAIN_VERSION = "2"
DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
WITHDRAWAL_TYPES = [
    {"name": "account", "type": "address"},
    {"name": "token", "type": "address"},
    {"name": "amount", "type": "uint256"},
    {"name": "destination", "type": "address"},
    {"name": "nonce", "type": "uint256"},
    {"name": "expiry", "type": "uint256"},
]


def withdrawal_typed_data(
    account: str,
    token: str,
    amount: int,
    destination: str,
    nonce: int,
    expiry: int,
    chain_id: int,
    clearing_house: str,
) -> dict[str, Any]:
    """The typed data a withdrawal's signature covers (addresses as given: case does not change
    the hash)."""
    return {
        "types": {"EIP712Domain": DOMAIN_TYPES, "Withdrawal": WITHDRAWAL_TYPES},
        "primaryType": "Withdrawal",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": clearing_house,
        },
        "message": {
            "account": account,
            "token": token,
            "amount": amount,
            "destination": destination,
            "nonce": nonce,
            "expiry": expiry,
        },
    }
