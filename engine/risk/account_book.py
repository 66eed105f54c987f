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
* ``dirty[row]``: something changed since then;
* ``isolated_market[row]``: 0 for an account's own (cross) row; ``market id + 1`` for the row of
  one of its isolated-margin positions.

An isolated position is a row of its own, as dYdX v4 keeps isolated positions in subaccounts of
their own: the row holds the position and, as its USDC balance, the margin allocated to it (moved
from the account's row when the position grows, back when it shrinks or closes). The margin
recompute, the liquidation scan, funding and auto-deleveraging then treat it as they treat any
account: its loss is bounded by its margin, and the owner's other positions never pay for it. Such a
row's ``ids`` entry is its owner's account id (every event for it goes to the owner's private
stream), and ``rows`` finds it under ``row_key(account, market)`` (above 2**32; an account's own
row's key is its id).

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
    "isolated_market",
)


# ``near[row]``: the row's headroom over maintenance is below NEAR_REACH times its maintenance (a
# requirement, equity - maintenance < NEAR_REACH x maintenance in float64), kept by every recompute
# and by ``load``: the accounts a price move can take below maintenance (RiskEngine._nearest)
# found without reading two int64 columns of every account. Derived, not persisted.
NEAR_REACH = 4.0


def near_flags(equity: np.ndarray, maintenance: np.ndarray) -> np.ndarray:
    """``near`` of rows with these figures (the compiled recompute evaluates the same doubles)."""
    head = (equity - maintenance).astype(np.float64)
    return (maintenance > 0) & (head < maintenance.astype(np.float64) * NEAR_REACH)


def row_key(account: int, market_id: int) -> int:
    """The ``AccountBook.rows`` key of an account's isolated position in ``market_id``."""
    return account | (market_id + 1) << 32


class AccountBook:
    def __init__(self, n_assets: int, n_perps: int, capacity: int = 1024) -> None:
        self.n_assets = n_assets
        self.n_perps = n_perps
        self.rows: dict[int, int] = {}  # account id -> row
        self.n_isolated = 0  # rows of isolated positions (0: the hot paths skip looking for them)
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
        self.near = np.zeros(capacity, bool)
        self.exposure = np.zeros((capacity, a), np.float64)

    def _grow(self) -> None:
        old = {
            name: getattr(self, name)
            for name in (*MONEY_COLUMNS, *ROW_COLUMNS, "dirty", "near", "ids", "exposure")
        }
        n = self.count
        self._alloc(self.capacity * 2)
        self.ids = np.zeros(self.capacity, np.uint32)
        for name, arr in old.items():
            getattr(self, name)[:n] = arr[:n]

    def row(self, account: int) -> int:
        """The account's row, created (zeroed) on first use."""
        r = self.rows.get(account)
        return self._new_row(account, account) if r is None else r

    def find(self, account: int) -> int:
        """The account's row, or -1 if it never appeared."""
        return self.rows.get(account, -1)

    def isolated_row(self, account: int, market_id: int) -> int:
        """The row of the account's isolated position in ``market_id``, created on first use (after
        the account's own row: its private sequence numbers are kept there)."""
        key = row_key(account, market_id)
        r = self.rows.get(key)
        if r is None:
            self.row(account)
            r = self._new_row(key, account)
            self.isolated_market[r] = market_id + 1
            self.n_isolated += 1
        return r

    def _new_row(self, key: int, account: int) -> int:
        if self.count == self.capacity:
            self._grow()
        r = self.count
        self.count += 1
        self.rows[key] = r
        self.ids[r] = account
        return r

    def key(self, row: int) -> int:
        """The key ``rows`` finds ``row`` under (the account id for an account's own row)."""
        return int(self.ids[row]) | int(self.isolated_market[row]) << 32

    def owner_row(self, row: int) -> int:
        """The account's own row for ``row`` (itself unless it is an isolated position's)."""
        return self.rows[int(self.ids[row])] if self.isolated_market[row] else row

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
        self.near[:n] = near_flags(self.equity[:n], self.maintenance[:n])
        keys = self.ids[:n].astype(np.int64) | self.isolated_market[:n] << 32
        self.rows = {int(k): r for r, k in enumerate(keys.tolist())}
        self.n_isolated = int(np.count_nonzero(self.isolated_market[:n]))

    def digest(self) -> str:
        h = hashlib.sha256()
        for name, arr in sorted(self.columns().items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()
