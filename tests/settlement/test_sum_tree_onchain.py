"""The Python sum trees (claims, liabilities, incremental) against the Solidity verifier (SumTreeVerifier /
SumTree.sol) on a real anvil."""

from __future__ import annotations

import os
import random

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.chain import Artifact, Chain
from settlement.incremental_sum_tree import IncrementalSumTree
from settlement.sum_tree import LIABILITY, SumTree, leaf_hash, node_hash

TOKEN = to_checksum_address("0x" + "ab" * 20)


@pytest.fixture(scope="module")
def verifier(deployer: Chain, artifacts: dict[str, Artifact]):
    contract, _ = deployer.deploy(artifacts["SumTreeVerifier"])
    return contract


def _addr(rng: random.Random) -> str:
    return to_checksum_address(rng.randbytes(20))


def _onchain_verify(
    verifier, t: SumTree, i: int, amount: int | None = None, index: int | None = None
) -> bool:
    account = t.account_at(i)
    return verifier.functions.verify(
        t.root, t.total, account, TOKEN, t.amounts[i] if amount is None else amount,
        i if index is None else index, t.proof(i),
    ).call()  # fmt: skip


def test_hashes_match(verifier) -> None:
    rng = random.Random(7)
    for _ in range(10):
        a, amt = _addr(rng), rng.getrandbits(256)
        assert verifier.functions.leafHash(a, TOKEN, amt).call() == leaf_hash(a, TOKEN, amt)
        lh, rh, ls, rs = rng.randbytes(32), rng.randbytes(32), rng.getrandbits(256), rng.getrandbits(256)
        assert verifier.functions.nodeHash(lh, ls, rh, rs).call() == node_hash(lh, ls, rh, rs)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 9, 16, 33])
def test_random_trees_all_proofs_verify_on_chain(verifier, n: int) -> None:
    rng = random.Random(n)
    leaves = [(_addr(rng), rng.choice([0, rng.randrange(10**6), rng.randrange(10**30)])) for _ in range(n)]
    t = SumTree.build(TOKEN, leaves)
    for i in range(n):
        assert _onchain_verify(verifier, t, i)
        root, total, ok = verifier.functions.computeRoot(
            t.account_at(i), TOKEN, t.amounts[i], i, t.proof(i)
        ).call()
        assert (root, total, ok) == (t.root, t.total, True)
    assert not _onchain_verify(verifier, t, 0, amount=t.amounts[0] + 1)
    if n > 1:
        assert not _onchain_verify(verifier, t, 0, index=1)


def test_zero_amount_trees(verifier) -> None:
    rng = random.Random(0)
    t = SumTree.build(TOKEN, [(_addr(rng), 0) for _ in range(6)])
    assert t.total == 0
    assert all(_onchain_verify(verifier, t, i) for i in range(6))


def test_single_leaf_on_chain(verifier) -> None:
    t = SumTree.build(TOKEN, [(to_checksum_address("0x" + "11" * 20), 5)])
    assert t.proof(0) == []
    assert _onchain_verify(verifier, t, 0)


@pytest.mark.slow
def test_100k_leaves_sample_verifies_on_chain(verifier) -> None:
    rng = random.Random(100_000)
    n = 100_000
    leaves = [(os.urandom(20), rng.randrange(10**12)) for _ in range(n)]
    t = SumTree.build(TOKEN, leaves)
    assert t.depth == 17
    assert t.total == sum(a for _, a in leaves)
    for i in [0, 1, n // 2, n - 2, n - 1, *rng.sample(range(n), 15)]:
        assert _onchain_verify(verifier, t, i), i
    assert not _onchain_verify(verifier, t, n - 1, amount=t.amounts[n - 1] + 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 2**200), min_size=1, max_size=24), st.data())
def test_property_python_and_solidity_agree(verifier, amts: list[int], data: st.DataObject) -> None:
    accounts = [to_checksum_address((0x5000 + i).to_bytes(20, "big")) for i in range(len(amts))]
    t = SumTree.build(TOKEN, list(zip(accounts, amts, strict=True)))
    i = data.draw(st.integers(0, len(amts) - 1))
    assert _onchain_verify(verifier, t, i)
    bump = data.draw(st.integers(1, 2**200))
    assert not _onchain_verify(verifier, t, i, amount=amts[i] + bump)


@pytest.mark.parametrize("n", [1, 3, 8, 21])
def test_liability_trees_verify_on_chain_only_as_liabilities(verifier, n: int) -> None:
    rng = random.Random(1000 + n)
    leaves = [(_addr(rng), rng.randrange(10**24)) for _ in range(n)]
    t = SumTree.build(TOKEN, leaves, kind=LIABILITY)
    for i, (a, amt) in enumerate(leaves):
        assert verifier.functions.liabilityLeafHash(a, TOKEN, amt).call() == leaf_hash(
            a, TOKEN, amt, LIABILITY
        )
        assert verifier.functions.verifyLiability(t.root, t.total, a, TOKEN, amt, i, t.proof(i)).call()
        assert not verifier.functions.verify(t.root, t.total, a, TOKEN, amt, i, t.proof(i)).call()


def test_incremental_tree_after_updates_verifies_on_chain(verifier) -> None:
    rng = random.Random(77)
    t = IncrementalSumTree(TOKEN)
    accounts = [_addr(rng) for _ in range(40)]
    for a in accounts:
        t.append(a, rng.randrange(10**9))
    t.update((rng.randrange(40), rng.randrange(10**20)) for _ in range(15))
    for i in rng.sample(range(40), 10):
        assert verifier.functions.verify(
            t.root, t.total, accounts[i], TOKEN, t.amount(i), i, t.proof(i)
        ).call()
