"""The settlement stage's deterministic core: risk events and confirmed chain facts in, batches out.

Every input is one journal record (``SettlementEngine.apply``); the same records from the same start
give the same state (``state_hash``), the same sealed batches (bytes and hashes) and the same outputs.
No I/O, no clock, no web3 here: the process (``settlement.process``) journals what its rings and
threads bring, applies it, and ships the outputs.

Records (first byte is the kind; integers little-endian):

- ``EVENTS``: u16 partition, u32 slots consumed, u64 ring cursor, u64 ring nonce, then the 64-byte slots
  of risk's event ring that are read here (BALANCE, POSITION, PRICE, ACCOUNT_MARGIN, REJECTED);
- ``DEPOSIT``: a Vault deposit with its confirmations (id, account id, token index, amount in token
  base units, depositedAt, block, 20-byte account);
- ``CLOCK``: u64 ns; a batch is sealed when due (``batch_interval_ns`` since the last, or
  ``batch_max_events`` events waiting) and none is in flight;
- ``CONFIRMED``: the in-flight batch holds its confirmations on chain (u64 batch id, u64 block,
  u64 ns): SETTLED events for every account it covers;
- ``FAILED``: the chain refused the in-flight batch or holds another one (u64 batch id, reason
  text): alarm and halt;
- ``RESUME``: an operator resumes after a halt (the in-flight batch, if any, is tried again);
- ``FORCED``: a forced withdrawal request the EscapeHatch recorded, with its confirmations (request id,
  account id, token index, amount in token base units, destination, deadline, block, 20-byte account);
- ``FORCED_CANCEL``: the account cancelled request ``id`` on chain before a batch served it;
- ``FUND``: the InsuranceFund's balance of every token and the ClearingHouse's last batch, read at one
  block (u64 block, u64 batch id, 32-byte batch hash, u8 token count, u256 each); the first switches
  insurance moves on.

Invariants:

- deposits are credited in id order, each exactly once: a gap is an alarm (the record is refused); a
  deposit of a token the config maps to no asset, the part of an 18-decimal amount below one engine
  atom, and a deposit risk refuses stay in the depositor's leaf of that token (``extra``), never in
  the engine;
- at most one batch is in flight; it is fixed by the journal (its bytes and hash never change), so a
  restart posts exactly that batch or finds it on chain; batch ids are 1, 2, 3, ... each naming the
  previous one's hash;
- leaf model, per listed token t of account A (token factor f_t = 10**(token decimals - asset
  decimals)): ``v = (balance + held - queued withdrawals) * f_t + extra``; the USDC leaf also carries
  the perp PnL at the batch's marks and the value of assets without a token at the batch's prices,
  each rounded down; claim = max(v, 0), liability = max(-v, 0). The exchange's own accounts (fees,
  insurance, liquidation) share one leaf, the fee address, which also takes the rounding dust, so per
  token claims - liabilities == credited deposits - queued withdrawals exactly (the contract's check);
- forced withdrawals (``_take_forced``): each request is served by the first batch that can, in id
  order, once: in full (risk's hold of ``amount // f_t`` engine units plus the rest from ``extra``), or
  short, with the proof that the account's claim leaf of the token is 0 in that batch, only when the
  serve empties the leaf (everything risk lets go and everything in ``extra``). Nothing is ever paid
  that the engine does not hold for it (risk's WITHDRAW_HOLD, request id ``FORCED_BIT | id``, apart
  from gateway nonces < 2**63) or that ``extra`` does not keep for the account. A request that can be
  neither (risk keeps margin for open positions or orders) waits: the hold returns, an alarm names
  the deadline, risk is asked again every ``forced_retry_ns``;
- insurance (once a FUND record switched it on): each batch moves the net change of the insurance
  accounts' balances (clamped at 0) into the fund (queued: a payout, the batch's first) or out of it (paid
  into the vault on acceptance), never more out than the fund holds on chain by our executed batches (the
  rest waits, ``fund_short``); the exchange's leaf then excludes what was sent, so claims - liabilities ==
  credited + fundIn - queued per token still holds exactly; a voided batch's moves are forgotten and sent
  again; the fund's observed balance must lie between what our batches put there with and without the
  moves into it not yet executed (otherwise alarm and halt);
- reconciliation: the fee leaf's residual may differ from the engine's own figure only by dust in
  USDC (at most one micro per account valued) and not at all in other tokens; otherwise alarm and
  halt (no batch is sealed until ``RESUME``).
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from engine.math.position import calc_unrealised_micro
from engine.risk.risk_config import RiskConfig
from engine.risk.risk_engine import SYSTEM_ACCOUNT_BASE, insurance_account
from engine.types.enums import BalanceReason, DepositSource, MsgType, RejectCode, WithdrawStatus
from engine.wire.layout import BY_TYPE, SLOT_BYTES, WIRE_VERSION
from settlement.account_trees import AccountTrees
from settlement.batch_commitments import (
    PAYOUT_FORCED,
    PAYOUT_TO_FUND,
    PAYOUT_WITHDRAWAL,
    AssetState,
    Payout,
    batch_hash,
    deposit_accumulator,
    payouts_hash,
    state_root,
)
from settlement.published_data import PublishedData
from settlement.sum_tree import CLAIM, LIABILITY, ZERO_HASH, address_bytes
from settlement.withdrawal import Withdrawal

# record kinds
EVENTS, DEPOSIT, CLOCK, CONFIRMED, FAILED, RESUME, WITHDRAWAL, PAID, LOG_OFFSET, ROLLBACK = range(1, 11)
FORCED, FORCED_CANCEL = 11, 12
FUND = 13
MAX_WITHDRAWALS_PER_BATCH = 64
MAX_FORCED_PER_BATCH = 32
FORCED_BIT = (
    1 << 63
)  # risk's request id of a forced request: FORCED_BIT | request id (gateway nonces < 2**63)
EXPIRY_MARGIN_S = 600  # a withdrawal expiring sooner than this after the batch is sealed is refused
# an account that burned the nonce of a withdrawal a sealed batch carried (audit A-4) has its withdrawals refused
# for this long: each time voids a batch, and the others' withdrawals in it wait a batch for it
WITHDRAWAL_BAR_NS = 3600 * 1_000_000_000
_DEPOSIT = struct.Struct("<BQIBQQ32s20s")  # kind, id, account id, token, depositedAt, block, amount, address
_CLOCK = struct.Struct("<BQ")
_CONFIRMED = struct.Struct("<BQQQ")
# kind, account id, token, amount, destination, nonce, expiry, chain check ok, signature, account address
_WITHDRAWAL = struct.Struct("<BIB32s20s32sQB65s20s")
_PAID = struct.Struct("<BQ")
# kind, request id, account id, token, amount, destination, deadline (unix s), block, account address
_FORCED = struct.Struct("<BQIB32s20sQQ20s")
_FORCED_CANCEL = struct.Struct("<BQ")
_FUND_HEAD = struct.Struct("<BQQ32sB")  # kind, block, lastBatchId, lastBatchHash, token count; then u256 each
_EVENTS_HEAD = struct.Struct("<BHIQQ")  # kind, partition, slots consumed, ring cursor before, ring nonce

KEPT_EVENTS = frozenset(
    int(t)
    for t in (MsgType.BALANCE, MsgType.POSITION, MsgType.PRICE, MsgType.ACCOUNT_MARGIN, MsgType.REJECTED)
)
_BALANCE = BY_TYPE[MsgType.BALANCE].struct
_POSITION = BY_TYPE[MsgType.POSITION].struct
_PRICE = BY_TYPE[MsgType.PRICE].struct
_MARGIN = BY_TYPE[MsgType.ACCOUNT_MARGIN].struct
_REJECTED = BY_TYPE[MsgType.REJECTED].struct
_DEPOSIT_CMD = BY_TYPE[MsgType.DEPOSIT].struct
_SETTLED = BY_TYPE[MsgType.SETTLED].struct
_RESULT_CMD = BY_TYPE[MsgType.WITHDRAW_RESULT].struct
_REQUEST_CMD = BY_TYPE[MsgType.WITHDRAW_REQUEST].struct
_REQUEST_CANCELLED = re.compile(r"RequestCancelled\(\(?(\d+),?\)")  # the EscapeHatch's error, as decoded
# the ClearingHouse's error, as decoded
_NONCE_USED = re.compile(r"NonceAlreadyUsed\('(0x[0-9a-fA-F]{40})', (\d+)\)")
USDC_PRICE_MICRO = 10**6
# withdrawals going back in the queue: (account, nonce) -> (payload, hold), as wd_payload and wd_hold hold them
_Requeue = dict[tuple[int, int], tuple[tuple[int, int, str, int, bytes, str], tuple[int, int]]]


def pack_events(
    partition: int, slots: bytes | memoryview, consumed: int = 0, cursor: int = 0, nonce: int = 0
) -> bytes:
    """An EVENTS record: the kept slots, and where they came from (the process moves its cursor past
    ``cursor + consumed`` of ring ``nonce`` when it recovers from the journal)."""
    return _EVENTS_HEAD.pack(EVENTS, partition, consumed, cursor, nonce) + bytes(slots)


def unpack_events_head(record: bytes | memoryview) -> tuple[int, int, int, int]:
    """``(partition, consumed, cursor, nonce)`` of an EVENTS record."""
    return _EVENTS_HEAD.unpack_from(record, 0)[1:]


def pack_deposit(
    deposit_id: int,
    account_id: int,
    token_index: int,
    amount: int,
    deposited_at: int,
    block: int,
    account: str,
) -> bytes:
    return _DEPOSIT.pack(
        DEPOSIT, deposit_id, account_id, token_index, deposited_at, block, amount.to_bytes(32, "big"),
        address_bytes(account),
    )  # fmt: skip


def pack_clock(now_ns: int) -> bytes:
    return _CLOCK.pack(CLOCK, now_ns)


def pack_confirmed(batch_id: int, block: int, now_ns: int) -> bytes:
    return _CONFIRMED.pack(CONFIRMED, batch_id, block, now_ns)


def pack_failed(batch_id: int, reason: str) -> bytes:
    return struct.pack("<BQ", FAILED, batch_id) + reason.encode()[:1000]


def pack_resume() -> bytes:
    return bytes((RESUME,))


def pack_withdrawal(
    account_id: int, token_index: int, w: Withdrawal, signature: bytes, chain_ok: bool, log_offset: int = 0
) -> bytes:
    """A signed withdrawal as the gateway logged it; ``chain_ok``: the chain's own checks passed when it
    was read (nonce unused on chain, ERC-1271 approval for a smart account)."""
    sig = bytes(signature)
    if len(sig) != 65:
        sig = b"\0" * 65
        chain_ok = False
    return _WITHDRAWAL.pack(
        WITHDRAWAL, account_id, token_index, w.amount.to_bytes(32, "big"), address_bytes(w.destination),
        w.nonce.to_bytes(32, "big"), min(w.expiry, (1 << 64) - 1), int(chain_ok), sig, address_bytes(w.account),
    ) + struct.pack("<Q", log_offset)  # fmt: skip


def pack_log_offset(offset: int) -> bytes:
    """The withdrawal log was read up to ``offset`` (past a malformed line)."""
    return struct.pack("<BQ", LOG_OFFSET, offset)


def pack_rollback(batch_id: int, batch_hash_: bytes) -> bytes:
    """The chain's canonical history ends at our batch ``batch_id`` again (later ones were voided)."""
    return struct.pack("<BQ32s", ROLLBACK, batch_id, batch_hash_)


def pack_forced(
    request_id: int,
    account_id: int,
    token_index: int,
    amount: int,
    destination: str,
    deadline: int,
    block: int,
    account: str,
) -> bytes:
    """A forced withdrawal request (``EscapeHatch.ForcedWithdrawalRequested``) with its confirmations."""
    return _FORCED.pack(
        FORCED, request_id, account_id, token_index, amount.to_bytes(32, "big"), address_bytes(destination),
        min(deadline, (1 << 64) - 1), block, address_bytes(account),
    )  # fmt: skip


def pack_forced_cancel(request_id: int) -> bytes:
    """The account cancelled forced request ``request_id`` on chain (``ForcedWithdrawalCancelled``)."""
    return _FORCED_CANCEL.pack(FORCED_CANCEL, request_id)


def pack_fund(block: int, last_batch_id: int, last_batch_hash: bytes, balances: Sequence[int]) -> bytes:
    """What the InsuranceFund holds on chain (``expectedBalance`` per listed token, listing order) at
    ``block``, with the ClearingHouse's last batch at that block (what the reconciliation compares with)."""
    head = _FUND_HEAD.pack(FUND, block, last_batch_id, bytes(last_batch_hash), len(balances))
    return head + b"".join(int(b).to_bytes(32, "big") for b in balances)


def unpack_fund(record: bytes | memoryview) -> tuple[int, int, bytes, list[int]] | None:
    """``(block, last batch id, last batch hash, balances)`` of a FUND record; None if malformed."""
    if len(record) < _FUND_HEAD.size:
        return None
    _k, block, last, last_hash, n = _FUND_HEAD.unpack_from(record, 0)
    if len(record) != _FUND_HEAD.size + 32 * n:
        return None
    off = _FUND_HEAD.size
    return (
        block,
        last,
        bytes(last_hash),
        [int.from_bytes(record[off + 32 * i : off + 32 * i + 32], "big") for i in range(n)],
    )


def pack_paid(batch_id: int) -> bytes:
    """Every payout of ``batch_id`` was executed on chain."""
    return _PAID.pack(PAID, batch_id)


@dataclass(frozen=True)
class TokenSpec:
    """One token the Vault lists (listing order): its address, decimals, and the engine asset it maps to
    (-1: none; such deposits are never credited in the engine)."""

    address: str
    decimals: int
    asset_id: int


@dataclass(frozen=True)
class SettlementSpec:
    """What the core is told: the chain, the tokens, the engine's assets and perps, the batch rules."""

    chain_id: int
    clearing_house: str
    tokens: tuple[TokenSpec, ...]
    risk: RiskConfig
    fee_address: str  # the exchange's own leaf (fees, liquidation, dust; insurance until the fund is on)
    partitions: int = 1
    insurance_fund: str = ""  # the InsuranceFund ("": insurance stays in the exchange's leaf)
    batch_interval_ns: int = 1_000_000_000
    batch_max_events: int = 10_000
    keepalive_ns: int = 3600 * 1_000_000_000  # an empty batch at least this often (freeze period >> it)
    forced_retry_ns: int = 10 * 1_000_000_000  # a forced request that cannot be served asks risk again

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0].asset_id != 0:
            raise ValueError("tokens[0] must be the settlement stablecoin, mapped to asset 0")
        seen = set()
        for t in self.tokens:
            if t.asset_id >= 0:
                if t.asset_id in seen or t.asset_id >= self.risk.n_assets:
                    raise ValueError(f"token {t.address}: asset {t.asset_id} unknown or mapped twice")
                seen.add(t.asset_id)
                if t.decimals < self._asset_decimals(t.asset_id):
                    raise ValueError(f"token {t.address}: fewer decimals than the engine's unit")

    def _asset_decimals(self, asset_id: int) -> int:
        return len(str(self.risk.assets[asset_id].scale)) - 1

    def factor(self, token_index: int) -> int:
        """Token base units per engine unit of the mapped asset."""
        t = self.tokens[token_index]
        return 10 ** (t.decimals - self._asset_decimals(t.asset_id)) if t.asset_id >= 0 else 1


@dataclass
class SealedBatch:
    """A batch as the journal fixed it: what the sender posts and the chain must hold."""

    batch_id: int
    prev_hash: bytes
    last_credited_deposit_id: int
    deposits: list[tuple[str, str, int, int]]
    assets: list[AssetState]
    withdrawals: list[tuple[Any, ...]]
    data: bytes
    hash: bytes
    covered: dict[int, int]  # account id -> last private seq the batch covers
    events: int
    sealed_ns: int
    # (requestId, amount, leafIndex, proof) per forced request served, the contract's ForcedServe
    forced: tuple[tuple[int, int, int, list[tuple[bytes, int]]], ...] = ()
    # (token, amount) per insurance move, the contract's InsuranceMove: > 0 vault -> fund, < 0 fund -> vault
    insurance_moves: tuple[tuple[str, int], ...] = ()


# states of a forced request (``ForcedRequest.state``)
ASKING, READY, WAITING = 0, 1, 2


@dataclass
class ForcedRequest:
    """A forced withdrawal request on its way into a batch (see the module docstring)."""

    request_id: int
    account_id: int
    token: int
    amount: int  # token base units, as requested
    destination: str
    address: bytes
    deadline: int  # unix s: after it, anyone may freeze unless the request is settled
    state: int = ASKING
    held: int = 0  # engine units risk holds for it (request id FORCED_BIT | request_id)
    retry_ns: int = 0
    cancelled: bool = False
    why: str = ""  # why risk let go of nothing (its reject code), if it did
    alarmed: str = ""  # the last reason it could not be served, as alarmed (once per reason)
    served: int = 0  # token base units the batch serves
    from_extra: int = 0  # of which from the account's ``extra``


@dataclass
class Outputs:
    commands: dict[int, bytearray] = field(default_factory=dict)  # partition -> slots
    events: bytearray = field(default_factory=bytearray)  # SETTLED slots
    alarms: list[str] = field(default_factory=list)
    sealed: SealedBatch | None = None
    confirmed: list[tuple[int, int, int]] = field(default_factory=list)  # (batch, block, fill events)


class SettlementEngine:
    """The deterministic core (see the module docstring).

    Parameters
    ----------
    spec : the chain, tokens, assets and batch rules.
    address_of : account id -> 0x address (the shared account registry); ``None`` if unknown.
    """

    def __init__(self, spec: SettlementSpec, address_of: Callable[[int], str | None]) -> None:
        self.spec = spec
        self.address_of = address_of
        self.fee = address_bytes(spec.fee_address)
        n_tokens = len(spec.tokens)
        self.asset_token = {t.asset_id: i for i, t in enumerate(spec.tokens) if t.asset_id >= 0}
        self.perp_markets = {m.market_id for m in spec.risk.markets.values() if m.is_perp}
        # ---- engine mirror
        self.balance: dict[tuple[int, int], tuple[int, int]] = {}  # (account, asset) -> (balance, held)
        self.position: dict[tuple[int, int], tuple[int, int]] = {}  # (account, market) -> (size, cost)
        self.isolated: dict[tuple[int, int], int] = {}  # (account, market) -> isolated margin, micro-USDC
        self.mark: dict[int, int] = {}  # perp market -> mark micro
        self.price: dict[int, int] = {}  # asset -> price micro
        self.seq: dict[int, int] = {}  # account -> last private seq seen
        self.addresses: dict[int, bytes] = {}  # account id -> leaf address
        self.holders: dict[int, set[int]] = {}  # perp market / no-token asset (as -1 - asset) -> accounts
        # ---- chain mirror
        self.extra: dict[tuple[bytes, int], int] = {}  # (address, token) -> base units kept out of the engine
        self.deposits_seen = 0  # last deposit id recorded
        self.deposits_resolved = 0  # deposits up to here are in the engine (or in extra)
        self.deposit_records: dict[
            int, tuple[str, str, int, int, int]
        ] = {}  # unbatched, by id (+ token index)
        self.in_flight: dict[
            int, tuple[int, int, bytes, int, int]
        ] = {}  # id -> (account, token, addr, units, wei)
        self.credited_wei = [0] * n_tokens  # credited by accepted or sealed batches
        self.queued_wei = [0] * n_tokens
        self.deposit_acc = ZERO_HASH
        # ---- withdrawals: a signed payload (from the gateway's log) meets risk's hold, then a batch
        self.wd_payload: dict[tuple[int, int], tuple[int, int, str, int, bytes, str]] = {}  # (acct, nonce) ->
        self.wd_hold: dict[tuple[int, int], tuple[int, int]] = {}  # (account, nonce) -> (asset, units)
        self.wd_ready: list[tuple[int, int]] = []  # paired and checked, in pairing order
        self.nonces_used: set[tuple[int, int]] = set()
        # account -> until when (engine ns) its withdrawals are refused: it front-ran a batch (audit A-4)
        self.withdrawal_barred: dict[int, int] = {}
        self.acct_queued: dict[tuple[int, int], int] = {}  # (account, asset) -> units in batches, unpaid
        # batch -> (account, asset, units, nonce) of its withdrawals, and its payouts, until executed
        self.batch_withdrawals: dict[int, list[tuple[int, int, int, int]]] = {}
        self.batch_payouts: dict[int, list[Payout]] = {}
        # (account, nonce) -> units: paid on chain, risk not yet told
        self.paying: dict[tuple[int, int], int] = {}
        self.withdrawal_log_offset = 0  # the gateways' withdrawals.log is journaled up to here
        # ---- forced withdrawals: a request on chain meets risk's hold, then the next batch that can serves it
        self.forced_seen = 0  # last request id recorded
        self.forced: dict[int, ForcedRequest] = {}  # request id -> not yet in a batch
        self.batch_forced: dict[int, list[ForcedRequest]] = {}  # batch -> the requests it serves, until paid
        # ---- insurance fund (on from the first FUND record): the insurance accounts' balances on chain
        self.fund_on = False
        self.fund_in_wei = [0] * n_tokens  # the contract's fundIn ledger: moved fund -> vault (canonical)
        self.fund_paid_in = [0] * n_tokens  # moved vault -> fund and executed: the fund received it
        self.fund_unpaid: dict[int, list[int]] = {}  # batch -> its moves into the fund not executed yet
        self.fund_queued_in = [0] * n_tokens  # their sum per token
        self.fund_moves: dict[int, list[int]] = {}  # batch -> its signed moves per token (canonical batches)
        self.fund_base = [0] * n_tokens  # what the fund holds that no batch of ours moved (adopted)
        self.fund_short = [0] * n_tokens  # the last batch could not take this much back from the fund
        self.fund_why = [""] * n_tokens  # why, as alarmed (once per reason)
        self.fund_seen: tuple[int, int, list[int]] = (0, 0, [])  # last observation: block, batch, balances
        self.fund_accept = False  # an operator resumed: the next difference is adopted, not a halt
        # batch -> (hash, published data, credited deposit id, deposit hash, credited and queued per token)
        self.history: dict[int, tuple[bytes, bytes, int, bytes, list[int], list[int]]] = {}
        self.batch_credited = 0
        # ---- batches
        self.trees = AccountTrees([t.address for t in spec.tokens])
        self.leaf_value: dict[tuple[bytes, int], int] = {}
        self.sum_value = [0] * n_tokens  # over every leaf but the fee address
        self.touched: set[int] = set()
        self.dirty_marks: set[int] = set()
        self.events_waiting = 0
        self.last_seal_ns = 0
        self.now_ns = 0
        self.confirmed_id = 0
        self.confirmed_hash = ZERO_HASH
        self.pending: SealedBatch | None = None
        self.halted = ""
        self.accept_difference = False
        self.out = Outputs()

    # ------------------------------------------------------------------ records

    def apply(self, record: bytes | memoryview) -> None:
        """Apply one journal record (outputs accumulate until ``take_outputs``)."""
        kind = record[0]
        if kind == EVENTS:
            for off in range(_EVENTS_HEAD.size, len(record) - SLOT_BYTES + 1, SLOT_BYTES):
                self._event(record, off)
        elif kind == DEPOSIT:
            _k, did, account_id, token, at, _block, amount, addr = _DEPOSIT.unpack_from(record, 0)
            self._deposit(did, account_id, token, int.from_bytes(amount, "big"), at, bytes(addr))
        elif kind == CLOCK:
            self.now_ns = max(self.now_ns, _CLOCK.unpack_from(record, 0)[1])
            if not self.last_seal_ns:
                self.last_seal_ns = self.now_ns - self.spec.batch_interval_ns  # due at once; no keepalive yet
            self._retry_forced()
            self._maybe_seal()
        elif kind == CONFIRMED:
            _k, bid, block, now = _CONFIRMED.unpack_from(record, 0)
            self.now_ns = max(self.now_ns, now)
            self._confirmed(bid, block)
        elif kind == FAILED:
            bid = struct.unpack_from("<Q", record, 1)[0]
            reason = bytes(record[9:]).decode(errors="replace")
            if not (self._drop_cancelled_serve(bid, reason) or self._drop_spent_withdrawal(bid, reason)):
                self._halt(f"batch {bid}: {reason}")
        elif kind == WITHDRAWAL:
            self._withdrawal(record)
        elif kind == ROLLBACK:
            _k, to_id, to_hash = struct.unpack_from("<BQ32s", record, 0)
            self._rollback(to_id, to_hash)
        elif kind == LOG_OFFSET:
            self.withdrawal_log_offset = max(
                self.withdrawal_log_offset, struct.unpack_from("<Q", record, 1)[0]
            )
        elif kind == PAID:
            self._paid(_PAID.unpack_from(record, 0)[1])
        elif kind == FORCED:
            self._forced_record(record)
        elif kind == FORCED_CANCEL:
            if len(record) != _FORCED_CANCEL.size:
                self._alarm(f"malformed FORCED_CANCEL record ({len(record)} bytes): ignored")
            else:
                self._forced_cancel(_FORCED_CANCEL.unpack_from(record, 0)[1])
        elif kind == FUND:
            self._fund_record(record)
        elif kind == RESUME:
            self.halted = ""
            self.accept_difference = True  # the operator looked: the next batch proceeds as reconciled
            self.fund_accept = self.fund_on
            self._alarm("resumed by the operator")
        else:
            self._alarm(f"unknown record kind {kind}: ignored")

    def take_outputs(self) -> Outputs:
        out, self.out = self.out, Outputs()
        return out

    # ------------------------------------------------------------------ risk events

    def _event(self, buf: bytes | memoryview, off: int) -> None:
        t = buf[off]
        if t == MsgType.BALANCE:
            f = _BALANCE.unpack_from(buf, off)
            market, (seq, account, asset, reason, balance, _delta, held, ref) = f[3], f[4:12]
            if asset >= self.spec.risk.n_assets:
                self._alarm(f"BALANCE of unknown asset {asset} (account {account}): ignored")
                return
            if market:  # the margin of the account's isolated position in that perp (part of its USDC)
                if market not in self.perp_markets or asset != 0:
                    self._alarm(f"BALANCE of an isolated position in {market} (asset {asset}): ignored")
                    return
                self._see(account, seq)
                if balance:
                    self.isolated[(account, market)] = balance
                else:
                    self.isolated.pop((account, market), None)
                self._count_event()
                return
            self._see(account, seq)
            self.balance[(account, asset)] = (balance, held)
            if asset not in self.asset_token:
                self._hold(-1 - asset, account, balance != 0 or held != 0)
            if reason == BalanceReason.DEPOSIT and ref in self.in_flight:
                self._resolve(ref, credited=True)
            elif reason == BalanceReason.WITHDRAW_HOLD and ref & FORCED_BIT:
                self._forced_held(account, asset, ref & ~FORCED_BIT, -_delta)
            elif reason == BalanceReason.WITHDRAW_HOLD:
                self.wd_hold[(account, ref)] = (asset, -_delta)
                self._pair(account, ref)
            elif reason == BalanceReason.WITHDRAW_PAID:
                key = (account, asset)
                left = self.acct_queued.get(key, 0) - (self.paying.pop((account, ref), 0))
                if left:
                    self.acct_queued[key] = left
                else:
                    self.acct_queued.pop(key, None)
        elif t == MsgType.POSITION:
            f = _POSITION.unpack_from(buf, off)
            market, seq, account, size, cost = f[3], f[4], f[5], f[6], f[7]
            if market not in self.perp_markets:
                self._alarm(f"POSITION in unknown perp {market}: ignored")
                return
            self._see(account, seq)
            self.position[(account, market)] = (size, cost)
            self._hold(market, account, size != 0 or cost != 0)
        elif t == MsgType.PRICE:
            f = _PRICE.unpack_from(buf, off)
            market, asset, kind, price = f[3], f[4], f[5], f[7]
            if kind == 0 and market in self.perp_markets:
                if self.mark.get(market) != price:
                    self.mark[market] = price
                    self.dirty_marks.add(market)
            elif kind == 1 and asset < self.spec.risk.n_assets:
                if self.price.get(asset) != price:
                    self.price[asset] = price
                    if asset not in self.asset_token:
                        self.dirty_marks.add(-1 - asset)
        elif t == MsgType.ACCOUNT_MARGIN:
            seq, account = _MARGIN.unpack_from(buf, off)[4:6]
            self._see(account, seq)
        elif t == MsgType.REJECTED:
            f = _REJECTED.unpack_from(buf, off)
            seq, ref, account, reason, command = f[4], f[5], f[8], f[9], f[10]
            if (
                command == MsgType.DEPOSIT
                and ref in self.in_flight
                and reason != RejectCode.DUPLICATE_DEPOSIT
            ):
                self._alarm(f"risk refused deposit {ref} (reason {reason}): kept in the depositor's leaf")
                self._resolve(ref, credited=False)
            elif command == MsgType.WITHDRAW_REQUEST and ref & FORCED_BIT:
                self._forced_refused(account, ref & ~FORCED_BIT, reason)
            if account and seq:
                self._see(account, seq)
        self._count_event()

    def _count_event(self) -> None:
        self.events_waiting += 1
        if self.events_waiting >= self.spec.batch_max_events:
            self._maybe_seal(force=True)

    def _see(self, account: int, seq: int) -> None:
        if account not in self.addresses:
            if account >= SYSTEM_ACCOUNT_BASE:
                self.addresses[account] = self.fee
            else:
                addr = self.address_of(account)
                if addr is None:
                    self._alarm(f"account {account} has no address in the registry: its events wait")
                    return
                self.addresses[account] = address_bytes(addr)
        if seq > self.seq.get(account, 0):
            self.seq[account] = seq
        self.touched.add(account)

    def _hold(self, key: int, account: int, nonzero: bool) -> None:
        s = self.holders.setdefault(key, set())
        if nonzero:
            s.add(account)
        else:
            s.discard(account)

    # ------------------------------------------------------------------ deposits

    def _deposit(self, did: int, account_id: int, token: int, amount: int, at: int, addr: bytes) -> None:
        if did <= self.deposits_seen:
            self._alarm(f"deposit {did} seen twice: ignored (nothing credited twice)")
            return
        if did != self.deposits_seen + 1:
            self._alarm(f"deposit gap: {did} after {self.deposits_seen}; refused until the gap is seen")
            return
        if token >= len(self.spec.tokens) or amount <= 0:
            self._alarm(f"deposit {did}: token {token} / amount {amount} out of range; refused")
            return
        self.deposits_seen = did
        spec = self.spec.tokens[token]
        self.deposit_records[did] = (to_checksum_address(addr), spec.address, amount, at, token)
        if spec.asset_id < 0:
            self._alarm(f"deposit {did}: token {spec.address} maps to no asset; kept in the depositor's leaf")
            self.in_flight[did] = (account_id, token, addr, 0, amount)
            self._resolve(did, credited=False)
            return
        units, _dust = divmod(amount, self.spec.factor(token))
        self.in_flight[did] = (account_id, token, addr, units, amount)
        if units == 0 or units >= 1 << 62:
            self._resolve(did, credited=False)
            return
        part = account_id % self.spec.partitions
        self.out.commands.setdefault(part, bytearray()).extend(
            _DEPOSIT_CMD.pack(
                MsgType.DEPOSIT, WIRE_VERSION, SLOT_BYTES, 0, account_id, spec.asset_id, DepositSource.CHAIN,
                units, did,
            )
        )  # fmt: skip

    def _resolve(self, did: int, credited: bool) -> None:
        account_id, token, addr, units, wei = self.in_flight.pop(did)
        kept = wei - units * self.spec.factor(token) if credited else wei
        if kept:
            key = (addr, token)
            self.extra[key] = self.extra.get(key, 0) + kept
            self.touched.add(account_id)
            self.addresses.setdefault(account_id, addr)
        while (
            self.deposits_resolved + 1 <= self.deposits_seen
            and self.deposits_resolved + 1 not in self.in_flight
        ):
            self.deposits_resolved += 1

    # ------------------------------------------------------------------ withdrawals

    def _withdrawal(self, record: bytes | memoryview) -> None:
        f = _WITHDRAWAL.unpack_from(record, 0)
        _k, account_id, token, amount, dest, nonce, expiry, chain_ok, sig, addr = f
        if len(record) >= _WITHDRAWAL.size + 8:
            off = struct.unpack_from("<Q", record, _WITHDRAWAL.size)[0]
            self.withdrawal_log_offset = max(self.withdrawal_log_offset, off)
        nonce_i, amount_i = int.from_bytes(nonce, "big"), int.from_bytes(amount, "big")
        key = (account_id, nonce_i)
        if key in self.wd_payload:
            self._alarm(f"withdrawal {key} logged twice: ignored")
            return
        token_addr = self.spec.tokens[token].address if token < len(self.spec.tokens) else ""
        self.wd_payload[key] = (
            token, amount_i, to_checksum_address(bytes(dest)), expiry, bytes(sig), to_checksum_address(bytes(addr)),
        ) if token_addr else (-1, 0, "", 0, b"", "")  # fmt: skip
        if not chain_ok or key in self.nonces_used:
            self.wd_payload[key] = (-1, *self.wd_payload[key][1:])
        self._pair(*key)

    def _pair(self, account: int, nonce: int) -> None:
        key = (account, nonce)
        if key not in self.wd_payload or key not in self.wd_hold:
            return
        token, amount, _dest, expiry, _sig, addr = self.wd_payload[key]
        asset, units = self.wd_hold[key]
        why = ""
        registered = self.address_of(account)
        if token < 0:
            why = "bad signature, unknown token or nonce already used"
        elif self.spec.tokens[token].asset_id != asset or units * self.spec.factor(token) != amount:
            why = f"signed {amount} of token {token}, risk holds {units} of asset {asset}"
        elif registered is None or registered.lower() != addr.lower():
            why = "signed by another account"
        elif key in self.nonces_used:
            why = "nonce already used"
        elif self.withdrawal_barred.get(account, 0) > self.now_ns:
            why = "the account burned the nonce of a withdrawal a batch carried, within the hour"
        elif expiry < self.now_ns // 1_000_000_000 + EXPIRY_MARGIN_S:
            why = "expired"
        if why:
            self._alarm(f"withdrawal {nonce} of account {account} refused: {why}; the hold returns")
            self._result(account, asset, units, nonce, WithdrawStatus.FAILED)
            del self.wd_payload[key], self.wd_hold[key]
            return
        self.nonces_used.add(key)
        self.wd_ready.append(key)

    def _result(self, account: int, asset: int, units: int, nonce: int, status: int) -> None:
        part = account % self.spec.partitions
        self.out.commands.setdefault(part, bytearray()).extend(
            _RESULT_CMD.pack(
                MsgType.WITHDRAW_RESULT, WIRE_VERSION, SLOT_BYTES, 0, account, asset, status, units, nonce
            )
        )

    def _paid(self, batch_id: int) -> None:
        into_fund = self.fund_unpaid.pop(batch_id, None)
        if into_fund is not None:  # moves into the fund are the batch's first payouts: the fund holds them
            self.fund_paid_in = [a + b for a, b in zip(self.fund_paid_in, into_fund, strict=True)]
            self.fund_queued_in = [a - b for a, b in zip(self.fund_queued_in, into_fund, strict=True)]
        self.batch_payouts.pop(batch_id, None)
        self.batch_forced.pop(batch_id, None)
        for account, asset, units, nonce in self.batch_withdrawals.pop(batch_id, []):
            self.paying[(account, nonce)] = units
            self._result(account, asset, units, nonce, WithdrawStatus.PAID)

    # ------------------------------------------------------------------ forced withdrawals

    def _forced_record(self, record: bytes | memoryview) -> None:
        if len(record) != _FORCED.size:
            self._alarm(f"malformed FORCED record ({len(record)} bytes): ignored")
            return
        _k, rid, account_id, token, amount, dest, deadline, _block, addr = _FORCED.unpack_from(record, 0)
        amount_i = int.from_bytes(amount, "big")
        if rid <= self.forced_seen:
            self._alarm(f"forced request {rid} seen twice: ignored (nothing served twice)")
            return
        if rid != self.forced_seen + 1:
            self._alarm(f"forced request gap: {rid} after {self.forced_seen}; refused until the gap is seen")
            return
        self.forced_seen = rid
        if token >= len(self.spec.tokens) or amount_i <= 0 or not any(dest) or not any(addr):
            self._alarm(
                f"forced request {rid}: token {token}, amount {amount_i} or an address out of range: "
                "not served (an operator must look before its deadline)"
            )
            return
        if bytes(addr) == self.fee:
            self._alarm(f"forced request {rid} from the exchange's own leaf address: not served")
            return
        req = ForcedRequest(
            rid, account_id, token, amount_i, to_checksum_address(bytes(dest)), bytes(addr), deadline
        )
        self.forced[rid] = req
        self._ask_risk(req)

    def _is_engine_account(self, req: ForcedRequest) -> bool:
        """Whether the request's account id is the requesting address's engine account."""
        if not 0 < req.account_id < SYSTEM_ACCOUNT_BASE:
            return False
        registered = self.address_of(req.account_id)
        return registered is not None and address_bytes(registered) == req.address

    def _ask_risk(self, req: ForcedRequest) -> None:
        """Ask risk to hold ``min(amount // f_t, free balance)`` (WITHDRAW_REQUEST, id ``FORCED_BIT | id``);
        with nothing to hold in the engine the request is ready at once (extra, or a short serve)."""
        req.state, req.held, req.why = ASKING, 0, ""
        asset = self.spec.tokens[req.token].asset_id
        units = 0
        if asset >= 0 and self._is_engine_account(req):
            free = self.balance.get((req.account_id, asset), (0, 0))[0]
            units = min(req.amount // self.spec.factor(req.token), free, (1 << 62) - 1)
        if units <= 0:
            req.state = READY
            return
        part = req.account_id % self.spec.partitions
        self.out.commands.setdefault(part, bytearray()).extend(
            _REQUEST_CMD.pack(
                MsgType.WITHDRAW_REQUEST, WIRE_VERSION, SLOT_BYTES, 0, req.account_id, asset, units,
                FORCED_BIT | req.request_id,
            )
        )  # fmt: skip

    def _forced_held(self, account: int, asset: int, rid: int, units: int) -> None:
        req = self.forced.get(rid)
        if (
            req is None
            or req.state != ASKING
            or req.cancelled
            or req.account_id != account
            or self.spec.tokens[req.token].asset_id != asset
        ):  # cancelled meanwhile, or a hold not asked for: it returns
            if req is not None and req.cancelled:
                del self.forced[rid]
            self._result(account, asset, units, FORCED_BIT | rid, WithdrawStatus.FAILED)
            return
        req.held, req.state = units, READY

    def _forced_refused(self, account: int, rid: int, reason: int) -> None:
        req = self.forced.get(rid)
        if req is None or req.state != ASKING or req.account_id != account:
            return
        if req.cancelled:
            del self.forced[rid]
            return
        req.held, req.state, req.why = 0, READY, f"risk refused the hold (reject code {reason})"

    def _forced_cancel(self, rid: int) -> None:
        req = self.forced.get(rid)
        if req is None:
            if any(r.request_id == rid for rs in self.batch_forced.values() for r in rs):
                self._alarm(
                    f"forced request {rid} was cancelled on chain after our batch served it: the chain "
                    "refuses that batch unless it held it first"
                )
            return
        if req.state == ASKING:
            req.cancelled = True  # risk's answer is still coming: its hold returns then
            return
        if req.held:
            asset = self.spec.tokens[req.token].asset_id
            self._result(req.account_id, asset, req.held, FORCED_BIT | rid, WithdrawStatus.FAILED)
        del self.forced[rid]

    def _retry_forced(self) -> None:
        for rid in sorted(self.forced):
            req = self.forced[rid]
            if req.state == WAITING and self.now_ns >= req.retry_ns:
                self._ask_risk(req)

    def _forced_wait(self, req: ForcedRequest, why: str) -> None:
        """The request cannot be served in this batch: the hold returns, risk is asked again later."""
        if req.held:
            asset = self.spec.tokens[req.token].asset_id
            self._result(req.account_id, asset, req.held, FORCED_BIT | req.request_id, WithdrawStatus.FAILED)
        if why != req.alarmed:
            self._alarm(
                f"forced request {req.request_id} of 0x{req.address.hex()} ({req.amount} of token "
                f"{req.token}) cannot be served yet: {why}; asked again every "
                f"{self.spec.forced_retry_ns // 1_000_000_000} s; deadline {req.deadline} (then anyone may freeze)"
            )
        req.held, req.state, req.alarmed = 0, WAITING, why
        req.retry_ns = self.now_ns + self.spec.forced_retry_ns

    def _take_forced(self, bid: int, payouts: list[Payout]) -> list[ForcedRequest]:
        """Move ready forced requests into batch ``bid``, in id order: in full (risk's hold plus ``extra``), or
        short only when the serve empties the account's claim leaf of the token (the contract's proof)."""
        taken: list[ForcedRequest] = []
        for rid in sorted(self.forced):
            req = self.forced[rid]
            if req.state != READY:
                continue
            if len(taken) >= MAX_FORCED_PER_BATCH:
                break
            t = req.token
            asset = self.spec.tokens[t].asset_id
            key = (req.address, t)
            engine_part = req.held * self.spec.factor(t)
            from_extra = min(req.amount - engine_part, self.extra.get(key, 0))
            served = engine_part + from_extra
            accounts = sorted(a for a, ad in self.addresses.items() if ad == req.address)
            if served < req.amount:
                left = self._value(req.address, accounts)[t] - served
                if left > 0:
                    why = req.why or "the account holds more of the token than risk lets go (margin)"
                    self._forced_wait(req, why)
                    continue
            del self.forced[rid]
            req.served, req.from_extra = served, from_extra
            if from_extra:
                rest = self.extra[key] - from_extra
                if rest:
                    self.extra[key] = rest
                else:
                    del self.extra[key]
            if req.held:
                q = (req.account_id, asset)
                self.acct_queued[q] = self.acct_queued.get(q, 0) + req.held
                self.batch_withdrawals.setdefault(bid, []).append(
                    (req.account_id, asset, req.held, FORCED_BIT | rid)
                )
            self.queued_wei[t] += served
            self.touched.update(accounts)
            self.trees.ensure_account(req.address)  # a short serve proves a leaf at its index
            if served:
                payouts.append(
                    Payout(PAYOUT_FORCED, to_checksum_address(req.address), self.spec.tokens[t].address,
                           served, req.destination, rid)
                )  # fmt: skip
            taken.append(req)
        if taken:
            self.batch_forced[bid] = taken
            if payouts:
                self.batch_payouts[bid] = payouts
        return taken

    def _forced_serves(self, taken: list[ForcedRequest]) -> tuple[tuple[int, int, int, list[Any]], ...]:
        """The contract's ``ForcedServe`` of each request, proofs against the batch's final trees."""
        serves: list[tuple[int, int, int, list[Any]]] = []
        for req in taken:
            if req.served == req.amount:
                serves.append((req.request_id, req.served, 0, []))
                continue
            amount, index, proof = self.trees.leaf_proof(req.address, req.token, CLAIM)
            if amount:  # the take said the leaf would be empty: a bug, and the chain will refuse the batch
                self._alarm(f"forced request {req.request_id}: short serve but the claim leaf is {amount}")
            serves.append((req.request_id, req.served, index, proof))
        return tuple(serves)

    def _take_withdrawals(self, bid: int) -> tuple[list[tuple[Any, ...]], list[Payout]]:
        """Move ready withdrawals into batch ``bid`` (queued: they leave the leaves and the holdings)."""
        signed: list[tuple[Any, ...]] = []
        payouts: list[Payout] = []
        entries = []
        now_s = self.now_ns // 1_000_000_000
        keep = []
        for key in self.wd_ready:
            token, amount, dest, expiry, sig, addr = self.wd_payload[key]
            asset, units = self.wd_hold[key]
            if len(signed) >= MAX_WITHDRAWALS_PER_BATCH:
                keep.append(key)
                continue
            if expiry < now_s + EXPIRY_MARGIN_S:
                self._alarm(
                    f"withdrawal {key[1]} of account {key[0]} expired before a batch: the hold returns"
                )
                self._result(key[0], asset, units, key[1], WithdrawStatus.FAILED)
            else:
                t_addr = self.spec.tokens[token].address
                w = Withdrawal(addr, t_addr, amount, dest, key[1], expiry)
                signed.append(w.signed(sig))
                payouts.append(Payout(PAYOUT_WITHDRAWAL, addr, t_addr, amount, dest, key[1]))
                self.queued_wei[token] += amount
                q = (key[0], asset)
                self.acct_queued[q] = self.acct_queued.get(q, 0) + units
                self.touched.add(key[0])
                entries.append((key[0], asset, units, key[1]))
            del self.wd_payload[key], self.wd_hold[key]
        self.wd_ready = keep
        if entries:
            self.batch_withdrawals[bid] = entries
            self.batch_payouts[bid] = payouts
        return signed, payouts

    # ------------------------------------------------------------------ insurance fund

    def _insurance_wei(self, t: int) -> int:
        """The engine's insurance accounts' balance (every partition, holds included) of token ``t``'s
        asset, token base units (may be negative: a deficit the fund owes)."""
        asset = self.spec.tokens[t].asset_id
        if asset < 0:
            return 0
        units = 0
        for p in range(self.spec.partitions):
            bh = self.balance.get((insurance_account(p), asset))
            if bh is not None:
                units += bh[0] + bh[1]
        return units * self.spec.factor(t)

    def _fund_sent(self, t: int) -> int:
        """What our canonical batches moved toward the fund, net: into it (executed or queued) minus out of
        it. The vault's holdings are lower by exactly this."""
        return self.fund_paid_in[t] + self.fund_queued_in[t] - self.fund_in_wei[t]

    def _fund_available(self, t: int) -> int:
        """What a move out of the fund may take: what the fund received from our batches (executed
        payouts) minus what our batches took back, less anything governance took (never more)."""
        return max(self.fund_paid_in[t] - self.fund_in_wei[t] + min(self.fund_base[t], 0), 0)

    def _insurance_deltas(self) -> list[tuple[int, int]]:
        """Per token ``(move, shortfall)``: the move that brings the fund to the insurance balance (clamped
        at 0) without asking the fund for more than it holds on chain, and what must wait for it."""
        out = []
        for t in range(len(self.spec.tokens)):
            want = max(self._insurance_wei(t), 0) - self._fund_sent(t)
            if want >= 0:
                out.append((want, 0))
            else:
                take = min(-want, self._fund_available(t))
                out.append((-take, -want - take))
        return out

    def _insurance_work(self) -> bool:
        return self.fund_on and any(m for m, _short in self._insurance_deltas())

    def _take_insurance(self, bid: int, payouts: list[Payout]) -> list[tuple[str, int]]:
        """Batch ``bid``'s insurance moves (see ``_insurance_deltas``): a move into the fund is queued (the
        holdings drop at once, the fund receives it when the batch's payouts execute, first of them); a move
        out of the fund is paid into the vault while the chain accepts the batch."""
        if not self.fund_on:
            return []
        moves: list[tuple[str, int]] = []
        signed = [0] * len(self.spec.tokens)
        into = [0] * len(self.spec.tokens)
        fund = to_checksum_address(self.spec.insurance_fund)
        into_payouts = []
        for t, (move, short) in enumerate(self._insurance_deltas()):
            token = self.spec.tokens[t].address
            why = ""
            if short:
                why = (
                    f"batch {bid} takes {max(-move, 0)} of token {token} back from the InsuranceFund, all it holds "
                    f"on chain by our batches; {short} more waits for the next batch (moves into the fund reach "
                    "it when their batch's payouts execute, after the dispute window)"
                )
                if not self.fund_short[t]:  # once per shortfall, not once per batch
                    self._alarm(f"insurance shortfall: {why}")
            elif self.fund_short[t]:
                self._alarm(f"insurance shortfall of token {token} covered by batch {bid}")
            self.fund_short[t], self.fund_why[t] = short, why
            if not move:
                continue
            moves.append((token, move))
            signed[t] = move
            if move > 0:
                into[t] = move
                self.queued_wei[t] += move
                into_payouts.append(Payout(PAYOUT_TO_FUND, fund, token, move, fund, 0))
            else:
                self.fund_in_wei[t] -= move
        if moves:
            self.fund_moves[bid] = signed
        if into_payouts:
            self.fund_unpaid[bid] = into
            self.fund_queued_in = [a + b for a, b in zip(self.fund_queued_in, into, strict=True)]
            payouts[:0] = into_payouts  # the contract queues moves into the fund first
            self.batch_payouts[bid] = payouts
        return moves

    def insurance_status(self) -> dict[str, Any]:
        """Per token: the engine's insurance balance, what the fund holds by our batches, what is queued into
        it, the shortfall waiting and why, the last on-chain observation (for ``status.json``)."""
        block, last, seen = self.fund_seen
        tokens = {}
        for t, spec in enumerate(self.spec.tokens):
            tokens[spec.address] = {
                "engine": self._insurance_wei(t),
                "fund_expected": self.fund_base[t] + self.fund_paid_in[t] - self.fund_in_wei[t],
                "queued_into_fund": self.fund_queued_in[t],
                "fund_on_chain": seen[t] if t < len(seen) else None,
                "shortfall": self.fund_short[t],
                "waiting": self.fund_why[t],
            }
        return {"on": self.fund_on, "observed_block": block, "observed_batch": last, "tokens": tokens}

    def _fund_record(self, record: bytes | memoryview) -> None:
        """The chain's InsuranceFund balances: the first switches insurance moves on (what the fund already
        holds is adopted as not ours); later ones are compared with what our batches put there, modulo
        what is in flight (the in-flight batch's moves out, moves into the fund not yet executed)."""
        f = unpack_fund(record)
        n_tokens = len(self.spec.tokens)
        if f is None or len(f[3]) != n_tokens:
            self._alarm(f"malformed FUND record ({len(record)} bytes): ignored")
            return
        if not self.spec.insurance_fund:
            self._alarm("FUND record without an InsuranceFund in the spec: ignored")
            return
        block, last, last_hash, bal = f
        if not self.fund_on:
            self.fund_on = True
            self.fund_base = list(bal)
            self.fund_seen = (block, last, list(bal))
            self._alarm(
                f"insurance moves on from batch {self.confirmed_id + 1}: the engine's insurance accounts are "
                f"mirrored in the InsuranceFund (it holds {bal} already, not ours)"
            )
            return
        p = self.pending
        zeros = [0] * n_tokens
        if last == self.confirmed_id and last_hash == self.confirmed_hash:
            # the in-flight batch is not on chain yet: its moves out have not left the fund
            flying = self.fund_moves.get(p.batch_id, zeros) if p is not None else zeros
            pending_out = [-min(m, 0) for m in flying]
        elif p is not None and last == p.batch_id and last_hash == p.hash:
            pending_out = zeros
        else:
            return  # the chain is elsewhere (rolled back, not ours): the sender reports that
        self.fund_seen = (block, last, list(bal))
        diffs = []
        for t in range(n_tokens):
            lo = self.fund_base[t] + self.fund_paid_in[t] - self.fund_in_wei[t] + pending_out[t]
            hi = lo + sum(m[t] for b, m in self.fund_unpaid.items() if b <= last)
            if not lo <= bal[t] <= hi:
                diffs.append((t, lo, hi))
        if diffs and self.fund_accept:
            for t, lo, hi in diffs:
                self.fund_base[t] += bal[t] - (lo if bal[t] < lo else hi)
            self._alarm(
                f"insurance fund difference adopted after the operator's resume: base {self.fund_base}"
            )
        elif diffs and not self.halted:
            t, lo, hi = diffs[0]
            self._halt(
                f"reconciliation: the InsuranceFund holds {bal[t]} of token {self.spec.tokens[t].address} at "
                f"block {block} (batch {last}); our batches put {lo}"
                + (f"..{hi} (in flight)" if hi != lo else "")
                + " there"
            )
        self.fund_accept = False

    # ------------------------------------------------------------------ batches

    def _maybe_seal(self, force: bool = False) -> None:
        if self.pending is not None or self.halted or self.in_flight:
            return
        due = self.now_ns - self.last_seal_ns >= self.spec.batch_interval_ns
        work = (
            self.touched
            or self.dirty_marks
            or self.deposits_resolved > self.batch_credited
            or self.wd_ready
            or any(r.state == READY for r in self.forced.values())
            or self._insurance_work()
        )
        if (force or due) and work or self.now_ns - self.last_seal_ns >= self.spec.keepalive_ns:
            self._seal()

    def _value(self, addr: bytes, accounts: Sequence[int]) -> list[int]:
        """The leaf values of one address (see the leaf model), token base units."""
        spec = self.spec
        vals = [self.extra.get((addr, t), 0) for t in range(len(spec.tokens))]
        for a in accounts:
            for asset in range(spec.risk.n_assets):
                bh = self.balance.get((a, asset))
                if bh is None:
                    continue
                units = bh[0] + bh[1] - self.acct_queued.get((a, asset), 0)
                t = self.asset_token.get(asset)
                if t is not None:
                    vals[t] += units * spec.factor(t)
                else:
                    vals[0] += (units * self.price.get(asset, 0)) // spec.risk.assets[asset].scale
            for m in self.perp_markets:
                sc = self.position.get((a, m))
                if sc is not None and (sc[0] or sc[1]):
                    vals[0] += calc_unrealised_micro(sc[0], sc[1], self.mark.get(m, 0))
                margin = self.isolated.get((a, m))
                if margin:  # an isolated position's margin: the account's USDC, held by the position
                    t = self.asset_token.get(0, 0)
                    vals[t] += margin * spec.factor(t)
        return vals

    def _set_leaf(self, addr: bytes, t: int, v: int) -> None:
        self.trees.set_leaf(addr, t, CLAIM, max(v, 0))
        self.trees.set_leaf(addr, t, LIABILITY, max(-v, 0))

    def _seal(self) -> None:
        saved = (list(self.wd_ready), dict(self.wd_payload), dict(self.wd_hold), dict(self.acct_queued),
                 list(self.queued_wei), copy.deepcopy(self.batch_withdrawals), dict(self.batch_payouts),
                 copy.deepcopy(self.forced), dict(self.extra), dict(self.batch_forced), list(self.fund_in_wei),
                 dict(self.fund_unpaid), dict(self.fund_moves), list(self.fund_short), list(self.fund_why),
                 list(self.fund_queued_in))  # fmt: skip
        saved_commands = {p: bytes(c) for p, c in self.out.commands.items()}
        bid = self.confirmed_id + 1
        withdrawals, payouts = self._take_withdrawals(bid)
        taken = self._take_forced(bid, payouts)
        moves = self._take_insurance(bid, payouts)
        touched = set(self.touched)
        for key in self.dirty_marks:
            touched |= self.holders.get(key, set())
        by_addr: dict[bytes, list[int]] = {}
        for a in sorted(touched):
            addr = self.addresses.get(a)
            if addr is not None:
                by_addr.setdefault(addr, []).append(a)
        fee_accounts = sorted(a for a, ad in self.addresses.items() if ad == self.fee)
        n_tokens = len(self.spec.tokens)
        for addr in sorted(by_addr):
            if addr == self.fee:
                continue
            vals = self._value(addr, by_addr[addr])
            for t in range(n_tokens):
                old = self.leaf_value.get((addr, t))
                if old != vals[t]:
                    self.sum_value[t] += vals[t] - (old or 0)
                    self.leaf_value[(addr, t)] = vals[t]
                    self._set_leaf(addr, t, vals[t])
                elif old is None:
                    self.leaf_value[(addr, t)] = 0
                    self.trees.ensure_account(addr)
        # deposits this batch credits, the holdings it proves
        credited = self.deposits_resolved
        credited_wei = list(self.credited_wei)
        records = []
        acc = self.deposit_acc
        for i in range(self.batch_credited + 1, credited + 1):
            account, token, amount, at, t = self.deposit_records[i]
            credited_wei[t] += amount
            acc = deposit_accumulator(acc, i, account, token, amount, at)
            records.append((account, token, amount, at))
        own = self._value(self.fee, fee_accounts)
        for t in range(n_tokens):
            # the insurance money is in the fund (or queued to it), not in the exchange's leaf
            own[t] -= self._fund_sent(t)
            residual = credited_wei[t] - self.queued_wei[t] + self.fund_in_wei[t] - self.sum_value[t]
            gap = residual - own[t]
            bound = len(self.leaf_value) // max(n_tokens, 1) + 1 if t == 0 else 0
            if abs(gap) > bound * self.spec.factor(t) and not self.accept_difference:
                (self.wd_ready, self.wd_payload, self.wd_hold, self.acct_queued, self.queued_wei,
                 self.batch_withdrawals, self.batch_payouts, self.forced, self.extra,
                 self.batch_forced, self.fund_in_wei, self.fund_unpaid, self.fund_moves, self.fund_short,
                 self.fund_why, self.fund_queued_in) = saved  # fmt: skip
                self.out.commands = {p: bytearray(c) for p, c in saved_commands.items()}
                self._halt(
                    f"reconciliation: token {self.spec.tokens[t].address} holdings leave {residual} for the "
                    f"exchange's leaf, the engine says {own[t]} (difference {gap})"
                )
                return
            if self.leaf_value.get((self.fee, t)) != residual:
                self.leaf_value[(self.fee, t)] = residual
                self._set_leaf(self.fee, t, residual)
        self.accept_difference = False
        forced = self._forced_serves(taken)
        data = self.trees.take_published_data(bid).encode()
        prices = [self._token_price(t) for t in range(n_tokens)]
        assets = self.trees.asset_states(prices)
        h = batch_hash(
            chain_id=self.spec.chain_id,
            clearing_house=self.spec.clearing_house,
            batch_id=bid,
            prev_batch_hash=self.confirmed_hash,
            state_root_=state_root(assets),
            data=data,
            last_credited_deposit_id=credited,
            deposit_accumulator_=acc,
            payouts_hash_=payouts_hash(payouts),
            insurance_moves=moves,
        )
        covered = {a: self.seq[a] for a in sorted(self.touched) if a in self.seq and a < SYSTEM_ACCOUNT_BASE}
        self.pending = SealedBatch(
            bid, self.confirmed_hash, credited, records, assets, withdrawals, data, h, covered,
            self.events_waiting, self.now_ns, forced, tuple(moves),
        )  # fmt: skip
        self.batch_credited, self.deposit_acc, self.credited_wei = credited, acc, credited_wei
        # what a rollback to this batch restores: its hash, its data, the ledger after it
        self.history[bid] = (h, data, credited, acc, list(credited_wei), list(self.queued_wei))
        self.touched = {a for a in self.touched if a not in self.addresses}  # unknown accounts wait
        self.dirty_marks = set()
        self.events_waiting = 0
        self.last_seal_ns = self.now_ns
        self.out.sealed = self.pending

    def _drop_cancelled_serve(self, bid: int, reason: str) -> bool:
        """The chain refused the in-flight batch because the account cancelled a forced request the batch
        serves (on chain between our seal and the batch): void the batch as a rollback to the last
        confirmed one, without that request (the batch's withdrawals go back in the queue); the next batch is
        sealed without it. False when the refusal is anything else (then settlement halts)."""
        m = _REQUEST_CANCELLED.search(reason)
        p = self.pending
        if m is None or p is None or p.batch_id != bid:
            return False
        rid = int(m.group(1))
        reqs = self.batch_forced.get(bid, [])
        req = next((r for r in reqs if r.request_id == rid), None)
        if req is None:
            return False
        reqs.remove(req)
        if req.from_extra:
            key = (req.address, req.token)
            self.extra[key] = self.extra.get(key, 0) + req.from_extra
        self._rollback(
            self.confirmed_id,
            self.confirmed_hash,
            f"batch {bid} refused: forced request {rid} was cancelled on chain after we sealed it; the batch "
            "is sealed again without it (its withdrawals go back in the queue)",
            self._requeue(bid),
        )
        return True

    def _drop_spent_withdrawal(self, bid: int, reason: str) -> bool:
        """The chain refused the in-flight batch because an account burned the nonce of a withdrawal the
        batch carries (``invalidateNonces``, between our seal and the batch: audit A-4). Halting would let
        any account stop settlement at will; instead the batch is voided as a rollback to the last
        confirmed one and the next batch is sealed without that withdrawal (its hold returns): the batch's
        other withdrawals go back in the queue (``_requeue``), and the account's withdrawals are refused
        for ``WITHDRAWAL_BAR_NS``. False when the refusal is anything else."""
        m = _NONCE_USED.search(reason)
        p = self.pending
        if m is None or p is None or p.batch_id != bid:
            return False
        address, nonce = address_bytes(m.group(1)), int(m.group(2))
        carried = [
            account
            for account, _asset, _units, n in self.batch_withdrawals.get(bid, [])
            if n == nonce and self.addresses.get(account) == address
        ]
        if not carried:
            return False
        self.withdrawal_barred[carried[0]] = self.now_ns + WITHDRAWAL_BAR_NS
        self._rollback(
            self.confirmed_id,
            self.confirmed_hash,
            f"batch {bid} refused: account {carried[0]} spent the nonce {nonce} of its withdrawal on chain "
            "after we sealed it; the batch is sealed again without it (its hold returns; the other withdrawals "
            "go back in the queue; its withdrawals are refused for an hour)",
            self._requeue(bid, skip=(carried[0], nonce)),
        )
        return True

    def _requeue(self, bid: int, skip: tuple[int, int] | None = None) -> _Requeue:
        """The withdrawals the sealed batch ``bid`` carries, but ``skip``, as ``_rollback`` puts them back in
        the queue: (account, nonce) -> (payload, hold), rebuilt from the batch's signed withdrawals. A batch
        the chain refused before it ran spent none of their nonces, so they go in the next batch."""
        p = self.pending
        if p is None or p.batch_id != bid:
            return {}
        tokens = [address_bytes(t.address) for t in self.spec.tokens]
        signed = {(address_bytes(w[0]), int(w[4])): w for w in p.withdrawals}
        out = {}
        for account, asset, units, nonce in self.batch_withdrawals.get(bid, []):
            w = signed.get((self.addresses.get(account, b""), nonce))
            if (account, nonce) == skip or w is None or address_bytes(w[1]) not in tokens:
                continue
            token = tokens.index(address_bytes(w[1]))
            payload = (
                token,
                int(w[2]),
                to_checksum_address(w[3]),
                int(w[5]),
                bytes(w[6]),
                to_checksum_address(w[0]),
            )
            out[(account, nonce)] = (payload, (asset, units))
        return out

    def _rollback(
        self,
        to_id: int,
        to_hash: bytes,
        why: str = "",
        requeue: _Requeue | None = None,
    ) -> None:
        """A challenge voided our batches after ``to_id``: return the holds of their withdrawals (their
        nonces stay spent on chain), restore the ledger and the trees as of ``to_id`` (replayed from our
        own published data), and re-prove every account in the next batch. ``requeue``: withdrawals
        (``_requeue``) that go back in the queue, first, instead of failing."""
        known = self.history[to_id][0] if to_id in self.history else (ZERO_HASH if to_id == 0 else None)
        top = self.pending.batch_id if self.pending is not None else self.confirmed_id
        if known != to_hash or to_id >= top:
            self._halt(f"rollback to batch {to_id} (0x{to_hash.hex()}) does not match our history")
            return
        voided = sorted(b for b in self.history if b > to_id)
        back: list[tuple[int, int]] = []
        for bid in voided:
            for account, asset, units, nonce in self.batch_withdrawals.pop(bid, []):
                q = (account, asset)
                left = self.acct_queued.get(q, 0) - units
                if left:
                    self.acct_queued[q] = left
                else:
                    self.acct_queued.pop(q, None)
                key = (account, nonce)
                if requeue and key in requeue:
                    self.wd_payload[key], self.wd_hold[key] = requeue[key]
                    back.append(key)
                    continue
                self._result(account, asset, units, nonce, WithdrawStatus.FAILED)
            self.batch_payouts.pop(bid, None)
            # its moves never happened: moves into the fund never execute, moves out go back to the fund
            # (the contract's _restoreLedgers); the next batch sends them again
            into = self.fund_unpaid.pop(bid, None)
            if into is not None:
                self.fund_queued_in = [a - b for a, b in zip(self.fund_queued_in, into, strict=True)]
            moved = self.fund_moves.pop(bid, None)
            if moved is not None:
                self.fund_in_wei = [f + min(m, 0) for f, m in zip(self.fund_in_wei, moved, strict=True)]
        self.wd_ready = back + self.wd_ready  # (put back first: they were paired before the others)
        for bid in voided:  # a voided serve leaves its request unserved on chain: it is served again
            for req in self.batch_forced.pop(bid, []):
                if req.from_extra:
                    key = (req.address, req.token)
                    self.extra[key] = self.extra.get(key, 0) + req.from_extra
                req.state, req.held, req.retry_ns, req.served, req.from_extra = WAITING, 0, 0, 0, 0
                self.forced[req.request_id] = req
        n_tokens = len(self.spec.tokens)
        if to_id:
            _h, _d, self.batch_credited, self.deposit_acc, credited, queued = self.history[to_id]
            self.credited_wei, self.queued_wei = list(credited), list(queued)
        else:
            self.batch_credited, self.deposit_acc = 0, ZERO_HASH
            self.credited_wei, self.queued_wei = [0] * n_tokens, [0] * n_tokens
        tokens = [t.address for t in self.spec.tokens]
        self.trees = AccountTrees.replay(
            tokens, [self.history[b][1] for b in sorted(self.history) if b <= to_id]
        )
        while len(self.trees.tokens) < n_tokens:
            self.trees.add_token(tokens[len(self.trees.tokens)])
        self.leaf_value, self.sum_value = {}, [0] * n_tokens
        for addr in self.trees.accounts:
            for t in range(n_tokens):
                v = self.trees.leaf(addr, t, CLAIM) - self.trees.leaf(addr, t, LIABILITY)
                self.leaf_value[(addr, t)] = v
                if addr != self.fee:
                    self.sum_value[t] += v
        for bid in voided:
            del self.history[bid]
        self.touched = set(self.addresses)
        self.pending = None
        self.confirmed_id, self.confirmed_hash = to_id, to_hash
        self._alarm(
            why
            or f"batches {voided[0]}..{voided[-1]} were voided on chain: their withdrawals' holds returned; "
            f"every account is proved again after batch {to_id}"
        )

    def _token_price(self, t: int) -> int:
        """Micro-USDC per whole token: USDC 1, others their asset's last price (1 micro if none yet:
        the contract refuses 0; only an escape basket values with it)."""
        asset = self.spec.tokens[t].asset_id
        if asset == 0:
            return USDC_PRICE_MICRO
        return max(self.price.get(asset, 0), 1) if asset > 0 else 1

    def _confirmed(self, bid: int, block: int) -> None:
        p = self.pending
        if p is None or p.batch_id != bid:
            self._alarm(f"confirmation of batch {bid}, in flight: {p.batch_id if p else None}; ignored")
            return
        self.pending = None
        self.confirmed_id, self.confirmed_hash = bid, p.hash
        for account, seq in p.covered.items():
            self.out.events.extend(
                _SETTLED.pack(
                    MsgType.SETTLED, WIRE_VERSION, SLOT_BYTES, 0, seq, account, bid, block, self.now_ns
                )
            )
        self.out.confirmed.append((bid, block, p.events))

    # ------------------------------------------------------------------ alarms, state

    def _alarm(self, text: str) -> None:
        self.out.alarms.append(text)

    def _halt(self, text: str) -> None:
        self.halted = text
        self._alarm(f"HALT: {text} (hx settlement resume)")

    _STATE = (
        "balance", "position", "isolated", "mark", "price", "seq", "addresses", "holders", "extra", "deposits_seen",
        "deposits_resolved", "deposit_records", "in_flight", "credited_wei", "queued_wei", "deposit_acc",
        "batch_credited", "leaf_value", "sum_value", "touched", "dirty_marks", "events_waiting",
        "last_seal_ns", "now_ns", "confirmed_id", "confirmed_hash", "pending", "halted", "accept_difference",
        "wd_payload", "wd_hold", "wd_ready", "nonces_used", "acct_queued", "batch_withdrawals", "paying",
        "batch_payouts", "withdrawal_log_offset", "history", "forced_seen", "forced", "batch_forced",
        "fund_on", "fund_in_wei", "fund_paid_in", "fund_unpaid", "fund_queued_in", "fund_moves", "fund_base",
        "fund_short", "fund_why", "fund_seen", "fund_accept", "withdrawal_barred",
    )  # fmt: skip

    def snapshot(self) -> bytes:
        """Every field of the state (the trees are rebuilt from the leaves on restore)."""
        state = {k: getattr(self, k) for k in self._STATE}
        state["accounts"] = list(self.trees.accounts)
        return pickle.dumps(state, protocol=5)

    def restore(self, blob: bytes) -> None:
        state = pickle.loads(blob)  # noqa: S301 - our own snapshot file, checksummed by SnapshotStore
        accounts = state.pop("accounts")
        for k, v in state.items():
            setattr(self, k, v)
        self.trees = AccountTrees([t.address for t in self.spec.tokens])
        for a in accounts:
            self.trees.ensure_account(a)
        for (addr, t), v in self.leaf_value.items():
            if v:
                self._set_leaf(addr, t, v)
        self.trees.take_published_data(0)  # the last batch published these already
        self.trees._base = len(self.trees.accounts)

    def state_hash(self) -> str:
        """A digest of the whole state, independent of dict order (replay == live)."""
        h = hashlib.sha256()
        for k in self._STATE:
            h.update(k.encode())
            h.update(repr(_canonical(getattr(self, k))).encode())
        for t in range(len(self.spec.tokens)):
            for kind in (CLAIM, LIABILITY):
                h.update(self.trees.tree(t, kind).root)
        return h.hexdigest()

    def published(self, blob: bytes) -> PublishedData:
        return PublishedData.decode(blob)


def _canonical(v: Any) -> Any:
    """``v`` with every dict and set in sorted order (their iteration order is history, not state)."""
    if isinstance(v, dict):
        return [(_canonical(k), _canonical(x)) for k, x in sorted(v.items())]
    if isinstance(v, set | frozenset):
        return sorted(v)
    if isinstance(v, list | tuple):
        return [_canonical(x) for x in v]
    if isinstance(v, SealedBatch | ForcedRequest):
        return _canonical(v.__dict__)
    return v
