"""From a scenario to an exchange: its assets and markets (config TOML) and how prices reach it.

Derived unless the scenario's asset says otherwise: tick = 5 significant digits of the lowest price
the path reaches (at least 1 micro-USDC),
lot = about 10 USDC of notional, max price 100x the highest, a price band of 20% around the mark. A
perp ``X-PERP`` references asset ``X`` (created, following the perp's path, when the scenario does
not list it); ``collateral`` assets have no market, only a price (``USD*`` ones are stablecoins,
valued at their price; their quantities are atoms like any asset but USDC's); ``spot``, ``equity`` and ``prediction`` assets get a
market of their kind against USDC.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from engine.risk.risk_config import RiskConfigError, load_risk_config
from engine.types.asset_spec import MAX_ASSETS
from engine.types.risk_spec import default_risk_spec
from perf.stress.scenario import SETTLEMENT, AssetDef, PathRow, Scenario, ScenarioError

MICRO = 10**6
ATOMS = 10**8
PPM = 10**6
INT64_MAX = 2**63 - 1
_DEFAULTS = default_risk_spec().assets  # USDC, BTC, ETH, AAPL, a prediction market
# below it (or MIN_LOW) an asset is traded in lots of 10^k units: a seeder holds the other side
# of every opening in one position, and risk refuses a position of 2^60 atoms (MAX_POSITION_ATOMS,
# 1.15e10 units): at $0.0095 (JELLY, 0.005 the bound before) that was ~$100M, so above ~3,000
# accounts the seeder's order was refused, the shorts never opened and jelly-2025 liquidated
# nobody. From $1 a unit, 2^60 atoms is $11.5 billion, past a 100,000-account population's side.
MIN_START = Decimal(1)
MIN_LOW = Decimal("0.0001")
TIER_REFERENCE = {  # the templates' collateral tiers, and the price they were set at
    "crypto": (Decimal(60_000), _DEFAULTS[1].weights),
    "equity": (Decimal(230), _DEFAULTS[3].weights),
}


@dataclass(frozen=True)
class SimMarket:
    market_id: int
    symbol: str  # the scenario's symbol
    kind: str  # perp | spot | equity | prediction
    base: str  # the asset symbol
    tick_micro: int
    lot_atoms: int
    max_price_ticks: int

    def ticks(self, price: Decimal) -> int:
        """A price in whole ticks (rounded to the nearest), at least 1."""
        return max(1, min(self.max_price_ticks, int((price * MICRO / self.tick_micro).to_integral_value())))

    def lots(self, units: Decimal) -> int:
        return max(1, int(units * ATOMS / self.lot_atoms))


@dataclass(frozen=True)
class SimAsset:
    asset_id: int
    symbol: str
    kind: str  # stable | crypto | equity | prediction
    follows: str  # the scenario symbol whose path prices it
    risk: tuple[tuple[str, tuple[int, ...]], ...] = ()  # its [asset.risk] overrides


@dataclass(frozen=True)
class SimExchange:
    assets: tuple[SimAsset, ...]
    markets: tuple[SimMarket, ...]

    def toml(self) -> str:
        out = ["[run]", "risk = 1", ""]
        for a in self.assets:
            out += [
                "[[asset]]",
                f"asset_id = {a.asset_id}",
                f"symbol = {_toml_str(a.symbol)}",
                f'kind = "{a.kind}"',
                "",
            ]
            if a.risk:
                out += ["[asset.risk]", *(f"{k} = {list(v)}" for k, v in a.risk), ""]
        for m in self.markets:
            out += [
                "[[market]]",
                f"market_id = {m.market_id}",
                f"symbol = {_toml_str(m.symbol)}",
                f'kind = "{m.kind}"',
                f"base_asset = {_toml_str(m.base)}",
                f"quote_asset = {_toml_str(self.assets[0].symbol)}",  # (USD when USDC is a listed coin)
                f"tick_size_micro = {m.tick_micro}",
                f"lot_size_atoms = {m.lot_atoms}",
                f"max_price_ticks = {m.max_price_ticks}",
                f"max_size_lots = {min(2_000_000_000, INT64_MAX // m.max_price_ticks)}",  # (product fits int64)
                "band_bps = 2000",
                "maker_fee_ppm = 0",
                "taker_fee_ppm = 500",
                "",
            ]
        return "\n".join(out)

    def market(self, symbol: str) -> SimMarket | None:
        return next((m for m in self.markets if m.symbol == symbol), None)

    def asset(self, symbol: str) -> SimAsset:
        return next(a for a in self.assets if a.symbol == symbol)


def _toml_str(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's (a symbol with a quote broke the config)."""
    return json.dumps(text)


def _risk(kind: str, price: Decimal, defs: list[AssetDef]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """An asset's ``[asset.risk]`` overrides: the scenario's ``haircut`` (one collateral weight,
    1 - haircut) and ``margin`` (one shock rate: the initial margin of a position in it), given
    by the asset itself or by a market of it; otherwise, for crypto and equities, the template's
    collateral weight tiers at this asset's price.

    The templates' tiers are quantities of BTC (10 / 100 / 500) and AAPL (1,000 / 10,000): a
    $0.04 token in BTC's tiers counts at half its value beyond 500 tokens ($19), so a spot
    holding of it could not be bought on margin at all (Mango's MNGO). Their value at the
    reference prices (about $0.6M / $6M / $30M and $0.23M / $2.3M) is kept instead."""
    haircut = next((d.haircut for d in defs if d.haircut is not None), None)
    margin = next((d.margin for d in defs if d.margin is not None), None)
    out: list[tuple[str, tuple[int, ...]]] = []
    if haircut is not None:
        out.append(("weight_ppm", (int((1 - haircut) * PPM),)))
    elif kind in TIER_REFERENCE and price > 0:
        reference, template = TIER_REFERENCE[kind]
        edges = tuple(
            int(Decimal(q) * reference / price) for q in template.upper_atoms if q * reference / price < 2**62
        )
        if edges and edges[0] > 0:
            out += [("weight_upper_atoms", edges), ("weight_ppm", template.weight_ppm[: len(edges) + 1])]
    if margin is not None:
        out.append(("shock_rate_ppm", (int(margin * PPM),)))
    return tuple(out)


def _tick_micro(asset: AssetDef, low: Decimal) -> int:
    """5 significant digits of ``low``, the lowest price the path reaches (a collapse from 80 to
    0.0001 stays on the tick grid all the way down), and never below 1 micro-USDC."""
    if asset.tick is not None:
        return max(1, int(asset.tick * MICRO))
    if asset.kind == "prediction":
        return 10_000  # a cent
    exponent = math.floor(math.log10(float(low))) - 4
    return max(1, int(Decimal(10) ** exponent * MICRO))


def _lot_atoms(asset: AssetDef) -> int:
    if asset.lot is not None:
        return max(1, int(asset.lot * ATOMS))
    if asset.kind == "prediction":
        return ATOMS  # one share
    exponent = round(math.log10(10 / float(asset.start_price)))
    return max(1, int(Decimal(10) ** exponent * ATOMS))


def denominate(scenario: Scenario) -> tuple[Scenario, dict[str, int]]:
    """The scenario in the units the engine trades, and the units that are not one: {symbol:
    how many of the scenario's units one engine unit is}.

    Prices are whole micro-USDC and sizes int64 atoms (1e-8 of a unit): a $0.000001 token has
    one tick of price, the whole path from 1e-6 to 4e-7 rounds to the same tick, and a
    $20,000 position of it is 2e18 atoms, so the seeders' side of a population overflows (the
    orders were refused, AMOUNT_OUT_OF_RANGE, and the run liquidated nothing). Such an asset
    is traded in lots of 10^k units, as venues list 1000PEPE: every symbol priced by the same
    engine asset (a perp and its listed underlying) gets the same unit, the smallest power of
    ten that puts its start price at or above 1 USDC and its lowest at or above 0.0001 (the
    grid LUNA's collapse keeps). Only below MIN_START or MIN_LOW: other scenarios are as given."""
    groups: dict[str, list[str]] = {}
    for symbol, a in scenario.assets.items():
        if a.kind != "prediction":
            groups.setdefault(_underlying(symbol, a.kind), []).append(symbol)
    units: dict[str, int] = {}
    for members in groups.values():
        start = min(scenario.assets[s].start_price for s in members)
        low = min(_path_prices(scenario, s)[0] for s in members)
        if start < MIN_START or low < MIN_LOW:
            k = 0
            while start * 10**k < 1 or low * 10**k < MIN_LOW:
                k += 1
            units.update({s: 10**k for s in members})
    if not units:
        return scenario, {}
    assets = {s: _scaled(a, units.get(s, 1)) for s, a in scenario.assets.items()}
    path = tuple(PathRow(r.t_s, {s: p * units.get(s, 1) for s, p in r.prices.items()}) for r in scenario.path)
    return replace(scenario, assets=assets, path=path), units


def _underlying(symbol: str, kind: str) -> str:
    """The engine asset a scenario symbol prices: a perp's underlying, else the symbol's own."""
    if kind != "perp":
        return symbol
    return symbol[:-5] if symbol.upper().endswith("-PERP") else f"{symbol}-IDX"


def _path_prices(scenario: Scenario, symbol: str) -> tuple[Decimal, Decimal]:
    """(lowest, highest) price of ``symbol``: the start and every row that sets it."""
    prices = [scenario.assets[symbol].start_price] + [
        r.prices[symbol] for r in scenario.path if symbol in r.prices
    ]
    return min(prices), max(prices)


def _scaled(a: AssetDef, unit: int) -> AssetDef:
    if unit == 1:
        return a
    return replace(
        a,
        start_price=a.start_price * unit,
        tick=None if a.tick is None else a.tick * unit,
        lot=None if a.lot is None else a.lot / unit,
    )


def settlement_symbol(scenario: Scenario) -> str:
    """The run's settlement asset (asset 0, price 1, every market quoted in it): USDC, or USD when
    the scenario lists USDC itself as collateral with a path of its own (a USDC depeg)."""
    return "USD" if SETTLEMENT in scenario.assets else SETTLEMENT


def build_exchange(scenario: Scenario) -> SimExchange:
    assets: list[SimAsset] = [SimAsset(0, settlement_symbol(scenario), "stable", "")]
    markets: list[SimMarket] = []
    symbols = scenario.assets

    def add_asset(symbol: str, kind: str, follows: str) -> None:
        if all(a.symbol != symbol for a in assets):
            assets.append(SimAsset(len(assets), symbol, kind, follows))

    for symbol, a in symbols.items():
        if a.kind == "collateral":
            add_asset(symbol, "stable" if symbol.upper().startswith("USD") else "crypto", symbol)
    for symbol, a in symbols.items():
        if a.kind == "collateral":
            continue
        low, high = _path_prices(scenario, symbol)
        if a.tick is not None and a.tick > low:
            raise ScenarioError(
                f"{scenario.name}: assets.{symbol}.tick: {a.tick} is above the lowest price the path "
                f"reaches ({low}): its prices would round to one tick"
            )
        tick = _tick_micro(a, low)
        max_ticks = 99 if a.kind == "prediction" else max(1000, int(high * 100 * MICRO / tick))
        base = _underlying(symbol, a.kind)
        if a.kind == "perp":
            add_asset(base, "crypto", symbols[base].symbol if base in symbols else symbol)
        else:
            add_asset(
                symbol, {"spot": "crypto", "equity": "equity", "prediction": "prediction"}[a.kind], symbol
            )
        markets.append(SimMarket(100 + len(markets), symbol, a.kind, base, tick, _lot_atoms(a), max_ticks))
    if len(assets) > MAX_ASSETS:
        raise ScenarioError(
            f"{scenario.name}: assets: the run needs {len(assets)} engine assets (the settlement asset, "
            f"each collateral, spot, equity and prediction asset, each perp's underlying): at most {MAX_ASSETS}"
        )
    return SimExchange(tuple(_with_risk(a, scenario, markets) for a in assets), tuple(markets))


def check_exchange(exchange: SimExchange, name: str, tmp_dir: Path) -> None:
    """ScenarioError, before any process starts, when the engine would refuse the exchange the
    scenario derives (a price range or a ``lot`` or ``tick`` whose integers do not fit): the shard
    and risk processes would fail to start with a traceback, or a stage's failure leave the run
    waiting."""
    config = tmp_dir / "check.toml"
    config.write_text(exchange.toml())
    try:
        load_risk_config(config)
    except RiskConfigError as exc:
        why = str(exc).replace(f"{config}: ", "")
        raise ScenarioError(f"{name}: the engine refuses the market this scenario derives: {why}") from None


def _with_risk(asset: SimAsset, scenario: Scenario, markets: list[SimMarket]) -> SimAsset:
    """The asset with its risk overrides, from the scenario's definitions of it: its own, and
    its markets' (a perp's ``margin`` is its underlying's)."""
    if asset.asset_id == 0:
        return asset
    named = [asset.symbol, *(m.symbol for m in markets if m.base == asset.symbol)]
    defs = [scenario.assets[s] for s in named if s in scenario.assets]
    price = scenario.assets[asset.follows].start_price
    return replace(asset, risk=_risk(asset.kind, price, defs))
