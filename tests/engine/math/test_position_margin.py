"""engine.math.position_margin: per-position mode, and its agreement with portfolio mode."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from risk_constants import BTC_PERP, PRICES, SPEC, A, M, account, at_mark

from engine.math.portfolio_margin import calc_portfolio_margin
from engine.math.position_margin import calc_position_margin
from engine.types.fixed import PPM


def test_brackets_cross_and_isolated() -> None:
    state = account(
        usdc=20_000 * M, btc_perp=at_mark(2 * A, 60_000 * M), eth_perp=at_mark(-10 * A, 3_000 * M)
    )
    cross = calc_position_margin(SPEC, state, PRICES)
    assert cross.position_im_micro == (6_000 * M, 1_500 * M)  # 5% of 120,000 and of 30,000
    assert cross.position_mm_micro == (3_600 * M, 900 * M)  # 3%
    assert (cross.equity_micro, cross.im_micro, cross.mm_micro) == (20_000 * M, 7_500 * M, 4_500 * M)
    assert cross.isolated_equity_micro == (None, None)
    # the ETH short isolated with 2,000 USDC of its own (already taken out of the USDC balance)
    iso_state = dataclasses.replace(state, balance=(18_000 * M, 0, 0, 0, 0))
    iso = calc_position_margin(SPEC, iso_state, PRICES, (None, 2_000 * M))
    assert iso.isolated_equity_micro == (None, 2_000 * M)
    assert (iso.equity_micro, iso.im_micro, iso.mm_micro) == (18_000 * M, 6_000 * M, 3_600 * M)


def test_spot_liabilities_are_charged_standalone() -> None:
    state = account(usdc=100_000 * M, btc=-1 * A, pm1=-100 * A)
    r = calc_position_margin(SPEC, state, PRICES)
    assert r.equity_micro == 100_000 * M - 60_000 * M - 42 * M
    assert r.im_micro == 3_000 * M + 58 * M  # BTC: 5% of 60,000; short YES: 100 x (1 - 0.42)
    assert r.mm_micro == (3_000 * M + 58 * M) * 6 // 10


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-50_000 * A, 50_000 * A).filter(bool),
    st.integers(1_000 * M, 200_000 * M),
    st.integers(0, 10**13),
)
def test_modes_agree_on_a_single_position_within_the_floor(size: int, mark: int, usdc: int) -> None:
    """One perp and USDC, brackets equal to the shock tiers, multiplier 1: portfolio IM is
    ``max(IM_p, floor)``; MM agrees to the micro when the floor does not bind."""
    prices = dataclasses.replace(
        PRICES, mark_micro=(mark, 3_000 * M), asset_price_micro=(M, mark, 3_000 * M, 200 * M, 420_000)
    )
    state = account(usdc=usdc, btc_perp=at_mark(size, mark))
    portfolio = calc_portfolio_margin(SPEC, state, prices)
    position = calc_position_margin(SPEC, state, prices)
    assert position.equity_micro == portfolio.equity_micro
    assert position.im_micro <= portfolio.im_micro <= max(position.im_micro, portfolio.floor_micro)
    if portfolio.floor_micro <= position.im_micro:
        assert portfolio.im_micro == position.im_micro
        assert abs(portfolio.mm_micro - position.mm_micro) <= 1
    assert position.position_im_micro[BTC_PERP] == position.im_micro
    assert SPEC.params.mm_fraction_ppm == 600_000 and PPM == 10**6
