"""engine.types.risk_spec: every invalid parameter is refused with the object and field named."""

from __future__ import annotations

import dataclasses
import re

import pytest

from engine.types.fixed import PPM
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


def test_defaults_are_valid_and_consistent() -> None:
    spec = default_risk_spec()
    assert [a.symbol for a in spec.assets] == ["USDC", "BTC", "ETH", "AAPL", "PM-1"]
    assert spec.assets[0].qty_scale == 10**6 and spec.assets[1].qty_scale == 10**8
    for perp in spec.perps:  # portfolio and per-position modes agree on a single position
        shock = spec.assets[perp.underlying].shock
        assert perp.brackets.initial == shock
        assert all(
            mm * PPM == im * spec.params.mm_fraction_ppm
            for im, mm in zip(perp.brackets.imr_ppm, perp.brackets.mmr_ppm, strict=True)
        )


def test_rate_tier_deductions_are_cumulative() -> None:
    tiers = RateTiers((50_000, 250_000), (4_000, 5_000, 10_000))
    assert tiers.deduction_micro_ppm == (0, 50_000 * 1_000, 50_000 * 1_000 + 250_000 * 5_000)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: WeightTiers((10,), (900_000,)), "weight_ppm"),
        (lambda: WeightTiers((10,), (800_000, 900_000)), "weight_ppm[1]"),
        (lambda: WeightTiers((10, 5), (1, 1, 1)), "upper_atoms[1]"),
        (lambda: WeightTiers((0,), (1, 1)), "upper_atoms[0]"),
        (lambda: WeightTiers((), (PPM + 1,)), "weight_ppm[0]"),
        (lambda: WeightTiers([10], (1, 1)), "upper_atoms"),  # type: ignore[arg-type]
        (lambda: RateTiers((10,), (50_000, 40_000)), "rate_ppm[1]"),
        (lambda: RateTiers((), (-1,)), "rate_ppm[0]"),
        (lambda: RateTiers((), (True,)), "rate_ppm[0]"),
        (lambda: PositionBrackets((10,), (50_000, 60_000), (60_000, 60_000)), "mmr_ppm[0]"),
        (lambda: PositionBrackets((10,), (50_000, 60_000), (0, 30_000)), "mmr_ppm[0]"),
        (lambda: FeeRates(maker_ppm=-600, taker_ppm=500), "maker_ppm"),
        (lambda: FeeRates(maker_ppm=600, taker_ppm=500), "maker_ppm"),
        (lambda: FeeRates(taker_ppm=-1), "taker_ppm"),
        (lambda: DynamicShock(base_vol_ppm=0), "base_vol_ppm"),
        (lambda: DynamicShock(ewma_lambda_ppm=PPM), "ewma_lambda_ppm"),
        (lambda: DynamicShock(stale_multiplier_ppm=PPM - 1), "stale_multiplier_ppm"),
        (lambda: PortfolioParams(mm_fraction_ppm=0), "mm_fraction_ppm"),
        (lambda: PortfolioParams(cross_group_offset_ppm=PPM + 1), "cross_group_offset_ppm"),
        (lambda: PortfolioParams(vol_up_multiple_ppm=PPM - 1), "vol_up_multiple_ppm"),
        (lambda: RiskGroup(""), "name"),
        (lambda: RiskGroup("g", idio_ppm=-1), "idio_ppm"),
        (lambda: AssetRisk(1, "", AssetKind.CRYPTO, group="g"), "symbol"),
        (lambda: AssetRisk(1, "BTC", AssetKind.CRYPTO), "group"),
        (lambda: AssetRisk(1, "BTC", AssetKind.CRYPTO, group="g"), "shock"),
        (lambda: AssetRisk(0, "USDC", AssetKind.CASH, group="g"), "group"),
        (lambda: AssetRisk(0, "USDC", AssetKind.CASH, weights=WeightTiers((), (900_000,))), "weights"),
        (lambda: AssetRisk(1, "BTC", AssetKind.CRYPTO, group="g", floor_ppm=PPM + 1), "floor_ppm"),
        (lambda: AssetRisk(0, "USDC", AssetKind.CASH, floor_ppm=1), "floor_ppm"),
        (lambda: AssetRisk(1, "BTC", 7, group="g"), "kind"),  # type: ignore[arg-type]
    ],
)
def test_invalid_parts_name_their_field(build: object, field: str) -> None:
    with pytest.raises(RiskSpecError, match=re.escape(f"field '{field}'")):
        build()  # type: ignore[operator]


def _replace_asset(spec: RiskSpec, i: int, **changes: object) -> tuple[AssetRisk, ...]:
    assets = list(spec.assets)
    assets[i] = dataclasses.replace(assets[i], **changes)  # type: ignore[arg-type]
    return tuple(assets)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: {"assets": s.assets[1:]}, "assets[0]"),
        (lambda s: {"assets": _replace_asset(s, 2, asset_id=7)}, "assets[2].asset_id"),
        (lambda s: {"assets": _replace_asset(s, 2, symbol="BTC")}, "assets[2].symbol"),
        (lambda s: {"assets": _replace_asset(s, 2, group="nope")}, "assets[2].group"),
        (lambda s: {"assets": _replace_asset(s, 4, group="crypto_majors")}, "group 'crypto_majors'"),
        (lambda s: {"groups": (*s.groups, RiskGroup("pm_1"))}, "groups"),
        (lambda s: {"perps": s.perps[1:]}, "perps[0].market_id"),
        (
            lambda s: {"perps": (dataclasses.replace(s.perps[0], underlying=4), s.perps[1])},
            "perps[0].underlying",
        ),
        (
            lambda s: {"perps": (dataclasses.replace(s.perps[0], underlying=9), s.perps[1])},
            "perps[0].underlying",
        ),
        (lambda s: {"perps": (s.perps[0], dataclasses.replace(s.perps[1], symbol="ETH"))}, "perps[1].symbol"),
        (lambda s: {"params": "x"}, "params"),
    ],
)
def test_invalid_spec_names_its_field(change: object, field: str) -> None:
    spec = default_risk_spec()
    with pytest.raises(RiskSpecError, match=re.escape(field)):
        dataclasses.replace(spec, **change(spec))  # type: ignore[operator]


def test_lookups() -> None:
    spec = default_risk_spec()
    assert spec.group_of(1).name == "crypto_majors"
    assert spec.asset_by_symbol("ETH") is spec.assets[2]
    assert spec.perp_by_symbol("BTC-PERP") is spec.perps[0]
    assert spec.asset_by_symbol("DOGE") is None and spec.perp_by_symbol("DOGE-PERP") is None
    assert isinstance(spec.perps[0], PerpRisk)


def test_the_exchanges_risk_spec_takes_its_lots_from_the_markets_config() -> None:
    """The risk spec's lots bound how many fills an order can become: they must be the markets'."""
    from engine.risk.risk_config import load_risk_config
    from engine.risk.risk_spec_builder import build_risk_spec
    from engine.types.enums import MarketKind
    from engine.types.market_spec import load_markets
    from hx.config import DEFAULT_CONFIG

    markets = load_markets(DEFAULT_CONFIG).values()
    config = load_risk_config(DEFAULT_CONFIG)
    spec = build_risk_spec(config, config.risk_overrides)
    for perp in spec.perps:
        assert perp.lot_atoms == next(m.lot_size_atoms for m in markets if m.symbol == perp.symbol)
    for m in markets:
        if m.kind != MarketKind.PERP and m.base_asset in ("BTC", "ETH", "AAPL"):
            assert spec.asset_by_symbol(m.base_asset).spot_lot_atoms == m.lot_size_atoms  # type: ignore[union-attr]


def test_the_exchanges_eth_collateral_tiers_are_in_eth_and_edges_alone_are_refused() -> None:
    """The crypto template's collateral tiers are BTC's, in units; the exchange's config gives ETH
    its own (100 / 1,000 / 5,000 ETH, the default spec's), and tier edges without their rates are
    an error naming both (they were silently ignored)."""
    from engine.risk.risk_config import load_risk_config
    from engine.risk.risk_spec_builder import build_risk_spec
    from hx.config import DEFAULT_CONFIG

    config = load_risk_config(DEFAULT_CONFIG)
    spec = build_risk_spec(config, config.risk_overrides)
    eth, btc = spec.asset_by_symbol("ETH"), spec.asset_by_symbol("BTC")
    assert eth is not None and btc is not None
    assert eth.weights == default_risk_spec().assets[2].weights != btc.weights
    with pytest.raises(RiskSpecError, match="weight_upper_atoms needs weight_ppm"):
        build_risk_spec(config, {"ETH": {"weight_upper_atoms": [1, 2, 3]}})
    with pytest.raises(RiskSpecError, match="shock_upper_micro needs shock_rate_ppm"):
        build_risk_spec(config, {"BTC": {"shock_upper_micro": [1]}})
