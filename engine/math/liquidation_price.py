"""Liquidation price of one perp position, every other price held fixed.

An account is liquidatable when its equity is below its maintenance margin. The liquidation price
of position ``p`` is the mark at which ``equity == MM``:

* per-position mode, closed form (dYdX publishes the single-tier case): with ``U`` = the
  (cross or isolated) equity without the position's value and ``MM_o`` = the maintenance margin of
  everything else, the position's bracket ``i`` gives ``U + s P = MM_o + |s| P mmr_i - ded_i``, i.e.
  ``P = (MM_o - ded_i - U) / (s - |s| mmr_i)`` (sizes in units, prices per unit); the bracket
  whose notional range holds ``|s| P`` is the answer (``equity - MM`` is strictly monotone in ``P``
  because ``mmr < 100%``, so there is at most one);
* portfolio mode, monotone search: the position's underlying asset moves as a whole (its spot
  price and every perp mark on it by the same factor, so a spot holding hedged by a short perp
  is valued consistently) and a bisection over the integer mark finds the boundary, on the side
  where the account loses (down for a net long exposure, up for a net short). The search assumes
  ``equity - MM`` is monotone on that side, true whenever ``mm_fraction * max(shock rate x
  multiplier, w * k * ...) < 1`` (MM then moves slower than equity), as in every sane spec.

Returned in micro-USDC per whole unit, rounded toward the current mark (a long's up, a short's
down: the warning errs early). ``None`` when there is none: a long whose account stays above
maintenance even at price 0. A short always has one (0 means: liquidatable at any price).
"""

from __future__ import annotations

from fractions import Fraction

from engine.math.collateral import calc_weighted_qty_exact
from engine.math.margin_tiers import calc_tiered_requirement_exact
from engine.math.portfolio_margin import AccountState, MarketPrices, calc_portfolio_margin
from engine.math.position_margin import calc_spot_liability_requirement_exact
from engine.types.fixed import ATOMS_PER_UNIT, PPM
from engine.types.risk_spec import RiskSpec

SEARCH_MAX_DOUBLINGS = 64


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def calc_position_liquidation_price_micro(
    spec: RiskSpec,
    state: AccountState,
    prices: MarketPrices,
    perp_id: int,
    isolated_margin_micro: tuple[int | None, ...] | None = None,
) -> int | None:
    """Per-position mode, closed form (see the module docstring); None when there is none."""
    size = state.perp_size_atoms[perp_id]
    if size == 0:
        return None
    iso = isolated_margin_micro if isolated_margin_micro is not None else (None,) * len(spec.perps)
    perp = spec.perps[perp_id]
    value = Fraction(size * prices.mark_micro[perp_id], ATOMS_PER_UNIT)
    mm_p_now = calc_tiered_requirement_exact(value, perp.brackets.maintenance)
    margin = iso[perp_id]
    if margin is None:
        equity, mm = _exact_cross_equity_and_mm(spec, state, prices, iso)
        u = equity - value
        mm_other = mm - mm_p_now
    else:
        u = Fraction(margin - state.perp_cost_micro[perp_id])
        mm_other = Fraction(0)
    s = Fraction(size, ATOMS_PER_UNIT)  # units
    tiers = perp.brackets.maintenance
    for i, rate_ppm in enumerate(tiers.rate_ppm):
        r = Fraction(rate_ppm, PPM)
        denom = s - abs(s) * r
        if denom == 0:
            continue
        price = (mm_other - Fraction(tiers.deduction_micro_ppm[i], PPM) - u) / denom
        notional = abs(s) * price
        lo = tiers.upper_micro[i - 1] if i else 0
        hi = tiers.upper_micro[i] if i < len(tiers.upper_micro) else None
        in_tier = (notional > lo if i else notional >= 0) and (hi is None or notional <= hi)
        if price >= 0 and in_tier:
            return _ceil(price) if size > 0 else _floor(price)
    if size > 0:
        return None
    return 0


def _exact_cross_equity_and_mm(
    spec: RiskSpec, state: AccountState, prices: MarketPrices, iso: tuple[int | None, ...]
) -> tuple[Fraction, Fraction]:
    """Exact cross equity and cross MM of per-position mode (the same sums, unrounded)."""
    mm_fraction = Fraction(spec.params.mm_fraction_ppm, PPM)
    equity = Fraction(0)
    mm = Fraction(0)
    for a, asset in enumerate(spec.assets):
        q = state.balance[a]
        equity += calc_weighted_qty_exact(q, asset.weights) * prices.asset_price_micro[a] / asset.qty_scale
        mm += calc_spot_liability_requirement_exact(spec, a, q, prices.asset_price_micro[a]) * mm_fraction
    for p, perp in enumerate(spec.perps):
        if iso[p] is not None:
            continue
        value = Fraction(state.perp_size_atoms[p] * prices.mark_micro[p], ATOMS_PER_UNIT)
        equity += value - state.perp_cost_micro[p]
        mm += calc_tiered_requirement_exact(value, perp.brackets.maintenance)
    return equity, mm


def _moved_prices(spec: RiskSpec, prices: MarketPrices, perp_id: int, mark: int) -> MarketPrices:
    """Prices with the position's underlying (spot and every perp on it) moved to put ``perp_id`` at ``mark``."""
    asset_id = spec.perps[perp_id].underlying
    base = prices.mark_micro[perp_id]
    factor = Fraction(mark, base)
    asset_prices = list(prices.asset_price_micro)
    asset_prices[asset_id] = round(asset_prices[asset_id] * factor)
    marks = list(prices.mark_micro)
    for q, perp in enumerate(spec.perps):
        if perp.underlying == asset_id:
            marks[q] = mark if q == perp_id else round(marks[q] * factor)
    return MarketPrices(tuple(asset_prices), tuple(marks), prices.shock_multiplier_ppm)


def calc_portfolio_liquidation_price_micro(
    spec: RiskSpec, state: AccountState, prices: MarketPrices, perp_id: int
) -> int | None:
    """Portfolio mode, bisection on the integer mark (see the module docstring); None when none."""
    if state.perp_size_atoms[perp_id] == 0 or prices.mark_micro[perp_id] <= 0:
        return None

    def healthy(mark: int) -> bool:
        report = calc_portfolio_margin(spec, state, _moved_prices(spec, prices, perp_id, mark))
        return report.equity_micro >= report.mm_micro

    mark0 = prices.mark_micro[perp_id]
    report0 = calc_portfolio_margin(spec, state, prices)
    exposure = report0.exposure_micro[spec.perps[perp_id].underlying]
    falling = exposure > 0  # the account loses when the underlying falls
    if exposure == 0:  # fully hedged: the floor grows with the price, so up is adverse
        falling = False
    if falling:
        if healthy(mark0):
            if healthy(0):
                return None
            lo, hi = 0, mark0  # unhealthy at lo, healthy at hi
        else:
            lo, hi = mark0, 2 * mark0
            for _ in range(SEARCH_MAX_DOUBLINGS):
                if healthy(hi):
                    break
                lo, hi = hi, 2 * hi
            else:
                return None
        while hi - lo > 1:  # smallest healthy mark: rounded up, toward the current mark
            mid = (lo + hi) // 2
            if healthy(mid):
                hi = mid
            else:
                lo = mid
        return hi
    if healthy(mark0):
        lo, hi = mark0, 2 * mark0  # healthy at lo, unhealthy at hi
        for _ in range(SEARCH_MAX_DOUBLINGS):
            if not healthy(hi):
                break
            lo, hi = hi, 2 * hi
        else:
            return None
    else:
        if not healthy(0):
            return 0
        lo, hi = 0, mark0
    while hi - lo > 1:  # largest healthy mark: rounded down, toward the current mark
        mid = (lo + hi) // 2
        if healthy(mid):
            lo = mid
        else:
            hi = mid
    return lo
