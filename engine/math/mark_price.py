"""Mark price: the median of three estimates of the perp's fair price, so no one input moves it alone.

The construction is Hyperliquid's ("Robust price indices",
https://hyperliquid.gitbook.io/hyperliquid-docs/trading/robust-price-indices): the mark is the
median of

(a) **index + EMA of (book mid - index)**: the book's basis, smoothed over time;
(b) **median(best bid, best ask, last trade)**: what the book says now;
(c) **weighted median of external perp mids** (Hyperliquid: Binance, OKX, Bybit, ...), or the
    index when no external feed is configured.

Units: prices in micro-USDC per whole unit (``_micro``); the EMA state in pico-USDC (``_pico``,
1e-12 USDC = 1e-6 micro-USDC) so that a small step of a small basis still moves it (an EMA held in
micro-units would stick: 0.46 micro-USDC rounds to nothing, every step); times in ns; the decay
factor in Q64 fixed point (``_q64``: an integer ``d`` meaning ``d / 2**64``).

**EMA over irregular steps.** A new basis sample ``x`` taken ``dt`` after the previous one moves the
EMA ``e`` to ``x + (e - x) * 2^(-dt / half_life)``: after one half-life of a constant basis the EMA
has covered exactly half the gap, however the half-life was cut into steps. The decay
``2^(-dt/h)`` is computed by :func:`calc_decay_q64` with integers only (``2^-n`` is a shift; the
fractional part via ``exp(-f ln 2)``, a Taylor series with floored terms and a hard-coded
``ln 2``), so every process and every replay computes the same bits. The step
``(e - x) * d / 2^64`` is rounded to the nearest pico-USDC, ties to even, which keeps the EMA
between its previous value and the sample (it never overshoots). Hyperliquid writes its EMA as
``numerator / denominator`` with ``exp(-t / 2.5 min)`` decay and weight ``t`` per sample; once its
denominator has filled (after a few time constants) that is this update with
``half_life = 150 s * ln 2 = 103.97 s``. Here the first sample starts the EMA (as their first
update does: ``t * x / t``).

**Missing inputs: each one is replaced by the index**, explicitly and reported
(:attr:`MarkResult.substituted`): no EMA yet -> (a) is the index (basis 0); one side of the book
empty -> that side is the index in (b) (so (b) = median(index, other side, last trade)); no last
trade (or one the caller judged too old) -> the index in (b); no external mids -> (c) is the index.
One book side empty also means no mid, so no EMA sample: the EMA keeps its value and its time, and
the next two-sided sample's step spans the gap. A missing input thus counts as a vote for the
index, never as a vote for whatever the remaining side of a thin book says.

**The bound.** ``median(a, b, c)`` lies between the other two whatever one of them does. So one
manipulated component (a spoofed book moves (b); a bad external feed moves (c)) cannot take the
mark outside ``[min(o1, o2), max(o1, o2)]``, the range of the two others: it moves the mark by at
most ``max(o1, o2) - min(o1, o2)``, however far it goes itself. A thin-book spike that lasts
``dt`` moves (b) anywhere but (a) by at most ``(1 - 2^(-dt/h)) * |spike basis - EMA|``; with (c)
untouched the mark stays within ``[min(a', c), max(a', c)]``. ``tests/engine/math/test_mark_price.py`` checks both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.math.oracle_index import calc_median_micro
from engine.math.rounding import div_round_half_even

ONE_Q64 = 1 << 64
LN2_Q64 = 12786308645202655660  # round(ln(2) * 2**64); ln 2 = 0.693147180559945309417232121458...
PICO_PER_MICRO = 10**6  # the EMA's sub-units per micro-USDC


def calc_decay_q64(dt_ns: int, half_life_ns: int) -> int:
    """``2^(-dt/half_life)`` in Q64 (``2**64`` = 1.0), integers only, deterministic.

    ``dt = n * h + r``: ``2^-n`` is a right shift; ``2^(-r/h) = 1 / exp(y)`` with
    ``y = floor(r * LN2_Q64 / h)`` and ``exp(y)`` a Taylor series whose terms are floored (so
    ``exp(y)`` is low by a few units of 2^-64 and the decay high by as much). Exact at multiples
    of the half-life (``dt = h`` gives exactly ``2**63``); within ``2**-58`` of the true value
    elsewhere; never increases with ``dt``; 0 once ``dt >= 65 h``.
    """
    if dt_ns < 0:
        raise ValueError(f"time step must be >= 0, got {dt_ns}")
    if half_life_ns <= 0:
        raise ValueError(f"half-life must be > 0, got {half_life_ns}")
    whole, rest = divmod(dt_ns, half_life_ns)
    if whole > 64:
        return 0
    y_q64 = rest * LN2_Q64 // half_life_ns  # in [0, ln 2)
    exp_q64 = term = ONE_Q64
    k = 1
    while term:
        term = term * y_q64 // (k << 64)
        exp_q64 += term
        k += 1
    frac_decay_q64 = (ONE_Q64 << 64) // exp_q64  # 1/exp(y), floored; <= 2**64
    return frac_decay_q64 >> whole


@dataclass(frozen=True, slots=True)
class BasisEma:
    """The EMA of (book mid - index) in pico-USDC, and the time of the sample it last took."""

    basis_pico: int
    ts_ns: int


def calc_mid_pico(best_bid_micro: int | None, best_ask_micro: int | None) -> int | None:
    """``(bid + ask) / 2`` exactly, in pico-USDC; None when a side of the book is empty."""
    if best_bid_micro is None or best_ask_micro is None:
        return None
    return (best_bid_micro + best_ask_micro) * PICO_PER_MICRO // 2  # exact: 1e6 is even


def calc_basis_pico(best_bid_micro: int | None, best_ask_micro: int | None, index_micro: int) -> int | None:
    """The EMA's sample: ``(bid + ask) / 2 - index`` exactly, in pico-USDC; None when a side of
    the book is empty (no sample: the EMA keeps its value and time)."""
    mid = calc_mid_pico(best_bid_micro, best_ask_micro)
    return None if mid is None else mid - index_micro * PICO_PER_MICRO


def calc_basis_ema(
    prev: BasisEma | None, basis_pico: int, ts_ns: int, half_life_ns: int
) -> tuple[BasisEma, int]:
    """Take one basis sample (``mid - index`` in pico-USDC, at ``ts_ns``) into the EMA.

    Returns the new EMA and the decay (Q64) applied. The first sample (``prev`` None) starts the
    EMA at the sample (decay 0). Otherwise ``e' = x + round_half_even((e - x) * d / 2**64)`` with
    ``d = calc_decay_q64(ts_ns - prev.ts_ns, half_life_ns)``. A sample older than the EMA is a
    bug in the caller (ValueError).
    """
    if prev is None:
        return BasisEma(basis_pico, ts_ns), 0
    if ts_ns < prev.ts_ns:
        raise ValueError(f"basis sample at {ts_ns} ns is older than the EMA ({prev.ts_ns} ns)")
    decay_q64 = calc_decay_q64(ts_ns - prev.ts_ns, half_life_ns)
    step = div_round_half_even((prev.basis_pico - basis_pico) * decay_q64, ONE_Q64)
    return BasisEma(basis_pico + step, ts_ns), decay_q64


def calc_weighted_median_micro(values_weights: Sequence[tuple[int, int]]) -> int:
    """Weighted median of ``(value_micro, weight)`` pairs (weights >= 0, some > 0).

    Sort by value; the median is the first value at which the cumulative weight reaches half the
    total. When it reaches exactly half, the median is ``floor((v_i + v_next) / 2)``, so equal
    weights give the ordinary median (the mean of the middle two for an even count).
    """
    pairs = sorted((v, w) for v, w in values_weights if w > 0)
    if any(w < 0 for _, w in values_weights):
        raise ValueError("weights must be >= 0")
    total = sum(w for _, w in pairs)
    if total == 0:
        raise ValueError("weighted median of nothing")
    cum = 0
    for i, (value, weight) in enumerate(pairs):
        cum += weight
        if 2 * cum == total and i + 1 < len(pairs):
            return (value + pairs[i + 1][0]) // 2
        if 2 * cum >= total:
            return value
    raise AssertionError("unreachable: the cumulative weight reaches the total")


@dataclass(frozen=True, slots=True)
class MarkResult:
    """The mark and each of its three components (micro-USDC), and which inputs were the index."""

    mark_micro: int
    ema_component_micro: int  # (a) index + round_half_even(basis EMA)
    book_component_micro: int  # (b) median(bid, ask, last trade)
    external_component_micro: int  # (c) weighted median of external mids
    substituted: tuple[str, ...]  # inputs replaced by the index: "basis_ema", "best_bid", ...


def calc_mark_price(
    index_micro: int,
    basis_ema_pico: int | None,
    best_bid_micro: int | None,
    best_ask_micro: int | None,
    last_trade_micro: int | None,
    external_mids: Sequence[tuple[int, int]] = (),
) -> MarkResult:
    """``mark = median(a, b, c)`` (see the module docstring for each component and the bound).

    Parameters
    ----------
    index_micro
        The oracle index (micro-USDC).
    basis_ema_pico
        The EMA of (mid - index) in pico-USDC (:attr:`BasisEma.basis_pico`), or None if none yet.
    best_bid_micro, best_ask_micro, last_trade_micro
        The book's touch and last trade; None for an empty side or no (recent) trade.
    external_mids
        ``(mid_micro, weight)`` of external perp venues; empty when no feed provides them.
    """
    if index_micro <= 0:
        raise ValueError(f"index must be > 0, got {index_micro}")
    substituted: list[str] = []

    def or_index(value: int | None, name: str) -> int:
        if value is None:
            substituted.append(name)
            return index_micro
        return value

    basis_micro = 0
    if basis_ema_pico is None:
        substituted.append("basis_ema")
    else:
        basis_micro = div_round_half_even(basis_ema_pico, PICO_PER_MICRO)
    ema_component = index_micro + basis_micro
    book_component = calc_median_micro(
        [
            or_index(best_bid_micro, "best_bid"),
            or_index(best_ask_micro, "best_ask"),
            or_index(last_trade_micro, "last_trade"),
        ]
    )
    if any(w > 0 for _, w in external_mids):
        external_component = calc_weighted_median_micro(external_mids)
    else:
        substituted.append("external_mids")
        external_component = index_micro
    mark = calc_median_micro([ema_component, book_component, external_component])
    return MarkResult(mark, ema_component, book_component, external_component, tuple(substituted))
