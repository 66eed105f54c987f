"""engine.math.fees: fee rounding against the account; the fee account's income is exact."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.math.fees import calc_fee_micro, calc_fill_fees_micro, calc_max_fee_micro
from engine.types.fixed import PPM
from engine.types.risk_spec import FeeRates

notionals = st.integers(0, 10**15)


@st.composite
def fee_rates(draw: st.DrawFn) -> FeeRates:
    taker = draw(st.integers(0, PPM // 10))
    return FeeRates(maker_ppm=draw(st.integers(-taker, taker)), taker_ppm=taker)


@settings(max_examples=300, deadline=None)
@given(notionals, fee_rates())
def test_fees_round_against_the_account_and_the_fee_account_gets_exactly_what_is_paid(
    notional: int, rates: FeeRates
) -> None:
    maker, taker, income = calc_fill_fees_micro(notional, rates)
    exact_maker = Fraction(notional * rates.maker_ppm, PPM)
    exact_taker = Fraction(notional * rates.taker_ppm, PPM)
    assert exact_taker <= taker < exact_taker + 1  # a fee paid rounds up
    if rates.maker_ppm >= 0:
        assert exact_maker <= maker < exact_maker + 1
    else:  # a rebate rounds down in size: the maker gets no more than the exact rebate
        assert exact_maker <= maker < exact_maker + 1 and maker <= 0
    assert income == maker + taker  # nothing created: income is exactly what the two pay
    assert income >= 0  # a rebate never exceeds the taker fee
    assert calc_max_fee_micro(notional, rates) == max(maker, taker)


def test_examples() -> None:
    rates = FeeRates(maker_ppm=-50, taker_ppm=500)  # -0.5 bp rebate, 5 bp taker
    assert calc_fill_fees_micro(60_000_000_000, rates) == (-3_000_000, 30_000_000, 27_000_000)
    assert calc_fee_micro(1, 500) == 1 and calc_fee_micro(1, -50) == 0  # 0.0005 up; -0.00005 down to 0
    assert calc_fee_micro(-1_000_000, 1_000) == 1_000  # on |notional|
