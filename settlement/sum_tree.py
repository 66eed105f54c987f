"""Merkle sum tree over one asset's account amounts: root, total, proofs, verification.

Bit for bit the encoding ``contracts/src/libraries/SumTree.sol`` verifies on chain.

Encoding (big-endian, Solidity ``abi.encodePacked``)::

    claim leaf     = keccak256(0x00 || account (20 B) || token (20 B) || amount (uint256, 32 B))        73 B
    liability leaf = keccak256(0x02 || account (20 B) || token (20 B) || amount (uint256, 32 B))        73 B
    node = keccak256(0x01 || left_hash (32 B) || left_sum (32 B) || right_hash (32 B) || right_sum (32 B)) 129 B
    sum(node) = left_sum + right_sum            (must stay below 2**256)

- Two trees per asset (token): claims (what the vault owes each account, ``kind=CLAIM``) and liabilities
  (what each account owes, ``kind=LIABILITY``); the prefixes keep a leaf of one from posing as the other.
  A batch commits them per listed token in listing order (``settlement.batch_commitments``).
- Leaves keep the order they are given in (the batcher sorts them canonically, by account). At every
  level an odd count is padded with the EMPTY node ``(hash 0x00..00, sum 0)``, so all leaves sit at depth
  ``ceil(log2(n))`` and a proof is exactly that many ``(hash, sum)`` siblings, bottom up; sibling ``i``
  is on the left when bit ``i`` of the leaf index is 1.
- One leaf: the root is the leaf hash, the proof is empty. No leaves: root ``0x00..00``, total 0
  (no proof verifies against it).

Invariants (checked by the tests, and by the on-chain verifier):

- ``total == sum(leaf amounts)``; every amount is in ``[0, 2**256)``;
- at most one leaf per account (the contract lets each (account, token) exit once);
- a proof verifies only for the exact ``(account, token, amount, index)`` it was built for, and only
  if the recomputed root sum equals the committed total, so no subset of leaves claims more than it.

Units: amounts are token base units (e.g. micro-USDC for a 6-decimal stablecoin).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
LIABILITY_PREFIX = b"\x02"
CLAIM = 0  # SumTree.CLAIM: the leaf prefix byte of a claims tree
LIABILITY = 2  # SumTree.LIABILITY: the leaf prefix byte of a liabilities tree
ZERO_HASH = b"\x00" * 32
UINT256_MAX = (1 << 256) - 1
MAX_DEPTH = 48  # SumTree.MAX_DEPTH

ProofNode = tuple[bytes, int]
"""A sibling on a proof path: (hash, sum)."""


def address_bytes(address: str | bytes) -> bytes:
    """20-byte form of a ``0x`` hex address (any case) or of 20 raw bytes."""
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError(f"address must be 20 bytes, got {len(address)}")
        return address
    raw = bytes.fromhex(address[2:] if address.startswith(("0x", "0X")) else address)
    if len(raw) != 20:
        raise ValueError(f"address must be 20 bytes, got {len(raw)}")
    return raw


def _prefix(kind: int) -> bytes:
    if kind not in (CLAIM, LIABILITY):
        raise ValueError(f"leaf kind must be CLAIM (0) or LIABILITY (2), got {kind}")
    return bytes([kind])


def leaf_hash(account: str | bytes, token: str | bytes, amount: int, kind: int = CLAIM) -> bytes:
    """``keccak256(kind || account || token || uint256 amount)`` (kind 0x00 claims, 0x02 liabilities)."""
    if not 0 <= amount <= UINT256_MAX:
        raise ValueError("amount out of uint256 range")
    return keccak(_prefix(kind) + address_bytes(account) + address_bytes(token) + amount.to_bytes(32, "big"))


def node_hash(left_hash: bytes, left_sum: int, right_hash: bytes, right_sum: int) -> bytes:
    """``keccak256(0x01 || left_hash || left_sum || right_hash || right_sum)``."""
    return keccak(
        NODE_PREFIX + left_hash + left_sum.to_bytes(32, "big") + right_hash + right_sum.to_bytes(32, "big")
    )


@dataclass(frozen=True, slots=True)
class SumTree:
    """An immutable Merkle sum tree over ``(account, amount)`` leaves of one ``token``.

    Build with :meth:`build`. ``levels_hash[0]`` are the leaf hashes, the last level is the root.
    """

    token: bytes
    kind: int
    accounts: tuple[bytes, ...]
    amounts: tuple[int, ...]
    levels_hash: tuple[tuple[bytes, ...], ...]
    levels_sum: tuple[tuple[int, ...], ...]

    @classmethod
    def build(
        cls, token: str | bytes, leaves: Iterable[tuple[str | bytes, int]], kind: int = CLAIM
    ) -> SumTree:
        """Build the tree; ``leaves`` are ``(account, amount)`` in tree order (at most one per account).

        Raises ``ValueError`` on a duplicate account, a negative or oversize amount, or a total that
        overflows uint256.
        """
        token_b = address_bytes(token)
        prefix = _prefix(kind)
        accounts: list[bytes] = []
        amounts: list[int] = []
        hashes: list[bytes] = []
        seen: set[bytes] = set()
        prefix_token = token_b
        for account, amount in leaves:
            a = address_bytes(account)
            if a in seen:
                raise ValueError(f"duplicate account 0x{a.hex()}")
            seen.add(a)
            if not 0 <= amount <= UINT256_MAX:
                raise ValueError("amount out of uint256 range")
            accounts.append(a)
            amounts.append(amount)
            hashes.append(keccak(prefix + a + prefix_token + amount.to_bytes(32, "big")))
        levels_hash = [tuple(hashes)]
        levels_sum = [tuple(amounts)]
        cur_h, cur_s = hashes, amounts
        while len(cur_h) > 1:
            if len(cur_h) % 2:
                cur_h = [*cur_h, ZERO_HASH]
                cur_s = [*cur_s, 0]
            nxt_h: list[bytes] = []
            nxt_s: list[int] = []
            for i in range(0, len(cur_h), 2):
                ls, rs = cur_s[i], cur_s[i + 1]
                s = ls + rs
                if s > UINT256_MAX:
                    raise ValueError("sum overflows uint256")
                nxt_h.append(
                    keccak(
                        NODE_PREFIX
                        + cur_h[i]
                        + ls.to_bytes(32, "big")
                        + cur_h[i + 1]
                        + rs.to_bytes(32, "big")
                    )
                )
                nxt_s.append(s)
            levels_hash.append(tuple(nxt_h))
            levels_sum.append(tuple(nxt_s))
            cur_h, cur_s = nxt_h, nxt_s
        return cls(token_b, kind, tuple(accounts), tuple(amounts), tuple(levels_hash), tuple(levels_sum))

    @property
    def root(self) -> bytes:
        """Root hash (``ZERO_HASH`` for an empty tree)."""
        return self.levels_hash[-1][0] if self.levels_hash[0] else ZERO_HASH

    @property
    def total(self) -> int:
        """Sum of all leaf amounts (the root's sum)."""
        return self.levels_sum[-1][0] if self.levels_sum[0] else 0

    @property
    def depth(self) -> int:
        """Proof length: ``ceil(log2(leaf count))`` (0 for one leaf or none)."""
        return len(self.levels_hash) - 1

    def __len__(self) -> int:
        return len(self.accounts)

    def index_of(self, account: str | bytes) -> int:
        """Leaf index of ``account`` (``ValueError`` if absent)."""
        return self.accounts.index(address_bytes(account))

    def proof(self, index: int) -> list[ProofNode]:
        """Siblings ``(hash, sum)`` of leaf ``index``, bottom up."""
        if not 0 <= index < len(self.accounts):
            raise IndexError(index)
        out: list[ProofNode] = []
        i = index
        for level in range(self.depth):
            hs, ss = self.levels_hash[level], self.levels_sum[level]
            j = i ^ 1
            out.append((hs[j], ss[j]) if j < len(hs) else (ZERO_HASH, 0))
            i >>= 1
        return out

    def account_at(self, index: int) -> str:
        """Checksummed address of leaf ``index``."""
        return to_checksum_address(self.accounts[index])


def compute_root(
    account: str | bytes,
    token: str | bytes,
    amount: int,
    index: int,
    proof: Sequence[ProofNode],
    kind: int = CLAIM,
) -> tuple[bytes, int] | None:
    """Walk ``proof`` from the leaf up; ``None`` when malformed (as the contract's ``ok == false``)."""
    depth = len(proof)
    if depth > MAX_DEPTH or index < 0 or index >> depth:
        return None
    h = leaf_hash(account, token, amount, kind)
    s = amount
    for i, (sib_h, sib_s) in enumerate(proof):
        if not 0 <= sib_s <= UINT256_MAX or s + sib_s > UINT256_MAX:
            return None
        h = node_hash(h, s, sib_h, sib_s) if (index >> i) & 1 == 0 else node_hash(sib_h, sib_s, h, s)
        s += sib_s
    return h, s


def verify(
    root: bytes,
    total: int,
    account: str | bytes,
    token: str | bytes,
    amount: int,
    index: int,
    proof: Sequence[ProofNode],
    kind: int = CLAIM,
) -> bool:
    """True iff ``(account, token, amount)`` is leaf ``index`` of the tree with ``root`` and ``total``."""
    if root == ZERO_HASH:
        return False
    got = compute_root(account, token, amount, index, proof, kind)
    return got is not None and got == (root, total)
