"""Reduce-only orders: which are live, and which risk has asked the shard to cancel.

Why this exists: a reduce-only order is checked when it arrives (it must be on the side that
reduces the holding, and with the account's other live reduce-only orders on that side no larger
than it), but the holding can shrink afterwards: another order fills, a liquidation takes part of
the position, the market resolves. Left resting, two reduce-only orders that each fitted could
then flip the position, which is exactly what the flag promises never to do. So after a record
changes an account (its row is dirty), risk looks at the account's live reduce-only orders again
and cancels, newest first, those that no longer fit (``RiskEngine._trim_reduce_only``); each such
CANCELLED reaches the account with reason REDUCE_ONLY. That is what the large venues do (Binance
cancels reduce-only orders when the position is closed or flips; Bybit resizes them).

Two dicts, both state (in the snapshot and the state hash):

* ``orders``: account -> market -> client order ids of its live reduce-only orders, oldest first.
  An entry whose order has ended is dropped when next looked at (the ledger no longer has it).
  A client order id can be reused once its order ended, so every new order of an account listed
  here goes through ``RiskEngine._new_order`` (the compiled core hands it back), which forgets a
  reused id first: an id listed here is always the reduce-only order's.
* ``cancels``: (market, account, client order id) of the cancels risk sent that the shard has not
  answered. Their CANCELLED is republished with reason REDUCE_ONLY; a REJECTED of one (the order
  ended first) is risk's own business and is not republished (the account never sent a cancel).

Accounts and markets are plain ints (dict keys the compiled core looks up: ``_hxrisk.c``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ReduceOnlyOrders:
    def __init__(self) -> None:
        self.orders: dict[int, dict[int, list[int]]] = {}
        self.cancels: dict[tuple[int, int, int], None] = {}

    def __bool__(self) -> bool:
        return bool(self.orders)

    def add(self, account: int, market: int, coid: int) -> None:
        self.orders.setdefault(account, {}).setdefault(market, []).append(coid)

    def forget(self, account: int, market: int, coid: int) -> None:
        """A new order reuses ``coid`` (its earlier order ended): the id is no longer reduce-only."""
        coids = self.orders.get(account, {}).get(market)
        if coids and coid in coids:
            self.keep(account, market, [c for c in coids if c != coid])

    def keep(self, account: int, market: int, coids: list[int]) -> None:
        """What is still live and reduce-only of (account, market) after a look at it."""
        if coids:
            self.orders.setdefault(account, {})[market] = coids
            return
        by_market = self.orders.get(account)
        if by_market is not None:
            by_market.pop(market, None)
            if not by_market:
                del self.orders[account]

    def cancelling(self, market: int, account: int, coid: int) -> bool:
        return (market, account, coid) in self.cancels

    def to_json(self, live: Callable[[int, int, int], bool]) -> dict[str, Any]:
        """The state, without the entries whose order ended (``live(account, market, coid)`` False):
        they change nothing (``forget`` and the looks drop them), so a record that only dropped some
        (a refused order's look) leaves the same snapshot and state hash. Sorted by account and
        market: the dicts' order is history (an ended entry kept its account's place live, and a
        restored engine never had it), not state; a market's ids stay oldest first."""
        orders = []
        for a, by_m in sorted(self.orders.items()):
            for m, coids in sorted(by_m.items()):
                kept = [c for c in coids if live(a, m, c)]
                if kept:
                    orders.append([a, m, kept])
        return {"orders": orders, "cancels": sorted(list(k) for k in self.cancels)}

    def load_json(self, blob: dict[str, Any] | None) -> None:
        self.orders.clear()
        self.cancels.clear()
        for account, market, coids in (blob or {}).get("orders", []):
            self.orders.setdefault(int(account), {})[int(market)] = [int(c) for c in coids]
        for market, account, coid in (blob or {}).get("cancels", []):
            self.cancels[(int(market), int(account), int(coid))] = None
