"""Shared constants and builders for the settlement-engine tests: the repo's risk config, the three
local test tokens (USDC 6, WETH 18, WBTC 8 decimals) mapped to assets USDC, ETH and BTC, and risk's
event slots packed with the wire layouts."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from engine.risk.risk_config import load_risk_config
from engine.types.enums import BalanceReason, MsgType, RejectCode, WithdrawStatus
from engine.wire.layout import BY_TYPE, SLOT_BYTES, WIRE_VERSION
from settlement.anvil import DEV_PRIVATE_KEYS
from settlement.settlement_engine import (
    SealedBatch,
    SettlementEngine,
    SettlementSpec,
    TokenSpec,
    pack_clock,
    pack_confirmed,
    pack_deposit,
    pack_events,
)
from settlement.sum_tree import CLAIM, LIABILITY

REPO_ROOT = Path(__file__).resolve().parents[2]
RISK = load_risk_config(REPO_ROOT / "config" / "hx.toml")
USDC_ASSET, BTC_ASSET, ETH_ASSET = 0, RISK.asset_id("BTC"), RISK.asset_id("ETH")
AAPL_ASSET = RISK.asset_id("AAPL")
PERP = next(m.market_id for m in RISK.markets.values() if m.is_perp)
FEE_ADDRESS = "0x" + "fe" * 20
CH_ADDRESS = "0x" + "c4" * 20
TOKENS = (
    TokenSpec("0x" + "01" * 20, 6, USDC_ASSET),
    TokenSpec("0x" + "02" * 20, 18, ETH_ASSET),
    TokenSpec("0x" + "03" * 20, 8, BTC_ASSET),
)
SEC = 1_000_000_000
USDC, WETH, WBTC = 0, 1, 2  # token indexes (listing order)
USERS = [Account.from_key(k).address.lower() for k in DEV_PRIVATE_KEYS[3:8]]  # account ids 1..5


def spec(tokens: tuple[TokenSpec, ...] = TOKENS, **kw: int) -> SettlementSpec:
    return SettlementSpec(31337, CH_ADDRESS, tokens, RISK, FEE_ADDRESS, **kw)


def address_of(account: int) -> str | None:
    return USERS[account - 1] if 1 <= account <= len(USERS) else None


class RiskStream:
    """Risk's private event stream as settlement reads it: per-account seqs, packed slots."""

    def __init__(self) -> None:
        self.seq: dict[int, int] = {}
        self.balances: dict[tuple[int, int], int] = {}
        self.held: dict[tuple[int, int], int] = {}

    def _next(self, account: int) -> int:
        self.seq[account] = self.seq.get(account, 0) + 1
        return self.seq[account]

    def balance(
        self,
        account: int,
        asset: int,
        delta: int,
        reason: int = BalanceReason.TRADE,
        ref: int = 0,
        held: int = 0,
    ) -> bytes:
        """A BALANCE event: ``delta`` to the balance and ``held`` to the withdrawal hold."""
        b = self.balances.get((account, asset), 0) + delta
        self.balances[(account, asset)] = b
        h = self.held.get((account, asset), 0) + held
        self.held[(account, asset)] = h
        return BY_TYPE[MsgType.BALANCE].struct.pack(
            MsgType.BALANCE,
            WIRE_VERSION,
            SLOT_BYTES,
            0,
            self._next(account),
            account,
            asset,
            reason,
            b,
            delta,
            h,
            ref,
        )

    def position(self, account: int, market: int, size: int, cost: int) -> bytes:
        return BY_TYPE[MsgType.POSITION].struct.pack(
            MsgType.POSITION, WIRE_VERSION, SLOT_BYTES, market, self._next(account), account, size, cost, 0, 0
        )

    @staticmethod
    def price(asset: int, price_micro: int, market: int = 0xFFFF_FFFF, kind: int = 1) -> bytes:
        return BY_TYPE[MsgType.PRICE].struct.pack(
            MsgType.PRICE, WIRE_VERSION, SLOT_BYTES, market, asset, kind, 0, price_micro, 0
        )

    def rejected(self, account: int, command: int, ref: int, reason: int) -> bytes:
        return BY_TYPE[MsgType.REJECTED].struct.pack(
            MsgType.REJECTED,
            WIRE_VERSION,
            SLOT_BYTES,
            0,
            self._next(account),
            ref,
            0,
            0,
            account,
            reason,
            command,
        )


class Harness:
    """An engine, its journal (every record applied), and a model of risk answering deposits."""

    def __init__(
        self, tokens: tuple[TokenSpec, ...] = TOKENS, users: list[str] | None = None, **kw: int
    ) -> None:
        self.spec = spec(tokens, **kw)
        self.users = users or USERS
        self.engine = SettlementEngine(self.spec, self.address_of)
        self.journal: list[bytes] = []
        self.risk = RiskStream()
        self.now = 10 * SEC
        self.deposit_id = 0
        self.sealed: list[SealedBatch] = []
        self.settled: list[tuple[int, ...]] = []
        self.alarms: list[str] = []
        self.results: list[bytes] = []  # every command settlement sent to risk
        self.margin_locked: set[int] = set()  # accounts whose withdrawals risk refuses for margin

    def apply(self, record: bytes) -> None:
        self.journal.append(record)
        self.engine.apply(record)
        out = self.engine.take_outputs()
        self.alarms += out.alarms
        if out.sealed is not None:
            self.sealed.append(out.sealed)
        s = BY_TYPE[MsgType.SETTLED].struct
        for off in range(0, len(out.events), SLOT_BYTES):
            self.settled.append(s.unpack_from(out.events, off)[4:8])
        for _part, cmds in out.commands.items():  # risk answers each command with a BALANCE
            for off in range(0, len(cmds), SLOT_BYTES):
                self.results.append(bytes(cmds[off : off + SLOT_BYTES]))
                if cmds[off] == MsgType.DEPOSIT:
                    f = BY_TYPE[MsgType.DEPOSIT].struct.unpack_from(cmds, off)
                    account, asset, _src, amount, did = f[4:9]
                    self.events(self.risk.balance(account, asset, amount, BalanceReason.DEPOSIT, did))
                    continue
                if cmds[off] == MsgType.WITHDRAW_REQUEST:  # risk: balance and margin, then a hold
                    account, asset, amount, rid = BY_TYPE[MsgType.WITHDRAW_REQUEST].struct.unpack_from(
                        cmds, off
                    )[4:8]
                    if account in self.margin_locked:
                        self.events(self.risk.rejected(account, MsgType.WITHDRAW_REQUEST, rid,
                                                       RejectCode.INSUFFICIENT_MARGIN))  # fmt: skip
                    elif amount > self.risk.balances.get((account, asset), 0):
                        self.events(self.risk.rejected(account, MsgType.WITHDRAW_REQUEST, rid,
                                                       RejectCode.INSUFFICIENT_BALANCE))  # fmt: skip
                    else:
                        self.hold(account, asset, amount, rid)
                    continue
                account, asset, status, units, nonce = BY_TYPE[MsgType.WITHDRAW_RESULT].struct.unpack_from(
                    cmds, off
                )[4:9]
                if status == WithdrawStatus.PAID:
                    self.events(
                        self.risk.balance(account, asset, 0, BalanceReason.WITHDRAW_PAID, nonce, -units)
                    )
                else:
                    self.events(
                        self.risk.balance(account, asset, units, BalanceReason.WITHDRAW_RETURN, nonce, -units)
                    )

    def hold(self, account: int, asset: int, units: int, nonce: int) -> None:
        """Risk holds ``units`` for withdrawal ``nonce`` (as after a WITHDRAW_REQUEST)."""
        self.events(self.risk.balance(account, asset, -units, BalanceReason.WITHDRAW_HOLD, nonce, units))

    def events(self, *slots: bytes) -> None:
        self.apply(pack_events(0, b"".join(slots)))

    def deposit(self, account: int, token: int, amount: int, did: int | None = None) -> None:
        self.deposit_id = did if did is not None else self.deposit_id + 1
        self.apply(pack_deposit(self.deposit_id, account, token, amount, 0, 1, self.users[account - 1]))

    def address_of(self, account: int) -> str | None:
        return self.users[account - 1] if 1 <= account <= len(self.users) else None

    def tick(self, seconds: float = 1.0) -> None:
        self.now += int(seconds * SEC)
        self.apply(pack_clock(self.now))

    def confirm(self, block: int | None = None) -> None:
        b = self.engine.pending
        assert b is not None
        self.apply(pack_confirmed(b.batch_id, block or 100 + b.batch_id, self.now))

    def holdings(self) -> list[int]:
        e = self.engine
        return [c - q + f for c, q, f in zip(e.credited_wei, e.queued_wei, e.fund_in_wei, strict=True)]

    def check_replay(self, snapshot: bytes, at: int) -> SettlementEngine:
        """The journal replayed into a fresh engine, and from ``snapshot`` (taken after ``at``
        records) on, both give this engine's state; returns the restored one."""
        fresh = SettlementEngine(self.spec, self.address_of)
        for r in self.journal:
            fresh.apply(r)
            fresh.take_outputs()
        assert fresh.state_hash() == self.engine.state_hash()
        restored = SettlementEngine(self.spec, self.address_of)
        restored.restore(snapshot)
        for r in self.journal[at:]:
            restored.apply(r)
            restored.take_outputs()
        assert restored.state_hash() == self.engine.state_hash()
        return restored

    def check_solvent(self) -> None:
        for t in range(len(self.spec.tokens)):
            trees = self.engine.trees
            assert trees.tree(t, CLAIM).total - trees.tree(t, LIABILITY).total == self.holdings()[t]
