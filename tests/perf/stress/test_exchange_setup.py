"""A scenario's markets: the tick grid follows the whole path, and the config it writes loads."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.risk.risk_config import load_risk_config
from engine.risk.risk_spec_builder import build_risk_spec
from engine.types.market_spec import load_markets
from engine.types.risk_spec import RiskSpec
from perf.stress.exchange_setup import INT64_MAX, build_exchange
from perf.stress.scenario import parse_scenario


def test_a_collapse_stays_on_the_tick_grid_and_the_config_loads(tmp_path: Path) -> None:
    """LUNA, May 2022: 80 -> 0.0001. A tick from the start price ($0.001) would pin every price
    below it to one tick; the grid is taken from the lowest price the path reaches instead."""
    sc = parse_scenario(
        {
            "assets": {
                "LUNA-PERP": {"kind": "perp", "start_price": 80},
                "BTC-PERP": {"kind": "perp", "start_price": 34000},
            },
            "path": [
                {"t_s": 60, "prices": {"LUNA-PERP": 1}},
                {"t_s": 120, "prices": {"LUNA-PERP": 0.0001, "BTC-PERP": 29000}},
            ],
        }
    )
    ex = build_exchange(sc)
    luna, btc = ex.market("LUNA-PERP"), ex.market("BTC-PERP")
    assert luna is not None and btc is not None
    assert luna.tick_micro == 1 and luna.ticks(Decimal("0.0001")) == 100  # $0.000001: 1 micro-USDC
    assert luna.ticks(Decimal(80)) == 80_000_000 <= luna.max_price_ticks
    assert btc.tick_micro == 1_000_000  # 5 significant digits of $29,000
    config = tmp_path / "hx.toml"
    config.write_text(ex.toml())
    specs = load_markets(config)  # the shard's checks, max price x max size within int64 among them
    assert all(m.max_price_ticks * m.max_size_lots <= INT64_MAX for m in specs.values())
    assert set(load_risk_config(str(config)).markets) == set(specs)


def _spec(tmp_path: Path, doc: dict) -> RiskSpec:  # type: ignore[type-arg]
    """The risk spec the run's risk partition builds from the config the scenario writes."""
    config = tmp_path / "hx.toml"
    config.write_text(build_exchange(parse_scenario(doc)).toml())
    risk = load_risk_config(str(config))
    return build_risk_spec(risk, risk.risk_overrides)


def test_an_assets_haircut_and_margin_reach_the_risk_engine(tmp_path: Path) -> None:
    """``haircut`` and ``margin`` in the scenario (the spec: used when the asset gives them) are
    the asset's collateral weight (1 - haircut) and shock rate; a perp's margin is its
    underlying's."""
    spec = _spec(
        tmp_path,
        {
            "assets": {
                "ETH": {"kind": "collateral", "start_price": 3000, "haircut": 0.4},
                "SOL-PERP": {"kind": "perp", "start_price": 150, "margin": 0.25},
            },
            "path": [{"t_s": 10, "prices": {"ETH": 2000}}],
        },
    )
    eth, sol = spec.asset_by_symbol("ETH"), spec.asset_by_symbol("SOL")
    assert eth is not None and sol is not None
    assert eth.weights.weight_ppm == (600_000,) and eth.weights.upper_atoms == ()
    assert sol.shock.rate_ppm == (250_000,)


def test_collateral_tiers_follow_the_price(tmp_path: Path) -> None:
    """Derived from kind and price: a $0.04 token's weight tiers hold the same dollar value as
    the template's BTC tiers at $60,000, not 10 / 100 / 500 tokens."""
    spec = _spec(
        tmp_path,
        {
            "assets": {
                "MNGO": {"kind": "spot", "start_price": 0.04},
                "BTC-PERP": {"kind": "perp", "start_price": 60000},
            },
            "path": [{"t_s": 10, "prices": {"MNGO": 0.4}}],
        },
    )
    mngo, btc = spec.asset_by_symbol("MNGO"), spec.asset_by_symbol("BTC")
    assert mngo is not None and btc is not None
    assert btc.weights.upper_atoms == (10 * 10**8, 100 * 10**8, 500 * 10**8)
    assert mngo.weights.upper_atoms == tuple(q * 1_500_000 for q in btc.weights.upper_atoms)


def test_a_symbol_with_a_quote_is_written_as_a_toml_string(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {"assets": {'A"B-PERP': {"kind": "perp", "start_price": 10}}, "path": [{"t_s": 1, "prices": {}}]},
    )
    assert spec.asset_by_symbol('A"B') is not None


def test_an_exchange_the_engine_would_refuse_is_a_scenario_error(tmp_path: Path) -> None:
    """More engine assets than the engine has ids, a tick above every price of the path, a price
    range whose integers do not fit: refused before any process starts (the risk process died
    with a traceback on 257 assets and the run hung; a tick of 1e6 on a 60,000 perp ran with every
    price one tick and liquidated nothing; 1e-30 failed in the shard's start-up)."""
    import pytest

    from perf.stress.exchange_setup import check_exchange, denominate
    from perf.stress.scenario import ScenarioError

    many = {f"A{i}-PERP": {"kind": "perp", "start_price": 10} for i in range(300)}
    with pytest.raises(ScenarioError, match="engine assets .* at most 256"):
        build_exchange(parse_scenario({"assets": many, "path": [{"t_s": 1, "prices": {}}]}))
    tick = {"assets": {"BTC-PERP": {"kind": "perp", "start_price": 60000, "tick": 1e6}}}
    with pytest.raises(ScenarioError, match=r"assets.BTC-PERP.tick: .* above the lowest price"):
        build_exchange(parse_scenario({**tick, "path": [{"t_s": 1, "prices": {"BTC-PERP": 55000}}]}))
    tiny = {"assets": {"BTC-PERP": {"kind": "perp", "start_price": 60000}}}
    sc, _ = denominate(parse_scenario({**tiny, "path": [{"t_s": 1, "prices": {"BTC-PERP": 1e-30}}]}))
    with pytest.raises(ScenarioError, match="the engine refuses the market this scenario derives"):
        check_exchange(build_exchange(sc), sc.name, tmp_path)
    ok = parse_scenario({**tiny, "path": [{"t_s": 1, "prices": {"BTC-PERP": 30000}}]})
    check_exchange(build_exchange(ok), ok.name, tmp_path)
