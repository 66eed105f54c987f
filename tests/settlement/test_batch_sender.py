"""The core's sealed batches on a real anvil with the real contracts: deposits watched and credited
once, every batch accepted (solvency, deposit hash, published data checked on chain), posted exactly
once across resends and restarts; a batch that is not ours, a refused dry run, garbage RPC answers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from settlement_fixtures import BTC_ASSET, USDC, USDC_ASSET, WBTC, WETH, Harness

from engine.risk.risk_config import RiskConfig
from engine.types.enums import MsgType, WithdrawStatus
from engine.wire.layout import BY_TYPE
from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.audit import audit
from settlement.batch_sender import BatchRefused, BatchSender, ChainUnavailable, NotOurs, RolledBack
from settlement.chain import Artifact, Chain
from settlement.deploy import DeployConfig, deploy
from settlement.deposit_watcher import DepositWatcher
from settlement.settlement_engine import (
    SealedBatch,
    TokenSpec,
    pack_deposit,
    pack_failed,
    pack_paid,
    pack_rollback,
    pack_withdrawal,
)
from settlement.sum_tree import CLAIM
from settlement.withdrawal import Withdrawal, nonce_position, sign_withdrawal, verify_withdrawal

KEYS = dict(
    zip(["governor", "operator", "guardian", "alice", "watcher", "bob"], DEV_PRIVATE_KEYS[1:7], strict=True)
)
ADDR = {k: Account.from_key(v).address for k, v in KEYS.items()}


class OnChain:
    """A deployment, the core (with risk modelled), a watcher and a sender."""

    def __init__(self, anvil: Anvil, deployer: Chain, risk: RiskConfig | None = None) -> None:
        self.anvil = anvil
        self.m = deploy(
            deployer,
            DeployConfig(
                ADDR["governor"], ADDR["operator"], ADDR["guardian"], (ADDR["watcher"],), test_tokens=True
            ),
        )
        tokens = tuple(
            TokenSpec(t, d, a) for t, d, a in zip(self.m["tokens"], (6, 18, 8), (0, 2, 1), strict=True)
        )
        self.users = [ADDR["alice"].lower(), ADDR["bob"].lower()]
        self.h = Harness(tokens, self.users)
        self.h.spec = type(self.h.spec)(
            deployer.chain_id, self.addr("ClearingHouse"), tokens, self.h.spec.risk, self.h.spec.fee_address
        )
        self.h.engine = type(self.h.engine)(self.h.spec, self.h.address_of)
        self.chains = {k: Chain(anvil.url, v) for k, v in KEYS.items() if k in ("alice", "bob")}
        self.watcher = DepositWatcher(anvil.url, self.addr("Vault"))
        self.sender = BatchSender(anvil.url, KEYS["operator"], self.addr("ClearingHouse"))

    def addr(self, name: str) -> str:
        return str(self.m["contracts"][name]["address"])

    def deposit(self, who: str, token: int, amount: int) -> None:
        c = self.chains[who]
        tok = c.at(Artifact.load("TestToken"), self.m["tokens"][token])
        c.transact(tok.functions.mint(c.address, amount))
        c.transact(tok.functions.approve(self.addr("Vault"), amount))
        c.transact(
            c.at(Artifact.load("Vault"), self.addr("Vault")).functions.deposit(tok.address, amount, c.address)
        )

    def watch(self) -> None:
        for d in self.watcher.poll():
            account_id = self.users.index(d.account.lower()) + 1
            token = self.m["tokens"].index(d.token)
            self.h.apply(
                pack_deposit(d.deposit_id, account_id, token, d.amount, d.deposited_at, d.block, d.account)
            )

    def settle(self, sender: BatchSender | None = None) -> SealedBatch:
        self.h.tick()
        b = self.h.engine.pending
        assert b is not None
        block = (sender or self.sender).post(b)
        self.h.confirm(block)
        return b

    def ch(self) -> Any:
        return self.chains["alice"].at(Artifact.load("ClearingHouse"), self.addr("ClearingHouse"))

    def withdraw(
        self, who: str, token: int, asset: int, units: int, nonce: int, to: str | None = None
    ) -> None:
        """``who`` (account ``users`` index + 1) signs a withdrawal of ``units`` to ``to`` (itself), expiring
        in a day, and risk holds it (the engine's clock: an hour before the expiry)."""
        account = self.users.index(ADDR[who].lower()) + 1
        self.h.hold(account, asset, units, nonce=nonce)
        expiry = self.chains[who].w3.eth.get_block("latest")["timestamp"] + 86_400
        self.h.now = expiry * 10**9 - 3600 * 10**9
        w = Withdrawal(ADDR[who], self.m["tokens"][token], units, to or ADDR[who], nonce, expiry)
        sig = sign_withdrawal(w, KEYS[who], self.h.spec.chain_id, self.h.spec.clearing_house)
        self.h.apply(pack_withdrawal(account, token, w, sig, True))


@pytest.fixture
def onchain(anvil: Anvil, deployer: Chain, artifacts: Any, snapshot: None) -> OnChain:
    return OnChain(anvil, deployer)


def test_deposits_credited_once_and_batches_accepted_on_chain(onchain: OnChain) -> None:
    s = onchain
    s.deposit("alice", USDC, 1_000 * 10**6)
    s.deposit("bob", WETH, 3 * 10**18 + 5)  # 5 wei below one engine atom stay in bob's leaf
    s.watch()
    s.watch()  # nothing new: nothing credited twice
    assert s.h.risk.balances == {(1, 0): 1_000 * 10**6, (2, 2): 3 * 10**8}
    b1 = s.settle()
    ch = s.ch()
    assert ch.functions.lastBatchId().call() == 1
    assert ch.functions.lastBatchHash().call() == b1.hash
    assert ch.functions.lastCreditedDepositId().call() == 2
    assert ch.functions.accountHoldings(s.m["tokens"][WETH]).call() == 3 * 10**18 + 5
    assert s.h.settled and {x[1] for x in s.h.settled} == {1, 2}
    # trading moves USDC to bob; the next batch names the previous one and is accepted too
    s.h.events(s.h.risk.balance(1, 0, -250 * 10**6), s.h.risk.balance(2, 0, 250 * 10**6))
    b2 = s.settle()
    assert b2.prev_hash == b1.hash and ch.functions.lastBatchHash().call() == b2.hash
    assert s.sender.sent == 2


def test_posted_exactly_once_across_a_resend_and_a_restart(onchain: OnChain, anvil: Anvil) -> None:
    s = onchain
    s.deposit("alice", USDC, 10**6)
    s.watch()
    b1 = s.settle()
    block = s.sender.post(b1)  # the same batch again (a retry after a lost answer): nothing sent
    restarted = BatchSender(anvil.url, KEYS["operator"], s.addr("ClearingHouse"))
    assert restarted.post(b1) == block  # a restarted sender finds it on chain
    assert s.sender.sent == 1 and restarted.sent == 0
    assert s.ch().functions.lastBatchId().call() == 1


def test_a_batch_that_is_not_ours_halts(onchain: OnChain) -> None:
    s = onchain
    s.deposit("alice", USDC, 10**6)
    s.watch()
    b1 = s.settle()
    forged = SealedBatch(**{**b1.__dict__, "hash": b"\x01" * 32})
    with pytest.raises(NotOurs):
        s.sender.post(forged)
    behind = SealedBatch(**{**b1.__dict__, "batch_id": 5})
    with pytest.raises(NotOurs):
        s.sender.post(behind)


def test_refused_dry_run_sends_nothing(onchain: OnChain) -> None:
    s = onchain
    s.deposit("alice", USDC, 10**6)
    s.watch()
    s.h.tick()
    b = s.h.engine.pending
    assert b is not None
    bad = SealedBatch(
        **{**b.__dict__, "assets": [a._replace(claims_total=a.claims_total + 1) for a in b.assets]}
    )
    with pytest.raises(BatchRefused, match="SolvencyMismatch"):
        s.sender.post(bad)
    assert s.sender.sent == 0 and s.ch().functions.lastBatchId().call() == 0


@pytest.fixture
def garbage_rpc() -> Iterator[str]:
    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"jsonrpc":"2.0","id":1,"result":"0xzz-not-hex"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_garbage_rpc_answers_are_errors_and_nothing_moves(onchain: OnChain, garbage_rpc: str) -> None:
    s = onchain
    s.deposit("alice", USDC, 10**6)
    s.watch()
    s.h.tick()
    b = s.h.engine.pending
    assert b is not None
    liar = BatchSender.__new__(BatchSender)
    liar.__dict__.update(s.sender.__dict__)
    from web3 import HTTPProvider, Web3

    liar.w3 = Web3(HTTPProvider(garbage_rpc))
    liar.ch = liar.w3.eth.contract(address=s.sender.ch.address, abi=s.sender.abi)
    with pytest.raises(ChainUnavailable):
        liar.post(b)
    watcher = DepositWatcher.__new__(DepositWatcher)
    watcher.__dict__.update(s.watcher.__dict__)
    watcher.w3 = liar.w3
    watcher.vault = liar.w3.eth.contract(address=s.watcher.vault.address, abi=s.watcher.vault.abi)
    with pytest.raises(ChainUnavailable):
        watcher.poll()
    assert s.ch().functions.lastBatchId().call() == 0
    assert s.sender.post(b) > 0  # the honest endpoint still works: nothing was half-done


def test_signed_withdrawal_accepted_on_chain_and_paid_after_the_dispute_window(onchain: OnChain) -> None:
    s = onchain
    s.deposit("alice", USDC, 100 * 10**6)
    s.watch()
    s.settle()
    s.h.hold(1, USDC_ASSET, 40 * 10**6, nonce=9)
    w3 = s.chains["alice"].w3
    expiry = w3.eth.get_block("latest")["timestamp"] + 86_400
    s.h.now = expiry * 10**9 - 3600 * 10**9  # the engine's clock: an hour before expiry
    w = Withdrawal(ADDR["alice"], s.m["tokens"][USDC], 40 * 10**6, ADDR["bob"], 9, expiry)
    sig = sign_withdrawal(w, KEYS["alice"], s.h.spec.chain_id, s.h.spec.clearing_house)
    s.h.apply(
        pack_withdrawal(
            1, USDC, w, sig, verify_withdrawal(w, sig, s.h.spec.chain_id, s.h.spec.clearing_house, w3)
        )
    )
    b = s.settle()  # the contract checked alice's signature
    assert len(b.withdrawals) == 1
    ch = s.ch()
    assert ch.functions.accountHoldings(s.m["tokens"][USDC]).call() == 60 * 10**6
    payouts = s.h.engine.batch_payouts[b.batch_id]
    assert not s.sender.execute_payouts(b.batch_id, payouts)  # inside the dispute window
    w3.provider.make_request("evm_increaseTime", [6 * 3600 + 1])
    w3.provider.make_request("evm_mine", [])
    assert s.sender.execute_payouts(b.batch_id, payouts)
    assert s.sender.execute_payouts(b.batch_id, payouts)  # again (a restart): already done, nothing sent
    tok = s.chains["alice"].at(Artifact.load("TestToken"), s.m["tokens"][USDC])
    assert tok.functions.balanceOf(ADDR["bob"]).call() == 40 * 10**6
    s.h.apply(pack_paid(b.batch_id))
    assert s.h.risk.held[(1, USDC_ASSET)] == 0

    results = [
        BY_TYPE[MsgType.WITHDRAW_RESULT].struct.unpack_from(c, 0)[6]
        for c in s.h.results
        if c[0] == MsgType.WITHDRAW_RESULT
    ]
    assert results == [WithdrawStatus.PAID]
    s.settle()  # and the books still add up on chain


def test_rolled_back_batch_returns_the_hold_and_the_next_batch_reproves(
    onchain: OnChain, anvil: Anvil
) -> None:
    """A watcher voids batch 2 (it carried alice's withdrawal): the sender finds the chain back at batch
    1, the core returns the hold (the nonce stays spent on chain), and a new batch 2 re-proves every
    account after batch 1; the audit passes."""
    s = onchain
    s.deposit("alice", USDC, 100 * 10**6)
    s.watch()
    b1 = s.settle()
    s.withdraw("alice", USDC, USDC_ASSET, 30 * 10**6, nonce=5)
    b2 = s.settle()
    assert len(b2.withdrawals) == 1
    ch = s.ch()
    (ev,) = ch.events.BatchAccepted().get_logs(from_block=0, argument_filters={"batchId": 1})
    ledgers = [tuple(x.values()) if hasattr(x, "values") else tuple(x) for x in ev["args"]["ledgers"]]
    watcher = Chain(s.anvil.url, KEYS["watcher"])
    watcher.transact(watcher.at(Artifact.load("ClearingHouse"), s.addr("ClearingHouse")).functions.challengeBatch(
        2, b1.hash, ledgers))  # fmt: skip
    assert ch.functions.lastBatchId().call() == 1
    s.h.events(s.h.risk.balance(1, USDC_ASSET, -1), s.h.risk.balance(2, USDC_ASSET, 1))
    s.h.tick()
    b3 = s.h.engine.pending
    assert b3 is not None and b3.batch_id == 3
    ours = {0: b"\0" * 32, **{b: v[0] for b, v in s.h.engine.history.items()}}
    with pytest.raises(RolledBack) as err:
        s.sender.post(b3, ours=ours)
    s.h.apply(pack_rollback(err.value.batch_id, err.value.batch_hash))
    results = [
        BY_TYPE[MsgType.WITHDRAW_RESULT].struct.unpack_from(c, 0)[4:9]
        for c in s.h.results
        if c[0] == MsgType.WITHDRAW_RESULT
    ]
    assert results == [(1, USDC_ASSET, WithdrawStatus.FAILED, 30 * 10**6, 5)]  # the hold came back
    assert s.h.risk.balances[(1, USDC_ASSET)] == 100 * 10**6 - 1
    new2 = s.settle()
    assert new2.batch_id == 2 and new2.prev_hash == b1.hash and not new2.withdrawals
    assert ch.functions.lastBatchHash().call() == new2.hash
    assert s.h.engine.trees.leaf(s.users[0], USDC, CLAIM) == 100 * 10**6 - 1
    report = audit(anvil.url, s.m)
    assert report.ok, report.difference


def test_a_nonce_burned_after_our_seal_reseals_the_batch_instead_of_halting(onchain: OnChain) -> None:
    """Audit A-4: alice burns the nonce of her withdrawal (``invalidateNonces``) after our batch was
    sealed with it and bob's, before it is mined, so the chain refuses the batch (NonceAlreadyUsed).
    That halted settlement: any account could stop it at will. Now the core voids the batch, returns
    alice's hold, puts bob's withdrawal back in the queue (the chain spent none of the batch's nonces)
    and seals a batch the chain takes; alice's withdrawals are refused for an hour. The audit passes."""
    s = onchain
    s.deposit("alice", USDC, 100 * 10**6)
    s.deposit("bob", USDC, 50 * 10**6)
    s.watch()
    s.settle()
    s.withdraw("alice", USDC, USDC_ASSET, 30 * 10**6, nonce=5)
    s.withdraw("bob", USDC, USDC_ASSET, 20 * 10**6, nonce=7)
    s.h.tick()
    sealed = s.h.engine.pending
    assert sealed is not None and len(sealed.withdrawals) == 2
    word, mask = nonce_position(5)
    alice_ch = s.chains["alice"].at(Artifact.load("ClearingHouse"), s.addr("ClearingHouse"))
    s.chains["alice"].transact(alice_ch.functions.invalidateNonces(word, mask))
    with pytest.raises(BatchRefused, match="NonceAlreadyUsed") as err:
        s.sender.post(sealed)
    s.h.apply(pack_failed(sealed.batch_id, f"BatchRefused: {err.value}"))
    assert not s.h.engine.halted and any("spent the nonce 5" in a for a in s.h.alarms)

    def results() -> list[tuple[int, ...]]:
        return [
            BY_TYPE[MsgType.WITHDRAW_RESULT].struct.unpack_from(c, 0)[4:9]
            for c in s.h.results
            if c[0] == MsgType.WITHDRAW_RESULT
        ]

    assert results() == [(1, USDC_ASSET, WithdrawStatus.FAILED, 30 * 10**6, 5)]  # alice's hold came back
    assert s.h.risk.balances[(1, USDC_ASSET)] == 100 * 10**6 and s.h.risk.held[(1, USDC_ASSET)] == 0
    b = s.settle()
    assert b.batch_id == sealed.batch_id and [w[4] for w in b.withdrawals] == [7]  # bob's, not failed
    assert s.ch().functions.lastBatchHash().call() == b.hash
    assert s.h.engine.trees.leaf(s.users[0], USDC, CLAIM) == 100 * 10**6
    assert s.h.engine.trees.leaf(s.users[1], USDC, CLAIM) == 30 * 10**6
    s.withdraw("alice", USDC, USDC_ASSET, 10 * 10**6, nonce=6)  # within the hour: refused, the hold returns
    assert results()[-1] == (1, USDC_ASSET, WithdrawStatus.FAILED, 10 * 10**6, 6)
    assert any("burned the nonce" in a for a in s.h.alarms)
    report = audit(s.anvil.url, s.m)
    assert report.ok, report.difference


def test_a_withdrawal_above_the_outflow_cap_is_paid_in_parts_then_reported_paid(onchain: OnChain) -> None:
    """Audit A-2: the local WBTC cap is 15 a day; alice withdraws 20. The sender's first call pays the
    15 the cap allows and reports the batch not done; a day later the rest, and only then PAID."""
    s = onchain
    s.deposit("alice", WBTC, 20 * 10**8)
    s.watch()
    s.settle()
    s.withdraw("alice", WBTC, BTC_ASSET, 20 * 10**8, nonce=3, to=ADDR["bob"])
    b = s.settle()
    assert len(b.withdrawals) == 1
    payouts = s.h.engine.batch_payouts[b.batch_id]
    tok = s.chains["alice"].at(Artifact.load("TestToken"), s.m["tokens"][WBTC])
    w3 = s.chains["alice"].w3
    w3.provider.make_request("evm_increaseTime", [6 * 3600 + 1])
    w3.provider.make_request("evm_mine", [])
    assert not s.sender.execute_payouts(b.batch_id, payouts)  # a part: the cap's 15
    assert tok.functions.balanceOf(ADDR["bob"]).call() == 15 * 10**8
    assert s.ch().functions.payoutPartPaid(b.batch_id).call() == 15 * 10**8
    assert not s.sender.execute_payouts(b.batch_id, payouts)  # nothing left of this period's cap
    w3.provider.make_request("evm_increaseTime", [86_400])
    w3.provider.make_request("evm_mine", [])
    assert s.sender.execute_payouts(b.batch_id, payouts)
    assert tok.functions.balanceOf(ADDR["bob"]).call() == 20 * 10**8
    s.h.apply(pack_paid(b.batch_id))
    results = [
        BY_TYPE[MsgType.WITHDRAW_RESULT].struct.unpack_from(c, 0)[6]
        for c in s.h.results
        if c[0] == MsgType.WITHDRAW_RESULT
    ]
    assert results == [WithdrawStatus.PAID]
    s.settle()  # the books still add up on chain
