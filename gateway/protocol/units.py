"""Exact decimal <-> integer units at the JSON edge (prices to ticks, sizes to lots, money to micro).

``to_units(value, unit)`` is ``value / unit`` exactly, else a :class:`JsonReject` naming the field
(never rounded); ``from_units(n, unit)`` is the exact decimal string of ``n * unit`` without an
exponent. Strings must be plain decimals (``"100.5"``, ``"3"``: digits and at most one point; no
spaces, ``+``, exponent or ``nan``); JSON floats are refused (not exact); integers are accepted. Shared by
the gateway and the SDK, so both sides convert with one rule.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from engine.types.enums import RejectCode

INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
MAX_DECIMAL_CHARS = 64
_CTX = Context(prec=80)
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")  # what the edge accepts: "100.5", "0.002", "3"
MICRO = Decimal(1_000_000)  # micro-units per whole quote unit (USDC)
ATOMS = Decimal(100_000_000)  # atoms per whole base unit (position sizes)


class JsonReject(Exception):
    """A JSON command cannot be turned into a struct: code + which field (raised and caught here)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def to_units(value: Any, unit: Decimal, field: str, allow_zero: bool = False) -> int:
    """Exact ``value / unit`` as an int64; JsonReject on anything inexact or out of range."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise JsonReject(RejectCode.BAD_FIELD, f"{field} must be a decimal string")
    if isinstance(value, str) and (len(value) > MAX_DECIMAL_CHARS or not value):
        raise JsonReject(
            RejectCode.BAD_DECIMAL, f"{field} is not a decimal of at most {MAX_DECIMAL_CHARS} chars"
        )
    if isinstance(value, str) and not _PLAIN_DECIMAL.match(value):
        raise JsonReject(
            RejectCode.BAD_DECIMAL,
            f"{field} {value!r} is not a plain decimal (digits, one '.', no sign or exponent)",
        )
    try:
        dec = Decimal(value)
    except (InvalidOperation, ValueError):
        raise JsonReject(RejectCode.BAD_DECIMAL, f"{field} {value!r} is not a decimal") from None
    if not dec.is_finite() or abs(dec.adjusted()) > 40:
        raise JsonReject(RejectCode.BAD_DECIMAL, f"{field} {value!r} is not a finite decimal in range")
    units = _CTX.divide(dec, unit)
    if units != units.to_integral_value():
        raise JsonReject(RejectCode.BAD_DECIMAL, f"{field} {value} is not a multiple of {unit}")
    n = int(units)
    if n < 0 or (n == 0 and not allow_zero) or n > INT64_MAX:
        code = RejectCode.BAD_PRICE_TICK if "price" in field else RejectCode.BAD_SIZE_LOT
        raise JsonReject(code, f"{field} {value} is out of range")
    return n


def from_units(n: int, unit: Decimal) -> str:
    """Exact decimal string of ``n * unit`` without exponent notation."""
    return format(_CTX.multiply(Decimal(n), unit).normalize(_CTX), "f")


def divide_exact(a: Decimal, b: Decimal) -> Decimal:
    """``a / b`` at the edge's precision (80 digits: exact for every int64 ratio we print)."""
    return _CTX.divide(a, b)
