"""The risk engine's state machine through an in-process exchange (risk + the matching core)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from risk_harness import BTC, BTC_PERP, ETH, ETH_USDC, USDC, LocalExchange, both_engines  # noqa: F401 (a fixture, used by name)

from engine.risk.risk_engine import fee_account
from engine.types.enums import BalanceReason, MsgType, OrderFlag, RejectCode, TimeInForce
from engine.wire.codec import decode, encode

pytestmark = pytest.mark.usefixtures("both_engines")  # every test on both risk engines

ALICE, BOB, CAROL = 11, 12, 13
USDC_10K = 10_000 * 10**6


def test_a_deposit_is_credited_once_per_id() -> None:
    x = LocalExchange()
    x.send(encode(MsgType.DEPOSIT, source=1, account=ALICE, asset=USDC, amount=5_000_000, deposit_id=7))
    before = x.risk.state_hash()
    x.send(encode(MsgType.DEPOSIT, source=1, account=ALICE, asset=USDC, amount=5_000_000, deposit_id=7))
    assert x.last_reject() == RejectCode.DUPLICATE_DEPOSIT
    assert x.risk.book.balance[x.row(ALICE), USDC] == 5_000_000
    x.risk_events.clear()
    assert x.risk.state_hash() != before  # the reject advanced the event sequence, nothing else
    assert x.risk.net_deposits[USDC] == 5_000_000


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"asset": 99, "amount": 1}, RejectCode.UNKNOWN_ASSET),
        ({"asset": USDC, "amount": 0}, RejectCode.AMOUNT_OUT_OF_RANGE),
        ({"asset": USDC, "amount": -5}, RejectCode.AMOUNT_OUT_OF_RANGE),
        ({"asset": USDC, "amount": 2**62}, RejectCode.AMOUNT_OUT_OF_RANGE),
        ({"asset": USDC, "amount": 1, "source": 9}, RejectCode.DUPLICATE_DEPOSIT),
        ({"asset": USDC, "amount": 1, "source": 0}, RejectCode.PERMISSION_DENIED),  # chain: settlement only
    ],
)
def test_bad_deposits_are_refused_and_change_no_money(fields: dict[str, int], code: int) -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, 1_000_000)
    balances = x.risk.book.balance.copy()
    fields = {"source": 1, **fields}
    x.send(encode(MsgType.DEPOSIT, account=ALICE, deposit_id=999, **fields))
    assert x.last_reject() == code
    assert (x.risk.book.balance == balances).all()


def test_deposits_whose_total_would_leave_int64_are_refused_and_the_state_still_snapshots() -> None:
    """Five deposits each within an account's bound, their total past int64 (what validate and the
    snapshot sum): every one that would take the partition's total past its bound is refused, and
    the state still validates and snapshots (it raised "Integer exceeds 64-bit range")."""
    x = LocalExchange()
    big = 2**62 - 1
    for account in range(21, 26):
        x.send(encode(MsgType.DEPOSIT, source=1, account=account, asset=BTC, amount=big, deposit_id=account))
        if account > 21:
            assert x.last_reject() == RejectCode.AMOUNT_OUT_OF_RANGE
    assert x.risk.net_deposits[BTC] == big
    assert all(x.risk.book.balance[x.row(a), BTC] == 0 for a in range(22, 26))
    x.risk.validate()
    assert x.risk.snapshot()


def test_an_account_without_margin_is_rejected_and_a_funded_one_trades() -> None:
    x = LocalExchange()
    x.order(ALICE, BTC_PERP, 0, 500_000, 10)  # $50,000 x 0.01 BTC, no collateral
    assert x.last_reject() == RejectCode.INSUFFICIENT_MARGIN
    assert not x.shard_events  # never reached the shard
    x.deposit(ALICE, USDC, USDC_10K)
    x.deposit(BOB, USDC, USDC_10K)
    x.order(ALICE, BTC_PERP, 0, 500_000, 10)
    x.order(BOB, BTC_PERP, 1, 500_000, 10)
    fills = [e for e in x.shard_events if e["msg_type"] == MsgType.FILL]
    assert len(fills) == 1
    book = x.risk.book
    assert book.perp_size[x.row(ALICE), 0] == 1_000_000 and book.perp_size[x.row(BOB), 0] == -1_000_000
    assert book.perp_cost[x.row(ALICE), 0] == 500_000_000  # $500 of entry notional
    # Bob took: 500 ppm of $500 = $0.25; Alice made: a rebate of 100 ppm = $0.05
    assert book.balance[x.row(BOB), USDC] == USDC_10K - 250_000
    assert book.balance[x.row(ALICE), USDC] == USDC_10K + 50_000
    assert book.balance[x.row(fee_account(0)), USDC] == 200_000
    assert book.reserved[x.row(ALICE)] == 0 and book.reserved[x.row(BOB)] == 0
    positions = [e for e in x.risk_events if e["msg_type"] == MsgType.POSITION]
    assert {p["account"] for p in positions} == {ALICE, BOB}
    margins = {e["account"]: e for e in x.risk_events if e["msg_type"] == MsgType.ACCOUNT_MARGIN}
    assert margins[ALICE]["initial_micro"] > 0 and margins[ALICE]["equity_micro"] < USDC_10K + 50_000


def test_spot_fill_moves_both_legs_and_the_fee() -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    x.deposit(BOB, ETH, 5 * 10**8)
    x.order(BOB, ETH_USDC, 1, 200_000, 100)
    assert x.last_reject() == RejectCode.INSUFFICIENT_MARGIN  # ETH has no price yet: worth nothing
    x.send(encode(MsgType.MARK_PRICE, ETH_USDC, price_ticks=200_000))
    x.order(BOB, ETH_USDC, 1, 200_000, 100)  # sell 1 ETH at $2,000 (maker)
    x.order(ALICE, ETH_USDC, 0, 200_000, 100)  # buy it (taker, 1000 ppm fee = $2)
    b = x.risk.book
    assert b.balance[x.row(ALICE), ETH] == 10**8
    assert b.balance[x.row(ALICE), USDC] == USDC_10K - 2_000_000_000 - 2_000_000
    assert b.balance[x.row(BOB), USDC] == 2_000_000_000
    assert b.balance[x.row(BOB), ETH] == 4 * 10**8
    reasons = [(e["account"], e["reason"]) for e in x.risk_events if e["msg_type"] == MsgType.BALANCE]
    assert (ALICE, BalanceReason.FEE) in reasons and (ALICE, BalanceReason.TRADE) in reasons


def test_reduce_only_that_would_increase_is_refused() -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    x.order(ALICE, BTC_PERP, 0, 500_000, 1, flags=int(OrderFlag.REDUCE_ONLY))
    assert x.last_reject() == RejectCode.REDUCE_ONLY_WOULD_INCREASE


def test_cancel_releases_the_reservation_and_a_fill_converts_it() -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    coid = x.order(ALICE, BTC_PERP, 0, 500_000, 10)
    row = x.row(ALICE)
    held = int(x.risk.book.reserved[row])
    rate = x.risk.margin.spec.assets[BTC].shock.rate_ppm[0]  # the first shock tier: 5% by default
    assert held >= 500_000_000 * rate // 10**6  # at least the initial margin of the $500 order
    x.send(encode(MsgType.CANCEL, BTC_PERP, account=ALICE, client_order_id=coid))
    assert x.risk.book.reserved[row] == 0
    assert len(x.risk.ledger) == 0


def test_withdrawal_hold_then_paid_or_returned() -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    x.send(encode(MsgType.WITHDRAW_REQUEST, account=ALICE, asset=USDC, amount=USDC_10K + 1, request_id=1))
    assert x.last_reject() == RejectCode.INSUFFICIENT_BALANCE
    x.send(encode(MsgType.WITHDRAW_REQUEST, account=ALICE, asset=USDC, amount=4_000_000_000, request_id=1))
    b, row = x.risk.book, x.row(ALICE)
    assert b.balance[row, USDC] == 6_000_000_000 and b.held[row, USDC] == 4_000_000_000
    x.send(encode(MsgType.WITHDRAW_REQUEST, account=ALICE, asset=USDC, amount=1, request_id=1))
    assert x.last_reject() == RejectCode.DUPLICATE_WITHDRAWAL
    from engine.risk.risk_engine import Source

    paid = encode(
        MsgType.WITHDRAW_RESULT, account=ALICE, asset=USDC, status=0, amount=4_000_000_000, request_id=1
    )
    x.send(paid)  # from a gateway (or a feeder): refused, only settlement says what the chain paid
    assert x.last_reject() == RejectCode.PERMISSION_DENIED and b.held[row, USDC] == 4_000_000_000
    x.send(paid, Source.SETTLEMENT)
    assert b.held[row, USDC] == 0 and x.risk.net_deposits[USDC] == 6_000_000_000
    x.send(encode(MsgType.WITHDRAW_REQUEST, account=ALICE, asset=USDC, amount=1_000_000, request_id=2))
    failed = encode(
        MsgType.WITHDRAW_RESULT, account=ALICE, asset=USDC, status=1, amount=1_000_000, request_id=2
    )
    x.send(failed, Source.SETTLEMENT)
    assert b.balance[row, USDC] == 6_000_000_000
    x.send(failed, Source.SETTLEMENT)
    assert x.last_reject() == RejectCode.UNKNOWN_WITHDRAWAL


def test_a_restatement_repeats_every_balance_and_position_without_changing_them() -> None:
    from engine.risk.risk_engine import Source

    x = LocalExchange()
    _perp_book(x)
    b = x.risk.book
    money = (b.balance.copy(), b.held.copy(), b.perp_size.copy(), b.perp_cost.copy())
    x.risk_events.clear()
    x.send(encode(MsgType.RESTATE_REQUEST), Source.SETTLEMENT)
    restated = [(e["account"], e["asset"]) for e in x.risk_events if e["msg_type"] == MsgType.BALANCE]
    positions = [e["account"] for e in x.risk_events if e["msg_type"] == MsgType.POSITION]
    assert {a for a, _ in restated} >= {ALICE, BOB, CAROL} and set(positions) == {ALICE, BOB, CAROL}
    assert all(
        e["reason"] == 10 and e["delta"] == 0 for e in x.risk_events if e["msg_type"] == MsgType.BALANCE
    )
    after = (b.balance, b.held, b.perp_size, b.perp_cost)
    assert all((x_ == y_).all() for x_, y_ in zip(money, after, strict=True))  # nothing moved


def test_a_withdrawal_cannot_take_margin_that_positions_need() -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, 1_000_000_000)  # $1,000
    x.deposit(BOB, USDC, USDC_10K)
    x.order(ALICE, BTC_PERP, 0, 500_000, 100)  # 0.1 BTC = $5,000 at 10%: $500 initial
    x.order(BOB, BTC_PERP, 1, 500_000, 100)
    x.send(encode(MsgType.WITHDRAW_REQUEST, account=ALICE, asset=USDC, amount=900_000_000, request_id=1))
    assert x.last_reject() == RejectCode.INSUFFICIENT_MARGIN


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([ALICE, BOB, CAROL]),
            st.sampled_from([BTC_PERP, ETH_USDC]),
            st.integers(0, 1),
            st.integers(-20, 20),
            st.integers(1, 300),
            st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_money_is_conserved_over_random_order_streams(
    orders: list[tuple[int, int, int, int, int, int]],
) -> None:
    """validate() (conservation and reservations) runs after every command inside the harness."""
    x = LocalExchange()
    x.send(encode(MsgType.MARK_PRICE, ETH_USDC, price_ticks=200_000))
    x.send(encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=500_000))
    for acct in (ALICE, BOB, CAROL):
        x.deposit(acct, USDC, 50_000 * 10**6)
        x.deposit(acct, ETH, 20 * 10**8)
        x.deposit(acct, BTC, 10**8)
    for acct, market, side, offset, size, tif in orders:
        price = (500_000 if market == BTC_PERP else 200_000) + offset * 10
        x.order(acct, market, side, price, size, tif=int(tif))
    sizes = x.risk.book.perp_size[: x.risk.book.count, 0]
    assert int(sizes.sum()) == 0


def test_snapshot_restores_the_same_state_and_refuses_garbage() -> None:
    from risk_harness import CONFIG

    from engine.risk.risk_engine import RiskEngine, RiskSnapshotError

    x = LocalExchange()
    x.send(encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=500_000))
    x.deposit(ALICE, USDC, USDC_10K)
    x.deposit(BOB, USDC, USDC_10K)
    x.order(ALICE, BTC_PERP, 0, 500_000, 10)
    x.order(BOB, BTC_PERP, 1, 499_000, 30)  # partly filled, rests
    x.send(encode(MsgType.WITHDRAW_REQUEST, account=ALICE, asset=USDC, amount=1_000_000, request_id=3))
    blob = x.risk.snapshot()
    twin = RiskEngine(CONFIG)
    twin.restore(blob)
    assert twin.state_hash() == x.risk.state_hash()
    twin.validate()
    for bad in (b"", b"HXRISK01garbage", blob[:-40], b"X" + blob[1:]):
        with pytest.raises(RiskSnapshotError):
            RiskEngine(CONFIG).restore(bad)


def _perp_book(x: LocalExchange) -> None:
    """Alice long 0.05 BTC, Bob short 0.03, Carol short 0.02, at $50,000."""
    from engine.risk.risk_engine import Source

    x.send(encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=500_000), Source.ORACLE)
    for acct in (ALICE, BOB, CAROL):
        x.deposit(acct, USDC, USDC_10K)
    x.order(ALICE, BTC_PERP, 0, 500_000, 50)
    x.order(BOB, BTC_PERP, 1, 500_000, 30)
    x.order(CAROL, BTC_PERP, 1, 500_000, 20)


def test_funding_pays_each_interval_once_and_sums_to_zero() -> None:
    from engine.risk.risk_engine import Source

    x = LocalExchange()
    _perp_book(x)
    b = x.risk.book
    before = {a: int(b.balance[x.row(a), USDC]) for a in (ALICE, BOB, CAROL)}
    # 0.01% for the interval at $50,000: the long pays 0.05 x 50,000 x 0.0001 = $0.25
    fund = encode(MsgType.FUNDING, BTC_PERP, interval_id=7, rate_ppb=100_000, mark_micro=50_000 * 10**6)
    x.send(fund, Source.ORACLE)
    after = {a: int(b.balance[x.row(a), USDC]) for a in (ALICE, BOB, CAROL)}
    delta = {a: after[a] - before[a] for a in after}
    assert delta == {ALICE: -250_000, BOB: 150_000, CAROL: 100_000}
    assert sum(delta.values()) == 0
    x.send(fund, Source.ORACLE)  # the same interval again: nothing
    x.send(
        encode(MsgType.FUNDING, BTC_PERP, interval_id=6, rate_ppb=100_000, mark_micro=50_000 * 10**6),
        Source.ORACLE,
    )
    assert {a: int(b.balance[x.row(a), USDC]) for a in after} == after
    assert b.perp_funding[x.row(ALICE), 0] == -250_000


def test_funding_is_paid_before_the_next_command_that_is_not_a_price_and_at_the_records_end() -> None:
    """A FUNDING is due when received and paid before anything reads a balance: the next command
    that is not a price or a funding (here a withdrawal request, which then sees the paid balance),
    a shard event, or the record's end (after the nearest accounts' first liquidation orders)."""
    from engine.risk.risk_engine import Source

    x = LocalExchange()
    _perp_book(x)
    risk, b = x.risk, x.risk.book
    risk.take_outputs()
    alice = int(b.balance[x.row(ALICE), USDC])
    fund = encode(MsgType.FUNDING, BTC_PERP, interval_id=1, rate_ppb=100_000, mark_micro=50_000 * 10**6)
    risk.handle_command(fund, 0, Source.ORACLE)
    risk.handle_command(encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=500_010), 0, Source.ORACLE)
    assert int(b.balance[x.row(ALICE), USDC]) == alice  # due, not paid yet
    # Alice asks for all she had before the payment: refused, the $0.25 is gone by then
    withdraw = encode(MsgType.WITHDRAW_REQUEST, account=ALICE, asset=USDC, amount=alice, request_id=5)
    risk.handle_command(withdraw, 0)  # (from a gateway)
    assert int(b.balance[x.row(ALICE), USDC]) == alice - 250_000
    out = risk.take_outputs()[1]
    events = [decode(out, k) for k in range(0, len(out), 64)]
    kinds = [(int(ev["msg_type"]), int(ev.get("reason", -1))) for ev in events]
    paid_at = kinds.index((MsgType.BALANCE, BalanceReason.FUNDING))
    assert kinds[-1] == (MsgType.REJECTED, RejectCode.INSUFFICIENT_BALANCE) and paid_at < len(kinds) - 1
    risk.end_of_record()
    # at a record's end: paid there, once
    before = {a: int(b.balance[x.row(a), USDC]) for a in (ALICE, BOB, CAROL)}
    again = encode(MsgType.FUNDING, BTC_PERP, interval_id=2, rate_ppb=100_000, mark_micro=50_000 * 10**6)
    risk.handle_command(again, 0, Source.ORACLE)
    risk.handle_command(again, 0, Source.ORACLE)
    risk.end_of_record()
    paid = {a: int(b.balance[x.row(a), USDC]) - before[a] for a in before}
    assert paid == {ALICE: -250_000, BOB: 150_000, CAROL: 100_000}
    assert not risk._funding_due


def test_a_resolution_settles_every_share_at_one_or_zero_exactly_once() -> None:
    from risk_harness import RAIN, YES

    from engine.risk.risk_engine import Source

    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    x.deposit(BOB, USDC, USDC_10K)
    x.send(encode(MsgType.MARK_PRICE, RAIN, price_ticks=40), Source.ORACLE)
    x.order(ALICE, RAIN, 0, 40, 100)  # Alice buys 100 YES at $0.40
    x.order(BOB, RAIN, 1, 40, 100)  # Bob sells them short (he holds NO)
    b = x.risk.book
    assert b.balance[x.row(ALICE), YES] == 100 * 10**8 and b.balance[x.row(BOB), YES] == -100 * 10**8
    x.send(encode(MsgType.RESOLUTION, RAIN, outcome=1), Source.ORACLE)
    assert b.balance[x.row(ALICE), YES] == 0 and b.balance[x.row(BOB), YES] == 0
    assert b.balance[x.row(ALICE), USDC] == USDC_10K - 40 * 10**6 + 100 * 10**6
    assert b.balance[x.row(BOB), USDC] == USDC_10K + 40 * 10**6 - 100 * 10**6
    x.send(encode(MsgType.RESOLUTION, RAIN, outcome=0), Source.ORACLE)  # once only
    assert b.balance[x.row(ALICE), USDC] == USDC_10K + 60 * 10**6


def test_prediction_shares_cannot_be_deposited() -> None:
    from risk_harness import YES

    x = LocalExchange()
    x.send(encode(MsgType.DEPOSIT, source=1, account=ALICE, asset=YES, amount=10**8, deposit_id=1))
    assert x.last_reject() == RejectCode.UNKNOWN_ASSET


def test_a_stale_oracle_price_is_kept_and_flagged() -> None:
    from engine.risk.risk_engine import Source

    x = LocalExchange()
    x.send(encode(MsgType.ORACLE_PRICE, asset=ETH, status=0, price_micro=2_000 * 10**6), Source.ORACLE)
    assert x.risk.prices[ETH] == 2_000 * 10**6 and not x.risk.stale[ETH]
    x.send(encode(MsgType.ORACLE_PRICE, asset=ETH, status=1, price_micro=2_000 * 10**6), Source.ORACLE)
    assert x.risk.stale[ETH]


def test_leverage_is_checked_against_the_market_maximum() -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    x.send(encode(MsgType.SET_LEVERAGE, BTC_PERP, account=ALICE, leverage=500, mode=0))
    assert x.last_reject() == RejectCode.LEVERAGE_OUT_OF_RANGE
    x.send(encode(MsgType.SET_LEVERAGE, BTC_PERP, account=ALICE, leverage=5, mode=0))
    assert x.risk.leverage[(ALICE, BTC_PERP)] == (5, 0)


def test_order_query_lists_open_orders_and_says_unknown_otherwise() -> None:
    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    c1 = x.order(ALICE, BTC_PERP, 0, 490_000, 10)
    c2 = x.order(ALICE, BTC_PERP, 0, 480_000, 20)
    x.send(encode(MsgType.ORDER_QUERY, account=ALICE, request_id=9))
    states = [e for e in x.risk_events if e["msg_type"] == MsgType.ORDER_STATE]
    assert [(s["client_order_id"], s["open_lots"], s["price_ticks"], s["state"]) for s in states] == [
        (c1, 10, 490_000, 2),
        (c2, 20, 480_000, 2),
    ]
    assert [s["last"] for s in states] == [0, 1] and {s["request_id"] for s in states} == {9}
    x.risk_events.clear()
    x.send(encode(MsgType.ORDER_QUERY, BTC_PERP, account=ALICE, client_order_id=999, request_id=10))
    (state,) = [e for e in x.risk_events if e["msg_type"] == MsgType.ORDER_STATE]
    assert (state["state"], state["last"]) == (0, 1)
    seqs = [e["seq"] for e in x.risk_events]
    assert seqs == sorted(seqs)  # on Alice's private stream


def test_an_order_query_naming_a_market_lists_that_markets_orders_only() -> None:
    """ORDER_QUERY with a market and no order: that market's open orders (it listed every market's);
    0xFFFFFFFF (or 0) still lists them all; a market with none: one UNKNOWN state, last = 1."""
    from engine.wire.layout import ALL_MARKETS

    x = LocalExchange()
    x.deposit(ALICE, USDC, USDC_10K)
    perp = x.order(ALICE, BTC_PERP, 0, 490_000, 10)
    spot = x.order(ALICE, ETH_USDC, 0, 1_000, 5)

    def answer(market: int) -> list[tuple[int, int, int]]:
        x.risk_events.clear()
        x.send(encode(MsgType.ORDER_QUERY, market, account=ALICE, request_id=11))
        states = [e for e in x.risk_events if e["msg_type"] == MsgType.ORDER_STATE]
        assert states and states[-1]["last"] == 1 and sum(s["last"] for s in states) == 1
        return [(s["market_id"], s["client_order_id"], s["state"]) for s in states]

    assert answer(BTC_PERP) == [(BTC_PERP, perp, 2)]
    assert answer(ETH_USDC) == [(ETH_USDC, spot, 2)]
    assert answer(ALL_MARKETS) == answer(0) == [(BTC_PERP, perp, 2), (ETH_USDC, spot, 2)]
    x.send(encode(MsgType.CANCEL, ETH_USDC, account=ALICE, client_order_id=spot))
    assert answer(ETH_USDC) == [(ETH_USDC, 0, 0)]


@pytest.mark.parametrize(
    ("partitions", "rate_ppb", "isolated", "clearing_holds"),
    [
        (1, 100_000, False, False),
        (2, -37_777, True, False),
        (2, 12_345, False, True),
        (3, 999_999, True, False),
    ],
)
def test_funding_over_the_columns_equals_the_per_position_loop(
    partitions: int, rate_ppb: int, isolated: bool, clearing_holds: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RiskEngine._pay_funding_arrays`` (every holder at once) against ``_funding``'s loop over the
    positions (its specification): the same BALANCE events, byte for byte, and the same state.
    Thousands of holders of random sizes, isolated positions (paid on their owners' streams), other
    partitions' positions (the clearing account takes the net), and the clearing account holding a
    position itself (the loop's case: it is paid twice)."""
    import numpy as np
    from risk_harness import CONFIG

    from engine.risk.native_risk import make_risk_engine
    from engine.risk.risk_engine import RiskEngine, Source, funding_clearing_account

    rng = np.random.default_rng(partitions * 7 + isolated)
    fast = make_risk_engine(CONFIG, 0, partitions, 1)
    b = fast.book
    p = CONFIG.markets[BTC_PERP].perp
    accounts = [a for a in range(1_000, 9_000) if a % partitions == 0]
    for account in accounts:
        row = b.row(account)
        b.perp_size[row, p] = int(rng.integers(-(10**10), 10**10)) * int(rng.random() < 0.8)
        b.balance[row, USDC] = int(rng.integers(0, 10**12))
        b.held[row, USDC] = int(rng.integers(0, 10**6))
    if isolated:
        for account in accounts[::97]:
            row = b.isolated_row(account, BTC_PERP)
            b.perp_size[row, p] = int(rng.integers(1, 10**9))
            b.balance[row, USDC] = 10**9
    if partitions == 1:  # the positions net to zero here
        b.perp_size[b.row(accounts[0]), p] -= int(b.perp_size[: b.count, p].sum())
    if clearing_holds:
        b.perp_size[b.row(funding_clearing_account(0)), p] = 5 * 10**8
    spec = make_risk_engine(CONFIG, 0, partitions, 1)
    spec.restore(fast.snapshot())
    assert spec.state_hash() == fast.state_hash()

    taken: list[bool] = []
    columns = RiskEngine._pay_funding_arrays
    monkeypatch.setattr(
        RiskEngine, "_pay_funding_arrays", lambda self, *a: taken.append(columns(self, *a)) or taken[-1]
    )
    msg = encode(MsgType.FUNDING, BTC_PERP, interval_id=3, rate_ppb=rate_ppb, mark_micro=61_234_567_891)
    fast.handle_command(msg, 0, Source.ORACLE)
    fast.end_of_record()
    assert taken == [not clearing_holds]  # the columns did it (or left it to the loop, untouched)
    monkeypatch.setattr(RiskEngine, "_pay_funding_arrays", lambda self, *a: False)
    spec.handle_command(msg, 0, Source.ORACLE)
    spec.end_of_record()
    got, want = fast.take_outputs()[1], spec.take_outputs()[1]
    assert len(want) // 64 > len(accounts) // 2  # (most holders paid or were paid)
    assert got == want
    assert fast.state_hash() == spec.state_hash()


@pytest.mark.parametrize(("partitions", "outcome"), [(1, 1), (2, 0), (3, 1)])
def test_a_resolution_over_the_columns_equals_the_per_holder_loop(
    partitions: int, outcome: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RiskEngine._resolve_arrays`` against ``_resolve``'s loop over the holders (its
    specification): the same BALANCE events byte for byte (each holder's share event, then its
    cash one), balances, trade flow and state. Thousands of holders, long and short, of sizes
    that are not whole cents (a short's cash rounds away from zero)."""
    import numpy as np
    from risk_harness import CONFIG, RAIN, YES

    from engine.risk.native_risk import make_risk_engine
    from engine.risk.risk_engine import RiskEngine

    rng = np.random.default_rng(partitions + 10 * outcome)
    fast = make_risk_engine(CONFIG, 0, partitions, 1)
    b = fast.book
    for account in range(1_000, 7_000):
        if account % partitions == 0:
            row = b.row(account)
            b.balance[row, YES] = int(rng.integers(-(10**12), 10**12)) * int(rng.random() < 0.7)
            b.balance[row, USDC] = int(rng.integers(0, 10**12))
            b.held[row, YES] = int(rng.integers(0, 10**4))
    spec = make_risk_engine(CONFIG, 0, partitions, 1)
    spec.restore(fast.snapshot())

    taken: list[bool] = []
    columns = RiskEngine._resolve_arrays
    monkeypatch.setattr(
        RiskEngine, "_resolve_arrays", lambda self, *a: taken.append(columns(self, *a)) or taken[-1]
    )
    msg = encode(MsgType.RESOLUTION, RAIN, outcome=outcome)
    _same_as_the_loop(
        fast, spec, msg, lambda: monkeypatch.setattr(RiskEngine, "_resolve_arrays", lambda *a: False)
    )
    assert taken == [True]
    assert not b.balance[: b.count, YES].any()


def _same_as_the_loop(fast: object, spec: object, msg: bytes, loop_only: object) -> None:
    """``msg`` as one oracle record to ``fast``, then (``loop_only()`` called) to ``spec``: the
    same events, trade flow and state, and a good many events."""
    from engine.risk.risk_engine import Source

    fast.handle_command(msg, 0, Source.ORACLE)  # type: ignore[attr-defined]
    fast.end_of_record()  # type: ignore[attr-defined]
    loop_only()  # type: ignore[operator]
    spec.handle_command(msg, 0, Source.ORACLE)  # type: ignore[attr-defined]
    spec.end_of_record()  # type: ignore[attr-defined]
    got, want = fast.take_outputs()[1], spec.take_outputs()[1]  # type: ignore[attr-defined]
    assert len(want) // 64 > 1_000
    assert got == want
    assert fast.trade_flow == spec.trade_flow  # type: ignore[attr-defined]
    assert fast.state_hash() == spec.state_hash()  # type: ignore[attr-defined]


@given(st.lists(st.one_of(st.integers(-(2**63) + 1, 2**63 - 1), st.integers(-(10**6), 10**6)), max_size=60))
def test_exact_sum_is_pythons_sum_of_int64_values(values: list[int]) -> None:
    import numpy as np

    from engine.risk.risk_engine import exact_sum

    assert exact_sum(np.array(values, np.int64)) == sum(values)


@pytest.mark.parametrize(("partitions", "isolated"), [(1, False), (2, True), (3, False)])
def test_a_delisting_over_the_columns_equals_the_per_holder_loop(
    partitions: int, isolated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RiskEngine._settle_perp_arrays`` against ``_settle_perp``'s loop over the holders (its
    specification): the same BALANCE and POSITION events byte for byte (holder by holder), the
    dust to the fee account, balances, realised P&L and state. Thousands of longs and shorts at a
    price whose values are not whole micro-USDC (a short's rounds down, away from zero)."""
    import numpy as np
    from risk_harness import CONFIG

    from engine.risk.native_risk import make_risk_engine
    from engine.risk.risk_engine import RiskEngine

    rng = np.random.default_rng(partitions + 5 * isolated)
    fast = make_risk_engine(CONFIG, 0, partitions, 1)
    b = fast.book
    p = CONFIG.markets[BTC_PERP].perp
    for account in range(1_000, 7_000):
        if account % partitions == 0:
            row = b.row(account)
            size = int(rng.integers(-(10**11), 10**11)) * int(rng.random() < 0.8)
            b.perp_size[row, p] = size
            b.perp_cost[row, p] = size * int(rng.integers(40_000, 60_000)) // 100
            b.perp_realised[row, p] = int(rng.integers(-(10**9), 10**9))
            b.balance[row, USDC] = int(rng.integers(0, 10**12))
    if isolated:
        for account in range(1_000, 7_000, 97 * partitions):
            row = b.isolated_row(account, BTC_PERP)
            b.perp_size[row, p] = int(rng.integers(1, 10**9))
    spec = make_risk_engine(CONFIG, 0, partitions, 1)
    spec.restore(fast.snapshot())

    taken: list[bool] = []
    columns = RiskEngine._settle_perp_arrays

    def spy(self: RiskEngine, *a: object) -> object:
        out = columns(self, *a)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    monkeypatch.setattr(RiskEngine, "_settle_perp_arrays", spy)
    msg = encode(MsgType.SETTLEMENT_PRICE, BTC_PERP, price_micro=48_765_432_109)
    _same_as_the_loop(
        fast, spec, msg, lambda: monkeypatch.setattr(RiskEngine, "_settle_perp_arrays", lambda *a: None)
    )
    assert taken == [not isolated]  # (an isolated position: the loop's)
    assert not b.perp_size[: b.count, p].any()


@given(
    st.lists(
        st.tuples(st.integers(-(2**63) + 1, 2**63 - 1), st.integers(-(2**63) + 1, 2**63 - 1)),
        min_size=1,
        max_size=20,
    )
)
def test_adds_fit_is_whether_every_sum_stays_in_the_add_range(pairs: list[tuple[int, int]]) -> None:
    """``_adds_fit`` (the vectorised paths' check before they write) against Python's integers."""
    import numpy as np

    from engine.risk.risk_engine import _adds_fit

    column, delta = (np.array(x, np.int64) for x in zip(*pairs, strict=True))
    assert _adds_fit(column, delta) == all(-(2**63) < c + d <= 2**63 - 1 for c, d in pairs)
