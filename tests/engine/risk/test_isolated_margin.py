"""Isolated margin: a position margined alone, on a row of its own (engine/risk/account_book.py).

Through the in-process exchange (risk + the matching core), on both risk engines; the harness checks
conservation and reservations after every record (``RiskEngine.validate``)."""

from __future__ import annotations

import pytest
from risk_harness import BTC_PERP, USDC, LocalExchange, both_engines  # noqa: F401 (a fixture, used by name)

from engine.risk.account_book import row_key
from engine.risk.risk_engine import Source
from engine.types.enums import BalanceReason, LiquidationKind, MarginMode, MsgType, RejectCode
from engine.wire.codec import encode

pytestmark = pytest.mark.usefixtures("both_engines")

ALICE, MAKER, SHORT = 31, 32, 33
USD = 10**6
LOTS = 100  # 0.1 BTC
ENTRY = 500_000  # $50,000 in $0.10 ticks: notional $5,000
TAKER_FEE = 5_000 * USD * 500 // 10**6  # 500 ppm of $5,000


def _mark(x: LocalExchange, ticks: int) -> None:
    x.send(encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=ticks), Source.ORACLE)


def _leverage(x: LocalExchange, account: int, leverage: int, mode: int) -> None:
    x.send(encode(MsgType.SET_LEVERAGE, BTC_PERP, account=account, leverage=leverage, mode=mode))


def _isolated_long(fund: int = 0) -> LocalExchange:
    """Alice ($10,000) buys 0.1 BTC at $50,000 isolated at 10x: $500 moves into the position."""
    x = LocalExchange()
    _mark(x, ENTRY)
    x.deposit(ALICE, USDC, 10_000 * USD)
    x.deposit(SHORT, USDC, 100_000 * USD)
    x.deposit(MAKER, USDC, 100_000 * USD)
    if fund:
        x.risk.book.balance[x.risk.insurance_row, USDC] += fund
        x.risk.net_deposits[USDC] += fund
    _leverage(x, ALICE, 10, MarginMode.ISOLATED)
    x.order(SHORT, BTC_PERP, 1, ENTRY, LOTS)
    x.order(ALICE, BTC_PERP, 0, ENTRY, LOTS)
    return x


def _pos_row(x: LocalExchange) -> int:
    return x.risk.book.rows[row_key(ALICE, BTC_PERP)]


def _cash(x: LocalExchange, row: int) -> int:
    return int(x.risk.book.balance[row, USDC])


def _events(x: LocalExchange, t: int, **match: int) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in x.risk_events if e["msg_type"] == t and all(e[k] == v for k, v in match.items())]


def test_opening_moves_notional_over_leverage_into_the_position_and_the_fee_is_the_accounts() -> None:
    x = _isolated_long()
    b, own, pos = x.risk.book, x.row(ALICE), _pos_row(x)
    assert int(b.perp_size[own, 0]) == 0 and int(b.perp_size[pos, 0]) == 10**7  # the position is its own row
    assert _cash(x, pos) == 500 * USD  # $5,000 / 10
    assert _cash(x, own) == 10_000 * USD - 500 * USD - TAKER_FEE
    transfer = _events(x, MsgType.BALANCE, account=ALICE, reason=BalanceReason.MARGIN_TRANSFER)
    # the account's side (market 0) and the position's (its market), on the account's private stream
    assert [(e["market_id"], e["delta"], e["balance"]) for e in transfer] == [
        (0, -500 * USD, _cash(x, own)),
        (BTC_PERP, 500 * USD, 500 * USD),
    ]
    margin = _events(x, MsgType.ACCOUNT_MARGIN, account=ALICE, market_id=BTC_PERP)
    assert margin, "the position's own margin is published, named by its market"
    # margin + uPnL at the mark (the recompute rounds equity down by a few micro-USDC)
    assert 500 * USD - 10 <= margin[-1]["equity_micro"] <= 500 * USD
    assert 0 < margin[-1]["maintenance_micro"] < margin[-1]["initial_micro"] <= 500 * USD
    own_margin = _events(x, MsgType.ACCOUNT_MARGIN, account=ALICE, market_id=0)[-1]
    assert own_margin["equity_micro"] == _cash(x, own) and own_margin["initial_micro"] == 0  # nothing cross
    mine = [
        e["seq"]
        for e in x.risk_events
        if ALICE in (e.get("account"), e.get("taker_account"), e.get("maker_account"))
    ]
    assert mine == list(range(1, len(mine) + 1))  # one gap-free private stream


def test_an_isolated_position_is_liquidated_alone_and_its_loss_never_reaches_the_account() -> None:
    x = _isolated_long(fund=10_000 * USD)
    own = x.row(ALICE)
    before, fund_before = _cash(x, own), _cash(x, x.risk.insurance_row)
    for price in range(490_000, 400_000, -5_000):
        x.order(MAKER, BTC_PERP, 0, price, 20)  # bids wait below
    _mark(x, 460_000)  # -$400 of its $500: below maintenance. As cross the account would be fine.
    started = _events(x, MsgType.LIQUIDATION, account=ALICE, kind=LiquidationKind.STARTED)
    assert started and started[0]["market_id"] == BTC_PERP  # the position's case, named by its market
    assert not x.risk.liquidator.is_liquidating(ALICE)  # the account itself is not in liquidation
    x.order(ALICE, 2, 0, 100, 1)  # (it may still trade its other markets: refused only for margin or market)
    assert x.last_reject() != RejectCode.ACCOUNT_LIQUIDATING
    _mark(x, 380_000)  # far below bankruptcy ($45,000): whatever is left is taken over
    _mark(x, 380_000)
    b, pos = x.risk.book, _pos_row(x)
    assert int(b.perp_size[pos, 0]) == 0
    assert _cash(x, pos) == 0  # flat: what it held is back with the account (or was the fund's)
    assert _cash(x, own) >= before  # its loss stopped at its margin (the rest came back, if any)
    assert _cash(x, own) <= before + 500 * USD
    fills = [e for e in x.shard_events if e["msg_type"] == MsgType.FILL and e["taker_account"] == ALICE]
    assert fills and _cash(x, x.risk.insurance_row) > fund_before  # its liquidation fees, from its margin
    assert not x.risk.liquidator.is_liquidating(row_key(ALICE, BTC_PERP))  # its case is closed


def test_a_gap_through_bankruptcy_is_the_funds_not_the_accounts() -> None:
    x = _isolated_long(fund=10_000 * USD)
    own, fund = x.row(ALICE), x.risk.insurance_row
    before, fund_before = _cash(x, own), _cash(x, fund)
    _mark(x, 400_000)  # -$1,000 on $500 of margin, nobody bids: the fund takes it over at the mark
    assert _events(x, MsgType.LIQUIDATION, account=ALICE, kind=LiquidationKind.TAKEOVER)
    covered = _events(x, MsgType.LIQUIDATION, account=ALICE, kind=LiquidationKind.COVERED)
    assert covered and covered[0]["amount_micro"] == 500 * USD  # the deficit beyond the margin
    assert _cash(x, own) == before  # not one micro-USDC from the account
    assert _cash(x, fund) == fund_before - 500 * USD
    assert int(x.risk.book.perp_size[fund, 0]) == 10**7


def test_reducing_returns_the_released_share_and_the_profit_closing_returns_everything() -> None:
    x = _isolated_long()
    own, pos = x.row(ALICE), _pos_row(x)
    _mark(x, 550_000)
    x.order(MAKER, BTC_PERP, 0, 550_000, LOTS)  # bids at $55,000
    before = _cash(x, own)
    x.order(ALICE, BTC_PERP, 1, 550_000, LOTS // 2)  # sells half: +$250 realised
    fee = 2_750 * USD * 500 // 10**6
    assert _cash(x, pos) == 250 * USD  # half of the $500 stays for the half left
    assert _cash(x, own) == before + 250 * USD + 250 * USD - fee  # the other half and the profit
    x.order(ALICE, BTC_PERP, 1, 550_000, LOTS // 2)
    assert int(x.risk.book.perp_size[pos, 0]) == 0 and _cash(x, pos) == 0
    assert _cash(x, own) == before + 500 * USD + 500 * USD - 2 * fee


def test_a_losing_reduction_pays_its_loss_from_the_released_share() -> None:
    x = _isolated_long()
    own, pos = x.row(ALICE), _pos_row(x)
    _mark(x, 495_000)
    x.order(MAKER, BTC_PERP, 0, 495_000, LOTS)
    before = _cash(x, own)
    x.order(ALICE, BTC_PERP, 1, 495_000, LOTS // 2)  # -$25 realised on the half sold
    fee = 2_475 * USD * 500 // 10**6
    assert int(x.risk.book.perp_size[pos, 0]) == 10**7 // 2
    assert _cash(x, pos) == 250 * USD  # the half left keeps its share of the margin
    assert _cash(x, own) == before + 250 * USD - 25 * USD - fee  # the sold half's, less its loss


def test_the_order_reserves_its_margin_from_the_account_and_is_refused_beyond_it() -> None:
    x = LocalExchange()
    _mark(x, ENTRY)
    x.deposit(ALICE, USDC, 400 * USD)
    _leverage(x, ALICE, 10, MarginMode.ISOLATED)
    x.order(ALICE, BTC_PERP, 0, ENTRY, LOTS)  # needs $500 at 10x
    assert x.last_reject() == RejectCode.INSUFFICIENT_MARGIN
    rejects = len(_events(x, MsgType.REJECTED, account=ALICE))
    x.order(ALICE, BTC_PERP, 0, ENTRY, 50)  # $250: rests, reserved from the account
    assert len(_events(x, MsgType.REJECTED, account=ALICE)) == rejects
    assert int(x.risk.book.reserved[x.row(ALICE)]) == 250 * USD
    x.order(ALICE, BTC_PERP, 0, ENTRY, 30)  # $150 more than the $150 left
    assert x.last_reject() == RejectCode.INSUFFICIENT_MARGIN


def test_the_margin_mode_cannot_change_with_a_position_or_an_order_in_the_market() -> None:
    x = _isolated_long()
    _leverage(x, ALICE, 10, MarginMode.CROSS)
    assert x.last_reject() == RejectCode.MARGIN_MODE_LOCKED
    _leverage(x, ALICE, 5, MarginMode.ISOLATED)  # the leverage alone may change
    assert x.risk.leverage[(ALICE, BTC_PERP)] == (5, MarginMode.ISOLATED)
    x.order(MAKER, BTC_PERP, 0, ENTRY, LOTS)
    x.order(ALICE, BTC_PERP, 1, ENTRY, LOTS)  # closed
    x.order(ALICE, BTC_PERP, 0, ENTRY - 1_000, 1)  # a resting order locks it again
    _leverage(x, ALICE, 10, MarginMode.CROSS)
    assert x.last_reject() == RejectCode.MARGIN_MODE_LOCKED
    x.send(encode(MsgType.CANCEL_ALL, BTC_PERP, account=ALICE))
    _leverage(x, ALICE, 10, MarginMode.CROSS)
    assert x.risk.leverage[(ALICE, BTC_PERP)] == (10, MarginMode.CROSS)


def test_funding_is_paid_from_the_positions_margin() -> None:
    x = _isolated_long()
    own, pos = x.row(ALICE), _pos_row(x)
    before_own, before_pos = _cash(x, own), _cash(x, pos)
    rate_ppb = 100_000  # 0.01%: longs pay $0.50 on $5,000
    x.send(
        encode(MsgType.FUNDING, BTC_PERP, interval_id=1, rate_ppb=rate_ppb, mark_micro=50_000 * USD),
        Source.ORACLE,
    )
    assert _cash(x, pos) == before_pos - 500_000
    assert _cash(x, own) == before_own
    paid = _events(x, MsgType.BALANCE, account=ALICE, reason=BalanceReason.FUNDING)
    assert [e["market_id"] for e in paid] == [BTC_PERP]


def test_a_snapshot_restores_the_isolated_rows_under_their_keys() -> None:
    from risk_harness import CONFIG

    from engine.risk.native_risk import make_risk_engine

    x = _isolated_long()
    blob = x.risk.snapshot()
    other = make_risk_engine(CONFIG, shards=1)
    other.restore(blob)
    assert other.state_hash() == x.risk.state_hash()
    assert other.book.rows == x.risk.book.rows
    assert other.book.rows[row_key(ALICE, BTC_PERP)] == _pos_row(x)


def _adjust(x: LocalExchange, account: int, amount: int, market: int = BTC_PERP) -> None:
    x.send(encode(MsgType.ADJUST_MARGIN, market, account=account, amount_micro=amount))


def test_margin_is_added_from_free_collateral_and_removed_down_to_initial() -> None:
    x = _isolated_long()
    own, pos = x.row(ALICE), _pos_row(x)
    before_own = _cash(x, own)
    _adjust(x, ALICE, 300 * USD)  # $500 -> $800: the liquidation price moves away
    assert (_cash(x, pos), _cash(x, own)) == (800 * USD, before_own - 300 * USD)
    moved = _events(x, MsgType.BALANCE, account=ALICE, reason=BalanceReason.MARGIN_TRANSFER)[-2:]
    assert [(e["market_id"], e["delta"]) for e in moved] == [(0, -300 * USD), (BTC_PERP, 300 * USD)]
    initial = int(x.risk.book.initial[pos])
    room = int(x.risk.book.equity[pos]) - initial
    _adjust(x, ALICE, -(room + 1))  # one micro below its initial margin: refused
    assert x.last_reject() == RejectCode.INSUFFICIENT_MARGIN
    _adjust(x, ALICE, -room)  # exactly down to it
    assert _cash(x, pos) == 800 * USD - room and _cash(x, own) == before_own - 300 * USD + room
    _adjust(x, ALICE, 10**7 * USD)  # more than the account has free
    assert x.last_reject() == RejectCode.INSUFFICIENT_MARGIN


def test_adjusting_margin_without_an_isolated_position_is_refused() -> None:
    x = _isolated_long()
    _adjust(x, MAKER, 100 * USD)  # no position at all
    assert x.last_reject() == RejectCode.NO_ISOLATED_POSITION
    _adjust(x, SHORT, 100 * USD)  # a cross position
    assert x.last_reject() == RejectCode.NO_ISOLATED_POSITION
    _adjust(x, ALICE, 0)
    assert x.last_reject() == RejectCode.AMOUNT_OUT_OF_RANGE
    _adjust(x, ALICE, 100 * USD, market=2)  # a spot market
    assert x.last_reject() == RejectCode.NO_ISOLATED_POSITION


def test_a_position_that_closes_under_liquidation_returns_its_margin_when_the_case_ends() -> None:
    """The close during a case leaves the margin in the position (its liquidation fee comes first);
    the scan's ENDED (naming the market) then sends what is left back to the account."""
    from engine.risk.liquidator import Case

    x = _isolated_long()
    own, pos = x.row(ALICE), _pos_row(x)
    x.order(ALICE, BTC_PERP, 1, 510_000, LOTS)  # rests: closes the position at $51,000 (+$100)
    x.risk.liquidator.cases[row_key(ALICE, BTC_PERP)] = Case()  # (as if it had just breached)
    before = _cash(x, own)
    x.order(MAKER, BTC_PERP, 0, 510_000, LOTS)
    ended = _events(x, MsgType.LIQUIDATION, account=ALICE, kind=LiquidationKind.ENDED)
    assert [e["market_id"] for e in ended] == [BTC_PERP]
    assert int(x.risk.book.perp_size[pos, 0]) == 0 and _cash(x, pos) == 0
    maker_fee_rebate = 5_100 * USD * 100 // 10**6  # ALICE was the maker: a 100 ppm rebate
    assert _cash(x, own) == before + 500 * USD + 100 * USD + maker_fee_rebate
