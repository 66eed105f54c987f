"""A big record after a price move: the accounts nearest their maintenance first.

``RiskEngine.end_of_record`` recomputes the accounts whose headroom the move can consume
(``_nearest``), starts their liquidations (``Liquidator.scan(orders_only=True)``), and only then
recomputes everyone else: a cascade's first orders do not wait for 100,000 holders' figures. A
heuristic of order only: the same accounts are liquidated with the same orders and the same state
as when every row is recomputed first; only where the outputs sit in the record moves.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.risk import risk_engine
from engine.risk.native_risk import NativeRiskEngine, native_available
from engine.risk.risk_config import load_risk_config
from engine.risk.risk_engine import RiskEngine, Source
from engine.types.enums import LiquidationKind, MsgType, Side
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES, field_offset
from hx.config import DEFAULT_CONFIG

BTC_PERP = 100
HOLDERS = 6_000
LEVERAGED = 40  # every 150th holder: 0.5 BTC on 1,500-1,539 USDC (about 30x)


def _engine(cls: type[RiskEngine]) -> RiskEngine:
    """``HOLDERS`` accounts long or short BTC-PERP at $95,000, funded 100,000 USDC but for the
    leveraged longs; their figures computed at a first mark."""
    engine = cls(load_risk_config(str(DEFAULT_CONFIG)))
    book = engine.book
    rows = np.array([book.row(a) for a in range(1, HOLDERS + 1)])
    perp = engine.config.markets[BTC_PERP].perp
    size = np.where(np.arange(HOLDERS) % 2 == 0, 10_000_000, -10_000_000)  # 0.1 BTC in atoms
    lev = rows[::150][:LEVERAGED]
    size[lev - rows[0]] = 50_000_000
    book.balance[rows, 0] = 100_000 * 10**6
    book.balance[lev, 0] = (1_500 + np.arange(LEVERAGED)) * 10**6  # (distinct headrooms)
    book.perp_size[rows, perp] = size
    book.perp_cost[rows, perp] = size * 950  # atoms x $95,000 (micro) / 1e8
    engine.net_deposits[0] += int(book.balance[rows, 0].sum())
    _apply(engine, 950_000)
    assert not engine.liquidator.cases
    return engine


def _apply(engine: RiskEngine, ticks: int, seen: list[int] | None = None) -> list[bytes]:
    """A MARK_PRICE record; the outputs of each flush (early flushes, then the record's end).
    ``seen`` gets the equity of a far holder (not leveraged) at each flush."""
    flushes: list[bytes] = []
    far = engine.book.rows[2]

    def flush() -> None:
        _orders, events = engine.take_outputs()
        flushes.append(events)
        if seen is not None:
            seen.append(int(engine.book.equity[far]))

    engine.early_flush = flush
    engine.handle_command(encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=ticks), 0, Source.ORACLE)
    engine.end_of_record()
    flush()
    engine.early_flush = None
    return flushes


def _slots(data: bytes) -> list[bytes]:
    return [data[i : i + SLOT_BYTES] for i in range(0, len(data), SLOT_BYTES)]


def _started(data: bytes) -> list[int]:
    out = []
    for slot in _slots(data):
        if slot[0] == MsgType.LIQUIDATION:
            e = decode(slot, 0)
            if e["kind"] == LiquidationKind.ORDER:
                out.append(e["account"])
    return out


@pytest.mark.parametrize("cls", ["native", "python"])
def test_the_near_accounts_orders_leave_before_everyone_elses_figures(
    monkeypatch: pytest.MonkeyPatch, cls: str
) -> None:
    engine_cls = NativeRiskEngine if cls == "native" and native_available() else RiskEngine
    first, whole = _engine(engine_cls), _engine(engine_cls)
    drop = 950_000 * 997 // 1000  # -0.3%: the leveraged longs fall below maintenance
    far = first.book.rows[2]
    before = int(first.book.equity[far])
    seen: list[int] = []
    flushes = _apply(first, drop, seen)
    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_ROWS", 10**9)  # every row first, as before
    seen_whole: list[int] = []
    flushes_whole = _apply(whole, drop, seen_whole)
    # the same liquidations, the same state, the same events (only their place in the record moved)
    everything = b"".join(flushes)
    assert sorted(_started(everything)) == sorted(_started(b"".join(flushes_whole)))
    assert len(_started(everything)) == LEVERAGED
    assert first.state_hash() == whole.state_hash()
    assert sorted(_slots(everything)) == sorted(_slots(b"".join(flushes_whole)))
    # the first order left before the far holders' figures were computed; before, after them
    assert _started(flushes[0]) and _started(flushes_whole[0])
    assert seen[0] == before != seen[-1] == int(first.book.equity[far])
    assert seen_whole[0] == seen_whole[-1] != before
    assert first.liquidator.started_early == LEVERAGED and whole.liquidator.started_early == 0


def test_a_record_without_a_move_or_too_small_goes_the_old_way() -> None:
    """No price moved (a funding or an order record) or fewer rows than NEAREST_FIRST_ROWS: no
    nearest-first pass."""
    engine = _engine(NativeRiskEngine if native_available() else RiskEngine)
    rows = np.arange(engine.book.count)
    assert not len(engine._nearest(rows))  # nothing moved since the last record
    engine.marks[engine.config.markets[BTC_PERP].perp] -= 10**9
    assert len(engine._nearest(rows)) >= LEVERAGED
    assert not len(engine._nearest(rows[: risk_engine.NEAREST_FIRST_ROWS - 1]))


@pytest.mark.parametrize("cls", ["native", "python"])
def test_an_order_after_a_mark_in_the_same_record_is_checked_on_the_new_figures(cls: str) -> None:
    """A price command's holders are marked dirty in one pass later in the record
    (``RiskEngine._flush_touched``), but before anything reads the flags: an order behind the
    mark in the same record finds its account dirty and is checked on figures at the new mark."""
    engine = _engine(NativeRiskEngine if cls == "native" and native_available() else RiskEngine)
    b = engine.book
    row, other = b.rows[2], b.rows[4]
    before, other_before = int(b.equity[row]), int(b.equity[other])
    record = encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=900_000) + encode(
        MsgType.NEW_ORDER, BTC_PERP, account=2, side=Side.BUY, price_ticks=900_000, size_lots=1,
        client_order_id=7,
    )  # fmt: skip
    engine.apply_slots(record, 0, 2, Source.GATEWAY)
    assert int(b.equity[row]) != before  # recomputed before its check
    assert b.dirty[other] and int(b.equity[other]) == other_before  # the others wait for the record's end
    engine.end_of_record()
    assert int(b.equity[other]) != other_before


def test_only_the_nearest_go_first_when_many_are_near(monkeypatch: pytest.MonkeyPatch) -> None:
    """More near accounts than NEAREST_FIRST_MAX: the nearest by headroom over maintenance go
    first (the leveraged longs), the same in both engines."""
    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_MAX", 10)
    got = []
    for cls in (NativeRiskEngine if native_available() else RiskEngine, RiskEngine):
        engine = _engine(cls)
        engine.marks[engine.config.markets[BTC_PERP].perp] -= 10**9  # a 1% move: everyone within reach
        rows = np.arange(engine.book.count)
        monkeypatch.setattr(risk_engine, "NEAREST_FIRST_MAX", 10**9)
        everyone = engine._nearest(rows)
        monkeypatch.setattr(risk_engine, "NEAREST_FIRST_MAX", 10)
        got.append(engine._nearest(rows).tolist())
        b = engine.book
        assert len(everyone) > 10 and 10 <= len(got[-1]) < len(everyone)
        ratio = (b.equity[everyone] - b.maintenance[everyone]) / b.maintenance[everyone]
        assert max(ratio[np.isin(everyone, got[-1])]) <= min(ratio[~np.isin(everyone, got[-1])])
    assert got[0] == got[1]


def test_a_move_that_puts_most_accounts_within_reach_still_sends_the_nearest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first big step puts more than half the book within reach: the nearest
    NEAREST_FIRST_MAX still go first (the route was skipped, and the first order waited for the
    recompute of every holder: 15 ms in a traced cascade)."""
    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_MAX", 10)
    for cls in (NativeRiskEngine if native_available() else RiskEngine, RiskEngine):
        engine = _engine(cls)
        engine.marks[engine.config.markets[BTC_PERP].perp] //= 2  # -50%: everyone within reach
        rows = np.arange(engine.book.count)
        first = engine._nearest(rows)
        assert 10 <= len(first) < 20 and set(first.tolist()) <= set(
            engine.book.rows[a] for a in range(1, HOLDERS + 1)
        )


@pytest.mark.parametrize("cls", ["native", "python"])
def test_a_funding_in_the_price_record_is_paid_after_the_nearest_accounts_first_orders(cls: str) -> None:
    """The oracle sends a perp's FUNDING in the record of its prices: its payments (every holder)
    wait until the accounts the move put under maintenance have their first orders out, then are
    paid in the same record, before everyone else's figures."""
    from engine.types.enums import BalanceReason

    engine = _engine(NativeRiskEngine if cls == "native" and native_available() else RiskEngine)
    flushes: list[bytes] = []
    engine.early_flush = lambda: flushes.append(engine.take_outputs()[1])
    funding = encode(MsgType.FUNDING, BTC_PERP, interval_id=1, rate_ppb=100_000, mark_micro=94_715 * 10**6)
    engine.handle_command(
        encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=950_000 * 997 // 1000), 0, Source.ORACLE
    )
    engine.handle_command(funding, 0, Source.ORACLE)
    engine.end_of_record()
    flushes.append(engine.take_outputs()[1])

    def paid(data: bytes) -> list[int]:
        return [
            decode(s, 0)["account"]
            for s in _slots(data)
            if s[0] == MsgType.BALANCE and decode(s, 0)["reason"] == BalanceReason.FUNDING
        ]

    assert _started(flushes[0]) and not paid(flushes[0])  # the first orders, nothing paid yet
    accounts = [a for f in flushes for a in paid(f)]  # then every holder, once, in this record
    clearing = risk_engine.funding_clearing_account(0)  # (the longs are more: it takes the net)
    assert sorted(accounts) == [*range(1, HOLDERS + 1), clearing]
    assert not engine._funding_due


@pytest.mark.parametrize("cls", ["native", "python"])
def test_a_gap_past_the_takeover_line_sends_the_next_nearest_first(
    monkeypatch: pytest.MonkeyPatch, cls: str
) -> None:
    """A gap down puts the nearest accounts (the 30x longs) past the takeover threshold: the
    backstop takes them whole and no order leaves. The next nearest window (10x longs, now between
    the threshold and maintenance) is recomputed and scanned before everyone else's figures, so
    the first order still leaves early; the same state as with every row first."""
    engine_cls = NativeRiskEngine if cls == "native" and native_available() else RiskEngine
    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_MAX", 10)
    engines = []
    for _ in range(2):
        engine = _engine(engine_cls)
        b = engine.book
        rows = np.array([b.rows[a] for a in range(2, HOLDERS + 1, 2)][::50][:30])  # 0.1 BTC shorts
        p = engine.config.markets[BTC_PERP].perp
        b.perp_size[rows, p] = 10_000_000  # ... made 0.1 BTC longs on twice their maintenance
        b.perp_cost[rows, p] = 10_000_000 * 950
        engine.net_deposits[0] -= int(b.balance[rows, 0].sum())
        b.balance[rows, 0] = b.maintenance[rows] * 2
        engine.net_deposits[0] += int(b.balance[rows, 0].sum())
        b.dirty[rows] = True
        _apply(engine, 950_000 * 9999 // 10_000)  # (their figures, nobody liquidated yet)
        assert not engine.liquidator.cases
        engines.append(engine)
    windowed, whole = engines
    gap = 950_000 * 985 // 1000  # -1.5%: the 30x longs past the takeover line, the 10x under maintenance
    flushes = _apply(windowed, gap)
    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_ROWS", 10**9)  # every row first
    flushes_whole = _apply(whole, gap)
    kinds = [decode(s, 0)["kind"] for f in flushes_whole for s in _slots(f) if s[0] == MsgType.LIQUIDATION]
    assert kinds.count(LiquidationKind.TAKEOVER) >= LEVERAGED  # (the 30x went to the backstop)
    assert _started(flushes[0])  # an order left in the first flush, from the next window
    assert windowed.liquidator.started_early > 0
    assert windowed.state_hash() == whole.state_hash()

    def events(data: bytes) -> list[bytes]:  # (a LIQUIDATION's fund balance is the fund's at the
        at = field_offset(MsgType.LIQUIDATION, "insurance_micro")  # time: the 10x started earlier)
        return sorted(
            s[:at] + bytes(8) + s[at + 8 :] if s[0] == MsgType.LIQUIDATION else s for s in _slots(data)
        )

    assert events(b"".join(flushes)) == events(b"".join(flushes_whole))


def test_a_nearest_first_pass_starts_at_most_early_starts_and_the_full_scan_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass is for the first orders: a window of thousands under maintenance (a gap) would
    otherwise start them all before anyone else's figures; the record's full scan starts the rest,
    to the same state."""
    from engine.risk import liquidator

    drop = 950_000 * 997 // 1000
    monkeypatch.setattr(liquidator, "EARLY_STARTS", 5)
    bounded = _engine(NativeRiskEngine if native_available() else RiskEngine)
    flushes = _apply(bounded, drop)
    monkeypatch.setattr(liquidator, "EARLY_STARTS", 10**6)
    unbounded = _engine(NativeRiskEngine if native_available() else RiskEngine)
    _apply(unbounded, drop)
    assert bounded.liquidator.started_early == 5 and unbounded.liquidator.started_early == LEVERAGED
    assert len(_started(b"".join(flushes))) == LEVERAGED and not len(bounded.liquidator.pending)
    assert bounded.state_hash() == unbounded.state_hash()


def test_the_nearest_windows_cover_every_near_row_once_nearest_then_a_spread_sample_then_doubling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``RiskEngine._nearest_windows``: the nearest window (``_nearest``), then ``NEAREST_SAMPLE``
    rows spread over the rest (a gap's accounts an order starts from can sit anywhere among
    them), then the nearest of the rest, twice as many each time; every row within reach once."""
    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_MAX", 100)
    monkeypatch.setattr(risk_engine, "NEAREST_SAMPLE", 50)
    engine = _engine(NativeRiskEngine if native_available() else RiskEngine)
    b = engine.book
    held = np.array([b.rows[a] for a in range(1, HOLDERS + 1)])  # every holder 3-63% above maintenance
    b.balance[held, 0] += b.maintenance[held] * (103 + np.arange(HOLDERS) % 61) // 100 - b.equity[held]
    _apply(engine, 950_000)
    engine.marks[engine.config.markets[BTC_PERP].perp] = 950_000 * 9 // 10 * 10**5  # -10%: all in reach
    rows = np.arange(engine.book.count)
    windows = [w.tolist() for w in engine._nearest_windows(rows)]
    everyone = engine._near_rows(rows, False)[0].tolist()
    assert len(everyone) == HOLDERS
    seen = [r for w in windows for r in w]
    assert sorted(seen) == sorted(everyone) and len(seen) == len(set(seen))
    assert windows[0] == engine._nearest(rows).tolist() and 100 <= len(windows[0]) < 200
    assert 50 <= len(windows[1]) <= 52 and windows[1][-1] - windows[1][0] > HOLDERS // 2  # spread
    assert len(windows[2]) >= 200 and len(windows[3]) >= 400  # (ties kept whole: at least)
    ratio = {r: (int(b.equity[r]) - int(b.maintenance[r])) / int(b.maintenance[r]) for r in everyone}
    assert max(ratio[r] for r in windows[0]) <= min(ratio[r] for w in windows[1:] for r in w)
    assert max(ratio[r] for r in windows[2]) <= min(ratio[r] for w in windows[3:] for r in w)
