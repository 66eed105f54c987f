"""engine.math.funding: impact prices, premium, clamp and cap, sign, exact zero-sum payments."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.math.funding import (
    PAYMENT_SCALE,
    FundingConfig,
    PremiumWeighting,
    calc_cap_ppb_from_margin,
    calc_funding_amounts,
    calc_funding_payments,
    calc_funding_rate,
    calc_impact_ask_micro,
    calc_impact_bid_micro,
    calc_impact_notional_micro,
    calc_interest_ppb,
    calc_mean_premium_ppb,
    calc_predicted_funding_rate,
    calc_premium_ppb,
)

USDC = 10**6  # micro-USDC per USDC
UNIT = 10**8  # atoms per unit
PCT = 10**7  # ppb per percent
INDEX = 100_000 * USDC
WIDE_CAP = FundingConfig(cap_ppb=100 * PCT)  # effectively uncapped
ALICE, BOB, CAROL = 1, 2, 3


# --- impact prices --------------------------------------------------------------------------------


def test_impact_price_walks_the_levels_exactly() -> None:
    bids = [(100 * USDC, 1 * UNIT), (99 * USDC, 2 * UNIT), (90 * USDC, 10 * UNIT)]
    # 250 USDC: 100 from level 1, 150 from level 2 (1.5151... units) -> 250 / 2.51515... = 99.397590...
    assert calc_impact_bid_micro(bids, 250 * USDC) == 99_397_590
    asks = [(101 * USDC, 1 * UNIT), (102 * USDC, 2 * UNIT)]
    # 203 USDC: 101 + 102 (1 unit at 102) -> 203 / 2 = 101.5 exactly
    assert calc_impact_ask_micro(asks, 203 * USDC) == 101_500_000
    assert calc_impact_bid_micro(bids, 100 * USDC) == 100 * USDC  # exactly the first level
    assert calc_impact_ask_micro(asks, 10_000 * USDC) is None  # too thin
    assert calc_impact_bid_micro([], 1 * USDC) is None


@given(
    st.lists(st.tuples(st.integers(1, 10**11), st.integers(1, 10**10)), min_size=1, max_size=10),
    st.integers(1, 10**12),
)
def test_impact_price_is_the_exact_average_fill_rounded_away_from_the_mid(
    levels: list[tuple[int, int]], notional: int
) -> None:
    exact: Fraction | None = None
    remaining, atoms = Fraction(notional * UNIT), Fraction(0)
    for price, size in levels:
        take = min(Fraction(size), remaining / price)
        atoms += take
        remaining -= take * price
        if remaining == 0:
            exact = Fraction(notional * UNIT) / atoms
            break
    bid, ask = calc_impact_bid_micro(levels, notional), calc_impact_ask_micro(levels, notional)
    if exact is None:
        assert bid is None and ask is None
        return
    assert bid is not None and ask is not None
    assert bid <= exact < bid + 1 and ask - 1 < exact <= ask


def test_impact_notional_binance_and_dydx() -> None:
    """Binance, "Introduction to Binance Futures Funding Rates"
    (https://www.binance.com/en/support/faq/360033525031), "Impact Margin Notional": "if the
    maximum leverage of BNBUSDT perpetual contract is 20x, and its corresponding Initial Margin
    Rate is 5%, then the Impact Margin Notional (IMN) is 4,000 USDT (200 USDT / 5%)". (The stored
    copy of Binance's page holds only its introduction; this sentence was read in a verbatim
    reproduction of the FAQ, https://khajehabdollahansari.com/2024/09/24/revolutionize-your-contract-with-these-easy-peasy-tips.)

    dYdX, "Funding Rates on dYdX Chain"
    (https://help.dydx.trade/en/articles/166992-default-funding-rates-on-dydx-chain): "Impact
    Notional Amount = 500 USDC / Initial Margin Fraction. For example, at a 10% initial margin
    fraction, the impact notional value is 5,000 USDC."
    """
    assert calc_impact_notional_micro(200 * USDC, 50_000) == 4_000 * USDC
    assert calc_impact_notional_micro(500 * USDC, 100_000) == 5_000 * USDC


# --- premium and rate ------------------------------------------------------------------------------


def test_premium_formula() -> None:
    assert calc_premium_ppb(INDEX + 100 * USDC, INDEX + 200 * USDC, INDEX) == 1_000_000  # +0.1%
    assert calc_premium_ppb(INDEX - 200 * USDC, INDEX - 100 * USDC, INDEX) == -1_000_000  # -0.1%
    assert calc_premium_ppb(INDEX - 10 * USDC, INDEX + 10 * USDC, INDEX) == 0  # index inside: 0
    assert calc_premium_ppb(None, None, INDEX) == 0  # a book too thin on both sides says nothing
    assert calc_premium_ppb(INDEX + 100 * USDC, None, INDEX) == 1_000_000
    # truncated toward zero both ways: 1 micro-USDC over 3 USDC = 333.33 ppb
    assert calc_premium_ppb(3 * USDC + 1, None, 3 * USDC) == 333
    assert calc_premium_ppb(None, 3 * USDC - 1, 3 * USDC) == -333


def test_hyperliquid_funding_example() -> None:
    """Hyperliquid funding, "Example Calculation" (community docs:
    https://hyperliquid-co.gitbook.io/community-docs/architecture/hypercore/dex/clearinghouse/funding;
    the same numbers at https://www.cortex-vigil.com/wiki/funding-rates, taken from Hyperliquid's
    docs https://hyperliquid.gitbook.io/hyperliquid-docs/trading/funding): interest rate 0.01%,
    impact bid $10,100, oracle (spot) $10,000 -> premium (10,100 - 10,000) / 10,000 = 1%;
    clamp(0.01% - 1%, -0.05%, 0.05%) = -0.05%; funding rate 1% - 0.05% = 0.95% (8 h), paid
    hourly at one eighth. The example gives no impact ask; any ask at or above the index gives
    the same premium."""
    premium = calc_premium_ppb(10_100 * USDC, 10_100 * USDC, 10_000 * USDC)
    assert premium == 1 * PCT
    rate = calc_funding_rate([premium], WIDE_CAP)
    assert rate.clamped_ppb == -500_000  # -0.05%
    assert rate.rate_period_ppb == 9_500_000  # 0.95%
    assert rate.rate_interval_ppb == 1_187_500  # 0.11875% an hour


def test_bybit_interest_and_clamp() -> None:
    """Bybit, "What is funding rate and predicted rate"
    (https://help.bybit.com/hc/en-us/articles/360039261114-What-is-funding-rate-and-predicted-rate-),
    "Interest Rate (I)": "Interest Quote Index = 0.06%, Interest Base Index = 0.03% ... The
    Interest Rate = (0.06%-0.03%)/3 = 0.01%"; and "Introduction to Funding Rate"
    (https://bybit.com/fil-PH/help-center/s/article/What-is-funding-rate-and-predicted-rate):
    "if (I - P) is within +/-0.05%, then F = P + (I - P) = I"."""
    assert calc_interest_ppb(600_000, 300_000, 3) == 100_000
    for premium in (-400_000, 0, 250_000, 600_000):  # |I - P| <= 0.05%
        assert calc_funding_rate([premium], WIDE_CAP).rate_period_ppb == 100_000


def test_bybit_linear_weights() -> None:
    """Bybit (same page): "the Average Premium Index (P) is calculated using the formula:
    (Premium Index_1 * 1 + Premium Index_2 * 2 +... + Premium Index_480 * 480)/(1 + 2 +... + 480)"."""
    samples = [(-1) ** i * i * 1_000 for i in range(1, 481)]
    expected = Fraction(sum(i * p for i, p in enumerate(samples, 1)), 480 * 481 // 2)
    mean = calc_mean_premium_ppb(samples, PremiumWeighting.LINEAR)
    assert mean == int(expected)  # truncated toward zero
    assert calc_mean_premium_ppb([], PremiumWeighting.LINEAR) == 0


def test_bitmex_interest_and_payment() -> None:
    """BitMEX, "Perpetual Contracts Guide Examples" (https://www.bitmex.com/app/perpetualContractsGuideExamples),
    "Long XBTUSD Perpetual Contract Example", Day 1 12:00 UTC: "Funding Quote Rate = 1.00% per
    day, Funding Base Rate = 0.25% per day, Funding Rate = (1.00% - 0.25%) / 3 = 0.25%, Funding
    Amount = Mark Value * Funding Rate = 20 XBT * 0.25% = 0.05 XBT ... since he is long the trader
    pays and his counterparty who is short receives 0.05 XBT." The example leaves out the
    premium and the clamp ("The following examples do not consider Premium") and XBTUSD is an
    inverse contract: we reproduce its interest arithmetic and the payment on the 20-unit mark
    value (20 units at a price of 1)."""
    rate_ppb = calc_interest_ppb(10_000_000, 2_500_000, 3)
    assert rate_ppb == 2_500_000  # 0.25%
    long_pays, short_receives = calc_funding_payments(
        [(ALICE, 20 * UNIT), (BOB, -20 * UNIT)], 1 * USDC, rate_ppb
    )
    assert long_pays.amount_micro == 50_000  # 0.05
    assert short_receives.amount_micro == -50_000


def test_dydx_rounding_example_sums_to_zero_here() -> None:
    """dYdX v4, ``GetSettlementPpm`` (https://github.com/dydxprotocol/v4-chain/blob/main/protocol/x/perpetuals/keeper/perpetual.go),
    comment: "accounts A, B are to receive 102.5 quote quantums; account C is to pay 205 quote
    quantums. After settlement, accounts A, B are credited 102 quote quantum each; account C is
    debited 205" (one quantum disappears). Under our rule C pays 205 and A, B share it: 103 to
    the first in account order, 102 to the other; the sum is zero."""
    carol, alice, bob = calc_funding_payments(
        [(CAROL, 2 * UNIT), (ALICE, -1 * UNIT), (BOB, -1 * UNIT)], 102_500_000, 1_000
    )
    assert (
        carol.exact_raw == 205 * PAYMENT_SCALE
        and alice.exact_raw == -102 * PAYMENT_SCALE - PAYMENT_SCALE // 2
    )
    assert (carol.amount_micro, alice.amount_micro, bob.amount_micro) == (205, -103, -102)


rates = st.integers(-5 * PCT, 5 * PCT)


@given(
    st.lists(st.integers(-(10**8), 10**8), max_size=50),
    st.integers(-(10**8), 10**8),
    st.sampled_from(list(PremiumWeighting)),
)
def test_clamp_and_cap(samples: list[int], interest: int, weighting: PremiumWeighting) -> None:
    config = FundingConfig(cap_ppb=2 * PCT, interest_ppb=interest, weighting=weighting)
    rate = calc_funding_rate(samples, config)
    assert abs(rate.uncapped_ppb - rate.mean_premium_ppb) <= 500_000
    if abs(interest - rate.mean_premium_ppb) <= 500_000:
        assert rate.uncapped_ppb == interest
    assert abs(rate.rate_period_ppb) <= 2 * PCT
    assert rate.capped == (abs(rate.uncapped_ppb) > 2 * PCT)
    assert rate.rate_interval_ppb == int(Fraction(rate.rate_period_ppb, 8))  # toward zero
    assert calc_predicted_funding_rate(samples, config) == rate


def test_cap_tied_to_margin() -> None:
    """0.75 x a 3% maintenance fraction = 2.25% per 8 h; the rate stops there."""
    cap = calc_cap_ppb_from_margin(30_000, 750_000)
    assert cap == 22_500_000
    rate = calc_funding_rate([10 * PCT], FundingConfig(cap_ppb=cap))
    assert rate.rate_period_ppb == cap and rate.capped
    assert calc_funding_rate([-10 * PCT], FundingConfig(cap_ppb=cap)).rate_period_ppb == -cap


def test_no_samples_predicts_the_interest_rate() -> None:
    assert calc_predicted_funding_rate([], FundingConfig(cap_ppb=PCT)).rate_period_ppb == 100_000


@given(st.integers(1, 10**4), st.integers(1, 10**4), st.integers(1, 50))
def test_longs_pay_when_the_perp_trades_above_the_index(above_usdc: int, spread_usdc: int, n: int) -> None:
    bid = INDEX + above_usdc * USDC
    premium = calc_premium_ppb(bid, bid + spread_usdc * USDC, INDEX)
    assert premium > 0
    rate = calc_funding_rate([premium] * n, FundingConfig(cap_ppb=4 * PCT))
    assert rate.rate_period_ppb > 0 and rate.rate_interval_ppb > 0
    long_, short = calc_funding_payments([(ALICE, 3 * UNIT), (BOB, -3 * UNIT)], INDEX, rate.rate_interval_ppb)
    assert long_.amount_micro > 0 > short.amount_micro


@given(st.integers(61, 10**4), st.integers(1, 50))
def test_shorts_pay_when_the_perp_trades_below_the_index_by_more_than_the_clamp(
    below_usdc: int, n: int
) -> None:
    ask = INDEX - below_usdc * USDC  # more than 0.06% below: past the 0.05% clamp and the 0.01% interest
    premium = calc_premium_ppb(ask - 5 * USDC, ask, INDEX)
    rate = calc_funding_rate([premium] * n, FundingConfig(cap_ppb=4 * PCT))
    assert rate.rate_period_ppb < 0
    long_, short = calc_funding_payments([(ALICE, 3 * UNIT), (BOB, -3 * UNIT)], INDEX, rate.rate_period_ppb)
    assert long_.amount_micro < 0 < short.amount_micro


# --- payments ----------------------------------------------------------------------------------------


@st.composite
def populations(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Accounts with longs and shorts that net to zero, sizes from 1 atom to 10,000 units."""
    longs = draw(st.lists(st.integers(1, 10**12), min_size=1, max_size=30))
    shorts = draw(st.lists(st.integers(1, 10**12), min_size=1, max_size=30))
    diff = sum(longs) - sum(shorts)
    if diff > 0:
        shorts.append(diff)
    elif diff < 0:
        longs.append(-diff)
    sizes = longs + [-s for s in shorts] + draw(st.lists(st.just(0), max_size=2))
    order = draw(st.permutations(sizes))
    return [(account, size) for account, size in enumerate(order, start=1)]


@given(populations(), st.integers(0, 10**12), rates)
def test_payments_sum_to_exactly_zero(positions: list[tuple[int, int]], price: int, rate: int) -> None:
    payments = calc_funding_payments(positions, price, rate)
    assert sum(p.amount_micro for p in payments) == 0
    for (account, size), payment in zip(positions, payments, strict=True):
        assert (payment.account_id, payment.size_atoms) == (account, size)
        exact = Fraction(size * price * rate, PAYMENT_SCALE)
        if exact > 0:  # a payer: its exact amount rounded up, never more
            assert payment.amount_micro == -((-size * price * rate) // PAYMENT_SCALE)
        elif exact < 0:  # a receiver: at least its exact amount rounded down
            assert -payment.amount_micro >= int(-exact)
        else:
            assert payment.amount_micro == 0
        if rate > 0 and price > 0:
            assert payment.amount_micro > 0 if size > 0 else payment.amount_micro <= 0  # longs pay


@given(populations(), st.integers(1, 10**12), rates)
def test_receivers_share_the_payers_total_pro_rata_with_largest_remainder(
    positions: list[tuple[int, int]], price: int, rate: int
) -> None:
    assume(rate != 0)
    payments = calc_funding_payments(positions, price, rate)
    total = sum(p.amount_micro for p in payments if p.exact_raw > 0)
    weights = [-p.exact_raw for p in payments if p.exact_raw < 0]
    received = [-p.amount_micro for p in payments if p.exact_raw < 0]
    for weight, got in zip(weights, received, strict=True):
        share = Fraction(total * weight, sum(weights))
        assert int(share) <= got <= int(share) + 1  # floor, or floor + 1 for the leftover


@st.composite
def wide_populations(draw: st.DrawFn) -> list[int]:
    """Sizes netting to zero, from one atom to past the vectorised range (2^50 atoms), with ties
    (equal sizes: equal remainders, so the input order decides) and zeros."""
    top = draw(st.sampled_from([10, 10**6, 10**12, 2**49, 2**51]))
    sizes = draw(st.lists(st.integers(-top, top), min_size=1, max_size=40))
    sizes += draw(st.lists(st.sampled_from(sizes), max_size=10))
    sizes.append(-sum(sizes))
    return list(draw(st.permutations(sizes)))


@given(
    wide_populations(),
    st.one_of(st.integers(0, 10**13), st.sampled_from([1, 10**6, 10**11, 2**62])),
    st.one_of(rates, st.sampled_from([1, -1, 12_500, -12_500, 10**9, -(10**9)])),
)
def test_the_vectorised_amounts_are_the_payments_amounts(sizes: list[int], price: int, rate: int) -> None:
    """``calc_funding_amounts`` (float-guided, exact in int64) against the Python integers of
    ``calc_funding_payments``: the same amount for every position, or None outside its range."""
    expected = [p.amount_micro for p in calc_funding_payments(list(enumerate(sizes)), price, rate)]
    if max(map(abs, sizes)) >= 2**63:
        return
    got = calc_funding_amounts(np.array(sizes, np.int64), price, rate)
    if got is None:  # only outside the range it covers (sizes in units of their gcd)
        g = math.gcd(*sizes)
        top = max(abs(s) // g for s in sizes)
        assert top >= 2**50 or top * len(sizes) * abs(price * rate * g) // PAYMENT_SCALE >= 2**60
        return
    assert got.tolist() == expected


def test_the_vectorised_amounts_cover_a_large_population_and_refuse_past_their_range() -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(-(10**11), 10**11, 20_000)
    sizes = np.append(sizes, -sizes.sum())
    price, rate = 63_123_456_789, 12_345
    expected = [p.amount_micro for p in calc_funding_payments(list(enumerate(sizes.tolist())), price, rate)]
    got = calc_funding_amounts(sizes, price, rate)
    assert got is not None and got.tolist() == expected
    assert calc_funding_amounts(np.array([2**50 + 1, -(2**50 + 2), 1], np.int64), price, rate) is None
    whales = np.array([185 * 10**15, -(10**17), -(85 * 10**15), 3 * 10**8, -(3 * 10**8)], np.int64)  # DOGE
    expected = [
        p.amount_micro for p in calc_funding_payments(list(enumerate(whales.tolist())), 229_520, rate)
    ]
    assert calc_funding_amounts(whales, 229_520, rate).tolist() == expected  # (in units of their gcd)
    # a product one unit below a multiple of 1e17: float64 rounds the quotient up to the whole
    # number, and the exact remainder (-1) moves it back down
    size = 10**12 + 3
    k = -pow(size, -1, PAYMENT_SCALE) % PAYMENT_SCALE  # size * k == -1 (mod 1e17)
    exact = -((-size * k) // PAYMENT_SCALE)
    assert float(size) * (k / PAYMENT_SCALE) >= exact  # (the float estimate is one too many)
    # and a product exactly a multiple (375 x 0.072 = 27), which float64 puts just below it
    size_down, k_down = 375, 72 * 10**14
    assert float(size_down) * (k_down / PAYMENT_SCALE) < size_down * k_down // PAYMENT_SCALE
    for sizes, k_ in (([size, -size], k), ([size, -1, -(size - 1)], k), ([size_down, -size_down], k_down)):
        expected = [p.amount_micro for p in calc_funding_payments(list(enumerate(sizes)), k_, 1)]
        assert calc_funding_amounts(np.array(sizes, np.int64), k_, 1).tolist() == expected
    assert calc_funding_payments([(0, size), (1, -size)], k, 1)[0].amount_micro == exact
    assert calc_funding_amounts(np.array([5, -5], np.int64), price, 0).tolist() == [0, 0]


def test_payments_are_deterministic_and_reject_unbalanced_positions() -> None:
    positions = [(ALICE, 7), (BOB, -3), (CAROL, -4)]
    assert calc_funding_payments(positions, 12_345, 777) == calc_funding_payments(positions, 12_345, 777)
    with pytest.raises(ValueError):
        calc_funding_payments([(ALICE, 1), (BOB, -2)], INDEX, 1_000)
    assert all(p.amount_micro == 0 for p in calc_funding_payments(positions, INDEX, 0))
