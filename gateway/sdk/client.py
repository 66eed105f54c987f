"""Asyncio client for the hx gateway, on picows, for both protocols: the facade.

    async with HxClient("ws://127.0.0.1:8765", protocol="bin") as c:
        await c.login(private_key)                      # or login(agent_key, account=main_address)
        ack = await c.place(1, "buy", "100.5", "0.01")  # Decimal strings, or ints = ticks / lots
        book = await c.subscribe_book(1)                # LocalBook kept in sync (gap -> resync)
        await c.cancel(1, order_id=ack.order_id)

The work is split by concern: ``gateway.sdk.codec`` (orders to bytes/JSON, events to typed
events), ``gateway.sdk.requests`` (which future an answer resolves), ``gateway.sdk.event_queue``
(every event, typed, in arrival order) and ``gateway.sdk.local_book``. A refusal raises a
:class:`~gateway.sdk.errors.RequestRejected` subclass carrying the RejectCode; a closed connection
fails every pending request with :class:`~gateway.sdk.errors.ConnectionClosed`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
from eth_account import Account
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from engine.types.enums import MsgType
from gateway.protocol.market_info import MarketInfo
from gateway.protocol.signing import agent_typed_data, login_typed_data, sign_typed_data
from gateway.protocol.units import JsonReject
from gateway.protocol.vocabulary import PRIVATE_EVENTS
from gateway.sdk.codec import ACCOUNT_EVENTS, L2, ORDER_EVENTS, SdkCodec, typed_event
from gateway.sdk.errors import ConnectionClosed, HxError, LoginFailed, OrderRejected, RequestRejected
from gateway.sdk.event_queue import EventQueue
from gateway.sdk.events import (
    Disconnected,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderState,
    Reconnected,
)
from gateway.sdk.local_book import LocalBook
from gateway.sdk.requests import PendingRequests, order_key

_ACCEPTED, _REJECTED = int(MsgType.ACCEPTED), int(MsgType.REJECTED)
_LIQUIDATION = int(MsgType.LIQUIDATION)
_CANCELLED, _AMENDED = int(MsgType.CANCELLED), int(MsgType.AMENDED)


class _Listener(WSListener):  # type: ignore[misc]
    def __init__(self, client: HxClient) -> None:
        self.client = client

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt == WSMsgType.BINARY:
            self.client._on_binary(frame.get_payload_as_bytes())
        elif mt == WSMsgType.TEXT:
            self.client._on_text(frame.get_payload_as_bytes())
        elif mt == WSMsgType.CLOSE:
            self.client._close_info = (
                frame.get_close_code().value if frame.get_close_code() else 1005,
                (frame.get_close_message() or b"").decode("utf-8", "replace"),
            )
        elif mt == WSMsgType.PING:
            transport.send(WSMsgType.PONG, frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.client._on_disconnected()


class HxClient:
    """One connection to a gateway (``protocol`` ``bin`` or ``json``)."""

    def __init__(
        self,
        url: str = "ws://127.0.0.1:8765",
        protocol: str = "bin",
        chain_id: int | None = None,
        timeout_s: float = 10.0,
        keep_events: bool = True,
        reconnect: bool = False,
        reconnect_max_delay_s: float = 5.0,
        resume: bool = True,
        reconnect_delay_s: float = 0.05,
    ) -> None:
        """``reconnect=True``: after a close the client reconnects (backoff up to
        ``reconnect_max_delay_s``), logs in again with the same key, resubscribes, and queues a
        :class:`Reconnected` marker; every close queues a :class:`Disconnected` marker first.
        ``resume``: the new login asks to resume the private stream after ``last_private_seq``
        (``Reconnected.resumed`` says whether the gateway could; if not, resync with
        ``open_orders``)."""
        if protocol not in ("bin", "json"):
            raise ValueError("protocol must be 'bin' or 'json'")
        self.base_url = url.rstrip("/")
        self.protocol = protocol
        self.binary = protocol == "bin"
        self.chain_id = chain_id
        self.timeout_s = timeout_s
        self.keep_events = keep_events
        self.transport: WSTransport | None = None
        self.codec = SdkCodec()
        self.account = ""
        self.account_id = 0
        self.is_agent = False
        self.events = EventQueue(keep_events)
        self.control: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # unsolicited control messages
        self.books: dict[int, LocalBook] = {}
        self.order_ids: dict[int, int] = {}  # client_order_id -> order_id (from ACCEPTED)
        self.pending = PendingRequests()
        self._coids = itertools.count(1)
        self._close_info: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._key: Any = None
        self._login_account: str | None = None
        self._drop_deltas: dict[int, int] = {}
        self.reconnect = reconnect
        self.reconnect_max_delay_s = reconnect_max_delay_s
        self.reconnect_delay_s = reconnect_delay_s  # the first wait; doubles up to the maximum
        self.subscriptions: dict[tuple[int, str], None] = {}  # (market, channel), in order
        self._user_closed = False
        self._reconnector: asyncio.Task[None] | None = None
        self.resume = resume
        self.last_private_seq = 0  # the private stream's last seq seen (per account, with risk)
        self.login_reply: dict[str, Any] = {}

    # ---- connection ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The WebSocket URL of this client's protocol path."""
        return f"{self.base_url}/v1/{self.protocol}"

    async def connect(self) -> HxClient:
        """Open the connection and load the market list."""
        self.transport, _ = await ws_connect(
            lambda: _Listener(self), self.url, enable_auto_pong=False, max_frame_size=64 << 20
        )
        self.codec.load_markets(await self.request({"op": "markets"}))
        return self

    async def close(self) -> None:
        """Close for good (no reconnect)."""
        self._user_closed = True
        if self._reconnector is not None and not self._reconnector.done():
            self._reconnector.cancel()
        if self.transport is not None and not self._closed.is_set():
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()
            try:
                await asyncio.wait_for(self._closed.wait(), 2.0)
            except TimeoutError:
                pass

    async def __aenter__(self) -> HxClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True while disconnected (a reconnecting client is closed until it is back)."""
        return self._closed.is_set()

    @property
    def close_info(self) -> tuple[int, str] | None:
        """(close code, reason) the gateway sent, if it closed the connection."""
        return self._close_info

    async def wait_closed(self, timeout_s: float | None = None) -> None:
        """Wait until the connection closes (TimeoutError after ``timeout_s``)."""
        await asyncio.wait_for(self._closed.wait(), timeout_s)

    def _on_disconnected(self) -> None:
        self._closed.set()
        code, reason = self._close_info or (1006, "connection lost")
        self.pending.fail_all(ConnectionClosed(code, reason))
        for book in self.books.values():
            book.on_disconnected()
        self.events.put_nowait(Disconnected(code, reason))  # markers are queued even without keep
        reconnecting = self._reconnector is not None and not self._reconnector.done()
        if self.reconnect and not self._user_closed and not reconnecting:
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        """Reconnect with exponential backoff, log in again, resubscribe; then a Reconnected marker."""
        delay, attempts = self.reconnect_delay_s, 0
        while not self._user_closed:
            attempts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_delay_s)
            try:
                resumed = await self._reopen()
            except (OSError, HxError, TimeoutError) as exc:
                if self.transport is not None and not self._closed.is_set():
                    self.transport.disconnect()
                del exc
                continue
            self.events.put_nowait(Reconnected(attempts, resumed))
            return

    async def _reopen(self) -> bool:
        """One reconnect attempt: connect, log in, resubscribe. Returns whether the stream resumed."""
        self._close_info = None
        self._closed = asyncio.Event()
        await self.connect()
        resumed = False
        if self._key is not None:
            after = self.last_private_seq if self.resume and self.last_private_seq else None
            await self.login(self._key, self._login_account, resume_from=after)
            resumed = bool(self.login_reply.get("resumed"))
        for market, channel in list(self.subscriptions):
            await self.request({"op": "subscribe", "market": market, "channel": channel})
        return resumed

    def _send_json(self, msg: dict[str, Any]) -> None:
        if self.transport is None or self.closed:
            raise ConnectionClosed(*(self._close_info or (1006, "not connected")))
        self.transport.send(WSMsgType.TEXT, orjson.dumps(msg))

    def send_raw(self, data: bytes, text: bool = False) -> None:
        """Send a frame as is (tests and tools)."""
        if self.transport is None or self.closed:
            raise ConnectionClosed(*(self._close_info or (1006, "not connected")))
        self.transport.send(WSMsgType.TEXT if text else WSMsgType.BINARY, data)

    async def request(self, msg: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send a control op and wait for its reply; RequestRejected on an error reply."""
        rid, fut = self.pending.new_request()
        try:
            self._send_json({**msg, "id": rid})
            return await asyncio.wait_for(fut, timeout_s or self.timeout_s)
        finally:
            self.pending.requests.pop(rid, None)

    async def _await(self, fut: asyncio.Future[Any], pending: dict[Any, Any], key: Any) -> Any:
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        finally:
            pending.pop(key, None)

    # ---- auth ----------------------------------------------------------------------------------
    async def resolve(self, market: int, outcome: str, action: str = "propose") -> dict[str, Any]:
        """As the resolution authority: propose (or dispute) ``"yes"``/``"no"``. The oracle's answer
        arrives as an event: a ResolutionStatus, or an OrderRejectedEvent with a 4xx code."""
        return await self.request({"op": "resolve", "market": market, "outcome": outcome, "action": action})

    async def faucet(self, asset: str, amount: str, address: str | None = None) -> dict[str, Any]:
        """Development only: credit ``amount`` of ``asset`` to ``address`` (default: this login)."""
        return await self.request(
            {"op": "faucet", "address": address or self.account, "asset": asset, "amount": amount}
        )

    async def login(
        self, private_key: str | bytes, account: str | None = None, resume_from: int | None = None
    ) -> int:
        """Log in with the account's key, or with an agent key for ``account``; returns the account id.

        ``resume_from``: the last private seq processed; the gateway first replays what came after
        it (``login_reply["resumed"]`` says whether it could)."""
        signer = Account.from_key(private_key).address.lower()
        account = (account or signer).lower()
        ch = await self.request({"op": "challenge"})
        chain_id = self.chain_id if self.chain_id is not None else ch["chain_id"]
        typed = login_typed_data(chain_id, account, signer, ch["nonce"], ch["expires_at"])
        msg: dict[str, Any] = {
            "op": "login",
            "account": account,
            "signer": signer,
            "nonce": ch["nonce"],
            "signature": sign_typed_data(private_key, typed),
        }
        if resume_from is not None:
            msg["resume_from"] = resume_from
        try:
            reply = await self.request(msg)
        except RequestRejected as exc:
            raise LoginFailed(exc.code, exc.message) from None
        self._key = private_key
        self._login_account = account
        self.login_reply = reply
        self.account, self.account_id, self.is_agent = reply["account"], reply["account_id"], reply["agent"]
        return self.account_id

    async def approve_agent(self, agent_address: str, nonce: int | None = None, revoke: bool = False) -> None:
        """Authorise (or revoke) an agent key for this account; needs a main-key login."""
        if self._key is None:
            raise HxError("log in with the main key first")
        nonce = nonce if nonce is not None else time.time_ns() // 1000
        kind = "RevokeAgent" if revoke else "ApproveAgent"
        typed = agent_typed_data(self.chain_id or 31337, kind, self.account, agent_address.lower(), nonce)
        try:
            await self.request(
                {
                    "op": "revoke_agent" if revoke else "approve_agent",
                    "agent": agent_address,
                    "nonce": nonce,
                    "signature": sign_typed_data(self._key, typed),
                }
            )
        except RequestRejected as exc:
            raise LoginFailed(exc.code, exc.message) from None

    async def what_if(self, portfolio: dict[str, Any]) -> dict[str, Any]:
        """The exchange's portfolio maths on a hypothetical portfolio (``hx risk what-if``'s
        document and answer); RequestRejected with ``field`` naming a bad entry."""
        reply = await self.request({"op": "what_if", "portfolio": portfolio})
        result: dict[str, Any] = reply["result"]
        return result

    async def open_orders(self, market: int | None = None) -> list[OrderState]:
        """The account's open (or pending) orders as risk knows them (risk in the path only)."""
        msg: dict[str, Any] = {"op": "open_orders"}
        if market is not None:
            msg["market"] = market
        reply = await self.request(msg)
        return [typed_event(int(MsgType.ORDER_STATE), self._state_fields(o)) for o in reply["orders"]]

    async def order_status(
        self, market: int, order_id: int = 0, client_order_id: int = 0
    ) -> OrderState | None:
        """One order: its OrderState if open or pending, None if not open (filled, cancelled,
        rejected or never placed: the private stream tells which)."""
        msg: dict[str, Any] = {"op": "order_status", "market": market}
        if order_id:
            msg["order_id"] = order_id
        if client_order_id:
            msg["client_order_id"] = client_order_id
        reply = await self.request(msg)
        order = reply.get("order")
        return None if order is None else typed_event(int(MsgType.ORDER_STATE), self._state_fields(order))

    def _state_fields(self, order: dict[str, Any]) -> dict[str, Any]:
        return self.codec.order_state_fields(order)  # replies carry decimals on both protocols

    async def set_leverage(self, market: int, leverage: int, mode: str = "cross") -> dict[str, Any]:
        """Choose the account's leverage and margin mode in a perp market; RequestRejected
        (LEVERAGE_OUT_OF_RANGE, UNKNOWN_MARKET, ...) if risk refuses it."""
        return await self.request(
            {"op": "set_leverage", "market": market, "leverage": leverage, "mode": mode}
        )

    async def adjust_margin(self, market: int, amount: str) -> dict[str, Any]:
        """Move USDC into (``"25.5"``) or out of (``"-10"``) the account's isolated position in a
        perp; RequestRejected (NO_ISOLATED_POSITION, INSUFFICIENT_MARGIN, ...) if risk refuses."""
        return await self.request({"op": "adjust_margin", "market": market, "amount": amount})

    # ---- orders --------------------------------------------------------------------------------
    @property
    def markets(self) -> dict[int, MarketInfo]:
        """Markets by id (tick and lot sizes) from the ``markets`` reply."""
        return self.codec.markets

    @property
    def asset_ids(self) -> dict[str, int]:
        """Asset symbol -> asset id."""
        return self.codec.asset_ids

    @property
    def asset_scales(self) -> dict[int, int]:
        """Asset id -> quantity units per whole unit (USDC 1e6, others 1e8)."""
        return self.codec.asset_scales

    def new_order_struct(self, market: int, side: str | int, price: Any, size: Any, **kw: Any) -> bytes:
        """One NEW_ORDER struct for ``/v1/bin`` (see :meth:`SdkCodec.new_order_struct`)."""
        return self.codec.new_order_struct(market, side, price, size, **kw)

    def next_client_order_id(self) -> int:
        """A fresh client order id (1, 2, ... per client)."""
        return next(self._coids)

    def _place_json(self, market: int, side: str, price: Any, size: Any, coid: int, **kw: Any) -> None:
        msg: dict[str, Any] = {
            "op": "place",
            "market": market,
            "side": side,
            "price": self.codec.decimal(market, price, "price"),
            "size": self.codec.decimal(market, size, "size"),
            "client_order_id": coid,
        }
        trigger = kw.pop("trigger_price", None)
        if "order_type" in kw:
            kw["type"] = kw.pop("order_type")
        msg.update(kw)
        if trigger is not None:
            msg["trigger_price"] = self.codec.decimal(market, trigger, "trigger_price")
        self._send_json(msg)

    async def place(
        self,
        market: int,
        side: str,
        price: Any,
        size: Any,
        *,
        client_order_id: int | None = None,
        tif: str = "gtc",
        order_type: str = "limit",
        post_only: bool = False,
        post_only_slide: bool = False,
        reduce_only: bool = False,
        stp: str = "none",
        trigger_price: Any = None,
        expire_ns: int = 0,
    ) -> OrderAccepted:
        """Place one order; returns its ACCEPTED (with the exchange order id) or raises OrderRejected."""
        coid = client_order_id or self.next_client_order_id()
        opts: dict[str, Any] = dict(
            tif=tif,
            order_type=order_type,
            post_only=post_only,
            post_only_slide=post_only_slide,
            reduce_only=reduce_only,
            stp=stp,
            trigger_price=trigger_price,
            expire_ns=expire_ns,
        )
        if self.binary:
            frame = self.codec.new_order_struct(market, side, price, size, client_order_id=coid, **opts)
            fut = self.pending.new_place(coid)
            self.send_raw(frame)
        else:
            fut = self.pending.new_place(coid)
            self._place_json(market, side, price, size, coid, **opts)
        result: OrderAccepted = await self._await(fut, self.pending.places, coid)
        return result

    async def place_many(self, orders: list[dict[str, Any]]) -> list[OrderAccepted | RequestRejected]:
        """Bulk place (one binary frame on /v1/bin); each result is an ack or the reject error."""
        futs = []
        structs = []
        for o in orders:
            o = dict(o)
            coid = o.pop("client_order_id", None) or self.next_client_order_id()
            futs.append(self.pending.new_place(coid))
            market, side, price, size = o.pop("market"), o.pop("side"), o.pop("price"), o.pop("size")
            if self.binary:
                structs.append(
                    self.codec.new_order_struct(market, side, price, size, client_order_id=coid, **o)
                )
            else:
                self._place_json(market, side, price, size, coid, **o)
        if structs:
            self.send_raw(b"".join(structs))
        results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), self.timeout_s)
        return list(results)  # type: ignore[arg-type]

    async def cancel(self, market: int, order_id: int = 0, client_order_id: int = 0) -> OrderCancelled:
        """Cancel by exchange order id, or by client order id; returns the CANCELLED event."""
        key = order_key(order_id, client_order_id)
        fut = self.pending.new_cancel(key)
        if self.binary:
            self.send_raw(self.codec.cancel_struct(market, order_id, client_order_id))
        else:
            msg: dict[str, Any] = {"op": "cancel", "market": market}
            if order_id:
                msg["order_id"] = order_id
            if client_order_id:
                msg["client_order_id"] = client_order_id
            self._send_json(msg)
        result: OrderCancelled = await self._await(fut, self.pending.cancels, key)
        return result

    async def amend(
        self, market: int, order_id: int = 0, client_order_id: int = 0, price: Any = None, size: Any = None
    ) -> OrderAmended:
        """Change price and/or total size; returns the AMENDED event."""
        key = order_key(order_id, client_order_id)
        fut = self.pending.new_amend(key)
        if self.binary:
            self.send_raw(self.codec.amend_struct(market, order_id, client_order_id, price, size))
        else:
            msg: dict[str, Any] = {"op": "amend", "market": market}
            if order_id:
                msg["order_id"] = order_id
            if client_order_id:
                msg["client_order_id"] = client_order_id
            if price is not None:
                msg["price"] = self.codec.decimal(market, price, "price")
            if size is not None:
                msg["size"] = self.codec.decimal(market, size, "size")
            self._send_json(msg)
        result: OrderAmended = await self._await(fut, self.pending.amends, key)
        return result

    def cancel_all(self, market: int | None = None) -> None:
        """Cancel every open order (in one market, or all); the CANCELLED events follow in ``events``."""
        if self.binary:
            self.send_raw(self.codec.cancel_all_struct(market))
        else:
            msg: dict[str, Any] = {"op": "cancel_all"}
            if market is not None:
                msg["market"] = market
            self._send_json(msg)

    # ---- market data ---------------------------------------------------------------------------
    async def subscribe(self, market: int, channel: str) -> None:
        """Subscribe (public data needs no login); a reconnecting client subscribes again."""
        await self.request({"op": "subscribe", "market": market, "channel": channel})
        self.subscriptions[(market, channel)] = None

    async def unsubscribe(self, market: int, channel: str) -> None:
        """Stop a channel of a market (NOT_SUBSCRIBED if it was not on)."""
        await self.request({"op": "unsubscribe", "market": market, "channel": channel})
        self.subscriptions.pop((market, channel), None)

    async def subscribe_book(self, market: int) -> LocalBook:
        """A LocalBook kept in sync from snapshot + deltas (resyncs itself on a gap)."""
        book = self.books.get(market)
        if book is None:
            book = self.books[market] = LocalBook(market, self._request_snapshot)
        await self.subscribe(market, "book")
        await book.wait_synced(self.timeout_s)
        return book

    def _request_snapshot(self, market: int) -> None:
        if not self.closed:
            self._send_json({"op": "snapshot", "market": market})

    def drop_next_deltas(self, market: int, count: int = 1) -> None:
        """Testing aid: discard the next ``count`` deltas of ``market`` as if the network lost them."""
        self._drop_deltas[market] = self._drop_deltas.get(market, 0) + count

    # ---- inbound -------------------------------------------------------------------------------
    def _on_binary(self, data: bytes) -> None:
        for t, e in self.codec.wire_events(data):
            self._on_wire(t, e)

    def _on_wire(self, t: int, e: dict[str, Any]) -> None:
        """One event in wire units (either protocol): books, pending requests, then the queue."""
        if t == L2:
            self._on_delta(e)
            return
        ev = typed_event(t, e)
        if ev is None:
            return
        if t in PRIVATE_EVENTS and e["seq"] and (t != _LIQUIDATION or e["account"]):
            self.last_private_seq = e["seq"]
        if t == _ACCEPTED:
            self.order_ids[ev.client_order_id] = ev.order_id
            self.pending.placed(ev.client_order_id, ev)
        elif t == _REJECTED:
            retry = e["ts_ns"] / 1e9 if e["seq"] == 0 else 0.0
            err = OrderRejected(
                e["reason"],
                retry_after_s=retry,
                seq=e["seq"],
                client_order_id=e["client_order_id"],
                order_id=e["order_id"],
            )
            self.pending.rejected(e["command"], e["order_id"], e["client_order_id"], err)
        elif t == _CANCELLED:
            self.pending.cancelled(ev.order_id, ev.client_order_id, ev)
        elif t == _AMENDED:
            self.pending.amended(ev.order_id, ev.client_order_id, ev)
        self.events.push(ev)

    def _on_delta(self, e: dict[str, Any]) -> None:
        market = e["market_id"]
        drop = self._drop_deltas.get(market)
        if drop:
            self._drop_deltas[market] = drop - 1
            return
        book = self.books.get(market)
        if book is not None:
            book.on_delta(
                e["seq"], e["prev_seq"], e["side"], e["price_ticks"], e["size_lots"], e["order_count"]
            )

    def _on_text(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        typ = msg.get("type")
        rid = msg.get("id")
        if typ == "error" or (typ == "rejected" and rid is not None and "client_order_id" not in msg):
            err = RequestRejected(
                msg.get("code", 0), msg.get("message", ""), msg.get("retry_after_ms", 0) / 1000
            )
            err.field = msg.get("field", "")
            if not self.pending.refuse(rid, err):
                self.control.put_nowait(msg)
            return
        if rid is not None and self.pending.answer(rid, msg) and typ != "snapshot":
            return
        if typ == "snapshot":
            self._on_snapshot(msg)
        elif typ == "conflated":
            for m in msg.get("markets", []):
                if m in self.books:
                    self.books[m].in_sync = False  # the gateway sends a snapshot when we catch up
            self.control.put_nowait(msg)
        elif typ in ORDER_EVENTS or typ in ACCOUNT_EVENTS:
            try:
                self._on_json_event(typ, msg)
            except (KeyError, ValueError, TypeError, HxError, JsonReject):
                # an event this SDK cannot read (a newer gateway?): hand it over raw, never drop
                # the connection over it
                self.control.put_nowait({"type": "undecodable", "event": msg})
        else:
            self.control.put_nowait(msg)

    def _on_json_event(self, typ: str, msg: dict[str, Any]) -> None:
        if typ in ACCOUNT_EVENTS:
            ev = self.codec.json_account_event(typ, msg)
            if ev.seq:
                self.last_private_seq = ev.seq
            self.events.push(ev)
            return
        decoded = self.codec.json_order_event(typ, msg)
        if decoded is not None:
            self._on_wire(*decoded)

    def _on_snapshot(self, msg: dict[str, Any]) -> None:
        m = msg["market"]
        book = self.books.get(m)
        if book is None:
            return
        if self.binary:
            bids, asks = msg["bids"], msg["asks"]
        else:
            units = self.codec.units
            bids = [(units(m, p, "price"), units(m, s, "size"), c) for p, s, c in msg["bids"]]
            asks = [(units(m, p, "price"), units(m, s, "size"), c) for p, s, c in msg["asks"]]
        book.on_snapshot(msg["seq"], bids, asks)
