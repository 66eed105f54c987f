"""Market config: the shipped file loads; every invalid field is refused naming file, market, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.types.enums import MarketKind
from engine.types.market_spec import MarketConfigError, calc_notional_micro, load_markets

REPO = Path(__file__).resolve().parents[3]
GOOD = """
[[market]]
market_id = 1
symbol = "BTC-PERP"
kind = "perp"
tick_size_micro = 100_000
lot_size_atoms = 100_000
"""


def test_shipped_config_loads() -> None:
    markets = load_markets(REPO / "config" / "hx.toml")
    symbols = {s.symbol for s in markets.values()}
    assert {"BTC-PERP", "ETH-PERP", "ETH-USDC", "AAPL-USDC", "PRES28-YES"} <= symbols
    assert {s.kind for s in markets.values()} == set(MarketKind)  # every asset class


def test_notional_is_exact_integer_maths() -> None:
    btc = load_markets(REPO / "config" / "hx.toml")[100]
    # $50,000.0 x 0.5 BTC = $25,000 = 25e9 micro
    assert calc_notional_micro(btc, 500_000, 500) == 25_000_000_000


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("tick_size_micro = 0", "tick_size_micro"),
        ("lot_size_atoms = -1", "lot_size_atoms"),
        ("min_size_lots = 10\nmax_size_lots = 5", "min_size_lots"),
        ("max_price_ticks = 9223372036854775807\nmax_size_lots = 2", "max_size_lots"),
        ("band_bps = 20000", "band_bps"),
        ("status = 'sleepy'", "status"),
        ("kind = 'bond'", "kind"),
        ("colour = 'red'", "colour"),
        ("market_id = 4294967295", "market_id"),
        ("min_notional_micro = -5", "min_notional_micro"),
        ("lot_size_atoms = 9223372036854775808", "'lot_size_atoms'"),  # (the field named, not the tick)
        ("tick_size_micro = 9223372036854775808", "'tick_size_micro'"),
    ],
)
def test_invalid_fields_name_file_market_and_field(tmp_path: Path, extra: str, field: str) -> None:
    body = GOOD
    for line in extra.splitlines():
        key = line.split("=")[0].strip()
        body = "\n".join(ln for ln in body.splitlines() if not ln.startswith(key + " "))
    path = tmp_path / "m.toml"
    path.write_text(body + "\n" + extra + "\n")
    with pytest.raises(MarketConfigError) as err:
        load_markets(path)
    msg = str(err.value)
    assert str(path) in msg and field in msg and "market #0" in msg


def test_duplicates_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(GOOD + GOOD)
    with pytest.raises(MarketConfigError, match="market_id.*used twice"):
        load_markets(path)
    path.write_text(GOOD + GOOD.replace("market_id = 1", "market_id = 2"))
    with pytest.raises(MarketConfigError, match="symbol.*used twice"):
        load_markets(path)
    path.write_text(GOOD.replace('symbol = "BTC-PERP"\n', ""))
    with pytest.raises(MarketConfigError, match="missing field.*symbol"):
        load_markets(path)
    path.write_text("not [valid")
    with pytest.raises(MarketConfigError, match="not valid TOML"):
        load_markets(path)
    with pytest.raises(MarketConfigError, match="no such file"):
        load_markets(tmp_path / "absent.toml")
