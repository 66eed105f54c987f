"""The what-if portfolio file: JSON in human units -> typed inputs -> engine.math.what_if -> JSON.

``run_what_if(doc, spec)`` is the one entry the CLI (``hx risk what-if PORTFOLIO.json``) and the
gateway's ``what_if`` request share. The schema (documented with an example in docs/risk.md and
examples/what_if_portfolio.json)::

    {
      "balances":   {"USDC": "25000", "BTC": "0.5", "PM-1": "-100"},      # < 0: a liability
      "positions":  [{"market": "BTC-PERP", "size": "-0.4", "entry_price": "61000"},
                     {"market": "ETH-PERP", "size": "2", "entry_price": "3000",
                      "isolated_margin": "600"}],                          # margined alone
      "open_orders":[{"market": "ETH-PERP", "side": "buy", "size": "2", "price": "2950"},
                     {"market": "BTC", "side": "sell", "size": "0.1", "price": "62000"}],
      "prices":     {"BTC": "60000", "ETH": "3000", "PM-1": "0.42"},      # USDC per whole unit
      "marks":      {"BTC-PERP": "60010"},                                 # default: the underlying's price
      "shock_multipliers": {"AAPL": "1.5"}                                 # default 1
    }

Every number is a decimal string (or an integer): floats are refused, money that went through a
binary float is already wrong. Quantities carry the asset's decimals (USDC 6, anything else 8),
prices 6. Every problem raises :class:`PortfolioFileError` whose ``field`` names the JSON path
(``positions[0].size``): unknown keys and symbols, missing fields, non-numeric, negative where a
sign makes no sense (prices, order sizes, multipliers; balances and position sizes are signed),
too precise, and absurd values (beyond the ``MAX_*`` bounds below, so that every product fits
int64 micro-USDC).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.math.portfolio_margin import AccountState, MarketPrices
from engine.math.pre_trade import BUY, SELL
from engine.math.what_if import IsolatedPosition, OpenOrder, WhatIfInput, WhatIfResult, calc_what_if
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, PPM, FixedPointError, from_fixed, to_fixed
from engine.types.risk_spec import AssetKind, RiskSpec

MAX_PRICE_USDC = 10**9  # per whole unit
MAX_QTY_UNITS = 10**10  # of any asset or perp
MAX_VALUE_USDC = 10**12  # any single balance, position or order, valued (keeps sums far inside int64)
MAX_MULTIPLIER = 100
TOP_LEVEL = ("balances", "positions", "open_orders", "prices", "marks", "shock_multipliers")


class PortfolioFileError(ValueError):
    """A what-if document is invalid; ``field`` is the JSON path of the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _decimal(value: Any, scale: int, field: str) -> int:
    if value is None:
        raise PortfolioFileError(field, "missing")
    try:
        return to_fixed(value, scale, field)
    except FixedPointError as exc:
        message = str(exc).split(": ", 1)[-1]
        raise PortfolioFileError(
            field, f"absurd: {message}" if "out of range" in message else message
        ) from None


def _bounded(raw: int, lo: int, hi: int, scale: int, field: str) -> int:
    if raw < lo:
        raise PortfolioFileError(
            field, "must not be negative" if lo == 0 else f"must be >= {from_fixed(lo, scale)}"
        )
    if raw > hi:
        raise PortfolioFileError(field, f"absurd: above {from_fixed(hi, scale)}")
    return raw


def _object(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise PortfolioFileError(key, "must be an object")
    return value


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise PortfolioFileError(key, "must be an array")
    return value


def _value_ok(qty: int, scale: int, price_micro: int, field: str) -> None:
    if abs(qty) * price_micro // scale > MAX_VALUE_USDC * MICRO_PER_UNIT:
        raise PortfolioFileError(field, f"absurd: worth more than {MAX_VALUE_USDC} USDC")


def parse_portfolio(doc: Any, spec: RiskSpec) -> tuple[WhatIfInput, set[int]]:
    """Typed inputs from a what-if document, plus the ids of the assets whose price was given."""
    if not isinstance(doc, Mapping):
        raise PortfolioFileError("$", "the document must be a JSON object")
    unknown = sorted(set(doc) - set(TOP_LEVEL))
    if unknown:
        raise PortfolioFileError(unknown[0], f"unknown field; known: {', '.join(TOP_LEVEL)}")
    n_assets, n_perps = len(spec.assets), len(spec.perps)

    prices = [0] * n_assets
    prices[0] = MICRO_PER_UNIT
    priced: set[int] = set()
    for symbol, value in _object(doc, "prices").items():
        field = f"prices.{symbol}"
        asset = spec.asset_by_symbol(symbol)
        if asset is None:
            raise PortfolioFileError(field, "unknown asset")
        hi = (
            MICRO_PER_UNIT
            if asset.kind in (AssetKind.PREDICTION, AssetKind.CASH)
            else MAX_PRICE_USDC * MICRO_PER_UNIT
        )
        raw = _bounded(_decimal(value, MICRO_PER_UNIT, field), 0, hi, MICRO_PER_UNIT, field)
        if asset.kind == AssetKind.CASH and raw != MICRO_PER_UNIT:
            raise PortfolioFileError(field, "USDC is priced at 1")
        prices[asset.asset_id] = raw
        priced.add(asset.asset_id)

    def need_price(asset_id: int, by: str) -> None:
        if asset_id and asset_id not in priced:
            raise PortfolioFileError(f"prices.{spec.assets[asset_id].symbol}", f"missing (needed by {by})")

    balance = [0] * n_assets
    for symbol, value in _object(doc, "balances").items():
        field = f"balances.{symbol}"
        asset = spec.asset_by_symbol(symbol)
        if asset is None:
            raise PortfolioFileError(field, "unknown asset")
        cap = (MAX_VALUE_USDC if asset.kind == AssetKind.CASH else MAX_QTY_UNITS) * asset.qty_scale
        raw = _bounded(_decimal(value, asset.qty_scale, field), -cap, cap, asset.qty_scale, field)
        if raw:
            need_price(asset.asset_id, field)
            _value_ok(raw, asset.qty_scale, prices[asset.asset_id], field)
        balance[asset.asset_id] = raw

    marks = [prices[p.underlying] for p in spec.perps]
    for symbol, value in _object(doc, "marks").items():
        field = f"marks.{symbol}"
        perp = spec.perp_by_symbol(symbol)
        if perp is None:
            raise PortfolioFileError(field, "unknown perp market")
        marks[perp.market_id] = _bounded(
            _decimal(value, MICRO_PER_UNIT, field), 0, MAX_PRICE_USDC * MICRO_PER_UNIT, MICRO_PER_UNIT, field
        )

    multipliers = [PPM] * n_assets
    for symbol, value in _object(doc, "shock_multipliers").items():
        field = f"shock_multipliers.{symbol}"
        asset = spec.asset_by_symbol(symbol)
        if asset is None:
            raise PortfolioFileError(field, "unknown asset")
        multipliers[asset.asset_id] = _bounded(
            _decimal(value, PPM, field), PPM, MAX_MULTIPLIER * PPM, PPM, field
        )

    sizes = [0] * n_perps
    costs = [0] * n_perps
    isolated: list[IsolatedPosition] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(_list(doc, "positions")):
        where = f"positions[{i}]"
        if not isinstance(item, Mapping):
            raise PortfolioFileError(where, "must be an object")
        extra = sorted(set(item) - {"market", "size", "entry_price", "isolated_margin"})
        if extra:
            raise PortfolioFileError(f"{where}.{extra[0]}", "unknown field")
        name = item.get("market")
        perp = spec.perp_by_symbol(name) if isinstance(name, str) else None
        if perp is None:
            raise PortfolioFileError(f"{where}.market", f"not a perp market: {item.get('market')!r}")
        if perp.market_id in seen:
            raise PortfolioFileError(
                f"{where}.market", f"{perp.symbol} already at positions[{seen[perp.market_id]}]"
            )
        seen[perp.market_id] = i
        cap = MAX_QTY_UNITS * ATOMS_PER_UNIT
        size = _bounded(
            _decimal(item.get("size"), ATOMS_PER_UNIT, f"{where}.size"),
            -cap,
            cap,
            ATOMS_PER_UNIT,
            f"{where}.size",
        )
        entry = _bounded(
            _decimal(item.get("entry_price"), MICRO_PER_UNIT, f"{where}.entry_price"),
            0,
            MAX_PRICE_USDC * MICRO_PER_UNIT,
            MICRO_PER_UNIT,
            f"{where}.entry_price",
        )
        need_price(perp.underlying, f"{where}.market")
        _value_ok(size, ATOMS_PER_UNIT, max(entry, marks[perp.market_id]), f"{where}.size")
        cost = -((-(size * entry)) // ATOMS_PER_UNIT)  # entry notional, rounded up
        if "isolated_margin" in item:  # its own account, as the engine keeps it (not in the cross one)
            field = f"{where}.isolated_margin"
            margin = _bounded(
                _decimal(item["isolated_margin"], MICRO_PER_UNIT, field), 0, MAX_VALUE_USDC * MICRO_PER_UNIT,
                MICRO_PER_UNIT, field,
            )  # fmt: skip
            isolated.append(IsolatedPosition(perp.market_id, size, cost, margin))
            continue
        sizes[perp.market_id] = size
        costs[perp.market_id] = cost

    orders: list[OpenOrder] = []
    for i, item in enumerate(_list(doc, "open_orders")):
        where = f"open_orders[{i}]"
        if not isinstance(item, Mapping):
            raise PortfolioFileError(where, "must be an object")
        extra = sorted(set(item) - {"market", "side", "size", "price"})
        if extra:
            raise PortfolioFileError(f"{where}.{extra[0]}", "unknown field")
        market = item.get("market")
        perp = spec.perp_by_symbol(market) if isinstance(market, str) else None
        asset = spec.asset_by_symbol(market) if isinstance(market, str) and perp is None else None
        if perp is None and (asset is None or asset.kind == AssetKind.CASH):
            raise PortfolioFileError(f"{where}.market", f"not a perp market or a non-USDC asset: {market!r}")
        asset_id = perp.underlying if perp is not None else asset.asset_id  # type: ignore[union-attr]
        side = (
            {"buy": BUY, "sell": SELL}.get(str(item.get("side")).lower())
            if item.get("side") is not None
            else None
        )
        if side is None:
            raise PortfolioFileError(f"{where}.side", f"must be 'buy' or 'sell', got {item.get('side')!r}")
        qty = _bounded(
            _decimal(item.get("size"), ATOMS_PER_UNIT, f"{where}.size"),
            1,
            MAX_QTY_UNITS * ATOMS_PER_UNIT,
            ATOMS_PER_UNIT,
            f"{where}.size",
        )
        hi = (
            MICRO_PER_UNIT
            if spec.assets[asset_id].kind == AssetKind.PREDICTION
            else MAX_PRICE_USDC * MICRO_PER_UNIT
        )
        price = _bounded(
            _decimal(item.get("price"), MICRO_PER_UNIT, f"{where}.price"),
            1,
            hi,
            MICRO_PER_UNIT,
            f"{where}.price",
        )
        need_price(asset_id, f"{where}.market")
        _value_ok(qty, ATOMS_PER_UNIT, price, f"{where}.size")
        orders.append(OpenOrder(asset_id, perp.market_id if perp is not None else None, side, qty, price))

    state = AccountState(tuple(balance), tuple(sizes), tuple(costs))
    market = MarketPrices(tuple(prices), tuple(marks), tuple(multipliers))
    return WhatIfInput(state, market, tuple(orders), tuple(isolated)), priced


def _money(raw: int) -> str:
    return format(from_fixed(raw, MICRO_PER_UNIT), "f")


def _price(raw: int | None) -> str | None:
    return None if raw is None else format(from_fixed(raw, MICRO_PER_UNIT), "f")


def format_what_if(
    spec: RiskSpec, inp: WhatIfInput, result: WhatIfResult, priced: set[int]
) -> dict[str, Any]:
    """The JSON answer (decimal strings: money and prices in USDC, quantities in units)."""
    pm = result.portfolio
    pp = result.position_mode
    symbols = [a.symbol for a in spec.assets]
    margins = {iso.perp_id: iso.margin_micro for iso in inp.isolated}

    def qty(asset_id: int, raw: int) -> str:
        return format(from_fixed(raw, spec.assets[asset_id].qty_scale), "f")

    return {
        "mode": "portfolio",
        "equity": _money(pm.equity_micro),
        "initial_margin": _money(pm.im_micro),
        "maintenance_margin": _money(pm.mm_micro),
        "free_collateral": _money(pm.free_micro),
        "reserved_for_orders": _money(sum(result.order_reserve_micro)),
        "im_before_floor": _money(pm.im_raw_micro),
        "floor": _money(pm.floor_micro),
        "exposures": {symbols[a]: _money(e) for a, e in enumerate(pm.exposure_micro) if a},
        "shocks": {symbols[a]: _money(s) for a, s in enumerate(pm.shock_micro) if s},
        "group_losses": {g: _money(v) for g, v in pm.group_loss_micro.items()},
        "scenarios": {name: _money(v) for name, v in pm.scenario_pnl_micro.items()},
        "liquidation_prices": {
            spec.perps[p].symbol: _price(v) for p, v in result.liquidation_price_micro.items()
        },
        "open_orders": [
            {
                "market": spec.perps[o.perp_id].symbol if o.perp_id is not None else symbols[o.asset_id],
                "side": "buy" if o.side == BUY else "sell",
                "size": format(from_fixed(o.qty_atoms, ATOMS_PER_UNIT), "f"),
                "price": _price(o.limit_price_micro),
                "reserve": _money(r),
            }
            for o, r in zip(inp.orders, result.order_reserve_micro, strict=True)
        ],
        "can_buy": {symbols[a]: qty(a, q) for a, q in result.max_buy_atoms.items() if a in priced},
        "can_trade_perp": {
            spec.perps[p].symbol: {
                "buy": format(from_fixed(b, ATOMS_PER_UNIT), "f"),
                "sell": format(from_fixed(s, ATOMS_PER_UNIT), "f"),
            }
            for p, (b, s) in result.max_perp_atoms.items()
            if spec.perps[p].underlying in priced
        },
        "isolated": {
            spec.perps[p].symbol: {
                "margin": _money(margins[p]),
                "equity": _money(own.equity_micro),
                "initial_margin": _money(own.im_micro),
                "maintenance_margin": _money(own.mm_micro),
                "free_margin": _money(own.free_micro),
                "liquidation_price": _price(liq),
            }
            for p, (own, liq) in result.isolated.items()
        },
        "per_position_mode": {
            "equity": _money(pp.equity_micro),
            "initial_margin": _money(pp.im_micro),
            "maintenance_margin": _money(pp.mm_micro),
            "free_collateral": _money(pp.free_micro),
            "positions": {
                spec.perps[p].symbol: {
                    "initial_margin": _money(pp.position_im_micro[p]),
                    "maintenance_margin": _money(pp.position_mm_micro[p]),
                    "liquidation_price": _price(v),
                }
                for p, v in result.position_liquidation_price_micro.items()
            },
        },
    }


def run_what_if(doc: Any, spec: RiskSpec) -> dict[str, Any]:
    """Parse, compute, format: the what-if answer for a document, or PortfolioFileError."""
    inp, priced = parse_portfolio(doc, spec)
    return format_what_if(spec, inp, calc_what_if(spec, inp), priced)
