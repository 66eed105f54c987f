"""The accounts of a stress run, and the orders they send: all through the real order path.

Kinds (weights by default; ``population`` in the scenario may change ``short_bias``):

* ``long`` / ``short``: USDC collateral, a perp position at 2-8x;
* ``concentrated``: the same at 8-9.5x, several times the size;
  (where the scenario lists a stablecoin as collateral, half of these three kinds hold it
  instead of USDC: a depeg of it must reach someone);
* ``cross``: collateral in a volatile asset (the scenario's first collateral or spot asset), a
  long perp against it: the collateral's haircut and its price both count;
* ``hedged``: the volatile collateral and a short perp of the same underlying;
* ``spot``: USDC collateral, a spot (or equity, or prediction) holding bought on margin.

Positions are opened by crossing large resting orders of two seeding accounts at the start price
(the seeders are funded deep enough to carry the other side). Market makers then quote around the
index every step with a depth that thins as volatility rises; flow accounts send small IOC orders
at the touch (the normal flow whose throughput the report compares with a calm run).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.types.enums import MsgType, TimeInForce
from engine.wire.codec import encode
from engine.wire.layout import BY_TYPE
from perf.stress.exchange_setup import ATOMS, MICRO, SimAsset, SimExchange, SimMarket
from perf.stress.scenario import Scenario

SEEDERS = (1, 2)  # 1 sells what the population buys, 2 buys what it sells
MAKERS = (3,)
FLOW = tuple(range(10, 30))
FIRST_TRADER = 1000
DEEP_USDC = 10**12 * MICRO // 1000  # 1e9 USDC: the seeders and makers never run out
# a seeder also gets this many times the notional it carries (it holds the other side of every
# opening): with 100,000 accounts buying equities at up to 3x, seeder 1 sold ~1.2 billion USDC of
# shares against its 1e9 and was itself liquidated, the fund inheriting its short (flash-crash-2010)
SEED_COVER = 10
_SIDE = BY_TYPE[MsgType.NEW_ORDER].offsets["side"]  # (byte offsets in a NEW_ORDER / CANCEL_ALL slot)
_ACCOUNT = BY_TYPE[MsgType.CANCEL_ALL].offsets["account"]


@dataclass
class Population:
    exchange: SimExchange
    deposits: list[bytes] = field(default_factory=list)
    openings: list[bytes] = field(default_factory=list)
    seeding: list[bytes] = field(default_factory=list)
    unseed: list[bytes] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)
    coid: int = 0
    flow_per_step: int = 40
    start_ticks: dict[int, int] = field(default_factory=dict)
    deposit_id: int = 0

    def _next_coid(self) -> int:
        self.coid += 1
        return self.coid

    def deposit(self, account: int, asset: int, amount: int) -> None:
        self.deposit_id += 1
        self.deposits.append(
            encode(
                MsgType.DEPOSIT,
                account=account,
                asset=asset,
                amount=amount,
                deposit_id=self.deposit_id,
                source=1,
            )
        )

    def order(self, account: int, m: SimMarket, side: int, price_ticks: int, lots: int, tif: int) -> bytes:
        return encode(
            MsgType.NEW_ORDER,
            m.market_id,
            account=account,
            client_order_id=self._next_coid(),
            side=side,
            price_ticks=price_ticks,
            size_lots=lots,
            tif=tif,
        )

    def opening_orders(self) -> list[list[bytes]]:
        """Open every position against a seeder, one side at a time, each batch applied before the next.

        The seeders' orders rest at the start price on both sides of a market, so resting together
        they would cross each other and leave only the net: one side of the population would open
        nothing. So: the sell seeds, the buyers' IOCs against them, the sell seeder's remainder
        cancelled; then the buy seeds, the sellers' IOCs, the buy seeder's remainder cancelled."""
        batches: list[list[bytes]] = []
        for seed_side, seeder in ((1, SEEDERS[0]), (0, SEEDERS[1])):
            batches.append([o for o in self.seeding if o[_SIDE] == seed_side])
            batches.append([o for o in self.openings if o[_SIDE] == seed_side ^ 1])
            batches.append(
                [u for u in self.unseed if int.from_bytes(u[_ACCOUNT : _ACCOUNT + 4], "little") == seeder]
            )
        return batches

    def requotes(self, shown: dict[str, float], vol: dict[str, float], book: dict[str, Any]) -> list[bytes]:
        depth = float(book.get("depth_usd", 2_000_000))
        levels = int(book.get("levels", 10))
        spread = float(book.get("spread_bps", 5)) / 1e4
        thin = float(book.get("thin_with_vol", 0.7))
        ask_factor = float(book.get("ask_depth_factor", 1.0))
        out: list[bytes] = []
        for maker in MAKERS:
            out.append(encode(MsgType.CANCEL_ALL, 0xFFFF_FFFF, account=maker))
        for m in self.exchange.markets:
            mid = shown.get(m.symbol, 0.0)
            if mid <= 0:
                continue
            factor = max(0.05, 1 - thin * min(1.0, vol.get(m.symbol, 0.0) * 40))
            per_level = depth * factor / levels / 2
            for i in range(levels):
                off = spread / 2 + i * spread
                for side, price, f in ((0, mid * (1 - off), 1.0), (1, mid * (1 + off), ask_factor)):
                    ticks = max(1, min(m.max_price_ticks, int(price * MICRO / m.tick_micro)))
                    lots = max(1, int(per_level * f / max(price, 1e-9) * ATOMS / m.lot_atoms))
                    out.append(self.order(MAKERS[0], m, side, ticks, lots, TimeInForce.GTC))
        return out

    def flow(self, shown: dict[str, float], rng: random.Random) -> list[bytes]:
        out = []
        markets = [m for m in self.exchange.markets if shown.get(m.symbol, 0) > 0]
        for _ in range(self.flow_per_step if markets else 0):
            m = rng.choice(markets)
            side = rng.randint(0, 1)
            price = shown[m.symbol] * (1.001 if side == 0 else 0.999)
            ticks = max(1, min(m.max_price_ticks, int(price * MICRO / m.tick_micro)))
            lots = max(1, int(rng.uniform(10, 50) / max(price, 1e-9) * ATOMS / m.lot_atoms))
            out.append(self.order(rng.choice(FLOW), m, side, ticks, lots, TimeInForce.IOC))
        return out


def build_population(ex: SimExchange, sc: Scenario, n: int, rng: random.Random) -> Population:
    pop = Population(ex)
    for account in (*SEEDERS, *MAKERS, *FLOW):
        pop.deposit(account, 0, DEEP_USDC)
    volatile = [a for a in ex.assets[1:] if a.kind in ("crypto", "equity") and a.follows in sc.assets]
    stables = [a for a in ex.assets[1:] if a.kind == "stable" and a.follows in sc.assets]
    perps = [m for m in ex.markets if m.kind == "perp"]
    spots = [m for m in ex.markets if m.kind != "perp"]
    short_bias = float(sc.population.get("short_bias", 0.5))
    price = {m.symbol: sc.assets[m.symbol].start_price for m in ex.markets}
    pop.start_ticks = {m.market_id: m.ticks(price[m.symbol]) for m in ex.markets}
    kinds = ["long", "short", "concentrated", "cross", "hedged", "spot"]
    weights = [
        0.6 * (1 - short_bias),
        0.6 * short_bias,
        0.05,
        0.15 if volatile else 0,
        0.1 if volatile else 0,
        0.1 if spots else 0,
    ]
    if not perps:
        weights = [0, 0, 0, 0, 0, 1]
    seed_lots: dict[tuple[int, int], int] = {}  # (market, side the seeder rests) -> lots
    for k in range(n):
        account = FIRST_TRADER + k
        kind = rng.choices(kinds, weights)[0]
        pop.kinds[account] = kind
        equity = Decimal(rng.randint(1_000, 20_000))
        lev = Decimal(str(rng.uniform(8, 9.5) if kind == "concentrated" else rng.uniform(2, 8)))
        if kind in ("long", "short", "concentrated"):
            _fund(pop, account, equity, stables, sc, rng)
            m = rng.choice(perps)
            side = 1 if kind == "short" or (kind == "concentrated" and rng.random() < short_bias) else 0
            _open(
                pop,
                seed_lots,
                account,
                m,
                side,
                equity * lev * (3 if kind == "concentrated" else 1) / price[m.symbol],
            )
        elif kind in ("cross", "hedged"):
            col = rng.choice(volatile)
            col_price = sc.assets[col.follows].start_price
            qty = equity / col_price
            pop.deposit(account, col.asset_id, int(qty * ATOMS))
            same = [m for m in perps if m.base == col.symbol] or perps
            m = rng.choice(same)
            if kind == "cross":
                _open(pop, seed_lots, account, m, 0, equity * lev * Decimal("0.6") / price[m.symbol])
            else:
                _open(pop, seed_lots, account, m, 1, equity * Decimal("0.9") / price[m.symbol])
        else:
            pop.deposit(account, 0, int(equity * MICRO))
            m = rng.choice(spots)
            side = 0 if m.kind != "prediction" or rng.random() < 0.5 else 1
            _open(pop, seed_lots, account, m, side, _spot_units(m, equity, lev, price[m.symbol]))
    carried = dict.fromkeys(SEEDERS, Decimal(0))  # seeder -> the notional it takes on (USDC)
    for (mid, side), lots in seed_lots.items():
        m = next(x for x in ex.markets if x.market_id == mid)
        seeder = SEEDERS[0] if side == 1 else SEEDERS[1]
        ticks = m.ticks(price[m.symbol])
        pop.seeding.append(pop.order(seeder, m, side, ticks, lots, TimeInForce.GTC))
        carried[seeder] += Decimal(lots * m.lot_atoms) / ATOMS * price[m.symbol]
    for seeder, notional in carried.items():
        top_up = int(notional * SEED_COVER * MICRO) - DEEP_USDC
        if top_up > 0:
            pop.deposit(seeder, 0, top_up)
    for seeder in SEEDERS:
        pop.unseed.append(encode(MsgType.CANCEL_ALL, 0xFFFF_FFFF, account=seeder))
    return pop


STABLE_SHARE = 0.5  # of the USDC-funded perp accounts, where the scenario lists a stablecoin


def _fund(
    pop: Population, account: int, equity: Decimal, stables: list[SimAsset], sc: Scenario, rng: random.Random
) -> None:
    """Deposit ``equity`` in USDC, or (``STABLE_SHARE`` of the time) in one of the scenario's
    stablecoins at its start price. Before, no account held a listed stablecoin (the population's
    collateral was USDC or a volatile asset), so a depeg to 0.87 liquidated nobody through it."""
    if stables and rng.random() < STABLE_SHARE:
        coin = rng.choice(stables)
        # in atoms: only the settlement asset counts in micro-units (engine.types.asset_spec)
        pop.deposit(account, coin.asset_id, int(equity / sc.assets[coin.follows].start_price * ATOMS))
    else:
        pop.deposit(account, 0, int(equity * MICRO))


PREDICTION_STAKE = Decimal("0.9")  # of equity: the rest pays the taker fee and keeps a margin


def _spot_units(m: SimMarket, equity: Decimal, lev: Decimal, price: Decimal) -> Decimal:
    """The size of a ``spot`` account's holding, in units.

    A spot or equity holding is bought on margin, at up to 3x. A prediction share is margined on
    its outcomes, and the pre-trade bound (``engine.math.pre_trade``) reserves the larger of the
    two losses, ``max(p, 1 - p)`` per share, on either side: no leverage can fund it, so the stake
    is a share of equity over that. Sized at 3x like the others, every prediction order was
    refused for margin and the population held nothing a resolution could settle."""
    if m.kind != "prediction":
        return equity * min(lev, Decimal(3)) / max(price, Decimal("0.01"))
    return equity * PREDICTION_STAKE / max(price, 1 - price)


def _open(
    pop: Population,
    seed_lots: dict[tuple[int, int], int],
    account: int,
    m: SimMarket,
    side: int,
    units: Decimal,
) -> None:
    """An IOC at the start price against the seeder resting there (who gets the lots added)."""
    lots = m.lots(units)
    seed_lots[(m.market_id, side ^ 1)] = seed_lots.get((m.market_id, side ^ 1), 0) + lots
    start = pop.start_ticks[m.market_id]
    pop.openings.append(pop.order(account, m, side, start, lots, TimeInForce.IOC))
