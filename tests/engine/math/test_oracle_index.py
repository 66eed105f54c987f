"""engine.math.oracle_index: reasons, median/band properties, rate limit, adversarial sources, TWAP."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.math.oracle_index import (
    DropReason,
    IndexConfig,
    IndexState,
    IndexStatus,
    SourceQuote,
    calc_index,
    calc_max_move_micro,
    calc_median_micro,
    calc_price_micro_from_scaled,
    calc_twap_micro,
    parse_price_micro,
)

S = 10**9  # ns per second
T0 = 1_700_000_000 * S  # an epoch time, so a "0" timestamp is visibly absurd
BTC_100K = 100_000 * 10**6  # 100,000 USDC in micro-USDC
BTC_CONFIG = IndexConfig(
    staleness_ns=10 * S,
    band_ppm=10_000,  # 1%
    min_sources=3,
    max_move_ppm_per_s=5_000,  # 0.5% per second
    max_future_ns=1 * S,
)
NO_LIMIT = IndexConfig(staleness_ns=10 * S, band_ppm=10_000, min_sources=3)


def quotes(*prices: int, ts: int = T0) -> list[SourceQuote]:
    return [SourceQuote(f"s{i}", p, ts) for i, p in enumerate(prices)]


# --- median and band ---------------------------------------------------------------------------


def test_median_odd_even() -> None:
    assert calc_median_micro([3, 1, 2]) == 2
    assert calc_median_micro([4, 1, 3, 2]) == 2  # floor((2 + 3) / 2)
    assert calc_median_micro([7]) == 7
    with pytest.raises(ValueError):
        calc_median_micro([])


@given(st.lists(st.integers(1, 10**15), min_size=1, max_size=15))
def test_median_splits_the_values(values: list[int]) -> None:
    m = calc_median_micro(values)
    assert min(values) <= m <= max(values)
    assert 2 * sum(v <= m for v in values) >= len(values)
    assert 2 * sum(v >= m for v in values) >= len(values)


@given(
    st.lists(st.integers(10**6, 10**12), min_size=1, max_size=8),
    st.lists(st.integers(1, 10**15), max_size=7),
)
def test_median_with_an_honest_majority_stays_in_the_honest_range(honest: list[int], bad: list[int]) -> None:
    bad = bad[: len(honest) - 1]  # honest strictly more than half
    m = calc_median_micro(honest + bad)
    assert min(honest) <= m <= max(honest)


@given(st.lists(st.integers(1, 10**12), min_size=3, max_size=9), st.integers(0, 50_000))
def test_every_accepted_source_is_inside_the_band_of_the_fresh_median(prices: list[int], band: int) -> None:
    config = IndexConfig(staleness_ns=10 * S, band_ppm=band, min_sources=1)
    result = calc_index(quotes(*prices), T0, config, IndexState())
    centre = calc_median_micro(prices)
    assert result.fresh_median_micro == centre
    for v in result.verdicts:
        inside = abs(v.price_micro - centre) * 10**6 <= band * centre
        assert (v.reason == DropReason.NONE) == inside
        assert v.deviation_ppm == abs(v.price_micro - centre) * 10**6 // centre


# --- every reason, and never a crash -----------------------------------------------------------


def test_each_bad_quote_is_dropped_with_its_reason() -> None:
    seen = IndexState(sources={})
    first = calc_index([SourceQuote("late", BTC_100K, T0)], T0, NO_LIMIT, seen).state
    bad_price, why = parse_price_micro("NaN")
    batch = [
        SourceQuote("a", BTC_100K, T0),
        SourceQuote("b", BTC_100K + 1, T0),
        SourceQuote("c", BTC_100K - 1, T0),
        SourceQuote("zero", 0, T0),
        SourceQuote("neg", -5, T0),
        SourceQuote("huge", 10**18, T0),
        SourceQuote("nots", BTC_100K, 0),
        SourceQuote("future", BTC_100K, T0 + 2 * S),
        SourceQuote("late", BTC_100K, T0 - 1),  # older than what "late" sent before
        SourceQuote("a", BTC_100K, T0),  # a second quote from "a"
        SourceQuote("old", BTC_100K, T0 - 11 * S),
        SourceQuote("nan", bad_price, T0, why),
        SourceQuote("far", BTC_100K * 2, T0),
    ]
    result = calc_index(batch, T0, NO_LIMIT, first)
    reasons = {(v.source_id, v.reason) for v in result.verdicts}
    assert reasons == {
        ("a", DropReason.NONE),
        ("b", DropReason.NONE),
        ("c", DropReason.NONE),
        ("zero", DropReason.NON_POSITIVE),
        ("neg", DropReason.NON_POSITIVE),
        ("huge", DropReason.ABSURD),
        ("nots", DropReason.BAD_TIMESTAMP),
        ("future", DropReason.FUTURE),
        ("late", DropReason.OUT_OF_ORDER),
        ("a", DropReason.DUPLICATE),
        ("old", DropReason.STALE),
        ("nan", DropReason.UNPARSEABLE),
        ("far", DropReason.DEVIATION),
    }
    assert result.status == IndexStatus.OK and result.index_micro == BTC_100K


def test_frozen_source_is_dropped_once_its_price_stops_moving_for_longer_than_freeze_ns() -> None:
    config = IndexConfig(staleness_ns=10 * S, band_ppm=10_000, min_sources=1, freeze_ns=5 * S)
    state = IndexState()
    for t in range(8):
        result = calc_index([SourceQuote("f", BTC_100K, T0 + t * S)], T0 + t * S, config, state)
        state = result.state
        assert result.verdicts[0].reason == (DropReason.FROZEN if t > 5 else DropReason.NONE)
    moved = calc_index([SourceQuote("f", BTC_100K + 1, T0 + 8 * S)], T0 + 8 * S, config, state)
    assert moved.verdicts[0].reason == DropReason.NONE


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=True), st.text(max_size=6)),
            st.integers(-(10**20), 10**20),
        ),
        max_size=8,
    )
)
def test_garbage_from_any_feed_is_a_reason_never_a_crash(raw: list[tuple[str, object, int]]) -> None:
    batch = []
    for source_id, value, ts in raw:
        price, why = parse_price_micro(value)
        batch.append(SourceQuote(source_id, price, ts, why))
    result = calc_index(batch, T0, BTC_CONFIG, IndexState(BTC_100K, T0 - S))
    assert len(result.verdicts) == len(batch)
    if result.status != IndexStatus.OK:
        assert result.index_micro == BTC_100K and result.index_ts_ns == T0 - S


def test_parse_price_micro() -> None:
    assert parse_price_micro("64000.1234565") == (64_000_123_456, DropReason.NONE)  # ties to even
    assert parse_price_micro("64000.1234575") == (64_000_123_458, DropReason.NONE)
    assert parse_price_micro("6.4e4") == (64_000_000_000, DropReason.NONE)
    assert parse_price_micro(64000) == (64_000_000_000, DropReason.NONE)
    assert parse_price_micro(0.5) == (500_000, DropReason.NONE)
    assert parse_price_micro("-3") == (-3_000_000, DropReason.NONE)  # calc_index says NON_POSITIVE
    for bad in ("NaN", "nan", "inf", "", "1,5", "abc", None, True, float("nan"), float("inf"), [1]):
        assert parse_price_micro(bad) == (0, DropReason.UNPARSEABLE), bad


def test_chainlink_answer_to_micro() -> None:
    # an 8-decimal aggregator answer of 64000.12345678 USD
    assert calc_price_micro_from_scaled(6_400_012_345_678, 8) == 64_000_123_457
    assert calc_price_micro_from_scaled(64_000, 0) == 64_000_000_000
    assert calc_price_micro_from_scaled(6_400_012_345_650, 8) == 64_000_123_456  # tie -> even


# --- status --------------------------------------------------------------------------------------


def test_too_few_fresh_sources_is_stale_and_holds_the_index() -> None:
    prev = IndexState(BTC_100K, T0 - S)
    result = calc_index(quotes(BTC_100K, BTC_100K, ts=T0), T0, BTC_CONFIG, prev)
    assert result.status == IndexStatus.STALE
    assert (result.index_micro, result.index_ts_ns) == (BTC_100K, T0 - S)
    assert result.state.index_ts_ns == T0 - S  # the held index keeps its own (old) time


def test_sources_that_disagree_are_diverged() -> None:
    result = calc_index(quotes(100 * 10**6, 200 * 10**6, 300 * 10**6), T0, BTC_CONFIG, IndexState())
    assert result.status == IndexStatus.DIVERGED
    assert [v.reason for v in result.verdicts] == [
        DropReason.DEVIATION,
        DropReason.NONE,
        DropReason.DEVIATION,
    ]


# --- rate limit ----------------------------------------------------------------------------------


@given(
    st.integers(10**6, 10**12),
    st.integers(1, 10**12),
    st.integers(0, 100 * S),
    st.integers(1, 100_000),
)
def test_the_index_never_moves_faster_than_the_rate_limit(
    prev: int, target: int, dt: int, ppm_s: int
) -> None:
    config = IndexConfig(staleness_ns=10**12, band_ppm=10**6, min_sources=1, max_move_ppm_per_s=ppm_s)
    result = calc_index([SourceQuote("a", target, T0 + dt)], T0 + dt, config, IndexState(prev, T0))
    allowance = prev * ppm_s * dt // 10**15
    assert result.max_move_micro == allowance == calc_max_move_micro(prev, ppm_s, dt)
    assert abs(result.index_micro - prev) <= allowance
    assert result.rate_limited == (abs(target - prev) > allowance)
    if not result.rate_limited:
        assert result.index_micro == target


def test_rate_limit_lets_the_index_catch_up_in_proportion_to_the_time_elapsed() -> None:
    # A true 10% jump, seen by every source: the index moves 0.5% of itself per second until it
    # has caught up; after a 30 s outage it may move up to 15% at once.
    state = IndexState(BTC_100K, T0)
    path = []
    for t in range(1, 25):
        result = calc_index(quotes(*[BTC_100K * 11 // 10] * 3, ts=T0 + t * S), T0 + t * S, BTC_CONFIG, state)
        path.append(result.index_micro)
        state = result.state
    steps = [b - a for a, b in zip([BTC_100K, *path], path, strict=False)]
    prev = BTC_100K
    for step, index in zip(steps, path, strict=True):
        assert step == min(prev * 5_000 // 10**6, BTC_100K * 11 // 10 - prev)
        prev = index
    assert path[-1] == BTC_100K * 11 // 10
    after_outage = calc_index(
        quotes(*[BTC_100K * 11 // 10] * 3, ts=T0 + 30 * S), T0 + 30 * S, BTC_CONFIG, IndexState(BTC_100K, T0)
    )
    assert after_outage.index_micro == BTC_100K * 11 // 10 and not after_outage.rate_limited


# --- adversarial sources ---------------------------------------------------------------------------

Adversary = Callable[[int, list[int], random.Random], tuple[int, int]]  # (t, truth path) -> (price, ts)


def spike(t: int, truth: list[int], rng: random.Random) -> tuple[int, int]:
    factor = rng.choice([Fraction(1, 2), Fraction(6, 5), Fraction(3, 1)]) if rng.random() < 0.3 else 1
    return int(truth[t] * factor), T0 + t * S


def freeze(t: int, truth: list[int], rng: random.Random) -> tuple[int, int]:
    return truth[0], T0 + t * S  # same price, fresh timestamps


def lag(t: int, truth: list[int], rng: random.Random) -> tuple[int, int]:
    return truth[max(0, t - 60)], T0 + t * S  # a minute-old price with a fresh timestamp


def drift(t: int, truth: list[int], rng: random.Random) -> tuple[int, int]:
    return truth[t] * (10**6 + 50 * t) // 10**6, T0 + t * S  # +0.005% per second


def silent(t: int, truth: list[int], rng: random.Random) -> tuple[int, int]:
    spoke = min(t, 20)  # stops after 20 s; the process keeps showing its last quote
    return truth[spoke], T0 + spoke * S


ADVERSARIES: dict[str, Adversary] = {
    "spike": spike,
    "freeze": freeze,
    "lag": lag,
    "drift": drift,
    "silent": silent,
}
SCENARIOS = [(name,) for name in ADVERSARIES] + list(itertools.combinations_with_replacement(ADVERSARIES, 2))


def _truth(steps: int, rng: random.Random) -> list[int]:
    path = [BTC_100K]
    for _ in range(steps):
        path.append(path[-1] * (10**6 + rng.randint(-500, 500)) // 10**6)  # up to 0.05% a second
    return path


@pytest.mark.parametrize("modes", SCENARIOS, ids=["+".join(m) for m in SCENARIOS])
def test_adversaries_alone_and_in_pairs_keep_the_index_inside_the_honest_range(
    modes: tuple[str, ...],
) -> None:
    """5 sources: 3 honest (truth +-0.02%) and 2 bad, or 4 honest and 1 bad, for 200 seconds."""
    rng = random.Random("+".join(modes))
    steps = 200
    truth = _truth(steps, rng)
    honest_count = 5 - len(modes)
    state = IndexState()
    for t in range(steps + 1):
        now = T0 + t * S
        honest = [truth[t] * (10**6 + rng.randint(-200, 200)) // 10**6 for _ in range(honest_count)]
        batch = [SourceQuote(f"h{i}", p, now) for i, p in enumerate(honest)]
        for j, mode in enumerate(modes):
            price, ts = ADVERSARIES[mode](t, truth, rng)
            batch.append(SourceQuote(f"{mode}{j}", price, ts))
        result = calc_index(batch, now, BTC_CONFIG, state)
        state = result.state
        assert result.status == IndexStatus.OK, (t, result)
        assert min(honest) <= result.index_micro <= max(honest), (t, result)
        assert all(v.reason == DropReason.NONE for v in result.verdicts[:honest_count])


def test_a_slow_minority_drift_is_caught_by_the_band() -> None:
    """One source drifts +100 ppm a second away from four honest ones: it is used (harmlessly,
    the median ignores it) while within the 1% band and dropped as DEVIATION from the first
    update past it (t = 101 s), and the index never moves."""
    state = IndexState()
    for t in range(0, 131):
        drifter = BTC_100K * (10**6 + 100 * t) // 10**6
        batch = quotes(BTC_100K, BTC_100K, BTC_100K, BTC_100K, drifter, ts=T0 + t * S)
        result = calc_index(batch, T0 + t * S, BTC_CONFIG, state)
        state = result.state
        assert result.index_micro == BTC_100K
        assert result.verdicts[4].reason == (DropReason.DEVIATION if t > 100 else DropReason.NONE)


def test_a_majority_drift_is_not_caught_by_the_band_only_bounded_by_the_rate_limit() -> None:
    """Three of five sources move together: to the band that *is* the market. A slow drift
    (+100 ppm/s) passes straight into the index (it is slower than any sane rate limit) and the
    two honest sources end up dropped; a fast one (+2%/s) is held to 0.5% of the index per
    second. This is what the rate limit is for, and what no oracle rule can tell from a real move."""
    for ppm_per_s, limited in ((100, False), (20_000, True)):
        state = IndexState(BTC_100K, T0)
        prev = BTC_100K
        for t in range(1, 121):
            drifted = BTC_100K * (10**6 + ppm_per_s * t) // 10**6
            batch = quotes(BTC_100K, BTC_100K, drifted, drifted, drifted, ts=T0 + t * S)
            result = calc_index(batch, T0 + t * S, BTC_CONFIG, state)
            state = result.state
            assert result.status == IndexStatus.OK
            assert abs(result.index_micro - prev) <= prev * 5_000 // 10**6
            assert result.rate_limited == limited
            if not limited:
                assert result.index_micro == drifted
            prev = result.index_micro
        assert result.verdicts[0].reason == DropReason.DEVIATION  # the honest minority, outvoted


# --- worked rules from venues' documentation -------------------------------------------------------


def test_bybit_index_exclusion_rules() -> None:
    """Bybit, "Index Price" (https://help.bybit.com/hc/en-us/articles/360035036514-Index-Price),
    section "Spot Price Usability Verification": an exchange whose data has not updated for more
    than 15 minutes is excluded; with 3 or more exchanges, one whose price deviates from the
    median by more than 3% (BTCUSD) is excluded. The rule's thresholds are Bybit's, the prices ours."""
    config = IndexConfig(staleness_ns=15 * 60 * S, band_ppm=30_000, min_sources=1)
    now = T0 + 3600 * S
    batch = [
        SourceQuote("bitstamp", 64_000_000_000, now - 5 * S),
        SourceQuote("coinbase", 64_010_000_000, now - 2 * S),
        SourceQuote("kraken", 64_020_000_000, now - 15 * 60 * S - 1),  # 15 min and 1 ns old
        SourceQuote("gemini", 66_100_000_000, now),  # +3.27% from the median of the fresh
    ]
    result = calc_index(batch, now, config, IndexState())
    assert [v.reason for v in result.verdicts] == [
        DropReason.NONE,
        DropReason.NONE,
        DropReason.STALE,
        DropReason.DEVIATION,
    ]
    # fresh: 64000, 64010, 66100 -> median 64010; accepted 64000, 64010 -> mean of the two
    assert result.fresh_median_micro == 64_010_000_000
    assert result.index_micro == 64_005_000_000


def test_pionex_even_count_median() -> None:
    """Pionex, "Index Price" (https://www.pionex.com/blog/index-price/), "Calculation Formula":
    the reference median M of an even number of prices is the average of the middle two values;
    ours is that average rounded down to the micro-USDC."""
    assert calc_median_micro([3, 1, 4, 2]) == (2 + 3) // 2
    assert calc_median_micro([10_000_001, 10_000_000]) == 10_000_000


# --- TWAP ----------------------------------------------------------------------------------------


def test_twap_steps() -> None:
    samples = [(100, 0), (200, 10), (400, 30)]
    # [0,10) at 100, [10,30) at 200, [30,40) at 400 -> (1000 + 4000 + 4000) / 40 = 225
    assert calc_twap_micro(samples, 0, 40) is not None
    assert calc_twap_micro(samples, 0, 40).twap_micro == 225  # type: ignore[union-attr]
    # window starting mid-step: [20,30) at 200, [30,40) at 400 -> 300
    assert calc_twap_micro(samples, 20, 40).twap_micro == 300  # type: ignore[union-attr]
    # before the first sample is not covered
    late = calc_twap_micro(samples, -10, 40)
    assert late is not None and late.covered_ns == 40 and late.twap_micro == 225
    assert calc_twap_micro(samples, 50, 60) is not None  # the last price holds until the end
    assert calc_twap_micro([(5, 100)], 0, 50) is None
    with pytest.raises(ValueError):
        calc_twap_micro([(1, 10), (2, 5)], 0, 20)


def test_twap_rounds_half_to_even() -> None:
    assert calc_twap_micro([(1, 0), (2, 1)], 0, 2).twap_micro == 2  # type: ignore[union-attr]  # 1.5
    assert calc_twap_micro([(2, 0), (3, 1)], 0, 2).twap_micro == 2  # type: ignore[union-attr]  # 2.5


@given(
    st.lists(st.tuples(st.integers(1, 10**12), st.integers(0, 10**6)), min_size=1, max_size=20),
    st.integers(0, 10**6),
    st.integers(1, 10**6),
)
def test_twap_is_the_exact_time_weighted_mean_rounded(
    samples: list[tuple[int, int]], start: int, length: int
) -> None:
    samples.sort(key=lambda s: s[1])
    end = start + length
    result = calc_twap_micro(samples, start, end)
    weighted, covered = Fraction(0), 0
    for i, (price, ts) in enumerate(samples):
        until = samples[i + 1][1] if i + 1 < len(samples) else end
        span = max(0, min(until, end) - max(ts, start))
        weighted += price * span
        covered += span
    if covered == 0:
        assert result is None
        return
    assert result is not None and result.covered_ns == covered
    assert abs(result.twap_micro - weighted / covered) <= Fraction(1, 2)
    assert round(weighted / covered) == result.twap_micro  # Python's round is half-to-even too
