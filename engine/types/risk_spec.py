"""Risk parameters: frozen, validated dataclasses for assets, risk groups, perp markets and margin.

Every parameter the margin maths reads lives here; ``engine.math`` takes these objects and plain
int/array state, nothing else. The lead loads them from TOML; each class validates itself in
``__post_init__`` and :class:`RiskSpecError` names the object and the field that is wrong.

Units (see :mod:`engine.types.fixed`):

* asset quantities: USDC (asset 0) in micro-units (``MICRO_PER_UNIT`` per USDC), every other asset
  in atoms (``ATOMS_PER_UNIT`` per whole unit); :attr:`AssetRisk.qty_scale` says which;
* prices: micro-USDC per ONE WHOLE unit (USDC's own price is fixed at ``MICRO_PER_UNIT``);
* notionals and money: micro-USDC;
* rates, weights, fractions and multipliers: ppm (``PPM`` = 1.0); a multiplier of 1.5 is 1_500_000.

Invariants checked at construction:

* tiers: edges strictly increasing and > 0, one more rate than edges (the last tier is open),
  every rate in range; collateral weights non-increasing (so the weighted quantity is concave),
  shock and margin rates non-decreasing (so a tiered requirement is convex and continuous);
* asset ids are 0..A-1 in order, asset 0 is the only cash asset (USDC, weight 1, no shock);
* every non-cash asset names an existing risk group; a prediction asset is alone in its group;
* perp market ids are 0..P-1 in order, each on an existing non-cash, non-prediction underlying;
* symbols are unique across assets and perp markets; fee rebates never exceed the taker fee.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from engine.types.fixed import ATOMS_PER_UNIT, INT64_MAX, MICRO_PER_UNIT, PPM


class RiskSpecError(ValueError):
    """A risk parameter is invalid; the message names the object and the field."""


class AssetKind(IntEnum):
    """What kind of risk an asset carries (decides which scenarios it gets)."""

    CASH = 0  # the settlement stablecoin (asset 0 only): no price risk, weight 1
    CRYPTO = 1  # shocked by the group/idiosyncratic/vol-up scenarios
    EQUITY = 2  # same scenarios as crypto; the process widens shocks while the session is closed
    PREDICTION = 3  # one YES share of a binary market, price in [0, 1 USDC]: resolution to 0 and 1


def _fail(where: str, name: str, why: str) -> RiskSpecError:
    return RiskSpecError(f"{where}: field {name!r}: {why}")


def _check_int(where: str, name: str, value: object, lo: int, hi: int = INT64_MAX) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(where, name, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise _fail(where, name, f"must be in [{lo}, {hi}], got {value}")


def _check_tuple(where: str, name: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise _fail(where, name, f"must be a tuple of integers, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool):
            raise _fail(where, f"{name}[{i}]", f"must be an integer, got {item!r}")
    return value


def _check_edges(where: str, name: str, edges: tuple[int, ...]) -> None:
    prev = 0
    for i, edge in enumerate(edges):
        if not prev < edge <= INT64_MAX:
            raise _fail(where, f"{name}[{i}]", f"edges must be > 0 and strictly increasing, got {edges}")
        prev = edge


def _check_symbol(where: str, symbol: object) -> None:
    if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
        raise _fail(where, "symbol", f"must be a non-empty string of <= 32 chars, got {symbol!r}")


@dataclass(frozen=True, slots=True)
class WeightTiers:
    """Marginal collateral weights by quantity tier (haircut = 1 - weight).

    Tier ``i`` covers quantities ``(upper_atoms[i-1], upper_atoms[i]]`` (the first starts at 0, the
    last is open) and each unit held inside it counts at ``weight_ppm[i]``. Weights are
    non-increasing, so the weighted quantity ``W(q)`` is continuous, concave and 1-Lipschitz:
    holding more never lowers the value and a unit more never adds more than a unit.
    ``upper_atoms`` is in the asset's own quantity unit (micro for USDC, atoms otherwise).
    """

    upper_atoms: tuple[int, ...] = ()
    weight_ppm: tuple[int, ...] = (PPM,)

    def __post_init__(self) -> None:
        where = "WeightTiers"
        edges = _check_tuple(where, "upper_atoms", self.upper_atoms)
        weights = _check_tuple(where, "weight_ppm", self.weight_ppm)
        _check_edges(where, "upper_atoms", edges)
        if len(weights) != len(edges) + 1:
            raise _fail(where, "weight_ppm", f"needs {len(edges) + 1} weights for {len(edges)} edges")
        for i, w in enumerate(weights):
            _check_int(where, f"weight_ppm[{i}]", w, 0, PPM)
            if i and w > weights[i - 1]:
                raise _fail(where, f"weight_ppm[{i}]", f"weights must be non-increasing, got {weights}")


@dataclass(frozen=True, slots=True)
class RateTiers:
    """Marginal rates by notional tier: the loss (or requirement) on notional ``N`` is continuous.

    Tier ``i`` covers notionals ``(upper_micro[i-1], upper_micro[i]]`` (micro-USDC); the part of
    the notional inside tier ``i`` is charged ``rate_ppm[i]``. Equivalently (the form Binance and
    Bybit publish) ``requirement(N) = N * rate_i - deduction_i`` for ``N`` in tier ``i`` with the
    cumulative deduction ``deduction_i = deduction_{i-1} + upper_{i-1} * (rate_i - rate_{i-1})``.
    Rates are non-decreasing, so the requirement is convex: it is also ``max_i(N*rate_i - ded_i)``.
    """

    upper_micro: tuple[int, ...] = ()
    rate_ppm: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        where = "RateTiers"
        edges = _check_tuple(where, "upper_micro", self.upper_micro)
        rates = _check_tuple(where, "rate_ppm", self.rate_ppm)
        _check_edges(where, "upper_micro", edges)
        if len(rates) != len(edges) + 1:
            raise _fail(where, "rate_ppm", f"needs {len(edges) + 1} rates for {len(edges)} edges")
        for i, r in enumerate(rates):
            _check_int(where, f"rate_ppm[{i}]", r, 0, PPM)
            if i and r < rates[i - 1]:
                raise _fail(where, f"rate_ppm[{i}]", f"rates must be non-decreasing, got {rates}")

    @property
    def deduction_micro_ppm(self) -> tuple[int, ...]:
        """Cumulative deduction of each tier in micro*ppm (exact; divide by PPM for micro)."""
        out = [0]
        for i in range(1, len(self.rate_ppm)):
            out.append(out[-1] + self.upper_micro[i - 1] * (self.rate_ppm[i] - self.rate_ppm[i - 1]))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class PositionBrackets:
    """Per-position mode: notional brackets of a perp market (Binance "leverage & margin brackets").

    Bracket ``i`` covers position notionals ``(upper_micro[i-1], upper_micro[i]]``; its initial rate
    is ``imr_ppm[i]`` (max leverage = PPM / imr) and its maintenance rate ``mmr_ppm[i]``; both are
    charged tier by tier, i.e. ``notional * rate_i - cumulative deduction_i`` (the "maintenance
    amount"). ``0 < mmr <= imr <= 100%`` in every bracket, both non-decreasing.
    """

    upper_micro: tuple[int, ...]
    imr_ppm: tuple[int, ...]
    mmr_ppm: tuple[int, ...]

    def __post_init__(self) -> None:
        where = "PositionBrackets"
        try:
            RateTiers(self.upper_micro, self.imr_ppm)
            RateTiers(self.upper_micro, self.mmr_ppm)
        except RiskSpecError as exc:
            raise RiskSpecError(f"{where}: {exc}") from None
        for i, (im, mm) in enumerate(zip(self.imr_ppm, self.mmr_ppm, strict=True)):
            if not 0 < mm <= im:
                raise _fail(where, f"mmr_ppm[{i}]", f"need 0 < mmr <= imr, got mmr {mm}, imr {im}")

    @property
    def initial(self) -> RateTiers:
        return RateTiers(self.upper_micro, self.imr_ppm)

    @property
    def maintenance(self) -> RateTiers:
        return RateTiers(self.upper_micro, self.mmr_ppm)


@dataclass(frozen=True, slots=True)
class FeeRates:
    """Maker and taker fee in ppm of notional. A negative maker fee is a rebate.

    The rebate may not exceed the taker fee (``-taker <= maker``), so the fee account never pays
    out more on a fill than it takes in; ``maker <= taker``.
    """

    maker_ppm: int = 0
    taker_ppm: int = 0

    def __post_init__(self) -> None:
        where = "FeeRates"
        _check_int(where, "taker_ppm", self.taker_ppm, 0, PPM // 10)
        _check_int(where, "maker_ppm", self.maker_ppm, -self.taker_ppm, self.taker_ppm)


@dataclass(frozen=True, slots=True)
class DynamicShock:
    """How an asset's shocks widen (the process computes the multiplier; see engine.math.dynamic_shock).

    ``multiplier = max(1, ewma_vol / base_vol)`` capped at ``max_multiplier``, times
    ``closed_multiplier`` while the asset's market session is closed and ``stale_multiplier`` while
    its oracle is stale. ``base_vol_ppm`` is the per-sample volatility the base shock was
    calibrated for (the process samples mark returns at a fixed interval); ``ewma_lambda_ppm`` the
    EWMA decay per sample.
    """

    base_vol_ppm: int = 1_000
    ewma_lambda_ppm: int = 988_514  # half-life 60 samples: 0.5 ** (1 / 60)
    max_multiplier_ppm: int = 3 * PPM
    closed_multiplier_ppm: int = PPM
    stale_multiplier_ppm: int = 3 * PPM // 2

    def __post_init__(self) -> None:
        where = "DynamicShock"
        _check_int(where, "base_vol_ppm", self.base_vol_ppm, 1, PPM)
        _check_int(where, "ewma_lambda_ppm", self.ewma_lambda_ppm, 1, PPM - 1)
        for name in ("max_multiplier_ppm", "closed_multiplier_ppm", "stale_multiplier_ppm"):
            _check_int(where, name, getattr(self, name), PPM, 100 * PPM)


@dataclass(frozen=True, slots=True)
class AssetRisk:
    """One asset's collateral weights, shocks, floor and the fees of its spot market (vs USDC)."""

    asset_id: int
    symbol: str
    kind: AssetKind
    group: str = ""  # risk group name; "" for cash only
    weights: WeightTiers = field(default_factory=WeightTiers)
    shock: RateTiers = field(default_factory=RateTiers)  # loss rate at a full shock, by |exposure|
    floor_ppm: int = 0  # IM floor on gross notional (perp notional + liability value)
    spot_fees: FeeRates = field(default_factory=FeeRates)
    dynamic: DynamicShock = field(default_factory=DynamicShock)
    spot_lot_atoms: int = 1  # the spot market's lot (MarketSpec.lot_size_atoms): bounds fills per order

    def __post_init__(self) -> None:
        where = f"asset {self.asset_id!r} ({self.symbol!r})"
        _check_int(where, "asset_id", self.asset_id, 0, 1 << 16)
        _check_symbol(where, self.symbol)
        if not isinstance(self.kind, AssetKind):
            raise _fail(where, "kind", f"must be an AssetKind, got {self.kind!r}")
        if not isinstance(self.group, str) or len(self.group) > 32:
            raise _fail(where, "group", f"must be a string of <= 32 chars, got {self.group!r}")
        for name, cls in (
            ("weights", WeightTiers),
            ("shock", RateTiers),
            ("spot_fees", FeeRates),
            ("dynamic", DynamicShock),
        ):
            if not isinstance(getattr(self, name), cls):
                raise _fail(where, name, f"must be a {cls.__name__}")
        _check_int(where, "floor_ppm", self.floor_ppm, 0, PPM)
        _check_int(where, "spot_lot_atoms", self.spot_lot_atoms, 1)
        if self.kind == AssetKind.CASH:
            if self.group:
                raise _fail(where, "group", "the cash asset belongs to no risk group")
            if self.weights != WeightTiers():
                raise _fail(where, "weights", "the cash asset counts at weight 1 (no tiers)")
            if self.floor_ppm:
                raise _fail(where, "floor_ppm", "a USDC liability has no price risk: its floor is 0")
        else:
            if not self.group:
                raise _fail(where, "group", "every non-cash asset needs a risk group")
        if self.kind in (AssetKind.CRYPTO, AssetKind.EQUITY) and self.shock.rate_ppm[0] == 0:
            raise _fail(where, "shock", "a risky asset needs a shock rate > 0 in its first tier")

    @property
    def qty_scale(self) -> int:
        """Quantity units per whole unit: micro for USDC, atoms for everything else."""
        return MICRO_PER_UNIT if self.kind == AssetKind.CASH else ATOMS_PER_UNIT


@dataclass(frozen=True, slots=True)
class RiskGroup:
    """Assets whose moves are correlated: they move together in the group scenarios.

    ``idio_ppm``: the fraction of an asset's own shock it moves alone (the idiosyncratic
    scenarios), so that a long/short pair inside the group is not treated as riskless.
    """

    name: str
    idio_ppm: int = PPM // 2

    def __post_init__(self) -> None:
        where = f"group {self.name!r}"
        if not isinstance(self.name, str) or not self.name or len(self.name) > 32:
            raise _fail(where, "name", f"must be a non-empty string of <= 32 chars, got {self.name!r}")
        _check_int(where, "idio_ppm", self.idio_ppm, 0, PPM)


@dataclass(frozen=True, slots=True)
class PerpRisk:
    """One perpetual market: its underlying asset (risk factor), brackets and fees."""

    market_id: int
    symbol: str
    underlying: int  # asset id
    brackets: PositionBrackets
    fees: FeeRates = field(default_factory=FeeRates)
    lot_atoms: int = 1  # the market's lot (MarketSpec.lot_size_atoms): bounds fills per order

    def __post_init__(self) -> None:
        where = f"perp {self.market_id!r} ({self.symbol!r})"
        _check_int(where, "market_id", self.market_id, 0, 1 << 16)
        _check_symbol(where, self.symbol)
        _check_int(where, "underlying", self.underlying, 1, 1 << 16)
        if not isinstance(self.brackets, PositionBrackets):
            raise _fail(where, "brackets", "must be a PositionBrackets")
        if not isinstance(self.fees, FeeRates):
            raise _fail(where, "fees", "must be a FeeRates")
        _check_int(where, "lot_atoms", self.lot_atoms, 1)


@dataclass(frozen=True, slots=True)
class PortfolioParams:
    """Account-level parameters of the portfolio margin.

    * ``mm_fraction_ppm``: maintenance margin = this fraction of the initial margin;
    * ``cross_group_offset_ppm``: IM_raw = sum(group losses) - offset * (sum - largest);
    * ``vol_up_multiple_ppm`` / ``vol_up_weight_ppm``: the extreme "volatility up" scenario moves
      every asset of a group by ``multiple`` x its shock (a fall capped at -100%) and counts
      ``weight`` of the P&L. With ``multiple * weight <= 1`` it never exceeds the plain group move
      for linear exposures (the defaults); an operator raises it to load tails.
    """

    mm_fraction_ppm: int = 600_000
    cross_group_offset_ppm: int = 200_000
    vol_up_multiple_ppm: int = 3 * PPM
    vol_up_weight_ppm: int = 300_000

    def __post_init__(self) -> None:
        where = "PortfolioParams"
        _check_int(where, "mm_fraction_ppm", self.mm_fraction_ppm, 1, PPM)
        _check_int(where, "cross_group_offset_ppm", self.cross_group_offset_ppm, 0, PPM)
        _check_int(where, "vol_up_multiple_ppm", self.vol_up_multiple_ppm, PPM, 20 * PPM)
        _check_int(where, "vol_up_weight_ppm", self.vol_up_weight_ppm, 0, PPM)


@dataclass(frozen=True, slots=True)
class RiskSpec:
    """Everything the margin maths needs, validated as a whole (see the module docstring)."""

    assets: tuple[AssetRisk, ...]
    groups: tuple[RiskGroup, ...]
    perps: tuple[PerpRisk, ...] = ()
    params: PortfolioParams = field(default_factory=PortfolioParams)

    def __post_init__(self) -> None:
        where = "RiskSpec"
        for name, cls in (("assets", AssetRisk), ("groups", RiskGroup), ("perps", PerpRisk)):
            items = getattr(self, name)
            if not isinstance(items, tuple) or not all(isinstance(x, cls) for x in items):
                raise _fail(where, name, f"must be a tuple of {cls.__name__}")
        if not isinstance(self.params, PortfolioParams):
            raise _fail(where, "params", "must be a PortfolioParams")
        if not self.assets or self.assets[0].kind != AssetKind.CASH:
            raise _fail(where, "assets[0]", "asset 0 must be the cash asset (USDC)")
        symbols: dict[str, str] = {}
        for i, asset in enumerate(self.assets):
            if asset.asset_id != i:
                raise _fail(
                    where, f"assets[{i}].asset_id", f"ids must be 0..A-1 in order, got {asset.asset_id}"
                )
            if i and asset.kind == AssetKind.CASH:
                raise _fail(where, f"assets[{i}].kind", "only asset 0 may be cash")
            if asset.symbol in symbols:
                raise _fail(where, f"assets[{i}].symbol", f"{asset.symbol!r} is used twice")
            symbols[asset.symbol] = f"asset {i}"
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise _fail(where, "groups", f"group names must be unique, got {names}")
        members: dict[str, list[AssetRisk]] = {g.name: [] for g in self.groups}
        for asset in self.assets[1:]:
            if asset.group not in members:
                raise _fail(
                    where, f"assets[{asset.asset_id}].group", f"{asset.group!r} is not a group ({names})"
                )
            members[asset.group].append(asset)
        for name, group_assets in members.items():
            kinds = {a.kind for a in group_assets}
            if AssetKind.PREDICTION in kinds and len(group_assets) > 1:
                raise _fail(where, f"group {name!r}", "a prediction market is alone in its group")
        for i, perp in enumerate(self.perps):
            if perp.market_id != i:
                raise _fail(
                    where, f"perps[{i}].market_id", f"ids must be 0..P-1 in order, got {perp.market_id}"
                )
            if perp.underlying >= len(self.assets):
                raise _fail(where, f"perps[{i}].underlying", f"no asset {perp.underlying}")
            if self.assets[perp.underlying].kind not in (AssetKind.CRYPTO, AssetKind.EQUITY):
                raise _fail(where, f"perps[{i}].underlying", "must be a crypto or equity asset")
            if perp.symbol in symbols:
                raise _fail(where, f"perps[{i}].symbol", f"{perp.symbol!r} is used twice")
            symbols[perp.symbol] = f"perp {i}"

    def group_of(self, asset_id: int) -> RiskGroup:
        name = self.assets[asset_id].group
        return next(g for g in self.groups if g.name == name)

    def asset_by_symbol(self, symbol: str) -> AssetRisk | None:
        return next((a for a in self.assets if a.symbol == symbol), None)

    def perp_by_symbol(self, symbol: str) -> PerpRisk | None:
        return next((p for p in self.perps if p.symbol == symbol), None)


# ---- defaults: USDC, BTC, ETH, AAPL, one prediction market; BTC-PERP and ETH-PERP -------------------
# Shock tiers equal the perps' IM brackets and MMR = 60% of IMR (dYdX's large-cap 5% / 3%), so the
# portfolio and per-position modes agree on a single perp position (up to the floor).

_M = MICRO_PER_UNIT
_A = ATOMS_PER_UNIT
_CRYPTO_UPPER = (5_000_000 * _M, 20_000_000 * _M, 50_000_000 * _M, 100_000_000 * _M)
_CRYPTO_RATES = (50_000, 75_000, 100_000, 150_000, 250_000)
_CRYPTO_MMR = (30_000, 45_000, 60_000, 90_000, 150_000)
_CRYPTO_BRACKETS = PositionBrackets(_CRYPTO_UPPER, _CRYPTO_RATES, _CRYPTO_MMR)
_PERP_FEES = FeeRates(maker_ppm=-50, taker_ppm=500)
_SPOT_FEES = FeeRates(maker_ppm=200, taker_ppm=600)


def default_risk_spec() -> RiskSpec:
    """Sensible defaults (documented in docs/risk.md): a starting point, not a calibration."""
    return RiskSpec(
        assets=(
            AssetRisk(0, "USDC", AssetKind.CASH),
            AssetRisk(
                1,
                "BTC",
                AssetKind.CRYPTO,
                group="crypto_majors",
                weights=WeightTiers((10 * _A, 100 * _A, 500 * _A), (950_000, 900_000, 800_000, 500_000)),
                shock=RateTiers(_CRYPTO_UPPER, _CRYPTO_RATES),
                floor_ppm=10_000,
                spot_fees=_SPOT_FEES,
                dynamic=DynamicShock(base_vol_ppm=830, closed_multiplier_ppm=PPM),
                spot_lot_atoms=10_000,
            ),
            AssetRisk(
                2,
                "ETH",
                AssetKind.CRYPTO,
                group="crypto_majors",
                weights=WeightTiers((100 * _A, 1_000 * _A, 5_000 * _A), (950_000, 900_000, 800_000, 500_000)),
                shock=RateTiers(_CRYPTO_UPPER, _CRYPTO_RATES),
                floor_ppm=10_000,
                spot_fees=_SPOT_FEES,
                dynamic=DynamicShock(base_vol_ppm=1_050, closed_multiplier_ppm=PPM),
                spot_lot_atoms=100_000,
            ),
            AssetRisk(
                3,
                "AAPL",
                AssetKind.EQUITY,
                group="us_equities",
                weights=WeightTiers((1_000 * _A, 10_000 * _A), (850_000, 750_000, 500_000)),
                shock=RateTiers((1_000_000 * _M, 5_000_000 * _M), (100_000, 150_000, 250_000)),
                floor_ppm=20_000,
                spot_fees=_SPOT_FEES,
                dynamic=DynamicShock(base_vol_ppm=350, closed_multiplier_ppm=3 * PPM // 2),
                spot_lot_atoms=_A,
            ),
            AssetRisk(
                4,
                "PM-1",
                AssetKind.PREDICTION,
                group="pm_1",
                spot_fees=FeeRates(maker_ppm=0, taker_ppm=1_000),
                spot_lot_atoms=_A,
            ),
        ),
        groups=(
            RiskGroup("crypto_majors", idio_ppm=500_000),
            RiskGroup("us_equities", idio_ppm=600_000),
            RiskGroup("pm_1", idio_ppm=PPM),
        ),
        perps=(
            PerpRisk(0, "BTC-PERP", 1, _CRYPTO_BRACKETS, _PERP_FEES, lot_atoms=100_000),  # 0.001 BTC
            PerpRisk(1, "ETH-PERP", 2, _CRYPTO_BRACKETS, _PERP_FEES, lot_atoms=1_000_000),  # 0.01 ETH
        ),
        params=PortfolioParams(),
    )
