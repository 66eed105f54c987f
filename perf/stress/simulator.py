"""`hx stress`: a scenario through the real processes (risk, shards, liquidation), in simulated time.

The run: build the exchange the scenario describes (``exchange_setup``), start it (a shard and a
risk partition as real processes, real rings, journals), fund a population of leveraged accounts
and open their positions through the book (``population``), then step through the scenario's
path at ``step_s`` of simulated time, as fast as the engine goes (no sleeping):

1. the oracle's view of every price at t (``oracle`` sources per symbol: honest ones follow the
   path, a manipulated one spikes, freezes, lags, drifts or goes silent; the index is
   ``engine.math.oracle_index.calc_index`` of them) -> MARK_PRICE per market, ORACLE_PRICE per
   asset without a market; funding per simulated interval; sessions; the resolution;
2. market makers cancel and requote around the index, their depth thinning as volatility rises;
3. normal flow: small taker orders from funded accounts;
4. a barrier: a HEARTBEAT through risk and every shard and back (risk has applied everything the
   shards did with everything sent before it);
5. barriers until the step's liquidation work is done (risk does it in bounded records: the
   cascade's orders, fills, takeovers and ADL take many of them).

Meanwhile every event of the risk and shard event rings is read and checked: books never cross,
liquidation fills stay within their bankruptcy-price limits; liquidations, takeovers, ADL and the
insurance fund are tallied over time, and the wall time from each step's price update to the first
liquidation order it caused is measured. At the end the processes stop (snapshotting) and the
risk partition's state is checked offline: conservation and reservations (``validate``), no
negative equity without an insurance or ADL event covering it, and its journal replayed from
scratch gives exactly its state (``replay_identical``).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from engine.math.funding import FundingConfig, calc_funding_rate
from engine.math.mark_price import BasisEma, calc_basis_ema, calc_basis_pico, calc_mark_price
from engine.math.oracle_index import IndexConfig, IndexState, SourceQuote, calc_index
from engine.risk.risk_engine import SYSTEM_ACCOUNT_BASE, insurance_account
from engine.types.enums import BalanceReason, LiquidationKind, MarketStatus, MsgType, PriceStatus
from engine.types.fixed import PPB
from engine.wire.codec import encode
from engine.wire.layout import BY_TYPE, SLOT_BYTES
from perf.stress.exchange_setup import (
    ATOMS,
    MICRO,
    SimExchange,
    SimMarket,
    build_exchange,
    check_exchange,
    denominate,
)
from perf.stress.population import FIRST_TRADER, Population, build_population
from perf.stress.scenario import Scenario, ScenarioError

LIQ_COID = 1 << 63
# barriers after a step's flow while new liquidation orders or takeovers keep appearing: risk acts
# on a bounded number of accounts per record (engine/risk/process.py, LIQUIDATION), so a cascade
# step's work takes many records; the next price waits for it, as it did when one record did it all
MAX_ROUNDS = 10_000
MAX_STEPS = 1_000_000  # about three hours of wall time at a few ms a step
LAG_S = 30.0  # how far behind a lagging oracle source is (simulated seconds)
FUND = insurance_account(0)  # the run has one risk partition


_BALANCE = BY_TYPE[MsgType.BALANCE].dtype
_LIQUIDATION = BY_TYPE[MsgType.LIQUIDATION].dtype
_POSITION = BY_TYPE[MsgType.POSITION].dtype
_BBO = BY_TYPE[MsgType.BBO].dtype
_ACCEPTED = BY_TYPE[MsgType.ACCEPTED].dtype
_FILL = BY_TYPE[MsgType.FILL].dtype


@dataclass
class Tally:
    """What the event streams said, and the invariants seen to hold while reading them."""

    liquidations: int = 0  # liquidation cases started (STARTED events: an account may start several)
    orders: int = 0  # liquidation orders into the book
    takeovers: int = 0
    adl: int = 0
    covered_micro: int = 0
    uncovered_micro: int = 0
    insurance_micro: int = 0
    fills: int = 0
    book_never_crossed: bool = True
    within_bankruptcy: bool = True
    covered_accounts: set[int] = field(default_factory=set)
    liq_limits: dict[int, tuple[int, int]] = field(default_factory=dict)  # order id -> (side, limit ticks)
    touch: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)  # market -> bid, ask ticks
    last_trade: dict[int, int] = field(default_factory=dict)  # market -> price ticks
    step_first_order_at: float | None = None  # wall time of the first liquidation order this step
    step_orders: int = 0  # liquidation orders into the book this step (liquidations_per_s)
    step_actions: int = 0  # the same and takeovers (liquidation_actions_per_s)
    positions: dict[tuple[int, int], int] = field(default_factory=dict)  # (account, market) -> size
    gross_atoms: int = 0  # the sum of |size| over ``positions`` (kept as they change: 100,000 of them)
    funding_payments: int = 0  # BALANCE events of reason FUNDING (payers and receivers)
    funding_paid_micro: int = 0  # what the payers paid (the receivers got the same: zero-sum)
    resolution_settled: set[int] = field(default_factory=set)  # population accounts a resolution paid
    # the driver's own accounts (seeders, makers, flow) that were liquidated: none, or the run
    # measured its harness (a seeder short of margin was the largest takeover of a run)
    harness_liquidated: set[int] = field(default_factory=set)

    def on_risk(self, data: bytes, now: float) -> None:
        self.on_balances(data)
        self.on_liquidations(data, now)

    def on_balances(self, data: bytes) -> None:
        slots = np.frombuffer(data, _BALANCE)  # every slot seen as a BALANCE; only those count
        balance = slots["msg_type"] == MsgType.BALANCE
        # the fund's USDC from its own BALANCE events: the unwind's fills and the liquidation fees
        # move it too, not only the LIQUIDATION events (whose insurance_micro is the fund's cash
        # as that event left it)
        fund = np.flatnonzero(balance & (slots["account"] == FUND) & (slots["asset"] == 0))
        if len(fund):
            self.insurance_micro = int(slots["balance"][fund[-1]])
        settled = balance & (slots["reason"] == BalanceReason.RESOLUTION) & (slots["asset"] != 0)
        if settled.any():
            accounts = slots["account"][settled]
            self.resolution_settled.update(
                int(a) for a in accounts[(accounts >= FIRST_TRADER) & (accounts < SYSTEM_ACCOUNT_BASE)]
            )
        paid = balance & (slots["reason"] == BalanceReason.FUNDING)
        if paid.any():
            delta = slots["delta"][paid]
            self.funding_payments += int(np.count_nonzero(delta))
            self.funding_paid_micro += int(-delta[delta < 0].sum())

    def on_liquidations(self, data: bytes, now: float) -> None:
        """LIQUIDATION and POSITION events: every slot seen as each kind, the kind's own selected
        (a cascade sends ~100,000 of them: decoding one at a time made the driver compete with risk
        for a core; tests/perf/stress/test_tally.py holds it to the per-event reading)."""
        kinds = np.frombuffer(data, np.uint8)[::SLOT_BYTES]
        liq = np.frombuffer(data, _LIQUIDATION)[kinds == MsgType.LIQUIDATION]
        if len(liq):
            kind = liq["kind"]
            orders = int(np.count_nonzero(kind == LiquidationKind.ORDER))
            takeovers = int(np.count_nonzero(kind == LiquidationKind.TAKEOVER))
            started = kind == LiquidationKind.STARTED
            self.liquidations += int(np.count_nonzero(started))
            if started.any():
                accounts = liq["account"][started]
                self.harness_liquidated.update(accounts[accounts < FIRST_TRADER].tolist())
            self.orders += orders
            self.takeovers += takeovers
            self.step_orders += orders
            self.step_actions += orders + takeovers
            if (orders or takeovers) and self.step_first_order_at is None:
                self.step_first_order_at = now
            adl = kind == LiquidationKind.ADL
            self.adl += int(np.count_nonzero(adl & (liq["size_atoms"] != 0)))
            covered, uncovered = kind == LiquidationKind.COVERED, kind == LiquidationKind.UNCOVERED
            self.covered_micro += sum(liq["amount_micro"][covered].tolist())  # (Python ints: no wrap)
            self.uncovered_micro += sum(liq["amount_micro"][uncovered].tolist())
            cover = (kind == LiquidationKind.TAKEOVER) | adl | covered | uncovered
            self.covered_accounts.update(liq["account"][cover].tolist())
        pos = np.frombuffer(data, _POSITION)[kinds == MsgType.POSITION]
        if len(pos):  # (in stream order: the last one of a position wins)
            positions, gross = self.positions, self.gross_atoms
            for key, size in zip(
                zip(pos["account"].tolist(), pos["market_id"].tolist(), strict=True),
                pos["size_atoms"].tolist(),
                strict=True,
            ):
                gross += abs(size) - abs(positions.get(key, 0))
                positions[key] = size
            self.gross_atoms = gross

    def on_shard(self, data: bytes) -> None:
        kinds = np.frombuffer(data, np.uint8)[::SLOT_BYTES]
        bbo = np.frombuffer(data, _BBO)[kinds == MsgType.BBO]
        if len(bbo):
            two_sided = (bbo["bid_size_lots"] != 0) & (bbo["ask_size_lots"] != 0)
            if (two_sided & (bbo["bid_price_ticks"] >= bbo["ask_price_ticks"])).any():
                self.book_never_crossed = False
            for market, bid, bid_lots, ask, ask_lots in zip(
                *(
                    bbo[f].tolist()
                    for f in (
                        "market_id",
                        "bid_price_ticks",
                        "bid_size_lots",
                        "ask_price_ticks",
                        "ask_size_lots",
                    )
                ),
                strict=True,
            ):  # (a few per batch: one per market)
                self.touch[market] = (bid if bid_lots else None, ask if ask_lots else None)
        acc = np.frombuffer(data, _ACCEPTED)[kinds == MsgType.ACCEPTED]
        acc = acc[acc["client_order_id"] >= LIQ_COID]
        if len(acc):  # (before the fills: an order's ACCEPTED comes before its fills)
            keys = (acc["order_id"] | (acc["market_id"].astype(np.uint64) << np.uint64(40))).tolist()
            self.liq_limits.update(
                zip(keys, zip(acc["side"].tolist(), acc["price_ticks"].tolist(), strict=True), strict=True)
            )
        fill = np.frombuffer(data, _FILL)[kinds == MsgType.FILL]
        if len(fill):
            self.fills += len(fill)
            markets, prices = fill["market_id"].tolist(), fill["price_ticks"].tolist()
            self.last_trade.update(zip(markets, prices, strict=True))
            keys = (fill["taker_order_id"] | (fill["market_id"].astype(np.uint64) << np.uint64(40))).tolist()
            limits = self.liq_limits
            for key, price in zip(keys, prices, strict=True):
                lim = limits.get(key)
                if lim is not None:
                    side, limit = lim
                    if (side == 1 and price < limit) or (side == 0 and price > limit):
                        self.within_bankruptcy = False


class SimOracle:
    """The oracle's view at simulated time t: each symbol from its sources (honest ones follow the
    path with a little noise; the scenario may manipulate one), through calc_index."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.rng = random.Random(seed)
        self.states: dict[str, IndexState] = {}
        self.config = IndexConfig(
            staleness_ns=30 * 10**9,
            band_ppm=50_000,
            min_sources=2,
            max_move_ppm_per_s=0,
            max_price_micro=10**15,
        )

    def index(self, symbol: str, t_s: float, true_price: Decimal) -> tuple[int, int]:
        """(index micro, PriceStatus) of ``symbol`` at ``t_s``.

        A manipulated source's freeze and lag are in simulated seconds (the price the path had at
        ``from_s``, or 30 s ago), read from the path itself: counted in steps, as they were, they
        froze at the start price with ``--step-s 60`` and barely froze at all with 0.01."""
        spec = self.scenario.oracle.get(symbol, {})
        n = int(spec.get("sources", 3))
        bad = spec.get("manipulated", {})
        now_ns = int(t_s * 1e9) + 10**12
        quotes = []
        for i in range(n):
            price = true_price * Decimal(1 + self.rng.uniform(-0.0005, 0.0005))
            ts = now_ns
            start = float(bad.get("from_s", 0))
            if bad and i == int(bad.get("source", 0)) and start <= t_s <= float(bad.get("to_s", 1e18)):
                mode = bad.get("mode", "spike")
                if mode == "spike":
                    price = true_price * Decimal(str(bad.get("factor", 10)))
                elif mode == "freeze":
                    price = self.scenario.price_of(symbol, start)
                elif mode == "lag":
                    price = self.scenario.price_of(symbol, max(0.0, t_s - LAG_S))
                elif mode == "drift":
                    price = true_price * Decimal(1 + 0.001 * (t_s - start))
                elif mode == "silent":
                    continue
            quotes.append(SourceQuote(f"s{i}", max(1, int(price * MICRO)), ts))
        # one source (the scenario may say so) is an index of its own, as a thin venue's is
        config = replace(self.config, min_sources=min(self.config.min_sources, n))
        result = calc_index(quotes, now_ns, config, self.states.get(symbol, IndexState()))
        self.states[symbol] = result.state
        status = PriceStatus.OK if result.status.name == "OK" else PriceStatus.STALE
        return result.index_micro, status


@dataclass
class StepStats:
    t_s: float
    wall_s: float
    prices: dict[str, float]
    insurance_usdc: float
    open_interest: float
    liquidations: int
    orders: int
    breach_latency_ms: float | None


def step_times(scenario: Scenario, step_s: float) -> list[float]:
    """The simulated times of the run's steps: every ``step_s`` from 0, and every row's ``t_s``.

    The rows are the path's own points (a gap's bottom, the last price): on the ``step_s`` grid
    alone a row between two grid points was never shown to the exchange, nor the path's end when
    its length is not a multiple of ``step_s`` (a path ending at 90 s with ``--step-s 60`` stopped
    at 60 s). ScenarioError, before anything starts, when the steps are more than a run can do."""
    end = float(scenario.duration_s)
    n = math.floor(end / step_s + 1e-9) + 1
    if n > MAX_STEPS:
        raise ScenarioError(
            f"{scenario.name}: path: {end:g} s at --step-s {step_s:g} is {n:,} steps (at most "
            f"{MAX_STEPS:,}): give a larger --step-s"
        )
    grid = {round(k * step_s, 9) for k in range(n)}
    return sorted(grid | {round(float(row.t_s), 9) for row in scenario.path})


class Simulator:
    def __init__(
        self, scenario: Scenario, accounts: int = 1000, seed: int = 1, step_s: float = 1.0, pin: bool = False
    ) -> None:
        self.pin = pin  # the driver and risk on CPUs of their own (``_place``; hx stress: by default)
        self.times = step_times(scenario, step_s)
        scenario, self.units = denominate(scenario)  # in the units the engine trades
        self.scenario = scenario
        self.accounts = accounts
        self.seed = seed
        self.step_s = step_s
        self.exchange: SimExchange = build_exchange(scenario)
        with tempfile.TemporaryDirectory(prefix="hx-stress-check-") as tmp:
            check_exchange(self.exchange, scenario.name, Path(tmp))
        self.oracle = SimOracle(scenario, seed)
        self._tally = Tally()
        # what the rings gave, read into the tally when the tally is next looked at: the timed
        # windows wait on the exchange, not on this driver decoding a cascade's events (each batch
        # keeps the time it was read at, so the tally's figures are the same)
        self._unread: list[tuple[bool, bytes, float]] = []
        self.steps: list[StepStats] = []
        self.marker = 0
        self._echoes = 0  # heartbeat echoes seen since the last barrier (a full ring pumps before any)
        self.rng = random.Random(seed)
        self.basis: dict[int, BasisEma] = {}  # perp market -> basis EMA (book.mark_follows_book)
        f = scenario.funding
        self.funding_interval_s = float(f.get("interval_s", 3600))
        if "interval_s" in f and self.funding_interval_s < step_s:
            # one FUNDING a step at most, each the rate of one interval: the rest were never paid
            raise ScenarioError(
                f"{scenario.name}: funding.interval_s: {f['interval_s']!r} s is shorter than a step "
                f"(--step-s {step_s:g}): it is paid at most once a step"
            )
        self.funding_config = FundingConfig(
            cap_ppb=int(Decimal(str(f.get("cap", "0.03"))) * PPB),
            interest_ppb=int(Decimal(str(f.get("interest", "0.0001"))) * PPB),
            clamp_ppb=int(Decimal(str(f.get("clamp", "0.0005"))) * PPB),
            rate_period_ns=int(float(f.get("period_s", 8 * 3600)) * 1e9),
            payment_interval_ns=int(self.funding_interval_s * 1e9),
        )
        self.premiums: dict[int, list[int]] = {}  # perp market -> this interval's premium samples (ppb)
        self.index_micro: dict[str, int] = {}  # symbol -> the index this step
        self.marks_sent: dict[int, int] = {}  # market -> the mark this step (micro)
        self.funded_interval = 0
        self.funding_paid: list[dict[str, Any]] = []  # every interval paid: t_s, market, rate_ppb

    @property
    def tally(self) -> Tally:
        """What the event streams said so far (everything read from the rings)."""
        unread, self._unread = self._unread, []
        for from_risk, data, at in unread:
            if from_risk:
                self._tally.on_risk(data, at)
            else:
                self._tally.on_shard(data)
        return self._tally

    # ---- rings ---------------------------------------------------------------------------------
    def _pump(self) -> int:
        """Read whatever risk and the shard published (into ``tally`` when it is next looked at);
        returns the slots read."""
        now = time.perf_counter()
        got = 0
        for consumer, on in ((self.risk_events, "risk"), (self.shard_events, "shard")):
            view, n = consumer.peek()
            got += n
            if n:
                data = bytes(view)
                view.release()
                consumer.release(n)
                self._unread.append((on == "risk", data, now))
                if on == "risk":
                    self._echoes += self._count_echoes(data)
            else:
                view.release()
        return got

    def _count_echoes(self, data: bytes) -> int:
        slots = np.frombuffer(data, np.uint8).reshape(-1, SLOT_BYTES)
        beats = slots[:, 0] == MsgType.HEARTBEAT
        if not beats.any():
            return 0
        ts = np.ascontiguousarray(slots[beats, 8:16]).view("<u8").ravel()
        return int(np.count_nonzero(ts == self.marker))

    def send(self, messages: list[bytes]) -> None:
        data = memoryview(b"".join(messages))
        chunk = 512 * SLOT_BYTES
        for start in range(0, len(data), chunk):
            part = data[start : start + chunk]
            while not self.ring.try_publish(part, len(part) // SLOT_BYTES):
                self._pump()

    def _pump_until(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Read the rings until ``done()``; TimeoutError naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if not self._pump():
                time.sleep(0.00005)  # give the core back: on a small machine risk and the shard need it
            if time.monotonic() > deadline:
                raise TimeoutError(what)

    def applied(self, timeout_s: float = 300.0) -> None:
        """Wait until risk has released everything sent so far: it releases a record's input after
        the whole record, where a barrier's echo may leave at the record's first early flush (a
        cascade's first liquidation orders go out before the record recomputes everyone else)."""
        ring = self.ring
        self._pump_until(
            lambda: ring.consumer_cursor(0) >= ring.published,
            timeout_s,
            "risk did not apply the price record",
        )

    def barrier(self, timeout_s: float = 300.0) -> None:
        """Wait until risk and every shard have handled everything sent so far (two echoes)."""
        self.marker += 1
        self._echoes = 0
        self.send([encode(MsgType.HEARTBEAT, ts_ns=self.marker)])
        self._pump_until(
            lambda: self._echoes >= 2, timeout_s, f"the exchange did not answer heartbeat {self.marker}"
        )

    # ---- prices ----------------------------------------------------------------------------------
    def price_messages(self, t_s: float) -> tuple[list[bytes], dict[str, float]]:
        truth = self.scenario.prices_at(t_s)
        out: list[bytes] = []
        shown: dict[str, float] = {}
        follows_book = bool(self.scenario.book.get("mark_follows_book", False))
        for m in self.exchange.markets:
            idx, status = self.oracle.index(m.symbol, t_s, truth[m.symbol])
            shown[m.symbol] = idx / MICRO
            self.index_micro[m.symbol] = idx
            if status == PriceStatus.OK and m.kind != "prediction" or 0 < idx < MICRO:
                mark = (
                    self._mark_from_book(m, idx, t_s)
                    if follows_book and m.kind == "perp" and idx > 0
                    else idx
                )
                self.marks_sent[m.market_id] = mark
                out.append(
                    encode(
                        MsgType.MARK_PRICE,
                        m.market_id,
                        price_ticks=max(1, mark // m.tick_micro),
                        ts_ns=int(t_s * 1e9),
                    )
                )
        for a in self.exchange.assets[1:]:
            if self.exchange.market(a.symbol) is not None or not a.follows:
                continue
            idx, status = self.oracle.index(
                a.symbol if a.symbol in truth else a.follows, t_s, truth[a.follows]
            )
            shown.setdefault(a.symbol, idx / MICRO)
            # this step's (no market has its symbol): the funding premium reads it at every step
            self.index_micro[a.symbol] = idx
            out.append(
                encode(
                    MsgType.ORACLE_PRICE,
                    asset=a.asset_id,
                    status=int(status),
                    price_micro=idx,
                    ts_ns=int(t_s * 1e9),
                )
            )
        return out, shown

    def _funding(self, t_s: float) -> list[bytes]:
        """A premium sample per perp every step; at each ``funding.interval_s`` of simulated time one
        FUNDING per perp, the rate from ``engine.math.funding.calc_funding_rate`` (``P + clamp(I -
        P)``, capped, the interval's share of the ``period_s`` rate), which risk pays to every
        position at the mark. The premium is the perp's price over its underlying's where the
        scenario lists the underlying too (``BTC`` beside ``BTC-PERP``), else 0 (the interest rate)."""
        out: list[bytes] = []
        for m in self.exchange.markets:
            if m.kind != "perp":
                continue
            perp, base = self.index_micro.get(m.symbol, 0), self.index_micro.get(m.base, 0)
            listed = m.base in self.scenario.assets and m.base != m.symbol
            premium = (perp - base) * PPB // base if listed and base > 0 and perp > 0 else 0
            self.premiums.setdefault(m.market_id, []).append(premium)
        interval = int(t_s // self.funding_interval_s)
        if interval <= self.funded_interval:
            return out
        self.funded_interval = interval
        for m in self.exchange.markets:
            mark = self.marks_sent.get(m.market_id, 0)
            if m.kind != "perp" or mark <= 0:
                continue
            rate = calc_funding_rate(
                self.premiums.pop(m.market_id, []), self.funding_config
            ).rate_interval_ppb
            out.append(
                encode(
                    MsgType.FUNDING,
                    m.market_id,
                    interval_id=interval,
                    rate_ppb=rate,
                    mark_micro=mark,
                    ts_ns=int(t_s * 1e9),
                )
            )
            self.funding_paid.append({"t_s": t_s, "market": m.symbol, "rate_ppb": rate})
        return out

    def _mark_from_book(self, m: SimMarket, index_micro: int, t_s: float) -> int:
        """The oracle's mark (``engine.math.mark_price``): median of index + the basis EMA, the
        book's median of bid, ask and last trade, and the index, over the book as the last step
        left it. Liquidation orders that empty one side of a thin book move the EMA, and with it
        the mark, toward where they traded: a cascade feeding itself (10 October 2025)."""
        bid, ask = self.tally.touch.get(m.market_id, (None, None))
        tick = m.tick_micro
        bid_micro = None if bid is None else bid * tick
        ask_micro = None if ask is None else ask * tick
        last = self.tally.last_trade.get(m.market_id)
        ts_ns = int(t_s * 1e9)
        basis = calc_basis_pico(bid_micro, ask_micro, index_micro)
        ema = self.basis.get(m.market_id)
        if basis is not None:
            half_life_ns = int(float(self.scenario.book.get("mark_half_life_s", 30)) * 1e9)
            ema, _ = calc_basis_ema(ema, basis, ts_ns, half_life_ns)
            self.basis[m.market_id] = ema
        result = calc_mark_price(
            index_micro,
            None if ema is None else ema.basis_pico,
            bid_micro,
            ask_micro,
            None if last is None else last * tick,
        )
        return result.mark_micro

    # ---- the run -------------------------------------------------------------------------------
    def run(self, calm_s: float = 30.0) -> dict[str, Any]:
        from hx.pipeline import Pipeline
        from hx.topology import Topology

        with tempfile.TemporaryDirectory(prefix="hx-stress-") as tmp:
            config = Path(tmp) / "hx.toml"
            config.write_text(self.exchange.toml())
            topo = Topology(
                run_id=f"hx-stress-{os.getpid()}",
                shards=1,
                gateways=0,
                risk=1,
                recorders=1,
                order_ring_slots=1 << 16,
                event_ring_slots=1 << 18,
            )
            state = Path(tmp) / "state"
            pipe = Pipeline(
                topo,
                markets_path=config,
                state_dir=state,
                fsync="none",
                wait="blocking",
                snapshot_every=1 << 30,
            )
            with pipe:
                self.pipeline = pipe  # (failure tests kill and restart its stages mid-run)
                self.ring = pipe.rings[topo.risk_in_ring(0, 0)]
                self.risk_events = pipe.rings[topo.risk_event_ring(0)].consumer(
                    topo.ring(topo.risk_event_ring(0)).consumer_index("recorder-0")
                )
                self.shard_events = pipe.rings[topo.event_ring(0)].consumer(topo.recorder_consumer_index(0))
                mine = os.sched_getaffinity(0)
                try:
                    placement = self._place()
                    report = self._drive(calm_s)
                finally:
                    os.sched_setaffinity(0, mine)
                    self.risk_events.close()
                    self.shard_events.close()
                report["placement"] = placement
                options = pipe.options_of("risk", 0)
            report["invariants"].update(self._offline_checks(options, state))
            report["insurance_fund_end"] = self.fund_end
            return report

    def _progress(self) -> int:
        """Liquidation work seen so far: orders, takeovers, ADL events (the fund's deleveraging
        goes on over records and shows only as ADL events)."""
        t = self.tally
        return t.orders + t.takeovers + t.adl

    def _quiet(self, timeout_s: float = 300.0) -> None:
        """Wait, reading the rings, until risk reports no liquidation work left for its
        continuation records (``_work_left``). A round's barrier is a client command, and a
        continuation record stops for one at once: barriers sent back to back while a cascade's
        accounts wait cut its work into records of a few accounts (the driver's own traffic, not
        the exchange's)."""
        self._pump_until(lambda: not self._work_left(), timeout_s, "risk did not finish its liquidation work")

    def _work_left(self) -> bool:
        """Does risk report liquidation work left for its continuation records (accounts waiting,
        the fund's deleveraging under way)? As of its last record."""
        metrics = self.pipeline.metrics_of("risk-0")
        if metrics is None:
            return False
        return bool(metrics["hx_liquidation_pending"] or metrics["hx_fund_deleveraging"])

    def _place(self) -> dict[str, Any]:
        """Where the processes run (``pin``): this driver, which stands in for the clients and
        gateways, on the first CPU, the risk process on the others, the shards wherever the
        kernel puts them. Unpinned on 2 vCPUs the kernel put the driver or the shard beside risk
        as it pleased, and the calm baseline alone moved between ~23K and ~32K orders/s from run
        to run (a load generator sharing the system's cores measures its own placement). The
        same placement holds for the calm and the stressed windows."""
        cpus = sorted(os.sched_getaffinity(0))
        if not self.pin or len(cpus) < 2:
            return {"pinned": False}
        driver, risk = cpus[:1], cpus[1:]
        os.sched_setaffinity(0, driver)
        for handle in self.pipeline.of_kind("risk").values():
            os.sched_setaffinity(handle.process.pid, risk)
        return {"pinned": True, "driver_cpus": driver, "risk_cpus": risk, "shards": "unpinned"}

    def _drive(self, calm_s: float) -> dict[str, Any]:
        sc, ex = self.scenario, self.exchange
        t0 = time.perf_counter()
        prices, _ = self.price_messages(0.0)
        self.send(prices)
        self.pop: Population = build_population(ex, sc, self.accounts, self.rng)
        self.send(self.pop.deposits)
        self.barrier()
        for batch in self.pop.opening_orders():
            self.send(batch)
            self.barrier()
        setup_s = time.perf_counter() - t0
        calm_rate = self._flow_rate(self._calm(calm_s))
        latencies: list[float] = []
        flow_orders, flow_wall = 0, 0.0
        peak_rate = peak_actions = 0.0
        phases: list[tuple[float, float, float]] = []  # per step: price, flow, liquidation rounds (s)
        for t in self.times:
            step_wall0 = time.perf_counter()
            msgs, shown = self.price_messages(t)
            msgs += self._session_and_resolution(t)
            msgs += self._funding(t)
            self.tally.step_first_order_at = None
            self.tally.step_actions = self.tally.step_orders = 0
            publish_at = time.perf_counter()
            self.send(msgs)
            # the price update alone first: breach-to-order is its record's recomputation and
            # liquidation scan, not the time this driver takes to generate the step's other flow
            self.applied()
            self.barrier()
            flow_at = time.perf_counter()
            self.send(self.pop.requotes(shown, self._vol(shown), sc.book))
            flow = self.pop.flow(shown, self.rng)
            self.send(flow)
            self.barrier()
            rounds_at = time.perf_counter()
            for _ in range(MAX_ROUNDS):  # liquidation rounds caused by this step
                before = self._progress()
                self._quiet()
                self.barrier()
                if self._progress() == before:
                    break
            wall = time.perf_counter() - step_wall0
            phases.append((flow_at - step_wall0, rounds_at - flow_at, step_wall0 + wall - rounds_at))

            flow_orders += len(flow)
            flow_wall += rounds_at - flow_at  # the flow, until every order of it has been handled
            latency = None
            if self.tally.step_first_order_at is not None:
                latency = (self.tally.step_first_order_at - publish_at) * 1e3
                latencies.append(latency)
                # liquidations_per_s is #14's figure, orders through the book; a run of takeovers
                # alone (a book too thin, a gap past the band) reads 0 there, so the rate of orders
                # and takeovers together is reported beside it
                peak_rate = max(peak_rate, self.tally.step_orders / max(wall, 1e-9))
                peak_actions = max(peak_actions, self.tally.step_actions / max(wall, 1e-9))
            oi = self.tally.gross_atoms / 2 / 1e8
            self.steps.append(
                StepStats(
                    t,
                    wall,
                    shown,
                    self.tally.insurance_micro / MICRO,
                    oi,
                    self.tally.liquidations,
                    self.tally.orders,
                    latency,
                )
            )
        for _ in range(MAX_ROUNDS):  # the path is over: what risk still has to do, done (untimed)
            before = self._progress()
            self.barrier()
            if self._progress() == before and not self._work_left():
                break
        stress_rate = flow_orders / flow_wall if flow_wall else 0.0
        return {
            "scenario": sc.name,
            "accounts": self.accounts,
            "seed": self.seed,
            "step_s": self.step_s,
            "steps": len(self.steps),
            "setup_s": round(setup_s, 2),
            "liquidations": self.tally.liquidations,
            "liquidation_orders": self.tally.orders,
            "takeovers": self.tally.takeovers,
            "adl_events": self.tally.adl,
            "insurance_covered_usdc": self.tally.covered_micro / MICRO,
            "uncovered_usdc": self.tally.uncovered_micro / MICRO,
            "insurance_fund_usdc": [round(s.insurance_usdc, 6) for s in self.steps],
            "breach_to_order_p50_ms": round(statistics.median(latencies), 3) if latencies else None,
            "breach_to_order_p99_ms": round(float(np.percentile(latencies, 99)), 3) if latencies else None,
            "liquidations_per_s": round(peak_rate, 1),  # orders into the book (#14's figure)
            "liquidation_actions_per_s": round(peak_actions, 1),  # and takeovers
            "calm_flow_per_s": round(calm_rate, 1),
            "stress_flow_per_s": round(stress_rate, 1),
            "throughput_ratio": round(stress_rate / calm_rate, 3) if calm_rate else None,
            # where a stress step's wall time goes (median ms): the price record with the
            # liquidations it starts, the normal flow, the further liquidation rounds
            "step_phase_ms": {
                name: round(statistics.median(p[i] for p in phases) * 1e3, 3) if phases else None
                for i, name in enumerate(("price", "flow", "liquidation_rounds"))
            },
            "funding": self.funding_paid,
            "funding_payments": self.tally.funding_payments,
            "funding_paid_usdc": self.tally.funding_paid_micro / MICRO,
            "resolution_settled_accounts": len(self.tally.resolution_settled),
            "harness_accounts_liquidated": sorted(self.tally.harness_liquidated),  # (should be [])
            "ignored_keys": list(sc.ignored),
            "units": self.units,  # symbol -> scenario units per engine unit, where not 1 (as 1000PEPE)
            "invariants": {
                "book_never_crossed": self.tally.book_never_crossed,
                "liquidations_within_bankruptcy_price": self.tally.within_bankruptcy,
            },
        }

    def _calm(self, seconds: float) -> tuple[int, float]:
        """Normal flow on a calm market: (orders, wall seconds). Each step is a stress step without
        a cascade: a price update first, untimed (every mark one tick up, then back at the next
        step: risk recomputes every holder as it does for a step's move, and nobody is liquidated),
        then the timed flow window (requotes, flow, a barrier), then a barrier. So the two rates
        compare the exchange absorbing the same flow after the same work, with and without a
        cascade under way. At least one step when ``seconds`` > 0; none at 0 (``--calm-s 0``: no
        baseline, throughput_ratio null)."""
        shown = {m.symbol: float(self.scenario.assets[m.symbol].start_price) for m in self.exchange.markets}
        marks = {
            m.market_id: (m, self.marks_sent[m.market_id])
            for m in self.exchange.markets
            if m.market_id in self.marks_sent
        }
        orders, wall = 0, 0.0
        for k in range(max(1, int(seconds / self.step_s)) if seconds > 0 else 0):
            self.send(
                [
                    encode(MsgType.MARK_PRICE, mid, price_ticks=max(1, mark // m.tick_micro) + (k + 1) % 2)
                    for mid, (m, mark) in marks.items()
                ]
            )
            self.applied()
            self.barrier()
            w0 = time.perf_counter()
            self.send(self.pop.requotes(shown, {}, self.scenario.book))
            flow = self.pop.flow(shown, self.rng)
            self.send(flow)
            self.barrier()
            wall += time.perf_counter() - w0
            self.barrier()  # (a stress step's first liquidation round)
            orders += len(flow)
        return orders, wall

    @staticmethod
    def _flow_rate(calm: tuple[int, float]) -> float:
        return calm[0] / calm[1] if calm[1] else 0.0

    def _vol(self, shown: dict[str, float]) -> dict[str, float]:
        """Recent absolute return per symbol (what thins the book)."""
        if not self.steps:
            return {}
        last = self.steps[-1].prices
        return {s: abs(shown[s] / last[s] - 1) if last.get(s) else 0.0 for s in shown}

    def _session_and_resolution(self, t: float) -> list[bytes]:
        out = []
        for symbol, spec in self.scenario.sessions.items():
            m = self.exchange.market(symbol)
            if m is None:
                continue
            closed = any(float(a) <= t < float(b) for a, b in spec.get("closed", []))
            was = getattr(self, "_closed", {}).get(symbol, False)
            if closed != was:
                status = MarketStatus.CLOSED if closed else MarketStatus.OPEN
                out.append(encode(MsgType.SET_MARKET_STATUS, m.market_id, status=int(status)))
                self._closed = {**getattr(self, "_closed", {}), symbol: closed}
        res = self.scenario.resolution
        if res and not getattr(self, "_resolved", False) and t >= float(res["t_s"]):
            m = self.exchange.market(res["market"])
            if m is not None:
                out.append(
                    encode(MsgType.RESOLUTION, m.market_id, outcome=1 if res["outcome"] == "YES" else 0)
                )
                out.append(encode(MsgType.SET_MARKET_STATUS, m.market_id, status=int(MarketStatus.RESOLVED)))
                self._resolved = True
        return out

    # ---- after the run ------------------------------------------------------------------------
    def _offline_checks(self, options: Any, state: Path) -> dict[str, bool]:
        from engine.journal import SnapshotStore
        from engine.risk.process import SNAP_META, SNAP_RING, rebuild_from_journal
        from engine.risk.risk_engine import RiskEngine

        replayed, last = rebuild_from_journal(options)
        seq, blob = SnapshotStore(state / "risk-0" / "snapshots").latest_valid()  # type: ignore[misc]
        n_rings = SNAP_META.unpack_from(blob, 0)[1]
        offset = SNAP_META.size + SNAP_RING.size * (
            n_rings
            + len(options.commands)
            + len(options.oracle)
            + len(options.settlement)
            + len(options.shard_events)
        )
        live = RiskEngine(replayed.config)
        live.restore(bytes(blob[offset:]))
        identical = seq == last and live.state_hash() == replayed.state_hash()
        try:
            live.validate()
            conserved = True
        except AssertionError:
            conserved = False
        b = live.book
        live.margin.recompute(b, np.arange(b.count), live.prices, live.marks)
        negative = {int(b.ids[r]) for r in np.flatnonzero(b.equity[: b.count] < 0)} - {
            a for a in (int(x) for x in b.ids[: b.count]) if a >= SYSTEM_ACCOUNT_BASE
        }
        fund = live.insurance_row
        held = {
            self.exchange.assets[a].symbol: int(b.balance[fund, a])
            for a in range(1, len(self.exchange.assets))
            if b.balance[fund, a]
        }
        self.fund_end = {  # the fund's USDC can be negative while it holds what it took over
            "usdc": int(b.balance[fund, 0]) / MICRO,
            # risk's equity: what it holds at its collateral weights (haircuts), as margin counts it
            "equity_usdc": int(b.equity[fund]) / MICRO,
            "perp_positions": int(np.count_nonzero(b.perp_size[fund])),
            "other_assets_held": int(np.count_nonzero(b.balance[fund, 1:])),
            # what it holds (units) and their value at the last prices, without haircuts: with
            # ``usdc``, the fund's mark-to-market value (besides any perp position's P&L)
            "assets_held": {symbol: atoms / ATOMS for symbol, atoms in held.items()},
            "assets_value_usdc": sum(
                atoms * int(live.prices[self.exchange.asset(symbol).asset_id]) // ATOMS
                for symbol, atoms in held.items()
            )
            / MICRO,
        }
        return {
            "conservation": conserved,
            "no_uncovered_negative_equity": negative <= self.tally.covered_accounts,
            "replay_identical": identical,
        }
