"""Ethereum address -> internal u32 account id, and agent-key authorisations, shared by all gateways.

Gateways are stateless and several run at once, so the mapping lives in one append-only text file
under the run's state dir (``accounts.log``), written under an exclusive ``fcntl`` lock and read
incrementally (each process remembers how far it has read and reloads on a miss). Records, one a
line, fields separated by one space, addresses lower-case hex:

    A <address> <account_id>                 account created (ids from 1, dense, never reused)
    G <agent> <account_id> <nonce>           agent key authorised to trade for the account
    R <agent> <account_id> <nonce>           agent key revoked

Invariants: an address maps to exactly one id forever, and ids are assigned in file order under
the lock, so every process derives the same mapping; an agent acts for at most one account; an
agent can trade but never withdraw or manage agents (enforced by the session, which asks
``is_agent``). Agent changes carry the account's nonce, strictly increasing, so a replayed
approval after a revocation is refused. A torn last line (a writer killed mid-write) is ignored
until completed and overwritten by the next writer.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
MAX_ACCOUNT_ID = 0xFFFF_FFFE  # 0 = unset in structs, 0xFFFFFFFF reserved


def normalise_address(address: str) -> str | None:
    """Lower-case 0x-prefixed 20-byte hex, or None if it is not an address."""
    if not isinstance(address, str):
        return None
    a = address.lower()
    return a if _ADDRESS.match(a) else None


@dataclass(frozen=True)
class AgentGrant:
    agent: str
    account_id: int
    nonce: int


class AccountRegistry:
    """Process-local cache over the shared file. Not thread-safe (one per event loop)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "accounts.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._offset = 0
        self._ids: dict[str, int] = {}
        self._addresses: dict[int, str] = {}
        self._agents: dict[str, AgentGrant] = {}
        self._nonces: dict[int, int] = {}
        self._reload()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ---- reading -------------------------------------------------------------------------------
    def _reload(self) -> None:
        size = os.fstat(self._fd).st_size
        if size <= self._offset:
            return
        data = os.pread(self._fd, size - self._offset, self._offset)
        end = data.rfind(b"\n") + 1  # complete lines only
        for line in data[:end].decode("ascii", "replace").splitlines():
            self._apply(line.split(" "))
        self._offset += end

    def _apply(self, parts: list[str]) -> None:
        kind = parts[0] if parts else ""
        try:
            if kind == "A" and len(parts) == 3:
                address, account_id = parts[1], int(parts[2])
                self._ids.setdefault(address, account_id)
                self._addresses.setdefault(account_id, address)
            elif kind in ("G", "R") and len(parts) == 4:
                agent, account_id, nonce = parts[1], int(parts[2]), int(parts[3])
                self._nonces[account_id] = max(self._nonces.get(account_id, 0), nonce)
                if kind == "G":
                    self._agents[agent] = AgentGrant(agent, account_id, nonce)
                elif agent in self._agents and self._agents[agent].account_id == account_id:
                    del self._agents[agent]
        except ValueError:
            pass  # a corrupt line is skipped; the lock makes it unlikely

    # ---- public --------------------------------------------------------------------------------
    def get_account_id(self, address: str) -> int | None:
        """The id of a known address (reloading once on a miss), or None."""
        a = normalise_address(address)
        if a is None:
            return None
        if a not in self._ids:
            self._reload()
        return self._ids.get(a)

    def get_address(self, account_id: int) -> str | None:
        if account_id not in self._addresses:
            self._reload()
        return self._addresses.get(account_id)

    def ensure_account(self, address: str) -> int:
        """The id of ``address``, creating it (under the file lock) on first sight."""
        a = normalise_address(address)
        if a is None:
            raise ValueError(f"not an Ethereum address: {address!r}")
        known = self.get_account_id(a)
        if known is not None:
            return known
        with self._locked():
            if a in self._ids:
                return self._ids[a]
            account_id = len(self._ids) + 1
            if account_id > MAX_ACCOUNT_ID:
                raise OverflowError("account id space exhausted")
            self._append(f"A {a} {account_id}\n")
            return self._ids[a]

    def get_agent(self, agent_address: str) -> AgentGrant | None:
        a = normalise_address(agent_address)
        if a is None:
            return None
        self._reload()  # revocations must be seen promptly: always re-read (cheap: a stat)
        return self._agents.get(a)

    def last_nonce(self, account_id: int) -> int:
        self._reload()
        return self._nonces.get(account_id, 0)

    def authorise_agent(self, account_id: int, agent_address: str, nonce: int) -> bool:
        """Record an approval; False if the nonce is not above the account's last one."""
        return self._agent_change("G", account_id, agent_address, nonce)

    def revoke_agent(self, account_id: int, agent_address: str, nonce: int) -> bool:
        return self._agent_change("R", account_id, agent_address, nonce)

    def _agent_change(self, kind: str, account_id: int, agent_address: str, nonce: int) -> bool:
        a = normalise_address(agent_address)
        if a is None:
            raise ValueError(f"not an Ethereum address: {agent_address!r}")
        with self._locked():
            if nonce <= self._nonces.get(account_id, 0):
                return False
            self._append(f"{kind} {a} {account_id} {nonce}\n")
            return True

    # ---- writing -------------------------------------------------------------------------------
    def _locked(self):  # type: ignore[no-untyped-def]
        registry = self

        class _Lock:
            def __enter__(self) -> None:
                fcntl.flock(registry._fd, fcntl.LOCK_EX)
                registry._truncate_torn_tail()
                registry._reload()

            def __exit__(self, *exc: object) -> None:
                fcntl.flock(registry._fd, fcntl.LOCK_UN)

        return _Lock()

    def _truncate_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            tail_from = max(0, size - 4096)
            data = os.pread(self._fd, size - tail_from, tail_from)
            cut = data.rfind(b"\n")
            os.ftruncate(self._fd, tail_from + cut + 1 if cut >= 0 else tail_from)

    def _append(self, line: str) -> None:
        os.write(self._fd, line.encode("ascii"))
        os.fsync(self._fd)
        self._reload()
