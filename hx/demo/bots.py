"""The demo's traders, real clients of the real gateway (the SDK, both protocols).

* market makers (binary protocol) quote five levels each side around a reference price per
  market, refreshed every second;
* takers (JSON protocol, as the mobile backend would) send small IOC orders;
* leveraged traders (binary) hold positions near their maximum leverage, so a sharp move
  liquidates some of them; they come back (funded again) a little later.

Until an oracle drives the marks, the reference prices are a random walk the demo owns; every
``shock_every_s`` it provokes a sharp move (-8% over a few seconds on the crypto markets) worth
seeing on the dashboard. Accounts are funded through the gateway's development faucet.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eth_account import Account

from gateway.sdk.client import HxClient
from gateway.sdk.errors import HxError
from gateway.sdk.events import Balance

START_PRICES = {
    "BTC-PERP": 95_000,
    "ETH-PERP": 3_500,
    "ETH-USDC": 3_500,
    "AAPL-USDC": 230,
    "PRES28-YES": 0.55,
}


@dataclass
class DemoState:
    """Shared by the bots (one asyncio loop): reference prices and what happened."""

    prices: dict[int, float] = field(default_factory=dict)
    external: dict[int, float] = field(default_factory=dict)
    funder: Any = None  # hx.demo.chain_funding.ChainFunder when settlement runs (deposits on chain)  # the oracle's marks/prices, when it runs
    symbols: dict[int, str] = field(default_factory=dict)
    shock_until: float = 0.0
    rounds: int = 0
    orders: int = 0
    rejects: int = 0


def _step_prices(state: DemoState, rng: random.Random, now: float, shock_every_s: float) -> None:
    shocking = now < state.shock_until
    if not shocking and int(now) % int(shock_every_s) == 0 and now > 30:
        state.shock_until = now + 5
        shocking = True
    for m, p in state.prices.items():
        sym = state.symbols[m]
        if m in state.external:  # the oracle drives this market (and its scheduled shocks)
            state.prices[m] = state.external[m]
            continue
        if sym.endswith("-YES"):
            state.prices[m] = min(0.95, max(0.05, p + rng.gauss(0, 0.01)))
            continue
        drift = -0.016 if shocking and ("BTC" in sym or "ETH" in sym) else 0.0
        state.prices[m] = p * math.exp(drift + rng.gauss(0, 0.0008))


async def _client(url: str, protocol: str, fund_usdc: str, state: DemoState | None = None) -> HxClient:
    """A fresh account, logged in and funded: by a deposit on the chain when settlement runs (as a
    user would), else through the development faucet; returns once the USDC is credited."""
    key = "0x" + bytes(Account.create().key).hex()
    funder = state.funder if state is not None else None
    client = await HxClient(url, protocol).connect()
    await client.login(key)  # first: the credit's BALANCE event comes to this session
    if funder is not None:
        await asyncio.to_thread(funder.fund, key, "USDC", int(fund_usdc))
    else:
        await client.faucet("USDC", fund_usdc)
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:  # credited: a USDC balance event
        try:
            ev = await asyncio.wait_for(client.events.get(), 1.0)
        except TimeoutError:
            continue
        if isinstance(ev, Balance) and ev.asset == 0 and ev.balance > 0:
            break
    return client


def _quantise(value: float, step: Decimal) -> str:
    return str((Decimal(repr(value)) / step).to_integral_value() * step)


async def market_maker(url: str, state: DemoState, stop: asyncio.Event) -> None:
    mm = await _client(url, "bin", "50000000", state)
    try:
        while not stop.is_set():
            mm.cancel_all()
            orders = []
            for m, mid in state.prices.items():
                info = mm.markets.get(m)
                if info is None:
                    continue
                for level in range(5):
                    off = 0.0005 * (level + 1)
                    notional = 20_000 if not state.symbols[m].endswith("-YES") else 2_000
                    size = max(float(info.lot_size), notional / max(mid, 1e-9))
                    for side, px in (("buy", mid * (1 - off)), ("sell", mid * (1 + off))):
                        orders.append(
                            {
                                "market": m,
                                "side": side,
                                "price": _quantise(px, info.tick_size),
                                "size": _quantise(size, info.lot_size),
                            }
                        )
            results = await mm.place_many(orders)
            state.orders += len(results)
            state.rejects += sum(1 for r in results if isinstance(r, HxError))
            await asyncio.sleep(1.0)
    finally:
        await mm.close()


async def taker(url: str, state: DemoState, stop: asyncio.Event, seed: int) -> None:
    rng = random.Random(seed)
    client = await _client(url, "json", "200000", state)
    try:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            m = rng.choice(list(state.prices))
            info = client.markets.get(m)
            if info is None:
                continue
            side = rng.choice(("buy", "sell"))
            mid = state.prices[m]
            px = mid * (1.003 if side == "buy" else 0.997)
            size = max(float(info.lot_size), rng.uniform(500, 3_000) / max(mid, 1e-9))
            try:
                await client.place(
                    m, side, _quantise(px, info.tick_size), _quantise(size, info.lot_size), tif="ioc"
                )
                state.orders += 1
            except HxError:
                state.rejects += 1
    finally:
        await client.close()


async def leveraged(url: str, state: DemoState, stop: asyncio.Event, seed: int) -> None:
    """Opens a position near the maximum leverage; after a liquidation, funds again and reopens."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            client = await _client(url, "bin", "2000", state)
        except (HxError, OSError):
            await asyncio.sleep(5)
            continue
        try:
            perps = [m for m, s in state.symbols.items() if s.endswith("-PERP")]
            m = rng.choice(perps)
            info = client.markets[m]
            mid = state.prices[m]
            side = rng.choice(("buy", "sell"))
            size = 2_000 * rng.uniform(12, 16) / mid  # 12-16x on 2,000 USDC
            px = mid * (1.01 if side == "buy" else 0.99)
            try:
                await client.place(
                    m, side, _quantise(px, info.tick_size), _quantise(size, info.lot_size), tif="ioc"
                )
                state.orders += 1
            except HxError:
                state.rejects += 1
            await asyncio.sleep(rng.uniform(60, 180))
        finally:
            await client.close()


async def run_demo_bots(
    url: str,
    markets: dict[int, str],
    seed: int = 7,
    shock_every_s: float = 120.0,
    state: DemoState | None = None,
) -> None:
    """Every bot, until cancelled; ``state`` (shared with the dashboard) counts what they did."""
    rng = random.Random(seed)
    state = state or DemoState()
    for m, sym in markets.items():
        state.symbols[m] = sym
        state.prices[m] = float(START_PRICES.get(sym, 100))
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(market_maker(url, state, stop))]
    await asyncio.sleep(2)  # the book first
    tasks += [asyncio.create_task(taker(url, state, stop, seed + k)) for k in range(2)]
    tasks += [asyncio.create_task(leveraged(url, state, stop, seed + 10 + k)) for k in range(4)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        while True:
            await asyncio.sleep(1.0)
            _step_prices(state, rng, loop.time() - t0, shock_every_s)
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def demo_process(url: str, markets: dict[int, str]) -> None:
    """Entry point of the demo's bot process (a multiprocessing target)."""
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    try:
        asyncio.run(run_demo_bots(url, markets))
    except KeyboardInterrupt:
        pass
