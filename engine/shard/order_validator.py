"""Pure checks of a command against a market's rules: ``check_*`` functions return a RejectCode (0 = ok).

No state is read except what is passed in, nothing is mutated: the engine calls these before
anything touches a book, so "nothing invalid reaches the book" is a property of this module.
Stateful checks (duplicate ids, unknown orders, would-take for post-only, FOK fillability) live
in the engine and the books because they need the book.

Order of checks for a new order (the first failing one is reported):
side, order type, tif, flags -> market status -> price > 0, size > 0 -> notional overflow ->
price <= max, min/max size, min notional -> trigger -> expiry -> price band.
"""

from __future__ import annotations

from engine.types.enums import (
    MARKET_PRICED_ORDER_TYPES,
    STOP_ORDER_TYPES,
    STP_SHIFT,
    MarketStatus,
    OrderFlag,
    OrderType,
    RejectCode,
    TimeInForce,
)
from engine.types.fixed import BASE_ATOMS_PER_UNIT, INT64_MAX
from engine.types.market_spec import MarketSpec

_POST = OrderFlag.POST_ONLY | OrderFlag.POST_ONLY_SLIDE
_KNOWN_FLAG_BITS = int(OrderFlag.POST_ONLY | OrderFlag.POST_ONLY_SLIDE | OrderFlag.REDUCE_ONLY) | (
    0b111 << STP_SHIFT
)
_MAX_STP = 4

_STATUS_REJECT = {
    MarketStatus.HALTED: RejectCode.MARKET_HALTED,
    MarketStatus.CLOSED: RejectCode.MARKET_CLOSED,
    MarketStatus.RESOLVED: RejectCode.MARKET_RESOLVED,
}


def is_stop_type(order_type: int) -> bool:
    return 2 <= order_type <= 5


def is_triggered_by(order_type: int, side: int, trigger_ticks: int, mark_ticks: int) -> bool:
    """Stops buy when the mark rises to the trigger and sell when it falls to it; take-profits mirror."""
    if order_type in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET):
        return mark_ticks >= trigger_ticks if side == 0 else mark_ticks <= trigger_ticks
    return mark_ticks <= trigger_ticks if side == 0 else mark_ticks >= trigger_ticks


def check_status(status: int, post_only: bool) -> int:
    """May a new order (or an amend) enter a market in ``status``?"""
    if status == MarketStatus.OPEN:
        return RejectCode.OK
    if status == MarketStatus.POST_ONLY:
        return RejectCode.OK if post_only else RejectCode.MARKET_POST_ONLY
    return _STATUS_REJECT[MarketStatus(status)]


def check_price_size(spec: MarketSpec, price_ticks: int, size_lots: int) -> int:
    """Tick/lot range, int64 notional, max price, min/max size, min notional."""
    if price_ticks <= 0:
        return RejectCode.BAD_PRICE_TICK
    if size_lots <= 0:
        return RejectCode.BAD_SIZE_LOT
    raw = price_ticks * size_lots
    notional = raw * spec.tick_size_micro * spec.lot_size_atoms // BASE_ATOMS_PER_UNIT
    if raw > INT64_MAX or notional > INT64_MAX:
        return RejectCode.NOTIONAL_OVERFLOW
    if price_ticks > spec.max_price_ticks:
        return RejectCode.BAD_PRICE_TICK
    if size_lots < spec.min_size_lots:
        return RejectCode.SIZE_BELOW_MIN
    if size_lots > spec.max_size_lots:
        return RejectCode.SIZE_ABOVE_MAX
    if notional < spec.min_notional_micro:
        return RejectCode.NOTIONAL_BELOW_MIN
    return RejectCode.OK


def check_band(spec: MarketSpec, mark_ticks: int, price_ticks: int) -> int:
    """|price - mark| <= mark * band_bps / 10000, when a band is configured and a mark is known."""
    band = spec.band_bps
    if band and mark_ticks > 0 and abs(price_ticks - mark_ticks) * 10_000 > band * mark_ticks:
        return RejectCode.PRICE_OUTSIDE_BAND
    return RejectCode.OK


def check_new_order(
    spec: MarketSpec,
    status: int,
    mark_ticks: int,
    now_ns: int,
    side: int,
    price_ticks: int,
    size_lots: int,
    tif: int,
    order_type: int,
    flags: int,
    trigger_ticks: int,
    expire_ns: int,
) -> int:
    """Every stateless rule for a NEW_ORDER (see the module docstring for the order of checks).

    Rules beyond the enum ranges: post-only (either variant) only on LIMIT orders with GTC/GTT;
    market orders (and stop-market) need IOC or FOK; stops take no post-only flag; a stop's trigger
    must be in (0, max_price] and must not already be satisfied by the current mark; non-stops carry
    trigger 0; GTT needs expire_ns > now (EXPIRED when it is already past), other tifs expire_ns 0.
    Reduce-only is carried and accepted (the risk stage enforces it once positions exist).
    """
    if side != 0 and side != 1:
        return RejectCode.BAD_SIDE
    if not 0 <= order_type <= 5:
        return RejectCode.BAD_ORDER_TYPE
    if not 0 <= tif <= 3:
        return RejectCode.BAD_TIF
    if flags & ~_KNOWN_FLAG_BITS or (flags >> STP_SHIFT) & 0b111 > _MAX_STP:
        return RejectCode.BAD_FLAGS
    post_only = bool(flags & _POST)
    market_like = order_type in MARKET_PRICED_ORDER_TYPES
    if market_like and tif not in (TimeInForce.IOC, TimeInForce.FOK):
        return RejectCode.BAD_TIF
    if post_only and (order_type != OrderType.LIMIT or tif in (TimeInForce.IOC, TimeInForce.FOK)):
        return RejectCode.BAD_FLAGS
    code = check_status(status, post_only)
    if code:
        return code
    code = check_price_size(spec, price_ticks, size_lots)
    if code:
        return code
    if order_type in STOP_ORDER_TYPES:
        if not 0 < trigger_ticks <= spec.max_price_ticks:
            return RejectCode.BAD_TRIGGER_PRICE
        if mark_ticks > 0 and is_triggered_by(order_type, side, trigger_ticks, mark_ticks):
            return RejectCode.BAD_TRIGGER_PRICE  # would fire at once: send the underlying order instead
    elif trigger_ticks != 0:
        return RejectCode.BAD_TRIGGER_PRICE
    if tif == TimeInForce.GTT:
        if expire_ns <= 0:
            return RejectCode.BAD_EXPIRY
        if expire_ns <= now_ns:
            return RejectCode.EXPIRED
    elif expire_ns != 0:
        return RejectCode.BAD_EXPIRY
    # stops are banded when they fire, against the mark that fired them
    if order_type not in STOP_ORDER_TYPES:
        code = check_band(spec, mark_ticks, price_ticks)
        if code:
            return code
    return RejectCode.OK


def check_amend(
    spec: MarketSpec,
    status: int,
    mark_ticks: int,
    post_only: bool,
    price_ticks: int,
    new_total_lots: int,
    filled_lots: int,
) -> int:
    """An amend's new price and total size (already resolved from the 0 = keep convention)."""
    code = check_status(status, post_only)
    if code:
        return code
    if new_total_lots <= filled_lots:
        return RejectCode.AMEND_BAD_SIZE
    code = check_price_size(spec, price_ticks, new_total_lots)
    if code:
        return code
    return check_band(spec, mark_ticks, price_ticks)
