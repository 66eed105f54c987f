"""The settlement process for real: its own OS process on real rings, a real anvil with the contracts,
and risk played by the real RiskEngine (it answers settlement's DEPOSIT commands on its event ring).

Deposits on chain are credited once through risk, batches land on chain, SETTLED events come out;
settlement killed -9 mid-stream restarts at the right batch, sends no deposit twice, and its state
equals the one its journal alone rebuilds."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_account import Account
from settlement_fixtures import REPO_ROOT, USDC, WETH

from engine.accounts.account_registry import AccountRegistry
from engine.ring import ConsumerRef, RingBuffer, RingRef
from engine.risk.risk_config import load_risk_config
from engine.risk.risk_engine import RiskEngine, Source
from engine.types.enums import BalanceReason, MsgType
from engine.wire.layout import BY_TYPE, SLOT_BYTES
from hx.cli import main
from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.chain import Artifact, Chain
from settlement.deploy import DeployConfig, deploy
from settlement.process import (
    SettlementOptions,
    SettlementProcess,
    load_spec,
    rebuild_from_journal,
    run_settlement,
)

KEYS = dict(zip(["governor", "operator", "guardian", "alice", "watcher"], DEV_PRIVATE_KEYS[1:6], strict=True))
ADDR = {k: Account.from_key(v).address for k, v in KEYS.items()}
MARKETS = REPO_ROOT / "config" / "hx.toml"


class Risk:
    """Risk partition 0, in this process: reads settlement's ring, publishes its events."""

    def __init__(self, to_risk: RingBuffer, events: RingBuffer) -> None:
        self.engine = RiskEngine(load_risk_config(MARKETS), 0, 1, 1)
        self.consumer = to_risk.consumer(0)
        self.events = events
        self.events.set_producer()
        self.commands: list[tuple[int, ...]] = []  # DEPOSIT commands
        self.withdrawals: list[tuple[int, ...]] = []  # (type, account, asset, ...) of WITHDRAW_* commands

    def step(self) -> None:
        data = self.consumer.read(timeout_s=0.05)
        for off in range(0, len(data), SLOT_BYTES):
            t = data[off]
            assert t in (MsgType.DEPOSIT, MsgType.WITHDRAW_REQUEST, MsgType.WITHDRAW_RESULT)
            if t == MsgType.DEPOSIT:
                self.commands.append(BY_TYPE[MsgType.DEPOSIT].struct.unpack_from(data, off)[4:9])
            else:
                self.withdrawals.append((t, *BY_TYPE[t].struct.unpack_from(data, off)[4:9]))
            self.engine.handle_command(data, off, Source.SETTLEMENT)
        self.engine.end_of_record()
        _orders, events = self.engine.take_outputs()
        if events:
            self.events.publish(events)


class Run:
    def __init__(self, tmp: Path, anvil: Anvil, deployer: Chain) -> None:
        self.tmp = tmp
        self.m = deploy(
            deployer,
            DeployConfig(
                ADDR["governor"], ADDR["operator"], ADDR["guardian"], (ADDR["watcher"],), test_tokens=True
            ),
        )
        (tmp / "manifest.json").write_text(json.dumps(self.m))
        tag = uuid.uuid4().hex[:8]
        self.rev = RingBuffer.create(f"hxt-{tag}-rev", 1 << 12, 1, keep=(0,))
        self.set = RingBuffer.create(f"hxt-{tag}-set", 1 << 12, 1, keep=(0,))
        self.sev = RingBuffer.create(f"hxt-{tag}-sev", 1 << 12, 1, keep=(0,))
        self.risk = Risk(self.set, self.rev)
        self.settled_reader = self.sev.consumer(0)
        self.settled: list[tuple[int, ...]] = []
        self.options = SettlementOptions(
            risk_events=(ConsumerRef(RingRef(self.rev.name, self.rev.nonce), 0),),
            to_risk=(RingRef(self.set.name, self.set.nonce),),
            events=RingRef(self.sev.name, self.sev.nonce),
            markets_path=str(MARKETS),
            state_dir=str(tmp / "settlement-0"),
            run_dir=str(tmp),
            rpc_url=anvil.url,
            manifest_path=str(tmp / "manifest.json"),
            operator_key_env="HX_TEST_OPERATOR_KEY",
            token_assets=("USDC", "ETH", "BTC"),
            batch_interval_s=0.2,
            snapshot_every=5,
        )
        os.environ["HX_TEST_OPERATOR_KEY"] = KEYS["operator"]
        self.alice = Chain(anvil.url, KEYS["alice"])
        self.proc: Any = None

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self.proc = ctx.Process(target=run_settlement, args=(self.options, ready), daemon=True)
        self.proc.start()
        assert ready.wait(60), "settlement did not start"

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(30)
            assert self.proc.exitcode == 0

    def deposit(self, token: int, amount: int) -> None:
        c = self.alice
        tok = c.at(Artifact.load("TestToken"), self.m["tokens"][token])
        vault = c.at(Artifact.load("Vault"), self.m["contracts"]["Vault"]["address"])
        c.transact(tok.functions.mint(c.address, amount))
        c.transact(tok.functions.approve(vault.address, amount))
        c.transact(vault.functions.deposit(tok.address, amount, c.address))

    def ch(self) -> Any:
        return self.alice.at(Artifact.load("ClearingHouse"), self.m["contracts"]["ClearingHouse"]["address"])

    def pump_until(self, cond: Any, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.risk.step()
            data = self.settled_reader.read(timeout_s=0)
            for off in range(0, len(data), SLOT_BYTES):
                self.settled.append(BY_TYPE[MsgType.SETTLED].struct.unpack_from(data, off)[4:8])
            if cond():
                return
        status = (self.tmp / "settlement-0" / "status.json").read_text()
        alarms = self.tmp / "settlement-0" / "alarms.log"
        raise AssertionError(
            f"timed out; status {status}; alarms {alarms.read_text() if alarms.exists() else ''}"
        )

    def close(self) -> None:
        self.stop()
        for r in (self.rev, self.set, self.sev):
            r.close()


@pytest.fixture
def run(tmp_path: Path, anvil: Anvil, deployer: Chain, artifacts: Any, snapshot: None) -> Iterator[Run]:
    r = Run(tmp_path, anvil, deployer)
    try:
        yield r
    finally:
        r.close()


def test_deposit_credited_batch_on_chain_settled_event(run: Run) -> None:
    run.start()
    run.deposit(USDC, 1_000 * 10**6)
    run.deposit(WETH, 10**18 + 7)
    ch = run.ch()
    run.pump_until(
        lambda: (
            ch.functions.lastCreditedDepositId().call() == 2
            and run.settled
            and run.settled[-1][2] == ch.functions.lastBatchId().call()
        )
    )
    alice = AccountRegistry(run.tmp).get_account_id(ADDR["alice"].lower())
    assert [c[0] for c in run.risk.commands] == [alice, alice]  # each deposit sent once
    assert run.risk.commands[1][3] == 10**8  # 1 ETH in engine atoms; 7 wei stay in alice's leaf
    assert run.settled[-1][1] == alice and run.settled[-1][2] == ch.functions.lastBatchId().call()
    assert ch.functions.accountHoldings(run.m["tokens"][WETH]).call() == 10**18 + 7
    chain_file = json.loads((run.tmp / "settlement-chain.json").read_text())
    assert chain_file["clearing_house"] == run.m["contracts"]["ClearingHouse"]["address"]
    assert [t["asset"] for t in chain_file["tokens"]] == ["USDC", "ETH", "BTC"]
    run.stop()
    status = json.loads((run.tmp / "settlement-0" / "status.json").read_text())
    assert status["confirmed_batch"] == ch.functions.lastBatchId().call() and not status["halted"]


def test_killed_9_mid_stream_resumes_at_the_right_batch(run: Run) -> None:
    run.start()
    ch = run.ch()
    run.deposit(USDC, 10**6)
    run.pump_until(lambda: ch.functions.lastCreditedDepositId().call() == 1)
    for i in range(3):  # kill while deposits land and batches are in flight
        run.deposit(USDC, (i + 2) * 10**6)
        time.sleep(0.1 * i)
        run.kill9()
        run.start()
    run.pump_until(
        lambda: (
            ch.functions.lastCreditedDepositId().call() == 4
            and run.settled
            and run.settled[-1][2] == ch.functions.lastBatchId().call()
        )
    )
    assert [c[4] for c in run.risk.commands] == [1, 2, 3, 4]  # every deposit id sent exactly once
    assert int(run.risk.engine.book.balance[run.risk.engine.book.row(1), 0]) == 10 * 10**6
    last = ch.functions.lastBatchId().call()
    run.stop()
    spec = load_spec(run.options, run.m, [6, 18, 8])
    rebuilt = rebuild_from_journal(run.options, spec)
    assert rebuilt.confirmed_id == last and rebuilt.confirmed_hash == ch.functions.lastBatchHash().call()
    assert rebuilt.pending is None and not rebuilt.halted


def test_a_manifest_that_does_not_match_the_chain_is_refused(run: Run) -> None:
    wrong = dict(run.m, chain_id=1)
    (run.tmp / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="manifest is for chain 1"):
        SettlementProcess(replace(run.options, manifest_path=str(run.tmp / "wrong.json")))
    moved = json.loads(json.dumps(run.m))
    moved["contracts"]["ClearingHouse"]["address"] = "0x" + "77" * 20  # nothing deployed there
    (run.tmp / "moved.json").write_text(json.dumps(moved))
    with pytest.raises(ValueError, match="no matching ClearingHouse"):
        SettlementProcess(replace(run.options, manifest_path=str(run.tmp / "moved.json")))


def test_reconciliation_difference_halts_until_hx_settlement_resume(run: Run) -> None:
    run.start()
    ch = run.ch()
    run.deposit(USDC, 10**6)
    run.pump_until(lambda: ch.functions.lastCreditedDepositId().call() == 1 and run.settled)
    alice = AccountRegistry(run.tmp).get_account_id(ADDR["alice"].lower())
    # an event that makes BTC out of nothing: the books no longer add up
    bogus = BY_TYPE[MsgType.BALANCE].struct.pack(
        MsgType.BALANCE, 1, SLOT_BYTES, 0, 1000, alice, 1, BalanceReason.TRADE, 5, 5, 0, 0
    )
    run.rev.publish(bogus)
    status_path = run.tmp / "settlement-0" / "status.json"

    def status() -> dict[str, Any]:
        return dict(json.loads(status_path.read_text()))

    run.pump_until(lambda: bool(status()["halted"]))
    assert "reconciliation" in status()["halted"]
    halted_at = ch.functions.lastBatchId().call()
    time.sleep(1.5)
    assert ch.functions.lastBatchId().call() == halted_at  # nothing posted while halted
    assert "HALT" in (run.tmp / "settlement-0" / "alarms.log").read_text()
    res = CliRunner().invoke(main, ["settlement", "resume", "--state-dir", str(run.tmp)])
    assert res.exit_code == 0, res.output
    run.pump_until(lambda: ch.functions.lastBatchId().call() > halted_at and not status()["halted"])


def test_forced_request_served_exactly_once_across_kill_9(run: Run) -> None:
    """alice asks on chain; settlement is killed -9 between the request and the serve (and again after the
    payout): the real risk engine gets one hold, the chain one serve and one payout, the balance drops by
    exactly the amount, and the journal alone rebuilds the same."""
    run.start()
    ch = run.ch()
    run.deposit(USDC, 10 * 10**6)
    run.pump_until(lambda: ch.functions.lastCreditedDepositId().call() == 1 and bool(run.settled))
    alice = AccountRegistry(run.tmp).get_account_id(ADDR["alice"].lower())
    hatch = run.alice.at(Artifact.load("EscapeHatch"), run.m["contracts"]["EscapeHatch"]["address"])
    run.alice.transact(
        hatch.functions.requestForcedWithdrawal(run.m["tokens"][USDC], 4 * 10**6, ADDR["alice"])
    )

    def served() -> list[Any]:
        return list(ch.events.ForcedWithdrawalServed().get_logs(from_block=0))

    kills_before_serve = 0
    for delay in (0.0, 0.3, 0.6):  # before the watcher saw it, around risk's hold, around the batch
        time.sleep(delay)
        run.risk.step()
        run.kill9()
        kills_before_serve += not served()
        run.start()
    assert kills_before_serve >= 1

    run.pump_until(lambda: bool(served()) and run.settled[-1][2] == ch.functions.lastBatchId().call())
    book = run.risk.engine.book
    assert int(book.held[book.row(alice), 0]) == 4 * 10**6
    w3 = run.alice.w3
    w3.provider.make_request("evm_increaseTime", [6 * 3600 + 1])
    w3.provider.make_request("evm_mine", [])
    run.pump_until(lambda: int(book.held[book.row(alice), 0]) == 0)
    run.kill9()
    run.start()
    settle_until = time.monotonic() + 3  # a restarted process that would pay or serve again does it by now
    run.pump_until(lambda: time.monotonic() > settle_until)
    (serve,) = served()
    assert serve["args"]["requestId"] == 1 and serve["args"]["amount"] == 4 * 10**6
    assert len(ch.events.PayoutExecuted().get_logs(from_block=0)) == 1
    assert hatch.functions.isForcedRequestSettled(1).call()
    assert int(book.balance[book.row(alice), 0]) == 6 * 10**6 and int(book.held[book.row(alice), 0]) == 0
    forced_id = (1 << 63) | 1
    assert [w[0] for w in run.risk.withdrawals if w[-1] == forced_id] == [
        MsgType.WITHDRAW_REQUEST,
        MsgType.WITHDRAW_RESULT,
    ]  # one hold asked, one result: paid
    assert run.risk.withdrawals[-1][3] == 0  # WithdrawStatus.PAID
    run.stop()
    rebuilt = rebuild_from_journal(run.options, load_spec(run.options, run.m, [6, 18, 8]))
    assert rebuilt.forced_seen == 1 and not rebuilt.forced and not rebuilt.batch_forced
    assert rebuilt.confirmed_hash == ch.functions.lastBatchHash().call() or rebuilt.pending is not None


def test_insurance_fee_reaches_the_fund_once_across_kill_9_and_a_tampered_fund_halts(run: Run) -> None:
    """A liquidation fee into the insurance account (events on risk's ring) is moved into the
    InsuranceFund by one batch, reaches it after the dispute window, equals the engine's insurance account
    in status.json, is not moved again after a kill -9; a rewritten fund balance halts settlement until
    `hx settlement resume`; the journal alone rebuilds the same fund state."""
    from test_insurance_onchain import _balance_slot

    from engine.risk.risk_engine import insurance_account

    run.start()
    ch = run.ch()
    usdc = run.m["tokens"][USDC]
    fund_address = run.m["contracts"]["InsuranceFund"]["address"]
    fund = run.alice.at(Artifact.load("InsuranceFund"), fund_address)
    run.deposit(USDC, 10 * 10**6)
    run.pump_until(lambda: ch.functions.lastCreditedDepositId().call() == 1 and bool(run.settled))
    alice = AccountRegistry(run.tmp).get_account_id(ADDR["alice"].lower())
    balance = BY_TYPE[MsgType.BALANCE].struct
    ins = insurance_account(0)
    run.rev.publish(
        balance.pack(MsgType.BALANCE, 1, SLOT_BYTES, 0, 1000, alice, 0, BalanceReason.LIQUIDATION,
                     8 * 10**6, -2 * 10**6, 0, 0)
        + balance.pack(MsgType.BALANCE, 1, SLOT_BYTES, 0, 1, ins, 0, BalanceReason.INSURANCE,
                       2 * 10**6, 2 * 10**6, 0, 0)
    )  # fmt: skip
    status_path = run.tmp / "settlement-0" / "status.json"

    def status() -> dict[str, Any]:
        return dict(json.loads(status_path.read_text()))

    def queued() -> int:
        return int(ch.functions.ledger(usdc).call()[2])

    run.pump_until(lambda: queued() == 2 * 10**6)  # one move into the fund, queued
    run.kill9()
    run.start()
    w3 = run.alice.w3
    w3.provider.make_request("evm_increaseTime", [6 * 3600 + 1])
    w3.provider.make_request("evm_mine", [])

    def mirrored() -> bool:
        st = status()["insurance"]["tokens"][usdc]
        return st["fund_on_chain"] == st["engine"] == 2 * 10**6 and not st["queued_into_fund"]

    run.pump_until(lambda: int(fund.functions.expectedBalance(usdc).call()) == 2 * 10**6 and mirrored())
    assert queued() == 2 * 10**6 and not status()["halted"]  # moved once
    # the fund's balance rewritten on chain: the reconciliation halts settlement
    slot = _balance_slot(usdc)
    w3.provider.make_request(
        "anvil_setStorageAt", [fund_address, hex(slot), "0x" + (10**6).to_bytes(32, "big").hex()]
    )
    run.pump_until(lambda: "InsuranceFund" in status()["halted"])
    halted_at = ch.functions.lastBatchId().call()
    run.rev.publish(
        balance.pack(MsgType.BALANCE, 1, SLOT_BYTES, 0, 1001, alice, 0, BalanceReason.TRADE, 8 * 10**6 - 1,
                     -1, 0, 0)
    )  # fmt: skip
    time.sleep(1.5)
    assert ch.functions.lastBatchId().call() == halted_at  # nothing posted while halted
    res = CliRunner().invoke(main, ["settlement", "resume", "--state-dir", str(run.tmp)])
    assert res.exit_code == 0, res.output
    run.pump_until(lambda: ch.functions.lastBatchId().call() > halted_at and not status()["halted"])
    run.pump_until(lambda: "adopted" in (run.tmp / "settlement-0" / "alarms.log").read_text())
    run.stop()
    rebuilt = rebuild_from_journal(run.options, load_spec(run.options, run.m, [6, 18, 8]))
    assert rebuilt.fund_on and rebuilt.fund_paid_in[USDC] == 2 * 10**6 and rebuilt.fund_base[USDC] == -(10**6)
    assert rebuilt.confirmed_hash == ch.functions.lastBatchHash().call() or rebuilt.pending is not None
