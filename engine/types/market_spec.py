"""Market rules: one frozen :class:`MarketSpec` per market, loaded and validated from TOML.

Units (all integers):

* ``price_ticks * tick_size_micro`` = price of ONE WHOLE base unit in micro-units (1e-6) of quote;
* ``size_lots * lot_size_atoms`` = size in base atoms, ``BASE_ATOMS_PER_UNIT`` (1e8) atoms per whole
  base unit (BTC's satoshi; for shares and prediction contracts "1e-8 of a share");
* notional (micro quote) = ``price_ticks * tick_size_micro * size_lots * lot_size_atoms // 1e8``,
  rounded down (:func:`calc_notional_micro`).

Invariants checked at load (:class:`MarketConfigError` names the file, the market and the field):
ids unique and u32, symbols unique, every size/price/tick positive, ``min <= max``,
``max_price_ticks * max_size_lots`` fits int64 (so the book's own arithmetic never overflows),
band in [0, 10000] bps, status/kind valid enum names or values, the aggregate bounds
(``max_open_orders_per_account``, ``max_level_total_lots``) within ``engine.types.fixed``'s limits.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from engine.types.enums import MarketKind, MarketStatus
from engine.types.fixed import (  # noqa: F401 (BASE_ATOMS_PER_UNIT, U32_MAX re-exported)
    BASE_ATOMS_PER_UNIT,
    INT64_MAX,
    MAX_LEVEL_TOTAL_LOTS,
    MAX_OPEN_ORDERS_PER_ACCOUNT,
    U32_MAX,
)

ALL_MARKETS_ID = 0xFFFF_FFFF  # reserved on the wire (CANCEL_ALL every market): not a valid market id


class MarketConfigError(ValueError):
    """A market definition is invalid; the message names file, market and field."""


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """The static rules of one market (see the module docstring for units)."""

    market_id: int
    symbol: str
    kind: MarketKind
    tick_size_micro: int
    lot_size_atoms: int
    min_size_lots: int = 1
    max_size_lots: int = 1 << 31
    min_notional_micro: int = 0
    max_price_ticks: int = 1 << 31
    band_bps: int = 0  # price band around the mark price; 0 disables the circuit breaker
    status: MarketStatus = MarketStatus.OPEN  # initial status
    base_asset: str = ""  # the asset traded (spot) or referenced (perp); "" = none (matching only)
    quote_asset: str = "USDC"  # the asset prices are in and fills settle in
    maker_fee_ppm: int = 0  # of notional; negative = a rebate (at most the taker fee)
    taker_fee_ppm: int = 0  # of notional
    # bounds of the book's aggregates (int64 sums stay provably safe; one account cannot exhaust
    # memory): live (resting + waiting) orders of one account, total open size of one price level
    max_open_orders_per_account: int = MAX_OPEN_ORDERS_PER_ACCOUNT
    max_level_total_lots: int = MAX_LEVEL_TOTAL_LOTS

    def __post_init__(self) -> None:
        problem = check_spec(self)
        if problem:
            field, why = problem
            raise MarketConfigError(f"market {self.market_id} ({self.symbol!r}): field {field!r}: {why}")


def calc_notional_micro(spec: MarketSpec, price_ticks: int, size_lots: int) -> int:
    """Notional in micro quote, rounded down: price_ticks*tick_size_micro*size_lots*lot_size_atoms/1e8."""
    return price_ticks * spec.tick_size_micro * size_lots * spec.lot_size_atoms // BASE_ATOMS_PER_UNIT


def check_spec(spec: MarketSpec) -> tuple[str, str] | None:
    """(field, problem) for the first invalid field of ``spec``, or None when it is valid."""
    ints = (
        "market_id",
        "tick_size_micro",
        "lot_size_atoms",
        "min_size_lots",
        "max_size_lots",
        "min_notional_micro",
        "max_price_ticks",
        "band_bps",
        "max_open_orders_per_account",
        "max_level_total_lots",
    )
    for name in ints:
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool):
            return name, f"must be an integer, got {value!r}"
    if not 0 <= spec.market_id < ALL_MARKETS_ID:
        return "market_id", f"must be in [0, {ALL_MARKETS_ID - 1}], got {spec.market_id}"
    if not isinstance(spec.symbol, str) or not spec.symbol or len(spec.symbol) > 32:
        return "symbol", f"must be a non-empty string of <= 32 chars, got {spec.symbol!r}"
    if not isinstance(spec.kind, MarketKind):
        return "kind", f"must be a MarketKind, got {spec.kind!r}"
    if not isinstance(spec.status, MarketStatus):
        return "status", f"must be a MarketStatus, got {spec.status!r}"
    for name in ("tick_size_micro", "lot_size_atoms", "min_size_lots", "max_size_lots", "max_price_ticks"):
        if getattr(spec, name) <= 0:
            return name, f"must be > 0, got {getattr(spec, name)}"
    if spec.min_size_lots > spec.max_size_lots:
        return "min_size_lots", f"{spec.min_size_lots} exceeds max_size_lots {spec.max_size_lots}"
    if spec.min_notional_micro < 0:
        return "min_notional_micro", f"must be >= 0, got {spec.min_notional_micro}"
    if not 0 <= spec.band_bps <= 10_000:
        return "band_bps", f"must be in [0, 10000], got {spec.band_bps}"
    if spec.max_price_ticks * spec.max_size_lots > INT64_MAX:
        return "max_size_lots", (
            f"max_price_ticks * max_size_lots = {spec.max_price_ticks * spec.max_size_lots}"
            " does not fit int64"
        )
    if not 1 <= spec.max_open_orders_per_account <= MAX_OPEN_ORDERS_PER_ACCOUNT:
        return "max_open_orders_per_account", (
            f"must be in [1, {MAX_OPEN_ORDERS_PER_ACCOUNT}], got {spec.max_open_orders_per_account}"
        )
    if not 1 <= spec.max_level_total_lots <= MAX_LEVEL_TOTAL_LOTS:
        return "max_level_total_lots", (f"must be in [1, 2**62], got {spec.max_level_total_lots}")
    for name in ("tick_size_micro", "lot_size_atoms"):
        if getattr(spec, name) > INT64_MAX:
            return name, f"does not fit int64, got {getattr(spec, name)}"
    for name in ("base_asset", "quote_asset"):
        value = getattr(spec, name)
        if not isinstance(value, str) or len(value) > 32:
            return name, f"must be an asset symbol (a string of <= 32 chars), got {value!r}"
    for name in ("maker_fee_ppm", "taker_fee_ppm"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or not -100_000 <= value <= 100_000:
            return name, f"must be an integer in [-100000, 100000] ppm (+-10%), got {value!r}"
    if spec.taker_fee_ppm < 0:
        return "taker_fee_ppm", f"must be >= 0, got {spec.taker_fee_ppm}"
    if spec.maker_fee_ppm + spec.taker_fee_ppm < 0:
        return "maker_fee_ppm", (
            f"a rebate of {-spec.maker_fee_ppm} ppm exceeds the taker fee {spec.taker_fee_ppm} ppm: "
            "the fee account would pay out on every fill"
        )
    return None


_REQUIRED = ("market_id", "symbol", "kind", "tick_size_micro", "lot_size_atoms")
_KNOWN = {f.name for f in fields(MarketSpec)}


def _enum(enum_cls: type[Enum], value: Any, where: str, field: str) -> Any:
    try:
        if isinstance(value, str):
            return enum_cls[value.upper().replace("-", "_")]
        if isinstance(value, int) and not isinstance(value, bool):
            return enum_cls(value)
    except (KeyError, ValueError):
        pass
    names = ", ".join(m.name.lower() for m in enum_cls)
    raise MarketConfigError(f"{where}: field {field!r}: {value!r} is not one of {names}")


def spec_from_dict(raw: dict[str, Any], where: str) -> MarketSpec:
    """Build one spec from a TOML table; ``where`` prefixes every error (file and market)."""
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise MarketConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(_KNOWN)}")
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        raise MarketConfigError(f"{where}: missing field(s) {missing}")
    values = dict(raw)
    values["kind"] = _enum(MarketKind, raw["kind"], where, "kind")
    if "status" in raw:
        values["status"] = _enum(MarketStatus, raw["status"], where, "status")
    try:
        return MarketSpec(**values)
    except MarketConfigError as exc:
        raise MarketConfigError(f"{where}: {exc}") from None
    except TypeError as exc:  # pragma: no cover - guarded by the field checks above
        raise MarketConfigError(f"{where}: {exc}") from None


def load_markets(path: str | Path) -> dict[int, MarketSpec]:
    """Read ``[[market]]`` tables from a TOML file: ``{market_id: MarketSpec}``, validated.

    Raises :class:`MarketConfigError` naming the file, the market (index, id, symbol) and the field.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise MarketConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise MarketConfigError(f"{path}: not valid TOML: {exc}") from None
    return markets_from_doc(doc, str(path))


def markets_from_doc(doc: dict[str, Any], source: str = "<config>") -> dict[int, MarketSpec]:
    """Validate a parsed document ``{"market": [table, ...]}`` (see :func:`load_markets`)."""
    tables = doc.get("market")
    if not isinstance(tables, list) or not tables:
        raise MarketConfigError(f"{source}: expected one or more [[market]] tables")
    out: dict[int, MarketSpec] = {}
    symbols: dict[str, int] = {}
    for i, raw in enumerate(tables):
        if not isinstance(raw, dict):
            raise MarketConfigError(f"{source}: market #{i}: expected a table")
        where = f"{source}: market #{i} (id={raw.get('market_id')!r}, symbol={raw.get('symbol')!r})"
        spec = spec_from_dict(raw, where)
        if spec.market_id in out:
            raise MarketConfigError(f"{where}: field 'market_id': {spec.market_id} is used twice")
        if spec.symbol in symbols:
            raise MarketConfigError(
                f"{where}: field 'symbol': {spec.symbol!r} is used twice (also market {symbols[spec.symbol]})"
            )
        out[spec.market_id] = spec
        symbols[spec.symbol] = spec.market_id
    return out


def workload_markets(count: int = 1) -> dict[int, MarketSpec]:
    """Markets 0..count-1 that accept the standard workload: tick 1, lot 1, no band, no min notional."""
    return {
        i: MarketSpec(
            market_id=i,
            symbol=f"WL-{i}",
            kind=MarketKind.SPOT,
            tick_size_micro=1,
            lot_size_atoms=BASE_ATOMS_PER_UNIT,
            min_size_lots=1,
            max_size_lots=1 << 31,
            max_price_ticks=1 << 31,
        )
        for i in range(count)
    }
