"""A perp position's life on each fill, in exact integers: open, increase, reduce, flip, close.

A position is ``(size_atoms, cost_micro)``: signed size (long > 0) and signed entry notional (what
was paid for it: long > 0). Average entry = cost / size. A fill of ``delta_atoms`` (buy > 0) at
``notional_micro`` (> 0, what changed hands):

* open or increase: size += delta, cost += signed notional (the entry is re-averaged exactly:
  nothing is rounded);
* reduce: the closed share of the cost, ``removed = trunc(cost * |delta| / |size|)`` (toward
  zero: the rest stays in the remaining position's cost), is realised: ``realised = proceeds -
  removed`` for a long, ``removed - paid`` for a short;
* close: the whole cost is realised (so over a position's life, realised PnL sums to exactly the
  cash that changed hands: rounding only moves PnL between partial closes);
* flip: the fill is split at the flat point, the notional pro rata (``floor``), the remainder opens
  the new position.

Invariant (tested): ``realised - (cost_after - cost_before) == -signed_notional``: every fill
moves exactly its notional between cash and positions, so money is conserved across accounts.
"""

from __future__ import annotations


def _trunc_div(a: int, b: int) -> int:
    """a / b rounded toward zero, b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def apply_perp_fill(size: int, cost: int, delta: int, notional: int) -> tuple[int, int, int]:
    """``(size, cost, realised)`` after a fill of ``delta`` atoms (buy > 0) for ``notional`` micro."""
    if delta == 0:
        return size, cost, 0
    signed = notional if delta > 0 else -notional
    if size == 0 or (size > 0) == (delta > 0):
        return size + delta, cost + signed, 0
    if abs(delta) <= abs(size):
        removed = cost if abs(delta) == abs(size) else _trunc_div(cost * abs(delta), abs(size))
        return size + delta, cost - removed, -signed - removed
    # flip: close |size| with its share of the notional, open the rest
    close_notional = notional * abs(size) // abs(delta)
    open_notional = notional - close_notional
    close_signed = close_notional if delta > 0 else -close_notional
    realised = -close_signed - cost
    new_size = size + delta
    return new_size, open_notional if delta > 0 else -open_notional, realised
