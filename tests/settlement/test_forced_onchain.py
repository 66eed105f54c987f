"""Forced withdrawals on a real anvil with the real contracts: a request made on chain is watched, held by
(modelled) risk, served by the next batch and paid by the Vault after the dispute window; a request above
what the account owns is served short and the contract accepts the proof; an account the engine never
saw is served nothing, with the proof; a cancelled request is not served; the audit still passes."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from settlement_fixtures import ETH_ASSET, USDC, USDC_ASSET, WETH
from test_batch_sender import ADDR, KEYS, OnChain

from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.audit import audit
from settlement.batch_sender import BatchRefused
from settlement.chain import Artifact, Chain
from settlement.forced_request_watcher import (
    ChainForcedRequest,
    ForcedRequestWatcher,
    MalformedLog,
    parse_cancel,
    parse_request,
)
from settlement.settlement_engine import pack_failed, pack_forced, pack_forced_cancel, pack_paid
from settlement.sum_tree import CLAIM

CAROL_KEY = DEV_PRIVATE_KEYS[7]
CAROL = Account.from_key(CAROL_KEY).address


class Forced(OnChain):
    """OnChain with carol (account 3, never deposits) and the forced-request watcher."""

    def __init__(self, anvil: Anvil, deployer: Chain) -> None:
        super().__init__(anvil, deployer)
        self.users.append(CAROL.lower())
        self.chains["carol"] = Chain(anvil.url, CAROL_KEY)
        self.forced_watcher = ForcedRequestWatcher(anvil.url, self.addr("EscapeHatch"))

    def hatch(self, who: str) -> Any:
        return self.chains[who].at(Artifact.load("EscapeHatch"), self.addr("EscapeHatch"))

    def request(self, who: str, token: int, amount: int, destination: str) -> None:
        c = self.chains[who]
        c.transact(
            self.hatch(who).functions.requestForcedWithdrawal(self.m["tokens"][token], amount, destination)
        )

    def watch_forced(self) -> None:
        for f in self.forced_watcher.poll():
            if isinstance(f, ChainForcedRequest):
                account_id = self.users.index(f.account.lower()) + 1
                token = self.m["tokens"].index(f.token)
                self.h.apply(
                    pack_forced(f.request_id, account_id, token, f.amount, f.destination, f.deadline, f.block,
                                f.account)
                )  # fmt: skip
            else:
                self.h.apply(pack_forced_cancel(f.request_id))

    def pass_dispute_window(self) -> None:
        w3 = self.chains["alice"].w3
        w3.provider.make_request("evm_increaseTime", [6 * 3600 + 1])
        w3.provider.make_request("evm_mine", [])

    def balance_of(self, token: int, who: str) -> int:
        tok = self.chains["alice"].at(Artifact.load("TestToken"), self.m["tokens"][token])
        return int(tok.functions.balanceOf(who).call())


@pytest.fixture
def forced(anvil: Anvil, deployer: Chain, artifacts: Any, snapshot: None) -> Forced:
    return Forced(anvil, deployer)


def test_forced_request_served_in_the_next_batch_and_paid_after_the_window(forced: Forced) -> None:
    s = forced
    s.deposit("alice", USDC, 100 * 10**6)
    s.watch()
    s.settle()
    s.request("alice", USDC, 40 * 10**6, ADDR["bob"])
    s.watch_forced()
    s.watch_forced()  # nothing new: nothing asked twice
    assert s.h.risk.held[(1, USDC_ASSET)] == 40 * 10**6  # risk holds it
    b = s.settle()  # the contract accepted the serve
    assert b.forced == ((1, 40 * 10**6, 0, []),)
    ch = s.ch()
    assert ch.functions.accountHoldings(s.m["tokens"][USDC]).call() == 60 * 10**6
    assert not s.hatch("alice").functions.isForcedRequestSettled(1).call()  # served, not yet paid
    payouts = s.h.engine.batch_payouts[b.batch_id]
    assert not s.sender.execute_payouts(b.batch_id, payouts)  # inside the dispute window
    s.pass_dispute_window()
    assert s.sender.execute_payouts(b.batch_id, payouts)
    assert s.balance_of(USDC, ADDR["bob"]) == 40 * 10**6
    assert s.hatch("alice").functions.isForcedRequestSettled(1).call()
    s.h.apply(pack_paid(b.batch_id))
    # the engine's balance went down by exactly the amount, the hold is gone
    assert s.h.risk.balances[(1, USDC_ASSET)] == 60 * 10**6 and s.h.risk.held[(1, USDC_ASSET)] == 0
    assert s.h.engine.balance[(1, USDC_ASSET)] == (60 * 10**6, 0) and not s.h.engine.acct_queued
    s.settle()
    assert s.h.engine.trees.leaf(s.users[0], USDC, CLAIM) == 60 * 10**6
    s.h.check_solvent()
    report = audit(s.anvil.url, s.m)
    assert report.ok, report.difference


def test_requests_above_what_the_accounts_own_are_served_short_with_proofs(forced: Forced) -> None:
    s = forced
    s.deposit("alice", USDC, 100 * 10**6)
    s.deposit("bob", WETH, 3 * 10**18 + 5)  # 5 wei below one engine atom: in bob's leaf, not the engine
    s.watch()
    s.settle()
    s.request("alice", USDC, 250 * 10**6, ADDR["alice"])
    s.request("bob", WETH, 10 * 10**18, ADDR["bob"])
    s.watch_forced()
    b = s.settle()  # both short serves' proofs verified on chain
    assert [f[:2] for f in b.forced] == [(1, 100 * 10**6), (2, 3 * 10**18 + 5)]
    ch = s.ch()
    assert ch.functions.accountHoldings(s.m["tokens"][USDC]).call() == 0
    assert ch.functions.accountHoldings(s.m["tokens"][WETH]).call() == 0
    s.pass_dispute_window()
    assert s.sender.execute_payouts(b.batch_id, s.h.engine.batch_payouts[b.batch_id])
    assert s.balance_of(USDC, ADDR["alice"]) == 100 * 10**6
    assert s.balance_of(WETH, ADDR["bob"]) == 3 * 10**18 + 5
    s.h.apply(pack_paid(b.batch_id))
    assert s.h.risk.balances[(1, USDC_ASSET)] == 0 and s.h.risk.balances[(2, ETH_ASSET)] == 0
    assert s.h.risk.held[(1, USDC_ASSET)] == 0 and s.h.risk.held[(2, ETH_ASSET)] == 0
    hatch = s.hatch("alice")
    assert (
        hatch.functions.isForcedRequestSettled(1).call() and hatch.functions.isForcedRequestSettled(2).call()
    )
    s.settle()
    report = audit(s.anvil.url, s.m)
    assert report.ok, report.difference


def test_an_account_never_seen_is_served_nothing_and_a_cancelled_request_not_at_all(forced: Forced) -> None:
    s = forced
    s.deposit("alice", USDC, 10**6)
    s.watch()
    s.settle()
    s.request("carol", USDC, 5 * 10**6, CAROL)  # carol never deposited
    s.request("carol", WETH, 10**18, CAROL)
    s.chains["carol"].transact(s.hatch("carol").functions.cancelForcedWithdrawal(2))
    s.watch_forced()
    b = s.settle()  # the zero serve's proof verified on chain; the cancelled one is not in it
    assert [f[:2] for f in b.forced] == [(1, 0)]
    assert s.hatch("carol").functions.isForcedRequestSettled(1).call()  # settled at once: nothing to pay
    assert not s.h.engine.forced and s.h.engine.forced_seen == 2
    report = audit(s.anvil.url, s.m)
    assert report.ok, report.difference


def test_malformed_forced_logs_are_refused_not_crashes() -> None:
    good = {
        "args": {"requestId": 1, "account": ADDR["alice"], "token": ADDR["bob"], "amount": 5,
                 "destination": ADDR["bob"], "deadline": 100},
        "blockNumber": 3,
    }  # fmt: skip
    assert parse_request(good).amount == 5
    for bad in (
        {},
        {"args": {**good["args"], "amount": 0}, "blockNumber": 3},
        {"args": {**good["args"], "destination": "0x" + "00" * 20}, "blockNumber": 3},
        {"args": {**good["args"], "account": "nonsense"}, "blockNumber": 3},
        {"args": {**good["args"], "requestId": "x"}, "blockNumber": 3},
    ):
        with pytest.raises(MalformedLog):
            parse_request(bad)
    with pytest.raises(MalformedLog):
        parse_cancel({"args": {"requestId": 0}, "blockNumber": 1})
    assert KEYS  # the shared deployment's keys


def test_a_cancellation_racing_our_seal_reseals_the_batch_without_the_serve(forced: Forced) -> None:
    """alice cancels after our batch was sealed with her serve and before it is mined: the chain refuses
    the batch (RequestCancelled); the core voids it, returns the hold and seals a batch the chain takes."""
    s = forced
    s.deposit("alice", USDC, 100 * 10**6)
    s.watch()
    s.settle()
    s.request("alice", USDC, 40 * 10**6, ADDR["alice"])
    s.watch_forced()
    s.h.tick()
    sealed = s.h.engine.pending
    assert sealed is not None and sealed.forced
    s.chains["alice"].transact(s.hatch("alice").functions.cancelForcedWithdrawal(1))
    with pytest.raises(BatchRefused, match="RequestCancelled") as err:
        s.sender.post(sealed)
    s.h.apply(pack_failed(sealed.batch_id, f"BatchRefused: {err.value}"))
    assert not s.h.engine.halted and any("cancelled on chain after we sealed it" in a for a in s.h.alarms)
    assert s.h.risk.balances[(1, USDC_ASSET)] == 100 * 10**6 and s.h.risk.held[(1, USDC_ASSET)] == 0
    s.watch_forced()  # the cancellation itself: nothing more to do
    b = s.settle()
    assert b.batch_id == sealed.batch_id and not b.forced
    assert s.ch().functions.accountHoldings(s.m["tokens"][USDC]).call() == 100 * 10**6
    assert s.h.engine.trees.leaf(s.users[0], USDC, CLAIM) == 100 * 10**6
    report = audit(s.anvil.url, s.m)
    assert report.ok, report.difference
