"""The v2 contracts driven by the Python helpers on a real anvil: what the settlement process will do.

Each test checks a Python helper against the Solidity it mirrors: the sum trees (claims and liabilities)
against the verifier and the escape hatch, the EIP-712 digest and signatures (an EOA and an ERC-1271
smart account) against the ClearingHouse, the published data against what the chain stores (read back
from the transaction's calldata, it rebuilds every committed root), the batch hash, payouts hash and
checkpoint against the contract's, the escape maths against ``EscapeHatch.exitAmounts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from settlement.account_trees import AccountTrees
from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.batch_commitments import (
    PAYOUT_WITHDRAWAL,
    Ledger,
    Payout,
    batch_args,
    batch_hash,
    checkpoint,
    deposit_accumulator,
    payouts_hash,
    state_root,
)
from settlement.chain import Artifact, Chain
from settlement.deploy import DEFAULT_FORCED_WITHDRAWAL_PERIOD_S, DeployConfig, deploy
from settlement.escape_exit import calc_exit_amounts
from settlement.published_data import PublishedData
from settlement.sum_tree import CLAIM, LIABILITY, ZERO_HASH
from settlement.withdrawal import Withdrawal, sign_withdrawal, verify_withdrawal, withdrawal_digest

KEYS = dict(
    zip(
        ["governor", "operator", "guardian", "alice", "watcher", "bob", "carol"],
        DEV_PRIVATE_KEYS[1:8],
        strict=True,
    )
)
ADDR = {k: Account.from_key(v).address for k, v in KEYS.items()}
HOUR = 3600
DAY = 24 * HOUR
USDC, WETH, WBTC = 0, 1, 2
PRICES = [10**6, 3000 * 10**6, 60_000 * 10**6]
DECIMALS = [6, 18, 8]


def _selector(sig: str) -> str:
    return keccak(text=sig)[:4].hex()


def _tuple(x: Any) -> tuple[Any, ...]:
    """A struct as web3 decodes it (a dict in events, a tuple in calls) as a tuple in field order."""
    return tuple(x.values()) if hasattr(x, "values") else tuple(x)


def _warp(chain: Chain, seconds: int) -> None:
    chain.w3.provider.make_request("evm_increaseTime", [seconds])
    chain.w3.provider.make_request("evm_mine", [])


@dataclass
class System:
    """The deployed contracts, a Chain per principal, and an engine model built from the Python helpers."""

    manifest: dict[str, Any]
    chains: dict[str, Chain]
    trees: AccountTrees
    deposits: list[tuple[str, str, int, int]] = field(default_factory=list)  # every deposit, by id - 1
    credited: int = 0
    prev_hash: bytes = ZERO_HASH
    batch_id: int = 0
    ledgers: dict[int, list[Ledger]] = field(default_factory=dict)
    hashes: dict[int, bytes] = field(default_factory=lambda: {0: ZERO_HASH})

    def addr(self, name: str) -> str:
        return self.manifest["contracts"][name]["address"]

    def at(self, name: str, who: str = "operator", artifact: str | None = None) -> Any:
        return self.chains[who].at(Artifact.load(artifact or name), self.addr(name))

    def token(self, i: int, who: str = "operator") -> Any:
        return self.chains[who].at(Artifact.load("TestToken"), self.manifest["tokens"][i])

    def deposit(self, who: str, i: int, amount: int, account: str | None = None) -> int:
        """Mint, approve, deposit; checks the Vault's running hash against the Python one."""
        c, tok = self.chains[who], self.token(i, who)
        account = account or ADDR[who]
        c.transact(tok.functions.mint(ADDR[who], amount))
        c.transact(tok.functions.approve(self.addr("Vault"), amount))
        receipt = c.transact(self.at("Vault", who).functions.deposit(tok.address, amount, account))
        (ev,) = self.at("Vault", who).events.Deposited().process_receipt(receipt, errors=DISCARD)
        prev = self.at("Vault").functions.depositAccumulator(ev.args.depositId - 1).call()
        assert ev.args.accumulator == deposit_accumulator(
            prev, ev.args.depositId, account, tok.address, amount, ev.args.depositedAt
        )
        self.deposits.append((account, tok.address, amount, ev.args.depositedAt))
        return int(ev.args.depositId)

    def credit_all(self) -> None:
        """The engine credits every deposit made so far (claims go up)."""
        for account, token, amount, _ in self.deposits[self.credited :]:
            i = self.manifest["tokens"].index(token)
            self.trees.set_leaf(account, i, CLAIM, self.trees.leaf(account, i, CLAIM) + amount)
        self.credited = len(self.deposits)

    def submit(self, withdrawals=(), forced=(), moves=(), corrupt=None) -> dict[str, Any]:
        """Build the batch with the Python helpers, send it as the operator, check every commitment."""
        ch = self.at("ClearingHouse")
        bid = self.batch_id + 1
        prev_d = ch.functions.lastCreditedDepositId().call()
        data = self.trees.take_published_data(bid).encode()
        assets = self.trees.asset_states(PRICES)
        if corrupt:
            assets = corrupt(assets)
        args = batch_args(
            batch_id=bid,
            prev_batch_hash=self.prev_hash,
            last_credited_deposit_id=self.credited,
            deposits=self.deposits[prev_d : self.credited],
            assets=assets,
            withdrawals=[w.signed(sig) for w, sig in withdrawals],
            forced_serves=forced,
            insurance_moves=moves,
            data=data,
        )
        receipt = self.chains["operator"].transact(ch.functions.submitBatch(args))
        (ev,) = ch.events.BatchAccepted().process_receipt(receipt, errors=DISCARD)
        queued = [
            Payout(*_tuple(e.args.payout))
            for e in ch.events.PayoutQueued().process_receipt(receipt, errors=DISCARD)
        ]
        expected_payouts = [
            Payout(PAYOUT_WITHDRAWAL, to_checksum_address(w.account), to_checksum_address(w.token), w.amount,
                   to_checksum_address(w.destination), w.nonce)
            for w, _ in withdrawals
        ]  # fmt: skip
        if not moves and not forced:
            assert queued == expected_payouts
        acc = self.at("Vault").functions.depositAccumulator(self.credited).call()
        expected = batch_hash(
            chain_id=self.chains["operator"].chain_id,
            clearing_house=ch.address,
            batch_id=bid,
            prev_batch_hash=self.prev_hash,
            state_root_=state_root(assets),
            data=data,
            last_credited_deposit_id=self.credited,
            deposit_accumulator_=acc,
            payouts_hash_=payouts_hash(queued),
            insurance_moves=moves,
        )
        assert ev.args.batchHash == expected
        assert ev.args.stateRoot == state_root(assets)
        assert ev.args.payoutsHash == payouts_hash(queued)
        ledgers = [Ledger(*_tuple(x)) for x in ev.args.ledgers]
        record = ch.functions.batchRecord(bid).call()
        assert record[1] == checkpoint(expected, ledgers)
        self.batch_id, self.prev_hash = bid, expected
        self.ledgers[bid], self.hashes[bid] = ledgers, expected
        return {"receipt": receipt, "payouts": queued, "assets": assets, "data": data}


@pytest.fixture
def system(anvil: Anvil, deployer: Chain, artifacts, snapshot) -> System:
    m = deploy(
        deployer,
        DeployConfig(
            governor=ADDR["governor"],
            operator=ADDR["operator"],
            guardian=ADDR["guardian"],
            watchers=(ADDR["watcher"],),
            test_tokens=True,
        ),
    )
    chains = {name: Chain(anvil.url, key) for name, key in KEYS.items()}
    return System(m, chains, AccountTrees(m["tokens"]))


def _reverts_with(fn, sender: str, sig: str) -> None:
    with pytest.raises((ContractCustomError, ContractLogicError)) as err:
        fn.call({"from": sender})
    assert _selector(sig) in str(err.value.data), err.value.data


# ---------------------------------------------------------------------- batches, signatures, payouts


def test_batch_from_python_helpers_accepted_and_paid(system: System) -> None:
    s = system
    ch = s.at("ClearingHouse")
    s.deposit("alice", USDC, 1_000 * 10**6)
    s.deposit("bob", WETH, 2 * 10**18)
    s.credit_all()
    s.submit()

    # alice signs a withdrawal of 100 USDC to carol; the Python digest is the contract's
    chain_id = s.chains["alice"].chain_id
    exp = s.chains["alice"].w3.eth.get_block("latest")["timestamp"] + DAY
    w = Withdrawal(ADDR["alice"], s.manifest["tokens"][USDC], 100 * 10**6, ADDR["carol"], 5, exp)
    assert ch.functions.withdrawalDigest(*w.signed(b"")[:6]).call() == withdrawal_digest(
        w, chain_id, ch.address
    )
    sig = sign_withdrawal(w, KEYS["alice"], chain_id, ch.address)
    assert verify_withdrawal(w, sig, chain_id, ch.address, s.chains["alice"].w3)

    # what a stolen operator key cannot do: redirect it, inflate it, or sign it with another key
    s.trees.set_leaf(ADDR["alice"], USDC, CLAIM, 900 * 10**6)
    for bad, bad_sig in [
        (Withdrawal(w.account, w.token, w.amount, ADDR["operator"], w.nonce, w.expiry), sig),
        (w, sign_withdrawal(w, KEYS["operator"], chain_id, ch.address)),
    ]:
        args = batch_args(
            batch_id=2, prev_batch_hash=s.prev_hash, last_credited_deposit_id=2, deposits=[],
            assets=s.trees.asset_states(PRICES), withdrawals=[bad.signed(bad_sig)], forced_serves=[],
            insurance_moves=[], data=PublishedData.build(2, 3, 2, [], []).encode(),
        )  # fmt: skip
        _reverts_with(ch.functions.submitBatch(args), ADDR["operator"], "InvalidSignature(address,uint256)")

    out = s.submit(withdrawals=[(w, sig)])
    payouts = out["payouts"]
    _reverts_with(ch.functions.executePayouts(2, payouts, 1), ADDR["carol"], "BatchNotFinal(uint64,uint256)")
    _warp(s.chains["alice"], 6 * HOUR)
    s.chains["carol"].transact(s.at("ClearingHouse", "carol").functions.executePayouts(2, payouts, 1))
    assert s.token(USDC).functions.balanceOf(ADDR["carol"]).call() == 100 * 10**6
    assert ch.functions.nonceUsed(ADDR["alice"], 5).call()
    assert ch.functions.accountHoldings(s.manifest["tokens"][USDC]).call() == 900 * 10**6


def test_published_data_read_back_from_calldata_rebuilds_every_root(system: System, artifacts) -> None:
    s = system
    ch = s.at("ClearingHouse")
    verifier, _ = s.chains["operator"].deploy(artifacts["SumTreeVerifier"])
    s.deposit("alice", WETH, 10**18)
    s.deposit("bob", USDC, 5_000 * 10**6)
    s.deposit("carol", WBTC, 10**8)
    s.credit_all()
    r1 = s.submit()
    # alice loses 1,000 USDC to bob: she owes USDC against her WETH (a liability leaf), bob's claim grows
    s.trees.set_leaf(ADDR["alice"], USDC, LIABILITY, 1_000 * 10**6)
    s.trees.set_leaf(ADDR["bob"], USDC, CLAIM, 6_000 * 10**6)
    r2 = s.submit()
    assert ch.functions.accountHoldings(s.manifest["tokens"][USDC]).call() == 5_000 * 10**6

    blobs = []
    for r in (r1, r2):
        tx = s.chains["operator"].w3.eth.get_transaction(r["receipt"]["transactionHash"])
        _, params = ch.decode_function_input(tx["input"])
        b = params["b"]
        blobs.append(bytes(b["data"] if isinstance(b, dict) else b[8]))
    assert blobs == [r1["data"], r2["data"]]
    rebuilt = AccountTrees.replay(s.manifest["tokens"], blobs)
    assert state_root(rebuilt.asset_states(PRICES)) == ch.functions.lastStateRoot().call()

    # every account checks both of its leaves of every asset against the committed roots
    for name in ("alice", "bob", "carol"):
        for i, a in enumerate(r2["assets"]):
            amount, index, proof = rebuilt.leaf_proof(ADDR[name], i, CLAIM)
            assert verifier.functions.verify(a.claims_root, a.claims_total, ADDR[name], a.token, amount, index,
                                             proof).call()  # fmt: skip
            amount, index, proof = rebuilt.leaf_proof(ADDR[name], i, LIABILITY)
            assert verifier.functions.verifyLiability(a.liabilities_root, a.liabilities_total, ADDR[name],
                                                      a.token, amount, index, proof).call()  # fmt: skip
    assert rebuilt.leaf(ADDR["alice"], USDC, LIABILITY) == 1_000 * 10**6

    # a header that does not match the batch is refused
    bad = batch_args(
        batch_id=3, prev_batch_hash=s.prev_hash, last_credited_deposit_id=3, deposits=[],
        assets=s.trees.asset_states(PRICES), withdrawals=[], forced_serves=[], insurance_moves=[],
        data=PublishedData.build(4, 3, 3, [], []).encode(),
    )  # fmt: skip
    _reverts_with(ch.functions.submitBatch(bad), ADDR["operator"], "BadPublishedData()")


def test_erc1271_smart_account_withdrawal(system: System, artifacts) -> None:
    s = system
    ch = s.at("ClearingHouse")
    sa, _ = s.chains["carol"].deploy(artifacts["MockSmartAccount"], ADDR["carol"])
    s.deposit("bob", USDC, 500 * 10**6, account=sa.address)  # bob funds the smart account
    s.credit_all()
    s.submit()
    chain_id = s.chains["carol"].chain_id
    exp = s.chains["carol"].w3.eth.get_block("latest")["timestamp"] + DAY
    w = Withdrawal(sa.address, s.manifest["tokens"][USDC], 200 * 10**6, ADDR["carol"], 0, exp)
    sig = sign_withdrawal(w, KEYS["carol"], chain_id, ch.address)  # the account's owner key signs the digest
    w3 = s.chains["carol"].w3
    assert verify_withdrawal(w, sig, chain_id, ch.address, w3)  # through isValidSignature
    assert not verify_withdrawal(
        w, sign_withdrawal(w, KEYS["bob"], chain_id, ch.address), chain_id, ch.address, w3
    )
    s.trees.set_leaf(sa.address, USDC, CLAIM, 300 * 10**6)
    out = s.submit(withdrawals=[(w, sig)])
    _warp(s.chains["carol"], 6 * HOUR)
    s.chains["carol"].transact(ch.functions.executePayouts(s.batch_id, out["payouts"], 1))
    assert s.token(USDC).functions.balanceOf(ADDR["carol"]).call() == 200 * 10**6


# ---------------------------------------------------------------------- challenge, forced exit, escape


def test_watcher_challenge_with_python_checkpoint(system: System) -> None:
    s = system
    ch = s.at("ClearingHouse", "watcher")
    s.deposit("alice", USDC, 1_000 * 10**6)
    s.credit_all()
    s.submit()
    _warp(s.chains["alice"], 6 * HOUR)

    def garbage(assets):
        return [a._replace(claims_root=keccak(b"nobody knows the leaves")) if i == 0 else a
                for i, a in enumerate(assets)]  # fmt: skip

    s.submit(corrupt=garbage)  # right totals, a root no published data rebuilds
    prev = [tuple(x) for x in s.ledgers[1]]
    _reverts_with(ch.functions.challengeBatch(2, s.hashes[1], prev), ADDR["alice"], "NotChallenger(address)")
    s.chains["watcher"].transact(ch.functions.challengeBatch(2, s.hashes[1], prev))
    assert ch.functions.lastBatchId().call() == 1
    assert ch.functions.lastBatchHash().call() == s.hashes[1]
    # the engine continues from batch 1 (its state never had the bad root)
    s.batch_id, s.prev_hash = 1, s.hashes[1]
    s.submit()
    assert ch.functions.lastBatchId().call() == 2


def test_liabilities_forced_freeze_netted_escape(system: System) -> None:
    s = system
    ch, hatch = s.at("ClearingHouse", "carol"), s.at("EscapeHatch", "alice")
    tokens = s.manifest["tokens"]
    s.deposit("alice", WETH, 10**18)
    s.deposit("bob", USDC, 5_000 * 10**6)
    s.credit_all()
    s.submit()
    s.trees.set_leaf(ADDR["alice"], USDC, LIABILITY, 1_000 * 10**6)
    s.trees.set_leaf(ADDR["bob"], USDC, CLAIM, 6_000 * 10**6)
    s.submit()

    # bob forces a withdrawal; the operator ignores it; after the period anyone freezes
    s.chains["bob"].transact(s.at("EscapeHatch", "bob").functions.requestForcedWithdrawal(tokens[USDC], 10**6,
                                                                                       ADDR["bob"]))  # fmt: skip
    _warp(s.chains["bob"], DEFAULT_FORCED_WITHDRAWAL_PERIOD_S)
    _reverts_with(
        hatch.functions.freezeForUnservedRequest(1, 1), ADDR["carol"], "NotLatestFinalBatch(uint64,uint64)"
    )
    s.chains["carol"].transact(s.at("EscapeHatch", "carol").functions.freezeForUnservedRequest(1, 2))
    assert ch.functions.frozen().call() and ch.functions.escapeBatchId().call() == 2

    assets = s.trees.asset_states(PRICES)
    for name in ("alice", "bob"):
        claims, liabs = s.trees.escape_proofs(ADDR[name])
        onchain, basket = hatch.functions.exitAmounts(ADDR[name], assets, claims, liabs).call()
        expected, py_basket = calc_exit_amounts(
            assets, DECIMALS, [c[0] for c in claims], [x[0] for x in liabs]
        )
        assert (list(onchain), basket) == (expected, py_basket) == (list(onchain), True)
        s.chains[name].transact(s.at("EscapeHatch", name).functions.escape(assets, claims, liabs, ADDR[name]))
    usdc, weth = s.token(USDC), s.token(WETH)
    assert usdc.functions.balanceOf(ADDR["alice"]).call() == 1_250 * 10**6  # net 2,000 of 8,000
    assert weth.functions.balanceOf(ADDR["alice"]).call() == 25 * 10**16
    assert usdc.functions.balanceOf(ADDR["bob"]).call() == 3_750 * 10**6
    assert weth.functions.balanceOf(ADDR["bob"]).call() == 75 * 10**16
    assert usdc.functions.balanceOf(s.addr("Vault")).call() == 0
