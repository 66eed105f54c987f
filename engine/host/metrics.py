"""The metrics every stage process publishes, named once: one registry for the whole exchange.

A process gets a :class:`Metrics` over its health-board slot and sets or adds to words by name
(``m.add("hx_orders_total", n)`` per batch, ``m.observe("hx_event_latency_us", us)``); nothing is
allocated or locked. The supervisor's exporter (``hx.metrics_exporter``) reads every slot when
Prometheus scrapes and labels each series with the process (``shard-0``). Names follow Prometheus
conventions: ``_total`` counters, units in the name.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
LATENCY_BUCKETS_US = (50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000)  # then +Inf


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str
    help: str

    @property
    def words(self) -> int:
        return len(LATENCY_BUCKETS_US) + 3 if self.kind == HISTOGRAM else 1  # buckets, +Inf, sum, count


_COMMON = (MetricDef("hx_records_total", COUNTER, "journal records (input batches) handled"),)
DEFINITIONS: dict[str, tuple[MetricDef, ...]] = {
    "shard": _COMMON
    + (
        MetricDef("hx_commands_total", COUNTER, "commands matched"),
        MetricDef("hx_events_total", COUNTER, "events published"),
    ),
    "risk": _COMMON
    + (
        MetricDef("hx_orders_checked_total", COUNTER, "orders through the pre-trade check"),
        MetricDef("hx_orders_rejected_total", COUNTER, "orders refused by risk"),
        MetricDef("hx_fills_applied_total", COUNTER, "fill sides applied to accounts"),
        MetricDef("hx_liquidations_total", COUNTER, "liquidations started"),
        MetricDef("hx_margin_calls", GAUGE, "accounts below maintenance margin now"),
        MetricDef(
            "hx_liquidation_pending", GAUGE, "accounts left to continuation records (a cascade's backlog)"
        ),
        MetricDef(
            "hx_continuation_records_total", COUNTER, "continuation records (liquidation work between inputs)"
        ),
        MetricDef(
            "hx_fund_deleveraging", GAUGE, "1 while the insurance fund's deleveraging goes on over records"
        ),
        MetricDef("hx_insurance_fund_micro", GAUGE, "the partition's insurance fund, micro-USDC"),
        MetricDef("hx_accounts", GAUGE, "accounts the partition holds"),
    ),
    "gateway": _COMMON
    + (
        MetricDef("hx_sessions", GAUGE, "open WebSocket sessions"),
        MetricDef("hx_frames_total", COUNTER, "frames received"),
        MetricDef("hx_orders_total", COUNTER, "orders forwarded"),
        MetricDef("hx_rejects_total", COUNTER, "commands refused by the gateway"),
        MetricDef("hx_events_routed_total", COUNTER, "events read from the event rings"),
        MetricDef("hx_event_latency_us", HISTOGRAM, "engine clock of an event to its routing here"),
    ),
    "oracle": _COMMON
    + (
        MetricDef("hx_index_updates_total", COUNTER, "index prices published"),
        MetricDef("hx_stale_assets", GAUGE, "assets whose index is stale now"),
    ),
    "settlement": _COMMON
    + (
        MetricDef("hx_batches_total", COUNTER, "batches accepted on chain"),
        MetricDef("hx_settlement_lag_events", GAUGE, "account events not yet in an accepted batch"),
        MetricDef("hx_gas_used_total", COUNTER, "gas of accepted batches"),
    ),
}


def layout(kind: str) -> dict[str, tuple[int, MetricDef]]:
    """``{name: (first word, definition)}`` of a process kind."""
    out, word = {}, 0
    for d in DEFINITIONS.get(kind, _COMMON):
        out[d.name] = (word, d)
        word += d.words
    return out


class Metrics:
    """A process's metric words by name (over its health-board slot, or a private array)."""

    __slots__ = ("_w", "_at")

    def __init__(self, kind: str, words: memoryview) -> None:
        self._w = words
        self._at = {name: word for name, (word, _d) in layout(kind).items()}

    def add(self, name: str, n: int = 1) -> None:
        self._w[self._at[name]] += n

    def set(self, name: str, value: int) -> None:
        self._w[self._at[name]] = value

    def observe(self, name: str, value: int) -> None:
        """One observation of a histogram (in its unit)."""
        w, base = self._w, self._at[name]
        k = 0
        for k, bound in enumerate(LATENCY_BUCKETS_US):  # noqa: B007
            if value <= bound:
                break
        else:
            k = len(LATENCY_BUCKETS_US)
        w[base + k] += 1
        w[base + len(LATENCY_BUCKETS_US) + 1] += value
        w[base + len(LATENCY_BUCKETS_US) + 2] += 1
