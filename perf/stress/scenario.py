"""Stress scenarios: the JSON format ``hx stress --scenario NAME|FILE`` reads, checked before anything runs.

Required:

* ``assets``: ``{SYMBOL: {"kind": "perp"|"spot"|"equity"|"prediction"|"collateral",
  "start_price": number}}``: the markets and collateral of the run (tick, lot, margin and haircut
  derived from the kind and price unless the asset gives them);
* ``path``: ``[{"t_s": seconds, "prices": {SYMBOL: price}}, ...]`` in increasing ``t_s``; a symbol
  missing from a row keeps its last price; between rows prices are interpolated at ``--step-s``,
  log-linearly (linearly for prediction markets, whose price is the YES share's, in [0, 1]).

Optional: ``population``, ``book``, ``oracle``, ``sessions``, ``resolution``, ``funding`` (see
:class:`Scenario`). Any other top-level key, an asset's keys beyond those it uses (e.g.
``reference``), and ``t_utc``, ``status``, ``src``, ``note`` inside a path row are documentation:
ignored, and listed in the report. A misspelt required key, a non-numeric or non-positive price, a
prediction price outside [0, 1], time going backwards: :class:`ScenarioError` naming the row and
the field. Nothing starts before the whole file is checked.
"""

from __future__ import annotations

import bisect
import difflib
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any

from hx.json_file import JsonFileError, load_json_file

KINDS = ("perp", "spot", "equity", "prediction", "collateral")
ASSET_KEYS = {"kind", "start_price", "tick", "lot", "margin", "haircut"}
ROW_KEYS = {"t_s", "prices"}
ROW_DOC_KEYS = {"t_utc", "status", "src", "note"}
OPTIONAL = {"population", "book", "oracle", "sessions", "resolution", "funding", "name"}
# what the optional sections' keys mean (docs/liquidation.md, "Stress"); any other key in them is
# documentation: ignored and listed in the report, like a top-level one
POPULATION_KEYS = {"short_bias"}  # share of the directional accounts that are short, in [0, 1]
BOOK_KEYS = {
    "depth_usd",
    "levels",
    "spread_bps",
    "thin_with_vol",
    "ask_depth_factor",
    "mark_follows_book",
    "mark_half_life_s",
}
FUNDING_KEYS = {"interval_s", "period_s", "interest", "clamp", "cap"}
ORACLE_KEYS = {"sources", "manipulated"}
MANIPULATED_KEYS = {"source", "mode", "factor", "from_s", "to_s"}
MODES = ("spike", "freeze", "lag", "drift", "silent")
SESSION_KEYS = {"closed"}
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "scenarios"
SETTLEMENT = "USDC"  # asset 0 of the run (every market is quoted in it) unless it is listed as collateral
MAX_PRICE = Decimal(10**9)  # USDC: the oracle's largest index (IndexConfig.max_price_micro, 1e15 micro)
MAX_LOT = Decimal(10**10)  # units: a lot is int64 atoms (1e-8 of a unit) in the engine
MAX_DEPTH_USD = Decimal(10**11)  # the makers' quotes per side: their sizes in lots fit the wire's int64
MAX_SYMBOL = 28  # the engine's 32 characters, less the "-IDX" of a perp's derived underlying


class ScenarioError(ValueError):
    """The scenario cannot run; the message names the row and the field."""


@dataclass(frozen=True)
class AssetDef:
    symbol: str
    kind: str
    start_price: Decimal
    tick: Decimal | None = None
    lot: Decimal | None = None
    margin: Decimal | None = None  # initial margin fraction
    haircut: Decimal | None = None  # collateral weight reduction


@dataclass(frozen=True)
class PathRow:
    t_s: Decimal
    prices: dict[str, Decimal]


@dataclass(frozen=True)
class Scenario:
    name: str
    assets: dict[str, AssetDef]
    path: tuple[PathRow, ...]
    population: dict[str, Any] = field(default_factory=dict)
    book: dict[str, Any] = field(default_factory=dict)
    oracle: dict[str, Any] = field(default_factory=dict)
    sessions: dict[str, Any] = field(default_factory=dict)
    resolution: dict[str, Any] | None = None
    funding: dict[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # documentation keys, listed in the report

    @property
    def duration_s(self) -> Decimal:
        return self.path[-1].t_s

    def prices_at(self, t_s: float) -> dict[str, Decimal]:
        """Every asset's price at ``t_s`` (interpolated between rows; the last row's after it)."""
        return {symbol: self.price_of(symbol, t_s) for symbol in self.assets}

    def price_of(self, symbol: str, t_s: float) -> Decimal:
        """One asset's price at ``t_s``."""
        return self._price(symbol, self.assets[symbol].kind, Decimal(repr(t_s)))

    @cached_property
    def _points(self) -> dict[str, tuple[list[Decimal], list[Decimal]]]:
        """Per symbol, the times and prices of the rows that set it, with the start price at t = 0
        (taken once: a walk of every row for every symbol at every step was quadratic in the
        path's length, ~100 ms a step for a path of 100,000 rows)."""
        out: dict[str, tuple[list[Decimal], list[Decimal]]] = {}
        for symbol, asset in self.assets.items():
            times, prices = [Decimal(0)], [asset.start_price]
            for row in self.path:
                if symbol in row.prices:
                    times.append(row.t_s)
                    prices.append(row.prices[symbol])
            out[symbol] = (times, prices)
        return out

    def _price(self, symbol: str, kind: str, t: Decimal) -> Decimal:
        times, prices = self._points[symbol]
        if t <= 0:  # a row at t_s 0 is the price at 0 (the start price is where positions open)
            return prices[bisect.bisect_right(times, Decimal(0)) - 1]
        i = bisect.bisect_left(times, t) - 1  # the first pair with times[i] <= t <= times[i + 1]
        if i + 1 >= len(times):
            return prices[-1]
        t0, p0, t1, p1 = times[i], prices[i], times[i + 1], prices[i + 1]
        if t1 == t0:
            return p1
        f = (t - t0) / (t1 - t0)
        if kind == "prediction" or p0 == 0 or p1 == 0:
            return p0 + (p1 - p0) * f
        return Decimal(math.exp(math.log(float(p0)) + (math.log(float(p1)) - math.log(float(p0))) * float(f)))


def _number(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ScenarioError(f"{where}: must be a number, got {value!r}")
    try:
        dec = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise ScenarioError(f"{where}: must be a number, got {value!r}") from None
    if not dec.is_finite():
        raise ScenarioError(f"{where}: must be finite, got {value!r}")
    return dec


def _price(value: Any, kind: str, where: str) -> Decimal:
    p = _number(value, where)
    if kind == "prediction":
        if not Decimal(0) <= p <= Decimal(1):
            raise ScenarioError(
                f"{where}: a prediction market's price is the YES share's, in [0, 1]; got {value!r}"
            )
    elif p <= 0:
        raise ScenarioError(f"{where}: a price must be > 0, got {value!r}")
    elif p > MAX_PRICE:
        raise ScenarioError(
            f"{where}: a price must be at most {MAX_PRICE:,} USDC (the oracle's), got {value!r}"
        )
    return p


def parse_scenario(doc: Any, name: str = "<scenario>") -> Scenario:
    """Check a parsed scenario document; ScenarioError names the row and the field."""
    if not isinstance(doc, dict):
        raise ScenarioError(f"{name}: a scenario is a JSON object")
    for key in ("assets", "path"):
        if key not in doc:
            near = difflib.get_close_matches(key, [k.lower() for k in doc if isinstance(k, str)], 1, 0.6)
            found = [k for k in doc if isinstance(k, str) and k.lower() in near]
            hint = f" (found {found[0]!r}: misspelt?)" if found else ""
            raise ScenarioError(f"{name}: missing required key {key!r}{hint}")
    ignored = [k for k in doc if k not in {"assets", "path"} | OPTIONAL]
    raw_assets = doc["assets"]
    if not isinstance(raw_assets, dict) or not raw_assets:
        raise ScenarioError(f"{name}: 'assets' must be a non-empty object {{SYMBOL: {{kind, start_price}}}}")
    assets: dict[str, AssetDef] = {}
    for symbol, raw in raw_assets.items():
        where = f"{name}: assets.{symbol}"
        if not symbol or len(symbol) > MAX_SYMBOL or not symbol.isprintable():
            shown = symbol if len(symbol) <= 40 else symbol[:40] + "..."
            raise ScenarioError(
                f"{name}: assets: {shown!r}: a symbol has 1 to {MAX_SYMBOL} printable characters"
            )
        if not isinstance(raw, dict):
            raise ScenarioError(f"{where}: must be an object with 'kind' and 'start_price'")
        for key in ("kind", "start_price"):
            if key not in raw:
                raise ScenarioError(f"{where}: missing required key {key!r}")
        kind = raw["kind"]
        if kind not in KINDS:
            raise ScenarioError(f"{where}.kind: {kind!r} is not one of {list(KINDS)}")
        extra = {k: _number(raw[k], f"{where}.{k}") for k in ("tick", "lot", "margin", "haircut") if k in raw}
        for k, v in extra.items():
            if v <= 0 or (k in ("margin", "haircut") and v >= 1):
                raise ScenarioError(f"{where}.{k}: out of range, got {raw[k]!r}")
            if (k == "tick" and v > MAX_PRICE) or (k == "lot" and v > MAX_LOT):
                most = MAX_PRICE if k == "tick" else MAX_LOT
                raise ScenarioError(f"{where}.{k}: must be at most {most:,}, got {raw[k]!r}")
        if kind == "prediction" and "margin" in extra:
            raise ScenarioError(f"{where}.margin: a prediction market is margined on its outcomes (0 and 1)")
        ignored += [f"assets.{symbol}.{k}" for k in raw if k not in ASSET_KEYS]
        assets[symbol] = AssetDef(
            symbol, kind, _price(raw["start_price"], kind, f"{where}.start_price"), **extra
        )
    raw_path = doc["path"]
    if not isinstance(raw_path, list) or not raw_path:
        raise ScenarioError(f"{name}: 'path' must be a non-empty list of {{t_s, prices}} rows")
    rows: list[PathRow] = []
    last_t = Decimal(-1)
    for i, row in enumerate(raw_path):
        where = f"{name}: path[{i}]"
        if not isinstance(row, dict):
            raise ScenarioError(f"{where}: must be an object with 't_s' and 'prices'")
        for key in ROW_KEYS:
            if key not in row:
                raise ScenarioError(f"{where}: missing required key {key!r}")
        unknown = [k for k in row if k not in ROW_KEYS | ROW_DOC_KEYS]
        if unknown:
            raise ScenarioError(
                f"{where}: unknown key(s) {unknown}; a row has t_s, prices (and t_utc, status, src, note)"
            )
        ignored += [f"path[{i}].{k}" for k in row if k in ROW_DOC_KEYS]
        t = _number(row["t_s"], f"{where}.t_s")
        if t < 0:
            raise ScenarioError(f"{where}.t_s: must be >= 0, got {row['t_s']!r}")
        if t <= last_t:
            raise ScenarioError(f"{where}.t_s: time goes backwards ({row['t_s']!r} after {last_t})")
        last_t = t
        prices = row["prices"]
        if not isinstance(prices, dict):
            raise ScenarioError(f"{where}.prices: must be an object {{SYMBOL: price}}")
        parsed = {}
        for symbol, value in prices.items():
            if symbol not in assets:
                raise ScenarioError(
                    f"{where}.prices.{symbol}: not an asset of the scenario ({sorted(assets)})"
                )
            parsed[symbol] = _price(value, assets[symbol].kind, f"{where}.prices.{symbol}")
        rows.append(PathRow(t, parsed))
    _check_settlement(assets, rows, name)
    if all(a.kind == "collateral" for a in assets.values()):
        raise ScenarioError(
            f"{name}: assets: no market (every asset is collateral): give one perp, spot, equity or "
            "prediction asset for the population to trade"
        )
    resolution = doc.get("resolution")
    if resolution is not None:
        where = f"{name}: resolution"
        if not isinstance(resolution, dict) or {"market", "outcome", "t_s"} - set(resolution):
            raise ScenarioError(f"{where}: must be {{market, outcome, t_s}}")
        market = resolution["market"]
        if market not in assets or assets[market].kind != "prediction":
            raise ScenarioError(f"{where}.market: {market!r} is not a prediction asset of the scenario")
        if resolution["outcome"] not in ("YES", "NO"):
            raise ScenarioError(f'{where}.outcome: must be "YES" or "NO", got {resolution["outcome"]!r}')
        _in_range(resolution["t_s"], f"{where}.t_s", Decimal(0), rows[-1].t_s)  # the run ends with the path
    for key in ("population", "book", "oracle", "sessions", "funding"):
        if key in doc and not isinstance(doc[key], dict):
            raise ScenarioError(f"{name}: {key!r} must be an object")
    ignored += _check_sections(doc, assets, name)
    return Scenario(
        name=str(doc.get("name", name)),
        assets=assets,
        path=tuple(rows),
        population=dict(doc.get("population", {})),
        book=dict(doc.get("book", {})),
        oracle=dict(doc.get("oracle", {})),
        sessions=dict(doc.get("sessions", {})),
        resolution=resolution,
        funding=dict(doc.get("funding", {})),
        ignored=tuple(ignored),
    )


def _check_settlement(assets: dict[str, AssetDef], rows: list[PathRow], name: str) -> None:
    """USDC as a market is refused: every market of a run is quoted in its settlement asset. As
    collateral it may move (March 2023's depeg): the run then settles in a dollar named USD and
    USDC is one more listed stablecoin (``exchange_setup.settlement_symbol``)."""
    asset = assets.get(SETTLEMENT)
    if asset is not None and asset.kind != "collateral":
        raise ScenarioError(
            f"{name}: assets.{SETTLEMENT}: USDC is the settlement asset every market is quoted in, "
            "not a market (list it as collateral to replay a depeg)"
        )


def _in_range(
    value: Any, where: str, lo: Decimal, hi: Decimal | None = None, integral: bool = False
) -> Decimal:
    v = _number(value, where)
    if v < lo or (hi is not None and v > hi) or (integral and v != v.to_integral_value()):
        want = "an integer " if integral else ""
        raise ScenarioError(
            f"{where}: must be {want}in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}"
        )
    return v


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be an object")
    return value


def _check_sections(doc: dict[str, Any], assets: dict[str, AssetDef], name: str) -> list[str]:
    """Check the optional sections' values (ScenarioError naming the field); their unknown keys,
    as the documentation keys they are."""
    ignored: list[str] = []
    zero, one = Decimal(0), Decimal(1)

    def known(section: dict[str, Any], keys: set[str], where: str) -> None:
        ignored.extend(f"{where}.{k}" for k in section if k not in keys)

    pop = doc.get("population", {})
    known(pop, POPULATION_KEYS, "population")
    if "short_bias" in pop:
        _in_range(pop["short_bias"], f"{name}: population.short_bias", zero, one)
    book = doc.get("book", {})
    known(book, BOOK_KEYS, "book")
    for key, lo, hi, integral in (
        ("depth_usd", Decimal("0.01"), MAX_DEPTH_USD, False),
        ("levels", one, Decimal(100), True),
        ("spread_bps", Decimal("0.01"), Decimal(10_000), False),
        ("thin_with_vol", zero, one, False),
        ("ask_depth_factor", Decimal("0.001"), Decimal(1000), False),
        ("mark_half_life_s", Decimal("0.001"), Decimal(86_400), False),
    ):
        if key in book:
            _in_range(book[key], f"{name}: book.{key}", lo, hi, integral)
    if not isinstance(book.get("mark_follows_book", False), bool):
        raise ScenarioError(f"{name}: book.mark_follows_book: must be true or false")
    funding = doc.get("funding", {})
    known(funding, FUNDING_KEYS, "funding")
    for key, lo, hi in (
        ("interval_s", Decimal("0.001"), None),
        ("period_s", Decimal("0.001"), None),
        ("interest", -one / 10, one / 10),
        ("clamp", zero, one / 10),
        ("cap", zero, one),
    ):
        if key in funding:
            _in_range(funding[key], f"{name}: funding.{key}", lo, hi)
    for symbol, spec in doc.get("oracle", {}).items():
        where = f"{name}: oracle.{symbol}"
        if symbol not in assets:
            raise ScenarioError(f"{where}: not an asset of the scenario ({sorted(assets)})")
        known(_object(spec, where), ORACLE_KEYS, f"oracle.{symbol}")
        sources = int(_in_range(spec.get("sources", 3), f"{where}.sources", one, Decimal(21), True))
        if "manipulated" in spec:
            bad = _object(spec["manipulated"], f"{where}.manipulated")
            known(bad, MANIPULATED_KEYS, f"oracle.{symbol}.manipulated")
            _in_range(bad.get("source", 0), f"{where}.manipulated.source", zero, Decimal(sources - 1), True)
            if bad.get("mode", "spike") not in MODES:
                raise ScenarioError(f"{where}.manipulated.mode: {bad['mode']!r} is not one of {list(MODES)}")
            if "factor" in bad:
                _in_range(bad["factor"], f"{where}.manipulated.factor", Decimal("0.000001"), Decimal(10**6))
            start = _in_range(bad.get("from_s", 0), f"{where}.manipulated.from_s", zero)
            if "to_s" in bad:
                _in_range(bad["to_s"], f"{where}.manipulated.to_s", start)
    for symbol, spec in doc.get("sessions", {}).items():
        where = f"{name}: sessions.{symbol}"
        if symbol not in assets or assets[symbol].kind == "collateral":
            raise ScenarioError(f"{where}: not a market of the scenario")
        known(_object(spec, where), SESSION_KEYS, f"sessions.{symbol}")
        closed = spec.get("closed", [])
        if not isinstance(closed, list):
            raise ScenarioError(f"{where}.closed: must be a list of [from_s, to_s] intervals")
        for i, span in enumerate(closed):
            if not isinstance(span, list) or len(span) != 2:
                raise ScenarioError(f"{where}.closed[{i}]: must be [from_s, to_s]")
            start = _in_range(span[0], f"{where}.closed[{i}][0]", zero)
            if _number(span[1], f"{where}.closed[{i}][1]") <= start:
                raise ScenarioError(f"{where}.closed[{i}]: to_s must be after from_s, got {span!r}")
    return ignored


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs, refused when a key repeats: JSON keeps the last silently (a second
    ``book`` or ``path`` replaced the first, and a run went ahead on what was left)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a file; ScenarioError (never a traceback) when it cannot run."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = BUILTIN_DIR / f"{name_or_path}.json"
        if not path.exists():
            raise ScenarioError(
                f"no scenario {name_or_path!r}: built-in ones are {builtin_names()}, or give a file"
            )
    try:  # (missing, unreadable, not UTF-8, nested too deeply, not JSON: one line, never a traceback)
        doc = load_json_file(path, object_pairs_hook=_no_duplicates)
    except JsonFileError as exc:
        raise ScenarioError(str(exc)) from None
    except _DuplicateKey as exc:
        raise ScenarioError(
            f"{path}: key {exc.args[0]!r} is given twice in one object (JSON keeps only the last)"
        ) from None
    return parse_scenario(doc, path.stem)
