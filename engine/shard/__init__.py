"""The matching shard: market rules, the fast book and its reference twin, the engine, events, replay.

Public API used by the shard process (``engine/shard/process.py``) and the CLI:

* ``load_markets(path) -> {market_id: MarketSpec}`` (``market_spec``)
* ``MatchingEngine(markets, sink)``: ``handle(buf, offset)``, ``handle_batch(buf, count, offset)``,
  ``snapshot()``, ``MatchingEngine.restore(markets, sink, blob)``, ``state_hash()``, ``validate()``
* sinks: ``WireEventWriter`` (events as 64-byte wire structs), ``TradeRecorder``, ``NullSink``
* ``replay_orders(orders, markets=None) -> (trades, summary)`` (``replay``)
* ``ports``: the ``Engine`` protocol both engines satisfy (checked by mypy), ``EventSink``
* ``event_interfaces`` (generated from ``engine.wire.layout`` by ``python -m engine.native.codegen``)
"""

from engine.shard.event_sink import CountingSink, EventRecorder, EventSink, NullSink
from engine.shard.matching_engine import MatchingEngine
from engine.shard.trade_recorder import TradeRecorder
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.market_spec import MarketConfigError, MarketSpec, load_markets, workload_markets

__all__ = [
    "CountingSink",
    "EventRecorder",
    "EventSink",
    "MarketConfigError",
    "MarketSpec",
    "MatchingEngine",
    "NullSink",
    "TradeRecorder",
    "WireEventWriter",
    "load_markets",
    "workload_markets",
]
