"""From the exchange's config to the margin maths' parameters: one ``RiskSpec`` per run.

Every asset and perp of the config gets its risk parameters from a template chosen by its kind
(``engine.types.risk_spec.default_risk_spec``'s documented defaults: BTC's for crypto, AAPL's for
equities, a prediction market alone in its group), overridden per asset by an ``[asset.risk]``
table; fees come from each market's own ``maker_fee_ppm`` / ``taker_fee_ppm``, lots from its
``lot_size_atoms``. Defaults are a starting point, not a calibration (docs/risk.md).

Override keys of ``[asset.risk]`` (units in the names, checked by the spec's own validation):
``group``, ``floor_ppm``, ``shock_upper_micro`` + ``shock_rate_ppm``, ``weight_upper_atoms`` +
``weight_ppm``, ``base_vol_ppm``, ``closed_multiplier_ppm``, ``stale_multiplier_ppm``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.risk.risk_config import RiskConfig
from engine.types.enums import AssetKind as ConfigKind
from engine.types.risk_spec import (
    AssetKind,
    AssetRisk,
    DynamicShock,
    FeeRates,
    PerpRisk,
    PortfolioParams,
    PositionBrackets,
    RateTiers,
    RiskGroup,
    RiskSpec,
    RiskSpecError,
    WeightTiers,
    default_risk_spec,
)

OVERRIDES = {
    "group",
    "floor_ppm",
    "shock_upper_micro",
    "shock_rate_ppm",
    "weight_upper_atoms",
    "weight_ppm",
    "base_vol_ppm",
    "closed_multiplier_ppm",
    "stale_multiplier_ppm",
}
_STABLE = AssetRisk(
    1,
    "STABLE",
    AssetKind.CRYPTO,
    group="stablecoins",
    weights=WeightTiers((), (950_000,)),
    shock=RateTiers((), (20_000,)),  # a depeg is the risk: 2% moves, widened by the dynamic shock
    floor_ppm=5_000,
    dynamic=DynamicShock(base_vol_ppm=100),
)


def _templates() -> tuple[AssetRisk, AssetRisk, AssetRisk, PositionBrackets, PositionBrackets]:
    d = default_risk_spec()
    crypto, equity, prediction = d.assets[1], d.assets[3], d.assets[4]
    crypto_brackets = d.perps[0].brackets
    equity_brackets = PositionBrackets(
        equity.shock.upper_micro, equity.shock.rate_ppm, tuple(r * 6 // 10 for r in equity.shock.rate_ppm)
    )
    return crypto, equity, prediction, crypto_brackets, equity_brackets


def build_risk_spec(config: RiskConfig, overrides: dict[str, dict[str, Any]] | None = None) -> RiskSpec:
    """The run's RiskSpec; RiskSpecError names the asset and field of a bad override."""
    crypto, equity, prediction, crypto_brackets, equity_brackets = _templates()
    overrides = overrides or {}
    spot_market = {}
    for mid in sorted(config.markets):
        m = config.markets[mid]
        if not m.is_perp:
            spot_market.setdefault(m.base_asset, m)
    assets: list[AssetRisk] = [AssetRisk(0, config.assets[0].symbol, AssetKind.CASH)]
    groups: dict[str, RiskGroup] = {}
    for spec in config.assets[1:]:
        if spec.kind == ConfigKind.PREDICTION:
            template, group = prediction, f"pm_{spec.symbol.lower()}"
            groups[group] = RiskGroup(group, idio_ppm=1_000_000)
        elif spec.kind == ConfigKind.EQUITY:
            template, group = equity, "us_equities"
            groups.setdefault(group, RiskGroup(group, idio_ppm=600_000))
        elif spec.kind == ConfigKind.STABLE:
            template, group = _STABLE, "stablecoins"
            groups.setdefault(group, RiskGroup(group, idio_ppm=1_000_000))
        else:
            template, group = crypto, "crypto_majors"
            groups.setdefault(group, RiskGroup(group, idio_ppm=500_000))
        m = spot_market.get(spec.asset_id)
        fields: dict[str, Any] = {
            "asset_id": spec.asset_id,
            "symbol": spec.symbol,
            "group": group,
            "spot_fees": FeeRates(m.maker_fee_ppm, m.taker_fee_ppm) if m else template.spot_fees,
            "spot_lot_atoms": m.lot_size_atoms if m else 1,
        }
        extra = overrides.get(spec.symbol, {})
        unknown = sorted(set(extra) - OVERRIDES)
        if unknown:
            raise RiskSpecError(
                f"asset {spec.symbol!r}: risk: unknown key(s) {unknown}; known: {sorted(OVERRIDES)}"
            )
        for edges, rates in (("shock_upper_micro", "shock_rate_ppm"), ("weight_upper_atoms", "weight_ppm")):
            if edges in extra and rates not in extra:  # (tier edges alone were silently ignored)
                raise RiskSpecError(f"asset {spec.symbol!r}: risk: {edges} needs {rates} (one rate per tier)")
        if "group" in extra:
            fields["group"] = extra["group"]
            groups.setdefault(extra["group"], RiskGroup(extra["group"]))
        if "floor_ppm" in extra:
            fields["floor_ppm"] = extra["floor_ppm"]
        if "shock_rate_ppm" in extra:
            fields["shock"] = RateTiers(
                tuple(extra.get("shock_upper_micro", ())), tuple(extra["shock_rate_ppm"])
            )
        if "weight_ppm" in extra:
            fields["weights"] = WeightTiers(
                tuple(extra.get("weight_upper_atoms", ())), tuple(extra["weight_ppm"])
            )
        dyn = {
            k: extra[k]
            for k in ("base_vol_ppm", "closed_multiplier_ppm", "stale_multiplier_ppm")
            if k in extra
        }
        if dyn:
            fields["dynamic"] = replace(template.dynamic, **dyn)
        assets.append(replace(template, **fields))
    perps = []
    for p, mid in enumerate(config.perps):
        m = config.markets[mid]
        underlying = assets[m.base_asset]
        brackets = equity_brackets if underlying.kind == AssetKind.EQUITY else crypto_brackets
        perps.append(
            PerpRisk(
                p,
                m.symbol,
                m.base_asset,
                brackets,
                FeeRates(m.maker_fee_ppm, m.taker_fee_ppm),
                m.lot_size_atoms,
            )
        )
    used = {a.group for a in assets[1:]}
    return RiskSpec(
        assets=tuple(assets),
        groups=tuple(g for name, g in groups.items() if name in used),
        perps=tuple(perps),
        params=PortfolioParams(),
    )
