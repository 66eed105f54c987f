"""The SDK's codec: orders to bytes or JSON, and both protocols' events to one set of typed events.

On ``/v1/bin`` events are wire structs (decoded by ``engine.wire.codec``); on ``/v1/json`` they
are JSON objects with decimal strings, converted back here to integer ticks, lots and micro-units
with the market's tick and lot size (exactly, by ``gateway.protocol.units``). Either way the
result is the wire field dict ``decode`` gives, and then the same typed event, so the two
protocols are indistinguishable above this module.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.types.commands import Amend, Cancel, CancelAll, NewOrder, encode_command
from engine.types.enums import (
    STP_SHIFT,
    BalanceReason,
    CancelReason,
    LiquidationKind,
    MarketStatus,
    MsgType,
    OrderFlag,
    OrderState,
    PriceStatus,
    RejectCode,
    ResolutionState,
)
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, PPB, to_fixed
from engine.wire.codec import decode
from engine.wire.layout import ALL_MARKETS, SLOT_BYTES
from gateway.protocol.market_info import MarketInfo
from gateway.protocol.units import JsonReject, from_units, to_units
from gateway.protocol.vocabulary import COMMANDS_BY_NAME, ORDER_TYPES, SIDES, STP_MODES, TIFS
from gateway.sdk.errors import OrderRejected
from gateway.sdk.events import (
    AdlRank,
    Balance,
    Bbo,
    Fill,
    FundingRate,
    Liquidation,
    Margin,
    Mark,
    MarketStatusChanged,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderRejectedEvent,
    OrderTriggered,
    Position,
    ResolutionStatus,
    Trade,
)
from gateway.sdk.events import OrderState as OrderStateEvent

_BALANCE_REASONS = {r.name.lower(): int(r) for r in BalanceReason}
_SIDE = {"buy": 0, "sell": 1}
_PRICE_STATUS = {s.name.lower(): int(s) for s in PriceStatus}
_RESOLUTION_STATES = {s.name.lower(): int(s) for s in ResolutionState}
L2, TRADE, BBO = int(MsgType.L2_DELTA), int(MsgType.TRADE), int(MsgType.BBO)
ORDER_EVENTS = (
    "accepted",
    "rejected",
    "fill",
    "cancelled",
    "amended",
    "l2",
    "trade",
    "bbo",
    "triggered",
    "mark",
    "funding",
    "resolution",
    "market_status",
    "order_state",
    "liquidation",
    "adl_rank",
)
ACCOUNT_EVENTS = ("balance", "position", "margin")
_STATES = {s.name.lower(): int(s) for s in OrderState}
_KINDS = {k.name.lower(): int(k) for k in LiquidationKind}
_STATUSES = {k.name.lower(): int(k) for k in MarketStatus}


class SdkCodec:
    """Market and asset tables (from the ``markets`` reply) and the conversions that need them."""

    def __init__(self) -> None:
        self.markets: dict[int, MarketInfo] = {}
        self.asset_ids: dict[str, int] = {}  # symbol -> asset id
        self.asset_scales: dict[int, int] = {}  # asset id -> units per whole unit
        self.market_meta: dict[int, dict[str, Any]] = {}  # market -> the gateway's full entry

    def load_markets(self, reply: dict[str, Any]) -> None:
        """Fill the tables from the gateway's ``markets`` reply."""
        for a in reply.get("assets", []):
            self.asset_ids[a["symbol"]] = a["asset"]
            self.asset_scales[a["asset"]] = a["scale"]
        for m in reply["markets"]:
            self.market_meta[m["market"]] = m
            self.markets[m["market"]] = MarketInfo(
                m["market"], m["symbol"], Decimal(m["tick_size"]), Decimal(m["lot_size"])
            )

    # ---- units ---------------------------------------------------------------------------------
    def _unit(self, market: int, field: str) -> Decimal:
        info = self.markets.get(market)
        if info is None:
            raise OrderRejected(RejectCode.UNKNOWN_MARKET, f"unknown market {market}")
        return info.tick_size if "price" in field else info.lot_size

    def ticks(self, market: int, value: Any, field: str) -> int:
        """``value`` (int ticks/lots as is, or a decimal) as integer ticks or lots."""
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        unit = self._unit(market, field)
        try:
            return to_units(str(value), unit, field, allow_zero=True)
        except JsonReject as exc:
            raise OrderRejected(exc.code, exc.detail) from None

    def decimal(self, market: int, value: Any, field: str) -> str:
        """``value`` as the decimal string the JSON protocol wants (ints are ticks or lots)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return from_units(value, self._unit(market, field))
        try:  # the wire takes plain decimals only: Decimal("1E+1") goes as "10"
            dec = Decimal(str(value).strip())
        except ArithmeticError:
            return str(value)
        return format(dec, "f") if dec.is_finite() else str(value)

    def units(self, market: int, value: str, field: str) -> int:
        """A JSON event's decimal back to ticks (prices, ``bid``/``ask``) or lots (sizes)."""
        info = self.markets.get(market)
        if info is None:
            unit = Decimal(1)
        else:
            unit = info.tick_size if "price" in field or field in ("bid", "ask") else info.lot_size
        return to_units(value, unit, field, allow_zero=True)

    # ---- commands out --------------------------------------------------------------------------
    def new_order_struct(
        self,
        market: int,
        side: str | int,
        price: Any,
        size: Any,
        *,
        client_order_id: int,
        tif: str = "gtc",
        order_type: str = "limit",
        post_only: bool = False,
        post_only_slide: bool = False,
        reduce_only: bool = False,
        stp: str = "none",
        trigger_price: Any = None,
        expire_ns: int = 0,
    ) -> bytes:
        """One NEW_ORDER struct (the account is stamped by the gateway)."""
        side_v = side if isinstance(side, int) else SIDES[side.lower()]
        flags = (
            (OrderFlag.POST_ONLY if post_only else 0)
            | (OrderFlag.POST_ONLY_SLIDE if post_only_slide else 0)
            | (OrderFlag.REDUCE_ONLY if reduce_only else 0)
            | (int(STP_MODES[stp]) << STP_SHIFT)
        )
        trig = 0 if trigger_price is None else self.ticks(market, trigger_price, "trigger_price")
        return encode_command(
            NewOrder(
                market_id=market,
                client_order_id=client_order_id,
                price_ticks=self.ticks(market, price, "price"),
                size_lots=self.ticks(market, size, "size"),
                trigger_price_ticks=trig,
                expire_ns=expire_ns,
                side=side_v,
                tif=TIFS[tif.lower()],
                order_type=ORDER_TYPES[order_type.lower()],
                flags=flags,
            )
        )

    @staticmethod
    def cancel_struct(market: int, order_id: int, client_order_id: int) -> bytes:
        """One CANCEL struct (by order id, or by client order id with order id 0)."""
        return encode_command(Cancel(market_id=market, order_id=order_id, client_order_id=client_order_id))

    def amend_struct(self, market: int, order_id: int, client_order_id: int, price: Any, size: Any) -> bytes:
        """One AMEND struct; ``price``/``size`` None leave them unchanged."""
        return encode_command(
            Amend(
                market_id=market,
                order_id=order_id,
                client_order_id=client_order_id,
                price_ticks=0 if price is None else self.ticks(market, price, "price"),
                size_lots=0 if size is None else self.ticks(market, size, "size"),
            )
        )

    @staticmethod
    def cancel_all_struct(market: int | None) -> bytes:
        """One CANCEL_ALL struct (``market`` None: every market)."""
        return encode_command(CancelAll(market_id=ALL_MARKETS if market is None else market))

    # ---- events in -----------------------------------------------------------------------------
    @staticmethod
    def wire_events(data: bytes) -> list[tuple[int, dict[str, Any]]]:
        """The structs of one binary frame as ``(msg_type, fields)``; unknown types are skipped."""
        out = []
        for off in range(0, len(data) - SLOT_BYTES + 1, SLOT_BYTES):
            try:
                out.append((data[off], decode(data, off)))
            except KeyError:
                continue
        return out

    def json_order_event(self, typ: str, msg: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """A JSON order or market event as ``(msg_type, fields)`` in wire units (None: not one)."""
        m = msg.get("market") or 0
        e: dict[str, Any] = {"market_id": m, "seq": msg.get("seq", 0)}
        units = self.units
        if typ == "l2":
            e.update(
                prev_seq=msg["prev_seq"],
                side=_SIDE[msg["side"]],
                price_ticks=units(m, msg["price"], "price"),
                size_lots=units(m, msg["size"], "size"),
                order_count=msg["count"],
            )
            return L2, e
        if typ == "accepted":
            e.update(
                order_id=msg["order_id"],
                client_order_id=msg["client_order_id"],
                side=_SIDE[msg["side"]],
                price_ticks=units(m, msg["price"], "price"),
                size_lots=units(m, msg["size"], "size"),
            )
            return int(MsgType.ACCEPTED), e
        if typ == "rejected":
            e.update(
                order_id=msg.get("order_id", 0),
                client_order_id=msg.get("client_order_id", 0),
                reason=msg["code"],
                command=COMMANDS_BY_NAME.get(msg.get("command"), 0),  # type: ignore[arg-type]
                ts_ns=int(msg.get("retry_after_ms", 0) * 1_000_000),
            )
            return int(MsgType.REJECTED), e
        if typ == "fill":
            e.update(
                taker_order_id=msg["taker_order_id"],
                maker_order_id=msg["maker_order_id"],
                price_ticks=units(m, msg["price"], "price"),
                size_lots=units(m, msg["size"], "size"),
                taker_account=msg["taker_account"],
                maker_account=msg["maker_account"],
                taker_side=_SIDE[msg["taker_side"]],
                flags=(1 if msg.get("taker_done") else 0) | (2 if msg.get("maker_done") else 0),
            )
            return int(MsgType.FILL), e
        if typ == "cancelled":
            reason = msg.get("reason")
            e.update(
                order_id=msg["order_id"],
                client_order_id=msg["client_order_id"],
                size_lots=units(m, msg["size"], "size"),
                reason=CancelReason[reason.upper()] if isinstance(reason, str) else int(reason or 0),
            )
            return int(MsgType.CANCELLED), e
        if typ == "amended":
            e.update(
                order_id=msg["order_id"],
                client_order_id=msg["client_order_id"],
                price_ticks=units(m, msg["price"], "price"),
                size_lots=units(m, msg["size"], "size"),
                kept_priority=msg["kept_priority"],
            )
            return int(MsgType.AMENDED), e
        if typ == "trade":
            e.update(
                price_ticks=units(m, msg["price"], "price"),
                size_lots=units(m, msg["size"], "size"),
                taker_side=_SIDE[msg["taker_side"]],
            )
            return TRADE, e
        if typ == "bbo":
            e.update(
                bid_price_ticks=units(m, msg["bid"], "bid"),
                bid_size_lots=units(m, msg["bid_size"], "size"),
                ask_price_ticks=units(m, msg["ask"], "ask"),
                ask_size_lots=units(m, msg["ask_size"], "size"),
            )
            return BBO, e
        if typ == "mark":
            e.update(
                mark_micro=to_fixed(msg["mark"], MICRO_PER_UNIT),
                index_micro=to_fixed(msg["index"], MICRO_PER_UNIT),
                status=_PRICE_STATUS.get(msg.get("status"), 0),
                ts_ns=msg["ts_ns"],
            )
            return int(MsgType.MARK), e
        if typ == "funding":
            e.update(
                predicted_rate_ppb=to_fixed(msg["predicted_rate"], PPB),
                last_rate_ppb=to_fixed(msg["last_rate"], PPB),
                next_funding_ns=msg["next_funding_ns"],
                interval_ns=msg["interval_ns"],
            )
            return int(MsgType.FUNDING_RATE), e
        if typ == "resolution":
            e.update(
                state=_RESOLUTION_STATES.get(msg.get("state"), 0),
                outcome=1 if msg.get("outcome") == "yes" else 0,
                final_at_ns=msg["final_at_ns"],
                ts_ns=msg.get("ts_ns", 0),
            )
            return int(MsgType.RESOLUTION_STATUS), e
        if typ == "triggered":
            e.update(
                order_id=msg["order_id"],
                client_order_id=msg["client_order_id"],
                mark_price_ticks=units(m, msg["mark_price"], "price"),
            )
            return int(MsgType.TRIGGERED), e
        if typ == "market_status":
            e.update(status=_STATUSES.get(msg["status"], -1))
            return int(MsgType.MARKET_STATUS), e
        if typ == "order_state":
            return int(MsgType.ORDER_STATE), self.order_state_fields(msg)
        if typ == "liquidation":
            e.update(
                account=msg.get("account", 0),
                kind=_KINDS.get(msg["kind"], -1),
                side=_SIDE.get(msg["side"], -1),
                size_atoms=to_fixed(msg["size"], ATOMS_PER_UNIT),
                price_micro=to_fixed(msg["price"], MICRO_PER_UNIT),
                amount_micro=to_fixed(msg["amount"], MICRO_PER_UNIT),
                insurance_micro=to_fixed(msg["insurance"], MICRO_PER_UNIT),
            )
            return int(MsgType.LIQUIDATION), e
        if typ == "adl_rank":
            e.update(rank=msg["rank"])
            return int(MsgType.ADL_RANK), e
        return None

    def order_state_fields(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A JSON ``order_state`` (an event, or an entry of an ``open_orders`` reply) in wire units."""
        m = msg["market"]
        return {
            "market_id": m,
            "seq": msg.get("seq", 0),
            "order_id": msg["order_id"],
            "client_order_id": msg["client_order_id"],
            "side": _SIDE.get(msg["side"], -1),
            "price_ticks": self.units(m, msg["price"], "price"),
            "open_lots": self.units(m, msg["open_size"], "size"),
            "state": _STATES.get(msg["state"], 0),
            "request_id": msg.get("request_id", 0),
            "last": int(bool(msg.get("last", True))),
        }

    def json_account_event(self, typ: str, msg: dict[str, Any]) -> Any:
        """The JSON form of BALANCE / POSITION / ACCOUNT_MARGIN as the same typed events."""
        micro = MICRO_PER_UNIT
        if typ == "balance":
            asset = self.asset_ids.get(msg["asset"], 0)
            scale = self.asset_scales.get(asset, 1)
            return Balance(
                msg["seq"],
                asset,
                to_fixed(msg["balance"], scale),
                to_fixed(msg["delta"], scale),
                to_fixed(msg["held"], scale),
                _BALANCE_REASONS.get(msg["reason"], -1),
                msg["ref"],
                msg.get("market") or 0,
            )
        if typ == "position":
            return Position(
                msg["market"],
                msg["seq"],
                to_fixed(msg["size"], ATOMS_PER_UNIT),
                to_fixed(msg["cost"], micro),
                to_fixed(msg["realised_pnl"], micro),
                to_fixed(msg["funding"], micro),
            )
        return Margin(
            msg["seq"],
            to_fixed(msg["equity"], micro),
            to_fixed(msg["initial"], micro),
            to_fixed(msg["maintenance"], micro),
            to_fixed(msg["reserved"], micro),
            bool(msg["below_maintenance"]),
            msg.get("market") or 0,
        )


def typed_event(t: int, e: dict[str, Any]) -> Any:
    """The typed event for wire fields ``e`` of type ``t`` (None for types the SDK does not type)."""
    m = e.get("market_id", 0)
    if t == MsgType.ACCEPTED:
        return OrderAccepted(
            m, e["seq"], e["order_id"], e["client_order_id"], e["side"], e["price_ticks"], e["size_lots"]
        )
    if t == MsgType.REJECTED:
        return OrderRejectedEvent(m, e["seq"], e["order_id"], e["client_order_id"], e["reason"], e["command"])
    if t == MsgType.FILL:
        return Fill(
            m,
            e["seq"],
            e["taker_order_id"],
            e["maker_order_id"],
            e["price_ticks"],
            e["size_lots"],
            e["taker_account"],
            e["maker_account"],
            e["taker_side"],
            e["flags"],
        )
    if t == MsgType.CANCELLED:
        return OrderCancelled(m, e["seq"], e["order_id"], e["client_order_id"], e["size_lots"], e["reason"])
    if t == MsgType.AMENDED:
        return OrderAmended(
            m,
            e["seq"],
            e["order_id"],
            e["client_order_id"],
            e["price_ticks"],
            e["size_lots"],
            bool(e["kept_priority"]),
        )
    if t == MsgType.BALANCE:
        return Balance(e["seq"], e["asset"], e["balance"], e["delta"], e["held"], e["reason"], e["ref"], m)
    if t == MsgType.POSITION:
        return Position(
            m, e["seq"], e["size_atoms"], e["cost_micro"], e["realised_pnl_micro"], e["funding_micro"]
        )
    if t == MsgType.ACCOUNT_MARGIN:
        return Margin(
            e["seq"],
            e["equity_micro"],
            e["initial_micro"],
            e["maintenance_micro"],
            e["reserved_micro"],
            bool(e["flags"] & 1),
            m,
        )
    if t == MsgType.TRIGGERED:
        return OrderTriggered(m, e["seq"], e["order_id"], e["client_order_id"], e["mark_price_ticks"])
    if t == MsgType.MARKET_STATUS:
        return MarketStatusChanged(m, e["seq"], e["status"])
    if t == MsgType.ORDER_STATE:
        return OrderStateEvent(
            m,
            e["seq"],
            e["order_id"],
            e["client_order_id"],
            e["side"],
            e["price_ticks"],
            e["open_lots"],
            e["state"],
            e["request_id"],
            bool(e["last"]),
        )
    if t == MsgType.LIQUIDATION:
        return Liquidation(
            m,
            e["seq"],
            e["account"],
            e["kind"],
            e["side"],
            e["size_atoms"],
            e["price_micro"],
            e["amount_micro"],
            e["insurance_micro"],
        )
    if t == MsgType.ADL_RANK:
        return AdlRank(m, e["seq"], e["rank"])
    if t == TRADE:
        return Trade(m, e["seq"], e["price_ticks"], e["size_lots"], e["taker_side"])
    if t == MsgType.MARK:
        return Mark(m, e["seq"], e["mark_micro"], e["index_micro"], e["status"], e["ts_ns"])
    if t == MsgType.FUNDING_RATE:
        return FundingRate(
            m, e["seq"], e["predicted_rate_ppb"], e["last_rate_ppb"], e["next_funding_ns"], e["interval_ns"]
        )
    if t == MsgType.RESOLUTION_STATUS:
        return ResolutionStatus(m, e["seq"], e["state"], e["outcome"], e["final_at_ns"], e["ts_ns"])
    if t == BBO:
        return Bbo(
            m, e["seq"], e["bid_price_ticks"], e["bid_size_lots"], e["ask_price_ticks"], e["ask_size_lots"]
        )
    return None
