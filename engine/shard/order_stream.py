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
    """Wire commands, one 64-byte NEW_ORDER or CANCEL per ORDER record (as a NEW_ORDER-dtype array)."""
    new_dt = layout_of(MsgType.NEW_ORDER).dtype
    cancel_dt = layout_of(MsgType.CANCEL).dtype
    n = len(orders)
    out = np.zeros(n, dtype=new_dt)
    is_new = orders["op"] == OP_NEW
    new = out[is_new]
    src = orders[is_new]
    new["msg_type"] = MsgType.NEW_ORDER
    new["version"] = WIRE_VERSION
    new["length"] = SLOT_BYTES
    new["market_id"] = src["market"]
    new["order_id"] = src["oid"]
    new["client_order_id"] = src["oid"]
    new["price_ticks"] = src["price"]
    new["size_lots"] = src["qty"]
    new["account"] = src["account"]
    new["side"] = src["side"]
    tif = src["tif"]
    new["tif"] = np.select([tif == W_IOC, tif == W_FOK], [TimeInForce.IOC, TimeInForce.FOK], TimeInForce.GTC)
    new["flags"] = np.where(tif == W_POST_ONLY, int(OrderFlag.POST_ONLY), 0)
    out[is_new] = new

    is_cancel = orders["op"] == OP_CANCEL
    cancels = np.zeros(int(is_cancel.sum()), dtype=cancel_dt)
    src = orders[is_cancel]
    owner = owners_of(orders)
    cancels["msg_type"] = MsgType.CANCEL
    cancels["version"] = WIRE_VERSION
    cancels["length"] = SLOT_BYTES
    cancels["market_id"] = src["market"]
    cancels["order_id"] = src["oid"]
    cancels["account"] = owner[src["oid"]]
    out.view(cancel_dt)[is_cancel] = cancels
    return out
