"""The state a batch commits: one account table and, per listed asset, a claims and a liabilities tree.

Invariants:

- one account table, append-only: an account's leaf index is its position in it, the same in the claims
  and liabilities trees of every asset (so an account proves all of its leaves at one index, and a
  forced-withdrawal short serve proves a claim leaf at the index everyone can look up);
- every tree has exactly one leaf per account of the table (zero amounts included), in table order;
- a leaf amount is >= 0 (uint256): what an account owes of a token is a liability leaf, never a
  negative claim; per asset, sum(claims) - sum(liabilities) is what the vault holds for accounts;
- ``take_published_data`` returns exactly the changes since the previous call (new accounts, then the
  final value of each leaf that changed), and ``apply`` of those bytes to a copy of the previous state
  rebuilds every leaf: ``AccountTrees.replay`` over all batches' data reproduces every committed root.

Updates cost O(log n) hashes per changed leaf, paid once per batch when the roots are read.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils.address import to_checksum_address

from settlement.batch_commitments import AssetState
from settlement.incremental_sum_tree import IncrementalSumTree
from settlement.published_data import LeafChange, PublishedData, PublishedDataError
from settlement.sum_tree import CLAIM, LIABILITY, ProofNode, address_bytes

LeafProof = tuple[int, int, list[ProofNode]]
"""The contract's ``EscapeHatch.LeafProof``: ``(amount, leaf index, siblings)``."""


class AccountTrees:
    """Account table + claims and liabilities trees per asset (listing order).

    Parameters
    ----------
    tokens : the listed tokens, in listing order.
    """

    def __init__(self, tokens: Sequence[str | bytes]) -> None:
        self.tokens: list[bytes] = []
        self.accounts: list[bytes] = []
        self._index: dict[bytes, int] = {}
        self._trees: list[dict[int, IncrementalSumTree]] = []
        self._base = 0
        self._changed: dict[tuple[int, int, int], int] = {}
        for t in tokens:
            self.add_token(t)

    # ------------------------------------------------------------------ writes

    def add_token(self, token: str | bytes) -> int:
        """A newly listed token: both of its trees start with a 0 leaf per account. Returns its index."""
        t = address_bytes(token)
        trees = {CLAIM: IncrementalSumTree(t, CLAIM), LIABILITY: IncrementalSumTree(t, LIABILITY)}
        for a in self.accounts:
            for tree in trees.values():
                tree.append(a)
        self.tokens.append(t)
        self._trees.append(trees)
        return len(self.tokens) - 1

    def ensure_account(self, account: str | bytes) -> int:
        """The account's leaf index, appending it (0 leaves everywhere) if new."""
        a = address_bytes(account)
        i = self._index.get(a)
        if i is None:
            i = len(self.accounts)
            self.accounts.append(a)
            self._index[a] = i
            for trees in self._trees:
                for tree in trees.values():
                    tree.append(a)
        return i

    def set_leaf(self, account: str | bytes, asset_index: int, kind: int, amount: int) -> None:
        """Set an account's claim (``kind=CLAIM``) or liability (``kind=LIABILITY``) of an asset."""
        i = self.ensure_account(account)
        self._trees[asset_index][kind].set(i, amount)
        self._changed[(i, asset_index, kind)] = amount

    def take_published_data(self, batch_id: int) -> PublishedData:
        """The published data of the changes since the last call (then forgets them)."""
        changes = [LeafChange(i, a, k, amount) for (i, a, k), amount in self._changed.items()]
        data = PublishedData.build(
            batch_id, len(self.tokens), self._base, list(self.accounts[self._base :]), changes
        )
        self._base = len(self.accounts)
        self._changed = {}
        return data

    def apply(self, data: PublishedData) -> None:
        """Apply a batch's published data to this (previous) state; raises ``PublishedDataError`` if the
        data does not fit it (wrong base account count, an account it adds exists already, an unknown asset)."""
        if data.base_account_count != len(self.accounts):
            raise PublishedDataError(
                f"data extends {data.base_account_count} accounts, the state has {len(self.accounts)}"
            )
        if data.asset_count != len(self.tokens):
            raise PublishedDataError(f"data has {data.asset_count} assets, the state {len(self.tokens)}")
        for a in data.new_accounts:
            if a in self._index:
                raise PublishedDataError(f"account 0x{a.hex()} is in the table already")
            self.ensure_account(a)
        for c in data.changes:
            self._trees[c.asset_index][c.kind].set(c.account_index, c.amount)
        self._base = len(self.accounts)
        self._changed = {}

    @classmethod
    def replay(cls, tokens: Sequence[str | bytes], blobs: Sequence[bytes]) -> AccountTrees:
        """Rebuild the state from the genesis by applying every batch's published data in order (tokens
        listed later are added when a blob's asset count grows)."""
        state = cls(tokens[:0])
        for blob in blobs:
            data = PublishedData.decode(blob)
            while len(state.tokens) < data.asset_count:
                state.add_token(tokens[len(state.tokens)])
            state.apply(data)
        return state

    # ------------------------------------------------------------------ reads

    def index_of(self, account: str | bytes) -> int:
        """The account's leaf index (``KeyError`` if unknown)."""
        return self._index[address_bytes(account)]

    def leaf(self, account: str | bytes, asset_index: int, kind: int) -> int:
        """An account's leaf amount (0 for an unknown account)."""
        i = self._index.get(address_bytes(account))
        return 0 if i is None else self._trees[asset_index][kind].amount(i)

    def tree(self, asset_index: int, kind: int) -> IncrementalSumTree:
        """One tree (read it; write through ``set_leaf``)."""
        return self._trees[asset_index][kind]

    def asset_states(self, prices: Sequence[int]) -> list[AssetState]:
        """The batch's ``AssetState`` per asset, with ``prices`` (micro-USDC per whole token)."""
        out = []
        for i, t in enumerate(self.tokens):
            c, lia = self._trees[i][CLAIM], self._trees[i][LIABILITY]
            out.append(AssetState(to_checksum_address(t), c.root, c.total, lia.root, lia.total, prices[i]))
        return out

    def leaf_proof(self, account: str | bytes, asset_index: int, kind: int) -> LeafProof:
        """``(amount, index, siblings)`` of an account's leaf."""
        i = self.index_of(account)
        tree = self._trees[asset_index][kind]
        return (tree.amount(i), i, tree.proof(i))

    def escape_proofs(self, account: str | bytes) -> tuple[list[LeafProof], list[LeafProof]]:
        """The account's claim and liability proofs of every asset, as ``EscapeHatch.escape`` takes them."""
        n = len(self.tokens)
        return (
            [self.leaf_proof(account, a, CLAIM) for a in range(n)],
            [self.leaf_proof(account, a, LIABILITY) for a in range(n)],
        )
