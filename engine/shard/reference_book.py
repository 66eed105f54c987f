"""``ReferenceBook``: a deliberately simple, obviously correct twin of ``OrderBook``.

One plain list of resting orders and a priority stamp per order; every question is answered by
scanning or sorting that list. It is slow (O(book) per operation) and exists to be trusted: the
same engine tests run against both books, and property tests require identical event streams.
Semantics are documented in ``engine.shard.book``; this file re-derives them without any index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import count
from typing import Any

from engine.shard.event_sink import sink_method
from engine.shard.order import O_ACCOUNT, O_COID, O_OID, O_OPEN, O_PRICE, O_SIDE
from engine.types.enums import CancelReason, RejectCode, StpMode


class ReferenceBook:
    def __init__(self, market_id: int, sink: Any) -> None:
        self.market_id = market_id
        self.seq = 0
        self.now_ns = 0
        self.last_bbo = (0, 0, 0, 0)
        self._sink = sink
        self._resting: list[list[int]] = []
        self._prio: dict[int, int] = {}
        self._stamp = count()

    # ---- helpers ---------------------------------------------------------------------------------
    def _emit(self, method: str, *fields: int) -> None:
        self.seq += 1
        callback = sink_method(self._sink, method)
        if callback is not None:
            callback(self.market_id, self.seq, *fields)

    def _cancelled(self, oid: int, coid: int, size: int, account: int, reason: int, side: int) -> None:
        self._emit("on_cancelled", oid, coid, size, self.now_ns, account, reason, side)

    def _l2(self, side: int, price: int) -> None:
        """L2_DELTA of the level at (side, price): its total open size and order count now."""
        size, count = self._level(side, price)
        self._emit("on_l2", price, size, count, side)

    def _side_sorted(self, side: int) -> list[list[int]]:
        """Orders of one side, best price first, then time priority."""

        def rank(o: list[int]) -> tuple[int, int]:
            return (-o[O_PRICE] if side == 0 else o[O_PRICE], self._prio[o[O_OID]])

        return sorted((o for o in self._resting if o[O_SIDE] == side), key=rank)

    def _level(self, side: int, price: int) -> tuple[int, int]:
        at = [o for o in self._resting if o[O_SIDE] == side and o[O_PRICE] == price]
        return sum(o[O_OPEN] for o in at), len(at)

    @staticmethod
    def _crosses(side: int, limit: int, maker_price: int) -> bool:
        return maker_price <= limit if side == 0 else maker_price >= limit

    def _drop(self, o: list[int]) -> None:
        self._resting.remove(o)
        del self._prio[o[O_OID]]

    # ---- queries ---------------------------------------------------------------------------------
    def get(self, order_id: int) -> list[int] | None:
        return next((o for o in self._resting if o[O_OID] == order_id), None)

    def get_by_client_id(self, account: int, client_order_id: int) -> list[int] | None:
        return next(
            (o for o in self._resting if o[O_ACCOUNT] == account and o[O_COID] == client_order_id), None
        )

    def orders_of(self, account: int) -> list[list[int]]:
        return sorted((o for o in self._resting if o[O_ACCOUNT] == account), key=lambda o: o[O_OID])

    def open_count(self, account: int) -> int:
        return sum(1 for o in self._resting if o[O_ACCOUNT] == account)

    def level_size(self, side: int, price: int) -> int:
        return self._level(side, price)[0]

    def order_count(self) -> int:
        return len(self._resting)

    def would_cross(self, side: int, price: int) -> bool:
        return any(self._crosses(side, price, o[O_PRICE]) for o in self._resting if o[O_SIDE] != side)

    def best_price(self, side: int) -> int:
        prices = [o[O_PRICE] for o in self._resting if o[O_SIDE] == side]
        if not prices:
            return 0
        return max(prices) if side == 0 else min(prices)

    def fillable(self, side: int, price: int, size: int, account: int, stp: int) -> bool:
        need = size
        for o in self._side_sorted(side ^ 1):
            if not self._crosses(side, price, o[O_PRICE]):
                return False
            if stp and o[O_ACCOUNT] == account:
                if stp == StpMode.CANCEL_OLDEST:
                    continue
                return False
            need -= o[O_OPEN]
            if need <= 0:
                return True
        return False

    def bbo(self) -> tuple[int, int, int, int]:
        bp, ap = self.best_price(0), self.best_price(1)
        return bp, self._level(0, bp)[0] if bp else 0, ap, self._level(1, ap)[0] if ap else 0

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        prices = sorted({o[O_PRICE] for o in self._resting if o[O_SIDE] == side}, reverse=side == 0)
        return [(p, *self._level(side, p)) for p in prices]

    def iter_orders(self) -> Iterator[list[int]]:
        yield from self._side_sorted(0)
        yield from self._side_sorted(1)

    # ---- commands --------------------------------------------------------------------------------
    def submit(
        self,
        oid: int,
        coid: int,
        account: int,
        side: int,
        price: int,
        size: int,
        tif: int,
        order_type: int,
        flags: int,
        expire_ns: int,
        remainder_reason: int,
        filled: int = 0,
        accept: bool = True,
    ) -> int:
        if coid and self.get_by_client_id(account, coid) is not None:
            return RejectCode.DUPLICATE_CLIENT_ORDER_ID
        if accept:
            self._emit(
                "on_accepted", oid, coid, price, size, self.now_ns, account, side, tif, order_type, flags
            )
        self._submit(oid, coid, account, side, price, size, tif, flags, expire_ns, remainder_reason, filled)
        self.flush_bbo()
        return 0

    def _submit(
        self,
        oid: int,
        coid: int,
        account: int,
        side: int,
        price: int,
        size: int,
        tif: int,
        flags: int,
        expire_ns: int,
        remainder_reason: int,
        filled: int,
    ) -> None:
        stp = (flags >> 4) & 7
        rem = size
        now = self.now_ns
        stopped = False
        makers = [o for o in self._side_sorted(side ^ 1) if self._crosses(side, price, o[O_PRICE])]
        prices: list[int] = []
        for o in makers:
            if o[O_PRICE] not in prices:
                prices.append(o[O_PRICE])
        for level_price in prices:
            if not rem or stopped:
                break
            before = self._level(side ^ 1, level_price)
            for m in [o for o in makers if o[O_PRICE] == level_price]:
                if not rem:
                    break
                if stp and m[O_ACCOUNT] == account:
                    if stp == StpMode.CANCEL_NEWEST:
                        stopped = True
                        break
                    if stp in (StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH):
                        self._drop(m)
                        self._cancelled(
                            m[O_OID], m[O_COID], m[O_OPEN], m[O_ACCOUNT], CancelReason.SELF_TRADE, side ^ 1
                        )
                        m[O_OPEN] = 0
                        if stp == StpMode.CANCEL_BOTH:
                            stopped = True
                            break
                        continue
                    d = min(rem, m[O_OPEN])  # decrement
                    rem -= d
                    m[O_OPEN] -= d
                    if m[O_OPEN]:
                        self._emit("on_amended", m[O_OID], m[O_COID], level_price, m[O_OPEN], m[O_ACCOUNT], 1)
                    else:
                        self._drop(m)
                        self._cancelled(
                            m[O_OID], m[O_COID], d, m[O_ACCOUNT], CancelReason.SELF_TRADE, side ^ 1
                        )
                    if rem:
                        self._emit("on_amended", oid, coid, price, rem, account, 1)
                    else:
                        self._cancelled(oid, coid, d, account, CancelReason.SELF_TRADE, side)
                    continue
                t = min(rem, m[O_OPEN])
                rem -= t
                filled += t
                m[O_OPEN] -= t
                m[5] += t
                if not m[O_OPEN]:
                    self._drop(m)
                flags_out = (1 if rem == 0 else 0) | (2 if m[O_OPEN] == 0 else 0)
                self._emit("on_fill", oid, m[O_OID], level_price, t, account, m[O_ACCOUNT], side, flags_out)
                self._emit("on_trade", level_price, t, now, side)
            after = self._level(side ^ 1, level_price)
            if after[0] != before[0]:
                self._emit("on_l2", level_price, *after, side ^ 1)
        if stopped and rem:
            self._cancelled(oid, coid, rem, account, CancelReason.SELF_TRADE, side)
            return
        if not rem:
            return
        if remainder_reason >= 0:
            self._cancelled(oid, coid, rem, account, remainder_reason, side)
            return
        o = [oid, account, side, price, rem, filled, coid, tif, 0, flags, expire_ns, 0]
        self._resting.append(o)
        self._prio[oid] = next(self._stamp)
        self._l2(side, price)

    def cancel_by_id(self, order_id: int, account: int, reason: int) -> int:
        o = self.get(order_id)
        if o is None:
            return RejectCode.UNKNOWN_ORDER
        if o[O_ACCOUNT] != account:
            return RejectCode.UNKNOWN_ORDER
        self.cancel(o, reason)
        return 0

    def cancel(self, o: list[int], reason: int) -> None:
        size = o[O_OPEN]
        self._drop(o)
        o[O_OPEN] = 0
        self._cancelled(o[O_OID], o[O_COID], size, o[O_ACCOUNT], reason, o[O_SIDE])
        self._l2(o[O_SIDE], o[O_PRICE])
        self.flush_bbo()

    def remove(self, o: list[int]) -> None:
        self._drop(o)
        o[O_OPEN] = 0
        self._l2(o[O_SIDE], o[O_PRICE])

    def reduce(self, o: list[int], new_open: int) -> None:
        o[O_OPEN] = new_open
        self._emit("on_amended", o[O_OID], o[O_COID], o[O_PRICE], new_open, o[O_ACCOUNT], 1)
        self._l2(o[O_SIDE], o[O_PRICE])
        self.flush_bbo()

    def cancel_many(self, victims: Iterable[list[int]], reason: int) -> None:
        touched = set()
        for o in list(victims):
            size = o[O_OPEN]
            self._drop(o)
            o[O_OPEN] = 0
            touched.add((o[O_SIDE], o[O_PRICE]))
            self._cancelled(o[O_OID], o[O_COID], size, o[O_ACCOUNT], reason, o[O_SIDE])
        for side, price in sorted(touched):
            self._l2(side, price)
        self.flush_bbo()

    def flush_bbo(self) -> None:
        bbo = self.bbo()
        if bbo != self.last_bbo:
            self.last_bbo = bbo
            self._emit("on_bbo", *bbo, self.now_ns)

    def restore_order(self, o: list[int]) -> None:
        self._resting.append(o)
        self._prio[o[O_OID]] = next(self._stamp)

    def validate(self) -> None:
        ids = [o[O_OID] for o in self._resting]
        assert len(ids) == len(set(ids)), "duplicate resting order"
        assert all(o[O_OPEN] > 0 for o in self._resting), "resting order with no open size"
        bp, ap = self.best_price(0), self.best_price(1)
        assert not (bp and ap and bp >= ap), f"book crossed: {bp} >= {ap}"
        assert self.bbo() == self.last_bbo, "BBO changed without an event"
