"""Forced withdrawals in the settlement core (risk modelled by the harness): a request meets risk's hold
under its own id range and is served in full by the next batch; more than the account owns is served
short with a proof of its emptied claim leaf; an account risk keeps margin for waits and is asked again;
a cancellation returns the hold; a rollback serves it again; replay and snapshot give the same state;
malformed records are alarms."""

from __future__ import annotations

from settlement_fixtures import (
    ETH_ASSET,
    FEE_ADDRESS,
    USDC,
    USDC_ASSET,
    USERS,
    WETH,
    Harness,
)

from engine.types.enums import MsgType, WithdrawStatus
from engine.wire.layout import BY_TYPE
from settlement.settlement_engine import (
    FORCED_BIT,
    pack_forced,
    pack_forced_cancel,
    pack_paid,
    pack_rollback,
)
from settlement.sum_tree import CLAIM, verify

DEST = "0x" + "de" * 20
DEADLINE = 10**10


def _forced(h: Harness, rid: int, account: int, token: int, amount: int, address: str | None = None) -> None:
    h.apply(pack_forced(rid, account, token, amount, DEST, DEADLINE, 7, address or h.users[account - 1]))


def _commands(h: Harness, kind: int) -> list[tuple[int, ...]]:
    s = BY_TYPE[kind].struct
    return [s.unpack_from(c, 0)[4:9] for c in h.results if c[0] == kind]


def _check_short_proof(h: Harness, token: int, address: str, serve: tuple[int, ...]) -> None:
    """The serve's proof is the one the contract checks: leaf (address, token, 0) of the claims tree."""
    _rid, _amount, index, proof = serve
    a = h.sealed[-1].assets[token]
    assert verify(a.claims_root, a.claims_total, address, a.token, 0, index, proof)


def test_forced_request_held_by_risk_served_in_full_and_paid() -> None:
    h = Harness()
    h.deposit(1, USDC, 100 * 10**6)
    h.tick()
    h.confirm()
    _forced(h, 1, 1, USDC, 40 * 10**6)
    # risk was asked to hold it under a request id no gateway nonce can take
    assert _commands(h, MsgType.WITHDRAW_REQUEST) == [(1, USDC_ASSET, 40 * 10**6, FORCED_BIT | 1)]
    assert h.risk.held[(1, USDC_ASSET)] == 40 * 10**6
    h.tick()
    b = h.sealed[-1]
    assert b.forced == ((1, 40 * 10**6, 0, []),)  # in full: no proof needed
    (payout,) = h.engine.batch_payouts[b.batch_id]
    assert (
        payout.kind == 1
        and payout.amount == 40 * 10**6
        and payout.ref == 1
        and payout.destination.lower() == DEST
    )
    assert h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 60 * 10**6
    h.check_solvent()
    h.confirm()
    h.apply(pack_paid(b.batch_id))
    assert _commands(h, MsgType.WITHDRAW_RESULT) == [
        (1, USDC_ASSET, WithdrawStatus.PAID, 40 * 10**6, FORCED_BIT | 1)
    ]
    assert h.risk.balances[(1, USDC_ASSET)] == 60 * 10**6 and h.risk.held[(1, USDC_ASSET)] == 0
    assert not h.engine.forced and not h.engine.batch_forced and not h.engine.acct_queued
    h.tick()
    h.check_solvent()
    assert h.engine.trees.leaf(USERS[0], USDC, CLAIM) == 60 * 10**6


def test_more_than_the_account_owns_is_served_short_with_the_proof() -> None:
    h = Harness()
    h.deposit(2, WETH, 3 * 10**18 + 5)  # 5 wei below one engine atom stay in extra
    h.tick()
    h.confirm()
    _forced(h, 1, 2, WETH, 10 * 10**18)
    assert _commands(h, MsgType.WITHDRAW_REQUEST) == [(2, ETH_ASSET, 3 * 10**8, FORCED_BIT | 1)]
    h.tick()
    (serve,) = h.sealed[-1].forced
    assert serve[:2] == (1, 3 * 10**18 + 5)  # everything: risk's hold and the wei in extra
    assert h.engine.trees.leaf(USERS[1], WETH, CLAIM) == 0
    _check_short_proof(h, WETH, USERS[1], serve)
    h.check_solvent()


def test_a_request_within_the_balance_takes_the_wei_below_an_engine_atom_from_extra() -> None:
    h = Harness()
    h.deposit(2, WETH, 3 * 10**18 + 5)
    h.tick()
    h.confirm()
    _forced(h, 1, 2, WETH, 2 * 10**18 + 5)
    h.tick()
    assert h.sealed[-1].forced == ((1, 2 * 10**18 + 5, 0, []),)
    assert h.engine.trees.leaf(USERS[1], WETH, CLAIM) == 10**18
    h.check_solvent()


def test_an_account_the_engine_never_saw_is_served_nothing_with_the_proof() -> None:
    h = Harness()
    h.deposit(1, USDC, 10**6)
    h.tick()
    h.confirm()
    _forced(h, 1, 4, USDC, 5 * 10**6)  # account 4 never deposited
    assert not _commands(h, MsgType.WITHDRAW_REQUEST)  # nothing to hold: risk is not asked
    h.tick()
    (serve,) = h.sealed[-1].forced
    assert serve[:2] == (1, 0)
    _check_short_proof(h, USDC, USERS[3], serve)
    assert not h.engine.batch_payouts.get(h.sealed[-1].batch_id)
    h.check_solvent()


def test_margin_kept_by_risk_waits_then_serves_when_released() -> None:
    h = Harness()
    h.deposit(1, USDC, 100 * 10**6)
    h.tick()
    h.confirm()
    h.margin_locked.add(1)  # open positions: risk refuses to let any of it go
    _forced(h, 1, 1, USDC, 40 * 10**6)
    h.tick()
    assert not any(b.forced for b in h.sealed)
    assert any("cannot be served yet" in a and "reject code" in a for a in h.alarms)
    assert 1 in h.engine.forced
    n_alarms = len(h.alarms)
    h.tick(3)  # before the retry: not asked again, no new alarm
    assert len(_commands(h, MsgType.WITHDRAW_REQUEST)) == 1 and len(h.alarms) == n_alarms
    h.margin_locked.clear()
    if h.engine.pending is not None:
        h.confirm()
    h.tick(10)  # the retry: risk holds it now
    assert len(_commands(h, MsgType.WITHDRAW_REQUEST)) == 2
    h.tick()
    assert any(b.forced == ((1, 40 * 10**6, 0, []),) for b in h.sealed)
    h.check_solvent()


def test_cancelled_before_a_batch_returns_the_hold() -> None:
    h = Harness()
    h.deposit(1, USDC, 100 * 10**6)
    h.tick()
    h.confirm()
    _forced(h, 1, 1, USDC, 40 * 10**6)
    h.apply(pack_forced_cancel(1))
    assert _commands(h, MsgType.WITHDRAW_RESULT) == [
        (1, USDC_ASSET, WithdrawStatus.FAILED, 40 * 10**6, FORCED_BIT | 1)
    ]
    assert h.risk.balances[(1, USDC_ASSET)] == 100 * 10**6
    h.tick()
    assert not any(b.forced for b in h.sealed)
    h.apply(pack_forced_cancel(1))  # a rescan: nothing
    assert len(_commands(h, MsgType.WITHDRAW_RESULT)) == 1


def test_a_voided_batch_serves_the_request_again() -> None:
    h = Harness()
    h.deposit(1, USDC, 100 * 10**6)
    h.tick()
    h.confirm()
    b1 = h.sealed[-1]
    _forced(h, 1, 1, USDC, 40 * 10**6)
    h.tick()
    assert h.sealed[-1].forced
    h.confirm()
    h.apply(pack_rollback(b1.batch_id, b1.hash))  # a challenge voided batch 2
    assert _commands(h, MsgType.WITHDRAW_RESULT)[-1][2] == WithdrawStatus.FAILED
    h.tick()  # risk is asked again (the hold came back); this batch 2 is sealed before it answers
    assert h.sealed[-1].batch_id == 2 and h.risk.held[(1, USDC_ASSET)] == 40 * 10**6
    h.confirm()
    h.tick()
    assert [b.forced for b in h.sealed[-2:]] == [(), ((1, 40 * 10**6, 0, []),)]
    h.check_solvent()


def test_replay_and_snapshot_give_the_same_state_with_forced_requests() -> None:
    h = Harness()
    h.deposit(1, USDC, 100 * 10**6)
    h.deposit(2, WETH, 10**18)
    h.tick()
    h.confirm()
    _forced(h, 1, 1, USDC, 30 * 10**6)
    blob, at = h.engine.snapshot(), len(h.journal)
    _forced(h, 2, 2, WETH, 5 * 10**18)
    h.margin_locked.add(3)
    h.deposit(3, USDC, 10**6)
    _forced(h, 3, 3, USDC, 10**6)
    h.tick()
    h.confirm()
    h.apply(pack_paid(h.sealed[-1].batch_id))
    h.tick(20)
    h.check_replay(blob, at)
    assert 3 in h.engine.forced  # account 3's margin keeps it waiting


def test_malformed_gapped_or_doubled_records_are_alarms() -> None:
    h = Harness()
    h.apply(pack_forced(1, 1, USDC, 10, DEST, DEADLINE, 7, USERS[0])[:-3])  # truncated
    h.apply(pack_forced_cancel(1) + b"x")
    _forced(h, 2, 1, USDC, 10)  # gap
    h.apply(pack_forced(1, 1, 9, 10, DEST, DEADLINE, 7, USERS[0]))  # no such token
    _forced(h, 1, 1, USDC, 10)  # seen twice
    h.apply(pack_forced(2, 0, USDC, 10, DEST, DEADLINE, 7, FEE_ADDRESS))
    text = " | ".join(h.alarms)
    for word in ("malformed FORCED record", "malformed FORCED_CANCEL", "gap", "out of range", "seen twice",
                 "own leaf"):  # fmt: skip
        assert word in text, word
    assert not h.engine.forced and h.engine.forced_seen == 2
