"""In-process replay: a workload ORDER stream -> the matching engine -> fills as TRADE records.

Translation of each ORDER record (``../shared/workload/README.md``):

* op 1 (new): NEW_ORDER with ``order_id = client_order_id = oid``, the record's account, side,
  price, qty; tif 0 GTC, 1 IOC, 2 FOK, 3 post-only = GTC + ``OrderFlag.POST_ONLY`` (reject variant);
  STP mode NONE (the workload allows self-trades).
* op 2 (cancel): CANCEL by order id; the workload carries no account, so the owner is looked up in
  an oid -> account table built from the stream's new orders (an unknown oid gets account 0, and is
  rejected UNKNOWN_ORDER like any cancel of an order that is not resting).

The loop calls ``MatchingEngine.place``/``cancel`` directly with ints, the same methods ``handle``
calls after unpacking a wire struct, so there is no second code path. With ``markets=None`` the
engine gets ``workload_markets``: tick 1, lot 1, no band, no min notional, large max size.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from engine.shard.market_spec import MarketSpec, workload_markets
from engine.shard.matching_engine import MatchingEngine
from engine.shard.order_stream import OP_NEW, ORDER_DTYPE, owners_of
from engine.shard.trade_recorder import TRADE_DTYPE, TradeRecorder
from engine.types.enums import OrderFlag, RejectCode

# workload tif -> (TimeInForce, flags)
TIF_MAP = ((0, 0), (1, 0), (2, 0), (0, int(OrderFlag.POST_ONLY)))


def feed_orders(engine: MatchingEngine, orders: np.ndarray) -> None:
    """Run every ORDER record through ``engine`` (the replay's inner loop).

    The cyclic garbage collector is paused for the loop: the engine's records (lists of ints,
    dicts, deques) form no reference cycles, and a full collection over a million live records
    costs more than the matching itself. It is re-enabled (if it was on) afterwards.
    """
    if orders.dtype != ORDER_DTYPE:
        orders = orders.astype(ORDER_DTYPE)
    owner = owners_of(orders)
    tif = orders["tif"].astype(np.int64)
    tif_col = np.array([t for t, _ in TIF_MAP], dtype=np.int64)[np.minimum(tif, 3)].tolist()
    flag_col = np.array([f for _, f in TIF_MAP], dtype=np.int64)[np.minimum(tif, 3)].tolist()
    is_new = orders["op"] == OP_NEW
    oids = orders["oid"]
    # new orders carry their own account; cancels the owner's (0 when the oid never appeared)
    acct = np.where(is_new, orders["account"], owner[np.minimum(oids, len(owner) - 1)] if len(owner) else 0)
    place = engine.place
    cancel = engine.cancel
    cols = (
        is_new.tolist(),
        orders["side"].tolist(),
        tif_col,
        flag_col,
        orders["market"].tolist(),
        oids.tolist(),
        acct.tolist(),
        orders["price"].tolist(),
        orders["qty"].tolist(),
    )
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for new, side, t, flags, market, oid, account, price, qty in zip(*cols, strict=True):
            if new:
                place(market, oid, oid, account, side, price, qty, t, 0, flags)
            else:
                cancel(market, oid, 0, account)
    finally:
        if was_enabled:
            gc.enable()


def replay_orders(
    orders: np.ndarray, markets: dict[int, MarketSpec] | None = None, engine_factory: Any = MatchingEngine
) -> tuple[np.ndarray, dict[str, Any]]:
    """Replay ``orders`` in process. Returns (TRADE array in fill order, summary dict).

    Summary: ``orders``, ``trades``, ``rejects`` (reason name -> count), ``seconds``, ``ops_per_s``.
    """
    if markets is None:
        count = int(orders["market"].max()) + 1 if len(orders) else 1
        markets = workload_markets(count)
    recorder = TradeRecorder()
    engine = engine_factory(markets, recorder)
    t0 = time.perf_counter()
    feed_orders(engine, orders)
    seconds = time.perf_counter() - t0
    trades = recorder.trades()
    rejects = {RejectCode(code).name: n for code, n in sorted(recorder.rejects.items())}
    summary = {
        "orders": int(len(orders)),
        "trades": int(len(trades)),
        "rejects": rejects,
        "seconds": round(seconds, 6),
        "ops_per_s": round(len(orders) / seconds) if seconds > 0 else 0,
    }
    return trades, summary


__all__ = ["ORDER_DTYPE", "TRADE_DTYPE", "feed_orders", "owners_of", "replay_orders"]
