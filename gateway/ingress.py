"""Commands in: one WebSocket frame -> validated structs on the order rings, or an answer at once.

Binary frames (``/v1/bin`` only) are arrays of order structs, validated by ``gateway.binary``,
stamped with the session's account, rate-limited per connection and per account, and forwarded
by the ``OrderRouter`` with one ring publish per frame. Text frames are the JSON protocol: order
ops (``place``, ``cancel``, ``amend``, ``cancel_all``) are converted exactly by
``gateway.protocol.json_commands`` and pass the same validator; every other op goes to the control
table (``gateway.control``).

Invariant: every struct a client sends is either forwarded (its answer comes from the engine) or
answered here with a REJECTED carrying a RejectCode (``seq`` 0: the gateway's own reject); every
unusable frame is answered with an ``error`` or a close with a reason.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from picows import WSCloseCode, WSFrame, WSMsgType

from engine.types.enums import MsgType, RejectCode
from engine.wire.layout import MARKET_ID_AT, SLOT_BYTES
from gateway.binary import RISK_TYPES, FrameResult, check_struct, reject_struct, validate_frame
from gateway.control import CONTROL_OPS
from gateway.protocol.json_commands import command_struct
from gateway.protocol.json_events import reject_json
from gateway.protocol.units import JsonReject
from gateway.protocol.vocabulary import ORDER_OPS
from gateway.rate_limiter import TokenBucket
from gateway.session import Session

if TYPE_CHECKING:
    from gateway.server import GatewayServer

_QUERY_B = int(MsgType.ORDER_QUERY)


class Ingress:
    """Frame handling for one server (its limits, router and control table)."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.options = server.options
        self.stats = server.stats
        self.account_buckets: dict[int, TokenBucket] = {}
        self.query_buckets: dict[int, TokenBucket] = {}

    def on_frame(self, sess: Session, frame: WSFrame) -> None:
        """One WebSocket frame of a session: data to the protocol handlers, control frames here."""
        sess.last_rx = time.monotonic()
        mt = frame.msg_type
        if mt == WSMsgType.BINARY or mt == WSMsgType.TEXT:
            if not frame.fin:
                sess.close(WSCloseCode.UNSUPPORTED_DATA, "fragmented messages are not supported")
            elif mt == WSMsgType.BINARY:
                if sess.binary:
                    self.on_binary(sess, frame.get_payload_as_memoryview())
                else:
                    sess.close(WSCloseCode.UNSUPPORTED_DATA, "binary frames are not accepted on /v1/json")
            else:
                # a control op may take milliseconds (a what-if, a login's signature check): the
                # wake-ups this iteration's order frames deferred go out before it, not after
                self.server.ring_doorbells()
                self.on_text(sess, frame.get_payload_as_bytes())
        elif mt == WSMsgType.PING:
            sess.transport.send(WSMsgType.PONG, frame.get_payload_as_bytes())
        elif mt == WSMsgType.CLOSE:
            sess.transport.send_close(frame.get_close_code())
            sess.transport.disconnect()
        elif mt == WSMsgType.CONTINUATION:
            sess.close(WSCloseCode.UNSUPPORTED_DATA, "fragmented messages are not supported")
        # PONG: nothing (last_rx already updated)

    # ---- binary --------------------------------------------------------------------------------
    def on_binary(self, sess: Session, payload: memoryview) -> None:
        """Order structs: validate, rate-limit, publish, answer rejects at once."""
        server = self.server
        self.stats["frames"] += 1
        account = sess.account_id
        if not account:
            self._reject_all(sess, payload, RejectCode.NOT_AUTHENTICATED)
            return
        if not len(payload):  # nothing to judge: still an answer, as for an anonymous client
            sess.send_binary(reject_struct(payload, 0, RejectCode.BAD_LENGTH, account))
            self.stats["rejects"] += 1
            return
        res = validate_frame(payload, account, server.catalog.ids, server.market_table)
        rejects = [reject_struct(payload, off, code, account) for off, code in res.rejects]
        if res.count and server.risk_requests is None:
            types = res.accepted[::SLOT_BYTES]
            if any(t in RISK_TYPES for t in types):
                res = self._without_risk_types(res, rejects, account)
        if res.count and _QUERY_B in res.accepted[::SLOT_BYTES]:
            res = self._limit_queries(sess, res, rejects, account)
        if res.count:
            granted = self.take_order_tokens(sess, res.count)
            data = res.accepted
            if granted < res.count:
                retry_ns = int(self.retry_after_s(sess, res.count - granted) * 1e9)
                for k in range(granted, res.count):
                    rejects.append(
                        reject_struct(data, k * SLOT_BYTES, RejectCode.RATE_LIMITED, account, retry_ns)
                    )
            if granted:
                sent = data if granted == res.count else data[: granted * SLOT_BYTES]
                refused = server.router.submit(sent, res.markets[:granted], account)
                for k in refused:
                    rejects.append(
                        reject_struct(data, k * SLOT_BYTES, RejectCode.BACKPRESSURE, account, 1_000_000)
                    )
                self.stats["orders"] += granted - len(refused)
                server.kick()
        if rejects:
            self.stats["rejects"] += len(rejects)
            sess.send_binary(b"".join(rejects))

    @staticmethod
    def _refuse(
        res: FrameResult, refused: set[int], rejects: list[bytes], account: int, code: int, retry_ns: int = 0
    ) -> FrameResult:
        """The frame without the structs at byte offsets ``refused``, each answered ``code``."""
        data = res.accepted
        keep = bytearray()
        markets = []
        for k in range(res.count):
            off = k * SLOT_BYTES
            if off in refused:
                rejects.append(reject_struct(data, off, code, account, retry_ns))
            else:
                keep += data[off : off + SLOT_BYTES]
                markets.append(res.markets[k])
        return FrameResult(keep, len(markets), markets, [])

    def _without_risk_types(self, res: FrameResult, rejects: list[bytes], account: int) -> FrameResult:
        """Without risk in the path nobody answers ORDER_QUERY, SET_LEVERAGE or ADJUST_MARGIN: refuse
        them here."""
        data = res.accepted
        refused = {k * SLOT_BYTES for k in range(res.count) if data[k * SLOT_BYTES] in RISK_TYPES}
        return self._refuse(res, refused, rejects, account, RejectCode.ENGINE_UNAVAILABLE)

    def query_tokens(self, account: int, n: int) -> int:
        """How many of ``n`` order queries (each answered with up to all the account's open orders)
        the account's query bucket allows now."""
        bucket = self.query_buckets.get(account)
        if bucket is None:
            bucket = self.query_buckets[account] = TokenBucket(
                self.options.account_query_rate, self.options.account_query_burst
            )
        return bucket.try_take(n)

    def query_retry_after_s(self, account: int) -> float:
        bucket = self.query_buckets.get(account)
        return max(bucket.retry_after_s(1) if bucket else 0.0, 0.001)

    def _limit_queries(
        self, sess: Session, res: FrameResult, rejects: list[bytes], account: int
    ) -> FrameResult:
        """ORDER_QUERY structs beyond the account's query budget: RATE_LIMITED with retry-after."""
        data = res.accepted
        offs = [k * SLOT_BYTES for k in range(res.count) if data[k * SLOT_BYTES] == _QUERY_B]
        granted = self.query_tokens(account, len(offs))
        if granted == len(offs):
            return res
        retry_ns = int(self.query_retry_after_s(account) * 1e9)
        return self._refuse(res, set(offs[granted:]), rejects, account, RejectCode.RATE_LIMITED, retry_ns)

    def _reject_all(self, sess: Session, payload: memoryview, code: int) -> None:
        n = max(1, (len(payload) + SLOT_BYTES - 1) // SLOT_BYTES)
        sess.send_binary(b"".join(reject_struct(payload, k * SLOT_BYTES, code, 0) for k in range(n)))

    # ---- rate limits ---------------------------------------------------------------------------
    def take_order_tokens(self, sess: Session, n: int) -> int:
        """How many of ``n`` orders the connection's and the account's buckets allow now."""
        k = sess.order_bucket.try_take(n)
        bucket = self.account_buckets.get(sess.account_id)
        if bucket is None:
            bucket = self.account_buckets[sess.account_id] = TokenBucket(
                self.options.account_order_rate, self.options.account_order_burst
            )
        granted = bucket.try_take(k) if k else 0
        if granted < k and sess.order_bucket.rate > 0:
            sess.order_bucket.tokens += k - granted  # give back what the account bucket refused
        return granted

    def retry_after_s(self, sess: Session, n: int) -> float:
        """When ``n`` more orders would be allowed."""
        acct = self.account_buckets.get(sess.account_id)
        return max(sess.order_bucket.retry_after_s(n), acct.retry_after_s(n) if acct else 0.0, 0.001)

    # ---- JSON (both paths) ---------------------------------------------------------------------
    def on_text(self, sess: Session, payload: bytes) -> None:
        """One JSON message: an order op, or a control op from the table."""
        if len(payload) > self.options.max_json_bytes:
            sess.error(None, RejectCode.BAD_JSON, f"text frame over {self.options.max_json_bytes} bytes")
            return
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            sess.error(None, RejectCode.BAD_JSON, f"not valid JSON: {str(exc)[:80]}")
            return
        if not isinstance(msg, dict):
            sess.error(None, RejectCode.BAD_JSON, "a message must be a JSON object")
            return
        op = msg.get("op")
        if isinstance(op, str) and op in ORDER_OPS:  # (a list or object as op is unhashable)
            self.on_json_order(sess, msg, op)
            return
        if not sess.request_bucket.try_take(1):
            sess.error(msg, RejectCode.RATE_LIMITED, retry_after_s=sess.request_bucket.retry_after_s())
            return
        handler = CONTROL_OPS.get(op) if isinstance(op, str) else None
        if handler is None:
            why = (
                "a message needs an 'op' (a string)" if not isinstance(op, str) else f"unknown op {op[:40]!r}"
            )
            sess.error(msg, RejectCode.UNKNOWN_OP, why)
            return
        handler(self.server, sess, msg)

    def on_json_order(self, sess: Session, msg: dict[str, Any], op: str) -> None:
        """A JSON order op: convert exactly, validate as binary, publish."""
        server = self.server
        command = ORDER_OPS[op]
        market = msg.get("market") if isinstance(msg.get("market"), int) else None

        def reject(code: int, detail: str = "", retry: float = 0.0) -> None:
            self.stats["rejects"] += 1
            sess.send_json(reject_json(code, command, market, msg, detail, retry))

        if not sess.account_id:
            reject(RejectCode.NOT_AUTHENTICATED)
            return
        try:
            data = command_struct(msg, server.catalog, sess.account_id)
        except JsonReject as exc:
            reject(exc.code, exc.detail)
            return
        code = check_struct(data, 0, sess.account_id, server.catalog.ids)
        if code:
            reject(code)
            return
        if not self.take_order_tokens(sess, 1):
            reject(RejectCode.RATE_LIMITED, retry=self.retry_after_s(sess, 1))
            return
        market = int.from_bytes(data[MARKET_ID_AT : MARKET_ID_AT + 4], "little")
        if server.router.submit(data, [market], sess.account_id):
            reject(RejectCode.BACKPRESSURE, retry=0.001)
            return
        self.stats["orders"] += 1
        server.kick()
