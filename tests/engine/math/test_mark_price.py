"""engine.math.mark_price: decay, EMA determinism and half-life, weighted median, the mark's bound."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.math.mark_price import (
    LN2_Q64,
    ONE_Q64,
    PICO_PER_MICRO,
    BasisEma,
    calc_basis_ema,
    calc_basis_pico,
    calc_decay_q64,
    calc_mark_price,
    calc_mid_pico,
    calc_weighted_median_micro,
)

S = 10**9
HALF_LIFE_NS = 104 * S
INDEX = 100_000 * 10**6  # 100,000 USDC


def test_ln2_constant() -> None:
    getcontext().prec = 60
    assert LN2_Q64 == int((Decimal(2).ln() * 2**64).to_integral_value())


# --- decay ---------------------------------------------------------------------------------------


@given(st.integers(0, 10**13), st.integers(1, 10**13))
def test_decay_is_close_to_two_to_the_minus_dt_over_h(dt: int, h: int) -> None:
    getcontext().prec = 60
    exact = Decimal(2) ** (Decimal(-dt) / Decimal(h)) * 2**64
    assert abs(Decimal(calc_decay_q64(dt, h)) - exact) <= 2**6  # within 2^-58


@given(st.integers(0, 10**12), st.integers(0, 10**9), st.integers(1, 10**12))
def test_decay_never_increases_with_time(dt: int, extra: int, h: int) -> None:
    assert calc_decay_q64(dt + extra, h) <= calc_decay_q64(dt, h) <= ONE_Q64


def test_decay_is_exact_at_whole_half_lives() -> None:
    assert calc_decay_q64(0, HALF_LIFE_NS) == ONE_Q64
    for n in range(0, 65):
        assert calc_decay_q64(n * HALF_LIFE_NS, HALF_LIFE_NS) == ONE_Q64 >> n
    assert calc_decay_q64(65 * HALF_LIFE_NS, HALF_LIFE_NS) == 0
    with pytest.raises(ValueError):
        calc_decay_q64(-1, HALF_LIFE_NS)
    with pytest.raises(ValueError):
        calc_decay_q64(1, 0)


# --- EMA -----------------------------------------------------------------------------------------


def _run(samples: list[tuple[int, int]], prev: BasisEma | None = None) -> BasisEma:
    ema = prev
    for basis, ts in samples:
        ema, _ = calc_basis_ema(ema, basis, ts, HALF_LIFE_NS)
    assert ema is not None
    return ema


@given(st.lists(st.tuples(st.integers(-(10**15), 10**15), st.integers(0, 10 * S)), min_size=1, max_size=30))
def test_ema_is_deterministic_and_stays_between_its_samples(steps: list[tuple[int, int]]) -> None:
    samples, ts = [], 0
    for basis, dt in steps:
        ts += dt
        samples.append((basis, ts))
    first, second = _run(samples), _run(list(samples))
    assert first == second  # same inputs, same bits
    lo, hi = min(b for b, _ in samples), max(b for b, _ in samples)
    assert lo <= first.basis_pico <= hi


@given(
    st.integers(-(10**16), 10**16),
    st.integers(-(10**16), 10**16),
    st.lists(st.integers(1, 1000), min_size=1, max_size=40),
)
def test_after_one_half_life_of_a_constant_basis_the_ema_has_covered_half_the_gap(
    start: int, target: int, cuts: list[int]
) -> None:
    """However the half-life is cut into steps, the gap halves (to within the steps' roundings)."""
    total = sum(cuts)
    times = [HALF_LIFE_NS * sum(cuts[: i + 1]) // total for i in range(len(cuts))]
    ema = _run([(target, t) for t in times], BasisEma(start, 0))
    gap_left = ema.basis_pico - target
    assert abs(2 * gap_left - (start - target)) <= 2 * len(cuts) + abs(start - target) // 2**56


def test_ema_first_sample_starts_it_and_time_cannot_go_back() -> None:
    ema, decay = calc_basis_ema(None, 5 * PICO_PER_MICRO, 10, HALF_LIFE_NS)
    assert ema == BasisEma(5 * PICO_PER_MICRO, 10) and decay == 0
    same, decay = calc_basis_ema(ema, 0, 10, HALF_LIFE_NS)  # dt = 0: no weight to the new sample
    assert same.basis_pico == 5 * PICO_PER_MICRO and decay == ONE_Q64
    with pytest.raises(ValueError):
        calc_basis_ema(ema, 0, 9, HALF_LIFE_NS)


def test_small_steps_of_a_small_basis_still_move_the_ema() -> None:
    """Held in micro-USDC, 1 s steps of a 100 micro-USDC gap at a 104 s half-life would round to
    nothing; in pico-USDC the EMA converges."""
    ema = _run([(100 * PICO_PER_MICRO, t * S) for t in range(0, 1041)], BasisEma(0, 0))
    assert 99 * PICO_PER_MICRO < ema.basis_pico < 100 * PICO_PER_MICRO


def test_matches_hyperliquids_ema_once_its_denominator_has_filled() -> None:
    """Hyperliquid, "Robust price indices"
    (https://hyperliquid.gitbook.io/hyperliquid-docs/trading/robust-price-indices): "ema =
    numerator / denominator; numerator -> numerator * exp(-t / 2.5 minutes) + sample * t;
    denominator -> denominator * exp(-t / 2.5 minutes) + t". Time constant 150 s = half-life
    150 * ln 2 s. Run both on the same 3 s samples (their oracle cadence) after a warm-up of ten
    time constants; they agree to within 1% of the basis range (theirs weighs a step's sample by
    t, ours by tau * (1 - exp(-t / tau)), a difference of order t / (2 tau) = 1%)."""
    tau = 150.0
    half_life_ns = round(tau * math.log(2) * S)
    num = den = 0.0
    ours: BasisEma | None = None
    for step in range(0, 1000):
        t_s = 3 * step
        basis_usdc = 40.0 * math.sin(t_s / 200.0) + (15.0 if step % 7 == 0 else 0.0)
        basis_pico = round(basis_usdc * 10**12)
        if step:
            num, den = num * math.exp(-3 / tau), den * math.exp(-3 / tau)
        num, den = num + basis_usdc * 3, den + 3
        ours, _ = calc_basis_ema(ours, basis_pico, t_s * S, half_life_ns)
        if t_s > 10 * tau:
            assert abs(ours.basis_pico / 10**12 - num / den) < 0.01 * 55


# --- components ------------------------------------------------------------------------------------


def test_mid_is_exact_in_pico() -> None:
    assert calc_mid_pico(100, 101) == 100_500_000
    assert calc_mid_pico(None, 101) is None and calc_mid_pico(100, None) is None
    assert calc_basis_pico(100, 101, 99) == 1_500_000
    assert calc_basis_pico(100, None, 99) is None


def test_weighted_median() -> None:
    # Hyperliquid's external weights 3, 2, 2, 1, 1 (Binance, OKX, Bybit, Gate IO, MEXC)
    assert calc_weighted_median_micro([(101, 3), (99, 2), (100, 2), (150, 1), (10, 1)]) == 100
    assert calc_weighted_median_micro([(1, 1), (3, 1)]) == 2  # equal weights: the ordinary median
    assert calc_weighted_median_micro([(1, 1), (2, 1), (9, 2)]) == 5  # exactly half at 2: mean of 2, 9
    assert calc_weighted_median_micro([(7, 0), (5, 1)]) == 5
    with pytest.raises(ValueError):
        calc_weighted_median_micro([(5, 0)])


@given(st.lists(st.integers(1, 10**12), min_size=1, max_size=12))
def test_weighted_median_with_equal_weights_is_the_median(values: list[int]) -> None:
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2
    assert calc_weighted_median_micro([(v, 7) for v in values]) == median


def test_mark_is_the_median_of_the_three_components() -> None:
    result = calc_mark_price(
        INDEX,
        basis_ema_pico=20 * 10**12,  # +20 USDC
        best_bid_micro=INDEX + 10 * 10**6,
        best_ask_micro=INDEX + 30 * 10**6,
        last_trade_micro=INDEX + 25 * 10**6,
        external_mids=[(INDEX + 5 * 10**6, 3), (INDEX + 7 * 10**6, 2)],
    )
    assert result.ema_component_micro == INDEX + 20 * 10**6
    assert result.book_component_micro == INDEX + 25 * 10**6
    assert result.external_component_micro == INDEX + 5 * 10**6
    assert result.mark_micro == INDEX + 20 * 10**6
    assert result.substituted == ()


def test_missing_inputs_are_replaced_by_the_index() -> None:
    nothing = calc_mark_price(INDEX, None, None, None, None)
    assert nothing.mark_micro == INDEX
    assert nothing.substituted == ("basis_ema", "best_bid", "best_ask", "last_trade", "external_mids")
    one_sided = calc_mark_price(INDEX, None, None, INDEX + 500 * 10**6, INDEX + 400 * 10**6)
    assert one_sided.book_component_micro == INDEX + 400 * 10**6  # median(index, ask, last)
    assert one_sided.mark_micro == INDEX  # (a) and (c) are the index: a one-sided book cannot move it


# --- the bound ---------------------------------------------------------------------------------------

component = st.integers(10**6, 10**12)


@given(component, component, component, st.integers(1, 10**13), st.integers(0, 2))
def test_one_manipulated_component_cannot_take_the_mark_outside_the_other_two(
    a: int, b: int, c: int, bad: int, which: int
) -> None:
    honest = [a, b, c]
    others = [v for i, v in enumerate(honest) if i != which]
    moved = list(honest)
    moved[which] = bad
    median_before = sorted(honest)[1]
    median_after = sorted(moved)[1]
    assert min(others) <= median_after <= max(others)
    assert abs(median_after - median_before) <= max(others) - min(others)


@given(
    st.integers(-(10**9), 10**9),  # honest basis (micro)
    st.integers(-(10**11), 10**11),  # the spike's basis (micro)
    st.integers(1, 30 * S),  # how long the spike lasts
    st.integers(-(10**9), 10**9),  # external component offset
)
def test_a_thin_book_spike_moves_the_mark_by_no_more_than_the_ema_allows(
    basis: int, spike: int, duration: int, external: int
) -> None:
    """A spike sets the book's mid, bid, ask and last trade anywhere for ``duration``: (b) is the
    attacker's, (a) moves by at most (1 - 2^(-duration/h)) of the gap, (c) does not move, so the
    mark stays within [min(a', c), max(a', c)] and within that distance of (a) and (c)."""
    ema = BasisEma(basis * PICO_PER_MICRO, 0)
    before = calc_mark_price(
        INDEX, ema.basis_pico, INDEX + basis, INDEX + basis, INDEX + basis, [(INDEX + external, 1)]
    )
    spiked_ema, decay = calc_basis_ema(ema, spike * PICO_PER_MICRO, duration, HALF_LIFE_NS)
    peak = INDEX + spike
    after = calc_mark_price(INDEX, spiked_ema.basis_pico, peak, peak, peak, [(INDEX + external, 1)])
    ema_move_bound = (ONE_Q64 - decay) * abs(spike - basis) / ONE_Q64 + 1  # +1: rounding to micro
    assert abs(after.ema_component_micro - before.ema_component_micro) <= ema_move_bound
    lo = min(after.ema_component_micro, after.external_component_micro)
    hi = max(after.ema_component_micro, after.external_component_micro)
    assert lo <= after.mark_micro <= hi
    honest_lo = min(before.ema_component_micro, before.external_component_micro)
    honest_hi = max(before.ema_component_micro, before.external_component_micro)
    assert honest_lo - ema_move_bound <= after.mark_micro <= honest_hi + ema_move_bound


def test_a_one_second_spike_of_ten_percent_moves_the_mark_by_under_0_7_percent_of_the_spike() -> None:
    """The number behind the bound: 1 - 2^(-1/104) = 0.6643%, so a 1 s spike of +10,000 USDC on a
    100,000 USDC index moves (a) by 66.43 USDC, and with (c) at the index the mark no further."""
    ema = BasisEma(0, 0)
    spiked, decay = calc_basis_ema(ema, 10_000 * 10**12, 1 * S, HALF_LIFE_NS)
    assert 1 - decay / ONE_Q64 == pytest.approx(1 - 2 ** (-1 / 104))
    after = calc_mark_price(INDEX, spiked.basis_pico, INDEX * 11 // 10, INDEX * 11 // 10, INDEX * 11 // 10)
    assert after.mark_micro - INDEX == round(10_000 * 10**6 * (1 - 2 ** (-1 / 104)))
