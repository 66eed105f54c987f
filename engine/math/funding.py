"""Funding: impact prices, premium samples, the rate, and payments that sum to exactly zero.

Units: prices and money in micro-USDC (``_micro``), sizes in atoms (``_atoms``, 1e8 per unit),
rates in parts per billion (``_ppb``, see ``engine.types.fixed`` for why ppb), margin fractions in
ppm, times in ns. Every step is exact integer arithmetic with the rounding stated.

The rate (Binance USDⓈ-M, Bybit, BitMEX and Hyperliquid all publish this form):

* **impact bid / ask** = the average price of selling / buying ``impact_notional_micro`` into the
  book (:func:`calc_impact_bid_micro`, :func:`calc_impact_ask_micro`); the notional is usually a
  fixed margin over the initial margin fraction (:func:`calc_impact_notional_micro`: Binance
  200 USDT / IMR, dYdX 500 USDC / IMF);
* **premium sample** = ``(max(0, impact_bid - index) - max(0, index - impact_ask)) / index``
  (Binance's premium index; :func:`calc_premium_ppb`): positive only when even a sizeable sell
  clears above the index, negative only when a sizeable buy clears below it;
* **mean premium** ``P`` over the interval's samples: equal weights (Hyperliquid, dYdX) or linearly
  rising weights ``1, 2, ..., n`` (Binance, Bybit) (:func:`calc_mean_premium_ppb`);
* **rate per period** (8 h) ``F = P + clamp(I - P, -clamp, +clamp)`` with interest ``I``
  (0.01% / 8 h by default) and clamp 0.05%; so ``F = I`` whenever ``|I - P| <= 0.05%``;
* **cap**: ``|F| <= cap_ppb`` per market, absolute or tied to margin
  (:func:`calc_cap_ppb_from_margin`: ``multiplier x maintenance fraction``);
* **rate per payment interval** = ``F * interval / period`` (hourly: ``F / 8``).

Rounding of rates: toward zero at every division (premium, mean, interest, the interval share):
symmetric, so neither longs nor shorts gain from it; a cap from margin rounds down (tighter).

Payments (:func:`calc_funding_payments`): ``payment_i = size_i * price * rate`` (``size`` signed,
long > 0; positive = the account pays, so longs pay when the rate is positive). Exact value
``raw_i / 1e17`` micro-USDC. **Remainder rule**: each payer pays its exact amount rounded *up*
(against the payer, by < 1 micro-USDC); the total ``T`` they pay is shared among the receivers
in proportion to their exact amounts, floors first, then the ``T - sum(floors)`` leftover
micro-units one each to the receivers with the largest remainders (ties: earlier in the input,
so pass positions in account order). The sum is then exactly zero by construction, no
insurance-fund account is needed, no payer pays more than 1 micro above its exact amount, and
every receiver gets at least its exact amount rounded down. (dYdX v4 rounds credits down and
debits up and lets the dust vanish: ``GetSettlementPpm`` in ``x/perpetuals/keeper/perpetual.go``;
here the dust goes to the receivers.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from engine.math.rounding import COLUMN_MAX, mul_div_floor_column
from engine.types.fixed import ATOMS_PER_UNIT, PPB, PPM

NS_PER_HOUR = 3600 * 10**9
DEFAULT_RATE_PERIOD_NS = 8 * NS_PER_HOUR
DEFAULT_PAYMENT_INTERVAL_NS = NS_PER_HOUR
DEFAULT_INTEREST_PPB = 100_000  # 0.01% per 8 h (Binance, Bybit, BitMEX, Hyperliquid)
DEFAULT_CLAMP_PPB = 500_000  # 0.05%
PAYMENT_SCALE = ATOMS_PER_UNIT * PPB  # atoms x micro x ppb -> micro


def _div_toward_zero(num: int, den: int) -> int:
    """``num / den`` truncated toward zero (``den > 0``)."""
    q = abs(num) // den
    return q if num >= 0 else -q


def calc_impact_notional_micro(margin_micro: int, initial_margin_ppm: int) -> int:
    """The notional a fixed margin controls at the initial margin fraction, rounded down.

    ``margin / imf``: Binance uses 200 USDT / IMR at the maximum leverage, dYdX 500 USDC / IMF.
    """
    if initial_margin_ppm <= 0:
        raise ValueError(f"initial margin fraction must be > 0, got {initial_margin_ppm}")
    return margin_micro * PPM // initial_margin_ppm


def _impact_ratio(levels: Sequence[tuple[int, int]], notional_micro: int) -> tuple[int, int] | None:
    """Exact average fill price as ``(numerator, denominator)`` in micro-USDC per unit.

    Fills ``notional_micro`` against ``(price_micro, size_atoms)`` levels, best first. Working in
    micro x atoms (notional x 1e8): full levels contribute ``p * s``; the last one the fraction
    ``rest / p`` atoms. ``average = target / atoms_filled = target * p_last / (atoms_full * p_last
    + rest)``. None when the levels hold less than the notional.
    """
    if notional_micro <= 0:
        raise ValueError(f"impact notional must be > 0, got {notional_micro}")
    target = notional_micro * ATOMS_PER_UNIT
    filled = 0
    atoms = 0
    for price, size in levels:
        if price <= 0 or size <= 0:
            raise ValueError(f"book level ({price}, {size}) must be positive")
        value = price * size
        if filled + value >= target:
            rest = target - filled
            return target * price, atoms * price + rest
        filled += value
        atoms += size
    return None


def calc_impact_bid_micro(bids: Sequence[tuple[int, int]], notional_micro: int) -> int | None:
    """Average price of selling ``notional_micro`` into ``bids`` (best = highest first), rounded
    down (a lower impact bid can only shrink a positive premium); None if the bids are too thin."""
    ratio = _impact_ratio(bids, notional_micro)
    return None if ratio is None else ratio[0] // ratio[1]


def calc_impact_ask_micro(asks: Sequence[tuple[int, int]], notional_micro: int) -> int | None:
    """Average price of buying ``notional_micro`` from ``asks`` (best = lowest first), rounded
    up (a higher impact ask can only shrink a negative premium); None if the asks are too thin."""
    ratio = _impact_ratio(asks, notional_micro)
    return None if ratio is None else -((-ratio[0]) // ratio[1])


def calc_premium_ppb(impact_bid_micro: int | None, impact_ask_micro: int | None, index_micro: int) -> int:
    """``(max(0, impact_bid - index) - max(0, index - impact_ask)) / index`` in ppb, toward zero.

    A side whose impact price is None (too thin to fill the impact notional) contributes 0: a
    book that cannot absorb the notional is not evidence of a premium or a discount.
    """
    if index_micro <= 0:
        raise ValueError(f"index must be > 0, got {index_micro}")
    above = max(0, impact_bid_micro - index_micro) if impact_bid_micro is not None else 0
    below = max(0, index_micro - impact_ask_micro) if impact_ask_micro is not None else 0
    return _div_toward_zero((above - below) * PPB, index_micro)


class PremiumWeighting(IntEnum):
    EQUAL = 0  # simple mean (Hyperliquid: sampled every 5 s, averaged over the hour; dYdX)
    LINEAR = 1  # weights 1, 2, ..., n: later samples count more (Binance, Bybit)


def calc_mean_premium_ppb(
    samples_ppb: Sequence[int], weighting: PremiumWeighting = PremiumWeighting.EQUAL
) -> int:
    """Mean of the interval's premium samples, truncated toward zero; 0 when there are none.

    EQUAL: ``sum(p_i) / n``. LINEAR: ``sum(i * p_i) / sum(i)`` for ``i = 1..n`` (Bybit:
    ``(P1*1 + P2*2 + ... + P480*480) / (1 + 2 + ... + 480)``).
    """
    if not samples_ppb:
        return 0
    if weighting == PremiumWeighting.EQUAL:
        return _div_toward_zero(sum(samples_ppb), len(samples_ppb))
    n = len(samples_ppb)
    weighted = sum(i * p for i, p in enumerate(samples_ppb, start=1))
    return _div_toward_zero(weighted, n * (n + 1) // 2)


def calc_interest_ppb(quote_rate_ppb: int, base_rate_ppb: int, periods_per_day: int = 3) -> int:
    """BitMEX / Bybit interest per funding period: ``(quote rate - base rate) / periods``, daily
    rates in, truncated toward zero (``(0.06% - 0.03%) / 3 = 0.01%``)."""
    if periods_per_day <= 0:
        raise ValueError(f"periods per day must be > 0, got {periods_per_day}")
    return _div_toward_zero(quote_rate_ppb - base_rate_ppb, periods_per_day)


def calc_cap_ppb_from_margin(maintenance_ppm: int, multiplier_ppm: int) -> int:
    """``multiplier x maintenance fraction`` as a rate cap in ppb, rounded down.

    ppm x ppm = 1e-12, so ``ppb = maintenance_ppm * multiplier_ppm / 1000``. E.g. 0.75 x 3% =
    2.25% = 22_500_000 ppb.
    """
    if maintenance_ppm < 0 or multiplier_ppm < 0:
        raise ValueError("maintenance fraction and multiplier must be >= 0")
    return maintenance_ppm * multiplier_ppm // 1000


@dataclass(frozen=True, slots=True)
class FundingConfig:
    """One market's funding rules (rates per ``rate_period_ns``)."""

    cap_ppb: int
    interest_ppb: int = DEFAULT_INTEREST_PPB
    clamp_ppb: int = DEFAULT_CLAMP_PPB
    rate_period_ns: int = DEFAULT_RATE_PERIOD_NS
    payment_interval_ns: int = DEFAULT_PAYMENT_INTERVAL_NS
    weighting: PremiumWeighting = PremiumWeighting.EQUAL

    def __post_init__(self) -> None:
        if self.cap_ppb < 0 or self.clamp_ppb < 0:
            raise ValueError("cap and clamp must be >= 0")
        if self.rate_period_ns <= 0 or self.payment_interval_ns <= 0:
            raise ValueError("rate period and payment interval must be > 0")


@dataclass(frozen=True, slots=True)
class FundingRate:
    """Every step of one rate computation (ppb per rate period unless named ``interval``)."""

    sample_count: int
    mean_premium_ppb: int
    interest_ppb: int
    clamp_ppb: int
    clamped_ppb: int  # clamp(I - P, -clamp, +clamp)
    uncapped_ppb: int  # P + clamped
    cap_ppb: int
    rate_period_ppb: int  # clamp(uncapped, -cap, +cap)
    capped: bool
    rate_interval_ppb: int  # rate_period * interval / period, toward zero


def calc_funding_rate(samples_ppb: Sequence[int], config: FundingConfig) -> FundingRate:
    """The rate from an interval's premium samples: ``F = P + clamp(I - P, +-clamp)``, capped,
    then the payment interval's share. With the samples so far it is the *predicted* rate that
    is published during the interval (no samples yet: ``P = 0``, so the prediction is the
    interest rate clamped and capped)."""
    mean = calc_mean_premium_ppb(samples_ppb, config.weighting)
    clamped = min(max(config.interest_ppb - mean, -config.clamp_ppb), config.clamp_ppb)
    uncapped = mean + clamped
    rate = min(max(uncapped, -config.cap_ppb), config.cap_ppb)
    per_interval = _div_toward_zero(rate * config.payment_interval_ns, config.rate_period_ns)
    return FundingRate(
        sample_count=len(samples_ppb),
        mean_premium_ppb=mean,
        interest_ppb=config.interest_ppb,
        clamp_ppb=config.clamp_ppb,
        clamped_ppb=clamped,
        uncapped_ppb=uncapped,
        cap_ppb=config.cap_ppb,
        rate_period_ppb=rate,
        capped=rate != uncapped,
        rate_interval_ppb=per_interval,
    )


calc_predicted_funding_rate = calc_funding_rate  # the same formula over the samples so far


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One position's payment. ``amount_micro > 0``: the account pays; ``< 0``: it receives."""

    account_id: int
    size_atoms: int
    exact_raw: int  # size_atoms * price_micro * rate_ppb; the exact payment is exact_raw / 1e17
    amount_micro: int


def calc_funding_payments(
    positions: Sequence[tuple[int, int]], price_micro: int, rate_ppb: int
) -> tuple[FundingPayment, ...]:
    """Every position's payment for one interval, summing to exactly zero (rule: module docstring).

    Parameters
    ----------
    positions
        ``(account_id, size_atoms)``, long > 0, short < 0; must net to zero (every long has its
        short: ValueError otherwise, a bug upstream). Zero sizes get a zero payment.
    price_micro
        The price the notional is taken at (the mark here; Hyperliquid uses the oracle price).
    rate_ppb
        The rate for this payment interval (:attr:`FundingRate.rate_interval_ppb`).
    """
    if sum(size for _, size in positions) != 0:
        raise ValueError("positions must net to zero")
    if price_micro < 0:
        raise ValueError(f"price must be >= 0, got {price_micro}")
    raws = [size * price_micro * rate_ppb for _, size in positions]
    amounts = [0] * len(raws)
    total_paid = 0
    for i, raw in enumerate(raws):
        if raw > 0:
            amounts[i] = -((-raw) // PAYMENT_SCALE)  # ceil: against the payer
            total_paid += amounts[i]
    receivers = [i for i, raw in enumerate(raws) if raw < 0]
    weight_total = -sum(raws[i] for i in receivers)
    if receivers:
        remainders: list[tuple[int, int]] = []
        shared = 0
        for i in receivers:
            share, remainder = divmod(total_paid * -raws[i], weight_total)
            amounts[i] = -share
            shared += share
            remainders.append((-remainder, i))  # largest remainder first, then input order
        for _, i in sorted(remainders)[: total_paid - shared]:
            amounts[i] -= 1
    return tuple(
        FundingPayment(account_id, size, raw, amount)
        for (account_id, size), raw, amount in zip(positions, raws, amounts, strict=True)
    )


def calc_funding_amounts(sizes_atoms: np.ndarray, price_micro: int, rate_ppb: int) -> np.ndarray | None:
    """:func:`calc_funding_payments`' ``amount_micro`` for each of ``sizes_atoms`` (int64, netting to
    zero, in input order), vectorised: the same integers (tested against it), or None where the
    sizes (in units of their greatest common divisor) or the total leave the range this exact int64
    arithmetic covers.

    Why it needs no 128-bit products: with ``K = price * rate``, a payer's ``ceil(|size| * |K| / 1e17)``
    is :func:`_floor_mul_div` plus one where the remainder is not zero; a receiver's share
    ``T * raw_i / sum(raw)`` is ``T * |size_i| / sum(|size|)`` over the receivers (``K`` cancels),
    and so is the order of the remainders the leftover micro-units go by."""
    k = price_micro * rate_ppb
    n = len(sizes_atoms)
    amounts = np.zeros(n, np.int64)
    if k == 0 or not n:
        return amounts
    # in units of the sizes' greatest common divisor (a lot, usually): the amounts are the same
    # (``size * K = (size / g) * (g * K)``, and the receivers' weights scale alike), and the sizes of
    # a cheap coin's whales (1e9 DOGE: 1e17 atoms) come into range
    g = int(np.gcd.reduce(sizes_atoms))
    if g > 1:
        sizes_atoms, k = sizes_atoms // g, k * g
    top = max(int(sizes_atoms.max()), -int(sizes_atoms.min()))
    if top >= COLUMN_MAX or top * n >= 1 << 60 or top * n * abs(k) // PAYMENT_SCALE >= 1 << 60:
        return None  # (within these, every sum below fits int64)
    signed = sizes_atoms if k > 0 else -sizes_atoms  # > 0: pays
    payers = np.flatnonzero(signed > 0)
    receivers = np.flatnonzero(signed < 0)
    paid = mul_div_floor_column(signed[payers], abs(k), PAYMENT_SCALE)
    if paid is None:
        return None
    q, r = paid
    amounts[payers] = q + (r != 0)  # up: against the payer
    total = int(amounts[payers].sum())  # (each below 2^63 / 2^13: the sum fits)
    if not len(receivers):
        return amounts
    weights = -signed[receivers]
    shared = mul_div_floor_column(weights, total, int(weights.sum()))
    if shared is None:
        return None
    share, remainder = shared
    amounts[receivers] = -share
    left = total - int(share.sum())
    if left:  # largest remainder first, then input order
        order = np.lexsort((receivers, -remainder))
        amounts[receivers[order[:left]]] -= 1
    return amounts
