"""The audit anyone can run: every batch's published data read back from the chain, both trees of every
asset rebuilt, every committed root and total checked; and one account's leaves with their proofs.

Needs only a JSON-RPC endpoint and the deployment's manifest (the ClearingHouse's address and the
block it was deployed in): nothing from the operator. For each ``BatchAccepted`` event, the
transaction's calldata is decoded as ``submitBatch(Batch)``; batches are replayed in id order along
the canonical chain (a later acceptance of the same id, after a rollback, replaces the voided one),
``AccountTrees.apply`` rebuilds every leaf from the data, and the rebuilt claims and liabilities
roots and totals of each asset must equal the committed ones, and the committed assets must hash to
the state root the event carries. The first difference is reported with the batch, asset and field;
a blob that does not decode is a difference too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3

from settlement.account_trees import AccountTrees
from settlement.batch_commitments import AssetState, state_root
from settlement.chain import Artifact
from settlement.published_data import PublishedData, PublishedDataError
from settlement.sum_tree import CLAIM, LIABILITY, verify


@dataclass
class AuditReport:
    batches: int = 0
    last_batch: int = 0
    difference: dict[str, Any] | None = None
    accounts: int = 0
    trees: AccountTrees | None = field(default=None, repr=False)
    last_assets: list[AssetState] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.difference is None

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "batches": self.batches,
            "last_batch": self.last_batch,
            "accounts": self.accounts,
            "difference": self.difference,
        }


def read_batches(w3: Web3, clearing_house: str, from_block: int) -> tuple[Any, dict[int, tuple[Any, bytes]]]:
    """``(contract, {batch id: (Batch, state root from the event)})`` along the canonical chain."""
    ch = w3.eth.contract(address=to_checksum_address(clearing_house), abi=Artifact.load("ClearingHouse").abi)
    logs = ch.events.BatchAccepted().get_logs(from_block=from_block)
    batches: dict[int, tuple[Any, bytes]] = {}
    for log in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
        tx = w3.eth.get_transaction(log["transactionHash"])
        fn, args = ch.decode_function_input(tx["input"])
        if fn.fn_name != "submitBatch":
            continue
        b = args["b"]
        batches[int(b["batchId"])] = (b, bytes(log["args"]["stateRoot"]))
    last = int(ch.functions.lastBatchId().call())
    return ch, {k: v for k, v in batches.items() if k <= last}


def audit(rpc_url: str, manifest: dict[str, Any]) -> AuditReport:
    """Replay every accepted batch from the chain and check it (see the module docstring)."""
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    ch_addr = manifest["contracts"]["ClearingHouse"]["address"]
    _ch, batches = read_batches(w3, ch_addr, int(manifest.get("start_block", 0)))
    tokens = list(manifest["tokens"])
    trees = AccountTrees(tokens[:0])
    report = AuditReport(trees=trees)
    for bid in sorted(batches):
        b, event_root = batches[bid]
        report.batches += 1
        report.last_batch = bid
        assets = [AssetState(to_checksum_address(a[0]), bytes(a[1]), int(a[2]), bytes(a[3]), int(a[4]), int(a[5]))
                  for a in (tuple(x.values()) if hasattr(x, "values") else tuple(x) for x in b["assets"])]  # fmt: skip
        if state_root(assets) != event_root:
            report.difference = {
                "batch": bid,
                "field": "stateRoot",
                "detail": "assets do not hash to the state root",
            }
            return report
        try:
            data = PublishedData.decode(bytes(b["data"]))
            while len(trees.tokens) < data.asset_count:
                trees.add_token(tokens[len(trees.tokens)])
            trees.apply(data)
        except (PublishedDataError, IndexError, ValueError) as exc:
            report.difference = {"batch": bid, "field": "data", "detail": str(exc)}
            return report
        rebuilt = trees.asset_states([a.price for a in assets])
        for got, want in zip(rebuilt, assets, strict=True):
            for name in ("claims_root", "claims_total", "liabilities_root", "liabilities_total"):
                g, w = getattr(got, name), getattr(want, name)
                if g != w:
                    report.difference = {
                        "batch": bid,
                        "asset": want.token,
                        "field": name,
                        "committed": "0x" + w.hex() if isinstance(w, bytes) else w,
                        "rebuilt": "0x" + g.hex() if isinstance(g, bytes) else g,
                    }
                    return report
        report.last_assets = assets
    report.accounts = len(trees.accounts)
    return report


def account_proofs(report: AuditReport, account: str) -> dict[str, Any]:
    """An account's claim and liability leaf of every asset at the last batch, each with its proof,
    checked against the committed root and total."""
    trees = report.trees
    if trees is None or not report.last_assets:
        return {"account": account, "error": "no batch yet"}
    try:
        index = trees.index_of(account)
    except KeyError:
        return {"account": account, "error": "not in the account table (no leaf yet)"}
    out: dict[str, Any] = {
        "account": to_checksum_address(account),
        "index": index,
        "batch": report.last_batch,
    }
    leaves = []
    for a, asset in enumerate(report.last_assets):
        for kind, root, total in ((CLAIM, asset.claims_root, asset.claims_total),
                                  (LIABILITY, asset.liabilities_root, asset.liabilities_total)):  # fmt: skip
            amount, i, proof = trees.leaf_proof(account, a, kind)
            leaves.append(
                {
                    "token": asset.token,
                    "kind": "claim" if kind == CLAIM else "liability",
                    "amount": amount,
                    "proof": [["0x" + h.hex(), s] for h, s in proof],
                    "verified": verify(root, total, account, asset.token, amount, i, proof, kind),
                }
            )
    out["leaves"] = leaves
    out["ok"] = all(x["verified"] for x in leaves)
    return out
