"""The risk engine of one partition: accounts, pre-trade checks, post-trade accounting. Deterministic.

Inputs, one ordered stream (the risk process journals it):

* commands from gateways (NEW_ORDER, CANCEL, AMEND, CANCEL_ALL, L2_SNAPSHOT_REQUEST), checked and
  forwarded to the shard that owns the market, or refused with a REJECTED on risk's event ring;
* money commands (DEPOSIT, WITHDRAW_REQUEST, WITHDRAW_RESULT) and MARK_PRICE (also forwarded);
* every shard's events (ACCEPTED, REJECTED, FILL, CANCELLED, AMENDED) for the accounts it owns.

Outputs: commands per shard (``orders[s]``) and risk events (``events``): REJECTED, BALANCE,
POSITION, ACCOUNT_MARGIN, HEARTBEAT echoes. The same inputs give the same output bytes.

The pre-trade check is O(1): an order's reservation (``MarginModel.order_reserve``, an upper bound
on what it can take from free collateral) must fit in ``equity - initial - reserved``. A fill does
not release its share of the reservation at once: it moves to ``converting`` and stays held until
the account's margin is recomputed (at the end of the journal record), so between the fill and the
recomputation the account's free collateral is never overstated.

Money (exact integers): per asset, the sum of all balances and holds (the partition's fee account
included) equals deposits minus paid withdrawals; for the settlement asset the perps' costs count
against it (``sum(balance) + sum(held) - sum(perp_cost) == net deposits``), and every perp's sizes
sum to zero across the exchange. ``validate`` checks it after every record in the debug mode.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Callable, Iterator
from typing import Any, Final

import numpy as np
import orjson

from engine.math.fees import calc_fee_micro
from engine.math.funding import calc_funding_amounts, calc_funding_payments
from engine.math.position import apply_fill
from engine.math.rounding import mul_div_floor_column
from engine.risk import native_margin
from engine.risk.account_book import NEAR_REACH, AccountBook, row_key
from engine.risk.liquidator import LIQUIDATION_COID_BASE, LiquidationParams, Liquidator
from engine.risk.margin_model import MarginModel
from engine.risk.order_ledger import OrderLedger, Reservation
from engine.risk.reduce_only import ReduceOnlyOrders
from engine.risk.risk_config import RiskConfig, RiskMarket
from engine.types.enums import (
    AssetKind,
    BalanceReason,
    CancelReason,
    DepositSource,
    MarginMode,
    MarketKind,
    MarketStatus,
    MsgType,
    OrderFlag,
    OrderState,
    PriceStatus,
    RejectCode,
    Side,
    WithdrawStatus,
)
from engine.types.fixed import ATOMS_PER_UNIT, INT64_MAX, INT64_MIN, MICRO_PER_UNIT, PPM
from engine.wire.layout import ALL_MARKETS, BY_TYPE, SEQ_AT, SLOT_BYTES, WIRE_VERSION, field_offset

SYSTEM_ACCOUNT_BASE: Final = 0xFFFF_FF00  # ids above it belong to the exchange itself
INSURANCE_ACCOUNT_BASE: Final = SYSTEM_ACCOUNT_BASE + 0x80  # + partition: the partition's fund
MAX_POSITION_ATOMS: Final = 1 << 60  # |position| + an order's size stays below it (int64 headroom)


def fee_account(partition: int) -> int:
    """The account a partition's trading fees accrue to (one per partition: single writer)."""
    return SYSTEM_ACCOUNT_BASE + partition


def insurance_account(partition: int) -> int:
    """The partition's insurance fund: liquidation fees in, deficits out, takeovers held here."""
    return INSURANCE_ACCOUNT_BASE + partition


def exact_sum(values: np.ndarray) -> int:
    """The sum of int64 ``values`` as a Python int, exactly (a market maker's 5e16 atoms of shares
    times 100,000 holders leave int64): the high and low 32 bits summed apart, each in range for
    up to 2^31 values."""
    return (int((values >> 32).sum()) << 32) + int((values & 0xFFFF_FFFF).sum())


def _adds_fit(column: np.ndarray, delta: np.ndarray) -> bool:
    """``column + delta`` stays, element by element, in ``RiskEngine._add``'s range
    (INT64_MIN, INT64_MAX], found without leaving int64."""
    return not (
        ((delta > 0) & (column > INT64_MAX - np.maximum(delta, 0))).any()
        or ((delta < 0) & (column <= INT64_MIN - np.minimum(delta, 0))).any()
    )


def _holder_by_holder(first: bytes, second: bytes, seconds: np.ndarray) -> bytes:
    """Events packed a kind at a time, put holder by holder: ``first`` has one slot per holder,
    ``second`` one for each holder ``seconds`` names (ascending), which goes right after that
    holder's first (as raw slots: concatenating structured records would drop their padding)."""
    both = np.frombuffer(first + second, np.uint8).reshape(-1, SLOT_BYTES)
    n = len(first) // SLOT_BYTES
    order = np.argsort(np.concatenate((np.arange(n) * 2, seconds * 2 + 1)), kind="stable")
    return both[order].tobytes()


def funding_clearing_account(partition: int) -> int:
    """Takes the other side of a partition's funding when its positions do not net to zero (only
    with several partitions: the exchange's do); across partitions these sum to the rounding dust."""
    return SYSTEM_ACCOUNT_BASE + 0x40 + partition


class Source:
    """Who sent a command (the risk process knows it from the input ring)."""

    GATEWAY = 0  # clients (through gateways), feeders and operators: orders are checked and forwarded
    ORACLE = 1  # prices, funding, sessions, resolutions: applied, never forwarded (the oracle tells
    #             the shards itself)
    SETTLEMENT = 2  # deposits and withdrawal results


def _unpacker(t: MsgType):  # type: ignore[no-untyped-def]
    return BY_TYPE[int(t)].struct.unpack_from


def _packer(t: MsgType):  # type: ignore[no-untyped-def]
    return BY_TYPE[int(t)].struct.pack_into


_U_NEW: Final = _unpacker(MsgType.NEW_ORDER)
_U_CANCEL: Final = _unpacker(MsgType.CANCEL)
_U_AMEND: Final = _unpacker(MsgType.AMEND)
_U_CANCEL_ALL: Final = _unpacker(MsgType.CANCEL_ALL)
_U_MARK: Final = _unpacker(MsgType.MARK_PRICE)
_U_DEPOSIT: Final = _unpacker(MsgType.DEPOSIT)
_U_WITHDRAW: Final = _unpacker(MsgType.WITHDRAW_REQUEST)
_U_RESULT: Final = _unpacker(MsgType.WITHDRAW_RESULT)
_U_HEARTBEAT: Final = _unpacker(MsgType.HEARTBEAT)
_U_ORACLE_PRICE: Final = _unpacker(MsgType.ORACLE_PRICE)
_U_FUNDING: Final = _unpacker(MsgType.FUNDING)
_U_RESOLUTION: Final = _unpacker(MsgType.RESOLUTION)
_U_STATUS: Final = _unpacker(MsgType.SET_MARKET_STATUS)
_U_SETTLEMENT: Final = _unpacker(MsgType.SETTLEMENT_PRICE)
_U_LEVERAGE: Final = _unpacker(MsgType.SET_LEVERAGE)
_U_ADJUST: Final = _unpacker(MsgType.ADJUST_MARGIN)
_U_QUERY: Final = _unpacker(MsgType.ORDER_QUERY)
_P_STATE: Final = _packer(MsgType.ORDER_STATE)
_P_PRICE: Final = _packer(MsgType.PRICE)
_U_ACCEPTED: Final = _unpacker(MsgType.ACCEPTED)
_U_REJECTED: Final = _unpacker(MsgType.REJECTED)
_U_FILL: Final = _unpacker(MsgType.FILL)
_U_CANCELLED: Final = _unpacker(MsgType.CANCELLED)
_U_AMENDED: Final = _unpacker(MsgType.AMENDED)
_P_REJECTED: Final = _packer(MsgType.REJECTED)
_P_BALANCE: Final = _packer(MsgType.BALANCE)
_P_POSITION: Final = _packer(MsgType.POSITION)
_P_HEARTBEAT: Final = _packer(MsgType.HEARTBEAT)
_P_CANCEL_CMD: Final = BY_TYPE[int(MsgType.CANCEL)].struct.pack
_U32: Final = struct.Struct("<I")
_P_SEQ: Final = struct.Struct("<Q").pack_into
FILL_TAKER_ACCOUNT_AT: Final = field_offset(MsgType.FILL, "taker_account")
FILL_MAKER_ACCOUNT_AT: Final = field_offset(MsgType.FILL, "maker_account")
FILL_TAKER_OID_AT: Final = field_offset(MsgType.FILL, "taker_order_id")
FILL_MAKER_OID_AT: Final = field_offset(MsgType.FILL, "maker_order_id")
CANCELLED_REASON_AT: Final = field_offset(MsgType.CANCELLED, "reason")
# the private shard events risk republishes (FILL is split per side), with their account's offset
_ACCOUNT_AT: Final = {
    int(t): field_offset(t, "account")
    for t in (MsgType.ACCEPTED, MsgType.REJECTED, MsgType.CANCELLED, MsgType.AMENDED, MsgType.TRIGGERED)
}
_RO_ANSWERS: Final = frozenset({MsgType.CANCELLED, MsgType.REJECTED})  # (to risk's reduce-only cancels)
_ORDER_COMMANDS: Final = frozenset({MsgType.NEW_ORDER, MsgType.CANCEL, MsgType.AMEND, MsgType.CANCEL_ALL})
SHARD_EVENTS: Final = frozenset(
    {
        MsgType.ACCEPTED,
        MsgType.REJECTED,
        MsgType.FILL,
        MsgType.CANCELLED,
        MsgType.AMENDED,
        MsgType.TRIGGERED,
        MsgType.HEARTBEAT,
    }
)
_ORACLE_ONLY: Final = frozenset(
    {MsgType.ORACLE_PRICE, MsgType.FUNDING, MsgType.RESOLUTION, MsgType.SETTLEMENT_PRICE}
)
SHARD_EVENTS_SOURCE: Final = -1  # apply_slots: the slots are a shard's events, not commands
MARGIN_BELOW_MAINTENANCE, MARGIN_BELOW_INITIAL = 1, 2
# A price move alone re-publishes an account's margin when equity or initial margin moved more than
# this (ppm of the account's scale) since the last ACCOUNT_MARGIN; see RiskEngine._margin_news
MARGIN_PUBLISH_PPM: Final = 1_000


def _margin_flags(equity: np.ndarray, initial: np.ndarray, maint: np.ndarray) -> np.ndarray:
    return np.where(equity < maint, MARGIN_BELOW_MAINTENANCE, 0) | np.where(
        equity < initial, MARGIN_BELOW_INITIAL, 0
    )


# ADL ranks (a quantile per position, the lights other venues show) are published at most every
# ADL_RANK_EVERY records and, on a record clock, at most every ADL_RANK_PERIOD_NS: a pass costs ~3 ms
# a perp over 100,000 positions, and a cascade's bounded records come by the thousand a second;
# during a cascade, only in a continuation record no waiting input stopped
# (Liquidator.may_publish_ranks: that pass held a client's orders ~4 ms in the stress cascade)
ADL_RANK_EVERY: Final = 64
ADL_RANK_PERIOD_NS: Final = 250_000_000
# A record that recomputes at least this many accounts after a price move recomputes and scans
# the accounts nearest their maintenance first (RiskEngine._nearest): a cascade's first liquidation
# orders leave before the figures of every other holder are computed.
NEAREST_FIRST_ROWS: Final = 4_096
# At most about this many go first, the nearest (one breach is all a first order needs), and how
# far past the linear estimate of a move's reach to look for them (RiskEngine._reach).
NEAREST_FIRST_MAX: Final = 1_024
NEAREST_SAFETY: Final = 2.0
NEAREST_SAMPLE: Final = 512  # rows spread over the rest, recomputed after a first window that started nothing
SNAPSHOT_MAGIC: Final = b"HXRISK01"
_NO_ROWS: Final = np.zeros(0, np.intp)
_PRICE_COMMANDS: Final = frozenset({MsgType.MARK_PRICE, MsgType.ORACLE_PRICE})  # (their touches wait)
_FUNDING_WAITS_FOR: Final = _PRICE_COMMANDS | {MsgType.FUNDING}  # (commands a due payment may follow)


class RiskSnapshotError(ValueError):
    """A risk snapshot cannot be read (wrong magic, truncated, or for another configuration)."""


class RiskEngine:
    """One partition's state machine (see the module docstring)."""

    # the margin recompute: numpy here (this class is the specification), its compiled twin in
    # NativeRiskEngine (engine.risk.native_margin); the same bytes either way
    NATIVE_MARGIN = False

    def __init__(
        self,
        config: RiskConfig,
        partition: int = 0,
        partitions: int = 1,
        shards: int = 1,
        margin: MarginModel | None = None,
        liquidation: LiquidationParams | None = None,
    ) -> None:
        self.config = config
        self.partition = partition
        self.partitions = partitions
        self.shards = shards
        self.margin = margin or MarginModel(config, native=self.NATIVE_MARGIN)
        # set by a live process: publish the outputs so far in the middle of a record (the
        # liquidation scan of a cascade); None in replay and in-process uses (outputs per record)
        self.early_flush: Callable[[], None] | None = None
        self.book = AccountBook(config.n_assets, config.n_perps)
        self.ledger = OrderLedger()
        self.deposits: set[tuple[int, int]] = set()  # (source, deposit id) credited
        self.withdrawals: dict[tuple[int, int], tuple[int, int]] = {}  # (account, request) -> (asset, amount)
        self.net_deposits = [0] * config.n_assets
        self.prices = np.zeros(config.n_assets, np.int64)  # micro per whole unit
        self.prices[0] = 1_000_000
        self.marks = np.zeros(config.n_perps, np.int64)
        self.priced = dict.fromkeys(config.markets, False)  # a mark came for it (else: last trade)
        self.stale = np.zeros(config.n_assets, bool)  # the oracle says the asset's price is not fresh
        self.status = {m: MarketStatus.OPEN for m in config.markets}  # as the oracle last said
        self.funded = [0] * config.n_perps  # last funding interval id paid, per perp
        self.leverage: dict[tuple[int, int], tuple[int, int]] = {}  # (account, market) -> (leverage, mode)
        self.reduce_only = ReduceOnlyOrders()  # live reduce-only orders, risk's cancels of them
        self.trade_flow = [0] * config.n_assets  # net moved in from other partitions' accounts
        self.now_ns = 0
        self.fee_row = self.book.row(fee_account(partition))
        self.insurance_row = self.book.row(insurance_account(partition))
        self.system_base = SYSTEM_ACCOUNT_BASE
        self.spot_market_of: dict[int, RiskMarket] = {}  # asset -> the market liquidations sell it in
        for mid in sorted(config.markets):
            m = config.markets[mid]
            if not m.is_perp:
                self.spot_market_of.setdefault(m.base_asset, m)
        self.liquidator = Liquidator(self, liquidation)
        # for metrics and tests; not state
        self.counters = {"checked": 0, "rejected": 0, "fills": 0, "nearest_first": 0}
        self.records = 0  # journal records applied
        self.adl_ranked_at = (0, 0)  # the record count and clock (ns) of the last ADL rank publication
        self.orders = [bytearray() for _ in range(shards)]
        self.events = bytearray()
        self._fee_changed = False
        self._touched: list[tuple[int, int]] = []  # (perp, asset) whose holders a price moved; -1: none
        # FUNDING intervals received this record, paid before anything else reads a balance: at
        # the record's end after the nearest accounts' first liquidation orders, or before the next
        # command that is not a price or funding, or shard event (_pay_funding_due)
        self._funding_due: list[tuple[int, int, int, int]] = []  # (perp, interval id, rate ppb, mark)
        # prices and marks as at the end of the last record (what a record's move is measured from)
        self._priced_at = (self.prices.copy(), self.marks.copy())
        # how many times its relative price move an account's headroom (equity - maintenance) can
        # lose, as a multiple of its maintenance: 1 / the smallest maintenance rate of any risky
        # asset (exposure x move <= maintenance x move / rate), plus the requirement's own move,
        # with a safety factor (a heuristic of order: every row is recomputed and scanned anyway)
        spec = self.margin.spec
        rates = [
            max(1, spec.assets[a].shock.rate_ppm[0] * spec.params.mm_fraction_ppm // PPM)
            for a in self.margin.layout.risky
        ]
        self._reach = NEAREST_SAFETY * (PPM // min(rates, default=PPM) + 1)

    # ---- ownership and outputs -------------------------------------------------------------------
    def owns(self, account: int) -> bool:
        if account >= SYSTEM_ACCOUNT_BASE:
            return (account - SYSTEM_ACCOUNT_BASE) & 0x3F == self.partition
        return account % self.partitions == self.partition

    def _owned(self, ids: np.ndarray) -> np.ndarray:
        """``owns`` over a column of account ids."""
        ids = ids.astype(np.int64)
        return np.where(
            ids >= SYSTEM_ACCOUNT_BASE,
            ((ids - SYSTEM_ACCOUNT_BASE) & 0x3F) == self.partition,
            ids % self.partitions == self.partition,
        )

    def take_outputs(self) -> tuple[list[bytes], bytes]:
        """The commands for each shard and the events produced since the last call."""
        orders = [bytes(b) for b in self.orders]
        events = bytes(self.events)
        for b in self.orders:
            b.clear()
        self.events.clear()
        return orders, events

    def _forward(self, buf: bytes | memoryview, off: int, market: int) -> None:
        msg = buf[off : off + SLOT_BYTES]
        if market == ALL_MARKETS:
            for out in self.orders:
                out += msg
        else:
            self.orders[market % self.shards] += msg

    def _emit(self, pack, *fields: int) -> None:  # type: ignore[no-untyped-def]
        pos = len(self.events)
        self.events += bytes(SLOT_BYTES)
        pack(self.events, pos, *fields)

    def next_seq(self, account: int) -> int:
        """The next number of the account's private stream (0 for an account of another partition)."""
        if not self.owns(account):
            return 0
        row = self.book.row(account)
        seq = int(self.book.private_seq[row]) + 1
        self.book.private_seq[row] = seq
        return seq

    def _row_seq(self, row: int) -> int:
        b = self.book
        if b.n_isolated and b.isolated_market[row]:  # an isolated position's: on its owner's stream
            b.private_seq[row] += 1  # (the position's own count: what its margin news reads)
            row = b.rows[int(b.ids[row])]
        seq = int(b.private_seq[row]) + 1
        b.private_seq[row] = seq
        return seq

    def _reject(self, market: int, command: int, order_id: int, coid: int, account: int, reason: int) -> None:
        self.counters["rejected"] += 1
        self._emit(
            _P_REJECTED,
            MsgType.REJECTED,
            WIRE_VERSION,
            SLOT_BYTES,
            market,
            self.next_seq(account),
            order_id,
            coid,
            self.now_ns,
            account,
            reason,
            command,
        )

    def _emit_balance(self, row: int, asset: int, reason: int, delta: int, ref: int) -> None:
        b = self.book
        self._emit(
            _P_BALANCE,
            MsgType.BALANCE,
            WIRE_VERSION,
            SLOT_BYTES,
            self._market_of_row(row),  # 0, or an isolated position's perp (its margin)
            self._row_seq(row),
            int(b.ids[row]),
            asset,
            reason,
            int(b.balance[row, asset]),
            delta,
            int(b.held[row, asset]),
            ref,
        )

    def _market_of_row(self, row: int) -> int:
        """0 for an account's own row; the perp market of an isolated position's row."""
        b = self.book
        return max(0, int(b.isolated_market[row]) - 1) if b.n_isolated else 0

    def _emit_position(self, row: int, market: RiskMarket) -> None:
        b, p = self.book, market.perp
        self._emit(
            _P_POSITION,
            MsgType.POSITION,
            WIRE_VERSION,
            SLOT_BYTES,
            market.market_id,
            self._row_seq(row),
            int(b.ids[row]),
            int(b.perp_size[row, p]),
            int(b.perp_cost[row, p]),
            int(b.perp_realised[row, p]),
            int(b.perp_funding[row, p]),
        )

    # ---- money helpers ---------------------------------------------------------------------------
    def _add(self, arr: np.ndarray, row: int, col: int, delta: int) -> None:
        v = int(arr[row, col]) + delta
        if not INT64_MIN < v <= INT64_MAX:  # bounded by the pre-trade checks; a breach is a bug
            raise OverflowError(f"account row {row} column {col}: {v} leaves int64")
        arr[row, col] = v

    def free_collateral(self, row: int) -> int:
        b = self.book
        return int(b.equity[row]) - int(b.initial[row]) - int(b.reserved[row])

    def _mark_of(self, market: RiskMarket) -> int:
        return int(self.marks[market.perp]) if market.is_perp else int(self.prices[market.base_asset])

    # ---- one journal record's slots ----------------------------------------------------------------
    def apply_slots(self, buf: bytes | memoryview, off: int, count: int, source: int) -> None:
        """``count`` 64-byte slots from ``off``: commands from ``source`` (``Source``), or, for
        ``source == SHARD_EVENTS_SOURCE``, one shard's events. The compiled twin does it in one call."""
        end = off + count * SLOT_BYTES
        if source == SHARD_EVENTS_SOURCE:
            for k in range(off, end, SLOT_BYTES):
                self.apply_event(buf, k)
        else:
            for k in range(off, end, SLOT_BYTES):
                self.handle_command(buf, k, source)

    # ---- commands --------------------------------------------------------------------------------
    def handle_command(self, buf: bytes | memoryview, off: int, source: int = 0) -> None:
        """One command from a gateway, settlement or the oracle (``Source``; already well-formed)."""
        t = buf[off]
        if self._touched and t not in _PRICE_COMMANDS:
            self._flush_touched()
        if self._funding_due and t not in _FUNDING_WAITS_FOR:
            self._pay_funding_due()
        if source == Source.ORACLE or t in _ORACLE_ONLY:  # gateways never pass these on from clients
            self._oracle_command(buf, off, t)
            return
        if t == MsgType.NEW_ORDER:
            self._new_order(buf, off)
        elif t == MsgType.CANCEL:
            f = _U_CANCEL(buf, off)
            self._forward_owned(buf, off, f[3], f[6], t, f[4], f[5])
        elif t == MsgType.AMEND:
            self._amend(buf, off)
        elif t == MsgType.CANCEL_ALL:
            f = _U_CANCEL_ALL(buf, off)
            self._forward_owned(buf, off, f[3], f[4], t, 0, 0)
        elif t == MsgType.L2_SNAPSHOT_REQUEST:
            self._forward(buf, off, _U32.unpack_from(buf, off + 4)[0])
        elif t == MsgType.MARK_PRICE:
            self._mark_price(buf, off)
        elif t == MsgType.DEPOSIT:
            self._deposit(*_U_DEPOSIT(buf, off)[4:], source)
        elif t == MsgType.WITHDRAW_REQUEST:
            self._withdraw_request(*_U_WITHDRAW(buf, off)[4:])
        elif t == MsgType.WITHDRAW_RESULT:
            if source != Source.SETTLEMENT:  # only settlement knows what the chain paid
                f = _U_RESULT(buf, off)
                self._reject(0, t, f[8], 0, f[4], RejectCode.PERMISSION_DENIED)
            else:
                self._withdraw_result(*_U_RESULT(buf, off)[4:])
        elif t == MsgType.RESTATE_REQUEST:
            self._restate()
        elif t == MsgType.HEARTBEAT:
            self._heartbeat(buf, off)
        elif t == MsgType.SET_LEVERAGE:
            self._set_leverage(buf, off)
        elif t == MsgType.ADJUST_MARGIN:
            self._adjust_margin(*_U_ADJUST(buf, off)[3:])
        elif t == MsgType.ORDER_QUERY:
            self._order_query(*_U_QUERY(buf, off)[3:])
        elif t == MsgType.SET_MARKET_STATUS:  # an operator's: note it, and the shard applies it
            f = _U_STATUS(buf, off)
            if f[3] in self.status:
                self._set_status(f[3], f[4])
            self._forward(buf, off, f[3])
        else:
            market = _U32.unpack_from(buf, off + 4)[0]
            self._reject(market, t, 0, 0, 0, RejectCode.UNKNOWN_MSG_TYPE)

    def _forward_owned(
        self, buf: bytes | memoryview, off: int, market: int, account: int, t: int, oid: int, coid: int
    ) -> None:
        if not self.owns(account):
            self._reject(market, t, oid, coid, account, RejectCode.ACCOUNT_NOT_HERE)
            return
        self._forward(buf, off, market)

    def _new_order(self, buf: bytes | memoryview, off: int) -> None:
        self.counters["checked"] += 1
        (_t, _v, _l, mid, _oid, coid, price, size, _trig, _exp, account, side, _tif, _otype, flags) = _U_NEW(
            buf, off
        )
        t = MsgType.NEW_ORDER
        market = self.config.markets.get(mid)
        if market is None:
            self._reject(mid, t, 0, coid, account, RejectCode.UNKNOWN_MARKET)
            return
        if not self.owns(account):
            self._reject(mid, t, 0, coid, account, RejectCode.ACCOUNT_NOT_HERE)
            return
        if side > 1 or size <= 0 or price <= 0:  # the shard would refuse it: let it say why
            self._forward(buf, off, mid)
            return
        if self.ledger.is_live(mid, account, coid):
            self._reject(mid, t, 0, coid, account, RejectCode.DUPLICATE_CLIENT_ORDER_ID)
            return
        if account in self.reduce_only.orders:  # (the id's earlier order ended: it may be reused)
            self.reduce_only.forget(account, mid, coid)
        if self.liquidator.is_liquidating(account) or coid >= LIQUIDATION_COID_BASE:
            code = RejectCode.ACCOUNT_LIQUIDATING if coid < LIQUIDATION_COID_BASE else RejectCode.BAD_FIELD
            self._reject(mid, t, 0, coid, account, code)
            return
        lev = self.leverage.get((account, mid))
        isolated = lev is not None and lev[1] == MarginMode.ISOLATED  # (the compiled core hands these back)
        if isolated and self.liquidator.is_liquidating(row_key(account, mid)):
            self._reject(mid, t, 0, coid, account, RejectCode.ACCOUNT_LIQUIDATING)
            return
        row = self.book.row(account)
        size_atoms = size * market.lot_size_atoms
        price_micro = price * market.tick_size_micro
        pos = self.book.rows.get(row_key(account, mid), -1) if isolated else row  # the position's row
        held = self._holding(pos, market) if pos >= 0 else 0
        signed = size_atoms if side == Side.BUY else -size_atoms
        reduces = held != 0 and (held > 0) != (signed > 0) and size_atoms <= abs(held)
        reduce_only = bool(flags & OrderFlag.REDUCE_ONLY)
        if reduce_only and (
            not reduces or size_atoms + self._reduce_only_open(account, market, side) > abs(held)
        ):  # (with the account's other live reduce-only orders on its side, it must still fit)
            self._reject(mid, t, 0, coid, account, RejectCode.REDUCE_ONLY_WOULD_INCREASE)
            return
        if abs(held) + size_atoms >= MAX_POSITION_ATOMS:
            self._reject(mid, t, 0, coid, account, RejectCode.AMOUNT_OUT_OF_RANGE)
            return
        if self.book.dirty[row]:  # its exposure moved since the last recomputation: refresh it first
            self._recompute(np.array([row]))
        mark = self._mark_of(market) or price_micro
        free = self.free_collateral(row)
        if isolated:  # the margin its fill moves into the position, from the account's free collateral
            reserve = 0 if reduces else self._isolated_margin(size_atoms, max(price_micro, mark), lev[0])
        else:
            reserve = self.margin.order_reserve(self.book, row, market, side, size_atoms, price_micro, mark)
            if lev is not None and not reduces:  # the account's own cap: notional / leverage held back
                by_leverage = -((-size_atoms * max(price_micro, mark)) // ATOMS_PER_UNIT) // lev[0] + 1
                if by_leverage > free and reserve <= free:
                    self._reject(mid, t, 0, coid, account, RejectCode.LEVERAGE_EXCEEDED)
                    return
                reserve = max(reserve, by_leverage)
        if reserve > free:
            self._reject(mid, t, 0, coid, account, RejectCode.INSUFFICIENT_MARGIN)
            return
        self.book.reserved[row] += reserve
        self.ledger.add(Reservation(account, mid, coid, side, size, reserve, price_ticks=price))
        if reduce_only:
            self.reduce_only.add(account, mid, coid)
        self._forward(buf, off, mid)

    @staticmethod
    def _isolated_margin(size_atoms: int, price_micro: int, leverage: int) -> int:
        """The margin an isolated position takes for ``size_atoms`` at ``price_micro``: the notional
        over the leverage, rounded up (micro-USDC)."""
        return -(-abs(size_atoms) * price_micro // (ATOMS_PER_UNIT * leverage))

    def _holding(self, row: int, market: RiskMarket) -> int:
        """The account's signed holding in the market's risk (perp size or base balance), atoms."""
        if market.is_perp:
            return int(self.book.perp_size[row, market.perp])
        return int(self.book.balance[row, market.base_asset])

    # ---- reduce-only orders (engine/risk/reduce_only.py says why) -------------------------------
    def _holding_of(self, account: int, market: RiskMarket) -> int:
        """``_holding`` of the account's position in the market (its isolated row if isolated)."""
        lev = self.leverage.get((account, market.market_id))
        if lev is not None and lev[1] == MarginMode.ISOLATED:
            row = self.book.rows.get(row_key(account, market.market_id), -1)
        else:
            row = self.book.find(account)
        return self._holding(row, market) if row >= 0 else 0

    def _reduce_only_listed(self, account: int, mid: int, coid: int) -> bool:
        """Is the listed reduce-only order live (the snapshot's and state hash's filter)?"""
        return self.ledger.is_live(mid, account, coid)

    def _reduce_only_live(self, account: int, market: RiskMarket) -> list[Reservation]:
        """The account's live reduce-only orders in the market, oldest first, less those risk is
        cancelling; forgets those that ended."""
        mid, ro = market.market_id, self.reduce_only
        coids = ro.orders.get(account, {}).get(mid)
        if not coids:
            return []
        live = [r for c in coids if (r := self.ledger.find(mid, account, 0, c)) is not None]
        ro.keep(account, mid, [r.client_order_id for r in live])
        return [r for r in live if not ro.cancelling(mid, account, r.client_order_id)]

    def _reduce_only_open(self, account: int, market: RiskMarket, side: int) -> int:
        """Atoms the account's live reduce-only orders on ``side`` of the market still have open."""
        live = self._reduce_only_live(account, market)
        return sum(r.open_lots for r in live if r.side == side) * market.lot_size_atoms

    def _trim_reduce_only(self) -> None:
        """After a record: of every account it changed (a dirty row: its own or an isolated
        position's), the live reduce-only orders must still reduce its holding, all together:
        oldest first, each that is on the wrong side or no longer fits in what is left of the
        holding is cancelled (CANCELLED with reason REDUCE_ONLY; ``_reduce_only_answer``)."""
        book, ro = self.book, self.reduce_only
        dirty, rows = book.dirty, book.rows
        for account in sorted(ro.orders):
            keys = [account]
            if book.n_isolated:
                keys += [row_key(account, mid) for mid in ro.orders[account]]
            if not any(dirty[r] for k in keys if (r := rows.get(k, -1)) >= 0):
                continue
            for mid in list(ro.orders[account]):  # (a look may drop the market, or the account)
                market = self.config.markets[mid]
                held = self._holding_of(account, market)
                room, reducing = abs(held), Side.SELL if held > 0 else Side.BUY
                keep = []
                for r in self._reduce_only_live(account, market):
                    need = r.open_lots * market.lot_size_atoms
                    if held and r.side == reducing and need <= room:
                        room -= need
                    elif self._cancel_reduce_only(r):
                        continue
                    keep.append(r.client_order_id)
                ro.keep(account, mid, keep)

    def _cancel_reduce_only(self, r: Reservation) -> bool:
        """Ask the order's shard to cancel it (False: it cannot be named yet: no client order id
        and not yet ACCEPTED; the next look at the account tries again)."""
        if not (r.order_id or r.client_order_id):
            return False
        self.orders[r.market % self.shards] += _P_CANCEL_CMD(
            MsgType.CANCEL, WIRE_VERSION, SLOT_BYTES, r.market, r.order_id, r.client_order_id, r.account
        )
        self.reduce_only.cancels[(r.market, r.account, r.client_order_id)] = None
        return True

    def _reduce_only_answer(self, buf: bytes | memoryview, off: int, t: int) -> bool:
        """The shard's answer to a cancel risk sent (True: handled here). Its CANCELLED reaches the
        account with reason REDUCE_ONLY; a REJECTED (the order ended first, as its own CANCELLED,
        FILL or expiry said) is not the account's: it sent no cancel. A CANCELLED for another
        reason (expired, cancel-all) is the usual one, and the REJECTED of risk's cancel follows."""
        cancels = self.reduce_only.cancels
        if t == MsgType.CANCELLED:
            f = _U_CANCELLED(buf, off)
            key = (f[3], f[9], f[6])
            if key not in cancels or f[10] != CancelReason.USER:
                return False
            del cancels[key]
            pos = len(self.events)
            self._republish(buf, off, f[9])
            self.events[pos + CANCELLED_REASON_AT] = CancelReason.REDUCE_ONLY
            self._order_gone(f[3], f[9], f[5], f[6])
            return True
        f = _U_REJECTED(buf, off)
        key = (f[3], f[8], f[6])
        if f[10] != MsgType.CANCEL or key not in cancels:
            return False
        del cancels[key]
        return True

    def _amend(self, buf: bytes | memoryview, off: int) -> None:
        (_t, _v, _l, mid, oid, coid, price, size, account) = _U_AMEND(buf, off)
        t = MsgType.AMEND
        if not self.owns(account):
            self._reject(mid, t, oid, coid, account, RejectCode.ACCOUNT_NOT_HERE)
            return
        r = self.ledger.find(mid, account, oid, coid)
        market = self.config.markets.get(mid)
        if r is None or market is None or r.amend_extra_micro:
            self._forward(buf, off, mid)  # the shard knows whether the order exists; one amend at a time
            return
        if size > 0 and r.client_order_id in self.reduce_only.orders.get(account, {}).get(mid, ()):
            # a reduce-only order's new total (an upper bound on its open size) must still fit
            others = self._reduce_only_open(account, market, r.side) - r.open_lots * market.lot_size_atoms
            if others + size * market.lot_size_atoms > abs(self._holding_of(account, market)):
                self._reject(mid, t, oid, coid, account, RejectCode.REDUCE_ONLY_WOULD_INCREASE)
                return
        row = self.book.row(account)
        new_open = r.open_lots if size <= 0 else size  # an upper bound on the open size after it
        price_micro = (price or 0) * market.tick_size_micro
        if price_micro <= 0:
            price_micro = self._mark_of(market) or 1
        if self.book.dirty[row]:
            self._recompute(np.array([row]))
        lots = max(new_open, r.open_lots) * market.lot_size_atoms
        mark = self._mark_of(market) or price_micro
        lev = self.leverage.get((account, mid))
        if lev is not None and lev[1] == MarginMode.ISOLATED:  # (an order that reduced still may not)
            reserve = self._isolated_margin(lots, max(price_micro, mark), lev[0])
        else:
            reserve = self.margin.order_reserve(self.book, row, market, r.side, lots, price_micro, mark)
        extra = max(0, reserve - r.reserve_micro)
        if extra > self.free_collateral(row):
            self._reject(mid, t, oid, coid, account, RejectCode.INSUFFICIENT_MARGIN)
            return
        self.ledger.set_amend_extra(r, extra)
        self.book.reserved[row] += extra
        self._forward(buf, off, mid)

    def _mark_price(self, buf: bytes | memoryview, off: int) -> None:
        (_t, _v, _l, mid, price, _ts) = _U_MARK(buf, off)
        market = self.config.markets.get(mid)
        if market is not None and price > 0:
            self.priced[mid] = True
            self._set_price(market, price * market.tick_size_micro, defer=True)
        self._forward(buf, off, mid)

    def _set_price(self, market: RiskMarket, price_micro: int, defer: bool = False) -> None:
        a = market.base_asset
        self.margin.on_price(a, price_micro, self._closed(a), bool(self.stale[a]))
        if market.is_perp:
            self.marks[market.perp] = price_micro
            self.liquidator.unwind_due.add(market.perp)
            self._emit_price(market.market_id, market.base_asset, 0, price_micro)
        else:
            self.prices[market.base_asset] = price_micro
            self.liquidator.unwind_due.add(~market.base_asset)  # what the fund took over of it
            self._emit_price(ALL_MARKETS, market.base_asset, 1, price_micro)
        self._touch_exposed(market, defer)

    def _emit_price(self, market: int, asset: int, kind: int, price_micro: int) -> None:
        status = int(self.stale[asset]) if asset < len(self.stale) else 0
        self._emit(
            _P_PRICE,
            MsgType.PRICE,
            WIRE_VERSION,
            SLOT_BYTES,
            market,
            asset,
            kind,
            status,
            price_micro,
            self.now_ns,
        )

    def _flush_touched(self) -> None:
        """Mark dirty every account holding what the deferred price commands moved (perps, assets),
        in one pass over the book: a price record of several assets read the columns once per
        command (~0.3 ms each at 100,000 accounts). Runs before anything else reads ``dirty``: any
        other command, a shard event, the compiled core, the record's end."""
        touched, self._touched = self._touched, []
        b, n = self.book, self.book.count
        perps = sorted({p for p, _a in touched if p >= 0})
        assets = sorted({a for _p, a in touched if a >= 0})
        if not perps and not assets:
            return
        if self.margin.compiled is not None:  # (the same flags, one pass over the rows in C)
            self.margin.compiled.mark_held(b, perps, assets)
            return
        cols = [b.perp_size[:n, p] for p in perps] + [b.balance[:n, a] for a in assets]
        held = cols[0].copy() if len(cols) > 1 else cols[0]
        for col in cols[1:]:  # (an OR of the columns is non-zero where any is: no 2-D reduction)
            np.bitwise_or(held, col, out=held)
        b.dirty[:n] |= held != 0

    def _touch_exposed(self, market: RiskMarket, defer: bool = False) -> None:
        """Every account holding the market's perp position or base asset needs a recompute: now,
        or (``defer``: a price command) with the record's other price commands'."""
        self._touched.append((market.perp, -1) if market.is_perp else (-1, market.base_asset))
        if not defer:
            self._flush_touched()

    def _deposit(
        self, account: int, asset: int, source: int, amount: int, deposit_id: int, sender: int
    ) -> None:
        """Credit once per (source, id). A chain deposit only from settlement (it saw it confirmed on
        chain); a faucet deposit only from a gateway (which serves the faucet only in development)."""
        t = MsgType.DEPOSIT
        if (source == DepositSource.CHAIN) != (sender == Source.SETTLEMENT):
            self._reject(0, t, deposit_id, 0, account, RejectCode.PERMISSION_DENIED)
        elif not self.owns(account):
            self._reject(0, t, deposit_id, 0, account, RejectCode.ACCOUNT_NOT_HERE)
        elif asset >= self.config.n_assets or self.config.assets[asset].kind == AssetKind.PREDICTION:
            self._reject(0, t, deposit_id, 0, account, RejectCode.UNKNOWN_ASSET)  # shares exist only here
        elif (
            source not in (DepositSource.CHAIN, DepositSource.FAUCET) or (source, deposit_id) in self.deposits
        ):
            self._reject(0, t, deposit_id, 0, account, RejectCode.DUPLICATE_DEPOSIT)
        elif amount <= 0 or account >= SYSTEM_ACCOUNT_BASE:
            self._reject(0, t, deposit_id, 0, account, RejectCode.AMOUNT_OUT_OF_RANGE)
        else:
            row = self.book.row(account)
            # the account's balance, and the partition's total of the asset (what validate and the
            # snapshot sum in int64), keep room to move: past it, refused like an absurd amount
            if (
                int(self.book.balance[row, asset]) + amount > INT64_MAX // 2
                or self.net_deposits[asset] + amount > INT64_MAX // 2
            ):
                self._reject(0, t, deposit_id, 0, account, RejectCode.AMOUNT_OUT_OF_RANGE)
                return
            self.deposits.add((source, deposit_id))
            self._add(self.book.balance, row, asset, amount)
            self.net_deposits[asset] += amount
            self.book.dirty[row] = True
            self._emit_balance(row, asset, BalanceReason.DEPOSIT, amount, deposit_id)

    def _withdraw_request(self, account: int, asset: int, amount: int, request_id: int) -> None:
        t = MsgType.WITHDRAW_REQUEST
        row = self.book.find(account)
        if not self.owns(account):
            self._reject(0, t, request_id, 0, account, RejectCode.ACCOUNT_NOT_HERE)
        elif asset >= self.config.n_assets:
            self._reject(0, t, request_id, 0, account, RejectCode.UNKNOWN_ASSET)
        elif amount <= 0:
            self._reject(0, t, request_id, 0, account, RejectCode.AMOUNT_OUT_OF_RANGE)
        elif (account, request_id) in self.withdrawals:
            self._reject(0, t, request_id, 0, account, RejectCode.DUPLICATE_WITHDRAWAL)
        elif row < 0 or amount > int(self.book.balance[row, asset]):
            self._reject(0, t, request_id, 0, account, RejectCode.INSUFFICIENT_BALANCE)
        else:
            self._recompute(np.array([row]))  # withdrawals are rare: decide on fresh figures
            price = int(self.prices[asset])
            if asset != 0 and price <= 0:
                self._reject(0, t, request_id, 0, account, RejectCode.INSUFFICIENT_BALANCE)
                return
            if self.margin.withdraw_impact(asset, amount, price) > self.free_collateral(row):
                self._reject(0, t, request_id, 0, account, RejectCode.INSUFFICIENT_MARGIN)
                return
            self._add(self.book.balance, row, asset, -amount)
            self._add(self.book.held, row, asset, amount)
            self.withdrawals[(account, request_id)] = (asset, amount)
            self.book.dirty[row] = True
            self._emit_balance(row, asset, BalanceReason.WITHDRAW_HOLD, -amount, request_id)

    def _withdraw_result(self, account: int, asset: int, status: int, amount: int, request_id: int) -> None:
        held = self.withdrawals.get((account, request_id))
        if (
            held is None
            or held != (asset, amount)
            or status not in (WithdrawStatus.PAID, WithdrawStatus.FAILED)
        ):
            self._reject(0, MsgType.WITHDRAW_RESULT, request_id, 0, account, RejectCode.UNKNOWN_WITHDRAWAL)
            return
        del self.withdrawals[(account, request_id)]
        row = self.book.row(account)
        self._add(self.book.held, row, asset, -amount)
        if status == WithdrawStatus.PAID:
            self.net_deposits[asset] -= amount
            self._emit_balance(row, asset, BalanceReason.WITHDRAW_PAID, 0, request_id)
        else:
            self._add(self.book.balance, row, asset, amount)
            self.book.dirty[row] = True
            self._emit_balance(row, asset, BalanceReason.WITHDRAW_RETURN, amount, request_id)

    def _order_query(self, market: int, order_id: int, coid: int, request_id: int, account: int) -> None:
        """Answer with the account's open orders (all of them, those of ``market`` when it names
        one, or the one named), then last = 1."""
        if not self.owns(account):
            self._reject(market, MsgType.ORDER_QUERY, order_id, coid, account, RejectCode.ACCOUNT_NOT_HERE)
            return
        if order_id or coid:
            r = self.ledger.find(market, account, order_id, coid)
            found = [r] if r is not None and r.client_order_id < LIQUIDATION_COID_BASE else []
        else:
            found = sorted(
                (
                    r
                    for r in self.ledger.orders_of(account)
                    if market in (0, ALL_MARKETS) or r.market == market
                ),
                key=lambda r: (r.market, r.order_id, r.client_order_id),
            )
        if not found:
            self._emit_state(market, account, order_id, coid, 0, 0, 0, OrderState.UNKNOWN, request_id, True)
        for k, r in enumerate(found):
            state = OrderState.OPEN if r.order_id else OrderState.PENDING
            self._emit_state(
                r.market,
                account,
                r.order_id,
                r.client_order_id,
                r.price_ticks,
                r.open_lots,
                r.side,
                state,
                request_id,
                k == len(found) - 1,
            )

    def _emit_state(
        self,
        market: int,
        account: int,
        oid: int,
        coid: int,
        price: int,
        open_lots: int,
        side: int,
        state: int,
        request_id: int,
        last: bool,
    ) -> None:
        self._emit(
            _P_STATE,
            MsgType.ORDER_STATE,
            WIRE_VERSION,
            SLOT_BYTES,
            market,
            self.next_seq(account),
            oid,
            coid,
            price,
            open_lots,
            request_id,
            account,
            side,
            state,
            int(last),
        )

    # ---- the oracle's commands ------------------------------------------------------------------
    def _oracle_command(self, buf: bytes | memoryview, off: int, t: int) -> None:
        if t == MsgType.ORACLE_PRICE:
            (_t, _v, _l, _m, asset, status, price, _ts) = _U_ORACLE_PRICE(buf, off)
            if 0 < asset < self.config.n_assets:
                if price > 0:
                    self.prices[asset] = price
                self.stale[asset] = status != PriceStatus.OK
                self.margin.on_price(
                    asset, int(self.prices[asset]), self._closed(asset), bool(self.stale[asset])
                )
                self._emit_price(ALL_MARKETS, asset, 1, int(self.prices[asset]))
                self.liquidator.unwind_due.add(~asset)  # what the fund took over of it
                self._touch_asset(asset, defer=True)
        elif t == MsgType.MARK_PRICE:
            (_t, _v, _l, mid, price, _ts) = _U_MARK(buf, off)
            market = self.config.markets.get(mid)
            if market is not None and price > 0:
                self.priced[mid] = True
                self._set_price(market, price * market.tick_size_micro, defer=True)
        elif t == MsgType.SET_MARKET_STATUS:
            f = _U_STATUS(buf, off)
            if f[3] in self.status:
                self._set_status(f[3], f[4])
        elif t == MsgType.FUNDING:
            self._funding(*_U_FUNDING(buf, off)[3:])
        elif t == MsgType.RESOLUTION:
            f = _U_RESOLUTION(buf, off)
            self._resolve(f[3], f[4])
        elif t == MsgType.SETTLEMENT_PRICE:
            f = _U_SETTLEMENT(buf, off)
            self._settle_perp(f[3], f[4])
        elif t == MsgType.HEARTBEAT:
            self._heartbeat(buf, off, relay=False)

    def _set_status(self, market_id: int, status: int) -> None:
        try:
            self.status[market_id] = MarketStatus(status)
        except ValueError:
            return
        a = self.config.markets[market_id].base_asset
        self.margin.update_multiplier(a, self._closed(a), bool(self.stale[a]))
        self._touch_asset(a)

    def _closed(self, asset: int) -> bool:
        """An equity asset whose market's session is closed (or halted): its shocks widen."""
        return any(
            m.base_asset == asset and self.status.get(mid) in (MarketStatus.CLOSED, MarketStatus.HALTED)
            for mid, m in self.config.markets.items()
        )

    def _touch_asset(self, asset: int, defer: bool = False) -> None:
        """Every account exposed to ``asset`` (held, or through a perp on it) needs a recompute: now,
        or (``defer``: a price command) with the record's other price commands'."""
        self._touched.append((-1, asset))
        for mid in self.config.perps:
            m = self.config.markets[mid]
            if m.base_asset == asset:
                self._touched.append((m.perp, -1))
        if not defer:
            self._flush_touched()

    def _funding(self, mid: int, interval_id: int, rate_ppb: int, mark_micro: int, _ts: int) -> None:
        """One interval, once per interval id: due now, paid by ``_pay_funding_due``.

        Why not at once: the oracle sends a perp's FUNDING in the record of its prices, and paying
        every holder (~100,000 positions) before the record's end held the liquidation orders those
        prices called for back by its whole cost (150-380 ms in the stress scenario
        ``oct10-2025`` before the payments were vectorised, still ~15 ms after). Nothing reads a
        balance in between: the payment is made before any other command or shard event."""
        market = self.config.markets.get(mid)
        if market is None or not market.is_perp or interval_id <= self.funded[market.perp]:
            return
        self.funded[market.perp] = interval_id
        self._funding_due.append((market.perp, interval_id, rate_ppb, mark_micro))

    def _pay_funding_due(self) -> None:
        due, self._funding_due = self._funding_due, []
        for p, interval_id, rate_ppb, mark_micro in due:
            self._pay_funding(p, interval_id, rate_ppb, mark_micro)

    def _pay_funding(self, p: int, interval_id: int, rate_ppb: int, mark_micro: int) -> None:
        """Pay one interval: every position in the perp, exactly zero-sum."""
        b, n = self.book, self.book.count
        held = np.flatnonzero(b.perp_size[:n, p])
        if not len(held) or rate_ppb == 0 or mark_micro <= 0:
            return
        if self._pay_funding_arrays(p, held, interval_id, rate_ppb, mark_micro):
            return
        rows = held.tolist()
        positions = [(row, int(b.perp_size[row, p])) for row in rows]
        net = sum(size for _, size in positions)
        if net:  # other partitions hold the rest of the exchange's positions
            positions.append((b.row(funding_clearing_account(self.partition)), -net))
        for pay in calc_funding_payments(positions, mark_micro, rate_ppb):
            if pay.amount_micro:
                row = pay.account_id
                self._add(b.balance, row, 0, -pay.amount_micro)
                self._add(b.perp_funding, row, p, -pay.amount_micro)
                b.dirty[row] = True
                self._emit_balance(row, 0, BalanceReason.FUNDING, -pay.amount_micro, interval_id)

    def _pay_funding_arrays(
        self, p: int, held: np.ndarray, interval_id: int, rate_ppb: int, mark_micro: int
    ) -> bool:
        """``_funding``'s payments over the columns (the per-position loop there is the
        specification, and the test): the same amounts (``calc_funding_amounts``), balances and
        BALANCE events in the same order. A funding interval pays every holder of the perp, ~100,000
        positions at ~5 us each in that loop: half a second in which no order and no liquidation
        moved. False, having changed nothing, where the loop must do it: sizes outside the exact
        int64 range, an account of another partition (numbered 0), the clearing account holding a
        position itself (it would be paid twice), a balance leaving int64 (its error)."""
        b = self.book
        rows = held
        sizes = b.perp_size[rows, p]
        net = exact_sum(sizes)
        if not -INT64_MAX <= net <= INT64_MAX:  # (the clearing account's side must fit)
            return False
        if net:
            clearing = b.row(funding_clearing_account(self.partition))
            if b.perp_size[clearing, p]:
                return False
            rows = np.append(rows, clearing)
            sizes = np.append(sizes, -net)
        if not self._owned(b.ids[rows]).all():
            return False
        amounts = calc_funding_amounts(sizes, mark_micro, rate_ppb)
        if amounts is None:
            return False
        paying = amounts != 0
        rows, amounts = rows[paying], amounts[paying]
        balance, funding = b.balance[rows, 0], b.perp_funding[rows, p]
        if not (_adds_fit(balance, -amounts) and _adds_fit(funding, -amounts)):
            return False
        balance -= amounts
        b.balance[rows, 0] = balance
        b.perp_funding[rows, p] = funding - amounts
        b.dirty[rows] = True
        market = np.maximum(b.isolated_market[rows].astype(np.int64) - 1, 0) if b.n_isolated else 0
        self.events += self.pack_private(
            MsgType.BALANCE,
            market,
            rows,
            asset=0,
            reason=BalanceReason.FUNDING,
            balance=balance,
            delta=-amounts,
            held=b.held[rows, 0],
            ref=interval_id,
        )
        return True

    def _settle_perp(self, mid: int, price_micro: int) -> None:
        """A delisted perp settles: every position closes at ``price_micro``, once.

        Each position's value ``size * price / 1e8`` is rounded down (against the account: a long
        receives less, a short pays more); its realised PnL is that value minus its cost. The
        rounding dust (the exact total, ``net size * price / 1e8`` rounded down, minus the rounded
        values; 0 <= dust < one micro-USDC per position) goes to the partition's fee account, so
        money is conserved exactly. Once: afterwards no position is left, and the market is
        RESOLVED, so a repeated message changes nothing.
        """
        market = self.config.markets.get(mid)
        if market is None or not market.is_perp or price_micro <= 0:
            return
        p = market.perp
        b, n = self.book, self.book.count
        rows = np.flatnonzero(b.perp_size[:n, p]).tolist()
        self.status[mid] = MarketStatus.RESOLVED
        self.priced[mid] = True
        self._set_price(market, price_micro)
        settled = self._settle_perp_arrays(market, price_micro, np.asarray(rows, np.intp))
        net, values = settled if settled is not None else (0, 0)
        if settled is None:  # (the specification of _settle_perp_arrays)
            for row in rows:
                size, cost = int(b.perp_size[row, p]), int(b.perp_cost[row, p])
                value = size * price_micro // ATOMS_PER_UNIT  # floor: against longs and shorts alike
                realised = value - cost
                net += size
                values += value
                b.perp_size[row, p] = 0
                b.perp_cost[row, p] = 0
                self._add(b.perp_realised, row, p, realised)
                self._add(b.balance, row, 0, realised)
                b.dirty[row] = True
                self._emit_balance(row, 0, BalanceReason.RESOLUTION, realised, mid)
                self._emit_position(row, market)
        if not rows:
            return
        exact = net * price_micro // ATOMS_PER_UNIT  # 0 when this partition holds both sides
        self.trade_flow[0] += exact  # with several partitions the other sides' cash is elsewhere
        dust = exact - values
        if dust:
            self._add(b.balance, self.fee_row, 0, dust)
            b.dirty[self.fee_row] = True
            self._emit_balance(self.fee_row, 0, BalanceReason.FEE, dust, mid)

    def _settle_perp_arrays(
        self, market: RiskMarket, price_micro: int, rows: np.ndarray
    ) -> tuple[int, int] | None:
        """``_settle_perp``'s loop over the holders, over the columns (the loop is the specification,
        and the test): the same positions, balances and events (each holder's BALANCE, then its
        POSITION). Returns (net size, the sum of the values) for the dust, or None, having changed
        nothing, where the loop must do it: an account of another partition, sizes or figures
        outside the exact int64 range (its error), an isolated position. 100,000 holders took ~0.5 s
        in the loop."""
        b, p = self.book, market.perp
        if not len(rows) or not self._owned(b.ids[rows]).all():
            return None
        if b.n_isolated and b.isolated_market[rows].any():  # (two events a row on a stream an owner's
            return None  # row may share: the loop numbers them)
        sizes, costs = b.perp_size[rows, p], b.perp_cost[rows, p]
        whole = np.abs(sizes)
        g = int(np.gcd.reduce(whole))
        got = mul_div_floor_column(whole // g, price_micro * g, ATOMS_PER_UNIT)
        if got is None:
            return None
        q, r = got  # floor(|size| x price / 1e8); a short's value rounds down too: -(q + (r > 0))
        value = np.where(sizes > 0, q, -q - (r != 0))
        realised_now, balance_now = b.perp_realised[rows, p], b.balance[rows, 0]
        if not _adds_fit(value, -costs):
            return None
        realised = value - costs
        if not (_adds_fit(realised_now, realised) and _adds_fit(balance_now, realised)):
            return None
        total, balance = realised_now + realised, balance_now + realised
        b.perp_size[rows, p] = 0
        b.perp_cost[rows, p] = 0
        b.perp_realised[rows, p] = total
        b.balance[rows, 0] = balance
        b.dirty[rows] = True
        money = self.pack_private(  # (market 0: no isolated position among them)
            MsgType.BALANCE, 0, rows, asset=0, reason=BalanceReason.RESOLUTION, balance=balance,
            delta=realised, held=b.held[rows, 0], ref=market.market_id,
        )  # fmt: skip
        positions = self.pack_private(
            MsgType.POSITION, market.market_id, rows, size_atoms=0, cost_micro=0, realised_pnl_micro=total,
            funding_micro=b.perp_funding[rows, p],
        )  # fmt: skip
        self.events += _holder_by_holder(money, positions, np.arange(len(rows)))
        return exact_sum(sizes), exact_sum(value)

    def _resolve(self, mid: int, outcome: int) -> None:
        """A prediction market resolved: each share becomes exactly 1 (YES) or 0 (NO) USDC."""
        market = self.config.markets.get(mid)
        if market is None or market.kind != MarketKind.PREDICTION or outcome not in (0, 1):
            return
        if self.status.get(mid) == MarketStatus.RESOLVED:
            return  # once
        a = market.base_asset
        b, n = self.book, self.book.count
        payout = 1_000_000 if outcome else 0
        self.prices[a] = payout
        self.priced[mid] = True
        self.status[mid] = MarketStatus.RESOLVED
        held = np.flatnonzero(b.balance[:n, a])
        if self._resolve_arrays(mid, a, payout, held):
            return
        for row in held.tolist():
            qty = int(b.balance[row, a])
            cash = qty * payout // ATOMS_PER_UNIT  # a short (qty < 0) rounds away from zero: against it
            self._add(b.balance, row, a, -qty)
            self.trade_flow[a] -= qty
            self._emit_balance(row, a, BalanceReason.RESOLUTION, -qty, mid)
            if cash:
                self._add(b.balance, row, 0, cash)
                self.trade_flow[0] += cash
                self._emit_balance(row, 0, BalanceReason.RESOLUTION, cash, mid)
            b.dirty[row] = True

    def _resolve_arrays(self, mid: int, a: int, payout: int, rows: np.ndarray) -> bool:
        """``_resolve``'s settlement over the columns (its loop is the specification, and the
        test): the same balances, trade flow and BALANCE events (each holder's share event, then
        its cash event, holder by holder). A market with 100,000 holders took ~330 ms in the loop
        (``hx stress --scenario resolution``), every order waiting. False, having changed nothing,
        where the loop must do it: an account of another partition, a payout that does not divide
        an atom's unit, figures past int64 (its error)."""
        b = self.book
        if not len(rows) or (payout and ATOMS_PER_UNIT % payout):
            return not len(rows)
        if not self._owned(b.ids[rows]).all():
            return False
        if b.n_isolated and b.isolated_market[rows].any():  # (as in _settle_perp_arrays)
            return False
        qty = b.balance[rows, a]
        cash = qty // (ATOMS_PER_UNIT // payout) if payout else np.zeros(len(rows), np.int64)  # (floor)
        usdc = b.balance[rows, 0]
        if not _adds_fit(usdc, cash):
            return False
        usdc = usdc + cash
        b.balance[rows, a] = 0
        b.balance[rows, 0] = usdc
        b.dirty[rows] = True
        self.trade_flow[a] -= exact_sum(qty)
        self.trade_flow[0] += exact_sum(cash)
        reason = BalanceReason.RESOLUTION  # (market 0: no isolated position among them)
        shares = self.pack_private(
            MsgType.BALANCE,
            0,
            rows,
            asset=a,
            reason=reason,
            balance=0,
            delta=-qty,
            held=b.held[rows, a],
            ref=mid,
        )
        paid = np.flatnonzero(cash)
        money = self.pack_private(
            MsgType.BALANCE, 0, rows[paid], asset=0, reason=reason, balance=usdc[paid], delta=cash[paid],
            held=b.held[rows[paid], 0], ref=mid,
        )  # fmt: skip
        self.events += _holder_by_holder(shares, money, paid)  # its share event, then its cash event
        return True

    def _set_leverage(self, buf: bytes | memoryview, off: int) -> None:
        (_t, _v, _l, mid, account, leverage, mode) = _U_LEVERAGE(buf, off)
        market = self.config.markets.get(mid)
        t = MsgType.SET_LEVERAGE
        if not self.owns(account):
            self._reject(mid, t, 0, 0, account, RejectCode.ACCOUNT_NOT_HERE)
        elif market is None or not market.is_perp:
            self._reject(mid, t, 0, 0, account, RejectCode.UNKNOWN_MARKET)
        elif not 1 <= leverage <= self.margin.max_leverage(market) or mode not in (0, 1):
            self._reject(mid, t, 0, 0, account, RejectCode.LEVERAGE_OUT_OF_RANGE)
        elif mode != self.leverage.get((account, mid), (0, MarginMode.CROSS))[1] and self._trades_in(
            account, market
        ):
            self._reject(mid, t, 0, 0, account, RejectCode.MARGIN_MODE_LOCKED)
        else:
            self.leverage[(account, mid)] = (leverage, mode)
            self.book.dirty[self.book.row(account)] = True

    def _adjust_margin(self, mid: int, account: int, amount: int) -> None:
        """Margin into (``amount`` > 0, from the account's free collateral) or out of (< 0, as far as
        the position keeps its initial margin and holds the cash) the account's isolated position in
        ``mid`` (venues' "adjust margin"). Silent when applied: the two BALANCE events say it."""
        t = MsgType.ADJUST_MARGIN
        b = self.book
        if not self.owns(account):
            self._reject(mid, t, 0, 0, account, RejectCode.ACCOUNT_NOT_HERE)
            return
        key = row_key(account, mid)
        pos = b.rows.get(key, -1)
        market = self.config.markets.get(mid)
        if pos < 0 or market is None or not market.is_perp or not b.perp_size[pos, market.perp]:
            self._reject(mid, t, 0, 0, account, RejectCode.NO_ISOLATED_POSITION)
            return
        if amount == 0 or abs(amount) > INT64_MAX // 4:
            self._reject(mid, t, 0, 0, account, RejectCode.AMOUNT_OUT_OF_RANGE)
            return
        if self.liquidator.is_liquidating(key):
            self._reject(mid, t, 0, 0, account, RejectCode.ACCOUNT_LIQUIDATING)
            return
        row = b.row(account)
        src, dst = (row, pos) if amount > 0 else (pos, row)
        self._recompute(np.array([src]))  # decide on fresh figures
        room = self.free_collateral(src)
        if amount < 0:
            room = min(room, int(b.balance[pos, 0]))
        if abs(amount) > room:
            self._reject(mid, t, 0, 0, account, RejectCode.INSUFFICIENT_MARGIN)
            return
        self._margin_transfer(src, dst, abs(amount), mid)

    def _trades_in(self, account: int, market: RiskMarket) -> bool:
        """The account has a position (cross or isolated) or an order (open or on its way) in the
        perp ``market``: its margin mode cannot change then (venues refuse it likewise)."""
        b, p = self.book, market.perp
        for key in (account, row_key(account, market.market_id)):
            row = b.rows.get(key, -1)
            if row >= 0 and (b.perp_size[row, p] or (key != account and b.balance[row, 0])):
                return True
        return any(r.market == market.market_id for r in self.ledger.orders_of(account))

    def _restate(self) -> None:
        """Every nonzero balance and position again (BALANCE reason RESTATE, POSITION), in row
        order: what a consumer that lost its place (settlement on a fresh ring) rebuilds from."""
        b, n = self.book, self.book.count
        for row in range(n):
            for a in np.flatnonzero(b.balance[row] | b.held[row]).tolist():
                self._emit_balance(row, a, BalanceReason.RESTATE, 0, 0)
            for p in np.flatnonzero(b.perp_size[row] | b.perp_cost[row]).tolist():
                self._emit_position(row, self.config.markets[self.config.perps[p]])

    def _heartbeat(self, buf: bytes | memoryview, off: int, relay: bool = True) -> None:
        """Echo at once (market_id 0: risk has handled everything before it) and, from a feeder or
        gateway, pass it to every shard: each shard's echo comes back through risk as a second echo
        (market_id 1: that shard has matched everything before it, and risk has applied its events)."""
        ts = _U_HEARTBEAT(buf, off)[4]
        self._emit(_P_HEARTBEAT, MsgType.HEARTBEAT, WIRE_VERSION, SLOT_BYTES, 0, ts, self.records)
        if relay:
            for out in self.orders:
                out += buf[off : off + SLOT_BYTES]

    # ---- shard events ----------------------------------------------------------------------------
    def _republish(self, buf: bytes | memoryview, off: int, account: int) -> None:
        """A shard's private event, as the account's private stream carries it: the same struct
        with ``seq`` = the account's next private sequence number."""
        pos = len(self.events)
        self.events += buf[off : off + SLOT_BYTES]
        _P_SEQ(self.events, pos + SEQ_AT, self.next_seq(account))

    def _republish_fill(self, buf: bytes | memoryview, off: int, account: int, as_taker: bool) -> None:
        """One side's copy of a FILL: the other side's account and order id zeroed (a private event
        carries only what belongs to its receiver); a self-trade keeps both (both are its own)."""
        pos = len(self.events)
        self.events += buf[off : off + SLOT_BYTES]
        _P_SEQ(self.events, pos + SEQ_AT, self.next_seq(account))
        t_acct, m_acct = _U_FILL(buf, off)[9:11]
        if t_acct != m_acct:
            if as_taker:
                self.events[pos + FILL_MAKER_ACCOUNT_AT : pos + FILL_MAKER_ACCOUNT_AT + 4] = bytes(4)
                self.events[pos + FILL_MAKER_OID_AT : pos + FILL_MAKER_OID_AT + 8] = bytes(8)
            else:
                self.events[pos + FILL_TAKER_ACCOUNT_AT : pos + FILL_TAKER_ACCOUNT_AT + 4] = bytes(4)
                self.events[pos + FILL_TAKER_OID_AT : pos + FILL_TAKER_OID_AT + 8] = bytes(8)

    def apply_event(self, buf: bytes | memoryview, off: int) -> None:
        """One shard event; events of other partitions' accounts change nothing here. Private ones
        of our accounts are republished on the account's private stream before their effects."""
        if self._touched:
            self._flush_touched()
        if self._funding_due:
            self._pay_funding_due()
        t = buf[off]
        if self.reduce_only.cancels and t in _RO_ANSWERS and self._reduce_only_answer(buf, off, t):
            return
        if t in _ACCOUNT_AT:
            account = _U32.unpack_from(buf, off + _ACCOUNT_AT[t])[0]
            if self.owns(account):
                self._republish(buf, off, account)
        if t == MsgType.FILL:
            self._fill(buf, off)
        elif t == MsgType.HEARTBEAT:  # a shard's echo of a heartbeat risk passed on
            ts = _U_HEARTBEAT(buf, off)[4]
            self._emit(_P_HEARTBEAT, MsgType.HEARTBEAT, WIRE_VERSION, SLOT_BYTES, 1, ts, self.records)
        elif t == MsgType.ACCEPTED:
            f = _U_ACCEPTED(buf, off)
            if self.owns(f[10]):
                self.ledger.accept(f[3], f[10], f[6], f[5], f[8])
        elif t == MsgType.CANCELLED:
            f = _U_CANCELLED(buf, off)
            if self.owns(f[9]):
                self._order_gone(f[3], f[9], f[5], f[6])
        elif t == MsgType.REJECTED:
            f = _U_REJECTED(buf, off)
            account, command = f[8], f[10]
            if not self.owns(account):
                return
            if command == MsgType.NEW_ORDER:
                self._order_gone(f[3], account, 0, f[6], refused=True)
            elif command == MsgType.AMEND:
                r = self.ledger.find(f[3], account, f[5], f[6])
                if r is not None and r.amend_extra_micro:
                    self._release(self.book.find(account), self.ledger.release_amend(r))
        elif t == MsgType.AMENDED:
            f = _U_AMENDED(buf, off)
            (mid, oid, coid, new_open, account) = (f[3], f[5], f[6], f[8], f[9])
            if not self.owns(account):
                return
            r = self.ledger.find(mid, account, oid, coid)
            if r is None:
                return
            # the amend's extra becomes the order's own; a smaller open size releases its share
            self._release(self.book.find(account), self.ledger.amended(r, f[7], new_open))

    def _release(self, row: int, amount: int) -> None:
        if row >= 0 and amount:
            self.book.reserved[row] -= amount

    def _order_gone(self, mid: int, account: int, oid: int, coid: int, refused: bool = False) -> None:
        r = self.ledger.find(mid, account, oid, coid)
        if r is not None:
            self._release(self.book.find(account), self.ledger.remove(r))
            if r.client_order_id >= LIQUIDATION_COID_BASE:
                self.liquidator.on_order_end(r.client_order_id, filled_all=False, refused=refused)

    def _fill(self, buf: bytes | memoryview, off: int) -> None:
        (_t, _v, _l, mid, _seq, t_oid, m_oid, price, size, t_acct, m_acct, t_side, flags) = _U_FILL(buf, off)
        market = self.config.markets.get(mid)
        if market is None:
            return
        price_micro = price * market.tick_size_micro
        size_atoms = size * market.lot_size_atoms
        notional = price_micro * size_atoms // ATOMS_PER_UNIT
        if not self.priced[mid]:  # no mark from the oracle yet: value at the last trade
            if market.is_perp:
                self.marks[market.perp] = price_micro
                self._emit_price(mid, market.base_asset, 0, price_micro)
            else:
                self.prices[market.base_asset] = price_micro
                self._emit_price(ALL_MARKETS, market.base_asset, 1, price_micro)
        for account, oid, side, is_maker, done in (
            (t_acct, t_oid, t_side, False, flags & 1),
            (m_acct, m_oid, t_side ^ 1, True, flags & 2),
        ):
            if not self.owns(account):
                continue
            if not is_maker or m_acct != t_acct:  # a self-trade is published once
                self._republish_fill(buf, off, account, as_taker=not is_maker)
            row = self.book.row(account)
            self.counters["fills"] += 1
            lev = self.leverage.get((account, mid))
            if lev is not None and lev[1] == MarginMode.ISOLATED:  # the position is a row of its own
                pos_row = self.book.isolated_row(account, mid)
                self._settle_isolated_fill(
                    row, pos_row, market, side, size_atoms, price_micro, is_maker, oid, lev[0]
                )
                self.book.dirty[pos_row] = True
            else:
                pos_row = row
                self._settle_fill(row, market, side, size_atoms, notional, is_maker, oid)
            r = self.ledger.find(mid, account, oid, 0)
            if r is not None:
                if r.client_order_id >= LIQUIDATION_COID_BASE:
                    self._liquidation_fee(pos_row, notional, r.client_order_id)
                released = self.ledger.remove(r) if done else self.ledger.shrink(r, size)
                self.book.converting[row] += released  # held until the margin is recomputed
                if done and r.client_order_id >= LIQUIDATION_COID_BASE:
                    self.liquidator.on_order_end(r.client_order_id, filled_all=True, refused=False)
            self.book.dirty[row] = True

    def _settle_fill(
        self,
        row: int,
        market: RiskMarket,
        side: int,
        size_atoms: int,
        notional: int,
        is_maker: bool,
        oid: int,
        fee_row: int = -1,
    ) -> None:
        """Move the fill's money: the two legs and the fee (exact integers). The fee is paid by
        ``fee_row`` when given (an isolated position's trading fee comes from its account)."""
        b = self.book
        rate = market.maker_fee_ppm if is_maker else market.taker_fee_ppm
        fee = calc_fee_micro(notional, rate)  # a fee rounds up, a rebate down: against the account
        buy = side == Side.BUY
        if market.is_perp:
            p = market.perp
            change = apply_fill(
                int(b.perp_size[row, p]),
                int(b.perp_cost[row, p]),
                size_atoms if buy else -size_atoms,
                notional,
            )
            size, cost, realised = change.size_atoms, change.cost_micro, change.realised_micro
            b.perp_size[row, p] = size
            b.perp_cost[row, p] = cost
            self.trade_flow[0] -= notional if buy else -notional  # cash minus cost moves by the notional
            self._add(b.perp_realised, row, p, realised)
            if realised:
                self._add(b.balance, row, 0, realised)
                self._emit_balance(row, 0, BalanceReason.TRADE, realised, oid)
            self._emit_position(row, market)
        else:
            a = market.base_asset
            self.trade_flow[0] += -notional if buy else notional
            self.trade_flow[a] += size_atoms if buy else -size_atoms
            self._add(b.balance, row, 0, -notional if buy else notional)
            self._emit_balance(row, 0, BalanceReason.TRADE, -notional if buy else notional, oid)
            self._add(b.balance, row, a, size_atoms if buy else -size_atoms)
            self._emit_balance(row, a, BalanceReason.TRADE, size_atoms if buy else -size_atoms, oid)
        if fee:
            payer = row if fee_row < 0 else fee_row
            self._add(b.balance, payer, 0, -fee)
            self._emit_balance(payer, 0, BalanceReason.FEE, -fee, oid)
            self._add(b.balance, self.fee_row, 0, fee)
            self._fee_changed = True

    def _settle_isolated_fill(
        self,
        row: int,
        pos_row: int,
        market: RiskMarket,
        side: int,
        size_atoms: int,
        price_micro: int,
        is_maker: bool,
        oid: int,
        leverage: int,
    ) -> None:
        """A fill of an isolated position (``pos_row``, owned by the account's ``row``): the position
        and its realised P&L move in ``pos_row``, the fee is the account's, then margin moves:

        * the position grew: ``added notional / leverage`` (rounded up) from the account (what the
          order reserved); the position reopened the other way: the same for its new size, net of
          what the position still holds;
        * it shrank: what it holds beyond the remaining size's share of its margin before the fill
          (its profit included) goes back to the account; a loss stays with the position;
        * it closed: everything it holds goes back (a deficit is the insurance fund's, as for any
          bankrupt position: ``release_isolated``).
        """
        b, p = self.book, market.perp
        size0, held0 = int(b.perp_size[pos_row, p]), int(b.balance[pos_row, 0])
        notional = price_micro * size_atoms // ATOMS_PER_UNIT
        self._settle_fill(pos_row, market, side, size_atoms, notional, is_maker, oid, fee_row=row)
        size1, held1 = int(b.perp_size[pos_row, p]), int(b.balance[pos_row, 0])
        mid = market.market_id
        if size1 == 0:
            if not self.liquidator.is_liquidating(b.key(pos_row)):  # (else the liquidator, when it
                self.release_isolated(pos_row)  # ends the case: the fill's fee is taken first)
        elif size0 == 0 or (size0 > 0) != (size1 > 0):
            need = self._isolated_margin(size1, price_micro, leverage) - held1
            if need > 0:
                self._margin_transfer(row, pos_row, need, mid)
            elif need < 0:
                self._margin_transfer(pos_row, row, -need, mid)
        elif abs(size1) > abs(size0):
            self._margin_transfer(
                row, pos_row, self._isolated_margin(size1 - size0, price_micro, leverage), mid
            )
        else:
            keep = -(-max(held0, 0) * abs(size1) // abs(size0))
            if held1 > keep:
                self._margin_transfer(pos_row, row, held1 - keep, mid)

    def _margin_transfer(self, src: int, dst: int, amount: int, market_id: int) -> None:
        if amount > 0:
            self.move_cash(
                src, dst, amount, BalanceReason.MARGIN_TRANSFER, BalanceReason.MARGIN_TRANSFER, market_id
            )

    def release_isolated(self, pos_row: int) -> None:
        """A flat isolated position's margin goes back to its account; a deficit (it closed beyond
        its bankruptcy price) is covered like any bankrupt account's, never by the account."""
        b = self.book
        mid = self._market_of_row(pos_row)
        held = int(b.balance[pos_row, 0])
        if held > 0:
            self._margin_transfer(pos_row, b.owner_row(pos_row), held, mid)
        elif held < 0:
            self.liquidator.cover_isolated(pos_row)

    def _sweep_isolated(self, rows: np.ndarray) -> None:
        """Isolated positions among ``rows`` that are flat (closed by the liquidator, deleveraged,
        delisted) and not under liquidation: their margin goes back (``release_isolated``)."""
        b = self.book
        for row in rows.tolist():
            market = self.config.markets[int(b.isolated_market[row]) - 1]
            if (
                not b.perp_size[row, market.perp]
                and b.balance[row, 0]
                and not self.liquidator.is_liquidating(b.key(row))
            ):
                self.release_isolated(row)

    # ---- moves the liquidator makes (internal trades, exact and conserved) ----------------------------
    def register_liquidation_order(self, market: int, account: int, coid: int, side: int, lots: int) -> None:
        """A liquidation order risk sends: tracked like any order, with nothing reserved."""
        self.ledger.add(Reservation(account, market, coid, side, lots, 0))

    def _liquidation_fee(self, row: int, notional: int, coid: int) -> None:
        fee = notional * self.liquidator.params.fee_ppm // PPM
        fee = min(fee, max(0, int(self.book.balance[row, 0])))  # never drives the cash negative
        if fee:
            self.move_cash(
                row, self.insurance_row, fee, BalanceReason.LIQUIDATION, BalanceReason.INSURANCE, coid
            )

    def move_cash(self, src: int, dst: int, amount: int, reason_src: int, reason_dst: int, ref: int) -> None:
        """``amount`` micro-USDC from one row to another (both in this partition)."""
        b = self.book
        self._add(b.balance, src, 0, -amount)
        self._add(b.balance, dst, 0, amount)
        b.dirty[src] = b.dirty[dst] = True
        self._emit_balance(src, 0, reason_src, -amount, ref)
        self._emit_balance(dst, 0, reason_dst, amount, ref)

    def transfer_perp(self, src: int, dst: int, perp: int, size: int, notional: int) -> None:
        """``src`` hands ``size`` atoms of its perp position (signed as ``src`` holds it) to ``dst``
        at ``notional``: a trade between the two (``src`` closes, ``dst`` takes it on)."""
        b = self.book
        market = self.config.markets[self.config.perps[perp]]
        for row, delta in ((src, -size), (dst, size)):
            change = apply_fill(int(b.perp_size[row, perp]), int(b.perp_cost[row, perp]), delta, notional)
            new_size, cost, realised = change.size_atoms, change.cost_micro, change.realised_micro
            b.perp_size[row, perp] = new_size
            b.perp_cost[row, perp] = cost
            self._add(b.perp_realised, row, perp, realised)
            if realised:
                self._add(b.balance, row, 0, realised)
                self._emit_balance(row, 0, BalanceReason.LIQUIDATION, realised, perp)
            b.dirty[row] = True
            self._emit_position(row, market)

    def transfer_spot(self, src: int, dst: int, asset: int, qty: int, notional: int) -> None:
        """``src`` hands ``qty`` of ``asset`` (signed as held: a liability moves too) to ``dst`` for
        ``notional`` micro-USDC (paid by ``dst`` for a holding, received for a liability)."""
        b = self.book
        cash = notional if qty > 0 else -notional
        for row, q, c in ((src, -qty, cash), (dst, qty, -cash)):
            self._add(b.balance, row, asset, q)
            self._add(b.balance, row, 0, c)
            b.dirty[row] = True
            self._emit_balance(row, asset, BalanceReason.LIQUIDATION, q, asset)
            self._emit_balance(row, 0, BalanceReason.LIQUIDATION, c, asset)

    # ---- end of a journal record -----------------------------------------------------------------
    def end_of_record(self, resume: bool = True) -> None:
        """Recompute the margin of every account touched since the last record; publish it; act on
        those below maintenance. ``resume``: the liquidation work earlier records left (the open
        cases, the accounts a scan had no room for) goes on here too; False for a record of client
        commands, whose orders then never wait behind a cascade's work (``Liquidator.scan``)."""
        if self._touched:
            self._flush_touched()
        if self._fee_changed:
            self._fee_changed = False
            self._emit_balance(self.fee_row, 0, BalanceReason.FEE, 0, 0)
        if self.reduce_only:
            self._trim_reduce_only()
        n = self.book.count
        dirty = self.book.dirty[:n]
        rows = np.flatnonzero(dirty) if dirty.any() else _NO_ROWS  # (any() is 5x cheaper on 1M rows)
        liq = self.liquidator
        compiled = self.margin.compiled
        first = _NO_ROWS
        if len(rows):
            isolated = rows[self.book.isolated_market[rows] != 0] if self.book.n_isolated else _NO_ROWS
            if len(isolated):
                self._sweep_isolated(isolated)
                rows = np.flatnonzero(dirty)  # (a release touches the owner's row)
            scanned: list[np.ndarray] = []
            for window in self._nearest_windows(rows, dirty=True):  # their figures, then their
                self._recompute(window, publish=True)  # first orders, then everyone else's
                if compiled is not None:
                    window = compiled.below.copy()
                started = liq.started
                liq.scan(window, orders_only=True)
                scanned.append(window)
                if liq.started > started:  # (else the nearest were all past an order: the backstop's)
                    break
            if scanned:
                self.counters["nearest_first"] += 1
                first = np.concatenate(scanned)
                rows = np.flatnonzero(dirty)
        if self._funding_due:  # (after those first orders; its payments dirty the holders' rows)
            self._pay_funding_due()
            n = self.book.count  # (the clearing account's row may be new)
            dirty = self.book.dirty[:n]
            rows = np.flatnonzero(dirty)
        if len(rows):
            self._recompute(rows, publish=True)
            if compiled is not None:  # of them only those below maintenance can start a case
                rows = compiled.below.copy()
        np.copyto(self._priced_at[0], self.prices)  # (what the next record's move is measured from)
        np.copyto(self._priced_at[1], self.marks)
        if len(first) or (resume and (liq.cases or len(liq.pending))):  # (a mask, not np.union1d:
            look = np.zeros(n, bool)  # that hashes every row, ~50 ms at 100,000)
            look[rows] = True  # (dirty is clear by now)
            look[first] = True
            if resume:
                look[liq.pending] = True  # the rows the last record's scan had no room for
                look |= liq.cases.flags()[:n]  # the rows with a case
            rows = np.flatnonzero(look)
        liq.scan(rows, resume=resume)
        self.records += 1
        ranked_records, ranked_ns = self.adl_ranked_at
        if (
            self.records - ranked_records >= ADL_RANK_EVERY
            and (not self.now_ns or self.now_ns - ranked_ns >= ADL_RANK_PERIOD_NS)  # (no clock: records only)
            and liq.may_publish_ranks()
        ):
            self.adl_ranked_at = (self.records, self.now_ns)
            if self.early_flush is not None:  # the margins and orders leave before the ranks' pass
                self.early_flush()  # (milliseconds over 100,000 positions; the same bytes per ring)
            liq.publish_adl_ranks()

    def _nearest(self, rows: np.ndarray, dirty: bool = False) -> np.ndarray:
        """Of ``rows`` (to recompute), those whose headroom over maintenance, as last computed, is
        within reach of the record's price move: ``_reach`` x the largest relative move of a
        price or mark since the last record, as a fraction of their maintenance. Only for a big
        record after a move, and only when they are at most half of it (else nothing is gained);
        at most about ``NEAREST_FIRST_MAX`` of them, the nearest by headroom over maintenance.
        A heuristic of order only: every row is recomputed and scanned in the same record.
        ``dirty``: ``rows`` are the book's dirty rows (two flag columns then find the candidates)."""
        return next(self._nearest_windows(rows, dirty), _NO_ROWS)

    def _nearest_windows(self, rows: np.ndarray, dirty: bool = False) -> Iterator[np.ndarray]:
        """``_nearest``, then ``NEAREST_SAMPLE`` rows spread over the rest, then the next nearest,
        twice as many each time, until none is left. Why more than one: a gap down puts the nearest
        accounts (least headroom before it) past the takeover threshold, where the backstop takes
        them whole and no order leaves; the accounts a liquidation order can start from are the
        next ones (``hx stress --scenario oct10-2025``: the first 1,024 of 3,333 breaching all
        went to the backstop, and the first order waited 20 ms for every holder's figures)."""
        near, ratio = self._near_rows(rows, dirty)
        size, first = NEAREST_FIRST_MAX, True
        while len(near):
            if len(near) > size:  # the nearest: headroom / maintenance (ties kept whole)
                cut = np.partition(ratio, size - 1)[size - 1]
                keep = ratio <= cut
                window, near, ratio = near[keep], near[~keep], ratio[~keep]
            else:
                window, near = near, _NO_ROWS
            if first and len(window) > len(rows) // 2:  # (the cap keeps the first pass small: it
                return  # pays off unless it is most of the record)
            yield window.copy()
            if first and len(near) > NEAREST_SAMPLE:  # then a sample spread over the rest: where the
                step = len(near) // NEAREST_SAMPLE  # accounts an order starts from are a few percent
                spread = np.zeros(len(near), bool)  # of them (a gap), a sample holds some
                spread[::step] = True
                yield near[spread].copy()
                near, ratio = near[~spread], ratio[~spread]
            # the next windows double (a gap can put most of the book past the takeover line, with
            # the few accounts an order starts from anywhere: a few passes, not a hundred); what
            # they recompute is no longer dirty, so the record's work is the same
            size, first = 2 * size, False

    def _near_rows(self, rows: np.ndarray, dirty: bool) -> tuple[np.ndarray, np.ndarray]:
        """The rows within reach and their headroom / maintenance (``_nearest``)."""
        none = (_NO_ROWS, np.zeros(0))
        if len(rows) < NEAREST_FIRST_ROWS:
            return none
        move = 0.0
        for now, before in zip((self.prices, self.marks), self._priced_at, strict=True):
            was = before > 0
            if was.any():
                move = max(move, float(np.max(np.abs(now[was] - before[was]) / before[was])))
        if move <= 0.0:
            return none
        b, reach = self.book, move * self._reach
        look = rows
        if reach < NEAR_REACH:  # only rows flagged near (every row when rows is the whole book)
            n = b.count
            if len(rows) == n:
                look = np.flatnonzero(b.near[:n])
            elif dirty:
                look = np.flatnonzero(b.near[:n] & b.dirty[:n])
            else:
                look = rows[b.near[rows]]
        if self.margin.compiled is not None:  # (the same double operations, in one pass in C)
            near, ratio = self.margin.compiled.near(b, look, reach)
            return near.copy(), ratio.copy()  # (its views last until its next call)
        maint = b.maintenance[look]
        head = (b.equity[look] - maint).astype(np.float64)
        keep = (maint > 0) & (head < maint.astype(np.float64) * reach)
        return look[keep], head[keep] / maint[keep].astype(np.float64)

    def _recompute(self, rows: np.ndarray, publish: bool = False) -> None:
        b = self.book
        compiled = self.margin.compiled
        if compiled is not None:  # recompute, settle and the news selection in one pass in C
            news = (self.fee_row, MARGIN_PUBLISH_PPM, MARGIN_BELOW_MAINTENANCE, MARGIN_BELOW_INITIAL)
            changed = compiled(
                b,
                rows,
                self.prices,
                self.marks,
                self.margin.multiplier,
                settle=True,
                news=news if publish else None,
            )
        else:
            changed = self.margin.recompute(b, rows, self.prices, self.marks)
            b.reserved[rows] -= b.converting[rows]
            b.converting[rows] = 0
            b.dirty[rows] = False
        if not publish:
            return
        # every account's but the fee account's, then the isolated positions' own (by market)
        isolated = b.isolated_market[changed] != 0 if b.n_isolated else None
        if compiled is not None:  # (tests/engine/risk/test_native_margin.py: the same rows and bytes)
            if len(compiled.news):
                self.events += native_margin.pack_margin(
                    b, compiled.news, self.partition, self.partitions, SYSTEM_ACCOUNT_BASE,
                    MARGIN_BELOW_MAINTENANCE, MARGIN_BELOW_INITIAL, MARGIN_PUBLISH_PPM,
                )  # fmt: skip
        else:
            if isolated is not None and isolated.any():
                out = changed[(changed != self.fee_row) & ~isolated]
            else:
                k = int(np.searchsorted(changed, self.fee_row))  # (ascending: the fee row is cut out)
                hit = int(k < len(changed) and changed[k] == self.fee_row)
                out = np.concatenate((changed[:k], changed[k + 1 :])) if hit and k else changed[hit:]
            if len(out):
                self.events += self._publish_margins(out)
        if isolated is not None and isolated.any():
            self.events += self._publish_margins(changed[isolated])

    def _publish_margins(self, rows: np.ndarray) -> bytes:
        """An ACCOUNT_MARGIN for each of ``rows`` (their margin changed) that is news to its account
        (``_margin_news``), its figures then recorded as published. The specification of
        ``native_margin.pack_margin``."""
        b = self.book
        out = rows[self._margin_news(rows)]
        if not len(out):
            return b""
        equity, initial, maint = b.equity[out], b.initial[out], b.maintenance[out]
        packed = self.pack_private(
            MsgType.ACCOUNT_MARGIN,
            np.maximum(b.isolated_market[out] - 1, 0) if b.n_isolated else 0,  # an isolated one's: its perp
            out,
            flags=_margin_flags(equity, initial, maint),
            equity_micro=equity,
            initial_micro=initial,
            maintenance_micro=maint,
            reserved_micro=b.reserved[out],
        )
        b.published_equity[out] = equity
        b.published_initial[out] = initial
        b.published_maintenance[out] = maint
        b.published_seq[out] = b.private_seq[out]
        return packed

    def _margin_news(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` (their margin changed) get an ACCOUNT_MARGIN: every account that had a
        private event since its last one (its own fill, order, deposit, funding, liquidation...),
        every account crossing initial or maintenance either way, and every account whose equity or
        initial margin moved more than ``MARGIN_PUBLISH_PPM`` of its scale (max(|equity|, initial,
        1 USDC) as last published) since then. So a mark tick over 100,000 holders recomputes all
        of them (liquidation reads the fresh figures) and tells the few it moved materially, not
        every one of them by a few ppm."""
        b = self.book
        eq, im, mm = b.equity[rows], b.initial[rows], b.maintenance[rows]
        peq, pim, pmm = b.published_equity[rows], b.published_initial[rows], b.published_maintenance[rows]
        own = b.published_seq[rows] != b.private_seq[rows]
        crossed = _margin_flags(eq, im, mm) != _margin_flags(peq, pim, pmm)
        scale = np.maximum(np.maximum(np.abs(peq), pim), MICRO_PER_UNIT)
        limit = scale // PPM * MARGIN_PUBLISH_PPM + scale % PPM * MARGIN_PUBLISH_PPM // PPM
        moved = (np.abs(eq - peq) > limit) | (np.abs(im - pim) > limit)
        return own | crossed | moved

    def pack_private(
        self, msg_type: MsgType, market_id: int | np.ndarray, rows: np.ndarray, **fields: Any
    ) -> bytes:
        """One private event per row of ``rows`` (distinct, in the order given), packed in one numpy
        pass: header, each row's next private sequence number (0 for an account of another
        partition, as ``next_seq``), ``account`` from the row, the other fields from ``fields``
        (arrays over ``rows`` or scalars). The same bytes as ``_emit`` row by row."""
        b = self.book
        if b.n_isolated and b.isolated_market[rows].any():  # numbered on their owners' streams
            out = np.zeros(len(rows), BY_TYPE[int(msg_type)].dtype)
            out["seq"] = [self._row_seq(row) for row in rows.tolist()]
            out["msg_type"] = msg_type
            out["version"] = WIRE_VERSION
            out["length"] = SLOT_BYTES
            out["market_id"] = market_id
            out["account"] = b.ids[rows]
            for name, value in fields.items():
                out[name] = value
            return out.tobytes()
        out = np.zeros(len(rows), BY_TYPE[int(msg_type)].dtype)
        out["msg_type"] = msg_type
        out["version"] = WIRE_VERSION
        out["length"] = SLOT_BYTES
        out["market_id"] = market_id
        ids = b.ids[rows].astype(np.int64)
        owned = self._owned(ids)
        seq = b.private_seq[rows] + 1
        mine = rows[owned]
        b.private_seq[mine] = seq[owned]
        out["seq"] = np.where(owned, seq, 0)
        out["account"] = ids
        for name, value in fields.items():
            out[name] = value
        return out.tobytes()

    # ---- checks ----------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise AssertionError when an invariant does not hold (money, reservations)."""
        b, n = self.book, self.book.count
        for a in range(self.config.n_assets):
            total = int(b.balance[:n, a].sum()) + int(b.held[:n, a].sum())
            if a == 0:
                total -= int(b.perp_cost[:n].sum())
            want = self.net_deposits[a] + self.trade_flow[a]
            assert total == want, f"asset {a}: accounts hold {total}, deposits and flows say {want}"
            if self.partitions == 1:  # every fill's two legs are here: nothing flows in or out
                assert self.trade_flow[a] == 0, f"asset {a}: trade flow {self.trade_flow[a]} in one partition"
        held = self.ledger.held_by_account()
        for account, row in b.rows.items():
            want = held.get(account, 0) + int(b.converting[row])
            assert int(b.reserved[row]) == want, (
                f"account {account}: reserved {int(b.reserved[row])} != orders {want}"
            )

    # ---- snapshots -------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The whole state as bytes: ``restore`` of them gives an engine with the same state hash."""
        meta: dict[str, Any] = {
            "partition": self.partition,
            "n_assets": self.config.n_assets,
            "n_perps": self.config.n_perps,
            "deposits": sorted(self.deposits),
            "withdrawals": sorted([*k, *v] for k, v in self.withdrawals.items()),
            "net_deposits": self.net_deposits,
            "priced": sorted(m for m, p in self.priced.items() if p),
            "now_ns": self.now_ns,
            "fee_changed": self._fee_changed,
            "stale": self.stale.tolist(),
            "status": sorted((m, int(st)) for m, st in self.status.items()),
            "funded": self.funded,
            "leverage": sorted([*k, *v] for k, v in self.leverage.items()),
            "trade_flow": self.trade_flow,
            "liquidator": self.liquidator.to_json(),
            "margin": [
                self.margin.variance_ppm2.tolist(),
                self.margin.last_price.tolist(),
                self.margin.multiplier.tolist(),
            ],
            "records": self.records,
            "adl_ranked_at": list(self.adl_ranked_at),
            "ledger": self.ledger.entries(),  # plain tuples, sorted: both ledgers give the same bytes
            "reduce_only": self.reduce_only.to_json(self._reduce_only_listed),
        }
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.frombuffer(orjson.dumps(meta), np.uint8),
            prices=self.prices,
            marks=self.marks,
            **self.book.columns(),
        )
        return SNAPSHOT_MAGIC + buf.getvalue()

    def restore(self, blob: bytes) -> None:
        """Replace the state with a snapshot's (RiskSnapshotError if it is not one of this config)."""
        if blob[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC:
            raise RiskSnapshotError("not a risk snapshot (bad magic)")
        try:
            with np.load(io.BytesIO(blob[len(SNAPSHOT_MAGIC) :]), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            meta = orjson.loads(arrays.pop("meta").tobytes())
        except Exception as exc:  # a torn or foreign file: say so, never half-restore
            raise RiskSnapshotError(f"risk snapshot unreadable: {exc}") from None
        if (meta["n_assets"], meta["n_perps"], meta["partition"]) != (
            self.config.n_assets,
            self.config.n_perps,
            self.partition,
        ):
            raise RiskSnapshotError("risk snapshot is of another configuration (assets, perps or partition)")
        self.prices = arrays.pop("prices").copy()
        self.marks = arrays.pop("marks").copy()
        self.book.load(arrays)
        self.deposits = {(int(a), int(b)) for a, b in meta["deposits"]}
        self.withdrawals = {(a, r): (asset, amount) for a, r, asset, amount in meta["withdrawals"]}
        self.net_deposits = list(meta["net_deposits"])
        self.priced = dict.fromkeys(self.config.markets, False)
        for m in meta["priced"]:
            self.priced[m] = True
        self.now_ns, self._fee_changed = meta["now_ns"], meta["fee_changed"]
        self.stale = np.array(meta["stale"], bool)
        self.status = {m: MarketStatus(st) for m, st in meta["status"]}
        self.funded = list(meta["funded"])
        self.leverage = {(a, m): (lev, mode) for a, m, lev, mode in meta["leverage"]}
        self.trade_flow = list(meta["trade_flow"])
        self.liquidator.load_json(meta["liquidator"])
        variance, last, mult = meta["margin"]
        self.margin.variance_ppm2[:] = variance
        self.margin.last_price[:] = last
        self.margin.multiplier[:] = mult
        self.records = meta["records"]
        ranked = meta.get("adl_ranked_at", (self.records - self.records % ADL_RANK_EVERY, 0))
        self.adl_ranked_at = (int(ranked[0]), int(ranked[1]))
        self.ledger.load(meta["ledger"])
        self.reduce_only.load_json(meta.get("reduce_only"))
        self.fee_row = self.book.row(fee_account(self.partition))
        self.insurance_row = self.book.row(insurance_account(self.partition))
        np.copyto(self._priced_at[0], self.prices)
        np.copyto(self._priced_at[1], self.marks)

    def state_hash(self) -> str:
        h = hashlib.sha256(self.book.digest().encode())
        h.update(repr(sorted(self.deposits)).encode())
        h.update(repr(sorted(self.withdrawals.items())).encode())
        h.update(repr(self.net_deposits).encode())
        h.update(self.prices.tobytes() + self.marks.tobytes() + repr(sorted(self.priced.items())).encode())
        h.update(repr(self.ledger.entries()).encode())
        h.update(repr(self.reduce_only.to_json(self._reduce_only_listed)).encode())
        h.update(repr((self.stale.tolist(), sorted(self.status.items()), self.funded)).encode())
        h.update(repr((sorted(self.leverage.items()), self.trade_flow)).encode())
        h.update(repr((self.liquidator.to_json(), self.records, self.adl_ranked_at)).encode())
        m = self.margin
        h.update(m.variance_ppm2.tobytes() + m.last_price.tobytes() + m.multiplier.tobytes())
        return h.hexdigest()
