"""The liquidator's fast paths (new cases started in one numpy pass, ``Liquidator._plan`` and
``_start``; takeovers written out, ``_take_over``) against their specification, the per-account
code in ``Liquidator.scan`` (``fast = False``).

Two exchanges run in lockstep on the same journal records, each a risk engine with its own matching
core: one liquidates with the vectorised path, one account by account. After every record the two
must have produced the same bytes (commands for every shard, events) and have the same state hash.
Populations are seeded random: leveraged longs and shorts, spot bought on margin, prediction
shares, accounts holding several things (the largest risk is chosen), a small or empty insurance
fund (takeovers, ADL), thin books (IOC remainders), stale prices (WAITING), then sharp random moves;
and crashes on longs, with marks falling again while liquidation orders are in flight (takeovers
with a deficit the fund pays, or cannot).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.risk import liquidator, risk_engine
from engine.risk.native_risk import NativeRiskEngine, native_available
from engine.risk.risk_config import risk_config_from
from engine.risk.risk_engine import SHARD_EVENTS_SOURCE, RiskEngine, Source
from engine.shard.native_engine import make_engine
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import LiquidationKind, MsgType, PriceStatus, Side, TimeInForce
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES
from tests.engine.risk.risk_harness import (
    ASSETS,
    BTC,
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

SPOT_MARKETS = {m: spec for m, spec in MARKETS.items() if m != BTC_PERP}  # an exchange without perps
SPOT_CONFIG = risk_config_from(SPOT_MARKETS, ASSETS)
MAKER, SHORT_SEED, LONG_SEED = 1, 2, 3
FIRST_TRADER = 100
_TO_RISK = frozenset(
    {MsgType.ACCEPTED, MsgType.REJECTED, MsgType.FILL, MsgType.CANCELLED, MsgType.AMENDED, MsgType.TRIGGERED}
)


class Exchange:
    """A risk engine and one matching core for all its shards (each shard's commands in turn)."""

    def __init__(self, cls: type[RiskEngine], fast: bool, shards: int, flush: bool, spot_only: bool) -> None:
        self.risk = cls(SPOT_CONFIG if spot_only else CONFIG, 0, 1, shards)
        self.risk.liquidator.fast = fast
        self.writer = WireEventWriter()
        self.core = make_engine(SPOT_MARKETS if spot_only else MARKETS, self.writer)
        self.taken: list[tuple[list[bytes], bytes]] = []  # outputs flushed early in this record
        if flush:  # as a live process: outputs leave in the middle of a scan
            self.risk.early_flush = lambda: self.taken.append(self.risk.take_outputs())

    def take_outputs(self) -> tuple[list[bytes], bytes, list[int]]:
        """The record's commands per shard and events, early flushes included, and where (in
        events) each early flush cut them."""
        self.taken.append(self.risk.take_outputs())
        orders = [b"".join(o[s] for o, _e in self.taken) for s in range(self.risk.shards)]
        cuts = [len(e) for _o, e in self.taken]
        events = b"".join(e for _o, e in self.taken)
        self.taken = []
        return orders, events, cuts

    def match(self, orders: list[bytes]) -> bytes:
        out = bytearray()
        for data in orders:
            for off in range(0, len(data), SLOT_BYTES):
                self.core.handle(data, off)
                out += self.writer.take()
        return bytes(out)


class Twin:
    def __init__(
        self, cls: type[RiskEngine], shards: int, flush: bool = False, spot_only: bool = False
    ) -> None:
        self.spec = Exchange(cls, False, shards, flush, spot_only)
        self.fast = Exchange(cls, True, shards, flush, spot_only)
        self.records = 0
        self.kinds: dict[int, int] = {}  # LIQUIDATION kind -> count (what the run exercised)

    def _record(self, data: bytes, source: int) -> list[bytes]:
        outs = []
        for x in (self.spec, self.fast):
            x.risk.apply_slots(data, 0, len(data) // SLOT_BYTES, source)
            x.risk.end_of_record()
            outs.append(x.take_outputs())
            x.risk.validate()
        (o1, e1, c1), (o2, e2, c2) = outs
        assert o1 == o2, (
            f"record {self.records}: commands differ {slot_difference(b''.join(o1), b''.join(o2), 'spec', 'fast')}"
        )
        assert e1 == e2, f"record {self.records}: events differ {slot_difference(e1, e2, 'spec', 'fast')}"
        assert c1 == c2, f"record {self.records}: flushed early at {c1} (spec), {c2} (fast)"
        assert self.spec.risk.state_hash() == self.fast.risk.state_hash(), f"record {self.records}: state"
        for off in range(0, len(e1), SLOT_BYTES):
            if e1[off] == MsgType.LIQUIDATION:
                kind = decode(e1, off)["kind"]
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.records += 1
        return o1

    def send(self, msgs: list[bytes], source: int = Source.GATEWAY) -> None:
        """Commands as one record, then rounds of shard events (one record each) until quiet."""
        self.send_records([(msgs, source)])

    def send_records(self, records: list[tuple[list[bytes], int]]) -> None:
        """Commands as records, one after the other before the shards answer any (the orders risk
        sends meanwhile are in flight, as they are live), then rounds of shard events."""
        orders: list[bytes] = []
        extra = [b"", b""]
        for msgs, source in records:
            out = self._record(b"".join(msgs), source)
            orders = [a + b for a, b in zip(orders, out, strict=True)] if orders else out
            if source == Source.ORACLE:  # the oracle tells the shards itself
                for i, x in enumerate((self.spec, self.fast)):
                    for m in msgs:
                        if m[0] in (MsgType.MARK_PRICE, MsgType.SET_MARKET_STATUS):
                            x.core.handle(m, 0)
                    extra[i] += x.writer.take()
        for _ in range(500):
            ev = [extra[0] + self.spec.match(orders), extra[1] + self.fast.match(orders)]
            extra = [b"", b""]
            assert ev[0] == ev[1], "the two matching cores diverged"
            back = b"".join(
                ev[0][k : k + SLOT_BYTES] for k in range(0, len(ev[0]), SLOT_BYTES) if ev[0][k] in _TO_RISK
            )
            if not back:
                return
            orders = self._record(back, SHARD_EVENTS_SOURCE)
        raise AssertionError("did not settle")


class Population:
    def __init__(
        self, rng: random.Random, accounts: int, crash: bool = False, spot_only: bool = False
    ) -> None:
        self.rng = rng
        self.n = accounts
        self.crash = crash  # longs only and prices falling: the fund's position grows one way
        self.coid = 0
        self.deposit_id = 0
        self.spot_only = spot_only
        self.marks = {m: t for m, t in MARK_TICKS.items() if not (spot_only and m == BTC_PERP)}

    def deposit(self, account: int, asset: int, amount: int) -> bytes:
        self.deposit_id += 1
        return encode(
            MsgType.DEPOSIT, source=1, account=account, asset=asset, amount=amount, deposit_id=self.deposit_id
        )

    def order(self, account: int, market: int, side: int, price: int, lots: int, tif: int) -> bytes:
        self.coid += 1
        return encode(
            MsgType.NEW_ORDER,
            market,
            account=account,
            client_order_id=self.coid,
            side=side,
            price_ticks=price,
            size_lots=lots,
            tif=tif,
        )

    def seeds(self) -> list[bytes]:
        """Deep resting orders at the mark (asks) and a tick below (bids) in every market, for the
        traders to open against."""
        out = [self.deposit(a, USDC, 10**15) for a in (MAKER, SHORT_SEED, LONG_SEED)]
        out += [self.deposit(a, ETH, 10**6 * 10**8) for a in (SHORT_SEED, MAKER)]
        out += [self.deposit(SHORT_SEED, BTC, 10**4 * 10**8)]
        for m, t in self.marks.items():
            out.append(self.order(SHORT_SEED, m, Side.SELL, t, 10**7, TimeInForce.GTC))
            out.append(self.order(LONG_SEED, m, Side.BUY, t - 1, 10**7, TimeInForce.GTC))
        return out

    def traders(self) -> list[list[bytes]]:
        """Per trader: a deposit (USDC or ETH collateral) and the orders opening its holdings."""
        r = self.rng
        out = []
        for k in range(self.n):
            a = FIRST_TRADER + k
            usdc = r.randint(500, 20_000)
            kind = r.choice(["long", "long", "short", "short", "spot", "rain", "cross", "both"])
            if self.crash:
                kind = r.choice(["long", "long", "long", "cross", "spot"])
            if self.spot_only:
                kind = r.choice(["spot", "rain"])
            msgs = []
            if kind == "cross":  # ETH collateral, a BTC long
                msgs.append(self.deposit(a, ETH, usdc * 10**8 // 2_000))
            else:
                msgs.append(self.deposit(a, USDC, usdc * 10**6))
            lev = r.uniform(1.5, 9.0)
            btc_lots = max(1, int(usdc * lev / 50_000 * 1000))  # 0.001 BTC lots
            if kind in ("long", "cross", "both"):
                msgs.append(
                    self.order(a, BTC_PERP, Side.BUY, MARK_TICKS[BTC_PERP], btc_lots, TimeInForce.IOC)
                )
            if kind == "short":
                msgs.append(
                    self.order(a, BTC_PERP, Side.SELL, MARK_TICKS[BTC_PERP] - 1, btc_lots, TimeInForce.IOC)
                )
            if kind in ("spot", "both"):  # ETH bought on margin (a USDC liability)
                lots = max(1, int(usdc * min(lev, 3.0) / 2_000 * 100))  # 0.01 ETH lots
                msgs.append(self.order(a, ETH_USDC, Side.BUY, MARK_TICKS[ETH_USDC], lots, TimeInForce.IOC))
            if kind == "rain":
                lots = max(1, int(usdc * 0.9 / 0.4))
                msgs.append(self.order(a, RAIN, Side.BUY, MARK_TICKS[RAIN], lots, TimeInForce.IOC))
            out.append(msgs)
        return out

    def unseed(self) -> list[bytes]:
        return [encode(MsgType.CANCEL_ALL, 0xFFFF_FFFF, account=a) for a in (SHORT_SEED, LONG_SEED)]

    def quotes(self, depth_lots: int) -> list[bytes]:
        """The maker requotes a few levels around every mark (a thin book: IOC remainders)."""
        out = [encode(MsgType.CANCEL_ALL, 0xFFFF_FFFF, account=MAKER)]
        for m, t in self.marks.items():
            width = max(1, t // 400)
            for i in range(1, 4):
                bid, ask = max(1, t - i * width), t + i * width
                if m == RAIN:
                    bid, ask = min(98, bid), min(99, ask)
                out.append(self.order(MAKER, m, Side.BUY, bid, depth_lots, TimeInForce.GTC))
                out.append(self.order(MAKER, m, Side.SELL, ask, depth_lots, TimeInForce.GTC))
        return out

    def btc_drop(self, factor: float) -> tuple[list[bytes], int]:
        self.marks[BTC_PERP] = max(1, int(self.marks[BTC_PERP] * factor))
        return [encode(MsgType.MARK_PRICE, BTC_PERP, price_ticks=self.marks[BTC_PERP])], Source.ORACLE

    def move(self) -> tuple[list[bytes], int]:
        """A sharp move of one or more marks, or a stale or fresh ETH price."""
        r = self.rng
        if r.random() < 0.15:
            status = r.choice([PriceStatus.STALE, PriceStatus.OK, PriceStatus.OK])
            price = self.marks[ETH_USDC] * 10_000
            return [
                encode(MsgType.ORACLE_PRICE, asset=ETH, status=int(status), price_micro=price)
            ], Source.ORACLE
        msgs = []
        for m in r.sample(list(self.marks), r.randint(1, len(self.marks))):
            factor = r.choice([0.85, 0.93, 0.96, 0.97, 0.98, 1.02, 1.05])
            if self.crash:
                factor = r.choice([0.85, 0.9, 0.95, 0.97, 0.99, 1.01])
            t = max(1, int(self.marks[m] * factor))
            if m == RAIN:
                t = min(99, t)
            self.marks[m] = t
            msgs.append(encode(MsgType.MARK_PRICE, m, price_ticks=t))
        return msgs, Source.ORACLE


def run(
    seed: int,
    accounts: int,
    steps: int,
    shards: int,
    cls: type[RiskEngine],
    fund_usdc: int,
    flush: bool = False,
    crash: bool = False,
    spot_only: bool = False,
) -> Twin:
    rng = random.Random(seed)
    twin = Twin(cls, shards, flush, spot_only)
    pop = Population(rng, accounts, crash, spot_only)
    twin.send([encode(MsgType.MARK_PRICE, m, price_ticks=t) for m, t in pop.marks.items()], Source.ORACLE)
    twin.send(pop.seeds())
    for x in (twin.spec, twin.fast):  # the insurance fund, seeded as the exchange would
        x.risk.book.balance[x.risk.insurance_row, USDC] += fund_usdc * 10**6
        x.risk.net_deposits[USDC] += fund_usdc * 10**6
    traders = pop.traders()
    for k in range(0, len(traders), 25):  # several accounts per record
        twin.send([m for msgs in traders[k : k + 25] for m in msgs])
    twin.send(pop.unseed())
    for step in range(steps):
        twin.send(pop.quotes(rng.choice([1, 5, 50, 500])))
        twin.send(*pop.move())
        if crash and step % 3 == 2:  # BTC falls again while the first liquidation orders are in flight
            twin.send_records([pop.btc_drop(0.95), pop.btc_drop(0.9)])
    return twin


@pytest.mark.parametrize(
    ("seed", "shards", "fund_usdc", "flush"),
    [(1, 1, 0, False), (2, 1, 50_000, True), (3, 2, 5_000, False), (4, 3, 0, True), (5, 2, 1_000_000, True)],
)
def test_new_cases_vectorised_equal_the_per_account_path(
    seed: int, shards: int, fund_usdc: int, flush: bool
) -> None:
    cls = NativeRiskEngine if native_available() else RiskEngine
    twin = run(seed, 240, 14, shards, cls, fund_usdc, flush)
    assert twin.kinds.get(LiquidationKind.STARTED, 0) > 20  # the populations do get liquidated
    assert twin.kinds.get(LiquidationKind.ORDER, 0) > 20
    liq = twin.fast.risk.liquidator
    assert liq.started_fast > liq.started // 2  # most by the vectorised path
    assert twin.spec.risk.liquidator.started_fast == 0


@pytest.mark.parametrize(
    ("seed", "shards", "fund_usdc", "flush"), [(6, 1, 10**7, True), (9, 2, 200_000, False)]
)
def test_takeovers_written_out_equal_the_per_account_path(
    seed: int, shards: int, fund_usdc: int, flush: bool
) -> None:
    """A crash on longs: the fund takes positions over one way (``_take_over``), then runs short
    of cash for the deficits (the per-account way: ADL)."""
    twin = run(
        seed, 240, 14, shards, NativeRiskEngine if native_available() else RiskEngine, fund_usdc, flush, True
    )
    liq = twin.fast.risk.liquidator
    assert liq.taken_fast > 20
    assert twin.spec.risk.liquidator.taken_fast == 0


@pytest.mark.parametrize("scalar_max", [0, 1_000_000])
def test_a_run_of_new_cases_packed_by_columns_or_one_by_one_equals_the_per_account_path(
    scalar_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_start_chunk`` packs a run of new cases as columns, or one struct at a time when it is
    short (``_start_few``): each way alone gives the per-account path's bytes and state."""
    monkeypatch.setattr(liquidator, "START_SCALAR_MAX", scalar_max)
    twin = run(2, 240, 14, 2, NativeRiskEngine if native_available() else RiskEngine, 50_000, True)
    liq = twin.fast.risk.liquidator
    assert liq.started_fast > liq.started // 2


def test_an_exchange_without_perps() -> None:
    """Spot bought on margin and prediction shares only (no perp column at all)."""
    twin = run(
        11, 200, 12, 1, NativeRiskEngine if native_available() else RiskEngine, 5_000, True, spot_only=True
    )
    assert twin.fast.risk.liquidator.started_fast > 10


def test_the_python_engine_too() -> None:
    twin = run(7, 120, 10, 2, RiskEngine, 10_000)
    assert twin.kinds.get(LiquidationKind.ORDER, 0) > 10


def test_the_run_exercises_every_branch() -> None:
    """Across the seeds above, the kinds of events that mix with the vectorised ones all occur."""
    seen: dict[int, int] = {}
    for seed in (1, 3):
        twin = run(seed, 240, 14, 2, NativeRiskEngine if native_available() else RiskEngine, 0)
        for k, v in twin.kinds.items():
            seen[k] = seen.get(k, 0) + v
    for kind in (
        LiquidationKind.STARTED,
        LiquidationKind.ORDER,
        LiquidationKind.TAKEOVER,
        LiquidationKind.ENDED,
        LiquidationKind.WAITING,
    ):
        assert seen.get(kind, 0) > 0, f"{kind.name} never happened"


def test_small_planning_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs cut at every window boundary, plans made again and again: the same bytes."""
    monkeypatch.setattr(liquidator, "PLAN_FIRST_ROWS", 1)
    monkeypatch.setattr(liquidator, "PLAN_ROWS", 3)
    twin = run(8, 200, 10, 2, NativeRiskEngine if native_available() else RiskEngine, 20_000, flush=True)
    assert twin.fast.risk.liquidator.started_fast > 20


@pytest.mark.parametrize(("seed", "cls"), [(12, "native"), (13, "python")])
def test_the_nearest_first_scan_equals_the_per_account_path(
    monkeypatch: pytest.MonkeyPatch, seed: int, cls: str
) -> None:
    """Every record of these small books takes the nearest-first route (``RiskEngine._nearest``,
    then ``Liquidator.scan(orders_only=True)``, then the full scan): the vectorised and the
    per-account scans still give the same bytes, and the early scan does start cases."""
    monkeypatch.setattr(risk_engine, "NEAREST_FIRST_ROWS", 16)
    monkeypatch.setattr(risk_engine, "NEAREST_SAFETY", 0.1)  # (a near set smaller than half the rows)
    engine = NativeRiskEngine if cls == "native" and native_available() else RiskEngine
    twin = run(seed, 240, 14, 2, engine, 20_000, flush=True)
    fast, spec = twin.fast.risk.liquidator, twin.spec.risk.liquidator
    assert fast.started_early > 3 and spec.started_early == fast.started_early
    assert fast.started_fast > 0  # the early scan's runs went the vectorised way too


def test_a_plan_survives_an_adl_that_moved_no_row_ahead_of_it() -> None:
    """A crash deleverages after bankruptcies; its counterparties are the other side's profitable
    accounts, not the rows below maintenance the plan has yet to reach: the plan is kept (it was
    thrown away at every ADL), and the bytes are still the per-account path's."""
    twin = run(9, 240, 14, 2, NativeRiskEngine if native_available() else RiskEngine, 200_000, False, True)
    liq = twin.fast.risk.liquidator
    assert twin.kinds.get(LiquidationKind.ADL, 0) > 0
    assert liq.plans_kept > 5


def test_a_plan_an_adl_made_stale_is_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whenever ADL is said to have moved a row ahead (every other time here, whatever it moved),
    the plan is made again from that row: the bytes are the per-account path's either way."""
    calls = {"n": 0}

    def every_other(self: liquidator.Liquidator, ahead: object) -> bool:
        calls["n"] += 1
        return calls["n"] % 2 == 0

    monkeypatch.setattr(liquidator.Liquidator, "_moved_ahead", every_other)
    twin = run(9, 240, 14, 2, NativeRiskEngine if native_available() else RiskEngine, 200_000, False, True)
    liq = twin.fast.risk.liquidator
    assert liq.plans_dropped > 3 and liq.plans_kept > 3


def test_moved_ahead_finds_a_moved_row_among_those_ahead() -> None:
    liq = RiskEngine(CONFIG).liquidator
    ahead = np.array([40, 7, 19, 3], np.int64)  # (any order)
    liq._moved = [100, 200]
    assert not liq._moved_ahead(ahead)
    liq._moved = [100, 19]
    assert liq._moved_ahead(ahead)
    liq._moved = []
    assert not liq._moved_ahead(ahead)


@pytest.mark.parametrize(("seed", "shards", "fund_usdc"), [(9, 2, 200_000), (2, 1, 0), (4, 3, 0)])
def test_the_compiled_adl_batches_equal_their_loops(
    seed: int, shards: int, fund_usdc: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NativeRiskEngine.adl_closes`` and ``haircuts`` (a batch of counterparties in one call of
    the core) against ``Liquidator._apply_closes``' and ``_haircut``'s loops over ``transfer_perp``,
    ``move_cash`` and ``_event``: the same commands, events and state after every record of a
    crash with takeovers and ADL (the spec side of the twin runs the loops)."""
    if not native_available():
        pytest.skip("the compiled core is not built")  # (make setup builds it; CI does)
    made: list[Twin] = []
    init = Twin.__init__

    def twin_with_loops(self: Twin, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        self.spec.risk.adl_closes = lambda *a: False  # type: ignore[method-assign]
        self.spec.risk.haircuts = lambda *a: False  # type: ignore[method-assign]
        made.append(self)

    calls = {"adl_closes": 0, "haircuts": 0}
    for name in calls:
        method = getattr(NativeRiskEngine, name)

        def counted(self: NativeRiskEngine, *a: object, _m: object = method, _n: str = name) -> bool:
            calls[_n] += 1
            return _m(self, *a)  # type: ignore[operator]

        monkeypatch.setattr(NativeRiskEngine, name, counted)
    monkeypatch.setattr(Twin, "__init__", twin_with_loops)
    twin = run(seed, 240, 14, shards, NativeRiskEngine, fund_usdc, True, True)
    assert made and twin.kinds.get(LiquidationKind.ADL, 0) > 10
    assert calls["adl_closes"] > 3 and calls["haircuts"] > 3  # (the fast side's, in C)
