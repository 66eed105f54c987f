"""The compiled margin recompute (engine.native._hxmargin) against its numpy specification.

Same books, same prices, marks and multipliers, through ``MarginModel.recompute`` with and
without the compiled twin: equity, initial, maintenance and exposure must be the same bytes and
the same rows reported changed - dense and sparse books (the numpy function takes different
paths by density), liabilities, holdings past every collateral and shock tier, prediction shares,
every spec the exchange and the tests use.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.risk import native_margin
from engine.risk.account_book import AccountBook
from engine.risk.margin_model import MarginModel
from engine.risk.risk_config import load_risk_config
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, PPM
from engine.types.risk_spec import AssetKind, RiskSpec, default_risk_spec
from hx.config import DEFAULT_CONFIG

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "math"))
from risk_constants import STRESS_SPEC  # noqa: E402

pytestmark = pytest.mark.skipif(not native_margin.AVAILABLE, reason="engine.native._hxmargin not built")


def _exchange_spec() -> RiskSpec:
    return MarginModel(load_risk_config(str(DEFAULT_CONFIG)), native=False).spec


def _bench_spec() -> RiskSpec:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from perf.bench_risk import bench_config, risk_config_from

    markets, assets = bench_config()
    return MarginModel(risk_config_from(markets, assets), native=False).spec


def _wide_spec() -> RiskSpec:
    """More assets and perps than a block's support key has bits (63 + 1 cash, > 64 in all): the
    compiled recompute walks the full plan for every block."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from perf import bench_risk

    saved = bench_risk.N_ASSETS, bench_risk.N_PERPS
    bench_risk.N_ASSETS, bench_risk.N_PERPS = 40, 30
    try:
        markets, assets = bench_risk.bench_config()
    finally:
        bench_risk.N_ASSETS, bench_risk.N_PERPS = saved
    spec = MarginModel(bench_risk.risk_config_from(markets, assets), native=False).spec
    assert len(spec.assets) - 1 + len(spec.perps) > 64
    return spec


SPECS = {
    "default": default_risk_spec,
    "stress": lambda: STRESS_SPEC,
    "exchange": _exchange_spec,
    "bench": _bench_spec,
    "wide": _wide_spec,
}


def _models(spec: RiskSpec) -> tuple[MarginModel, MarginModel]:
    config = SimpleNamespace(n_assets=len(spec.assets))
    numpy_model = MarginModel(config, spec, native=False)  # type: ignore[arg-type]
    compiled = MarginModel(config, spec, native=True)  # type: ignore[arg-type]
    assert numpy_model.compiled is None and compiled.compiled is not None
    return numpy_model, compiled


def _book(spec: RiskSpec, n: int, rng: np.random.Generator, density: float, whales: bool) -> AccountBook:
    a_count, p_count = len(spec.assets), len(spec.perps)
    book = AccountBook(a_count, p_count, capacity=max(4, n))
    for account in range(1, n + 1):
        book.row(account)
    hold = rng.random((n, a_count)) < density
    top = 10**15 if whales else 10**11
    qty = rng.integers(-(10**9), top, (n, a_count)) // rng.integers(1, 10**4, (n, a_count))
    for a, asset in enumerate(spec.assets):
        if asset.kind == AssetKind.PREDICTION:
            qty[:, a] = rng.integers(-(10**9), 10**10, n)
    book.balance[:n] = np.where(hold, qty, 0)
    book.balance[:n, 0] = rng.integers(-(10**12), 10**13, n)
    if p_count:
        open_ = rng.random((n, p_count)) < density
        size = rng.integers(-(10**10), 10**10, (n, p_count)) // rng.integers(1, 100, (n, p_count))
        book.perp_size[:n] = np.where(open_, size, 0)
        book.perp_cost[:n] = book.perp_size[:n] * rng.integers(1, 100_000, (n, p_count)) // 100
    cash_only = rng.random(n) < 0.1
    book.balance[:n][cash_only, 1:] = 0
    book.perp_size[:n][cash_only] = 0
    book.perp_cost[:n][cash_only] = 0
    return book


def _prices(
    spec: RiskSpec, rng: np.random.Generator, zeros: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random prices, marks and shock multipliers; ``zeros``: some prices and marks are 0 (a
    resolved NO share, a market not priced yet), where a short quantity's value is -0.0."""
    prices = np.array(
        [
            MICRO_PER_UNIT
            if a.kind == AssetKind.CASH
            else int(rng.integers(1, MICRO_PER_UNIT))
            if a.kind == AssetKind.PREDICTION
            else int(rng.integers(10**4, 10**11))
            for a in spec.assets
        ],
        np.int64,
    )
    marks = np.array([int(prices[p.underlying] * rng.uniform(0.9, 1.1)) for p in spec.perps], np.int64)
    mults = np.where(rng.random(len(spec.assets)) < 0.5, PPM, rng.integers(PPM, 6 * PPM, len(spec.assets)))
    if zeros:
        prices[1:][rng.random(len(prices) - 1) < 0.4] = 0
        marks[rng.random(len(marks)) < 0.4] = 0
    return prices, marks, mults.astype(np.int64)


def _same(
    spec_name: str, seed: int, n: int, density: float, whales: bool, subset: bool, zeros: bool = False
) -> None:
    spec = SPECS[spec_name]()
    rng = np.random.default_rng(seed)
    numpy_model, compiled = _models(spec)
    book_a = _book(spec, n, rng, density, whales)
    book_b = _book(spec, n, np.random.default_rng(seed), density, whales)
    prices, marks, mults = _prices(spec, rng, zeros)
    numpy_model.multiplier[:] = mults
    compiled.multiplier[:] = mults
    rows = np.arange(n)
    if subset:
        rows = np.sort(rng.choice(n, max(1, n // 3), replace=False))
    for _ in range(2):  # the second pass: nothing changed, nothing reported
        try:
            want = numpy_model.recompute(book_a, rows, prices, marks)
        except OverflowError:
            with pytest.raises(OverflowError):
                compiled.recompute(book_b, rows, prices, marks)
            return
        got = compiled.recompute(book_b, rows, prices, marks)
        assert got.tolist() == want.tolist()
        below = (book_a.maintenance[rows] > 0) & (book_a.equity[rows] < book_a.maintenance[rows])
        assert compiled.compiled.below.tolist() == rows[below].tolist()  # type: ignore[union-attr]
        for column in ("equity", "initial", "maintenance", "exposure", "near"):
            assert getattr(book_a, column)[:n].tobytes() == getattr(book_b, column)[:n].tobytes(), column


@settings(max_examples=60, deadline=None)
@given(
    spec_name=st.sampled_from(sorted(SPECS)),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    density=st.sampled_from([0.01, 0.05, 0.3, 0.9]),
    whales=st.booleans(),
    subset=st.booleans(),
    zeros=st.booleans(),
)
def test_compiled_recompute_gives_the_numpy_bytes(
    spec_name: str, seed: int, n: int, density: float, whales: bool, subset: bool, zeros: bool
) -> None:
    """Sparse books (density 0.01: most blocks of four rows hold one or two assets, so the
    compiled twin runs plans reduced to them) to dense ones; prices and marks of 0 too."""
    _same(spec_name, seed, n, density, whales, subset, zeros)


@settings(max_examples=30, deadline=None)
@given(spec_name=st.sampled_from(sorted(SPECS)), seed=st.integers(0, 2**32 - 1))
def test_a_plan_moved_by_prices_and_marks_is_the_plan_built_for_them(spec_name: str, seed: int) -> None:
    """A price or mark record rewrites only the cached plan's doubles that depend on what moved;
    new multipliers rebuild it: each time, the bytes of a plan built for the inputs."""
    spec = SPECS[spec_name]()
    rng = np.random.default_rng(seed)
    _numpy, model = _models(spec)
    compiled = model.compiled
    assert compiled is not None
    prices, marks, mults = _prices(spec, rng)
    first = compiled.plan(prices, marks, mults)
    kept = (first[0].copy(), first[1].copy())
    for step in range(6):
        prices, marks = prices.copy(), marks.copy()
        if step % 2:
            marks = np.maximum(marks + rng.integers(-(10**6), 10**6, len(marks)), 0)
        moved = rng.random(len(prices)) < 0.3
        moved[0] = False  # (USDC)
        fresh, _m, fresh_mults = _prices(spec, rng)
        prices[moved] = fresh[moved]
        if step == 4:
            mults = fresh_mults
        got = compiled.plan(prices, marks, mults)
        want = native_margin.build_plan(model.layout, prices, marks, mults)
        assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
    assert first[0].tobytes() == kept[0].tobytes() and first[1].tobytes() == kept[1].tobytes()


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_compiled_recompute_on_a_large_book(spec_name: str) -> None:
    """Thousands of rows: the numpy function's dense paths (many holders, many folded rows)."""
    for density in (0.02, 0.5):
        _same(spec_name, 11, 4_000, density, True, False)


def test_a_short_balance_at_a_price_of_0_has_the_exposure_numpy_gives() -> None:
    """A short balance of a perp's underlying priced at 0 is worth -0.0; numpy adds every perp's
    notional, +0.0 where nobody is open, and writes +0.0 (rows 0-3: the perp is in the block's
    reduced plan only for that +0.0). Where the row is short the perp too at a mark of 0, it adds
    -0.0 and writes -0.0 (rows 4-7). The compiled twin writes the same bytes."""
    spec = _exchange_spec()
    numpy_model, compiled = _models(spec)
    a = spec.perps[0].underlying
    books = [AccountBook(len(spec.assets), len(spec.perps)) for _ in range(2)]
    for book in books:
        for account in range(1, 9):
            book.row(account)
        book.balance[:8, 0] = 10**9
        book.balance[:8, a] = -(10**6)
        book.perp_size[4:8, 0] = -(10**6)  # the second block holds the perp (short, at a mark of 0)
    prices, marks, mults = _prices(spec, np.random.default_rng(1))
    prices[a], marks[0] = 0, 0
    rows = np.arange(8)
    numpy_model.recompute(books[0], rows, prices, marks)
    compiled.recompute(books[1], rows, prices, marks)
    assert np.signbit(books[0].exposure[:8, a]).tolist() == [False] * 4 + [True] * 4  # (numpy's)
    assert books[1].exposure[:8].tobytes() == books[0].exposure[:8].tobytes()


def test_a_cash_only_account_gets_exact_figures_and_a_move_reports_only_its_holders() -> None:
    spec = _exchange_spec()
    _numpy, compiled = _models(spec)
    book = AccountBook(len(spec.assets), len(spec.perps))
    cash, trader = book.row(1), book.row(2)
    book.balance[cash, 0] = 100 * MICRO_PER_UNIT
    book.balance[trader, 0] = 10_000 * MICRO_PER_UNIT
    book.perp_size[trader, 0] = ATOMS_PER_UNIT // 10
    book.perp_cost[trader, 0] = 9_000 * MICRO_PER_UNIT
    prices = np.array([MICRO_PER_UNIT] + [90_000 * MICRO_PER_UNIT] * (len(spec.assets) - 1), np.int64)
    marks = np.full(len(spec.perps), 90_000 * MICRO_PER_UNIT, np.int64)
    rows = np.array([cash, trader])
    assert compiled.recompute(book, rows, prices, marks).tolist() == [cash, trader]
    assert (book.equity[cash], book.initial[cash], book.maintenance[cash]) == (100 * MICRO_PER_UNIT, 0, 0)
    assert book.initial[trader] > 0 and book.maintenance[trader] > 0
    marks[0] += 1_000 * MICRO_PER_UNIT
    assert compiled.recompute(book, rows, prices, marks).tolist() == [trader]


def test_a_malformed_plan_is_refused_not_read_past_its_end() -> None:
    from engine.native import _hxmargin

    spec = _exchange_spec()
    book = AccountBook(len(spec.assets), len(spec.perps))
    book.row(1)
    _numpy, compiled = _models(spec)
    prices, marks, mults = _prices(spec, np.random.default_rng(1))
    ints, dbls = compiled.compiled.plan(prices, marks, mults)  # type: ignore[union-attr]
    args = (book.balance, book.perp_size, book.perp_cost, np.array([0]), book.equity, book.initial,
            book.maintenance, book.exposure, np.zeros(1, np.int64), np.zeros(1, np.int64))  # fmt: skip
    for bad_ints, bad_dbls in ((ints[:-1], dbls), (ints, dbls[:-1]), (np.append(ints, 0), dbls)):
        with pytest.raises(ValueError, match="malformed margin plan"):
            _hxmargin.recompute(bad_ints, bad_dbls, *args)
    with pytest.raises(IndexError):
        _hxmargin.recompute(ints, dbls, *args[:3], np.array([10**6]), *args[4:])
    bad = ints.copy()
    bad[0] = 10**9  # absurd asset count
    with pytest.raises(ValueError):
        _hxmargin.recompute(bad, dbls, *args)


def test_two_threads_give_the_bytes_of_one_and_of_numpy() -> None:
    """A call past THREAD_MIN_ROWS (16,384) is cut in chunks of 4,096 rows that two threads take
    in turn: same bytes, same changed rows in the same order."""
    spec = _exchange_spec()
    n = 40_000
    books = [_book(spec, n, np.random.default_rng(3), 0.3, False) for _ in range(3)]
    prices, marks, mults = _prices(spec, np.random.default_rng(4))
    numpy_model, one = _models(spec)
    _numpy2, two = _models(spec)
    assert one.compiled is not None and two.compiled is not None
    one.compiled.threads, two.compiled.threads = 1, 2
    rows = np.arange(n)
    results = []
    for model, book in zip((numpy_model, one, two), books, strict=True):
        model.multiplier[:] = mults
        results.append(model.recompute(book, rows, prices, marks).tolist())
    assert results[0] == results[1] == results[2] and len(results[0]) > n // 2
    below = rows[(books[0].maintenance[:n] > 0) & (books[0].equity[:n] < books[0].maintenance[:n])].tolist()
    assert one.compiled.below.tolist() == two.compiled.below.tolist() == below and below
    assert books[0].near[:n].any() and not books[0].near[:n].all()
    for column in ("equity", "initial", "maintenance", "exposure", "near"):
        want = getattr(books[0], column)[:n].tobytes()
        assert (
            getattr(books[1], column)[:n].tobytes() == want
            and getattr(books[2], column)[:n].tobytes() == want
        )


def test_pack_margin_sends_the_news_the_python_twin_sends() -> None:
    """``pack_margin`` against ``RiskEngine._margin_news`` + ``pack_private``: random books whose
    accounts had private events or not, crossed thresholds or not, moved by less or more than
    MARGIN_PUBLISH_PPM - same bytes, same published columns, same sequence numbers."""
    from engine.risk.risk_engine import (
        MARGIN_BELOW_INITIAL,
        MARGIN_BELOW_MAINTENANCE,
        MARGIN_PUBLISH_PPM,
        SYSTEM_ACCOUNT_BASE,
        RiskEngine,
    )

    config = load_risk_config(str(DEFAULT_CONFIG))
    for seed in range(20):
        rng = np.random.default_rng(seed)
        engines = [RiskEngine(config, 1, 3), RiskEngine(config, 1, 3)]
        n = 500
        ids = rng.choice(np.arange(1, 10**6), n, replace=False)
        ids[:5] = SYSTEM_ACCOUNT_BASE + rng.integers(0, 64, 5)
        for e in engines:
            for a in ids.tolist():
                e.book.row(int(a))
        cols = {}
        for name in ("equity", "initial", "maintenance"):
            cols[name] = rng.integers(-(10**12), 10**12, n)
            cols["published_" + name] = np.where(
                rng.random(n) < 0.5, cols[name] + rng.integers(-(10**7), 10**7, n), cols[name] // 3
            )
        cols["private_seq"] = rng.integers(0, 100, n)
        cols["published_seq"] = np.where(rng.random(n) < 0.5, cols["private_seq"], 0)
        cols["reserved"] = rng.integers(0, 10**9, n)
        for e in engines:
            for name, values in cols.items():
                getattr(e.book, name)[:n] = values
        rows = np.sort(rng.choice(n, n // 2, replace=False)).astype(np.int64)
        py, c = engines
        picked = rows[py._margin_news(rows)]
        want = py._publish_margins(rows)
        got = native_margin.pack_margin(
            c.book, rows, 1, 3, SYSTEM_ACCOUNT_BASE, MARGIN_BELOW_MAINTENANCE, MARGIN_BELOW_INITIAL,
            MARGIN_PUBLISH_PPM,
        )  # fmt: skip
        assert 0 < len(picked) < len(rows)
        assert got == want
        assert c.book.digest() == py.book.digest()


@pytest.mark.parametrize("n, threads", [(3_000, 1), (40_000, 2)])
def test_one_pass_settles_and_selects_the_news_as_the_three_steps_do(n: int, threads: int) -> None:
    """``CompiledRecompute(..., settle=True, news=...)`` against recompute, then the close of each row
    in numpy (``RiskEngine._recompute``'s), then
    ``RiskEngine._margin_news`` over the changed rows but the fee row and isolated positions': the
    same columns, the same changed and below rows, and as news exactly the rows the three steps
    publish, in order (split in two threads past 16,384 rows)."""
    from engine.risk.risk_engine import MARGIN_BELOW_INITIAL, MARGIN_BELOW_MAINTENANCE, MARGIN_PUBLISH_PPM

    spec = _exchange_spec()
    rng = np.random.default_rng(11)
    books = [_book(spec, n, np.random.default_rng(5), 0.3, False) for _ in range(2)]
    extra = {
        "reserved": rng.integers(0, 10**9, n),
        "converting": rng.integers(0, 10**6, n),
        "private_seq": rng.integers(0, 100, n),
        "isolated_market": np.where(rng.random(n) < 0.05, rng.integers(1, 200, n), 0),
    }
    extra["published_seq"] = np.where(rng.random(n) < 0.8, extra["private_seq"], 0)
    for book in books:
        for name, values in extra.items():
            getattr(book, name)[:n] = values
        book.n_isolated = int(np.count_nonzero(extra["isolated_market"]))
        book.dirty[:n] = True
    prices, marks, mults = _prices(spec, np.random.default_rng(4))
    _numpy, steps = _models(spec)
    _numpy2, one = _models(spec)
    assert steps.compiled is not None and one.compiled is not None
    steps.compiled.threads = one.compiled.threads = threads
    rows = np.sort(rng.choice(n, n * 2 // 3, replace=False)).astype(np.int64)
    fee_row = int(rows[len(rows) // 2])
    flags = (fee_row, MARGIN_PUBLISH_PPM, MARGIN_BELOW_MAINTENANCE, MARGIN_BELOW_INITIAL)
    for book in books:  # figures to publish against
        steps.compiled(book, rows, prices, marks, mults)
    for step in range(2):  # the second pass: what the first published is the baseline
        for book in books:  # published figures near the new ones or far from them
            for name in ("equity", "initial", "maintenance"):
                col = getattr(book, name)[:n]
                getattr(book, "published_" + name)[:n] = np.where(
                    np.random.default_rng(step).random(n) < 0.5, col + 3, col // 2
                )
        marks = marks + (step + 1)  # a tick: most holders move by less than the publish threshold
        changed = steps.compiled(books[0], rows, prices, marks, mults).copy()
        below = steps.compiled.below.copy()
        b = books[0]  # RiskEngine._recompute's close of each row, in numpy
        b.reserved[rows] -= b.converting[rows]
        b.converting[rows] = 0
        b.dirty[rows] = False
        keep = changed[(changed != fee_row) & (b.isolated_market[changed] == 0)]
        eq, im, mm = b.equity[keep], b.initial[keep], b.maintenance[keep]
        peq, pim, pmm = b.published_equity[keep], b.published_initial[keep], b.published_maintenance[keep]
        scale = np.maximum(np.maximum(np.abs(peq), pim), MICRO_PER_UNIT)
        limit = scale // PPM * MARGIN_PUBLISH_PPM + scale % PPM * MARGIN_PUBLISH_PPM // PPM
        own = b.published_seq[keep] != b.private_seq[keep]
        crossed = ((eq < mm) != (peq < pmm)) | ((eq < im) != (peq < pim))
        moved = (np.abs(eq - peq) > limit) | (np.abs(im - pim) > limit)
        want_news = keep[own | crossed | moved]
        got = one.compiled(books[1], rows, prices, marks, mults, settle=True, news=flags)
        assert got.tolist() == changed.tolist() and len(changed) > len(rows) // 5
        assert one.compiled.below.tolist() == below.tolist()
        assert one.compiled.news.tolist() == want_news.tolist()
        assert 0 < len(want_news) < len(keep)
        for column in ("equity", "initial", "maintenance", "exposure", "reserved", "converting", "dirty"):
            assert getattr(books[0], column)[:n].tobytes() == getattr(books[1], column)[:n].tobytes(), column
        assert not books[1].dirty[rows].any() and not books[1].converting[rows].any()


def test_near_rows_in_c_are_the_numpy_expression() -> None:
    """``CompiledRecompute.near`` (the rows ``RiskEngine._nearest`` looks at first, and their
    headroom / maintenance) against the numpy expressions the Python engine evaluates, and the kept ``near`` flags against
    ``near_flags`` after a recompute and after a book is loaded from its columns."""
    from engine.risk.account_book import NEAR_REACH, near_flags

    spec = _exchange_spec()
    n = 5_000
    book = _book(spec, n, np.random.default_rng(8), 0.3, False)
    prices, marks, mults = _prices(spec, np.random.default_rng(9))
    _numpy, model = _models(spec)
    assert model.compiled is not None
    model.multiplier[:] = mults
    rows = np.arange(n)
    model.recompute(book, rows, prices, marks)
    assert book.near[:n].tolist() == near_flags(book.equity[:n], book.maintenance[:n]).tolist()
    assert 0 < np.count_nonzero(book.near[:n]) < n
    subset = np.sort(np.random.default_rng(1).choice(n, n // 2, replace=False))
    for reach in (0.0, 0.01, 0.5, 1.0, NEAR_REACH, 50.0):
        maint = book.maintenance[subset]
        head = (book.equity[subset] - maint).astype(np.float64)
        keep = (maint > 0) & (head < maint.astype(np.float64) * reach)
        rows_c, ratio_c = model.compiled.near(book, subset, reach)
        assert rows_c.tolist() == subset[keep].tolist()
        assert ratio_c.tobytes() == (head[keep] / maint[keep].astype(np.float64)).tobytes()
    copy = AccountBook(book.n_assets, book.n_perps)
    copy.load({name: col.copy() for name, col in book.columns().items()})
    assert copy.near[:n].tobytes() == book.near[:n].tobytes()


@pytest.mark.parametrize("perps, assets", [([0], []), ([], [1]), ([0], [1]), ([0, 1], [1, 2, 3]), ([1], [])])
def test_held_rows_are_flagged_as_the_numpy_columns_flag_them(perps: list[int], assets: list[int]) -> None:
    """``CompiledRecompute.mark_held`` (``RiskEngine._flush_touched``'s one pass) against the numpy
    OR of the columns it replaces: already-dirty rows stay dirty, rows past ``count`` are untouched."""
    spec = _exchange_spec()
    n = 4_000
    book = _book(spec, n, np.random.default_rng(11), 0.2, False)
    rng = np.random.default_rng(12)
    book.dirty[:n] = rng.random(n) < 0.05
    book.count = n - 100  # the last rows are not the book's yet
    before = book.dirty.copy()
    want = before.copy()
    m = book.count
    for col in [book.perp_size[:m, p] for p in perps] + [book.balance[:m, a] for a in assets]:
        want[:m] |= col != 0
    native_margin.CompiledRecompute.mark_held(book, perps, assets)
    assert book.dirty.tolist() == want.tolist()
    assert np.count_nonzero(want[:m] & ~before[:m]) > 100  # the holders were flagged, not only kept
    with pytest.raises(IndexError):
        native_margin.CompiledRecompute.mark_held(book, [book.n_perps], [])
    with pytest.raises(IndexError):
        native_margin.CompiledRecompute.mark_held(book, [], [-1])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sign=st.sampled_from([1, -1]),
    mark=st.sampled_from([0.0, 1e-8, 0.5, 3.7e-3, 123.456, 1e12]),
    extremes=st.booleans(),
)
def test_adl_scores_in_c_are_the_numpy_ranking(seed: int, sign: int, mark: float, extremes: bool) -> None:
    """``CompiledRecompute.adl_scores`` (the ranking a liquidation scan walks for ADL) against
    ``liquidator.adl_scores``, its numpy specification: the same rows in the same order and the
    same score bytes, with system accounts, zero or negative equity and initial margin, and
    (``extremes``) figures near the int64 edge, where the doubles overflow to infinity."""
    from engine.risk.liquidator import adl_scores

    spec = _exchange_spec()
    n = 3_000
    rng = np.random.default_rng(seed)
    book = _book(spec, n, rng, 0.5, False)
    p = book.n_perps
    book.perp_size[:n] = rng.integers(-5, 6, (n, p)) * rng.integers(1, 10**9, (n, p))
    book.perp_cost[:n] = rng.integers(-(10**12), 10**12, (n, p))
    book.initial[:n] = rng.integers(-3, 10**9, n)
    book.equity[:n] = rng.integers(-(10**9), 10**12, n)
    book.ids[:n] = rng.integers(1, 2**32 - 1, n, dtype=np.uint32)
    if extremes:
        top = np.iinfo(np.int64).max
        book.perp_size[: n // 10] = rng.choice([top, -top, 1, -1], (n // 10, p))
        book.perp_cost[: n // 10] = rng.choice([top, -top, 0], (n // 10, p))
        book.equity[: n // 20] = rng.choice([top, 1], n // 20)
    system_base = 0xFFFF_FF00
    book.ids[::97] = system_base + 3  # the fund's and the fee account's rows never absorb a loss
    found = 0
    for perp in range(p):
        want_rows, want_scores = adl_scores(book, perp, sign, mark, system_base)
        rows, scores = native_margin.CompiledRecompute.adl_scores(book, perp, sign, mark, system_base)
        assert rows.tolist() == want_rows.tolist()
        assert scores.tobytes() == want_scores.tobytes()
        found += len(rows)
    if 1e-3 < mark < 1e3:  # (profitable holders on both sides: not a comparison of empty lists)
        assert found > 0
    with pytest.raises(IndexError):
        native_margin.CompiledRecompute.adl_scores(book, p, sign, mark, system_base)
