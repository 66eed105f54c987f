"""Assets an account can hold: one frozen :class:`AssetSpec` per asset, loaded from the config.

An asset's quantity is an integer in its own unit: micro-units (1e-6) for the settlement
stablecoin, atoms (1e-8) for everything else (``engine.types.fixed``); ``scale`` says which. Asset
ids are small integers (array columns in the risk stage); id 0 is the settlement stablecoin.

The same TOML file as the markets holds the assets as ``[[asset]]`` tables:

    [[asset]]
    asset_id = 1
    symbol = "BTC"
    kind = "crypto"          # stable | crypto | equity | prediction

Invariants checked at load (:class:`AssetConfigError` names the file, the asset and the field):
ids unique, dense from 0, asset 0 is a ``stable`` asset (the settlement asset, price fixed at 1;
any other stablecoin is collateral valued at its oracle price, so a depeg shows); symbols unique.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from engine.types.enums import AssetKind
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT

SETTLEMENT_ASSET_ID = 0
MAX_ASSETS = 256


class AssetConfigError(ValueError):
    """An asset definition is invalid; the message names file, asset and field."""


@dataclass(frozen=True, slots=True)
class AssetSpec:
    asset_id: int
    symbol: str
    kind: AssetKind

    @property
    def scale(self) -> int:
        """Quantity units per whole unit of the asset."""
        return MICRO_PER_UNIT if self.kind == AssetKind.STABLE else ATOMS_PER_UNIT


_KNOWN = {f.name for f in fields(AssetSpec)}


def assets_from_doc(doc: dict[str, Any], source: str = "<config>") -> dict[int, AssetSpec]:
    """Validate ``[[asset]]`` tables of a parsed document: ``{asset_id: AssetSpec}`` ({} if none)."""
    tables = doc.get("asset", [])
    if not isinstance(tables, list):
        raise AssetConfigError(f"{source}: 'asset' must be a list of [[asset]] tables")
    out: dict[int, AssetSpec] = {}
    symbols: set[str] = set()
    for i, raw in enumerate(tables):
        where = f"{source}: asset #{i}"
        if not isinstance(raw, dict):
            raise AssetConfigError(f"{where}: expected a table")
        where = f"{where} (id={raw.get('asset_id')!r}, symbol={raw.get('symbol')!r})"
        unknown = sorted(set(raw) - _KNOWN - {"risk", "token", "decimals"})
        if unknown:
            raise AssetConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(_KNOWN | {'risk'})}")
        for name in ("asset_id", "symbol", "kind"):
            if name not in raw:
                raise AssetConfigError(f"{where}: missing field {name!r}")
        aid, symbol, kind = raw["asset_id"], raw["symbol"], raw["kind"]
        if isinstance(aid, bool) or not isinstance(aid, int) or not 0 <= aid < MAX_ASSETS:
            raise AssetConfigError(f"{where}: field 'asset_id': must be an integer in [0, {MAX_ASSETS - 1}]")
        if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
            raise AssetConfigError(f"{where}: field 'symbol': must be a non-empty string of <= 32 chars")
        try:
            kind_enum = AssetKind[kind.upper()] if isinstance(kind, str) else AssetKind(kind)
        except (KeyError, ValueError):
            names = ", ".join(k.name.lower() for k in AssetKind)
            raise AssetConfigError(f"{where}: field 'kind': {kind!r} is not one of {names}") from None
        if aid in out:
            raise AssetConfigError(f"{where}: field 'asset_id': {aid} is used twice")
        if symbol in symbols:
            raise AssetConfigError(f"{where}: field 'symbol': {symbol!r} is used twice")
        out[aid] = AssetSpec(aid, symbol, kind_enum)
        symbols.add(symbol)
    if out:
        if sorted(out) != list(range(len(out))):
            raise AssetConfigError(f"{source}: asset ids must be dense from 0, got {sorted(out)}")
        if out[SETTLEMENT_ASSET_ID].kind != AssetKind.STABLE:
            raise AssetConfigError(f'{source}: asset 0 must be the settlement stablecoin (kind = "stable")')
    return out
