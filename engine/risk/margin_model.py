"""The margin model the risk engine asks: an order's reservation and every account's requirements.

It binds the pure maths of ``engine.math`` (unified portfolio margin, the pre-trade bound, the
dynamic shock) to the partition's state, against the account every time (reserve up, equity down,
margin up):

* ``order_reserve``: ``engine.math.pre_trade.calc_order_impact``, an O(1) upper bound on how much
  the order can take from free collateral if it fills anywhere within its limit, from the
  account's exposure of the last recomputation (recomputed first if it moved since);
* ``recompute``: ``engine.math.portfolio_margin.calc_portfolio_margin_arrays`` over many rows at
  once (vectorised), at the current prices, marks and shock multipliers; its compiled twin
  (``engine.risk.native_margin``, same bytes) runs instead when built and asked for (``native``:
  ``NativeRiskEngine`` does, the Python ``RiskEngine``, the specification, does not);
* ``multipliers``: each asset's dynamic shock multiplier from the EWMA of its price returns,
  widened while its equity session is closed or its oracle stale
  (``engine.math.dynamic_shock``), updated on every price the engine applies.
"""

from __future__ import annotations

import numpy as np

from engine.math.dynamic_shock import calc_ewma_variance_ppm2, calc_return_ppm, calc_shock_multiplier_ppm
from engine.math.portfolio_margin import PortfolioLayout, calc_group_mixed, calc_portfolio_margin_arrays
from engine.math.pre_trade import BUY, SELL, calc_order_impact
from engine.risk import native_margin
from engine.risk.account_book import AccountBook, near_flags
from engine.risk.native_margin import CompiledRecompute
from engine.risk.risk_config import RiskConfig, RiskMarket
from engine.risk.risk_spec_builder import build_risk_spec
from engine.types.enums import Side
from engine.types.fixed import PPM
from engine.types.risk_spec import AssetKind, RiskSpec


class MarginModel:
    def __init__(self, config: RiskConfig, spec: RiskSpec | None = None, native: bool = False) -> None:
        self.config = config
        self.spec = spec or build_risk_spec(config, config.risk_overrides)
        self.layout = PortfolioLayout(self.spec)
        self.compiled: CompiledRecompute | None = None
        if native and native_margin.AVAILABLE:
            try:
                self.compiled = CompiledRecompute(self.layout)
            except ValueError:  # a spec the compiled twin does not cover: numpy alone
                self.compiled = None
        n = config.n_assets
        self.variance_ppm2 = np.zeros(n, np.int64)  # EWMA of squared returns per asset
        self.last_price = np.zeros(n, np.int64)
        self.multiplier = np.full(n, PPM, np.int64)

    # ---- dynamic shock ---------------------------------------------------------------------------
    def on_price(self, asset: int, price_micro: int, closed: bool, stale: bool) -> None:
        """A new price of ``asset``: update its volatility estimate and shock multiplier."""
        if asset == 0:
            return
        spec = self.spec.assets[asset]
        prev = int(self.last_price[asset])
        if prev > 0 and price_micro > 0:
            r = calc_return_ppm(prev, price_micro)
            self.variance_ppm2[asset] = calc_ewma_variance_ppm2(
                int(self.variance_ppm2[asset]), r, spec.dynamic.ewma_lambda_ppm
            )
        if price_micro > 0:
            self.last_price[asset] = price_micro
        self.update_multiplier(asset, closed, stale)

    def update_multiplier(self, asset: int, closed: bool, stale: bool) -> None:
        if asset == 0:
            return
        spec = self.spec.assets[asset]
        self.multiplier[asset] = calc_shock_multiplier_ppm(
            int(self.variance_ppm2[asset]), spec.dynamic, closed, stale
        )

    # ---- pre-trade -------------------------------------------------------------------------------
    def order_reserve(
        self,
        book: AccountBook,
        row: int,
        market: RiskMarket,
        side: int,
        size_atoms: int,
        limit_price_micro: int,
        mark_micro: int,
    ) -> int:
        """Upper bound (micro) on the free collateral the order can consume if it fills; >= 0."""
        a = market.base_asset
        exposure = book.exposure[row]
        impact = calc_order_impact(
            self.spec,
            asset_id=a,
            perp_id=market.perp if market.is_perp else None,
            side=BUY if side == Side.BUY else SELL,
            qty_atoms=size_atoms,
            limit_price_micro=limit_price_micro,
            price_micro=mark_micro,
            exposure_micro=float(exposure[a]),
            group_mixed=calc_group_mixed(self.spec, exposure, a),
            balance_atoms=int(book.balance[row, a]),
            perp_size_atoms=int(book.perp_size[row, market.perp]) if market.is_perp else 0,
            shock_multiplier_ppm=int(self.multiplier[a]),
            lot_atoms=market.lot_size_atoms,
        )
        return max(0, impact.reserve_micro)

    def withdraw_impact(self, asset: int, amount: int, price_micro: int) -> int:
        """Free collateral an amount of ``asset`` leaving takes: its full value, rounded up (more
        than its weighted value and any margin it backed could need)."""
        scale = self.spec.assets[asset].qty_scale
        return -((-amount * price_micro) // scale)

    def im_rate(self, market: RiskMarket) -> int:
        """The first-tier shock rate of the market's risk, with its multiplier (ppm)."""
        a = market.base_asset
        spec = self.spec.assets[a]
        if spec.kind == AssetKind.PREDICTION:
            return PPM
        return spec.shock.rate_ppm[0] * int(self.multiplier[a]) // PPM

    def max_leverage(self, market: RiskMarket) -> int:
        """The most leverage a position may choose: 1 / the market's first initial-margin bracket."""
        if not market.is_perp:
            return 1
        return max(1, PPM // self.spec.perps[market.perp].brackets.imr_ppm[0])

    # ---- recomputation ---------------------------------------------------------------------------
    def recompute(
        self, book: AccountBook, rows: np.ndarray, prices: np.ndarray, marks: np.ndarray
    ) -> np.ndarray:
        """Equity, initial and maintenance margin and exposures of ``rows``, written into the book;
        returns the rows (of ``rows``, in order) whose equity, initial or maintenance changed.

        The compiled twin (``engine.risk.native_margin``) runs when it is built and ``native`` was
        asked for; the numpy function is its specification and gives the same bytes."""
        if not len(rows):
            return rows
        if self.compiled is not None:
            return self.compiled(book, rows, prices, marks, self.multiplier)
        before = (book.equity[rows].copy(), book.initial[rows].copy(), book.maintenance[rows].copy())
        self._recompute_numpy(book, rows, prices, marks)
        changed = (
            (book.equity[rows] != before[0])
            | (book.initial[rows] != before[1])
            | (book.maintenance[rows] != before[2])
        )
        return rows[changed]

    def _recompute_numpy(
        self, book: AccountBook, rows: np.ndarray, prices: np.ndarray, marks: np.ndarray
    ) -> None:
        n = book.count
        res = calc_portfolio_margin_arrays(
            self.layout,
            book.balance[:n],
            book.perp_size[:n],
            book.perp_cost[:n],
            prices,
            marks,
            self.multiplier,
            rows=rows,
        )
        book.equity[rows] = res.equity_micro
        book.initial[rows] = res.im_micro
        book.maintenance[rows] = res.mm_micro
        book.exposure[rows] = res.exposure_micro
        # Nothing estimated for an account that holds only cash: exact figures, no safety margin
        # (a user who deposited 100 USDC and trades nothing can take out exactly 100)
        cash_only = ~(
            book.balance[rows, 1:].any(axis=1)
            | book.perp_size[rows].any(axis=1)
            | book.perp_cost[rows].any(axis=1)
        )
        if cash_only.any():
            exact = rows[cash_only]
            book.equity[exact] = book.balance[exact, 0]
            book.initial[exact] = 0
            book.maintenance[exact] = 0
        book.near[rows] = near_flags(book.equity[rows], book.maintenance[rows])
