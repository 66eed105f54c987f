"""JSON order commands -> wire structs (``place``, ``cancel``, ``amend``, ``cancel_all``).

The structs built here pass through the same validator as binary structs
(:func:`gateway.binary.check_struct`), so both protocols obey one set of rules. A field that
cannot be converted exactly raises :class:`~gateway.protocol.units.JsonReject` naming it.
"""

from __future__ import annotations

from typing import Any

from engine.types.commands import Amend, Cancel, CancelAll, NewOrder, encode_command
from engine.types.enums import STP_SHIFT, OrderFlag, OrderType, RejectCode, StpMode, TimeInForce
from engine.wire.layout import ALL_MARKETS
from gateway.protocol.market_info import MarketCatalog, MarketInfo
from gateway.protocol.units import INT64_MAX, UINT64_MAX, JsonReject, to_units
from gateway.protocol.vocabulary import ORDER_TYPES, SIDES, STP_MODES, TIFS

CLIENT_COID_END = 1 << 63  # client order ids from 2^63 up are risk's own (liquidation orders)


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
    if not isinstance(v, str) or v not in table:
        raise JsonReject(RejectCode.BAD_FIELD, f"{field} must be one of {sorted(table)} (lower case)")
    return table[v]


COMMON_FIELDS = frozenset({"op", "id", "account"})
FIELDS = {
    "place": COMMON_FIELDS
    | {
        "market",
        "side",
        "price",
        "size",
        "client_order_id",
        "tif",
        "type",
        "post_only",
        "post_only_slide",
        "reduce_only",
        "stp",
        "trigger_price",
        "expire_ns",
    },
    "cancel": COMMON_FIELDS | {"market", "order_id", "client_order_id"},
    "amend": COMMON_FIELDS | {"market", "order_id", "client_order_id", "price", "size"},
    "cancel_all": COMMON_FIELDS | {"market"},
}


def _check_fields(msg: dict[str, Any], op: str) -> None:
    """A money API refuses what it does not define: unknown fields and nulls, named."""
    allowed = FIELDS[op]
    for key, value in msg.items():
        if key not in allowed:
            raise JsonReject(
                RejectCode.BAD_FIELD, f"unknown field {str(key)[:40]!r} ({op} takes {sorted(allowed)})"
            )
        if value is None:
            raise JsonReject(RejectCode.BAD_FIELD, f"{key} must not be null (leave it out instead)")


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
    if op in FIELDS:
        _check_fields(msg, op)
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
        if coid == 0 or coid >= CLIENT_COID_END:
            raise JsonReject(RejectCode.BAD_FIELD, "client_order_id must be in [1, 2^63)")
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
        if coid >= CLIENT_COID_END:
            raise JsonReject(RejectCode.BAD_FIELD, "client_order_id must be in [1, 2^63)")
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
