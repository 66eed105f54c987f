"""What a batch commits to on chain, computed off chain: state root, payouts hash, batch hash, checkpoint,
the Vault's running deposit hash. Bit for bit the ClearingHouse's and Vault's encodings (checked on anvil
by ``tests/settlement/test_contracts_onchain.py``).

- ``state_root = keccak256(abi.encode(AssetState[]))``, one ``AssetState`` per listed token in listing
  order: ``(token, claimsRoot, claimsTotal, liabilitiesRoot, liabilitiesTotal, price)``, price in
  micro-USDC per whole token (10**decimals base units);
- ``payouts_hash``: ``h_0 = 0``, ``h_k = keccak256(abi.encode(h_{k-1}, payout_k))`` over the payouts the
  batch queued, in queue order: insurance moves into the fund, then signed withdrawals, then forced serves;
- ``batch_hash = keccak256(abi.encode(BATCH_DOMAIN, chainid, clearingHouse, batchId, prevBatchHash,
  stateRoot, keccak256(data), lastCreditedDepositId, depositAccumulator, payoutsHash,
  keccak256(abi.encode(insuranceMoves))))``;
- ``checkpoint = keccak256(abi.encode(batchHash, Ledger[]))`` with the ledger after the batch;
- ``deposit accumulator(id) = keccak256(abi.encode(acc(id - 1), id, account, token, amount, depositedAt))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from settlement.sum_tree import ZERO_HASH, address_bytes

BATCH_DOMAIN = keccak(b"hx.ClearingHouse.batch.v2")
ASSET_STATE_TYPE = "(address,bytes32,uint256,bytes32,uint256,uint256)"
PAYOUT_TYPE = "(uint8,address,address,uint256,address,uint256)"
LEDGER_TYPE = "(uint256,uint256,uint256)"
INSURANCE_MOVE_TYPE = "(address,int256)"

PAYOUT_WITHDRAWAL = 0
PAYOUT_FORCED = 1
PAYOUT_TO_FUND = 2


class AssetState(NamedTuple):
    """One asset's entry in a batch (the contract's ``AssetState``)."""

    token: str
    claims_root: bytes
    claims_total: int
    liabilities_root: bytes
    liabilities_total: int
    price: int  # micro-USDC per whole token


class Payout(NamedTuple):
    """A queued outflow (the contract's ``Payout``): kind 0 withdrawal (ref = nonce), 1 forced (ref = request
    id), 2 to the insurance fund (account = destination = fund, ref = 0)."""

    kind: int
    account: str
    token: str
    amount: int
    destination: str
    ref: int


class Ledger(NamedTuple):
    """Cumulative per-token amounts after a batch: credited deposits, fund inflows, queued payouts."""

    credited: int
    fund_in: int
    queued: int


def state_root(assets: Sequence[AssetState]) -> bytes:
    """``keccak256(abi.encode(AssetState[]))``."""
    rows = [(to_checksum_address(a.token), *a[1:]) for a in assets]
    return keccak(abi_encode([f"{ASSET_STATE_TYPE}[]"], [rows]))


def payouts_hash(payouts: Sequence[Payout]) -> bytes:
    """The running hash the batch stores (``ZERO_HASH`` when it queued none)."""
    h = ZERO_HASH
    for p in payouts:
        h = keccak(abi_encode(["bytes32", PAYOUT_TYPE], [h, tuple(p)]))
    return h


def insurance_moves_hash(moves: Sequence[tuple[str, int]]) -> bytes:
    """``keccak256(abi.encode(InsuranceMove[]))``: ``(token, amount)``, amount > 0 into the fund."""
    return keccak(abi_encode([f"{INSURANCE_MOVE_TYPE}[]"], [list(moves)]))


def batch_hash(
    *,
    chain_id: int,
    clearing_house: str,
    batch_id: int,
    prev_batch_hash: bytes,
    state_root_: bytes,
    data: bytes,
    last_credited_deposit_id: int,
    deposit_accumulator_: bytes,
    payouts_hash_: bytes,
    insurance_moves: Sequence[tuple[str, int]],
) -> bytes:
    """The hash the ClearingHouse returns and the next batch names as ``prevBatchHash``."""
    return keccak(
        abi_encode(
            ["bytes32", "uint256", "address", "uint64", "bytes32", "bytes32", "bytes32", "uint48", "bytes32",
             "bytes32", "bytes32"],
            [BATCH_DOMAIN, chain_id, to_checksum_address(clearing_house), batch_id, prev_batch_hash,
             state_root_, keccak(data), last_credited_deposit_id, deposit_accumulator_, payouts_hash_,
             insurance_moves_hash(insurance_moves)],
        )
    )  # fmt: skip


def checkpoint(batch_hash_: bytes, ledgers: Sequence[Ledger]) -> bytes:
    """``keccak256(abi.encode(batchHash, Ledger[]))``: what a challenge or a fund return presents."""
    return keccak(abi_encode(["bytes32", f"{LEDGER_TYPE}[]"], [batch_hash_, [tuple(x) for x in ledgers]]))


def deposit_accumulator(
    prev: bytes, deposit_id: int, account: str | bytes, token: str | bytes, amount: int, deposited_at: int
) -> bytes:
    """The Vault's running deposit hash after deposit ``deposit_id``."""
    return keccak(
        abi_encode(
            ["bytes32", "uint256", "address", "address", "uint256", "uint64"],
            [prev, deposit_id, address_bytes(account), address_bytes(token), amount, deposited_at],
        )
    )


def batch_args(
    *,
    batch_id: int,
    prev_batch_hash: bytes,
    last_credited_deposit_id: int,
    deposits: Sequence[tuple[str, str, int, int]],
    assets: Sequence[AssetState],
    withdrawals: Sequence[tuple[Any, ...]],
    forced_serves: Sequence[tuple[int, int, int, list[tuple[bytes, int]]]],
    insurance_moves: Sequence[tuple[str, int]],
    data: bytes,
) -> tuple[Any, ...]:
    """``ClearingHouse.Batch`` as web3 takes it. ``deposits``: ``(account, token, amount, depositedAt)`` for ids
    previous lastCreditedDepositId + 1 .. ``last_credited_deposit_id``; ``withdrawals``:
    ``Withdrawal.signed(signature)`` tuples; ``forced_serves``: ``(requestId, amount, leafIndex, proof)``."""
    return (
        batch_id,
        prev_batch_hash,
        last_credited_deposit_id,
        [(to_checksum_address(a), to_checksum_address(t), amt, at) for a, t, amt, at in deposits],
        [(to_checksum_address(a.token), *a[1:]) for a in assets],
        list(withdrawals),
        [(rid, amt, idx, list(proof)) for rid, amt, idx, proof in forced_serves],
        [(to_checksum_address(t), amt) for t, amt in insurance_moves],
        data,
    )
