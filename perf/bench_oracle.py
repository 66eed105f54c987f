"""Oracle latency: a source update to the published MARK, and to the margins of every dependent account.

One sample: the BTC feeds quote a new price; the oracle's tick record (the quotes as SOURCE_QUOTE
slots) is applied to ``OracleEngine`` and its outputs taken: that is ``update_to_mark`` (index,
mark, the MARK_PRICE/ORACLE_PRICE bytes for risk and shards and the public MARK). Those risk bytes
are then applied to a ``RiskEngine`` holding ``accounts`` accounts, every one with a BTC-PERP
position, as one record (``end_of_record`` recomputes the margin of every account holding the
perp - ``margins_recomputed_median`` - runs the liquidation scan on the fresh figures, and sends
ACCOUNT_MARGIN to the accounts for which the move is news - ``margin_events_median``, see
``RiskEngine._margin_news``): that is ``update_to_margin``, up to the moment those events leave risk
(in the risk process ``RiskEngine.early_flush`` publishes a record's outputs so far before the
record's periodic ADL-rank pass; here the hook notes the time).

In-process, on the exchange's own config (config/hx.toml): the two engines' work, which is what
grows with the number of accounts. Not included, and named in the report: the ring hop between
the processes (~2 us with both sides spinning, ~30-40 us to wake a parked consumer on these
machines) and the journal append (group commit, fsync per policy).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from typing import Any

import numpy as np

from engine.host.heap import keep_freed_memory
from engine.oracle.oracle_config import load_oracle_config
from engine.oracle.oracle_engine import OracleEngine
from engine.oracle.ports import RawQuote
from engine.oracle.process import BATCH_HEADER, HEADER_SLOT, TICK, apply_record, quote_slots
from engine.risk.native_risk import make_risk_engine
from engine.risk.risk_config import load_risk_config
from engine.risk.risk_engine import RiskEngine, Source
from engine.types.enums import MsgType
from engine.wire.layout import SLOT_BYTES

BTC, BTC_PERP = 1, 100
S = 10**9


class _Feed:
    def __init__(self, feed: int) -> None:
        self.asset_id, self.feed, self.name = BTC, feed, f"bench{feed}"
        self.price = "95000"

    def poll(self, now_ns: int) -> list[RawQuote]:
        return [RawQuote(self.price, now_ns)]

    def close(self) -> None:
        pass


def _risk_engine(config_path: str, accounts: int) -> RiskEngine:
    """``accounts`` funded accounts, each long or short 0.01-1 BTC of BTC-PERP (summing to zero)."""
    config = load_risk_config(config_path)
    engine = make_risk_engine(config)  # the implementation the risk process runs
    book = engine.book
    for a in range(1, accounts + 1):
        book.row(a)
    n = book.count
    rows = np.arange(n - accounts, n)
    perp = config.markets[BTC_PERP].perp
    rng = np.random.default_rng(7)
    size = rng.integers(1, 100, accounts) * 1_000_000  # 0.01 .. 0.99 BTC in atoms
    size[1::2] *= -1
    size[-1] -= int(size.sum())  # the exchange's positions net to zero
    book.balance[rows, 0] = 100_000 * 10**6
    book.perp_size[rows, perp] = size
    book.perp_cost[rows, perp] = size * 950  # entered at $95,000: atoms x 95,000e6 micro / 1e8
    engine.handle_command(_mark(950_000), 0, Source.ORACLE)  # a first mark ($0.10 ticks)
    engine.end_of_record()
    engine.take_outputs()
    return engine


def _mark(price_ticks: int) -> bytes:
    from engine.wire.codec import encode

    return encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=price_ticks)


def run(accounts: int = 100_000, samples: int = 200, config_path: str | None = None) -> dict[str, Any]:
    from hx.config import DEFAULT_CONFIG

    path = str(config_path or DEFAULT_CONFIG)
    keep_freed_memory()  # as the risk and oracle processes do (engine/host/heap.py)
    oracle = OracleEngine(load_oracle_config(path), 1)
    risk = _risk_engine(path, accounts)
    gc.collect()  # as the processes do once built (engine/risk/process.py, engine/oracle/process.py):
    gc.freeze()  # what start-up made is out of the collector's sight
    feeds = [_Feed(f) for f in range(len(oracle.config.feeds_of(BTC)))]
    perp = risk.config.markets[BTC_PERP].perp
    now = 1_764_720_000 * S
    to_mark, to_margin, margins, recomputed = [], [], [], []
    for k in range(samples + 5):
        now += 250_000_000
        price = f"{95_000 + (k % 2) * 20 + k * 0.5:.2f}"  # a new price every sample
        for f in feeds:
            f.price = price
        t0 = time.perf_counter_ns()
        body = quote_slots(feeds, now)  # type: ignore[arg-type]
        record = (
            BATCH_HEADER.pack(TICK, 0, 0, 0, now, len(body) // SLOT_BYTES).ljust(HEADER_SLOT, b"\0") + body
        )
        apply_record(oracle, record, 0)
        _shards, to_risk, public = oracle.take_outputs()
        t1 = time.perf_counter_ns()
        for off in range(0, len(to_risk), SLOT_BYTES):
            risk.handle_command(to_risk, off, Source.ORACLE)
        t_count = time.perf_counter_ns()
        n = risk.book.count  # the dependent accounts: every holder of the perp (recomputed below)
        dependent = int(np.count_nonzero(risk.book.perp_size[:n, perp] | risk.book.dirty[:n]))  # (not timed)
        t_count = time.perf_counter_ns() - t_count
        flushed: list[int] = []
        risk.early_flush = lambda: flushed.append(time.perf_counter_ns())  # noqa: B023
        risk.end_of_record()
        _orders, events = risk.take_outputs()
        t2 = (flushed[0] if flushed else time.perf_counter_ns()) - t_count
        if k < 5:  # warm-up
            continue
        if not any(public[i] == MsgType.MARK for i in range(0, len(public), SLOT_BYTES)):
            raise AssertionError("the quote did not produce a MARK")
        to_mark.append((t1 - t0) / 1e3)
        to_margin.append((t2 - t0) / 1e6)
        recomputed.append(dependent)
        margins.append(
            sum(1 for i in range(0, len(events), SLOT_BYTES) if events[i] == MsgType.ACCOUNT_MARGIN)
        )
    gc.unfreeze()  # (hx bench all runs the next benchmark in this process)
    rows = np.arange(risk.book.count)
    recompute = []
    for _ in range(5):  # the vectorised margin maths alone, for every account (no events, no scan)
        t0 = time.perf_counter_ns()
        risk.margin.recompute(risk.book, rows, risk.prices, risk.marks)
        recompute.append((time.perf_counter_ns() - t0) / 1e6)

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    return {
        "bench": "oracle",
        "risk_engine": type(risk).__name__,
        "accounts": accounts,
        "samples": samples,
        "update_to_mark_p50_us": round(statistics.median(to_mark), 1),
        "update_to_mark_p99_us": round(pct(to_mark, 99), 1),
        "update_to_margin_p50_ms": round(statistics.median(to_margin), 3),
        "update_to_margin_p99_ms": round(pct(to_margin, 99), 3),
        "margins_recomputed_median": int(statistics.median(recomputed)),
        "margin_events_median": int(statistics.median(margins)),
        "margin_recompute_only_ms": round(statistics.median(recompute), 3),
        "scope": "in-process: oracle tick + risk record (index, mark, recompute of every holder, liquidation "
        "scan, ACCOUNT_MARGIN to the accounts it is news to); "
        "excludes the ring hop (~2 us spinning, ~30-40 us waking a parked process) and the journal append",
        "targets": {"update_to_margin_p99_ms": 5},
    }


if __name__ == "__main__":
    print(json.dumps(run()))
