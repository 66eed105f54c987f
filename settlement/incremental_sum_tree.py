"""A mutable Merkle sum tree with the encoding of :mod:`settlement.sum_tree`, updated in O(k log n).

Invariants (checked against :class:`settlement.sum_tree.SumTree` by the tests):

- after any sequence of ``append``/``set``, ``root``, ``total`` and every ``proof`` equal those of
  ``SumTree.build`` over the same leaves (same order, same kind): level ``l`` has ``ceil(n / 2**l)`` nodes,
  node ``j`` hashes children ``2j`` and ``2j + 1`` (the EMPTY node ``(0x00..00, 0)`` when ``2j + 1`` is
  past the level's end), and the tree grows a level whenever its top level holds two nodes;
- changes are lazy: ``set``/``append`` only mark leaves dirty; the next read (``root``, ``total``,
  ``proof``) recomputes each ancestor of a dirty leaf once, level by level. A batch touching ``k`` of
  ``n`` leaves therefore costs at most ``k * ceil(log2 n)`` node hashes (fewer where paths merge);
- ``total`` never exceeds ``2**256 - 1``: a change that would overflow it raises before anything changes.

Layout (why it is fast and small): flat numpy arrays, one row per node, per level: hashes ``(n_l, 32)``
and sums ``(n_l, 32)`` big-endian bytes (256-bit sums do not fit a numpy integer), accounts ``(n, 20)``;
capacity doubles as leaves are appended. The hashing loops (leaves, then parents level by level) run in
C (``settlement.native._hxtree``, Ethereum's Keccak-256) over the sorted unique dirty indices, so the
Python cost of a batch is per level, not per node.

Units: amounts are token base units (the leaf amounts of the contract's trees).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from settlement.native._hxtree import hash_leaves, hash_parents
from settlement.sum_tree import CLAIM, UINT256_MAX, ZERO_HASH, ProofNode, address_bytes, leaf_hash


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
        self._h: list[np.ndarray] = [np.zeros((16, 32), np.uint8)]
        self._s: list[np.ndarray] = [np.zeros((16, 32), np.uint8)]
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
        big-endian uint8 rows summing to ``total`` (the caller's word; for bulk loads and benchmarks)."""
        t = cls(token, kind)
        n = int(accounts.shape[0])
        t._acc = np.ascontiguousarray(accounts, np.uint8)
        t._h[0] = np.zeros((n, 32), np.uint8)
        t._s[0] = np.ascontiguousarray(amounts_be, np.uint8)
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
        self._h[0] = _grow(self._h[0], i + 1)
        self._s[0] = _grow(self._s[0], i + 1)
        self._acc[i] = np.frombuffer(address_bytes(account), np.uint8)
        self._s[0][i] = np.frombuffer(amount.to_bytes(32, "big"), np.uint8)
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
        at = 32 * index
        old = int.from_bytes(self._flat[at : at + 32], "big")
        if amount == old:
            return
        self._check_total(self._total - old + amount, amount)
        self._flat[at : at + 32] = amount.to_bytes(32, "big")  # (a byte view: ~10x a numpy row write)
        self._total += amount - old
        self._dirty.append(index)

    def update(self, changes: Iterable[tuple[int, int]]) -> None:
        """Set several leaves ``(index, amount)``; hashing happens once, on the next read."""
        for index, amount in changes:
            self.set(index, amount)

    @staticmethod
    def _check_total(total: int, amount: int) -> None:
        if not 0 <= amount <= UINT256_MAX:
            raise ValueError("amount out of uint256 range")
        if total > UINT256_MAX:
            raise ValueError("sum overflows uint256")

    # ------------------------------------------------------------------ reads

    def _flush(self) -> None:
        if not self._dirty:
            return
        n = self._n
        idx = _distinct_sorted(np.sort(np.asarray(self._dirty, np.int64)))
        hash_leaves(self._acc[:n], self.token, self._s[0][:n], idx, self.kind, self._h[0])
        level, size = 0, n
        while size > 1:
            up = (size + 1) // 2
            if level + 1 == len(self._h):
                self._h.append(np.zeros((max(up, 16), 32), np.uint8))
                self._s.append(np.zeros((max(up, 16), 32), np.uint8))
            self._h[level + 1] = _grow(self._h[level + 1], up)
            self._s[level + 1] = _grow(self._s[level + 1], up)
            parents = _distinct_sorted(idx >> 1)  # (idx is sorted: so are its parents)
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
        self._flush()
        return bytes(self._h[self._levels()][0])

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
        return int.from_bytes(self._s[0][index].tobytes(), "big")

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
            if j < size:
                out.append((self._h[level][j].tobytes(), int.from_bytes(self._s[level][j].tobytes(), "big")))
            else:
                out.append((ZERO_HASH, 0))
            i >>= 1
            size = (size + 1) // 2
        return out

    def nbytes(self) -> int:
        """Bytes held by the arrays (capacity included)."""
        return int(self._acc.nbytes + sum(a.nbytes for a in self._h) + sum(a.nbytes for a in self._s))
