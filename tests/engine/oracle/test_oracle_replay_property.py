"""Property: any stream of quotes (good or bad), book events, resolution requests and ticks gives the
same output bytes and state when replayed, and a snapshot taken anywhere continues to the same bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle_harness import (
    AUTHORITY,
    BTC,
    BTC_PERP,
    PRES28,
    T0,
    FeedScript,
    S,
    btc_sources,
    level,
    make_config,
)
from oracle_harness import tick_record as _tick

from engine.oracle.oracle_engine import OracleEngine
from engine.oracle.process import apply_record, quote_slots
from engine.types.enums import MsgType
from engine.wire.codec import encode

CONFIG = make_config(
    {
        "tick_ms": 250,
        "staleness_ms": 2000,
        "halt_after_ms": 4000,
        "max_move_ppm_per_s": 50_000,
        "source": btc_sources() + [{"perp": "BTC-PERP", "name": "venue", "price": "64000"}],
        "perp": [
            {
                "market": "BTC-PERP",
                "payment_interval_s": 2,
                "premium_sample_ms": 500,
                "delist_at_s": T0 // S + 40,
            }
        ],
        "prediction": [
            {"market": "PRES28-YES", "authority": AUTHORITY, "close_at_s": T0 // S + 5, "dispute_window_s": 3}
        ],
    }
)
PRICES = st.one_of(
    st.integers(60_000, 68_000).map(str),
    st.sampled_from(["NaN", "0", "-1", "1e30", "oops", None, 64_000.5]),
)
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("quote"), st.integers(0, 3), PRICES, st.integers(-5, 2)),
        st.tuples(st.just("level"), st.integers(0, 1), st.integers(630_000, 650_000), st.integers(0, 50)),
        st.tuples(st.just("trade"), st.integers(630_000, 650_000)),
        st.tuples(st.just("resolve"), st.sampled_from([AUTHORITY, 9]), st.integers(0, 1), st.integers(0, 1)),
        st.tuples(st.just("tick"), st.integers(1, 3000)),
    ),
    min_size=1,
    max_size=60,
)


def _records(actions: list[tuple]) -> list[bytes]:
    feeds = [FeedScript(BTC, f) for f in range(3)] + [FeedScript(BTC, 0, "venue", BTC_PERP)]
    now = T0
    out = []
    seq = 0
    for action in actions:
        kind = action[0]
        if kind == "quote":
            _k, f, price, dt = action
            feeds[f].push(price, now + dt * S)
        elif kind == "level":
            seq += 1
            out.append(_ring(1, now, level(BTC_PERP, action[1], action[2], action[3], seq)))
        elif kind == "trade":
            seq += 1
            out.append(
                _ring(
                    1,
                    now,
                    encode(MsgType.TRADE, BTC_PERP, seq=seq, price_ticks=action[1], size_lots=1, ts_ns=now),
                )
            )
        elif kind == "resolve":
            msg = encode(
                MsgType.RESOLUTION_REQUEST, PRES28, account=action[1], action=action[2], outcome=action[3]
            )
            out.append(_ring(0, now, msg))
        else:
            now += action[1] * 10**6
            out.append(_tick(now, quote_slots(feeds, now)))  # type: ignore[arg-type]
    return out


def _ring(idx: int, now: int, msg: bytes) -> bytes:
    from oracle_harness import ring_record

    return ring_record(idx, now, [msg])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS, st.data())
def test_replay_and_snapshot_anywhere_give_the_same_bytes(actions: list[tuple], data: st.DataObject) -> None:
    records = _records(actions)
    live = OracleEngine(CONFIG, 1)
    outputs = []
    for r in records:
        apply_record(live, r, 1)
        live.validate()
        outputs.append(live.take_outputs())
    replay = OracleEngine(CONFIG, 1)
    for r, want in zip(records, outputs, strict=True):
        apply_record(replay, r, 1)
        assert replay.take_outputs() == want
    assert replay.state_hash() == live.state_hash()
    cut = data.draw(st.integers(0, len(records)))
    first = OracleEngine(CONFIG, 1)
    for r in records[:cut]:
        apply_record(first, r, 1)
        first.take_outputs()
    restored = OracleEngine(CONFIG, 1)
    restored.restore(first.snapshot())
    for r, want in zip(records[cut:], outputs[cut:], strict=True):
        apply_record(restored, r, 1)
        assert restored.take_outputs() == want
    assert restored.state_hash() == live.state_hash()
    seqs = [
        int.from_bytes(pub[k + 8 : k + 16], "little")
        for _s, _r, pub in outputs
        for k in range(0, len(pub), 64)
        if pub[k] != MsgType.REJECTED  # private, seq 0: outside the public sequence
    ]
    assert seqs == list(range(1, len(seqs) + 1))  # the public stream is gap-free
