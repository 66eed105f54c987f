"""Deploy script end to end on anvil, then the contracts driven with the Python sum tree: deposit, a batch
with an on-chain solvency proof, a rejected dishonest batch, freeze, and an escape-hatch exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.chain import Artifact, Chain, create_address
from settlement.deploy import (
    DeployConfig,
    DeploymentCheckFailed,
    check_deployment,
    deploy,
    main,
    write_manifest,
)
from settlement.sum_tree import SumTree, state_root

GOVERNOR, OPERATOR, GUARDIAN, ALICE = (Account.from_key(k).address for k in DEV_PRIVATE_KEYS[1:5])
FREEZE_S = 3 * 24 * 3600


def _config(**kw) -> DeployConfig:
    return DeployConfig(governor=GOVERNOR, operator=OPERATOR, guardian=GUARDIAN, test_tokens=True, **kw)


def _selector(sig: str) -> str:
    return "0x" + keccak(text=sig)[:4].hex()


def test_create_address_matches_known_vector() -> None:
    # keccak(rlp([0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0, 0]))[12:] (well-known vector)
    assert create_address("0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0", 0).lower() == (
        "0xcd234a471b72ba2f1ccf0a70fcaba648a5eecd8d"
    )


def test_deploy_writes_manifest_and_roles_read_back(deployer: Chain, snapshot, tmp_path: Path) -> None:
    m = deploy(deployer, _config())
    assert m["chain_id"] == 31337
    assert set(m["contracts"]) >= {"HxTimelock", "Vault", "InsuranceFund", "ClearingHouse", "token:USDC"}
    for c in m["contracts"].values():
        assert len(c["artifact_sha256"]) == 64
        assert (
            c["runtime_code_keccak"].startswith("0x") and c["runtime_code_keccak"] != "0x" + keccak(b"").hex()
        )
        assert c["block"] <= m["block"]
    roles = m["roles"]
    for contract_roles in roles.values():
        for holders in contract_roles.values():
            assert holders["deployer"] is False, "deployer keeps no role"
    assert roles["ClearingHouse"]["OPERATOR_ROLE"] == {
        "governor": False, "operator": True, "guardian": False, "timelock": False, "deployer": False,
    }  # fmt: skip
    assert roles["Vault"]["DEFAULT_ADMIN_ROLE"]["timelock"] is True
    assert roles["HxTimelock"]["PROPOSER_ROLE"]["governor"] is True
    out = tmp_path / "manifest.json"
    write_manifest(m, out)
    again = json.loads(out.read_text())
    assert again["contracts"]["ClearingHouse"]["address"] == m["contracts"]["ClearingHouse"]["address"]
    assert check_deployment(deployer, again) == roles

    # A manifest that claims a different operator fails the read-back.
    bad = json.loads(out.read_text())
    bad["principals"]["operator"] = GUARDIAN
    with pytest.raises(DeploymentCheckFailed, match="OPERATOR_ROLE"):
        check_deployment(deployer, bad)


def test_deploy_refuses_bad_configs(deployer: Chain) -> None:
    with pytest.raises(ValueError, match="deployer"):
        deploy(deployer, DeployConfig(governor=deployer.address, operator=OPERATOR, guardian=GUARDIAN))
    with pytest.raises(ValueError, match="distinct"):
        deploy(deployer, DeployConfig(governor=GOVERNOR, operator=GOVERNOR, guardian=GUARDIAN))
    with pytest.raises(ValueError, match="exceed"):
        deploy(deployer, _config(freeze_period_s=10, timelock_delay_s=10))


def test_cli_local(anvil: Anvil, deployer: Chain, snapshot, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    assert main(["--rpc-url", anvil.url, "--local", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["principals"]["operator"] == OPERATOR
    deployer._nonce = deployer.w3.eth.get_transaction_count(deployer.address)  # the CLI used the same key


def _rpc(chain: Chain, method: str, params: list) -> None:
    chain.w3.provider.make_request(method, params)


def test_end_to_end_batch_freeze_escape(anvil: Anvil, deployer: Chain, snapshot) -> None:
    m = deploy(deployer, _config())
    addr = {k: v["address"] for k, v in m["contracts"].items()}
    tok_art, ch_art, vault_art = (
        Artifact.load("TestToken"),
        Artifact.load("ClearingHouse"),
        Artifact.load("Vault"),
    )
    alice = Chain(anvil.url, DEV_PRIVATE_KEYS[4])
    operator = Chain(anvil.url, DEV_PRIVATE_KEYS[2])
    usdc = alice.at(tok_art, addr["token:USDC"])
    weth = deployer.at(tok_art, addr["token:WETH"])
    vault_a = alice.at(vault_art, addr["Vault"])
    ch = operator.at(ch_art, addr["ClearingHouse"])
    bob = deployer.address

    # deposits: alice 1,000 USDC; bob 2 WETH
    alice.transact(usdc.functions.mint(ALICE, 1_000_000_000))
    alice.transact(usdc.functions.approve(addr["Vault"], 1_000_000_000))
    alice.transact(vault_a.functions.deposit(usdc.address, 1_000_000_000, ALICE))
    deployer.transact(weth.functions.mint(bob, 2 * 10**18))
    deployer.transact(weth.functions.approve(addr["Vault"], 2 * 10**18))
    deployer.transact(deployer.at(vault_art, addr["Vault"]).functions.deposit(weth.address, 2 * 10**18, bob))

    # batch 1: alice withdraws 100 USDC in the same batch; trees built in Python
    trees = [
        SumTree.build(m["tokens"][0], [(ALICE, 900_000_000), (bob, 0)]),
        SumTree.build(m["tokens"][1], [(ALICE, 0), (bob, 2 * 10**18)]),
        SumTree.build(m["tokens"][2], []),
    ]
    assets = [t.commitment() for t in trees]
    withdrawals = [(1, ALICE, usdc.address, 100_000_000)]
    batch = (1, b"\x00" * 32, 2, assets, withdrawals, [], b"batch-1 data")

    # a dishonest total is rejected with its own error
    lying = (
        1,
        b"\x00" * 32,
        2,
        [(assets[0][0], assets[0][1], assets[0][2] + 1), *assets[1:]],
        withdrawals,
        [],
        b"",
    )
    with pytest.raises((ContractCustomError, ContractLogicError)) as err:
        ch.functions.submitBatch(lying).call({"from": OPERATOR})
    assert _selector("TotalMismatch(address,uint256,uint256)")[2:] in str(err.value.data)
    with pytest.raises((ContractCustomError, ContractLogicError)):
        ch.functions.submitBatch(batch).call({"from": ALICE})  # not the operator

    receipt = operator.transact(ch.functions.submitBatch(batch))
    (ev,) = ch.events.BatchAccepted().process_receipt(receipt, errors=DISCARD)
    assert ev.args.batchId == 1
    assert ev.args.stateRoot == state_root(assets)
    assert ch.functions.hashBatch(batch, ev.args.stateRoot).call() == ev.args.batchHash
    assert ch.functions.lastBatchHash().call() == ev.args.batchHash
    assert usdc.functions.balanceOf(ALICE).call() == 100_000_000
    assert ch.functions.accountHoldings(usdc.address).call() == 900_000_000

    # the operator goes silent: anyone freezes after the period; alice exits with her Python proof
    _rpc(deployer, "evm_increaseTime", [FREEZE_S])
    _rpc(deployer, "evm_mine", [])
    alice_ch = alice.at(ch_art, addr["ClearingHouse"])
    alice.transact(alice_ch.functions.freeze())
    i = trees[0].index_of(ALICE)
    args = (assets, 0, 900_000_000, i, trees[0].proof(i), ALICE)
    alice.transact(alice_ch.functions.escapeWithdraw(*args))
    assert usdc.functions.balanceOf(ALICE).call() == 1_000_000_000
    with pytest.raises((ContractCustomError, ContractLogicError)) as err:  # once only
        alice_ch.functions.escapeWithdraw(*args).call({"from": ALICE})
    assert _selector("AlreadyEscaped(address,address)")[2:] in str(err.value.data)
