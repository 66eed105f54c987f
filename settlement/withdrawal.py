"""Withdrawals authorised by their account: EIP-712 typed data, signing, and verification.

The ClearingHouse pays a withdrawal only if its account signed exactly these fields (or, for a smart
account, its ERC-1271 ``isValidSignature`` approves the digest)::

    domain  = EIP712Domain(name "hx ClearingHouse", version "2", chainId, verifyingContract = ClearingHouse)
    message = Withdrawal(address account, address token, uint256 amount, address destination,
                         uint256 nonce, uint256 expiry)
    digest  = keccak256(0x1901 || domainSeparator || hashStruct(message))

Invariants: the digest commits to every field and to the chain and contract, so a signature is good for
one withdrawal of one deployment; ``nonce`` is any unused number of the account (a bitmap on chain: bit
``nonce & 255`` of word ``nonce >> 8``), so withdrawals can be served in any order and a signed one is
cancelled by burning its nonce (``ClearingHouse.invalidateNonces``); ``expiry`` is the last block
timestamp at which a batch may include it. Signatures are 65 bytes ``r || s || v``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from engine.types.withdrawal_typed_data import DOMAIN_NAME, DOMAIN_VERSION
from engine.types.withdrawal_typed_data import withdrawal_typed_data as typed_data

WITHDRAWAL_TYPE = "Withdrawal(address account,address token,uint256 amount,address destination,uint256 nonce,uint256 expiry)"
WITHDRAWAL_TYPEHASH = keccak(WITHDRAWAL_TYPE.encode())
DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ERC1271_MAGIC = bytes.fromhex("1626ba7e")


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """The fields an account signs."""

    account: str
    token: str
    amount: int
    destination: str
    nonce: int
    expiry: int

    def struct_hash(self) -> bytes:
        """``hashStruct(Withdrawal)``."""
        return keccak(
            abi_encode(
                ["bytes32", "address", "address", "uint256", "address", "uint256", "uint256"],
                [WITHDRAWAL_TYPEHASH, to_checksum_address(self.account), to_checksum_address(self.token),
                 self.amount, to_checksum_address(self.destination), self.nonce, self.expiry],
            )
        )  # fmt: skip

    def signed(self, signature: bytes) -> tuple[Any, ...]:
        """The contract's ``SignedWithdrawal`` tuple, for a batch."""
        return (
            to_checksum_address(self.account),
            to_checksum_address(self.token),
            self.amount,
            to_checksum_address(self.destination),
            self.nonce,
            self.expiry,
            bytes(signature),
        )


def domain_separator(chain_id: int, clearing_house: str) -> bytes:
    """The EIP-712 domain separator of a ClearingHouse deployment."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [DOMAIN_TYPEHASH, keccak(DOMAIN_NAME.encode()), keccak(DOMAIN_VERSION.encode()), chain_id,
             to_checksum_address(clearing_house)],
        )
    )  # fmt: skip


def withdrawal_digest(w: Withdrawal, chain_id: int, clearing_house: str) -> bytes:
    """The 32-byte digest signed (== ``ClearingHouse.withdrawalDigest``)."""
    return keccak(b"\x19\x01" + domain_separator(chain_id, clearing_house) + w.struct_hash())


def withdrawal_typed_data(w: Withdrawal, chain_id: int, clearing_house: str) -> dict[str, Any]:
    """The EIP-712 typed data (``eth_signTypedData_v4`` form), for wallets; checksummed addresses."""
    return typed_data(
        to_checksum_address(w.account),
        to_checksum_address(w.token),
        w.amount,
        to_checksum_address(w.destination),
        w.nonce,
        w.expiry,
        chain_id,
        to_checksum_address(clearing_house),
    )


def sign_withdrawal(w: Withdrawal, private_key: str | bytes, chain_id: int, clearing_house: str) -> bytes:
    """Sign as the account's key (EOA accounts; a smart account's owner key signs the same digest)."""
    signed = Account.sign_typed_data(
        private_key, full_message=withdrawal_typed_data(w, chain_id, clearing_house)
    )
    return bytes(signed.signature)


def recover_withdrawal_signer(
    w: Withdrawal, signature: bytes, chain_id: int, clearing_house: str
) -> str | None:
    """The address that produced ``signature`` (``None`` when it is malformed)."""
    message = encode_typed_data(full_message=withdrawal_typed_data(w, chain_id, clearing_house))
    try:
        return str(Account.recover_message(message, signature=signature))
    except Exception:
        return None


def verify_withdrawal(
    w: Withdrawal, signature: bytes, chain_id: int, clearing_house: str, w3: Any | None = None
) -> bool:
    """What the contract checks: the account's own ECDSA signature, or (given ``w3``, when the account has
    code) its ERC-1271 approval of the digest."""
    if w3 is not None and len(w3.eth.get_code(to_checksum_address(w.account))) > 0:
        return is_valid_erc1271(w3, w.account, withdrawal_digest(w, chain_id, clearing_house), signature)
    signer = recover_withdrawal_signer(w, signature, chain_id, clearing_house)
    return signer is not None and signer.lower() == w.account.lower()


def is_valid_erc1271(w3: Any, account: str, digest: bytes, signature: bytes) -> bool:
    """``IERC1271(account).isValidSignature(digest, signature) == 0x1626ba7e`` (a revert counts as no)."""
    data = bytes.fromhex("1626ba7e") + abi_encode(["bytes32", "bytes"], [digest, signature])
    try:
        ret = bytes(w3.eth.call({"to": to_checksum_address(account), "data": data}))
    except Exception:
        return False
    return len(ret) >= 4 and ret[:4] == ERC1271_MAGIC


def nonce_position(nonce: int) -> tuple[int, int]:
    """``(word, mask)`` of a nonce in the on-chain bitmap (for ``invalidateNonces``)."""
    return nonce >> 8, 1 << (nonce & 0xFF)
