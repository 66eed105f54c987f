"""Deploy: the hx contracts to a JSON-RPC endpoint, the role matrix read back, a manifest JSON written.

Order (one account, consecutive nonces; the ClearingHouse address is precomputed so Vault and
InsuranceFund can hold it as an immutable and no one ever holds a "set the clearing house" power):

    [TestToken x3]          local chains only (chain id 31337/1337)
    HxTimelock(delay, governor)
    Vault(CH*, timelock, guardian, tokens)       CH* = create_address(deployer, vault_nonce + 2)
    InsuranceFund(CH*, vault, timelock)
    ClearingHouse(vault, fund, timelock, operator, guardian, freeze_period)   -> must land at CH*

Checks after deployment (``check_deployment``; any failure raises ``DeploymentCheckFailed``):
    - wiring: vault.clearingHouse == fund.clearingHouse == CH, fund.vault == vault, CH.vault/insuranceFund;
    - timelock min delay > freeze period; listed tokens == requested tokens;
    - the role matrix read back with ``hasRole`` equals ``expected_role_matrix``: the deployer holds no
      role anywhere, the timelock is the only admin, operator/guardian hold exactly their one role;
    - the runtime code hash of each contract is recorded in the manifest.

CLI: ``python -m settlement.deploy --rpc-url URL --governor A --operator B --guardian C --out manifest.json``
(the key comes from ``$HX_DEPLOYER_KEY``; ``--local`` uses anvil's dev accounts and test tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from settlement.anvil import DEV_PRIVATE_KEYS, LOCAL_CHAIN_ID
from settlement.chain import Artifact, Chain

LOCAL_CHAIN_IDS = (LOCAL_CHAIN_ID, 1337)
DEFAULT_FREEZE_PERIOD_S = 3 * 24 * 3600
DEFAULT_TIMELOCK_DELAY_S = 7 * 24 * 3600
TEST_TOKENS = (
    ("USD Coin (test)", "USDC", 6),
    ("Wrapped Ether (test)", "WETH", 18),
    ("Wrapped Bitcoin (test)", "WBTC", 8),
)
MANIFEST_VERSION = 1

ADMIN_ROLE = "0x" + "00" * 32


def role_id(name: str) -> str:
    return "0x" + keccak(text=name).hex()


class DeploymentCheckFailed(RuntimeError):
    """The deployment read back differs from what was intended."""


@dataclass(frozen=True)
class DeployConfig:
    """Who holds which role, the delays, and the collateral tokens (empty + test_tokens on local chains)."""

    governor: str
    operator: str
    guardian: str
    freeze_period_s: int = DEFAULT_FREEZE_PERIOD_S
    timelock_delay_s: int = DEFAULT_TIMELOCK_DELAY_S
    tokens: tuple[str, ...] = field(default_factory=tuple)
    test_tokens: bool = False


def expected_role_matrix(principals: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """contract -> role -> the principals (by name) that must hold it; every other principal must not."""
    return {
        "HxTimelock": {
            "DEFAULT_ADMIN_ROLE": ["timelock"],
            "PROPOSER_ROLE": ["governor"],
            "EXECUTOR_ROLE": ["governor"],
            "CANCELLER_ROLE": ["governor"],
        },
        "Vault": {"DEFAULT_ADMIN_ROLE": ["timelock"], "GUARDIAN_ROLE": ["guardian"]},
        "InsuranceFund": {"DEFAULT_ADMIN_ROLE": ["timelock"]},
        "ClearingHouse": {
            "DEFAULT_ADMIN_ROLE": ["timelock"],
            "OPERATOR_ROLE": ["operator"],
            "GUARDIAN_ROLE": ["guardian"],
        },
    }


def deploy(chain: Chain, config: DeployConfig) -> dict[str, Any]:
    """Deploy everything with ``chain``'s account and return the manifest (already checked)."""
    names = {"governor": config.governor, "operator": config.operator, "guardian": config.guardian}
    for who, addr in names.items():
        if addr.lower() == chain.address.lower():
            raise ValueError(f"the deployer must not be the {who}")
    if len({a.lower() for a in names.values()}) != 3:
        raise ValueError("governor, operator and guardian must be distinct")
    if config.timelock_delay_s <= config.freeze_period_s:
        raise ValueError("timelock delay must exceed the freeze period")

    start_block = chain.w3.eth.block_number + 1
    contracts: dict[str, dict[str, Any]] = {}
    artifacts: dict[str, Artifact] = {}

    def _deploy(key: str, name: str, *args: Any) -> Any:
        art = artifacts.setdefault(name, Artifact.load(name))
        c, receipt = chain.deploy(art, *args)
        contracts[key] = {
            "contract": name,
            "address": c.address,
            "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
            "block": receipt["blockNumber"],
            "artifact_sha256": art.file_sha256,
            "creation_code_keccak": "0x" + keccak(art.bytecode).hex(),
        }
        return c

    tokens = [to_checksum_address(t) for t in config.tokens]
    if config.test_tokens:
        if chain.chain_id not in LOCAL_CHAIN_IDS:
            raise ValueError(f"test tokens are for local chains only (chain id {chain.chain_id})")
        for tname, symbol, decimals in TEST_TOKENS:
            tokens.append(_deploy(f"token:{symbol}", "TestToken", tname, symbol, decimals).address)
    if not tokens:
        raise ValueError("no collateral tokens")

    timelock = _deploy("HxTimelock", "HxTimelock", config.timelock_delay_s, config.governor)
    ch_predicted = chain.predict_address(2)
    vault = _deploy("Vault", "Vault", ch_predicted, timelock.address, config.guardian, tokens)
    fund = _deploy("InsuranceFund", "InsuranceFund", ch_predicted, vault.address, timelock.address)
    ch = _deploy(
        "ClearingHouse",
        "ClearingHouse",
        vault.address,
        fund.address,
        timelock.address,
        config.operator,
        config.guardian,
        config.freeze_period_s,
    )
    if ch.address != ch_predicted:
        raise DeploymentCheckFailed(f"ClearingHouse at {ch.address}, expected {ch_predicted}")

    for c in contracts.values():
        c["runtime_code_keccak"] = chain.code_hash(c["address"])
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "chain_id": chain.chain_id,
        "deployer": chain.address,
        "start_block": start_block,
        "block": max(c["block"] for c in contracts.values()),
        "config": {**asdict(config), "tokens": tokens},
        "principals": {**names, "timelock": timelock.address, "deployer": chain.address},
        "contracts": contracts,
        "tokens": tokens,
    }
    manifest["roles"] = check_deployment(chain, manifest)
    return manifest


def check_deployment(chain: Chain, manifest: dict[str, Any]) -> dict[str, dict[str, dict[str, bool]]]:
    """Read the wiring and the role matrix back from the chain; raise on any difference.

    Returns the matrix actually read: contract -> role -> principal -> holds.
    """
    principals: dict[str, str] = manifest["principals"]
    addr = {k: v["address"] for k, v in manifest["contracts"].items()}
    tl = chain.at(Artifact.load("HxTimelock"), addr["HxTimelock"])
    vault = chain.at(Artifact.load("Vault"), addr["Vault"])
    fund = chain.at(Artifact.load("InsuranceFund"), addr["InsuranceFund"])
    ch = chain.at(Artifact.load("ClearingHouse"), addr["ClearingHouse"])
    problems: list[str] = []

    def expect(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"{what}: got {got!r}, want {want!r}")

    expect("vault.clearingHouse", vault.functions.clearingHouse().call(), ch.address)
    expect("fund.clearingHouse", fund.functions.clearingHouse().call(), ch.address)
    expect("fund.vault", fund.functions.vault().call(), vault.address)
    expect("ch.vault", ch.functions.vault().call(), vault.address)
    expect("ch.insuranceFund", ch.functions.insuranceFund().call(), fund.address)
    freeze = ch.functions.freezePeriod().call()
    delay = tl.functions.getMinDelay().call()
    expect("ch.freezePeriod", freeze, manifest["config"]["freeze_period_s"])
    expect("timelock.minDelay", delay, manifest["config"]["timelock_delay_s"])
    if not delay > freeze:
        problems.append(f"timelock delay {delay} must exceed freeze period {freeze}")
    expect("vault.listedTokens", list(vault.functions.listedTokens().call()), list(manifest["tokens"]))
    expect("ch.lastBatchId", ch.functions.lastBatchId().call(), 0)

    bound = {"HxTimelock": tl, "Vault": vault, "InsuranceFund": fund, "ClearingHouse": ch}
    matrix: dict[str, dict[str, dict[str, bool]]] = {}
    for cname, roles in expected_role_matrix(principals).items():
        matrix[cname] = {}
        for rname, holders in roles.items():
            rid = ADMIN_ROLE if rname == "DEFAULT_ADMIN_ROLE" else role_id(rname)
            onchain = "0x" + bytes(getattr(bound[cname].functions, rname)().call()).hex()
            expect(f"{cname}.{rname} id", onchain, rid)
            matrix[cname][rname] = {}
            for pname, paddr in principals.items():
                holds = bool(bound[cname].functions.hasRole(rid, paddr).call())
                matrix[cname][rname][pname] = holds
                expect(f"{cname}.{rname}[{pname}]", holds, pname in holders)
    if problems:
        raise DeploymentCheckFailed("; ".join(problems))
    return matrix


def write_manifest(manifest: dict[str, Any], path: str | os.PathLike[str]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m settlement.deploy", description=__doc__.splitlines()[0])
    ap.add_argument("--rpc-url", default="http://127.0.0.1:8545")
    ap.add_argument("--local", action="store_true", help="anvil dev accounts for roles + test tokens")
    ap.add_argument("--governor")
    ap.add_argument("--operator")
    ap.add_argument("--guardian")
    ap.add_argument("--token", action="append", default=[], help="collateral token address (repeat)")
    ap.add_argument("--freeze-period", type=int, default=DEFAULT_FREEZE_PERIOD_S, help="seconds")
    ap.add_argument("--timelock-delay", type=int, default=DEFAULT_TIMELOCK_DELAY_S, help="seconds")
    ap.add_argument("--out", default="var/deploy/manifest.json")
    args = ap.parse_args(argv)

    from eth_account import Account

    key = os.environ.get("HX_DEPLOYER_KEY") or (DEV_PRIVATE_KEYS[0] if args.local else None)
    if not key:
        ap.error("set HX_DEPLOYER_KEY (or --local)")
    if args.local:
        dev = [Account.from_key(k).address for k in DEV_PRIVATE_KEYS[1:4]]
        args.governor, args.operator, args.guardian = (
            args.governor or dev[0],
            args.operator or dev[1],
            args.guardian or dev[2],
        )
    if not (args.governor and args.operator and args.guardian):
        ap.error("--governor, --operator and --guardian are required")
    chain = Chain(args.rpc_url, key)
    config = DeployConfig(
        governor=to_checksum_address(args.governor),
        operator=to_checksum_address(args.operator),
        guardian=to_checksum_address(args.guardian),
        freeze_period_s=args.freeze_period,
        timelock_delay_s=args.timelock_delay,
        tokens=tuple(args.token),
        test_tokens=args.local,
    )
    manifest = deploy(chain, config)
    write_manifest(manifest, args.out)
    print(
        json.dumps({"manifest": str(args.out), **{k: v["address"] for k, v in manifest["contracts"].items()}})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
