"""Liquidation, backstop and ADL through the in-process exchange (risk + the matching core).

Conservation and reservations are checked after every command by the harness (validate)."""

from __future__ import annotations

import numpy as np
import pytest
from risk_harness import BTC_PERP, USDC, LocalExchange, both_engines  # noqa: F401 (a fixture, used by name)

from engine.risk.liquidator import LiquidationParams
from engine.risk.risk_engine import Source, insurance_account
from engine.types.enums import LiquidationKind, MsgType, RejectCode
from engine.wire.codec import encode

pytestmark = pytest.mark.usefixtures("both_engines")  # every test on both risk engines

ALICE, MAKER, SHORT = 21, 22, 23  # Alice: 10x long; MAKER quotes; SHORT holds the other side


def _mark(x: LocalExchange, ticks: int) -> None:
    x.send(encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=ticks), Source.ORACLE)


def _setup(alice_usdc: int, fund_usdc: int = 0) -> LocalExchange:
    """Alice long 0.1 BTC at $50,000 (notional $5,000) with ``alice_usdc`` of collateral."""
    x = LocalExchange()
    _mark(x, 500_000)
    x.deposit(ALICE, USDC, alice_usdc)
    x.deposit(SHORT, USDC, 100_000 * 10**6)
    x.deposit(MAKER, USDC, 100_000 * 10**6)
    if fund_usdc:  # seed the insurance fund through its own deposit
        x.risk.book.balance[x.risk.insurance_row, USDC] += fund_usdc
        x.risk.net_deposits[USDC] += fund_usdc
    x.order(SHORT, BTC_PERP, 1, 500_000, 100)
    x.order(ALICE, BTC_PERP, 0, 500_000, 100)
    return x


def _liqs(x: LocalExchange, kind: int | None = None) -> list[dict]:  # type: ignore[type-arg]
    return [
        e
        for e in x.risk_events
        if e["msg_type"] == MsgType.LIQUIDATION and (kind is None or e["kind"] == kind)
    ]


def _margin(x: LocalExchange, account: int) -> dict:  # type: ignore[type-arg]
    return [e for e in x.risk_events if e["msg_type"] == MsgType.ACCOUNT_MARGIN and e["account"] == account][
        -1
    ]


def _walk_down(x: LocalExchange, start: int, step: int, until_kind: int) -> int:
    """Lower the mark by ``step`` ticks until a liquidation event of ``until_kind`` appears; the
    breach mark (checking on the way that nothing started while equity covered maintenance)."""
    mark = start
    while not _liqs(x, until_kind):
        m = _margin(x, ALICE)
        assert m["equity_micro"] >= m["maintenance_micro"] or _liqs(x), "below maintenance, not liquidated"
        mark -= step
        assert mark > 0
        _mark(x, mark)
    return mark


def test_below_maintenance_the_account_is_reduced_into_the_book_and_pays_the_fee() -> None:
    x = _setup(700 * 10**6)  # $700 for a $5,000 long
    for price in range(490_000, 400_000, -5_000):
        x.order(MAKER, BTC_PERP, 0, price, 20)  # bids wait below, every $500
    _walk_down(x, 500_000, 1_000, LiquidationKind.STARTED)
    orders = _liqs(x, LiquidationKind.ORDER)
    assert orders, "a liquidation order went into the book"
    fills = [
        e
        for e in x.shard_events
        if e["msg_type"] == MsgType.FILL and e["taker_account"] == ALICE and e["taker_side"] == 1
    ]
    assert fills, "the liquidation order traded with the resting bids"
    limit_ticks = orders[0]["price_micro"] // 100_000
    assert all(f["price_ticks"] >= limit_ticks for f in fills)  # never past the bankruptcy price
    b = x.risk.book
    assert b.balance[x.risk.insurance_row, USDC] > 0  # the liquidation fee
    assert 0 < int(b.perp_size[x.row(ALICE), 0]) < 10**7  # partial before full


def test_orders_of_a_liquidating_account_are_refused() -> None:
    from engine.risk.liquidator import Case

    x = _setup(700 * 10**6)
    x.risk.liquidator.cases[ALICE] = Case(in_flight={1 << 63})  # a liquidation order in the book
    x.order(ALICE, BTC_PERP, 0, 450_000, 1)
    assert x.last_reject() == RejectCode.ACCOUNT_LIQUIDATING
    x.order(MAKER, BTC_PERP, 0, 450_000, 1, client_order_id=(1 << 63) + 5)
    assert x.last_reject() == RejectCode.BAD_FIELD  # risk's own client order ids are reserved


def test_an_empty_book_sends_it_to_the_backstop_and_the_fund_covers_the_deficit() -> None:
    x = _setup(700 * 10**6, fund_usdc=10_000 * 10**6)
    _mark(x, 436_000)  # -$640: equity ~$57, far below half of maintenance: taken over at once
    assert _liqs(x, LiquidationKind.TAKEOVER)
    b = x.risk.book
    fund = x.risk.insurance_row
    assert b.perp_size[x.row(ALICE), 0] == 0 and b.perp_size[fund, 0] == 10**7
    assert b.balance[x.row(ALICE), USDC] >= 0
    _mark(x, 420_000)  # the fund now carries the loss it took over (and tries to unwind it)
    assert _liqs(x, LiquidationKind.UNWIND)


@pytest.mark.parametrize("fund_usdc", [10_000 * 10**6, 0])  # the fund covers it; ADL does
def test_a_case_the_backstop_takes_over_ends_with_ended_on_the_accounts_stream(fund_usdc: int) -> None:
    """A client learns its liquidation is over (its orders are accepted again) from ENDED: after a
    takeover too, not only after orders. Its amount is the cash the flat account is left with."""
    x = _setup(700 * 10**6, fund_usdc=fund_usdc)
    _mark(x, 420_000)  # -$800: taken over at once
    mine = [e for e in _liqs(x) if e["account"] == ALICE]
    kinds = [e["kind"] for e in mine]
    assert kinds[0] == LiquidationKind.STARTED and LiquidationKind.TAKEOVER in kinds
    assert kinds[-1] == LiquidationKind.ENDED and kinds.count(LiquidationKind.ENDED) == 1
    assert mine[-1]["amount_micro"] == int(x.risk.book.balance[x.row(ALICE), USDC]) == 0
    assert ALICE not in x.risk.liquidator.cases
    seqs = [e["seq"] for e in x.risk_events if e.get("account") == ALICE and "seq" in e]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # the account's stream stays gap-free


def test_a_deficit_the_fund_cannot_pay_is_deleveraged_against_profitable_shorts() -> None:
    x = _setup(700 * 10**6, fund_usdc=0)
    _mark(x, 420_000)  # -$800: Alice at -$100 equity, the fund holds nothing
    adl = _liqs(x, LiquidationKind.ADL)
    assert adl, "the profitable short was deleveraged"
    b = x.risk.book
    assert b.perp_size[x.row(SHORT), 0] == 0  # its position closed against the bankrupt one
    haircut = sum(e["amount_micro"] for e in adl)
    assert haircut > 0
    assert b.balance[x.row(ALICE), USDC] == 0  # the deficit is covered, nothing more
    assert b.balance[x.risk.insurance_row, USDC] == 0
    assert not _liqs(x, LiquidationKind.UNCOVERED)


def test_a_fund_whose_takeover_loses_more_than_its_cash_is_deleveraged_to_zero_not_left_owing() -> None:
    """The JELLY lesson: a position the fund took over and cannot unwind keeps losing. Once that loss
    passes the fund's own cash, the position is closed at the mark against the profitable opposite
    side, and the loss past the cash is theirs (the fund's bankruptcy price), never a silent hole."""
    x = _setup(700 * 10**6, fund_usdc=100 * 10**6)
    _mark(x, 436_000)  # Alice taken over at $43,600: the fund is long 0.1 BTC, no bids to unwind into
    b, fund = x.risk.book, x.risk.insurance_row
    assert _liqs(x, LiquidationKind.TAKEOVER) and b.perp_size[fund, 0] == 10**7
    cash_before = int(b.balance[fund, USDC])
    assert 0 < cash_before < 160 * 10**6  # $100 and the fee: less than the next move's loss
    short_before = int(b.balance[x.row(SHORT), USDC])
    assert not _liqs(x, LiquidationKind.ADL)
    _mark(x, 420_000)  # -$160 on the fund's long: more than its cash
    fund_id = int(b.ids[fund])
    mine = [e for e in _liqs(x, LiquidationKind.ADL) if e["account"] == fund_id]
    assert [(e["side"], e["size_atoms"], e["price_micro"]) for e in mine] == [(1, 10**7, 42_000 * 10**6)]
    assert b.perp_size[fund, 0] == 0 and b.perp_size[x.row(SHORT), 0] == 0
    assert int(b.balance[fund, USDC]) == 0  # its cash spent, not a cent owed
    haircut = sum(e["amount_micro"] for e in _liqs(x, LiquidationKind.ADL) if e["account"] == SHORT)
    loss = 160 * 10**6  # 0.1 BTC x ($43,600 - $42,000)
    assert haircut == loss - cash_before  # the loss past the fund's cash, and no more
    # the short closed at the mark: +$800 on 0.1 BTC ($50,000 - $42,000), less the haircut
    assert int(b.balance[x.row(SHORT), USDC]) - short_before == 800 * 10**6 - haircut
    assert not _liqs(x, LiquidationKind.UNCOVERED)


def _crowd(liquidation: LiquidationParams | None = None) -> tuple[LocalExchange, list[int]]:
    """Alice long 0.091 BTC at $50,000 against seven shorts of 10 to 16 lots (different collateral,
    so different ADL scores), taken over at $43,600 by a fund of $100: it cannot unwind (no bids)."""
    x = LocalExchange(liquidation=liquidation)
    _mark(x, 500_000)
    x.deposit(ALICE, USDC, 640 * 10**6)
    x.risk.book.balance[x.risk.insurance_row, USDC] += 100 * 10**6
    x.risk.net_deposits[USDC] += 100 * 10**6
    shorts = [100 + k for k in range(7)]
    for k, short in enumerate(shorts):
        x.deposit(short, USDC, (5_000 + 1_000 * k) * 10**6)
        x.order(short, BTC_PERP, 1, 500_000, 10 + k)
    x.order(ALICE, BTC_PERP, 0, 500_000, 91)
    _mark(x, 436_000)
    assert x.risk.book.perp_size[x.risk.insurance_row, 0] == 91 * 10**5  # taken over whole
    return x, shorts


def test_the_funds_deleveraging_spread_over_records_closes_and_charges_as_in_one() -> None:
    """With ``fund_adl_per_record`` the fund closes against a few counterparties per record (the
    risk process: a fund holding a cascade's positions has thousands to close) and charges each
    record's its share of the deficit per unit closed: the same positions closed, the same deficit
    charged in total as in one record, each counterparty's share the same to rounding; a snapshot
    taken half way continues to the same state."""
    one, shorts = _crowd()
    spread, _ = _crowd(LiquidationParams(fund_adl_per_record=2))
    fund_id = int(one.risk.book.ids[one.risk.insurance_row])
    records = one.records
    _mark(one, 420_000)  # -$145.60 on the fund's long: more than its cash
    assert one.records - records == 1
    # the spread one, record by record, with a snapshot taken while it is under way
    msg = encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=420_000)
    r = spread.risk
    r.handle_command(msg, 0, Source.ORACLE)
    spread.engine.handle(msg, 0)
    r.end_of_record()
    r.take_outputs()
    assert r.liquidator.fund_adl is not None and r.liquidator.work_left  # left for the next records
    restored = type(r)(r.config, 0, 1, 1, None, r.liquidator.params)
    restored.restore(r.snapshot())
    assert restored.state_hash() == r.state_hash()
    chunks = 1
    while r.liquidator.work_left:
        for e in (r, restored):
            e.end_of_record()
            e.validate()
        assert r.take_outputs() == restored.take_outputs()
        chunks += 1
    assert chunks == 4  # 7 counterparties, 2 a record
    assert r.state_hash() == restored.state_hash()
    r.take_outputs()
    for x in (one, spread):
        assert not x.risk.take_outputs()[0][0]  # no unwind order: nothing left to unwind
    b1, b2 = one.risk.book, r.book
    rows = [one.row(a) for a in shorts]
    assert all(b1.perp_size[row, 0] == 0 == b2.perp_size[row, 0] for row in rows)  # all closed
    assert b1.perp_size[one.risk.insurance_row, 0] == 0 == b2.perp_size[r.insurance_row, 0]
    assert int(b1.balance[one.risk.insurance_row, USDC]) == 0 == int(b2.balance[r.insurance_row, USDC])
    events = [e for e in _liqs(one, LiquidationKind.ADL)]
    fund_adl = [e["size_atoms"] for e in events if e["account"] == fund_id]
    assert fund_adl == [91 * 10**5]
    cash1 = [int(b1.balance[row, USDC]) for row in rows]
    cash2 = [int(b2.balance[row, USDC]) for row in rows]
    assert sum(cash1) == sum(cash2)  # the same deficit charged in total
    assert max(abs(a - c) for a, c in zip(cash1, cash2, strict=True)) <= chunks  # each its share, to rounding


def test_a_new_mark_ends_the_funds_deleveraging_and_it_starts_again_at_that_mark() -> None:
    """A mark that moves while the fund's deleveraging is spread over records ends it (what it
    closed was charged its share at the old mark) and, the fund still short of cash, a new one
    closes the rest at the new mark: every position closed, the fund's cash spent and nothing
    owed, money conserved after every record (``validate``)."""
    x, shorts = _crowd(LiquidationParams(fund_adl_per_record=2))
    r, fund = x.risk, x.risk.insurance_row
    fund_id = int(r.book.ids[fund])
    for ticks in (420_000, 410_000):
        msg = encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=ticks)
        r.handle_command(msg, 0, Source.ORACLE)
        x.engine.handle(msg, 0)
        r.end_of_record()
        r.validate()
        x._collect(r.take_outputs()[1], x.risk_events)
        assert r.liquidator.fund_adl is not None and r.liquidator.fund_adl.marks == {0: ticks * 100_000}
    while r.liquidator.work_left:
        r.end_of_record()
        r.validate()
        x._collect(r.take_outputs()[1], x.risk_events)
    mine = [
        (e["size_atoms"], e["price_micro"]) for e in _liqs(x, LiquidationKind.ADL) if e["account"] == fund_id
    ]
    assert [p for _s, p in mine] == [42_000 * 10**6, 41_000 * 10**6] + [41_000 * 10**6] * (len(mine) - 2)
    assert sum(size for size, _p in mine) == 91 * 10**5  # all of it, at one mark or the other
    assert r.book.perp_size[fund, 0] == 0 and int(r.book.balance[fund, USDC]) == 0
    assert all(r.book.perp_size[x.row(a), 0] == 0 for a in shorts)
    assert not _liqs(x, LiquidationKind.UNCOVERED)


def test_no_liquidation_on_a_stale_price() -> None:
    from risk_harness import BTC

    x = _setup(700 * 10**6)
    x.send(encode(MsgType.ORACLE_PRICE, asset=BTC, status=1, price_micro=45_000 * 10**6), Source.ORACLE)
    _mark(x, 440_000)
    assert _liqs(x, LiquidationKind.WAITING) and not _liqs(x, LiquidationKind.STARTED)
    x.send(encode(MsgType.ORACLE_PRICE, asset=BTC, status=0, price_micro=44_000 * 10**6), Source.ORACLE)
    assert _liqs(x, LiquidationKind.STARTED)


def test_insurance_account_is_a_system_account_of_the_partition() -> None:
    x = LocalExchange()
    assert x.risk.owns(insurance_account(0))
    assert x.row(insurance_account(0)) == x.risk.insurance_row


def test_a_liquidation_order_the_shard_refuses_is_retried_then_backstopped_never_lost() -> None:
    """A 2% price band: the bankruptcy-price limit falls outside it, the shard refuses every
    attempt (PRICE_OUTSIDE_BAND); after the retries the insurance fund takes the position over."""
    import dataclasses

    from risk_harness import ASSETS, MARKETS

    from engine.risk.risk_config import risk_config_from
    from engine.types.enums import RejectCode as RC

    markets = dict(MARKETS)
    markets[BTC_PERP] = dataclasses.replace(MARKETS[BTC_PERP], band_bps=200)
    x = LocalExchange(risk_config_from(markets, ASSETS), markets)
    _mark(x, 500_000)
    x.deposit(ALICE, USDC, 700 * 10**6)
    x.deposit(SHORT, USDC, 100_000 * 10**6)
    x.deposit(MAKER, USDC, 100_000 * 10**6)
    x.risk.book.balance[x.risk.insurance_row, USDC] += 10_000 * 10**6
    x.risk.net_deposits[USDC] += 10_000 * 10**6
    x.order(SHORT, BTC_PERP, 1, 500_000, 100)
    x.order(ALICE, BTC_PERP, 0, 500_000, 100)
    x.order(MAKER, BTC_PERP, 0, 451_000, 100)  # a bid the liquidation could hit, if the band allowed
    _mark(x, 452_000)
    refused = [
        e
        for e in x.shard_events
        if e["msg_type"] == MsgType.REJECTED
        and e["client_order_id"] >= 1 << 63
        and e["reason"] == RC.PRICE_OUTSIDE_BAND
    ]
    assert len(refused) == x.risk.liquidator.params.max_retries + 1
    assert _liqs(x, LiquidationKind.TAKEOVER)
    assert x.risk.book.perp_size[x.row(ALICE), 0] == 0 and not x.risk.ledger.is_live(BTC_PERP, ALICE, 1 << 63)


def test_the_adl_queue_is_the_full_ranking_however_much_of_it_is_consumed() -> None:
    """The queue sorts only the head a bankruptcy consumes; read to the end it must be exactly the
    full ranking: profitable positions of the side, highest score first, equal scores by account
    id, the system accounts and the excluded rows left out. 300 holders in groups of equal figures
    (ties across the head's edge)."""
    import random

    import numpy as np

    x = LocalExchange()
    _mark(x, 500_000)
    e, b = x.risk, x.risk.book
    rng = random.Random(4)
    rows = []
    for account in range(100, 400):
        row = b.row(account)
        rows.append(row)
        group = rng.randrange(40)  # equal figures within a group: equal scores
        size = -(1 + group % 7) * 10**7
        b.perp_size[row, 0] = size if account % 9 else -size  # every 9th long: the other side
        b.perp_cost[row, 0] = b.perp_size[row, 0] * (510 + group)  # entered $51,000-$54,900: a short gains
        b.equity[row] = 10_000 * 10**6 + group * 10**6
        b.initial[row] = 2_000 * 10**6
    b.perp_size[rows[5], 0] = -(10**7)  # a short entered at $45,000: a loss
    b.perp_cost[rows[5], 0] = -(10**7) * 450
    excluded = (rows[7], rows[8])
    got = list(e.liquidator._adl_queue(0, -1, excluded))
    mark = float(e.marks[0])
    want = []
    for row in rows:
        size, cost = int(b.perp_size[row, 0]), int(b.perp_cost[row, 0])
        if size >= 0 or row in excluded:
            continue
        value = size * (mark / 10**8)
        upnl = value - cost
        score = (upnl / max(int(b.initial[row]), 1)) * (abs(value) / int(b.equity[row]))
        if upnl > 0 and score > 0:
            want.append((-score, int(b.ids[row]), row))
    want.sort()
    assert [r for r, _s in got] == [r for _s, _a, r in want]
    assert len(got) > 100 and rows[5] not in {r for r, _ in got}
    assert all(np.diff([s for _r, s in got]) <= 0)


def test_the_adl_ranking_is_taken_once_per_mark_and_walked_by_each_bankruptcy() -> None:
    """Every bankruptcy walks the same ranking while the perp's mark stands, in a scan and in the
    records after it: a counterparty closed out is skipped for good, one partly deleveraged keeps
    its place at the head, the excluded rows are left out. A new mark ranks afresh; so does a
    ranking from an earlier record that runs out (holders that opened since are in the new one)."""
    x = LocalExchange()
    _mark(x, 500_000)
    liq, b = x.risk.liquidator, x.risk.book
    rows = []
    for i, account in enumerate(range(100, 160)):
        row = b.row(account)
        rows.append(row)
        b.perp_size[row, 0] = -(10**7)
        b.perp_cost[row, 0] = -(10**7) * (510 + i)  # later ones entered higher: more profit
        b.equity[row], b.initial[row] = 10_000 * 10**6, 2_000 * 10**6
    fresh = [r for r, _ in liq._adl_queue(0, -1, ())]
    assert fresh == rows[::-1]  # the highest entry first
    liq._scanning = True  # as during a scan
    try:
        first = liq._adl_queue(0, -1, ())
        top = [next(first)[0] for _ in range(3)]
        assert top == fresh[:3]
        b.perp_size[top[0], 0] = 0  # closed out by the first bankruptcy
        b.perp_size[top[1], 0] = -(5 * 10**6)  # half of it
        b.perp_cost[rows[0], 0] = -(10**7) * 900  # moves to the top of a fresh ranking, not this one
        again = [r for r, _ in liq._adl_queue(0, -1, (top[2],))]
        assert again == [top[1]] + fresh[3:]
        x.risk.records += 1  # a later record, the same mark: the same ranking
        assert next(liq._adl_queue(0, -1, ()))[0] == top[1]
        opened = b.row(300)  # a holder that opened since: not in it until it runs out
        b.perp_size[opened, 0] = -(10**7)
        b.perp_cost[opened, 0] = -(10**7) * 2_000
        b.equity[opened], b.initial[opened] = 10_000 * 10**6, 2_000 * 10**6
        walked = [r for r, _ in liq._adl_queue(0, -1, ())]  # (a walk that closes nothing)
        kept = [top[1], top[2]] + fresh[3:]
        assert walked[: len(kept)] == kept and walked[len(kept)] == opened  # then ranked afresh
        assert liq._queues[(0, -1)].record == x.risk.records
        x.risk.marks[0] += 10**6  # a new mark ($1 up): ranked afresh at once
        assert next(liq._adl_queue(0, -1, ()))[0] == opened
    finally:
        liq._scanning = False
    assert next(liq._adl_queue(0, -1, ()))[0] == opened  # outside a scan: ranked afresh
    assert (0, -1) in liq._queues
    x.risk.marks[0] += 10**6
    liq.scan(np.zeros(0, np.intp))  # a scan drops the rankings whose perp's mark moved
    assert (0, -1) not in liq._queues


def test_a_spot_holding_the_fund_took_over_is_unwound_on_the_next_price() -> None:
    """The backstop takes spot holdings too (an account that bought ETH with borrowed USDC); the
    fund sells them back into the book on the next price, like a perp position, instead of holding
    them for ever with a negative USDC balance."""
    from risk_harness import ETH, ETH_USDC

    x = LocalExchange()
    x.send(encode(MsgType.MARK_PRICE, ETH_USDC, price_ticks=200_000), Source.ORACLE)  # $2,000
    x.deposit(MAKER, ETH, 100 * 10**8)
    x.deposit(MAKER, USDC, 10**6 * 10**6)
    x.deposit(ALICE, USDC, 1_000 * 10**6)
    x.order(MAKER, ETH_USDC, 1, 200_000, 300)  # 3 ETH offered at $2,000
    x.order(ALICE, ETH_USDC, 0, 200_000, 250)  # $5,000 of ETH on $1,000: $4,000 borrowed
    b, fund = x.risk.book, x.risk.insurance_row
    assert b.balance[x.row(ALICE), ETH] == 25 * 10**7
    for ticks in range(190_000, 100_000, -10_000):  # no bids: the backstop takes it over
        x.send(encode(MsgType.MARK_PRICE, ETH_USDC, price_ticks=ticks), Source.ORACLE)
        if b.balance[fund, ETH]:
            break
    assert _liqs(x, LiquidationKind.TAKEOVER) and b.balance[fund, ETH] == 25 * 10**7
    assert not [e for e in _liqs(x, LiquidationKind.UNWIND) if e["market_id"] == ETH_USDC]
    x.order(MAKER, ETH_USDC, 0, ticks - 1_000, 1_000)  # bids return below the price
    x.send(encode(MsgType.MARK_PRICE, ETH_USDC, price_ticks=ticks), Source.ORACLE)
    unwind = [e for e in _liqs(x, LiquidationKind.UNWIND) if e["market_id"] == ETH_USDC]
    assert unwind and unwind[0]["side"] == 1 and unwind[0]["size_atoms"] == 25 * 10**7
    assert b.balance[fund, ETH] == 0  # sold into the bids within the unwind band


@pytest.mark.parametrize(("spot_notional_usdc", "want_share"), [(0, (1, 2)), (9_600, (1, 4))])
def test_a_queue_too_short_pays_only_the_share_of_the_deficit_of_what_it_closed(
    spot_notional_usdc: int, want_share: tuple[int, int]
) -> None:
    """The fund took over 0.2 BTC ($9,600 at $48,000, and maybe as much again of spot) but only SHORT's 0.1 BTC is on the
    other side: SHORT pays the deficit x notional closed / notional taken over, rounded down (1/2,
    or 1/4 with the spot), as if each unit taken over carried its part and the closed ones went at
    the bankruptcy price; the rest is left for the fund. Before, SHORT paid all of it."""
    x = _setup(700 * 10**6, fund_usdc=0)
    _mark(x, 480_000)  # SHORT up $200 (Alice still above maintenance: nothing happens)
    assert not _liqs(x)
    risk, b = x.risk, x.risk.book
    liq = risk.liquidator
    market = risk.config.markets[BTC_PERP]
    price = int(risk.marks[market.perp])
    deficit = 3_000 * 10**6 + 7  # (odd: the share rounds down)
    cash = int(b.balance[x.row(ALICE), USDC])
    left = liq._deleverage(
        x.row(ALICE), ALICE, deficit, [(market, 2 * 10**7, price)], spot_notional_usdc * 10**6
    )
    num, den = want_share
    share = deficit * num // den
    assert left == deficit - share and b.perp_size[x.row(SHORT), market.perp] == 0
    paid = sum(e["amount_micro"] for e in risk_events_of(risk) if e["kind"] == LiquidationKind.ADL)
    assert paid == share and int(b.balance[x.row(ALICE), USDC]) == cash + share


def risk_events_of(risk) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """The LIQUIDATION events the engine holds (not yet taken)."""
    from engine.wire.codec import decode

    data = bytes(risk.events)
    return [decode(data, i) for i in range(0, len(data), 64) if data[i] == MsgType.LIQUIDATION]
