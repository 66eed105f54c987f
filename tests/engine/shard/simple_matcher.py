"""A third, independent matcher for the standard workload semantics (GTC, IOC, FOK, post-only, cancel).

Written for obviousness: per market and side, a dict price -> FIFO list of [oid, qty]; a taker
sorts the crossing prices best-first and walks each list in order. Shares no code with
``engine.shard``.
"""

from __future__ import annotations

import numpy as np

TRADE = np.dtype([("taker_oid", "<u8"), ("maker_oid", "<u8"), ("price", "<i8"), ("qty", "<i8")])


def simple_match(orders: np.ndarray) -> tuple[np.ndarray, int]:
    """(fills as TRADE records in order, number of rejected commands)."""
    books: dict[int, tuple[dict[int, list[list[int]]], dict[int, list[list[int]]]]] = {}
    where: dict[tuple[int, int], tuple[int, int]] = {}  # (market, oid) -> (side, price) while resting
    trades: list[tuple[int, int, int, int]] = []
    rejects = 0
    for op, side, tif, _pad, market, oid, _account, price, qty in orders.tolist():
        sides = books.setdefault(market, ({}, {}))
        if op == 2:
            if (market, oid) not in where:
                rejects += 1
                continue
            s, p = where.pop((market, oid))
            level = sides[s][p]
            level[:] = [entry for entry in level if entry[0] != oid]
            if not level:
                del sides[s][p]
            continue
        opposite = sides[1 - side]
        crossing = sorted(
            (p for p in opposite if (p <= price if side == 0 else p >= price)), reverse=(side == 1)
        )
        available = sum(entry[1] for p in crossing for entry in opposite[p])
        if tif == 3 and crossing:  # post-only would take
            rejects += 1
            continue
        if tif == 2 and available < qty:  # FOK cannot fill in full
            rejects += 1
            continue
        left = qty
        for p in crossing:
            level = opposite[p]
            while level and left:
                maker = level[0]
                q = min(left, maker[1])
                trades.append((oid, maker[0], p, q))
                left -= q
                maker[1] -= q
                if not maker[1]:
                    level.pop(0)
                    del where[(market, maker[0])]
            if not level:
                del opposite[p]
            if not left:
                break
        if left and tif in (0, 3):  # GTC and post-only rest; IOC/FOK remainders vanish
            sides[side].setdefault(price, []).append([oid, left])
            where[(market, oid)] = (side, price)
    return np.array(trades, dtype=TRADE), rejects
