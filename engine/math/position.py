"""Perp position lifecycle on a fill, with exact integer P&L.

A position is ``(size_atoms, cost_micro)``: signed size (long > 0) and signed cost, the entry
notional still held (long > 0, short < 0). Unrealised P&L at a mark is
``size * mark / 1e8 - cost``; the average entry price is derived, never stored
(:func:`calc_entry_price_micro`). A fill is ``(qty_atoms, notional_micro)``: signed quantity (buy > 0)
and its notional ``|qty| * price / 1e8`` rounded down (the shard's ``calc_notional_micro``; both
counterparties use the same integer, so their costs move by exactly opposite amounts).

* open / increase (fill in the position's direction): ``cost += signed notional`` exactly
  (entry re-averaged for free: nothing is rounded);
* reduce (opposite direction, ``|qty| <= |size|``): the closed share of the cost,
  ``removed = ceil(cost * |qty| / |size|)``, leaves the position and
  ``realised = proceeds - removed = -signed_notional - removed``: rounded DOWN (against the account);
  the remainder stays in ``cost``, so nothing is lost, it is realised later;
* close: a reduce by the whole size removes the whole cost (no rounding);
* flip (``|qty| > |size|``): the notional is split exactly, ``closing = ceil(notional * |size| /
  |qty|)`` in the fill's sign for the close (rounded against the account) and the rest opens the
  new position, so the two parts add up to the fill's notional.

Invariant (hypothesis-tested over random fill streams): ``cost - realised_total == sum of the
fills' signed notionals`` after every fill; so when the position is flat again the realised total
is exactly the cash the fills moved, ``-sum(signed notional)``. Funding is paid in cash
(engine.math.funding, later) and never touches ``cost``.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.types.fixed import ATOMS_PER_UNIT, div_ceil


@dataclass(frozen=True, slots=True)
class PositionChange:
    """The result of applying one fill to a position."""

    size_atoms: int  # new signed size
    cost_micro: int  # new signed cost
    realised_micro: int  # P&L realised by this fill (0 on open/increase)
    closed_atoms: int  # |quantity| that closed existing size
    opened_atoms: int  # |quantity| that opened or increased


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def apply_fill(size_atoms: int, cost_micro: int, qty_atoms: int, notional_micro: int) -> PositionChange:
    """Apply a fill of signed ``qty_atoms`` (buy > 0) whose notional is ``notional_micro`` (>= 0).

    See the module docstring for the rounding of each case. Raises ValueError on a zero quantity
    or a negative notional (bugs upstream).
    """
    if qty_atoms == 0:
        raise ValueError("a fill has a non-zero quantity")
    if notional_micro < 0:
        raise ValueError("a fill's notional is >= 0 (the sign comes from the quantity)")
    signed = _sign(qty_atoms) * notional_micro
    if size_atoms == 0 or _sign(size_atoms) == _sign(qty_atoms):
        return PositionChange(size_atoms + qty_atoms, cost_micro + signed, 0, 0, abs(qty_atoms))
    close = min(abs(qty_atoms), abs(size_atoms))
    if abs(qty_atoms) <= abs(size_atoms):
        closing = notional_micro
    elif qty_atoms > 0:  # flip by buying: the closing part pays more (rounded up)
        closing = div_ceil(notional_micro * close, qty_atoms)
    else:  # flip by selling: the closing part receives less (rounded down)
        closing = (notional_micro * close) // -qty_atoms
    closing_signed = _sign(qty_atoms) * closing
    if close == abs(size_atoms):
        removed = cost_micro
    else:
        removed = div_ceil(cost_micro * close, abs(size_atoms))
    realised = -closing_signed - removed
    new_size = size_atoms + qty_atoms
    new_cost = cost_micro - removed + (signed - closing_signed)
    return PositionChange(new_size, new_cost, realised, close, abs(qty_atoms) - close)


def calc_unrealised_micro(size_atoms: int, cost_micro: int, mark_micro: int) -> int:
    """``size * mark / 1e8 - cost``, rounded down (against the account)."""
    return (size_atoms * mark_micro) // ATOMS_PER_UNIT - cost_micro


def calc_entry_price_micro(size_atoms: int, cost_micro: int) -> int | None:
    """Average entry price (micro per unit) for display: ``cost * 1e8 / size``; None when flat.

    Rounded against the account: up for a long (its P&L looks lower), down for a short.
    """
    if size_atoms == 0:
        return None
    if size_atoms > 0:
        return div_ceil(cost_micro * ATOMS_PER_UNIT, size_atoms)
    return (cost_micro * ATOMS_PER_UNIT) // size_atoms
