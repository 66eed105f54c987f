"""Bounded liquidation work per record and continuation records (``engine.risk.process``,
``Liquidator.pending``, ``Liquidator.cut``), against a replay of the journal they write.

A live engine (the vectorised liquidation paths) acts on at most ``accounts_per_record`` (none, as
the risk process, or one) accounts under liquidation per record of inputs and leaves the rest to
continuation records, whose scans it stops where a random
rule says (as the process stops one when a command or a shard's events wait); each continuation
record is journaled with where it stopped. A second engine, liquidating account by account
(``fast = False``, the specification), applies the same journal: after every record both must have
produced the same bytes and have the same state hash. A third is restored from a snapshot taken
while accounts were waiting in ``pending`` and must end where the live one ends.
"""

from __future__ import annotations

import random

import pytest

from engine.risk.liquidator import NO_CUT, LiquidationParams
from engine.risk.native_risk import NativeRiskEngine, native_available
from engine.risk.process import BATCH_HEADER, CONTINUE, HEADER_SLOT, apply_record
from engine.risk.risk_engine import RiskEngine, Source
from engine.shard.native_engine import make_engine
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import LiquidationKind, MsgType
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES
from tests.engine.risk.risk_harness import BTC_PERP, CONFIG, MARKETS, USDC, slot_difference
from tests.engine.risk.test_liquidation_fast import _TO_RISK, Population

SOURCES = (Source.GATEWAY, Source.ORACLE)  # input 0: commands, 1: the oracle, 2: the shard's events
EVENTS = len(SOURCES)


def _record(idx: int, body: bytes, count: int = 0, cursor: int = 0) -> bytes:
    header = BATCH_HEADER.pack(idx, count, cursor, 0, 0, len(body) // SLOT_BYTES)
    return header.ljust(HEADER_SLOT, b"\0") + body


class Run:
    """The live engine, the journal it writes, and the engines that apply that journal."""

    def __init__(
        self, seed: int, cls: type[RiskEngine], per_record: int = 0, fund_adl: int | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.params = LiquidationParams(accounts_per_record=per_record, fund_adl_per_record=fund_adl)
        self.live = cls(CONFIG, 0, 1, 1, liquidation=self.params)
        self.replay = cls(CONFIG, 0, 1, 1, liquidation=self.params)
        self.replay.liquidator.fast = False
        self.writer = WireEventWriter()
        self.core = make_engine(MARKETS, self.writer)
        self.journal: list[bytes] = []
        self.snapshot: tuple[int, bytes] | None = None  # (journal length, blob) with accounts pending
        self.cuts = self.continuations = self.most_pending = 0
        self.fund_closes: list[int] = []  # the fund's closes in each continuation record
        self.kinds: dict[int, int] = {}

    def _apply(self, record: bytes, yield_to: object = None) -> bytes:
        """Apply a record live (``yield_to``: a continuation's stop rule), journal it, replay it."""
        live = self.live
        apply_record(live, record, SOURCES, yield_to)  # type: ignore[arg-type]
        if yield_to is not None:  # journaled with where its scan stopped, as RiskProcess._continue
            record = _record(CONTINUE, b"", live.liquidator.cut, live.liquidator.fund_closed)
            self.cuts += live.liquidator.cut != NO_CUT
            self.continuations += 1
            self.fund_closes.append(live.liquidator.fund_closed)  # (NO_CUT: not stopped early)
        self.journal.append(record)
        orders, events = live.take_outputs()
        apply_record(self.replay, record, SOURCES)
        orders2, events2 = self.replay.take_outputs()
        n = len(self.journal)
        assert orders == orders2, f"record {n}: {slot_difference(orders[0], orders2[0], 'live', 'replay')}"
        assert events == events2, f"record {n}: {slot_difference(events, events2, 'live', 'replay')}"
        assert live.state_hash() == self.replay.state_hash(), f"record {n}: state"
        live.validate()
        for off in range(0, len(events), SLOT_BYTES):
            if events[off] == MsgType.LIQUIDATION:
                kind = decode(events, off)["kind"]
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
        pending = len(live.liquidator.pending)
        self.most_pending = max(self.most_pending, pending)
        if pending > 20 and self.snapshot is None:
            self.snapshot = (len(self.journal), live.snapshot())
        return orders[0]

    def send(self, msgs: list[bytes], idx: int = 0) -> None:
        """A record of inputs, then the shard's answers and continuation records until quiet."""
        orders = self._apply(_record(idx, b"".join(msgs)))
        for _ in range(20_000):
            out = bytearray()
            for off in range(0, len(orders), SLOT_BYTES):
                self.core.handle(orders, off)
                out += self.writer.take()
            back = b"".join(
                out[k : k + SLOT_BYTES] for k in range(0, len(out), SLOT_BYTES) if out[k] in _TO_RISK
            )
            orders = self._apply(_record(EVENTS, back)) if back else b""
            if self.live.liquidator.work_left:  # as the process: one after each pass of inputs,
                p = self.rng.choice([0.02, 0.3, 0.9])  # stopped at random after at least one account
                orders += self._apply(_record(CONTINUE, b"", NO_CUT), lambda p=p: self.rng.random() < p)
            elif not back:
                return
        raise AssertionError("did not settle")


@pytest.mark.parametrize(
    ("seed", "fund_usdc", "per_record"), [(11, 0, 0), (12, 20_000, 1), (13, 2_000_000, 0), (14, 20_000, 0)]
)
def test_continuation_records_replay_to_the_same_bytes_and_state(
    seed: int, fund_usdc: int, per_record: int
) -> None:
    cls = NativeRiskEngine if native_available() else RiskEngine
    run = Run(seed, cls, per_record)
    pop = Population(run.rng, 400, crash=True)
    run.send([encode(MsgType.MARK_PRICE, m, price_ticks=t) for m, t in pop.marks.items()], 1)
    run.send(pop.seeds())
    for e in (run.live, run.replay):  # the insurance fund, seeded as the exchange would
        e.book.balance[e.insurance_row, USDC] += fund_usdc * 10**6
        e.net_deposits[USDC] += fund_usdc * 10**6
    traders = pop.traders()
    for k in range(0, len(traders), 25):
        run.send([m for msgs in traders[k : k + 25] for m in msgs])
    run.send(pop.unseed())
    for _step in range(14):
        run.send(pop.quotes(run.rng.choice([1, 5, 50])))
        msgs, _source = pop.btc_drop(run.rng.choice([0.8, 0.9, 0.95]))
        run.send(msgs, 1)
    # the run did what it is for: a cascade, left over work, continuation records cut at random
    assert run.kinds.get(LiquidationKind.STARTED, 0) > 50
    assert run.kinds.get(LiquidationKind.TAKEOVER, 0) + run.kinds.get(LiquidationKind.ORDER, 0) > 50
    assert run.kinds.get(LiquidationKind.ADL, 0) + run.kinds.get(LiquidationKind.COVERED, 0) > 10
    assert run.most_pending > 20 and run.continuations > 20 and run.cuts > 10, (run.continuations, run.cuts)
    assert not len(run.live.liquidator.pending)  # and all of it done
    assert run.snapshot is not None
    at, blob = run.snapshot
    restored = cls(CONFIG, 0, 1, 1, liquidation=run.params)
    restored.restore(blob)
    assert len(restored.liquidator.pending) > 20
    for record in run.journal[at:]:
        apply_record(restored, record, SOURCES)
        restored.take_outputs()
    assert restored.state_hash() == run.live.state_hash()


def test_a_record_of_inputs_leaves_the_cascade_to_continuation_records() -> None:
    """A price record that puts many accounts under maintenance starts the nearest first (not
    bounded: the cascade's first orders) and leaves the rest to the continuation records; a record
    of client commands leaves what is pending as it is; a continuation record told to stop at once
    acts on one account."""
    cls = NativeRiskEngine if native_available() else RiskEngine
    run = Run(21, cls)
    pop = Population(run.rng, 150, crash=True)
    run.send([encode(MsgType.MARK_PRICE, m, price_ticks=t) for m, t in pop.marks.items()], 1)
    run.send(pop.seeds())
    traders = pop.traders()
    for k in range(0, len(traders), 25):
        run.send([m for msgs in traders[k : k + 25] for m in msgs])
    run.send(pop.unseed())
    live = run.live
    msgs, _source = pop.btc_drop(0.7)
    run._apply(_record(1, b"".join(msgs)))
    pending = live.liquidator.pending.copy()
    assert len(pending) > 10
    run._apply(_record(0, b"".join(pop.quotes(5))))  # client commands: their own work only
    assert live.liquidator.pending.tolist() == pending.tolist()
    started = len(live.liquidator.cases)
    run._apply(_record(CONTINUE, b"", NO_CUT), lambda: True)  # stops after its first account
    assert live.liquidator.cut != NO_CUT
    assert len(live.liquidator.cases) <= started + 1
    assert len(live.liquidator.pending) < len(pending)


@pytest.mark.parametrize("stop_every", [1, 3])
def test_the_funds_deleveraging_stopped_at_random_replays_to_the_same_bytes_and_state(
    stop_every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fund's deleveraging spread over continuation records (``fund_adl_per_record``), each
    stopped where a random rule says (as the process stops one for a waiting input; the rule is
    asked every ``ADL_STOP_EVERY`` closes) and journaled with the fund's closes in it: the
    per-account specification's replay gives the same bytes and state after every record, and the
    fund ends flat, its cash spent, nothing owed."""
    from engine.risk import liquidator

    monkeypatch.setattr(liquidator, "ADL_STOP_EVERY", stop_every)
    cls = NativeRiskEngine if native_available() else RiskEngine
    run = Run(21, cls, per_record=0, fund_adl=8)
    alice, shorts = 21, [100 + k for k in range(40)]
    run.send([encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=500_000)], 1)
    deposits = [(alice, 1_125), *((a, 5_000 + 100 * k) for k, a in enumerate(shorts))]
    run.send([
        encode(MsgType.DEPOSIT, source=1, account=a, asset=USDC, amount=usd * 10**6, deposit_id=k + 1)
        for k, (a, usd) in enumerate(deposits)
    ])  # fmt: skip
    for e in (run.live, run.replay):  # a fund of $100, seeded as the exchange would
        e.book.balance[e.insurance_row, USDC] += 100 * 10**6
        e.net_deposits[USDC] += 100 * 10**6
    run.send([
        encode(MsgType.NEW_ORDER, BTC_PERP, account=a, side=1, price_ticks=500_000, size_lots=4, client_order_id=k + 1)
        for k, a in enumerate(shorts)
    ])  # fmt: skip
    run.send([encode(MsgType.NEW_ORDER, BTC_PERP, account=alice, side=0, price_ticks=500_000, size_lots=160,
                     client_order_id=99)])  # fmt: skip
    fund = run.live.insurance_row
    run.send([encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=436_000)], 1)  # taken over: no bids
    assert run.live.book.perp_size[fund, 0] == 160 * 10**5
    run.send([encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=420_000)], 1)  # the fund's loss > its cash
    stopped = [n for n in run.fund_closes if n != NO_CUT]  # (NO_CUT: none, or it ran out)
    assert len(stopped) >= 4 and sum(stopped) < 40, run.fund_closes  # spread over records
    assert any(0 < n < 8 for n in stopped), stopped  # ... and stopped short of the bound
    b = run.live.book
    assert b.perp_size[fund, 0] == 0 and int(b.balance[fund, USDC]) == 0
    assert not b.perp_size[[b.find(a) for a in shorts], 0].any()
    assert run.kinds.get(LiquidationKind.UNCOVERED, 0) == 0


def test_a_continuation_record_stops_at_once_for_the_events_that_answer_a_client() -> None:
    """``answers_a_client``: the shard events a continuation record yields to at once (a client's
    order accepted, refused, cancelled, amended or triggered; a heartbeat's echo), against those
    of risk's own liquidation orders and fills, which wait for CONTINUE_SLICE_NS."""
    import numpy as np

    from engine.risk.liquidator import LIQUIDATION_COID_BASE
    from engine.risk.process import answers_a_client

    def slots(*msgs: bytes) -> np.ndarray:
        return np.frombuffer(b"".join(msgs), np.uint8).reshape(-1, SLOT_BYTES)

    own = LIQUIDATION_COID_BASE + 7
    fill = encode(MsgType.FILL, 1, taker_order_id=3, maker_order_id=4, size_lots=1)
    for kind in (MsgType.ACCEPTED, MsgType.REJECTED, MsgType.CANCELLED, MsgType.AMENDED, MsgType.TRIGGERED):
        assert answers_a_client(slots(fill, encode(kind, 1, client_order_id=5), fill)), kind.name
        assert not answers_a_client(slots(fill, encode(kind, 1, client_order_id=own))), kind.name
    assert answers_a_client(slots(fill, encode(MsgType.HEARTBEAT, 0, ts_ns=9)))
    assert not answers_a_client(slots(fill, fill))
    assert answers_a_client(slots(encode(MsgType.CANCELLED, 1, client_order_id=LIQUIDATION_COID_BASE - 1)))


def test_during_a_cascade_adl_ranks_wait_for_a_continuation_record_nothing_stopped() -> None:
    """``Liquidator.may_publish_ranks``: the ranks' pass (milliseconds, not stopped by anything) runs
    in any record while no cascade is under way; during one, only in a continuation record that
    ran to its end (a record of inputs, or one stopped for a waiting input, has a client waiting)."""
    import numpy as np

    engine = RiskEngine(CONFIG, 0, 1, 1, liquidation=LiquidationParams(accounts_per_record=0))
    liq = engine.liquidator
    assert liq.may_publish_ranks()
    liq.pending = np.array([3], np.intp)  # a cascade's accounts wait
    assert not liq.may_publish_ranks()  # a record of inputs
    liq.continuing, liq.cut = True, NO_CUT
    assert liq.may_publish_ranks()  # a continuation record that ran to its end
    liq.cut = 0
    assert not liq.may_publish_ranks()  # one stopped for a waiting input
    unbounded = RiskEngine(CONFIG, 0, 1, 1).liquidator  # in process: no continuation records
    unbounded.pending = np.array([3], np.intp)
    assert unbounded.may_publish_ranks()


def test_a_continuation_record_waits_for_clients_then_runs_a_slice_when_overdue(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``RiskProcess._overdue`` and ``_yield_rule`` (on a stand-in for the process and its clock): a
    client's waiting input goes before a continuation record, and stops one at once; once
    continuation records were put off for CONTINUE_DEFER_NS, the next runs a whole slice first,
    so a cascade keeps a share of the process under any flow. The events of risk's own orders
    stop one after a slice."""
    from engine.risk import process as rp

    now = [10**9]
    monkeypatch.setattr(rp.time, "perf_counter_ns", lambda: now[0])

    class Stand:
        n_commands = 1
        consumers = (None, None)
        continued_ns = now[0]
        waiting = (True, False)  # (a client's input, any shard's events)

        def _client_waiting(self, looked: list[int]) -> tuple[bool, bool]:
            return self.waiting

    p = Stand()
    assert rp.RiskProcess._overdue(p) is None  # a command waits: it goes first
    now[0] += rp.CONTINUE_DEFER_NS
    assert rp.RiskProcess._overdue(p) is True  # put off long enough: now, overdue
    p.waiting = (False, False)
    assert rp.RiskProcess._overdue(p) is False  # nothing waits: now
    p.waiting = (True, False)
    assert rp.RiskProcess._yield_rule(p, False)()  # a client's input stops one at once
    stop = rp.RiskProcess._yield_rule(p, True)
    assert not stop()  # ... an overdue one only after its slice
    now[0] += rp.CONTINUE_SLICE_NS
    assert stop()
    p.waiting = (False, True)  # only the events of its own orders
    stop = rp.RiskProcess._yield_rule(p, False)
    now[0] += rp.CONTINUE_SLICE_NS - 1
    assert not stop()
    now[0] += 1
    assert stop()
