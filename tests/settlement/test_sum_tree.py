"""The Python Merkle sum tree on its own: encoding, shapes, proofs, and properties (hypothesis)."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.sum_tree import (
    CLAIM,
    LIABILITY,
    UINT256_MAX,
    ZERO_HASH,
    SumTree,
    compute_root,
    leaf_hash,
    node_hash,
    verify,
)

TOKEN = "0x" + "aa" * 20
ALICE = "0x" + "11" * 20
BOB = "0x" + "22" * 20
CAROL = "0x" + "33" * 20

# Same vector as contracts/test/libraries/SumTree.t.sol::test_knownAnswerVector.
KNOWN_ROOT = bytes.fromhex("44c1ae5393201d6a504771bcf62ae23fda2bb2525f813cf6ecc681c29e44680b")


def _addr(i: int) -> str:
    return "0x" + (0x1000 + i).to_bytes(20, "big").hex()


def test_known_answer_vector_matches_solidity() -> None:
    t = SumTree.build(TOKEN, [(ALICE, 1_000_000), (BOB, 0), (CAROL, 2_500_000)])
    assert t.root == KNOWN_ROOT
    assert t.total == 3_500_000
    assert t.depth == 2


def test_encoding_is_domain_separated_packed() -> None:
    raw = b"\x00" + bytes.fromhex("11" * 20) + bytes.fromhex("aa" * 20) + (5).to_bytes(32, "big")
    assert leaf_hash(ALICE, TOKEN, 5) == keccak(raw)
    h1, h2 = b"\x01" * 32, b"\x02" * 32
    assert node_hash(h1, 3, h2, 4) == keccak(
        b"\x01" + h1 + (3).to_bytes(32, "big") + h2 + (4).to_bytes(32, "big")
    )


def test_single_leaf_root_is_leaf_hash_and_proof_is_empty() -> None:
    t = SumTree.build(TOKEN, [(ALICE, 42)])
    assert t.root == leaf_hash(ALICE, TOKEN, 42)
    assert t.proof(0) == []
    assert verify(t.root, 42, ALICE, TOKEN, 42, 0, [])
    assert not verify(t.root, 42, ALICE, TOKEN, 42, 1, [])


def test_empty_tree() -> None:
    t = SumTree.build(TOKEN, [])
    assert (t.root, t.total, t.depth, len(t)) == (ZERO_HASH, 0, 0, 0)
    assert not verify(ZERO_HASH, 0, ALICE, TOKEN, 0, 0, [])


@pytest.mark.parametrize("n", [2, 3, 5, 7, 8, 9, 17])
def test_odd_and_even_counts_pad_with_empty_node(n: int) -> None:
    leaves = [(_addr(i), i * 10) for i in range(n)]
    t = SumTree.build(TOKEN, leaves)
    assert t.depth == (n - 1).bit_length()
    for i, (a, amt) in enumerate(leaves):
        assert verify(t.root, t.total, a, TOKEN, amt, i, t.proof(i))
    if n % 2:
        assert t.proof(n - 1)[0] == (ZERO_HASH, 0)


def test_rejects_duplicates_negative_and_overflow() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        SumTree.build(TOKEN, [(ALICE, 1), (ALICE, 2)])
    with pytest.raises(ValueError):
        SumTree.build(TOKEN, [(ALICE, -1)])
    with pytest.raises(ValueError, match="overflow"):
        SumTree.build(TOKEN, [(ALICE, UINT256_MAX), (BOB, 1)])


def test_malformed_proofs() -> None:
    assert compute_root(ALICE, TOKEN, 1, 0, [(ZERO_HASH, 0)] * 49) is None  # deeper than MAX_DEPTH
    assert compute_root(ALICE, TOKEN, 1, 2, [(ZERO_HASH, 0)]) is None  # index out of range
    assert compute_root(ALICE, TOKEN, 1, 0, [(ZERO_HASH, UINT256_MAX)]) is None  # sum overflow


def test_liability_leaves_have_their_own_prefix() -> None:
    raw = b"\x02" + bytes.fromhex("11" * 20) + bytes.fromhex("aa" * 20) + (5).to_bytes(32, "big")
    assert leaf_hash(ALICE, TOKEN, 5, LIABILITY) == keccak(raw)
    assert leaf_hash(ALICE, TOKEN, 5, LIABILITY) != leaf_hash(ALICE, TOKEN, 5, CLAIM)
    with pytest.raises(ValueError, match="kind"):
        leaf_hash(ALICE, TOKEN, 5, 1)
    debts = SumTree.build(TOKEN, [(ALICE, 7), (BOB, 0), (CAROL, 3)], kind=LIABILITY)
    claims = SumTree.build(TOKEN, [(ALICE, 7), (BOB, 0), (CAROL, 3)])
    assert debts.root != claims.root
    for i, (a, amt) in enumerate([(ALICE, 7), (BOB, 0), (CAROL, 3)]):
        assert verify(debts.root, 10, a, TOKEN, amt, i, debts.proof(i), LIABILITY)
        assert not verify(debts.root, 10, a, TOKEN, amt, i, debts.proof(i), CLAIM)


amounts = st.integers(min_value=0, max_value=10**30)
leaf_lists = st.lists(amounts, min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(leaf_lists)
def test_property_every_leaf_verifies_and_leaves_sum_to_total(amts: list[int]) -> None:
    t = SumTree.build(TOKEN, [(_addr(i), a) for i, a in enumerate(amts)])
    assert t.total == sum(amts)
    for i, a in enumerate(amts):
        assert verify(t.root, t.total, _addr(i), TOKEN, a, i, t.proof(i))


@settings(max_examples=120, deadline=None)
@given(leaf_lists, st.data())
def test_property_no_modified_leaf_verifies(amts: list[int], data: st.DataObject) -> None:
    t = SumTree.build(TOKEN, [(_addr(i), a) for i, a in enumerate(amts)])
    i = data.draw(st.integers(0, len(amts) - 1))
    proof = t.proof(i)
    account, amount, index = _addr(i), amts[i], i
    how = data.draw(st.sampled_from(["amount", "account", "index", "sibling_sum", "total"]))
    total = t.total
    delta = data.draw(st.integers(1, 10**30))
    if how == "amount":
        amount += delta
    elif how == "account":
        account = _addr(i + 1000)
    elif how == "index":
        if len(amts) == 1:
            index = 1
        else:
            index = (i + 1 + delta % (len(amts) - 1)) % len(amts)
    elif how == "sibling_sum" and proof:
        j = delta % len(proof)
        proof[j] = (proof[j][0], proof[j][1] + delta)
        amount += delta
    else:
        total += delta
    assert not verify(t.root, total, account, TOKEN, amount, index, proof)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_property_no_subset_claims_more_than_total(amts: list[int], data: st.DataObject) -> None:
    """Whatever leaves (honest or forged) anyone proves, the proven amounts never exceed the total."""
    t = SumTree.build(TOKEN, [(_addr(i), a) for i, a in enumerate(amts)])
    claimed = 0
    for i, a in enumerate(amts):
        forged = data.draw(st.booleans())
        amount = a + data.draw(st.integers(1, 10**30)) if forged else a
        if verify(t.root, t.total, _addr(i), TOKEN, amount, i, t.proof(i)):
            claimed += amount
    assert claimed <= t.total
