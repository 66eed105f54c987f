"""The gateway's read-only view of the market list: ids, symbols, tick and lot sizes.

The gateway needs only what the JSON edge converts with (tick and lot size as exact decimals) and
which market ids exist (an order for an unknown market never reaches a ring). It reads the same
config file as the shards (``config/hx.toml``, TOML or JSON) without importing shard
internals, and is tolerant about the spelling of the two sizes:

* ``tick_size`` / ``lot_size`` as decimal strings or numbers (``"0.5"``, ``0.001``), or
* the shard's own spelling (``engine/types/market_spec.py``): ``tick_size_micro`` (micro-units of
  quote per whole base unit) and ``lot_size_atoms`` (1e-8 base units), ``[[market]]`` tables.

Invariant: ``tick_size > 0`` and ``lot_size > 0`` as exact ``Decimal`` s; a float in the file is
read through its shortest repr (``0.1`` means one tenth, not the binary double).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.types.asset_spec import AssetConfigError, AssetSpec, assets_from_doc
from engine.types.enums import MarketStatus
from engine.types.market_spec import MarketConfigError as SpecError
from engine.types.market_spec import MarketSpec, markets_from_doc


class MarketConfigError(ValueError):
    """The market file cannot be used; the message names the market and the field."""


@dataclass(frozen=True)
class MarketInfo:
    """What a client needs to trade a market without learning its rules by rejection."""

    market_id: int
    symbol: str
    tick_size: Decimal  # quote units per tick
    lot_size: Decimal  # base units per lot
    spec: MarketSpec | None = None  # the full rules, when the file is in the shard's spelling

    def as_json(self, status: int | None = None) -> dict[str, Any]:
        """The ``markets`` entry: sizes and prices as decimal strings in human units, fees in ppm;
        ``status`` is the live one when the gateway has seen a MARKET_STATUS, else the config's."""
        out: dict[str, Any] = {
            "market": self.market_id,
            "symbol": self.symbol,
            "tick_size": str(self.tick_size),
            "lot_size": str(self.lot_size),
        }
        spec = self.spec
        if spec is None:
            return out
        lot, tick = self.lot_size, self.tick_size
        out.update(
            kind=spec.kind.name.lower(),
            status=MarketStatus(spec.status if status is None else status).name.lower(),
            base_asset=spec.base_asset,
            quote_asset=spec.quote_asset,
            min_size=_plain(spec.min_size_lots * lot),
            max_size=_plain(spec.max_size_lots * lot),
            min_notional=_plain(Decimal(spec.min_notional_micro) / 1_000_000),
            max_price=_plain(spec.max_price_ticks * tick),
            price_band_bps=spec.band_bps,
            maker_fee_ppm=spec.maker_fee_ppm,
            taker_fee_ppm=spec.taker_fee_ppm,
            max_open_orders=spec.max_open_orders_per_account,
        )
        return out


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise MarketConfigError(f"{where}: expected a number or decimal string, got {value!r}")
    try:
        dec = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise MarketConfigError(f"{where}: {value!r} is not a decimal") from None
    if not dec.is_finite() or dec <= 0:
        raise MarketConfigError(f"{where}: must be a positive finite decimal, got {value!r}")
    return dec


def _entry(raw: dict[str, Any], index: int) -> MarketInfo:
    where = f"market #{index}"
    market_id = raw.get("id", raw.get("market_id"))
    if not isinstance(market_id, int) or isinstance(market_id, bool) or not 0 <= market_id < 0xFFFF_FFFF:
        raise MarketConfigError(f"{where}: 'id' must be an integer in [0, 2^32-1), got {market_id!r}")
    where = f"market {market_id}"
    symbol = str(raw.get("symbol", f"M{market_id}"))
    if "tick_size_micro" in raw:
        tick = _decimal(raw["tick_size_micro"], f"{where}.tick_size_micro") / Decimal(1_000_000)
    else:
        tick = _decimal(raw.get("tick_size", raw.get("tick")), f"{where}.tick_size")
    if "lot_size_atoms" in raw:
        lot = _decimal(raw["lot_size_atoms"], f"{where}.lot_size_atoms") / Decimal(100_000_000)
    else:
        lot = _decimal(raw.get("lot_size", raw.get("lot")), f"{where}.lot_size")
    return MarketInfo(market_id, symbol, tick, lot)


class MarketCatalog:
    """Markets by id (and the assets accounts hold), loaded once at start-up."""

    def __init__(self, markets: list[MarketInfo], assets: dict[int, AssetSpec] | None = None) -> None:
        self.assets: dict[int, AssetSpec] = dict(assets or {})
        self.asset_ids = {a.symbol: a.asset_id for a in self.assets.values()}
        self.by_id: dict[int, MarketInfo] = {}
        for m in markets:
            if m.market_id in self.by_id:
                raise MarketConfigError(f"market {m.market_id} is defined twice")
            self.by_id[m.market_id] = m
        self.ids = frozenset(self.by_id)

    @classmethod
    def load(cls, path: str | Path) -> MarketCatalog:
        path = Path(path)
        text = path.read_bytes()
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise MarketConfigError(f"{path}: {exc}") from None
        raw = data.get("markets", data.get("market")) if isinstance(data, dict) else data
        if isinstance(raw, dict):  # [markets.BTC-USD] tables
            raw = [dict(v, symbol=v.get("symbol", k)) for k, v in raw.items()]
        if not isinstance(raw, list) or not raw:
            raise MarketConfigError(f"{path}: expected a non-empty [[market]] list")
        try:
            assets = assets_from_doc(data, str(path)) if isinstance(data, dict) else {}
        except AssetConfigError as exc:
            raise MarketConfigError(str(exc)) from None
        entries = [_entry(entry, i) for i, entry in enumerate(raw)]
        specs: dict[int, MarketSpec] = {}
        if isinstance(data, dict) and isinstance(data.get("market"), list):
            try:
                specs = markets_from_doc(data, str(path))
            except SpecError:
                specs = {}  # the shard's own loader reports it; the gateway serves what it can
        entries = [
            MarketInfo(e.market_id, e.symbol, e.tick_size, e.lot_size, specs.get(e.market_id))
            for e in entries
        ]
        return cls(entries, assets)

    def get(self, market_id: int) -> MarketInfo | None:
        return self.by_id.get(market_id)

    def __contains__(self, market_id: int) -> bool:
        return market_id in self.by_id

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_id.values())
