"""The stress driver's event tally (``Tally.on_risk`` / ``on_shard``, vectorised) against its
specification: the per-event reading it replaced, written out here, on random event streams."""

from __future__ import annotations

import random
from dataclasses import fields

from engine.types.enums import LiquidationKind, MsgType
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES
from perf.stress.population import FIRST_TRADER
from perf.stress.simulator import LIQ_COID, Tally


def _spec_on_risk(t: Tally, data: bytes, now: float) -> None:
    """The per-event reading of LIQUIDATION and POSITION events (BALANCE: Tally's own, shared)."""
    for off in range(0, len(data), SLOT_BYTES):
        kind_of_slot = data[off]
        if kind_of_slot == MsgType.LIQUIDATION:
            e = decode(data, off)
            kind = e["kind"]
            if kind == LiquidationKind.STARTED:
                t.liquidations += 1
                if e["account"] < FIRST_TRADER:
                    t.harness_liquidated.add(e["account"])
            elif kind == LiquidationKind.ORDER:
                t.orders += 1
                t.step_orders += 1
                t.step_actions += 1
                if t.step_first_order_at is None:
                    t.step_first_order_at = now
            elif kind == LiquidationKind.TAKEOVER:
                t.takeovers += 1
                t.step_actions += 1
                t.covered_accounts.add(e["account"])
                if t.step_first_order_at is None:
                    t.step_first_order_at = now
            elif kind == LiquidationKind.ADL:
                t.adl += 1 if e["size_atoms"] else 0
                t.covered_accounts.add(e["account"])
            elif kind == LiquidationKind.COVERED:
                t.covered_micro += e["amount_micro"]
                t.covered_accounts.add(e["account"])
            elif kind == LiquidationKind.UNCOVERED:
                t.uncovered_micro += e["amount_micro"]
                t.covered_accounts.add(e["account"])
        elif kind_of_slot == MsgType.POSITION:
            e = decode(data, off)
            key = (e["account"], e["market_id"])
            t.gross_atoms += abs(e["size_atoms"]) - abs(t.positions.get(key, 0))
            t.positions[key] = e["size_atoms"]


def _spec_on_shard(t: Tally, data: bytes) -> None:
    for off in range(0, len(data), SLOT_BYTES):
        kind = data[off]
        if kind == MsgType.BBO:
            e = decode(data, off)
            if e["bid_size_lots"] and e["ask_size_lots"] and e["bid_price_ticks"] >= e["ask_price_ticks"]:
                t.book_never_crossed = False
            t.touch[e["market_id"]] = (
                e["bid_price_ticks"] if e["bid_size_lots"] else None,
                e["ask_price_ticks"] if e["ask_size_lots"] else None,
            )
        elif kind == MsgType.ACCEPTED:
            e = decode(data, off)
            if e["client_order_id"] >= LIQ_COID:
                t.liq_limits[e["order_id"] | (e["market_id"] << 40)] = (e["side"], e["price_ticks"])
        elif kind == MsgType.FILL:
            t.fills += 1
            e = decode(data, off)
            t.last_trade[e["market_id"]] = e["price_ticks"]
            lim = t.liq_limits.get(e["taker_order_id"] | (e["market_id"] << 40))
            if lim is not None:
                side, limit = lim
                if (side == 1 and e["price_ticks"] < limit) or (side == 0 and e["price_ticks"] > limit):
                    t.within_bankruptcy = False


def _risk_batch(rng: random.Random) -> bytes:
    out = []
    for _ in range(rng.randint(0, 60)):
        r = rng.random()
        if r < 0.6:
            out.append(
                encode(
                    MsgType.LIQUIDATION,
                    rng.randint(1, 3),
                    account=rng.choice([rng.randint(1, 40), rng.randint(FIRST_TRADER, FIRST_TRADER + 40)]),
                    kind=rng.choice(list(LiquidationKind)),
                    side=rng.randint(0, 1),
                    size_atoms=rng.choice([0, rng.randint(1, 10**9)]),
                    price_micro=rng.randint(1, 10**12),
                    amount_micro=rng.choice([rng.randint(0, 10**6), 2**62, -5]),
                    insurance_micro=rng.randint(-(10**9), 10**12),
                )
            )
        elif r < 0.9:
            out.append(
                encode(
                    MsgType.POSITION,
                    rng.randint(1, 3),
                    account=rng.randint(1, 40),
                    size_atoms=rng.randint(-9, 9),
                )
            )
        else:
            out.append(encode(MsgType.HEARTBEAT, ts_ns=rng.randint(0, 99)))
    return b"".join(out)


def _shard_batch(rng: random.Random, accepted: list[tuple[int, int]]) -> bytes:
    out = []
    for _ in range(rng.randint(0, 60)):
        r = rng.random()
        market = rng.randint(1, 3)
        if r < 0.2:
            bid, ask = rng.randint(90, 110), rng.randint(90, 110)
            out.append(
                encode(
                    MsgType.BBO,
                    market,
                    bid_price_ticks=bid,
                    ask_price_ticks=ask,
                    bid_size_lots=rng.choice([0, 5]),
                    ask_size_lots=rng.choice([0, 5]),
                )  # fmt: skip
            )
        elif r < 0.5:
            oid = rng.randint(1, 10**6)
            accepted.append((oid, market))
            out.append(
                encode(
                    MsgType.ACCEPTED,
                    market,
                    order_id=oid,
                    side=rng.randint(0, 1),
                    price_ticks=rng.randint(90, 110),
                    client_order_id=rng.choice([5, LIQ_COID + rng.randint(0, 99)]),
                )  # fmt: skip
            )
        else:
            oid, m = (
                rng.choice(accepted) if accepted and rng.random() < 0.8 else (rng.randint(1, 10**6), market)
            )
            out.append(
                encode(MsgType.FILL, m, taker_order_id=oid, price_ticks=rng.randint(88, 112), size_lots=1)
            )
    return b"".join(out)


def test_the_vectorised_tally_reads_what_the_per_event_reading_read() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        fast, spec = Tally(), Tally()
        accepted: list[tuple[int, int]] = []
        for step in range(20):
            if step % 5 == 0:  # (a new step of the run)
                for t in (fast, spec):
                    t.step_first_order_at, t.step_orders, t.step_actions = None, 0, 0
            risk = _risk_batch(rng)
            fast.on_risk(risk, float(step))
            spec.on_balances(risk)
            _spec_on_risk(spec, risk, float(step))
            shard = _shard_batch(rng, accepted)
            fast.on_shard(shard)
            _spec_on_shard(spec, shard)
        assert fast.orders + fast.takeovers > 0 and fast.fills > 0 and fast.positions
        for f in fields(Tally):
            assert getattr(fast, f.name) == getattr(spec, f.name), (seed, f.name)
        assert fast.gross_atoms == sum(abs(v) for v in fast.positions.values()) > 0
        assert fast.harness_liquidated and all(a < FIRST_TRADER for a in fast.harness_liquidated)
