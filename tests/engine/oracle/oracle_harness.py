"""The oracle engine driven in one process: a config built from the exchange's own markets, quotes,
book events, requests and ticks in, every output decoded. Shared constants name the fixtures."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.oracle.oracle_config import OracleConfig, oracle_config_from
from engine.oracle.oracle_engine import OracleEngine
from engine.oracle.ports import RawQuote
from engine.oracle.process import BATCH_HEADER, HEADER_SLOT, TICK, apply_record, quote_slots
from engine.types.enums import MsgType
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES

ROOT = Path(__file__).resolve().parents[3]
BASE_DOC: dict[str, Any] = tomllib.loads((ROOT / "config" / "hx.toml").read_text())
BTC, ETH, AAPL = 1, 2, 3
BTC_PERP, ETH_PERP, ETH_USDC, AAPL_USDC, PRES28 = 100, 101, 200, 300, 400
AUTHORITY = 1
S = 10**9
T0 = 1_764_720_000 * S  # 2025-12-03 00:00 UTC, a Wednesday


def btc_sources(n: int = 3, **extra: Any) -> list[dict[str, Any]]:
    return [{"asset": "BTC", "name": f"f{i}", "price": "64000", **extra} for i in range(n)]


def make_doc(oracle: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_DOC)
    doc["oracle"] = oracle
    return doc


def make_config(oracle: dict[str, Any]) -> OracleConfig:
    config = oracle_config_from(make_doc(oracle), "test.toml")
    assert config is not None
    return config


def simple_oracle(**top: Any) -> dict[str, Any]:
    """Three BTC feeds and BTC-PERP with hourly funding; no sessions, no predictions."""
    source = top.pop("source", btc_sources())
    perp = top.pop("perp", [{"market": "BTC-PERP", "impact_notional": "1000"}])
    return {"tick_ms": 250, "max_move_ppm_per_s": 1_000_000, **top, "source": source, "perp": perp}


class FeedScript:
    """A PriceSource whose quotes the test sets (``push``)."""

    def __init__(self, asset_id: int, feed: int, name: str = "", perp_market: int = 0) -> None:
        self.asset_id, self.feed, self.name = asset_id, feed, name or f"f{feed}"
        self.perp_market = perp_market
        self.pending: list[RawQuote] = []

    def push(self, price: object, ts_ns: int) -> None:
        self.pending.append(RawQuote(price, ts_ns))

    def poll(self, now_ns: int) -> list[RawQuote]:
        out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        pass


def tick_record(now_ns: int, slots: bytes = b"") -> bytes:
    kept = len(slots) // SLOT_BYTES
    return BATCH_HEADER.pack(TICK, 0, 0, 0, now_ns, kept).ljust(HEADER_SLOT, b"\0") + slots


def ring_record(idx: int, now_ns: int, slots: Iterable[bytes]) -> bytes:
    body = b"".join(slots)
    n = len(body) // SLOT_BYTES
    return BATCH_HEADER.pack(idx, n, 0, 0, now_ns, n).ljust(HEADER_SLOT, b"\0") + body


def split(data: bytes) -> list[dict[str, int]]:
    return [decode(data, k) for k in range(0, len(data), SLOT_BYTES)]


class Harness:
    """One engine, its records (for replays) and every output, decoded, per destination."""

    def __init__(self, config: OracleConfig, shards: int = 1, requests: int = 1) -> None:
        self.config = config
        self.engine = OracleEngine(config, shards)
        self.requests = requests
        self.records: list[bytes] = []
        self.shard_out: list[list[dict[str, int]]] = [[] for _ in range(shards)]
        self.risk_out: list[dict[str, int]] = []
        self.public_out: list[dict[str, int]] = []
        self.raw: list[tuple[list[bytes], bytes, bytes]] = []

    def apply(self, record: bytes) -> tuple[list[bytes], bytes, bytes]:
        self.records.append(record)
        apply_record(self.engine, record, self.requests)
        self.engine.validate()
        out = self.engine.take_outputs()
        self.raw.append(out)
        shards, risk, public = out
        for s, data in enumerate(shards):
            self.shard_out[s] += split(data)
        self.risk_out += split(risk)
        self.public_out += split(public)
        return out

    def tick(self, now_ns: int, sources: list[Any] | None = None) -> tuple[list[bytes], bytes, bytes]:
        return self.apply(tick_record(now_ns, quote_slots(sources or [], now_ns)))

    def book(self, now_ns: int, *slots: bytes) -> None:
        self.apply(ring_record(self.requests, now_ns, slots))

    def request(self, now_ns: int, market: int, account: int, action: int, outcome: int) -> None:
        msg = encode(MsgType.RESOLUTION_REQUEST, market, account=account, action=action, outcome=outcome)
        self.apply(ring_record(0, now_ns, [msg]))

    def of(self, out: list[dict[str, int]], t: MsgType, market: int | None = None) -> list[dict[str, int]]:
        return [m for m in out if m["msg_type"] == t and (market is None or m["market_id"] == market)]


def level(market: int, side: int, price_ticks: int, size_lots: int, seq: int = 1) -> bytes:
    return encode(MsgType.L2_DELTA, market, seq=seq, price_ticks=price_ticks, size_lots=size_lots, side=side)


def feeds(config: OracleConfig, asset: int) -> list[FeedScript]:
    return [FeedScript(asset, s.feed, s.name) for s in config.feeds_of(asset)]


def externals(config: OracleConfig, market: int) -> list[FeedScript]:
    return [FeedScript(s.asset_id, s.feed, s.name, market) for s in config.externals_of(market)]
