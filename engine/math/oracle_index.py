"""Oracle index: the median of fresh, agreeing sources, rate-limited; and a TWAP for settlement.

Pure: every input is an argument (the clock too, ``now_ns``), every output a return value. The
previous index, its time and what was last seen of each source live in :class:`IndexState`; the
caller keeps the state that :func:`calc_index` returns and hands it back on the next update.

Units: prices in micro-USDC per whole unit (``_micro``), times in nanoseconds (``_ns``), bands and
rate limits in parts per million (``_ppm``). Every comparison is exact integer arithmetic.

One update, in order (the reason names are :class:`DropReason`):

1. **validity**, per quote: ``price_micro <= 0`` -> NON_POSITIVE; outside
   ``[min_price_micro, max_price_micro]`` -> ABSURD; ``ts_ns <= 0`` -> BAD_TIMESTAMP; more than
   ``max_future_ns`` ahead of ``now_ns`` -> FUTURE; older than the last timestamp seen from that
   source -> OUT_OF_ORDER; a second quote from the same source in one update -> DUPLICATE.
   NaN, infinities and text never reach this function: :func:`parse_price_micro` turns them
   into UNPARSEABLE at the edge, so a bad feed is a reason, never an exception.
2. **freshness**: ``now_ns - ts_ns > staleness`` (per source, default ``staleness_ns``) -> STALE.
   Optional: a price unchanged while its timestamps advance for more than ``freeze_ns`` -> FROZEN.
3. **band**: ``m`` = median of the fresh prices; a fresh source with
   ``|p - m| * 1e6 > band_ppm * m`` -> DEVIATION (reported with its deviation in ppm).
4. **status**: fewer than ``min_sources`` fresh -> STALE; fewer than ``min_sources`` left inside the
   band -> DIVERGED. Either way the previous index (and its time) is kept and returned.
5. **index** = median of the sources inside the band (an even count takes the floor of the mean of
   the middle two), then **rate-limited**: with a previous index ``I0`` set at ``t0``, the new
   index is clamped to ``I0 +/- floor(I0 * max_move_ppm_per_s * (now_ns - t0) / 1e15)``.

Why the rate limit is per second of elapsed time and not per update: updates arrive irregularly. A
per-update limit lets whoever can make updates more frequent move the index faster (an attacker
who floods a feed gets more steps), and freezes it when a feed is slow; a per-second limit bounds
the index's speed whatever the update rate, and lets it catch up after an outage in proportion to
the time the outage lasted, which is what the true price could have done meanwhile.

Why the median: with ``h`` honest sources out of ``n`` fresh and ``h > n / 2``, the median of any
subset that keeps every honest source and in which they remain the majority lies between the
lowest and the highest honest price. So up to ``ceil(n / 2) - 1`` sources that spike, freeze,
lag, drift or go silent cannot take the index outside the honest range; the band then removes the
ones that wander furthest, and says so. A *slow drift by a minority* is caught by the band once
it exceeds ``band_ppm``; a slow drift shared by a *majority* is indistinguishable from the market
moving: the band cannot see it and the rate limit only bounds its speed (tests show both).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from engine.math.rounding import div_round_half_even
from engine.types.fixed import INT64_MAX, MICRO_PER_UNIT, PPM

NS_PER_S = 10**9
_MOVE_SCALE = PPM * NS_PER_S  # ppm per second x ns -> fraction


class DropReason(IntEnum):
    """Why a source's quote was not used (0 = it was used). Values are stable: append only."""

    NONE = 0
    UNPARSEABLE = 1  # NaN, infinity, text: produced by parse_price_micro / the feed adapter
    NON_POSITIVE = 2
    ABSURD = 3  # outside [min_price_micro, max_price_micro]
    BAD_TIMESTAMP = 4  # ts_ns <= 0
    FUTURE = 5  # more than max_future_ns ahead of now_ns
    OUT_OF_ORDER = 6  # older than the last timestamp seen from this source
    DUPLICATE = 7  # a second quote from the same source in one update
    STALE = 8  # older than its staleness timeout
    FROZEN = 9  # same price while its timestamps advance, for longer than freeze_ns
    DEVIATION = 10  # beyond band_ppm from the median of the fresh sources


class IndexStatus(IntEnum):
    OK = 0
    STALE = 1  # fewer than min_sources fresh: the previous index is held
    DIVERGED = 2  # enough fresh sources, but fewer than min_sources inside the band: held


@dataclass(frozen=True, slots=True)
class SourceQuote:
    """The latest quote of one source: price in micro-USDC per whole unit, its time in ns."""

    source_id: str
    price_micro: int
    ts_ns: int
    parse_reason: DropReason = DropReason.NONE  # set by the edge parser when the raw value was bad


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """Per-asset oracle rules. Every field is an integer in the unit its name says."""

    staleness_ns: int
    band_ppm: int
    min_sources: int
    max_move_ppm_per_s: int = 0  # 0 disables the rate limit
    min_price_micro: int = 1
    max_price_micro: int = INT64_MAX // PPM  # keeps price * 1e6 inside int64
    max_future_ns: int = NS_PER_S  # clock skew tolerated on a source's timestamp
    freeze_ns: int = 0  # 0 disables freeze detection
    staleness_ns_by_source: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.staleness_ns <= 0:
            raise ValueError(f"staleness_ns must be > 0, got {self.staleness_ns}")
        if not 0 <= self.band_ppm <= PPM:
            raise ValueError(f"band_ppm must be in [0, 1e6], got {self.band_ppm}")
        if self.min_sources < 1:
            raise ValueError(f"min_sources must be >= 1, got {self.min_sources}")
        if self.max_move_ppm_per_s < 0 or self.max_future_ns < 0 or self.freeze_ns < 0:
            raise ValueError("max_move_ppm_per_s, max_future_ns and freeze_ns must be >= 0")
        if not 0 < self.min_price_micro <= self.max_price_micro:
            raise ValueError("need 0 < min_price_micro <= max_price_micro")
        for source_id, staleness in self.staleness_ns_by_source.items():
            if staleness <= 0:
                raise ValueError(f"staleness of source {source_id!r} must be > 0, got {staleness}")

    def staleness_for(self, source_id: str) -> int:
        return self.staleness_ns_by_source.get(source_id, self.staleness_ns)


@dataclass(frozen=True, slots=True)
class SourceState:
    """What was last seen of one source (for OUT_OF_ORDER and FROZEN)."""

    last_ts_ns: int
    last_price_micro: int
    last_change_ts_ns: int  # timestamp of the quote that first showed last_price_micro


@dataclass(frozen=True, slots=True)
class IndexState:
    """The oracle's memory for one asset. ``index_micro == 0`` means no index yet."""

    index_micro: int = 0
    index_ts_ns: int = 0
    sources: Mapping[str, SourceState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourceVerdict:
    """One quote and what happened to it. ``deviation_ppm`` is set for every fresh source."""

    source_id: str
    price_micro: int
    ts_ns: int
    reason: DropReason
    deviation_ppm: int | None = None  # floor(|p - fresh median| * 1e6 / fresh median)


@dataclass(frozen=True, slots=True)
class IndexResult:
    """The outcome of one update. When ``status`` is not OK, ``index_micro`` is the held one."""

    status: IndexStatus
    index_micro: int
    index_ts_ns: int
    fresh_median_micro: int  # centre of the band (0 when nothing was fresh)
    accepted_median_micro: int  # median inside the band, before the rate limit (0 if none)
    max_move_micro: int | None  # the rate limit's allowance this update (None: no limit applied)
    rate_limited: bool
    verdicts: tuple[SourceVerdict, ...]
    state: IndexState


def calc_median_micro(values: Sequence[int]) -> int:
    """Median of a non-empty sequence; an even count gives ``floor((a + b) / 2)`` of the middle two."""
    if not values:
        raise ValueError("median of nothing")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) // 2


_DECIMAL_RE = re.compile(r"([+-]?)(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?")


def calc_price_micro_from_scaled(answer: int, decimals: int) -> int:
    """``answer / 10**decimals`` USDC in micro-USDC, rounded half-to-even (a Chainlink-style
    ``latestRoundData().answer`` with the feed's ``decimals()``)."""
    if decimals <= 6:
        up: int = 10 ** (6 - decimals)
        return answer * up
    down: int = 10 ** (decimals - 6)
    return div_round_half_even(answer, down)


def parse_price_micro(raw: object) -> tuple[int, DropReason]:
    """The edge parser: any raw feed value -> ``(price_micro, NONE)`` or ``(0, UNPARSEABLE)``.

    Accepts ints (whole USDC), floats (their exact binary value) and decimal strings
    (``"64000.125"``, ``"6.4e4"``). NaN, infinities, booleans, None, other types and any other text
    are UNPARSEABLE. The price is rounded half-to-even to the micro-unit (feeds quote more decimals
    than 1e-6); its sign and size are judged later by :func:`calc_index`. Integer arithmetic only.
    """
    if isinstance(raw, bool) or raw is None:
        return 0, DropReason.UNPARSEABLE
    if isinstance(raw, int):
        num, den = raw, 1
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            return 0, DropReason.UNPARSEABLE
        num, den = raw.as_integer_ratio()
    elif isinstance(raw, str):
        match = _DECIMAL_RE.fullmatch(raw.strip())
        if match is None:
            return 0, DropReason.UNPARSEABLE
        sign, whole, frac, exp = match.groups()
        frac = frac or ""
        num = int(whole + frac) * (-1 if sign == "-" else 1)
        shift = int(exp or 0) - len(frac)
        num, den = (num * 10**shift, 1) if shift >= 0 else (num, 10**-shift)
    else:
        return 0, DropReason.UNPARSEABLE
    price = div_round_half_even(num * MICRO_PER_UNIT, den)
    if abs(price) > INT64_MAX:
        return 0, DropReason.UNPARSEABLE
    return price, DropReason.NONE


def _check_quote(
    quote: SourceQuote, now_ns: int, config: IndexConfig, seen: SourceState | None
) -> DropReason:
    if quote.parse_reason != DropReason.NONE:
        return quote.parse_reason
    if quote.price_micro <= 0:
        return DropReason.NON_POSITIVE
    if not config.min_price_micro <= quote.price_micro <= config.max_price_micro:
        return DropReason.ABSURD
    if quote.ts_ns <= 0:
        return DropReason.BAD_TIMESTAMP
    if quote.ts_ns > now_ns + config.max_future_ns:
        return DropReason.FUTURE
    if seen is not None and quote.ts_ns < seen.last_ts_ns:
        return DropReason.OUT_OF_ORDER
    return DropReason.NONE


def _next_source_state(quote: SourceQuote, seen: SourceState | None) -> SourceState:
    if seen is None or quote.price_micro != seen.last_price_micro:
        return SourceState(quote.ts_ns, quote.price_micro, quote.ts_ns)
    return SourceState(quote.ts_ns, quote.price_micro, seen.last_change_ts_ns)


def calc_max_move_micro(index_micro: int, max_move_ppm_per_s: int, elapsed_ns: int) -> int:
    """``floor(index * max_move_ppm_per_s * elapsed_ns / (1e6 * 1e9))``: the rate limit's allowance."""
    return index_micro * max_move_ppm_per_s * max(elapsed_ns, 0) // _MOVE_SCALE


def calc_deviation_ppm(price_micro: int, centre_micro: int) -> int:
    """``floor(|price - centre| * 1e6 / centre)`` for ``centre > 0``."""
    return abs(price_micro - centre_micro) * PPM // centre_micro


def calc_index(
    quotes: Sequence[SourceQuote], now_ns: int, config: IndexConfig, state: IndexState
) -> IndexResult:
    """One oracle update for one asset (the steps and their reasons are in the module docstring).

    Parameters
    ----------
    quotes
        The latest quote of every source of the asset, in any order (a silent source appears
        with its old timestamp and is reported STALE; a source absent from ``quotes`` is simply
        not considered).
    now_ns
        The update's time; staleness, FUTURE and the rate limit are measured against it.
    config, state
        The asset's rules; the previous index, its time and what was last seen of each source.

    Returns
    -------
    IndexResult
        Status, index (the held one unless OK), every quote's verdict in input order, the band's
        centre, the median before the rate limit, and the state to pass to the next update.
    """
    reasons: list[DropReason] = []
    sources = dict(state.sources)
    seen_ids: set[str] = set()
    for quote in quotes:
        if quote.source_id in seen_ids:
            reasons.append(DropReason.DUPLICATE)
            continue
        seen_ids.add(quote.source_id)
        seen = state.sources.get(quote.source_id)
        reason = _check_quote(quote, now_ns, config, seen)
        if reason == DropReason.NONE:
            new_seen = _next_source_state(quote, seen)
            sources[quote.source_id] = new_seen
            if now_ns - quote.ts_ns > config.staleness_for(quote.source_id):
                reason = DropReason.STALE
            elif config.freeze_ns and quote.ts_ns - new_seen.last_change_ts_ns > config.freeze_ns:
                reason = DropReason.FROZEN
        reasons.append(reason)

    fresh = [i for i, r in enumerate(reasons) if r == DropReason.NONE]
    deviations: dict[int, int] = {}
    centre = 0
    if fresh:
        centre = calc_median_micro([quotes[i].price_micro for i in fresh])
        for i in fresh:
            price = quotes[i].price_micro
            deviations[i] = calc_deviation_ppm(price, centre)
            if abs(price - centre) * PPM > config.band_ppm * centre:
                reasons[i] = DropReason.DEVIATION
    accepted = [quotes[i].price_micro for i in fresh if reasons[i] == DropReason.NONE]
    verdicts = tuple(
        SourceVerdict(q.source_id, q.price_micro, q.ts_ns, reasons[i], deviations.get(i))
        for i, q in enumerate(quotes)
    )

    if len(fresh) < config.min_sources or len(accepted) < config.min_sources:
        status = IndexStatus.STALE if len(fresh) < config.min_sources else IndexStatus.DIVERGED
        held = IndexState(state.index_micro, state.index_ts_ns, sources)
        median = calc_median_micro(accepted) if accepted else 0
        return IndexResult(
            status, state.index_micro, state.index_ts_ns, centre, median, None, False, verdicts, held
        )

    median = calc_median_micro(accepted)
    index, max_move, limited = median, None, False
    if state.index_micro > 0 and config.max_move_ppm_per_s > 0:
        max_move = calc_max_move_micro(
            state.index_micro, config.max_move_ppm_per_s, now_ns - state.index_ts_ns
        )
        low, high = state.index_micro - max_move, state.index_micro + max_move
        index = min(max(median, low), high)
        limited = index != median
    new_state = IndexState(index, now_ns, sources)
    return IndexResult(IndexStatus.OK, index, now_ns, centre, median, max_move, limited, verdicts, new_state)


@dataclass(frozen=True, slots=True)
class TwapResult:
    twap_micro: int
    covered_ns: int  # how much of the window the samples covered


def calc_twap_micro(samples: Sequence[tuple[int, int]], start_ns: int, end_ns: int) -> TwapResult | None:
    """Time-weighted average price over ``[start_ns, end_ns)`` of ``(price_micro, ts_ns)`` samples.

    Each sample holds from its timestamp until the next sample's (the last until ``end_ns``):
    a step function, so a price counts for exactly as long as it was the latest one. A sample
    before ``start_ns`` contributes the part of its step inside the window; time before the first
    sample is not covered (``covered_ns`` says how much was). Samples must be in non-decreasing
    time order (ValueError otherwise: the caller keeps them ordered).

    ``twap = sum(price_i * duration_i) / sum(duration_i)``, computed exactly and rounded to the
    nearest micro-USDC, ties to even (no bias toward longs or shorts settling at it). None when
    the samples cover none of the window.
    """
    if end_ns <= start_ns:
        raise ValueError(f"empty window [{start_ns}, {end_ns})")
    weighted = 0
    covered = 0
    for i, (price, ts) in enumerate(samples):
        if i and ts < samples[i - 1][1]:
            raise ValueError(f"samples out of time order at {i}")
        until = samples[i + 1][1] if i + 1 < len(samples) else end_ns
        lo, hi = max(ts, start_ns), min(until, end_ns)
        if hi > lo:
            weighted += price * (hi - lo)
            covered += hi - lo
    if covered == 0:
        return None
    return TwapResult(div_round_half_even(weighted, covered), covered)
