"""The gateway server: one picows listener, two protocols by path, the sessions it holds.

``/v1/bin``: binary frames are order structs; text frames carry the JSON control protocol.
``/v1/json``: everything is JSON text frames. What happens to a frame is ``gateway.ingress``
(orders to the rings) and ``gateway.control`` (the table of other ops); events come back through
``gateway.pump`` (drains the event rings) and ``gateway.fanout`` (routes them to sessions).
This module owns the sessions: who is connected, per-address limits, which sessions belong to
an account and which subscribe to a market, and the housekeeping sweep (login and idle timeouts,
conflation recovery, health beats).

Anything a client sends gets either a specific answer (a REJECTED / ``rejected`` / ``error``
carrying a RejectCode) or a close with a reason; an exception inside a handler is logged and
answered with MALFORMED, never allowed to take the process down.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSTransport, WSUpgradeRequest

from engine.host.health_board import NoHealth
from engine.host.metrics import Metrics
from engine.types.enums import MsgType, RejectCode
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS, SLOT_BYTES
from gateway.auth import Authenticator
from gateway.binary import market_table
from gateway.cancel_guard import CancelGuard
from gateway.fanout import EventFanout
from gateway.ingress import Ingress
from gateway.options import LOOP_MODES, GatewayOptions
from gateway.order_router import OrderRouter
from gateway.protocol.market_info import MarketCatalog
from gateway.pump import EventPump
from gateway.rate_limiter import TokenBucket
from gateway.replay_buffer import ReplayBuffer, SessionBoard
from gateway.risk_requests import RiskRequests
from gateway.session import Session
from gateway.what_if import RiskSpecSource
from gateway.withdraw_op import op_withdraw  # noqa: F401 - registers the withdraw op

log = logging.getLogger("hx.gateway")

_LIQ_TYPE = bytes([int(MsgType.LIQUIDATION)])
BOARD_EVERY_S = 1.0  # how often other gateways' sessions are learnt (and histories pruned)
TOUCH_EVERY_S = 10.0  # how often this gateway marks its live sessions (well inside the 60 s window)
AGENT_CHECK_EVERY_S = 1.0  # how often live agent sessions are checked for a revocation (any gateway's)
BIN_PATH = "/v1/bin"
JSON_PATH = "/v1/json"


class GatewayListener(WSListener):  # type: ignore[misc]
    """picows callbacks of one connection, handed to the server's session and ingress."""

    __slots__ = ("server", "binary", "session")

    def __init__(self, server: GatewayServer, binary: bool) -> None:
        self.server = server
        self.binary = binary
        self.session: Session | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        """A connection upgraded: open its session."""
        self.session = self.server.on_connected(transport, self.binary)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Hand a frame to the ingress; nothing after our close is acted on."""
        sess = self.session
        if sess is None or sess.closed:
            return  # nothing a client sends after our close frame is acted on
        if transport.is_close_frame_sent or frame.payload_size > self.server.options.max_frame_bytes:
            # picows refused an over-size frame (1009) but its parser still hands it over: an order
            # the client never saw acknowledged must never trade. Drop it and everything after.
            sess.closed = True
            return
        try:
            self.server.ingress.on_frame(sess, frame)
        except Exception:
            log.exception("frame handler failed")
            sess.error(None, RejectCode.MALFORMED, "internal error handling this frame")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """The socket closed: forget the session."""
        if self.session is not None:
            self.server.on_disconnected(self.session)


class GatewayServer:
    """Sessions, the ingress, the fan-out and the pump of one gateway process."""

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
        self.oracle_ring: Any = None  # the ring into the oracle (``resolve``), set by the process
        self.options = options
        self.sessions: set[Session] = set()
        self.accounts: dict[int, set[Session]] = {}  # account id -> its logged-in sessions
        self.market_subs: dict[int, set[Session]] = {}  # market id -> sessions subscribed to it
        self.per_ip: dict[str, int] = {}
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
        self.pump = EventPump(self.fanout, consumers, options)
        self.doorbells: list[Any] = []  # rings whose wake-ups wait for the loop's iteration end
        self.stats = {"frames": 0, "orders": 0, "rejects": 0}
        self.ingress = Ingress(self)
        self.faucet_id = 0
        self.risk_spec: RiskSpecSource | None = None  # the what_if op's maths (set by the process)
        self.risk_requests: RiskRequests | None = None  # set when risk is in the order path
        self.replay: ReplayBuffer | None = None  # likewise: private streams are per account then
        self.cancel_guard = CancelGuard(self)
        self._board_at = self._touch_at = self._agents_at = 0.0
        self.faucet_index = 0  # the gateway's index: faucet deposit ids differ between gateways
        self.health: Any = NoHealth()  # the run's health board slot (the sweeper beats it)
        self.metrics = Metrics("gateway", self.health.metrics)

    def enable_risk(self, gateway_index: int, state_dir: str | None = None) -> None:
        """Risk is in the order path: serve the ops risk answers, tap its rings for the answers,
        and keep the replay buffer that lets a reconnecting session resume its private stream."""
        self.risk_requests = RiskRequests(self, gateway_index)
        self.replay = ReplayBuffer(SessionBoard(state_dir, self.options.replay_window_s))
        self.fanout.tap = self._tap_risk

    def _tap_risk(self, data: bytes) -> bytes:
        """A batch from a risk ring, before the fan-out: this gateway's own answers come out,
        liquidations go to the public channel as well."""
        assert self.risk_requests is not None and self.replay is not None
        self.replay.record(data)
        data = self.risk_requests.tap(data)
        if _LIQ_TYPE in data[::SLOT_BYTES]:
            self.fanout.publish_liquidations(data)
        return data

    @property
    def account_buckets(self) -> dict[int, TokenBucket]:
        """Per-account order token buckets (the ingress owns them)."""
        return self.ingress.account_buckets

    # ---- connections ---------------------------------------------------------------------------
    def listener_factory(self, request: WSUpgradeRequest) -> WSListener | None:
        """picows: a listener for ``/v1/bin`` or ``/v1/json``, else 404."""
        raw = request.path
        path = (raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)).split("?", 1)[0]
        if path == BIN_PATH:
            return GatewayListener(self, True)
        if path == JSON_PATH:
            return GatewayListener(self, False)
        return None  # 404

    def on_connected(self, transport: WSTransport, binary: bool) -> Session:
        """Open a session, applying the per-process and per-address limits."""
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
            o.close_stall_s,
            o.close_max_s,
        )
        self.sessions.add(sess)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        if len(self.sessions) > o.max_connections:
            sess.close(WSCloseCode.TRY_AGAIN_LATER, "gateway is at its connection limit")
        elif self.per_ip[ip] > o.max_connections_per_ip:
            sess.close(WSCloseCode.POLICY_VIOLATION, "too many connections from your address")
        return sess

    def on_disconnected(self, sess: Session) -> None:
        """Forget a session everywhere; cancel on disconnect if it opted in."""
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
        self.cancel_guard.on_disconnected(sess)

    def on_login(self, sess: Session, resume_from: int | None) -> dict[str, Any]:
        """Bind a logged-in session to its account; with ``resume_from``, first queue what it missed.

        Returns the login reply's resume fields. Everything here runs in one event-loop step, so
        the replay reaches the session before any live event of its account."""
        out: dict[str, Any] = {}
        replay = self.replay
        if replay is not None:
            replay.board.touch(sess.account_id)
        if resume_from is not None:
            if replay is None:
                out = {"resumed": False, "resume_error": "resume needs risk in the order path"}
            else:
                events, why = replay.resume(sess.account_id, resume_from)
                if events is None:
                    out = {"resumed": False, "resume_error": why}
                else:
                    out = {"resumed": True, "replayed": len(events)}
                    if resume_from > replay.last_seq(sess.account_id):
                        sess.private_floor = resume_from  # this gateway is behind the old one
                    sess.pending_replay = b"".join(events)
        self.accounts.setdefault(sess.account_id, set()).add(sess)
        return out

    def on_events_lost(self, reason: str) -> None:
        """Events were lost to this gateway: ask every shard to restate its books (subscribers get
        fresh snapshots) and close every logged-in session with the reason: its private stream
        has a hole it must not paper over (it reconnects and asks for its open orders)."""
        self.router.submit(encode(MsgType.L2_SNAPSHOT_REQUEST, ALL_MARKETS), [ALL_MARKETS])
        for sess in list(self.sessions):
            if sess.account_id and not sess.closed:
                sess.close(WSCloseCode.INTERNAL_ERROR, f"events lost ({reason}); reconnect and resync")

    # ---- event pump ----------------------------------------------------------------------------
    def ring_doorbells(self) -> None:
        """Write the wake-ups the order rings deferred (``RingBuffer.defer_wakes``) now."""
        for ring in self.doorbells:
            ring.flush_wakes()

    def kick(self) -> None:
        """Orders just went in: wake a parked pump so it polls for their events."""
        self.pump.kick()

    async def run_pump(self) -> None:
        """Drain the event rings for ever (see ``gateway.pump``)."""
        await self.pump.run()

    def stop_pump(self) -> None:
        """Stop the pump after its current poll."""
        self.pump.stop()

    # ---- housekeeping --------------------------------------------------------------------------
    async def run_sweeper(self, interval_s: float = 0.25) -> None:
        """Timeouts, keep-alive pings, conflation recovery, expired challenges, the health beat.

        The login timeout closes a connection that has neither logged in nor subscribed (public
        market data needs no login). A connection silent for half the idle timeout is pinged;
        one silent for the whole idle timeout did not answer and is closed."""
        o = self.options
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for sess in list(self.sessions):
                if sess.closed:
                    continue
                silent_s = now - sess.last_rx
                if not sess.account_id and not sess.subs and now - sess.connected_at > o.login_timeout_s:
                    sess.close(WSCloseCode.POLICY_VIOLATION, "login timeout (log in or subscribe)")
                elif silent_s > o.idle_timeout_s:
                    sess.close(WSCloseCode.GOING_AWAY, "idle timeout (no answer to pings)")
                elif silent_s > o.idle_timeout_s / 2 and now - sess.last_ping > o.idle_timeout_s / 4:
                    sess.ping(now)
            if self.fanout.conflating:
                self.fanout.recover_conflated()
            if self.risk_requests is not None and self.risk_requests.pending:
                self.risk_requests.expire(now)
            if self.cancel_guard.deadlines:
                self.cancel_guard.sweep(now)
            if self.replay is not None and now - self._board_at >= BOARD_EVERY_S:
                self._board_at = now
                board = self.replay.board
                if now - self._touch_at >= TOUCH_EVERY_S:  # live sessions stay "recent" everywhere
                    self._touch_at = now
                    for account in self.accounts:
                        board.touch(account)
                board.refresh()
                self.replay.prune()
            if now - self._agents_at >= AGENT_CHECK_EVERY_S:
                self._agents_at = now
                self.drop_revoked_agents()
            self.auth.purge_expired()
            self.health.beat(self.stats["frames"] + self.fanout.events)  # the event loop is alive
            m = self.metrics
            m.set("hx_sessions", len(self.sessions))
            m.set("hx_frames_total", self.stats["frames"])
            m.set("hx_orders_total", self.stats["orders"])
            m.set("hx_rejects_total", self.stats["rejects"])
            m.set("hx_events_routed_total", self.fanout.events)

    def drop_revoked_agents(self) -> None:
        """Close every live agent session whose grant is gone: a revoked agent stops trading at once
        on this gateway (the op calls this) and within a second on the others (the sweeper does),
        not only at its next login. The registry is re-read (a stat) for each agent session."""
        registry = self.auth.registry
        for sess in list(self.sessions):
            if sess.is_agent and not sess.closed:
                grant = registry.get_agent(sess.signer)
                if grant is None or grant.account_id != sess.account_id:
                    sess.close(WSCloseCode.POLICY_VIOLATION, "agent key revoked")

    def close_all(self, reason: str = "gateway shutting down") -> None:
        """Close every session with ``reason`` (shutdown)."""
        for sess in list(self.sessions):
            sess.close(WSCloseCode.GOING_AWAY, reason)


__all__ = ["BIN_PATH", "JSON_PATH", "LOOP_MODES", "GatewayOptions", "GatewayServer"]
