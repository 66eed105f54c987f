"""The account registry now lives in ``engine.accounts.account_registry`` (gateways and settlement
both read it); this name stays for the gateway's imports until they move."""

from engine.accounts.account_registry import AccountRegistry, AgentGrant, normalise_address

__all__ = ["AccountRegistry", "AgentGrant", "normalise_address"]
