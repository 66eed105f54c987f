"""EIP-712 typed data for login and agent approval: the one definition both sides sign and check.

Domain: ``{name: "hx", version: "1", chainId: <config, e.g. 31337>}``. The gateway rebuilds the
same document from the client's fields and recovers the signer; the SDK signs it. Both build it
with the functions here, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

DOMAIN_NAME = "hx"
DOMAIN_VERSION = "1"
DEFAULT_CHAIN_ID = 31337

LOGIN_TYPES = {
    "Login": [
        {"name": "account", "type": "address"},
        {"name": "signer", "type": "address"},
        {"name": "nonce", "type": "bytes32"},
        {"name": "expiresAt", "type": "uint64"},
    ],
}
AGENT_TYPES = {
    "ApproveAgent": [
        {"name": "account", "type": "address"},
        {"name": "agent", "type": "address"},
        {"name": "nonce", "type": "uint64"},
    ],
    "RevokeAgent": [
        {"name": "account", "type": "address"},
        {"name": "agent", "type": "address"},
        {"name": "nonce", "type": "uint64"},
    ],
}


def domain(chain_id: int) -> dict[str, Any]:
    return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id}


def login_typed_data(
    chain_id: int, account: str, signer: str, nonce_hex: str, expires_at_ms: int
) -> dict[str, Any]:
    """The full EIP-712 document a client signs to log in."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            **LOGIN_TYPES,
        },
        "primaryType": "Login",
        "domain": domain(chain_id),
        "message": {
            "account": account,
            "signer": signer,
            "nonce": bytes.fromhex(nonce_hex.removeprefix("0x")),
            "expiresAt": expires_at_ms,
        },
    }


def agent_typed_data(chain_id: int, kind: str, account: str, agent: str, nonce: int) -> dict[str, Any]:
    """``kind`` is ``ApproveAgent`` or ``RevokeAgent``."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            kind: AGENT_TYPES[kind],
        },
        "primaryType": kind,
        "domain": domain(chain_id),
        "message": {"account": account, "agent": agent, "nonce": nonce},
    }


def sign_typed_data(private_key: str | bytes, typed: dict[str, Any]) -> str:
    """0x-hex signature (used by the SDK and tests)."""
    signed = Account.sign_message(encode_typed_data(full_message=typed), private_key)
    return "0x" + bytes(signed.signature).hex()


def recover_signer(typed: dict[str, Any], signature: str) -> str | None:
    """Lower-case address that signed ``typed``, or None if the signature is unusable."""
    try:
        sig = bytes.fromhex(signature.removeprefix("0x"))
        if len(sig) != 65:
            return None
        return str(Account.recover_message(encode_typed_data(full_message=typed), signature=sig)).lower()
    except Exception:  # malformed signature bytes, bad recovery id, ...
        return None
