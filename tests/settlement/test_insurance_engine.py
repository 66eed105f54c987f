"""Insurance moves in the settlement core (risk and the chain modelled): the insurance account's growth goes
into the fund (queued, the batch's first payout), a loss comes back out of what the fund holds on chain, a
shortfall waits, a voided batch's moves are sent again, the exchange's leaf no longer carries the fund, the
reconciliation of the fund's on-chain balance halts on a difference; replay and snapshot; old journals
(no FUND record) seal exactly the batches they sealed before."""

from __future__ import annotations

from settlement_fixtures import (
    BTC_ASSET,
    FEE_ADDRESS,
    TOKENS,
    USDC,
    USDC_ASSET,
    WBTC,
    Harness,
    address_of,
)

from engine.risk.risk_engine import insurance_account
from engine.types.enums import BalanceReason
from settlement.batch_commitments import PAYOUT_TO_FUND
from settlement.settlement_engine import (
    SettlementEngine,
    pack_fund,
    pack_paid,
    pack_resume,
    pack_rollback,
)
from settlement.sum_tree import ZERO_HASH

FUND_ADDRESS = "0x" + "f0" * 20
INS = insurance_account(0)
ZEROS = [0, 0, 0]


def _harness() -> Harness:
    return Harness(insurance_fund=FUND_ADDRESS)  # type: ignore[arg-type]


def _observe(h: Harness, balances: list[int], batch: int | None = None) -> None:
    """A FUND record: the fund holds ``balances`` with the chain at our confirmed batch (or ``batch``)."""
    e = h.engine
    bid = e.confirmed_id if batch is None else batch
    bh = e.confirmed_hash if batch is None else e.history[bid][0]
    h.apply(pack_fund(1000 + len(h.journal), bid, bh, balances))


def _fee(h: Harness, account: int, micro: int) -> None:
    """A liquidation fee: the account pays, the insurance account receives."""
    h.events(
        h.risk.balance(account, USDC_ASSET, -micro, BalanceReason.LIQUIDATION),
        h.risk.balance(INS, USDC_ASSET, micro, BalanceReason.INSURANCE),
    )


def _cover(h: Harness, account: int, micro: int) -> None:
    """The insurance account covers ``micro`` of the account's deficit."""
    h.events(
        h.risk.balance(INS, USDC_ASSET, -micro, BalanceReason.INSURANCE),
        h.risk.balance(account, USDC_ASSET, micro, BalanceReason.INSURANCE),
    )


def _exchange_leaf(h: Harness) -> int:
    return h.engine.leaf_value[(bytes.fromhex(FEE_ADDRESS[2:]), USDC)]


def _started() -> Harness:
    h = _harness()
    h.deposit(1, USDC, 1_000 * 10**6)
    h.deposit(2, USDC, 1_000 * 10**6)
    _observe(h, ZEROS)  # insurance moves on
    assert h.engine.fund_on and any("insurance moves on" in a for a in h.alarms)
    h.tick()
    h.confirm()
    return h


def test_fees_go_into_the_fund_and_a_loss_comes_back_out() -> None:
    h = _started()
    _fee(h, 1, 5 * 10**6)
    h.tick()
    b = h.sealed[-1]
    assert b.insurance_moves == ((TOKENS[USDC].address, 5 * 10**6),)
    (p,) = h.engine.batch_payouts[b.batch_id]  # queued into the fund, paid after the window
    assert p.kind == PAYOUT_TO_FUND and p.amount == 5 * 10**6 and p.destination.lower() == FUND_ADDRESS
    assert h.holdings()[USDC] == 1_995 * 10**6  # the vault's holdings dropped at once
    assert _exchange_leaf(h) == 0  # the fee is not in the exchange's leaf any more
    h.check_solvent()
    h.confirm()
    _observe(h, ZEROS)  # not executed yet: in flight, no difference
    assert not h.engine.halted
    h.apply(pack_paid(b.batch_id))
    _observe(h, [5 * 10**6, 0, 0])
    assert not h.engine.halted and h.engine.fund_paid_in[USDC] == 5 * 10**6
    _cover(h, 2, 3 * 10**6)
    h.tick()
    b2 = h.sealed[-1]
    assert b2.insurance_moves == ((TOKENS[USDC].address, -3 * 10**6),)
    assert b2.batch_id not in h.engine.batch_payouts  # a move out is no payout: paid while accepted
    assert h.holdings()[USDC] == 1_998 * 10**6
    h.check_solvent()
    # before the chain accepts it, the fund still holds 5; after, 2
    _observe(h, [5 * 10**6, 0, 0])
    assert not h.engine.halted
    h.confirm()
    _observe(h, [2 * 10**6, 0, 0])
    assert not h.engine.halted
    st = h.engine.insurance_status()["tokens"][TOKENS[USDC].address]
    assert st["engine"] == st["fund_expected"] == st["fund_on_chain"] == 2 * 10**6
    h.tick()  # nothing to move: no batch for the fund's sake
    assert h.engine.pending is None


def test_a_shortfall_waits_until_the_fund_holds_it() -> None:
    h = _started()
    _fee(h, 1, 5 * 10**6)
    h.tick()
    b = h.sealed[-1]
    h.confirm()
    h.apply(pack_paid(b.batch_id))  # the fund holds 5
    _fee(h, 1, 10 * 10**6)
    h.tick()
    b2 = h.sealed[-1]
    assert b2.insurance_moves == ((TOKENS[USDC].address, 10 * 10**6),)
    h.confirm()
    _cover(h, 2, 11 * 10**6)  # more than the 5 the fund holds on chain: 10 are still queued into it
    h.tick()
    b3 = h.sealed[-1]
    assert b3.insurance_moves == ((TOKENS[USDC].address, -5 * 10**6),)
    assert h.engine.fund_short[USDC] == 6 * 10**6
    assert sum("insurance shortfall" in a for a in h.alarms) == 1
    assert (
        "waits for the next batch" in h.engine.insurance_status()["tokens"][TOKENS[USDC].address]["waiting"]
    )
    h.check_solvent()
    h.confirm()
    h.events(h.risk.balance(1, USDC_ASSET, -1), h.risk.balance(2, USDC_ASSET, 1))
    h.tick()
    assert not h.sealed[-1].insurance_moves  # the fund still holds nothing more: the shortfall waits
    assert sum("insurance shortfall" in a for a in h.alarms) == 1  # said once
    h.confirm()
    h.apply(pack_paid(b2.batch_id))  # the 10 reached the fund
    h.tick()
    assert h.sealed[-1].insurance_moves == ((TOKENS[USDC].address, -6 * 10**6),)
    assert h.engine.fund_short[USDC] == 0 and any("covered by batch" in a for a in h.alarms)
    h.confirm()
    _observe(h, [4 * 10**6, 0, 0])
    assert not h.engine.halted
    assert h.engine.insurance_status()["tokens"][TOKENS[USDC].address]["engine"] == 4 * 10**6
    h.check_solvent()


def test_a_voided_batch_moves_are_sent_again_once() -> None:
    h = _started()
    b1 = h.sealed[-1]
    _fee(h, 1, 5 * 10**6)
    h.tick()
    b2 = h.sealed[-1]
    h.confirm()
    h.apply(pack_rollback(b1.batch_id, b1.hash))  # a watcher voided batch 2
    assert b2.batch_id not in h.engine.batch_payouts and not h.engine.fund_unpaid
    h.tick()
    again = h.sealed[-1]
    assert again.batch_id == 2 and again.insurance_moves == b2.insurance_moves
    h.confirm()
    h.tick()
    assert h.engine.pending is None or not h.engine.pending.insurance_moves  # once
    h.check_solvent()
    # a voided move out goes back to the fund: sent again too
    h.apply(pack_paid(again.batch_id))
    if h.engine.pending is not None:
        h.confirm()
    top = h.engine.confirmed_id
    top_hash = h.engine.confirmed_hash
    _cover(h, 2, 2 * 10**6)
    h.tick()
    out = h.sealed[-1]
    assert out.insurance_moves == ((TOKENS[USDC].address, -2 * 10**6),)
    h.confirm()
    h.apply(pack_rollback(top, top_hash))
    assert h.engine.fund_in_wei[USDC] == 0
    _observe(h, [5 * 10**6, 0, 0])  # the contract gave the fund its 2 back
    assert not h.engine.halted
    h.tick()
    assert h.sealed[-1].insurance_moves == ((TOKENS[USDC].address, -2 * 10**6),)
    h.check_solvent()


def test_a_fund_balance_that_differs_halts_until_resumed() -> None:
    h = _started()
    _fee(h, 1, 5 * 10**6)
    h.tick()
    b = h.sealed[-1]
    h.confirm()
    h.apply(pack_paid(b.batch_id))
    _observe(h, [5 * 10**6 + 1, 0, 0])
    assert h.engine.halted.startswith("reconciliation: the InsuranceFund holds 5000001")
    _fee(h, 1, 1)
    h.tick()
    assert h.engine.pending is None  # halted: nothing sealed
    h.apply(pack_resume())
    _observe(h, [5 * 10**6 + 1, 0, 0])  # adopted once, after the operator looked
    assert not h.engine.halted and h.engine.fund_base[USDC] == 1
    _observe(h, [5 * 10**6, 0, 0])  # a new difference halts again
    assert h.engine.halted


def test_old_journals_without_a_fund_record_seal_the_same_batches() -> None:
    """No FUND record: the insurance stays in the exchange's leaf, no move, the same hashes as before."""
    h = _harness()
    plain = Harness()
    for x in (h, plain):
        x.deposit(1, USDC, 1_000 * 10**6)
        _fee(x, 1, 5 * 10**6)
        x.tick()
    assert not h.sealed[-1].insurance_moves
    assert h.sealed[-1].hash == plain.sealed[-1].hash
    assert _exchange_leaf(h) == 5 * 10**6


def test_replay_and_snapshot_give_the_same_state() -> None:
    h = _started()
    h.deposit(1, WBTC, 10**8)
    snap_at, blob = 0, b""
    for i in range(60):
        if i % 3 == 0:
            _fee(h, 1, 1_000 + i)
        elif i % 3 == 1:
            _cover(h, 2, 700 + i)
        else:
            h.events(  # a takeover of a spot holding
                h.risk.balance(1, BTC_ASSET, -(10**4), BalanceReason.LIQUIDATION),
                h.risk.balance(INS, BTC_ASSET, 10**4, BalanceReason.INSURANCE),
            )
        h.tick()
        if h.engine.pending is not None:
            bid = h.engine.pending.batch_id
            h.confirm()
            if i % 4 == 0:
                h.apply(pack_paid(bid))
        if i % 10 == 5:
            e = h.engine
            _observe(h, [e.fund_base[t] + e.fund_paid_in[t] - e.fund_in_wei[t] for t in range(3)])
        if i == 30:
            snap_at, blob = len(h.journal), h.engine.snapshot()
        h.check_solvent()
    assert not h.engine.halted
    assert any(b.insurance_moves and b.insurance_moves[0][1] < 0 for b in h.sealed)
    assert any(any(m[0] == TOKENS[WBTC].address for m in b.insurance_moves) for b in h.sealed)
    h.check_replay(blob, snap_at)
    old = h.engine.snapshot()  # a snapshot written before these fields existed still loads
    import pickle

    state = pickle.loads(old)  # noqa: S301
    for k in [k for k in state if k.startswith("fund_")]:
        del state[k]
    legacy = SettlementEngine(h.spec, address_of)
    legacy.restore(pickle.dumps(state))
    assert not legacy.fund_on and legacy.fund_in_wei == ZEROS and legacy.confirmed_hash != ZERO_HASH
