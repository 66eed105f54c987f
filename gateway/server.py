"""The gateway server: one picows listener, two protocols by path, the control protocol, limits.

``/v1/bin``: binary frames are order structs (validated by ``gateway.binary``, account stamped,
forwarded by the ``OrderRouter`` with one ring publish per frame); text frames carry the JSON
control protocol (challenge, login, subscribe, ...). ``/v1/json``: everything is JSON text frames;
order commands are converted exactly by ``gateway.json_api`` and then pass the same validator.

Ordering on the event loop: frames are handled in ``on_ws_frame`` synchronously (validate,
rate-limit, publish, answer rejects at once); events come back through the ``EventFanout`` pump
task, whose loop mode decides how it waits (see ``GatewayOptions.loop_mode``). Anything a client
sends gets either a specific answer (a REJECTED / ``rejected`` / ``error`` carrying a RejectCode)
or a close with a reason; an exception inside a handler is logged and answered with MALFORMED,
never allowed to take the process down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest

from engine.host import ensure_realtime_priority
from engine.host.health_board import NoHealth
from engine.host.metrics import Metrics
from engine.types.enums import DepositSource, MsgType, RejectCode, reject_message
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS, MARKET_ID_AT, SLOT_BYTES
from gateway.account_registry import normalise_address
from gateway.auth import Authenticator
from gateway.binary import check_struct, market_table, reject_struct, validate_frame
from gateway.fanout import EventFanout
from gateway.json_api import ORDER_OPS, JsonReject, command_struct, reject_json, to_units
from gateway.market_catalog import MarketCatalog
from gateway.order_router import OrderRouter
from gateway.rate_limiter import TokenBucket
from gateway.session import CHANNELS, Session

log = logging.getLogger("hx.gateway")

BIN_PATH = "/v1/bin"
JSON_PATH = "/v1/json"
LOOP_MODES = ("adaptive", "busy-poll", "park")


@dataclass
class GatewayOptions:
    chain_id: int = 31337
    challenge_ttl_s: float = 30.0
    handshake_timeout_s: float = 5.0  # HTTP upgrade must complete within this
    login_timeout_s: float = 30.0  # an unauthenticated connection is closed after this
    idle_timeout_s: float = 60.0  # no frame (any kind, pings included) for this long: closed
    max_connections: int = 4096
    max_connections_per_ip: int = 256
    max_frame_bytes: int = 64 * 1024  # binary: up to 1024 structs per frame
    max_json_bytes: int = 16 * 1024
    max_subscriptions: int = 64
    order_rate: float = 20_000.0  # per connection, orders/s (0 disables)
    order_burst: float = 40_000.0
    account_order_rate: float = 50_000.0  # per account in this gateway process
    account_order_burst: float = 100_000.0
    request_rate: float = 50.0  # control requests (login, subscribe, ...) per connection
    request_burst: float = 100.0
    soft_buffer_bytes: int = 1 << 20  # conflate market data above this much unsent
    hard_buffer_bytes: int = 16 << 20  # close the connection above this
    loop_mode: str = (
        "park"  # how the event pump waits: park (default, measured best on 2 cores) | adaptive | busy-poll
    )
    spin_polls: int = 64  # adaptive: event-loop iterations to poll before parking
    max_park_ms: float = 2.0  # longest a parked pump sleeps (bounds a lost wake-up)
    max_events_per_poll: int = 4096
    route_via: str = "shard"
    sndbuf_bytes: int = 0  # SO_SNDBUF for client sockets (0 = kernel default); tests shrink it
    snapshot_depth: int | None = None  # levels per side in a snapshot (None = all)
    realtime_priority: int = 0  # SCHED_FIFO priority of the gateway process (0: off); not with busy-poll
    faucet: bool = False  # development only: the `faucet` op credits any address (hx faucet)

    def __post_init__(self) -> None:
        if self.loop_mode not in LOOP_MODES:
            raise ValueError(f"loop_mode {self.loop_mode!r}: choose one of {LOOP_MODES}")
        ensure_realtime_priority(self.realtime_priority, self.loop_mode)


class GatewayListener(WSListener):  # type: ignore[misc]
    __slots__ = ("server", "binary", "session")

    def __init__(self, server: GatewayServer, binary: bool) -> None:
        self.server = server
        self.binary = binary
        self.session: Session | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.session = self.server.on_connected(transport, self.binary)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        sess = self.session
        if sess is None or sess.closed:
            return
        try:
            self.server.on_frame(sess, frame)
        except Exception:
            log.exception("frame handler failed")
            sess.send_json(
                {
                    "type": "error",
                    "code": int(RejectCode.MALFORMED),
                    "reason": "MALFORMED",
                    "message": "internal error handling this frame",
                }
            )

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.session is not None:
            self.server.on_disconnected(self.session)


class GatewayServer:
    def __init__(
        self,
        catalog: MarketCatalog,
        auth: Authenticator,
        router: OrderRouter,
        consumers: list[Any],
        options: GatewayOptions,
        private_from: list[bool] | None = None,
    ) -> None:
        self.catalog = catalog
        self.auth = auth
        self.router = router
        self.options = options
        self.sessions: set[Session] = set()
        self.accounts: dict[int, set[Session]] = {}
        self.market_subs: dict[int, set[Session]] = {}
        self.per_ip: dict[str, int] = {}
        self.account_buckets: dict[int, TokenBucket] = {}
        self.market_table = market_table(catalog.ids)
        self.fanout = EventFanout(
            consumers,
            catalog,
            self.accounts,
            self.market_subs,
            on_lost=self.on_events_lost,
            private_from=private_from,
        )
        self.consumers = consumers
        self.wake_fds = [c.wait_strategy.fd for c in consumers if getattr(c.wait_strategy, "fd", -1) >= 0]
        self._wake: asyncio.Future[None] | None = None
        self._running = False
        self.stats = {"frames": 0, "orders": 0, "rejects": 0}
        self._faucet_id = 0
        self.faucet_index = 0  # the gateway's index: faucet deposit ids differ between gateways
        self.health: Any = NoHealth()  # the run's health board slot (the sweeper beats it)
        self.metrics = Metrics("gateway", self.health.metrics)

    # ---- connections ---------------------------------------------------------------------------
    def listener_factory(self, request: WSUpgradeRequest) -> WSListener | None:
        raw = request.path
        path = (raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)).split("?", 1)[0]
        if path == BIN_PATH:
            return GatewayListener(self, True)
        if path == JSON_PATH:
            return GatewayListener(self, False)
        return None  # 404

    def on_connected(self, transport: WSTransport, binary: bool) -> Session:
        raw = transport.underlying_transport
        peer = raw.get_extra_info("peername")
        ip = peer[0] if peer else "?"
        o = self.options
        if o.sndbuf_bytes:
            sock = raw.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, o.sndbuf_bytes)
        sess = Session(
            transport,
            binary,
            ip,
            TokenBucket(o.order_rate, o.order_burst),
            TokenBucket(o.request_rate, o.request_burst),
            o.soft_buffer_bytes,
            o.hard_buffer_bytes,
        )
        self.sessions.add(sess)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        if len(self.sessions) > o.max_connections:
            sess.close(WSCloseCode.TRY_AGAIN_LATER, "gateway is at its connection limit")
        elif self.per_ip[ip] > o.max_connections_per_ip:
            sess.close(WSCloseCode.POLICY_VIOLATION, "too many connections from your address")
        return sess

    def on_disconnected(self, sess: Session) -> None:
        sess.closed = True
        if sess in self.sessions:
            self.sessions.discard(sess)
            left = self.per_ip.get(sess.peer_ip, 1) - 1
            if left > 0:
                self.per_ip[sess.peer_ip] = left
            else:
                self.per_ip.pop(sess.peer_ip, None)
        if sess.account_id:
            peers = self.accounts.get(sess.account_id)
            if peers is not None:
                peers.discard(sess)
                if not peers:
                    del self.accounts[sess.account_id]
        for m in list(sess.subs):
            subs = self.market_subs.get(m)
            if subs is not None:
                subs.discard(sess)
                if not subs:
                    del self.market_subs[m]
        self.fanout.conflating.discard(sess)
        self.auth.forget_connection(sess.id)

    # ---- frames --------------------------------------------------------------------------------
    def on_frame(self, sess: Session, frame: WSFrame) -> None:
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
                self.on_text(sess, frame.get_payload_as_bytes())
        elif mt == WSMsgType.PING:
            sess.transport.send(WSMsgType.PONG, frame.get_payload_as_bytes())
        elif mt == WSMsgType.CLOSE:
            sess.transport.send_close(frame.get_close_code())
            sess.transport.disconnect()
        elif mt == WSMsgType.CONTINUATION:
            sess.close(WSCloseCode.UNSUPPORTED_DATA, "fragmented messages are not supported")
        # PONG: nothing (last_rx already updated)

    def on_binary(self, sess: Session, payload: memoryview) -> None:
        self.stats["frames"] += 1
        account = sess.account_id
        if not account:
            self._reject_all(sess, payload, RejectCode.NOT_AUTHENTICATED)
            return
        res = validate_frame(payload, account, self.catalog.ids, self.market_table)
        rejects = [reject_struct(payload, off, code, account) for off, code in res.rejects]
        if res.count:
            granted = self._take_order_tokens(sess, res.count)
            data = res.accepted
            if granted < res.count:
                retry_ns = int(self._retry_after(sess, res.count - granted) * 1e9)
                for k in range(granted, res.count):
                    rejects.append(
                        reject_struct(data, k * SLOT_BYTES, RejectCode.RATE_LIMITED, account, retry_ns)
                    )
            if granted:
                sent = data if granted == res.count else data[: granted * SLOT_BYTES]
                refused = self.router.submit(sent, res.markets[:granted], account)
                for k in refused:
                    rejects.append(
                        reject_struct(data, k * SLOT_BYTES, RejectCode.BACKPRESSURE, account, 1_000_000)
                    )
                self.stats["orders"] += granted - len(refused)
                self.kick()
        if rejects:
            self.stats["rejects"] += len(rejects)
            sess.send_binary(b"".join(rejects))

    def _reject_all(self, sess: Session, payload: memoryview, code: int) -> None:
        n = max(1, (len(payload) + SLOT_BYTES - 1) // SLOT_BYTES)
        sess.send_binary(b"".join(reject_struct(payload, k * SLOT_BYTES, code, 0) for k in range(n)))

    def _take_order_tokens(self, sess: Session, n: int) -> int:
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

    def _retry_after(self, sess: Session, n: int) -> float:
        acct = self.account_buckets.get(sess.account_id)
        return max(sess.order_bucket.retry_after_s(n), acct.retry_after_s(n) if acct else 0.0, 0.001)

    # ---- JSON (both paths) ---------------------------------------------------------------------
    def on_text(self, sess: Session, payload: bytes) -> None:
        if len(payload) > self.options.max_json_bytes:
            self._error(
                sess, None, RejectCode.BAD_JSON, f"text frame over {self.options.max_json_bytes} bytes"
            )
            return
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self._error(sess, None, RejectCode.BAD_JSON, f"not valid JSON: {str(exc)[:80]}")
            return
        if not isinstance(msg, dict):
            self._error(sess, None, RejectCode.BAD_JSON, "a message must be a JSON object")
            return
        op = msg.get("op")
        if op in ORDER_OPS:
            self.on_json_order(sess, msg, op)
            return
        if not sess.request_bucket.try_take(1):
            self._error(sess, msg, RejectCode.RATE_LIMITED, retry_after_s=sess.request_bucket.retry_after_s())
            return
        handler = _CONTROL.get(op) if isinstance(op, str) else None
        if handler is None:
            self._error(sess, msg, RejectCode.UNKNOWN_OP, f"unknown op {str(op)[:40]!r}")
            return
        handler(self, sess, msg)

    def _error(
        self,
        sess: Session,
        msg: dict[str, Any] | None,
        code: int,
        detail: str = "",
        retry_after_s: float = 0.0,
    ) -> None:
        out: dict[str, Any] = {
            "type": "error",
            "code": int(code),
            "reason": RejectCode(code).name,
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
        sess.send_json(out)

    def _reply(self, sess: Session, msg: dict[str, Any], out: dict[str, Any]) -> None:
        rid = msg.get("id")
        if isinstance(rid, (int, str)) and not isinstance(rid, bool):
            out["id"] = rid
        sess.send_json(out)

    def on_json_order(self, sess: Session, msg: dict[str, Any], op: str) -> None:
        command = ORDER_OPS[op]
        market = msg.get("market") if isinstance(msg.get("market"), int) else None

        def reject(code: int, detail: str = "", retry: float = 0.0) -> None:
            self.stats["rejects"] += 1
            if sess.binary:
                out = reject_json(code, command, market, msg, detail, retry)
                sess.send_json(out)
            else:
                sess.send_json(reject_json(code, command, market, msg, detail, retry))

        if not sess.account_id:
            reject(RejectCode.NOT_AUTHENTICATED)
            return
        try:
            data = command_struct(msg, self.catalog, sess.account_id)
        except JsonReject as exc:
            reject(exc.code, exc.detail)
            return
        code = check_struct(data, 0, sess.account_id, self.catalog.ids)
        if code:
            reject(code)
            return
        if not self._take_order_tokens(sess, 1):
            reject(RejectCode.RATE_LIMITED, retry=self._retry_after(sess, 1))
            return
        market = int.from_bytes(data[MARKET_ID_AT : MARKET_ID_AT + 4], "little")
        if self.router.submit(data, [market], sess.account_id):
            reject(RejectCode.BACKPRESSURE, retry=0.001)
            return
        self.stats["orders"] += 1
        self.kick()

    # ---- control ops ---------------------------------------------------------------------------
    def op_ping(self, sess: Session, msg: dict[str, Any]) -> None:
        self._reply(sess, msg, {"type": "pong", "ts_ns": time.time_ns()})

    def op_stats(self, sess: Session, msg: dict[str, Any]) -> None:
        """Process-wide counters (operations; also what tests read to see the gateway's side)."""
        buffered = [x.buffered() for x in self.sessions if not x.closed]
        self._reply(
            sess,
            msg,
            {
                "type": "stats",
                "pid": os.getpid(),
                "sessions": len(self.sessions),
                "events": self.fanout.events,
                "event_batches": self.fanout.batches,
                "max_buffered": max(buffered, default=0),
                "conflating": len(self.fanout.conflating),
                **self.stats,
            },
        )

    def op_markets(self, sess: Session, msg: dict[str, Any]) -> None:
        assets = [
            {"asset": a.asset_id, "symbol": a.symbol, "scale": a.scale} for a in self.catalog.assets.values()
        ]
        self._reply(
            sess, msg, {"type": "markets", "markets": [m.as_json() for m in self.catalog], "assets": assets}
        )

    def op_challenge(self, sess: Session, msg: dict[str, Any]) -> None:
        ch = self.auth.issue_challenge(sess.id)
        self._reply(
            sess,
            msg,
            {
                "type": "challenge",
                "nonce": ch.nonce_hex,
                "expires_at": ch.expires_at_ms,
                "chain_id": self.auth.chain_id,
                "domain": {"name": "hx", "version": "1"},
            },
        )

    def op_login(self, sess: Session, msg: dict[str, Any]) -> None:
        if sess.account_id:
            self._error(sess, msg, RejectCode.ALREADY_AUTHENTICATED)
            return
        account = msg.get("account")
        res = self.auth.check_login(
            sess.id, account, msg.get("signer", account), msg.get("nonce"), msg.get("signature")
        )
        if res.code:
            self._error(sess, msg, res.code)
            return
        sess.account_id, sess.address, sess.signer, sess.is_agent = (
            res.account_id,
            res.address,
            res.signer,
            res.is_agent,
        )
        self.accounts.setdefault(res.account_id, set()).add(sess)
        self._reply(
            sess,
            msg,
            {
                "type": "login",
                "ok": True,
                "account": res.address,
                "account_id": res.account_id,
                "signer": res.signer,
                "agent": res.is_agent,
            },
        )

    def _agent_change(self, sess: Session, msg: dict[str, Any], kind: str) -> None:
        if not sess.account_id:
            self._error(sess, msg, RejectCode.NOT_AUTHENTICATED)
            return
        if sess.is_agent:
            self._error(sess, msg, RejectCode.PERMISSION_DENIED, "an agent key cannot manage agents")
            return
        code = self.auth.check_agent_change(
            kind, sess.address, msg.get("agent"), msg.get("nonce"), msg.get("signature")
        )
        if code:
            self._error(sess, msg, code)
            return
        self._reply(
            sess,
            msg,
            {
                "type": "agent_approved" if kind == "ApproveAgent" else "agent_revoked",
                "agent": str(msg.get("agent")).lower(),
                "nonce": msg.get("nonce"),
            },
        )

    def op_approve_agent(self, sess: Session, msg: dict[str, Any]) -> None:
        self._agent_change(sess, msg, "ApproveAgent")

    def op_revoke_agent(self, sess: Session, msg: dict[str, Any]) -> None:
        self._agent_change(sess, msg, "RevokeAgent")

    def op_withdraw(self, sess: Session, msg: dict[str, Any]) -> None:
        if not sess.account_id:
            self._error(sess, msg, RejectCode.NOT_AUTHENTICATED)
        elif sess.is_agent:
            self._error(sess, msg, RejectCode.PERMISSION_DENIED, "an agent key can trade but never withdraw")
        else:
            self._error(sess, msg, RejectCode.UNKNOWN_OP, "withdrawals are not served by this gateway yet")

    def op_faucet(self, sess: Session, msg: dict[str, Any]) -> None:
        """Development only (``faucet`` option): credit an address through a DEPOSIT to risk."""
        if not self.options.faucet:
            self._error(sess, msg, RejectCode.PERMISSION_DENIED, "the faucet is off (a development tool)")
            return
        address = normalise_address(msg.get("address", ""))
        asset = self.catalog.asset_ids.get(msg.get("asset")) if isinstance(msg.get("asset"), str) else None
        if address is None:
            self._error(sess, msg, RejectCode.BAD_FIELD, "address must be a 0x-prefixed 20-byte hex address")
            return
        if asset is None:
            self._error(
                sess, msg, RejectCode.UNKNOWN_ASSET, f"asset must be one of {sorted(self.catalog.asset_ids)}"
            )
            return
        try:
            amount = to_units(msg.get("amount"), Decimal(1) / self.catalog.assets[asset].scale, "amount")
        except JsonReject as exc:
            self._error(sess, msg, exc.code, exc.detail)
            return
        account = self.auth.registry.ensure_account(address)
        self._faucet_id = max(self._faucet_id + 1, time.time_ns() // 1000 * 16 + self.faucet_index)
        data = encode(
            MsgType.DEPOSIT,
            account=account,
            asset=asset,
            source=int(DepositSource.FAUCET),
            amount=amount,
            deposit_id=self._faucet_id,
        )
        if self.router.submit(data, [ALL_MARKETS], account):
            self._error(sess, msg, RejectCode.BACKPRESSURE, retry_after_s=0.001)
            return
        self.kick()
        self._reply(sess, msg, {"type": "faucet", "account": account, "deposit_id": self._faucet_id})

    def _channel_market(self, sess: Session, msg: dict[str, Any]) -> tuple[str, int] | None:
        channel, market = msg.get("channel"), msg.get("market")
        if channel not in CHANNELS:
            self._error(sess, msg, RejectCode.BAD_FIELD, f"channel must be one of {list(CHANNELS)}")
            return None
        if isinstance(market, bool) or not isinstance(market, int) or market not in self.catalog:
            self._error(sess, msg, RejectCode.UNKNOWN_MARKET)
            return None
        return channel, market

    def op_subscribe(self, sess: Session, msg: dict[str, Any]) -> None:
        cm = self._channel_market(sess, msg)
        if cm is None:
            return
        channel, market = cm
        if (
            channel not in sess.subs.get(market, ())
            and sess.subscription_count() >= self.options.max_subscriptions
        ):
            self._error(sess, msg, RejectCode.TOO_MANY_SUBSCRIPTIONS)
            return
        sess.subscribe(market, channel)
        self.market_subs.setdefault(market, set()).add(sess)
        self._reply(sess, msg, {"type": "subscribed", "channel": channel, "market": market})
        if channel == "book":
            sess.send_json(
                self.fanout.snapshot(market, sess.binary, "subscribe", self.options.snapshot_depth)
            )

    def op_unsubscribe(self, sess: Session, msg: dict[str, Any]) -> None:
        cm = self._channel_market(sess, msg)
        if cm is None:
            return
        channel, market = cm
        if not sess.unsubscribe(market, channel):
            self._error(sess, msg, RejectCode.NOT_SUBSCRIBED)
            return
        if market not in sess.subs:
            subs = self.market_subs.get(market)
            if subs is not None:
                subs.discard(sess)
                if not subs:
                    del self.market_subs[market]
        self._reply(sess, msg, {"type": "unsubscribed", "channel": channel, "market": market})

    def op_snapshot(self, sess: Session, msg: dict[str, Any]) -> None:
        market = msg.get("market")
        if isinstance(market, bool) or not isinstance(market, int) or market not in self.catalog:
            self._error(sess, msg, RejectCode.UNKNOWN_MARKET)
            return
        out = self.fanout.snapshot(market, sess.binary, "request", self.options.snapshot_depth)
        self._reply(sess, msg, out)

    def on_events_lost(self, reason: str) -> None:
        """Events were lost to this gateway: ask every shard to restate its books (subscribers get
        fresh snapshots) and close every logged-in session with the reason: its private stream
        has a hole it must not paper over (it reconnects and asks for its open orders)."""
        self.router.submit(encode(MsgType.L2_SNAPSHOT_REQUEST, ALL_MARKETS), [ALL_MARKETS])
        for sess in list(self.sessions):
            if sess.account_id and not sess.closed:
                sess.close(WSCloseCode.INTERNAL_ERROR, f"events lost ({reason}); reconnect and resync")

    # ---- event pump ----------------------------------------------------------------------------
    def kick(self) -> None:
        """Orders just went in: wake a parked pump so it polls for their events."""
        fut = self._wake
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_wake_fd(self, fd: int) -> None:
        try:
            os.read(fd, 4096)
        except (BlockingIOError, OSError):
            pass
        self.kick()

    async def run_pump(self) -> None:
        """Drain the event rings for ever; how it waits when idle is the loop mode."""
        loop = asyncio.get_running_loop()
        o = self.options
        fanout = self.fanout
        poll = fanout.poll
        max_n = o.max_events_per_poll
        spin = {"adaptive": o.spin_polls, "busy-poll": 1 << 62, "park": 0}[o.loop_mode]
        park_s = o.max_park_ms / 1000.0
        for fd in self.wake_fds:
            loop.add_reader(fd, self._on_wake_fd, fd)
        strategies = [c.wait_strategy for c in self.consumers]
        idle = 0
        self._running = True
        try:
            while self._running:
                if poll(max_n):
                    idle = 0
                    await asyncio.sleep(0)
                    continue
                idle += 1
                if idle <= spin:
                    await asyncio.sleep(0)
                    continue
                # park: announce we sleep, re-check, then wait for a wake-up, a kick or the timeout
                for s in strategies:
                    if hasattr(s, "set_waiting"):
                        s.set_waiting(1)
                if fanout.available():
                    for s in strategies:
                        if hasattr(s, "set_waiting"):
                            s.set_waiting(0)
                    continue
                self._wake = loop.create_future()
                handle = loop.call_later(park_s, self.kick)
                try:
                    await self._wake
                finally:
                    handle.cancel()
                    self._wake = None
                    for s in strategies:
                        if hasattr(s, "set_waiting"):
                            s.set_waiting(0)
                idle = 0
                if fanout.conflating:
                    fanout.recover_conflated()
        finally:
            for fd in self.wake_fds:
                loop.remove_reader(fd)

    def stop_pump(self) -> None:
        self._running = False
        self.kick()

    # ---- housekeeping --------------------------------------------------------------------------
    async def run_sweeper(self, interval_s: float = 0.25) -> None:
        o = self.options
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for sess in list(self.sessions):
                if sess.closed:
                    continue
                if not sess.account_id and now - sess.connected_at > o.login_timeout_s:
                    sess.close(WSCloseCode.POLICY_VIOLATION, "login timeout")
                elif now - sess.last_rx > o.idle_timeout_s:
                    sess.close(WSCloseCode.GOING_AWAY, "idle timeout")
            if self.fanout.conflating:
                self.fanout.recover_conflated()
            self.auth.purge_expired()
            self.health.beat(self.stats["frames"] + self.fanout.events)  # the event loop is alive
            m = self.metrics
            m.set("hx_sessions", len(self.sessions))
            m.set("hx_frames_total", self.stats["frames"])
            m.set("hx_orders_total", self.stats["orders"])
            m.set("hx_rejects_total", self.stats["rejects"])
            m.set("hx_events_routed_total", self.fanout.events)

    def close_all(self, reason: str = "gateway shutting down") -> None:
        for sess in list(self.sessions):
            sess.close(WSCloseCode.GOING_AWAY, reason)


_CONTROL = {
    "ping": GatewayServer.op_ping,
    "markets": GatewayServer.op_markets,
    "stats": GatewayServer.op_stats,
    "challenge": GatewayServer.op_challenge,
    "login": GatewayServer.op_login,
    "approve_agent": GatewayServer.op_approve_agent,
    "revoke_agent": GatewayServer.op_revoke_agent,
    "withdraw": GatewayServer.op_withdraw,
    "faucet": GatewayServer.op_faucet,
    "subscribe": GatewayServer.op_subscribe,
    "unsubscribe": GatewayServer.op_unsubscribe,
    "snapshot": GatewayServer.op_snapshot,
}

__all__ = ["BIN_PATH", "JSON_PATH", "GatewayOptions", "GatewayServer", "MsgType"]
