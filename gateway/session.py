"""One client connection: who it is, what it may do, what it subscribed to, and how it is sent to.

A session is created unauthenticated; it becomes bound to one account by a successful login and
never changes account afterwards. It owns its token buckets (orders and requests), its
subscriptions (market -> channels) and its outbound state: events gathered during one event batch
are written with one ``send`` per batch (one frame of concatenated structs on ``/v1/bin``; one text
frame per message on ``/v1/json``).

Slow consumers: after each batch the session looks at its transport's write buffer. Above
``soft_bytes`` its public channels are *conflated*: market data stops being queued, the client is
told (``{"type": "conflated"}``), and when the buffer has drained below ``soft_bytes / 4`` it gets a
fresh book snapshot per book subscription and market data resumes. Private events (acks, fills)
are never dropped; if the buffer still grows past ``hard_bytes`` the connection is closed with
1008 and a reason, the close frame queued behind the backlog (see ``close``: the client reads
everything it was sent, then the reason, never a bare TCP reset unless it stops reading). So a slow client never slows the engine, the gateway's event loop or other clients.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
from picows import WSCloseCode, WSMsgType

from gateway.protocol.json_events import error_json
from gateway.rate_limiter import TokenBucket

_ids = itertools.count(1)
CLOSE_LINGER_S = 5.0  # after the FIN, how long the client has to answer before the full close
DRAIN_POLL_S = 0.1  # how often a closing session looks at its backlog


class Session:
    """One client connection (see the module docstring)."""

    __slots__ = (
        "id",
        "transport",
        "binary",
        "peer_ip",
        "account_id",
        "address",
        "signer",
        "is_agent",
        "subs",
        "order_bucket",
        "request_bucket",
        "conflating",
        "dropped",
        "last_rx",
        "last_ping",
        "connected_at",
        "parts",
        "closed",
        "soft_bytes",
        "hard_bytes",
        "sub_key",
        "close_stall_s",
        "cancel_on_disconnect",
        "private_floor",
        "pending_replay",
        "close_max_s",
        "_closing",
        "_raw",
    )

    def __init__(
        self,
        transport: Any,
        binary: bool,
        peer_ip: str,
        order_bucket: TokenBucket,
        request_bucket: TokenBucket,
        soft_bytes: int,
        hard_bytes: int,
        close_stall_s: float = 10.0,
        close_max_s: float = 120.0,
    ) -> None:
        self.id = next(_ids)
        self.transport = transport
        self._raw = transport.underlying_transport
        self.binary = binary
        self.peer_ip = peer_ip
        self.account_id = 0
        self.address = ""
        self.signer = ""
        self.is_agent = False
        self.subs: dict[int, set[str]] = {}
        self.sub_key: dict[int, frozenset[str]] = {}
        self.order_bucket = order_bucket
        self.request_bucket = request_bucket
        self.conflating = False
        self.dropped = 0
        self.last_rx = self.connected_at = time.monotonic()
        self.last_ping = 0.0  # when the gateway last pinged this (silent) connection
        self.parts: list[Any] = []
        self.closed = False
        self.soft_bytes = soft_bytes
        self.hard_bytes = hard_bytes
        self.close_stall_s = close_stall_s  # closing: reset a reader that drains nothing this long
        self.close_max_s = close_max_s  # closing: reset a reader still not drained after this long
        self._closing: list[Any] = []
        self.cancel_on_disconnect = False  # opt-in: CANCEL_ALL for the account when this closes
        self.private_floor = 0  # resumed ahead of this gateway: skip private events up to this seq
        self.pending_replay = b""  # resume: the missed events, sent right after the login reply

    @property
    def authenticated(self) -> bool:
        """Logged in to an account."""
        return self.account_id != 0

    def ping(self, now: float) -> None:
        """A WebSocket PING: a live client answers PONG, which counts as traffic."""
        if not self.closed:
            self.last_ping = now
            self.transport.send(WSMsgType.PING, b"hx")

    def subscription_count(self) -> int:
        """Channels subscribed, over all markets."""
        return sum(len(c) for c in self.subs.values())

    def subscribe(self, market: int, channel: str) -> None:
        """Add a market's channel."""
        self.subs.setdefault(market, set()).add(channel)
        self.sub_key[market] = frozenset(self.subs[market])

    def unsubscribe(self, market: int, channel: str) -> bool:
        """Remove a market's channel; False if it was not on."""
        chans = self.subs.get(market)
        if not chans or channel not in chans:
            return False
        chans.discard(channel)
        if chans:
            self.sub_key[market] = frozenset(chans)
        else:
            del self.subs[market]
            del self.sub_key[market]
        return True

    # ---- sending -------------------------------------------------------------------------------
    def reply(self, msg: dict[str, Any], out: dict[str, Any]) -> None:
        """Send ``out`` as the answer to request ``msg`` (its ``id`` echoed when it has one)."""
        rid = msg.get("id")
        if isinstance(rid, (int, str)) and not isinstance(rid, bool):
            out["id"] = rid
        self.send_json(out)

    def error(
        self, msg: dict[str, Any] | None, code: int, detail: str = "", retry_after_s: float = 0.0
    ) -> None:
        """Answer request ``msg`` (or an unparseable frame: None) with an ``error`` naming the code."""
        self.send_json(error_json(msg, code, detail, retry_after_s))

    def buffered(self) -> int:
        """Bytes written to the transport and not yet sent."""
        try:
            return int(self._raw.get_write_buffer_size())
        except Exception:
            return 0

    def send_json(self, obj: Any) -> None:
        """Send one JSON text frame (nothing once closing)."""
        if not self.closed:
            self.transport.send(WSMsgType.TEXT, orjson.dumps(obj))

    def send_binary(self, data: bytes | bytearray) -> None:
        """Send one binary frame (nothing once closing)."""
        if not self.closed and data:
            self.transport.send(WSMsgType.BINARY, data)

    def flush(self) -> None:
        """Write what the last batch gathered: one frame on /v1/bin, one per message on JSON."""
        parts = self.parts
        if not parts or self.closed:
            parts.clear()
            return
        if self.binary:
            self.transport.send(WSMsgType.BINARY, parts[0] if len(parts) == 1 else b"".join(parts))
        else:
            send = self.transport.send
            for p in parts:
                send(WSMsgType.TEXT, p)
        parts.clear()

    def close(self, code: WSCloseCode, reason: str) -> None:
        """Close with ``code`` and ``reason``, the close frame queued behind what is unsent.

        Nothing more is queued once closing (``closed`` is set at once). The socket is half-closed
        (FIN after the backlog, so the client reads every byte and then the reason) and fully
        closed when the client answers or ``CLOSE_LINGER_S`` later. A reader that stops draining
        for ``close_stall_s``, or takes over ``close_max_s`` in all, is reset: it cannot hold a
        socket and its backlog for ever."""
        if self.closed:
            return
        self.closed = True
        self.parts.clear()
        try:
            self.transport.send_close(code, reason.encode()[:120])
        except Exception:
            pass
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (unit tests with a fake transport)
            self._shut(graceful=True)
            return
        now = time.monotonic()
        self._closing = [now, now, self.buffered()]  # started, last progress, least buffered
        loop.call_soon(self._drain_step)

    def _drain_step(self) -> None:
        raw = self._raw
        if raw.is_closing():
            return
        buffered = self.buffered()
        now = time.monotonic()
        started, progress, least = self._closing
        if buffered == 0:
            if raw.can_write_eof():
                raw.write_eof()
                asyncio.get_running_loop().call_later(CLOSE_LINGER_S, self._shut, True)
            else:
                self._shut(graceful=True)
            return
        if buffered < least:
            self._closing[1:] = [now, buffered]
        elif now - progress > self.close_stall_s:
            self._shut(graceful=False)  # the reader stopped reading: reset
            return
        if now - started > self.close_max_s:
            self._shut(graceful=False)
            return
        asyncio.get_running_loop().call_later(DRAIN_POLL_S, self._drain_step)

    def _shut(self, graceful: bool) -> None:
        try:
            self.transport.disconnect(graceful=graceful)
        except Exception:
            pass
