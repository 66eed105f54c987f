"""Adversarial feeds, alone and two at once, against an honest majority: the index stays within the
range of the honest feeds' quotes. A slow drift by a minority is caught by the band (DEVIATION); a
drift shared by a majority looks like the market and is only bounded by the rate limit."""

from __future__ import annotations

import itertools

import pytest
from oracle_harness import BTC, T0, Harness, S, make_config

from engine.math.oracle_index import DropReason, IndexStatus
from engine.oracle.oracle_config import SIM_MODES
from engine.oracle.simulated_source import make_simulated_sources

MS = 10**6
BAD_MODES = [m for m in SIM_MODES if m != "honest"]


def _sources(honest: int, modes: tuple[str, ...], **extra: object) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {"asset": "BTC", "name": f"honest{i}", "price": "64000", "every_ms": 250, "seed": i}
        for i in range(honest)
    ]
    out += [
        {
            "asset": "BTC",
            "name": f"bad{i}",
            "price": "64000",
            "every_ms": 250,
            "mode": m,
            "start_after_ms": 10_000,
            **extra,
        }
        for i, m in enumerate(modes)
    ]
    out[0].update(vol_ppm_per_s=2000, jump_ppm=10_000, jumps_per_hour=600)  # a lively true path
    return out


def _run(honest: int, modes: tuple[str, ...], seconds: int = 90, **top: object) -> tuple[Harness, list[int]]:
    oracle = {
        "tick_ms": 250,
        "max_move_ppm_per_s": 1_000_000,
        "staleness_ms": 3000,
        "band_ppm": 20_000,
        "min_sources": 2,
        **top,
        "source": _sources(honest, modes),
    }
    config = make_config(oracle)
    h = Harness(config)
    feeds = make_simulated_sources(config.sources, seed=11)
    outside = []
    for k in range(seconds * 4):
        now = T0 + k * 250 * MS
        h.tick(now, feeds)
        price, status, _ts = h.engine.index_of(BTC)
        honest_prices = [v.price_micro for v in h.engine.verdicts[BTC] if v.source_id.startswith("honest")]
        if status == IndexStatus.OK and not min(honest_prices) <= price <= max(honest_prices):
            outside.append(k)
    return h, outside


@pytest.mark.parametrize("mode", BAD_MODES)
def test_one_bad_feed_of_three_keeps_the_index_in_the_honest_range(mode: str) -> None:
    h, outside = _run(2, (mode,))
    assert outside == []
    assert h.engine.index_of(BTC)[1] == IndexStatus.OK


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations_with_replacement(BAD_MODES, 2)))
def test_two_bad_feeds_of_five_keep_the_index_in_the_honest_range(a: str, b: str) -> None:
    h, outside = _run(3, (a, b), seconds=60)
    assert outside == []
    assert h.engine.index_of(BTC)[1] == IndexStatus.OK


def test_the_bad_feeds_are_reported_with_their_reason() -> None:
    expected = {
        "spike": {DropReason.DEVIATION},
        "lag": {DropReason.STALE},
        "silent": {DropReason.STALE},
        "garbage": {
            DropReason.UNPARSEABLE,
            DropReason.NON_POSITIVE,
            DropReason.FUTURE,
            DropReason.OUT_OF_ORDER,
        },
    }
    for mode, reasons in expected.items():
        config = make_config(
            {"tick_ms": 250, "max_move_ppm_per_s": 1_000_000, "source": _sources(2, (mode,))}
        )
        h = Harness(config)
        feeds = make_simulated_sources(config.sources, seed=5)
        seen: set[DropReason] = set()
        for k in range(60 * 4):
            h.tick(T0 + k * 250 * MS, feeds)
            seen |= {v.reason for v in h.engine.verdicts[BTC] if v.source_id == "bad0"}
        assert reasons <= seen, (mode, seen)


def test_a_slow_drift_by_one_feed_is_caught_by_the_band() -> None:
    """1,000 ppm/s away from the truth: past the 2% band after ~20 s, dropped as DEVIATION from then."""
    config = make_config(
        {
            "tick_ms": 250,
            "max_move_ppm_per_s": 1_000_000,
            "source": _sources(2, ("drift",), drift_ppm_per_s=1000),
        }
    )
    h = Harness(config)
    feeds = make_simulated_sources(config.sources, seed=2)
    first_drop = None
    for k in range(60 * 4):
        now = T0 + k * 250 * MS
        h.tick(now, feeds)
        reason = {v.source_id: v.reason for v in h.engine.verdicts[BTC]}["bad0"]
        if reason == DropReason.DEVIATION and first_drop is None:
            first_drop = (now - T0) / S
    assert first_drop is not None and 25 <= first_drop <= 40  # 10 s honest, then ~20 s of drift


def test_a_drift_shared_by_the_majority_is_only_bounded_by_the_rate_limit() -> None:
    """Two of three feeds walk up 5%/s together: the band cannot tell (they are the median), the
    index follows, but never faster than max_move_ppm_per_s (2%/s)."""
    config = make_config(
        {
            "tick_ms": 250,
            "max_move_ppm_per_s": 20_000,
            "band_ppm": 20_000,
            "source": _sources(1, ("drift", "drift"), drift_ppm_per_s=50_000),
        }
    )
    h = Harness(config)
    feeds = make_simulated_sources(config.sources, seed=3)
    previous = 0
    limited = 0
    for k in range(40 * 4):
        h.tick(T0 + k * 250 * MS, feeds)
        price = h.engine.index_of(BTC)[0]
        if previous:
            allowed = previous * 20_000 * 250 * MS // (10**6 * S)
            assert abs(price - previous) <= allowed
            limited += abs(price - previous) == allowed
        previous = price
    assert limited > 10  # the limit was what held it
    assert price > 64_000_000_000 * 12 // 10  # and yet the index followed the majority up
