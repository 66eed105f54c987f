"""Wire events -> JSON objects (what ``/v1/json`` sends), with exact decimal strings.

Prices and sizes are ``ticks * tick_size`` and ``lots * lot_size`` of the event's market, money is
micro-units / 1e6, position sizes atoms / 1e8; enums travel as lower-case names
(``gateway.protocol.vocabulary``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.types.enums import (
    BalanceReason,
    CancelReason,
    LiquidationKind,
    MarketStatus,
    MsgType,
    OrderState,
    OrderType,
    PriceStatus,
    ResolutionState,
    Side,
    TimeInForce,
    reject_message,
)
from engine.wire.codec import decode
from gateway.protocol.market_info import MarketCatalog
from gateway.protocol.units import ATOMS, MICRO, divide_exact, from_units
from gateway.protocol.vocabulary import COMMAND_NAMES
from gateway.protocol.vocabulary import code_name as _code_name
from gateway.protocol.vocabulary import enum_name as _name


def error_json(
    msg: dict[str, Any] | None, code: int, detail: str = "", retry_after_s: float = 0.0
) -> dict[str, Any]:
    """The ``error`` answer to a control request (``op`` and ``id`` echoed when present)."""
    out: dict[str, Any] = {
        "type": "error",
        "code": int(code),
        "reason": _code_name(code),
        "message": detail or reject_message(code),
    }
    if msg is not None:
        if isinstance(msg.get("op"), str):
            out["op"] = msg["op"][:40]
        rid = msg.get("id")
        if isinstance(rid, (int, str)) and not isinstance(rid, bool):
            out["id"] = rid
    if retry_after_s:
        out["retry_after_ms"] = max(1, int(retry_after_s * 1000 + 0.999))
    return out


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
        if isinstance(msg.get("id"), str):  # an id may be a string (as on control ops' errors)
            out["id"] = msg["id"]
    if retry_after_s:
        out["retry_after_ms"] = max(1, int(retry_after_s * 1000 + 0.999))
    return out


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
    if t == MsgType.SETTLED:  # the account's events up to seq are final on chain
        return {
            "type": "settled",
            "seq": e["seq"],
            "batch_id": e["batch_id"],
            "block": e["block"],
            "ts_ns": e["ts_ns"],
        }
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
    if t in (MsgType.MARK, MsgType.FUNDING_RATE, MsgType.RESOLUTION_STATUS):
        return oracle_event_json(e)
    if t == MsgType.ORDER_STATE:
        return order_state_fields(e, tick, lot)
    if t == MsgType.LIQUIDATION:
        return {
            "type": "liquidation",
            **base,
            "account": e["account"],
            "kind": _name(LiquidationKind, e["kind"]),
            "side": _name(Side, e["side"]),
            "size": str(Decimal(e["size_atoms"]) / ATOMS),
            "price": str(Decimal(e["price_micro"]) / MICRO),
            "amount": str(Decimal(e["amount_micro"]) / MICRO),
            "insurance": str(Decimal(e["insurance_micro"]) / MICRO),
        }
    if t == MsgType.ADL_RANK:
        return {"type": "adl_rank", **base, "rank": e["rank"]}
    return None


PPB = Decimal(10**9)


def oracle_event_json(e: dict[str, Any]) -> dict[str, Any]:
    """MARK, FUNDING_RATE, RESOLUTION_STATUS as JSON: prices in USDC, rates as fractions per
    payment interval (``"0.0000125"`` = 0.00125%), times in ns; ``seq`` is the oracle's stream."""
    t = e["msg_type"]
    base: dict[str, Any] = {"market": e["market_id"], "seq": e["seq"]}
    if t == MsgType.MARK:
        return {
            "type": "mark",
            **base,
            "mark": format(Decimal(e["mark_micro"]) / MICRO, "f"),
            "index": format(Decimal(e["index_micro"]) / MICRO, "f"),
            "status": _name(PriceStatus, e["status"]),
            "ts_ns": e["ts_ns"],
        }
    if t == MsgType.FUNDING_RATE:
        return {
            "type": "funding",
            **base,
            "predicted_rate": format(Decimal(e["predicted_rate_ppb"]) / PPB, "f"),
            "last_rate": format(Decimal(e["last_rate_ppb"]) / PPB, "f"),
            "next_funding_ns": e["next_funding_ns"],
            "interval_ns": e["interval_ns"],
        }
    return {
        "type": "resolution",
        **base,
        "state": _name(ResolutionState, e["state"]),
        "outcome": "yes" if e["outcome"] == 1 else "no",
        "final_at_ns": e["final_at_ns"],
        "ts_ns": e["ts_ns"],
    }


def order_state_fields(e: dict[str, Any], tick: Decimal, lot: Decimal) -> dict[str, Any]:
    """One ORDER_STATE (an open order, in answer to a query) as JSON."""
    return {
        "type": "order_state",
        "market": e["market_id"],
        "seq": e["seq"],
        "order_id": e["order_id"],
        "client_order_id": e["client_order_id"],
        "side": _name(Side, e["side"]),
        "price": from_units(e["price_ticks"], tick),
        "open_size": from_units(e["open_lots"], lot),
        "state": _name(OrderState, e["state"]),
        "request_id": e["request_id"],
        "last": bool(e["last"]),
    }


def order_state_json(
    buf: bytes | bytearray | memoryview, offset: int, catalog: MarketCatalog
) -> dict[str, Any]:
    """ORDER_STATE at ``offset`` as JSON (the gateway's own queries gather these into one reply)."""
    e = decode(buf, offset)
    info = catalog.get(e["market_id"])
    return order_state_fields(
        e, info.tick_size if info else Decimal(1), info.lot_size if info else Decimal(1)
    )


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
            "market": e["market_id"] or None,  # an isolated position's margin: its perp
        }
    if t == MsgType.POSITION:
        return {
            "type": "position",
            "seq": e["seq"],
            "market": e["market_id"],
            "size": str(Decimal(e["size_atoms"]) / ATOMS),
            "cost": str(Decimal(e["cost_micro"]) / MICRO),
            "entry_price": str(
                divide_exact(Decimal(e["cost_micro"]) / MICRO, Decimal(e["size_atoms"]) / ATOMS)
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
        "market": e["market_id"] or None,  # an isolated position's own margin: its perp
    }


_BALANCE_REASONS = frozenset(int(r) for r in BalanceReason)
