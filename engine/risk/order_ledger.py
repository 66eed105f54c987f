"""Open-order reservations: what the risk stage holds back for each order until it ends.

An order's reservation is made when risk forwards it (keyed by market, account and client order
id until the shard's ACCEPTED names its order id), shrinks pro rata as it fills or is reduced,
and is released whole when it ends (filled, cancelled, expired, rejected). Releases from fills are
returned separately from releases from cancels: a fill's share of the reservation stands in for
the fill's margin impact until the account's margin is next recomputed (see ``risk_engine``).

Invariant (checked by ``validate``): for every account, the sum of its orders' remaining
reservations equals what the account book holds as reserved for it.

The engine changes reservations only through the methods below (never by assigning fields of what
``find`` returns): the compiled twin (``engine.native._hxrisk.Ledger``) has the same methods and
returns copies from ``find``; the methods act on the reservation with the same key (market,
account, client order id). ``entries`` lists everything as plain tuples sorted by that key: the
snapshot form both ledgers load.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Reservation:
    account: int
    market: int
    client_order_id: int
    side: int
    open_lots: int  # size still open (as the shard reports it)
    reserve_micro: int  # what is still held for it
    order_id: int = 0  # 0 until ACCEPTED
    amend_extra_micro: int = 0  # held for an amend the shard has not answered yet
    price_ticks: int = 0  # its limit price (for queries)


class OrderLedger:
    def __init__(self) -> None:
        self.by_coid: dict[tuple[int, int, int], Reservation] = {}  # (market, account, coid)
        self.by_oid: dict[tuple[int, int], Reservation] = {}  # (market, order id)

    def __len__(self) -> int:
        return len(self.by_coid)

    def is_live(self, market: int, account: int, coid: int) -> bool:
        return (market, account, coid) in self.by_coid

    def add(self, r: Reservation) -> None:
        self.by_coid[(r.market, r.account, r.client_order_id)] = r

    def find(self, market: int, account: int, order_id: int, coid: int) -> Reservation | None:
        """By order id when given (and the account matches), else by client order id."""
        if order_id:
            r = self.by_oid.get((market, order_id))
            return r if r is not None and r.account == account else None
        return self.by_coid.get((market, account, coid))

    def accept(self, market: int, account: int, coid: int, order_id: int, open_lots: int) -> None:
        r = self.by_coid.get((market, account, coid))
        if r is not None and r.order_id == 0:
            r.order_id = order_id
            r.open_lots = open_lots
            self.by_oid[(market, order_id)] = r

    def remove(self, r: Reservation) -> int:
        """Drop an order that ended; returns everything still held for it."""
        self.by_coid.pop((r.market, r.account, r.client_order_id), None)
        if r.order_id:
            self.by_oid.pop((r.market, r.order_id), None)
        held = r.reserve_micro + r.amend_extra_micro
        r.reserve_micro = r.amend_extra_micro = 0
        return held

    def shrink(self, r: Reservation, lots: int) -> int:
        """``lots`` of the order went (filled or reduced): release their share, rounded down (the
        rest stays held until the order ends); returns the amount released."""
        r = self.by_coid.get((r.market, r.account, r.client_order_id), r)
        if lots >= r.open_lots:
            released = r.reserve_micro
            r.open_lots = 0
        else:
            released = r.reserve_micro * lots // r.open_lots
            r.open_lots -= lots
        r.reserve_micro -= released
        return released

    def set_amend_extra(self, r: Reservation, extra: int) -> None:
        """Hold ``extra`` for an amend the shard has not answered yet."""
        live = self.by_coid.get((r.market, r.account, r.client_order_id))
        if live is not None:
            live.amend_extra_micro = extra

    def release_amend(self, r: Reservation) -> int:
        """The shard refused the amend: its extra is released (returned)."""
        live = self.by_coid.get((r.market, r.account, r.client_order_id))
        if live is None:
            return 0
        extra, live.amend_extra_micro = live.amend_extra_micro, 0
        return extra

    def amended(self, r: Reservation, price_ticks: int, new_open: int) -> int:
        """The shard amended the order: the amend's extra becomes the order's own, and a smaller
        open size releases its share (returned)."""
        live = self.by_coid.get((r.market, r.account, r.client_order_id))
        if live is None:
            return 0
        live.reserve_micro += live.amend_extra_micro
        live.amend_extra_micro = 0
        live.price_ticks = price_ticks
        if new_open < live.open_lots:
            return self.shrink(live, live.open_lots - new_open)
        live.open_lots = new_open
        return 0

    def orders_of(self, account: int) -> list[Reservation]:
        """The account's reservations, sorted by (market, account, client order id)."""
        return [r for k, r in sorted(self.by_coid.items()) if r.account == account]

    def entries(self) -> list[tuple[int, ...]]:
        """Every reservation as a plain tuple (the dataclass's field order), sorted by key."""
        return [
            (
                int(r.account),
                int(r.market),
                int(r.client_order_id),
                int(r.side),  # plain ints (a Side or numpy integer would print differently)
                int(r.open_lots),
                int(r.reserve_micro),
                int(r.order_id),
                int(r.amend_extra_micro),
                int(r.price_ticks),
            )
            for _, r in sorted(self.by_coid.items())
        ]

    def load(self, entries: list[tuple[int, ...]] | list[list[int]]) -> None:
        """Replace everything with ``entries`` (as ``entries`` lists them)."""
        self.by_coid.clear()
        self.by_oid.clear()
        for fields in entries:
            r = Reservation(*fields)
            self.by_coid[(r.market, r.account, r.client_order_id)] = r
            if r.order_id:
                self.by_oid[(r.market, r.order_id)] = r

    def held_by_account(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self.by_coid.values():
            out[r.account] = out.get(r.account, 0) + r.reserve_micro + r.amend_extra_micro
        return out
