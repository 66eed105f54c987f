"""engine.math.pre_trade: the reserve bounds the real impact of any fill within the limit."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from risk_constants import (
    BOB_1_BTC,
    BTC,
    BTC_PERP,
    DAVE_LONG_BTC_PERP,
    PRICES,
    SPEC,
    STRESS_SPEC,
    A,
    M,
    market_prices,
    portfolio_states,
)

from engine.math.fees import calc_fee_micro
from engine.math.portfolio_margin import AccountState, MarketPrices, calc_group_mixed, calc_portfolio_margin
from engine.math.position import apply_fill
from engine.math.pre_trade import (
    BUY,
    SELL,
    OrderImpact,
    calc_order_impact,
    calc_order_impact_exact,
    is_reduce_only_ok,
)
from engine.types.risk_spec import AssetKind, RiskSpec


def _impact(
    spec: RiskSpec,
    state: AccountState,
    prices: MarketPrices,
    asset: int,
    perp: int | None,
    side: int,
    qty: int,
    limit: int,
    lot: int = 1,
) -> OrderImpact:
    report = calc_portfolio_margin(spec, state, prices)
    return calc_order_impact(
        spec,
        asset_id=asset,
        perp_id=perp,
        side=side,
        qty_atoms=qty,
        limit_price_micro=limit,
        price_micro=prices.mark_micro[perp] if perp is not None else prices.asset_price_micro[asset],
        exposure_micro=report.exposure_micro[asset],
        group_mixed=calc_group_mixed(spec, report.exposure_micro, asset),
        balance_atoms=state.balance[asset],
        perp_size_atoms=state.perp_size_atoms[perp] if perp is not None else 0,
        shock_multiplier_ppm=prices.shock_multiplier_ppm[asset],
        lot_atoms=lot,
    )


def _fill(
    spec: RiskSpec,
    state: AccountState,
    asset: int,
    perp: int | None,
    side: int,
    qty: int,
    price: int,
    maker: bool,
) -> AccountState:
    """Apply one fill as the risk process will: balances, perp position, fee in USDC."""
    notional = qty * price // A
    if perp is not None:
        fee = calc_fee_micro(
            notional, spec.perps[perp].fees.maker_ppm if maker else spec.perps[perp].fees.taker_ppm
        )
        step = apply_fill(state.perp_size_atoms[perp], state.perp_cost_micro[perp], side * qty, notional)
        sizes = list(state.perp_size_atoms)
        costs = list(state.perp_cost_micro)
        sizes[perp], costs[perp] = step.size_atoms, step.cost_micro
        balance = list(state.balance)
        balance[0] += step.realised_micro - fee
        return dataclasses.replace(
            state, balance=tuple(balance), perp_size_atoms=tuple(sizes), perp_cost_micro=tuple(costs)
        )
    rates = spec.assets[asset].spot_fees
    fee = calc_fee_micro(notional, rates.maker_ppm if maker else rates.taker_ppm)
    balance = list(state.balance)
    balance[asset] += side * qty
    balance[0] -= side * notional + fee
    return dataclasses.replace(state, balance=tuple(balance))


@st.composite
def orders_and_fills(draw: st.DrawFn, spec: RiskSpec) -> tuple[object, ...]:
    state = draw(portfolio_states(spec))
    prices = draw(market_prices(spec))
    if draw(st.booleans()) and spec.perps:
        perp = draw(st.integers(0, len(spec.perps) - 1))
        asset = spec.perps[perp].underlying
        price = prices.mark_micro[perp]
    else:
        perp = None
        asset = draw(st.sampled_from([a.asset_id for a in spec.assets if a.kind != AssetKind.CASH]))
        price = prices.asset_price_micro[asset]
    side = draw(st.sampled_from([BUY, SELL]))
    lot = draw(st.sampled_from([1, 10_000, 1_000_000]))
    qty = lot * draw(st.integers(1, 2_000 * A // lot))
    limit = max(1, price * draw(st.integers(500, 1_500)) // 1_000)
    if spec.assets[asset].kind == AssetKind.PREDICTION:
        limit = min(limit, M)
    # fills: 1..3 pieces of whole lots (at most the order), each at a price within the limit
    pieces = []
    left = qty // lot
    for _ in range(draw(st.integers(1, 3))):
        if left == 0:
            break
        n = draw(st.integers(1, left))
        left -= n
        fill_price = draw(st.integers(1, limit)) if side == BUY else draw(st.integers(limit, 2 * limit))
        pieces.append((n * lot, fill_price, draw(st.booleans())))
    return state, prices, asset, perp, side, qty, limit, lot, pieces


def _check(spec: RiskSpec, case: tuple[object, ...]) -> None:
    state, prices, asset, perp, side, qty, limit, lot, pieces = case
    assert isinstance(state, AccountState) and isinstance(prices, MarketPrices)
    impact = _impact(spec, state, prices, asset, perp, side, qty, limit, lot)  # type: ignore[arg-type]
    before = calc_portfolio_margin(spec, state, prices).free_micro
    after_state = state
    for fill_qty, fill_price, maker in pieces:  # type: ignore[attr-defined]
        after_state = _fill(spec, after_state, asset, perp, side, fill_qty, fill_price, maker)  # type: ignore[arg-type]
    after = calc_portfolio_margin(spec, after_state, prices).free_micro
    assert impact.reserve_micro >= 0
    assert after >= before - impact.reserve_micro, (impact, before, after)


@settings(max_examples=400, deadline=None)
@given(orders_and_fills(SPEC))
def test_reserve_bounds_the_real_impact(case: tuple[object, ...]) -> None:
    _check(SPEC, case)


@settings(max_examples=300, deadline=None)
@given(orders_and_fills(STRESS_SPEC))
def test_reserve_bounds_the_real_impact_stress_spec(case: tuple[object, ...]) -> None:
    _check(STRESS_SPEC, case)


def test_reducing_orders_reserve_no_margin() -> None:
    # closing half a long perp at the mark: no margin, only the fee and rounding
    close = _impact(SPEC, DAVE_LONG_BTC_PERP, PRICES, BTC, BTC_PERP, SELL, A // 2, 60_000 * M, lot=10_000)
    assert close.reduces_risk and close.margin_micro == 0
    # fee, < 1 micro per fill (5,000 lots) for the notional and the fee rounding, the slacks
    assert close.reserve_micro == calc_fee_micro(30_000 * M, 500) + 5_000 + 5_000 + 2 + 2
    # selling half the BTC collateral at the price: the released haircut pays the fee: reserve 0
    sell = _impact(SPEC, BOB_1_BTC, PRICES, BTC, None, SELL, A // 2, 60_000 * M)
    assert sell.reduces_risk and sell.reserve_micro == 0
    # the same sale at a limit 10% below the price reserves the worst fill's loss
    cheap = _impact(SPEC, BOB_1_BTC, PRICES, BTC, None, SELL, A // 2, 54_000 * M)
    assert cheap.reserve_micro > 0 and cheap.margin_micro == 0
    # buying more BTC perp: margin at the 5% shock on the added exposure, plus the fee
    grow = _impact(SPEC, DAVE_LONG_BTC_PERP, PRICES, BTC, BTC_PERP, BUY, A, 60_000 * M)
    assert not grow.reduces_risk and grow.margin_micro == 3_000 * M


def test_reduce_only_rule_and_bad_orders() -> None:
    assert is_reduce_only_ok(5, SELL, 5) and not is_reduce_only_ok(5, SELL, 6)
    assert not is_reduce_only_ok(5, BUY, 1) and not is_reduce_only_ok(0, SELL, 1)
    assert is_reduce_only_ok(-5, BUY, 3)
    with pytest.raises(ValueError):
        _impact(SPEC, BOB_1_BTC, PRICES, BTC, None, 0, A, M)
    with pytest.raises(ValueError):
        _impact(SPEC, BOB_1_BTC, PRICES, BTC, None, BUY, 0, M)
    with pytest.raises(ValueError):
        _impact(SPEC, BOB_1_BTC, PRICES, 2, BTC_PERP, BUY, A, M)  # perp 0 is on BTC, not ETH
    with pytest.raises(ValueError):
        _impact(SPEC, BOB_1_BTC, PRICES, 0, None, BUY, A, M)  # USDC against itself


@st.composite
def raw_orders(draw: st.DrawFn, spec: RiskSpec) -> dict[str, object]:
    """Order inputs drawn directly (any exposure, flags and sizes), for the fast/exact twin test."""
    if draw(st.booleans()):
        perp = draw(st.integers(0, len(spec.perps) - 1))
        asset = spec.perps[perp].underlying
    else:
        perp = None
        asset = draw(st.sampled_from([a.asset_id for a in spec.assets if a.kind != AssetKind.CASH]))
    price = draw(st.integers(0, 200_000 * M))
    if spec.assets[asset].kind == AssetKind.PREDICTION:
        price = draw(st.integers(0, M))
    return {
        "asset_id": asset,
        "perp_id": perp,
        "side": draw(st.sampled_from([BUY, SELL])),
        "qty_atoms": draw(st.integers(1, 10_000 * A)),
        "limit_price_micro": draw(st.integers(1, 300_000 * M)),
        "price_micro": price,
        "exposure_micro": draw(st.one_of(st.integers(-(10**14), 10**14), st.floats(-1e14, 1e14))),
        "group_mixed": draw(st.booleans()),
        "balance_atoms": draw(st.integers(-(10**12), 10**12)),
        "perp_size_atoms": draw(st.integers(-(10**12), 10**12)),
        "shock_multiplier_ppm": draw(st.integers(10**6, 5 * 10**6)),
        "lot_atoms": draw(st.sampled_from([None, 1, 100_000])),
    }


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([SPEC, STRESS_SPEC]).flatmap(lambda spec: st.tuples(st.just(spec), raw_orders(spec))))
def test_integer_version_is_the_exact_reference(case: tuple[RiskSpec, dict[str, object]]) -> None:
    """The fast integer bound equals the exact (Fraction) one on integer exposures and never
    undercuts it on float exposures (it rounds the exposure outward)."""
    spec, terms = case
    fast = calc_order_impact(spec, **terms)  # type: ignore[arg-type]
    exact = calc_order_impact_exact(spec, **terms)  # type: ignore[arg-type]
    if isinstance(terms["exposure_micro"], int):
        assert fast == exact
    else:
        assert fast.reserve_micro >= exact.reserve_micro
