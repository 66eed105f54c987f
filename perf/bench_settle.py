"""Settlement: a fill to its batch holding N confirmations on chain, gas per batch and per fill, and the
incremental tree update of 10,000 touched leaves among 1,000,000. Prints one JSON line.

Run: ``hx bench settle --json``. Set-up, named in the JSON: a real anvil (``block_time_s`` blocks,
interval mining), the real contracts, the deterministic core (``SettlementEngine``) and the
``BatchSender`` in this process; fills are USDC moves between ``accounts`` accounts (two BALANCE events
and a fee each) fed at ``rates`` fills/s for ``seconds`` each; every batch is sealed as soon as the
previous one is confirmed (one in flight). ``fill_to_finality`` = the time from a fill's events being
applied to the confirmation of the batch that covers it. ``tree_update_ms``: one tree of
``tree_accounts`` leaves built at once, then ``tree_touched`` random leaves set and the root read
(median of ``tree_runs``); ``rss_mb`` is this process's resident size after that build,
``rss_mb_10_trees`` after building the 9 other trees of 5 assets x (claims, liabilities) beside it
(the whole process: web3, the engine and the bench's own arrays included), and
``tree_bytes_per_leaf`` one tree's arrays per leaf.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

import numpy as np
import psutil

from engine.risk.risk_config import load_risk_config
from engine.types.enums import BalanceReason, MsgType
from engine.wire.layout import BY_TYPE, SLOT_BYTES, WIRE_VERSION
from settlement.anvil import DEV_PRIVATE_KEYS, Anvil
from settlement.batch_sender import BatchSender, ChainUnavailable
from settlement.chain import Artifact, Chain
from settlement.deploy import DeployConfig, deploy
from settlement.incremental_sum_tree import IncrementalSumTree
from settlement.settlement_engine import (
    SettlementEngine,
    SettlementSpec,
    TokenSpec,
    pack_clock,
    pack_confirmed,
    pack_deposit,
    pack_events,
)
from settlement.sum_tree import CLAIM, LIABILITY

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BAL = BY_TYPE[MsgType.BALANCE].struct
FEE_ACCOUNT = 0xFFFF_FF40


def _address(account: int) -> str:
    return "0x" + account.to_bytes(20, "big").hex()


def bench_tree(accounts: int, touched: int, runs: int, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    acc = np.zeros((accounts, 20), np.uint8)
    acc[:, 12:] = np.arange(1, accounts + 1, dtype=">u8").view(np.uint8).reshape(accounts, 8)
    amounts = np.zeros((accounts, 32), np.uint8)
    small = rng.integers(0, 10**12, accounts, dtype=np.int64)
    amounts[:, 24:] = small.astype(">u8").view(np.uint8).reshape(accounts, 8)
    t0 = time.perf_counter()
    tree = IncrementalSumTree.from_arrays("0x" + "01" * 20, CLAIM, acc, amounts, int(small.sum()))
    _ = tree.root
    build_s = time.perf_counter() - t0
    times = []
    for _r in range(runs):
        idx = rng.choice(accounts, touched, replace=False)
        vals = rng.integers(0, 10**12, touched)
        t0 = time.perf_counter()
        for i, v in zip(idx.tolist(), vals.tolist(), strict=True):
            tree.set(i, v)
        before = tree.hash_count
        _ = tree.root
        times.append((time.perf_counter() - t0) * 1000)
        hashes = tree.hash_count - before
    rss_one = psutil.Process().memory_info().rss
    # the other 9 trees of 5 assets x (claims, liabilities), each with its own arrays as
    # settlement's AccountTrees holds them: the resident size of all 10 is measured, not estimated
    trees = [tree]
    for k in range(1, 10):
        trees.append(
            IncrementalSumTree.from_arrays(
                "0x" + f"{k // 2 + 1:02x}" * 20,
                (CLAIM, LIABILITY)[k % 2],
                acc.copy(),
                amounts.copy(),
                int(small.sum()),
            )  # fmt: skip
        )
        _ = trees[-1].root
    rss_ten = psutil.Process().memory_info().rss
    return {
        "tree_accounts": accounts,
        "tree_touched": touched,
        "tree_update_ms": round(statistics.median(times), 1),
        "tree_update_hashes": hashes,
        "tree_build_s": round(build_s, 2),
        "tree_bytes_per_leaf": round(tree.nbytes() / accounts, 1),
        "rss_mb": round(rss_one / 2**20, 1),
        "rss_mb_10_trees": round(rss_ten / 2**20, 1),
    }


class _Run:
    """Anvil + contracts + core + sender; ``feed`` fills at a rate and measures finality."""

    def __init__(self, block_time_s: float, accounts: int, confirmations: int) -> None:
        self.anvil = Anvil().start()
        deployer = Chain(self.anvil.url, DEV_PRIVATE_KEYS[0])
        keys = DEV_PRIVATE_KEYS
        self.m = deploy(
            deployer,
            DeployConfig(*(Chain(self.anvil.url, keys[i]).address for i in (1, 2, 3)), test_tokens=True),
        )
        risk = load_risk_config(os.path.join(REPO_ROOT, "config", "hx.toml"))
        tokens = tuple(
            TokenSpec(t, d, a) for t, d, a in zip(self.m["tokens"], (6, 18, 8), (0, 2, 1), strict=True)
        )
        ch = self.m["contracts"]["ClearingHouse"]["address"]
        self.spec = SettlementSpec(deployer.chain_id, ch, tokens, risk, "0x" + "fe" * 20, batch_interval_ns=0)
        self.engine = SettlementEngine(self.spec, lambda a: _address(a) if 1 <= a <= accounts else None)
        self.sender = BatchSender(
            self.anvil.url, keys[2], ch, confirmations=confirmations, receipt_timeout_s=10.0
        )
        self.accounts = accounts
        self.seq: dict[int, int] = {}
        self.bal: dict[int, int] = {}
        # fund account 1 with USDC through the Vault (automine), then switch to interval mining
        user = Chain(self.anvil.url, keys[4])
        tok = user.at(Artifact.load("TestToken"), self.m["tokens"][0])
        vault = user.at(Artifact.load("Vault"), self.m["contracts"]["Vault"]["address"])
        amount = 10**15
        user.transact(tok.functions.mint(user.address, amount))
        user.transact(tok.functions.approve(vault.address, amount))
        receipt = user.transact(vault.functions.deposit(tok.address, amount, _address(1)))
        self.engine.apply(pack_deposit(1, 1, 0, amount, self.w3_time(), receipt["blockNumber"], _address(1)))
        out = self.engine.take_outputs()
        self._credit(out)
        self.anvil_rpc("evm_setAutomine", [False])
        self.anvil_rpc("evm_setIntervalMining", [max(1, round(block_time_s))])

    def w3_time(self) -> int:
        return int(self.sender.w3.eth.get_block("latest")["timestamp"])

    def anvil_rpc(self, method: str, params: list[Any]) -> None:
        answer = self.sender.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")

    def _next(self, a: int) -> int:
        self.seq[a] = self.seq.get(a, 0) + 1
        return self.seq[a]

    def _balance(self, a: int, delta: int, reason: int = BalanceReason.TRADE, ref: int = 0) -> bytes:
        self.bal[a] = self.bal.get(a, 0) + delta
        return _BAL.pack(
            MsgType.BALANCE,
            WIRE_VERSION,
            SLOT_BYTES,
            0,
            self._next(a),
            a,
            0,
            reason,
            self.bal[a],
            delta,
            0,
            ref,
        )

    def _credit(self, out: Any) -> None:
        for cmds in out.commands.values():
            for off in range(0, len(cmds), SLOT_BYTES):
                f = BY_TYPE[MsgType.DEPOSIT].struct.unpack_from(cmds, off)
                self.engine.apply(pack_events(0, self._balance(f[4], f[7], BalanceReason.DEPOSIT, f[8])))
                self.engine.take_outputs()

    def feed(self, rate: float, seconds: float, rng: np.random.Generator) -> dict[str, Any]:
        fills: list[tuple[int, float]] = []  # (batch it went into, time applied)
        confirmed: dict[int, float] = {}
        fills_in: dict[int, int] = {}
        gas_from = len(self.sender.gas_used)
        busy = threading.Event()
        result: dict[str, Any] = {}

        def post(b: Any) -> None:
            try:
                for attempt in range(20):  # as the process does: retry while the chain is slow or away
                    try:
                        block = self.sender.post(b)
                        break
                    except ChainUnavailable:
                        if attempt == 19:
                            raise
                        time.sleep(0.5)
                result["block"] = block
                confirmed[b.batch_id] = time.perf_counter()
                result["confirm"] = (b.batch_id, block)
            finally:
                busy.clear()

        t_end = time.perf_counter() + seconds
        next_fill = time.perf_counter()
        pending_fills: list[float] = []
        n_acc = self.accounts
        hard_end = time.perf_counter() + seconds + 120  # never hang a bench: give up after this
        while (
            time.perf_counter() < t_end or busy.is_set() or pending_fills
        ) and time.perf_counter() < hard_end:
            now = time.perf_counter()
            if now < t_end:
                slots = []
                while next_fill <= now:
                    a, b = (int(x) for x in rng.choice(np.arange(1, n_acc + 1), 2, replace=False))
                    x = int(rng.integers(1, 10**6))
                    slots += [
                        self._balance(a, -x - x // 1000),
                        self._balance(b, x),
                        self._balance(FEE_ACCOUNT, x // 1000),
                    ]
                    pending_fills.append(now)
                    next_fill += 1.0 / rate
                if slots:
                    self.engine.apply(pack_events(0, b"".join(slots)))
                    self.engine.take_outputs()
            if "confirm" in result:
                bid, block = result.pop("confirm")
                self.engine.apply(pack_confirmed(bid, block, time.time_ns()))
                self.engine.take_outputs()
            if not busy.is_set() and self.engine.pending is None:
                self.engine.apply(pack_clock(time.time_ns()))
                out = self.engine.take_outputs()
                if out.sealed is not None:
                    bid = out.sealed.batch_id
                    fills_in[bid] = len(pending_fills)
                    fills += [(bid, t) for t in pending_fills]
                    pending_fills = []
                    busy.set()
                    threading.Thread(target=post, args=(out.sealed,), daemon=True).start()
            elif time.perf_counter() >= t_end and not busy.is_set() and not pending_fills:
                break
            time.sleep(0.001)
        if self.engine.pending is not None and not busy.is_set():  # a batch sealed as the run ended
            b = self.engine.pending
            self.engine.apply(pack_confirmed(b.batch_id, self.sender.post(b), time.time_ns()))
            self.engine.take_outputs()
        lat = sorted(confirmed[b] - t for b, t in fills if b in confirmed)
        gas = self.sender.gas_used[gas_from:]
        n_batches = len(gas)
        total_fills = sum(fills_in[b] for b in confirmed if b in fills_in)
        return {
            "rate_fills_per_s": rate,
            "fills": len(lat),
            "batches": n_batches,
            "fills_per_batch": round(total_fills / max(n_batches, 1), 1),
            "fill_to_finality_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
            "fill_to_finality_p99_s": round(lat[int(len(lat) * 0.99)], 3) if lat else None,
            "gas_per_batch": int(statistics.mean(gas)) if gas else None,
            "gas_per_fill": round(sum(gas) / max(total_fills, 1), 1) if gas else None,
        }

    def close(self) -> None:
        self.anvil.stop()


def run(
    rates: tuple[float, ...] = (20.0, 200.0),
    seconds: float = 10.0,
    accounts: int = 1000,
    block_time_s: float = 1.0,
    confirmations: int = 1,
    tree_accounts: int = 1_000_000,
    tree_touched: int = 10_000,
    tree_runs: int = 3,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "bench": "settle",
        "block_time_s": block_time_s,
        "confirmations": confirmations,
        "accounts": accounts,
        "seconds_per_rate": seconds,
        "one_batch_in_flight": True,
    }
    rng = np.random.default_rng(7)
    r = _Run(block_time_s, accounts, confirmations)
    try:
        curve = [r.feed(rate, seconds, rng) for rate in rates]
    finally:
        r.close()
    report.update({k: v for k, v in curve[-1].items() if k != "rate_fills_per_s"})
    report["gas_per_fill_curve"] = [
        {k: c[k] for k in ("rate_fills_per_s", "fills_per_batch", "gas_per_batch", "gas_per_fill")}
        for c in curve
    ]
    report["batches"] = sum(c["batches"] for c in curve)
    report.update(bench_tree(tree_accounts, tree_touched, tree_runs))
    return report
