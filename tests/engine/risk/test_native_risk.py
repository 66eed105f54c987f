"""The compiled risk core against its specification, the Python ``RiskEngine``.

Two exchanges run in lockstep on the same journal records: one with ``RiskEngine``, one with
``NativeRiskEngine``, each with its own real matching core (``make_engine``). After every record
the two risk engines must have produced the same output bytes (commands per shard, events) and have
the same state hash; snapshots must be byte-equal and each engine must restore the other's.

Flows are random (seeded, and hypothesis-drawn): makers and takers, leveraged traders who get
liquidated by sharp moves, cancels, amends, stop orders, leverage settings, deposits, withdrawals,
oracle marks, rare commands and absurd figures, accounts of two partitions (the other partition's
orders reach the shard directly, as its risk would send them). Random and mutated bytes must give
the same result or the same exception, never a crash.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.risk.native_risk import NativeRiskEngine, native_available
from engine.risk.order_ledger import OrderLedger, Reservation
from engine.risk.risk_engine import SHARD_EVENTS_SOURCE, RiskEngine, Source, fee_account
from engine.shard.native_engine import make_engine
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import (
    BalanceReason,
    CancelReason,
    MarketStatus,
    MsgType,
    OrderFlag,
    OrderType,
    RejectCode,
    Side,
    TimeInForce,
)
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES
from tests.engine.risk.risk_harness import (
    BTC_PERP,
    CONFIG,
    ETH,
    ETH_USDC,
    MARK_TICKS,
    MARKETS,
    RAIN,
    USDC,
    slot_difference,
)

pytestmark = pytest.mark.skipif(not native_available(), reason="the compiled risk core is not built")

FOREIGN = -2  # a command the other partition's risk sends the shard directly


class Side_:
    """One exchange: a risk engine and its own matching core."""

    def __init__(self, risk: RiskEngine) -> None:
        self.risk = risk
        self.writer = WireEventWriter()
        self.shard = make_engine(MARKETS, self.writer)

    def match(self, orders: bytes) -> bytes:
        out = bytearray()
        for off in range(0, len(orders), SLOT_BYTES):
            self.shard.handle(orders, off)
            out += self.writer.take()
        return bytes(out)


class Twin:
    """The Python and the native engine, fed the same records; compared after every one."""

    def __init__(self, partitions: int = 1) -> None:
        self.py = Side_(RiskEngine(CONFIG, 0, partitions, 1))
        self.c = Side_(NativeRiskEngine(CONFIG, 0, partitions, 1))
        self.records = 0
        self.outputs: list[bytes] = []

    def _record(self, data: bytes, source: int, validate: bool = True) -> bytes:
        """One journal record into both risks; their outputs must agree. Returns the orders."""
        outs = []
        errors = []
        orders = b""
        for side in (self.py, self.c):
            try:
                side.risk.apply_slots(data, 0, len(data) // SLOT_BYTES, source)
                side.risk.end_of_record()
                errors.append(None)
            except Exception as exc:  # the same exception from both, or none
                errors.append(type(exc))
            o, events = side.risk.take_outputs()
            orders = o[0]
            outs.append(o[0] + b"|" + events)
            if errors[-1] is None and validate:  # (forged shard events may break the invariants)
                side.risk.validate()
        assert errors[0] == errors[1], f"record {self.records}: {errors}"
        assert outs[0] == outs[1], f"record {self.records} " + slot_difference(
            outs[0], outs[1], "python", "native"
        )
        assert self.py.risk.state_hash() == self.c.risk.state_hash(), f"record {self.records}: state differs"
        self.records += 1
        self.outputs.append(outs[0])
        return orders

    def send(self, msgs: list[bytes], source: int = Source.GATEWAY) -> None:
        """Commands as one record, then rounds of shard events (one record each) until quiet."""
        data = b"".join(msgs)
        extra_py = extra_c = b""
        if source == FOREIGN:
            orders = data
        else:
            orders = self._record(data, source)
            if source == Source.ORACLE:  # the oracle tells the shards itself
                for m in msgs:
                    if m[0] in (MsgType.MARK_PRICE, MsgType.SET_MARKET_STATUS):
                        for side in (self.py, self.c):
                            side.shard.handle(m, 0)
                extra_py, extra_c = self.py.writer.take(), self.c.writer.take()
        for _ in range(200):
            ev_py = extra_py + self.py.match(orders)
            ev_c = extra_c + self.c.match(orders)
            extra_py = extra_c = b""
            assert ev_py == ev_c, "the two shards diverged"
            # risk gets the shard's private events (market data goes elsewhere)
            wanted = b"".join(
                ev_py[k : k + SLOT_BYTES]
                for k in range(0, len(ev_py), SLOT_BYTES)
                if ev_py[k] in _RISK_EVENTS
            )
            if not wanted:
                return
            orders = self._record(wanted, SHARD_EVENTS_SOURCE)
        raise AssertionError("did not settle")

    def compare_snapshots(self) -> None:
        a, b = self.py.risk.snapshot(), self.c.risk.snapshot()
        assert a == b
        cross_py = RiskEngine(CONFIG, 0, self.py.risk.partitions, 1)
        cross_c = NativeRiskEngine(CONFIG, 0, self.py.risk.partitions, 1)
        cross_py.restore(b)
        cross_c.restore(a)
        assert cross_py.state_hash() == cross_c.state_hash() == self.py.risk.state_hash()
        assert cross_c.snapshot() == a


_RISK_EVENTS = frozenset(
    {
        MsgType.ACCEPTED,
        MsgType.REJECTED,
        MsgType.FILL,
        MsgType.CANCELLED,
        MsgType.AMENDED,
        MsgType.TRIGGERED,
        MsgType.HEARTBEAT,
    }
)


class Flow:
    """Random commands over a few accounts (rich makers, thin leveraged takers, the other partition)."""

    def __init__(self, rng: random.Random, partitions: int = 1) -> None:
        self.rng = rng
        self.partitions = partitions
        self.coid = 0
        self.deposit_id = 0
        self.marks = dict(MARK_TICKS)
        self.accounts = list(range(1, 14))  # 13 never deposits (its first order has no row yet)
        self.live: list[tuple[int, int, int]] = []  # (market, account, coid)

    def deposit(self, account: int, asset: int, amount: int) -> bytes:
        self.deposit_id += 1
        return encode(
            MsgType.DEPOSIT, source=1, account=account, asset=asset, amount=amount, deposit_id=self.deposit_id
        )

    def funding(self) -> list[bytes]:
        out = []
        for a in self.accounts:
            if a % self.partitions or a == 13:
                continue
            rich = a <= 4
            out.append(
                self.deposit(a, USDC, 10**12 if rich else self.rng.choice([2_000, 20_000, 200_000]) * 10**6)
            )
            if rich:
                out.append(self.deposit(a, ETH, 100 * 10**8))
        return out

    def order(self, account: int | None = None) -> bytes:
        r = self.rng
        market = r.choice([BTC_PERP, BTC_PERP, ETH_USDC, RAIN])
        if account is None:
            account = r.choice(self.accounts)
        if r.random() < 0.01:  # the fee account sends orders too (its equity is never figured: refused)
            self.coid += 1
            side = r.choice([Side.BUY, Side.SELL])
            return encode(
                MsgType.NEW_ORDER,
                RAIN,
                account=fee_account(0),
                side=side,
                price_ticks=99 if side == Side.BUY else 1,
                size_lots=1,
                client_order_id=self.coid,
            )
        self.coid += 1
        coid = self.coid
        if r.random() < 0.03 and self.live:  # the client id of an order that may still be open
            market, account, coid = r.choice(self.live[-20:])
        mark = self.marks.get(market, 100)
        width = max(1, mark // 200)
        price = max(1, mark + r.randint(-width, width))
        if market == RAIN:
            price = min(99, max(1, price))
        size = r.choice([1, 1, 2, 5, 10, 50, 200])
        kw: dict[str, Any] = {}
        roll = r.random()
        if roll < 0.05:
            kw["flags"] = OrderFlag.REDUCE_ONLY
        elif roll < 0.1:
            kw["tif"] = TimeInForce.IOC
        elif roll < 0.13 and market == BTC_PERP:
            kw["order_type"] = OrderType.STOP_LIMIT
            kw["trigger_price_ticks"] = mark + r.choice([-1, 1]) * width
        elif roll < 0.16:  # absurd figures
            price = r.choice([2**62, 2**63 - 1, -5, 0, price])
            size = r.choice([2**62, 2**63 - 1, -1, 0, size, 10**15])
        elif roll < 0.18:
            market = r.choice([77, 0])  # unknown markets
        elif roll < 0.185:
            coid = (1 << 63) + coid  # risk's own range: refused from a client
        self.live.append((market, account, coid))
        return encode(
            MsgType.NEW_ORDER,
            market,
            account=account,
            side=r.choice([Side.BUY, Side.SELL]),
            price_ticks=price,
            size_lots=size,
            client_order_id=coid,
            **kw,
        )

    def command(self) -> tuple[list[bytes], int]:
        r = self.rng
        roll = r.random()
        if roll < 0.55:
            n = r.choice([1, 1, 1, 3, 8])
            return [self.order() for _ in range(n)], Source.GATEWAY
        if roll < 0.57:  # a deposit and the account's orders in one record (its exposure moved)
            a = r.choice(self.accounts)
            return [self.deposit(a, USDC, 10**9), self.order(a), self.order(a)], Source.GATEWAY
        if roll < 0.65 and self.live:
            market, account, coid = r.choice(self.live)
            oid = r.choice([0, 0, r.randint(1, 50)])
            return [
                encode(MsgType.CANCEL, market, account=account, client_order_id=coid, order_id=oid)
            ], Source.GATEWAY
        if roll < 0.72 and self.live:
            market, account, coid = r.choice(self.live)
            price = r.choice([0, self.marks.get(market, 100) + r.randint(-50, 50)])
            size = r.choice([0, 1, 3, 100])
            return [
                encode(
                    MsgType.AMEND,
                    market,
                    account=account,
                    client_order_id=coid,
                    price_ticks=price,
                    size_lots=size,
                )
            ], Source.GATEWAY
        if roll < 0.76:
            market = r.choice([BTC_PERP, ETH_USDC, RAIN])
            move = r.choice([-0.2, -0.05, -0.01, 0.01, 0.05, 0.15])
            ticks = max(1, int(self.marks[market] * (1 + move)))
            if market == RAIN:
                ticks = min(99, ticks)
            self.marks[market] = ticks
            return [encode(MsgType.MARK_PRICE, market, price_ticks=ticks)], Source.ORACLE
        if roll < 0.79:
            return [
                encode(
                    MsgType.SET_LEVERAGE,
                    BTC_PERP,
                    account=r.choice(self.accounts),
                    leverage=r.choice([1, 1, 1, 2, 5, 500]),
                    mode=r.choice([0, 0, 1]),  # isolated positions: rows of their own, kept by Python
                )
            ], Source.GATEWAY
        if roll < 0.82:
            return [
                encode(MsgType.CANCEL_ALL, r.choice([BTC_PERP, ETH_USDC]), account=r.choice(self.accounts))
            ], (Source.GATEWAY)
        if roll < 0.85:
            return [
                encode(MsgType.HEARTBEAT, ts_ns=r.randint(1, 10**12)),
                encode(MsgType.L2_SNAPSHOT_REQUEST, BTC_PERP),
            ], (Source.GATEWAY)
        if roll < 0.88:
            a = r.choice(self.accounts)
            return [
                encode(
                    MsgType.WITHDRAW_REQUEST,
                    account=a,
                    asset=USDC,
                    amount=r.randint(1, 10**9),
                    request_id=self.coid,
                )
            ], Source.GATEWAY
        if roll < 0.9:
            return [
                encode(MsgType.ORDER_QUERY, account=r.choice(self.accounts), request_id=1),
                encode(MsgType.RESTATE_REQUEST),
            ], Source.GATEWAY
        if roll < 0.93:
            return [self.deposit(r.choice(self.accounts), USDC, r.randint(1, 10**10))], Source.GATEWAY
        if roll < 0.97 and self.partitions > 1:  # the other partition's orders reach the shard directly
            account = r.choice([a for a in self.accounts if a % self.partitions])
            self.coid += 1
            market = BTC_PERP
            mark = self.marks[market]
            return [
                encode(
                    MsgType.NEW_ORDER,
                    market,
                    account=account,
                    side=r.choice([Side.BUY, Side.SELL]),
                    price_ticks=mark + r.randint(-100, 100),
                    size_lots=r.choice([1, 5, 20]),
                    client_order_id=self.coid,
                )
            ], FOREIGN
        return [self.order()], Source.GATEWAY


def run_flow(seed: int, steps: int, partitions: int = 1) -> Twin:
    rng = random.Random(seed)
    twin = Twin(partitions)
    flow = Flow(rng, partitions)
    twin.send(flow.funding(), Source.GATEWAY)
    for m, t in MARK_TICKS.items():
        twin.send([encode(MsgType.MARK_PRICE, m, price_ticks=t)], Source.ORACLE)
    for step in range(steps):
        msgs, source = flow.command()
        twin.send(msgs, source)
        if step % 97 == 0:
            twin.compare_snapshots()
    twin.compare_snapshots()
    return twin


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_flows_agree_record_by_record(seed: int) -> None:
    twin = run_flow(seed, 700)
    c = twin.c.risk
    assert c.counters["fills"] > 50 and c.counters["checked"] > 300
    assert c.handed_back > 0  # the Python paths ran too (deposits, oracle, refreshed accounts)


def test_a_liquidation_order_sweeping_several_levels_agrees_fill_by_fill() -> None:
    """A liquidation IOC that takes several makers' levels: its fills are the core's own (the
    liquidation fee to the fund included), the last one too, after which the core stops and the
    liquidator follows the order's end (Core.ended); the two engines agree on every byte."""
    twin = Twin()
    flow = Flow(random.Random(9))
    maker, short, trader = 1, 2, 5
    twin.send([flow.deposit(maker, USDC, 10**12), flow.deposit(short, USDC, 10**12)])
    twin.send([flow.deposit(trader, USDC, 700 * 10**6)])  # $700 for a $5,000 long: 7x
    twin.send([encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=500_000)], Source.ORACLE)

    def order(account: int, side: int, price: int, lots: int) -> bytes:
        flow.coid += 1
        return encode(
            MsgType.NEW_ORDER, BTC_PERP, account=account, side=side, price_ticks=price, size_lots=lots,
            client_order_id=flow.coid,
        )  # fmt: skip

    twin.send([order(short, Side.SELL, 500_000, 100)])
    twin.send([order(trader, Side.BUY, 500_000, 100)])
    twin.send([order(maker, Side.BUY, price, 3) for price in range(480_000, 440_000, -2_000)])  # thin bids
    for mark in range(498_000, 430_000, -2_000):  # down until a liquidation order has swept levels
        twin.send([encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=mark)], Source.ORACLE)
        if twin.c.risk.core.liquidation_fills():
            break
    assert twin.c.risk.core.liquidation_fills() > 1, "no liquidation order swept more than one level"
    assert twin.c.risk.core.liquidation_ends() > 0  # its last fill and its end: the core's too
    assert not twin.c.risk.liquidator.orders  # and the liquidator followed every one to its end
    twin.compare_snapshots()


def test_a_liquidation_order_the_shard_refuses_agrees_and_is_retried_then_backstopped() -> None:
    """The shard has halted the market behind risk's back (risk is not told): every liquidation
    order is refused, the core applies the refusal and stops after it, the liquidator counts the
    retry (Core.ended), and after the retries the backstop takes the account over; byte for byte as
    the Python engine."""
    from engine.risk.liquidator import LIQUIDATION_COID_BASE

    twin = Twin()
    flow = Flow(random.Random(10))
    maker, short, trader = 1, 2, 5
    twin.send([flow.deposit(maker, USDC, 10**12), flow.deposit(short, USDC, 10**12)])
    twin.send([flow.deposit(trader, USDC, 700 * 10**6)])
    twin.send([encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=500_000)], Source.ORACLE)
    for account, side in ((short, Side.SELL), (trader, Side.BUY)):
        flow.coid += 1
        twin.send(
            [
                encode(
                    MsgType.NEW_ORDER,
                    BTC_PERP,
                    account=account,
                    side=side,
                    price_ticks=500_000,
                    size_lots=100,
                    client_order_id=flow.coid,
                )  # fmt: skip
            ]
        )
    twin.send([encode(MsgType.SET_MARKET_STATUS, BTC_PERP, status=MarketStatus.HALTED)], FOREIGN)
    refused = 0
    for mark in range(498_000, 400_000, -2_000):
        twin.send([encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=mark)], Source.ORACLE)
        refused = sum(
            1
            for o in twin.outputs
            for k in _slots(o, MsgType.REJECTED)
            if decode(o, k)["client_order_id"] >= LIQUIDATION_COID_BASE
        )
        if not twin.c.risk.book.perp_size[twin.c.risk.book.find(trader)].any():
            break
    assert refused >= 2, "the shard refused no liquidation order (or only once: no retry)"
    assert twin.c.risk.core.liquidation_ends() >= refused  # the refusals were the core's, not Python's
    assert not twin.c.risk.book.perp_size[twin.c.risk.book.find(trader)].any(), "never backstopped"
    assert not twin.c.risk.liquidator.orders
    twin.compare_snapshots()


def test_two_partitions_agree() -> None:
    twin = run_flow(11, 600, partitions=2)
    codes = {decode(o, k)["reason"] for o in twin.outputs for k in _slots(o, MsgType.REJECTED)}
    assert RejectCode.ACCOUNT_NOT_HERE in codes


def test_coverage_of_reject_codes_and_types() -> None:
    """The flows reach every code the core answers with, and every message type it applies."""
    codes: set[int] = set()
    types: set[int] = set()
    handbacks: dict[str, int] = {}
    cancel_reasons: set[int] = set()
    for seed in (1, 2):
        twin = run_flow(seed, 700)
        # a fill of the fee account (none trades through risk; a shard could still report one)
        fill = encode(
            MsgType.FILL,
            BTC_PERP,
            taker_order_id=10**6,
            maker_order_id=10**6 + 1,
            price_ticks=500_000,
            size_lots=1,
            taker_account=fee_account(0),
            maker_account=2,
            taker_side=Side.BUY,
        )
        twin._record(fill, SHARD_EVENTS_SOURCE)
        # an account in liquidation (a case the liquidator keeps open) sends an order
        from engine.risk.liquidator import Case

        for side in (twin.py, twin.c):
            side.risk.liquidator.cases[3] = Case()
        twin.send([Flow(random.Random(seed)).order(3)], Source.GATEWAY)
        for side in (twin.py, twin.c):
            side.risk.liquidator.cases.pop(3, None)  # (the scan may have ended it already)
        for reason, n in twin.c.risk.core.handbacks().items():
            handbacks[reason] = handbacks.get(reason, 0) + n
        for o in twin.outputs:
            events = o.split(b"|", 1)[1] if b"|" in o else o
            for k in range(0, len(events) - len(events) % SLOT_BYTES, SLOT_BYTES):
                types.add(events[k])
                if events[k] == MsgType.REJECTED:
                    codes.add(decode(events, k)["reason"])
                elif events[k] == MsgType.CANCELLED:
                    cancel_reasons.add(decode(events, k)["reason"])
    want_codes = {
        RejectCode.UNKNOWN_MARKET,
        RejectCode.DUPLICATE_CLIENT_ORDER_ID,
        RejectCode.REDUCE_ONLY_WOULD_INCREASE,
        RejectCode.AMOUNT_OUT_OF_RANGE,
        RejectCode.INSUFFICIENT_MARGIN,
        RejectCode.LEVERAGE_EXCEEDED,
        RejectCode.BAD_FIELD,
        RejectCode.ACCOUNT_LIQUIDATING,
    }
    assert want_codes <= codes, want_codes - codes
    want_types = {
        MsgType.ACCEPTED,
        MsgType.FILL,
        MsgType.CANCELLED,
        MsgType.AMENDED,
        MsgType.TRIGGERED,
        MsgType.BALANCE,
        MsgType.POSITION,
        MsgType.HEARTBEAT,
        MsgType.REJECTED,
        MsgType.ACCOUNT_MARGIN,
    }
    assert want_types <= types, want_types - types
    assert all(handbacks.values()), handbacks  # every reason the core leaves a slot to Python
    assert CancelReason.REDUCE_ONLY in cancel_reasons  # risk's cancels of reduce-only orders too


def _slots(data: bytes, t: int) -> list[int]:
    events = data.split(b"|", 1)[1]
    base = len(data) - len(events)
    return [base + k for k in range(0, len(events) - len(events) % SLOT_BYTES, SLOT_BYTES) if events[k] == t]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(20, 120))
def test_hypothesis_streams_agree(seed: int, steps: int) -> None:
    run_flow(seed, steps, partitions=1 + seed % 2)


@pytest.mark.parametrize("seed", [5, 6])
def test_random_and_mutated_bytes(seed: int) -> None:
    """Garbage in: the same output or the same exception from both, never a crash."""
    rng = random.Random(seed)
    twin = run_flow(seed, 80)
    flow = Flow(rng)
    for _ in range(400):
        msg = bytearray(flow.order() if rng.random() < 0.5 else rng.randbytes(SLOT_BYTES))
        for _ in range(rng.randint(0, 6)):
            msg[rng.randrange(SLOT_BYTES)] = rng.randrange(256)
        if rng.random() < 0.5:
            msg[0] = rng.choice([1, 2, 3, 4, 8, 32, 33, 34, 35, 39, 40, 64, 65])
        source = rng.choice([Source.GATEWAY, SHARD_EVENTS_SOURCE])
        twin._record(bytes(msg), source, validate=False)


def test_ledgers_agree_op_by_op() -> None:
    """The C ledger and OrderLedger, the same random operations, the same answers and entries."""
    from engine.native._hxrisk import Ledger

    rng = random.Random(3)
    py, c = OrderLedger(), Ledger()
    keys: list[tuple[int, int, int]] = []
    for step in range(20_000):
        op = rng.random()
        if op < 0.35 or not keys:
            key = (rng.randint(1, 3), rng.randint(1, 40), rng.randint(1, 3000))
            if not py.is_live(*key):
                r = (key[1], key[0], key[2], rng.randint(0, 1), rng.randint(1, 100), rng.randint(0, 10**9))
                py.add(Reservation(*r, price_ticks=rng.randint(1, 100)))
                c.add(Reservation(*r, price_ticks=py.find(key[0], key[1], 0, key[2]).price_ticks))
                keys.append(key)
            continue
        key = rng.choice(keys)
        m, a, coid = key
        rp, rc = py.find(m, a, 0, coid), c.find(m, a, 0, coid)
        assert (rp is None) == (rc is None)
        if rp is None:
            continue
        assert rp == rc
        if op < 0.5:
            oid = rng.randint(1, 10**6)
            py.accept(m, a, coid, oid, rp.open_lots)
            c.accept(m, a, coid, oid, rp.open_lots)
            assert py.find(m, a, oid, 0) == c.find(m, a, oid, 0)
        elif op < 0.65:
            lots = rng.randint(1, 120)
            assert py.shrink(rp, lots) == c.shrink(rc, lots)
        elif op < 0.72:
            extra = rng.randint(0, 1000)
            py.set_amend_extra(rp, extra)
            c.set_amend_extra(rc, extra)
        elif op < 0.78:
            p, n = rng.randint(1, 100), rng.randint(0, 150)
            assert py.amended(rp, p, n) == c.amended(rc, p, n)
        elif op < 0.82:
            assert py.release_amend(rp) == c.release_amend(rc)
        else:
            assert py.remove(rp) == c.remove(rc)
            keys.remove(key)
        assert py.is_live(m, a, coid) == c.is_live(m, a, coid)
        if step % 1000 == 0:
            assert py.entries() == c.entries()
            assert py.held_by_account() == c.held_by_account()
            assert py.orders_of(a) == c.orders_of(a)
    assert len(py) == len(c)
    assert py.entries() == c.entries()
    c2 = Ledger()
    c2.load(py.entries())
    assert c2.entries() == py.entries()


# ---- the margin and ADL events packed in one numpy pass, against the loops they replaced --------------
def _margin_events_by_loop(engine: RiskEngine, rows: list[int]) -> bytes:
    """The per-row code ``RiskEngine._recompute`` had (the reference for ``pack_private``)."""
    from engine.risk.risk_engine import MARGIN_BELOW_INITIAL, MARGIN_BELOW_MAINTENANCE
    from engine.wire.layout import BY_TYPE, WIRE_VERSION

    pack = BY_TYPE[int(MsgType.ACCOUNT_MARGIN)].struct.pack_into
    b = engine.book
    out = bytearray()
    for row in rows:
        if row == engine.fee_row:
            continue
        equity, initial, maint = int(b.equity[row]), int(b.initial[row]), int(b.maintenance[row])
        flags = (MARGIN_BELOW_MAINTENANCE if equity < maint else 0) | (
            MARGIN_BELOW_INITIAL if equity < initial else 0
        )
        pos = len(out)
        out += bytes(SLOT_BYTES)
        seq = engine.next_seq(int(b.ids[row]))
        pack(out, pos, MsgType.ACCOUNT_MARGIN, WIRE_VERSION, SLOT_BYTES, 0, seq, int(b.ids[row]), flags, equity,
             initial, maint, int(b.reserved[row]))  # fmt: skip
    return bytes(out)


def _adl_events_by_loop(engine: RiskEngine, mid: int, rows: list[int], ranks: list[int]) -> bytes:
    from engine.wire.layout import BY_TYPE, WIRE_VERSION

    pack = BY_TYPE[int(MsgType.ADL_RANK)].struct.pack_into
    out = bytearray()
    for row, rank in zip(rows, ranks, strict=True):
        pos = len(out)
        out += bytes(SLOT_BYTES)
        account = int(engine.book.ids[row])
        pack(
            out, pos, MsgType.ADL_RANK, WIRE_VERSION, SLOT_BYTES, mid, engine.next_seq(account), account, rank
        )
    return bytes(out)


@pytest.mark.parametrize("seed", [21, 22])
def test_packed_events_equal_the_loops_they_replaced(seed: int) -> None:
    import numpy as np

    twin = run_flow(seed, 150, partitions=1 + seed % 2)
    blob = twin.py.risk.snapshot()
    rng = random.Random(seed)
    for _ in range(20):
        a, b = (
            RiskEngine(CONFIG, 0, twin.py.risk.partitions, 1),
            RiskEngine(CONFIG, 0, twin.py.risk.partitions, 1),
        )
        a.restore(blob)
        b.restore(blob)
        n = a.book.count
        rows = sorted(rng.sample(range(n), rng.randint(1, n)))
        want = _margin_events_by_loop(a, rows)
        keep = np.array([r for r in rows if r != b.fee_row], np.int64)
        bk = b.book
        flags = np.where(bk.equity[keep] < bk.maintenance[keep], 1, 0) | np.where(
            bk.equity[keep] < bk.initial[keep], 2, 0
        )
        got = b.pack_private(
            MsgType.ACCOUNT_MARGIN,
            0,
            keep,
            flags=flags,
            equity_micro=bk.equity[keep],
            initial_micro=bk.initial[keep],
            maintenance_micro=bk.maintenance[keep],
            reserved_micro=bk.reserved[keep],
        )
        assert got == want
        ranks = [rng.randint(0, 5) for _ in rows]
        assert _adl_events_by_loop(a, BTC_PERP, rows, ranks) == b.pack_private(
            MsgType.ADL_RANK, BTC_PERP, np.array(rows, np.int64), rank=np.array(ranks, np.int8)
        )
        assert a.state_hash() == b.state_hash()  # the same private seqs taken


def test_snapshot_of_40000_open_orders_round_trips_between_engines() -> None:
    """Snapshots list the ledger as plain sorted tuples (no dataclass conversion per order): both
    engines write the same bytes and restore each other's."""
    py, c = RiskEngine(CONFIG), NativeRiskEngine(CONFIG)
    rng = random.Random(4)
    for k in range(40_000):
        fields = (1 + k % 97, BTC_PERP, k + 1, k % 2, rng.randint(1, 50), rng.randint(0, 10**6))
        for engine in (py, c):
            engine.ledger.add(Reservation(*fields, order_id=k + 1 if k % 3 else 0, price_ticks=500_000))
    a, b = py.snapshot(), c.snapshot()
    assert a == b
    back_py, back_c = RiskEngine(CONFIG), NativeRiskEngine(CONFIG)
    back_py.restore(b)
    back_c.restore(a)
    assert len(back_c.ledger) == len(back_py.ledger) == 40_000
    assert back_py.state_hash() == back_c.state_hash() == py.state_hash() == c.state_hash()


def _adl_ranks_as_before(liq: Any) -> None:
    """``Liquidator.publish_adl_ranks`` as it was (every row of every perp valued): the reference."""
    import numpy as np

    from engine.math.liquidation import ADL_BUCKETS
    from engine.types.fixed import ATOMS_PER_UNIT

    e, b = liq.engine, liq.engine.book
    n = b.count
    if liq.rank_cache.shape != (b.capacity, e.config.n_perps):
        grown = np.zeros((b.capacity, e.config.n_perps), np.int8)
        grown[: liq.rank_cache.shape[0]] = liq.rank_cache[: b.capacity]
        liq.rank_cache = grown
    equity = b.equity[:n].astype(np.float64)
    margin = np.maximum(b.initial[:n], 1).astype(np.float64)
    system = b.ids[:n] >= e.system_base
    for p, mid in enumerate(e.config.perps):
        mark = float(e.marks[p])
        size = b.perp_size[:n, p]
        if mark <= 0 or not size.any():
            continue
        value = size.astype(np.float64) * (mark / ATOMS_PER_UNIT)
        upnl = value - b.perp_cost[:n, p]
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(
                (upnl > 0) & (equity > 0) & ~system, (upnl / margin) * (np.abs(value) / equity), 0.0
            )
        ranks = np.zeros(n, np.int8)
        for sign in (1, -1):
            sel = np.flatnonzero((np.sign(size) == sign) & (score > 0))
            if len(sel):
                ordered = np.sort(score[sel])
                below = np.searchsorted(ordered, score[sel], side="left")
                ranks[sel] = 1 + below * ADL_BUCKETS // len(sel)
        changed = np.flatnonzero(ranks != liq.rank_cache[:n, p])
        if len(changed):
            liq.rank_cache[changed, p] = ranks[changed]
            e.events += e.pack_private(MsgType.ADL_RANK, mid, changed, rank=ranks[changed])


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_adl_ranks_over_held_rows_equal_the_full_pass(seed: int) -> None:
    """Random books (positions, equities, marks moved between publications): the same events,
    the same ranks kept, the same state as the pass over every row."""
    import numpy as np

    twin = run_flow(seed, 120)
    blob = twin.py.risk.snapshot()
    a, b = RiskEngine(CONFIG), RiskEngine(CONFIG)
    a.restore(blob)
    b.restore(blob)
    rng = np.random.default_rng(seed)
    published = 0
    for _ in range(6):
        move_seed = int(rng.integers(1 << 30))
        for engine in (a, b):  # the same random moves on both
            r = np.random.default_rng(move_seed)
            n = engine.book.count
            flat = r.random(n) < 0.3
            engine.book.perp_size[:n, 0] = np.where(flat, 0, r.integers(-(10**8), 10**8, n))
            engine.book.perp_cost[:n, 0] = r.integers(-(10**11), 10**11, n)
            engine.book.equity[:n] = r.integers(-(10**9), 10**12, n)
            engine.book.initial[:n] = r.integers(0, 10**10, n)
            engine.marks[0] = int(r.integers(1, 10**11))
        a.take_outputs()
        b.take_outputs()
        _adl_ranks_as_before(a.liquidator)
        b.liquidator.publish_adl_ranks()
        want = a.take_outputs()
        assert want == b.take_outputs()
        published += len(want[1]) // SLOT_BYTES
        assert (a.liquidator.rank_cache == b.liquidator.rank_cache).all()
        assert a.state_hash() == b.state_hash()
    assert published > 10  # ranks moved, up and down to 0


def test_random_flows_agree_with_the_nearest_first_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record of a small book takes the nearest-first route (``RiskEngine._nearest``, the
    early scan, then the rest): the two engines still agree record by record."""
    from engine.risk import risk_engine

    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_ROWS", 8)
    monkeypatch.setattr(risk_engine, "NEAREST_SAFETY", 0.5)
    twin = run_flow(4, 700)
    c, py = twin.c.risk, twin.py.risk
    assert c.counters["fills"] > 50
    assert c.counters["nearest_first"] == py.counters["nearest_first"] > 5


@settings(max_examples=80, deadline=None)
@given(
    positions=st.lists(
        st.tuples(st.integers(-(10**12), 10**12), st.integers(-(10**15), 10**15)), min_size=2, max_size=2
    ),
    size=st.integers(-(10**12), 10**12),
    notional=st.integers(-1, 10**15),
    cash=st.integers(-(10**12), 10**12),
)
def test_transfer_perp_in_c_is_the_python_transfer(
    positions: list[tuple[int, int]], size: int, notional: int, cash: int
) -> None:
    """``Core.transfer_perp`` (a takeover's or ADL's position transfer) against
    ``RiskEngine.transfer_perp``: open, add, reduce, close and flip on either side, realised P&L to
    cash, zero sizes and negative notionals (Python's ValueError), figures leaving int64: the same
    state, the same events, or the same exception."""
    engines = [RiskEngine(CONFIG), NativeRiskEngine(CONFIG)]
    perp = CONFIG.markets[BTC_PERP].perp
    results = []
    for e in engines:
        rows = [e.book.row(a) for a in (7, 8)]
        for row, (held, cost) in zip(rows, positions, strict=True):
            e.book.perp_size[row, perp] = held
            e.book.perp_cost[row, perp] = cost
            e.book.balance[row, 0] = cash
        e.take_outputs()
        try:
            e.transfer_perp(rows[0], rows[1], perp, size, notional)
            error = None
        except (ValueError, OverflowError) as exc:
            error = type(exc)
        results.append((error, e.take_outputs()[1], e.state_hash()))
    assert results[0] == results[1]


def test_transfer_perp_leaves_an_isolated_book_to_python() -> None:
    """With an isolated position on the book the C transfer declines (its events go on the owner's
    stream); the Python transfer then runs and the engines agree."""
    engines = [RiskEngine(CONFIG), NativeRiskEngine(CONFIG)]
    perp = CONFIG.markets[BTC_PERP].perp
    for e in engines:
        a, b = e.book.row(7), e.book.row(8)
        e.book.perp_size[a, perp], e.book.perp_cost[a, perp] = 10**8, 50_000 * 10**6
        e.book.isolated_row(9, BTC_PERP)
        assert e.book.n_isolated
    native = engines[1]
    assert not native.core.transfer_perp(native, a, b, perp, BTC_PERP, 10**7, 5_000 * 10**6)
    for e in engines:
        e.take_outputs()
        e.transfer_perp(e.book.find(7), e.book.find(8), perp, 10**7, 5_100 * 10**6)
    assert engines[0].take_outputs() == engines[1].take_outputs()
    assert engines[0].state_hash() == engines[1].state_hash()


@settings(max_examples=60, deadline=None)
@given(
    cash=st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=2, max_size=2),
    amount=st.one_of(st.integers(-(10**15), 10**15), st.integers(-(2**64), 2**64)),
    ref=st.one_of(st.integers(0, 2**64 - 1), st.integers(-5, -1)),
)
def test_move_cash_in_c_is_the_python_move(cash: list[int], amount: int, ref: int) -> None:
    """``Core.move_cash`` (haircuts, covers, liquidation fees) against ``RiskEngine.move_cash``:
    the same state and events, or the same exception (a balance leaving int64, an amount or a ref
    no event can carry)."""
    engines = [RiskEngine(CONFIG), NativeRiskEngine(CONFIG)]
    results = []
    for e in engines:
        rows = [e.book.row(a) for a in (7, 8)]
        for row, c in zip(rows, cash, strict=True):
            e.book.balance[row, 0] = c
        e.take_outputs()
        try:
            e.move_cash(rows[0], rows[1], amount, BalanceReason.LIQUIDATION, BalanceReason.INSURANCE, ref)
            error = None
        except (OverflowError, struct.error) as exc:
            error = type(exc)
        results.append((error, e.take_outputs()[1], e.state_hash()))
    assert results[0] == results[1]
