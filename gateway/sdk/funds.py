"""Money in and out for SDK users: ``deposit`` through the chain (web3), ``withdraw`` through the gateway.

``chain`` is the exchange's ``settlement-chain.json`` (chain id, ClearingHouse, Vault, tokens), which
settlement writes into the run directory. A deposit is the user's own transaction to the Vault
(approve, then ``deposit``); the exchange credits it after its confirmations. A withdrawal is
signed here with the account's key (EIP-712, the ClearingHouse's domain) and sent as the gateway's
``withdraw`` op from a session logged in with that same key; the ClearingHouse pays it to
``destination`` after the dispute window.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from eth_account import Account
from web3 import HTTPProvider, Web3

from engine.types.withdrawal_typed_data import withdrawal_typed_data

_ERC20 = [
    {"name": "approve", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
]  # fmt: skip
_VAULT = [
    {"name": "deposit", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint256"},
                {"name": "account", "type": "address"}],
     "outputs": [{"name": "", "type": "uint48"}]},
]  # fmt: skip


def _send(w3: Web3, key: str, fn: Any) -> dict[str, Any]:
    acct = Account.from_key(key)
    tx = fn.build_transaction({"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address)})
    tx_hash = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    receipt = dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60))
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def deposit(
    rpc_url: str, private_key: str, chain: dict[str, Any], token: str, amount: int, account: str | None = None
) -> dict[str, Any]:
    """Approve and deposit ``amount`` base units of ``token`` into the Vault for ``account`` (default:
    the key's own address). Returns the deposit transaction's receipt."""
    w3 = Web3(HTTPProvider(rpc_url))
    me = Account.from_key(private_key).address
    vault = w3.eth.contract(address=Web3.to_checksum_address(chain["vault"]), abi=_VAULT)
    erc20 = w3.eth.contract(address=Web3.to_checksum_address(token), abi=_ERC20)
    _send(w3, private_key, erc20.functions.approve(vault.address, amount))
    return _send(
        w3,
        private_key,
        vault.functions.deposit(erc20.address, amount, Web3.to_checksum_address(account or me)),
    )


def sign_withdrawal(
    private_key: str,
    chain: dict[str, Any],
    token: str,
    amount: int,
    destination: str,
    nonce: int,
    expiry: int,
) -> dict[str, Any]:
    """The ``withdraw`` op's fields, signed by the account's key."""
    acct = Account.from_key(private_key)
    data = withdrawal_typed_data(
        acct.address, Web3.to_checksum_address(token), amount, Web3.to_checksum_address(destination), nonce,
        expiry, int(chain["chain_id"]), Web3.to_checksum_address(chain["clearing_house"]),
    )  # fmt: skip
    sig = Account.sign_typed_data(private_key, full_message=data).signature
    return {
        "op": "withdraw",
        "token": token,
        "amount": str(amount),
        "destination": destination,
        "nonce": nonce,
        "expiry": expiry,
        "signature": "0x" + bytes(sig).hex(),
    }


async def withdraw(
    client: Any,
    private_key: str,
    chain: dict[str, Any],
    token: str,
    amount: int,
    destination: str | None = None,
    nonce: int | None = None,
    expiry_s: int = 86_400,
) -> dict[str, Any]:
    """Ask the gateway (``client``: a logged-in ``HxClient``) to withdraw ``amount`` base units of
    ``token`` to ``destination`` (default: the account itself). Returns the gateway's answer."""
    me = Account.from_key(private_key).address
    msg = sign_withdrawal(
        private_key, chain, token, amount, destination or me,
        secrets.randbits(63) if nonce is None else nonce, int(time.time()) + expiry_s,
    )  # fmt: skip
    answer: dict[str, Any] = await client.request(msg)
    return answer
