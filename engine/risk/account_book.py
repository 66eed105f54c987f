"""The accounts of one risk partition, as int64 columns (one row per account).

Rows are given to accounts in the order they first appear in the partition's journal, so a
replay gives every account the same row; the arrays grow by doubling. Columns:

* ``balance[row, asset]``: what the account holds (negative: a liability, counted in full);
* ``held[row, asset]``: taken out of the balance for withdrawals that are not paid yet;
* ``perp_size[row, perp]`` (atoms, long > 0), ``perp_cost[row, perp]`` (micro, signed entry
  notional), ``perp_realised[row, perp]``, ``perp_funding[row, perp]`` (micro, over the
  position's life, for reports);
* ``reserved[row]``: held for open orders; ``converting[row]``: the part of it that belongs to
  orders that filled since the last margin recomputation (see ``risk_engine``);
* ``equity``, ``initial``, ``maintenance`` (micro): the last margin recomputation's results;
* ``private_seq[row]``: the last sequence number of the account's private stream (every private
  event it receives carries the next one: gap-free per account, whatever its source);
* ``published_equity``, ``published_initial``, ``published_maintenance``, ``published_seq``: the
  figures of the account's last ACCOUNT_MARGIN and its private sequence number after it (what
  decides whether a price move is news to the account, ``RiskEngine._margin_news``);
* ``exposure[row, asset]`` (float64, micro): each asset's exposure at the last recomputation
  (what the pre-trade bound reads);
* ``dirty[row]``: something changed since then.

Every money column is int64; the risk engine checks each update against int64 (a balance or a
position beyond it is refused, never wrapped).
"""

from __future__ import annotations

import hashlib

import numpy as np

MONEY_COLUMNS = ("balance", "held", "perp_size", "perp_cost", "perp_realised", "perp_funding")
ROW_COLUMNS = (
    "reserved",
    "converting",
    "equity",
    "initial",
    "maintenance",
    "private_seq",
    "published_equity",
    "published_initial",
    "published_maintenance",
    "published_seq",
)


class AccountBook:
    def __init__(self, n_assets: int, n_perps: int, capacity: int = 1024) -> None:
        self.n_assets = n_assets
        self.n_perps = n_perps
        self.rows: dict[int, int] = {}  # account id -> row
        self.ids = np.zeros(capacity, np.uint32)  # row -> account id
        self.count = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self.capacity = capacity
        a, p = self.n_assets, self.n_perps
        self.balance = np.zeros((capacity, a), np.int64)
        self.held = np.zeros((capacity, a), np.int64)
        self.perp_size = np.zeros((capacity, p), np.int64)
        self.perp_cost = np.zeros((capacity, p), np.int64)
        self.perp_realised = np.zeros((capacity, p), np.int64)
        self.perp_funding = np.zeros((capacity, p), np.int64)
        for name in ROW_COLUMNS:
            setattr(self, name, np.zeros(capacity, np.int64))
        self.dirty = np.zeros(capacity, bool)
        self.exposure = np.zeros((capacity, a), np.float64)

    def _grow(self) -> None:
        old = {
            name: getattr(self, name) for name in (*MONEY_COLUMNS, *ROW_COLUMNS, "dirty", "ids", "exposure")
        }
        n = self.count
        self._alloc(self.capacity * 2)
        self.ids = np.zeros(self.capacity, np.uint32)
        for name, arr in old.items():
            getattr(self, name)[:n] = arr[:n]

    def row(self, account: int) -> int:
        """The account's row, created (zeroed) on first use."""
        r = self.rows.get(account)
        if r is None:
            if self.count == self.capacity:
                self._grow()
            r = self.count
            self.count += 1
            self.rows[account] = r
            self.ids[r] = account
        return r

    def find(self, account: int) -> int:
        """The account's row, or -1 if it never appeared."""
        return self.rows.get(account, -1)

    # ---- persistence -----------------------------------------------------------------------------
    def columns(self) -> dict[str, np.ndarray]:
        """The live rows of every column (views)."""
        n = self.count
        out = {name: getattr(self, name)[:n] for name in (*MONEY_COLUMNS, *ROW_COLUMNS)}
        out["dirty"] = self.dirty[:n]
        out["ids"] = self.ids[:n]
        out["exposure"] = self.exposure[:n]
        return out

    def load(self, columns: dict[str, np.ndarray]) -> None:
        n = len(columns["ids"])
        capacity = 1024
        while capacity < n:
            capacity *= 2
        self._alloc(capacity)
        self.ids = np.zeros(capacity, np.uint32)
        for name, arr in columns.items():
            getattr(self, name)[:n] = arr
        self.count = n
        self.rows = {int(a): r for r, a in enumerate(self.ids[:n].tolist())}

    def digest(self) -> str:
        h = hashlib.sha256()
        for name, arr in sorted(self.columns().items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()
