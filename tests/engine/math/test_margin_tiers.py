"""engine.math.margin_tiers: tiered requirement, cumulative deduction, marginal rate."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.math.margin_tiers import (
    calc_deduction_micro_ppm,
    calc_marginal_rate_ppm,
    calc_tier_index,
    calc_tiered_requirement_exact,
    calc_tiered_requirement_f64,
    calc_tiered_requirement_micro,
)
from engine.types.fixed import MICRO_PER_UNIT, PPM
from engine.types.risk_spec import RateTiers

M = MICRO_PER_UNIT
SETTINGS = settings(max_examples=200, deadline=None)


@st.composite
def rate_tiers(draw: st.DrawFn) -> RateTiers:
    n = draw(st.integers(0, 5))
    edges = sorted(set(draw(st.lists(st.integers(1, 10**15), min_size=n, max_size=n))))
    rates = sorted(draw(st.lists(st.integers(0, PPM), min_size=len(edges) + 1, max_size=len(edges) + 1)))
    return RateTiers(tuple(edges), tuple(rates))


def _piecewise_sum(notional: int, tiers: RateTiers) -> Fraction:
    """The definition: each slice of the notional at its own tier's rate (the "tax bracket" form)."""
    total = Fraction(0)
    lower = 0
    for i, rate in enumerate(tiers.rate_ppm):
        upper = tiers.upper_micro[i] if i < len(tiers.upper_micro) else None
        top = notional if upper is None else min(notional, upper)
        if top > lower:
            total += Fraction((top - lower) * rate, PPM)
        if upper is None or notional <= upper:
            break
        lower = upper
    return total


@SETTINGS
@given(rate_tiers(), st.integers(0, 10**16))
def test_deduction_form_equals_slice_by_slice_sum(tiers: RateTiers, notional: int) -> None:
    assert calc_tiered_requirement_exact(notional, tiers) == _piecewise_sum(notional, tiers)
    exact = calc_tiered_requirement_exact(notional, tiers)
    rounded = calc_tiered_requirement_micro(notional, tiers)
    assert rounded - 1 < exact <= rounded  # rounded up: against the account
    assert calc_tiered_requirement_micro(-notional, tiers) == rounded  # |notional|


@SETTINGS
@given(rate_tiers(), st.integers(0, 10**16), st.integers(0, 10**15))
def test_requirement_is_monotone_convex_and_bounded_by_the_marginal_rate(
    tiers: RateTiers, n: int, d: int
) -> None:
    lo, hi = calc_tiered_requirement_exact(n, tiers), calc_tiered_requirement_exact(n + d, tiers)
    assert lo <= hi
    assert hi - lo <= Fraction(d * calc_marginal_rate_ppm(n + d, tiers), PPM)
    assert hi - lo >= Fraction(d * calc_marginal_rate_ppm(n, tiers), PPM)  # convex: slopes only grow
    # convex: the maximum of the affine pieces
    pieces = [
        Fraction(n * r - ded, PPM) for r, ded in zip(tiers.rate_ppm, tiers.deduction_micro_ppm, strict=True)
    ]
    assert calc_tiered_requirement_exact(n, tiers) == max(pieces)


@SETTINGS
@given(rate_tiers())
def test_continuous_at_every_edge(tiers: RateTiers) -> None:
    for i, edge in enumerate(tiers.upper_micro):
        below = Fraction(edge * tiers.rate_ppm[i] - tiers.deduction_micro_ppm[i], PPM)
        above = Fraction(edge * tiers.rate_ppm[i + 1] - tiers.deduction_micro_ppm[i + 1], PPM)
        assert below == above
        assert calc_tier_index(edge, tiers) == i  # an edge belongs to the lower tier


@SETTINGS
@given(rate_tiers(), st.lists(st.integers(0, 10**15), min_size=1, max_size=50))
def test_vectorised_matches_exact(tiers: RateTiers, notionals: list[int]) -> None:
    got = calc_tiered_requirement_f64(np.array(notionals, dtype=np.float64), tiers)
    for value, n in zip(got, notionals, strict=True):
        exact = float(calc_tiered_requirement_exact(n, tiers))
        assert abs(value - exact) <= 1e-9 * max(1.0, n)


def test_binance_cross_margin_pro_example() -> None:
    """Binance, "Cross Margin Pro Position Tiers", section "Example" (Margin Data > Borrow Interest &
    Cross Margin Limit): https://www.binance.com/en/margin-fee

    The user borrowed 13 BTC and 13 ETH at BTC = 30,000 USDT and ETH = 3,000 USDT. Liability values
    390,000 (BTC tier 3) and 39,000 (ETH tier 2). Published: required initial margin
    "50,000*11.12% + (100,000-50,000)*14.29% + (390,000-100,000)*20% + 30,000*11.12% +
    (39,000-30,000)*14.29% = 75,327.1 USDT"; required maintenance margin 31,330 USDT, also computed
    the fast way with the maintenance amount: "(390,000*8% - 2,000) + (39,000*7% - 600) = 31,330".
    USDT is counted here 1:1 in our micro-units.
    """
    btc_im = RateTiers((50_000 * M, 100_000 * M), (111_200, 142_900, 200_000))
    btc_mm = RateTiers((50_000 * M, 100_000 * M), (50_000, 70_000, 80_000))
    eth_im = RateTiers((30_000 * M,), (111_200, 142_900))
    eth_mm = RateTiers((30_000 * M,), (50_000, 70_000))
    btc, eth = 13 * 30_000 * M, 13 * 3_000 * M
    assert calc_tier_index(btc, btc_mm) == 2 and calc_tier_index(eth, eth_mm) == 1  # tiers 3 and 2
    im = calc_tiered_requirement_exact(btc, btc_im) + calc_tiered_requirement_exact(eth, eth_im)
    mm = calc_tiered_requirement_exact(btc, btc_mm) + calc_tiered_requirement_exact(eth, eth_mm)
    assert im == Fraction(75_327_100_000)  # 75,327.1 USDT
    assert mm == 31_330 * M
    # the published maintenance amounts are our cumulative deductions
    assert calc_deduction_micro_ppm(btc_mm)[2] // PPM == 2_000 * M
    assert calc_deduction_micro_ppm(eth_mm)[1] // PPM == 600 * M
    assert calc_tiered_requirement_micro(btc, btc_mm) == 390_000 * M * 8 // 100 - 2_000 * M


def test_binance_cross_margin_pro_max_borrow_example() -> None:
    """Binance FAQ "How to Calculate the Maximum Borrow Limit on Cross Margin Pro", Example 1:
    https://www.binance.com/en/support/faq/how-to-calculate-the-maximum-borrow-limit-on-cross-margin-pro-84aac4a694f54c55a95f721b33cfd174

    BTC liability tier 1 (0 - 1,000,000): MMR 2%, IMR 11.12%; USDC tier 1: MMR 3%, IMR 11.12%.
    With a 1 BTC liability at 10,000: "∑Initial Margin = 10,000 * 11.12% = 1,112 USDC",
    "∑Maintenance Margin = 10,000 * 2% = 200 USDC"; after borrowing 79,928 USDC more:
    "∑Maintenance Margin = 10,000 * 2% + 79,928 * 3% = 2,597.84 USDC" and
    "∑Initial Margin = 10,000 * 11.12% + 79,928 * 11.12% = 10,000 USDC" (9,999.99 before their rounding).
    """
    edges = (1_000_000 * M, 2_000_000 * M, 3_000_000 * M)
    btc_im = RateTiers(edges, (111_200, 142_900, 250_000, 500_000))
    btc_mm = RateTiers(edges, (20_000, 30_000, 40_000, 50_000))
    usdc_im = RateTiers(edges, (111_200, 142_900, 250_000, 500_000))
    usdc_mm = RateTiers(edges, (30_000, 40_000, 50_000, 60_000))
    btc_liability = 10_000 * M
    assert calc_tiered_requirement_micro(btc_liability, btc_im) == 1_112 * M
    assert calc_tiered_requirement_micro(btc_liability, btc_mm) == 200 * M
    usdc_liability = 79_928 * M
    mm = calc_tiered_requirement_micro(btc_liability, btc_mm) + calc_tiered_requirement_micro(
        usdc_liability, usdc_mm
    )
    assert mm == 2_597_840_000  # 2,597.84 USDC
    im = calc_tiered_requirement_exact(btc_liability, btc_im) + calc_tiered_requirement_exact(
        usdc_liability, usdc_im
    )
    assert im == Fraction(9_999_993_600)  # 89,928 * 11.12% = 9,999.9936, published rounded to 10,000
    # margin level = net equity / maintenance margin = 10,000 / 2,597.84 = 3.849 (published)
    assert round(10_000 * M / mm, 3) == 3.849
