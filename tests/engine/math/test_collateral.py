"""engine.math.collateral: weighted quantity and collateral value (haircuts)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.math.collateral import (
    calc_collateral_value_exact,
    calc_collateral_value_micro,
    calc_marginal_weight_ppm,
    calc_weighted_qty_exact,
    calc_weighted_qty_f64,
)
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, PPM
from engine.types.risk_spec import WeightTiers

A = ATOMS_PER_UNIT
M = MICRO_PER_UNIT
SETTINGS = settings(max_examples=200, deadline=None)


@st.composite
def weight_tiers(draw: st.DrawFn) -> WeightTiers:
    n = draw(st.integers(0, 5))
    edges = sorted(set(draw(st.lists(st.integers(1, 10**14), min_size=n, max_size=n))))
    weights = sorted(
        draw(st.lists(st.integers(0, PPM), min_size=len(edges) + 1, max_size=len(edges) + 1)), reverse=True
    )
    return WeightTiers(tuple(edges), tuple(weights))


quantities = st.integers(-(10**15), 10**15)


@SETTINGS
@given(weight_tiers(), quantities, st.integers(0, 10**14))
def test_haircuts_are_monotone_concave_and_never_add_value(tiers: WeightTiers, q: int, d: int) -> None:
    w0, w1, w2 = (calc_weighted_qty_exact(x, tiers) for x in (q, q + d, q + 2 * d))
    assert w0 <= w1  # more collateral never lowers the value
    assert w1 - w0 <= d  # 1-Lipschitz: a unit more never counts for more than a unit
    if q >= 0:
        assert w0 <= q  # a haircut only takes away
        assert w1 - w0 >= w2 - w1  # concave: each extra unit counts for less (weights non-increasing)
        assert w1 - w0 >= Fraction(d * calc_marginal_weight_ppm(q + d, tiers), PPM)
    else:
        assert w0 == q  # a liability counts in full


@SETTINGS
@given(weight_tiers())
def test_weights_never_increase_and_w_is_continuous(tiers: WeightTiers) -> None:
    assert list(tiers.weight_ppm) == sorted(tiers.weight_ppm, reverse=True)
    for edge in tiers.upper_atoms:
        below = calc_weighted_qty_exact(edge - 1, tiers)
        at = calc_weighted_qty_exact(edge, tiers)
        above = calc_weighted_qty_exact(edge + 1, tiers)
        assert at - below <= 1 and above - at <= 1


@SETTINGS
@given(weight_tiers(), quantities, st.integers(0, 10**12))
def test_value_rounds_down(tiers: WeightTiers, q: int, price: int) -> None:
    exact = calc_collateral_value_exact(q, price, A, tiers)
    rounded = calc_collateral_value_micro(q, price, A, tiers)
    assert exact - 1 < rounded <= exact


@SETTINGS
@given(weight_tiers(), st.lists(quantities, min_size=1, max_size=40), st.integers(0, 10**11))
def test_vectorised_matches_exact(tiers: WeightTiers, qs: list[int], price: int) -> None:
    scale = price / A
    got = calc_weighted_qty_f64(np.array(qs, dtype=np.int64), tiers, scale)
    for value, q in zip(got, qs, strict=True):
        exact = float(calc_collateral_value_exact(q, price, A, tiers))
        assert abs(value - exact) <= 1e-9 * max(1.0, abs(q) * scale)


def test_bitget_cross_margin_collateral_ratio_examples() -> None:
    """Bitget, "Cross margin collateral ratios", Example (the page as served from Bitget's mirror):
    https://www.bgportable.com/en/spot/introduction/margininfo/cross-discount

    1. 1 BTC at 50,000 (ratio 1 in its first tier) and 60,000 APT at 1 USD, "the collateral ratio is
       0.8 for 50,000 APT, while the remaining 10,000 APT has a collateral ratio of 0":
       "1 × 50,000 × 1 + 50,000 × 1 × 0.8 + 10,000 × 1 × 0 = 90,000 USD".
    2. 11,000,000 USDT at 1 USD with tiers 0-5M: 1, 5M-10M: 0.98, 10M-20M: 0.975:
       "5,000,000 × 1 + 5,000,000 × 0.98 + 1,000,000 × 0.975 = 10,875,000 USD".
    """
    btc = WeightTiers((100 * A,), (PPM, 950_000))  # ratio 1 up to 5,000,000 USD = 100 BTC at 50,000
    apt = WeightTiers((50_000 * A,), (800_000, 0))
    value = calc_collateral_value_micro(1 * A, 50_000 * M, A, btc) + calc_collateral_value_micro(
        60_000 * A, 1 * M, A, apt
    )
    assert value == 90_000 * M
    usdt = WeightTiers((5_000_000 * A, 10_000_000 * A, 20_000_000 * A), (PPM, 980_000, 975_000, 950_000))
    assert calc_collateral_value_micro(11_000_000 * A, 1 * M, A, usdt) == 10_875_000 * M


def test_bybit_uta_collateral_value_ratio_rules() -> None:
    """Bybit help center, "Understanding Collateral Value Ratios in Unified Trading Account", section
    "Example Calculation" (as served from Bybit's testnet help domain):
    https://testnet.bytick.com/en/help-center/article/Assets-Collateral-Value-Ratio-List-UTA

    Published tier table for BTC: 0-10: 0.98, >10-20: 0.95, >20-30: 0.9, >30-40: 0.85, >40-50: 0.8,
    >50: 0; and the rule "The Collateral Value Ratio only applies to assets with a positive balance.
    For assets with a negative balance default to a 100% collateral value ratio." The page's own
    total for its trader is not reproduced here (we could not retrieve it); the checks are the
    rules: tier by tier, and a negative balance counted in full.
    """
    btc = WeightTiers(
        (10 * A, 20 * A, 30 * A, 40 * A, 50 * A), (980_000, 950_000, 900_000, 850_000, 800_000, 0)
    )
    assert calc_weighted_qty_exact(10 * A, btc) == Fraction(98, 10) * A
    assert (
        calc_weighted_qty_exact(25 * A, btc)
        == (Fraction(98, 10) + Fraction(95, 10) + 5 * Fraction(9, 10)) * A
    )
    assert calc_weighted_qty_exact(60 * A, btc) == calc_weighted_qty_exact(50 * A, btc)  # beyond 50: 0
    assert calc_weighted_qty_exact(-3 * A, btc) == -3 * A
