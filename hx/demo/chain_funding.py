"""The demo's money arrives the way a user's does: a deposit into the Vault on the local chain.

When the exchange runs settlement (the default ``hx up``), the gateway's development faucet is off
and every bot is funded on chain: one of anvil's public dev accounts sends the bot's fresh key gas,
the bot mints the local test token (anyone may, on a local chain only), approves the Vault and
deposits; settlement credits the deposit after its confirmations, exactly as for any user. Blocking
web3 calls: the bots run them in a thread.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import HTTPProvider, Web3

from gateway.sdk.funds import deposit

# anvil's dev account 7 (public knowledge, local chains only; the chain stage's roles use 0-5)
FUNDER_KEY = "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"
GAS_WEI = 10**18  # 1 ETH of gas per bot
_BALANCE_ABI = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "who", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]
_MINT_ABI = [
    {
        "name": "mint",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [],
    }
]


class ChainFunder:
    """Funds demo keys on the local chain (one funder, so its transfers are serialised)."""

    def __init__(self, chain: dict[str, Any]) -> None:
        self.chain = chain
        self.rpc_url = str(chain["rpc_url"])
        self.tokens = {t["asset"]: t for t in chain["tokens"] if t.get("asset")}
        self._lock = threading.Lock()

    @classmethod
    def wait_for(cls, state_dir: Path, timeout_s: float = 120.0) -> ChainFunder:
        """Once settlement has written ``settlement-chain.json`` into the run directory."""
        path = state_dir / "settlement-chain.json"
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} not written within {timeout_s}s")
            time.sleep(0.5)
        chain = json.loads(path.read_text())
        manifest = state_dir / "chain" / "manifest.json"  # the local chain's deployment
        if "insurance_fund" not in chain and manifest.exists():
            contracts = json.loads(manifest.read_text()).get("contracts", {})
            chain["insurance_fund"] = contracts.get("InsuranceFund", {}).get("address", "")
        return cls(chain)

    def insurance_fund_micro(self) -> int | None:
        """The InsuranceFund contract's USDC on chain (micro-USDC), or None when unknown."""
        address = self.chain.get("insurance_fund")
        token = self.tokens.get("USDC")
        if not address or token is None:
            return None
        try:
            w3 = Web3(HTTPProvider(self.rpc_url))
            erc20 = w3.eth.contract(address=Web3.to_checksum_address(token["address"]), abi=_BALANCE_ABI)
            raw = int(erc20.functions.balanceOf(Web3.to_checksum_address(address)).call())
        except Exception:  # the chain restarting: show it as unknown, ask again later
            return None
        return raw * 10**6 // 10 ** int(token["decimals"])

    def fund(self, private_key: str, asset: str, amount_units: int) -> dict[str, Any]:
        """Gas, mint ``amount_units`` whole units of ``asset``'s token, approve and deposit it for
        the key's own account. Returns the deposit's receipt."""
        token = self.tokens[asset]
        amount = amount_units * 10 ** int(token["decimals"])
        w3 = Web3(HTTPProvider(self.rpc_url))
        me = Account.from_key(private_key).address
        with self._lock:
            funder = Account.from_key(FUNDER_KEY)
            tx = {
                "to": me,
                "value": GAS_WEI,
                "gas": 21_000,
                "gasPrice": w3.eth.gas_price,
                "nonce": w3.eth.get_transaction_count(funder.address),
                "chainId": int(self.chain["chain_id"]),
            }
            w3.eth.wait_for_transaction_receipt(
                w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction), timeout=60
            )
        erc20 = w3.eth.contract(address=Web3.to_checksum_address(token["address"]), abi=_MINT_ABI)
        mint = erc20.functions.mint(me, amount).build_transaction(
            {"from": me, "nonce": w3.eth.get_transaction_count(me)}
        )
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(Account.from_key(private_key).sign_transaction(mint).raw_transaction),
            timeout=60,
        )
        return deposit(self.rpc_url, private_key, self.chain, token["address"], amount)
