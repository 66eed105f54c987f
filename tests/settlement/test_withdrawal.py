"""EIP-712 withdrawals off chain: the digest is eth_account's, signatures recover to their account, and any
changed field, chain or contract breaks them. (Against the contract: test_contracts_onchain.py.)"""

from __future__ import annotations

import dataclasses

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

from settlement.withdrawal import (
    Withdrawal,
    nonce_position,
    recover_withdrawal_signer,
    sign_withdrawal,
    verify_withdrawal,
    withdrawal_digest,
    withdrawal_typed_data,
)

KEY = "0x" + "42" * 32
ACCOUNT = Account.from_key(KEY).address
CH = "0x" + "c1" * 20
W = Withdrawal(ACCOUNT, "0x" + "aa" * 20, 123_456, "0x" + "dd" * 20, 7, 1_800_000_000)


def test_digest_is_eip712() -> None:
    """eth_account's EIP-712 encoding of the typed data hashes to our digest: 0x19 0x01 domain struct."""
    msg = encode_typed_data(full_message=withdrawal_typed_data(W, 31337, CH))
    assert msg.version == b"\x01"
    assert withdrawal_digest(W, 31337, CH) == keccak(b"\x19" + msg.version + msg.header + msg.body)
    assert msg.body == W.struct_hash()


def test_sign_recover_verify() -> None:
    sig = sign_withdrawal(W, KEY, 31337, CH)
    assert len(sig) == 65
    assert recover_withdrawal_signer(W, sig, 31337, CH) == ACCOUNT
    assert verify_withdrawal(W, sig, 31337, CH)


def test_any_change_breaks_the_signature() -> None:
    sig = sign_withdrawal(W, KEY, 31337, CH)
    for f, v in [("amount", 123_457), ("destination", "0x" + "ee" * 20), ("nonce", 8), ("expiry", 1),
                 ("token", "0x" + "ab" * 20)]:  # fmt: skip
        assert not verify_withdrawal(dataclasses.replace(W, **{f: v}), sig, 31337, CH), f
    assert not verify_withdrawal(W, sig, 1, CH)
    assert not verify_withdrawal(W, sig, 31337, "0x" + "c2" * 20)
    other = sign_withdrawal(W, "0x" + "43" * 32, 31337, CH)
    assert not verify_withdrawal(W, other, 31337, CH)
    assert recover_withdrawal_signer(W, b"\x00" * 10, 31337, CH) is None


def test_nonce_position() -> None:
    assert nonce_position(0) == (0, 1)
    assert nonce_position(255) == (0, 1 << 255)
    assert nonce_position(256 + 3) == (1, 8)
