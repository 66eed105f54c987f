"""The operator goes silent: after the freeze period anyone freezes, and each account exits with proofs
it rebuilt itself from the chain's published data (``hx audit``'s replay), including an account that
owes USDC against its BTC: it exits only its net value, and what it owes stays for its creditors."""

from __future__ import annotations

from test_audit import history  # noqa: F401 - the fixture
from test_batch_sender import KEYS, OnChain

from settlement.anvil import Anvil
from settlement.audit import audit
from settlement.chain import Artifact, Chain
from settlement.escape_exit import calc_exit_amounts

DAY = 86_400
DECIMALS = [6, 18, 8]


def test_escape_with_python_proofs_after_the_operator_goes_silent(history: OnChain, anvil: Anvil) -> None:  # noqa: F811
    s = history
    w3 = s.chains["alice"].w3
    w3.provider.make_request("evm_increaseTime", [3 * DAY + 1])  # no batch for the freeze period
    w3.provider.make_request("evm_mine", [])
    anyone = Chain(anvil.url, KEYS["watcher"])
    ch = anyone.at(Artifact.load("ClearingHouse"), s.addr("ClearingHouse"))
    anyone.transact(ch.functions.freeze(3))
    assert ch.functions.frozen().call() and ch.functions.escapeBatchId().call() == 3

    report = audit(anvil.url, s.m)  # the users' own rebuild: nothing from the operator
    assert report.ok and report.trees is not None
    assets = report.last_assets
    tokens = [a.token for a in assets]
    paid: dict[str, list[int]] = {}
    for name, addr in (("alice", s.users[0]), ("bob", s.users[1])):
        claims, liabs = report.trees.escape_proofs(addr)
        c = s.chains[name]
        hatch = c.at(Artifact.load("EscapeHatch"), s.addr("EscapeHatch"))
        onchain, basket = hatch.functions.exitAmounts(c.address, assets, claims, liabs).call()
        expected, py_basket = calc_exit_amounts(
            assets, DECIMALS, [x[0] for x in claims], [x[0] for x in liabs]
        )
        assert (list(onchain), basket) == (expected, py_basket)
        assert basket  # alice's liability makes every exit a basket at the committed prices
        c.transact(hatch.functions.escape(assets, claims, liabs, c.address))
        paid[name] = [
            c.at(Artifact.load("TestToken"), t).functions.balanceOf(c.address).call() for t in tokens
        ]
    # alice: 2 BTC at 60,000 minus 59,000 USDC owed = 61,000 of the 170,000 the vault holds
    holdings = [a.claims_total - a.liabilities_total for a in assets]
    net_alice = 2 * 60_000 * 10**6 - 59_000 * 10**6
    pool = sum(h * a.price // 10**d for h, a, d in zip(holdings, assets, DECIMALS, strict=True))
    assert paid["alice"][2] == holdings[2] * net_alice // pool
    assert paid["alice"][0] == holdings[0] * net_alice // pool
    assert paid["bob"][0] > paid["alice"][0]  # bob, the creditor, keeps what alice owed
    vault_left = [
        s.chains["alice"].at(Artifact.load("TestToken"), t).functions.balanceOf(s.addr("Vault")).call()
        for t in tokens
    ]
    assert all(v >= 0 for v in vault_left)
