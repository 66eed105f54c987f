"""The settlement core without a chain: deposits credited once, the leaf model, dust, reconciliation,
batches fixed by the journal, SETTLED, replay and snapshot."""

from __future__ import annotations

import random

from settlement_fixtures import (
    AAPL_ASSET,
    BTC_ASSET,
    ETH_ASSET,
    FEE_ADDRESS,
    PERP,
    TOKENS,
    USDC,
    USDC_ASSET,
    USERS,
    WBTC,
    WETH,
    Harness,
)

from engine.types.enums import BalanceReason, MsgType, RejectCode, WithdrawStatus
from engine.wire.layout import BY_TYPE
from settlement.account_trees import AccountTrees
from settlement.anvil import DEV_PRIVATE_KEYS
from settlement.settlement_engine import (
    SettlementEngine,
    TokenSpec,
    pack_deposit,
    pack_paid,
    pack_resume,
)
from settlement.sum_tree import CLAIM, LIABILITY
from settlement.withdrawal import verify_withdrawal


def test_deposit_credited_once_through_risk_and_in_the_next_batch() -> None:
    h = Harness()
    h.deposit(1, USDC, 1_000 * 10**6)
    assert h.risk.balances[(1, USDC_ASSET)] == 1_000 * 10**6  # risk saw exactly one DEPOSIT
    h.apply(pack_deposit(1, 1, USDC, 1_000 * 10**6, 0, 1, USERS[0]))  # the same id again
    assert any("seen twice" in a for a in h.alarms)
    h.tick()
    (b,) = h.sealed
    assert b.batch_id == 1 and b.last_credited_deposit_id == 1 and len(b.deposits) == 1
    assert h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 1_000 * 10**6
    h.check_solvent()


def test_deposit_gap_refused_with_an_alarm() -> None:
    h = Harness()
    h.deposit(1, USDC, 5, did=2)
    assert any("gap" in a for a in h.alarms)
    assert h.engine.deposits_seen == 0 and not h.risk.balances


def test_18_decimal_dust_stays_in_the_depositors_leaf() -> None:
    h = Harness()
    wei = 2 * 10**18 + 123  # ETH's engine atom is 1e-8: 1e10 wei
    h.deposit(2, WETH, wei)
    assert h.risk.balances[(2, ETH_ASSET)] == 2 * 10**8
    h.tick()
    assert h.engine.trees.leaf(USERS[1], WETH, CLAIM) == wei
    h.check_solvent()


def test_unmapped_token_never_credited_in_the_engine() -> None:
    tokens = (*TOKENS, TokenSpec("0x" + "04" * 20, 18, -1))
    h = Harness(tokens)
    h.deposit(3, 3, 7 * 10**18)
    assert not h.risk.balances and any("maps to no asset" in a for a in h.alarms)
    h.tick()
    assert h.engine.trees.leaf(USERS[2], 3, CLAIM) == 7 * 10**18  # still the depositor's on chain
    h.check_solvent()


def test_deposit_refused_by_risk_stays_in_the_leaf() -> None:
    h = Harness()
    h.apply(pack_deposit(1, 1, USDC, 50, 0, 1, USERS[0]))
    h.risk.balances.clear()
    # risk refused it (say the account lives elsewhere): a REJECTED with the deposit id comes back
    h.events(h.risk.rejected(1, MsgType.DEPOSIT, 1, RejectCode.ACCOUNT_NOT_HERE))
    assert not h.engine.in_flight
    h.tick()
    assert h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 50
    h.check_solvent()


def test_no_batch_while_one_is_in_flight_then_settled_events() -> None:
    h = Harness()
    h.deposit(1, USDC, 100)
    h.tick()
    h.events(h.risk.balance(1, USDC_ASSET, -10), h.risk.balance(2, USDC_ASSET, 10))
    h.tick(5)
    assert len(h.sealed) == 1  # batch 1 is in flight
    h.confirm()
    assert h.settled == [(1, 1, 1, 101)]  # (seq, account, batch, block): account 1's deposit is final
    h.tick()
    assert [b.batch_id for b in h.sealed] == [1, 2] and h.sealed[1].prev_hash == h.sealed[0].hash
    h.confirm()
    assert sorted(h.settled[1:]) == [(1, 2, 2, 102), (2, 1, 2, 102)]


def test_random_trading_trees_match_engine_and_published_data() -> None:
    """Thousands of random fills across assets (accounts owing USDC against BTC, perps at moving
    marks): every batch proves claims - liabilities == holdings per token, the fee leaf takes only
    rounding dust, and the published data alone rebuilds every root."""
    rng = random.Random(7)
    h = Harness()
    for a in range(1, 6):
        h.deposit(a, USDC, rng.randrange(1, 10**10))
        h.deposit(a, WBTC, rng.randrange(1, 10**9))
        h.deposit(a, WETH, rng.randrange(1, 10**20))
    h.tick()
    h.confirm()
    size = {a: 0 for a in range(1, 6)}
    cost = {a: 0 for a in range(1, 6)}
    mark = 60_000 * 10**6
    for step in range(3000):
        a, b = rng.sample(range(1, 6), 2)
        kind = rng.randrange(4)
        if kind == 0:  # spot BTC/USDC: b sells to a, a may go negative in USDC (a liability)
            qty = rng.randrange(1, 10**6)
            px = rng.randrange(50_000, 70_000)
            notional = qty * px // 100  # micro
            h.events(
                h.risk.balance(a, BTC_ASSET, qty), h.risk.balance(b, BTC_ASSET, -qty),
                h.risk.balance(a, USDC_ASSET, -notional), h.risk.balance(b, USDC_ASSET, notional),
            )  # fmt: skip
        elif kind == 1:  # perp: a buys from b at the mark (cost +/-), fees to the exchange
            qty = rng.randrange(1, 10**7)
            notional = qty * mark // 10**8
            size[a] += qty
            size[b] -= qty
            cost[a] += notional
            cost[b] -= notional
            fee = notional // 1000
            h.events(
                h.risk.position(a, PERP, size[a], cost[a]), h.risk.position(b, PERP, size[b], cost[b]),
                h.risk.balance(a, USDC_ASSET, -fee, BalanceReason.FEE),
                h.risk.balance(0xFFFF_FF40, USDC_ASSET, fee, BalanceReason.FEE),
            )  # fmt: skip
        elif kind == 2:
            mark += rng.randrange(-(10**8), 10**8)
            h.events(h.risk.price(BTC_ASSET, mark, market=PERP, kind=0), h.risk.price(BTC_ASSET, mark))
        else:
            h.events(h.risk.balance(a, AAPL_ASSET, 10**8), h.risk.balance(b, AAPL_ASSET, -(10**8)),
                     h.risk.price(AAPL_ASSET, rng.randrange(100, 300) * 10**6))  # fmt: skip
        if step % 300 == 299:
            h.tick()
            h.check_solvent()
            h.confirm()
    assert not h.engine.halted, h.alarms
    assert len(h.sealed) >= 10
    assert any(h.engine.trees.leaf(u, USDC, LIABILITY) for u in USERS)  # someone owes USDC
    # the published data alone rebuilds every root of every batch
    replay = AccountTrees.replay([t.address for t in TOKENS], [b.data for b in h.sealed])
    last = h.sealed[-1]
    assert replay.asset_states([a.price for a in last.assets]) == last.assets
    # the fee leaf carries fees and dust, nothing else
    fee_usdc = h.engine.leaf_value[(bytes.fromhex(FEE_ADDRESS[2:]), USDC)]
    fees = h.risk.balances[(0xFFFF_FF40, USDC_ASSET)]
    assert abs(fee_usdc - fees) <= len(USERS) + 1


def test_reconciliation_difference_halts_until_resumed() -> None:
    h = Harness()
    h.deposit(1, WBTC, 10**8)
    h.tick()
    h.confirm()
    h.events(h.risk.balance(1, BTC_ASSET, 5))  # BTC out of nowhere: the books do not add up
    h.tick()
    assert h.engine.halted and len(h.sealed) == 1
    h.tick(10)
    assert len(h.sealed) == 1
    h.apply(pack_resume())
    h.tick()
    assert len(h.sealed) == 2  # the operator looked; the difference sits in the exchange's leaf
    h.check_solvent()


def test_replay_and_snapshot_give_the_same_state() -> None:
    rng = random.Random(3)
    h = Harness()
    snap_at, blob = 0, b""
    for i in range(400):
        a = rng.randrange(1, 6)
        if i % 50 == 0:
            h.deposit(a, rng.randrange(3), rng.randrange(1, 10**12))
        else:
            b = a % 5 + 1
            x = rng.randrange(1, 1000)
            h.events(h.risk.balance(a, USDC_ASSET, -x), h.risk.balance(b, USDC_ASSET, x))
        if i % 37 == 0:
            h.tick()
        if h.engine.pending is not None and i % 41 == 0:
            h.confirm()
        if i == 200:
            snap_at, blob = len(h.journal), h.engine.snapshot()
    restored = h.check_replay(blob, snap_at)
    assert (restored.pending and restored.pending.hash) == (h.engine.pending and h.engine.pending.hash)


def _signed(
    h: Harness, account: int, token: int, amount: int, nonce: int, key_of: int | None = None
) -> bytes:
    """A withdrawal record signed by the account's key (or another's)."""
    from settlement.settlement_engine import pack_withdrawal
    from settlement.withdrawal import Withdrawal, sign_withdrawal

    w = Withdrawal(
        USERS[account - 1], h.spec.tokens[token].address, amount, USERS[account - 1], nonce, 10**10
    )
    sig = sign_withdrawal(
        w, DEV_PRIVATE_KEYS[3 + (key_of or account) - 1], h.spec.chain_id, h.spec.clearing_house
    )
    ok = verify_withdrawal(w, sig, h.spec.chain_id, h.spec.clearing_house)
    return pack_withdrawal(account, token, w, sig, ok)


def _results(h: Harness) -> list[tuple[int, ...]]:
    s = BY_TYPE[MsgType.WITHDRAW_RESULT].struct
    return [s.unpack_from(c, 0)[4:9] for c in h.results if c[0] == MsgType.WITHDRAW_RESULT]


def test_withdrawal_signed_held_batched_paid() -> None:
    h = Harness()
    h.deposit(1, USDC, 100 * 10**6)
    h.tick()
    h.confirm()
    h.hold(1, USDC_ASSET, 30 * 10**6, nonce=7)
    h.apply(_signed(h, 1, USDC, 30 * 10**6, 7))
    h.tick()
    b = h.sealed[-1]
    assert len(b.withdrawals) == 1 and b.withdrawals[0][2] == 30 * 10**6
    assert h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 70 * 10**6  # queued: out of the leaf
    h.check_solvent()
    h.confirm()
    assert not _results(h)  # paid only after the dispute window, when the chain says so
    h.apply(pack_paid(b.batch_id))
    assert _results(h) == [(1, USDC_ASSET, WithdrawStatus.PAID, 30 * 10**6, 7)]
    assert not h.engine.acct_queued and h.risk.held[(1, USDC_ASSET)] == 0
    h.tick()
    h.check_solvent()
    assert h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 70 * 10**6


def test_bad_signature_or_spent_nonce_returns_the_hold() -> None:
    h = Harness()
    h.deposit(1, USDC, 100 * 10**6)
    h.hold(1, USDC_ASSET, 10 * 10**6, nonce=1)
    h.apply(_signed(h, 1, USDC, 10 * 10**6, 1, key_of=2))  # signed by account 2's key
    assert _results(h) == [(1, USDC_ASSET, WithdrawStatus.FAILED, 10 * 10**6, 1)]
    assert h.risk.balances[(1, USDC_ASSET)] == 100 * 10**6  # the hold came back
    h.hold(1, USDC_ASSET, 10 * 10**6, nonce=2)
    h.apply(_signed(h, 1, USDC, 10 * 10**6, 2))
    h.tick()
    h.confirm()
    h.hold(1, USDC_ASSET, 5 * 10**6, nonce=2)  # the same nonce again: spent
    h.apply(_signed(h, 1, USDC, 5 * 10**6, 2))
    assert _results(h)[-1] == (1, USDC_ASSET, WithdrawStatus.FAILED, 5 * 10**6, 2)
    h.tick()
    h.check_solvent()


def test_an_isolated_positions_margin_stays_in_its_owners_usdc_leaf() -> None:
    """Risk publishes an isolated position's margin as a BALANCE naming the perp (market_id != 0):
    money moved out of the account's own USDC into the position, still the owner's. The leaf counts
    both (with the position's P&L), so claims - liabilities == holdings and the fee leaf is 0."""
    from engine.wire.layout import SLOT_BYTES, WIRE_VERSION

    h = Harness()
    h.deposit(1, USDC, 10_000 * 10**6)
    h.tick()
    h.confirm()
    pack = BY_TYPE[MsgType.BALANCE].struct.pack
    moved = 500 * 10**6
    reason = BalanceReason.MARGIN_TRANSFER
    h.events(
        h.risk.balance(1, USDC_ASSET, -moved, reason, ref=PERP),
        pack(MsgType.BALANCE, WIRE_VERSION, SLOT_BYTES, PERP, h.risk._next(1), 1, USDC_ASSET, reason,
             moved, moved, 0, PERP),
    )  # fmt: skip
    h.tick()
    h.check_solvent()
    assert h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 10_000 * 10**6
    assert h.engine.leaf_value.get((bytes.fromhex(FEE_ADDRESS[2:]), USDC), 0) == 0
    restored = SettlementEngine(h.spec, h.address_of)
    restored.restore(h.engine.snapshot())
    assert restored.isolated == {(1, PERP): moved} and restored.state_hash() == h.engine.state_hash()
    h.confirm()
    h.events(  # the position closed: its margin went back
        pack(MsgType.BALANCE, WIRE_VERSION, SLOT_BYTES, PERP, h.risk._next(1), 1, USDC_ASSET, reason,
             0, -moved, 0, PERP),
        h.risk.balance(1, USDC_ASSET, moved, reason, ref=PERP),
    )  # fmt: skip
    h.tick()
    h.check_solvent()
    assert h.engine.isolated == {} and h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 10_000 * 10**6
