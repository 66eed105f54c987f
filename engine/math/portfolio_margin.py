"""Unified portfolio margin: equity, initial and maintenance margin, free collateral, scenario P&L.

Two implementations of one specification, held to each other by a differential test:

* :func:`calc_portfolio_margin` - the scalar reference, exact (Python ints and Fractions), one
  account, every scenario's P&L by name. It is the readable specification below, written as
  "revalue the account at the moved prices".
* :func:`calc_portfolio_margin_arrays` - numpy over many accounts at once (or a subset of rows),
  float64 for the estimates, then rounded to the micro-unit against the account with a safety
  margin (``2 * SAFETY_REL * growth * magnitude + SAFETY_ABS_MICRO``: ``magnitude`` = sum of
  |spot values| + gross notional + |total cost| of the account, ``growth`` = (1 + vol-up multiple) x
  the largest multiplier), so that for every account ``equity_vec <= equity_ref`` and
  ``im_vec >= im_ref`` and neither is off by more than the margin.

Specification (units: quantities in the asset's unit, prices micro-USDC per whole unit, money micro):

1. weighted quantity ``W_a = W(q_a)`` for ``q_a > 0`` (collateral tiers), ``q_a`` for ``q_a <= 0``;
2. ``equity = sum_a W_a * price_a / scale_a + sum_p (size_p * mark_p / 1e8 - cost_p)``, rounded down;
3. exposure of asset ``a`` (not cash): ``E_a = W_a * price_a / scale_a + sum_{p on a} size_p * mark_p / 1e8``
   - the sensitivity of equity to a relative move of ``a``'s price;
4. shock of a crypto/equity asset: ``S_a = multiplier_a * tiered(|E_a|)`` (shock tiers with the
   cumulative deduction), its move ``x_a = S_a / |E_a|`` (``multiplier_a * rate_0`` when ``E_a = 0``);
5. scenarios of a crypto/equity group ``g`` (P&L = change of equity when prices move):
   ``g:down`` / ``g:up``: every asset of ``g`` moves by ``-x_a`` / ``+x_a``;
   ``g:SYM:down`` / ``g:SYM:up``: asset SYM alone moves ``-/+ idio * x_a``;
   ``g:vol_up:down`` / ``g:vol_up:up``: every asset moves ``-min(k x_a, 1)`` / ``+k x_a``, P&L
   weighted by ``w`` (``k``, ``w``: :class:`~engine.types.risk_spec.PortfolioParams`);
   a prediction asset's group has ``g:resolve_0`` / ``g:resolve_1`` (its price becomes 0 / 1 USDC);
6. ``loss_g = max(0, -min_s pnl_s)``; ``IM_raw = sum_g loss_g - offset * (sum_g loss_g - max_g loss_g)``;
7. ``floor = sum_a floor_a * (sum_{p on a} |size_p| * mark_p / 1e8 + max(0, -q_a) * price_a / scale_a)``;
8. ``IM = ceil(max(IM_raw, floor))``; ``MM = ceil(IM * mm_fraction)``;
   ``free = equity - IM - reserved`` (reserved: the open orders' reservation, see pre_trade).

A long perp on BTC held against BTC collateral ADDS to ``E_BTC`` (it doubles the exposure); a
SHORT perp is the hedge: ``E_BTC`` nets to ``W * price - |size| * mark``, nearly zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.math.collateral import calc_weight_addends, calc_weighted_qty_exact
from engine.math.margin_tiers import calc_tiered_requirement_exact
from engine.types.fixed import ATOMS_PER_UNIT, INT64_MAX, MICRO_PER_UNIT, PPM
from engine.types.risk_spec import AssetKind, RiskSpec

# Vectorised rounding margin: float64 has 53 bits (relative 1.1e-16 per operation); the recompute
# does fewer than ~100 operations per account on values bounded by growth x the account's
# magnitude M (the sum of |spot values|, |perp notionals| and |total cost|, which the recompute
# sums per account), so its error stays below ~1e-14 * growth * M. 2 * SAFETY_REL = 2e-12 leaves
# a factor of 200: about 2 micro-USDC per 1 million USDC of gross, plus 2 micro.
SAFETY_REL = 1e-12
SAFETY_ABS_MICRO = 2.0
# An equity or margin beyond this cannot be rounded to int64 safely: the recompute refuses it.
MAX_MAGNITUDE_MICRO = float(2**62)


@dataclass(frozen=True, slots=True)
class AccountState:
    """One account as the risk process keeps it (all int, units in the names)."""

    balance: tuple[int, ...]  # (A,) asset quantities: micro for USDC, atoms otherwise; < 0 = liability
    perp_size_atoms: tuple[int, ...]  # (P,) signed, long > 0
    perp_cost_micro: tuple[int, ...]  # (P,) signed entry notional (long > 0), see engine.math.position
    reserved_micro: int = 0  # reservation held for open orders


@dataclass(frozen=True, slots=True)
class MarketPrices:
    """Prices the margin is computed at. ``asset_price_micro[0]`` (USDC) is always 1_000_000."""

    asset_price_micro: tuple[int, ...]  # (A,) micro-USDC per whole unit
    mark_micro: tuple[int, ...]  # (P,) perp mark, micro-USDC per whole unit
    shock_multiplier_ppm: tuple[int, ...]  # (A,) dynamic multiplier >= 1e6 (engine.math.dynamic_shock)


def neutral_multipliers(spec: RiskSpec) -> tuple[int, ...]:
    """Multiplier 1.0 for every asset."""
    return (PPM,) * len(spec.assets)


def check_state(spec: RiskSpec, state: AccountState, prices: MarketPrices) -> None:
    """Raise ValueError when shapes or price ranges do not fit ``spec`` (a bug upstream)."""
    a, p = len(spec.assets), len(spec.perps)
    if len(state.balance) != a or len(prices.asset_price_micro) != a or len(prices.shock_multiplier_ppm) != a:
        raise ValueError(f"expected {a} assets in balance, prices and multipliers")
    if len(state.perp_size_atoms) != p or len(state.perp_cost_micro) != p or len(prices.mark_micro) != p:
        raise ValueError(f"expected {p} perp markets in sizes, costs and marks")
    if prices.asset_price_micro[0] != MICRO_PER_UNIT:
        raise ValueError("USDC's price is 1_000_000 micro")
    for asset, price, mult in zip(
        spec.assets, prices.asset_price_micro, prices.shock_multiplier_ppm, strict=True
    ):
        if price < 0 or (asset.kind == AssetKind.PREDICTION and price > MICRO_PER_UNIT):
            raise ValueError(f"{asset.symbol}: price {price} out of range")
        if mult < PPM:
            raise ValueError(f"{asset.symbol}: shock multiplier {mult} below 1e6")
    if any(m < 0 for m in prices.mark_micro):
        raise ValueError("negative mark price")


# ---------------------------------------------------------------------------------------------------
# scalar reference (exact)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortfolioReport:
    """The reference result for one account (money in micro-USDC; see the module docstring)."""

    equity_micro: int  # rounded down
    im_micro: int  # rounded up
    mm_micro: int  # rounded up from im_micro
    free_micro: int  # equity - im - reserved
    im_raw_micro: int  # rounded up (before the floor)
    floor_micro: int  # rounded up
    exposure_micro: tuple[int, ...]  # (A,) E_a rounded down (0 for cash)
    shock_micro: tuple[int, ...]  # (A,) S_a rounded up (0 for cash and prediction assets)
    group_loss_micro: dict[str, int]  # rounded up
    scenario_pnl_micro: dict[str, int]  # rounded down


def _floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def calc_mm_micro(im_micro: int, mm_fraction_ppm: int) -> int:
    """``ceil(im * mm_fraction / 1e6)`` without an intermediate beyond int64 (the vector path shares it)."""
    q, r = divmod(im_micro, PPM)
    return q * mm_fraction_ppm + (r * mm_fraction_ppm + PPM - 1) // PPM


def calc_group_mixed(spec: RiskSpec, exposure_micro: Sequence[float | int | Fraction], asset_id: int) -> bool:
    """True when ``asset_id``'s risk group holds long and short exposure at once (O(group size)).

    ``exposure_micro`` is one account's row of E_a (MarginArrays.exposure_micro[row] or
    PortfolioReport.exposure_micro). In a mixed group a trade that shrinks one exposure may still
    raise the margin (it unwinds a hedge), so the pre-trade check gives no risk-reducing credit.
    """
    group = spec.assets[asset_id].group
    if not group:
        return False
    positive = negative = False
    for asset in spec.assets:
        if asset.group == group:
            e = exposure_micro[asset.asset_id]
            positive |= e > 0
            negative |= e < 0
    return positive and negative


class _Exact:
    """Exact intermediate values of one account (the reference's working state)."""

    def __init__(self, spec: RiskSpec, state: AccountState, prices: MarketPrices) -> None:
        check_state(spec, state, prices)
        self.spec, self.state, self.prices = spec, state, prices
        self.weighted = [
            calc_weighted_qty_exact(q, asset.weights)
            for q, asset in zip(state.balance, spec.assets, strict=True)
        ]
        self.exposure = [Fraction(0)] * len(spec.assets)
        for a, asset in enumerate(spec.assets):
            if asset.kind != AssetKind.CASH:
                self.exposure[a] = self.weighted[a] * prices.asset_price_micro[a] / asset.qty_scale
        for p, perp in enumerate(spec.perps):
            self.exposure[perp.underlying] += Fraction(
                state.perp_size_atoms[p] * prices.mark_micro[p], ATOMS_PER_UNIT
            )
        self.shock = [Fraction(0)] * len(spec.assets)
        self.move = [Fraction(0)] * len(spec.assets)
        for a, asset in enumerate(spec.assets):
            if asset.kind in (AssetKind.CRYPTO, AssetKind.EQUITY):
                mult = Fraction(prices.shock_multiplier_ppm[a], PPM)
                e = abs(self.exposure[a])
                self.shock[a] = mult * calc_tiered_requirement_exact(e, asset.shock)
                self.move[a] = self.shock[a] / e if e else mult * Fraction(asset.shock.rate_ppm[0], PPM)

    def equity(
        self, price_of: dict[int, Fraction] | None = None, mark_of: dict[int, Fraction] | None = None
    ) -> Fraction:
        """Equity with some prices replaced (``price_of[a]``, ``mark_of[p]``): the revaluation."""
        spec, state, prices = self.spec, self.state, self.prices
        total = Fraction(0)
        for a, asset in enumerate(spec.assets):
            price = (
                Fraction(prices.asset_price_micro[a])
                if price_of is None
                else price_of.get(a, Fraction(prices.asset_price_micro[a]))
            )
            total += self.weighted[a] * price / asset.qty_scale
        for p in range(len(spec.perps)):
            mark = (
                Fraction(prices.mark_micro[p])
                if mark_of is None
                else mark_of.get(p, Fraction(prices.mark_micro[p]))
            )
            total += state.perp_size_atoms[p] * mark / ATOMS_PER_UNIT - state.perp_cost_micro[p]
        return total

    def pnl_of_moves(self, moves: dict[int, Fraction], absolute: bool = False) -> Fraction:
        """P&L when asset ``a``'s price (and its perps' marks) move by ``moves[a]`` (relative), or
        become ``moves[a]`` (absolute, micro per unit)."""
        price_of: dict[int, Fraction] = {}
        mark_of: dict[int, Fraction] = {}
        for a, x in moves.items():
            price_of[a] = x if absolute else self.prices.asset_price_micro[a] * (1 + x)
        for p, perp in enumerate(self.spec.perps):
            if perp.underlying in moves:
                x = moves[perp.underlying]
                mark_of[p] = x if absolute else self.prices.mark_micro[p] * (1 + x)
        return self.equity(price_of, mark_of) - self.equity()


def calc_equity_exact(spec: RiskSpec, state: AccountState, prices: MarketPrices) -> Fraction:
    """Exact equity (micro-USDC) of one account: spec step 2."""
    return _Exact(spec, state, prices).equity()


def calc_scenarios_exact(spec: RiskSpec, ex: _Exact) -> dict[str, dict[str, Fraction]]:
    """Every scenario's exact P&L, grouped by risk group: spec step 5."""
    params = spec.params
    k = Fraction(params.vol_up_multiple_ppm, PPM)
    w = Fraction(params.vol_up_weight_ppm, PPM)
    out: dict[str, dict[str, Fraction]] = {}
    for group in spec.groups:
        members = [a.asset_id for a in spec.assets if a.group == group.name]
        g = group.name
        pnl: dict[str, Fraction] = {}
        if members and spec.assets[members[0]].kind == AssetKind.PREDICTION:
            a = members[0]
            pnl[f"{g}:resolve_0"] = ex.pnl_of_moves({a: Fraction(0)}, absolute=True)
            pnl[f"{g}:resolve_1"] = ex.pnl_of_moves({a: Fraction(MICRO_PER_UNIT)}, absolute=True)
        else:
            idio = Fraction(group.idio_ppm, PPM)
            pnl[f"{g}:down"] = ex.pnl_of_moves({a: -ex.move[a] for a in members})
            pnl[f"{g}:up"] = ex.pnl_of_moves({a: ex.move[a] for a in members})
            for a in members:
                sym = spec.assets[a].symbol
                pnl[f"{g}:{sym}:down"] = ex.pnl_of_moves({a: -idio * ex.move[a]})
                pnl[f"{g}:{sym}:up"] = ex.pnl_of_moves({a: idio * ex.move[a]})
            pnl[f"{g}:vol_up:down"] = w * ex.pnl_of_moves(
                {a: -min(k * ex.move[a], Fraction(1)) for a in members}
            )
            pnl[f"{g}:vol_up:up"] = w * ex.pnl_of_moves({a: k * ex.move[a] for a in members})
        out[g] = pnl
    return out


def calc_portfolio_margin(spec: RiskSpec, state: AccountState, prices: MarketPrices) -> PortfolioReport:
    """The reference: equity, IM, MM, free collateral and every scenario of one account, exactly.

    Rounding: equity and scenario P&L down, margins and losses up (micro-USDC), MM from the
    rounded IM. Raises ValueError when the shapes or prices do not fit ``spec``.
    """
    ex = _Exact(spec, state, prices)
    equity = ex.equity()
    scenarios = calc_scenarios_exact(spec, ex)
    losses = {g: max(Fraction(0), -min(pnl.values())) for g, pnl in scenarios.items()}
    total = sum(losses.values(), Fraction(0))
    largest = max(losses.values(), default=Fraction(0))
    im_raw = total - Fraction(spec.params.cross_group_offset_ppm, PPM) * (total - largest)
    floor = Fraction(0)
    for p, perp in enumerate(spec.perps):
        notional = Fraction(abs(state.perp_size_atoms[p]) * prices.mark_micro[p], ATOMS_PER_UNIT)
        floor += notional * Fraction(spec.assets[perp.underlying].floor_ppm, PPM)
    for a, asset in enumerate(spec.assets):
        if state.balance[a] < 0:
            liability = Fraction(-state.balance[a] * prices.asset_price_micro[a], asset.qty_scale)
            floor += liability * Fraction(asset.floor_ppm, PPM)
    im = _ceil(max(im_raw, floor))
    eq = _floor(equity)
    return PortfolioReport(
        equity_micro=eq,
        im_micro=im,
        mm_micro=calc_mm_micro(im, spec.params.mm_fraction_ppm),
        free_micro=eq - im - state.reserved_micro,
        im_raw_micro=_ceil(im_raw),
        floor_micro=_ceil(floor),
        exposure_micro=tuple(_floor(e) for e in ex.exposure),
        shock_micro=tuple(_ceil(s) for s in ex.shock),
        group_loss_micro={g: _ceil(v) for g, v in losses.items()},
        scenario_pnl_micro={name: _floor(v) for pnl in scenarios.values() for name, v in pnl.items()},
    )


# ---------------------------------------------------------------------------------------------------
# vectorised (numpy, many accounts)
# ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class MarginArrays:
    """Vectorised result for ``n`` accounts (rows in the order asked for).

    ``equity_micro``, ``im_micro``, ``mm_micro``, ``free_micro``: (n,) int64, rounded against the
    account. ``exposure_micro``: (n, A) float64 view of E_a (column 0, cash, is 0): what the
    pre-trade check needs per order (the asset's E_a, and :func:`calc_group_mixed` over the row).
    """

    equity_micro: NDArray[np.int64]
    im_micro: NDArray[np.int64]
    mm_micro: NDArray[np.int64]
    free_micro: NDArray[np.int64]
    exposure_micro: NDArray[np.float64]

    def copy(self) -> MarginArrays:
        """Arrays the caller owns (the recompute's are views into the layout's buffers)."""
        return MarginArrays(
            self.equity_micro.copy(),
            self.im_micro.copy(),
            self.mm_micro.copy(),
            self.free_micro.copy(),
            self.exposure_micro.copy(),
        )


class PortfolioLayout:
    """The spec compiled once into the index lists and coefficients the recompute loops over.

    Holds scratch buffers for the last row count it saw (reused between calls: a fresh 800 KB array
    per operation costs more in page faults than the arithmetic). One layout per thread.
    """

    def __init__(self, spec: RiskSpec) -> None:
        self.spec = spec
        self.n_assets = len(spec.assets)
        self.n_perps = len(spec.perps)
        self.group_names = tuple(g.name for g in spec.groups)
        # each asset's group index (-1: cash, in no group) and each group's member assets
        self.asset_group = tuple(self.group_names.index(a.group) if a.group else -1 for a in spec.assets)
        self.group_members = tuple(
            tuple(a.asset_id for a in spec.assets if a.group == g.name) for g in spec.groups
        )
        self.perp_underlying = np.array([p.underlying for p in spec.perps], dtype=np.intp)
        self.weights = [
            (a.weights.weight_ppm, calc_weight_addends(a.weights), a.weights.upper_atoms) for a in spec.assets
        ]
        self.shock_groups: list[tuple[int, list[int], float]] = []  # (group index, members, idio)
        self.prediction_groups: list[tuple[int, int]] = []  # (group index, asset)
        for gi, group in enumerate(spec.groups):
            members = [a.asset_id for a in spec.assets if a.group == group.name]
            if members and spec.assets[members[0]].kind == AssetKind.PREDICTION:
                self.prediction_groups.append((gi, members[0]))
            elif members:
                self.shock_groups.append((gi, members, group.idio_ppm / PPM))
        self.risky = [a.asset_id for a in spec.assets if a.kind in (AssetKind.CRYPTO, AssetKind.EQUITY)]
        self.prediction = [a.asset_id for a in spec.assets if a.kind == AssetKind.PREDICTION]
        self.non_cash = [a.asset_id for a in spec.assets if a.kind != AssetKind.CASH]
        self.perp_assets = {p.underlying for p in spec.perps}
        self.gross_assets = [a.asset_id for a in spec.assets if a.floor_ppm or a.asset_id in self.perp_assets]
        by_floor: dict[int, list[int]] = {}
        for a in self.gross_assets:
            by_floor.setdefault(spec.assets[a].floor_ppm, []).append(a)
        self.gross_by_floor = sorted(by_floor.items())
        params = spec.params
        self.k = params.vol_up_multiple_ppm / PPM
        self.w = params.vol_up_weight_ppm / PPM
        self.offset = params.cross_group_offset_ppm / PPM
        self._capacity = -1
        self._store: dict[str, NDArray[Any]] = {}

    def buffers(self, n: int) -> dict[str, NDArray[Any]]:
        """Scratch and output arrays for ``n`` rows: views of buffers sized for the largest ``n`` yet."""
        if n > self._capacity:
            a, g, c = self.n_assets, len(self.spec.groups), n
            self._store = {
                "exposure": np.empty((a, c)),
                "gross": np.empty((a, c)),
                "shock": np.empty((a, c)),
                "signed": np.empty((a, c)),
                "loss": np.empty((g, c)),
                "mask": np.empty(c, dtype=np.bool_),
                "equity": np.empty(c),
                "magnitude": np.empty(c),
                "floor": np.empty(c),
                "t1": np.empty(c),
                "t2": np.empty(c),
                "t3": np.empty(c),
                "i1": np.empty(c, dtype=np.int64),
                "i2": np.empty(c, dtype=np.int64),
                "out_equity": np.empty(c, dtype=np.int64),
                "out_im": np.empty(c, dtype=np.int64),
                "out_mm": np.empty(c, dtype=np.int64),
                "out_free": np.empty(c, dtype=np.int64),
            }
            self._capacity = n
        return {name: arr[..., :n] for name, arr in self._store.items()}


def _fold_pieces(
    x: NDArray[Any],
    out: NDArray[np.float64],
    slopes: tuple[float, ...],
    intercepts: tuple[float, ...],
    mask: NDArray[np.bool_],
    tmp: NDArray[np.float64],
    fold: Any,
) -> None:
    """Fold the pieces ``x * slope + intercept`` into ``out`` with ``fold`` (np.minimum/np.maximum)
    on the rows where ``mask`` is set (every other row already holds its exact value).

    Where few rows are masked (the usual case) only those rows are gathered; otherwise every row
    is computed densely and written where masked. Either way only masked rows are folded: a piece
    that cannot bind mathematically can still win by one ulp, and a row's bytes must not depend on
    which other rows share its call (nor differ from the compiled twin, ``engine.native._hxmargin``).
    """
    count = int(np.count_nonzero(mask))
    if count == 0:
        return
    if count * 8 < x.shape[0]:
        idx = np.flatnonzero(mask)
        out[idx] = _fold_rows(x[idx].astype(np.float64), out[idx], slopes, intercepts, fold)
        return
    for slope, intercept in zip(slopes, intercepts, strict=True):
        np.multiply(x, slope, out=tmp)
        if intercept:
            tmp += intercept
        fold(out, tmp, out=out, where=mask)


def _fold_rows(
    xs: NDArray[np.float64],
    best: NDArray[np.float64],
    slopes: tuple[float, ...],
    intercepts: tuple[float, ...],
    fold: Any,
) -> NDArray[np.float64]:
    """``best`` folded with each piece ``xs * slope (+ intercept where it is not 0)``, in order:
    the one sequence of operations every path (and the compiled twin) applies to a folded row."""
    for slope, intercept in zip(slopes, intercepts, strict=True):
        piece = xs * slope
        if intercept:
            piece += intercept
        fold(best, piece, out=best)
    return best


def calc_portfolio_margin_arrays(
    layout: PortfolioLayout,
    balance: NDArray[np.int64],
    perp_size_atoms: NDArray[np.int64],
    perp_cost_micro: NDArray[np.int64] | None,
    asset_price_micro: NDArray[np.int64],
    mark_micro: NDArray[np.int64],
    shock_multiplier_ppm: NDArray[np.int64],
    reserved_micro: NDArray[np.int64] | None = None,
    rows: NDArray[np.intp] | None = None,
    perp_cost_total_micro: NDArray[np.int64] | None = None,
) -> MarginArrays:
    """Equity, IM, MM and free collateral of many accounts at once (spec in the module docstring).

    Parameters
    ----------
    layout : the compiled spec (:class:`PortfolioLayout`, built once; owns the scratch buffers).
    balance : (N, A) int64, asset quantities (micro for USDC, atoms otherwise).
    perp_size_atoms : (N, P) int64.
    perp_cost_micro : (N, P) int64, or None when ``perp_cost_total_micro`` is given.
    asset_price_micro : (A,) int64; ``[0]`` is 1_000_000.
    mark_micro : (P,) int64.
    shock_multiplier_ppm : (A,) int64, each >= 1e6.
    reserved_micro : (N,) int64, the open-order reservation (None: 0).
    rows : indices of the accounts to recompute (None: all); results come in this order.
    perp_cost_total_micro : (N,) int64, optional ``perp_cost_micro.sum(axis=1)`` kept by the
        caller (it changes only on fills): saves the one reduction over (N, P).

    Layout: Fortran order for ``balance`` and ``perp_size_atoms`` (``np.asfortranarray``: each
    asset's / market's column contiguous) is the fast one; any order is accepted (a strided
    column costs several times more per pass).

    Returns
    -------
    MarginArrays with ``n = len(rows)`` (or N) rows, all of them VIEWS into the layout's buffers,
    valid until the next call with the same layout (copy what you keep: ``result.copy()``).
    Equity is rounded down and IM up after moving each ``2 * SAFETY_REL * growth * magnitude +
    SAFETY_ABS_MICRO`` against the account (see the module docstring); MM is
    ``ceil(IM * mm_fraction)`` exactly from the rounded IM. Raises OverflowError when an equity or
    IM is beyond ``MAX_MAGNITUDE_MICRO`` (2**62 micro: 4.6e12 USDC).
    """
    spec = layout.spec
    if rows is not None:
        balance = balance[rows]
        perp_size_atoms = perp_size_atoms[rows]
        if perp_cost_total_micro is not None:
            perp_cost_total_micro = perp_cost_total_micro[rows]
        elif perp_cost_micro is not None:
            perp_cost_micro = perp_cost_micro[rows]
        if reserved_micro is not None:
            reserved_micro = reserved_micro[rows]
    n = balance.shape[0]
    buf = layout.buffers(n)
    expo, gross, shock, signed = buf["exposure"], buf["gross"], buf["shock"], buf["signed"]
    equity, mag, floor, mask = buf["equity"], buf["magnitude"], buf["floor"], buf["mask"]
    t1, t2, t3, i1, i2 = buf["t1"], buf["t2"], buf["t3"], buf["i1"], buf["i2"]
    prices = [int(x) for x in asset_price_micro]
    marks = [int(x) for x in mark_micro]
    mults = [int(x) for x in shock_multiplier_ppm]
    k, w = layout.k, layout.w

    # 1-3. spot values: W-or-q times the price. Everywhere the first tier's piece q * w0 * scale,
    # then the rows outside [0, first edge] (liabilities: slope 1; large holdings: later tiers)
    # fixed exactly - sparsely where they are few. gross = the liability's value where it is floored.
    np.copyto(expo[0], balance[:, 0], casting="unsafe")
    np.abs(expo[0], out=mag)
    for a in layout.non_cash:
        asset = spec.assets[a]
        q = balance[:, a]
        row = expo[a]
        scale = prices[a] / asset.qty_scale
        weights, addends, upper = layout.weights[a]
        slopes = (weights[0] * scale / PPM, scale, *(wt * scale / PPM for wt in weights[1:]))
        intercepts = (0.0, 0.0, *(c * scale / PPM for c in addends[1:]))
        tiered = weights[0] < PPM or len(weights) > 1
        edge0 = np.uint64(upper[0] if upper else INT64_MAX)
        if np.count_nonzero(q) * 8 < n:  # few holders: value them alone (most columns of a big book)
            row[:] = 0.0
            idx = np.flatnonzero(q)
            qs = q[idx].astype(np.float64)
            values = qs * slopes[0]
            if tiered:  # fold exactly the rows the dense path folds (liabilities, past the first edge)
                far = np.flatnonzero(q[idx].view(np.uint64) > edge0)
                if len(far):
                    values[far] = _fold_rows(qs[far], values[far], slopes[1:], intercepts[1:], np.minimum)
            row[idx] = values
            mag[idx] += np.abs(values)
            if asset.floor_ppm or a in layout.perp_assets:
                gross[a] = 0.0
                if asset.floor_ppm:
                    gross[a][idx] = np.maximum(-values, 0.0)  # a liability's value
            continue
        np.multiply(q, slopes[0], out=row)
        if tiered:
            np.greater(q.view(np.uint64), edge0, out=mask)  # q < 0 wraps above 2**63
            _fold_pieces(q, row, slopes[1:], intercepts[1:], mask, t2, np.minimum)
        np.abs(row, out=t1)
        mag += t1
        if asset.floor_ppm:
            np.negative(row, out=gross[a])  # a liability's value: exactly -q * price / scale
            np.maximum(gross[a], 0.0, out=gross[a])
        elif a in layout.perp_assets:
            gross[a] = 0.0
    # perps: notional into the underlying's exposure and into its gross notional
    for p in range(layout.n_perps):
        a = int(layout.perp_underlying[p])
        np.multiply(perp_size_atoms[:, p], marks[p] / ATOMS_PER_UNIT, out=t1)
        expo[a] += t1
        np.abs(t1, out=t1)
        gross[a] += t1
    # equity = cash + spot values + perp notionals (all summed in expo by now) - total cost
    np.copyto(equity, expo[0])
    for a in layout.non_cash:
        equity += expo[a]
    if perp_cost_total_micro is None:
        perp_cost_total_micro = i1
        i1[:] = 0
        if perp_cost_micro is not None:
            for p in range(layout.n_perps):
                i1 += perp_cost_micro[:, p]
    np.copyto(t1, perp_cost_total_micro, casting="unsafe")
    equity -= t1
    np.abs(t1, out=t1)
    mag += t1
    expo[0] = 0.0

    # 7. floor on gross notional (perp notional + liability value), assets with one floor rate
    # summed first; the magnitude takes the gross too
    floor[:] = 0.0
    for floor_ppm, members in layout.gross_by_floor:
        np.copyto(t1, gross[members[0]])
        for a in members[1:]:
            t1 += gross[a]
        mag += t1
        if floor_ppm:
            t1 *= floor_ppm / PPM
            floor += t1

    # 4. shocks of risky assets and their signs: in the first tier the signed shock is E * rate0 * m;
    # rows past the first edge are folded in exactly
    for a in layout.risky:
        asset = spec.assets[a]
        mult = mults[a] / PPM
        rates, deds = asset.shock.rate_ppm, asset.shock.deduction_micro_ppm
        first = rates[0] * mult / PPM
        np.multiply(expo[a], first, out=signed[a])
        np.abs(signed[a], out=shock[a])
        if len(rates) > 1 and float(shock[a].max(initial=0.0)) > asset.shock.upper_micro[0] * first:
            np.greater(shock[a], asset.shock.upper_micro[0] * first, out=mask)
            idx = np.flatnonzero(mask)
            e = expo[a][idx]
            e_abs = np.abs(e)
            best = shock[a][idx]
            for rate, ded in zip(rates[1:], deds[1:], strict=True):
                np.maximum(best, e_abs * (rate * mult / PPM) - ded * mult / PPM, out=best)
            shock[a][idx] = best
            signed[a][idx] = np.copysign(best, e)

    # 5-6. group losses: max(0, |sum of signed shocks| (down, up), idio * max shock, vol_up)
    loss = buf["loss"]
    for gi, members, idio in layout.shock_groups:
        lg = loss[gi]
        if len(members) == 1:
            s_sum = signed[members[0]]
            np.abs(s_sum, out=lg)
        else:
            s_sum = t1
            np.add(signed[members[0]], signed[members[1]], out=s_sum)
            for a in members[2:]:
                s_sum += signed[a]
            np.abs(s_sum, out=lg)
            if idio > 0.0:  # (alone in its group, an asset's idio move never beats the group move)
                np.maximum(shock[members[0]], shock[members[1]], out=t2)
                for a in members[2:]:
                    np.maximum(t2, shock[a], out=t2)
                t2 *= idio
                np.maximum(lg, t2, out=lg)
        if w * k > 1.0:
            np.multiply(s_sum, -w * k, out=t2)
            np.maximum(lg, t2, out=lg)
        # vol_up:down caps the fall at -100%; while no move reaches the cap it is w*k times the
        # down move, which w*k <= 1 keeps below |sum|: then it cannot bind and is skipped
        largest_move = max(k * spec.assets[a].shock.rate_ppm[-1] * mults[a] / PPM / PPM for a in members)
        if w > 0.0 and (largest_move > 1.0 or w * k > 1.0):
            ext = t2
            ext[:] = 0.0
            for a in members:
                np.multiply(shock[a], k, out=t3)
                np.abs(expo[a], out=t1)
                np.minimum(t3, t1, out=t3)
                np.copysign(t3, expo[a], out=t3)
                ext += t3
            ext *= w
            np.maximum(lg, ext, out=lg)
    for gi, a in layout.prediction_groups:
        lg = loss[gi]
        # long: resolving to 0 loses the weighted value; short: resolving to 1 loses |q| * (1 - price)
        np.multiply(balance[:, a], -(MICRO_PER_UNIT - prices[a]) / ATOMS_PER_UNIT, out=t1)
        np.maximum(expo[a], t1, out=lg)
    im = t3
    im[:] = 0.0
    if len(spec.groups):
        np.maximum(loss, 0.0, out=loss)
        largest = t2
        largest[:] = 0.0
        for gi in range(len(spec.groups)):
            im += loss[gi]
            np.maximum(largest, loss[gi], out=largest)
        im *= 1.0 - layout.offset
        largest *= layout.offset
        im += largest
    np.maximum(im, floor, out=im)

    # 8. round against the account with the safety margin (every loss is at most growth x the
    # magnitude, so the float error bound scales with it)
    growth = (1.0 + k) * max(mults, default=PPM) / PPM
    np.multiply(mag, 2.0 * SAFETY_REL * growth, out=t1)
    t1 += SAFETY_ABS_MICRO
    im += t1
    equity -= t1
    if n and max(float(im.max()), -float(equity.min()), float(equity.max())) > MAX_MAGNITUDE_MICRO:
        raise OverflowError("an equity or margin beyond what the vectorised recompute rounds to int64 safely")
    out_im, out_eq, out_mm, out_free = buf["out_im"], buf["out_equity"], buf["out_mm"], buf["out_free"]
    np.ceil(im, out=im)
    np.copyto(out_im, im, casting="unsafe")
    np.floor(equity, out=equity)
    np.copyto(out_eq, equity, casting="unsafe")
    # MM = ceil(IM * f / 1e6) exactly, as q*f + ceil(r*f / 1e6) with IM = q*1e6 + r (no overflow)
    f = spec.params.mm_fraction_ppm
    np.floor_divide(out_im, PPM, out=i1)
    np.multiply(i1, PPM, out=i2)
    np.subtract(out_im, i2, out=i2)
    np.multiply(i1, f, out=out_mm)
    i2 *= f
    i2 += PPM - 1
    np.floor_divide(i2, PPM, out=i2)
    out_mm += i2
    np.subtract(out_eq, out_im, out=out_free)
    if reserved_micro is not None:
        out_free -= reserved_micro
    return MarginArrays(
        equity_micro=out_eq,
        im_micro=out_im,
        mm_micro=out_mm,
        free_micro=out_free,
        exposure_micro=expo.T,
    )


__all__ = [
    "AccountState",
    "MarginArrays",
    "MarketPrices",
    "PortfolioLayout",
    "PortfolioReport",
    "calc_equity_exact",
    "calc_group_mixed",
    "calc_mm_micro",
    "calc_portfolio_margin",
    "calc_portfolio_margin_arrays",
    "calc_scenarios_exact",
    "check_state",
    "neutral_multipliers",
]
