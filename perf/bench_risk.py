"""Risk benchmark: pre-trade checks (in process and through the rings), margin recomputation, memory.

* ``checks_per_s``: NEW_ORDERs of funded accounts through the engine in this process as the risk
  process applies a backlog of them (records of its ``MAX_BATCH`` slots: ``apply_slots`` then
  ``end_of_record``; the O(1) check, the reservation, the forward), median of runs;
* ``ring_checks_per_s``: the same orders through real processes: a feeder publishes them into the
  risk partition's command ring as fast as it takes them (and drains risk's events all along), risk
  checks and forwards them to the shard (which matches them); the clock stops at the echo of a
  HEARTBEAT sent after the last order (risk answers it once everything before it is checked and
  forwarded); median of runs, a fresh pipeline each;
* ``recompute_ms``: every account's equity, initial and maintenance margin recomputed at once,
  100,000 accounts with positions in 20 perp markets (on 10 assets) and collateral in several
  assets; ``recompute_touched_ms``: the accounts one fill batch touches (``touched`` rows);
* ``rss_mb``: the resident size of a risk engine holding 1,000,000 funded accounts, 100,000 of
  them with positions (measured in a child process, state built through the engine's own rows).

Both engines in the same run: the figures above are the compiled core's (``NativeRiskEngine``,
``engine`` = "native") and ``python`` holds the Python engine's ``checks_per_s`` and
``ring_checks_per_s`` (``HX_ENGINE=python`` for the risk process), with the ratios.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.host.heap import keep_freed_memory
from engine.risk.native_risk import RISK_ENGINE_ENV, NativeRiskEngine, native_available
from engine.risk.process import MAX_BATCH
from engine.risk.risk_config import RiskConfig, risk_config_from
from engine.risk.risk_engine import RiskEngine, Source
from engine.types.asset_spec import AssetSpec
from engine.types.enums import AssetKind, MarketKind, MsgType
from engine.types.market_spec import MarketSpec
from engine.wire.codec import encode
from engine.wire.layout import SLOT_BYTES

N_ASSETS = 11  # USDC + 10 crypto assets
N_PERPS = 20  # two perps per asset (e.g. a main and a second listing)


def bench_config() -> tuple[dict[int, MarketSpec], dict[int, AssetSpec]]:
    assets = {0: AssetSpec(0, "USDC", AssetKind.STABLE)}
    for a in range(1, N_ASSETS):
        assets[a] = AssetSpec(a, f"C{a}", AssetKind.CRYPTO)
    markets = {}
    for m in range(N_PERPS):
        base = 1 + m % (N_ASSETS - 1)
        markets[100 + m] = MarketSpec(
            100 + m,
            f"C{base}-P{m}",
            MarketKind.PERP,
            tick_size_micro=10_000,
            lot_size_atoms=1_000_000,
            max_price_ticks=10**9,
            base_asset=f"C{base}",
            taker_fee_ppm=500,
        )
    return markets, assets


def _markets_toml(markets: dict[int, MarketSpec], assets: dict[int, AssetSpec]) -> str:
    lines = []
    for a in assets.values():
        lines += [
            "[[asset]]",
            f"asset_id = {a.asset_id}",
            f'symbol = "{a.symbol}"',
            f'kind = "{a.kind.name.lower()}"',
            "",
        ]
    for m in markets.values():
        lines += [
            "[[market]]",
            f"market_id = {m.market_id}",
            f'symbol = "{m.symbol}"',
            'kind = "perp"',
            f"tick_size_micro = {m.tick_size_micro}",
            f"lot_size_atoms = {m.lot_size_atoms}",
            f"max_price_ticks = {m.max_price_ticks}",
            f'base_asset = "{m.base_asset}"',
            f"taker_fee_ppm = {m.taker_fee_ppm}",
            "",
        ]
    return "\n".join(lines)


def _funded_engine(config: RiskConfig, accounts: int, native: bool) -> RiskEngine:
    engine = NativeRiskEngine(config) if native else RiskEngine(config)
    for m in config.markets.values():
        engine.handle_command(encode(MsgType.MARK_PRICE, m.market_id, price_ticks=100_000), 0)
    engine.take_outputs()
    for a in range(1, accounts + 1):
        engine.handle_command(
            encode(MsgType.DEPOSIT, source=1, account=a, asset=0, amount=10**12, deposit_id=a), 0
        )
    engine.end_of_record()
    engine.take_outputs()
    return engine


def _orders(config: RiskConfig, n: int, accounts: int, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    mids = np.array(sorted(config.markets))
    acct = rng.integers(1, accounts + 1, n)
    market = mids[rng.integers(0, len(mids), n)]
    side = rng.integers(0, 2, n)
    price = 100_000 + rng.integers(-50, 50, n)
    return b"".join(
        encode(
            MsgType.NEW_ORDER,
            int(market[i]),
            account=int(acct[i]),
            client_order_id=i + 1,
            side=int(side[i]),
            price_ticks=int(price[i]),
            size_lots=1 + int(i % 7),
        )
        for i in range(n)
    )


def checks_in_process(
    orders: int = 200_000, accounts: int = 10_000, runs: int = 3, native: bool = True
) -> float:
    markets, assets = bench_config()
    config = risk_config_from(markets, assets)
    data = _orders(config, orders, accounts)
    record = MAX_BATCH * SLOT_BYTES  # as the risk process frames a backlog of commands
    rates = []
    for _ in range(runs):
        engine = _funded_engine(config, accounts, native)
        t0 = time.perf_counter()
        for off in range(0, len(data), record):
            engine.apply_slots(data, off, min(record, len(data) - off) // SLOT_BYTES, Source.GATEWAY)
            engine.end_of_record()
            engine.take_outputs()
        rates.append(orders / (time.perf_counter() - t0))
    return statistics.median(rates)


def checks_through_rings(orders: int = 200_000, accounts: int = 2_000, native: bool = True) -> float:
    from hx.topology import Topology

    markets, assets = bench_config()
    config = risk_config_from(markets, assets)
    with tempfile.TemporaryDirectory(prefix="hx-bench-risk-") as tmp:
        path = Path(tmp) / "hx.toml"
        path.write_text(_markets_toml(markets, assets))
        # no recorder: one nobody reads would stop the shard once its event ring is full (risk's
        # event ring gets the default reader, recorder-0, which this feeder drains)
        topo = Topology(run_id=f"hx-br-{os.getpid()}", shards=1, gateways=0, risk=1, recorders=0)
        previous = os.environ.get(RISK_ENGINE_ENV)
        os.environ[RISK_ENGINE_ENV] = "native" if native else "python"  # the risk process reads it
        try:
            return _through_rings(topo, path, Path(tmp), config, markets, orders, accounts)
        finally:
            if previous is None:
                os.environ.pop(RISK_ENGINE_ENV, None)
            else:
                os.environ[RISK_ENGINE_ENV] = previous


def _through_rings(
    topo: Any,
    path: Path,
    tmp: Path,
    config: RiskConfig,
    markets: dict[int, MarketSpec],
    orders: int,
    accounts: int,
) -> float:
    from hx.pipeline import Pipeline

    with Pipeline(topo, markets_path=path, state_dir=tmp / "state", fsync="none", wait="blocking") as pipe:
        ring = pipe.rings[topo.risk_in_ring(0, 0)]
        events = pipe.rings[topo.risk_event_ring(0)].consumer(0)
        try:
            setup = [encode(MsgType.MARK_PRICE, m, price_ticks=100_000) for m in markets]
            setup += [
                encode(MsgType.DEPOSIT, source=1, account=a, asset=0, amount=10**12, deposit_id=a)
                for a in range(1, accounts + 1)
            ]
            _publish_all(ring, b"".join(setup), events)
            _wait_echo(ring, events, 1)
            data = _orders(config, orders, accounts)
            t0 = time.perf_counter()
            _publish_all(ring, data, events)
            _wait_echo(ring, events, 2)
            return orders / (time.perf_counter() - t0)
        finally:
            events.close()


def _publish_all(ring: Any, data: bytes, events: Any) -> None:
    view = memoryview(data)
    chunk = 256 * SLOT_BYTES
    for start in range(0, len(view), chunk):
        part = view[start : start + chunk]
        while not ring.try_publish(part, len(part) // SLOT_BYTES):
            if not _drain(events):  # risk is behind: park until it publishes instead of spinning
                events.wait(0.001)  # (a spinning feeder takes a core from risk and the shard)
        _drain(events)  # all along, not only when our ring is full: risk must never wait on us


def _drain(events: Any) -> bytes:
    view, n = events.peek()
    data = bytes(view)
    view.release()
    events.release(n)
    return data


def _wait_echo(ring: Any, events: Any, marker: int, timeout_s: float = 300.0) -> None:
    while not ring.try_publish(encode(MsgType.HEARTBEAT, ts_ns=marker), 1):
        _drain(events)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = _drain(events)
        for off in range(0, len(data), SLOT_BYTES):
            if (
                data[off] == MsgType.HEARTBEAT
                and int.from_bytes(data[off + 8 : off + 16], "little") == marker
            ):
                return
        if not data:
            events.wait(0.01)
    raise TimeoutError("risk did not echo the end marker")


def _positions_engine(config: RiskConfig, accounts: int, with_positions: int, seed: int = 5) -> RiskEngine:
    """Funded accounts; the first ``with_positions`` hold positions in every perp and collateral in
    several assets (written into the book: the recomputation reads exactly these columns)."""
    engine = NativeRiskEngine(config) if native_available() else RiskEngine(config)
    book = engine.book
    for a in range(1, accounts + 1):
        book.row(a)
    n = book.count
    rng = np.random.default_rng(seed)
    book.balance[:n, 0] = 10**10
    k = with_positions
    rows = np.arange(n - accounts, n - accounts + k)
    book.balance[rows, 1:] = rng.integers(0, 10**9, (k, N_ASSETS - 1))
    size = rng.integers(-(10**8), 10**8, (k, N_PERPS))
    book.perp_size[rows] = size
    book.perp_cost[rows] = size * 1_000  # $1,000 per unit entry
    engine.prices[1:] = 1_000 * 10**6
    engine.marks[:] = 1_010 * 10**6
    return engine


def recompute(accounts: int = 100_000, touched: int = 128, runs: int = 5) -> dict[str, float]:
    markets, assets = bench_config()
    config = risk_config_from(markets, assets)
    engine = _positions_engine(config, accounts, accounts)
    rows = np.arange(engine.book.count)
    full, part = [], []
    rng = np.random.default_rng(9)
    # warm-up: the first call allocates the layout's scratch buffers for that many rows (not the
    # recomputation's cost; with --runs 1 it would be all that is measured)
    engine.margin.recompute(engine.book, rows, engine.prices, engine.marks)
    engine.margin.recompute(engine.book, rows[:touched], engine.prices, engine.marks)
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.margin.recompute(engine.book, rows, engine.prices, engine.marks)
        full.append((time.perf_counter() - t0) * 1e3)
        sel = np.sort(rng.choice(rows, touched, replace=False))
        t0 = time.perf_counter()
        engine.margin.recompute(engine.book, sel, engine.prices, engine.marks)
        part.append((time.perf_counter() - t0) * 1e3)
    return {"recompute_ms": statistics.median(full), "recompute_touched_ms": statistics.median(part)}


def _rss_child(accounts: int, with_positions: int, out: Any) -> None:
    keep_freed_memory()  # as the risk process does: what it keeps counts
    import psutil

    markets, assets = bench_config()
    engine = _positions_engine(risk_config_from(markets, assets), accounts, with_positions)
    engine.margin.recompute(engine.book, np.arange(engine.book.count), engine.prices, engine.marks)
    out.put(psutil.Process().memory_info().rss / 2**20)


def rss_mb(accounts: int = 1_000_000, with_positions: int = 100_000) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_rss_child, args=(accounts, with_positions, q))
    p.start()
    value = q.get(timeout=600)
    p.join()
    return float(value)


def _median_of(runs: int, measure: Any) -> float:
    """The median of ``runs`` runs of ``measure()`` (each through a fresh pipeline: one run's
    figure moved 290-560K with the VM's load)."""
    return statistics.median(measure() for _ in range(max(1, runs)))


def run(runs: int = 3, quick: bool = False) -> dict[str, Any]:
    keep_freed_memory()  # as the risk process does (engine/host/heap.py)
    native = native_available()
    n = 50_000 if quick else 200_000
    report: dict[str, Any] = {"bench": "risk", "engine": "native" if native else "python", "runs": runs}
    report["checks_per_s"] = round(checks_in_process(runs=runs, orders=n, native=native))
    report["ring_checks_per_s"] = round(
        _median_of(runs, lambda: checks_through_rings(orders=n, native=native))
    )
    if native:  # the specification, in the same run
        py = {
            "checks_per_s": round(checks_in_process(runs=runs, orders=n // 4, native=False)),
            "ring_checks_per_s": round(
                _median_of(runs, lambda: checks_through_rings(orders=n // 4, native=False))
            ),
        }
        py["native_speedup"] = round(report["checks_per_s"] / max(1, py["checks_per_s"]), 2)
        py["native_ring_speedup"] = round(report["ring_checks_per_s"] / max(1, py["ring_checks_per_s"]), 2)
        report["python"] = py
    report.update(
        {k: round(v, 3) for k, v in recompute(runs=runs, accounts=10_000 if quick else 100_000).items()}
    )
    report["rss_mb"] = round(
        rss_mb(accounts=100_000 if quick else 1_000_000, with_positions=10_000 if quick else 100_000), 1
    )
    report["targets"] = {
        "checks_per_s": 1_000_000,
        "ring_checks_per_s": 500_000,
        "recompute_ms": 10,
        "rss_mb": 2048,
    }
    return report


if __name__ == "__main__":
    print(json.dumps(run()))
