"""Delisting a perp: the oracle sends SETTLEMENT_PRICE once, the index TWAP over the window before the
delisting; risk closes every position at it, rounded against each account, the dust to the fee account."""

from __future__ import annotations

from oracle_harness import BTC, BTC_PERP, T0, Harness, S, feeds, level, make_config, simple_oracle
from risk_harness import BTC_PERP as RISK_BTC_PERP
from risk_harness import USDC, LocalExchange

from engine.math.oracle_index import calc_twap_micro
from engine.risk.risk_engine import Source, fee_account
from engine.types.enums import BalanceReason, MarketStatus, MsgType
from engine.wire.codec import encode

MS = 10**6
ALICE, BOB, CAROL = 11, 12, 13
USDC_10K = 10_000 * 10**6


def test_the_oracle_settles_a_delisted_perp_once_at_the_index_twap() -> None:
    delist_at = T0 + 120 * S
    perp = {"market": "BTC-PERP", "delist_at_s": delist_at // S, "delist_twap_s": 60}
    config = make_config(simple_oracle(perp=[perp]))
    h = Harness(config)
    fs = feeds(config, BTC)
    seen: list[tuple[int, int]] = []
    for k in range(0, 130):
        now = T0 + k * S
        price = 64_000 + (k % 13) * 10  # a saw-tooth index
        for f in fs:
            f.push(str(price), now)
        h.tick(now, fs)
        seen.append((price * 10**6, now))
    (settle,) = h.of(h.risk_out, MsgType.SETTLEMENT_PRICE, BTC_PERP)
    want = calc_twap_micro(seen, delist_at - 60 * S, delist_at)
    assert want is not None and settle["price_micro"] == want.twap_micro
    assert (settle["twap_start_ns"], settle["twap_end_ns"]) == (delist_at - 60 * S, delist_at)
    statuses = h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS, BTC_PERP)
    assert [m["status"] for m in statuses] == [MarketStatus.RESOLVED]
    # the record's order: the status first, the settlement last
    at = [m["msg_type"] for m in h.risk_out]
    assert at.index(MsgType.SET_MARKET_STATUS) < at.index(MsgType.SETTLEMENT_PRICE)
    after = at.index(MsgType.SETTLEMENT_PRICE)
    assert not [m for m in h.risk_out[after + 1 :] if m["market_id"] == BTC_PERP]  # no mark, no funding


def _perp_book(x: LocalExchange) -> None:
    """Alice long 0.05 BTC, Bob short 0.03, Carol short 0.02, at $50,000."""
    x.send(encode(MsgType.MARK_PRICE, RISK_BTC_PERP, price_ticks=500_000), Source.ORACLE)
    for acct in (ALICE, BOB, CAROL):
        x.deposit(acct, USDC, USDC_10K)
    x.order(ALICE, RISK_BTC_PERP, 0, 500_000, 50)
    x.order(BOB, RISK_BTC_PERP, 1, 500_000, 30)
    x.order(CAROL, RISK_BTC_PERP, 1, 500_000, 20)


def test_risk_closes_every_position_at_the_settlement_price_once_rounding_against_accounts() -> None:
    x = LocalExchange()
    _perp_book(x)
    b = x.risk.book
    fee_row = x.row(fee_account(0))
    before = {a: int(b.balance[x.row(a), USDC]) for a in (ALICE, BOB, CAROL)}
    fee_before = int(b.balance[fee_row, USDC])
    price = 49_999_999_999  # $49,999.999999: every position's value has a fraction of a micro-USDC
    msg = encode(MsgType.SETTLEMENT_PRICE, RISK_BTC_PERP, price_micro=price, twap_start_ns=1, twap_end_ns=2)
    x.send(msg, Source.ORACLE)  # the harness validates conservation after every record
    delta = {a: int(b.balance[x.row(a), USDC]) - before[a] for a in before}
    # Alice: 0.05 x 49,999.999999 = 2,499.99999995 -> 2,499.999999 received for a cost of 2,500
    # Bob:  -0.03 x ... = -1,499.99999997 -> pays 1,500.000000 against a cost of -1,500: 0
    assert delta == {ALICE: -1, BOB: 0, CAROL: 0}
    assert int(b.balance[fee_row, USDC]) - fee_before == 1  # the dust
    assert all(int(b.perp_size[x.row(a), 0]) == 0 for a in before)
    assert all(int(b.perp_cost[x.row(a), 0]) == 0 for a in before)
    settled = [
        e
        for e in x.risk_events
        if e["msg_type"] == MsgType.BALANCE and e["reason"] == BalanceReason.RESOLUTION
    ]
    assert sorted(e["account"] for e in settled) == [ALICE, BOB, CAROL]
    after = {a: int(b.balance[x.row(a), USDC]) for a in (ALICE, BOB, CAROL)}
    x.send(msg, Source.ORACLE)  # again: nothing left to settle
    x.send(encode(MsgType.SETTLEMENT_PRICE, RISK_BTC_PERP, price_micro=10**6), Source.ORACLE)
    assert {a: int(b.balance[x.row(a), USDC]) for a in after} == after


def test_oracle_funding_applied_by_risk_longs_pay_above_the_index_and_it_sums_to_zero() -> None:
    """The oracle's own FUNDING bytes into a risk engine on the same config: with the perp bid 1%
    above the index the rate is positive, the long pays, the shorts receive, exactly zero-sum."""
    import numpy as np

    from engine.risk.risk_config import load_risk_config
    from engine.risk.risk_engine import RiskEngine
    from hx.config import DEFAULT_CONFIG

    perp = {"market": "BTC-PERP", "payment_interval_s": 60, "premium_sample_ms": 5000}
    config = make_config(simple_oracle(perp=[perp], staleness_ms=86_400_000))
    h = Harness(config)
    fs = feeds(config, BTC)
    for f in fs:
        f.push("64000", T0)
    h.tick(T0, fs)
    h.book(T0, level(BTC_PERP, 0, 646_400, 1000), level(BTC_PERP, 1, 646_500, 1000))
    for k in range(1, 13 * 2):
        h.tick(T0 + k * 5 * S)
    risk = RiskEngine(load_risk_config(DEFAULT_CONFIG))
    book = risk.book
    rows = [book.row(a) for a in (ALICE, BOB, CAROL)]
    p = risk.config.markets[BTC_PERP].perp
    for row, size in zip(rows, (5_000_000, -3_000_000, -2_000_000), strict=True):
        book.balance[row, 0] = USDC_10K
        book.perp_size[row, p] = size
        book.perp_cost[row, p] = size * 640  # entered at $64,000
    before = np.array([int(book.balance[r, 0]) for r in rows])
    everything = b"".join(risk_bytes for _s, risk_bytes, _p in h.raw)
    for off in range(0, len(everything), 64):
        risk.handle_command(everything, off, Source.ORACLE)
    risk.end_of_record()
    delta = np.array([int(book.balance[r, 0]) for r in rows]) - before
    paid = h.of(h.risk_out, MsgType.FUNDING, BTC_PERP)
    assert len(paid) >= 1 and all(m["rate_ppb"] > 0 for m in paid)
    assert delta[0] < 0 < delta[1] and delta[2] > 0  # the long pays both shorts
    assert int(delta.sum()) == 0
