"""In-process replay: a workload ORDER stream -> the matching engine -> fills as TRADE records.

Translation of each ORDER record (``../shared/workload/README.md``):

* op 1 (new): NEW_ORDER with ``order_id = client_order_id = oid``, the record's account, side,
  price, qty; tif 0 GTC, 1 IOC, 2 FOK, 3 post-only = GTC + ``OrderFlag.POST_ONLY`` (reject variant);
  STP mode NONE (the workload allows self-trades).
* op 2 (cancel): CANCEL by order id; the workload carries no account, so the owner is looked up in
  an oid -> account table built from the stream's new orders (an unknown oid gets account 0, and is
  rejected UNKNOWN_ORDER like any cancel of an order that is not resting).

The default engine is the compiled core the shard runs (``NativeEngine``): the records become wire
commands (``order_stream.to_commands``, the same translation) and go through ``handle_batch`` in
ring-sized batches; the fills are read back from the packed events. ``engine_factory=MatchingEngine``
runs the Python twin instead, whose loop calls ``place``/``cancel`` directly with ints (the methods
``handle`` calls after unpacking a wire struct). With ``markets=None`` the engine gets
``workload_markets``: tick 1, lot 1, no band, no min notional, large max size.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from engine.shard.matching_engine import MatchingEngine
from engine.shard.native_engine import NativeEngine, native_available
from engine.shard.order_stream import OP_NEW, ORDER_DTYPE, owners_of, to_commands
from engine.shard.trade_recorder import TRADE_DTYPE, TradeRecorder, reject_counts, trades_from_events
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import OrderFlag, RejectCode
from engine.types.market_spec import MarketSpec, workload_markets

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


BATCH = 256  # commands per core call: the shard's ring batch


def _replay_native(orders: np.ndarray, markets: dict[int, MarketSpec]) -> tuple[np.ndarray, dict[int, int]]:
    """Fills and reject counts of ``orders`` through the compiled core, batch by batch."""
    buf = to_commands(orders.astype(ORDER_DTYPE, copy=False)).tobytes()
    core = NativeEngine(markets, WireEventWriter(), debug_validate=False).core
    trades: list[np.ndarray] = []
    rejects: dict[int, int] = {}
    n = len(orders)
    for start in range(0, n, BATCH):
        core.handle_batch(buf, min(BATCH, n - start), start * 64)
        events = core.take_events()
        trades.append(trades_from_events(events))
        for code, count in reject_counts(events).items():
            rejects[code] = rejects.get(code, 0) + count
    return (np.concatenate(trades) if trades else np.empty(0, dtype=TRADE_DTYPE)), rejects


def replay_orders(
    orders: np.ndarray, markets: dict[int, MarketSpec] | None = None, engine_factory: Any = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Replay ``orders`` in process. Returns (TRADE array in fill order, summary dict).

    ``engine_factory``: None = the compiled core (the Python twin if it is not built), or an engine
    class such as ``MatchingEngine``. Summary: ``orders``, ``trades``, ``rejects`` (reason name ->
    count), ``seconds``, ``ops_per_s``, ``engine``.
    """
    if markets is None:
        count = int(orders["market"].max()) + 1 if len(orders) else 1
        markets = workload_markets(count)
    if engine_factory is None:
        engine_factory = NativeEngine if native_available() else MatchingEngine
    t0 = time.perf_counter()
    if engine_factory is NativeEngine:
        trades, reject_map = _replay_native(orders, markets)
    else:
        recorder = TradeRecorder()
        feed_orders(engine_factory(markets, recorder), orders)
        trades, reject_map = recorder.trades(), recorder.rejects
    seconds = time.perf_counter() - t0
    rejects = {RejectCode(code).name: n for code, n in sorted(reject_map.items())}
    summary = {
        "orders": int(len(orders)),
        "trades": int(len(trades)),
        "rejects": rejects,
        "seconds": round(seconds, 6),
        "ops_per_s": round(len(orders) / seconds) if seconds > 0 else 0,
        "engine": "native" if engine_factory is NativeEngine else "python",
    }
    return trades, summary


__all__ = ["ORDER_DTYPE", "TRADE_DTYPE", "feed_orders", "owners_of", "replay_orders"]
