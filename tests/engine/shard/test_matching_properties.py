"""Property tests on random command streams: fast book == reference book, event-level invariants."""

from __future__ import annotations

import matching_constants as C
import numpy as np
import pytest
import simple_matcher as SM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.shard.event_sink import EventRecorder
from engine.shard.replay import ORDER_DTYPE, replay_orders
from engine.types.enums import MsgType

_cmd = st.tuples(st.integers(0, 11), *[st.integers(0, 999)] * 6)
streams = st.lists(_cmd, min_size=1, max_size=120)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(book: str, msgs: list[bytes]):  # type: ignore[no-untyped-def]
    engine, rec = C.make_engine(book, C.SMALL_MARKETS)
    for m in msgs:
        engine.handle(m, 0)  # debug_validate: never crossed, sizes and indexes consistent, after each
    return engine, rec


def _msgs(draws) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [C.command_from_draw(*d, oid=i + 1) for i, d in enumerate(draws)]


@SETTINGS
@given(streams)
def test_all_engines_emit_identical_events(draws) -> None:  # type: ignore[no-untyped-def]
    msgs = _msgs(draws)
    fast, fast_rec = _run("fast", msgs)
    ref, ref_rec = _run("reference", msgs)
    native, native_rec = _run("native", msgs)
    assert fast_rec.events == ref_rec.events == native_rec.events
    assert fast.state_hash() == ref.state_hash() == native.state_hash()


def _check_event_invariants(engine, events) -> None:  # type: ignore[no-untyped-def]
    """Conservation per order, fill prices within both limits, gap-free seq per market."""
    open_of: dict[tuple[int, int], int] = {}
    limit_of: dict[tuple[int, int], tuple[int, int]] = {}  # (side, limit price)
    last_seq: dict[int, int] = {}
    for ev in events:
        kind, mid, seq = ev[0], ev[1], ev[2]
        if kind != MsgType.REJECTED:
            assert seq == last_seq.get(mid, 0) + 1, f"seq gap in market {mid}"
            last_seq[mid] = seq
        if kind == MsgType.ACCEPTED:
            oid, price, size, side = ev[3], ev[5], ev[6], ev[9]
            open_of[(mid, oid)] = size
            limit_of[(mid, oid)] = (side, price)
        elif kind == MsgType.FILL:
            taker, maker, price, size = ev[3], ev[4], ev[5], ev[6]
            t_side, t_limit = limit_of[(mid, taker)]
            m_side, m_limit = limit_of[(mid, maker)]
            assert t_side != m_side
            assert price == m_limit, "trade must print at the maker's price"
            assert (price <= t_limit) if t_side == 0 else (price >= t_limit), "fill beyond the taker's limit"
            for key in ((mid, taker), (mid, maker)):
                open_of[key] -= size
                assert open_of[key] >= 0
        elif kind == MsgType.CANCELLED:
            key = (mid, ev[3])
            open_of[key] -= ev[5]
            assert open_of[key] == 0, "a cancel removes exactly the open remainder"
        elif kind == MsgType.AMENDED:
            key = (mid, ev[3])
            open_of[key] = ev[6]
            limit_of[key] = (limit_of[key][0], ev[5])
    resting = {(mid, o[0]): o[4] for mid in engine.market_ids() for o in engine.book(mid).iter_orders()}
    stops = {(mid, oid): s[4] for mid in engine.market_ids() for oid, s in engine.market(mid).stops.items()}
    for key, left in open_of.items():
        assert left == resting.get(key, stops.get(key, 0)), (
            f"order {key}: placed != filled + cancelled + resting"
        )


@pytest.mark.parametrize("engine_kind", ["fast", "native"])
@SETTINGS
@given(streams)
def test_conservation_and_fill_prices(engine_kind: str, draws) -> None:  # type: ignore[no-untyped-def]
    engine, rec = _run(engine_kind, _msgs(draws))
    _check_event_invariants(engine, rec.events)


@pytest.mark.parametrize("engine_kind", ["fast", "native"])
def test_long_random_stream_invariants(engine_kind: str) -> None:
    msgs = C.random_commands(4_000, seed=7)
    engine, rec = C.make_engine(engine_kind, C.SMALL_MARKETS)
    engine.debug_validate = False
    for i, m in enumerate(msgs):
        engine.handle(m, 0)
        if i % 97 == 0:
            engine.validate()
    engine.validate()
    _check_event_invariants(engine, rec.events)
    kinds = {ev[0] for ev in rec.events}
    assert {MsgType.FILL, MsgType.CANCELLED, MsgType.AMENDED, MsgType.TRIGGERED, MsgType.BBO} <= kinds
    assert any(ev[0] == MsgType.CANCELLED and ev[8] == 3 for ev in rec.events), (
        "no self-trade prevention seen"
    )


# ---- standard workload semantics vs the simple matcher written in the tests --------------------------
_workload_op = st.tuples(
    st.integers(0, 9),
    st.integers(0, 1),
    st.integers(0, 3),
    st.integers(96, 104),
    st.integers(1, 12),
    st.integers(0, 30),
    st.integers(0, 1),
)


@SETTINGS
@given(st.lists(_workload_op, min_size=1, max_size=200), st.integers(0, 3))
def test_engine_matches_simple_matcher_on_workload_streams(ops, accounts) -> None:  # type: ignore[no-untyped-def]
    out = np.zeros(len(ops), dtype=ORDER_DTYPE)
    next_oid = 1
    for i, (r, side, tif, price, qty, back, market) in enumerate(ops):
        rec = out[i]
        rec["market"] = market
        if r < 3 and next_oid > 1:
            rec["op"], rec["oid"] = 2, max(1, next_oid - 1 - back)
            continue
        rec["op"], rec["side"], rec["tif"], rec["price"], rec["qty"] = 1, side, tif, price, qty
        rec["oid"] = next_oid
        rec["account"] = 1 + next_oid % accounts if accounts else next_oid  # shared accounts: STP mode NONE
        next_oid += 1
    trades, summary = replay_orders(out)
    expected, rejects = SM.simple_match(out)
    assert np.array_equal(trades, expected)
    assert sum(summary["rejects"].values()) == rejects


def test_event_recorder_is_a_sink() -> None:
    rec = EventRecorder()
    rec.on_l2(1, 2, 100, 5, 1, 0)
    assert rec.of(MsgType.L2_DELTA) == [(MsgType.L2_DELTA, 1, 2, 100, 5, 1, 0)]
    assert rec.named(MsgType.L2_DELTA) == [
        {"market_id": 1, "seq": 2, "price_ticks": 100, "size_lots": 5, "order_count": 1, "side": 0}
    ]
