"""Login and agent approval: EIP-712 typed data, server-issued challenges, signature recovery.

Login: the client asks for a challenge (32 random bytes, single use, expiring, bound to the
connection it was issued on), signs the typed-data ``Login`` message below with the account's key
or with an authorised agent key, and sends the signature back. The gateway rebuilds the same
typed data, recovers the signer and checks it: the signer is the account itself, or an agent the
registry says acts for that account. Replays fail because a challenge is deleted on first use
(successful or not) and is only valid on its own connection; an expired one fails with
``CHALLENGE_EXPIRED``.

Agent approval: the account's main key signs ``ApproveAgent`` (or ``RevokeAgent``) with a nonce
strictly above the account's previous one, so an old approval cannot be replayed after a revoke.

The typed data itself (domain, ``Login``, ``ApproveAgent``, ``RevokeAgent``) is defined once in
``gateway.protocol.signing``, which the SDK signs with.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from engine.accounts.account_registry import AccountRegistry, normalise_address
from engine.types.enums import RejectCode
from gateway.protocol.signing import DEFAULT_CHAIN_ID, agent_typed_data, login_typed_data, recover_signer

DEFAULT_CHALLENGE_TTL_S = 10.0
MAX_CHALLENGES_PER_CONNECTION = 4


@dataclass
class Challenge:
    nonce_hex: str
    expires_at_ms: int
    connection_id: int


@dataclass(frozen=True)
class LoginResult:
    code: int  # RejectCode
    account_id: int = 0
    address: str = ""
    signer: str = ""
    is_agent: bool = False


class Authenticator:
    """Issues challenges and checks logins and agent changes for one gateway process."""

    def __init__(
        self,
        registry: AccountRegistry,
        chain_id: int = DEFAULT_CHAIN_ID,
        challenge_ttl_s: float = DEFAULT_CHALLENGE_TTL_S,
    ) -> None:
        self.registry = registry
        self.chain_id = chain_id
        self.ttl_ms = int(challenge_ttl_s * 1000)
        self._challenges: dict[str, Challenge] = {}
        self._per_connection: dict[int, list[str]] = {}

    def issue_challenge(self, connection_id: int) -> Challenge:
        mine = self._per_connection.setdefault(connection_id, [])
        while len(mine) >= MAX_CHALLENGES_PER_CONNECTION:  # oldest outstanding one is dropped
            self._challenges.pop(mine.pop(0), None)
        nonce_hex = "0x" + os.urandom(32).hex()
        ch = Challenge(nonce_hex, int(time.time() * 1000) + self.ttl_ms, connection_id)
        self._challenges[nonce_hex] = ch
        mine.append(nonce_hex)
        return ch

    def forget_connection(self, connection_id: int) -> None:
        for nonce in self._per_connection.pop(connection_id, []):
            self._challenges.pop(nonce, None)

    def purge_expired(self, grace_ms: int = 60_000) -> None:
        """Forget challenges expired for over ``grace_ms`` (until then a late login hears EXPIRED)."""
        now = int(time.time() * 1000) - grace_ms
        for nonce in [n for n, c in self._challenges.items() if c.expires_at_ms < now]:
            ch = self._challenges.pop(nonce)
            lst = self._per_connection.get(ch.connection_id)
            if lst and nonce in lst:
                lst.remove(nonce)

    def check_login(
        self, connection_id: int, account: Any, signer: Any, nonce_hex: Any, signature: Any
    ) -> LoginResult:
        """Consume the challenge and verify; the result's code is OK or the reason."""
        if not all(isinstance(v, str) for v in (account, signer, nonce_hex, signature)):
            return LoginResult(RejectCode.BAD_FIELD)
        account_a, signer_a = normalise_address(account), normalise_address(signer)
        if account_a is None or signer_a is None:
            return LoginResult(RejectCode.BAD_FIELD)
        nonce_hex = nonce_hex.lower()
        ch = self._challenges.get(nonce_hex)
        if ch is None or ch.connection_id != connection_id:
            return LoginResult(RejectCode.CHALLENGE_UNKNOWN)
        del self._challenges[nonce_hex]  # single use, whatever happens next
        lst = self._per_connection.get(connection_id)
        if lst and nonce_hex in lst:
            lst.remove(nonce_hex)
        if ch.expires_at_ms < int(time.time() * 1000):
            return LoginResult(RejectCode.CHALLENGE_EXPIRED)
        typed = login_typed_data(self.chain_id, account_a, signer_a, nonce_hex, ch.expires_at_ms)
        if recover_signer(typed, signature) != signer_a:
            return LoginResult(RejectCode.BAD_SIGNATURE)
        if signer_a == account_a:
            return LoginResult(
                RejectCode.OK, self.registry.ensure_account(account_a), account_a, signer_a, False
            )
        grant = self.registry.get_agent(signer_a)
        account_id = self.registry.get_account_id(account_a)
        if grant is None or account_id is None or grant.account_id != account_id:
            return LoginResult(RejectCode.AGENT_NOT_AUTHORISED)
        return LoginResult(RejectCode.OK, account_id, account_a, signer_a, True)

    def check_agent_change(self, kind: str, account: Any, agent: Any, nonce: Any, signature: Any) -> int:
        """Verify an ApproveAgent/RevokeAgent signed by the account's main key and record it."""
        if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 < nonce < 1 << 64:
            return RejectCode.BAD_FIELD
        if not all(isinstance(v, str) for v in (account, agent, signature)):
            return RejectCode.BAD_FIELD
        account_a, agent_a = normalise_address(account), normalise_address(agent)
        if account_a is None or agent_a is None or account_a == agent_a:
            return RejectCode.BAD_FIELD
        typed = agent_typed_data(self.chain_id, kind, account_a, agent_a, nonce)
        if recover_signer(typed, signature) != account_a:
            return RejectCode.BAD_SIGNATURE
        account_id = self.registry.ensure_account(account_a)
        if kind == "ApproveAgent":
            existing = self.registry.get_agent(agent_a)
            if existing is not None and existing.account_id != account_id:
                return RejectCode.AGENT_NOT_AUTHORISED  # an agent acts for one account only
            ok = self.registry.authorise_agent(account_id, agent_a, nonce)
        else:
            ok = self.registry.revoke_agent(account_id, agent_a, nonce)
        return RejectCode.OK if ok else RejectCode.BAD_NONCE
