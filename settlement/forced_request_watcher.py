"""Forced-request watcher: the EscapeHatch's ``ForcedWithdrawalRequested`` and
``ForcedWithdrawalCancelled`` events once they hold N confirmations, requests in id order.

Invariants (as ``settlement.deposit_watcher``): ``poll`` returns each request id at most once per
watcher, in increasing order from ``next_id``, and only from blocks at least ``confirmations`` deep;
a request whose id is not the next one stops the scan at its block and sets ``gap`` (the caller
alarms; nothing after it is returned until it is filled); cancellations come after the requests of
the same scan and only for ids already returned. A malformed log or answer raises ``MalformedLog``
(a ``ChainUnavailable``: the caller alarms and retries; nothing moves). On restart the caller makes a
watcher with ``next_id`` = the engine's last seen request id + 1; cancellations are read again from
``from_block`` (the engine ignores those of requests it no longer waits for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3

from settlement.batch_sender import ChainUnavailable
from settlement.chain import Artifact
from settlement.deposit_watcher import confirmed_up_to


class MalformedLog(ChainUnavailable):
    """A log that does not decode to a request the contract can have made: alarm, retry, move nothing."""


@dataclass(frozen=True)
class ChainForcedRequest:
    request_id: int
    account: str
    token: str
    amount: int  # token base units
    destination: str
    deadline: int  # unix s
    block: int


@dataclass(frozen=True)
class ChainForcedCancel:
    request_id: int
    block: int


class ForcedRequestWatcher:
    """Reads confirmed forced-withdrawal requests and cancellations of one EscapeHatch."""

    def __init__(
        self, rpc_url: str, escape_hatch: str, next_id: int = 1, confirmations: int = 1, from_block: int = 0,
        rpc_timeout_s: float = 5.0,
    ) -> None:  # fmt: skip
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": rpc_timeout_s}))
        self.hatch = self.w3.eth.contract(
            address=to_checksum_address(escape_hatch), abi=Artifact.load("EscapeHatch").abi
        )
        self.next_id = next_id
        self.confirmations = max(1, confirmations)
        self.scanned = from_block - 1
        self.gap = ""

    def poll(self, max_blocks: int = 5000) -> list[ChainForcedRequest | ChainForcedCancel]:
        """Requests, then cancellations, newly confirmed since the last call."""
        to = confirmed_up_to(self.w3, self.scanned, self.confirmations, max_blocks)
        if to is None:
            return []
        try:
            ev = self.hatch.events
            requested = ev.ForcedWithdrawalRequested().get_logs(from_block=self.scanned + 1, to_block=to)
            cancelled = ev.ForcedWithdrawalCancelled().get_logs(from_block=self.scanned + 1, to_block=to)
        except Exception as exc:
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc
        parsed = sorted((parse_request(log) for log in requested), key=lambda r: r.request_id)
        out: list[ChainForcedRequest | ChainForcedCancel] = []
        next_id, end = self.next_id, to
        for r in parsed:
            if r.request_id < next_id:
                continue  # seen already (a rescan after an error)
            if r.request_id != next_id:
                self.gap = f"forced request {r.request_id} in block {r.block}, expected {next_id}"
                end = r.block - 1  # read again from the gap's block next time
                break
            out.append(r)
            next_id += 1
        else:
            self.gap = ""
        for c in sorted((parse_cancel(log) for log in cancelled), key=lambda c: (c.block, c.request_id)):
            if c.block <= end and c.request_id < next_id:
                out.append(c)
        self.next_id, self.scanned = next_id, end
        return out


def parse_request(log: Any) -> ChainForcedRequest:
    """A ``ForcedWithdrawalRequested`` log, checked as the contract checks a request (``MalformedLog``)."""
    try:
        a = log["args"]
        r = ChainForcedRequest(
            int(a["requestId"]), to_checksum_address(a["account"]), to_checksum_address(a["token"]),
            int(a["amount"]), to_checksum_address(a["destination"]), int(a["deadline"]), int(log["blockNumber"]),
        )  # fmt: skip
    except Exception as exc:
        raise MalformedLog(f"malformed ForcedWithdrawalRequested log: {type(exc).__name__}: {exc}") from exc
    if (
        r.request_id <= 0
        or not 0 < r.amount < 1 << 256
        or int(r.destination, 16) == 0
        or int(r.account, 16) == 0
        or r.deadline <= 0
    ):
        raise MalformedLog(f"malformed ForcedWithdrawalRequested log: {r}")
    return r


def parse_cancel(log: Any) -> ChainForcedCancel:
    """A ``ForcedWithdrawalCancelled`` log (``MalformedLog`` if it is not one)."""
    try:
        c = ChainForcedCancel(int(log["args"]["requestId"]), int(log["blockNumber"]))
    except Exception as exc:
        raise MalformedLog(f"malformed ForcedWithdrawalCancelled log: {type(exc).__name__}: {exc}") from exc
    if c.request_id <= 0:
        raise MalformedLog(f"malformed ForcedWithdrawalCancelled log: {c}")
    return c
