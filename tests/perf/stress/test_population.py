"""The stress population's own accounts: the seeders can carry the other side of every opening."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

from engine.types.enums import MsgType
from engine.wire.codec import decode
from perf.stress.exchange_setup import ATOMS, MICRO, build_exchange, denominate
from perf.stress.population import SEEDERS, build_population
from perf.stress.scenario import load_scenario


def test_the_seeders_deposit_covers_what_they_seed_at_100000_accounts() -> None:
    """flash-crash-2010 at 100,000 accounts: seeder 1 sold the population ~1.2 billion USDC of
    shares against a fixed 1e9 USDC, was liquidated when the shares came back, and the fund took
    its short over (it ended short ~957,000 SPY). A seeder is funded for what it carries."""
    sc, _ = denominate(load_scenario("flash-crash-2010"))
    ex = build_exchange(sc)
    pop = build_population(ex, sc, 100_000, random.Random(1))
    usdc: dict[int, int] = defaultdict(int)
    for msg in pop.deposits:
        d = decode(msg, 0)
        if d["asset"] == 0:
            usdc[d["account"]] += d["amount"]
    carried: dict[int, Decimal] = defaultdict(Decimal)
    price = {m.market_id: sc.assets[m.symbol].start_price for m in ex.markets}
    lot = {m.market_id: m.lot_atoms for m in ex.markets}
    for msg in pop.seeding:
        o = decode(msg, 0)
        assert o["msg_type"] == MsgType.NEW_ORDER
        carried[o["account"]] += Decimal(o["size_lots"] * lot[o["market_id"]]) / ATOMS * price[o["market_id"]]
    assert carried[SEEDERS[0]] > 10**9  # (more than the fixed deposit was)
    for seeder in SEEDERS:
        assert usdc[seeder] >= 5 * carried[seeder] * MICRO, (seeder, usdc[seeder] / MICRO, carried[seeder])


def test_the_seeders_positions_stay_under_risks_bound_for_a_sub_dollar_perp() -> None:
    """jelly-2025 ($0.0095) at 5,000 accounts and more: seeder 2's resting buy for every short was
    more than MAX_POSITION_ATOMS (2^60), refused (AMOUNT_OUT_OF_RANGE), so no short opened and the
    squeeze liquidated nobody (934 liquidations at 2,000 accounts, 0 at 5,000). The perp trades
    in lots of 10^k units instead, and each seeder's side fits at 100,000 accounts."""
    from engine.risk.risk_engine import MAX_POSITION_ATOMS

    sc, units = denominate(load_scenario("jelly-2025"))
    assert units == {"JELLY-PERP": 1000}
    ex = build_exchange(sc)
    pop = build_population(ex, sc, 100_000, random.Random(1))
    lot = {m.market_id: m.lot_atoms for m in ex.markets}
    side_atoms: dict[tuple[int, int], int] = defaultdict(int)
    for msg in pop.seeding:
        o = decode(msg, 0)
        side_atoms[(o["account"], o["market_id"])] += o["size_lots"] * lot[o["market_id"]]
    assert set(side_atoms) == {(SEEDERS[0], 100), (SEEDERS[1], 100)}
    assert all(atoms < MAX_POSITION_ATOMS for atoms in side_atoms.values()), side_atoms
