"""Reading an explain file's fields into engine units, and writing engine units back for people.

The explain files are JSON in human units (see ``docs/derivatives.md``):

* prices and money: USDC, as a decimal string (``"64000.5"``) or a JSON number;
* sizes: units of the base asset (``"1.5"`` BTC), long > 0, short < 0;
* rates and fractions: a string ending in ``%`` is a percentage (``"0.01%"``), anything else is a
  decimal fraction (``"0.0001"``, ``0.0001``);
* times: seconds (``"1700000000.25"``); durations: seconds.

Numbers are read exactly through their decimal text (a JSON float through its shortest repr, so
``0.1`` is 0.1; callers that can should load with ``json.loads(text, parse_float=Decimal)``).
A missing field, a value of the wrong kind, or a value that is absurd for its field raises
:class:`ExplainInputError`, whose message starts with the field's path (``sources[2].price``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation, localcontext

from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT, PPB, PPM

NS_PER_S = 10**9


class ExplainInputError(ValueError):
    """An explain file's field is missing or unusable; ``path`` names it (``sources[2].price``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def child(path: str, key: str | int) -> str:
    """``sources`` + 2 -> ``sources[2]``; ``sources[2]`` + ``price`` -> ``sources[2].price``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def require_mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ExplainInputError(path or "(document)", f"must be an object, got {_kind(value)}")
    return value


def require_list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise ExplainInputError(path, f"must be a list, got {_kind(value)}")
    return value


def get(doc: Mapping[str, object], key: str, path: str) -> object:
    """``doc[key]``, or ExplainInputError naming the missing field."""
    if key not in doc or doc[key] is None:
        raise ExplainInputError(child(path, key), "missing")
    return doc[key]


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def read_decimal(value: object, path: str) -> Decimal:
    """A finite decimal from a string, an int or a float; anything else names the field."""
    if isinstance(value, bool) or value is None:
        raise ExplainInputError(path, f"must be a number or a decimal string, got {_kind(value)}")
    try:
        if isinstance(value, Decimal):
            dec = value
        elif isinstance(value, int):
            dec = Decimal(value)
        elif isinstance(value, float):
            dec = Decimal(repr(value))
        elif isinstance(value, str):
            dec = Decimal(value.strip())
        else:
            raise ExplainInputError(path, f"must be a number or a decimal string, got {_kind(value)}")
    except InvalidOperation:
        raise ExplainInputError(path, f"{value!r} is not a decimal number") from None
    if not dec.is_finite():
        raise ExplainInputError(path, f"{value!r} is not finite")
    return dec


def _scaled(dec: Decimal, scale: int, path: str, what: str) -> int:
    """``dec * scale`` exactly (an integer), or ExplainInputError."""
    if dec and dec.adjusted() > 24:
        raise ExplainInputError(path, f"{dec} is absurdly large")
    with localcontext() as ctx:
        ctx.prec = 100  # exact for every value that passed the size check
        scaled = dec * scale
        if scaled != scaled.to_integral_value():
            raise ExplainInputError(path, f"{dec} has more precision than {what}")
        return int(scaled)


def read_usdc_micro(value: object, path: str, *, positive: bool = True) -> int:
    """A price or an amount in USDC -> micro-USDC (exact: at most 6 decimals)."""
    dec = read_decimal(value, path)
    if positive and dec <= 0:
        raise ExplainInputError(path, f"must be > 0, got {dec}")
    micro = _scaled(dec, MICRO_PER_UNIT, path, "1e-6 USDC")
    if abs(micro) > 10**15:  # a billion USDC per unit: a typo, not a price
        raise ExplainInputError(path, f"{dec} is absurdly large")
    return micro


def read_usdc_pico(value: object, path: str) -> int:
    """A price or a basis in USDC -> pico-USDC (1e-12; exact: at most 12 decimals), any sign."""
    dec = read_decimal(value, path)
    pico = _scaled(dec, 10**12, path, "1e-12 USDC")
    if abs(pico) > 10**21:
        raise ExplainInputError(path, f"{dec} is absurdly large")
    return pico


def read_size_atoms(value: object, path: str) -> int:
    """A size in units of the base asset -> atoms (exact: at most 8 decimals), any sign."""
    dec = read_decimal(value, path)
    atoms = _scaled(dec, ATOMS_PER_UNIT, path, "1e-8 of a unit")
    if abs(atoms) > 10**18:
        raise ExplainInputError(path, f"{dec} is absurdly large")
    return atoms


def read_fraction(value: object, path: str) -> Decimal:
    """``"0.01%"`` -> 0.0001; ``"0.0001"`` or ``0.0001`` -> 0.0001."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return read_decimal(value.strip()[:-1], path).scaleb(-2)
    return read_decimal(value, path)


def read_rate_ppb(value: object, path: str, *, non_negative: bool = False, at_most_one: bool = True) -> int:
    """A rate or fraction -> ppb (exact to 1e-9)."""
    frac = read_fraction(value, path)
    if non_negative and frac < 0:
        raise ExplainInputError(path, f"must be >= 0, got {value!r}")
    if at_most_one and abs(frac) > 1:
        raise ExplainInputError(path, f"{value!r} is more than 100%")
    return _scaled(frac, PPB, path, "1e-9 (one ppb)")


def read_rate_ppm(value: object, path: str, *, at_most_one: bool = True) -> int:
    """A fraction >= 0 -> ppm (exact to 1e-6)."""
    frac = read_fraction(value, path)
    if frac < 0:
        raise ExplainInputError(path, f"must be >= 0, got {value!r}")
    if at_most_one and frac > 1:
        raise ExplainInputError(path, f"{value!r} is more than 100%")
    return _scaled(frac, PPM, path, "1e-6 (one ppm)")


def read_seconds_ns(value: object, path: str, *, positive: bool = False) -> int:
    """Seconds (a time or a duration) -> ns (exact to the ns); never negative."""
    dec = read_decimal(value, path)
    if dec < 0 or (positive and dec == 0):
        raise ExplainInputError(path, f"must be {'> 0' if positive else '>= 0'}, got {dec}")
    ns = _scaled(dec, NS_PER_S, path, "1 ns")
    if ns > 10**20:
        raise ExplainInputError(path, f"{dec} is absurdly large")
    return ns


def read_count(value: object, path: str, *, minimum: int = 0) -> int:
    """A whole number >= ``minimum`` (a JSON integer or an integer string)."""
    dec = read_decimal(value, path)
    if dec != dec.to_integral_value() or dec < minimum:
        raise ExplainInputError(path, f"must be a whole number >= {minimum}, got {value!r}")
    return int(dec)


def read_text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ExplainInputError(path, f"must be a non-empty string, got {_kind(value)}")
    return value


def plain(dec: Decimal) -> str:
    """A Decimal as plain text, no exponent, no trailing zeros: ``64000``, ``0.0125``."""
    text = format(dec, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def usdc(micro: int) -> str:
    """micro-USDC -> ``"64000.5"``."""
    return plain(Decimal(micro).scaleb(-6))


def usdc_pico(pico: int) -> str:
    """pico-USDC -> USDC text with up to 12 decimals."""
    return plain(Decimal(pico).scaleb(-12))


def units(atoms: int) -> str:
    """atoms -> ``"1.5"`` units."""
    return plain(Decimal(atoms).scaleb(-8))


def pct_ppb(ppb: int) -> str:
    """ppb -> ``"0.0125%"``."""
    return plain(Decimal(ppb).scaleb(-7)) + "%"


def pct_ppm(ppm: int) -> str:
    """ppm -> ``"1%"``."""
    return plain(Decimal(ppm).scaleb(-4)) + "%"


def seconds(ns: int) -> str:
    """ns -> ``"12.5"`` seconds."""
    return plain(Decimal(ns).scaleb(-9))
