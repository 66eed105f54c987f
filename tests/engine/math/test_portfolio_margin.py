"""engine.math.portfolio_margin: the reference's worked cases and properties, and the vectorised
recompute held to the reference (differential, hypothesis)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from risk_constants import (
    AAPL,
    ALICE_10K_USDC,
    BOB_1_BTC,
    BTC,
    BTC_PERP,
    CAROL_1_BTC_SHORT_PERP,
    DAVE_LONG_BTC_PERP,
    ETH,
    ETH_PERP,
    PM1,
    PRICES,
    SPEC,
    STRESS_SPEC,
    A,
    M,
    account,
    at_mark,
    market_prices,
    portfolio_states,
)

from engine.math.portfolio_margin import (
    SAFETY_ABS_MICRO,
    SAFETY_REL,
    AccountState,
    MarketPrices,
    PortfolioLayout,
    calc_equity_exact,
    calc_group_mixed,
    calc_mm_micro,
    calc_portfolio_margin,
    calc_portfolio_margin_arrays,
)
from engine.types.fixed import PPM
from engine.types.risk_spec import RiskSpec

SETTINGS = settings(max_examples=120, deadline=None)


# ---- worked cases on the default spec (BTC 60,000: weight 0.95, shock 5%, floor 1%, MM 60%) ----------


def test_cash_only_needs_no_margin() -> None:
    r = calc_portfolio_margin(SPEC, ALICE_10K_USDC, PRICES)
    assert (r.equity_micro, r.im_micro, r.mm_micro, r.free_micro) == (10_000 * M, 0, 0, 10_000 * M)


def test_one_btc_collateral() -> None:
    r = calc_portfolio_margin(SPEC, BOB_1_BTC, PRICES)
    assert r.equity_micro == 57_000 * M  # 1 BTC at 60,000, weight 0.95
    assert r.exposure_micro[BTC] == 57_000 * M
    assert r.scenario_pnl_micro["crypto_majors:down"] == -2_850 * M  # 5% of the weighted value
    assert r.scenario_pnl_micro["crypto_majors:BTC:down"] == -1_425 * M  # idio 50%
    assert r.scenario_pnl_micro["crypto_majors:vol_up:down"] == -2_565 * M  # 0.3 x (3 x 5%) x 57,000
    assert r.group_loss_micro == {"crypto_majors": 2_850 * M, "us_equities": 0, "pm_1": 0}
    assert (r.im_micro, r.mm_micro, r.free_micro) == (2_850 * M, 1_710 * M, 54_150 * M)


def test_short_perp_hedges_collateral_long_perp_doubles_it() -> None:
    """The issue's "long BTC perp against BTC collateral is nearly riskless" is wrong: the hedge is short."""
    hedged = calc_portfolio_margin(SPEC, CAROL_1_BTC_SHORT_PERP, PRICES)
    assert hedged.exposure_micro[BTC] == -3_000 * M  # 57,000 weighted spot - 60,000 perp
    assert hedged.im_raw_micro == 150 * M
    assert hedged.floor_micro == 600 * M  # 1% of the perp's gross notional
    assert hedged.im_micro == 600 * M
    doubled = account(btc=1 * A, btc_perp=at_mark(1 * A, 60_000 * M))
    r = calc_portfolio_margin(SPEC, doubled, PRICES)
    assert r.exposure_micro[BTC] == 117_000 * M and r.im_micro == 5_850 * M
    assert calc_portfolio_margin(SPEC, BOB_1_BTC, PRICES).im_micro == 2_850 * M


def test_yes_plus_no_is_fully_covered_and_a_short_yes_risks_resolution_to_one() -> None:
    flat = account(usdc=1_000 * M, pm1=0)
    assert calc_portfolio_margin(SPEC, flat, PRICES).im_micro == 0
    short = account(usdc=1_000 * M, pm1=-100 * A)  # NO side: short 100 YES at 0.42
    r = calc_portfolio_margin(SPEC, short, PRICES)
    assert r.equity_micro == 958 * M
    assert r.scenario_pnl_micro["pm_1:resolve_1"] == -58 * M
    assert r.scenario_pnl_micro["pm_1:resolve_0"] == 42 * M
    assert r.im_micro == 58 * M
    long = calc_portfolio_margin(SPEC, account(usdc=1_000 * M, pm1=100 * A), PRICES)
    assert long.im_micro == 42 * M and long.equity_micro == 1_042 * M  # cannot borrow against YES


def test_long_perp_on_usdc() -> None:
    r = calc_portfolio_margin(SPEC, DAVE_LONG_BTC_PERP, PRICES)
    assert r.equity_micro == 10_000 * M and r.im_micro == 3_000 * M and r.mm_micro == 1_800 * M


def test_cross_group_offset() -> None:
    state = account(usdc=100_000 * M, btc_perp=at_mark(1 * A, 60_000 * M), aapl=100 * A)
    r = calc_portfolio_margin(SPEC, state, PRICES)
    crypto, equities = r.group_loss_micro["crypto_majors"], r.group_loss_micro["us_equities"]
    assert (crypto, equities) == (3_000 * M, 1_700 * M)  # AAPL: 100 x 200 x 0.85 x 10%
    assert r.im_raw_micro == 3_000 * M + 1_700 * M - (1_700 * M) // 5  # offset 20% of all but the largest


def test_tiers_and_multiplier_raise_the_shock() -> None:
    big = account(usdc=10**13, btc_perp=at_mark(200 * A, 60_000 * M))  # 12M notional: 5% then 7.5%
    r = calc_portfolio_margin(SPEC, big, PRICES)
    assert r.shock_micro[BTC] == 5_000_000 * M * 5 // 100 + 7_000_000 * M * 75 // 1000
    doubled = dataclasses.replace(PRICES, shock_multiplier_ppm=(PPM, 2 * PPM, PPM, PPM, PPM))
    assert calc_portfolio_margin(SPEC, big, doubled).shock_micro[BTC] == 2 * r.shock_micro[BTC]


def test_shape_and_price_checks() -> None:
    with pytest.raises(ValueError, match="assets"):
        calc_portfolio_margin(SPEC, AccountState((0,), (0, 0), (0, 0)), PRICES)
    with pytest.raises(ValueError, match="perp"):
        calc_portfolio_margin(SPEC, AccountState((0,) * 5, (0,), (0,)), PRICES)
    bad = dataclasses.replace(PRICES, asset_price_micro=(M, 1, 1, 1, 2 * M))
    with pytest.raises(ValueError, match="PM-1"):
        calc_portfolio_margin(SPEC, ALICE_10K_USDC, bad)
    with pytest.raises(ValueError, match="USDC"):
        calc_portfolio_margin(
            SPEC, ALICE_10K_USDC, dataclasses.replace(PRICES, asset_price_micro=(2, 1, 1, 1, 1))
        )
    with pytest.raises(ValueError, match="multiplier"):
        calc_portfolio_margin(
            SPEC, ALICE_10K_USDC, dataclasses.replace(PRICES, shock_multiplier_ppm=(0,) * 5)
        )


# ---- properties of the reference -------------------------------------------------------------------


@SETTINGS
@given(portfolio_states(), market_prices())
def test_rounding_is_against_the_account(state: AccountState, prices: MarketPrices) -> None:
    r = calc_portfolio_margin(SPEC, state, prices)
    exact_equity = calc_equity_exact(SPEC, state, prices)
    assert exact_equity - 1 < r.equity_micro <= exact_equity
    assert r.im_micro >= r.im_raw_micro - 1 and r.im_micro >= r.floor_micro
    assert r.im_micro == max(r.im_raw_micro, r.floor_micro) or r.im_micro + 1 == max(
        r.im_raw_micro, r.floor_micro
    )
    assert r.mm_micro == calc_mm_micro(r.im_micro, SPEC.params.mm_fraction_ppm)
    assert r.mm_micro * PPM >= r.im_micro * SPEC.params.mm_fraction_ppm
    assert r.free_micro == r.equity_micro - r.im_micro - state.reserved_micro
    for name, loss in r.group_loss_micro.items():
        worst = min(v for k, v in r.scenario_pnl_micro.items() if k.startswith(name + ":"))
        assert loss >= max(0, -worst) - 1


@st.composite
def directional_states(draw: st.DrawFn) -> AccountState:
    """Accounts whose crypto group is one-directional (every BTC/ETH holding and perp has one
    sign), anything in the other groups: then no trade in the group is part hedge, part risk."""
    sign = draw(st.sampled_from([1, -1]))
    units = st.integers(0, 2_000 * A)
    btc, eth, btc_perp, eth_perp = (sign * draw(units) for _ in range(4))
    btc_cost = btc_perp * 3_000 * M // A + draw(st.integers(-(10**10), 10**10))
    eth_cost = eth_perp * 3_000 * M // A + draw(st.integers(-(10**10), 10**10))
    other = st.integers(-2_000 * A, 2_000 * A)
    return account(
        usdc=draw(st.integers(-(10**12), 10**13)),
        btc=btc,
        eth=eth,
        aapl=draw(other),
        pm1=draw(other),
        btc_perp=(btc_perp, btc_cost),
        eth_perp=(eth_perp, eth_cost),
    )


def _direction(state: AccountState) -> int:
    values = [*state.balance[BTC : ETH + 1], *state.perp_size_atoms]
    return 1 if any(v > 0 for v in values) else -1


@SETTINGS
@given(directional_states(), market_prices(), st.sampled_from([BTC_PERP, ETH_PERP]), st.integers(1, 500 * A))
def test_margin_never_decreases_when_a_position_grows_in_its_risky_direction(
    state: AccountState, prices: MarketPrices, perp: int, extra: int
) -> None:
    """Growing a perp in its group's direction never lowers IM (a one-directional group: with
    opposite exposure in the group the same trade is partly a hedge, which may lower it)."""
    sizes = list(state.perp_size_atoms)
    sizes[perp] += _direction(state) * extra
    before = calc_portfolio_margin(SPEC, state, prices)
    after = calc_portfolio_margin(SPEC, dataclasses.replace(state, perp_size_atoms=tuple(sizes)), prices)
    assert after.im_micro >= before.im_micro


@SETTINGS
@given(directional_states(), market_prices(), st.sampled_from([BTC, ETH, AAPL, PM1]), st.integers(1, 500 * A))
def test_margin_never_decreases_when_a_spot_holding_grows_in_its_risky_direction(
    state: AccountState, prices: MarketPrices, asset: int, extra: int
) -> None:
    balance = list(state.balance)
    if asset in (BTC, ETH):
        sign = _direction(state)
    else:  # alone in its group: its own sign (a flat holding may grow either way)
        sign = -1 if balance[asset] < 0 else 1
    balance[asset] += sign * extra
    before = calc_portfolio_margin(SPEC, state, prices)
    after = calc_portfolio_margin(SPEC, dataclasses.replace(state, balance=tuple(balance)), prices)
    assert after.im_micro >= before.im_micro


@SETTINGS
@given(directional_states(), market_prices(), st.sampled_from([BTC_PERP, ETH_PERP]), st.integers(1, PPM))
def test_a_hedge_never_raises_margin(
    state: AccountState, prices: MarketPrices, perp: int, fraction_ppm: int
) -> None:
    """Reducing a perp toward zero (not beyond) in a one-directional group never raises IM."""
    size = state.perp_size_atoms[perp]
    assume(size != 0)
    cut = max(1, abs(size) * fraction_ppm // PPM)
    sizes = list(state.perp_size_atoms)
    sizes[perp] += -cut if size > 0 else cut
    before = calc_portfolio_margin(SPEC, state, prices)
    after = calc_portfolio_margin(SPEC, dataclasses.replace(state, perp_size_atoms=tuple(sizes)), prices)
    assert after.im_micro <= before.im_micro


@SETTINGS
@given(st.integers(1, 10_000 * A), st.integers(0, PPM), st.integers(1_000 * M, 200_000 * M))
def test_short_perp_against_spot_never_raises_margin(qty: int, hedge_ppm: int, price: int) -> None:
    """The real hedge: any short perp up to the weighted spot quantity lowers (or keeps) IM."""
    prices = dataclasses.replace(
        PRICES, asset_price_micro=(M, price, 3_000 * M, 200 * M, 420_000), mark_micro=(price, 3_000 * M)
    )
    spot = account(btc=qty)
    weighted = calc_portfolio_margin(SPEC, spot, prices).exposure_micro[BTC] * A // price
    short = weighted * hedge_ppm // PPM
    hedged = account(btc=qty, btc_perp=at_mark(-short, price)) if short else spot
    assert (
        calc_portfolio_margin(SPEC, hedged, prices).im_micro
        <= calc_portfolio_margin(SPEC, spot, prices).im_micro
    )


perp_sizes = st.integers(-2_000 * A, 2_000 * A)


@SETTINGS
@given(perp_sizes, perp_sizes, st.integers(10**12, 10**14))
def test_netting_is_symmetric(btc: int, eth: int, usdc: int) -> None:
    """Long A short B margins as short A long B mirrored, and as the same book with the two
    (identically specified) assets swapped, at one price."""
    prices = dataclasses.replace(
        PRICES,
        mark_micro=(3_000 * M, 3_000 * M),
        asset_price_micro=(M, 3_000 * M, 3_000 * M, 200 * M, 420_000),
    )

    def im(b: int, e: int) -> int:
        state = account(usdc=usdc, btc_perp=at_mark(b, 3_000 * M), eth_perp=at_mark(e, 3_000 * M))
        return calc_portfolio_margin(SPEC, state, prices).im_micro

    assert im(btc, eth) == im(-btc, -eth) == im(eth, btc) == im(-eth, -btc)


# ---- vectorised vs reference ----------------------------------------------------------------------


def _arrays(states: list[AccountState]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    balance = np.asfortranarray(np.array([s.balance for s in states], dtype=np.int64))
    sizes = np.asfortranarray(np.array([s.perp_size_atoms for s in states], dtype=np.int64))
    costs = np.asfortranarray(np.array([s.perp_cost_micro for s in states], dtype=np.int64))
    reserved = np.array([s.reserved_micro for s in states], dtype=np.int64)
    return balance, sizes, costs, reserved


def _magnitude(spec: RiskSpec, state: AccountState, prices: MarketPrices) -> float:
    total = abs(sum(state.perp_cost_micro))
    for a, asset in enumerate(spec.assets):
        total += 2 * abs(state.balance[a]) * prices.asset_price_micro[a] / asset.qty_scale
    for p in range(len(spec.perps)):
        total += abs(state.perp_size_atoms[p]) * prices.mark_micro[p] / A
    return float(total)


def _check_against_reference(spec: RiskSpec, states: list[AccountState], prices: MarketPrices) -> None:
    layout = PortfolioLayout(spec)
    balance, sizes, costs, reserved = _arrays(states)
    got = calc_portfolio_margin_arrays(
        layout,
        balance,
        sizes,
        costs,
        np.array(prices.asset_price_micro),
        np.array(prices.mark_micro),
        np.array(prices.shock_multiplier_ppm),
        reserved,
    ).copy()
    growth = (1 + spec.params.vol_up_multiple_ppm / PPM) * max(prices.shock_multiplier_ppm) / PPM
    for i, state in enumerate(states):
        ref = calc_portfolio_margin(spec, state, prices)
        # the recompute's margin: 2e-12 x growth x its magnitude, which bounds |E_a| by
        # shock / first-tier rate (up to the tiers' rate ratio, 3x in the stress spec) - hence 20x
        tolerance = 20 * SAFETY_REL * growth * _magnitude(spec, state, prices) + 2 * SAFETY_ABS_MICRO + 2
        assert ref.equity_micro - tolerance <= got.equity_micro[i] <= ref.equity_micro  # equity down
        assert ref.im_micro <= got.im_micro[i] <= ref.im_micro + tolerance  # margin up
        assert got.mm_micro[i] == calc_mm_micro(int(got.im_micro[i]), spec.params.mm_fraction_ppm)
        assert got.mm_micro[i] >= ref.mm_micro
        assert got.free_micro[i] == got.equity_micro[i] - got.im_micro[i] - state.reserved_micro
        expo = got.exposure_micro[i]
        for a in range(1, len(spec.assets)):
            assert abs(expo[a] - ref.exposure_micro[a]) <= tolerance
        near_zero = any(abs(ref.exposure_micro[a]) <= tolerance for a in range(1, len(spec.assets)))
        for a in range(1, len(spec.assets)):
            assert near_zero or calc_group_mixed(spec, expo, a) == calc_group_mixed(
                spec, ref.exposure_micro, a
            )


@settings(max_examples=80, deadline=None)
@given(st.lists(portfolio_states(), min_size=1, max_size=12), market_prices())
def test_vectorised_matches_reference_default_spec(states: list[AccountState], prices: MarketPrices) -> None:
    _check_against_reference(SPEC, states, prices)


@settings(max_examples=80, deadline=None)
@given(st.lists(portfolio_states(STRESS_SPEC), min_size=1, max_size=12), market_prices(STRESS_SPEC))
def test_vectorised_matches_reference_stress_spec(states: list[AccountState], prices: MarketPrices) -> None:
    _check_against_reference(STRESS_SPEC, states, prices)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(portfolio_states(STRESS_SPEC, max_units=10**6), min_size=1, max_size=6),
    market_prices(STRESS_SPEC),
)
def test_vectorised_matches_reference_with_whales(states: list[AccountState], prices: MarketPrices) -> None:
    """Balances up to a million units: every tier, every dense/gather path."""
    _check_against_reference(STRESS_SPEC, states, prices)


def test_subset_rows_equal_the_full_recompute_and_layout_order_does_not_matter() -> None:
    rng = np.random.default_rng(7)
    n = 500
    layout = PortfolioLayout(STRESS_SPEC)
    balance = rng.integers(-(10**11), 10**12, (n, len(STRESS_SPEC.assets)))
    sizes = rng.integers(-(10**11), 10**11, (n, len(STRESS_SPEC.perps)))
    costs = rng.integers(-(10**13), 10**13, (n, len(STRESS_SPEC.perps)))
    reserved = rng.integers(0, 10**9, n)
    prices = np.array([M, 60_000 * M, 3_000 * M, 200 * M, 420_000, 150 * M])
    marks = np.array([60_000 * M, 3_000 * M, 60_100 * M, 150 * M])
    mults = np.array([PPM, PPM, 2 * PPM, PPM, PPM, PPM])
    full = calc_portfolio_margin_arrays(layout, balance, sizes, costs, prices, marks, mults, reserved).copy()
    fortran = calc_portfolio_margin_arrays(
        layout,
        np.asfortranarray(balance),
        np.asfortranarray(sizes),
        None,
        prices,
        marks,
        mults,
        reserved,
        perp_cost_total_micro=costs.sum(axis=1),
    ).copy()
    rows = np.array([3, 499, 0, 250, 3])
    subset = calc_portfolio_margin_arrays(
        layout, balance, sizes, costs, prices, marks, mults, reserved, rows=rows
    )
    for name in ("equity_micro", "im_micro", "mm_micro", "free_micro", "exposure_micro"):
        np.testing.assert_array_equal(getattr(full, name), getattr(fortran, name))
        np.testing.assert_array_equal(getattr(full, name)[rows], getattr(subset, name))


def test_empty_batch_and_overflow_guard() -> None:
    layout = PortfolioLayout(SPEC)
    prices, marks, mults = (
        np.array(PRICES.asset_price_micro),
        np.array(PRICES.mark_micro),
        np.array(PRICES.shock_multiplier_ppm),
    )
    empty = calc_portfolio_margin_arrays(
        layout,
        np.zeros((0, 5), np.int64),
        np.zeros((0, 2), np.int64),
        np.zeros((0, 2), np.int64),
        prices,
        marks,
        mults,
    )
    assert empty.equity_micro.shape == (0,)
    huge = np.array([[2**62, 2**62, 0, 0, 0]], dtype=np.int64)
    with pytest.raises(OverflowError):
        calc_portfolio_margin_arrays(
            layout, huge, np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64), prices, marks, mults
        )
