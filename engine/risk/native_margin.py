"""The compiled margin recompute: ``engine.native._hxmargin`` and the plan it runs.

``calc_portfolio_margin_arrays`` (numpy, column by column) is the specification; the compiled
twin walks the same double operations row by row, which a full recompute of 100,000 accounts
needs (numpy makes ~40 passes over every column; the twin reads each row once). The twin knows
nothing of the spec: :func:`build_plan` turns the spec, the prices, the marks and the shock
multipliers into two flat arrays (int64, float64) with exactly the expressions the numpy function
evaluates, so every coefficient is the same double. Plans are cached while the inputs are equal
(a mark move changes one perp's coefficient; a fill changes nothing).

``tests/engine/risk/test_native_margin.py`` holds the two to the same bytes.
"""

from __future__ import annotations

import os

import numpy as np

from engine.math.portfolio_margin import MAX_MAGNITUDE_MICRO, SAFETY_ABS_MICRO, SAFETY_REL, PortfolioLayout
from engine.risk.account_book import NEAR_REACH
from engine.types.fixed import ATOMS_PER_UNIT, INT64_MAX, MICRO_PER_UNIT, PPM

try:
    from engine.native import _hxmargin
except ImportError:  # pragma: no cover - the build makes it; the numpy twin runs without it
    _hxmargin = None  # type: ignore[assignment]

AVAILABLE = _hxmargin is not None


def build_plan(
    layout: PortfolioLayout, prices: np.ndarray, marks: np.ndarray, mults: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The plan ``_hxmargin.recompute`` reads, in its order (see the C file's ``plan_read``).

    Raises ValueError for a spec the compiled twin does not cover (a group that is neither a
    shock group nor a prediction group); the caller then keeps the numpy path."""
    ints, dbls, _at = _build_plan(layout, prices, marks, mults)
    return ints, dbls


def _perp_coefficients(marks: np.ndarray) -> list[float]:
    """Each perp's coefficient in the plan: its mark per atom (the only place marks enter it)."""
    return [int(x) / ATOMS_PER_UNIT for x in marks]


def _spot_doubles(layout: PortfolioLayout, a: int, price_micro: int) -> list[float]:
    """A non-cash asset's slopes and intercepts at a price (its only price-dependent doubles
    besides a prediction group's coefficient)."""
    scale = price_micro / layout.spec.assets[a].qty_scale
    weights, addends, _upper = layout.weights[a]
    slopes = (weights[0] * scale / PPM, scale, *(wt * scale / PPM for wt in weights[1:]))
    intercepts = (0.0, 0.0, *(c * scale / PPM for c in addends[1:]))
    return [*slopes, *intercepts]


def _prediction_double(price_micro: int) -> float:
    """A prediction group's coefficient: minus the NO share's value per atom."""
    return -(MICRO_PER_UNIT - price_micro) / ATOMS_PER_UNIT


class _Where:
    """Where a plan's price- and mark-dependent doubles sit, to move them without a rebuild."""

    def __init__(self) -> None:
        self.perp_at = 0
        self.spot_at: dict[int, int] = {}  # asset -> index of its first slope
        self.prediction_at: dict[int, list[int]] = {}  # asset -> its prediction groups' coefficients


def _build_plan(
    layout: PortfolioLayout, prices: np.ndarray, marks: np.ndarray, mults: np.ndarray
) -> tuple[np.ndarray, np.ndarray, _Where]:
    """:func:`build_plan`, and where its price- and mark-dependent doubles are."""
    spec = layout.spec
    where = _Where()
    p_ = [int(x) for x in prices]
    mu = [int(x) for x in mults]
    k, w = layout.k, layout.w
    ints: list[int] = [layout.n_assets, layout.n_perps, len(spec.groups), len(layout.non_cash)]
    dbls: list[float] = []
    covered = {gi for gi, _m, _i in layout.shock_groups} | {gi for gi, _a in layout.prediction_groups}
    if covered != set(range(len(spec.groups))):
        raise ValueError("a risk group with no members: the compiled recompute does not cover it")
    for a in layout.non_cash:
        asset = spec.assets[a]
        weights, _addends, upper = layout.weights[a]
        tiered = weights[0] < PPM or len(weights) > 1
        edge0 = upper[0] if upper else INT64_MAX
        pieces = len(weights) + 1  # (the first tier's slope, the liability's, the later tiers')
        ints += [a, pieces, int(tiered), int(bool(asset.floor_ppm)), int(a in layout.perp_assets), edge0]
        where.spot_at[a] = len(dbls)
        dbls += _spot_doubles(layout, a, p_[a])
    where.perp_at = len(dbls)
    for p in range(layout.n_perps):
        ints.append(int(layout.perp_underlying[p]))
    dbls += _perp_coefficients(marks)
    ints.append(len(layout.gross_by_floor))
    for floor_ppm, members in layout.gross_by_floor:
        ints += [int(bool(floor_ppm)), len(members)]
        dbls.append(floor_ppm / PPM)
        ints += members
    ints.append(len(layout.risky))
    for a in layout.risky:
        asset = spec.assets[a]
        mult = mu[a] / PPM
        rates, deds = asset.shock.rate_ppm, asset.shock.deduction_micro_ppm
        first = rates[0] * mult / PPM
        extra = len(rates) - 1
        ints += [a, extra]
        dbls += [first, asset.shock.upper_micro[0] * first if extra else 0.0]
        for rate, ded in zip(rates[1:], deds[1:], strict=True):
            dbls += [rate * mult / PPM, ded * mult / PPM]
    ints += [len(layout.shock_groups), int(w * k > 1.0)]
    dbls += [-w * k, k, w]
    for gi, members, idio in layout.shock_groups:
        largest_move = max(k * spec.assets[a].shock.rate_ppm[-1] * mu[a] / PPM / PPM for a in members)
        ext = w > 0.0 and (largest_move > 1.0 or w * k > 1.0)
        ints += [gi, len(members), int(ext), int(len(members) > 1 and idio > 0.0)]
        dbls.append(idio)
        ints += members
    ints.append(len(layout.prediction_groups))
    for gi, a in layout.prediction_groups:
        ints += [gi, a]
        where.prediction_at.setdefault(a, []).append(len(dbls))
        dbls.append(_prediction_double(p_[a]))
    growth = (1.0 + k) * max(mu, default=PPM) / PPM
    ints.append(spec.params.mm_fraction_ppm)
    dbls += [
        1.0 - layout.offset,
        layout.offset,
        2.0 * SAFETY_REL * growth,
        SAFETY_ABS_MICRO,
        MAX_MAGNITUDE_MICRO,
    ]
    return np.array(ints, np.int64), np.array(dbls, np.float64), where


class CompiledRecompute:
    """``recompute(book, rows, prices, marks, mults)`` in C, against the book's columns in place."""

    def __init__(self, layout: PortfolioLayout, threads: int | None = None) -> None:
        if _hxmargin is None:
            raise ImportError("engine.native._hxmargin is not built (make setup)")
        self.layout = layout
        # a call of >= 16,384 rows (a mark move over a big book) is cut in 4,096-row chunks that
        # two threads take in turn; the rows are independent, so the bytes are the same with 1 or 2
        self.threads = threads if threads is not None else min(2, os.cpu_count() or 1)
        self._key = (b"", b"", b"")  # the prices, marks and multipliers planned for
        self._plan: tuple[np.ndarray, np.ndarray] | None = None
        self._where = _Where()
        self._changed = self._below = self._news = np.empty(0, np.int64)
        # the rows of the last call below maintenance (MM > 0, equity < MM), in order: all the
        # liquidation scan needs to look at besides its open cases
        self.below = self._below
        # of the last call's changed rows, those ``pack_margin`` publishes (when ``news`` was given)
        self.news = self._news
        self._near, self._ratio = np.empty(0, np.int64), np.empty(0, np.float64)
        build_plan(layout, np.zeros(layout.n_assets, np.int64), np.zeros(layout.n_perps, np.int64),
                   np.full(layout.n_assets, PPM, np.int64))  # fmt: skip  # refuse an uncovered spec now

    def near(self, book, rows: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        """Of ``rows``, those with a maintenance requirement whose headroom over it is below
        ``reach`` times it, and their headroom / maintenance (``RiskEngine._nearest``'s numpy
        expressions, row by row in C; views valid until the next call)."""
        rows = np.ascontiguousarray(rows, np.int64)
        if len(self._near) < len(rows):
            size = max(len(rows), 2 * len(self._near))
            self._near, self._ratio = np.empty(size, np.int64), np.empty(size, np.float64)
        k = _hxmargin.near(rows, book.equity, book.maintenance, float(reach), self._near, self._ratio)
        return self._near[:k], self._ratio[:k]

    @staticmethod
    def adl_scores(  # type: ignore[no-untyped-def]
        book, perp: int, sign: int, mark_per_atom: float, system_base: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``Liquidator.adl_scores`` in one pass over the rows (new arrays: a scan walks several
        rankings at once)."""
        n = book.count
        rows, scores = np.empty(n, np.int64), np.empty(n, np.float64)
        k = _hxmargin.adl_scores(
            book.perp_size, book.perp_cost, book.initial, book.equity, book.ids, n, perp, sign,
            mark_per_atom, system_base, rows, scores,
        )  # fmt: skip
        return rows[:k], scores[:k]

    @staticmethod
    def mark_held(book, perps: list[int], assets: list[int]) -> None:  # type: ignore[no-untyped-def]
        """Flag dirty every account row holding any of ``perps`` (a position) or ``assets`` (a
        balance): ``RiskEngine._flush_touched``'s numpy columns, in one pass over the rows."""
        _hxmargin.mark_held(
            book.dirty,
            book.perp_size,
            book.balance,
            np.array(perps, np.int64),
            np.array(assets, np.int64),
            book.count,
        )

    def plan(self, prices: np.ndarray, marks: np.ndarray, mults: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The plan for these inputs: cached while they are equal. A price or mark record moves
        only the doubles that depend on what it moved (the same doubles a new plan holds); new
        multipliers (a volatility update) build a new plan."""
        key = (prices.tobytes(), marks.tobytes(), mults.tobytes())
        if key == self._key and self._plan is not None:  # (most records: ~1 us)
            return self._plan
        if self._plan is None or key[2] != self._key[2]:
            ints, dbls, self._where = _build_plan(self.layout, prices, marks, mults)
            self._plan, self._key = (ints, dbls), key
            return self._plan
        moved = np.flatnonzero(prices != np.frombuffer(self._key[0], prices.dtype))
        self._key = key
        ints, dbls = self._plan
        dbls = dbls.copy()  # (a plan handed out before stays as it was)
        where = self._where
        for a in moved.tolist():
            price = int(prices[a])
            if a in where.spot_at:
                doubles = _spot_doubles(self.layout, a, price)
                dbls[where.spot_at[a] : where.spot_at[a] + len(doubles)] = doubles
            for at in where.prediction_at.get(a, ()):
                dbls[at] = _prediction_double(price)
        dbls[where.perp_at : where.perp_at + len(marks)] = _perp_coefficients(marks)
        self._plan = (ints, dbls)
        return self._plan

    def __call__(
        self,
        book,  # type: ignore[no-untyped-def]
        rows: np.ndarray,
        prices: np.ndarray,
        marks: np.ndarray,
        mults: np.ndarray,
        settle: bool = False,
        news: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """Write equity, initial, maintenance and exposure of ``rows``; return the rows whose three
        figures changed (in ``rows`` order; a view valid until the next call) and keep those below
        maintenance in ``below``.

        In the same pass over the rows (one read of each instead of three): ``settle`` closes each
        row as ``RiskEngine._recompute`` does (reserved -= converting, converting = 0, clean), and ``news`` = (fee row, publish ppm, below-maintenance flag,
        below-initial flag) lists in ``news`` the changed rows, but the fee row and isolated
        positions', that :func:`pack_margin` publishes (its filter, so packing them gives the bytes
        packing every changed row gives)."""
        ints, dbls = self.plan(prices, marks, mults)
        rows = np.ascontiguousarray(rows, np.int64)
        if len(self._changed) < len(rows):
            size = max(len(rows), 2 * len(self._changed))
            self._changed, self._below = np.empty(size, np.int64), np.empty(size, np.int64)
            self._news = np.empty(size, np.int64)
        settle_cols = (book.reserved, book.converting, book.dirty) if settle else None
        news_cols = None
        if news is not None:
            iso = book.isolated_market if book.n_isolated else None
            news_cols = (
                self._news, book.private_seq, book.published_equity, book.published_initial,
                book.published_maintenance, book.published_seq, iso, *news,
            )  # fmt: skip
        counts = _hxmargin.recompute(
            ints, dbls, book.balance, book.perp_size, book.perp_cost, rows, book.equity, book.initial,
            book.maintenance, book.exposure, self._changed, self._below, self.threads, settle_cols, news_cols,
            (book.near, NEAR_REACH),
        )  # fmt: skip
        self.below = self._below[: counts[1]]
        self.news = self._news[: counts[2]] if news is not None else self._news[:0]
        return self._changed[: counts[0]]


def pack_margin(  # type: ignore[no-untyped-def]
    book, rows: np.ndarray, partition: int, partitions: int, system_base: int, below_maintenance: int,
    below_initial: int, publish_ppm: int,
) -> bytes:  # fmt: skip
    """Of ``rows`` (their margin changed), an ACCOUNT_MARGIN for each that is news, with the
    published columns updated: ``RiskEngine._margin_news`` + ``pack_private`` (the Python twin)."""
    return _hxmargin.pack_margin(
        np.ascontiguousarray(rows, np.int64), book.ids, book.private_seq, book.equity, book.initial,
        book.maintenance, book.reserved, book.published_equity, book.published_initial,
        book.published_maintenance, book.published_seq, partition, partitions, system_base, below_maintenance,
        below_initial, publish_ppm,
    )  # fmt: skip
