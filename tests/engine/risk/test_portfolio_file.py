"""engine.risk.portfolio_file: the what-if document, its errors (naming the field) and the answer."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.risk.portfolio_file import PortfolioFileError, parse_portfolio, run_what_if
from engine.risk.risk_config import load_risk_config
from engine.risk.risk_spec_builder import build_risk_spec
from hx.config import DEFAULT_CONFIG

_CONFIG = load_risk_config(DEFAULT_CONFIG)
SPEC = build_risk_spec(_CONFIG, _CONFIG.risk_overrides)  # the exchange's own assets, as `hx risk what-if`
EXAMPLE = json.loads((Path(__file__).parents[3] / "examples" / "what_if_portfolio.json").read_text())


def test_example_file() -> None:
    out = run_what_if(EXAMPLE, SPEC)
    assert out["equity"] == "65510.5"  # 25,000 + 28,500 + 11,400 - 84 + 396 + 298.5
    assert out["initial_margin"] == "1337.525" and out["maintenance_margin"] == "802.515"
    assert out["free_collateral"] == "63969.074798"  # less the ETH-PERP order's reserve, 203.900202
    assert out["scenarios"]["pm_pres28:resolve_1"] == "-116"
    assert out["open_orders"][1]["reserve"] == "0"
    assert set(out["liquidation_prices"]) == {"BTC-PERP", "ETH-PERP"}
    assert set(out["can_buy"]) == {"BTC", "ETH", "AAPL", "PRES28"}
    assert json.loads(json.dumps(out)) == out  # plain JSON


def test_parse_units_and_rounding() -> None:
    inp, priced = parse_portfolio(EXAMPLE, SPEC)
    assert inp.state.balance == (25_000_000_000, 50_000_000, 400_000_000, 0, -20_000_000_000)
    assert inp.state.perp_size_atoms == (-40_000_000, 300_000_000)
    assert inp.state.perp_cost_micro == (-24_400_000_000, 8_700_000_000)
    assert inp.prices.mark_micro == (60_010_000_000, 2_999_500_000)
    assert inp.prices.shock_multiplier_ppm == (10**6, 10**6, 10**6, 1_500_000, 10**6)
    assert priced == {1, 2, 3, 4}
    minimal, _ = parse_portfolio({"balances": {"USDC": "10"}}, SPEC)
    assert minimal.state.balance[0] == 10_000_000 and minimal.orders == ()


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    node: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("colour", "red", "colour", "unknown field"),
        ("balances", [], "balances", "must be an object"),
        ("balances.DOGE", "1", "balances.DOGE", "unknown asset"),
        ("balances.BTC", "abc", "balances.BTC", "not a decimal"),
        ("balances.BTC", 0.5, "balances.BTC", "not float"),
        ("balances.BTC", "0.123456789", "balances.BTC", "precision"),
        ("balances.BTC", "1e12", "balances.BTC", "absurd"),
        ("balances.USDC", "-1e13", "balances.USDC", "absurd"),
        ("balances.USDC", "-2000000000000", "balances.USDC", "must be >="),
        ("prices.BTC", "-1", "prices.BTC", "must not be negative"),
        ("prices.BTC", _DELETE, "prices.BTC", "missing (needed by balances.BTC)"),
        ("prices.PRES28", "1.5", "prices.PRES28", "absurd"),
        ("prices.USDC", "0.99", "prices.USDC", "priced at 1"),
        ("prices.BTC", "1e10", "prices.BTC", "absurd"),
        ("marks.DOGE-PERP", "1", "marks.DOGE-PERP", "unknown perp"),
        ("shock_multipliers.AAPL", "0.5", "shock_multipliers.AAPL", "must be >= 1"),
        ("shock_multipliers.AAPL", "1000", "shock_multipliers.AAPL", "absurd"),
        ("positions.0.market", "BTC", "positions[0].market", "not a perp market"),
        ("positions.0.size", _DELETE, "positions[0].size", "missing"),
        ("positions.0.entry_price", "-5", "positions[0].entry_price", "must not be negative"),
        ("positions.0.size", "9000000000", "positions[0].size", "absurd"),
        ("positions.0.leverage", "10", "positions[0].leverage", "unknown field"),
        ("positions.1.market", "BTC-PERP", "positions[1].market", "already at positions[0]"),
        ("positions", {}, "positions", "must be an array"),
        ("open_orders.0.side", "long", "open_orders[0].side", "'buy' or 'sell'"),
        ("open_orders.0.side", _DELETE, "open_orders[0].side", "'buy' or 'sell'"),
        ("open_orders.0.size", "-2", "open_orders[0].size", "must be >="),
        ("open_orders.0.size", "0", "open_orders[0].size", "must be >="),
        ("open_orders.0.price", "x", "open_orders[0].price", "not a decimal"),
        ("open_orders.0.market", "USDC", "open_orders[0].market", "non-USDC asset"),
        ("open_orders.1.price", "99999999999", "open_orders[1].price", "absurd"),
        ("open_orders.0", "buy 2", "open_orders[0]", "must be an object"),
    ],
)
def test_bad_documents_name_the_field(path: str, value: Any, field: str, message: str) -> None:
    with pytest.raises(PortfolioFileError) as info:
        run_what_if(_with(path, value), SPEC)
    assert info.value.field == field
    assert message in str(info.value)


def test_not_an_object() -> None:
    with pytest.raises(PortfolioFileError, match=r"^\$: "):
        run_what_if([], SPEC)


def test_an_isolated_position_is_its_own_account_as_the_engine_keeps_it() -> None:
    """``isolated_margin``: the position leaves the cross account and is margined alone on that
    margin (engine/risk/account_book.py: its own row, USDC = the margin): the same figures as a
    document holding only that margin and that position."""
    prices = {"BTC": "60000", "ETH": "3000"}
    doc = {
        "balances": {"USDC": "10000", "ETH": "1"},
        "positions": [
            {"market": "BTC-PERP", "size": "0.5", "entry_price": "61000", "isolated_margin": "3000"},
            {"market": "ETH-PERP", "size": "-2", "entry_price": "3100"},
        ],
        "prices": prices,
    }
    out = run_what_if(doc, SPEC)
    alone = run_what_if(
        {
            "balances": {"USDC": "3000"},
            "positions": [{"market": "BTC-PERP", "size": "0.5", "entry_price": "61000"}],
            "prices": prices,
        },
        SPEC,
    )
    cross = run_what_if({**doc, "positions": [doc["positions"][1]]}, SPEC)
    iso = out["isolated"]["BTC-PERP"]
    assert iso["margin"] == "3000" and iso["equity"] == alone["equity"] == "2500"  # 3,000 - 500
    assert (iso["initial_margin"], iso["maintenance_margin"]) == (
        alone["initial_margin"],
        alone["maintenance_margin"],
    )
    assert iso["liquidation_price"] == alone["liquidation_prices"]["BTC-PERP"]
    assert out["equity"] == cross["equity"] and out["initial_margin"] == cross["initial_margin"]
    assert set(out["liquidation_prices"]) == {"ETH-PERP"}  # the cross account's positions only


@pytest.mark.parametrize(("value", "message"), [("-1", "must not be negative"), ("x", "not a decimal")])
def test_a_bad_isolated_margin_names_the_field(value: str, message: str) -> None:
    with pytest.raises(PortfolioFileError) as info:
        run_what_if(_with("positions.0.isolated_margin", value), SPEC)
    assert info.value.field == "positions[0].isolated_margin" and message in str(info.value)
