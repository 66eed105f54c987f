"""The oracle in the stage table: its rings, who may be dropped, what each process is told."""

from __future__ import annotations

from pathlib import Path

from oracle_harness import ROOT

from hx.stages import BY_KIND, STAGES, Run, RunSettings, process_names
from hx.topology import Topology


def _topology(**kw: int) -> Topology:
    return Topology(run_id="t", shards=2, gateways=2, risk=2, recorders=1, oracle=1, **kw)


def test_the_oracle_rings_and_who_may_drop_behind() -> None:
    t = _topology()
    by_name = {r.name: r for r in t.rings}
    for s in range(2):
        assert by_name[t.oracle_shard_ring(s)].consumers == (f"shard-{s}",)
        events = by_name[t.event_ring(s)]
        assert "oracle-0" in events.consumers
        assert events.consumer_index("oracle-0") not in events.keep  # it re-reads the books
    for r in range(2):
        spec = by_name[t.oracle_risk_ring(r)]
        assert (spec.producer, spec.consumers, spec.keep) == ("oracle-0", (f"risk-{r}",), (0,))
    oev = by_name[t.oracle_event_ring()]
    assert oev.consumers == ("gateway-0", "gateway-1", "recorder-0")
    assert oev.keep == (2,)  # the recorder; gateways may be dropped (they restate)
    for g in range(2):
        req = by_name[t.oracle_request_ring(g)]
        assert (req.producer, req.consumers, req.keep) == (f"gateway-{g}", ("oracle-0",), (0,))  # never lost


def test_no_oracle_no_rings_and_the_stage_order() -> None:
    t = Topology(run_id="t", shards=1, gateways=1, risk=1)
    assert not [r for r in t.rings if "oracle-0" in (r.producer, *r.consumers)]
    kinds = [s.kind for s in STAGES]
    assert kinds.index("risk") < kinds.index("oracle") < kinds.index("gateway")
    assert "oracle-0" in process_names(_topology()) and "oracle-0" not in process_names(t)


def test_what_the_oracle_risk_shards_and_gateways_are_told() -> None:
    t = _topology()
    run = Run(t, RunSettings(markets_path=ROOT / "config" / "hx.toml", state_dir=Path("/tmp/x")), {}, 0)
    oracle = BY_KIND["oracle"].options(run, 0)
    assert [r.name for r in oracle.requests] == [t.oracle_request_ring(0), t.oracle_request_ring(1)]
    assert [c.ring.name for c in oracle.shard_events] == [t.event_ring(0), t.event_ring(1)]
    assert [r.name for r in oracle.shards] == [t.oracle_shard_ring(0), t.oracle_shard_ring(1)]
    assert [r.name for r in oracle.risk] == [t.oracle_risk_ring(0), t.oracle_risk_ring(1)]
    assert oracle.events is not None and oracle.events.name == t.oracle_event_ring()
    risk = BY_KIND["risk"].options(run, 1)
    assert [r.name for r in risk.oracle] == [t.oracle_risk_ring(1)]
    shard = BY_KIND["shard"].options(run, 0)
    assert t.oracle_shard_ring(0) in [r.name for r in shard.inputs]
    gateway = BY_KIND["gateway"].options(run, 1)
    assert gateway.oracle is not None and gateway.oracle.name == t.oracle_request_ring(1)
    assert t.oracle_request_ring(1) not in [r.name for r in gateway.destinations]  # not an order ring
    ev = [c.ring.name for c in gateway.events]
    assert t.oracle_event_ring() in ev
    assert gateway.private_from[ev.index(t.oracle_event_ring())]  # a resolve's REJECTED is private
