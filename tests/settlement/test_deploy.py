"""Deploy script end to end on anvil: the manifest, the wiring and role matrix read back, refused configs, the
CLI. (The contracts driven with the Python helpers: test_contracts_onchain.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak

from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.chain import Artifact, Chain, create_address
from settlement.deploy import (
    DeployConfig,
    DeploymentCheckFailed,
    check_config,
    check_deployment,
    deploy,
    main,
    write_manifest,
)

GOVERNOR, OPERATOR, GUARDIAN, ALICE, WATCHER = (Account.from_key(k).address for k in DEV_PRIVATE_KEYS[1:6])


def _config(**kw) -> DeployConfig:
    kw.setdefault("watchers", (WATCHER,))
    kw.setdefault("test_tokens", True)
    return DeployConfig(governor=GOVERNOR, operator=OPERATOR, guardian=GUARDIAN, **kw)


def test_create_address_matches_known_vector() -> None:
    # keccak(rlp([0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0, 0]))[12:] (well-known vector)
    assert create_address("0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0", 0).lower() == (
        "0xcd234a471b72ba2f1ccf0a70fcaba648a5eecd8d"
    )


def test_deploy_writes_manifest_and_roles_read_back(deployer: Chain, snapshot, tmp_path: Path) -> None:
    m = deploy(deployer, _config())
    assert m["chain_id"] == 31337
    assert set(m["contracts"]) >= {
        "HxTimelock", "Vault", "InsuranceFund", "ClearingHouse", "EscapeHatch", "token:USDC",
    }  # fmt: skip
    assert m["version"] == 2
    assert m["config"]["dispute_window_s"] == 6 * 3600
    assert m["config"]["outflow_caps"] == [10**12, 300 * 10**18, 15 * 10**8]
    for c in m["contracts"].values():
        assert len(c["artifact_sha256"]) == 64
        assert (
            c["runtime_code_keccak"].startswith("0x") and c["runtime_code_keccak"] != "0x" + keccak(b"").hex()
        )
        assert c["block"] <= m["block"]
    roles = m["roles"]
    for contract_roles in roles.values():
        for holders in contract_roles.values():
            assert holders["deployer"] is False, "deployer keeps no role"
    assert roles["ClearingHouse"]["OPERATOR_ROLE"] == {
        "governor": False, "operator": True, "guardian": False, "watcher:0": False, "timelock": False,
        "deployer": False,
    }  # fmt: skip
    assert roles["ClearingHouse"]["WATCHER_ROLE"]["watcher:0"] is True
    assert roles["ClearingHouse"]["WATCHER_ROLE"]["guardian"] is False
    assert roles["Vault"]["DEFAULT_ADMIN_ROLE"]["timelock"] is True
    assert roles["HxTimelock"]["PROPOSER_ROLE"]["governor"] is True
    out = tmp_path / "manifest.json"
    write_manifest(m, out)
    again = json.loads(out.read_text())
    assert again["contracts"]["ClearingHouse"]["address"] == m["contracts"]["ClearingHouse"]["address"]
    assert check_deployment(deployer, again) == roles

    # A manifest that claims a different operator fails the read-back.
    bad = json.loads(out.read_text())
    bad["principals"]["operator"] = GUARDIAN
    with pytest.raises(DeploymentCheckFailed, match="OPERATOR_ROLE"):
        check_deployment(deployer, bad)


def test_price_feeds_are_set_by_the_constructor_and_read_back(deployer: Chain, snapshot) -> None:
    """Audit A-1's residual: a deployment bounds its tokens' prices from the first batch (the feeds are
    set by the ClearingHouse's constructor, not by governance a timelock later), and the read-back
    checks each token's feed, none where none was given."""
    art = Artifact.load("HxPriceAggregator")
    eth, _ = deployer.deploy(art, 8, "ETH / USD", deployer.address)
    m = deploy(deployer, _config(price_feeds=(("WETH", eth.address, 20_000, 3600),)))
    weth = m["tokens"][1]
    assert m["price_feeds"] == [[weth, eth.address, 20_000, 3600]]
    ch = deployer.at(Artifact.load("ClearingHouse"), m["contracts"]["ClearingHouse"]["address"])
    bounds = deployer.at(Artifact.load("PriceBounds"), ch.functions.priceBounds().call())
    assert tuple(bounds.functions.priceFeed(weth).call()) == (eth.address, 20_000, 3600)
    assert bounds.functions.priceFeed(m["tokens"][2]).call()[0] == "0x" + "00" * 20
    claims = json.loads(json.dumps(m))
    claims["price_feeds"] = []  # a manifest that hides the feed fails the read-back
    with pytest.raises(DeploymentCheckFailed, match="priceFeed"):
        check_deployment(deployer, claims)


def test_a_real_deployment_needs_a_price_feed_on_every_token_but_the_numeraire() -> None:
    tokens = ("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20)
    real = {"tokens": tokens, "outflow_caps": (1, 1, 1), "test_tokens": False}
    feed = "0x" + "fe" * 20
    with pytest.raises(ValueError, match=r"no price feed for \['0x3333"):
        check_config(_config(**real, price_feeds=((tokens[1], feed, 20_000, 3600),)))
    check_config(
        _config(**real, price_feeds=((tokens[1], feed, 20_000, 3600), (tokens[2], feed, 10_000, 60)))
    )
    check_config(_config(**real, allow_unbounded_prices=True))  # said out loud
    for bad, why in (
        ((tokens[0], feed, 20_000, 3600), "numeraire"),
        (("0x" + "44" * 20, feed, 20_000, 3600), "not a listed token"),
        ((tokens[1], feed, 0, 3600), "max deviation"),
        ((tokens[1], feed, 500_001, 3600), "max deviation"),
        ((tokens[1], feed, 20_000, 0), "max age"),
        ((tokens[1], "not an address", 20_000, 3600), "a feed address"),
    ):
        with pytest.raises(ValueError, match=why):
            check_config(_config(**real, price_feeds=(bad,), allow_unbounded_prices=True))


def test_deploy_refuses_bad_configs(deployer: Chain) -> None:
    with pytest.raises(ValueError, match="deployer"):
        deploy(deployer, DeployConfig(governor=deployer.address, operator=OPERATOR, guardian=GUARDIAN))
    with pytest.raises(ValueError, match="distinct"):
        deploy(deployer, DeployConfig(governor=GOVERNOR, operator=GOVERNOR, guardian=GUARDIAN))
    with pytest.raises(ValueError, match="distinct"):
        deploy(deployer, _config(watchers=(GUARDIAN,)))
    with pytest.raises(ValueError, match="floor must exceed"):
        deploy(deployer, _config(timelock_floor_s=3 * 24 * 3600))
    with pytest.raises(ValueError, match="at least its floor"):
        deploy(deployer, _config(timelock_delay_s=4 * 24 * 3600 - 1))
    with pytest.raises(ValueError, match="dispute window"):
        deploy(deployer, _config(dispute_window_s=3 * 24 * 3600))
    with pytest.raises(ValueError, match="pause"):
        deploy(deployer, _config(max_pause_s=3 * 24 * 3600))
    with pytest.raises(ValueError, match="forced-withdrawal period must exceed"):
        deploy(deployer, _config(forced_withdrawal_period_s=30 * 3600))
    # audit A-5: a longest pause right after the request must still leave a whole outflow period
    with pytest.raises(ValueError, match=r"outflow period \+ max pause"):
        deploy(deployer, _config(forced_withdrawal_period_s=(6 + 24 + 24) * 3600))
    check_config(_config(forced_withdrawal_period_s=(6 + 24 + 24) * 3600 + 1))
    with pytest.raises(ValueError, match="one outflow cap per token"):
        deploy(deployer, _config(tokens=("0x" + "11" * 20,)))
    with pytest.raises(ValueError, match="> 0"):
        deploy(deployer, _config(outflow_period_s=0))


def test_cli_local(anvil: Anvil, deployer: Chain, snapshot, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    feed, _ = deployer.deploy(Artifact.load("HxPriceAggregator"), 8, "BTC / USD", deployer.address)
    with pytest.raises(SystemExit):  # a malformed --price-feed is refused before anything is sent
        main(["--rpc-url", anvil.url, "--local", "--out", str(out), "--price-feed", "WBTC=0xabc"])
    args = [
        "--rpc-url",
        anvil.url,
        "--local",
        "--out",
        str(out),
        "--price-feed",
        f"WBTC={feed.address},20000,3600",
    ]
    assert main(args) == 0
    m = json.loads(out.read_text())
    assert m["principals"]["operator"] == OPERATOR
    assert m["price_feeds"] == [[m["tokens"][2], feed.address, 20_000, 3600]]
    assert m["principals"]["watcher:0"] == Account.from_key(DEV_PRIVATE_KEYS[5]).address
    deployer._nonce = deployer.w3.eth.get_transaction_count(deployer.address)  # the CLI used the same key
