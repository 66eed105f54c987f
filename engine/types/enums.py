"""The vocabulary shared by every stage: message types, sides, order kinds, reasons.

Every enum is an ``IntEnum`` so that its values travel in fixed-layout structs as plain integers
and compare with ints on the hot path without conversion. Values are part of the wire protocol:
never renumber, only append.
"""

from __future__ import annotations

from enum import IntEnum


class MsgType(IntEnum):
    """Header ``msg_type``. 1-31 commands (into the engine), 32-63 events (out), 64+ control."""

    NEW_ORDER = 1
    CANCEL = 2
    AMEND = 3
    CANCEL_ALL = 4
    MARK_PRICE = 5
    SET_MARKET_STATUS = 6
    CLOCK = 7
    L2_SNAPSHOT_REQUEST = 8
    DEPOSIT = 9  # into risk: credit an account (chain deposit or, in development, the faucet)
    WITHDRAW_REQUEST = 10  # into risk: hold an amount for a withdrawal
    WITHDRAW_RESULT = 11  # into risk (from settlement): a held withdrawal was paid or failed
    ORACLE_PRICE = 12  # into risk (from the oracle): an asset's index price and its status
    FUNDING = 13  # into risk (from the oracle): pay one funding interval of a perp, exactly once
    RESOLUTION = 14  # into risk (from the oracle): a prediction market resolved; shares settle
    SET_LEVERAGE = 15  # into risk (from a gateway): an account's leverage and margin mode in a market
    RESOLUTION_REQUEST = 16  # into the oracle (from a gateway): the authority proposes or disputes
    ORDER_QUERY = 17  # into risk (from a gateway): an account's open orders, or one of them
    RESTATE_REQUEST = 18  # into risk (from settlement): every balance and position again
    SOURCE_QUOTE = 19  # the oracle's journal: one adapter quote as it arrived (replay never asks a feed)
    SETTLEMENT_PRICE = 20  # into risk (from the oracle): a delisted perp settles every position at it
    ADJUST_MARGIN = 21  # into risk (from a gateway): margin into (> 0) or out of an isolated position

    ACCEPTED = 32
    REJECTED = 33
    FILL = 34
    CANCELLED = 35
    L2_DELTA = 36
    TRADE = 37
    BBO = 38
    AMENDED = 39
    TRIGGERED = 40
    MARKET_STATUS = 41
    BOOK_RESET = 42
    ACCOUNT_MARGIN = 43  # risk: an account's equity and requirements after a change
    BALANCE = 44  # risk: one asset balance of an account changed
    POSITION = 45  # risk: a perp position changed
    MARK = 46  # oracle: a market's mark and index prices (public)
    FUNDING_RATE = 47  # oracle: a perp's predicted and last funding rates (public)
    LIQUIDATION = 48  # risk: a liquidation step (private with the account; public without it)
    ADL_RANK = 49  # risk: a position's auto-deleveraging quantile (private)
    ORDER_STATE = 50  # risk: one open order, in answer to ORDER_QUERY (private)
    PRICE = 51  # risk: a price it now values accounts at (for settlement and dashboards; not routed)
    RESOLUTION_STATUS = 52  # oracle: a prediction market's proposed, disputed or final outcome (public)
    SETTLED = 53  # settlement: an account's events up to seq are final on chain (private)

    HEARTBEAT = 64
    SNAPSHOT_REQUEST = 65
    SHUTDOWN = 66


class Side(IntEnum):
    BUY = 0
    SELL = 1


class TimeInForce(IntEnum):
    """How long an order may rest. Post-only is a flag, not a time in force."""

    GTC = 0
    IOC = 1
    FOK = 2
    GTT = 3


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1  # price field is the worst acceptable price (slippage protection)
    STOP_LIMIT = 2  # rests untriggered until mark crosses the trigger price, then a limit order
    STOP_MARKET = 3
    TAKE_PROFIT_LIMIT = 4
    TAKE_PROFIT_MARKET = 5


# Order types that rest untriggered until the mark crosses their trigger price.
STOP_ORDER_TYPES = frozenset(
    {OrderType.STOP_LIMIT, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_LIMIT, OrderType.TAKE_PROFIT_MARKET}
)
# Order types whose price is a worst acceptable price (slippage protection), not a limit to rest at.
MARKET_PRICED_ORDER_TYPES = frozenset({OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})


class OrderFlag(IntEnum):
    """Bits of ``NewOrder.flags``. Bits 4-6 hold the :class:`StpMode`."""

    POST_ONLY = 1 << 0  # reject if it would take liquidity
    POST_ONLY_SLIDE = 1 << 1  # reprice one tick behind the opposite touch instead of rejecting
    REDUCE_ONLY = 1 << 2


STP_SHIFT = 4
STP_MASK = 0b111 << STP_SHIFT


class StpMode(IntEnum):
    """Self-trade prevention, applied when a taker would match its own account's resting order."""

    NONE = 0  # allow the self-trade (used by the standard workload, where accounts are unique)
    CANCEL_NEWEST = 1  # cancel the incoming order's remainder
    CANCEL_OLDEST = 2  # cancel the resting order, keep matching
    CANCEL_BOTH = 3
    DECREMENT = 4  # reduce both by the overlap without a trade; cancel whichever reaches zero


class MarketKind(IntEnum):
    SPOT = 0
    PERP = 1
    EQUITY = 2
    PREDICTION = 3


class AssetKind(IntEnum):
    """What an asset is, for valuation and risk grouping."""

    STABLE = 0  # the settlement stablecoin (USDC): quantities in micro-units, price 1
    CRYPTO = 1
    EQUITY = 2  # a tokenised share
    PREDICTION = 3  # a prediction market's YES share: price in [0, 1], resolves to 0 or 1


class MarketStatus(IntEnum):
    OPEN = 0
    HALTED = 1  # no new orders or amends; cancels allowed
    CLOSED = 2  # equities outside their session: same as halted
    RESOLVED = 3  # prediction market resolved: nothing but cancels
    POST_ONLY = 4  # auction-like re-open: only post-only orders and cancels


class BalanceReason(IntEnum):
    """Why a BALANCE event's balance changed (its ``ref`` names the deposit, order or request)."""

    DEPOSIT = 0
    WITHDRAW_HOLD = 1  # moved out of the balance into a hold for a withdrawal
    WITHDRAW_RETURN = 2  # a failed or refused withdrawal's hold came back
    WITHDRAW_PAID = 3  # a held withdrawal left the exchange (the balance itself is unchanged)
    TRADE = 4  # a fill: the quote or base leg (perp: realised PnL)
    FEE = 5  # a trading fee paid (negative) or a maker rebate / the fee account's income (positive)
    FUNDING = 6
    LIQUIDATION = 7
    INSURANCE = 8
    RESOLUTION = 9  # a prediction market's shares settled at 0 or 1
    RESTATE = 10  # no change: the balance again, asked for by a consumer that lost its place
    MARGIN_TRANSFER = 11  # margin moved between the account and one of its isolated positions


class PriceStatus(IntEnum):
    """An oracle price's health (engine.math.oracle_index.IndexStatus)."""

    OK = 0
    STALE = 1  # too few fresh sources: risk widens margins, liquidations wait, shards halt later
    DIVERGED = 2  # enough fresh sources, too few inside the band


class MarginMode(IntEnum):
    CROSS = 0
    ISOLATED = 1


class ResolutionAction(IntEnum):
    PROPOSE = 0  # the authority names the outcome; final after the dispute window
    DISPUTE = 1  # within the window: the authority replaces the proposed outcome


class ResolutionState(IntEnum):
    """Where a prediction market's resolution stands (RESOLUTION_STATUS ``state``)."""

    PROPOSED = 0  # the authority named an outcome; the dispute window runs
    DISPUTED = 1  # the authority replaced the outcome within the window; the window restarts
    FINAL = 2  # the window passed: RESOLUTION went to risk and the market is RESOLVED


class OrderState(IntEnum):
    UNKNOWN = 0  # not open: filled, cancelled or rejected earlier, or never placed (see the stream)
    PENDING = 1  # checked and sent to the book; the book has not answered yet
    OPEN = 2  # resting (or a stop waiting for its trigger)


class LiquidationKind(IntEnum):
    """What a LIQUIDATION event reports."""

    STARTED = 0  # the account fell below maintenance: its orders are cancelled
    ORDER = 1  # an IOC sent into the book, limited by the bankruptcy price
    TAKEOVER = 2  # the insurance fund took a position over (backstop)
    COVERED = 3  # the insurance fund paid an account's deficit
    ADL = 4  # a profitable opposite position closed against a bankrupt one (its haircut in deficit)
    UNWIND = 5  # the insurance fund sent an IOC to unwind what it took over
    ENDED = 6  # the account is back above its maintenance margin (with the buffer), or flat
    WAITING = 7  # below maintenance, but a price it depends on is stale: nothing runs until fresh
    UNCOVERED = 8  # a deficit neither the fund nor ADL could cover: booked as the fund's liability


class DepositSource(IntEnum):
    CHAIN = 0  # a Vault deposit, id = the vault's sequential deposit id
    FAUCET = 1  # development only (hx faucet): ids in their own namespace


class WithdrawStatus(IntEnum):
    PAID = 0
    FAILED = 1


class CancelReason(IntEnum):
    USER = 0
    IOC_REMAINDER = 1
    FOK_UNFILLED = 2
    SELF_TRADE = 3
    EXPIRED = 4
    CANCEL_ALL = 5
    MARKET_NO_LIQUIDITY = 6  # market order remainder with nothing left within its worst price
    MARKET_STATUS = 7  # market halted/resolved cancelled resting orders
    LIQUIDATION = 8
    REDUCE_ONLY = 9
    PRICE_BAND = 10  # a triggered stop's limit price fell outside the band around the mark that fired it
    LEVEL_FULL = 11  # a triggered stop would rest on a price level already at the market's size limit


class RejectCode(IntEnum):
    """Why a command was refused. 0 is success. Grouped by the stage that decides, by hundreds."""

    OK = 0

    # 1xx: wire and gateway (structure, auth, limits)
    MALFORMED = 100
    UNKNOWN_MSG_TYPE = 101
    BAD_VERSION = 102
    BAD_LENGTH = 103
    NOT_AUTHENTICATED = 110
    WRONG_ACCOUNT = 111
    RATE_LIMITED = 120
    TOO_MANY_SUBSCRIPTIONS = 121
    BAD_JSON = 130
    BAD_FIELD = 131
    BAD_DECIMAL = 132
    BACKPRESSURE = 140  # ring into the engine full: retry later
    ENGINE_UNAVAILABLE = 141
    # appended by the gateway (issue 4): login, permissions and the JSON control protocol
    BAD_SIGNATURE = 112
    CHALLENGE_EXPIRED = 113
    CHALLENGE_UNKNOWN = 114  # never issued on this connection, or already used (replay)
    AGENT_NOT_AUTHORISED = 115
    PERMISSION_DENIED = 116  # e.g. an agent key asking for a main-key-only action
    ALREADY_AUTHENTICATED = 117
    UNKNOWN_OP = 133
    NOT_SUBSCRIBED = 134
    BAD_NONCE = 135  # agent approval nonce not above the account's last one

    # 2xx: risk (pre-trade), reserved for the risk stage
    INSUFFICIENT_MARGIN = 200
    REDUCE_ONLY_WOULD_INCREASE = 201
    ACCOUNT_LIQUIDATING = 202
    UNKNOWN_ASSET = 203
    DUPLICATE_DEPOSIT = 204  # this deposit id was already credited: nothing changed
    INSUFFICIENT_BALANCE = 205  # a withdrawal above what the account may take out
    AMOUNT_OUT_OF_RANGE = 206  # zero, negative, or a balance/position beyond the engine's bounds
    UNKNOWN_WITHDRAWAL = 207
    ACCOUNT_NOT_HERE = 208  # a command routed to a risk partition that does not own the account
    DUPLICATE_WITHDRAWAL = 209  # this withdrawal request id is already held
    LEVERAGE_OUT_OF_RANGE = 210  # a leverage outside 1..the market's maximum, or an unknown mode
    LEVERAGE_EXCEEDED = 211  # the order would take the position beyond the account's chosen leverage
    MARGIN_MODE_LOCKED = 212  # cross <-> isolated while the market has a position or open orders
    NO_ISOLATED_POSITION = 213  # margin adjusted in a market where the account holds no isolated position

    # 3xx: shard (market rules and the book)
    UNKNOWN_MARKET = 300
    BAD_SIDE = 301
    BAD_TIF = 302
    BAD_ORDER_TYPE = 303
    BAD_FLAGS = 304
    BAD_PRICE_TICK = 310  # zero, negative or beyond the market's max price
    BAD_SIZE_LOT = 311  # zero or negative size
    SIZE_BELOW_MIN = 312
    SIZE_ABOVE_MAX = 313
    NOTIONAL_BELOW_MIN = 314
    NOTIONAL_OVERFLOW = 315
    PRICE_OUTSIDE_BAND = 316
    BAD_TRIGGER_PRICE = 317
    MARKET_HALTED = 320
    MARKET_CLOSED = 321
    MARKET_RESOLVED = 322
    MARKET_POST_ONLY = 323
    UNKNOWN_ORDER = 330
    DUPLICATE_ORDER_ID = 331
    DUPLICATE_CLIENT_ORDER_ID = 332
    EXPIRED = 333
    BAD_EXPIRY = 334
    POST_ONLY_WOULD_TAKE = 340
    FOK_NOT_FILLABLE = 341
    NO_LIQUIDITY = 342
    AMEND_NO_CHANGE = 350
    AMEND_BAD_SIZE = 351
    STALE_SEQUENCE = 360
    OWNER_MISMATCH = 361  # retired: it told a stranger that an order id was live (UNKNOWN_ORDER now)
    REDUCE_ONLY_NO_POSITION = 362
    # appended (issue 10): bounded aggregates
    LEVEL_FULL = 318  # resting the order would take its price level past the market's size limit
    TOO_MANY_OPEN_ORDERS = 335  # the account already has the market's maximum of live orders

    # 4xx: oracle (resolution requests)
    NOT_RESOLUTION_AUTHORITY = 400  # only the market's configured authority may propose or dispute
    NOT_A_PREDICTION_MARKET = 401  # no resolution is configured for this market
    ALREADY_RESOLVED = 402  # the outcome is final
    NO_PROPOSAL = 403  # a dispute needs a proposal to dispute
    DISPUTE_WINDOW_CLOSED = 404  # the window of the standing proposal has passed
    MARKET_NOT_CLOSED = 405  # a proposal before the market's close time
    BAD_OUTCOME = 406  # outcome must be 0 (NO) or 1 (YES)
    BAD_RESOLUTION_ACTION = 407  # action must be 0 (propose) or 1 (dispute)
    ALREADY_PROPOSED = 408  # a second proposal: dispute it instead


REJECT_MESSAGES: dict[RejectCode, str] = {
    RejectCode.OK: "ok",
    RejectCode.MALFORMED: "message is not a valid fixed-layout struct",
    RejectCode.UNKNOWN_MSG_TYPE: "unknown message type",
    RejectCode.BAD_VERSION: "unsupported message version",
    RejectCode.BAD_LENGTH: "header length does not match the message type",
    RejectCode.NOT_AUTHENTICATED: "log in before sending orders",
    RejectCode.WRONG_ACCOUNT: "account field is not the logged-in account",
    RejectCode.RATE_LIMITED: "rate limit exceeded; retry after the advertised delay",
    RejectCode.TOO_MANY_SUBSCRIPTIONS: "too many subscriptions on this connection",
    RejectCode.BAD_JSON: "frame is not valid JSON",
    RejectCode.BAD_FIELD: "a field is missing or of the wrong type",
    RejectCode.BAD_DECIMAL: "decimal is not an exact multiple of the tick or lot",
    RejectCode.BACKPRESSURE: "engine is busy; retry",
    RejectCode.ENGINE_UNAVAILABLE: "engine is not running",
    RejectCode.BAD_SIGNATURE: "signature does not recover to the claimed signer",
    RejectCode.CHALLENGE_EXPIRED: "login challenge expired; ask for a new one",
    RejectCode.CHALLENGE_UNKNOWN: "login challenge unknown or already used",
    RejectCode.AGENT_NOT_AUTHORISED: "agent key is not authorised for this account",
    RejectCode.PERMISSION_DENIED: "this key may not perform that action",
    RejectCode.ALREADY_AUTHENTICATED: "connection is already logged in",
    RejectCode.UNKNOWN_OP: "unknown op",
    RejectCode.NOT_SUBSCRIBED: "not subscribed to that channel",
    RejectCode.BAD_NONCE: "nonce must be greater than the last one used by this account",
    RejectCode.INSUFFICIENT_MARGIN: "insufficient margin",
    RejectCode.REDUCE_ONLY_WOULD_INCREASE: "reduce-only order would increase the position",
    RejectCode.ACCOUNT_LIQUIDATING: "account is being liquidated",
    RejectCode.UNKNOWN_ASSET: "unknown asset",
    RejectCode.DUPLICATE_DEPOSIT: "deposit id already credited",
    RejectCode.INSUFFICIENT_BALANCE: "amount exceeds what the account can withdraw",
    RejectCode.AMOUNT_OUT_OF_RANGE: "amount must be positive and within the engine's bounds",
    RejectCode.UNKNOWN_WITHDRAWAL: "no such withdrawal held",
    RejectCode.ACCOUNT_NOT_HERE: "account is not owned by this risk partition",
    RejectCode.DUPLICATE_WITHDRAWAL: "withdrawal request id already used",
    RejectCode.LEVERAGE_OUT_OF_RANGE: "leverage must be between 1 and the market's maximum",
    RejectCode.LEVERAGE_EXCEEDED: "the order would exceed the leverage chosen for this market",
    RejectCode.MARGIN_MODE_LOCKED: "the margin mode cannot change while the market has a position or open orders",
    RejectCode.NO_ISOLATED_POSITION: "the account holds no isolated position in this market",
    RejectCode.UNKNOWN_MARKET: "unknown market",
    RejectCode.BAD_SIDE: "side must be 0 (buy) or 1 (sell)",
    RejectCode.BAD_TIF: "unknown time in force",
    RejectCode.BAD_ORDER_TYPE: "unknown order type",
    RejectCode.BAD_FLAGS: "invalid flag combination",
    RejectCode.BAD_PRICE_TICK: "price must be a positive number of ticks within the market's range",
    RejectCode.BAD_SIZE_LOT: "size must be a positive number of lots",
    RejectCode.SIZE_BELOW_MIN: "size below the market minimum",
    RejectCode.SIZE_ABOVE_MAX: "size above the market maximum",
    RejectCode.NOTIONAL_BELOW_MIN: "notional below the market minimum",
    RejectCode.NOTIONAL_OVERFLOW: "price x size overflows int64",
    RejectCode.PRICE_OUTSIDE_BAND: "price outside the band around the reference price",
    RejectCode.BAD_TRIGGER_PRICE: "trigger price missing or invalid for this order type",
    RejectCode.MARKET_HALTED: "market is halted",
    RejectCode.MARKET_CLOSED: "market is closed",
    RejectCode.MARKET_RESOLVED: "market is resolved",
    RejectCode.MARKET_POST_ONLY: "market accepts only post-only orders now",
    RejectCode.UNKNOWN_ORDER: "no such open order",
    RejectCode.DUPLICATE_ORDER_ID: "order id already used",
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: "client order id already live for this account",
    RejectCode.EXPIRED: "order expired before it reached the book",
    RejectCode.BAD_EXPIRY: "GTT order needs a future expiry; other orders must not set one",
    RejectCode.POST_ONLY_WOULD_TAKE: "post-only order would take liquidity",
    RejectCode.FOK_NOT_FILLABLE: "fill-or-kill order cannot be filled in full",
    RejectCode.NO_LIQUIDITY: "market order found no liquidity within its worst price",
    RejectCode.AMEND_NO_CHANGE: "amend changes nothing",
    RejectCode.AMEND_BAD_SIZE: "amended size must be positive and above what is already filled",
    RejectCode.STALE_SEQUENCE: "command sequence number already processed",
    RejectCode.OWNER_MISMATCH: "retired, never sent: another account's order is UNKNOWN_ORDER",
    RejectCode.REDUCE_ONLY_NO_POSITION: "reduce-only order needs an opposite position",
    RejectCode.LEVEL_FULL: "the price level is at the market's limit of total open size",
    RejectCode.TOO_MANY_OPEN_ORDERS: "the account has the market's maximum number of open orders",
    RejectCode.NOT_RESOLUTION_AUTHORITY: "only the market's resolution authority may do that",
    RejectCode.NOT_A_PREDICTION_MARKET: "no resolution is configured for this market",
    RejectCode.ALREADY_RESOLVED: "the market's outcome is already final",
    RejectCode.NO_PROPOSAL: "there is no proposed outcome to dispute",
    RejectCode.DISPUTE_WINDOW_CLOSED: "the dispute window has passed",
    RejectCode.MARKET_NOT_CLOSED: "the market has not reached its close time",
    RejectCode.BAD_OUTCOME: "outcome must be 0 (NO) or 1 (YES)",
    RejectCode.BAD_RESOLUTION_ACTION: "action must be 0 (propose) or 1 (dispute)",
    RejectCode.ALREADY_PROPOSED: "an outcome is already proposed; dispute it instead",
}


def reject_message(code: int) -> str:
    """Human text for a reject code; unknown codes still get a message, never a KeyError."""
    try:
        return REJECT_MESSAGES[RejectCode(code)]
    except ValueError:
        return f"reject code {code}"
