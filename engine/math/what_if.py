"""What-if: the pure composition behind ``hx risk what-if PORTFOLIO.json`` and the gateway's ``what_if``.

Balances, perp positions, open orders and prices in; out: equity, IM, MM and free collateral
(portfolio mode, the engine's), every scenario's P&L, each position's liquidation price (others
held fixed; both modes), the same account in per-position mode, each open order's reservation, and
how much of each asset (spot, against USDC) and of each perp (long and short) could still be
bought. Everything here is the engine's own maths (portfolio_margin, pre_trade,
liquidation_price), so the tool and the engine cannot disagree.

"Could still be bought" = the largest quantity whose pre-trade reserve (at the current price as
the limit, taker fee) fits the free collateral left after the open orders: what the pre-trade
check would accept, found by doubling and bisection over the O(1) bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from engine.math.liquidation_price import (
    calc_portfolio_liquidation_price_micro,
    calc_position_liquidation_price_micro,
)
from engine.math.portfolio_margin import (
    AccountState,
    MarketPrices,
    PortfolioReport,
    calc_group_mixed,
    calc_portfolio_margin,
)
from engine.math.position_margin import PositionModeReport, calc_position_margin
from engine.math.pre_trade import BUY, SELL, calc_order_impact
from engine.types.fixed import INT64_MAX
from engine.types.risk_spec import AssetKind, RiskSpec


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A resting order: spot (``perp_id`` None, ``asset_id`` against USDC) or perp."""

    asset_id: int
    perp_id: int | None
    side: int  # BUY (+1) / SELL (-1)
    qty_atoms: int
    limit_price_micro: int


@dataclass(frozen=True, slots=True)
class IsolatedPosition:
    """A perp position margined alone (not in ``WhatIfInput.state``): the engine keeps it on a row
    of its own holding ``margin_micro`` of USDC, and margins it with the same portfolio maths."""

    perp_id: int
    size_atoms: int
    cost_micro: int
    margin_micro: int


@dataclass(frozen=True, slots=True)
class WhatIfInput:
    state: AccountState  # its reserved_micro is ignored: the orders below define the reservation
    prices: MarketPrices
    orders: tuple[OpenOrder, ...] = ()
    isolated: tuple[IsolatedPosition, ...] = ()


@dataclass(frozen=True, slots=True)
class WhatIfResult:
    portfolio: PortfolioReport  # with the orders' reservation in free_micro
    position_mode: PositionModeReport  # all positions cross
    order_reserve_micro: tuple[int, ...]
    liquidation_price_micro: dict[int, int | None]  # perp id -> portfolio mode
    position_liquidation_price_micro: dict[int, int | None]  # perp id -> per-position mode
    max_buy_atoms: dict[int, int]  # asset id -> spot quantity
    max_perp_atoms: dict[int, tuple[int, int]]  # perp id -> (buy, sell)
    # perp id -> (the isolated position's own report, its liquidation price)
    isolated: dict[int, tuple[PortfolioReport, int | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Context:
    """What the pre-trade bound needs to know about the account, for one instrument."""

    asset_id: int
    perp_id: int | None
    price_micro: int
    exposure_micro: int
    group_mixed: bool
    balance_atoms: int
    perp_size_atoms: int
    shock_multiplier_ppm: int

    def reserve(self, spec: RiskSpec, side: int, qty_atoms: int, limit_price_micro: int) -> int:
        return calc_order_impact(
            spec,
            asset_id=self.asset_id,
            perp_id=self.perp_id,
            side=side,
            qty_atoms=qty_atoms,
            limit_price_micro=limit_price_micro,
            price_micro=self.price_micro,
            exposure_micro=self.exposure_micro,
            group_mixed=self.group_mixed,
            balance_atoms=self.balance_atoms,
            perp_size_atoms=self.perp_size_atoms,
            shock_multiplier_ppm=self.shock_multiplier_ppm,
        ).reserve_micro


def _max_qty(spec: RiskSpec, ctx: _Context, side: int, free_micro: int) -> int:
    """Largest quantity whose reserve at the current price fits ``free_micro`` (doubling, bisection).

    The reserve grows with the quantity once an order adds risk, so the search is exact for
    risk-adding orders and a safe (smaller) answer otherwise.
    """

    def fits(qty: int) -> bool:
        return ctx.reserve(spec, side, qty, ctx.price_micro) <= free_micro

    if ctx.price_micro <= 0 or not fits(1):
        return 0
    lo, hi = 1, 2
    while hi < INT64_MAX // 4 and fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def calc_what_if(spec: RiskSpec, inp: WhatIfInput) -> WhatIfResult:
    """The what-if composition (see the module docstring)."""
    state = replace(inp.state, reserved_micro=0)
    prices = inp.prices
    base = calc_portfolio_margin(spec, state, prices)
    exposure = base.exposure_micro

    def context(asset_id: int, perp_id: int | None) -> _Context:
        price = prices.mark_micro[perp_id] if perp_id is not None else prices.asset_price_micro[asset_id]
        return _Context(
            asset_id=asset_id,
            perp_id=perp_id,
            price_micro=price,
            exposure_micro=exposure[asset_id],
            group_mixed=calc_group_mixed(spec, exposure, asset_id),
            balance_atoms=state.balance[asset_id],
            perp_size_atoms=state.perp_size_atoms[perp_id] if perp_id is not None else 0,
            shock_multiplier_ppm=prices.shock_multiplier_ppm[asset_id],
        )

    reserves = tuple(
        context(o.asset_id, o.perp_id).reserve(spec, o.side, o.qty_atoms, o.limit_price_micro)
        for o in inp.orders
    )
    reserved = sum(reserves)
    report = replace(base, free_micro=base.free_micro - reserved)

    liq_pm: dict[int, int | None] = {}
    liq_pp: dict[int, int | None] = {}
    for p in range(len(spec.perps)):
        if state.perp_size_atoms[p]:
            liq_pm[p] = calc_portfolio_liquidation_price_micro(spec, state, prices, p)
            liq_pp[p] = calc_position_liquidation_price_micro(spec, state, prices, p)

    free = report.free_micro
    max_buy = {
        asset.asset_id: _max_qty(spec, context(asset.asset_id, None), BUY, free)
        for asset in spec.assets
        if asset.kind != AssetKind.CASH
    }
    max_perp = {
        p: (
            _max_qty(spec, context(perp.underlying, p), BUY, free),
            _max_qty(spec, context(perp.underlying, p), SELL, free),
        )
        for p, perp in enumerate(spec.perps)
    }
    isolated: dict[int, tuple[PortfolioReport, int | None]] = {}
    for iso in inp.isolated:  # its own account: its margin as USDC, its one position
        own = AccountState(
            tuple(iso.margin_micro if a == 0 else 0 for a in range(len(spec.assets))),
            tuple(iso.size_atoms if p == iso.perp_id else 0 for p in range(len(spec.perps))),
            tuple(iso.cost_micro if p == iso.perp_id else 0 for p in range(len(spec.perps))),
        )
        isolated[iso.perp_id] = (
            calc_portfolio_margin(spec, own, prices),
            calc_portfolio_liquidation_price_micro(spec, own, prices, iso.perp_id),
        )
    return WhatIfResult(
        isolated=isolated,
        portfolio=report,
        position_mode=calc_position_margin(spec, replace(state, reserved_micro=reserved), prices),
        order_reserve_micro=reserves,
        liquidation_price_micro=liq_pm,
        position_liquidation_price_micro=liq_pp,
        max_buy_atoms=max_buy,
        max_perp_atoms=max_perp,
    )
