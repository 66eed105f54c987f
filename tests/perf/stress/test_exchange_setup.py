"""A scenario's markets: the tick grid follows the whole path, and the config it writes loads."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.risk.risk_config import load_risk_config
from engine.types.market_spec import load_markets
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
