"""The exchange's one Prometheus endpoint: every process's metrics, read at scrape time.

The supervisor serves ``/metrics`` (prometheus-client's HTTP server, a thread of the supervisor
process). A scrape reads every stage's slot of the health board (``engine.host.metrics`` names
each word) and every ring's counters, and labels each series with the process or ring. The stage
processes publish by plain stores into shared memory: no HTTP server, thread or lock on the hot
path. Series: the processes' own (``hx_orders_total{process="gateway-0"}``...), and
``hx_process_up``, ``hx_beat_age_seconds``, ``hx_waiting_on_downstream_seconds``,
``hx_ring_published_total`` and ``hx_ring_lag{ring, consumer}`` (ring depth per consumer).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from engine.host.metrics import COUNTER, GAUGE, LATENCY_BUCKETS_US, layout


class PipelineCollector(Collector):
    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Any]:
        p = self.pipeline
        families: dict[str, Any] = {}
        up = GaugeMetricFamily("hx_process_up", "1 when the stage process is alive", labels=["process"])
        beat = GaugeMetricFamily(
            "hx_beat_age_seconds", "since the process's loop last went round", labels=["process"]
        )
        waiting = GaugeMetricFamily(
            "hx_waiting_on_downstream_seconds",
            "how long it has waited for room downstream",
            labels=["process"],
        )
        now = time.monotonic_ns()
        for name, handle in list(p.procs.items()):
            up.add_metric([name], 1.0 if handle.process.is_alive() else 0.0)
            entry = p.health_of(name)
            if entry is None or p.board is None or p._run is None:
                continue
            beat.add_metric([name], (now - entry["beat_ns"]) / 1e9)
            waiting.add_metric(
                [name], (now - entry["waiting_since_ns"]) / 1e9 if entry["waiting_since_ns"] else 0.0
            )
            words = p.board.metrics(p._run.health_slots[name])
            for metric, (word, d) in layout(handle.stage.kind).items():
                if d.kind == COUNTER:
                    fam = families.setdefault(metric, CounterMetricFamily(metric, d.help, labels=["process"]))
                    fam.add_metric([name], float(words[word]))
                elif d.kind == GAUGE:
                    fam = families.setdefault(metric, GaugeMetricFamily(metric, d.help, labels=["process"]))
                    fam.add_metric([name], float(words[word]))
                else:
                    fam = families.setdefault(
                        metric, HistogramMetricFamily(metric, d.help, labels=["process"])
                    )
                    n = len(LATENCY_BUCKETS_US)
                    cumulative, buckets = 0, []
                    for k, bound in enumerate(LATENCY_BUCKETS_US):
                        cumulative += words[word + k]
                        buckets.append((str(bound), float(cumulative)))
                    cumulative += words[word + n]
                    buckets.append(("+Inf", float(cumulative)))
                    fam.add_metric([name], buckets, sum_value=float(words[word + n + 1]))
        yield up
        yield beat
        yield waiting
        yield from families.values()
        published = CounterMetricFamily("hx_ring_published", "slots published into the ring", labels=["ring"])
        lag = GaugeMetricFamily(
            "hx_ring_lag", "slots published and not yet read, per consumer", labels=["ring", "consumer"]
        )
        for spec in p.topology.rings:
            ring = p.rings.get(spec.name)
            if ring is None:
                continue
            published.add_metric([spec.name], float(ring.published))
            for i, consumer in enumerate(spec.consumers):
                lag.add_metric([spec.name, consumer], float(ring.published - ring.consumer_cursor(i)))
        yield published
        yield lag


def start_exporter(pipeline: Any, host: str, port: int) -> Any:
    """Serve ``/metrics`` on ``host:port`` from a thread of this (the supervisor's) process."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(PipelineCollector(pipeline))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
