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

Insurance moves (``Batch.insuranceMoves``, in the same calldata): each batch's ledger in its
``BatchAccepted`` event must move exactly by the batch's calldata from the previous canonical batch's
(``fundIn`` by the moves out of the fund, ``queued`` by the moves into it plus the withdrawals and
forced serves), and its claims - liabilities must equal the holdings that ledger gives. The
InsuranceFund's balance must be what its events add up to (batch inflows - outflows - governance
withdrawals + absorbed surplus), its outflows net of what challenges returned must be the canonical
moves out, and its inflows net of returns no more than the canonical moves into it; the report gives
the fund's balance per token, what moved in (executed, still queued) and out.
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
    insurance_fund: dict[str, dict[str, int]] = field(default_factory=dict)

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
            "insurance_fund": self.insurance_fund,
        }


def read_batches(
    w3: Web3, clearing_house: str, from_block: int
) -> tuple[Any, dict[int, tuple[Any, bytes, Any]]]:
    """``(contract, {batch id: (Batch, state root from the event, the event's args)})`` along the canonical
    chain."""
    ch = w3.eth.contract(address=to_checksum_address(clearing_house), abi=Artifact.load("ClearingHouse").abi)
    logs = ch.events.BatchAccepted().get_logs(from_block=from_block)
    batches: dict[int, tuple[Any, bytes, Any]] = {}
    for log in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
        tx = w3.eth.get_transaction(log["transactionHash"])
        fn, args = ch.decode_function_input(tx["input"])
        if fn.fn_name != "submitBatch":
            continue
        b = args["b"]
        batches[int(b["batchId"])] = (b, bytes(log["args"]["stateRoot"]), log["args"])
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
    n_tokens = len(tokens)
    fund = str(manifest["contracts"].get("InsuranceFund", {}).get("address", ""))
    ledger = [(0, 0, 0)] * n_tokens  # (credited, fundIn, queued) after the previous canonical batch
    moved_in, moved_out = [0] * n_tokens, [0] * n_tokens
    for bid in sorted(batches):
        b, event_root, ev = batches[bid]
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
        diff, ledger = _check_ledger(b, ev, assets, tokens, ledger, moved_in, moved_out)
        if diff is not None:
            report.difference = {"batch": bid, **diff}
            return report
        report.last_assets = assets
    report.accounts = len(trees.accounts)
    if fund:
        report.difference = _check_fund(
            w3, manifest, fund, tokens, moved_in, moved_out, report.insurance_fund
        )
    return report


def _fields(x: Any) -> tuple[Any, ...]:
    return tuple(x.values()) if hasattr(x, "values") else tuple(x)


def _check_ledger(
    b: Any,
    ev: Any,
    assets: list[AssetState],
    tokens: list[str],
    prev: list[tuple[int, int, int]],
    moved_in: list[int],
    moved_out: list[int],
) -> tuple[dict[str, Any] | None, list[tuple[int, int, int]]]:
    """The batch's ledger (its event) against the previous one moved by the batch's calldata."""
    index = {to_checksum_address(t): i for i, t in enumerate(tokens)}
    fund_in = [0] * len(tokens)
    queued = [0] * len(tokens)
    ins_in, ins_out = [0] * len(tokens), [0] * len(tokens)
    for m in b["insuranceMoves"]:
        token, amount = _fields(m)
        t = index[to_checksum_address(token)]
        if amount > 0:
            queued[t] += amount
            ins_in[t] += amount
        else:
            fund_in[t] -= amount
            ins_out[t] -= amount
    for w in b["withdrawals"]:
        f = _fields(w)
        queued[index[to_checksum_address(f[1])]] += int(f[2])
    after = [tuple(int(v) for v in _fields(x)) for x in ev["ledgers"]]
    forced = sum(int(_fields(s)[1]) for s in b["forcedServes"])
    for t, token in enumerate(tokens):
        credited, f_in, q = after[t] if t < len(after) else (0, 0, 0)
        p = prev[t] if t < len(prev) else (0, 0, 0)
        holdings = assets[t].claims_total - assets[t].liabilities_total
        # forced serves name a request, not a token: their amounts are bounded, not attributed, here
        for name, committed, rebuilt, ok in (
            ("ledger.fundIn", f_in - p[1], fund_in[t], f_in - p[1] == fund_in[t]),
            ("ledger.queued", q - p[2], queued[t], 0 <= q - p[2] - queued[t] <= forced),
            ("holdings", holdings, credited + f_in - q, holdings == credited + f_in - q),
        ):
            if not ok:
                return {"asset": token, "field": name, "committed": committed, "rebuilt": rebuilt}, prev
    for t in range(len(tokens)):
        moved_in[t] += ins_in[t]
        moved_out[t] += ins_out[t]
    return None, [tuple(x) for x in after]  # type: ignore[misc]


def _check_fund(
    w3: Web3,
    manifest: dict[str, Any],
    fund_address: str,
    tokens: list[str],
    moved_in: list[int],
    moved_out: list[int],
    out: dict[str, dict[str, int]],
) -> dict[str, Any] | None:
    """The InsuranceFund's balance against its own events and against the canonical batches' moves."""
    start = int(manifest.get("start_block", 0))
    fund = w3.eth.contract(address=to_checksum_address(fund_address), abi=Artifact.load("InsuranceFund").abi)
    ch = w3.eth.contract(
        address=to_checksum_address(manifest["contracts"]["ClearingHouse"]["address"]),
        abi=Artifact.load("ClearingHouse").abi,
    )
    sums: dict[tuple[str, str], int] = {}
    for name in ("BatchInflow", "BatchOutflow", "GovernanceWithdrawal", "SurplusAbsorbed"):
        for log in getattr(fund.events, name)().get_logs(from_block=start):
            key = (name, to_checksum_address(log["args"]["token"]))
            sums[key] = sums.get(key, 0) + int(log["args"]["amount"])
    for log in ch.events.FundInflowReturned().get_logs(from_block=start):
        key = ("Returned", to_checksum_address(log["args"]["token"]))
        sums[key] = sums.get(key, 0) + int(log["args"]["amount"])
    for t, token in enumerate(tokens):
        tk = to_checksum_address(token)

        def g(name: str, tk: str = tk) -> int:
            return sums.get((name, tk), 0)

        balance = int(fund.functions.expectedBalance(tk).call())
        executed_in = g("BatchInflow") - g("Returned")
        out[tk] = {
            "balance": balance,
            "surplus": int(fund.functions.surplus(tk).call()),
            "moved_in": moved_in[t],
            "moved_in_executed": executed_in,
            "moved_in_queued": moved_in[t] - executed_in,
            "moved_out": moved_out[t],
            "governance_withdrawn": g("GovernanceWithdrawal"),
            "surplus_absorbed": g("SurplusAbsorbed"),
        }
        events = g("BatchInflow") - g("BatchOutflow") - g("GovernanceWithdrawal") + g("SurplusAbsorbed")
        if balance != events:
            return {"asset": tk, "field": "insurance_fund.balance", "committed": balance, "rebuilt": events}
        if g("BatchOutflow") - g("Returned") != moved_out[t]:  # voided moves out came back
            return {"asset": tk, "field": "insurance_fund.outflows", "committed": g("BatchOutflow") - g("Returned"),
                    "rebuilt": moved_out[t]}  # fmt: skip
        if not 0 <= executed_in <= moved_in[t]:
            return {
                "asset": tk,
                "field": "insurance_fund.inflows",
                "committed": executed_in,
                "rebuilt": moved_in[t],
            }
    return None


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
