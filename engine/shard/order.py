"""The resting-order record shared by the engine and both books.

An order is a plain Python ``list`` indexed by the ``O_*`` constants below, not an object: creating
a list literal is several times cheaper than running a ``__slots__`` class's ``__init__``, and a
constant-index subscript is as fast as an attribute. The books own their records; the engine reads
them (``o[O_ACCOUNT]``) and never mutates them except through a book method.

Invariants: ``o[O_OPEN] > 0`` while the order rests; a book sets it to 0 when the order leaves
(fill, cancel), which is how the fast book recognises lazily-deleted queue entries.
``o[O_FILLED]`` counts traded lots only; open + filled is the order's current total size (amends
and self-trade decrements change the total).
"""

from __future__ import annotations

from typing import Final

O_OID: Final = 0  # exchange order id (u64)
O_ACCOUNT: Final = 1  # u32
O_SIDE: Final = 2  # Side
O_PRICE: Final = 3  # limit price, ticks
O_OPEN: Final = 4  # open (unfilled) size, lots; 0 = gone
O_FILLED: Final = 5  # filled lots
O_COID: Final = 6  # client order id, 0 = none
O_TIF: Final = 7  # TimeInForce
O_TYPE: Final = 8  # OrderType (LIMIT once it is in the book; the stop type while it waits for a trigger)
O_FLAGS: Final = 9  # OrderFlag bits and StpMode, as sent
O_EXPIRE: Final = 10  # GTT expiry, engine-clock ns; 0 = none
O_TRIGGER: Final = 11  # stop/take-profit trigger, ticks; 0 = none
ORDER_FIELDS: Final = 12


def make_order(
    oid: int,
    account: int,
    side: int,
    price: int,
    open_lots: int,
    filled: int,
    coid: int,
    tif: int,
    order_type: int,
    flags: int,
    expire_ns: int,
    trigger: int = 0,
) -> list[int]:
    """A new order record (the books inline this literal on their hot paths)."""
    return [oid, account, side, price, open_lots, filled, coid, tif, order_type, flags, expire_ns, trigger]
