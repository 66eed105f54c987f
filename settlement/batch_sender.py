"""Batch sender: makes the chain hold exactly the batch the journal sealed, once, with N confirmations.

Every attempt starts from what the chain says, never from what this object remembers, so an RPC
outage, a reverted or dropped transaction, an anvil restart or a restart of settlement itself can
neither skip a batch nor post one twice:

- the ClearingHouse's last batch is ours (same id, same hash): wait for the confirmations, done;
- it is the one before ours and names our ``prev_hash``: dry-run with ``eth_call`` (a revert raises
  ``BatchRefused`` with the decoded custom error: nothing is sent), then send with an explicit nonce
  (the operator's mined count, so a resend replaces a pending copy rather than queueing a second),
  a gas estimate and EIP-1559 fees bumped by 1/8 + 1 wei each time the receipt is slow;
- anything else (another hash at our id, the chain behind our previous batch or past ours) raises
  ``NotOurs``: somebody else posts with the operator key, or the chain lost history. Alarm and halt.

RPC failures (connection refused, timeouts, garbage answers) raise ``ChainUnavailable``; the caller
retries with backoff while the engine keeps trading.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted

from settlement.batch_commitments import batch_args
from settlement.chain import Artifact
from settlement.settlement_engine import SealedBatch, pack_fund


class NotOurs(RuntimeError):
    """The chain holds a batch we did not seal, or lost ours: halt (an operator must look)."""


class RolledBack(RuntimeError):
    """The chain's last batch is an earlier one of ours: a challenge voided the ones after it."""

    def __init__(self, batch_id: int, batch_hash: bytes) -> None:
        super().__init__(f"the chain is back at our batch {batch_id} (0x{batch_hash.hex()})")
        self.batch_id, self.batch_hash = batch_id, batch_hash


class BatchRefused(RuntimeError):
    """The dry run reverts: the contract refuses the batch (the message names the custom error)."""


class ChainUnavailable(RuntimeError):
    """The RPC did not answer, or answered nonsense: retry later."""


def decode_revert(abi: list[dict[str, Any]], data: Any) -> str:
    """``Name(args)`` of a custom error's revert data, or the raw data."""
    from eth_abi.abi import decode as abi_decode
    from eth_utils.crypto import keccak

    raw = data if isinstance(data, str) else str(data)
    raw = raw.removeprefix("0x")
    if len(raw) < 8:
        return raw or "revert without data"
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [i["type"] if i["type"] != "tuple" else "tuple" for i in item["inputs"]]
        sig = f"{item['name']}({','.join(types)})"
        if keccak(text=sig)[:4].hex() == raw[:8]:
            try:
                args = abi_decode(types, bytes.fromhex(raw[8:]))
            except Exception:
                args = ()
            return f"{item['name']}{tuple(args)}"
    return f"0x{raw}"


class BatchSender:
    """Posts sealed batches for one operator key to one ClearingHouse.

    Parameters
    ----------
    rpc_url, operator_key : the endpoint and the key holding OPERATOR_ROLE.
    clearing_house : the ClearingHouse address.
    confirmations : blocks on top of (and including) the one holding the batch before it counts.
    receipt_timeout_s : how long a send waits for its receipt before bumping its fees.
    """

    def __init__(
        self,
        rpc_url: str,
        operator_key: str,
        clearing_house: str,
        confirmations: int = 1,
        receipt_timeout_s: float = 4.0,
        rpc_timeout_s: float = 5.0,
        from_block: int = 0,
    ) -> None:
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": rpc_timeout_s}))
        self.account = Account.from_key(operator_key)
        self.abi = Artifact.load("ClearingHouse").abi
        # reverts name the ClearingHouse's errors and those of the EscapeHatch it calls (forced serves)
        self.errors_abi = self.abi + [e for e in Artifact.load("EscapeHatch").abi if e.get("type") == "error"]
        self.ch = self.w3.eth.contract(address=to_checksum_address(clearing_house), abi=self.abi)
        self.confirmations = max(1, confirmations)
        self.receipt_timeout_s = receipt_timeout_s
        self.from_block = from_block
        self.sent = 0  # transactions sent (resends included)
        self.gas_used: list[int] = []
        self._chain_id: int | None = None
        self._fund: Any = None

    # ------------------------------------------------------------------ reads

    def _rpc(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (ContractCustomError, ContractLogicError):
            raise
        except Exception as exc:  # connection refused, timeouts, malformed answers
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def head(self) -> tuple[int, bytes]:
        """The ClearingHouse's last batch id and hash."""
        last = self._rpc(self.ch.functions.lastBatchId().call)
        h = self._rpc(self.ch.functions.lastBatchHash().call)
        if not isinstance(last, int) or not isinstance(h, bytes | bytearray) or len(h) != 32:
            raise ChainUnavailable(f"garbage head: {last!r} {h!r}")
        return int(last), bytes(h)

    def observe_fund(self, fund: str, tokens: list[str]) -> bytes:
        """A FUND record: the InsuranceFund's ``expectedBalance`` of every token (listing order) and the
        ClearingHouse's last batch, all read at one block."""
        block = self._rpc(lambda: self.w3.eth.block_number)
        if not isinstance(block, int):
            raise ChainUnavailable(f"garbage block number: {block!r}")
        last = self._rpc(lambda: self.ch.functions.lastBatchId().call(block_identifier=block))
        h = self._rpc(lambda: self.ch.functions.lastBatchHash().call(block_identifier=block))
        if not isinstance(last, int) or not isinstance(h, bytes | bytearray) or len(h) != 32:
            raise ChainUnavailable(f"garbage head: {last!r} {h!r}")
        if self._fund is None or self._fund.address != to_checksum_address(fund):
            abi = Artifact.load("InsuranceFund").abi
            self._fund = self.w3.eth.contract(address=to_checksum_address(fund), abi=abi)
        f = self._fund
        balances = []
        for t in tokens:
            v = self._rpc(
                lambda t=t: f.functions.expectedBalance(to_checksum_address(t)).call(block_identifier=block)
            )
            if not isinstance(v, int) or v < 0:
                raise ChainUnavailable(f"garbage fund balance: {v!r}")
            balances.append(v)
        return pack_fund(block, int(last), bytes(h), balances)

    def _accepted_block(self, batch_id: int) -> int | None:
        logs = self._rpc(
            lambda: self.ch.events.BatchAccepted().get_logs(
                from_block=self.from_block, argument_filters={"batchId": batch_id}
            )
        )
        return int(logs[-1]["blockNumber"]) if logs else None

    # ------------------------------------------------------------------ posting

    def args(self, b: SealedBatch) -> tuple[Any, ...]:
        return batch_args(
            batch_id=b.batch_id,
            prev_batch_hash=b.prev_hash,
            last_credited_deposit_id=b.last_credited_deposit_id,
            deposits=b.deposits,
            assets=b.assets,
            withdrawals=b.withdrawals,
            forced_serves=list(b.forced),
            insurance_moves=list(b.insurance_moves),
            data=b.data,
        )

    def post(
        self, b: SealedBatch, stop: Callable[[], bool] = lambda: False, ours: dict[int, bytes] | None = None
    ) -> int:
        """Make the chain hold ``b`` with the confirmations; returns the block that holds it."""
        while not stop():
            last, last_hash = self.head()
            if last == b.batch_id and last_hash == b.hash:
                block = self._accepted_block(b.batch_id)
                if block is None:
                    raise ChainUnavailable(f"batch {b.batch_id} is on chain but its event is not found")
                if self._wait_confirmations(block, b, stop):
                    return block
                continue
            if (
                last < b.batch_id
                and ours is not None
                and ours.get(last) == last_hash
                and last_hash != b.prev_hash
            ):
                raise RolledBack(last, last_hash)
            if last >= b.batch_id or last != b.batch_id - 1 or last_hash != b.prev_hash:
                raise NotOurs(
                    f"the chain's last batch is {last} (0x{last_hash.hex()}); we sealed {b.batch_id} "
                    f"(0x{b.hash.hex()}) after 0x{b.prev_hash.hex()}"
                )
            self._send(b, stop)
        raise ChainUnavailable("stopped")

    def _send(self, b: SealedBatch, stop: Callable[[], bool]) -> None:
        fn = self.ch.functions.submitBatch(self.args(b))
        sender = self.account.address
        try:
            gas = self._rpc(lambda: fn.estimate_gas({"from": sender}))
        except (ContractCustomError, ContractLogicError) as exc:
            raise BatchRefused(
                f"batch {b.batch_id}: {decode_revert(self.errors_abi, getattr(exc, 'data', exc))}"
            ) from exc
        if self._chain_id is None:
            self._chain_id = int(self._rpc(lambda: self.w3.eth.chain_id))
        nonce = int(self._rpc(lambda: self.w3.eth.get_transaction_count(sender, "latest")))
        base = int(self._rpc(lambda: self.w3.eth.get_block("latest")).get("baseFeePerGas", 0))
        tip = int(self._rpc(lambda: self.w3.eth.max_priority_fee))
        max_fee = 2 * base + tip
        tx = fn.build_transaction(
            {
                "from": sender,
                "nonce": nonce,
                "gas": int(gas * 1.2) + 20_000,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
                "chainId": self._chain_id,
            }
        )
        for _attempt in range(8):
            signed = self.account.sign_transaction(tx)
            try:
                tx_hash = self._rpc(lambda s=signed: self.w3.eth.send_raw_transaction(s.raw_transaction))
                self.sent += 1
            except ChainUnavailable as exc:
                if any(m in str(exc) for m in ("nonce too low", "already known", "already imported")):
                    return  # an earlier copy was mined or is pending: re-read the chain
                if "underpriced" in str(exc):  # a pending copy pays more than this one: outbid it
                    tx["maxPriorityFeePerGas"] = tx["maxPriorityFeePerGas"] * 9 // 8 + 1
                    tx["maxFeePerGas"] = tx["maxFeePerGas"] * 9 // 8 + 1
                    continue
                raise
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout_s)
            except TimeExhausted:
                if stop():
                    return
                tx["maxPriorityFeePerGas"] = tx["maxPriorityFeePerGas"] * 9 // 8 + 1
                tx["maxFeePerGas"] = tx["maxFeePerGas"] * 9 // 8 + 1
                continue
            except Exception as exc:
                raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc
            if receipt["status"] == 1:
                self.gas_used.append(int(receipt["gasUsed"]))
            return  # mined (or reverted): the loop re-reads the chain either way
        return

    def execute_payouts(self, batch_id: int, payouts: list[Any]) -> bool:
        """Pay a final batch's payouts (anyone may; the operator does it for its users). True once every
        payout of the batch is executed on chain (also when someone else did it); False while the batch
        is not final yet or the outflow cap defers it."""
        rec = self._rpc(self.ch.functions.batchRecord(batch_id).call)
        if int(rec[6]) >= len(payouts):
            return True
        if not self._rpc(self.ch.functions.isFinal(batch_id).call):
            return False
        fn = self.ch.functions.executePayouts(batch_id, [tuple(p) for p in payouts], len(payouts))
        sender = self.account.address
        try:
            gas = self._rpc(lambda: fn.estimate_gas({"from": sender}))
        except (ContractCustomError, ContractLogicError) as exc:
            reason = decode_revert(self.errors_abi, getattr(exc, "data", exc))
            if reason.startswith("NothingToExecute"):
                return True
            if reason.startswith(("OutflowCapExceeded", "BatchNotFinal", "EnforcedPause")):
                return False
            raise BatchRefused(f"payouts of batch {batch_id}: {reason}") from exc
        nonce = int(self._rpc(lambda: self.w3.eth.get_transaction_count(sender, "latest")))
        base = int(self._rpc(lambda: self.w3.eth.get_block("latest")).get("baseFeePerGas", 0))
        tip = int(self._rpc(lambda: self.w3.eth.max_priority_fee))
        if self._chain_id is None:
            self._chain_id = int(self._rpc(lambda: self.w3.eth.chain_id))
        tx = fn.build_transaction(
            {"from": sender, "nonce": nonce, "gas": int(gas * 1.2) + 20_000, "maxFeePerGas": 2 * base + tip,
             "maxPriorityFeePerGas": tip, "chainId": self._chain_id}
        )  # fmt: skip
        signed = self.account.sign_transaction(tx)
        tx_hash = self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        self.sent += 1
        self._rpc(
            lambda: self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout_s * 4)
        )
        rec = self._rpc(self.ch.functions.batchRecord(batch_id).call)
        return int(rec[6]) >= len(payouts)

    def _wait_confirmations(self, block: int, b: SealedBatch, stop: Callable[[], bool]) -> bool:
        while not stop():
            head = int(self._rpc(lambda: self.w3.eth.block_number))
            if head - block + 1 >= self.confirmations:
                last, last_hash = self.head()
                return last >= b.batch_id  # still there (a reorg or a rollback sends us round again)
            time.sleep(0.1)
        return False
