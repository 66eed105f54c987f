"""The withdrawal log: lines written whole and read once from an offset; one EIP-712 encoding in the
gateway, the SDK and settlement (the contract's, checked on anvil in tests/settlement)."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from engine.accounts.withdrawal_log import (
    SignedWithdrawal,
    WithdrawalLog,
    recover_withdrawal_signer,
    withdrawal_typed_data,
)
from gateway.sdk import funds
from settlement import withdrawal as settlement_withdrawal

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
CHAIN = {"chain_id": 31337, "clearing_house": "0x" + "c4" * 20, "vault": "0x" + "0a" * 20}
TOKEN, DEST = "0x" + "01" * 20, "0x" + "0d" * 20


def test_one_encoding_everywhere_and_the_signer_recovers() -> None:
    me = Account.from_key(KEY).address
    msg = funds.sign_withdrawal(KEY, CHAIN, TOKEN, 5 * 10**6, DEST, 42, 2_000_000_000)
    w = SignedWithdrawal(1, me, TOKEN, 5 * 10**6, DEST, 42, 2_000_000_000, msg["signature"])
    assert recover_withdrawal_signer(w, 31337, CHAIN["clearing_house"]) == me.lower()
    assert recover_withdrawal_signer(w, 1, CHAIN["clearing_house"]) != me.lower()  # another chain
    sw = settlement_withdrawal.Withdrawal(me, TOKEN, 5 * 10**6, DEST, 42, 2_000_000_000)
    ch = CHAIN["clearing_house"]
    assert settlement_withdrawal.withdrawal_typed_data(sw, 31337, ch) == withdrawal_typed_data(
        me, settlement_withdrawal.to_checksum_address(TOKEN), 5 * 10**6,
        settlement_withdrawal.to_checksum_address(DEST), 42, 2_000_000_000, 31337,
        settlement_withdrawal.to_checksum_address(ch),
    )  # fmt: skip
    assert funds.withdrawal_typed_data(me, TOKEN, 1, DEST, 2, 3, 4, ch) == withdrawal_typed_data(
        me, TOKEN, 1, DEST, 2, 3, 4, ch
    )
    assert settlement_withdrawal.verify_withdrawal(sw, bytes.fromhex(msg["signature"][2:]), 31337, ch)


def test_lines_read_once_from_an_offset_and_a_torn_tail_waits(tmp_path: Path) -> None:
    log = WithdrawalLog(tmp_path)
    a = SignedWithdrawal(1, "0x" + "aa" * 20, TOKEN, 1, DEST, 1, 9, "0x" + "00" * 65)
    log.append(a)
    log.append(SignedWithdrawal(2, "0x" + "bb" * 20, TOKEN, 2, DEST, 2, 9, "0x" + "00" * 65))
    with open(log.path, "ab") as fh:
        fh.write(b'{"account_id": "3", "acc')  # a writer killed mid-line
    got = log.read_from(0)
    assert [r.account_id for _, r in got if r] == [1, 2]
    assert log.read_from(got[0][0])[0][1] == got[1][1]
    assert log.read_from(got[-1][0]) == []
    with open(log.path, "ab") as fh:
        fh.write(b"garbage\n")
    assert log.read_from(got[-1][0])[0][1] is None  # malformed: reported, not raised
