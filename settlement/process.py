"""The settlement process: risk's events and the chain's confirmed facts in, batches on chain. One
journal, one deterministic core (``settlement.settlement_engine``), two chain threads.

Inputs, merged into one journal in the order consumed: each risk partition's event ring (the kept
kinds only, with the ring's nonce and cursor so a recovery moves past them), and what the threads
report through a queue: confirmed deposits (the watcher), a batch holding its confirmations or
refused (the sender); a clock record when a batch may be due; an operator's resume (the file
``resume.request`` in the state dir, written by ``hx settlement resume``).

Outputs: DEPOSIT commands into each partition's ring (published exactly once: a recovery skips what
the ring already holds, as risk does), SETTLED events on settlement's own event ring, the in-flight
batch to the sender thread, ``status.json`` (about once a second), ``alarms.log`` (appended),
``batches/<id>.hxd1`` (each sealed batch's published data), and ``settlement-chain.json`` in the run
directory (chain id, contracts, tokens and their assets) for gateways and clients.

Exactly once: a sealed batch is fixed by the journal; the sender re-reads the chain before every
attempt (``settlement.batch_sender``), so neither an RPC outage nor a kill -9 of this process or of
the chain node skips or doubles a batch; the watcher restarts at the engine's next deposit id.

Control: SIGTERM -> snapshot and exit; SIGUSR1 -> snapshot now.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils.address import to_checksum_address

from engine.accounts.account_registry import AccountRegistry
from engine.accounts.withdrawal_log import WithdrawalLog
from engine.host.health_board import open_health_slot
from engine.host.process_identity import become_stage, handle_stage_signals, remove_pid_file
from engine.journal import JournalReader, JournalWriter, SnapshotStore
from engine.journal.ring_positions import pack_positions, read_positions, release_consumed, replay_skips
from engine.ring import Blocking, ConsumerRef, RingBuffer, RingRef, make_wait_strategy
from engine.risk.risk_config import load_risk_config
from engine.wire.layout import SLOT_BYTES
from settlement.batch_sender import BatchRefused, BatchSender, ChainUnavailable, NotOurs, RolledBack
from settlement.chain import Artifact
from settlement.deposit_watcher import DepositWatcher
from settlement.forced_request_watcher import ChainForcedRequest, ForcedRequestWatcher, MalformedLog
from settlement.settlement_engine import (
    EVENTS,
    FORCED_BIT,
    KEPT_EVENTS,
    SealedBatch,
    SettlementEngine,
    SettlementSpec,
    TokenSpec,
    pack_clock,
    pack_confirmed,
    pack_deposit,
    pack_events,
    pack_failed,
    pack_forced,
    pack_forced_cancel,
    pack_log_offset,
    pack_paid,
    pack_resume,
    pack_rollback,
    pack_withdrawal,
    unpack_events_head,
)
from settlement.sum_tree import ZERO_HASH
from settlement.withdrawal import Withdrawal, verify_withdrawal

SNAP_META = struct.Struct("<QII")  # journal seq, output ring count, input ring count
MAX_BATCH = 1024
FUND_OBSERVE_S = 2.0  # how often the InsuranceFund's balances are read for the reconciliation
_KEEP = np.zeros(256, bool)
_KEEP[list(KEPT_EVENTS)] = True


@dataclass(frozen=True)
class SettlementOptions:
    """What the settlement process is told: its rings, the chain, the rules, where state lives."""

    risk_events: tuple[ConsumerRef, ...]  # each partition's event ring, with settlement's cursor
    to_risk: tuple[RingRef, ...]  # settlement's ring into each partition, partition order
    events: RingRef | None  # settlement's own event ring (SETTLED), or None
    markets_path: str
    state_dir: str  # this process's journal, snapshots, status, alarms, batches
    run_dir: str  # the run's state dir (accounts.log, settlement-chain.json)
    rpc_url: str
    manifest_path: str
    operator_key_env: str = "HX_OPERATOR_KEY"
    token_assets: tuple[str, ...] = ()  # per listed token (manifest order) its asset symbol, "" = none
    fee_address: str = ""
    confirmations: int = 1
    batch_interval_s: float = 1.0
    batch_max_events: int = 10_000
    receipt_timeout_s: float = 4.0
    fsync: str = "batch"
    snapshot_every: int = 2000
    supervisor_pid: int = 0
    health_board: str = ""
    health_slot: int = -1
    wait: str = "spin-then-backoff"

    @property
    def name(self) -> str:
        return "settlement-0"


def load_spec(options: SettlementOptions, manifest: dict[str, Any], decimals: list[int]) -> SettlementSpec:
    """The core's spec from the manifest, the tokens' decimals and the config's token -> asset map."""
    risk = load_risk_config(options.markets_path)
    tokens = manifest["tokens"]
    names = list(options.token_assets) or [""] * len(tokens)
    if len(names) != len(tokens):
        raise ValueError(
            f"[settlement] token_assets: {len(names)} entries for the vault's {len(tokens)} tokens"
        )
    specs = []
    for addr, d, sym in zip(tokens, decimals, names, strict=True):
        specs.append(TokenSpec(to_checksum_address(addr), d, risk.asset_id(sym) if sym else -1))
    fee = options.fee_address or manifest.get("fee_address") or "0x" + "fe" * 20
    return SettlementSpec(
        chain_id=int(manifest["chain_id"]),
        clearing_house=manifest["contracts"]["ClearingHouse"]["address"],
        tokens=tuple(specs),
        risk=risk,
        fee_address=fee,
        partitions=max(1, len(options.to_risk)),
        batch_interval_ns=int(options.batch_interval_s * 1e9),
        batch_max_events=options.batch_max_events,
        insurance_fund=manifest["contracts"].get("InsuranceFund", {}).get("address", ""),
    )


def _publish(ring: RingBuffer, data: bytes | bytearray, skip: int, wait: Any) -> int:
    n = len(data) // SLOT_BYTES
    if skip >= n:
        return skip - n
    ring.publish(memoryview(bytes(data))[skip * SLOT_BYTES :], wait=wait)
    return 0


class SettlementProcess:
    def __init__(self, options: SettlementOptions) -> None:
        self.options = options
        self.state_dir = Path(options.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "batches").mkdir(exist_ok=True)
        self.manifest = json.loads(Path(options.manifest_path).read_text())
        key = os.environ.get(options.operator_key_env, "") or self._local_operator_key()
        if not key:
            raise ValueError(f"[settlement] operator_key_env: ${options.operator_key_env} is not set")
        self.registry = AccountRegistry(options.run_dir)
        self.sender = BatchSender(
            options.rpc_url,
            key,
            self.manifest["contracts"]["ClearingHouse"]["address"],
            options.confirmations,
            options.receipt_timeout_s,
            from_block=int(self.manifest.get("start_block", 0)),
        )
        self._check_manifest()
        decimals = self._token_decimals()
        self.spec = load_spec(options, self.manifest, decimals)
        self.engine = SettlementEngine(self.spec, self.registry.get_address)
        self.wait = make_wait_strategy(options.wait)
        self.inputs = [c.ring.attach() for c in options.risk_events]
        self.consumers = [
            ring.consumer(c.index, Blocking(spins=200, max_park_ms=5))
            for ring, c in zip(self.inputs, options.risk_events, strict=True)
        ]
        self.outputs = [ref.attach() for ref in options.to_risk]
        if options.events is not None:
            self.outputs.append(options.events.attach())
        for ring in self.outputs:
            ring.set_producer()
        self.snapshots = SnapshotStore(self.state_dir / "snapshots")
        self.health = open_health_slot(options.health_board, options.health_slot)
        self.facts: queue.Queue[bytes] = queue.Queue()
        self.stop_requested = False
        self.snapshot_requested = False
        self.journal_seq = 0
        self.records_since_snapshot = 0
        self.target: SealedBatch | None = None  # what the sender thread posts
        self.target_gen = 0
        self.payable: dict[int, list[Any]] = {}  # confirmed batches with payouts to execute
        self.ours: dict[int, bytes] = {}  # our batches' hashes (a chain back at one of them rolled back)
        self.paid_reported: set[int] = set()
        self.chain_error = ""
        self.alarm_lock = threading.Lock()
        self._recover()
        self.journal = JournalWriter(self.state_dir / "journal", fsync_policy=options.fsync)
        self.journal.start_background_sync()
        if self.fresh:  # a first snapshot names the output rings, so a recovery can tell them apart
            self.write_snapshot()
        self._write_chain_file(decimals)
        self.threads = [
            threading.Thread(target=self._watch_deposits, name="settlement-watcher", daemon=True),
            threading.Thread(target=self._send_batches, name="settlement-sender", daemon=True),
        ]

    # ---- set-up ---------------------------------------------------------------------------------
    def _local_operator_key(self) -> str:
        """On the local dev chain only: anvil's public dev key that the local deployment made operator."""
        from eth_account import Account

        from settlement.anvil import LOCAL_CHAIN_ID
        from settlement.local_chain import LOCAL_OPERATOR_KEY

        operator = str(self.manifest.get("principals", {}).get("operator", "")).lower()
        local = int(self.manifest.get("chain_id", 0)) == LOCAL_CHAIN_ID
        if local and operator == str(Account.from_key(LOCAL_OPERATOR_KEY).address).lower():
            return LOCAL_OPERATOR_KEY
        return ""

    def _check_manifest(self) -> None:
        """The manifest must describe the chain we talk to: same chain id, the ClearingHouse's code."""
        w3 = self.sender.w3
        for attempt in range(50):
            try:
                chain_id, code = int(w3.eth.chain_id), bytes(w3.eth.get_code(self.sender.ch.address))
                break
            except Exception:
                if attempt == 49:
                    raise
                time.sleep(0.2)
        if chain_id != int(self.manifest["chain_id"]):
            raise ValueError(
                f"[settlement] manifest is for chain {self.manifest['chain_id']}, the RPC is {chain_id}"
            )
        want = self.manifest["contracts"]["ClearingHouse"].get("runtime_code_keccak")
        from eth_utils.crypto import keccak

        if not code or (want and "0x" + keccak(code).hex() != want):
            raise ValueError(
                "[settlement] manifest: no matching ClearingHouse code at its address on this chain"
            )

    def _token_decimals(self) -> list[int]:
        art = Artifact.load("TestToken")  # any ERC-20 ABI with decimals()
        out = []
        for t in self.manifest["tokens"]:
            for attempt in range(50):
                try:
                    out.append(
                        int(self.sender.w3.eth.contract(address=t, abi=art.abi).functions.decimals().call())
                    )
                    break
                except Exception:
                    if attempt == 49:
                        raise
                    time.sleep(0.2)
        return out

    def _write_chain_file(self, decimals: list[int]) -> None:
        c = self.manifest["contracts"]
        doc = {
            "chain_id": self.spec.chain_id,
            "rpc_url": self.options.rpc_url,
            "clearing_house": c["ClearingHouse"]["address"],
            "vault": c["Vault"]["address"],
            "escape_hatch": c["EscapeHatch"]["address"],
            "confirmations": self.options.confirmations,
            "tokens": [
                {
                    "address": t.address,
                    "decimals": d,
                    "asset": self.spec.risk.assets[t.asset_id].symbol if t.asset_id >= 0 else None,
                }
                for t, d in zip(self.spec.tokens, decimals, strict=True)
            ],
        }
        path = Path(self.options.run_dir) / "settlement-chain.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(path)

    # ---- recovery -------------------------------------------------------------------------------
    def _recover(self) -> None:
        snap = self.snapshots.latest_valid()
        self.fresh = snap is None
        published_at: dict[int, int] = {}
        cursors: dict[int, int] = {}
        if snap is not None:
            self.journal_seq, blob = snap
            _seq, n_out, n_in = SNAP_META.unpack_from(blob, 0)
            published_at, cursors, off = read_positions(blob, SNAP_META.size, n_out, n_in)
            self.engine.restore(bytes(blob[off:]))
        skips = replay_skips(self.outputs, published_at)
        if snap is None:
            skips = [ring.published for ring in self.outputs]  # a fresh journal: nothing of ours is there
        journal_dir = self.state_dir / "journal"
        if journal_dir.exists():
            for seq, record in JournalReader(journal_dir).replay(self.journal_seq + 1):
                self.engine.apply(record)
                if record[0] == EVENTS:
                    _p, consumed, cursor, nonce = unpack_events_head(record)
                    cursors[nonce] = cursor + consumed
                self.journal_seq = seq
                skips = self._emit(skips, live=False)
        release_consumed(self.inputs, self.consumers, cursors)
        self._retarget()

    def write_snapshot(self) -> None:
        parts = [SNAP_META.pack(self.journal_seq, len(self.outputs), len(self.inputs))]
        parts += pack_positions(self.outputs, self.inputs, self.consumers)
        parts.append(self.engine.snapshot())
        self.journal.flush()
        self.snapshots.write(self.journal_seq, b"".join(parts))
        self.snapshots.prune(keep=2)
        self.records_since_snapshot = 0

    # ---- outputs --------------------------------------------------------------------------------
    def _emit(self, skips: list[int], live: bool = True) -> list[int]:
        out = self.engine.take_outputs()
        if live and (out.confirmed or out.sealed is not None):
            self.write_status()  # before SETTLED goes out: whoever hears it finds the status as fresh
        n_risk = len(self.options.to_risk)
        datas: list[bytes | bytearray] = [out.commands.get(p, b"") for p in range(n_risk)]
        if self.options.events is not None:
            datas.append(out.events)
        new_skips = []
        for ring, data, skip in zip(self.outputs, datas, skips, strict=True):
            new_skips.append(_publish(ring, data, skip, self.wait) if data else skip)
        if out.sealed is not None:
            path = self.state_dir / "batches" / f"{out.sealed.batch_id:08d}.hxd1"
            if not path.exists():
                path.write_bytes(out.sealed.data)
        if live:
            for text in out.alarms:
                self.alarm(text)
        return new_skips

    def alarm(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n"
        with self.alarm_lock, open(self.state_dir / "alarms.log", "a") as fh:
            fh.write(line)

    def _retarget(self) -> None:
        """Point the sender at the in-flight batch (none while halted), and at payouts to execute."""
        e = self.engine
        pending = e.pending.batch_id if e.pending is not None else None
        self.payable = {b: p for b, p in e.batch_payouts.items() if b != pending}
        if len(self.ours) != len(e.history) + 1:  # rebuilt only when a batch is sealed or voided
            self.ours = {0: ZERO_HASH, **{b: v[0] for b, v in e.history.items()}}
        target = e.pending if (e.pending is not None and not e.halted) else None
        if target is not self.target:
            self.target = target
            self.target_gen += 1

    def write_status(self) -> None:
        e = self.engine
        doc = {
            "confirmed_batch": e.confirmed_id,
            "pending_batch": e.pending.batch_id if e.pending else None,
            "pending_since_s": round((time.time_ns() - e.pending.sealed_ns) / 1e9, 3) if e.pending else 0,
            "halted": e.halted,
            "deposits_seen": e.deposits_seen,
            "deposits_credited_on_chain": e.batch_credited,
            "forced_requests_seen": e.forced_seen,
            "forced_requests_waiting": len(e.forced),
            "insurance": e.insurance_status(),
            "accounts": len(e.trees.accounts),
            "chain_error": self.chain_error,
            "transactions_sent": self.sender.sent,
            "gas_used_last": self.sender.gas_used[-1] if self.sender.gas_used else 0,
            "journal_seq": self.journal_seq,
        }
        tmp = self.state_dir / "status.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.state_dir / "status.json")

    # ---- chain threads ---------------------------------------------------------------------------
    def _watch_deposits(self) -> None:
        registry = AccountRegistry(self.options.run_dir)  # one per thread (not thread-safe)
        tokens = [t.lower() for t in self.manifest["tokens"]]
        watcher = DepositWatcher(
            self.options.rpc_url,
            self.manifest["contracts"]["Vault"]["address"],
            next_id=self.engine.deposits_seen + 1,
            confirmations=self.options.confirmations,
            from_block=int(self.manifest.get("start_block", 0)),
        )
        forced = ForcedRequestWatcher(
            self.options.rpc_url,
            self.manifest["contracts"]["EscapeHatch"]["address"],
            next_id=self.engine.forced_seen + 1,
            confirmations=self.options.confirmations,
            from_block=int(self.manifest.get("start_block", 0)),
        )
        backoff = 0.2
        last_gap = last_forced_gap = last_malformed = ""
        log = WithdrawalLog(self.options.run_dir)
        log_offset = self.engine.withdrawal_log_offset
        while not self.stop_requested:
            try:
                log_offset = self._read_withdrawals(log, log_offset, tokens)
                for f in forced.poll():
                    self.facts.put(self._forced_fact(f, registry, tokens))
                if forced.gap and forced.gap != last_forced_gap:
                    self.alarm(f"forced request gap: {forced.gap}")
                last_forced_gap = forced.gap
                for d in watcher.poll():
                    account_id = registry.ensure_account(d.account.lower())
                    token = tokens.index(d.token.lower())
                    self.facts.put(
                        pack_deposit(
                            d.deposit_id, account_id, token, d.amount, d.deposited_at, d.block, d.account
                        )
                    )
                if watcher.gap and watcher.gap != last_gap:
                    self.alarm(f"deposit gap: {watcher.gap}")
                last_gap = watcher.gap
                backoff = 0.2
                last_malformed = ""
                time.sleep(0.2)
            except MalformedLog as exc:  # garbage from the node: say so once, read again later
                if str(exc) != last_malformed:
                    self.alarm(f"forced request watcher: {exc}")
                last_malformed = str(exc)
                self.chain_error = f"watcher: {exc}"[:300]
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except ChainUnavailable as exc:
                self.chain_error = f"watcher: {exc}"[:300]
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # a bug: say so, keep the process alive
                self.alarm(f"deposit watcher: {type(exc).__name__}: {exc}")
                time.sleep(1.0)

    @staticmethod
    def _forced_fact(f: Any, registry: AccountRegistry, tokens: list[str]) -> bytes:
        """The journal record of a confirmed forced request or cancellation (a token not in the manifest
        is index 255: the core records the id and alarms)."""
        if not isinstance(f, ChainForcedRequest):
            return pack_forced_cancel(f.request_id)
        account_id = registry.ensure_account(f.account.lower())
        token = tokens.index(f.token.lower()) if f.token.lower() in tokens else 255
        return pack_forced(
            f.request_id, account_id, token, f.amount, f.destination, f.deadline, f.block, f.account
        )

    def _read_withdrawals(self, log: WithdrawalLog, offset: int, tokens: list[str]) -> int:
        """Journal the gateways' new signed withdrawals, each with the chain's own checks (nonce unused on
        chain; the signature the account's, by ECDSA or its ERC-1271 approval)."""
        for end, rec in log.read_from(offset):
            try:
                if rec is None or rec.token.lower() not in tokens or not 0 <= rec.nonce < FORCED_BIT:
                    raise ValueError("unusable")
                w = Withdrawal(
                    to_checksum_address(rec.account), to_checksum_address(rec.token), rec.amount,
                    to_checksum_address(rec.destination), rec.nonce, rec.expiry,
                )  # fmt: skip
            except (ValueError, TypeError):
                self.alarm(f"withdrawals.log: a malformed or unusable line before offset {end}: skipped")
                self.facts.put(pack_log_offset(end))
            else:
                sig = bytes.fromhex(rec.signature.removeprefix("0x")) if len(rec.signature) == 132 else b""
                ch = self.sender.ch
                used = bool(self.sender._rpc(ch.functions.nonceUsed(w.account, w.nonce).call))
                ok = not used and verify_withdrawal(w, sig, self.spec.chain_id, ch.address, self.sender.w3)
                token = tokens.index(rec.token.lower())
                self.facts.put(pack_withdrawal(rec.account_id, token, w, sig, ok, end))
            offset = end
        return offset

    def _send_batches(self) -> None:
        backoff = 0.2
        done_gen = -1
        last_payouts = last_fund = 0.0
        while not self.stop_requested:
            b, gen = self.target, self.target_gen
            if b is None or gen == done_gen:
                if time.monotonic() - last_payouts >= 1.0:
                    last_payouts = time.monotonic()
                    self._execute_payouts()
                if time.monotonic() - last_fund >= (FUND_OBSERVE_S if self.engine.fund_on else 0.5):
                    last_fund = time.monotonic()
                    self._observe_fund()
                time.sleep(0.02)
                continue
            try:
                block = self.sender.post(
                    b, stop=lambda g=gen: self.stop_requested or self.target_gen != g, ours=self.ours
                )
                self.facts.put(pack_confirmed(b.batch_id, block, time.time_ns()))
                self.chain_error = ""
                done_gen = gen
                backoff = 0.2
            except ChainUnavailable as exc:
                self.chain_error = f"sender: {exc}"[:300]
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except RolledBack as exc:
                self.facts.put(pack_rollback(exc.batch_id, exc.batch_hash))
                done_gen = gen
            except (NotOurs, BatchRefused) as exc:
                self.facts.put(pack_failed(b.batch_id, f"{type(exc).__name__}: {exc}"))
                done_gen = gen
            except Exception as exc:
                self.alarm(f"batch sender: {type(exc).__name__}: {exc}")
                time.sleep(1.0)

    def _observe_fund(self) -> None:
        """Journal what the InsuranceFund holds (the first one switches insurance moves on). From this thread:
        its PAID and CONFIRMED facts are queued before the observation that sees their effects."""
        if not self.spec.insurance_fund:
            return
        try:
            self.facts.put(
                self.sender.observe_fund(self.spec.insurance_fund, [t.address for t in self.spec.tokens])
            )
        except ChainUnavailable as exc:
            self.chain_error = f"fund: {exc}"[:300]

    def _execute_payouts(self) -> None:
        """Pay every final batch's withdrawals (the same thread as batches: one nonce sequence)."""
        for bid, payouts in list(self.payable.items()):
            if bid in self.paid_reported:
                continue
            try:
                if self.sender.execute_payouts(bid, payouts):
                    self.paid_reported.add(bid)
                    self.facts.put(pack_paid(bid))
            except ChainUnavailable as exc:
                self.chain_error = f"payouts: {exc}"[:300]
                return
            except BatchRefused as exc:
                self.alarm(f"payouts of batch {bid}: {exc}")

    # ---- live loop ------------------------------------------------------------------------------
    def _commit(self, record: bytes, skips: list[int]) -> list[int]:
        self.journal_seq = self.journal.append(record)
        self.journal.commit()
        self.engine.apply(record)
        self.records_since_snapshot += 1
        return self._emit(skips)

    def run(self, ready: Any = None) -> None:
        for t in self.threads:
            t.start()
        if ready is not None:
            ready.set()
        skips = [0] * len(self.outputs)
        interval_ns = max(int(self.options.batch_interval_s * 1e9) // 4, 1_000_000)
        last_clock = last_status = last_control = 0
        resume_path = self.state_dir / "resume.request"
        while not self.stop_requested:
            worked = False
            for p, consumer in enumerate(self.consumers):
                view, n = consumer.peek(MAX_BATCH)
                if not n:
                    view.release()
                    continue
                worked = True
                rows = np.frombuffer(view, np.uint8, n * SLOT_BYTES).reshape(n, SLOT_BYTES)
                kept = rows[_KEEP[rows[:, 0]]].tobytes()
                record = pack_events(p, kept, n, consumer.cursor, self.inputs[p].nonce)
                view.release()
                skips = self._commit(record, skips)
                consumer.release(n)
            while True:
                try:
                    fact = self.facts.get_nowait()
                except queue.Empty:
                    break
                worked = True
                skips = self._commit(fact, skips)
            now = time.time_ns()
            if now - last_control >= 100_000_000:
                last_control = now
                if resume_path.exists():
                    resume_path.unlink()
                    skips = self._commit(pack_resume(), skips)
            if now - last_clock >= interval_ns and self.engine.pending is None and not self.engine.halted:
                last_clock = now
                skips = self._commit(pack_clock(now), skips)
            self._retarget()
            if self.snapshot_requested or self.records_since_snapshot >= self.options.snapshot_every:
                self.snapshot_requested = False
                self.write_snapshot()
            if now - last_status >= 1_000_000_000:
                last_status = now
                self.write_status()
            self.health.beat(self.journal_seq)
            if not worked:
                time.sleep(0.002)
        self.write_snapshot()
        self.write_status()
        self.close()

    def close(self) -> None:
        self.stop_requested = True
        for t in self.threads:
            if t.is_alive():
                t.join(timeout=10)
        self.journal.close()
        for c in self.consumers:
            c.close()
        for r in (*self.inputs, *self.outputs):
            r.close()
        self.registry.close()


def rebuild_from_journal(options: SettlementOptions, spec: SettlementSpec) -> SettlementEngine:
    """The core the journal alone gives (no ring, no chain): a live process must equal it."""
    engine = SettlementEngine(spec, AccountRegistry(options.run_dir).get_address)
    for _seq, record in JournalReader(Path(options.state_dir) / "journal").replay(1):
        engine.apply(record)
        engine.take_outputs()
    return engine


def run_settlement(options: SettlementOptions, ready: Any = None) -> None:
    """Process entry point (a multiprocessing target)."""
    if options.supervisor_pid:
        become_stage(options.name, options.run_dir, options.supervisor_pid)
    proc = SettlementProcess(options)

    handle_stage_signals(proc)
    try:
        proc.run(ready)
    finally:
        if options.supervisor_pid:
            remove_pid_file(options.run_dir, options.name)
