"""Requests the gateway asks risk on a client's behalf, and how their answers are recognised.

* ``open_orders`` / ``order_status`` (JSON): an ORDER_QUERY with a request id of the gateway's own
  (top bit set, then the gateway index, then a counter: no client and no other gateway can
  produce it). Risk answers with ORDER_STATE events carrying that id, the last with ``last = 1``;
  they are gathered here into one reply and not fanned out. A client's binary ORDER_QUERY (top
  bit clear) is forwarded as is and its ORDER_STATE events reach the account's sessions.
* ``set_leverage`` and ``adjust_margin``: risk applies SET_LEVERAGE / ADJUST_MARGIN silently or
  refuses it with a REJECTED. The gateway sends a HEARTBEAT right behind it, into the same risk partition, with a token of its own as
  ``ts_ns``; risk handles commands in order and echoes the heartbeat at once on its own event ring
  (``market_id`` 0), so the echo arriving with no REJECTED before it means the command applied.
  Only echoes on risk's own rings count (a shard's echo, ``market_id`` 1, comes later).

Every request times out (``REQUEST_TIMEOUT_S``) with ENGINE_UNAVAILABLE rather than waiting for
ever. Only the risk rings' batches are tapped (``tap``), and only when one of the types above is in
them, so the order path pays nothing for this.
"""

from __future__ import annotations

import itertools
import struct
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.types.enums import MarginMode, MsgType, RejectCode
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS, MARKET_ID_AT, SLOT_BYTES, field_offset
from gateway.binary import GATEWAY_REQUEST_BIT
from gateway.control import control_op
from gateway.protocol.json_events import order_state_json
from gateway.protocol.units import MICRO, JsonReject, to_units
from gateway.session import Session

if TYPE_CHECKING:
    from gateway.server import GatewayServer

REQUEST_TIMEOUT_S = 5.0
_STATE, _HEARTBEAT, _REJECTED = int(MsgType.ORDER_STATE), int(MsgType.HEARTBEAT), int(MsgType.REJECTED)
_STATE_B, _HEARTBEAT_B, _REJECTED_B = bytes([_STATE]), bytes([_HEARTBEAT]), bytes([_REJECTED])
_STATE_RID = field_offset(_STATE, "request_id")
_STATE_LAST = field_offset(_STATE, "last")
_HB_TS = field_offset(_HEARTBEAT, "ts_ns")
_REJ_COMMAND = field_offset(_REJECTED, "command")
_REJ_ACCOUNT = field_offset(_REJECTED, "account")
_REJ_REASON = field_offset(_REJECTED, "reason")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MODES = {m.name.lower(): int(m) for m in MarginMode}
_CONFIRMED = frozenset({int(MsgType.SET_LEVERAGE), int(MsgType.ADJUST_MARGIN)})  # answered by an echo


@dataclass
class _Pending:
    session: Session
    msg: dict[str, Any]
    kind: str  # "open_orders" | "order_status" | "set_leverage" | "adjust_margin"
    deadline: float
    states: list[dict[str, Any]] = field(default_factory=list)
    account: int = 0
    market: int = 0
    command: int = 0  # the command a heartbeat echo confirms (SET_LEVERAGE, ADJUST_MARGIN)
    answer: dict[str, Any] = field(default_factory=dict)  # the reply once it is confirmed
    refused: int = 0  # a RejectCode seen before the heartbeat echo


class RiskRequests:
    """Pending gateway-issued requests to risk, by request id (queries) and heartbeat token
    (commands confirmed by risk's echo: ``leverage``)."""

    def __init__(self, server: GatewayServer, gateway_index: int = 0) -> None:
        self.server = server
        base = GATEWAY_REQUEST_BIT | (gateway_index & 0x7FFF) << 48
        self._ids = (base | k for k in itertools.count(1))
        self.queries: dict[int, _Pending] = {}
        self.leverage: dict[int, _Pending] = {}  # heartbeat token -> request

    @property
    def pending(self) -> int:
        return len(self.queries) + len(self.leverage)

    # ---- out -----------------------------------------------------------------------------------
    def ask_orders(
        self, sess: Session, msg: dict[str, Any], kind: str, market: int, oid: int, coid: int
    ) -> None:
        rid = next(self._ids)
        data = encode(
            MsgType.ORDER_QUERY,
            market,
            order_id=oid,
            client_order_id=coid,
            request_id=rid,
            account=sess.account_id,
        )
        if self.server.router.submit(data, [market], sess.account_id):
            sess.error(msg, RejectCode.BACKPRESSURE, retry_after_s=0.001)
            return
        self.queries[rid] = _Pending(sess, msg, kind, time.monotonic() + REQUEST_TIMEOUT_S, market=market)
        self.server.kick()

    def set_leverage(self, sess: Session, msg: dict[str, Any], market: int, leverage: int, mode: int) -> None:
        data = encode(MsgType.SET_LEVERAGE, market, account=sess.account_id, leverage=leverage, mode=mode)
        answer = {
            "type": "leverage",
            "market": market,
            "leverage": leverage,
            "mode": MarginMode(mode).name.lower(),
        }
        self._confirmed(sess, msg, "set_leverage", data, market, answer)

    def adjust_margin(self, sess: Session, msg: dict[str, Any], market: int, amount_micro: int) -> None:
        data = encode(MsgType.ADJUST_MARGIN, market, account=sess.account_id, amount_micro=amount_micro)
        answer = {"type": "margin_adjusted", "market": market, "amount": msg["amount"]}
        self._confirmed(sess, msg, "adjust_margin", data, market, answer)

    def _confirmed(
        self, sess: Session, msg: dict[str, Any], kind: str, data: bytes, market: int, answer: dict[str, Any]
    ) -> None:
        """Send a command risk applies silently, with the heartbeat whose echo confirms it."""
        token = next(self._ids)
        data += encode(MsgType.HEARTBEAT, ALL_MARKETS, ts_ns=token, last_seq=0)
        if self.server.router.submit(data, [market, ALL_MARKETS], sess.account_id):
            sess.error(msg, RejectCode.BACKPRESSURE, retry_after_s=0.001)
            return
        self.leverage[token] = _Pending(
            sess,
            msg,
            kind,
            time.monotonic() + REQUEST_TIMEOUT_S,
            account=sess.account_id,
            market=market,
            command=data[0],
            answer=answer,
        )
        self.server.kick()

    # ---- answers (risk rings only) -------------------------------------------------------------
    def tap(self, data: bytes) -> bytes:
        """Take this gateway's answers out of a risk batch; returns the rest (to be fanned out)."""
        if _STATE_B not in data[::SLOT_BYTES] and not (
            self.leverage and (_HEARTBEAT_B in data[::SLOT_BYTES] or _REJECTED_B in data[::SLOT_BYTES])
        ):
            return data
        keep = bytearray()
        for off in range(0, len(data), SLOT_BYTES):
            t = data[off]
            if t == _STATE:
                rid = _U64.unpack_from(data, off + _STATE_RID)[0]
                if rid & GATEWAY_REQUEST_BIT:
                    self._on_state(rid, data, off)
                    continue  # ours: answered as one reply, never fanned out
            elif t == _HEARTBEAT and self.leverage:
                if _U32.unpack_from(data, off + MARKET_ID_AT)[0] == 0:  # risk's own echo
                    self._on_echo(_U64.unpack_from(data, off + _HB_TS)[0])
                continue  # heartbeats are never sent to clients
            elif t == _REJECTED and self.leverage and data[off + _REJ_COMMAND] in _CONFIRMED:
                self._on_refused(data, off)
            keep += data[off : off + SLOT_BYTES]
        return bytes(keep)

    def _on_state(self, rid: int, data: bytes, off: int) -> None:
        req = self.queries.get(rid)
        if req is None:
            return  # another gateway's, or timed out
        state = order_state_json(data, off, self.server.catalog)
        wanted = req.market == ALL_MARKETS or state["market"] == req.market  # risk answers for all
        if state["state"] != "unknown" and wanted:
            req.states.append(state)
        if data[off + _STATE_LAST]:
            del self.queries[rid]
            if req.kind == "open_orders":
                req.session.reply(req.msg, {"type": "open_orders", "orders": req.states})
            else:
                found = req.states[0] if req.states else None
                req.session.reply(
                    req.msg,
                    {"type": "order_status", "state": found["state"] if found else "unknown", "order": found},
                )

    def _on_refused(self, data: bytes, off: int) -> None:
        account = _U32.unpack_from(data, off + _REJ_ACCOUNT)[0]
        market = _U32.unpack_from(data, off + MARKET_ID_AT)[0]
        command = data[off + _REJ_COMMAND]
        for req in self.leverage.values():  # the oldest unanswered one of that account, market and command
            if req.account == account and req.market == market and req.command == command and not req.refused:
                req.refused = _U16.unpack_from(data, off + _REJ_REASON)[0] or int(RejectCode.BAD_FIELD)
                return

    def _on_echo(self, token: int) -> None:
        req = self.leverage.pop(token, None)
        if req is None:
            return
        if req.refused:
            req.session.error(req.msg, req.refused)
        else:
            req.session.reply(req.msg, req.answer)

    def expire(self, now: float) -> None:
        """Answer ENGINE_UNAVAILABLE to requests risk did not answer in time."""
        for table in (self.queries, self.leverage):
            for key in [k for k, r in table.items() if r.deadline < now]:
                req = table.pop(key)
                req.session.error(req.msg, RejectCode.ENGINE_UNAVAILABLE, "risk did not answer in time")


def parse_mode(value: Any) -> int | None:
    """``cross`` / ``isolated`` (default cross) as a MarginMode, None if neither."""
    if value is None:
        return int(MarginMode.CROSS)
    return _MODES.get(value) if isinstance(value, str) else None


# ---- the JSON ops ------------------------------------------------------------------------------
def _requests(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> RiskRequests | None:
    requests: RiskRequests | None = server.risk_requests
    if requests is None:
        sess.error(
            msg, RejectCode.ENGINE_UNAVAILABLE, f"{msg.get('op')} needs the risk stage in the order path"
        )
    return requests


def _market_field(server: GatewayServer, sess: Session, msg: dict[str, Any], required: bool) -> int | None:
    market = msg.get("market")
    if market is None and not required:
        return ALL_MARKETS
    if isinstance(market, bool) or not isinstance(market, int) or market not in server.catalog:
        sess.error(msg, RejectCode.UNKNOWN_MARKET, "market must be a listed market id")
        return None
    return market


def _id_field(sess: Session, msg: dict[str, Any], name: str) -> int | None:
    v = msg.get(name, 0)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 64:
        sess.error(msg, RejectCode.BAD_FIELD, f"{name} must be an integer in [0, 2^64)")
        return None
    return v


def _query_allowed(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> bool:
    """The account's order-query budget (shared with binary ORDER_QUERY), else RATE_LIMITED."""
    if server.ingress.query_tokens(sess.account_id, 1):
        return True
    sess.error(
        msg, RejectCode.RATE_LIMITED, retry_after_s=server.ingress.query_retry_after_s(sess.account_id)
    )
    return False


@control_op("open_orders", needs_login=True)
def op_open_orders(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Every open (or pending) order of the account, in one market or all, as risk knows them."""
    requests = _requests(server, sess, msg)
    market = _market_field(server, sess, msg, required=False)
    if requests is not None and market is not None and _query_allowed(server, sess, msg):
        requests.ask_orders(sess, msg, "open_orders", market, 0, 0)


@control_op("order_status", needs_login=True)
def op_order_status(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """One order by ``order_id`` or ``client_order_id``: open, pending, or unknown (not open)."""
    requests = _requests(server, sess, msg)
    if requests is None:
        return
    market = _market_field(server, sess, msg, required=True)
    oid = _id_field(sess, msg, "order_id") if market is not None else None
    coid = _id_field(sess, msg, "client_order_id") if oid is not None else None
    if market is None or oid is None or coid is None:
        return
    if not oid and not coid:
        sess.error(msg, RejectCode.BAD_FIELD, "order_id or client_order_id is required")
        return
    if _query_allowed(server, sess, msg):
        requests.ask_orders(sess, msg, "order_status", market, oid, coid)


def _command_target(
    server: GatewayServer, sess: Session, msg: dict[str, Any]
) -> tuple[RiskRequests, int] | None:
    """The risk requests and the listed market a confirmed command names (None: refused, said)."""
    requests = _requests(server, sess, msg)
    market = _market_field(server, sess, msg, required=True) if requests is not None else None
    return None if requests is None or market is None else (requests, market)


@control_op("set_leverage", needs_login=True)
def op_set_leverage(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """The account's leverage (1..the market's maximum) and margin mode in a perp market."""
    target = _command_target(server, sess, msg)
    if target is None:
        return
    requests, market = target
    leverage = msg.get("leverage")
    if isinstance(leverage, bool) or not isinstance(leverage, int) or not 1 <= leverage <= 0xFFFF:
        sess.error(msg, RejectCode.LEVERAGE_OUT_OF_RANGE, "leverage must be an integer >= 1")
        return
    mode = parse_mode(msg.get("mode"))
    if mode is None:
        sess.error(msg, RejectCode.BAD_FIELD, f"mode must be one of {sorted(_MODES)}")
        return
    requests.set_leverage(sess, msg, market, leverage, mode)


@control_op("adjust_margin", needs_login=True)
def op_adjust_margin(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Margin into (``amount`` > 0, USDC) or out of (< 0) the account's isolated position in a perp."""
    target = _command_target(server, sess, msg)
    if target is None:
        return
    requests, market = target
    amount = msg.get("amount")
    negative = isinstance(amount, str) and amount.startswith("-")
    try:
        micro = to_units(amount[1:] if negative else amount, Decimal(1) / MICRO, "amount")
    except JsonReject as exc:
        code = (
            exc.code
            if exc.code in (RejectCode.BAD_FIELD, RejectCode.BAD_DECIMAL)
            else RejectCode.AMOUNT_OUT_OF_RANGE
        )
        sess.error(msg, code, f'{exc.detail}: give a non-zero decimal string of USDC ("25.5", "-10")')
        return
    if micro >= 1 << 61:
        sess.error(msg, RejectCode.AMOUNT_OUT_OF_RANGE, "amount is out of range")
        return
    micro = -micro if negative else micro
    requests.adjust_margin(sess, msg, market, micro)
