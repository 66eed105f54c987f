"""Trading fees: maker and taker fee in ppm of a fill's notional; a negative maker fee is a rebate.

``fee = notional_micro * rate_ppm / 1e6`` rounded so that the fee account never loses on rounding:

* a fee paid (rate > 0, taker or maker) rounds UP: ``ceil(notional * rate / 1e6)``;
* a rebate (rate < 0) rounds DOWN in size: ``-floor(notional * |rate| / 1e6)``.

Invariants (tested): the fee account's income on a fill, ``maker_fee + taker_fee``, is exactly what
the two accounts pay (integers move, nothing is created), it is never negative while
``-taker <= maker`` (enforced by :class:`~engine.types.risk_spec.FeeRates`), and each side's fee
is within 1 micro of the exact rate times notional, rounded against the account.
"""

from __future__ import annotations

from engine.types.fixed import PPM, div_ceil
from engine.types.risk_spec import FeeRates


def calc_fee_micro(notional_micro: int, rate_ppm: int) -> int:
    """Fee (> 0 paid, < 0 rebate received) on ``|notional|``, rounded against the account."""
    n = abs(notional_micro)
    if rate_ppm >= 0:
        return div_ceil(n * rate_ppm, PPM)
    return -((n * -rate_ppm) // PPM)


def calc_fill_fees_micro(notional_micro: int, rates: FeeRates) -> tuple[int, int, int]:
    """``(maker_fee, taker_fee, fee_account_income)`` of one fill; income = maker + taker exactly."""
    maker = calc_fee_micro(notional_micro, rates.maker_ppm)
    taker = calc_fee_micro(notional_micro, rates.taker_ppm)
    return maker, taker, maker + taker


def calc_max_fee_micro(notional_micro: int, rates: FeeRates) -> int:
    """The most an order of this notional can pay, maker or taker (the pre-trade bound)."""
    return max(
        calc_fee_micro(notional_micro, rates.maker_ppm), calc_fee_micro(notional_micro, rates.taker_ppm)
    )
