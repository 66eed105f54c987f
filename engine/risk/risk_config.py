"""What the risk stage knows of the markets and assets: one frozen :class:`RiskConfig`.

Built from the same config file as the shards (``[[market]]`` and ``[[asset]]`` tables), checked
once at start-up so the hot path never meets an unknown asset: every market names a base asset
that exists, settles in the settlement asset (asset 0), and perps are numbered 0..P-1 (their
column in the account arrays) in market-id order.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.types.asset_spec import SETTLEMENT_ASSET_ID, AssetConfigError, AssetSpec, assets_from_doc
from engine.types.enums import MarketKind
from engine.types.market_spec import MarketConfigError, MarketSpec, markets_from_doc


class RiskConfigError(ValueError):
    """The markets and assets do not make a risk configuration; the message names what."""


@dataclass(frozen=True, slots=True)
class RiskMarket:
    """One market as risk sees it (all integers, looked up by market id on the hot path)."""

    market_id: int
    symbol: str
    kind: MarketKind
    base_asset: int  # asset id (spot: what changes hands; perp: the underlying risk factor)
    perp: int  # column in the perp arrays, -1 for spot-like markets
    tick_size_micro: int
    lot_size_atoms: int
    maker_fee_ppm: int
    taker_fee_ppm: int

    @property
    def is_perp(self) -> bool:
        return self.perp >= 0


@dataclass(frozen=True)
class RiskConfig:
    assets: tuple[AssetSpec, ...]  # by id, dense from 0
    markets: dict[int, RiskMarket]  # by market id
    perps: tuple[int, ...]  # market id of each perp column
    risk_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # [asset.risk] by symbol

    @property
    def n_assets(self) -> int:
        return len(self.assets)

    @property
    def n_perps(self) -> int:
        return len(self.perps)

    def asset_id(self, symbol: str) -> int:
        for a in self.assets:
            if a.symbol == symbol:
                return a.asset_id
        raise KeyError(symbol)


def risk_config_from(
    markets: dict[int, MarketSpec],
    assets: dict[int, AssetSpec],
    risk_overrides: dict[str, dict[str, Any]] | None = None,
) -> RiskConfig:
    """Cross-check markets against assets; RiskConfigError names the market and field."""
    if not assets:
        raise RiskConfigError("the risk stage needs [[asset]] tables (asset 0: the settlement stablecoin)")
    by_symbol = {a.symbol: a.asset_id for a in assets.values()}
    settlement = assets[SETTLEMENT_ASSET_ID].symbol
    out: dict[int, RiskMarket] = {}
    perps: list[int] = []
    for mid in sorted(markets):
        spec = markets[mid]
        where = f"market {mid} ({spec.symbol!r})"
        if not spec.base_asset:
            raise RiskConfigError(f"{where}: field 'base_asset' is required when the risk stage runs")
        if spec.base_asset not in by_symbol:
            raise RiskConfigError(f"{where}: field 'base_asset': {spec.base_asset!r} is not a listed asset")
        if spec.quote_asset != settlement:
            raise RiskConfigError(
                f"{where}: field 'quote_asset': markets settle in {settlement!r}, got {spec.quote_asset!r}"
            )
        base = by_symbol[spec.base_asset]
        if base == SETTLEMENT_ASSET_ID:
            raise RiskConfigError(
                f"{where}: field 'base_asset': cannot trade the settlement asset against itself"
            )
        perp = -1
        if spec.kind == MarketKind.PERP:
            perp = len(perps)
            perps.append(mid)
        out[mid] = RiskMarket(
            mid,
            spec.symbol,
            spec.kind,
            base,
            perp,
            spec.tick_size_micro,
            spec.lot_size_atoms,
            spec.maker_fee_ppm,
            spec.taker_fee_ppm,
        )
    return RiskConfig(tuple(assets[i] for i in sorted(assets)), out, tuple(perps), dict(risk_overrides or {}))


def load_risk_config(path: str | Path) -> RiskConfig:
    """Read markets and assets from one TOML file; RiskConfigError names the file and what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc: dict[str, Any] = tomllib.load(fh)
    except FileNotFoundError:
        raise RiskConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RiskConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        markets = markets_from_doc(doc, str(path))
        assets = assets_from_doc(doc, str(path))
        overrides = {
            t["symbol"]: t["risk"] for t in doc.get("asset", []) if isinstance(t, dict) and "risk" in t
        }
        return risk_config_from(markets, assets, overrides)
    except (MarketConfigError, AssetConfigError) as exc:
        raise RiskConfigError(str(exc)) from None
    except RiskConfigError as exc:
        raise RiskConfigError(f"{path}: {exc}") from None
