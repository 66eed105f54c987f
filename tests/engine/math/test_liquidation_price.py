"""engine.math.liquidation_price: closed form (per-position) and search (portfolio)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from risk_constants import BTC_PERP, ETH_PERP, PRICES, SPEC, A, M, account, at_mark

from engine.math.liquidation_price import (
    calc_portfolio_liquidation_price_micro,
    calc_position_liquidation_price_micro,
)
from engine.math.portfolio_margin import AccountState, MarketPrices, calc_portfolio_margin
from engine.math.position_margin import calc_position_margin
from engine.types.risk_spec import (
    AssetKind,
    AssetRisk,
    PerpRisk,
    PositionBrackets,
    RateTiers,
    RiskGroup,
    RiskSpec,
)

# dYdX's example markets: ETH-USD maintenance fraction 5%, STRK-USD 10% (initial set to 2x: unused)
DYDX = RiskSpec(
    assets=(
        AssetRisk(0, "USDC", AssetKind.CASH),
        AssetRisk(1, "ETH", AssetKind.CRYPTO, group="c", shock=RateTiers((), (100_000,))),
        AssetRisk(2, "STRK", AssetKind.CRYPTO, group="c", shock=RateTiers((), (200_000,))),
    ),
    groups=(RiskGroup("c"),),
    perps=(
        PerpRisk(0, "ETH-USD", 1, PositionBrackets((), (100_000,), (50_000,))),
        PerpRisk(1, "STRK-USD", 2, PositionBrackets((), (200_000,), (100_000,))),
    ),
)
DYDX_PRICES = MarketPrices((M, 3_000 * M, 1_750_000), (3_000 * M, 1_750_000), (M, M, M))


def test_dydx_isolated_liquidation_price() -> None:
    """dYdX documentation, Liquidations, "Isolated Liquidation Price", Example:
    https://docs.dydx.xyz/concepts/trading/liquidations

    "a trader deposits $1,000 (e = 1000) ... shorts 3 ETH contracts (s = -3) at $3,000 per
    contract, with a maintenance margin fraction of 5%": p' = (e - s p) / (|s| MMF - s)
    = 10000 / 3.15 ≈ 3174.60.
    """
    state = AccountState((1_000 * M, 0, 0), (-3 * A, 0), (-9_000 * M, 0))
    price = calc_position_liquidation_price_micro(DYDX, state, DYDX_PRICES, 0)
    assert price == 3_174_603_174  # 3174.603174..., rounded down for a short
    # as an isolated position holding the 1,000 as its own margin: the same price
    isolated = AccountState((0, 0, 0), (-3 * A, 0), (-9_000 * M, 0))
    assert calc_position_liquidation_price_micro(DYDX, isolated, DYDX_PRICES, 0, (1_000 * M, None)) == price


def test_dydx_cross_liquidation_price() -> None:
    """dYdX documentation, Liquidations, "Cross Liquidation Price", Example:
    https://docs.dydx.xyz/concepts/trading/liquidations

    Deposit $1,000; short 1.5 ETH at $3,000 (MMF 5%) and long 1,000 STRK at $1.75 (MMF 10%):
    MMR_o = 1000 * 1.75 * 0.10 = 175; p' = (1000 + 4500 - 175) / 1.575 ≈ 3380.95.
    Also the margin page's account formulas (https://docs.dydx.xyz/concepts/trading/margin):
    Total Account Value = Q + Σ S_i P_i = 1,000 and Σ |S_i P_i M_i| = 225 + 175 = 400.
    """
    state = AccountState((1_000 * M, 0, 0), (-(3 * A) // 2, 1_000 * A), (-4_500 * M, 1_750 * M))
    r = calc_position_margin(DYDX, state, DYDX_PRICES)
    assert (r.equity_micro, r.mm_micro) == (1_000 * M, 400 * M)
    assert calc_position_liquidation_price_micro(DYDX, state, DYDX_PRICES, 0) == 3_380_952_380  # 3380.95...


def _healthy_per_position(
    spec: RiskSpec, state: AccountState, prices: MarketPrices, perp: int, mark: int
) -> bool:
    marks = list(prices.mark_micro)
    marks[perp] = mark
    r = calc_position_margin(spec, state, dataclasses.replace(prices, mark_micro=tuple(marks)))
    return r.equity_micro >= r.mm_micro


@settings(max_examples=150, deadline=None)
@given(
    st.integers(-20_000 * A, 20_000 * A).filter(lambda s: abs(s) >= 1_000_000),
    st.integers(0, 10**12),
    st.integers(-(10**8), 10**9),
)
def test_closed_form_is_the_boundary(size: int, usdc: int, eth_perp: int) -> None:
    """At the returned mark the account is at maintenance; a step (one micro of the position's
    value) into the adverse side, it is below."""
    state = account(usdc=usdc, btc_perp=at_mark(size, 60_000 * M), eth_perp=at_mark(eth_perp, 3_000 * M))
    price = calc_position_liquidation_price_micro(SPEC, state, PRICES, BTC_PERP)
    if price is None:
        assert size > 0 and _healthy_per_position(SPEC, state, PRICES, BTC_PERP, 0)
        return
    step = max(1, -(-(A * 2) // abs(size)))  # moves the position's value by >= 2 micro
    adverse = price - step if size > 0 else price + step
    if price > 0:
        assert _healthy_per_position(SPEC, state, PRICES, BTC_PERP, price + (step if size > 0 else -step))
    if adverse >= 0:
        assert not _healthy_per_position(SPEC, state, PRICES, BTC_PERP, adverse)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(-2_000 * A, 2_000 * A).filter(lambda s: abs(s) >= 10_000_000), st.integers(1_000 * M, 10**11)
)
def test_modes_agree_on_a_single_position(size: int, usdc: int) -> None:
    state = account(usdc=usdc, btc_perp=at_mark(size, 60_000 * M))
    per_position = calc_position_liquidation_price_micro(SPEC, state, PRICES, BTC_PERP)
    portfolio = calc_portfolio_liquidation_price_micro(SPEC, state, PRICES, BTC_PERP)
    if per_position is None or portfolio is None:
        assert per_position is None and portfolio is None
        return
    # MM agrees to a micro or two (IM rounded up before MM is taken): prices to that much value
    tolerance = 3 * A // abs(size) + 2
    assert abs(per_position - portfolio) <= tolerance


def test_portfolio_mode_moves_the_whole_asset() -> None:
    """Spot BTC hedged by a short perp: moving the perp alone would liquidate the short on a rally;
    moving BTC as a whole (spot and perp) it is hedged, so only the floor and haircut matter."""
    hedged = account(usdc=1_000 * M, btc=1 * A, btc_perp=at_mark(-1 * A, 60_000 * M))
    price = calc_portfolio_liquidation_price_micro(SPEC, hedged, PRICES, BTC_PERP)
    # net exposure -3,000 (haircut): it loses slowly as BTC rises; 1,000 USDC + 57,000 of BTC last long
    assert price is not None and price > 150_000 * M
    report = calc_portfolio_margin(SPEC, hedged, PRICES)
    assert report.equity_micro > report.mm_micro
    naked = account(usdc=10_000 * M, btc_perp=at_mark(1 * A, 60_000 * M))
    long_price = calc_portfolio_liquidation_price_micro(SPEC, naked, PRICES, BTC_PERP)
    assert long_price is not None and 50_000 * M < long_price < 60_000 * M
    assert calc_portfolio_liquidation_price_micro(SPEC, naked, PRICES, ETH_PERP) is None  # no ETH position
    rich = account(usdc=100_000 * M, btc_perp=at_mark(1 * A, 60_000 * M))
    assert calc_portfolio_liquidation_price_micro(SPEC, rich, PRICES, BTC_PERP) is None  # safe even at 0
    assert calc_position_liquidation_price_micro(SPEC, rich, PRICES, BTC_PERP) is None
