"""The published data of a batch: enough, with the previous state, to rebuild every leaf of every tree.

Every batch carries these bytes as ``Batch.data``; the ClearingHouse checks the header and hashes the
whole into the batch hash, so they sit in the calldata of the accepted transaction for anyone to read.
Format (all integers big-endian; ``docs/contracts.md`` has the same table)::

    offset  size      field
    0       4         magic 0x68786431 ("hxd1")
    4       8         batch_id (uint64)                  == Batch.batchId        (checked on chain)
    12      1         asset_count (uint8)                == listed tokens        (checked on chain)
    13      4         base_account_count (uint32)        accounts in the table before this batch
    17      4         new_account_count A (uint32)
    21      20 * A    new accounts, in order: they take indices base .. base + A - 1, with a 0 leaf in
                      every tree
    ...     4         change_count C (uint32)
    ...     C * var   change: account_index (uint32) | asset_index (uint8) | kind (uint8: 0 claims,
                      2 liabilities) | amount_len (uint8, 0..32) | amount (amount_len bytes, no leading
                      zero byte; 0 is the empty string)

Rules (``decode`` enforces them; an encoding is canonical, so equal diffs give equal bytes):

- changes are strictly increasing in ``(account_index, asset_index, kind)``, each names a leaf that
  exists after the new accounts are added, and carries the leaf's new value (not a delta);
- a leaf no change names keeps its value; a new account's leaves are 0 unless a change names them;
- a newly listed token (``asset_count`` grew) starts with a 0 leaf for every account in both trees;
- nothing follows the last change.

The account table is shared by all trees: an account's leaf index is the same in the claims and
liabilities trees of every asset (``settlement.account_trees``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from settlement.sum_tree import CLAIM, LIABILITY, UINT256_MAX, address_bytes

MAGIC = bytes.fromhex("68786431")  # "hxd1", ClearingHouse.DATA_MAGIC
HEADER_LEN = 13  # magic, batch id, asset count: what the contract checks


class PublishedDataError(ValueError):
    """The bytes are not a well-formed published data blob."""


@dataclass(frozen=True, slots=True)
class LeafChange:
    """A leaf's new value: ``kind`` is ``sum_tree.CLAIM`` (0) or ``sum_tree.LIABILITY`` (2)."""

    account_index: int
    asset_index: int
    kind: int
    amount: int

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.account_index, self.asset_index, self.kind)


@dataclass(frozen=True, slots=True)
class PublishedData:
    """A decoded published-data blob (see the module docstring)."""

    batch_id: int
    asset_count: int
    base_account_count: int
    new_accounts: tuple[bytes, ...] = ()
    changes: tuple[LeafChange, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        """The canonical bytes (raises ``PublishedDataError`` if the content breaks a rule)."""
        self.check()
        out = bytearray(MAGIC)
        out += self.batch_id.to_bytes(8, "big")
        out += self.asset_count.to_bytes(1, "big")
        out += self.base_account_count.to_bytes(4, "big")
        out += len(self.new_accounts).to_bytes(4, "big")
        for a in self.new_accounts:
            out += a
        out += len(self.changes).to_bytes(4, "big")
        for c in self.changes:
            raw = c.amount.to_bytes(32, "big").lstrip(b"\x00")
            out += c.account_index.to_bytes(4, "big")
            out += bytes((c.asset_index, c.kind, len(raw)))
            out += raw
        return bytes(out)

    def check(self) -> None:
        """Raise ``PublishedDataError`` unless the content follows every rule of the format."""
        if not 0 <= self.batch_id < 1 << 64:
            raise PublishedDataError("batch_id out of uint64 range")
        if not 0 <= self.asset_count < 256:
            raise PublishedDataError("asset_count out of uint8 range")
        accounts = self.base_account_count + len(self.new_accounts)
        if not 0 <= self.base_account_count or accounts >= 1 << 32:
            raise PublishedDataError("account count out of uint32 range")
        if len(self.changes) >= 1 << 32:
            raise PublishedDataError("too many changes")
        for a in self.new_accounts:
            if len(a) != 20:
                raise PublishedDataError("an account is not 20 bytes")
        prev: tuple[int, int, int] | None = None
        for c in self.changes:
            if prev is not None and c.key <= prev:
                raise PublishedDataError(f"changes not strictly increasing at {c.key}")
            prev = c.key
            if not 0 <= c.account_index < accounts:
                raise PublishedDataError(f"account index {c.account_index} out of range")
            if not 0 <= c.asset_index < self.asset_count:
                raise PublishedDataError(f"asset index {c.asset_index} out of range")
            if c.kind not in (CLAIM, LIABILITY):
                raise PublishedDataError(f"kind {c.kind} is neither 0 (claims) nor 2 (liabilities)")
            if not 0 <= c.amount <= UINT256_MAX:
                raise PublishedDataError("amount out of uint256 range")

    @classmethod
    def decode(cls, data: bytes) -> PublishedData:
        """Parse ``data``; raises ``PublishedDataError`` on any deviation from the format."""
        if len(data) < HEADER_LEN + 12 or data[:4] != MAGIC:
            raise PublishedDataError("bad magic or truncated header")
        batch_id = int.from_bytes(data[4:12], "big")
        asset_count = data[12]
        base = int.from_bytes(data[13:17], "big")
        n_new = int.from_bytes(data[17:21], "big")
        pos = 21
        end = pos + 20 * n_new
        if end + 4 > len(data):
            raise PublishedDataError("truncated account list")
        new_accounts = tuple(bytes(data[i : i + 20]) for i in range(pos, end, 20))
        pos = end
        n_changes = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        changes: list[LeafChange] = []
        for _ in range(n_changes):
            if pos + 7 > len(data):
                raise PublishedDataError("truncated change")
            account_index = int.from_bytes(data[pos : pos + 4], "big")
            asset_index, kind, length = data[pos + 4], data[pos + 5], data[pos + 6]
            pos += 7
            if length > 32 or pos + length > len(data):
                raise PublishedDataError("bad amount length")
            raw = data[pos : pos + length]
            if length and raw[0] == 0:
                raise PublishedDataError("amount has a leading zero byte (not canonical)")
            pos += length
            changes.append(LeafChange(account_index, asset_index, kind, int.from_bytes(raw, "big")))
        if pos != len(data):
            raise PublishedDataError("trailing bytes")
        out = cls(batch_id, asset_count, base, new_accounts, tuple(changes))
        out.check()
        return out

    @classmethod
    def build(
        cls,
        batch_id: int,
        asset_count: int,
        base_account_count: int,
        new_accounts: list[str | bytes],
        changes: list[LeafChange],
    ) -> PublishedData:
        """Assemble a blob, sorting the changes into canonical order."""
        return cls(
            batch_id,
            asset_count,
            base_account_count,
            tuple(address_bytes(a) for a in new_accounts),
            tuple(sorted(changes, key=lambda c: c.key)),
        )
