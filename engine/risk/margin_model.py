"""The margin model the risk engine asks: an order's reservation and every account's requirements.

Two questions, both answered against the account (reserve up, equity down, margin up):

* ``order_reserve``: an O(1) upper bound on how much an order can reduce the account's free
  collateral when it fills anywhere within its limit (its margin at the asset's rate, what its
  price gives away against the mark, its fee). Orders that only reduce a position reserve what
  their price gives away and their fee, nothing for margin;
* ``recompute``: equity, initial and maintenance margin of many accounts at once, vectorised.

This is the per-asset model (each asset's net exposure at a rate, haircut collateral); the
portfolio scenario grid replaces ``recompute``'s requirement when it lands, behind the same calls.
"""

from __future__ import annotations

import numpy as np

from engine.risk.account_book import AccountBook
from engine.risk.risk_config import RiskConfig, RiskMarket
from engine.types.enums import AssetKind, Side
from engine.types.fixed import ATOMS_PER_UNIT, PPM

# per asset kind: (initial margin rate, collateral weight), ppm
_DEFAULTS = {
    AssetKind.STABLE: (0, PPM),
    AssetKind.CRYPTO: (100_000, 900_000),
    AssetKind.EQUITY: (200_000, 800_000),
    AssetKind.PREDICTION: (PPM, PPM),  # a share can go to 0 or 1: its whole price is at risk
}
MAINTENANCE_FRACTION_PPM = 500_000


class MarginModel:
    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        kinds = [a.kind for a in config.assets]
        self.im_ppm = np.array([_DEFAULTS[k][0] for k in kinds], np.int64)
        self.weight_ppm = np.array([_DEFAULTS[k][1] for k in kinds], np.int64)
        self.scale = np.array([a.scale for a in config.assets], np.int64)
        self.is_prediction = np.array([k == AssetKind.PREDICTION for k in kinds])
        self.perp_asset = np.array([config.markets[m].base_asset for m in config.perps], np.intp)

    # ---- pre-trade -------------------------------------------------------------------------------
    def order_reserve(
        self,
        book: AccountBook,
        row: int,
        market: RiskMarket,
        side: int,
        size_atoms: int,
        price_micro: int,
        reduces: bool,
        mark_micro: int,
    ) -> int:
        """Upper bound (micro) on the free collateral the order can consume; >= 0."""
        notional = size_atoms * price_micro // ATOMS_PER_UNIT + 1
        fee = notional * max(market.taker_fee_ppm, market.maker_fee_ppm, 0) // PPM + 1
        ref = mark_micro or price_micro
        if side == Side.BUY:
            give_away = max(0, (price_micro - ref) * size_atoms // ATOMS_PER_UNIT + 1)
        else:
            give_away = max(0, (ref - price_micro) * size_atoms // ATOMS_PER_UNIT + 1)
        if reduces:
            return give_away + fee
        a = market.base_asset
        rate = int(self.im_ppm[a])
        worst = max(price_micro, ref)
        margin = size_atoms * worst // ATOMS_PER_UNIT * rate // PPM + 1
        haircut = 0
        if not market.is_perp and side == Side.BUY:  # what is bought counts at its weight only
            haircut = size_atoms * worst // ATOMS_PER_UNIT * (PPM - int(self.weight_ppm[a])) // PPM + 1
        return margin + give_away + fee + haircut

    def im_rate(self, market: RiskMarket) -> int:
        """The initial margin rate of the market's risk (ppm): the rate liquidation steps use."""
        return int(self.im_ppm[market.base_asset])

    def max_leverage(self, market: RiskMarket) -> int:
        """The most leverage the market allows (1 / its initial margin rate)."""
        rate = int(self.im_ppm[market.base_asset])
        return max(1, PPM // rate) if rate else 100

    def withdraw_impact(self, asset: int, amount: int, price_micro: int) -> int:
        """Free collateral an amount of ``asset`` leaving takes: its value, rounded up."""
        return -((-amount * price_micro) // int(self.scale[asset]))

    # ---- recomputation ---------------------------------------------------------------------------
    def recompute(self, book: AccountBook, rows: np.ndarray, prices: np.ndarray, marks: np.ndarray) -> None:
        """Equity, initial and maintenance margin of ``rows`` (micro), written into the book."""
        if not len(rows):
            return
        bal = book.balance[rows].astype(np.float64)
        bal[:, 0] = 0.0  # the settlement asset counts exactly, below
        px = prices.astype(np.float64) / self.scale  # micro per quantity unit
        value = bal * px
        weighted = np.where(bal > 0, value * (self.weight_ppm / PPM), value)
        size = book.perp_size[rows].astype(np.float64)
        perp_value = size * (marks.astype(np.float64) / ATOMS_PER_UNIT)
        exact = book.balance[rows, 0] - book.perp_cost[rows].sum(axis=1)  # int64, no rounding
        estimated = weighted.sum(axis=1) + perp_value.sum(axis=1)
        exposure = weighted
        for p, a in enumerate(self.perp_asset.tolist()):
            exposure[:, a] += perp_value[:, p]
        loss = np.abs(exposure) * (self.im_ppm / PPM)
        if self.is_prediction.any():  # a short share loses (1 - price) at most, a long one its price
            pm = self.is_prediction
            qty = bal[:, pm] / self.scale[pm]
            loss[:, pm] = np.where(qty > 0, qty * prices[pm], -qty * (1_000_000.0 - prices[pm]))
        initial = loss.sum(axis=1)
        # against the account: the float64 estimates move 1 micro against it (covers their error
        # at these magnitudes); exact parts stay exact
        book.equity[rows] = exact + np.floor(estimated).astype(np.int64) - (estimated != 0)
        book.initial[rows] = np.ceil(initial).astype(np.int64) + (initial > 0)
        book.maintenance[rows] = np.ceil(initial * (MAINTENANCE_FRACTION_PPM / PPM)).astype(np.int64) + (
            initial > 0
        )
