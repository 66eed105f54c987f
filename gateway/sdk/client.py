"""Asyncio client for the hx gateway, on picows, for both protocols.

    async with HxClient("ws://127.0.0.1:8765", protocol="bin") as c:
        await c.login(private_key)                      # or login(agent_key, account=main_address)
        ack = await c.place(1, "buy", "100.5", "0.01")  # Decimal strings, or ints = ticks / lots
        book = await c.subscribe_book(1)                # LocalBook kept in sync (gap -> resync)
        await c.cancel(1, order_id=ack.order_id)

Requests are matched to replies by id (control ops), by ``client_order_id`` (place: ACCEPTED or
REJECTED) and by order id / client order id (cancel: CANCELLED; amend: AMENDED). A refusal raises
a :class:`~gateway.sdk.errors.RequestRejected` subclass carrying the RejectCode. Every private
event also lands in ``events`` (an asyncio.Queue of typed events) unless ``keep_events=False``.
"""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any

import orjson
from eth_account import Account
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from engine.types.commands import Amend, Cancel, CancelAll, NewOrder, encode_command
from engine.types.enums import STP_SHIFT, BalanceReason, MsgType, OrderFlag, RejectCode
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, to_fixed
from engine.wire.codec import decode
from engine.wire.layout import ALL_MARKETS, SLOT_BYTES
from gateway.protocol.market_info import MarketInfo
from gateway.protocol.signing import agent_typed_data, login_typed_data, sign_typed_data
from gateway.protocol.units import JsonReject, from_units, to_units
from gateway.protocol.vocabulary import ORDER_TYPES, SIDES, STP_MODES, TIFS
from gateway.sdk.errors import ConnectionClosed, HxError, LoginFailed, OrderRejected, RequestRejected
from gateway.sdk.events import (
    Balance,
    Bbo,
    Fill,
    Margin,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderRejectedEvent,
    Position,
    Trade,
)
from gateway.sdk.local_book import LocalBook

_BALANCE_REASONS = {r.name.lower(): int(r) for r in BalanceReason}
_L2, _TRADE, _BBO = int(MsgType.L2_DELTA), int(MsgType.TRADE), int(MsgType.BBO)


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
    def __init__(
        self,
        url: str = "ws://127.0.0.1:8765",
        protocol: str = "bin",
        chain_id: int | None = None,
        timeout_s: float = 10.0,
        keep_events: bool = True,
    ) -> None:
        if protocol not in ("bin", "json"):
            raise ValueError("protocol must be 'bin' or 'json'")
        self.base_url = url.rstrip("/")
        self.protocol = protocol
        self.binary = protocol == "bin"
        self.chain_id = chain_id
        self.timeout_s = timeout_s
        self.keep_events = keep_events
        self.transport: WSTransport | None = None
        self.markets: dict[int, MarketInfo] = {}
        self.account = ""
        self.account_id = 0
        self.is_agent = False
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.control: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # unsolicited control messages
        self.books: dict[int, LocalBook] = {}
        self.order_ids: dict[int, int] = {}  # client_order_id -> order_id (from ACCEPTED)
        self.asset_ids: dict[str, int] = {}  # symbol -> asset id (from the markets reply)
        self.asset_scales: dict[int, int] = {}  # asset id -> units per whole unit
        self._ids = itertools.count(1)
        self._coids = itertools.count(1)
        self._requests: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._places: dict[int, asyncio.Future[OrderAccepted]] = {}
        self._cancels: dict[tuple[str, int], asyncio.Future[OrderCancelled]] = {}
        self._amends: dict[tuple[str, int], asyncio.Future[OrderAmended]] = {}
        self._close_info: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._key: Any = None
        self._drop_deltas: dict[int, int] = {}

    # ---- connection ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/{self.protocol}"

    async def connect(self) -> HxClient:
        self.transport, _ = await ws_connect(
            lambda: _Listener(self), self.url, enable_auto_pong=False, max_frame_size=64 << 20
        )
        reply = await self.request({"op": "markets"})
        for a in reply.get("assets", []):
            self.asset_ids[a["symbol"]] = a["asset"]
            self.asset_scales[a["asset"]] = a["scale"]
        for m in reply["markets"]:
            self.markets[m["market"]] = MarketInfo(
                m["market"], m["symbol"], Decimal(m["tick_size"]), Decimal(m["lot_size"])
            )
        return self

    async def close(self) -> None:
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
        return self._closed.is_set()

    @property
    def close_info(self) -> tuple[int, str] | None:
        """(close code, reason) the gateway sent, if it closed the connection."""
        return self._close_info

    async def wait_closed(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._closed.wait(), timeout_s)

    def _on_disconnected(self) -> None:
        self._closed.set()
        code, reason = self._close_info or (1006, "connection lost")
        err = ConnectionClosed(code, reason)
        for group in (self._requests, self._places, self._cancels, self._amends):
            for fut in group.values():  # type: ignore[attr-defined]
                if not fut.done():
                    fut.set_exception(err)
            group.clear()  # type: ignore[attr-defined]

    def _send_json(self, msg: dict[str, Any]) -> None:
        if self.transport is None or self.closed:
            raise ConnectionClosed(*(self._close_info or (1006, "not connected")))
        self.transport.send(WSMsgType.TEXT, orjson.dumps(msg))

    def send_raw(self, data: bytes, text: bool = False) -> None:
        """Send a frame as is (tests and tools)."""
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT if text else WSMsgType.BINARY, data)

    async def request(self, msg: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send a control op and wait for its reply; RequestRejected on an error reply."""
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        self._send_json({**msg, "id": rid})
        try:
            return await asyncio.wait_for(fut, timeout_s or self.timeout_s)
        finally:
            self._requests.pop(rid, None)

    # ---- auth ----------------------------------------------------------------------------------
    async def faucet(self, asset: str, amount: str, address: str | None = None) -> dict[str, Any]:
        """Development only: credit ``amount`` of ``asset`` to ``address`` (default: this login)."""
        return await self.request(
            {"op": "faucet", "address": address or self.account, "asset": asset, "amount": amount}
        )

    async def login(self, private_key: str | bytes, account: str | None = None) -> int:
        """Log in with the account's key, or with an agent key for ``account``; returns the account id."""
        signer = Account.from_key(private_key).address.lower()
        account = (account or signer).lower()
        ch = await self.request({"op": "challenge"})
        chain_id = self.chain_id if self.chain_id is not None else ch["chain_id"]
        typed = login_typed_data(chain_id, account, signer, ch["nonce"], ch["expires_at"])
        try:
            reply = await self.request(
                {
                    "op": "login",
                    "account": account,
                    "signer": signer,
                    "nonce": ch["nonce"],
                    "signature": sign_typed_data(private_key, typed),
                }
            )
        except RequestRejected as exc:
            raise LoginFailed(exc.code, exc.message) from None
        self._key = private_key
        self.account, self.account_id, self.is_agent = reply["account"], reply["account_id"], reply["agent"]
        return self.account_id

    async def approve_agent(self, agent_address: str, nonce: int | None = None, revoke: bool = False) -> None:
        """Authorise (or revoke) an agent key for this account; needs a main-key login."""
        if self._key is None:
            raise HxError("log in with the main key first")
        import time

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

    # ---- orders --------------------------------------------------------------------------------
    def _ticks(self, market: int, value: Any, field: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        info = self.markets.get(market)
        if info is None:
            raise OrderRejected(RejectCode.UNKNOWN_MARKET, f"unknown market {market}")
        unit = info.tick_size if "price" in field else info.lot_size
        try:
            return to_units(str(value), unit, field, allow_zero=True)
        except JsonReject as exc:
            raise OrderRejected(exc.code, exc.detail) from None

    def _decimal(self, market: int, value: Any, field: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            info = self.markets.get(market)
            if info is None:
                raise OrderRejected(RejectCode.UNKNOWN_MARKET, f"unknown market {market}")
            return from_units(value, info.tick_size if "price" in field else info.lot_size)
        return str(value)

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
        side_v = side if isinstance(side, int) else SIDES[side.lower()]
        flags = (
            (OrderFlag.POST_ONLY if post_only else 0)
            | (OrderFlag.POST_ONLY_SLIDE if post_only_slide else 0)
            | (OrderFlag.REDUCE_ONLY if reduce_only else 0)
            | (int(STP_MODES[stp]) << STP_SHIFT)
        )
        trig = 0 if trigger_price is None else self._ticks(market, trigger_price, "trigger_price")
        return encode_command(
            NewOrder(
                market_id=market,
                client_order_id=client_order_id,
                price_ticks=self._ticks(market, price, "price"),
                size_lots=self._ticks(market, size, "size"),
                trigger_price_ticks=trig,
                expire_ns=expire_ns,
                side=side_v,
                tif=TIFS[tif.lower()],
                order_type=ORDER_TYPES[order_type.lower()],
                flags=flags,
            )
        )

    def next_client_order_id(self) -> int:
        return next(self._coids)

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
        fut: asyncio.Future[OrderAccepted] = asyncio.get_running_loop().create_future()
        if self.binary:
            frame = self.new_order_struct(
                market,
                side,
                price,
                size,
                client_order_id=coid,
                tif=tif,
                order_type=order_type,
                post_only=post_only,
                post_only_slide=post_only_slide,
                reduce_only=reduce_only,
                stp=stp,
                trigger_price=trigger_price,
                expire_ns=expire_ns,
            )
            self._places[coid] = fut
            self.send_raw(frame)
        else:
            self._places[coid] = fut
            msg: dict[str, Any] = {
                "op": "place",
                "market": market,
                "side": side,
                "price": self._decimal(market, price, "price"),
                "size": self._decimal(market, size, "size"),
                "client_order_id": coid,
                "tif": tif,
                "type": order_type,
                "post_only": post_only,
                "post_only_slide": post_only_slide,
                "reduce_only": reduce_only,
                "stp": stp,
                "expire_ns": expire_ns,
            }
            if trigger_price is not None:
                msg["trigger_price"] = self._decimal(market, trigger_price, "trigger_price")
            self._send_json(msg)
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        finally:
            self._places.pop(coid, None)

    async def place_many(self, orders: list[dict[str, Any]]) -> list[OrderAccepted | RequestRejected]:
        """Bulk place (one binary frame on /v1/bin); each result is an ack or the reject error."""
        loop = asyncio.get_running_loop()
        futs = []
        structs = []
        for o in orders:
            o = dict(o)
            coid = o.pop("client_order_id", None) or self.next_client_order_id()
            fut: asyncio.Future[OrderAccepted] = loop.create_future()
            self._places[coid] = fut
            futs.append(fut)
            if self.binary:
                structs.append(
                    self.new_order_struct(
                        o.pop("market"),
                        o.pop("side"),
                        o.pop("price"),
                        o.pop("size"),
                        client_order_id=coid,
                        **o,
                    )
                )
            else:
                m = o.pop("market")
                self._send_json(
                    {
                        "op": "place",
                        "market": m,
                        "side": o.pop("side"),
                        "price": self._decimal(m, o.pop("price"), "price"),
                        "size": self._decimal(m, o.pop("size"), "size"),
                        "client_order_id": coid,
                        **o,
                    }
                )
        if structs:
            self.send_raw(b"".join(structs))
        results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), self.timeout_s)
        return list(results)  # type: ignore[arg-type]

    async def cancel(self, market: int, order_id: int = 0, client_order_id: int = 0) -> OrderCancelled:
        """Cancel by exchange order id, or by client order id; returns the CANCELLED event."""
        key = ("o", order_id) if order_id else ("c", client_order_id)
        fut: asyncio.Future[OrderCancelled] = asyncio.get_running_loop().create_future()
        self._cancels[key] = fut
        if self.binary:
            self.send_raw(
                encode_command(Cancel(market_id=market, order_id=order_id, client_order_id=client_order_id))
            )
        else:
            msg: dict[str, Any] = {"op": "cancel", "market": market}
            if order_id:
                msg["order_id"] = order_id
            if client_order_id:
                msg["client_order_id"] = client_order_id
            self._send_json(msg)
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        finally:
            self._cancels.pop(key, None)

    async def amend(
        self, market: int, order_id: int = 0, client_order_id: int = 0, price: Any = None, size: Any = None
    ) -> OrderAmended:
        """Change price and/or total size; returns the AMENDED event."""
        key = ("o", order_id) if order_id else ("c", client_order_id)
        fut: asyncio.Future[OrderAmended] = asyncio.get_running_loop().create_future()
        self._amends[key] = fut
        if self.binary:
            self.send_raw(
                encode_command(
                    Amend(
                        market_id=market,
                        order_id=order_id,
                        client_order_id=client_order_id,
                        price_ticks=0 if price is None else self._ticks(market, price, "price"),
                        size_lots=0 if size is None else self._ticks(market, size, "size"),
                    )
                )
            )
        else:
            msg: dict[str, Any] = {"op": "amend", "market": market}
            if order_id:
                msg["order_id"] = order_id
            if client_order_id:
                msg["client_order_id"] = client_order_id
            if price is not None:
                msg["price"] = self._decimal(market, price, "price")
            if size is not None:
                msg["size"] = self._decimal(market, size, "size")
            self._send_json(msg)
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        finally:
            self._amends.pop(key, None)

    def cancel_all(self, market: int | None = None) -> None:
        """Cancel every open order (in one market, or all); the CANCELLED events follow in ``events``."""
        if self.binary:
            self.send_raw(encode_command(CancelAll(market_id=ALL_MARKETS if market is None else market)))
        else:
            msg: dict[str, Any] = {"op": "cancel_all"}
            if market is not None:
                msg["market"] = market
            self._send_json(msg)

    # ---- market data ---------------------------------------------------------------------------
    async def subscribe(self, market: int, channel: str) -> None:
        await self.request({"op": "subscribe", "market": market, "channel": channel})

    async def unsubscribe(self, market: int, channel: str) -> None:
        await self.request({"op": "unsubscribe", "market": market, "channel": channel})

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
        for off in range(0, len(data) - SLOT_BYTES + 1, SLOT_BYTES):
            t = data[off]
            if t == _L2:
                e = decode(data, off)
                self._on_delta(
                    e["market_id"],
                    e["seq"],
                    e["prev_seq"],
                    e["side"],
                    e["price_ticks"],
                    e["size_lots"],
                    e["order_count"],
                )
                continue
            try:
                e = decode(data, off)
            except KeyError:
                continue
            self._on_event(t, e)

    def _on_delta(
        self, market: int, seq: int, prev_seq: int, side: int, price: int, size: int, count: int
    ) -> None:
        drop = self._drop_deltas.get(market)
        if drop:
            self._drop_deltas[market] = drop - 1
            return
        book = self.books.get(market)
        if book is not None:
            book.on_delta(seq, prev_seq, side, price, size, count)

    def _on_event(self, t: int, e: dict[str, Any]) -> None:
        m = e["market_id"]
        if t == MsgType.ACCEPTED:
            ev: Any = OrderAccepted(
                m, e["seq"], e["order_id"], e["client_order_id"], e["side"], e["price_ticks"], e["size_lots"]
            )
            self.order_ids[ev.client_order_id] = ev.order_id
            fut = self._places.get(ev.client_order_id)
            if fut is not None and not fut.done():
                fut.set_result(ev)
        elif t == MsgType.REJECTED:
            ev = OrderRejectedEvent(
                m, e["seq"], e["order_id"], e["client_order_id"], e["reason"], e["command"]
            )
            retry = e["ts_ns"] / 1e9 if e["seq"] == 0 else 0.0
            err = OrderRejected(
                e["reason"],
                retry_after_s=retry,
                seq=e["seq"],
                client_order_id=e["client_order_id"],
                order_id=e["order_id"],
            )
            self._fail(e["command"], e["order_id"], e["client_order_id"], err)
        elif t == MsgType.FILL:
            ev = Fill(
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
        elif t == MsgType.CANCELLED:
            ev = OrderCancelled(m, e["seq"], e["order_id"], e["client_order_id"], e["size_lots"], e["reason"])
            self._resolve(self._cancels, ev.order_id, ev.client_order_id, ev)
        elif t == MsgType.AMENDED:
            ev = OrderAmended(
                m,
                e["seq"],
                e["order_id"],
                e["client_order_id"],
                e["price_ticks"],
                e["size_lots"],
                bool(e["kept_priority"]),
            )
            self._resolve(self._amends, ev.order_id, ev.client_order_id, ev)
        elif t == MsgType.BALANCE:
            ev = Balance(e["seq"], e["asset"], e["balance"], e["delta"], e["held"], e["reason"], e["ref"])
        elif t == MsgType.POSITION:
            ev = Position(
                m, e["seq"], e["size_atoms"], e["cost_micro"], e["realised_pnl_micro"], e["funding_micro"]
            )
        elif t == MsgType.ACCOUNT_MARGIN:
            ev = Margin(
                e["seq"],
                e["equity_micro"],
                e["initial_micro"],
                e["maintenance_micro"],
                e["reserved_micro"],
                bool(e["flags"] & 1),
            )
        elif t == _TRADE:
            ev = Trade(m, e["seq"], e["price_ticks"], e["size_lots"], e["taker_side"])
        elif t == _BBO:
            ev = Bbo(
                m,
                e["seq"],
                e["bid_price_ticks"],
                e["bid_size_lots"],
                e["ask_price_ticks"],
                e["ask_size_lots"],
            )
        else:
            return
        if self.keep_events:
            self.events.put_nowait(ev)

    @staticmethod
    def _resolve(pending: dict[tuple[str, int], Any], order_id: int, coid: int, value: Any) -> None:
        for key in (("o", order_id), ("c", coid)):
            fut = pending.get(key)
            if fut is not None and not fut.done():
                fut.set_result(value)
                return

    def _fail(self, command: int, order_id: int, coid: int, err: RequestRejected) -> None:
        if command == MsgType.NEW_ORDER:
            fut = self._places.get(coid)
            if fut is not None and not fut.done():
                fut.set_exception(err)
        elif command in (MsgType.CANCEL, MsgType.AMEND):
            pending = self._cancels if command == MsgType.CANCEL else self._amends
            for key in (("o", order_id), ("c", coid)):
                f = pending.get(key)
                if f is not None and not f.done():
                    f.set_exception(err)
                    return
        if self.keep_events:
            self.events.put_nowait(OrderRejectedEvent(0, err.seq, order_id, coid, int(err.code), command))

    def _on_text(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        typ = msg.get("type")
        rid = msg.get("id")
        if typ in ("error",) or (typ == "rejected" and rid is not None and "client_order_id" not in msg):
            err = RequestRejected(
                msg.get("code", 0), msg.get("message", ""), msg.get("retry_after_ms", 0) / 1000
            )
            fut = self._requests.get(rid) if rid is not None else None
            if fut is not None and not fut.done():
                fut.set_exception(err)
            else:
                self.control.put_nowait(msg)
            return
        if rid is not None and rid in self._requests:
            fut = self._requests[rid]
            if not fut.done():
                fut.set_result(msg)
            if typ != "snapshot":
                return
        if typ == "snapshot":
            self._on_snapshot(msg)
        elif typ == "conflated":
            for m in msg.get("markets", []):
                if m in self.books:
                    self.books[m].in_sync = False  # the gateway sends a snapshot when we catch up
            self.control.put_nowait(msg)
        elif typ in (
            "accepted",
            "rejected",
            "fill",
            "cancelled",
            "amended",
            "l2",
            "trade",
            "bbo",
            "triggered",
        ):
            self._on_json_event(typ, msg)
        elif typ in ("balance", "position", "margin"):
            self._on_json_account_event(typ, msg)
        else:
            self.control.put_nowait(msg)

    def _on_json_account_event(self, typ: str, msg: dict[str, Any]) -> None:
        """The JSON form of BALANCE / POSITION / ACCOUNT_MARGIN, as the same typed events."""
        micro = MICRO_PER_UNIT
        if typ == "balance":
            asset = self.asset_ids.get(msg["asset"], 0)
            scale = self.asset_scales.get(asset, 1)
            ev: Any = Balance(
                msg["seq"],
                asset,
                to_fixed(msg["balance"], scale),
                to_fixed(msg["delta"], scale),
                to_fixed(msg["held"], scale),
                _BALANCE_REASONS.get(msg["reason"], -1),
                msg["ref"],
            )
        elif typ == "position":
            ev = Position(
                msg["market"],
                msg["seq"],
                to_fixed(msg["size"], ATOMS_PER_UNIT),
                to_fixed(msg["cost"], micro),
                to_fixed(msg["realised_pnl"], micro),
                to_fixed(msg["funding"], micro),
            )
        else:
            ev = Margin(
                msg["seq"],
                to_fixed(msg["equity"], micro),
                to_fixed(msg["initial"], micro),
                to_fixed(msg["maintenance"], micro),
                to_fixed(msg["reserved"], micro),
                bool(msg["below_maintenance"]),
            )
        if self.keep_events:
            self.events.put_nowait(ev)

    def _units(self, market: int, value: str, field: str) -> int:
        info = self.markets.get(market)
        unit = (
            (info.tick_size if "price" in field or field in ("bid", "ask") else info.lot_size)
            if info
            else Decimal(1)
        )
        return to_units(value, unit, field, allow_zero=True)

    def _on_snapshot(self, msg: dict[str, Any]) -> None:
        m = msg["market"]
        book = self.books.get(m)
        if book is None:
            return
        if self.binary:
            bids, asks = msg["bids"], msg["asks"]
        else:
            bids = [(self._units(m, p, "price"), self._units(m, s, "size"), c) for p, s, c in msg["bids"]]
            asks = [(self._units(m, p, "price"), self._units(m, s, "size"), c) for p, s, c in msg["asks"]]
        book.on_snapshot(msg["seq"], bids, asks)

    def _on_json_event(self, typ: str, msg: dict[str, Any]) -> None:
        m = msg.get("market") or 0
        side = {"buy": 0, "sell": 1}
        if typ == "l2":
            self._on_delta(
                m,
                msg["seq"],
                msg["prev_seq"],
                side[msg["side"]],
                self._units(m, msg["price"], "price"),
                self._units(m, msg["size"], "size"),
                msg["count"],
            )
            return
        e: dict[str, Any] = {"market_id": m, "seq": msg.get("seq", 0)}
        if typ == "accepted":
            e.update(
                order_id=msg["order_id"],
                client_order_id=msg["client_order_id"],
                side=side[msg["side"]],
                price_ticks=self._units(m, msg["price"], "price"),
                size_lots=self._units(m, msg["size"], "size"),
            )
            self._on_event(MsgType.ACCEPTED, e)
        elif typ == "rejected":
            cmd = {
                "place": MsgType.NEW_ORDER,
                "cancel": MsgType.CANCEL,
                "amend": MsgType.AMEND,
                "cancel_all": MsgType.CANCEL_ALL,
            }.get(msg.get("command"), 0)
            e.update(
                order_id=msg.get("order_id", 0),
                client_order_id=msg.get("client_order_id", 0),
                reason=msg["code"],
                command=cmd,
                ts_ns=int(msg.get("retry_after_ms", 0) * 1_000_000),
            )
            self._on_event(MsgType.REJECTED, e)
        elif typ == "fill":
            e.update(
                taker_order_id=msg["taker_order_id"],
                maker_order_id=msg["maker_order_id"],
                price_ticks=self._units(m, msg["price"], "price"),
                size_lots=self._units(m, msg["size"], "size"),
                taker_account=msg["taker_account"],
                maker_account=msg["maker_account"],
                taker_side=side[msg["taker_side"]],
                flags=(1 if msg.get("taker_done") else 0) | (2 if msg.get("maker_done") else 0),
            )
            self._on_event(MsgType.FILL, e)
        elif typ == "cancelled":
            from engine.types.enums import CancelReason

            reason = msg.get("reason")
            e.update(
                order_id=msg["order_id"],
                client_order_id=msg["client_order_id"],
                size_lots=self._units(m, msg["size"], "size"),
                reason=CancelReason[reason.upper()] if isinstance(reason, str) else int(reason or 0),
            )
            self._on_event(MsgType.CANCELLED, e)
        elif typ == "amended":
            e.update(
                order_id=msg["order_id"],
                client_order_id=msg["client_order_id"],
                price_ticks=self._units(m, msg["price"], "price"),
                size_lots=self._units(m, msg["size"], "size"),
                kept_priority=msg["kept_priority"],
            )
            self._on_event(MsgType.AMENDED, e)
        elif typ == "trade":
            e.update(
                price_ticks=self._units(m, msg["price"], "price"),
                size_lots=self._units(m, msg["size"], "size"),
                taker_side=side[msg["taker_side"]],
            )
            self._on_event(_TRADE, e)
        elif typ == "bbo":
            e.update(
                bid_price_ticks=self._units(m, msg["bid"], "bid"),
                bid_size_lots=self._units(m, msg["bid_size"], "size"),
                ask_price_ticks=self._units(m, msg["ask"], "ask"),
                ask_size_lots=self._units(m, msg["ask_size"], "size"),
            )
            self._on_event(_BBO, e)
