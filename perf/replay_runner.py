"""`hx replay`: run a standard ORDER stream through the real engine, in-process or through shards.

Both modes write the same TRADE file: fills in the order they happen. Within a market that is the
engine's order; across markets of a sharded run it is reconstructed from the stream (each fill is
placed at its taker order's position in the input, fills of one taker keep their order), so a
sharded run's output is byte-identical to the in-process run's when the engine is correct.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.shard.order_stream import ORDER_DTYPE, to_commands
from engine.shard.trade_recorder import fills_to_trades
from engine.types.enums import RejectCode


class ReplayInputError(ValueError):
    """The ORDER file cannot be replayed; the message names the file and the problem."""


def load_orders(path: Path) -> np.ndarray:
    try:
        orders = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ReplayInputError(f"{path}: not a readable .npy file ({exc})") from None
    if orders.dtype != ORDER_DTYPE:
        raise ReplayInputError(f"{path}: dtype {orders.dtype} is not the ORDER dtype {ORDER_DTYPE}")
    if orders.ndim != 1:
        raise ReplayInputError(f"{path}: expected a 1-d array of ORDER records, got shape {orders.shape}")
    bad_op = ~np.isin(orders["op"], (1, 2))
    if bad_op.any():
        raise ReplayInputError(
            f"{path}: record {int(np.argmax(bad_op))} has op {orders['op'][bad_op][0]} (1 or 2)"
        )
    if (orders["account"] > 0xFFFF_FFFF).any():
        raise ReplayInputError(f"{path}: account ids must fit in 32 bits")
    return orders


def order_fills_by_stream(fills: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Sort wire FILL records into stream order by their taker's position (stable)."""
    is_new = orders["op"] == 1
    pos = np.full(int(orders["oid"].max()) + 1 if len(orders) else 1, -1, dtype=np.int64)
    pos[orders["oid"][is_new]] = np.flatnonzero(is_new)
    order = np.argsort(pos[fills["taker_order_id"]], kind="stable")
    return fills[order]


def workload_markets_file(directory: Path, count: int) -> Path:
    """Write a markets TOML with the workload markets 0..count-1 (tick 1, lot 1, no band)."""
    from engine.types.market_spec import workload_markets

    lines = ["# generated: markets that accept the standard workload streams"]
    for spec in workload_markets(count).values():
        lines += [
            "[[market]]",
            f"market_id = {spec.market_id}",
            f'symbol = "{spec.symbol}"',
            'kind = "spot"',
            f"tick_size_micro = {spec.tick_size_micro}",
            f"lot_size_atoms = {spec.lot_size_atoms}",
            f"min_size_lots = {spec.min_size_lots}",
            f"max_size_lots = {spec.max_size_lots}",
            f"max_price_ticks = {spec.max_price_ticks}",
            "",
        ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"workload-markets-{count}.toml"
    path.write_text("\n".join(lines))
    return path


def replay_sharded(orders: np.ndarray, shards: int, workdir: Path) -> tuple[np.ndarray, dict]:
    from hx.pipeline import Pipeline
    from hx.topology import Topology
    from perf.stream_feeder import feed

    topo = Topology(run_id=f"hx-replay-{os.getpid()}", shards=shards, gateways=0, recorders=1)
    markets = workload_markets_file(workdir, int(orders["market"].max()) + 1 if len(orders) else 1)
    commands = to_commands(orders)
    with Pipeline(topo, markets_path=markets, state_dir=workdir / "state", fsync="none") as pipe:
        t0 = time.perf_counter()
        tally = feed(pipe, commands)
        elapsed = time.perf_counter() - t0
    trades = fills_to_trades(order_fills_by_stream(tally.fills_array(), orders))
    rejects = {
        RejectCode(code).name if code in RejectCode._value2member_map_ else str(code): int(count)
        for code, count in enumerate(tally.rejects)
        if count
    }
    summary = {
        "orders": int(len(orders)),
        "trades": int(len(trades)),
        "rejects": rejects,
        "ops_per_s": round(len(orders) / elapsed),
        "shards": shards,
        "mode": "processes",
    }
    return trades, summary


def run_replay(orders_path: Path, trades_out: Path, shards: int | None) -> dict:
    orders = load_orders(orders_path)
    if shards is None:
        from engine.shard.replay import replay_orders

        trades, summary = replay_orders(orders)
        summary = {**summary, "mode": "in-process"}
    else:
        with tempfile.TemporaryDirectory(prefix="hx-replay-") as tmp:
            trades, summary = replay_sharded(orders, shards, Path(tmp))
    np.save(trades_out, trades)
    return {**summary, "trades_out": str(trades_out)}
