"""The standard generated streams through the engine vs the simple matcher written in the tests."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import simple_matcher as SM

from engine.shard.matching_engine import MatchingEngine
from engine.shard.native_engine import NativeEngine
from engine.shard.replay import replay_orders
from perf.workloads.standard_stream import standard_stream

# the invariants are checked elsewhere; validating a 50K-order book after every command takes minutes
ENGINES = {"native": NativeEngine, "python": functools.partial(MatchingEngine, debug_validate=False)}


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(("ops", "markets", "accounts"), [(50_000, 1, 0), (50_000, 1, 50), (20_000, 4, 0)])
def test_generated_stream_matches_simple_matcher(engine: str, ops: int, markets: int, accounts: int) -> None:
    orders = standard_stream(ops, markets=markets, seed=1, accounts=accounts, cache=False)
    trades, summary = replay_orders(orders, engine_factory=ENGINES[engine])
    assert summary["engine"] == engine
    expected, rejects = SM.simple_match(orders)
    assert len(trades) == len(expected) > 0
    assert np.array_equal(trades, expected)
    assert sum(summary["rejects"].values()) == rejects
    assert summary["orders"] == ops and summary["trades"] == len(trades)
