"""The incremental tree equals the tree built from scratch after any updates, at O(k log n) hashes."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.incremental_sum_tree import UINT128_MAX, IncrementalSumTree
from settlement.sum_tree import CLAIM, LIABILITY, ZERO_HASH, SumTree, verify

TOKEN = "0x" + "aa" * 20


def _addr(i: int) -> bytes:
    return (0x7000 + i).to_bytes(20, "big")


def _same(inc: IncrementalSumTree, amounts: list[int], kind: int) -> None:
    ref = SumTree.build(TOKEN, [(_addr(i), a) for i, a in enumerate(amounts)], kind=kind)
    assert (inc.root, inc.total, inc.depth, len(inc)) == (ref.root, ref.total, ref.depth, len(ref))
    for i in range(len(amounts)):
        assert inc.proof(i) == ref.proof(i)


def test_empty_and_single() -> None:
    t = IncrementalSumTree(TOKEN)
    assert (t.root, t.total, t.depth) == (ZERO_HASH, 0, 0)
    t.append(_addr(0), 5)
    _same(t, [5], CLAIM)
    assert t.proof(0) == []


@pytest.mark.parametrize("kind", [CLAIM, LIABILITY])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_appends_then_updates_match_full_build(kind: int, n: int) -> None:
    rng = random.Random(n * 10 + kind)
    t = IncrementalSumTree(TOKEN, kind)
    amounts: list[int] = []
    for i in range(n):
        amounts.append(rng.randrange(10**12))
        t.append(_addr(i), amounts[-1])
        if rng.random() < 0.3:
            _same(t, amounts, kind)  # read between appends: the tree grows levels lazily
    _same(t, amounts, kind)
    for _ in range(3):
        changes = [(rng.randrange(n), rng.randrange(10**15)) for _ in range(rng.randrange(1, 6))]
        t.update(changes)
        for i, a in changes:
            amounts[i] = a
        _same(t, amounts, kind)


def test_batch_of_k_changes_costs_at_most_k_log_n_hashes() -> None:
    n = 1 << 12
    t = IncrementalSumTree(TOKEN)
    for i in range(n):
        t.append(_addr(i), i)
    _ = t.root
    depth = t.depth
    for k in (1, 10, 100):
        before = t.hash_count
        t.update((random.Random(k).randrange(n), 123 + j) for j in range(k))
        _ = t.root
        assert t.hash_count - before <= k * depth
    before = t.hash_count
    t.set(5, 77)
    _ = t.root
    assert t.hash_count - before == depth == math.ceil(math.log2(n))


def test_overflow_refused_before_anything_changes() -> None:
    """Sums stay below 2**128 (the arrays hold 16 bytes a sum; the engine's leaves are far below)."""
    t = IncrementalSumTree(TOKEN)
    with pytest.raises(ValueError, match="range"):
        t.append(_addr(0), UINT128_MAX + 1)
    t.append(_addr(0), UINT128_MAX)
    root = t.root
    with pytest.raises(ValueError, match="overflow"):
        t.append(_addr(1), 1)
    assert (t.root, len(t)) == (root, 1)
    t.append(_addr(1), 0)
    with pytest.raises(ValueError, match="overflow"):
        t.set(1, 1)
    with pytest.raises(ValueError, match="range"):
        t.set(0, -1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10**30), min_size=1, max_size=40),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**30)), max_size=20),
)
def test_property_incremental_equals_rebuild(initial: list[int], edits: list[tuple[int, int]]) -> None:
    t = IncrementalSumTree(TOKEN)
    amounts = list(initial)
    for i, a in enumerate(amounts):
        t.append(_addr(i), a)
    for pos, a in edits:
        if pos % 3 == 0:
            amounts.append(a)
            t.append(_addr(len(amounts) - 1), a)
        else:
            i = pos % len(amounts)
            amounts[i] = a
            t.set(i, a)
    _same(t, amounts, CLAIM)
    for i, a in enumerate(amounts):
        assert verify(t.root, t.total, _addr(i), TOKEN, a, i, t.proof(i))


def test_sums_near_the_bound_and_bulk_loads_hash_like_the_reference() -> None:
    """Amounts up to 2**128 - 1 hash exactly as the uint256 reference; from_arrays takes 32- or 16-byte
    amounts and refuses one of 2**128 or more."""
    import numpy as np

    amounts = [UINT128_MAX // 4, 3, UINT128_MAX // 4, 0, UINT128_MAX // 4 - 7]
    t = IncrementalSumTree(TOKEN, LIABILITY)
    for i, a in enumerate(amounts):
        t.append(_addr(i), a)
    _same(t, amounts, LIABILITY)
    acc = np.frombuffer(b"".join(_addr(i) for i in range(len(amounts))), np.uint8).reshape(-1, 20)
    wide = np.frombuffer(b"".join(a.to_bytes(32, "big") for a in amounts), np.uint8).reshape(-1, 32)
    bulk = IncrementalSumTree.from_arrays(TOKEN, LIABILITY, acc, wide, sum(amounts))
    _same(bulk, amounts, LIABILITY)
    too_big = wide.copy()
    too_big[1, 15] = 1  # 2**128 in the second leaf
    with pytest.raises(ValueError, match="range"):
        IncrementalSumTree.from_arrays(TOKEN, LIABILITY, acc, too_big, sum(amounts))
