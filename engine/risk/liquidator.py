"""Liquidation, backstop and auto-deleveraging inside the risk partition (one state machine with it).

Driven by every margin recomputation (``RiskEngine.end_of_record``), deterministic like the rest:

1. An account whose equity falls below its maintenance margin is flagged (LIQUIDATION STARTED):
   every open order of it is cancelled (CANCEL_ALL to every shard) and new orders are refused
   (ACCOUNT_LIQUIDATING).
2. No liquidation runs while a price the account depends on is stale (WAITING); it runs on the
   first recomputation with fresh prices.
3. Each round, while the account is above ``takeover_ppm`` of its maintenance margin: one
   reduce-only IOC into the book for its largest-risk holding (perp position or spot holding), by
   the step that restores the margin with the buffer, limited by the bankruptcy price (ORDER).
   Its fills pay a liquidation fee to the insurance fund. A round waits for the previous one's
   orders to end. An order the shard refuses (band, halted market) is retried ``max_retries``
   times, then handed to the backstop; an IOC remainder (the book could not absorb it within the
   limit) goes to the backstop at once.
4. Backstop (below ``takeover_ppm`` of maintenance, or when the book cannot absorb): the partition's
   insurance fund takes every holding over at the mark (TAKEOVER) and pays the account's deficit
   (COVERED): the same as a takeover at the bankruptcy price. What equity remains pays the
   liquidation fee, the rest stays with the account. The fund unwinds what it holds into the book
   later (UNWIND: a reduce-only IOC within ``unwind_band_ppm`` of the mark on each mark update).
5. Auto-deleveraging: when the fund cannot pay the whole deficit, the perp positions it just took
   over are closed against the opposite positions of profitable accounts, highest ADL score first,
   at the mark, and the rest of the deficit is split over them pro rata to the size each closed
   (ADL, with the haircut as its amount). Accounts without an opposite position never pay. A
   deficit left after that (nobody to deleverage) stays as the fund's liability (UNCOVERED): never
   socialised silently.

Isolated-margin positions are rows of their own (``AccountBook``): each is scanned, liquidated,
taken over and deleveraged alone, on its own margin, and its events carry its market. Cases and
liquidation orders are keyed by the row's key (``AccountBook.key``: the account id for an account's
own row).

Limits: with several risk partitions, the fund and ADL act within the partition.

Two implementations of the scan, one behaviour: the per-account code in ``scan`` is the
specification; with ``fast`` (the default) the new cases that go straight to an order (most of a
cascade's) are planned over a window of rows at once and started in one numpy pass per run of them
(``_plan``, ``_start``), and runs of cases the backstop takes over whose one holding is a perp are
settled in plain integers (``_plan_takeovers``, ``_take_over``): the same events, commands, ledger
entries, state and early flushes, in the same order (``tests/engine/risk/test_liquidation_fast.py``).
The maths stay the exact integer functions of ``engine.math.liquidation``, called per account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.math.liquidation import (
    calc_adl_ranks_array,
    calc_bankruptcy_price_micro,
    calc_liquidation_step_atoms,
    calc_pro_rata_split,
)
from engine.risk.risk_config import RiskMarket
from engine.types.enums import BalanceReason, LiquidationKind, MsgType, OrderFlag, Side, TimeInForce
from engine.types.fixed import ATOMS_PER_UNIT, INT64_MAX, INT64_MIN, PPM
from engine.wire.layout import BY_TYPE, SLOT_BYTES, WIRE_VERSION

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.risk.account_book import AccountBook
    from engine.risk.risk_engine import RiskEngine

LIQUIDATION_COID_BASE = 1 << 63  # client order ids of risk's own orders (clients' are below)
ADL_QUEUE_HEAD = 32  # the ADL queue sorts this many counterparties first (then 8x more at a time)
_P_NEW = BY_TYPE[int(MsgType.NEW_ORDER)].struct.pack
_P_CANCEL_ALL = BY_TYPE[int(MsgType.CANCEL_ALL)].struct.pack
_LIQ_DTYPE = BY_TYPE[int(MsgType.LIQUIDATION)].dtype
_NEW_DTYPE = BY_TYPE[int(MsgType.NEW_ORDER)].dtype
_CANCEL_ALL_DTYPE = BY_TYPE[int(MsgType.CANCEL_ALL)].dtype
_P_LIQ_BYTES = BY_TYPE[int(MsgType.LIQUIDATION)].struct.pack
_P_BALANCE = BY_TYPE[int(MsgType.BALANCE)].struct.pack
_P_POSITION = BY_TYPE[int(MsgType.POSITION)].struct.pack
_LIQ_HEAD = (MsgType.LIQUIDATION, WIRE_VERSION, SLOT_BYTES)
_BALANCE_HEAD = (MsgType.BALANCE, WIRE_VERSION, SLOT_BYTES, 0)
_POSITION_HEAD = (MsgType.POSITION, WIRE_VERSION, SLOT_BYTES)
_FAST_LIMIT = INT64_MAX // PPM  # |equity|, maintenance below this: the vectorised products fit int64
ALL_MARKETS = 0xFFFF_FFFF
_NO_ROWS = np.zeros(0, np.intp)


@dataclass(frozen=True)
class LiquidationParams:
    fee_ppm: int = 5_000  # of the liquidated notional, to the insurance fund
    buffer_ppm: int = 100_000  # a step restores equity to maintenance x (1 + buffer)
    takeover_ppm: int = 500_000  # below this share of maintenance: the backstop at once
    max_retries: int = 3  # refused liquidation orders before the backstop takes over
    unwind_band_ppm: int = 20_000  # the fund unwinds within 2% of the mark
    # accounts a record's scan acts on at most (None: no bound); the rest wait in
    # ``Liquidator.pending`` for continuation records (engine/risk/process.py), so an order arriving
    # during a cascade waits behind one bounded record, not behind all of the cascade's work
    accounts_per_record: int | None = None
    # the fund's own deleveraging (``Liquidator._deleverage_fund``) closes against at most this
    # many counterparties per record (None: all at once) and goes on in the records after it: a
    # fund that took over a cascade's positions can have thousands of them to close (~25 us
    # each; one record of 100 ms held every order back in a replay of the stress cascade)
    fund_adl_per_record: int | None = None


# In a live process, outputs go out after the first account acted on in a scan and then every this
# many (RiskEngine.early_flush): a cascade of thousands of accounts does not hold its first
# liquidation orders back until the last account is scanned. The bytes per ring are the same.
EARLY_FLUSH_EVERY = 32
# The fast paths plan this many rows of a scan first (the next early flush is not held back by a
# large plan), then this many at a time.
PLAN_FIRST_ROWS = 32
PLAN_ROWS = 1024
# A continuation record acts on at most this many accounts, and stops sooner where its stop rule
# says (an input waits: RiskProcess._yield_rule), asked after each account and at least every
# YIELD_EVERY accounts of a run of new cases
CONTINUE_ACCOUNTS = 512
YIELD_EVERY = 8
SCAN_CHUNK = 64  # rows a bounded scan filters at a time
START_SCALAR_MAX = 8  # a run of new cases this short is packed one struct at a time (_start_few)
PLAN_MIN_ROOM = 32  # a plan costs ~0.3 ms: only where it may start at least this many accounts
EARLY_STARTS = 1024  # new cases a nearest-first pass (Liquidator.scan orders_only) starts at most
NO_CUT = 0xFFFF_FFFF  # (a continuation record's scan that did not stop early)
# the fund's closes ask a continuation record's stop rule after this many (they are applied in
# batches between: Liquidator._apply_closes, ~3 us each in the compiled core)
ADL_STOP_EVERY = 8
FUND_ADL_WHEN_CUT = 2  # the fund's closes (fund_adl_per_record) in a record whose scan stopped early


@dataclass
class Case:
    """One account under liquidation."""

    in_flight: set[int] = field(default_factory=set)  # liquidation orders (client ids) not ended
    retries: int = 0
    backstop: bool = False  # the book could not take it: the fund takes over next round


def _fit(array: np.ndarray, capacity: int) -> np.ndarray:
    """``array`` (one entry per book row) zero-extended to ``capacity`` once the book has grown."""
    if len(array) >= capacity:
        return array
    grown = np.zeros(capacity, array.dtype)
    grown[: len(array)] = array
    return grown


@dataclass
class _Ranking:
    """What is left of a perp and side's ADL ranking as taken: the holders not yet sorted, with
    their scores and ids, sorted a head at a time (``next_chunk``: the ``head`` highest, ties kept
    whole, then 8x more at a time)."""

    rows: np.ndarray
    score: np.ndarray
    ids: np.ndarray
    head: int = ADL_QUEUE_HEAD

    def next_chunk(self) -> list[tuple[int, float]]:
        rows, score, ids = self.rows, self.score, self.ids
        if not len(rows):
            return []
        if len(rows) > self.head:  # the head: every score at least the head-th largest
            cut = np.partition(score, len(score) - self.head)[len(score) - self.head]
            take = score >= cut
        else:
            take = np.ones(len(rows), bool)
        order = np.lexsort((ids[take], -score[take]))
        chunk = list(zip(rows[take][order].tolist(), score[take][order].tolist(), strict=True))
        self.rows, self.score, self.ids = rows[~take], score[~take], ids[~take]
        self.head *= 8
        return chunk

    def items(self) -> Iterator[tuple[int, float]]:
        """All of it, in order (consumes it)."""
        while chunk := self.next_chunk():
            yield from chunk


@dataclass
class _Queue:
    """One perp and side's ADL ranking, kept while the perp's mark stands: what was taken of it so
    far, the rest, the mark it was ranked at and the record (``RiskEngine.records``) it was taken in."""

    rest: _Ranking
    mark: int
    record: int
    seen: list[tuple[int, float]] = field(default_factory=list)
    start: int = 0  # rows before it hold no position on the side any more

    def to_json(self) -> list[object]:
        r = self.rest
        return [self.mark, self.record, [list(x) for x in self.seen], self.start,
                r.rows.tolist(), r.score.tolist(), r.ids.tolist(), r.head]  # fmt: skip

    @classmethod
    def from_json(cls, doc: list[Any]) -> _Queue:
        mark, record, seen, start, rows, score, ids, head = doc
        rest = _Ranking(np.array(rows, np.int64), np.array(score, np.float64), np.array(ids, np.uint32), head)
        return cls(rest, mark, record, [(int(a), float(b)) for a, b in seen], start)


@dataclass
class FundAdl:
    """The fund's deleveraging under way (``Liquidator._deleverage_fund``), closed a bounded number
    of counterparties per record. Fixed when it starts: the marks it closes at, the fund's own cash
    then (``cash0``, which pays first), the deficit the closes are expected to realise past it
    (``deficit``) and the notional to close (``whole``). Each record charges its counterparties
    the share of ``deficit`` of the notional closed so far (``done``), rounded down on the running
    total, so a counterparty pays the same per unit closed whichever record closes it; the last
    record of a plan that closed all of it charges what was realised past ``cash0`` exactly."""

    marks: dict[int, int]  # perp -> its mark at the start (a new mark ends the plan)
    left: dict[int, int]  # perp -> what the fund still has to close (signed as it holds it)
    cash0: int
    deficit: int
    whole: int
    done: int = 0  # notional closed so far
    realised: int = 0  # what the closes realised on the fund's positions so far (its cash moved)
    charged: int = 0  # of ``deficit``, charged to the counterparties so far
    short: bool = False  # the queue ran out (or the position changed) before all of it closed

    def to_json(self) -> list[object]:
        return [sorted(self.marks.items()), list(self.left.items()), self.cash0, self.deficit,
                self.whole, self.done, self.realised, self.charged, self.short]  # fmt: skip

    @classmethod
    def from_json(cls, doc: list[Any]) -> FundAdl:
        marks, left, *rest = doc
        return cls({int(p): int(m) for p, m in marks}, {int(p): int(v) for p, v in left}, *rest)


class CaseBook(dict[int, Case]):
    """``Liquidator.cases`` (by row key), with a flag per book row kept in step by every insert and
    delete: a scan selects the rows with or without a case in numpy, not with a dict lookup per
    row (a cascade holds thousands of cases over hundreds of records). Only ``[]=``, ``del`` and
    ``pop`` change it; the bulk methods are refused so that no path can miss the flags."""

    def __init__(self, book: AccountBook, items: Iterable[tuple[int, Case]] = ()) -> None:
        super().__init__()
        self._book = book
        self._flag = np.zeros(0, bool)
        for key, case in items:
            self[key] = case

    def flags(self) -> np.ndarray:
        """Whether each book row has a case (sized to the book's capacity)."""
        self._flag = _fit(self._flag, self._book.capacity)
        return self._flag

    def _mark(self, key: int, value: bool) -> None:
        row = self._book.rows.get(key)  # a case's key is its row's key in the book
        if row is not None:
            self.flags()[row] = value

    def __setitem__(self, key: int, case: Case) -> None:
        super().__setitem__(key, case)
        self._mark(key, True)

    def __delitem__(self, key: int) -> None:
        super().__delitem__(key)
        self._mark(key, False)

    def pop(self, key: int, *default: Any) -> Any:  # type: ignore[override]
        had = key in self
        out = super().pop(key, *default)
        if had:
            self._mark(key, False)
        return out

    def _refused(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("CaseBook: insert with [], remove with del or pop")

    clear = update = setdefault = popitem = __ior__ = _refused  # type: ignore[assignment]


@dataclass
class NewCases:
    """A window of a scan's rows as the fast paths see it (``Liquidator._plan``): for each row,
    whether it is a new case they start (``ok``) and, for those, the order ``_step`` would send;
    and whether the backstop takes it over with ``_take_over`` (``take_perp``)."""

    ok: np.ndarray  # bool, over the scan's rows
    account: np.ndarray  # int64, the row's account id (for events and orders)
    shortfall: np.ndarray  # int64, equity - maintenance (the STARTED event's amount)
    market: np.ndarray  # int64, the market of the largest-risk holding
    side: np.ndarray  # int64
    lots: np.ndarray  # int64
    limit_ticks: np.ndarray  # int64
    lot_atoms: np.ndarray  # int64
    tick_micro: np.ndarray  # int64
    take_perp: np.ndarray  # int64: for a case the backstop takes over, the perp of its one holding; else -1


def adl_scores(
    book: AccountBook, perp: int, sign: int, mark_per_atom: float, system_base: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of accounts below ``system_base`` holding a position of ``sign`` in ``perp`` with a
    positive ADL score, in row order, and the scores (the formula ``publish_adl_ranks`` ranks by:
    ``(upnl / margin) * (notional / equity)`` in float64). The specification of
    ``_hxmargin.adl_scores``."""
    b = book
    n = b.count
    rows = np.flatnonzero(np.sign(b.perp_size[:n, perp]) == sign)
    rows = rows[b.ids[rows] < system_base]
    value = b.perp_size[rows, perp].astype(np.float64) * mark_per_atom
    upnl = value - b.perp_cost[rows, perp]
    margin = np.maximum(b.initial[rows], 1).astype(np.float64)
    equity = b.equity[rows].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where((upnl > 0) & (equity > 0), (upnl / margin) * (np.abs(value) / equity), 0.0)
    live = score > 0
    return rows[live], score[live]


class Liquidator:
    # True: the new cases of a scan that go straight to an order are started in one numpy pass
    # (``_plan``, ``_start``) and runs of single-perp takeovers settled in plain integers
    # (``_take_over``); False: every row by the per-account code in ``scan``, which is the
    # specification (tests/engine/risk/test_liquidation_fast.py holds the two to the same bytes)
    FAST = True

    def __init__(self, engine: RiskEngine, params: LiquidationParams | None = None) -> None:
        self.engine = engine
        self.fast = self.FAST
        self.params = params or LiquidationParams()
        self.cases = CaseBook(engine.book)  # by row key (AccountBook.key: the account id for its own row)
        self._busy = np.zeros(0, np.int32)  # by book row: its liquidation orders out (``orders``)
        # ADL rankings by (perp, side), kept while the perp's mark stands (state: in the snapshot)
        self._queues: dict[tuple[int, int], _Queue] = {}
        self._scanning = False  # (outside a scan, an isolated position's deficit ranks afresh)
        self.orders: dict[int, int] = {}  # liquidation client order id -> row key
        self.next_coid = LIQUIDATION_COID_BASE
        self.started = 0  # liquidations started (for metrics; not state)
        self.started_fast = 0  # of them, by the vectorised path (for tests and metrics; not state)
        self.started_early = 0  # of them, by a record's nearest-first scan (orders_only; not state)
        self.taken_fast = 0  # takeovers by _take_over (for tests and metrics; not state)
        # plans ADL left valid / made stale (a row ahead moved), for tests and metrics; not state
        self.plans_kept = self.plans_dropped = 0
        self.rank_cache = np.zeros((0, engine.config.n_perps), np.int8)  # last ADL rank sent, by row
        self.unwind_due: set[int] = set()  # perps (p) and spot assets (~a) repriced since the fund last tried
        self.fund_adl: FundAdl | None = None  # the fund's deleveraging, when it spans records
        config = engine.config
        self._perp_base = np.array([config.markets[m].base_asset for m in config.perps], np.intp)
        self._unpriced_key: tuple[bytes, bytes, bytes] | None = None
        self._bad_prices = self._unpriced()
        self._moved: list[int] = []  # rows whose holdings ADL moved since the scan last planned
        # rows a scan cut at ``params.accounts_per_record`` left to the next record's (in row order)
        self.pending: np.ndarray = np.zeros(0, np.intp)
        # A continuation record's scan (RiskProcess._continue): live, ``yield_to`` says when to stop
        # (an input waits; asked after at least one account); the position it stopped at (``cut``,
        # NO_CUT if it did not) is journaled with the record, and a replay sets ``cut_at`` to it
        # and stops at the same row. None of the three is state.
        self.yield_to: Callable[[], bool] | None = None
        self.cut_at: int | None = None
        self.cut = NO_CUT
        self.continuing = False  # in a continuation record (not state)
        # the fund's closes in this record (journaled with a continuation record, as ``cut``), and
        # a replay's count to close (``fund_cut_at``); neither is state
        self.fund_closed = NO_CUT
        self.fund_cut_at: int | None = None
        self._fund_stopped = self._limit_hit = self._queue_out = False
        self._moved_mask = np.zeros(0, bool)  # (scratch for _moved_ahead, all False between calls)

    @property
    def work_left(self) -> bool:
        """Work a record left for the records after it: accounts its scan had no room for
        (``pending``), or the rest of the fund's deleveraging (``fund_adl``)."""
        return bool(len(self.pending)) or self.fund_adl is not None

    def may_publish_ranks(self) -> bool:
        """May this record publish the ADL ranks (``publish_adl_ranks``, milliseconds over 100,000
        positions, that nothing stops)? Always while no cascade is under way (no work left, no
        case open); during one, only in a continuation record that nothing waiting stopped (its
        ``cut``, journaled with it): a record of inputs or a stopped one has a client waiting."""
        if not (self.work_left or self.cases) or self.params.accounts_per_record is None:
            return True
        return self.continuing and self.cut == NO_CUT

    def _key(self, row: int) -> int:
        """The key of the row's case in ``cases`` (and of its orders in ``orders``)."""
        return self.engine.book.key(row)  # (the account id for an account's own row)

    def busy(self) -> np.ndarray:
        """By book row, how many of ``orders`` (liquidation orders not ended) are its: a row whose
        case has an order out does nothing in a scan, so the scan drops those rows at once."""
        self._busy = _fit(self._busy, self.engine.book.capacity)
        return self._busy

    def _order_out(self, key: int, delta: int) -> None:
        row = self.engine.book.rows.get(key)
        if row is not None:
            self.busy()[row] += delta

    # ---- events --------------------------------------------------------------------------------
    def _event(
        self, account: int, market: int, kind: int, side: int, size: int, price: int, amount: int
    ) -> None:
        e = self.engine
        e.events += _P_LIQ_BYTES(
            *_LIQ_HEAD,
            market,
            e.next_seq(account),
            account,
            kind,
            side,
            size,
            price,
            amount,
            int(e.book.balance[e.insurance_row, 0]),
        )

    # ---- the scan after each recomputation --------------------------------------------------------
    def scan(self, rows: np.ndarray, orders_only: bool = False, resume: bool = True) -> None:
        """Act on ``rows`` (below maintenance, or with a case) after a recomputation, in row order.

        ``orders_only``: start only the new cases whose first step is an order into the book, and
        leave every other row (a takeover, a waiting case, one already open) to the scan after it.
        ``RiskEngine.end_of_record`` runs it on the rows nearest their maintenance before it
        recomputes the rest of a big record, so a cascade's first orders do not wait for
        100,000 holders' figures; the full scan then sees those cases with their orders out.

        A full scan acts on at most ``params.accounts_per_record`` accounts (None: all) and leaves the
        rest of ``rows`` in ``pending``. ``resume``: ``rows`` include ``pending`` and the cases (the
        work left over goes on); False (a record of client commands, which does only its own
        work): ``pending`` is kept and what this scan leaves joins it."""
        self._scanning = True
        if self._queues:  # (a ranking whose perp's mark moved is never walked again)
            marks = self.engine.marks
            self._queues = {k: q for k, q in self._queues.items() if q.mark == int(marks[k[0]])}
        started = self.started
        kept = self.pending  # (with ``resume``, among ``rows``: RiskEngine.end_of_record)
        if not orders_only:
            self.pending = _NO_ROWS
        try:
            self._scan(rows, orders_only, resume)
            if not orders_only and not resume and len(kept):
                self.pending = np.union1d(kept, self.pending) if len(self.pending) else kept
        finally:
            self._scanning = False
            if orders_only:
                self.started_early += self.started - started

    def _scan(self, rows: np.ndarray, orders_only: bool = False, resume: bool = True) -> None:
        """The scan's rows in chunks (SCAN_CHUNK) when it is bounded (``accounts_per_record``, a
        continuation record): a bounded scan's cost is what it acts on, not the thousands of rows
        a cascade leaves waiting (each chunk is filtered when reached, as the whole was before:
        a row the filter drops would do nothing in the row loop either)."""
        # (a nearest-first pass starts at most EARLY_STARTS: its purpose is the first orders, and
        # a window of a gap can hold thousands; the record's full scan goes on from there)
        budget = EARLY_STARTS if orders_only else self.params.accounts_per_record
        cut_at, yield_to = (None, None) if orders_only else (self.cut_at, self.yield_to)
        if cut_at is not None or yield_to is not None:
            budget = CONTINUE_ACCOUNTS
        self.cut = NO_CUT
        self.fund_closed = NO_CUT
        self._moved = []
        chunk = SCAN_CHUNK if budget is not None and not orders_only else max(len(rows), 1)
        acted = seen = 0  # accounts acted on; rows through the filter so far (a cut's position)
        for pos in range(0, len(rows), chunk):
            part = self._filter(rows[pos : pos + chunk], orders_only)
            if not len(part):
                continue
            self._bad_prices = self._unpriced()  # (read by the row loop only)
            acted, stop = self._scan_rows(part, acted, orders_only, budget, seen, cut_at, yield_to)
            if stop >= 0:  # the rest wait for the next record (checked again there)
                if not orders_only:  # (those of a nearest-first pass: for the record's full scan)
                    self.pending = np.concatenate((part[stop:], rows[pos + chunk :]))
                    self.cut = seen + stop
                break
            seen += len(part)
        if not orders_only and resume:  # (the fund's unwind is left work too)
            self._unwind()

    def _filter(self, rows: np.ndarray, orders_only: bool = False) -> np.ndarray:
        """Only rows with a case or below maintenance can do anything in the row loop (vectorised);
        with ``orders_only``, only rows without a case, below maintenance but not under the takeover
        line (the loop's own tests, first: a gap's windows of thousands of accounts all for the
        backstop cost the loop ~3 us each)."""
        e, b = self.engine, self.engine.book
        ids = b.ids[rows]
        maint, equity = b.maintenance[rows], b.equity[rows]
        look = (maint > 0) & (equity < maint)
        if orders_only:
            line = self.params.takeover_ppm  # maint x line // PPM without leaving int64 (maint > 0)
            look &= equity >= maint // PPM * line + maint % PPM * line // PPM
            if self.cases:
                look &= ~self.cases.flags()[rows]
        elif self.cases:
            look |= self.cases.flags()[rows]
            look &= self.busy()[rows] == 0  # a case with an order out waits for it (below)
        return rows[look & (ids < e.system_base)]

    def _scan_rows(
        self,
        rows: np.ndarray,
        acted: int,
        orders_only: bool,
        budget: int | None,
        seen: int,
        cut_at: int | None,
        yield_to: Callable[[], bool] | None,
    ) -> tuple[int, int]:
        """The row loop over filtered ``rows``; returns (``acted``, the index it stopped at or -1).
        ``seen``: rows of the scan before these (``cut_at`` counts from the scan's first)."""
        e = self.engine
        b = e.book
        plan, planned, skip, window = None, 0, 0, PLAN_FIRST_ROWS
        for i, row in enumerate(rows.tolist()):
            if i < skip:  # (started by _start with the run before it)
                continue
            if cut_at is not None:  # a continuation record's replay: where the live one stopped
                stop, room = seen + i == cut_at, cut_at - seen - i
            else:
                stop = budget is not None and acted >= budget
                stop |= yield_to is not None and acted > 0 and yield_to()
                room = budget - acted if budget is not None else len(rows)
                if yield_to is not None:
                    room = min(room, YIELD_EVERY)  # (a run of new cases checks again after these)
            if stop:
                return acted, i
            # plan the next rows, or plan again when ADL moved the holdings of a row the plan has
            # yet to reach; the first account acted on goes the per-account way (its order leaves
            # at once, before any planning: the breach-to-order latency of a cascade). Windows
            # double up to PLAN_ROWS while they are used up, and start small again after ADL threw
            # one away. (A cascade deleverages after most bankruptcies, and its counterparties are
            # the other side's profitable accounts, rarely a row below maintenance: a plan thrown
            # away at every ADL was most of the scan.)
            if self.fast and acted and (i >= planned or self._moved):
                # (a bounded scan with too few accounts left here to pay for a plan goes without)
                if budget is not None and room < PLAN_MIN_ROOM:
                    plan, planned, self._moved = None, 0, []
                else:
                    stale = plan is not None and i < planned and self._moved_ahead(rows[i:planned])
                    if plan is not None and i < planned:
                        self.plans_dropped += stale
                        self.plans_kept += not stale
                    self._moved = []
                    if stale:
                        window = PLAN_FIRST_ROWS
                    elif i >= planned and plan is not None:
                        window = min(PLAN_ROWS, 2 * window)
                    if stale or i >= planned:
                        planned = min(len(rows), i + window)
                        plan = self._plan(rows, i, planned)
            if plan is not None and plan.ok[i]:  # a run of new cases going straight to an order
                skip = i + 1
                while skip < min(planned, i + room) and plan.ok[skip]:
                    skip += 1
                acted = self._start(plan, rows, i, skip, acted)
                continue
            if not orders_only and plan is not None and plan.take_perp[i] >= 0:  # the backstop takes over
                end = i + 1
                while end < min(planned, i + room) and plan.take_perp[end] >= 0:
                    end += 1
                done, acted = self._take_over(plan, rows, i, end, acted)
                if done:
                    skip = i + done
                    continue
            account = int(b.ids[row])
            if account >= e.system_base:
                continue
            equity, maint = int(b.equity[row]), int(b.maintenance[row])
            key = self._key(row)
            # an isolated position's case names its market; an account's own, none (0)
            where = int(b.isolated_market[row]) - 1 if key != account else 0
            case = self.cases.get(key)
            order = None
            if case is None:
                if maint <= 0 or equity >= maint or not self._at_risk(row):
                    continue
                if self._stale(row):
                    if not orders_only:
                        self._event(account, where, LiquidationKind.WAITING, 0, 0, 0, 0)
                    continue
                if orders_only:  # only a case whose first step below is an order
                    if self._flat(row) or equity < maint * self.params.takeover_ppm // PPM:
                        continue
                    order = self._step_order(row)
                    if order is None:
                        continue
                case = self.cases[key] = Case()
                self.started += 1
                self._event(account, where, LiquidationKind.STARTED, 0, 0, 0, equity - maint)
                if key != account:  # an isolated position: its market's orders only
                    e.orders[where % e.shards] += _P_CANCEL_ALL(
                        MsgType.CANCEL_ALL, WIRE_VERSION, SLOT_BYTES, where, account
                    )
                else:
                    for s in range(e.shards):
                        e.orders[s] += _P_CANCEL_ALL(
                            MsgType.CANCEL_ALL, WIRE_VERSION, SLOT_BYTES, ALL_MARKETS, account
                        )
            elif orders_only:
                continue
            if order is not None:  # (orders_only: the step _step would take, decided above)
                self._send_step(row, account, case, order)
                acted = self._acted(acted)
                continue
            if case.in_flight:
                continue
            if self._stale(row):
                continue
            flat = self._flat(row)
            if flat or equity >= maint * (PPM + self.params.buffer_ppm) // PPM:
                del self.cases[key]
                self._event(account, where, LiquidationKind.ENDED, 0, 0, 0, equity - maint)
                if flat and key != account:  # an isolated position: what it holds goes back, a deficit
                    e.release_isolated(row)  # is covered
                elif flat and int(b.balance[row, 0]) < 0:
                    self._cover(row, account)
                continue
            if case.backstop or equity < maint * self.params.takeover_ppm // PPM:
                self._takeover(row, account)
                del self.cases[key]  # flat now: the case ends (its amount: the cash it is left with)
                self._event(account, where, LiquidationKind.ENDED, 0, 0, 0, int(b.balance[row, 0]))
                if key != account:  # an isolated position, now flat: what is left goes back
                    e.release_isolated(row)
            else:
                self._step(row, account, case)
            acted = self._acted(acted)
        return acted, -1

    def _moved_ahead(self, ahead: np.ndarray) -> bool:
        """Did ADL move the holdings of any of ``ahead`` (rows a plan has yet to reach) since the
        scan last planned? Then that plan read figures that are gone. (A mask over the book's rows,
        set and cleared for the moved rows only: a few microseconds where np.isin took ~30.)"""
        n = self.engine.book.capacity
        if len(self._moved_mask) < n:
            self._moved_mask = np.zeros(n, bool)
        mask, moved = self._moved_mask, self._moved
        mask[moved] = True
        hit = bool(mask[ahead].any())
        mask[moved] = False
        return hit

    def _flat(self, row: int) -> bool:
        """Nothing left to reduce: no perp position and no asset but cash."""
        b = self.engine.book  # (lists: a row's numpy .any() costs ~2 us, a scan asks it per case)
        return not any(b.perp_size[row].tolist()) and not any(b.balance[row, 1:].tolist())

    def _acted(self, acted: int) -> int:
        """One more account acted on in this scan: the first orders leave while the rest of a
        cascade is scanned (after the first, then every EARLY_FLUSH_EVERY)."""
        acted += 1
        e = self.engine
        if e.early_flush is not None and (acted == 1 or acted % EARLY_FLUSH_EVERY == 0):
            e.early_flush()
        return acted

    # ---- new cases, vectorised (the per-account code in scan is the specification) -----------------
    def _plan(self, rows: np.ndarray, start: int, stop: int) -> NewCases:
        """Which of ``rows[start:stop]`` are new cases that ``scan`` would start and send straight to a
        liquidation order, and that order: the scan's per-account path for them, over all of them at
        once. Those are the rows without a case, of an account of this partition, below maintenance
        but above ``takeover_ppm`` of it, at risk, not flat, on fresh prices, whose ``_step`` sends an
        order (a holding with a price, a limit of at least one tick). Every other row (and any
        whose figures could leave int64 in the products below) goes the per-account way, unless
        ``_plan_takeovers`` marks it for ``_take_over``."""
        e, b = self.engine, self.engine.book
        n = len(rows)
        sub = rows[start:stop]
        eq, mm = b.equity[sub], b.maintenance[sub]
        perp, bal = b.perp_size[sub], b.balance[sub]
        bad_perp, bad_asset = self._bad_prices
        held_perp = perp != 0
        held = bal != 0
        ids = b.ids[sub].astype(np.int64)
        any_perp = held_perp.any(1)
        cand = (mm > 0) & (eq < mm) & (mm < _FAST_LIMIT) & (eq > -_FAST_LIMIT)  # (products fit)
        cand &= ids % e.partitions == e.partition  # (next_seq numbers its events)
        cand &= any_perp | (bal < 0).any(1)  # _at_risk
        cand &= any_perp | held[:, 1:].any(1)  # not flat
        cand &= ~((bad_perp & held_perp).any(1) | (bad_asset & held).any(1))  # not _stale
        take = self._plan_takeovers(sub, cand, held_perp, held)
        cand &= eq >= mm * self.params.takeover_ppm // PPM  # not the backstop at once
        idx = np.flatnonzero(cand)
        if len(idx):  # no case yet, the account's own row (next_seq numbers it), not an isolated one
            at = sub[idx]
            idx = idx[~self.cases.flags()[at] & (b.isolated_market[at] == 0)]
        ok = np.zeros(n, bool)
        k = len(idx)
        out = NewCases(ok, *(np.zeros(n, np.int64) for _ in range(8)), np.full(n, -1, np.int64))
        out.take_perp[start:stop] = take
        if not k:
            return out
        # the largest-risk holding: the only one when there is one (vectorised), else _holdings
        spot_assets = np.fromiter(e.spot_market_of, np.intp, len(e.spot_market_of))
        n_perp = held_perp[idx].sum(1)
        n_spot = held[idx][:, spot_assets].sum(1) if len(spot_assets) else np.zeros(k, np.int64)
        single = (n_perp + n_spot) == 1
        first_perp = held_perp[idx].argmax(1) if held_perp.shape[1] else np.zeros(k, np.intp)
        first_spot = spot_assets[held[idx][:, spot_assets].argmax(1)] if len(spot_assets) else first_perp
        config, margin, params = e.config, e.margin, self.params
        mm_fraction, fee_ppm, buffer_ppm = (
            margin.spec.params.mm_fraction_ppm,
            params.fee_ppm,
            params.buffer_ppm,
        )
        rows_k = sub[idx]
        perp_size = b.perp_size[rows_k, first_perp] if held_perp.shape[1] else np.zeros(k, np.int64)
        spot_qty = b.balance[rows_k, first_spot]
        rates: dict[int, int] = {}  # market -> its marginal maintenance rate
        keep: list[int] = []
        fields: list[tuple[int, int, int, int, int, int]] = []  # market, side, lots, limit, lot, tick
        for j, (r, one, is_perp, p, a, equity, maint, perp_qty, qty) in enumerate(
            zip(
                rows_k.tolist(),
                single.tolist(),
                (n_perp == 1).tolist(),
                first_perp.tolist(),
                first_spot.tolist(),
                eq[idx].tolist(),
                mm[idx].tolist(),
                perp_size.tolist(),
                spot_qty.tolist(),
                strict=True,
            )
        ):
            if not one:
                holdings = self._holdings(r)
                if not holdings:
                    continue
                _risk, market, size, price = holdings[0]
            elif is_perp:
                market, size, price = config.markets[config.perps[p]], perp_qty, int(e.marks[p])
            else:
                market, size, price = e.spot_market_of[a], qty, int(e.prices[a])
            if price <= 0:
                continue
            mid = market.market_id
            rate = rates.get(mid)
            if rate is None:
                rate = rates[mid] = margin.im_rate(market) * mm_fraction // PPM or 1
            lot, tick = market.lot_size_atoms, market.tick_size_micro
            step = calc_liquidation_step_atoms(equity, maint, price, size, rate, fee_ppm, buffer_ppm, lot)
            lots = max(1, step // lot)
            bankrupt = calc_bankruptcy_price_micro(equity, size, price)
            sell = size > 0
            limit = -((-bankrupt) // tick) if sell else bankrupt // tick
            if limit <= 0 or limit * tick > INT64_MAX or lots * lot > INT64_MAX:
                continue  # (the per-account path: backstop, or the same error packing it)
            keep.append(j)
            fields.append((mid, Side.SELL if sell else Side.BUY, lots, limit, lot, tick))
        if not keep:
            return out
        chosen = idx[keep]
        at = start + chosen
        ok[at] = True
        out.account[at] = ids[chosen]
        out.shortfall[at] = eq[chosen] - mm[chosen]
        columns = np.array(fields, np.int64)
        out.market[at], out.side[at], out.lots[at] = columns[:, 0], columns[:, 1], columns[:, 2]
        out.limit_ticks[at], out.lot_atoms[at], out.tick_micro[at] = (
            columns[:, 3],
            columns[:, 4],
            columns[:, 5],
        )
        return out

    def _plan_takeovers(
        self, sub: np.ndarray, below: np.ndarray, held_perp: np.ndarray, held: np.ndarray
    ) -> np.ndarray:
        """For each of ``sub`` (rows, ``below``: under maintenance and the checks common with new
        cases): the perp of its one holding when the scan's per-account path would hand the case
        to the backstop (a case with no order in flight, still below maintenance with the buffer,
        marked for the backstop or under ``takeover_ppm``) and that holding is a perp; else -1."""
        b, params = self.engine.book, self.params
        out = np.full(len(sub), -1, np.int64)
        if not self.cases:
            return out
        spot = np.fromiter(self.engine.spot_market_of, np.intp, len(self.engine.spot_market_of))
        one = below & (held_perp.sum(1) == 1) & self.cases.flags()[sub] & (self.busy()[sub] == 0)
        if len(spot):
            one &= ~held[:, spot].any(1)
        idx = np.flatnonzero(one)
        if not len(idx):
            return out
        at = sub[idx]
        eq, mm = b.equity[at], b.maintenance[at]
        fits = mm < INT64_MAX // (PPM + params.buffer_ppm)  # (the others: the per-account way)
        keep = fits & (b.isolated_market[at] == 0)  # the account's own row: its key is its id
        keep &= eq < np.where(fits, mm, 0) * (PPM + params.buffer_ppm) // PPM  # still under, buffer
        idx, at, force = idx[keep], at[keep], (eq < mm * params.takeover_ppm // PPM)[keep]
        perp = held_perp[idx].argmax(1)
        cases = self.cases
        for j, (key, p, now) in enumerate(
            zip(b.ids[at].tolist(), perp.tolist(), force.tolist(), strict=True)
        ):
            case = cases.get(key)
            if case is None or case.in_flight:
                continue
            if case.backstop or now:
                out[idx[j]] = p
        return out

    def _take_over(
        self, plan: NewCases, rows: np.ndarray, first: int, end: int, acted: int
    ) -> tuple[int, int]:
        """The backstop takes over the cases ``rows[first:end]`` (a run of ``plan.take_perp``) as
        ``_takeover`` then ``_cover`` would, one after the other, with the same checks, events (in
        the same order), state and early flushes, in plain integers: the transfer of each one's
        perp position to the fund (the fund's position growing the same way, so it realises
        nothing) and the cover (the fee from a surplus, or a deficit the fund can pay). It stops
        before an account that needs more (the fund's position reduced, ADL, a figure leaving
        int64): that one goes the per-account way. Returns (accounts done, ``acted``)."""
        e, b = self.engine, self.engine.book
        fund = e.insurance_row
        fund_id = int(b.ids[fund])
        part = rows[first:end].tolist()
        perps = plan.take_perp[first:end].tolist()
        marks = e.marks.tolist()
        fee_ppm = self.params.fee_ppm
        fund_cash = int(b.balance[fund, 0])
        fund_held = int(b.held[fund, 0])
        fund_seq = int(b.private_seq[fund])
        fund_pos: dict[int, list[int]] = {}  # perp -> [size, cost] as the takeovers leave it
        config = e.config
        out = bytearray()
        done = 0

        def fits(v: int) -> bool:  # RiskEngine._add's range
            return INT64_MIN < v <= INT64_MAX

        for row, p in zip(part, perps, strict=True):
            size, cost = int(b.perp_size[row, p]), int(b.perp_cost[row, p])
            price = marks[p]
            notional = abs(size) * price // ATOMS_PER_UNIT
            signed = notional if size > 0 else -notional
            pos = fund_pos.get(p)
            if pos is None:
                pos = fund_pos[p] = [int(b.perp_size[fund, p]), int(b.perp_cost[fund, p])]
            if (pos[0] and (pos[0] > 0) != (size > 0)) or not fits(int(b.perp_realised[fund, p])):
                break  # the fund would reduce its position (and realise): the per-account way
            realised = signed - cost  # closing the whole position (engine.math.position.apply_fill)
            total = int(b.perp_realised[row, p]) + realised
            cash = int(b.balance[row, 0]) + realised
            fund_size, fund_cost = pos[0] + size, pos[1] + signed
            fee = min(cash, notional * fee_ppm // PPM) if cash > 0 else 0
            deficit = -cash if cash < 0 else 0
            if deficit > fund_cash or not (
                fits(total) and fits(cash) and fits(fund_size) and fits(fund_cost) and fits(fund_cash + fee)
            ):
                break  # ADL, or a figure out of range: the per-account way
            account = int(b.ids[row])
            held0 = int(b.held[row, 0])
            seq = int(b.private_seq[row])
            mid = config.perps[p]
            funding = int(b.perp_funding[row, p])
            if realised:
                seq += 1
                out += _P_BALANCE(
                    *_BALANCE_HEAD, seq, account, 0, BalanceReason.LIQUIDATION, cash, realised, held0, p
                )
            seq += 1
            out += _P_POSITION(*_POSITION_HEAD, mid, seq, account, 0, 0, total, funding)
            fund_seq += 1
            out += _P_POSITION(
                *_POSITION_HEAD, mid, fund_seq, fund_id, fund_size, fund_cost,
                int(b.perp_realised[fund, p]), int(b.perp_funding[fund, p]),
            )  # fmt: skip
            seq += 1
            out += _P_LIQ_BYTES(
                *_LIQ_HEAD, mid, seq, account, LiquidationKind.TAKEOVER, Side.SELL if size > 0 else Side.BUY,
                abs(size), price, notional, fund_cash,
            )  # fmt: skip
            if fee:
                cash -= fee
                fund_cash += fee
                seq += 1
                fund_seq += 1
                out += _P_BALANCE(
                    *_BALANCE_HEAD, seq, account, 0, BalanceReason.LIQUIDATION, cash, -fee, held0, account
                )
                out += _P_BALANCE(
                    *_BALANCE_HEAD, fund_seq, fund_id, 0, BalanceReason.INSURANCE, fund_cash, fee, fund_held,
                    account,
                )  # fmt: skip
            elif deficit:
                cash = 0
                fund_cash -= deficit
                fund_seq += 1
                seq += 1
                out += _P_BALANCE(
                    *_BALANCE_HEAD, fund_seq, fund_id, 0, BalanceReason.INSURANCE, fund_cash, -deficit,
                    fund_held, account,
                )  # fmt: skip
                out += _P_BALANCE(
                    *_BALANCE_HEAD, seq, account, 0, BalanceReason.LIQUIDATION, 0, deficit, held0, account
                )
                seq += 1
                out += _P_LIQ_BYTES(
                    *_LIQ_HEAD, 0, seq, account, LiquidationKind.COVERED, 0, 0, 0, deficit, fund_cash
                )
            seq += 1  # flat: the case ends, as the per-account path's ENDED
            out += _P_LIQ_BYTES(*_LIQ_HEAD, 0, seq, account, LiquidationKind.ENDED, 0, 0, 0, cash, fund_cash)
            # the row's and the fund's state as the per-account path leaves them
            b.perp_size[row, p] = 0
            b.perp_cost[row, p] = 0
            b.perp_realised[row, p] = total
            b.balance[row, 0] = cash
            b.private_seq[row] = seq
            b.dirty[row] = True
            pos[0], pos[1] = fund_size, fund_cost
            b.perp_size[fund, p] = fund_size
            b.perp_cost[fund, p] = fund_cost
            b.balance[fund, 0] = fund_cash
            b.private_seq[fund] = fund_seq
            b.dirty[fund] = True
            del self.cases[self._key(row)]
            self.taken_fast += 1
            done += 1
            acted += 1
            if e.early_flush is not None and (acted == 1 or acted % EARLY_FLUSH_EVERY == 0):
                e.events += out
                out.clear()
                e.early_flush()
        e.events += out
        return done, acted

    def _start(self, plan: NewCases, rows: np.ndarray, first: int, end: int, acted: int) -> int:
        """Start the new cases ``rows[first:end]`` (a run of ``plan.ok``) as the per-account path
        would, in the same order and bytes: per account STARTED then ORDER on its private stream,
        CANCEL_ALL to every shard then the order to its market's shard, the order in the ledger.
        Early flushes after the same accounts as there. Returns ``acted``."""
        e = self.engine
        while first < end:
            stop = end
            if e.early_flush is not None:  # flush where the per-account path does
                stop = min(end, first + (1 if acted == 0 else EARLY_FLUSH_EVERY - acted % EARLY_FLUSH_EVERY))
            self._start_chunk(plan, rows, first, stop)
            acted += stop - first
            first = stop
            if e.early_flush is not None and (acted == 1 or acted % EARLY_FLUSH_EVERY == 0):
                e.early_flush()
        return acted

    def _start_chunk(self, plan: NewCases, rows: np.ndarray, first: int, end: int) -> None:
        e, b = self.engine, self.engine.book
        k = end - first
        if k <= START_SCALAR_MAX:
            self._start_few(plan, rows, first, end)
            return
        part = rows[first:end]
        account = plan.account[first:end]
        market = plan.market[first:end]
        side = plan.side[first:end]
        lots = plan.lots[first:end]
        limit = plan.limit_ticks[first:end]
        seq = b.private_seq[part] + 1
        b.private_seq[part] = seq + 1  # STARTED, ORDER
        ev = np.zeros(2 * k, _LIQ_DTYPE)
        ev["msg_type"] = MsgType.LIQUIDATION
        ev["version"] = WIRE_VERSION
        ev["length"] = SLOT_BYTES
        ev["account"] = np.repeat(account, 2)
        ev["insurance_micro"] = int(b.balance[e.insurance_row, 0])
        started, order = ev[0::2], ev[1::2]
        started["seq"] = seq
        started["kind"] = LiquidationKind.STARTED
        started["amount_micro"] = plan.shortfall[first:end]
        order["seq"] = seq + 1
        order["market_id"] = market
        order["kind"] = LiquidationKind.ORDER
        order["side"] = side
        order["size_atoms"] = lots * plan.lot_atoms[first:end]
        order["price_micro"] = limit * plan.tick_micro[first:end]
        e.events += ev.tobytes()
        coid0 = self.next_coid
        self.next_coid += k
        cancel = np.zeros(k, _CANCEL_ALL_DTYPE)
        cancel["msg_type"] = MsgType.CANCEL_ALL
        cancel["version"] = WIRE_VERSION
        cancel["length"] = SLOT_BYTES
        cancel["market_id"] = ALL_MARKETS
        cancel["account"] = account
        new = np.zeros(k, _NEW_DTYPE)
        new["msg_type"] = MsgType.NEW_ORDER
        new["version"] = WIRE_VERSION
        new["length"] = SLOT_BYTES
        new["market_id"] = market
        new["client_order_id"] = np.arange(k, dtype=np.uint64) + np.uint64(coid0)
        new["price_ticks"] = limit
        new["size_lots"] = lots
        new["account"] = account
        new["side"] = side
        new["tif"] = TimeInForce.IOC
        new["flags"] = OrderFlag.REDUCE_ONLY
        cancel_slots = cancel.view(np.uint8).reshape(k, SLOT_BYTES)
        new_slots = new.view(np.uint8).reshape(k, SLOT_BYTES)
        for s in range(e.shards):  # per shard: each account's CANCEL_ALL, then its order if here
            here = market % e.shards == s
            out = np.empty((k + int(here.sum()), SLOT_BYTES), np.uint8)
            at = np.arange(k) + np.cumsum(here) - here
            out[at] = cancel_slots
            out[at[here] + 1] = new_slots[here]
            e.orders[s] += out.tobytes()
        for j, (row, acct, mid, sd, n) in enumerate(
            zip(part.tolist(), account.tolist(), market.tolist(), side.tolist(), lots.tolist(), strict=True)
        ):
            coid = coid0 + j
            key = self._key(row)
            self.orders[coid] = key
            e.register_liquidation_order(mid, acct, coid, sd, n)
            self.cases[key] = Case({coid})
        self.busy()[part] += 1  # (each row's key is its own: book.key)
        self.started += k
        self.started_fast += k

    def _start_few(self, plan: NewCases, rows: np.ndarray, first: int, end: int) -> None:
        """``_start_chunk`` for a few accounts, one struct at a time: the same bytes and state
        (tested against it). A run of new cases is often one or two accounts between takeovers,
        where the columns' fixed cost (~90 us a chunk) was ~30% of a cascade's continuation records
        (py-spy, a replay of the stress cascade's journal)."""
        e, b = self.engine, self.engine.book
        insurance = int(b.balance[e.insurance_row, 0])
        coid = self.next_coid
        self.next_coid += end - first
        events = e.events
        busy = self.busy()
        shards = e.shards
        for j in range(first, end):
            row = int(rows[j])
            account, market, side = int(plan.account[j]), int(plan.market[j]), int(plan.side[j])
            lots, limit = int(plan.lots[j]), int(plan.limit_ticks[j])
            seq = int(b.private_seq[row]) + 1
            b.private_seq[row] = seq + 1  # STARTED, ORDER
            events += _P_LIQ_BYTES(
                *_LIQ_HEAD, 0, seq, account, LiquidationKind.STARTED, 0, 0, 0, int(plan.shortfall[j]), insurance,
            )  # fmt: skip
            events += _P_LIQ_BYTES(
                *_LIQ_HEAD, market, seq + 1, account, LiquidationKind.ORDER, side,
                lots * int(plan.lot_atoms[j]), limit * int(plan.tick_micro[j]), 0, insurance,
            )  # fmt: skip
            cancel = _P_CANCEL_ALL(MsgType.CANCEL_ALL, WIRE_VERSION, SLOT_BYTES, ALL_MARKETS, account)
            for s in range(shards):
                e.orders[s] += cancel
            e.orders[market % shards] += _P_NEW(
                MsgType.NEW_ORDER, WIRE_VERSION, SLOT_BYTES, market, 0, coid, limit, lots, 0, 0, account,
                side, TimeInForce.IOC, 0, OrderFlag.REDUCE_ONLY,
            )  # fmt: skip
            key = self._key(row)
            self.orders[coid] = key
            e.register_liquidation_order(market, account, coid, side, lots)
            self.cases[key] = Case({coid})
            busy[row] += 1
            coid += 1
        self.started += end - first
        self.started_fast += end - first

    def _at_risk(self, row: int) -> bool:
        """Only an account with a perp position or a liability can owe anything: one that holds
        only assets is never liquidated (its estimate's rounding can dip below its requirement)."""
        b = self.engine.book
        return any(b.perp_size[row].tolist()) or min(b.balance[row].tolist()) < 0

    def _unpriced(self) -> tuple[np.ndarray, np.ndarray]:
        """Perps without a mark or a fresh oracle, assets without a price: fixed within a scan (prices
        move only with commands), so computed once per scan, not per account, and kept while the
        prices, marks and stale flags are the same (most records move none of them)."""
        e = self.engine
        key = (e.prices.tobytes(), e.marks.tobytes(), e.stale.tobytes())
        if key == self._unpriced_key:
            return self._bad_prices
        self._unpriced_key = key
        bad_asset = e.stale | (e.prices <= 0)
        bad_asset[0] = False
        bad_perp = (e.marks <= 0) | e.stale[self._perp_base]
        self._all_priced = not (bad_perp.any() or bad_asset.any())
        return bad_perp, bad_asset

    def _stale(self, row: int) -> bool:
        """A price the account depends on is stale, or missing (0): no liquidation runs on it."""
        b = self.engine.book
        bad_perp, bad_asset = self._bad_prices  # (set by scan)
        if self._all_priced:  # (the usual case: nothing to look at)
            return False
        # a perp needs its mark and a fresh oracle; an asset held (or owed) needs its price
        return bool((bad_perp & (b.perp_size[row] != 0)).any() or (bad_asset & (b.balance[row] != 0)).any())

    # ---- an order into the book ------------------------------------------------------------------
    def _holdings(self, row: int) -> list[tuple[float, RiskMarket, int, int]]:
        """(risk, market, signed size in atoms, price) of every holding the book can reduce."""
        e, b = self.engine, self.engine.book
        out = []
        sizes, balance = b.perp_size[row].tolist(), b.balance[row].tolist()  # (one conversion each)
        for p, size in enumerate(sizes):
            if size:
                market = e.config.markets[e.config.perps[p]]
                mark = int(e.marks[p])
                out.append((abs(size) * mark * e.margin.im_rate(market) / 1e14, market, size, mark))
        for market in e.spot_market_of.values():
            qty = balance[market.base_asset]
            if qty:
                price = int(e.prices[market.base_asset])
                out.append((abs(qty) * price * e.margin.im_rate(market) / 1e14, market, qty, price))
        out.sort(key=lambda h: (-h[0], h[1].market_id))
        return out

    def _step(self, row: int, account: int, case: Case) -> None:
        order = self._step_order(row)
        if order is None:
            case.backstop = True
            return
        self._send_step(row, account, case, order)

    def _step_order(self, row: int) -> tuple[RiskMarket, int, int, int] | None:
        """The next step's order of ``row`` (market, side, lots, limit in ticks): its largest-risk
        holding, sized to restore margin, limited by the bankruptcy price; None when the book
        cannot take it (nothing to sell, no price, a limit below one tick): the backstop's."""
        e, b = self.engine, self.engine.book
        holdings = self._holdings(row)
        if not holdings:
            return None
        _risk, market, size, price = holdings[0]
        if price <= 0:
            return None
        equity, maint = int(b.equity[row]), int(b.maintenance[row])
        rate = e.margin.im_rate(market) * e.margin.spec.params.mm_fraction_ppm // PPM or 1
        step = calc_liquidation_step_atoms(
            equity,
            maint,
            price,
            size,
            rate,
            self.params.fee_ppm,
            self.params.buffer_ppm,
            market.lot_size_atoms,
        )
        lots = max(1, step // market.lot_size_atoms)
        bankrupt = calc_bankruptcy_price_micro(equity, size, price)
        side = Side.SELL if size > 0 else Side.BUY
        tick = market.tick_size_micro
        limit = -((-bankrupt) // tick) if side == Side.SELL else bankrupt // tick
        if limit <= 0:
            return None
        return market, side, lots, limit

    def _send_step(self, row: int, account: int, case: Case, order: tuple[RiskMarket, int, int, int]) -> None:
        market, side, lots, limit = order
        tick = market.tick_size_micro
        self._send(account, market, side, lots, limit, key=self._key(row))
        case.in_flight.add(self.next_coid - 1)
        self._event(
            account,
            market.market_id,
            LiquidationKind.ORDER,
            side,
            lots * market.lot_size_atoms,
            limit * tick,
            0,
        )

    def _send(
        self, account: int, market: RiskMarket, side: int, lots: int, limit_ticks: int, key: int = -1
    ) -> None:
        e = self.engine
        coid = self.next_coid
        self.next_coid += 1
        self.orders[coid] = account if key < 0 else key
        self._order_out(self.orders[coid], 1)
        msg = _P_NEW(
            MsgType.NEW_ORDER,
            WIRE_VERSION,
            SLOT_BYTES,
            market.market_id,
            0,
            coid,
            limit_ticks,
            lots,
            0,
            0,
            account,
            side,
            TimeInForce.IOC,
            0,
            OrderFlag.REDUCE_ONLY,
        )
        e.register_liquidation_order(market.market_id, account, coid, side, lots)
        e.orders[market.market_id % e.shards] += msg

    # ---- what the shards said about our orders ----------------------------------------------------
    def on_order_end(self, coid: int, filled_all: bool, refused: bool) -> None:
        """A liquidation order ended: filled, its IOC remainder cancelled, or refused by the shard."""
        key = self.orders.pop(coid, None)
        if key is None:
            return
        self._order_out(key, -1)
        case = self.cases.get(key)
        if case is None:
            return
        case.in_flight.discard(coid)
        if refused:
            case.retries += 1
            if case.retries > self.params.max_retries:
                case.backstop = True
        elif not filled_all:
            case.backstop = True  # the book could not absorb it within the bankruptcy price

    def is_liquidation(self, coid: int) -> bool:
        return coid >= LIQUIDATION_COID_BASE

    def is_liquidating(self, key: int) -> bool:
        """A case is open for the row under ``key`` (an account id, or an isolated position's key)."""
        return key in self.cases

    def cover_isolated(self, row: int) -> None:
        """A flat isolated position owes money (it closed beyond its bankruptcy price): the fund pays,
        as for any bankrupt account; its owner's other money never does."""
        self._cover(row, int(self.engine.book.ids[row]))

    # ---- the backstop ----------------------------------------------------------------------------
    def _takeover(self, row: int, account: int) -> None:
        """The insurance fund takes every holding over at the mark, then pays the deficit."""
        e = self.engine
        fund = e.insurance_row
        taken: list[tuple[RiskMarket, int, int]] = []
        spot_notional = 0
        for _risk, market, size, price in self._holdings(row):
            notional = abs(size) * price // ATOMS_PER_UNIT
            if market.is_perp:
                p = market.perp
                e.transfer_perp(row, fund, p, size, notional)
                taken.append((market, size, price))
            else:
                e.transfer_spot(row, fund, market.base_asset, size, notional)
                spot_notional += notional
            side = Side.SELL if size > 0 else Side.BUY
            self._event(account, market.market_id, LiquidationKind.TAKEOVER, side, abs(size), price, notional)
        self._cover(row, account, taken, spot_notional)

    def _cover(
        self,
        row: int,
        account: int,
        taken: list[tuple[RiskMarket, int, int]] | None = None,
        spot_notional: int = 0,
    ) -> None:
        """Settle the account's cash after a takeover: a deficit from the fund (and ADL), a surplus
        pays the liquidation fee. ``spot_notional``: what the fund took over besides ``taken``'s
        perp positions (its share of a deficit stays with the fund, never deleveraged)."""
        e, b = self.engine, self.engine.book
        fund = e.insurance_row
        cash = int(b.balance[row, 0])
        if cash > 0:
            notional = sum(abs(size) * price // ATOMS_PER_UNIT for _m, size, price in taken or [])
            fee = min(cash, notional * self.params.fee_ppm // PPM)
            if fee:
                e.move_cash(row, fund, fee, BalanceReason.LIQUIDATION, BalanceReason.INSURANCE, account)
            return
        deficit = -cash
        if deficit == 0:
            return
        paid = min(deficit, max(0, int(b.balance[fund, 0])))
        if paid:
            e.move_cash(fund, row, paid, BalanceReason.INSURANCE, BalanceReason.LIQUIDATION, account)
            self._event(account, 0, LiquidationKind.COVERED, 0, 0, 0, paid)
        left = deficit - paid
        if left and taken:
            left = self._deleverage(row, account, left, taken, spot_notional)
        if left:  # nobody left to deleverage: the fund owes it, in the open
            e.move_cash(fund, row, left, BalanceReason.INSURANCE, BalanceReason.LIQUIDATION, account)
            self._event(account, 0, LiquidationKind.UNCOVERED, 0, 0, 0, left)

    def _deleverage(
        self,
        row: int,
        account: int,
        deficit: int,
        taken: list[tuple[RiskMarket, int, int]],
        spot_notional: int = 0,
    ) -> int:
        """Close the fund's freshly taken perp positions against ranked profitable opposite positions;
        split over them the share of the deficit of what they closed, pro rata to the notional each
        closed. Returns what is left.

        The share: the deficit x the notional closed / the notional of everything taken over (the
        perp positions and ``spot_notional``), rounded down: as if each unit taken over carried its
        part of the deficit and the closed ones went at the bankruptcy price. A queue too short to
        close it all (the other holders on that side are not profitable) or spot holdings in the
        takeover leave the rest with the fund; before, the closed positions paid the whole deficit
        (a hedged account paid 2.2 times the notional closed in a replay of an ETH crash)."""
        closed: list[tuple[int, int, RiskMarket]] = []
        for market, size, price in taken:  # the fund holds `size` (same sign as the bankrupt account had)
            self._close_against_queue(market, size, price, (row, self.engine.insurance_row), closed)
        whole = sum(abs(size) * price // ATOMS_PER_UNIT for _m, size, price in taken) + spot_notional
        done = sum(n for _r, n, _m in closed)
        share = deficit if done >= whole else deficit * done // max(whole, 1)
        if share and self._haircut(closed, share, row, BalanceReason.LIQUIDATION, account):
            return deficit - share
        return deficit

    def _close_against_queue(
        self,
        market: RiskMarket,
        size: int,
        price: int,
        exclude: tuple[int, ...],
        closed: list[tuple[int, int, RiskMarket]],
        limit: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Close up to ``|size|`` of the fund's position in ``market`` (signed as the fund holds it)
        at ``price`` against the ADL queue of the opposite side, an ADL event to each counterparty;
        each close is appended to ``closed`` as (row, notional, market). Returns the atoms closed.
        ``limit``: against at most that many counterparties (``_limit_hit`` when it held more);
        ``stop``: asked every ``ADL_STOP_EVERY`` closes, once they are applied (``_fund_stopped``
        then). ``_queue_out``: the queue ran out."""
        b = self.engine.book
        p = market.perp
        want, done, count = abs(size), 0, 0
        self._queue_out = self._limit_hit = False
        side = Side.BUY if size > 0 else Side.SELL  # for the deleveraged account
        batch: list[tuple[int, int, int]] = []  # (row, size the fund hands it, notional): _apply_closes
        settle = lambda: self._apply_closes(market, price, side, batch)  # noqa: E731
        for other, _score in self._adl_queue(p, -1 if size > 0 else 1, exclude, settle):
            if want == 0:
                break
            if count == limit:
                self._limit_hit = True
                break
            if count and stop is not None and count % ADL_STOP_EVERY == 0:
                settle()
                if stop():
                    self._fund_stopped = True
                    break
            count += 1
            d = min(abs(int(b.perp_size[other, p])), want)
            notional = d * price // ATOMS_PER_UNIT
            batch.append((other, d if size > 0 else -d, notional))  # the fund sells a long
            want -= d
            done += d
            closed.append((other, notional, market))
            self._moved.append(other)
        else:
            self._queue_out = True
        settle()
        return done

    def _apply_closes(
        self, market: RiskMarket, price: int, side: int, batch: list[tuple[int, int, int]]
    ) -> None:
        """The closes ``_close_against_queue`` chose, in order: each counterparty takes ``size`` of
        the fund's position at ``notional`` (``transfer_perp``), then its ADL event. The compiled
        core does a batch in one call (``adl_closes``: ~3 us a counterparty where this loop took
        ~8, held to it by the engines' differential test); this loop is its specification."""
        if not batch:
            return
        e, fund, p = self.engine, self.engine.insurance_row, market.perp
        native = getattr(e, "adl_closes", None)
        rows, sizes, notionals = (list(x) for x in zip(*batch, strict=True))
        if native is None or not native(
            fund, p, market.market_id, rows, sizes, notionals, LiquidationKind.ADL, side, price
        ):
            for other, handed, notional in batch:
                e.transfer_perp(fund, other, p, handed, notional)
                self._event(
                    int(e.book.ids[other]), market.market_id, LiquidationKind.ADL, side, abs(handed), price, 0
                )
        batch.clear()

    def _haircut(
        self, closed: list[tuple[int, int, RiskMarket]], deficit: int, dst: int, reason_dst: int, ref: int
    ) -> bool:
        """Split ``deficit`` over the deleveraged positions pro rata to the notional each closed:
        cash from each to ``dst``, an ADL event with each one's share. False when there is nothing
        to split it over."""
        e, b = self.engine, self.engine.book
        weights = [n for _r, n, _m in closed]
        if sum(weights) == 0:
            return False
        cut = [
            (other, haircut, market.market_id)
            for (other, _n, market), haircut in zip(
                closed, calc_pro_rata_split(deficit, weights), strict=True
            )
            if haircut
        ]
        native = getattr(e, "haircuts", None)  # (the compiled core: the loop below in one call)
        rows, amounts, markets = (list(x) for x in zip(*cut, strict=True)) if cut else ([], [], [])
        if native is None or not native(
            dst, rows, amounts, markets, LiquidationKind.ADL, BalanceReason.LIQUIDATION, reason_dst, ref,
            e.insurance_row,
        ):  # fmt: skip
            for other, haircut, mid in cut:
                e.move_cash(other, dst, haircut, BalanceReason.LIQUIDATION, reason_dst, ref)
                self._event(int(b.ids[other]), mid, LiquidationKind.ADL, 0, 0, 0, haircut)
        return True

    def _adl_queue(
        self, perp: int, sign: int, exclude: tuple[int, ...], settle: Callable[[], None] | None = None
    ) -> Iterator[tuple[int, float]]:
        """Rows holding a position of ``sign`` in ``perp``, profitable first by ADL score (ties: the
        lower account id first), ``exclude`` left out.

        The ranking is taken at its first use after the perp's mark moved and walked by every
        bankruptcy until the mark moves again, across records: a cascade deleverages thousands of
        accounts against the same side, and ranking 100,000 holders for each (or for each of the
        small records a cascade is done in) was its bottleneck. A row whose position is gone or
        has flipped is skipped, for good; one partly deleveraged, or whose position or equity
        changed since, keeps its place (its score as of the ranking). A ranking taken in an earlier
        record that runs out is taken afresh before anyone is left uncovered: holders that opened
        since are in the new one. Outside a scan (an isolated position's deficit) the ranking is
        taken afresh and not kept. ``settle``: called before a ranking is taken afresh in the walk
        (the closes chosen so far must be in the positions it reads: ``_apply_closes``)."""
        if not self._scanning:
            yield from (x for x in self._ranked(perp, sign).items() if x[0] not in exclude)
            return
        e = self.engine
        mark = int(e.marks[perp])
        q = self._queues.get((perp, sign))
        if q is None or q.mark != mark:
            q = self._queues[(perp, sign)] = self._fresh(perp, sign)
        size = e.book.perp_size
        seen = q.seen

        def on_side(row: int) -> bool:  # (plain ints: np.sign of a scalar costs ~1 us)
            held = int(size[row, perp])
            return held > 0 if sign > 0 else held < 0

        while q.start < len(seen) and not on_side(seen[q.start][0]):
            q.start += 1  # gone from this side: for good
        i = q.start
        while True:
            if i == len(seen):
                chunk = q.rest.next_chunk()
                if not chunk:
                    if q.record == e.records:  # taken in this record: nobody is left
                        return
                    if settle is not None:
                        settle()
                    q = self._queues[(perp, sign)] = self._fresh(perp, sign)  # (holders since)
                    seen, i = q.seen, 0
                    continue
                seen.extend(chunk)
            row, score = seen[i]
            i += 1
            if row not in exclude and on_side(row):
                yield row, score

    def _fresh(self, perp: int, sign: int) -> _Queue:
        e = self.engine
        return _Queue(self._ranked(perp, sign), int(e.marks[perp]), e.records)

    def _ranked(self, perp: int, sign: int) -> _Ranking:
        """The ranking ``_adl_queue`` walks: the scores of every holder in one pass (the formula
        ``publish_adl_ranks`` ranks by: ``(upnl / margin) * (notional / equity)`` in float64), then
        only the head consumed is sorted (a bankruptcy rarely needs more than a few counterparties)."""
        e, b = self.engine, self.engine.book
        compiled = e.margin.compiled
        mark_per_atom = float(e.marks[perp]) / ATOMS_PER_UNIT
        if compiled is not None:  # (in C, the same doubles: tests/engine/risk/test_native_margin.py)
            rows, score = compiled.adl_scores(b, perp, sign, mark_per_atom, e.system_base)
        else:
            rows, score = adl_scores(b, perp, sign, mark_per_atom, e.system_base)
        return _Ranking(rows.astype(np.int64, copy=False), score, b.ids[rows])

    # ---- the fund unwinds ------------------------------------------------------------------------
    def _unwind(self) -> None:
        if not self.unwind_due and self.fund_adl is None:  # (a holding is unwound only when its price
            return  # moved, and the fund's deleveraging goes on: nothing else to do)
        e, b = self.engine, self.engine.book
        fund = e.insurance_row
        if self.cases.get(int(b.ids[fund])) is not None:
            return
        due, self.unwind_due = self.unwind_due, set()  # one attempt per mark update, not per record
        self._deleverage_fund(repriced=bool(due))
        if self.fund_adl is not None:  # what it is closing against the queue waits for it to end
            closing = {p for p in due if p in self.fund_adl.left}
            self.unwind_due |= closing
            due -= closing
        holdings: list[tuple[RiskMarket, int, int]] = []  # market, size (signed), its price
        for p in np.flatnonzero(b.perp_size[fund]).tolist():
            if p in due:
                holdings.append(
                    (e.config.markets[e.config.perps[p]], int(b.perp_size[fund, p]), int(e.marks[p]))
                )
        for a in (np.flatnonzero(b.balance[fund, 1:]) + 1).tolist():  # spot holdings taken over
            market = e.spot_market_of.get(a)
            if market is not None and ~a in due and not e.stale[a]:
                holdings.append((market, int(b.balance[fund, a]), int(e.prices[a])))
        if not holdings:
            return
        fund_id = int(b.ids[fund])
        busy = {r.market for r in e.ledger.orders_of(fund_id)}  # one unwind order at a time per market
        for market, size, mark in holdings:
            if market.market_id in busy or mark <= 0:
                continue
            side = Side.SELL if size > 0 else Side.BUY
            band = mark * self.params.unwind_band_ppm // PPM
            price = mark - band if side == Side.SELL else mark + band
            tick = market.tick_size_micro
            limit = -((-price) // tick) if side == Side.SELL else price // tick
            lots = abs(size) // market.lot_size_atoms
            if lots and limit > 0:
                self._send(fund_id, market, side, lots, limit)
                self._event(
                    fund_id,
                    market.market_id,
                    LiquidationKind.UNWIND,
                    side,
                    lots * market.lot_size_atoms,
                    limit * tick,
                    0,
                )

    def _deleverage_fund(self, repriced: bool = True) -> None:
        """The fund's positions have lost more than its own cash: close them against the ADL queue.

        A position the fund took over keeps moving until its unwind fills. In a squeeze the book
        will not take it back (JELLY, March 2025: the backstop vault's inherited short lost more
        with every tick), and the loss past the fund's cash would sit on the exchange unpaid. So on
        a mark update, when ``max(cash, 0)`` plus the positions' unrealised P&L is below zero, every
        perp position of the fund with no unwind order out is closed at the mark against the
        opposite positions, highest ADL score first (as for a bankrupt account). The loss this
        realises beyond the fund's cash (the fund's deficit on these positions, no older debt) is
        split over the deleveraged positions pro rata to the notional each closed, like
        ``_deleverage``'s: together the same as closing at the fund's bankruptcy price. An ``ADL``
        event on the fund's account names each position it closed (size and mark); the
        counterparties get theirs as for any ADL, their share of the deficit in ``amount_micro``.

        With ``params.fund_adl_per_record`` the closing is spread over records (``FundAdl``): each
        record closes against at most that many counterparties and charges them their share (with
        ``accounts_per_record``, as the risk process runs, only continuation records close); a
        new mark of a perp it closes ends it (what it closed has paid its share) and, the fund
        still short, a new one starts at the new mark. ``repriced``: a mark moved since the last
        call (only then can a new one start)."""
        e = self.engine
        plan = self.fund_adl
        if plan is not None and any(int(e.marks[p]) != m for p, m in plan.marks.items()):
            plan = self.fund_adl = None  # closed at the old mark so far, and charged for it
        if plan is None:
            if not repriced:
                return
            plan = self._plan_fund_adl()
            if plan is None:
                return
        self.fund_adl = plan
        if self.continuing or self.params.accounts_per_record is None:  # (bounded: as the scan's
            self._close_fund(plan)  # accounts, in continuation records only)
            if not plan.left:
                self.fund_adl = None

    def _plan_fund_adl(self) -> FundAdl | None:
        e, b = self.engine, self.engine.book
        fund = e.insurance_row
        perps = np.flatnonzero(b.perp_size[fund]).tolist()
        if not perps:
            return None
        cash0 = int(b.balance[fund, 0])
        upnl = sum(
            int(b.perp_size[fund, p]) * int(e.marks[p]) // ATOMS_PER_UNIT - int(b.perp_cost[fund, p])
            for p in perps
        )
        if max(cash0, 0) + upnl >= 0:
            return None
        fund_id = int(b.ids[fund])
        busy = {r.market for r in e.ledger.orders_of(fund_id)}  # an unwind order out: its fill is due
        marks: dict[int, int] = {}
        left: dict[int, int] = {}
        whole = closing = 0
        for p in perps:
            market = e.config.markets[e.config.perps[p]]
            mark = int(e.marks[p])
            if market.market_id in busy or mark <= 0:
                continue
            size = int(b.perp_size[fund, p])
            marks[p], left[p] = mark, size
            whole += abs(size) * mark // ATOMS_PER_UNIT
            closing += size * mark // ATOMS_PER_UNIT - int(b.perp_cost[fund, p])
        if not left:
            return None
        return FundAdl(marks, left, cash0, max(0, -(max(cash0, 0) + closing)), whole)

    def _close_fund(self, plan: FundAdl) -> None:
        """One record's share of ``plan``: closes against at most ``fund_adl_per_record``
        counterparties, in perp order, then the charge (``FundAdl``). Live, a continuation record
        stops them where its stop rule says (``yield_to``, asked every ``ADL_STOP_EVERY`` closes)
        and after ``FUND_ADL_WHEN_CUT`` when its scan already stopped for a waiting input; the count
        is journaled with the record (``fund_closed``) and a replay closes as many (``fund_cut_at``)."""
        e, b = self.engine, self.engine.book
        fund = e.insurance_row
        fund_id = int(b.ids[fund])
        room = self.params.fund_adl_per_record
        stop: Callable[[], bool] | None = None
        closed: list[tuple[int, int, RiskMarket]] = []
        if self.fund_cut_at is not None:  # a replay: as many as the live record closed, or no
            room = None if self.fund_cut_at == NO_CUT else self.fund_cut_at  # bound if it ran out
        elif room is not None and self.yield_to is not None:
            if self.cut != NO_CUT:
                room = min(room, FUND_ADL_WHEN_CUT)
            yield_to = self.yield_to
            stop = lambda: bool(closed) and yield_to()  # noqa: E731
        self._fund_stopped = early = False
        for p in list(plan.left):
            size, want = int(b.perp_size[fund, p]), plan.left[p]
            if (size > 0) != (want > 0) or abs(size) < abs(want):  # (it has been unwound meanwhile)
                want = 0 if size == 0 or (size > 0) != (want > 0) else size
                plan.short = True
            if want == 0:
                del plan.left[p]
                continue
            if (room is not None and len(closed) >= room) or (stop is not None and stop()):
                early = True  # (a stop before a perp's queue is even looked at)
                break
            market, mark = e.config.markets[e.config.perps[p]], plan.marks[p]
            first, cash = len(closed), int(b.balance[fund, 0])
            limit = None if room is None else room - len(closed)
            done = self._close_against_queue(market, want, mark, (fund,), closed, limit, stop)
            plan.realised += int(b.balance[fund, 0]) - cash  # (closing moves only realised P&L)
            plan.done += sum(n for _r, n, _m in closed[first:])
            if done:
                side = Side.SELL if want > 0 else Side.BUY  # what the fund did
                self._event(fund_id, market.market_id, LiquidationKind.ADL, side, done, mark, 0)
            rest = abs(want) - done
            if rest and self._queue_out:  # nobody left on the other side
                plan.short = True
                rest = 0
            if rest:
                plan.left[p] = rest if want > 0 else -rest
            else:
                del plan.left[p]
            if self._fund_stopped or self._limit_hit:
                early = True
                break
        # where it stopped, for a replay: after so many closes, or where it ran out (it went through
        # every perp without a bound holding: a replay without one goes the same way, through
        # perps whose queue is empty too)
        self.fund_closed = len(closed) if early else NO_CUT
        if not plan.left and not plan.short:  # all of it closed: what it realised past cash0, exactly
            target = max(0, -(max(plan.cash0, 0) + plan.realised))
        else:  # the share of the notional closed so far
            target = plan.deficit * plan.done // max(plan.whole, 1)
        charge = target - plan.charged
        if charge > 0 and closed and self._haircut(closed, charge, fund, BalanceReason.INSURANCE, fund_id):
            plan.charged += charge

    # ---- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        return {
            "cases": sorted([a, sorted(c.in_flight), c.retries, c.backstop] for a, c in self.cases.items()),
            "orders": sorted(self.orders.items()),
            "next_coid": self.next_coid,
            "unwind_due": sorted(self.unwind_due),
            "pending": self.pending.tolist(),
            "fund_adl": None if self.fund_adl is None else self.fund_adl.to_json(),
            "adl_queues": [[p, side, *q.to_json()] for (p, side), q in sorted(self._queues.items())],
            "adl_ranks": [
                [int(r), int(p), int(v)]
                for r, p in zip(*np.nonzero(self.rank_cache), strict=True)
                for v in (self.rank_cache[r, p],)
            ],
        }

    def load_json(self, doc: dict[str, object]) -> None:
        self.cases = CaseBook(
            self.engine.book,
            ((a, Case(set(f), r, b)) for a, f, r, b in doc["cases"]),  # type: ignore[attr-defined]
        )
        self.orders = {int(c): int(a) for c, a in doc["orders"]}  # type: ignore[attr-defined]
        self._busy = np.zeros(0, np.int32)
        for key in self.orders.values():
            self._order_out(key, 1)
        self.next_coid = int(doc["next_coid"])  # type: ignore[arg-type]
        self.unwind_due = set(doc["unwind_due"])  # type: ignore[call-overload]
        self.pending = np.array(doc.get("pending", ()), np.intp)  # type: ignore[call-overload]
        fund_adl = doc.get("fund_adl")
        self.fund_adl = None if fund_adl is None else FundAdl.from_json(fund_adl)  # type: ignore[arg-type]
        self._queues = {(int(x[0]), int(x[1])): _Queue.from_json(x[2:]) for x in doc.get("adl_queues", ())}  # type: ignore[attr-defined]
        self.rank_cache = np.zeros((self.engine.book.capacity, self.engine.config.n_perps), np.int8)
        for r, p, v in doc["adl_ranks"]:  # type: ignore[attr-defined]
            self.rank_cache[r, p] = v

    # ---- ADL ranks (published when they change) ---------------------------------------------------
    def publish_adl_ranks(self) -> None:
        """Every position's ADL quantile, vectorised per perp and side; an event when one changes.
        Per perp only the rows holding it (or last ranked) are valued: with many accounts and few
        positions per perp the work is the positions', not the accounts'."""
        e, b = self.engine, self.engine.book
        n = b.count
        if self.rank_cache.shape != (b.capacity, e.config.n_perps):
            grown = np.zeros((b.capacity, e.config.n_perps), np.int8)
            grown[: self.rank_cache.shape[0]] = self.rank_cache[: b.capacity]
            self.rank_cache = grown
        for p, mid in enumerate(e.config.perps):
            mark = float(e.marks[p])
            held = b.perp_size[:n, p] != 0  # the work below is over these rows only
            if mark <= 0 or not held.any():
                continue
            # rows with a position, and rows whose last rank was not 0 (they may drop to 0); a mask,
            # not np.union1d (which hashes: ~50 ms at 100,000 rows)
            rows = np.flatnonzero(held | (self.rank_cache[:n, p] != 0))
            size = b.perp_size[rows, p]
            equity = b.equity[rows].astype(np.float64)
            margin = np.maximum(b.initial[rows], 1).astype(np.float64)
            system = b.ids[rows] >= e.system_base
            value = size.astype(np.float64) * (mark / ATOMS_PER_UNIT)
            upnl = value - b.perp_cost[rows, p]
            with np.errstate(divide="ignore", invalid="ignore"):
                score = np.where(
                    (upnl > 0) & (equity > 0) & ~system, (upnl / margin) * (np.abs(value) / equity), 0.0
                )
            ranks = np.zeros(len(rows), np.int8)
            for sign in (1, -1):
                sel = np.flatnonzero((np.sign(size) == sign) & (score > 0))
                if len(sel):
                    ranks[sel] = calc_adl_ranks_array(score[sel])
            moved = ranks != self.rank_cache[rows, p]
            changed = rows[moved]  # ascending, distinct: seqs as next_seq would give them
            if len(changed):
                self.rank_cache[changed, p] = ranks[moved]
                e.events += e.pack_private(MsgType.ADL_RANK, mid, changed, rank=ranks[moved])
