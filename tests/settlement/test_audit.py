"""``hx audit`` against a real anvil: an honest history passes and every account's leaves verify
against the last root; a batch posted with the operator key whose data does not match its roots is
found, at that batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from settlement_fixtures import BTC_ASSET, USDC_ASSET
from test_batch_sender import KEYS, OnChain

from hx.cli import main
from settlement.anvil import Anvil
from settlement.audit import account_proofs, audit
from settlement.batch_commitments import batch_args
from settlement.chain import Artifact, Chain
from settlement.published_data import LeafChange, PublishedData
from settlement.sum_tree import CLAIM, LIABILITY

USDC, WETH, WBTC = 0, 1, 2


@pytest.fixture
def history(anvil: Anvil, deployer: Chain, artifacts: Any, snapshot: None) -> OnChain:
    """Three honest batches: deposits, then alice owes USDC against BTC she bought from bob."""
    s = OnChain(anvil, deployer)
    s.deposit("alice", WBTC, 10**8)
    s.deposit("bob", USDC, 50_000 * 10**6)
    s.deposit("bob", WBTC, 2 * 10**8)
    s.watch()
    s.settle()
    h = s.h
    h.events(
        h.risk.price(BTC_ASSET, 60_000 * 10**6),  # the price the batches commit for WBTC
        h.risk.balance(1, BTC_ASSET, 10**8), h.risk.balance(2, BTC_ASSET, -(10**8)),
        h.risk.balance(1, USDC_ASSET, -60_000 * 10**6), h.risk.balance(2, USDC_ASSET, 60_000 * 10**6),
    )  # fmt: skip
    s.settle()
    h.events(h.risk.balance(1, USDC_ASSET, 1_000 * 10**6), h.risk.balance(2, USDC_ASSET, -1_000 * 10**6))
    s.settle()
    return s


def test_honest_history_passes_and_account_proofs_verify(history: OnChain, anvil: Anvil) -> None:
    s = history
    report = audit(anvil.url, s.m)
    assert report.ok, report.difference
    assert report.batches == 3 and report.accounts == 3  # alice, bob, the exchange's own leaf
    alice = account_proofs(report, s.users[0])
    assert alice["ok"]
    leaves = {(x["token"], x["kind"]): x["amount"] for x in alice["leaves"]}
    assert leaves[(s.m["tokens"][WBTC], "claim")] == 2 * 10**8
    assert leaves[(s.m["tokens"][USDC], "liability")] == 59_000 * 10**6  # owes USDC against her BTC
    assert leaves[(s.m["tokens"][USDC], "liability")] == s.h.engine.trees.leaf(s.users[0], USDC, LIABILITY)


def test_tampered_batch_is_found(history: OnChain, anvil: Anvil, tmp_path: Path) -> None:
    s = history
    h = s.h
    h.events(h.risk.balance(1, USDC_ASSET, 5), h.risk.balance(2, USDC_ASSET, -5))
    h.tick()
    b = h.engine.pending
    assert b is not None
    # the operator key posts the batch's roots with data that says something else (bob gets a claim)
    forged = PublishedData.build(b.batch_id, 3, 3, [], [LeafChange(1, WBTC, CLAIM, 99 * 10**8)]).encode()
    operator = Chain(anvil.url, KEYS["operator"])
    ch = operator.at(Artifact.load("ClearingHouse"), s.addr("ClearingHouse"))
    args = batch_args(
        batch_id=b.batch_id, prev_batch_hash=b.prev_hash, last_credited_deposit_id=b.last_credited_deposit_id,
        deposits=b.deposits, assets=b.assets, withdrawals=[], forced_serves=[], insurance_moves=[], data=forged,
    )  # fmt: skip
    operator.transact(ch.functions.submitBatch(args))  # the contract checks the header only
    report = audit(anvil.url, s.m)
    assert not report.ok
    assert report.difference is not None and report.difference["batch"] == 4
    assert report.difference["field"] in ("claims_root", "claims_total")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(s.m))
    res = CliRunner().invoke(main, ["audit", "--rpc", anvil.url, "--manifest", str(manifest), "--json"])
    assert res.exit_code == 1 and json.loads(res.output)["difference"]["batch"] == 4
