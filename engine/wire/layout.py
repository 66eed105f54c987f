"""Every fixed-layout message of the engine: the single source of truth for rings and the binary WS.

Each message is one 64-byte little-endian struct (a cache line): an 8-byte header followed by a
56-byte body. The header is ``msg_type u8 | version u8 | length u16 | market_id u32``; ``length``
is the whole message in bytes, a multiple of 64 (larger messages span several slots).

From the one table below we derive, for each message, a numpy structured dtype (for vectorised
batch work on ring slots) and a ``struct.Struct`` (for single messages in and out of Python), and
``docs/protocol.md`` is generated from the same table. Invariants (tested): every layout is exactly
64 bytes, the dtype and the struct agree byte for byte, and the field order is the wire order.

Units are in the field names: ``_ticks`` prices, ``_lots`` sizes, ``_ns`` nanoseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from engine.types.enums import MsgType

SLOT_BYTES = 64
HEADER_BYTES = 8
WIRE_VERSION = 1
ALL_MARKETS = 0xFFFF_FFFF  # market_id of CANCEL_ALL meaning every market

# (field name, struct code, description). Codes: B u8, H u16, I u32, Q u64, q i64, Ns = N pad bytes.
Field = tuple[str, str, str]

HEADER_FIELDS: list[Field] = [
    ("msg_type", "B", "message type (MsgType)"),
    ("version", "B", "layout version, currently 1"),
    ("length", "H", "message length in bytes, a multiple of 64"),
    ("market_id", "I", "market the message is about (0xFFFFFFFF: all, for CANCEL_ALL)"),
]


@dataclass(frozen=True)
class MessageLayout:
    """One message: its type, its body fields, and the derived struct and dtype."""

    msg_type: MsgType
    summary: str
    body: tuple[Field, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(HEADER_FIELDS) + self.body

    @property
    def struct_format(self) -> str:
        return "<" + "".join(code for _, code, _ in self.fields)

    @property
    def struct(self) -> struct.Struct:
        return _STRUCTS[self.msg_type]

    @property
    def dtype(self) -> np.dtype:
        return _DTYPES[self.msg_type]

    @cached_property
    def field_names(self) -> tuple[str, ...]:
        """Named fields in wire order (computed once: encode/decode ask on every message)."""
        return tuple(name for name, code, _ in self.fields if not code.endswith("x"))

    @cached_property
    def field_set(self) -> frozenset[str]:
        return frozenset(self.field_names)

    @property
    def offsets(self) -> dict[str, int]:
        """Byte offset of every named field (header included), in wire order."""
        return field_offsets(self.fields)

    @property
    def pad_ranges(self) -> tuple[tuple[int, int], ...]:
        """(start, end) byte ranges of the padding: zero on the wire."""
        return pad_ranges(self.fields)


def code_size(code: str) -> int:
    """Bytes taken by one struct code (``"Q"`` 8, ``"12x"`` 12)."""
    return struct.calcsize("<" + code)


def field_offsets(fields: tuple[Field, ...] | list[Field]) -> dict[str, int]:
    """Byte offset of every named (non-padding) field of a field table, in table order."""
    out, offset = {}, 0
    for name, code, _ in fields:
        if not code.endswith("x"):
            out[name] = offset
        offset += code_size(code)
    return out


def pad_ranges(fields: tuple[Field, ...] | list[Field]) -> tuple[tuple[int, int], ...]:
    """(start, end) byte ranges of a field table's padding."""
    out, offset = [], 0
    for _, code, _ in fields:
        size = code_size(code)
        if code.endswith("x"):
            out.append((offset, offset + size))
        offset += size
    return tuple(out)


def _pad(n: int) -> Field:
    return ("_pad", f"{n}x", "zero")


_ORDER_ID = (
    "order_id",
    "Q",
    "exchange order id, unique per market; in NEW_ORDER 0 = the shard assigns the next one",
)
_CLIENT_ID = ("client_order_id", "Q", "the client's own id; 0 = none")
_SEQ = ("seq", "Q", "per-market event sequence number, gap-free from 1")
_ACCOUNT = ("account", "I", "internal account id")

LAYOUTS: tuple[MessageLayout, ...] = (
    # ---- commands: client -> engine -------------------------------------------------------------
    MessageLayout(
        MsgType.NEW_ORDER,
        "Place an order.",
        (
            _ORDER_ID,
            _CLIENT_ID,
            ("price_ticks", "q", "limit price; for MARKET orders the worst acceptable price"),
            ("size_lots", "q", "size in lots, > 0"),
            ("trigger_price_ticks", "q", "stop/take-profit trigger on the mark price; 0 otherwise"),
            ("expire_ns", "Q", "GTT expiry, engine clock ns; 0 unless tif is GTT"),
            _ACCOUNT,
            ("side", "B", "Side: 0 buy, 1 sell"),
            ("tif", "B", "TimeInForce: 0 GTC, 1 IOC, 2 FOK, 3 GTT"),
            ("order_type", "B", "OrderType: 0 limit, 1 market, 2-5 stop/take-profit"),
            ("flags", "B", "OrderFlag bits 0-2 (post-only, slide, reduce-only), StpMode in bits 4-6"),
        ),
    ),
    MessageLayout(
        MsgType.CANCEL,
        "Cancel one order, by order_id, or by client_order_id when order_id is 0.",
        (
            _ORDER_ID,
            _CLIENT_ID,
            _ACCOUNT,
            _pad(36),
        ),
    ),
    MessageLayout(
        MsgType.AMEND,
        "Change price and/or size. Size down keeps priority; price change or size up loses it.",
        (
            _ORDER_ID,
            _CLIENT_ID,
            ("price_ticks", "q", "new price; 0 keeps the price"),
            ("size_lots", "q", "new total size (original units, including what is filled); 0 keeps it"),
            _ACCOUNT,
            _pad(20),
        ),
    ),
    MessageLayout(
        MsgType.CANCEL_ALL,
        "Cancel every open order of an account, in one market or all (market_id 0xFFFFFFFF).",
        (
            _ACCOUNT,
            _pad(52),
        ),
    ),
    MessageLayout(
        MsgType.MARK_PRICE,
        "Mark/reference price for a market: triggers stops, centres the price band.",
        (
            ("price_ticks", "q", "mark price"),
            ("ts_ns", "Q", "oracle timestamp"),
            _pad(40),
        ),
    ),
    MessageLayout(
        MsgType.SET_MARKET_STATUS,
        "Open, halt, close or resolve a market (operator).",
        (
            ("status", "B", "MarketStatus"),
            _pad(55),
        ),
    ),
    MessageLayout(
        MsgType.CLOCK,
        "Engine clock tick from the sequencer: expires GTT orders deterministically.",
        (
            ("now_ns", "Q", "sequencer clock"),
            _pad(48),
        ),
    ),
    MessageLayout(
        MsgType.L2_SNAPSHOT_REQUEST,
        "Ask the shard to restate a market's L2 book (0xFFFFFFFF: every market of the shard); "
        "a gateway that missed part of the event stream sends it. Not accepted from clients.",
        (_pad(56),),
    ),
    # ---- events: engine -> consumers ------------------------------------------------------------
    MessageLayout(
        MsgType.ACCEPTED,
        "An order passed validation and entered the book (or started matching).",
        (
            _SEQ,
            _ORDER_ID,
            _CLIENT_ID,
            ("price_ticks", "q", "limit price (after a post-only slide, the slid price)"),
            ("size_lots", "q", "order size"),
            ("ts_ns", "Q", "engine clock"),
            _ACCOUNT,
            ("side", "B", "Side"),
            ("tif", "B", "TimeInForce"),
            ("order_type", "B", "OrderType"),
            ("flags", "B", "as sent"),
        ),
    ),
    MessageLayout(
        MsgType.REJECTED,
        "A command was refused; nothing changed. From the gateway: seq = 0, and for RATE_LIMITED "
        "ts_ns holds the retry-after in ns.",
        (
            _SEQ,
            _ORDER_ID,
            _CLIENT_ID,
            ("ts_ns", "Q", "engine clock"),
            _ACCOUNT,
            ("reason", "H", "RejectCode"),
            ("command", "B", "MsgType of the refused command"),
            _pad(17),
        ),
    ),
    MessageLayout(
        MsgType.FILL,
        "A match between a taker and a resting maker, at the maker's price.",
        (
            _SEQ,
            ("taker_order_id", "Q", "aggressing order"),
            ("maker_order_id", "Q", "resting order"),
            ("price_ticks", "q", "trade price = maker's price"),
            ("size_lots", "q", "filled size"),
            ("taker_account", "I", "taker's account"),
            ("maker_account", "I", "maker's account"),
            ("taker_side", "B", "Side of the taker"),
            ("flags", "B", "bit0 taker done, bit1 maker done"),
            _pad(6),
        ),
    ),
    MessageLayout(
        MsgType.CANCELLED,
        "An order left the book without filling (the rest of its size).",
        (
            _SEQ,
            _ORDER_ID,
            _CLIENT_ID,
            ("size_lots", "q", "size cancelled (the order's open remainder)"),
            ("ts_ns", "Q", "engine clock"),
            _ACCOUNT,
            ("reason", "B", "CancelReason"),
            ("side", "B", "Side"),
            _pad(10),
        ),
    ),
    MessageLayout(
        MsgType.L2_DELTA,
        "A price level's new total size (0 = level gone).",
        (
            _SEQ,
            ("price_ticks", "q", "level price"),
            ("size_lots", "q", "new total size at the level"),
            ("order_count", "I", "orders at the level"),
            ("side", "B", "Side"),
            _pad(3),
            ("prev_seq", "Q", "set by the gateway: seq of the market's previous L2_DELTA (0 on the rings)"),
            _pad(16),
        ),
    ),
    MessageLayout(
        MsgType.TRADE,
        "Public trade print (no accounts).",
        (
            _SEQ,
            ("price_ticks", "q", "trade price"),
            ("size_lots", "q", "size"),
            ("ts_ns", "Q", "engine clock"),
            ("taker_side", "B", "aggressor Side"),
            _pad(23),
        ),
    ),
    MessageLayout(
        MsgType.BBO,
        "Best bid and offer after a change (size 0 = empty side).",
        (
            _SEQ,
            ("bid_price_ticks", "q", "best bid"),
            ("bid_size_lots", "q", "size at best bid"),
            ("ask_price_ticks", "q", "best ask"),
            ("ask_size_lots", "q", "size at best ask"),
            ("ts_ns", "Q", "engine clock"),
            _pad(8),
        ),
    ),
    MessageLayout(
        MsgType.AMENDED,
        "An amend took effect.",
        (
            _SEQ,
            _ORDER_ID,
            _CLIENT_ID,
            ("price_ticks", "q", "new price"),
            ("size_lots", "q", "new open (unfilled) size"),
            _ACCOUNT,
            ("kept_priority", "B", "1 if the order kept its queue position"),
            _pad(11),
        ),
    ),
    MessageLayout(
        MsgType.TRIGGERED,
        "A stop/take-profit order's trigger fired; it now enters the book.",
        (
            _SEQ,
            _ORDER_ID,
            _CLIENT_ID,
            ("mark_price_ticks", "q", "mark that fired it"),
            _ACCOUNT,
            _pad(20),
        ),
    ),
    MessageLayout(
        MsgType.MARKET_STATUS,
        "A market's status changed.",
        (
            _SEQ,
            ("status", "B", "MarketStatus"),
            _pad(47),
        ),
    ),
    MessageLayout(
        MsgType.BOOK_RESET,
        "The market's L2 book restated: clear it; the next bid_levels + ask_levels L2_DELTA events "
        "(same seq, bids then asks, best first) rebuild it. Changes no state: seq does not advance.",
        (
            _SEQ,
            ("bid_levels", "I", "L2_DELTA events for bids that follow"),
            ("ask_levels", "I", "L2_DELTA events for asks that follow"),
            _pad(40),
        ),
    ),
    # ---- risk: accounts, money in and out --------------------------------------------------------
    MessageLayout(
        MsgType.DEPOSIT,
        "Credit an account once per deposit id (settlement after N confirmations; the faucet in "
        "development). Not accepted from clients.",
        (
            _ACCOUNT,
            ("asset", "H", "asset id"),
            ("source", "B", "DepositSource: 0 chain, 1 faucet (ids are unique per source)"),
            _pad(1),
            ("amount", "q", "in the asset's unit (micro-USDC, atoms), > 0"),
            ("deposit_id", "Q", "the vault's sequential deposit id (or the faucet's)"),
            _pad(32),
        ),
    ),
    MessageLayout(
        MsgType.WITHDRAW_REQUEST,
        "Hold an amount for a withdrawal; refused (REJECTED) unless the account's free collateral "
        "covers it afterwards.",
        (
            _ACCOUNT,
            ("asset", "H", "asset id"),
            _pad(2),
            ("amount", "q", "in the asset's unit, > 0"),
            ("request_id", "Q", "the withdrawal's nonce, unique per account"),
            _pad(32),
        ),
    ),
    MessageLayout(
        MsgType.WITHDRAW_RESULT,
        "Settlement's word on a held withdrawal: paid (the hold leaves) or failed (the hold returns).",
        (
            _ACCOUNT,
            ("asset", "H", "asset id"),
            ("status", "B", "WithdrawStatus: 0 paid, 1 failed"),
            _pad(1),
            ("amount", "q", "the held amount"),
            ("request_id", "Q", "as in the request"),
            _pad(32),
        ),
    ),
    MessageLayout(
        MsgType.ACCOUNT_MARGIN,
        "An account's margin after a change of its own, a threshold crossed, or a price move of more than "
        "0.1% of its scale since the last one (private). Free collateral = equity - initial - reserved.",
        (
            ("seq", "Q", "risk partition event sequence number"),
            _ACCOUNT,
            ("flags", "B", "bit0 below maintenance (liquidatable), bit1 below initial"),
            _pad(3),
            ("equity_micro", "q", "collateral at haircut + unrealised PnL, rounded down"),
            ("initial_micro", "q", "initial margin requirement, rounded up"),
            ("maintenance_micro", "q", "maintenance margin requirement, rounded up"),
            ("reserved_micro", "q", "held for open orders"),
            _pad(8),
        ),
    ),
    MessageLayout(
        MsgType.BALANCE,
        "One asset balance of an account changed (private; settlement mirrors it on chain).",
        (
            ("seq", "Q", "risk partition event sequence number"),
            _ACCOUNT,
            ("asset", "H", "asset id"),
            ("reason", "B", "BalanceReason"),
            _pad(1),
            ("balance", "q", "new balance (negative: a liability)"),
            ("delta", "q", "this change"),
            ("held", "q", "held for pending withdrawals (not in balance)"),
            ("ref", "Q", "deposit id, order id or withdrawal request id"),
            _pad(8),
        ),
    ),
    MessageLayout(
        MsgType.POSITION,
        "A perp position changed (private). Entry price = cost / size.",
        (
            ("seq", "Q", "risk partition event sequence number"),
            _ACCOUNT,
            _pad(4),
            ("size_atoms", "q", "signed: long > 0"),
            ("cost_micro", "q", "signed entry notional (long > 0); 0 when flat"),
            ("realised_pnl_micro", "q", "realised PnL of this position's life so far"),
            ("funding_micro", "q", "funding paid (< 0) or received over its life"),
            _pad(8),
        ),
    ),
    # ---- derivatives: prices, funding, leverage, resolution ------------------------------------
    MessageLayout(
        MsgType.ORACLE_PRICE,
        "An asset's index price (oracle -> risk): collateral and spot valuation; STALE widens margins.",
        (
            ("asset", "H", "asset id"),
            ("status", "B", "PriceStatus: 0 ok, 1 stale, 2 diverged"),
            _pad(5),
            ("price_micro", "q", "micro-USDC per whole unit (the last good price when not ok)"),
            ("ts_ns", "Q", "oracle clock of the price"),
            _pad(32),
        ),
    ),
    MessageLayout(
        MsgType.FUNDING,
        "Pay one funding interval of a perp (oracle -> risk): longs pay rate x size x mark when the "
        "rate is positive. Each interval id is paid once.",
        (
            ("interval_id", "Q", "funding interval number (interval start / interval length)"),
            ("rate_ppb", "q", "rate for this interval, parts per billion"),
            ("mark_micro", "q", "price the payments use"),
            ("ts_ns", "Q", "oracle clock"),
            _pad(24),
        ),
    ),
    MessageLayout(
        MsgType.RESOLUTION,
        "A prediction market resolved (oracle -> risk, after its dispute window): every share settles "
        "at exactly 1 (YES) or 0 (NO).",
        (
            ("outcome", "B", "0 NO, 1 YES"),
            _pad(7),
            ("ts_ns", "Q", "oracle clock"),
            _pad(40),
        ),
    ),
    MessageLayout(
        MsgType.SET_LEVERAGE,
        "An account's chosen leverage and margin mode in a market (gateway -> risk).",
        (
            _ACCOUNT,
            ("leverage", "H", "1..the market's maximum"),
            ("mode", "B", "MarginMode: 0 cross, 1 isolated"),
            _pad(1),
            _pad(48),
        ),
    ),
    MessageLayout(
        MsgType.ADJUST_MARGIN,
        "Margin moved into (amount > 0) or out of (amount < 0) the account's isolated position in a "
        "perp (gateway -> risk). Out only as far as the position stays above its initial margin.",
        (
            _ACCOUNT,
            _pad(4),
            ("amount_micro", "q", "micro-USDC; non-zero"),
            _pad(40),
        ),
    ),
    MessageLayout(
        MsgType.RESOLUTION_REQUEST,
        "The resolution authority proposes or disputes a prediction market's outcome (gateway -> oracle).",
        (
            _ACCOUNT,
            ("action", "B", "ResolutionAction: 0 propose, 1 dispute"),
            ("outcome", "B", "0 NO, 1 YES"),
            _pad(2),
            ("ts_ns", "Q", "gateway clock"),
            _pad(40),
        ),
    ),
    MessageLayout(
        MsgType.MARK,
        "A market's mark and index prices (oracle, public: the `mark` and `index` channels).",
        (
            ("seq", "Q", "oracle event sequence number"),
            ("mark_micro", "q", "mark price, micro-USDC per whole unit"),
            ("index_micro", "q", "index price of the base asset"),
            ("ts_ns", "Q", "oracle clock"),
            ("status", "B", "PriceStatus of the index"),
            _pad(23),
        ),
    ),
    MessageLayout(
        MsgType.FUNDING_RATE,
        "A perp's funding (oracle, public: the `funding` channel). Rates per payment interval, ppb.",
        (
            ("seq", "Q", "oracle event sequence number"),
            ("predicted_rate_ppb", "q", "rate the current interval would pay now"),
            ("last_rate_ppb", "q", "rate of the last interval paid"),
            ("next_funding_ns", "Q", "when the current interval is paid"),
            ("interval_ns", "Q", "payment interval"),
            _pad(16),
        ),
    ),
    MessageLayout(
        MsgType.LIQUIDATION,
        "A liquidation step (risk). Private to the account; the public `liquidations` channel gets "
        "it with account 0.",
        (
            ("seq", "Q", "risk partition event sequence number"),
            _ACCOUNT,
            ("kind", "B", "LiquidationKind"),
            ("side", "B", "Side of the trade for the liquidated account (ORDER, TAKEOVER, ADL)"),
            _pad(2),
            ("size_atoms", "q", "size traded or taken over (atoms)"),
            ("price_micro", "q", "limit (ORDER), bankruptcy or mark price (TAKEOVER, ADL)"),
            ("amount_micro", "q", "deficit covered (COVERED), haircut (ADL), fee (ORDER fills)"),
            ("insurance_micro", "q", "the partition's insurance fund balance after this step"),
            _pad(8),
        ),
    ),
    MessageLayout(
        MsgType.ADL_RANK,
        "A position's auto-deleveraging quantile (private): 1 lowest .. 5 first in line, 0 none.",
        (
            ("seq", "Q", "risk partition event sequence number"),
            _ACCOUNT,
            ("rank", "B", "0..5"),
            _pad(43),
        ),
    ),
    MessageLayout(
        MsgType.ORDER_QUERY,
        "Ask risk for an account's open orders (order_id and client_order_id 0), or one of them "
        "(gateway -> risk). Answered with ORDER_STATE events carrying request_id.",
        (
            _ORDER_ID,
            _CLIENT_ID,
            ("request_id", "Q", "echoed in every ORDER_STATE of the answer"),
            _ACCOUNT,
            _pad(28),
        ),
    ),
    MessageLayout(
        MsgType.ORDER_STATE,
        "One open order of the account, in answer to ORDER_QUERY (private); the last one of an "
        "answer has last = 1 (an empty answer is one UNKNOWN state with last = 1).",
        (
            ("seq", "Q", "the account's private sequence number"),
            _ORDER_ID,
            _CLIENT_ID,
            ("price_ticks", "q", "limit price"),
            ("open_lots", "q", "size still open"),
            ("request_id", "Q", "as in the query"),
            _ACCOUNT,
            ("side", "B", "Side"),
            ("state", "B", "OrderState: 0 unknown, 1 pending, 2 open"),
            ("last", "B", "1 on the answer's last event"),
            _pad(1),
        ),
    ),
    MessageLayout(
        MsgType.RESTATE_REQUEST,
        "Ask risk to restate every nonzero balance (BALANCE, reason RESTATE) and position (settlement, "
        "after it lost its place in risk's event stream).",
        (_pad(56),),
    ),
    MessageLayout(
        MsgType.PRICE,
        "A price risk values accounts at from now on: a perp's mark (market_id = the perp) or an "
        "asset's price (market_id = 0xFFFFFFFF). Settlement values its batches with these.",
        (
            ("asset", "H", "asset id (the perp's underlying for a mark)"),
            ("kind", "B", "0: a perp's mark, 1: an asset's price"),
            ("status", "B", "PriceStatus"),
            _pad(4),
            ("price_micro", "q", "micro-USDC per whole unit"),
            ("ts_ns", "Q", "risk's clock"),
            _pad(32),
        ),
    ),
    # ---- oracle: its journal's quotes, delisting, resolution status ------------------------------
    MessageLayout(
        MsgType.SOURCE_QUOTE,
        "One price feed's quote as the oracle received it (its journal only; market_id = asset id). "
        "Replay reads these and never asks a feed again.",
        (
            ("feed", "H", "the feed's index among the asset's sources (or the perp's external mids)"),
            ("reason", "B", "DropReason found at the edge (1 unparseable: NaN, text...); 0 = parsed"),
            _pad(1),
            ("perp_market", "I", "0: an index feed of the asset; else an external mid of this perp market"),
            ("price_micro", "q", "micro-USDC per whole unit, as parsed (0 when unparseable)"),
            ("source_ts_ns", "Q", "the feed's own timestamp of the price"),
            ("arrival_ts_ns", "Q", "oracle clock when it arrived"),
            _pad(24),
        ),
    ),
    MessageLayout(
        MsgType.SETTLEMENT_PRICE,
        "A delisted perp's final price (oracle -> risk): every position closes at it, once; the "
        "index TWAP over [twap_start_ns, twap_end_ns).",
        (
            ("price_micro", "q", "settlement price, micro-USDC per whole unit"),
            ("twap_start_ns", "Q", "window start"),
            ("twap_end_ns", "Q", "window end (the delisting time)"),
            ("ts_ns", "Q", "oracle clock"),
            _pad(24),
        ),
    ),
    MessageLayout(
        MsgType.RESOLUTION_STATUS,
        "A prediction market's resolution (oracle, public): proposed, disputed or final outcome.",
        (
            ("seq", "Q", "oracle event sequence number"),
            ("state", "B", "ResolutionState: 0 proposed, 1 disputed, 2 final"),
            ("outcome", "B", "0 NO, 1 YES"),
            _pad(6),
            ("final_at_ns", "Q", "when the outcome becomes final unless disputed (the window's end)"),
            ("ts_ns", "Q", "oracle clock"),
            _pad(24),
        ),
    ),
    MessageLayout(
        MsgType.SETTLED,
        "An account's private events up to ``seq`` are final: batch ``batch_id``, accepted on chain in "
        "``block``, holds its confirmations (settlement -> the account's private stream).",
        (
            ("seq", "Q", "the account's last private sequence number the batch covers"),
            _ACCOUNT,
            _pad(4),
            ("batch_id", "Q", "the ClearingHouse batch id"),
            ("block", "Q", "block number of the accepted batch"),
            ("ts_ns", "Q", "settlement's clock when the confirmations were reached"),
            _pad(16),
        ),
    ),
    # ---- control --------------------------------------------------------------------------------
    MessageLayout(
        MsgType.HEARTBEAT,
        "Liveness; carries the sender's clock and last sequence.",
        (
            ("ts_ns", "Q", "sender clock"),
            ("last_seq", "Q", "last sequence the sender produced or processed"),
            _pad(40),
        ),
    ),
    MessageLayout(
        MsgType.SNAPSHOT_REQUEST,
        "Ask a stateful process to snapshot now.",
        (
            ("request_id", "Q", "echoed in logs"),
            _pad(48),
        ),
    ),
    MessageLayout(
        MsgType.SHUTDOWN,
        "Ask a process to snapshot and stop cleanly.",
        (
            ("request_id", "Q", "echoed in logs"),
            _pad(48),
        ),
    ),
)

BY_TYPE: dict[int, MessageLayout] = {int(layout.msg_type): layout for layout in LAYOUTS}


def struct_of(fields: tuple[Field, ...] | list[Field]) -> struct.Struct:
    """The little-endian ``struct.Struct`` of a field table."""
    return struct.Struct("<" + "".join(code for _, code, _ in fields))


def dtype_of(fields: tuple[Field, ...] | list[Field]) -> np.dtype:
    """The numpy structured dtype of a field table (same bytes as :func:`struct_of`)."""
    names, formats, offsets = [], [], []
    offset = 0
    for name, code, _ in fields:
        size = code_size(code)
        if not code.endswith("x"):
            names.append(name)
            formats.append(
                np.dtype(
                    "<"
                    + code.replace("B", "u1")
                    .replace("H", "u2")
                    .replace("I", "u4")
                    .replace("Q", "u8")
                    .replace("q", "i8")
                )
            )
            offsets.append(offset)
        offset += size
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


_STRUCTS: dict[MsgType, struct.Struct] = {}
_DTYPES: dict[MsgType, np.dtype] = {}
for _layout in LAYOUTS:
    _STRUCTS[_layout.msg_type] = struct.Struct(_layout.struct_format)
    _DTYPES[_layout.msg_type] = dtype_of(_layout.fields)

HEADER_STRUCT = struct.Struct("<" + "".join(code for _, code, _ in HEADER_FIELDS))
HEADER_DTYPE = np.dtype(
    {
        "names": [f[0] for f in HEADER_FIELDS],
        "formats": ["u1", "u1", "<u2", "<u4"],
        "offsets": [0, 1, 2, 4],
        "itemsize": SLOT_BYTES,
    }
)
SLOT_DTYPE = np.dtype((np.void, SLOT_BYTES))

# Hot-path shortcuts: the packed header value for each type (little-endian u32 of type|ver|len).
NEW_ORDER = _STRUCTS[MsgType.NEW_ORDER]
CANCEL = _STRUCTS[MsgType.CANCEL]
AMEND = _STRUCTS[MsgType.AMEND]
CANCEL_ALL = _STRUCTS[MsgType.CANCEL_ALL]
MARK_PRICE = _STRUCTS[MsgType.MARK_PRICE]
ACCEPTED = _STRUCTS[MsgType.ACCEPTED]
REJECTED = _STRUCTS[MsgType.REJECTED]
FILL = _STRUCTS[MsgType.FILL]
CANCELLED = _STRUCTS[MsgType.CANCELLED]
L2_DELTA = _STRUCTS[MsgType.L2_DELTA]
TRADE = _STRUCTS[MsgType.TRADE]
BBO = _STRUCTS[MsgType.BBO]
AMENDED = _STRUCTS[MsgType.AMENDED]
TRIGGERED = _STRUCTS[MsgType.TRIGGERED]
HEARTBEAT_STRUCT = _STRUCTS[MsgType.HEARTBEAT]
BOOK_RESET_STRUCT = _STRUCTS[MsgType.BOOK_RESET]


def layout_of(msg_type: int) -> MessageLayout:
    """The layout for a message type; KeyError for unknown types (callers validate first)."""
    return BY_TYPE[msg_type]


def field_offset(msg_type: int, name: str) -> int:
    """Byte offset of field ``name`` in the struct of ``msg_type``: how hot paths name an offset
    (``field_offset(MsgType.FILL, "maker_account")``) instead of writing a number."""
    try:
        return _OFFSETS[int(msg_type)][name]
    except KeyError:
        raise KeyError(f"{MsgType(msg_type).name} has no field {name!r}") from None


def field_code(msg_type: int, name: str) -> str:
    """The struct code of field ``name`` of ``msg_type`` (``"Q"``, ``"I"``...)."""
    for fname, code, _ in BY_TYPE[int(msg_type)].fields:
        if fname == name and not code.endswith("x"):
            return code
    raise KeyError(f"{MsgType(msg_type).name} has no field {name!r}")


def word_index(msg_type: int, name: str, word_bytes: int) -> int:
    """Index of field ``name`` in a slot viewed as ``word_bytes``-wide integers (numpy
    ``slots.view("<u4")[:, word_index(t, "account", 4)]``); ValueError unless the field is aligned."""
    offset = field_offset(msg_type, name)
    if offset % word_bytes:
        raise ValueError(f"{MsgType(msg_type).name}.{name} at byte {offset} is not {word_bytes}-byte aligned")
    return offset // word_bytes


def field_span(msg_type: int, first: str, last: str) -> tuple[int, struct.Struct]:
    """(offset, struct) of the consecutive fields ``first`` .. ``last`` of ``msg_type`` (padding
    between them included): unpack a run of fields in one call, by name."""
    fields = BY_TYPE[int(msg_type)].fields
    names = [name for name, _, _ in fields]
    i, j = names.index(first), names.index(last)
    if j < i:
        raise ValueError(f"{last!r} comes before {first!r}")
    return field_offset(msg_type, first), struct_of(fields[i : j + 1])


_OFFSETS: dict[int, dict[str, int]] = {t: field_offsets(layout.fields) for t, layout in BY_TYPE.items()}
# the header's fields, at the same offsets in every message
MSG_TYPE_AT, VERSION_AT, LENGTH_AT, MARKET_ID_AT = field_offsets(HEADER_FIELDS).values()

# ---- the event vocabulary -------------------------------------------------------------------------
# The events the matching engine emits and the EventSink method each is delivered to. This table and
# the layouts above are the only place the vocabulary is spelled: a sink method's arguments are the
# event's fields in WIRE order (``market_id``, then the body), without padding and without the
# fields a later stage stamps (STAMPED_DOWNSTREAM, 0 as the engine emits them). The EventSink
# protocol, the WireEventWriter's packers and the C core's emitters are generated from it
# (``python -m engine.native.codegen``); the native engine's dispatcher derives its routes from it.
ENGINE_EVENTS: dict[MsgType, str] = {
    MsgType.ACCEPTED: "on_accepted",
    MsgType.REJECTED: "on_rejected",
    MsgType.FILL: "on_fill",
    MsgType.CANCELLED: "on_cancelled",
    MsgType.L2_DELTA: "on_l2",
    MsgType.TRADE: "on_trade",
    MsgType.BBO: "on_bbo",
    MsgType.AMENDED: "on_amended",
    MsgType.TRIGGERED: "on_triggered",
    MsgType.MARKET_STATUS: "on_market_status",
}
STAMPED_DOWNSTREAM: dict[MsgType, tuple[str, ...]] = {MsgType.L2_DELTA: ("prev_seq",)}
# Messages the shard process emits itself, next to the engine's events (its WireEventWriter packs
# them with the same generated methods): a restatement's BOOK_RESET, a heartbeat's echo.
SHARD_EVENTS: dict[MsgType, str] = {
    MsgType.BOOK_RESET: "on_book_reset",
    MsgType.HEARTBEAT: "on_heartbeat",
}


SEQ_AT = field_offset(MsgType.ACCEPTED, "seq")  # every engine event's seq is here (checked)
if any(field_offset(t, "seq") != SEQ_AT for t in ENGINE_EVENTS):
    raise AssertionError("every engine event must carry seq at the same offset")


def sink_fields(msg_type: int) -> tuple[str, ...]:
    """The EventSink arguments of an event, in order: ``market_id`` then the body fields on the wire
    (``seq`` first), minus padding and downstream-stamped fields."""
    stamped = STAMPED_DOWNSTREAM.get(MsgType(msg_type), ())
    names = BY_TYPE[int(msg_type)].field_names[3:]  # after msg_type, version, length
    return tuple(n for n in names if n not in stamped)
