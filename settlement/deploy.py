"""Deploy: the hx contracts to a JSON-RPC endpoint, the role matrix read back, a manifest JSON written.

Order (one account, consecutive nonces; the ClearingHouse and EscapeHatch addresses are precomputed so the
Vault and InsuranceFund hold them as immutables and no one ever holds a "set the clearing house" power):

    [TestToken x3]          local chains only (chain id 31337/1337)
    HxTimelock(delay, floor, governor)
    Vault(CH*, HATCH*, timelock, guardian, maxPause, tokens)   CH* = create_address(deployer, vault_nonce + 2)
    InsuranceFund(CH*, vault, timelock)                         HATCH* = create_address(deployer, vault_nonce + 3)
    ClearingHouse(vault, fund, timelock, operator, guardian, watchers, periods, caps, feeds) -> must land at CH*
    EscapeHatch(CH)                                                                      -> must land at HATCH*

Checks before sending (``check_config``, raises ``ValueError``) mirror the contracts' constructor rules.
Checks after deployment (``check_deployment``; any failure raises ``DeploymentCheckFailed``):
    - wiring: vault.clearingHouse == fund.clearingHouse == CH, vault.escapeHatch == hatch, fund.vault == vault,
      CH.vault/insuranceFund/escapeHatch, hatch.clearingHouse/vault;
    - every period, the timelock's delay and floor (> freeze and forced-withdrawal periods), the outflow caps,
      the listed tokens, and each token's price feed (none where none was given);
    - the role matrix read back with ``hasRole`` equals ``expected_role_matrix``: the deployer holds no role
      anywhere, the timelock is the only admin, operator/guardian/watchers hold exactly their roles;
    - the runtime code hash of each contract is recorded in the manifest.

CLI: ``python -m settlement.deploy --rpc-url URL --governor A --operator B --guardian C --watcher W
--token T --cap N --price-feed T=FEED,DEV_PPM,AGE_S ... --out manifest.json`` (the key comes from
``$HX_DEPLOYER_KEY``; ``--local`` uses anvil's dev accounts and test tokens with their default caps). Every
``--token`` but the first (the numeraire) needs a ``--price-feed`` unless ``--allow-unbounded-prices``: without
one, a stolen operator key can commit any price for it (audit A-1); the feeds are set by the ClearingHouse's
constructor, so they bound the very first batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from settlement.anvil import DEV_PRIVATE_KEYS, LOCAL_CHAIN_ID
from settlement.chain import Artifact, Chain

LOCAL_CHAIN_IDS = (LOCAL_CHAIN_ID, 1337)
HOUR_S = 3600
DAY_S = 24 * HOUR_S
# Defaults and why: docs/contracts.md, "The numbers".
DEFAULT_FREEZE_PERIOD_S = 3 * DAY_S
DEFAULT_DISPUTE_WINDOW_S = 6 * HOUR_S
DEFAULT_FORCED_WITHDRAWAL_PERIOD_S = 3 * DAY_S  # > dispute + outflow + pause (audit A-5)
DEFAULT_DEPOSIT_CREDIT_PERIOD_S = 1 * DAY_S
DEFAULT_OUTFLOW_PERIOD_S = 1 * DAY_S
DEFAULT_MAX_PAUSE_S = 1 * DAY_S
DEFAULT_TIMELOCK_DELAY_S = 7 * DAY_S
DEFAULT_TIMELOCK_FLOOR_S = 4 * DAY_S
# name, symbol, decimals, default outflow cap per period (local chains only)
TEST_TOKENS = (
    ("USD Coin (test)", "USDC", 6, 1_000_000 * 10**6),
    ("Wrapped Ether (test)", "WETH", 18, 300 * 10**18),
    ("Wrapped Bitcoin (test)", "WBTC", 8, 15 * 10**8),
)
MANIFEST_VERSION = 2

ADMIN_ROLE = "0x" + "00" * 32


def role_id(name: str) -> str:
    return "0x" + keccak(text=name).hex()


class DeploymentCheckFailed(RuntimeError):
    """The deployment read back differs from what was intended."""


@dataclass(frozen=True)
class DeployConfig:
    """Who holds which role, the periods (seconds), and the collateral tokens with their outflow caps per
    period (on local chains ``test_tokens`` adds the three test tokens with their default caps)."""

    governor: str
    operator: str
    guardian: str
    watchers: tuple[str, ...] = ()
    freeze_period_s: int = DEFAULT_FREEZE_PERIOD_S
    dispute_window_s: int = DEFAULT_DISPUTE_WINDOW_S
    forced_withdrawal_period_s: int = DEFAULT_FORCED_WITHDRAWAL_PERIOD_S
    deposit_credit_period_s: int = DEFAULT_DEPOSIT_CREDIT_PERIOD_S
    outflow_period_s: int = DEFAULT_OUTFLOW_PERIOD_S
    max_pause_s: int = DEFAULT_MAX_PAUSE_S
    timelock_delay_s: int = DEFAULT_TIMELOCK_DELAY_S
    timelock_floor_s: int = DEFAULT_TIMELOCK_FLOOR_S
    tokens: tuple[str, ...] = field(default_factory=tuple)
    outflow_caps: tuple[int, ...] = field(default_factory=tuple)
    test_tokens: bool = False
    # (token, feed, max deviation ppm, max age s): set by the ClearingHouse's constructor, so prices are bounded
    # from the first batch (audit A-1). A token is an address, or a test token's symbol on a local chain.
    price_feeds: tuple[tuple[str, str, int, int], ...] = ()
    # a deployment without test tokens must give every token but the numeraire a feed, unless this says not to
    allow_unbounded_prices: bool = False

    def periods(self) -> tuple[int, int, int, int, int, int]:
        """The ClearingHouse's ``Config`` tuple."""
        return (
            self.freeze_period_s,
            self.dispute_window_s,
            self.forced_withdrawal_period_s,
            self.deposit_credit_period_s,
            self.outflow_period_s,
            self.max_pause_s,
        )


def check_config(c: DeployConfig) -> None:
    """The contracts' constructor rules, checked before anything is sent (``ValueError``)."""
    if min(c.periods()) <= 0:
        raise ValueError("every period must be > 0")
    if c.dispute_window_s >= c.freeze_period_s:
        raise ValueError("the dispute window must be shorter than the freeze period")
    if c.max_pause_s >= c.freeze_period_s:
        raise ValueError("a pause must be shorter than the freeze period")
    if c.forced_withdrawal_period_s <= c.dispute_window_s + c.outflow_period_s + c.max_pause_s:
        raise ValueError(
            "the forced-withdrawal period must exceed dispute window + outflow period + max pause"
        )
    needed = max(c.freeze_period_s, c.forced_withdrawal_period_s)
    if c.timelock_floor_s <= needed:
        raise ValueError(
            f"the timelock floor must exceed the freeze and forced-withdrawal periods ({needed} s)"
        )
    if c.timelock_delay_s < c.timelock_floor_s:
        raise ValueError("the timelock delay must be at least its floor")
    symbols = {symbol for _n, symbol, _d, _c in TEST_TOKENS} if c.test_tokens else set()
    listed = {t.lower() for t in c.tokens}
    for token, feed, deviation_ppm, age_s in c.price_feeds:
        if token.lower() not in listed and token not in symbols:
            raise ValueError(f"price feed for {token}: not a listed token")
        if (c.tokens and token.lower() == c.tokens[0].lower()) or (
            not c.tokens and token == TEST_TOKENS[0][1]
        ):
            raise ValueError(f"price feed for {token}: the numeraire (the first token) is pinned, never fed")
        if not (0 < deviation_ppm <= MAX_DEVIATION_PPM) or age_s <= 0 or not is_address(feed):
            raise ValueError(
                f"price feed for {token}: a feed address, 0 < max deviation <= {MAX_DEVIATION_PPM} ppm, "
                "max age > 0 s"
            )
    fed = {t.lower() for t, *_ in c.price_feeds}
    unfed = [t for t in c.tokens[1:] if t.lower() not in fed]
    if not c.test_tokens and unfed and not c.allow_unbounded_prices:
        raise ValueError(
            f"no price feed for {unfed}: a stolen operator key could commit any price for them (audit A-1); "
            "give each a feed (--price-feed) or say --allow-unbounded-prices"
        )
    if len(c.outflow_caps) != len(c.tokens):
        raise ValueError("one outflow cap per token (--cap, in token base units per outflow period)")
    if any(cap < 0 for cap in c.outflow_caps):
        raise ValueError("outflow caps must be >= 0")


def expected_role_matrix(principals: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """contract -> role -> the principals (by name) that must hold it; every other principal must not."""
    watchers = sorted(k for k in principals if k.startswith("watcher:"))
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
            "WATCHER_ROLE": watchers,
        },
    }


MAX_DEVIATION_PPM = 500_000  # PriceBounds.MAX_DEVIATION_PPM


def _initial_feed(f: tuple[str, str, int, int], tokens: list[str]) -> tuple[str, str, int, int]:
    """A ``ClearingHouse.InitialPriceFeed`` of ``price_feeds``' entry (a test token's symbol resolved)."""
    token, feed, deviation_ppm, age_s = f
    if not is_address(token):
        token = tokens[len(tokens) - len(TEST_TOKENS) + [s for _n, s, _d, _c in TEST_TOKENS].index(token)]
    return (to_checksum_address(token), to_checksum_address(feed), deviation_ppm, age_s)


def deploy(chain: Chain, config: DeployConfig) -> dict[str, Any]:
    """Deploy everything with ``chain``'s account and return the manifest (already checked)."""
    names = {"governor": config.governor, "operator": config.operator, "guardian": config.guardian}
    for i, w in enumerate(config.watchers):
        names[f"watcher:{i}"] = w
    for who, addr in names.items():
        if addr.lower() == chain.address.lower():
            raise ValueError(f"the deployer must not be the {who}")
    if len({a.lower() for a in names.values()}) != len(names):
        raise ValueError("governor, operator, guardian and watchers must be distinct")
    check_config(config)
    caps = list(config.outflow_caps)
    if config.test_tokens:
        caps += [cap for *_, cap in TEST_TOKENS]

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
        for tname, symbol, decimals, _cap in TEST_TOKENS:
            tokens.append(_deploy(f"token:{symbol}", "TestToken", tname, symbol, decimals).address)
    if not tokens:
        raise ValueError("no collateral tokens")

    timelock = _deploy(
        "HxTimelock", "HxTimelock", config.timelock_delay_s, config.timelock_floor_s, config.governor
    )
    feeds = [_initial_feed(f, tokens) for f in config.price_feeds]
    ch_predicted = chain.predict_address(2)
    hatch_predicted = chain.predict_address(3)
    vault = _deploy(
        "Vault",
        "Vault",
        ch_predicted,
        hatch_predicted,
        timelock.address,
        config.guardian,
        config.max_pause_s,
        tokens,
    )
    fund = _deploy("InsuranceFund", "InsuranceFund", ch_predicted, vault.address, timelock.address)
    ch = _deploy(
        "ClearingHouse",
        "ClearingHouse",
        vault.address,
        fund.address,
        timelock.address,
        config.operator,
        config.guardian,
        [to_checksum_address(w) for w in config.watchers],
        config.periods(),
        caps,
        feeds,
    )
    hatch = _deploy("EscapeHatch", "EscapeHatch", ch.address)
    if ch.address != ch_predicted:
        raise DeploymentCheckFailed(f"ClearingHouse at {ch.address}, expected {ch_predicted}")
    if hatch.address != hatch_predicted:
        raise DeploymentCheckFailed(f"EscapeHatch at {hatch.address}, expected {hatch_predicted}")

    for c in contracts.values():
        c["runtime_code_keccak"] = chain.code_hash(c["address"])
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "chain_id": chain.chain_id,
        "deployer": chain.address,
        "start_block": start_block,
        "block": max(c["block"] for c in contracts.values()),
        "config": {**asdict(config), "tokens": tokens, "outflow_caps": caps},
        "principals": {**names, "timelock": timelock.address, "deployer": chain.address},
        "contracts": contracts,
        "tokens": tokens,
        "price_feeds": [list(f) for f in feeds],
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
    hatch = chain.at(Artifact.load("EscapeHatch"), addr["EscapeHatch"])
    cfg = manifest["config"]
    problems: list[str] = []

    def expect(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"{what}: got {got!r}, want {want!r}")

    expect("vault.clearingHouse", vault.functions.clearingHouse().call(), ch.address)
    expect("fund.clearingHouse", fund.functions.clearingHouse().call(), ch.address)
    expect("fund.vault", fund.functions.vault().call(), vault.address)
    expect("ch.vault", ch.functions.vault().call(), vault.address)
    expect("ch.insuranceFund", ch.functions.insuranceFund().call(), fund.address)
    expect("ch.escapeHatch", ch.functions.escapeHatch().call(), hatch.address)
    expect("vault.escapeHatch", vault.functions.escapeHatch().call(), hatch.address)
    expect("hatch.clearingHouse", hatch.functions.clearingHouse().call(), ch.address)
    expect("hatch.vault", hatch.functions.vault().call(), vault.address)
    periods = {
        "freezePeriod": "freeze_period_s",
        "disputeWindow": "dispute_window_s",
        "forcedWithdrawalPeriod": "forced_withdrawal_period_s",
        "depositCreditPeriod": "deposit_credit_period_s",
        "outflowPeriod": "outflow_period_s",
        "maxPause": "max_pause_s",
    }
    for fn, key in periods.items():
        expect(f"ch.{fn}", getattr(ch.functions, fn)().call(), cfg[key])
    expect("vault.maxPause", vault.functions.maxPause().call(), cfg["max_pause_s"])
    expect("hatch.forcedWithdrawalPeriod", hatch.functions.forcedWithdrawalPeriod().call(),
           cfg["forced_withdrawal_period_s"])  # fmt: skip
    delay = tl.functions.getMinDelay().call()
    floor = tl.functions.delayFloor().call()
    expect("timelock.minDelay", delay, cfg["timelock_delay_s"])
    expect("timelock.delayFloor", floor, cfg["timelock_floor_s"])
    needed = max(cfg["freeze_period_s"], cfg["forced_withdrawal_period_s"])
    if not floor > needed or delay < floor:
        problems.append(f"timelock delay {delay} / floor {floor} must be >= floor > {needed}")
    listed = list(vault.functions.listedTokens().call())
    expect("vault.listedTokens", listed, list(manifest["tokens"]))
    expect("ch.outflowCap", [ch.functions.outflowCap(t).call() for t in listed], list(cfg["outflow_caps"]))
    expect("ch.lastBatchId", ch.functions.lastBatchId().call(), 0)
    bounds = chain.at(Artifact.load("PriceBounds"), ch.functions.priceBounds().call())
    feeds = {t: (f, d, a) for t, f, d, a in manifest.get("price_feeds", [])}
    for t in listed[1:]:
        got = tuple(bounds.functions.priceFeed(t).call())
        expect(f"priceBounds.priceFeed({t})", got, feeds.get(t, ("0x" + "00" * 20, 0, 0)))

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
    ap.add_argument("--watcher", action="append", default=[], help="watcher address (repeat)")
    ap.add_argument("--token", action="append", default=[], help="collateral token address (repeat)")
    ap.add_argument("--cap", action="append", type=int, default=[],
                    help="outflow cap per period of the matching --token, in base units (repeat)")  # fmt: skip
    ap.add_argument("--price-feed", action="append", default=[], metavar="TOKEN=FEED,DEVIATION_PPM,MAX_AGE_S",
                    help="a Chainlink-ABI price feed for a listed token (or a test token's symbol), set by the "
                    "constructor (repeat); every --token but the first needs one (audit A-1)")  # fmt: skip
    ap.add_argument("--allow-unbounded-prices", action="store_true",
                    help="deploy although a --token has no --price-feed (its prices are then unchecked)")  # fmt: skip
    ap.add_argument("--freeze-period", type=int, default=DEFAULT_FREEZE_PERIOD_S, help="seconds")
    ap.add_argument("--dispute-window", type=int, default=DEFAULT_DISPUTE_WINDOW_S, help="seconds")
    ap.add_argument("--forced-period", type=int, default=DEFAULT_FORCED_WITHDRAWAL_PERIOD_S, help="seconds")
    ap.add_argument("--credit-period", type=int, default=DEFAULT_DEPOSIT_CREDIT_PERIOD_S, help="seconds")
    ap.add_argument("--outflow-period", type=int, default=DEFAULT_OUTFLOW_PERIOD_S, help="seconds")
    ap.add_argument("--max-pause", type=int, default=DEFAULT_MAX_PAUSE_S, help="seconds")
    ap.add_argument("--timelock-delay", type=int, default=DEFAULT_TIMELOCK_DELAY_S, help="seconds")
    ap.add_argument("--timelock-floor", type=int, default=DEFAULT_TIMELOCK_FLOOR_S, help="seconds")
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
        if not args.watcher:
            args.watcher = [Account.from_key(DEV_PRIVATE_KEYS[5]).address]
    if not (args.governor and args.operator and args.guardian):
        ap.error("--governor, --operator and --guardian are required")
    feeds = []
    for spec in args.price_feed:
        token, _, rest = spec.partition("=")
        parts = rest.split(",")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            ap.error(f"--price-feed {spec!r}: TOKEN=FEED,DEVIATION_PPM,MAX_AGE_S")
        feeds.append((token, parts[0], int(parts[1]), int(parts[2])))
    chain = Chain(args.rpc_url, key)
    config = DeployConfig(
        governor=to_checksum_address(args.governor),
        operator=to_checksum_address(args.operator),
        guardian=to_checksum_address(args.guardian),
        watchers=tuple(to_checksum_address(w) for w in args.watcher),
        freeze_period_s=args.freeze_period,
        dispute_window_s=args.dispute_window,
        forced_withdrawal_period_s=args.forced_period,
        deposit_credit_period_s=args.credit_period,
        outflow_period_s=args.outflow_period,
        max_pause_s=args.max_pause,
        timelock_delay_s=args.timelock_delay,
        timelock_floor_s=args.timelock_floor,
        tokens=tuple(args.token),
        outflow_caps=tuple(args.cap),
        test_tokens=args.local,
        price_feeds=tuple(feeds),
        allow_unbounded_prices=args.allow_unbounded_prices,
    )
    manifest = deploy(chain, config)
    write_manifest(manifest, args.out)
    print(
        json.dumps({"manifest": str(args.out), **{k: v["address"] for k, v in manifest["contracts"].items()}})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
