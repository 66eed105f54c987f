"""Request correlation: which pending future an answer resolves.

Control ops are matched by the ``id`` the SDK puts in each request; ``place`` by its
``client_order_id`` (ACCEPTED or REJECTED); ``cancel`` and ``amend`` by order id or client order id
(CANCELLED / AMENDED, or REJECTED naming the command). A closed connection fails every pending
future with the close code and reason, so no caller waits for ever.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from engine.types.enums import MsgType

OrderKey = tuple[str, int]  # ("o", order_id) or ("c", client_order_id)


def order_key(order_id: int, client_order_id: int) -> OrderKey:
    """How a cancel or amend is waited for: by order id when given, else by client order id."""
    return ("o", order_id) if order_id else ("c", client_order_id)


class PendingRequests:
    """Futures waiting for answers, by kind."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.requests: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.places: dict[int, asyncio.Future[Any]] = {}
        self.cancels: dict[OrderKey, asyncio.Future[Any]] = {}
        self.amends: dict[OrderKey, asyncio.Future[Any]] = {}

    @staticmethod
    def _future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def new_request(self) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """A fresh request id and the future its reply resolves."""
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = self._future()
        self.requests[rid] = fut
        return rid, fut

    def new_place(self, client_order_id: int) -> asyncio.Future[Any]:
        """The future a place's ACCEPTED (or REJECTED) resolves."""
        fut = self.places[client_order_id] = self._future()
        return fut

    def new_cancel(self, key: OrderKey) -> asyncio.Future[Any]:
        """The future a cancel's CANCELLED (or REJECTED) resolves."""
        fut = self.cancels[key] = self._future()
        return fut

    def new_amend(self, key: OrderKey) -> asyncio.Future[Any]:
        """The future an amend's AMENDED (or REJECTED) resolves."""
        fut = self.amends[key] = self._future()
        return fut

    # ---- answers -------------------------------------------------------------------------------
    def answer(self, rid: Any, reply: dict[str, Any]) -> bool:
        """Resolve control request ``rid`` with ``reply``; False when nobody waits for it."""
        fut = self.requests.get(rid) if isinstance(rid, int) else None
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(reply)
        return True

    def refuse(self, rid: Any, err: BaseException) -> bool:
        """Fail control request ``rid``; False when nobody waits for it."""
        fut = self.requests.get(rid) if isinstance(rid, int) else None
        if fut is None or fut.done():
            return False
        fut.set_exception(err)
        return True

    def placed(self, client_order_id: int, ack: Any) -> None:
        """An ACCEPTED arrived for ``client_order_id``."""
        _settle(self.places.get(client_order_id), ack)

    def cancelled(self, order_id: int, client_order_id: int, event: Any) -> None:
        """A CANCELLED arrived."""
        _settle_by_keys(self.cancels, order_id, client_order_id, event)

    def amended(self, order_id: int, client_order_id: int, event: Any) -> None:
        """An AMENDED arrived."""
        _settle_by_keys(self.amends, order_id, client_order_id, event)

    def rejected(self, command: int, order_id: int, client_order_id: int, err: BaseException) -> None:
        """An order command was refused: fail whichever future waits for it."""
        if command == MsgType.NEW_ORDER:
            fut = self.places.get(client_order_id)
            if fut is not None and not fut.done():
                fut.set_exception(err)
        elif command in (MsgType.CANCEL, MsgType.AMEND):
            pending = self.cancels if command == MsgType.CANCEL else self.amends
            for key in (("o", order_id), ("c", client_order_id)):
                f = pending.get(key)
                if f is not None and not f.done():
                    f.set_exception(err)
                    return

    def fail_all(self, err: BaseException) -> None:
        """The connection closed: every pending future fails with ``err``."""
        for group in (self.requests, self.places, self.cancels, self.amends):
            for fut in group.values():  # type: ignore[attr-defined]
                if not fut.done():
                    fut.set_exception(err)
            group.clear()  # type: ignore[attr-defined]


def _settle(fut: asyncio.Future[Any] | None, value: Any) -> None:
    if fut is not None and not fut.done():
        fut.set_result(value)


def _settle_by_keys(
    pending: dict[OrderKey, asyncio.Future[Any]], order_id: int, coid: int, value: Any
) -> None:
    for key in (("o", order_id), ("c", coid)):
        fut = pending.get(key)
        if fut is not None and not fut.done():
            fut.set_result(value)
            return
