"""A mutable Merkle sum tree with the encoding of :mod:`settlement.sum_tree`, updated in O(k log n).

Invariants (checked against :class:`settlement.sum_tree.SumTree` by the tests):

- after any sequence of ``append``/``set``, ``root``, ``total`` and every ``proof`` equal those of
  ``SumTree.build`` over the same leaves (same order, same kind): level ``l`` has ``ceil(n / 2**l)`` nodes,
  node ``j`` hashes children ``2j`` and ``2j + 1`` (the EMPTY node ``(0x00..00, 0)`` when ``2j + 1`` is
  past the level's end), and the tree grows a level whenever its top level holds two nodes;
- changes are lazy: ``set``/``append`` only mark leaves dirty; the next read (``root``, ``total``,
  ``proof``) recomputes each ancestor of a dirty leaf once, level by level. A batch touching ``k`` of
  ``n`` leaves therefore costs at most ``k * ceil(log2 n)`` node hashes (fewer where paths merge);
- ``total`` (and so every amount) stays below ``2**128``: a change that would pass it raises before
  anything changes. The encoding is the contract's uint256; the bound is the engine's (int64 balances
  times a token factor of at most 1e12, over fewer than 2**20 accounts, stay far below it), and it
  halves what every sum costs in memory.

Layout (why it is fast and small): flat numpy arrays, one row per node, per level: hashes ``(n_l, 32)``
and sums ``(n_l, 16)`` big-endian bytes (128-bit sums do not fit a numpy integer), accounts ``(n, 20)``;
leaf hashes are not stored (a parent's are made from its leaves' accounts and amounts as it is hashed,
a proof's sibling leaf hash when asked): a tree costs ~84 bytes a leaf, so the 10 trees of 1,000,000
accounts x 5 assets hold in well under 1 GB. Capacity doubles as leaves are appended. The hashing loops
(the first level from the leaves, then parents level by level) run in C (``settlement.native._hxtree``,
Ethereum's Keccak-256) over the sorted unique dirty indices, two threads on a large level, so the
Python cost of a batch is per level, not per node.

Units: amounts are token base units (the leaf amounts of the contract's trees).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from settlement.native._hxtree import hash_leaf_parents, hash_parents
from settlement.sum_tree import CLAIM, ZERO_HASH, ProofNode, address_bytes, leaf_hash

UINT128_MAX = (1 << 128) - 1
SUM_BYTES = 16  # a sum's big-endian bytes in the arrays (the hashes encode it in 32)


def _grow(a: np.ndarray, rows: int) -> np.ndarray:
    if rows <= a.shape[0]:
        return a
    out = np.zeros((max(rows, 2 * a.shape[0], 16), a.shape[1]), np.uint8)
    out[: a.shape[0]] = a
    return out


def _distinct_sorted(a: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array, in order (np.unique hashes; this is one pass)."""
    if len(a) < 2:
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


class IncrementalSumTree:
    """One asset's claims (``kind=CLAIM``) or liabilities (``kind=LIABILITY``) tree, mutable.

    Parameters
    ----------
    token : the asset's token address.
    kind : ``sum_tree.CLAIM`` or ``sum_tree.LIABILITY`` (the leaf prefix).
    """

    __slots__ = (
        "token",
        "kind",
        "_n",
        "_acc",
        "_h",
        "_s",
        "_dirty",
        "_total",
        "hash_count",
        "_flat",
        "_flat_of",
    )

    def __init__(self, token: str | bytes, kind: int = CLAIM) -> None:
        self.token = address_bytes(token)
        self.kind = kind
        leaf_hash(b"\x00" * 20, self.token, 0, kind)  # validates the kind
        self._n = 0
        self._acc = np.zeros((16, 20), np.uint8)
        # per level: hashes (level 0, the leaves, has none stored) and sums (level 0: the amounts)
        self._h: list[np.ndarray] = [np.zeros((0, 32), np.uint8)]
        self._s: list[np.ndarray] = [np.zeros((16, SUM_BYTES), np.uint8)]
        self._dirty: list[int] = []
        self._total = 0
        self.hash_count = 0  # node hashes computed so far (for the O(k log n) test)
        self._flat: memoryview | None = None  # bytes of the leaf amounts (set's fast path)
        self._flat_of: np.ndarray | None = None  # the array it views

    @classmethod
    def from_arrays(
        cls, token: str | bytes, kind: int, accounts: np.ndarray, amounts_be: np.ndarray, total: int
    ) -> IncrementalSumTree:
        """A tree of ``len(accounts)`` leaves at once: ``accounts`` ``(n, 20)`` and ``amounts_be`` ``(n, 32)``
        (uint256) or ``(n, 16)`` big-endian uint8 rows summing to ``total`` (the caller's word; for bulk
        loads and benchmarks). ValueError if an amount is 2**128 or more."""
        t = cls(token, kind)
        n = int(accounts.shape[0])
        t._acc = np.ascontiguousarray(accounts, np.uint8)
        amounts = np.asarray(amounts_be, np.uint8)
        if amounts.shape[1] == 32:
            if amounts[:, :16].any():
                raise ValueError("amount out of range: 2**128 or more")
            amounts = amounts[:, 16:]
        t._s[0] = np.ascontiguousarray(amounts)
        t._n, t._total = n, total
        t._check_total(total, 0)
        t._dirty = list(range(n))
        return t

    # ------------------------------------------------------------------ writes

    def append(self, account: str | bytes, amount: int = 0) -> int:
        """Add a leaf at the end; returns its index."""
        self._check_total(self._total + amount, amount)
        i = self._n
        self._acc = _grow(self._acc, i + 1)
        self._s[0] = _grow(self._s[0], i + 1)
        self._acc[i] = np.frombuffer(address_bytes(account), np.uint8)
        self._s[0][i] = np.frombuffer(amount.to_bytes(SUM_BYTES, "big"), np.uint8)
        self._n += 1
        self._total += amount
        self._dirty.append(i)
        return i

    def set(self, index: int, amount: int) -> None:
        """Set leaf ``index``'s amount (the account stays)."""
        if not 0 <= index < self._n:
            raise IndexError(index)
        leaves = self._s[0]
        if self._flat is None or self._flat_of is not leaves:  # (regrown since: a new view)
            self._flat, self._flat_of = memoryview(leaves.reshape(-1)), leaves
        at = SUM_BYTES * index
        old = int.from_bytes(self._flat[at : at + SUM_BYTES], "big")
        if amount == old:
            return
        self._check_total(self._total - old + amount, amount)
        self._flat[at : at + SUM_BYTES] = amount.to_bytes(SUM_BYTES, "big")  # (a byte view: ~10x a row write)
        self._total += amount - old
        self._dirty.append(index)

    def update(self, changes: Iterable[tuple[int, int]]) -> None:
        """Set several leaves ``(index, amount)``; hashing happens once, on the next read."""
        for index, amount in changes:
            self.set(index, amount)

    @staticmethod
    def _check_total(total: int, amount: int) -> None:
        if not 0 <= amount <= UINT128_MAX:
            raise ValueError("amount out of range: negative, or 2**128 or more")
        if total > UINT128_MAX:
            raise ValueError("sum overflows 2**128")

    # ------------------------------------------------------------------ reads

    def _flush(self) -> None:
        if not self._dirty:
            return
        n = self._n
        idx = _distinct_sorted(np.sort(np.asarray(self._dirty, np.int64)))
        level, size = 0, n
        while size > 1:
            up = (size + 1) // 2
            if level + 1 == len(self._h):
                self._h.append(np.zeros((max(up, 16), 32), np.uint8))
                self._s.append(np.zeros((max(up, 16), SUM_BYTES), np.uint8))
            self._h[level + 1] = _grow(self._h[level + 1], up)
            self._s[level + 1] = _grow(self._s[level + 1], up)
            parents = _distinct_sorted(idx >> 1)  # (idx is sorted: so are its parents)
            if level == 0:  # from the leaves' accounts and amounts (their hashes are not stored)
                hash_leaf_parents(
                    self._acc[:n], self.token, self._s[0][:n], self.kind, n, parents, self._h[1], self._s[1]
                )
            else:
                hash_parents(
                    self._h[level], self._s[level], size, parents, self._h[level + 1], self._s[level + 1]
                )
            self.hash_count += len(parents)
            idx, level, size = parents, level + 1, up
        self._dirty = []

    def _levels(self) -> int:
        """Levels above the leaves: ``ceil(log2 n)`` (0 for one leaf)."""
        return max(self._n - 1, 0).bit_length()

    @property
    def root(self) -> bytes:
        """Root hash (``ZERO_HASH`` when empty)."""
        if not self._n:
            return ZERO_HASH
        if self._n == 1:  # the leaf itself
            return self._leaf_hash(0)
        self._flush()
        return bytes(self._h[self._levels()][0])

    def _leaf_hash(self, index: int) -> bytes:
        return leaf_hash(self._acc[index].tobytes(), self.token, self.amount(index), self.kind)

    @property
    def total(self) -> int:
        """Sum of all leaf amounts."""
        return self._total

    @property
    def depth(self) -> int:
        """Proof length: ``ceil(log2(n))``."""
        return self._levels()

    def __len__(self) -> int:
        return self._n

    def amount(self, index: int) -> int:
        """Leaf ``index``'s amount."""
        if not 0 <= index < self._n:
            raise IndexError(index)
        return int.from_bytes(self._s[0][index].tobytes(), "big")  # (16 bytes)

    def account(self, index: int) -> bytes:
        """Leaf ``index``'s account (20 bytes)."""
        if not 0 <= index < self._n:
            raise IndexError(index)
        return self._acc[index].tobytes()

    def proof(self, index: int) -> list[ProofNode]:
        """Siblings ``(hash, sum)`` of leaf ``index``, bottom up."""
        if not 0 <= index < self._n:
            raise IndexError(index)
        self._flush()
        out: list[ProofNode] = []
        i, size = index, self._n
        for level in range(self._levels()):
            j = i ^ 1
            if j < size and level == 0:
                out.append((self._leaf_hash(j), self.amount(j)))
            elif j < size:
                out.append((self._h[level][j].tobytes(), int.from_bytes(self._s[level][j].tobytes(), "big")))
            else:
                out.append((ZERO_HASH, 0))
            i >>= 1
            size = (size + 1) // 2
        return out

    def nbytes(self) -> int:
        """Bytes held by the arrays (capacity included)."""
        return int(self._acc.nbytes + sum(a.nbytes for a in self._h) + sum(a.nbytes for a in self._s))
