"""The oracle's state machine: index, staleness and halts, marks, funding, replay and snapshots."""

from __future__ import annotations

import pytest
from oracle_harness import (
    BTC,
    BTC_PERP,
    ETH_PERP,
    T0,
    Harness,
    S,
    btc_sources,
    feeds,
    level,
    make_config,
    simple_oracle,
    tick_record,
)

from engine.math.funding import calc_funding_rate
from engine.math.oracle_index import DropReason
from engine.oracle.oracle_engine import OracleEngine
from engine.oracle.process import BATCH_HEADER, HEADER_SLOT, apply_record
from engine.types.enums import MarketStatus, MsgType, PriceStatus
from engine.wire.codec import encode

MS = 10**6


def _quote_all(fs: list, price: object, ts: int) -> None:
    for f in fs:
        f.push(price, ts)


def test_index_is_the_median_and_goes_to_risk_only_on_change() -> None:
    config = make_config(simple_oracle())
    h = Harness(config)
    fs = feeds(config, BTC)
    for f, p in zip(fs, ("64000", "64010", "63990"), strict=True):
        f.push(p, T0)
    h.tick(T0, fs)
    h.tick(T0 + 250 * MS, fs)  # nothing new: nothing sent
    prices = h.of(h.risk_out, MsgType.ORACLE_PRICE)
    assert [(m["asset"], m["price_micro"], m["status"]) for m in prices] == [(BTC, 64_000_000_000, 0)]
    assert h.engine.index_of(BTC)[:2] == (64_000_000_000, PriceStatus.OK)


@pytest.mark.parametrize(
    ("raw", "ts_offset", "reason"),
    [
        (float("nan"), 0, DropReason.UNPARSEABLE),
        ("not a price", 0, DropReason.UNPARSEABLE),
        (None, 0, DropReason.UNPARSEABLE),
        (float("inf"), 0, DropReason.UNPARSEABLE),
        (0, 0, DropReason.NON_POSITIVE),
        ("-64000", 0, DropReason.NON_POSITIVE),
        ("1e30", 0, DropReason.UNPARSEABLE),  # beyond int64 micro-units: cannot be held at all
        ("1e12", 0, DropReason.ABSURD),
        ("64000", 3600 * S, DropReason.FUTURE),
        ("64000", -3600 * S, DropReason.STALE),
        ("64000", -T0 - 5, DropReason.BAD_TIMESTAMP),
    ],
)
def test_a_bad_quote_is_dropped_with_its_reason_never_a_crash(
    raw: object, ts_offset: int, reason: DropReason
) -> None:
    config = make_config(simple_oracle())
    h = Harness(config)
    fs = feeds(config, BTC)
    fs[0].push("64000", T0)
    fs[1].push("64020", T0)
    fs[2].push(raw, T0 + ts_offset)
    h.tick(T0, fs)
    verdicts = {v.source_id: v.reason for v in h.engine.verdicts[BTC]}
    assert verdicts == {"f0": DropReason.NONE, "f1": DropReason.NONE, "f2": reason}
    assert h.engine.index_of(BTC)[:2] == (64_010_000_000, PriceStatus.OK)


def test_out_of_order_timestamps_are_dropped() -> None:
    config = make_config(simple_oracle())
    h = Harness(config)
    fs = feeds(config, BTC)
    _quote_all(fs, "64000", T0)
    h.tick(T0, fs)
    fs[2].push("99000", T0 - S)  # older than what f2 already said
    h.tick(T0 + 250 * MS, fs)
    assert {v.source_id: v.reason for v in h.engine.verdicts[BTC]}["f2"] == DropReason.OUT_OF_ORDER
    assert h.engine.index_of(BTC)[0] == 64_000_000_000


def test_stale_index_halts_the_market_and_fresh_quotes_reopen_it() -> None:
    config = make_config(simple_oracle(staleness_ms=3000, halt_after_ms=10_000))
    h = Harness(config)
    fs = feeds(config, BTC)
    _quote_all(fs, "64000", T0)
    h.tick(T0, fs)
    assert h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS) == []
    h.tick(T0 + 4 * S)  # every quote is now older than 3 s
    stale = h.of(h.risk_out, MsgType.ORACLE_PRICE)[-1]
    assert (stale["status"], stale["price_micro"]) == (PriceStatus.STALE, 64_000_000_000)  # held
    h.tick(T0 + 13 * S)  # stale for 9 s: not yet
    assert h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS, BTC_PERP) == []
    h.tick(T0 + 14 * S)  # stale for 10 s: halted, on the shard and in risk
    halted = h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS, BTC_PERP)
    assert [m["status"] for m in halted] == [MarketStatus.HALTED]
    assert [m["status"] for m in h.of(h.risk_out, MsgType.SET_MARKET_STATUS, BTC_PERP)] == [
        MarketStatus.HALTED
    ]
    _quote_all(fs, "64100", T0 + 20 * S)
    h.tick(T0 + 20 * S, fs)
    assert [m["status"] for m in h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS, BTC_PERP)] == [
        MarketStatus.HALTED,
        MarketStatus.OPEN,
    ]
    assert h.of(h.risk_out, MsgType.ORACLE_PRICE)[-1]["status"] == PriceStatus.OK


def test_mark_goes_to_shard_and_risk_in_ticks_and_public_in_micro() -> None:
    config = make_config(simple_oracle())
    h = Harness(config)
    fs = feeds(config, BTC)
    _quote_all(fs, "64000", T0)
    h.tick(T0, fs)
    (to_shard,) = h.of(h.shard_out[0], MsgType.MARK_PRICE, BTC_PERP)
    assert to_shard["price_ticks"] == 640_000  # $0.10 ticks
    assert h.of(h.risk_out, MsgType.MARK_PRICE, BTC_PERP) == [to_shard]
    (mark,) = h.of(h.public_out, MsgType.MARK, BTC_PERP)
    assert (mark["mark_micro"], mark["index_micro"], mark["seq"]) == (64_000_000_000, 64_000_000_000, 1)


def test_a_thin_book_spike_moves_the_mark_no_more_than_the_ema_allows() -> None:
    """An honest book for a minute, then both sides 10% up for one tick: (b) jumps, (c) is the
    index, so the mark is (a): index + EMA, which moves by at most (1 - 2^(-dt/h)) of the spike's basis."""
    config = make_config(simple_oracle())
    h = Harness(config)
    fs = feeds(config, BTC)
    _quote_all(fs, "64000", T0)
    h.tick(T0, fs)
    h.book(T0, level(BTC_PERP, 0, 639_990, 1), level(BTC_PERP, 1, 640_010, 1))
    for k in range(1, 240):
        now = T0 + k * 250 * MS
        _quote_all(fs, "64000", now)
        h.tick(now, fs)
    assert h.engine.mark_of(BTC_PERP) == 64_000_000_000
    h.book(
        now, level(BTC_PERP, 1, 640_010, 0), level(BTC_PERP, 1, 704_010, 1), level(BTC_PERP, 0, 704_000, 1)
    )
    h.book(now, level(BTC_PERP, 0, 639_990, 0))
    h.tick(now + 250 * MS)
    half_life_s = config.perps[BTC_PERP].half_life_ns / S
    basis_micro = 6_400_500_000
    bound = (1 - 2 ** (-0.25 / half_life_s)) * basis_micro
    moved = h.engine.mark_of(BTC_PERP) - 64_000_000_000
    assert 0 < moved <= bound + 1
    assert moved < basis_micro // 100  # a 10% spike moved the mark by less than 0.1%


HOUR = 3600 * S


def _funding_harness(interval_s: int = 3600) -> tuple[Harness, list]:
    perp = {
        "market": "BTC-PERP",
        "impact_notional": "1000",
        "payment_interval_s": interval_s,
        "premium_sample_ms": 5000,
    }
    config = make_config(simple_oracle(perp=[perp], staleness_ms=86_400_000))
    h = Harness(config)
    fs = feeds(config, BTC)
    return h, fs


def test_funding_pays_every_interval_once_in_order_and_longs_pay_above_the_index() -> None:
    h, fs = _funding_harness(interval_s=60)
    start = T0 + 10 * S
    _quote_all(fs, "64000", start)
    h.tick(start, fs)
    # the perp trades 1% above the index: even a $1,000 sell clears above it
    h.book(start, level(BTC_PERP, 0, 646_400, 1000), level(BTC_PERP, 1, 646_500, 1000))
    for k in range(1, 4 * 12):  # 4 minutes of 5 s ticks
        h.tick(start + k * 5 * S)
    paid = h.of(h.risk_out, MsgType.FUNDING, BTC_PERP)
    first = start // (60 * S)
    assert [m["interval_id"] for m in paid] == [first, first + 1, first + 2, first + 3]
    assert all(m["rate_ppb"] > 0 for m in paid)  # positive: longs pay
    full = paid[1]  # a whole interval of samples of a 1% premium: the capped rate, per interval / 8
    cap = h.config.perps[BTC_PERP].funding.cap_ppb
    assert (
        full["rate_ppb"]
        == calc_funding_rate([10_000_000] * 12, h.config.perps[BTC_PERP].funding).rate_interval_ppb
    )
    assert full["rate_ppb"] <= cap // 480  # a 60 s interval is 1/480 of the 8 h period
    assert all(m["mark_micro"] > 64_000_000_000 for m in paid)
    rates = h.of(h.public_out, MsgType.FUNDING_RATE, BTC_PERP)
    assert rates and rates[-1]["last_rate_ppb"] == paid[-1]["rate_ppb"]
    assert [m["seq"] for m in h.public_out] == list(range(1, len(h.public_out) + 1))


def test_after_a_stop_every_missed_interval_is_paid_once_with_consecutive_ids() -> None:
    h, fs = _funding_harness()
    _quote_all(fs, "64000", T0 + S)
    h.tick(T0 + S, fs)
    h.tick(T0 + 5 * HOUR + S)  # the oracle was down for five hours
    paid = h.of(h.risk_out, MsgType.FUNDING, BTC_PERP)
    k0 = T0 // HOUR
    assert [m["interval_id"] for m in paid] == [k0, k0 + 1, k0 + 2, k0 + 3, k0 + 4]
    interest_only = calc_funding_rate([], h.config.perps[BTC_PERP].funding).rate_interval_ppb
    assert [m["rate_ppb"] for m in paid[1:]] == [interest_only] * 4
    h.tick(T0 + 5 * HOUR + 2 * S)
    assert len(h.of(h.risk_out, MsgType.FUNDING)) == 5  # nothing twice


def test_replay_of_the_records_gives_the_same_state_and_bytes_and_a_snapshot_continues_them() -> None:
    h, fs = _funding_harness(interval_s=60)
    _quote_all(fs, "64000", T0)
    h.tick(T0, fs)
    h.book(T0, level(BTC_PERP, 0, 640_100, 100), level(BTC_PERP, 1, 640_300, 100))
    snap_at = 0
    snapshot = b""
    for k in range(1, 200):
        now = T0 + k * S
        for i, f in enumerate(fs):
            f.push(str(64000 + (k * 7 + i * 3) % 50), now)
        h.tick(now, fs)
        if k % 17 == 0:
            h.book(
                now,
                level(BTC_PERP, 0, 640_100 + k, 3),
                encode(MsgType.TRADE, BTC_PERP, seq=k, price_ticks=640_150, size_lots=1, ts_ns=now),
            )
        if k == 100:
            snap_at, snapshot = len(h.records), h.engine.snapshot()
    replay = OracleEngine(h.config, 1)
    outputs = []
    for record in h.records:
        apply_record(replay, record, 1)
        outputs.append(replay.take_outputs())
    assert outputs == h.raw
    assert replay.state_hash() == h.engine.state_hash()
    restored = OracleEngine(h.config, 1)
    restored.restore(snapshot)
    tail = []
    for record in h.records[snap_at:]:
        apply_record(restored, record, 1)
        tail.append(restored.take_outputs())
    assert tail == h.raw[snap_at:]
    assert restored.state_hash() == h.engine.state_hash()


def test_a_snapshot_of_another_configuration_is_refused() -> None:
    h, _ = _funding_harness()
    other = OracleEngine(
        make_config(
            simple_oracle(
                perp=[{"market": "ETH-PERP"}], source=[*btc_sources(), {"asset": "ETH", "price": "3000"}]
            )
        ),
        1,
    )
    with pytest.raises(ValueError, match="another configuration"):
        other.restore(h.engine.snapshot())
    with pytest.raises(ValueError, match="not an oracle snapshot"):
        other.restore(b"garbage")
    assert ETH_PERP in other.config.perps


def test_records_with_an_earlier_clock_never_move_time_back() -> None:
    h, fs = _funding_harness()
    _quote_all(fs, "64000", T0)
    h.tick(T0, fs)
    h.apply(tick_record(T0 - HOUR))
    assert h.engine.now_ns == T0


def test_a_lost_shard_stream_forgets_its_books_and_asks_the_shard_to_restate() -> None:
    from engine.oracle.process import LOST
    from engine.wire.layout import ALL_MARKETS

    config = make_config(simple_oracle())
    h = Harness(config, shards=2)
    h.book(T0, level(BTC_PERP, 0, 640_000, 5))
    assert h.engine.state["books"][BTC_PERP][0] == {640_000: 5}
    shard = BTC_PERP % 2
    h.apply(BATCH_HEADER.pack(LOST, shard, 0, 0, T0, 0).ljust(HEADER_SLOT, b"\0"))
    assert h.engine.state["books"][BTC_PERP] == ({}, {})
    (request,) = h.shard_out[shard]
    assert (request["msg_type"], request["market_id"]) == (MsgType.L2_SNAPSHOT_REQUEST, ALL_MARKETS)
    assert h.shard_out[1 - shard] == []
    # the restatement rebuilds it: BOOK_RESET, then the levels
    h.book(T0, encode(MsgType.BOOK_RESET, BTC_PERP, bid_levels=1), level(BTC_PERP, 0, 641_000, 7))
    assert h.engine.state["books"][BTC_PERP][0] == {641_000: 7}


def test_spot_markets_get_the_index_as_their_mark_on_the_shard_and_in_public() -> None:
    from oracle_harness import ETH, ETH_USDC

    oracle = {
        "tick_ms": 250,
        "source": [{"asset": "ETH", "name": f"e{i}", "price": "3300"} for i in range(2)],
    }
    config = make_config(oracle)
    h = Harness(config, shards=1)
    fs = feeds(config, ETH)
    _quote_all(fs, "3300.5", T0)
    h.tick(T0, fs)
    (band,) = h.of(h.shard_out[0], MsgType.MARK_PRICE, ETH_USDC)
    assert band["price_ticks"] == 330_050  # $0.01 ticks
    assert h.of(h.risk_out, MsgType.MARK_PRICE, ETH_USDC) == []  # risk prices the asset (ORACLE_PRICE)
    (public,) = h.of(h.public_out, MsgType.MARK, ETH_USDC)
    assert public["mark_micro"] == public["index_micro"] == 3_300_500_000


def _external_config(weights: tuple[int, ...] = (1, 1, 1)) -> object:
    ext = [
        {"perp": "BTC-PERP", "name": f"venue{i}", "price": "64000", "weight": w, "staleness_ms": 2000}
        for i, w in enumerate(weights)
    ]
    return make_config(simple_oracle(source=btc_sources() + ext))


def test_external_perp_mids_are_the_marks_third_component_and_one_bad_venue_cannot_move_it() -> None:
    from oracle_harness import externals

    config = _external_config()
    assert [s.name for s in config.feeds_of(BTC)] == ["f0", "f1", "f2"]  # venues are not index feeds
    h = Harness(config)
    fs, xs = feeds(config, BTC), externals(config, BTC_PERP)
    _quote_all(fs, "64000", T0)
    _quote_all(xs, "64100", T0)  # every venue's perp trades $100 above the index
    h.tick(T0, fs + xs)
    h.book(T0, level(BTC_PERP, 0, 640_990, 1), level(BTC_PERP, 1, 641_010, 1))  # ours too
    h.tick(T0 + 250 * MS, fs + xs)
    assert h.engine.mark_of(BTC_PERP) == 64_100_000_000  # median(index + basis, book, venues)
    xs[0].push("70000", T0 + S)  # one venue manipulated by 9%
    h.tick(T0 + S, fs + xs)
    assert h.engine.mark_of(BTC_PERP) == 64_100_000_000  # the weighted median of the venues holds
    h.tick(T0 + 5 * S)  # the venues go stale (2 s): (c) is the index again, a vote for it
    assert 64_000_000_000 <= h.engine.mark_of(BTC_PERP) <= 64_100_000_000


def test_a_heavy_venue_carries_the_weighted_median() -> None:
    """(a) index + basis = 64,100 and (b) median(63,900 bid, 64,300 ask, 63,950 last) = 63,950
    straddle (c), so the mark is (c): the venue with weight 5 of 7 (64,050)."""
    from oracle_harness import externals

    config = _external_config(weights=(5, 1, 1))
    h = Harness(config)
    fs, xs = feeds(config, BTC), externals(config, BTC_PERP)
    _quote_all(fs, "64000", T0)
    for x, p in zip(xs, ("64050", "64300", "64400"), strict=True):
        x.push(p, T0)
    h.tick(T0, fs + xs)
    trade = encode(MsgType.TRADE, BTC_PERP, seq=3, price_ticks=639_500, size_lots=1, ts_ns=T0)
    h.book(T0, level(BTC_PERP, 0, 639_000, 1), level(BTC_PERP, 1, 643_000, 1), trade)
    h.tick(T0 + 250 * MS, fs + xs)
    assert h.engine.mark_of(BTC_PERP) == 64_050_000_000


def test_external_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"#4 perp: 'ETH-USDC' is not a perp market"):
        make_config(simple_oracle(source=btc_sources() + [{"perp": "ETH-USDC", "price": "1"}]))
    with pytest.raises(ValueError, match=r"#4 weight: only an external mid"):
        make_config(simple_oracle(source=btc_sources() + [{"asset": "BTC", "price": "1", "weight": 2}]))
    with pytest.raises(ValueError, match=r"perp: ETH-PERP has no \[\[oracle.perp\]\]"):
        make_config(
            simple_oracle(
                source=btc_sources() + [{"asset": "ETH", "price": "1"}, {"perp": "ETH-PERP", "price": "1"}]
            )
        )
