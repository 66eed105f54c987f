"""Fixed-point units of the whole engine, their limits, and the few exact helpers that use them.

Every amount that is money or a quantity is an integer in a named unit; this module is the one
place the scales are written down (nautilus keeps ``PriceRaw`` in one module for the same reason):

* money and the settlement stablecoin: **micro-units** (``_micro``), ``MICRO_PER_UNIT`` = 1e6 per
  USDC (USDC's own 6 decimals, so on-chain amounts need no conversion);
* any other asset (BTC, ETH, a tokenised share, a prediction-market share): **atoms** (``_atoms``),
  ``ATOMS_PER_UNIT`` = 1e8 per whole unit (BTC's satoshi);
* an asset's price: micro-USDC per ONE WHOLE unit (``price_micro``); a market's price is
  ``price_ticks * tick_size_micro`` in that unit;
* a market's size: ``size_lots * lot_size_atoms`` atoms;
* rates: parts per million (``_ppm``) for margin fractions, haircuts and fees; parts per billion
  (``_ppb``) for funding rates. ppm is too coarse there: an 8-hour rate of 0.01% is 100 ppm, its
  hourly share 12.5 ppm. With ppb every 8-hour rate in whole ppm divides exactly into hourly
  (1/8) payments, and a premium averaged over samples keeps three more digits.

Rounding is always stated and always against the account (its margin up, its equity down); the
helpers come in ``_floor`` / ``_ceil`` pairs so callers say which. Python ints are exact, so the
scalar helpers never overflow; vectorised code checks int64 bounds with :func:`check_int64`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICRO_PER_UNIT = 10**6  # micro-units per USDC (and per unit of any quote amount)
ATOMS_PER_UNIT = 10**8  # atoms per whole unit of a non-USDC asset
BASE_ATOMS_PER_UNIT = ATOMS_PER_UNIT  # the name the market rules use for a market's base asset
PPM = 10**6  # parts per million: 1.0
PPB = 10**9  # parts per billion: 1.0
BPS_PER_UNIT = 10**4  # basis points in 1.0

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
U32_MAX = 2**32 - 1

# Bounds every aggregate is held to, so that int64 sums over them are provably safe (the shard
# rejects what would pass them; the risk stage bounds positions and balances the same way). A
# market may set lower ones (MarketSpec.max_level_total_lots, .max_open_orders_per_account).
# A level's total open size is at most 2^62: adding one order (< 2^63) to it is checked as
# ``size > limit - total`` (no overflow), and two totals still add within int64.
MAX_LEVEL_TOTAL_LOTS = 2**62  # one price level's total open size (LEVEL_FULL beyond it)
MAX_OPEN_ORDERS_PER_ACCOUNT = 10_000  # live orders of one account in one market (TOO_MANY_OPEN_ORDERS)


class FixedPointError(ValueError):
    """A decimal does not convert exactly into the unit asked for (or is out of range)."""


def div_floor(a: int, b: int) -> int:
    """``floor(a / b)`` for ``b > 0`` (Python's ``//``; named so the direction reads at the call)."""
    return a // b


def div_ceil(a: int, b: int) -> int:
    """``ceil(a / b)`` for ``b > 0``."""
    return -((-a) // b)


def mul_div_floor(a: int, b: int, c: int) -> int:
    """``floor(a * b / c)`` exactly, for ``c > 0``."""
    return (a * b) // c


def mul_div_ceil(a: int, b: int, c: int) -> int:
    """``ceil(a * b / c)`` exactly, for ``c > 0``."""
    return -((-(a * b)) // c)


def value_micro_floor(qty: int, price_micro: int, scale: int = ATOMS_PER_UNIT) -> int:
    """Value in micro-USDC of ``qty`` (in units of ``1/scale``) at ``price_micro``, rounded down.

    Rounded down is against the holder of a positive quantity; for a liability (negative
    ``qty``) it rounds away from zero, again against the account.
    """
    return (qty * price_micro) // scale


def value_micro_ceil(qty: int, price_micro: int, scale: int = ATOMS_PER_UNIT) -> int:
    """Value in micro-USDC of ``qty`` at ``price_micro``, rounded up."""
    return -((-(qty * price_micro)) // scale)


def apply_ppm_floor(amount: int, rate_ppm: int) -> int:
    """``floor(amount * rate_ppm / 1e6)``."""
    return (amount * rate_ppm) // PPM


def apply_ppm_ceil(amount: int, rate_ppm: int) -> int:
    """``ceil(amount * rate_ppm / 1e6)``."""
    return -((-(amount * rate_ppm)) // PPM)


def is_int64(x: int) -> bool:
    return INT64_MIN <= x <= INT64_MAX


def check_int64(x: int, what: str = "value") -> int:
    """``x`` if it fits int64, else OverflowError naming ``what``."""
    if not INT64_MIN <= x <= INT64_MAX:
        raise OverflowError(f"{what} {x} does not fit int64")
    return x


def to_fixed(value: str | int | Decimal, scale: int, what: str = "value") -> int:
    """Exact conversion of a decimal (string, int or Decimal; never a float) into ``value * scale``.

    FixedPointError names ``what`` when the decimal is not a finite exact multiple of ``1/scale``
    or does not fit int64. Floats are refused: ``0.1`` has no exact binary value, and money that
    went through one is already wrong.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise FixedPointError(f"{what}: give a decimal string or an integer, not {type(value).__name__}")
    try:
        dec = (
            value if isinstance(value, Decimal) else Decimal(value if isinstance(value, str) else int(value))
        )
    except (InvalidOperation, ValueError, TypeError):
        raise FixedPointError(f"{what}: {value!r} is not a decimal number") from None
    if not dec.is_finite():
        raise FixedPointError(f"{what}: {value!r} is not finite")
    scaled = dec * scale
    if scaled != scaled.to_integral_value():
        raise FixedPointError(f"{what}: {value!r} has more precision than 1/{scale}")
    out = int(scaled)
    if not INT64_MIN <= out <= INT64_MAX:
        raise FixedPointError(f"{what}: {value!r} is out of range")
    return out


def from_fixed(raw: int, scale: int) -> Decimal:
    """``raw / scale`` as an exact Decimal (for JSON and reports)."""
    return Decimal(raw) / Decimal(scale)
