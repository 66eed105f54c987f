"""Translate the standard ORDER stream (``shared/workload/README.md``) into wire commands, vectorised.

The workload's ORDER records become NEW_ORDER and CANCEL structs in one numpy pass, so a feeder
can publish them to rings in large batches. Order ids are the workload's oids (increasing, so the
shard accepts them as sequencer-assigned ids) and double as client order ids. Workload cancels
carry no account: the owner is looked up from the oid of the order they cancel.
"""

from __future__ import annotations

import numpy as np

from engine.types.enums import MsgType, OrderFlag, TimeInForce
from engine.wire.layout import SLOT_BYTES, WIRE_VERSION, layout_of

ORDER_DTYPE = np.dtype(
    [
        ("op", "u1"),
        ("side", "u1"),
        ("tif", "u1"),
        ("_pad", "u1"),
        ("market", "<u4"),
        ("oid", "<u8"),
        ("account", "<u8"),
        ("price", "<i8"),
        ("qty", "<i8"),
    ]
)
OP_NEW, OP_CANCEL = 1, 2
W_GTC, W_IOC, W_FOK, W_POST_ONLY = 0, 1, 2, 3


def owners_of(orders: np.ndarray) -> np.ndarray:
    """oid -> account (0 where no new order has that oid), as a dense u8 array."""
    new = orders[orders["op"] == OP_NEW]
    top = int(orders["oid"].max()) if len(orders) else 0
    owners = np.zeros(top + 1, dtype=np.uint64)
    owners[new["oid"]] = new["account"]
    return owners


def to_commands(orders: np.ndarray) -> np.ndarray:
    """Wire commands, one 64-byte NEW_ORDER or CANCEL per ORDER record (as a NEW_ORDER-dtype array).

    Whole-column writes, no masked assignment: a CANCEL's fields sit where NEW_ORDER's do (order id at
    8, client id at 16), except its account, a u32 at byte 24 followed by zero padding -- the same
    bytes as writing the account as an int64 into NEW_ORDER's ``price_ticks``. Every other NEW_ORDER
    field of a cancel row is zero, as CANCEL's padding must be.
    """
    new_dt = layout_of(MsgType.NEW_ORDER).dtype
    assert layout_of(MsgType.CANCEL).dtype.fields["account"][1] == new_dt.fields["price_ticks"][1]
    n = len(orders)
    out = np.zeros(n, dtype=new_dt)
    is_new = orders["op"] == OP_NEW
    zero = np.zeros(n, dtype=np.int64)
    owner = owners_of(orders)
    oids = orders["oid"]
    out["msg_type"] = np.where(is_new, MsgType.NEW_ORDER, MsgType.CANCEL)
    out["version"] = WIRE_VERSION
    out["length"] = SLOT_BYTES
    out["market_id"] = orders["market"]
    out["order_id"] = oids
    out["client_order_id"] = np.where(is_new, oids, 0)
    # a cancel's account (its order's owner) in CANCEL's account slot
    out["price_ticks"] = np.where(
        is_new, orders["price"], owner[np.minimum(oids, len(owner) - 1)].astype(np.int64)
    )
    out["size_lots"] = np.where(is_new, orders["qty"], zero)
    out["account"] = np.where(is_new, orders["account"], 0)
    out["side"] = np.where(is_new, orders["side"], 0)
    tif = orders["tif"]
    wire_tif = np.select([tif == W_IOC, tif == W_FOK], [TimeInForce.IOC, TimeInForce.FOK], TimeInForce.GTC)
    out["tif"] = np.where(is_new, wire_tif, 0)
    out["flags"] = np.where(is_new & (tif == W_POST_ONLY), int(OrderFlag.POST_ONLY), 0)
    return out
