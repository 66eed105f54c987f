"""Insurance moves on a real anvil with the real contracts (risk modelled): liquidation fees into the engine's
insurance account reach the InsuranceFund when their batch's payouts execute, and the fund's on-chain balance
equals the insurance account (modulo what is in flight); a loss the fund covers moves money back into the
vault; a shortfall waits for the fund; moves of a challenged batch are sent again once; the reconciliation
halts on a tampered fund balance; the audit passes and reports the fund."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from settlement_fixtures import USDC, USDC_ASSET
from test_batch_sender import KEYS, OnChain
from test_insurance_engine import INS, _cover, _fee

from settlement.anvil import Anvil
from settlement.audit import audit
from settlement.batch_sender import RolledBack
from settlement.chain import Artifact, Chain
from settlement.settlement_engine import SealedBatch, pack_paid, pack_rollback

M = 10**6


class Insured(OnChain):
    """OnChain whose core mirrors the insurance account in the deployment's InsuranceFund."""

    def __init__(self, anvil: Anvil, deployer: Chain) -> None:
        super().__init__(anvil, deployer)
        sp = self.h.spec
        self.h.spec = type(sp)(
            sp.chain_id, sp.clearing_house, sp.tokens, sp.risk, sp.fee_address,
            insurance_fund=self.addr("InsuranceFund"),
        )  # fmt: skip
        self.h.engine = type(self.h.engine)(self.h.spec, self.h.address_of)
        self.usdc = self.m["tokens"][USDC]

    def observe(self) -> None:
        """Journal what the fund holds now (as the process's sender thread does)."""
        self.h.apply(self.sender.observe_fund(self.addr("InsuranceFund"), list(self.m["tokens"])))

    def fund(self) -> Any:
        return self.chains["alice"].at(Artifact.load("InsuranceFund"), self.addr("InsuranceFund"))

    def fund_balance(self) -> int:
        return int(self.fund().functions.expectedBalance(self.usdc).call())

    def holdings(self) -> int:
        return int(self.ch().functions.accountHoldings(self.usdc).call())

    def pass_dispute_window(self) -> None:
        w3 = self.chains["alice"].w3
        w3.provider.make_request("evm_increaseTime", [6 * 3600 + 1])
        w3.provider.make_request("evm_mine", [])

    def pay(self, b: SealedBatch) -> None:
        assert self.sender.execute_payouts(b.batch_id, self.h.engine.batch_payouts[b.batch_id])
        self.h.apply(pack_paid(b.batch_id))

    def trade(self) -> None:
        self.h.events(self.h.risk.balance(1, USDC_ASSET, -1), self.h.risk.balance(2, USDC_ASSET, 1))

    def engine_insurance(self) -> int:
        return self.h.risk.balances.get((INS, USDC_ASSET), 0)

    def challenge(self, batch_id: int) -> None:
        """The watcher voids ``batch_id`` and every batch after it."""
        ch = self.ch()
        evs = ch.events.BatchAccepted().get_logs(from_block=0, argument_filters={"batchId": batch_id - 1})
        ev = evs[-1]  # the canonical one (a voided batch id is accepted again later)
        ledgers = [tuple(x.values()) if hasattr(x, "values") else tuple(x) for x in ev["args"]["ledgers"]]
        w = Chain(self.anvil.url, KEYS["watcher"])
        w.transact(
            w.at(Artifact.load("ClearingHouse"), self.addr("ClearingHouse")).functions.challengeBatch(
                batch_id, ev["args"]["batchHash"], ledgers
            )
        )
        assert ch.functions.lastBatchId().call() == batch_id - 1

    def roll_back(self) -> None:
        """Seal the next batch; the sender finds the chain back at an earlier one of ours."""
        self.trade()
        self.h.tick()
        b = self.h.engine.pending
        assert b is not None
        ours = {0: b"\0" * 32, **{k: v[0] for k, v in self.h.engine.history.items()}}
        with pytest.raises(RolledBack) as err:
            self.sender.post(b, ours=ours)
        self.h.apply(pack_rollback(err.value.batch_id, err.value.batch_hash))

    def started(self) -> SealedBatch:
        self.deposit("alice", USDC, 1_000 * M)
        self.deposit("bob", USDC, 1_000 * M)
        self.watch()
        self.observe()  # insurance moves on
        return self.settle()


@pytest.fixture
def insured(anvil: Anvil, deployer: Chain, artifacts: Any, snapshot: None) -> Insured:
    return Insured(anvil, deployer)


def test_fees_reach_the_fund_a_loss_comes_back_and_a_shortfall_waits(insured: Insured) -> None:
    s = insured
    s.started()
    _fee(s.h, 1, 5 * M)  # a liquidation fee into the insurance account
    b2 = s.settle()
    assert b2.insurance_moves == ((s.usdc, 5 * M),)
    assert s.holdings() == 1_995 * M and s.fund_balance() == 0  # queued: the fund gets it when paid
    s.observe()
    assert not s.h.engine.halted  # in flight, not a difference
    s.pass_dispute_window()
    s.pay(b2)
    assert s.fund_balance() == 5 * M == s.engine_insurance()
    s.observe()
    assert not s.h.engine.halted
    # a loss the fund covers: money back into the vault while the batch is accepted
    _cover(s.h, 2, 3 * M)
    b3 = s.settle()
    assert b3.insurance_moves == ((s.usdc, -3 * M),)
    assert s.fund_balance() == 2 * M == s.engine_insurance() and s.holdings() == 1_998 * M
    s.h.check_solvent()
    # a fee still queued cannot cover a loss: the fund gives what it holds, the rest waits
    _fee(s.h, 1, 10 * M)
    b4 = s.settle()
    _cover(s.h, 2, 11 * M)
    b5 = s.settle()
    assert b5.insurance_moves == ((s.usdc, -2 * M),)
    assert s.fund_balance() == 0 and s.h.engine.fund_short[USDC] == 9 * M
    assert "waits for the next batch" in s.h.engine.insurance_status()["tokens"][s.usdc]["waiting"]
    s.trade()
    assert not s.settle().insurance_moves  # nothing more on chain to take
    s.observe()
    assert not s.h.engine.halted
    s.pass_dispute_window()
    s.pay(b4)
    b7 = s.settle()
    assert b7.insurance_moves == ((s.usdc, -9 * M),)
    assert s.fund_balance() == 1 * M == s.engine_insurance() and s.h.engine.fund_short[USDC] == 0
    s.observe()
    assert not s.h.engine.halted
    st = s.h.engine.insurance_status()["tokens"][s.usdc]
    assert st["engine"] == st["fund_on_chain"] == st["fund_expected"] == 1 * M
    s.h.check_solvent()
    report = audit(s.anvil.url, s.m)
    assert report.ok, report.difference
    assert report.summary()["insurance_fund"][s.usdc]["balance"] == 1 * M


def test_moves_of_challenged_batches_are_sent_again_once(insured: Insured) -> None:
    s = insured
    s.started()
    _fee(s.h, 1, 5 * M)
    b2 = s.settle()
    s.challenge(2)  # a move into the fund voided: never paid
    s.roll_back()
    again = s.settle()
    assert again.batch_id == 2 and again.insurance_moves == b2.insurance_moves
    s.trade()
    assert not s.settle().insurance_moves  # sent once
    s.pass_dispute_window()
    s.pay(again)
    assert s.fund_balance() == 5 * M
    _cover(s.h, 2, 3 * M)
    b4 = s.settle()
    assert b4.insurance_moves == ((s.usdc, -3 * M),) and s.fund_balance() == 2 * M
    s.challenge(4)  # a move out of the fund voided: the contract gives the fund its money back
    assert s.fund_balance() == 5 * M
    s.roll_back()
    s.observe()
    assert not s.h.engine.halted
    new4 = s.settle()
    assert new4.batch_id == 4 and new4.insurance_moves == ((s.usdc, -3 * M),)
    assert s.fund_balance() == 2 * M == s.engine_insurance()
    s.trade()
    assert not s.settle().insurance_moves
    s.observe()
    assert not s.h.engine.halted
    s.h.check_solvent()
    report = audit(s.anvil.url, s.m)
    assert report.ok, report.difference
    fund = report.insurance_fund[s.usdc]
    assert fund["balance"] == 2 * M and fund["moved_in"] == fund["moved_in_executed"] == 5 * M
    assert fund["moved_out"] == 3 * M  # the voided move out is not counted: the fund got it back


def _balance_slot(token: str) -> int:
    """Storage slot of ``InsuranceFund._balance[token]`` (slot 1: after AccessControl's ``_roles``)."""
    return int.from_bytes(keccak(abi_encode(["address", "uint256"], [token, 1])), "big")


def test_a_tampered_fund_balance_halts_a_direct_transfer_does_not(insured: Insured) -> None:
    s = insured
    s.started()
    _fee(s.h, 1, 5 * M)
    b2 = s.settle()
    s.pass_dispute_window()
    s.pay(b2)
    s.observe()
    assert not s.h.engine.halted
    # tokens sent to the fund directly are surplus, not its balance: nothing to reconcile
    tok = s.chains["bob"].at(Artifact.load("TestToken"), s.usdc)
    s.chains["bob"].transact(tok.functions.mint(s.addr("InsuranceFund"), 7 * M))
    assert int(s.fund().functions.surplus(s.usdc).call()) == 7 * M
    s.observe()
    assert not s.h.engine.halted
    # the balance itself rewritten (a bug or an unannounced governance move): alarm and halt
    w3 = s.chains["alice"].w3
    slot = _balance_slot(s.usdc)
    fund = s.addr("InsuranceFund")
    assert int.from_bytes(w3.eth.get_storage_at(fund, slot), "big") == 5 * M
    w3.provider.make_request(
        "anvil_setStorageAt", [fund, hex(slot), "0x" + (4 * M).to_bytes(32, "big").hex()]
    )
    assert s.fund_balance() == 4 * M
    s.observe()
    assert s.h.engine.halted.startswith("reconciliation: the InsuranceFund holds 4000000")
    assert any("HALT: reconciliation" in a for a in s.h.alarms)
    _fee(s.h, 1, 1 * M)
    s.h.tick()
    assert s.h.engine.pending is None  # halted: nothing sealed
    report = audit(s.anvil.url, s.m)  # the audit finds it too: the fund's events do not add up to it
    assert report.difference is not None and report.difference["field"] == "insurance_fund.balance"
