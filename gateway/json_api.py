"""The JSON edge: JSON commands -> wire structs, wire events -> JSON, with exact decimal conversion.

Prices and sizes travel as decimal strings in human units (quote per base, base units) and are
converted once, here, to integer ticks and lots with the market's ``tick_size`` and ``lot_size``:
``ticks = price / tick_size`` exactly, else BAD_DECIMAL (never rounded). JSON integers are
accepted as exact decimals; JSON floats are refused (BAD_FIELD) because they are not exact.
Out of range (<= 0 where a positive value is needed, or beyond int64) is BAD_FIELD for ids and
BAD_PRICE_TICK / BAD_SIZE_LOT for prices and sizes.

The structs built here pass through the same validator as binary structs
(:func:`gateway.binary.check_struct`), so both protocols obey one set of rules. Events go out as
one JSON object each with decimal strings computed exactly (``ticks * tick_size``).
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation
from typing import Any

from engine.types.commands import Amend, Cancel, CancelAll, NewOrder, encode_command
from engine.types.enums import (
    STP_SHIFT,
    BalanceReason,
    CancelReason,
    MarketStatus,
    MsgType,
    OrderFlag,
    OrderType,
    RejectCode,
    Side,
    StpMode,
    TimeInForce,
    reject_message,
)
from engine.wire.codec import decode
from engine.wire.layout import ALL_MARKETS
from gateway.market_catalog import MarketCatalog, MarketInfo

INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
MAX_DECIMAL_CHARS = 64
_CTX = Context(prec=80)

SIDES = {"buy": Side.BUY, "sell": Side.SELL}
TIFS = {t.name.lower(): t for t in TimeInForce}
ORDER_TYPES = {t.name.lower(): t for t in OrderType}
STP_MODES = {m.name.lower(): m for m in StpMode}
COMMAND_NAMES = {
    MsgType.NEW_ORDER: "place",
    MsgType.CANCEL: "cancel",
    MsgType.AMEND: "amend",
    MsgType.CANCEL_ALL: "cancel_all",
}


class JsonReject(Exception):
    """A JSON command cannot be turned into a struct: code + which field (raised and caught here)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def to_units(value: Any, unit: Decimal, field: str, allow_zero: bool = False) -> int:
    """Exact ``value / unit`` as an int64; JsonReject on anything inexact or out of range."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise JsonReject(RejectCode.BAD_FIELD, f"{field} must be a decimal string")
    if isinstance(value, str) and (len(value) > MAX_DECIMAL_CHARS or not value):
        raise JsonReject(
            RejectCode.BAD_DECIMAL, f"{field} is not a decimal of at most {MAX_DECIMAL_CHARS} chars"
        )
    try:
        dec = Decimal(value)
    except (InvalidOperation, ValueError):
        raise JsonReject(RejectCode.BAD_DECIMAL, f"{field} {value!r} is not a decimal") from None
    if not dec.is_finite() or abs(dec.adjusted()) > 40:
        raise JsonReject(RejectCode.BAD_DECIMAL, f"{field} {value!r} is not a finite decimal in range")
    units = _CTX.divide(dec, unit)
    if units != units.to_integral_value():
        raise JsonReject(RejectCode.BAD_DECIMAL, f"{field} {value} is not a multiple of {unit}")
    n = int(units)
    if n < 0 or (n == 0 and not allow_zero) or n > INT64_MAX:
        code = RejectCode.BAD_PRICE_TICK if "price" in field else RejectCode.BAD_SIZE_LOT
        raise JsonReject(code, f"{field} {value} is out of range")
    return n


def from_units(n: int, unit: Decimal) -> str:
    """Exact decimal string of ``n * unit`` without exponent notation."""
    return format(_CTX.multiply(Decimal(n), unit).normalize(_CTX), "f")


def _u64(msg: dict[str, Any], field: str, required: bool) -> int:
    v = msg.get(field)
    if v is None:
        if required:
            raise JsonReject(RejectCode.BAD_FIELD, f"{field} is required")
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= UINT64_MAX:
        raise JsonReject(RejectCode.BAD_FIELD, f"{field} must be an integer in [0, 2^64)")
    return v


def _enum(msg: dict[str, Any], field: str, table: dict[str, Any], default: Any) -> Any:
    v = msg.get(field)
    if v is None:
        return default
    if not isinstance(v, str) or v.lower() not in table:
        raise JsonReject(RejectCode.BAD_FIELD, f"{field} must be one of {sorted(table)}")
    return table[v.lower()]


def _bool(msg: dict[str, Any], field: str) -> bool:
    v = msg.get(field, False)
    if not isinstance(v, bool):
        raise JsonReject(RejectCode.BAD_FIELD, f"{field} must be true or false")
    return v


def _market(
    msg: dict[str, Any], catalog: MarketCatalog, allow_all: bool = False
) -> tuple[int, MarketInfo | None]:
    v = msg.get("market")
    if v is None and allow_all:
        return ALL_MARKETS, None
    if isinstance(v, bool) or not isinstance(v, int):
        raise JsonReject(RejectCode.BAD_FIELD, "market must be an integer market id")
    info = catalog.get(v)
    if info is None:
        raise JsonReject(RejectCode.UNKNOWN_MARKET, f"unknown market {v}")
    return v, info


def _account(msg: dict[str, Any], account_id: int) -> None:
    v = msg.get("account")
    if v is not None and v != 0 and v != account_id:
        raise JsonReject(RejectCode.WRONG_ACCOUNT, "account is not the logged-in account")


def command_struct(msg: dict[str, Any], catalog: MarketCatalog, account_id: int) -> bytes:
    """The wire struct for a JSON order command (``op`` place/cancel/amend/cancel_all)."""
    op = msg.get("op")
    _account(msg, account_id)
    if op == "place":
        market, info = _market(msg, catalog)
        assert info is not None
        side = _enum(msg, "side", SIDES, None)
        if side is None:
            raise JsonReject(RejectCode.BAD_FIELD, "side is required (buy or sell)")
        price = to_units(msg.get("price"), info.tick_size, "price")
        size = to_units(msg.get("size"), info.lot_size, "size")
        trigger = msg.get("trigger_price")
        trigger_ticks = 0 if trigger is None else to_units(trigger, info.tick_size, "trigger_price")
        expire_ns = _u64(msg, "expire_ns", False)
        if expire_ns > INT64_MAX:
            raise JsonReject(RejectCode.BAD_FIELD, "expire_ns out of range")
        flags = (
            (OrderFlag.POST_ONLY if _bool(msg, "post_only") else 0)
            | (OrderFlag.POST_ONLY_SLIDE if _bool(msg, "post_only_slide") else 0)
            | (OrderFlag.REDUCE_ONLY if _bool(msg, "reduce_only") else 0)
            | (int(_enum(msg, "stp", STP_MODES, StpMode.NONE)) << STP_SHIFT)
        )
        coid = _u64(msg, "client_order_id", True)
        if coid == 0:
            raise JsonReject(RejectCode.BAD_FIELD, "client_order_id must be non-zero")
        return encode_command(
            NewOrder(
                market_id=market,
                order_id=0,
                client_order_id=coid,
                price_ticks=price,
                size_lots=size,
                trigger_price_ticks=trigger_ticks,
                expire_ns=expire_ns,
                account=account_id,
                side=side,
                tif=_enum(msg, "tif", TIFS, TimeInForce.GTC),
                order_type=_enum(msg, "type", ORDER_TYPES, OrderType.LIMIT),
                flags=flags,
            )
        )
    if op in ("cancel", "amend"):
        market, info = _market(msg, catalog)
        assert info is not None
        order_id = _u64(msg, "order_id", False)
        coid = _u64(msg, "client_order_id", False)
        if not order_id and not coid:
            raise JsonReject(RejectCode.BAD_FIELD, "order_id or client_order_id is required")
        if op == "cancel":
            return encode_command(
                Cancel(market_id=market, order_id=order_id, client_order_id=coid, account=account_id)
            )
        price = msg.get("price")
        size = msg.get("size")
        price_ticks = 0 if price is None else to_units(price, info.tick_size, "price")
        size_lots = 0 if size is None else to_units(size, info.lot_size, "size")
        return encode_command(
            Amend(
                market_id=market,
                order_id=order_id,
                client_order_id=coid,
                price_ticks=price_ticks,
                size_lots=size_lots,
                account=account_id,
            )
        )
    if op == "cancel_all":
        market, _ = _market(msg, catalog, allow_all=True)
        return encode_command(CancelAll(market_id=market, account=account_id))
    raise JsonReject(RejectCode.UNKNOWN_OP, f"unknown op {op!r}")


ORDER_OPS = {
    "place": MsgType.NEW_ORDER,
    "cancel": MsgType.CANCEL,
    "amend": MsgType.AMEND,
    "cancel_all": MsgType.CANCEL_ALL,
}


def reject_json(
    code: int,
    command: int | str,
    market: int | None,
    msg: dict[str, Any] | None,
    detail: str = "",
    retry_after_s: float = 0.0,
    seq: int = 0,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "rejected",
        "seq": seq,
        "market": market,
        "command": COMMAND_NAMES.get(command, command) if isinstance(command, int) else command,
        "code": int(code),
        "reason": _code_name(code),
        "message": detail or reject_message(code),
    }
    if msg is not None:
        for key in ("client_order_id", "order_id", "id"):
            if key in msg and isinstance(msg[key], int) and not isinstance(msg[key], bool):
                out[key] = msg[key]
    if retry_after_s:
        out["retry_after_ms"] = max(1, int(retry_after_s * 1000 + 0.999))
    return out


def _code_name(code: int) -> str:
    try:
        return RejectCode(code).name
    except ValueError:
        return str(code)


def _name(enum: Any, value: int) -> str | int:
    try:
        return str(enum(value).name.lower())
    except ValueError:
        return value


def event_json(
    buf: bytes | bytearray | memoryview, offset: int, catalog: MarketCatalog
) -> dict[str, Any] | None:
    """One wire event as a JSON-ready dict (None for types the JSON API does not forward)."""
    e = decode(buf, offset)
    t = e["msg_type"]
    market = e["market_id"]
    info = catalog.get(market)
    tick = info.tick_size if info else Decimal(1)
    lot = info.lot_size if info else Decimal(1)
    base: dict[str, Any] = {"market": market, "seq": e["seq"]}
    if t == MsgType.ACCEPTED:
        return {
            "type": "accepted",
            **base,
            "order_id": e["order_id"],
            "client_order_id": e["client_order_id"],
            "side": _name(Side, e["side"]),
            "price": from_units(e["price_ticks"], tick),
            "size": from_units(e["size_lots"], lot),
            "tif": _name(TimeInForce, e["tif"]),
            "order_type": _name(OrderType, e["order_type"]),
            "flags": e["flags"],
            "ts_ns": e["ts_ns"],
        }
    if t == MsgType.REJECTED:
        out = reject_json(e["reason"], e["command"], market, None, seq=e["seq"])
        out.update(order_id=e["order_id"], client_order_id=e["client_order_id"])
        return out
    if t == MsgType.FILL:
        return {
            "type": "fill",
            **base,
            "taker_order_id": e["taker_order_id"],
            "maker_order_id": e["maker_order_id"],
            "price": from_units(e["price_ticks"], tick),
            "size": from_units(e["size_lots"], lot),
            "taker_side": _name(Side, e["taker_side"]),
            "taker_account": e["taker_account"],
            "maker_account": e["maker_account"],
            "taker_done": bool(e["flags"] & 1),
            "maker_done": bool(e["flags"] & 2),
        }
    if t in (MsgType.BALANCE, MsgType.POSITION, MsgType.ACCOUNT_MARGIN):
        return risk_event_json(e, catalog)
    if t == MsgType.CANCELLED:
        return {
            "type": "cancelled",
            **base,
            "order_id": e["order_id"],
            "client_order_id": e["client_order_id"],
            "size": from_units(e["size_lots"], lot),
            "side": _name(Side, e["side"]),
            "reason": _name(CancelReason, e["reason"]),
            "ts_ns": e["ts_ns"],
        }
    if t == MsgType.AMENDED:
        return {
            "type": "amended",
            **base,
            "order_id": e["order_id"],
            "client_order_id": e["client_order_id"],
            "price": from_units(e["price_ticks"], tick),
            "size": from_units(e["size_lots"], lot),
            "kept_priority": bool(e["kept_priority"]),
        }
    if t == MsgType.TRIGGERED:
        return {
            "type": "triggered",
            **base,
            "order_id": e["order_id"],
            "client_order_id": e["client_order_id"],
            "mark_price": from_units(e["mark_price_ticks"], tick),
        }
    if t == MsgType.L2_DELTA:
        return {
            "type": "l2",
            **base,
            "side": _name(Side, e["side"]),
            "price": from_units(e["price_ticks"], tick),
            "size": from_units(e["size_lots"], lot),
            "count": e["order_count"],
        }
    if t == MsgType.TRADE:
        return {
            "type": "trade",
            **base,
            "price": from_units(e["price_ticks"], tick),
            "size": from_units(e["size_lots"], lot),
            "taker_side": _name(Side, e["taker_side"]),
            "ts_ns": e["ts_ns"],
        }
    if t == MsgType.BBO:
        return {
            "type": "bbo",
            **base,
            "bid": from_units(e["bid_price_ticks"], tick),
            "bid_size": from_units(e["bid_size_lots"], lot),
            "ask": from_units(e["ask_price_ticks"], tick),
            "ask_size": from_units(e["ask_size_lots"], lot),
            "ts_ns": e["ts_ns"],
        }
    if t == MsgType.MARKET_STATUS:
        return {"type": "market_status", **base, "status": _name(MarketStatus, e["status"])}
    return None


MICRO = Decimal(1_000_000)
ATOMS = Decimal(100_000_000)


def _asset_units(catalog: MarketCatalog, asset: int) -> tuple[str, Decimal]:
    spec = catalog.assets.get(asset)
    if spec is None:
        return str(asset), Decimal(1)
    return spec.symbol, Decimal(spec.scale)


def risk_event_json(e: dict[str, Any], catalog: MarketCatalog) -> dict[str, Any]:
    """BALANCE, POSITION, ACCOUNT_MARGIN as JSON: money as decimal strings in USDC, sizes in units."""
    t = e["msg_type"]
    if t == MsgType.BALANCE:
        symbol, scale = _asset_units(catalog, e["asset"])
        return {
            "type": "balance",
            "seq": e["seq"],
            "asset": symbol,
            "balance": str(Decimal(e["balance"]) / scale),
            "delta": str(Decimal(e["delta"]) / scale),
            "held": str(Decimal(e["held"]) / scale),
            "reason": BalanceReason(e["reason"]).name.lower()
            if e["reason"] in _BALANCE_REASONS
            else e["reason"],
            "ref": e["ref"],
        }
    if t == MsgType.POSITION:
        return {
            "type": "position",
            "seq": e["seq"],
            "market": e["market_id"],
            "size": str(Decimal(e["size_atoms"]) / ATOMS),
            "cost": str(Decimal(e["cost_micro"]) / MICRO),
            "entry_price": str(
                _CTX.divide(Decimal(e["cost_micro"]) / MICRO, Decimal(e["size_atoms"]) / ATOMS)
            )
            if e["size_atoms"]
            else None,
            "realised_pnl": str(Decimal(e["realised_pnl_micro"]) / MICRO),
            "funding": str(Decimal(e["funding_micro"]) / MICRO),
        }
    equity, initial, maint = e["equity_micro"], e["initial_micro"], e["maintenance_micro"]
    return {
        "type": "margin",
        "seq": e["seq"],
        "equity": str(Decimal(equity) / MICRO),
        "initial": str(Decimal(initial) / MICRO),
        "maintenance": str(Decimal(maint) / MICRO),
        "reserved": str(Decimal(e["reserved_micro"]) / MICRO),
        "free": str(Decimal(equity - initial - e["reserved_micro"]) / MICRO),
        "below_maintenance": bool(e["flags"] & 1),
    }


_BALANCE_REASONS = frozenset(int(r) for r in BalanceReason)
