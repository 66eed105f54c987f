"""Per-position margin mode, as large venues run it beside portfolio margin.

Each perp position is margined alone by its market's notional brackets
(:class:`~engine.types.risk_spec.PositionBrackets`, Binance's "leverage & margin brackets")::

    IM_p = |notional| * imr_i - im_deduction_i        MM_p = |notional| * mmr_i - mm_deduction_i

for ``|notional| = |size| * mark / 1e8`` in bracket ``i`` (the deduction is the cumulative
"maintenance amount", so both are continuous in the notional). A position is either

* cross: it shares the account's cross equity (weighted collateral + every cross position's
  unrealised P&L) with the other cross positions; or
* isolated: it has its own margin ``isolated_margin_micro[p]`` (already moved out of the USDC
  balance by the caller) and its own equity ``margin + size * mark / 1e8 - cost``; it is liquidated
  alone when that falls below ``MM_p``.

Spot liabilities (a negative non-cash balance) are charged standalone, without netting: IM =
the asset's shock loss on the liability's value (a prediction share: ``|q| * (1 - price)``), MM =
``mm_fraction`` of it. Long spot needs no margin (it is paid for; the haircut applies). No dynamic
multiplier here: brackets are static, as the venues publish them.

Agreement with portfolio mode (tested): for an account holding one perp position and USDC, with
the market's IM brackets equal to the underlying's shock tiers and multiplier 1, portfolio IM =
``max(IM_p, floor)``; so ``IM_p <= IM_portfolio <= max(IM_p, floor)`` (+1 micro of rounding).

Rounding: equity down, requirements up (micro-USDC).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from engine.math.collateral import calc_weighted_qty_exact
from engine.math.margin_tiers import calc_tiered_requirement_exact
from engine.math.portfolio_margin import AccountState, MarketPrices, calc_mm_micro, check_state
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, PPM
from engine.types.risk_spec import AssetKind, PositionBrackets, RiskSpec


@dataclass(frozen=True, slots=True)
class PositionModeReport:
    """Per-position mode result (micro-USDC)."""

    equity_micro: int  # cross equity, rounded down
    im_micro: int  # cross IM: cross positions + spot liabilities, rounded up
    mm_micro: int  # cross MM, rounded up
    free_micro: int  # equity - im - reserved
    position_im_micro: tuple[int, ...]  # (P,) each position's IM (cross or isolated), rounded up
    position_mm_micro: tuple[int, ...]  # (P,) each position's MM, rounded up
    isolated_equity_micro: tuple[int | None, ...]  # (P,) None for cross positions


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def calc_position_requirements_exact(
    notional_micro: int | Fraction, brackets: PositionBrackets
) -> tuple[Fraction, Fraction]:
    """Exact ``(IM, MM)`` of one position of ``|notional|`` micro-USDC (bracketed, continuous)."""
    return (
        calc_tiered_requirement_exact(notional_micro, brackets.initial),
        calc_tiered_requirement_exact(notional_micro, brackets.maintenance),
    )


def calc_spot_liability_requirement_exact(
    spec: RiskSpec, asset_id: int, qty: int, price_micro: int
) -> Fraction:
    """Standalone IM of a spot balance in per-position mode (0 unless it is a liability)."""
    asset = spec.assets[asset_id]
    if qty >= 0 or asset.kind == AssetKind.CASH:
        return Fraction(0)
    if asset.kind == AssetKind.PREDICTION:
        return Fraction(-qty * (MICRO_PER_UNIT - price_micro), asset.qty_scale)
    return calc_tiered_requirement_exact(Fraction(-qty * price_micro, asset.qty_scale), asset.shock)


def calc_position_margin(
    spec: RiskSpec,
    state: AccountState,
    prices: MarketPrices,
    isolated_margin_micro: tuple[int | None, ...] | None = None,
) -> PositionModeReport:
    """Per-position mode of one account; ``isolated_margin_micro[p]`` None (or absent) = cross."""
    check_state(spec, state, prices)
    n_perps = len(spec.perps)
    iso = isolated_margin_micro if isolated_margin_micro is not None else (None,) * n_perps
    if len(iso) != n_perps:
        raise ValueError(f"expected {n_perps} isolated margins (None for cross)")
    mm_fraction = Fraction(spec.params.mm_fraction_ppm, PPM)
    equity = Fraction(0)
    im = Fraction(0)
    mm = Fraction(0)
    for a, asset in enumerate(spec.assets):
        q = state.balance[a]
        equity += calc_weighted_qty_exact(q, asset.weights) * prices.asset_price_micro[a] / asset.qty_scale
        liability_im = calc_spot_liability_requirement_exact(spec, a, q, prices.asset_price_micro[a])
        im += liability_im
        mm += liability_im * mm_fraction
    pos_im: list[int] = []
    pos_mm: list[int] = []
    iso_eq: list[int | None] = []
    for p, perp in enumerate(spec.perps):
        size = state.perp_size_atoms[p]
        value = Fraction(size * prices.mark_micro[p], ATOMS_PER_UNIT)
        p_im, p_mm = calc_position_requirements_exact(value, perp.brackets)
        pos_im.append(_ceil(p_im))
        pos_mm.append(_ceil(p_mm))
        upnl = value - state.perp_cost_micro[p]
        margin = iso[p]
        if margin is None:
            equity += upnl
            im += p_im
            mm += p_mm
            iso_eq.append(None)
        else:
            iso_eq.append(_floor(margin + upnl))
    eq = _floor(equity)
    im_micro = _ceil(im)
    return PositionModeReport(
        equity_micro=eq,
        im_micro=im_micro,
        mm_micro=_ceil(mm),
        free_micro=eq - im_micro - state.reserved_micro,
        position_im_micro=tuple(pos_im),
        position_mm_micro=tuple(pos_mm),
        isolated_equity_micro=tuple(iso_eq),
    )


__all__ = [
    "PositionModeReport",
    "calc_mm_micro",
    "calc_position_margin",
    "calc_position_requirements_exact",
    "calc_spot_liability_requirement_exact",
]
