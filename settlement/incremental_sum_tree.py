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

Units: amounts are token base units (the leaf amounts of the contract's trees).
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_hash.auto import keccak

from settlement.sum_tree import CLAIM, UINT256_MAX, ZERO_HASH, ProofNode, address_bytes, leaf_hash, node_hash


class IncrementalSumTree:
    """One asset's claims (``kind=CLAIM``) or liabilities (``kind=LIABILITY``) tree, mutable.

    Parameters
    ----------
    token : the asset's token address.
    kind : ``sum_tree.CLAIM`` or ``sum_tree.LIABILITY`` (the leaf prefix).
    """

    __slots__ = ("token", "kind", "_accounts", "_hashes", "_sums", "_dirty", "_total", "hash_count")

    def __init__(self, token: str | bytes, kind: int = CLAIM) -> None:
        self.token = address_bytes(token)
        self.kind = kind
        leaf_hash(b"\x00" * 20, self.token, 0, kind)  # validates the kind
        self._accounts: list[bytes] = []
        self._hashes: list[list[bytes]] = [[]]
        self._sums: list[list[int]] = [[]]
        self._dirty: set[int] = set()
        self._total = 0
        self.hash_count = 0  # node hashes computed so far (for the O(k log n) test)

    # ------------------------------------------------------------------ writes

    def append(self, account: str | bytes, amount: int = 0) -> int:
        """Add a leaf at the end; returns its index."""
        self._check_total(self._total + amount, amount)
        i = len(self._accounts)
        a = address_bytes(account)
        self._accounts.append(a)
        self._hashes[0].append(leaf_hash(a, self.token, amount, self.kind))
        self._sums[0].append(amount)
        self._total += amount
        self._dirty.add(i)
        return i

    def set(self, index: int, amount: int) -> None:
        """Set leaf ``index``'s amount (the account stays)."""
        old = self._sums[0][index]
        if amount == old:
            return
        self._check_total(self._total - old + amount, amount)
        self._hashes[0][index] = leaf_hash(self._accounts[index], self.token, amount, self.kind)
        self._sums[0][index] = amount
        self._total += amount - old
        self._dirty.add(index)

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
        hs, ss = self._hashes, self._sums
        level, idx = 0, self._dirty
        while not (len(hs[level]) <= 1 and level == len(hs) - 1):
            if level + 1 == len(hs):
                hs.append([])
                ss.append([])
            below_h, below_s, up_h, up_s = hs[level], ss[level], hs[level + 1], ss[level + 1]
            n = len(below_h)
            parents = sorted({i >> 1 for i in idx})
            for p in parents:
                lh, ls = below_h[2 * p], below_s[2 * p]
                rh, rs = (below_h[2 * p + 1], below_s[2 * p + 1]) if 2 * p + 1 < n else (ZERO_HASH, 0)
                h = keccak(
                    b"\x01" + lh + ls.to_bytes(32, "big") + rh + rs.to_bytes(32, "big")
                )  # == node_hash(lh, ls, rh, rs), inlined: this is the hot loop
                self.hash_count += 1
                if p < len(up_h):
                    up_h[p], up_s[p] = h, ls + rs
                else:
                    up_h.append(h)
                    up_s.append(ls + rs)
            level, idx = level + 1, set(parents)
        self._dirty = set()

    @property
    def root(self) -> bytes:
        """Root hash (``ZERO_HASH`` when empty)."""
        self._flush()
        return self._hashes[-1][0] if self._accounts else ZERO_HASH

    @property
    def total(self) -> int:
        """Sum of all leaf amounts."""
        return self._total

    @property
    def depth(self) -> int:
        """Proof length: ``ceil(log2(n))``."""
        self._flush()
        return len(self._hashes) - 1

    def __len__(self) -> int:
        return len(self._accounts)

    def amount(self, index: int) -> int:
        """Leaf ``index``'s amount."""
        return self._sums[0][index]

    def account(self, index: int) -> bytes:
        """Leaf ``index``'s account (20 bytes)."""
        return self._accounts[index]

    def proof(self, index: int) -> list[ProofNode]:
        """Siblings ``(hash, sum)`` of leaf ``index``, bottom up."""
        if not 0 <= index < len(self._accounts):
            raise IndexError(index)
        self._flush()
        out: list[ProofNode] = []
        i = index
        for level in range(len(self._hashes) - 1):
            hs, ss = self._hashes[level], self._sums[level]
            j = i ^ 1
            out.append((hs[j], ss[j]) if j < len(hs) else (ZERO_HASH, 0))
            i >>= 1
        return out


assert node_hash(ZERO_HASH, 0, ZERO_HASH, 0) == keccak(b"\x01" + b"\x00" * 128)  # the inlined encoding
