"""Published data: canonical encoding, strict decoding, and rebuilding every leaf from the previous state."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.account_trees import AccountTrees
from settlement.published_data import MAGIC, LeafChange, PublishedData, PublishedDataError
from settlement.sum_tree import CLAIM, LIABILITY, UINT256_MAX, SumTree

TOKENS = ["0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20]


def _addr(i: int) -> bytes:
    return (0x9000 + i).to_bytes(20, "big")


def test_known_encoding() -> None:
    d = PublishedData.build(
        7, 2, 1, [_addr(1)], [LeafChange(1, 1, LIABILITY, 0x0102), LeafChange(0, 0, CLAIM, 0)]
    )
    raw = d.encode()
    assert raw == (
        MAGIC
        + (7).to_bytes(8, "big")
        + b"\x02"
        + (1).to_bytes(4, "big")
        + (1).to_bytes(4, "big")
        + _addr(1)
        + (2).to_bytes(4, "big")
        + (0).to_bytes(4, "big") + b"\x00\x00\x00"  # account 0, asset 0, claims, amount 0 (empty)
        + (1).to_bytes(4, "big") + b"\x01\x02\x02\x01\x02"  # account 1, asset 1, liabilities, 0x0102
    )  # fmt: skip
    assert PublishedData.decode(raw) == d


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: b[:20], "truncated|magic"),
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b[:-1], "truncated|length"),
    ],
)
def test_decode_rejects_malformed(mutate, match: str) -> None:
    raw = PublishedData.build(1, 1, 0, [_addr(0)], [LeafChange(0, 0, CLAIM, 5)]).encode()
    with pytest.raises(PublishedDataError, match=match):
        PublishedData.decode(mutate(raw))


def test_rules() -> None:
    with pytest.raises(PublishedDataError, match="increasing"):
        PublishedData(1, 1, 1, (), (LeafChange(0, 0, CLAIM, 1), LeafChange(0, 0, CLAIM, 2))).encode()
    with pytest.raises(PublishedDataError, match="account index"):
        PublishedData(1, 1, 1, (), (LeafChange(1, 0, CLAIM, 1),)).encode()
    with pytest.raises(PublishedDataError, match="asset index"):
        PublishedData(1, 1, 1, (), (LeafChange(0, 1, CLAIM, 1),)).encode()
    with pytest.raises(PublishedDataError, match="kind"):
        PublishedData(1, 1, 1, (), (LeafChange(0, 0, 1, 1),)).encode()
    with pytest.raises(PublishedDataError, match="uint256"):
        PublishedData(1, 1, 1, (), (LeafChange(0, 0, CLAIM, UINT256_MAX + 1),)).encode()
    leading_zero = bytearray(PublishedData.build(1, 1, 1, [], [LeafChange(0, 0, CLAIM, 5)]).encode())
    leading_zero[-2:] = b"\x02\x00"  # amount_len 2 ... then the byte 0x00 and 0x05
    with pytest.raises(PublishedDataError):
        PublishedData.decode(bytes(leading_zero) + b"\x05")


def _random_batches(seed: int, batches: int) -> tuple[AccountTrees, list[bytes], list[list]]:
    """An engine's state through `batches` batches; returns it, each batch's data, and each batch's roots."""
    rng = random.Random(seed)
    state = AccountTrees(TOKENS[:2])
    blobs, roots = [], []
    for b in range(1, batches + 1):
        if b == batches // 2 + 1:
            state.add_token(TOKENS[2])  # listed mid-way
        for _ in range(rng.randrange(0, 12)):
            who = _addr(rng.randrange(0, 3 * b + 3))
            asset = rng.randrange(len(state.tokens))
            kind = rng.choice([CLAIM, CLAIM, LIABILITY])
            state.set_leaf(who, asset, kind, rng.choice([0, rng.randrange(10**18)]))
        blobs.append(state.take_published_data(b).encode())
        roots.append(
            [(a.claims_root, a.liabilities_root) for a in state.asset_states([1] * len(state.tokens))]
        )
    return state, blobs, roots


@pytest.mark.parametrize("seed", range(6))
def test_replay_rebuilds_every_leaf_and_every_root(seed: int) -> None:
    state, blobs, roots = _random_batches(seed, 8)
    replayed = AccountTrees(TOKENS[:0])
    for b, blob in enumerate(blobs):
        data = PublishedData.decode(blob)
        assert data.batch_id == b + 1
        while len(replayed.tokens) < data.asset_count:
            replayed.add_token(TOKENS[len(replayed.tokens)])
        replayed.apply(data)
        got = [(a.claims_root, a.liabilities_root) for a in replayed.asset_states([1] * len(replayed.tokens))]
        assert got == roots[b], f"batch {b + 1}"
    assert replayed.accounts == state.accounts
    final = AccountTrees.replay(TOKENS, blobs)
    for asset in range(3):
        for kind in (CLAIM, LIABILITY):
            ref = SumTree.build(
                TOKENS[asset], [(a, state.leaf(a, asset, kind)) for a in state.accounts], kind=kind
            )
            assert final.tree(asset, kind).root == ref.root


def test_apply_refuses_data_for_another_state() -> None:
    _, blobs, _ = _random_batches(1, 4)
    state = AccountTrees(TOKENS[:2])
    state.apply(PublishedData.decode(blobs[0]))
    with pytest.raises(PublishedDataError, match="extends|assets"):
        state.apply(PublishedData.decode(blobs[2]))  # skipped batch 2


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.integers(1, 16),
    st.lists(st.binary(min_size=20, max_size=20), max_size=5, unique=True),
    st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 15), st.sampled_from([0, 2]), st.integers(0, 2**256 - 1))
    ),
)
def test_property_round_trip(batch_id: int, assets: int, new: list[bytes], raw_changes: list) -> None:
    base = 5
    accounts = base + len(new)
    changes = {
        (i % accounts, a % assets, k): LeafChange(i % accounts, a % assets, k, amt)
        for i, a, k, amt in raw_changes
    }
    d = PublishedData.build(batch_id, assets, base, list(new), list(changes.values()))
    raw = d.encode()
    assert PublishedData.decode(raw) == d
    assert raw[:4] == MAGIC and int.from_bytes(raw[4:12], "big") == batch_id and raw[12] == assets
