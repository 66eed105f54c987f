"""The ``[oracle]`` section of the exchange's config: sources, perps, sessions, predictions, delistings.

Every key is checked before anything starts; a bad one is an :class:`OracleConfigError` naming the
table and the key (``[[oracle.perp]] #1 half_life_ms: ...``). Units are in the key names (``_ms``,
``_s``, ``_ppm``, ``_ppb``); prices are decimal strings in USDC (converted once, here, to micro-USDC).
Times of day are ``"HH:MM"`` UTC; instants are unix seconds (UTC).

Shape::

    [oracle]                  # the index rules (engine.math.oracle_index.IndexConfig), the clock
    [[oracle.source]]         # one price feed of one asset (simulated or chainlink)
    [[oracle.perp]]           # mark and funding of one perp (and its optional delisting)
    [[oracle.session]]        # the trading calendar of one equity market
    [[oracle.prediction]]     # close time, resolution authority and dispute window of one market
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.math.funding import (
    DEFAULT_CLAMP_PPB,
    DEFAULT_INTEREST_PPB,
    FundingConfig,
    PremiumWeighting,
    calc_cap_ppb_from_margin,
)
from engine.math.oracle_index import IndexConfig
from engine.types.asset_spec import assets_from_doc
from engine.types.enums import AssetKind, MarketKind
from engine.types.fixed import MICRO_PER_UNIT
from engine.types.market_spec import MarketSpec, markets_from_doc

NS_PER_MS = 10**6
NS_PER_S = 10**9
NS_PER_DAY = 86_400 * NS_PER_S
SOURCE_KINDS = ("simulated", "chainlink")
SIM_MODES = ("honest", "spike", "freeze", "lag", "drift", "silent", "garbage")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class OracleConfigError(ValueError):
    """The ``[oracle]`` section cannot be used; the message names the table and the key."""


@dataclass(frozen=True)
class SourceConfig:
    """One feed of one asset. ``feed`` is its index among the asset's sources (config order)."""

    asset_id: int
    feed: int
    name: str
    kind: str = "simulated"
    mode: str = "honest"  # simulated: honest | spike | freeze | lag | drift | silent | garbage
    price_micro: int = 0  # simulated: the starting price
    vol_ppm_per_s: int = 500  # simulated: the walk's standard deviation per sqrt(second)
    jump_ppm: int = 0  # simulated: size of an occasional jump (shared by every source of the asset)
    jumps_per_hour: int = 0
    shock_every_s: int = 0  # simulated: a scheduled move of the asset every this many seconds (0: none)
    shock_ppm: int = 0  # its size; shocks alternate down, up, down... (the demo's sharp moves)
    shock_over_s: int = 5  # spread over this many seconds (the index's rate limit still applies)
    noise_ppm: int = 50  # simulated: each source's own noise around the asset's true price
    every_ms: int = 500  # how often the feed updates
    lag_ms: int = 5_000  # mode lag: quotes the price of this long ago (with the old timestamp)
    drift_ppm_per_s: int = 100  # mode drift: walks away from the true price this fast
    spike_ppm: int = 300_000  # mode spike: the spike's size
    start_after_ms: int = 0  # the mode starts this long after the oracle starts (honest before)
    seed: int = 0
    rpc_url: str = ""  # chainlink: the JSON-RPC endpoint
    address: str = ""  # chainlink: the AggregatorV3Interface feed's address
    perp_market: int = 0  # 0: an index feed of the asset; else an external mid of this perp (mark (c))
    weight: int = 1  # an external mid's weight in the weighted median
    staleness_ns: int = 0  # this feed's own staleness timeout (0: the [oracle]'s)


@dataclass(frozen=True)
class PerpConfig:
    market_id: int
    asset_id: int
    tick_size_micro: int
    lot_size_atoms: int
    half_life_ns: int
    impact_notional_micro: int
    premium_sample_ns: int
    funding: FundingConfig
    delist_at_ns: int = 0  # 0: not delisted
    delist_twap_ns: int = 3600 * NS_PER_S


@dataclass(frozen=True)
class SessionConfig:
    """A market open ``[open, close)`` UTC on its days; ``close < open`` wraps past midnight (the
    session then belongs to the day it opened). Halts are windows inside a session."""

    market_id: int
    asset_id: int
    open_ms: int  # ms after UTC midnight
    close_ms: int
    days: tuple[int, ...]  # 0 = Monday
    halts: tuple[tuple[int, int], ...] = ()
    cycle_ms: int = 0  # a recurring closure: CLOSED for the first closed_ms of every cycle_ms (0: none)
    closed_ms: int = 0  # (counted from the unix epoch; the demo's "session closes and reopens")


@dataclass(frozen=True)
class PredictionConfig:
    market_id: int
    authority: int  # the account that may propose and dispute
    close_at_ns: int  # trading stops (CLOSED); proposals are accepted from then on
    dispute_window_ns: int


@dataclass(frozen=True)
class OracleConfig:
    tick_ns: int
    halt_after_ns: int  # an index stale this long halts its asset's markets (reopened when fresh)
    index: dict[int, IndexConfig]  # per asset with sources
    sources: tuple[SourceConfig, ...]
    perps: dict[int, PerpConfig] = field(default_factory=dict)
    sessions: dict[int, SessionConfig] = field(default_factory=dict)
    predictions: dict[int, PredictionConfig] = field(default_factory=dict)
    markets: dict[int, MarketSpec] = field(default_factory=dict)
    asset_of_market: dict[int, int] = field(default_factory=dict)  # every market with a base asset
    seed: int = 0
    staleness_ns: int = 3_000 * NS_PER_MS  # [oracle] staleness_ms (external mids are judged by it too)
    max_future_ns: int = 1_000 * NS_PER_MS

    def feeds_of(self, asset_id: int) -> tuple[SourceConfig, ...]:
        """The asset's index feeds, in feed order."""
        return tuple(s for s in self.sources if s.asset_id == asset_id and not s.perp_market)

    def externals_of(self, market_id: int) -> tuple[SourceConfig, ...]:
        """The perp's external mids, in feed order."""
        return tuple(s for s in self.sources if s.perp_market == market_id)


_ORACLE_KEYS = {
    "tick_ms": 250,
    "staleness_ms": 3_000,
    "halt_after_ms": 15_000,
    "band_ppm": 20_000,
    "min_sources": 2,
    "max_move_ppm_per_s": 20_000,
    "max_future_ms": 1_000,
    "freeze_ms": 0,
    "seed": 0,
}
_RANGES = {
    "tick_ms": (1, 60_000),
    "staleness_ms": (1, 86_400_000),
    "halt_after_ms": (1, 86_400_000),
    "band_ppm": (0, 1_000_000),
    "min_sources": (1, 64),
    "max_move_ppm_per_s": (0, 1_000_000),
    "max_future_ms": (0, 3_600_000),
    "freeze_ms": (0, 86_400_000),
    "seed": (0, 2**63 - 1),
    "feed_staleness_ms": (1, 86_400_000),
}


def _int(raw: dict[str, Any], key: str, where: str, lo: int, hi: int, default: int | None = None) -> int:
    value = raw.get(key, default)
    if value is None:
        raise OracleConfigError(f"{where} {key}: missing (want an integer in [{lo}, {hi}])")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise OracleConfigError(f"{where} {key}: want an integer in [{lo}, {hi}], got {value!r}")
    return value


def _str(raw: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise OracleConfigError(f"{where} {key}: want a non-empty string, got {value!r}")
    return value


def _usdc_micro(raw: dict[str, Any], key: str, where: str, default: str | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise OracleConfigError(f"{where} {key}: want a decimal string of USDC, got {value!r}")
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        raise OracleConfigError(f"{where} {key}: not a decimal: {value!r}") from None
    micro = dec * MICRO_PER_UNIT
    if not dec.is_finite() or micro != micro.to_integral_value() or not 0 < micro < 2**62:
        raise OracleConfigError(f"{where} {key}: want a positive amount with <= 6 decimals, got {value!r}")
    return int(micro)


def _hhmm(value: Any, where: str, key: str) -> int:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise OracleConfigError(f'{where} {key}: want a UTC time "HH:MM", got {value!r}')
    h, m = int(value[:2]), int(value[3:])
    return (h * 60 + m) * 60_000


def _check_keys(raw: Any, known: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise OracleConfigError(f"{where}: must be a table")
    for key in raw:
        if key not in known:
            raise OracleConfigError(f"{where} {key}: unknown key; known: {sorted(known)}")
    return raw


def _market(
    symbol: Any, markets: dict[int, MarketSpec], where: str, kinds: tuple[MarketKind, ...]
) -> MarketSpec:
    by_symbol = {m.symbol: m for m in markets.values()}
    if not isinstance(symbol, str) or symbol not in by_symbol:
        raise OracleConfigError(f"{where} market: unknown market {symbol!r}; known: {sorted(by_symbol)}")
    spec = by_symbol[symbol]
    if spec.kind not in kinds:
        want = " or ".join(k.name.lower() for k in kinds)
        raise OracleConfigError(f"{where} market: {symbol} is a {spec.kind.name.lower()} market, want {want}")
    return spec


_SOURCE_KEYS = {f.name for f in fields(SourceConfig)} - {
    "asset_id",
    "feed",
    "price_micro",
    "perp_market",
    "staleness_ns",
} | {
    "asset",
    "perp",
    "price",
    "staleness_ms",
}
_PERP_KEYS = {
    "market",
    "half_life_ms",
    "impact_notional",
    "premium_sample_ms",
    "interest_ppb",
    "clamp_ppb",
    "cap_ppb",
    "maintenance_ppm",
    "cap_maintenance_multiplier_ppm",
    "rate_period_s",
    "payment_interval_s",
    "weighting",
    "delist_at_s",
    "delist_twap_s",
}
_SESSION_KEYS = {"market", "open", "close", "days", "halts", "cycle_s", "closed_s"}
_PREDICTION_KEYS = {"market", "authority", "close_at_s", "dispute_window_s"}


def oracle_config_from(doc: dict[str, Any], where: str = "<config>") -> OracleConfig | None:
    """The oracle's config from a parsed config file (None without an ``[oracle]`` section)."""
    raw = doc.get("oracle")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise OracleConfigError(f"{where}: [oracle] must be a table")
    tables = {"source", "perp", "session", "prediction"}
    _check_keys(raw, set(_ORACLE_KEYS) | tables, f"{where}: [oracle]")
    top = {
        key: _int(raw, key, f"{where}: [oracle]", *_RANGES[key], default)
        for key, default in _ORACLE_KEYS.items()
    }
    markets = markets_from_doc(doc, where)
    assets = assets_from_doc(doc, where)
    asset_ids = {a.symbol: a.asset_id for a in assets.values()}
    asset_of_market = {m: asset_ids[s.base_asset] for m, s in markets.items() if s.base_asset in asset_ids}

    sources: list[SourceConfig] = []
    staleness_by: dict[int, dict[str, int]] = {}
    for i, src in enumerate(_list(raw.get("source", []), f"{where}: [[oracle.source]]")):
        w = f"{where}: [[oracle.source]] #{i + 1}"
        _check_keys(src, _SOURCE_KEYS, w)
        perp_market = 0
        if "perp" in src:  # an external venue's mid of one of our perps: the mark's component (c)
            perps_by_symbol = {m.symbol: m for m in markets.values() if m.kind == MarketKind.PERP}
            if src.get("perp") not in perps_by_symbol:
                raise OracleConfigError(
                    f"{w} perp: {src.get('perp')!r} is not a perp market; known: {sorted(perps_by_symbol)}"
                )
            perp_spec = perps_by_symbol[src["perp"]]
            perp_market = perp_spec.market_id
            src = {"asset": perp_spec.base_asset, **src}
            if src["asset"] != perp_spec.base_asset:
                raise OracleConfigError(f"{w} asset: {perp_spec.symbol} is on {perp_spec.base_asset!r}")
        symbol = src.get("asset")
        if symbol not in asset_ids:
            raise OracleConfigError(f"{w} asset: unknown asset {symbol!r}; known: {sorted(asset_ids)}")
        asset_id = asset_ids[symbol]
        if assets[asset_id].kind in (AssetKind.STABLE, AssetKind.PREDICTION):
            raise OracleConfigError(f"{w} asset: {symbol} is priced without an oracle (stable or prediction)")
        kind = _str(src, "kind", w, "simulated")
        if kind not in SOURCE_KINDS:
            raise OracleConfigError(f"{w} kind: {kind!r} is not one of {list(SOURCE_KINDS)}")
        mode = _str(src, "mode", w, "honest")
        if mode not in SIM_MODES:
            raise OracleConfigError(f"{w} mode: {mode!r} is not one of {list(SIM_MODES)}")
        same = [s for s in sources if s.asset_id == asset_id and s.perp_market == perp_market]
        feed = len(same)
        name = _str(src, "name", w, f"{symbol.lower()}-{'x' if perp_market else ''}{feed}")
        if any(s.name == name for s in same):
            raise OracleConfigError(f"{w} name: {name!r} is already a source of {symbol}")
        weight = _int(src, "weight", w, 1, 1_000_000, 1)
        if "weight" in src and not perp_market:
            raise OracleConfigError(f"{w} weight: only an external mid (a source with `perp`) has a weight")
        ints = {
            k: _int(src, k, w, 0, 10**12, getattr(SourceConfig, k))
            for k in (
                "vol_ppm_per_s",
                "jump_ppm",
                "jumps_per_hour",
                "shock_every_s",
                "shock_ppm",
                "shock_over_s",
                "noise_ppm",
                "lag_ms",
                "drift_ppm_per_s",
                "spike_ppm",
                "start_after_ms",
                "seed",
            )
        }
        ints["every_ms"] = _int(src, "every_ms", w, 1, 3_600_000, SourceConfig.every_ms)
        if kind == "simulated":
            price = _usdc_micro(src, "price", w)
            rpc_url = address = ""
        else:
            price = 0
            rpc_url = _str(src, "rpc_url", w)
            address = _str(src, "address", w)
            if not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
                raise OracleConfigError(
                    f"{w} address: want a 0x-prefixed 20-byte hex address, got {address!r}"
                )
        own_staleness = 0
        if "staleness_ms" in src:
            own_staleness = _int(src, "staleness_ms", w, *_RANGES["feed_staleness_ms"]) * NS_PER_MS
            if not perp_market:
                staleness_by.setdefault(asset_id, {})[name] = own_staleness
        sources.append(
            SourceConfig(
                asset_id,
                feed,
                name,
                kind,
                mode,
                price,
                rpc_url=rpc_url,
                address=address,
                perp_market=perp_market,
                weight=weight,
                staleness_ns=own_staleness,
                **ints,
            )
        )
    index: dict[int, IndexConfig] = {}
    for asset_id in sorted({s.asset_id for s in sources if not s.perp_market}):
        n = sum(1 for s in sources if s.asset_id == asset_id and not s.perp_market)
        min_sources = min(top["min_sources"], n)
        try:
            index[asset_id] = IndexConfig(
                staleness_ns=top["staleness_ms"] * NS_PER_MS,
                band_ppm=top["band_ppm"],
                min_sources=min_sources,
                max_move_ppm_per_s=top["max_move_ppm_per_s"],
                max_future_ns=top["max_future_ms"] * NS_PER_MS,
                freeze_ns=top["freeze_ms"] * NS_PER_MS,
                staleness_ns_by_source=staleness_by.get(asset_id, {}),
            )
        except ValueError as exc:
            raise OracleConfigError(f"{where}: [oracle]: {exc}") from None

    perps: dict[int, PerpConfig] = {}
    for i, p in enumerate(_list(raw.get("perp", []), f"{where}: [[oracle.perp]]")):
        w = f"{where}: [[oracle.perp]] #{i + 1}"
        _check_keys(p, _PERP_KEYS, w)
        spec = _market(p.get("market"), markets, w, (MarketKind.PERP,))
        if spec.market_id in perps:
            raise OracleConfigError(f"{w} market: {spec.symbol} is configured twice")
        asset_id = asset_of_market.get(spec.market_id, -1)
        if asset_id not in index:
            raise OracleConfigError(
                f"{w} market: {spec.symbol}'s base asset {spec.base_asset!r} has no [[oracle.source]]"
            )
        weighting = _str(p, "weighting", w, "equal")
        if weighting not in ("equal", "linear"):
            raise OracleConfigError(f"{w} weighting: {weighting!r} is not one of ['equal', 'linear']")
        if "cap_ppb" in p:
            cap = _int(p, "cap_ppb", w, 0, 10**9)
        else:
            maintenance = _int(p, "maintenance_ppm", w, 1, 1_000_000, 30_000)
            mult = _int(p, "cap_maintenance_multiplier_ppm", w, 1, 10_000_000, 750_000)
            cap = calc_cap_ppb_from_margin(maintenance, mult)
        period_s = _int(p, "rate_period_s", w, 1, 7 * 86_400, 8 * 3600)
        interval_s = _int(p, "payment_interval_s", w, 1, 7 * 86_400, 3600)
        sample_ms = _int(p, "premium_sample_ms", w, 1, 3_600_000, 5_000)
        if sample_ms * NS_PER_MS > interval_s * NS_PER_S:
            raise OracleConfigError(f"{w} premium_sample_ms: longer than the payment interval")
        delist_at = _int(p, "delist_at_s", w, 0, 2**33, 0)
        twap_s = _int(p, "delist_twap_s", w, 1, 30 * 86_400, 3600)
        perps[spec.market_id] = PerpConfig(
            market_id=spec.market_id,
            asset_id=asset_id,
            tick_size_micro=spec.tick_size_micro,
            lot_size_atoms=spec.lot_size_atoms,
            half_life_ns=_int(p, "half_life_ms", w, 1, 86_400_000, 103_972) * NS_PER_MS,
            impact_notional_micro=_usdc_micro(p, "impact_notional", w, "1000"),
            premium_sample_ns=sample_ms * NS_PER_MS,
            funding=FundingConfig(
                cap_ppb=cap,
                interest_ppb=_int(p, "interest_ppb", w, -(10**9), 10**9, DEFAULT_INTEREST_PPB),
                clamp_ppb=_int(p, "clamp_ppb", w, 0, 10**9, DEFAULT_CLAMP_PPB),
                rate_period_ns=period_s * NS_PER_S,
                payment_interval_ns=interval_s * NS_PER_S,
                weighting=PremiumWeighting.LINEAR if weighting == "linear" else PremiumWeighting.EQUAL,
            ),
            delist_at_ns=delist_at * NS_PER_S,
            delist_twap_ns=twap_s * NS_PER_S,
        )

    for src in sources:
        if src.perp_market and src.perp_market not in perps:
            symbol = markets[src.perp_market].symbol
            raise OracleConfigError(
                f"{where}: [[oracle.source]] {src.name!r} perp: {symbol} has no [[oracle.perp]]"
            )

    sessions: dict[int, SessionConfig] = {}
    for i, s in enumerate(_list(raw.get("session", []), f"{where}: [[oracle.session]]")):
        w = f"{where}: [[oracle.session]] #{i + 1}"
        _check_keys(s, _SESSION_KEYS, w)
        spec = _market(s.get("market"), markets, w, (MarketKind.EQUITY, MarketKind.SPOT, MarketKind.PERP))
        if spec.market_id in sessions:
            raise OracleConfigError(f"{w} market: {spec.symbol} has two sessions")
        open_ms, close_ms = _hhmm(s.get("open"), w, "open"), _hhmm(s.get("close"), w, "close")
        if open_ms == close_ms:
            raise OracleConfigError(f"{w} close: equal to open (an empty session)")
        days_raw = s.get("days", list(DAYS[:5]))
        if not isinstance(days_raw, list) or not days_raw or any(d not in DAYS for d in days_raw):
            raise OracleConfigError(f"{w} days: want a non-empty list of {list(DAYS)}, got {days_raw!r}")
        halts = []
        for k, h in enumerate(_list(s.get("halts", []), f"{w} halts")):
            if not isinstance(h, list) or len(h) != 2:
                raise OracleConfigError(f'{w} halts[{k}]: want ["HH:MM", "HH:MM"], got {h!r}')
            halts.append((_hhmm(h[0], w, f"halts[{k}]"), _hhmm(h[1], w, f"halts[{k}]")))
        cycle_s = _int(s, "cycle_s", w, 0, 7 * 86_400, 0)
        closed_s = _int(s, "closed_s", w, 0, 7 * 86_400, 0)
        if cycle_s and not 0 < closed_s < cycle_s:
            raise OracleConfigError(f"{w} closed_s: want 0 < closed_s < cycle_s ({cycle_s}), got {closed_s}")
        sessions[spec.market_id] = SessionConfig(
            spec.market_id,
            asset_of_market.get(spec.market_id, -1),
            open_ms,
            close_ms,
            tuple(sorted(DAYS.index(d) for d in set(days_raw))),
            tuple(halts),
            cycle_s * 1000,
            closed_s * 1000 if cycle_s else 0,
        )

    predictions: dict[int, PredictionConfig] = {}
    for i, q in enumerate(_list(raw.get("prediction", []), f"{where}: [[oracle.prediction]]")):
        w = f"{where}: [[oracle.prediction]] #{i + 1}"
        _check_keys(q, _PREDICTION_KEYS, w)
        spec = _market(q.get("market"), markets, w, (MarketKind.PREDICTION,))
        if spec.market_id in predictions:
            raise OracleConfigError(f"{w} market: {spec.symbol} is configured twice")
        predictions[spec.market_id] = PredictionConfig(
            spec.market_id,
            _int(q, "authority", w, 1, 2**32 - 1),
            _int(q, "close_at_s", w, 0, 2**33) * NS_PER_S,
            _int(q, "dispute_window_s", w, 0, 365 * 86_400, 3600) * NS_PER_S,
        )
    return OracleConfig(
        tick_ns=top["tick_ms"] * NS_PER_MS,
        halt_after_ns=top["halt_after_ms"] * NS_PER_MS,
        index=index,
        sources=tuple(sources),
        perps=perps,
        sessions=sessions,
        predictions=predictions,
        markets=markets,
        asset_of_market=asset_of_market,
        seed=top["seed"],
        staleness_ns=top["staleness_ms"] * NS_PER_MS,
        max_future_ns=top["max_future_ms"] * NS_PER_MS,
    )


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise OracleConfigError(f"{where}: want an array of tables")
    return value


def load_oracle_config(path: str) -> OracleConfig:
    """Read a config file's ``[oracle]`` (OracleConfigError when it has none)."""
    import tomllib

    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    config = oracle_config_from(doc, path)
    if config is None:
        raise OracleConfigError(f"{path}: no [oracle] section")
    return config
