"""Named fixtures of the margin-maths tests: the default spec, prices, accounts, strategies.

Units as everywhere: USDC in micro (``M`` per USDC), other assets in atoms (``A`` per unit),
prices in micro-USDC per whole unit.
"""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from engine.math.portfolio_margin import AccountState, MarketPrices
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, PPM
from engine.types.risk_spec import (
    AssetKind,
    AssetRisk,
    PerpRisk,
    PortfolioParams,
    RateTiers,
    RiskSpec,
    default_risk_spec,
)

M = MICRO_PER_UNIT
A = ATOMS_PER_UNIT

SPEC = default_risk_spec()
USDC, BTC, ETH, AAPL, PM1 = 0, 1, 2, 3, 4
BTC_PERP, ETH_PERP = 0, 1
N_ASSETS = len(SPEC.assets)
N_PERPS = len(SPEC.perps)

PRICES = MarketPrices(
    asset_price_micro=(M, 60_000 * M, 3_000 * M, 200 * M, 420_000),
    mark_micro=(60_000 * M, 3_000 * M),
    shock_multiplier_ppm=(PPM,) * N_ASSETS,
)


def account(
    usdc: int = 0,
    btc: int = 0,
    eth: int = 0,
    aapl: int = 0,
    pm1: int = 0,
    btc_perp: tuple[int, int] = (0, 0),
    eth_perp: tuple[int, int] = (0, 0),
    reserved: int = 0,
) -> AccountState:
    """An account of the default spec: balances (micro / atoms), perps as (size_atoms, cost_micro)."""
    return AccountState(
        balance=(usdc, btc, eth, aapl, pm1),
        perp_size_atoms=(btc_perp[0], eth_perp[0]),
        perp_cost_micro=(btc_perp[1], eth_perp[1]),
        reserved_micro=reserved,
    )


def at_mark(size_atoms: int, mark_micro: int) -> tuple[int, int]:
    """A perp position opened at ``mark`` (cost = its notional, rounded down as the shard does)."""
    notional = abs(size_atoms) * mark_micro // A
    return size_atoms, notional if size_atoms >= 0 else -notional


ALICE_10K_USDC = account(usdc=10_000 * M)
BOB_1_BTC = account(btc=1 * A)
CAROL_1_BTC_SHORT_PERP = account(btc=1 * A, btc_perp=at_mark(-1 * A, 60_000 * M))
DAVE_LONG_BTC_PERP = account(usdc=10_000 * M, btc_perp=at_mark(1 * A, 60_000 * M))


# ---- hypothesis strategies ------------------------------------------------------------------------

usdc_balances = st.integers(-(10**12), 10**13)  # -1M .. 10M USDC


def _qty(max_units: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), st.integers(-max_units * A, max_units * A))


def portfolio_states(spec: RiskSpec = SPEC, max_units: int = 2_000) -> st.SearchStrategy[AccountState]:
    """Random accounts of ``spec``: any sign of balance (liabilities), perps with a cost near their value."""
    n_assets, n_perps = len(spec.assets), len(spec.perps)

    @st.composite
    def build(draw: st.DrawFn) -> AccountState:
        balance = [draw(usdc_balances)] + [draw(_qty(max_units)) for _ in range(n_assets - 1)]
        sizes = [draw(_qty(max_units)) for _ in range(n_perps)]
        costs = [s * 3_000 * M // A + draw(st.integers(-(10**10), 10**10)) for s in sizes]
        return AccountState(tuple(balance), tuple(sizes), tuple(costs))

    return build()


def market_prices(spec: RiskSpec = SPEC, multipliers: bool = True) -> st.SearchStrategy[MarketPrices]:
    """Random prices: each asset 0.01 .. 200,000 USDC (a prediction share 0 .. 1), marks near them."""

    @st.composite
    def build(draw: st.DrawFn) -> MarketPrices:
        prices = [M]
        for asset in spec.assets[1:]:
            if asset.kind == AssetKind.PREDICTION:
                prices.append(draw(st.integers(0, M)))
            else:
                prices.append(draw(st.integers(M // 100, 200_000 * M)))
        marks = [max(1, prices[p.underlying] * draw(st.integers(990, 1_010)) // 1_000) for p in spec.perps]
        mults = [draw(st.integers(PPM, 3 * PPM)) if multipliers and a.asset_id else PPM for a in spec.assets]
        return MarketPrices(tuple(prices), tuple(marks), tuple(mults))

    return build()


def stress_spec() -> RiskSpec:
    """A spec that exercises every branch: two perps on one asset, vol-up binding (k*w > 1, falls
    capped at -100%), a 3-asset group with a 60% shock tier, cross-group offset."""
    base = default_risk_spec()
    sol = AssetRisk(
        5,
        "SOL",
        AssetKind.CRYPTO,
        group="crypto_majors",
        weights=base.assets[1].weights,
        shock=RateTiers((100_000 * M, 1_000_000 * M), (200_000, 300_000, 600_000)),
        floor_ppm=30_000,
    )
    assets = (*base.assets, sol)
    perps = (
        *base.perps,
        PerpRisk(2, "BTC-PERP-2", 1, base.perps[0].brackets, base.perps[0].fees),
        PerpRisk(3, "SOL-PERP", 5, base.perps[0].brackets, base.perps[0].fees),
    )
    params = PortfolioParams(
        mm_fraction_ppm=500_000,
        cross_group_offset_ppm=300_000,
        vol_up_multiple_ppm=5 * PPM,
        vol_up_weight_ppm=300_000,
    )
    groups = tuple(
        dataclasses.replace(g, idio_ppm=700_000) if g.name == "crypto_majors" else g for g in base.groups
    )
    return RiskSpec(assets, groups, perps, params)


STRESS_SPEC = stress_spec()
