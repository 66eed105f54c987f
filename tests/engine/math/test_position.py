"""engine.math.position: the perp lifecycle conserves cash exactly; rounding against the account."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.math.position import apply_fill, calc_entry_price_micro, calc_unrealised_micro
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT

A = ATOMS_PER_UNIT
M = MICRO_PER_UNIT


def _notional(qty: int, price: int) -> int:
    return abs(qty) * price // A  # the shard's calc_notional_micro: rounded down


def test_open_increase_reduce_flip_close() -> None:
    step = apply_fill(0, 0, 1 * A, _notional(1 * A, 60_000 * M))  # open long 1 at 60,000
    assert (step.size_atoms, step.cost_micro, step.realised_micro) == (A, 60_000 * M, 0)
    step = apply_fill(step.size_atoms, step.cost_micro, A, _notional(A, 62_000 * M))  # increase
    assert (step.size_atoms, step.cost_micro) == (2 * A, 122_000 * M)
    assert calc_entry_price_micro(step.size_atoms, step.cost_micro) == 61_000 * M  # re-averaged
    step = apply_fill(step.size_atoms, step.cost_micro, -A // 2, _notional(A // 2, 63_000 * M))  # reduce 0.5
    assert step.realised_micro == 31_500 * M - 30_500 * M
    assert (step.size_atoms, step.cost_micro, step.closed_atoms) == (3 * A // 2, 91_500 * M, A // 2)
    step = apply_fill(step.size_atoms, step.cost_micro, -2 * A, _notional(2 * A, 60_000 * M))  # flip
    # closing 1.5 at 60,000 realises 90,000 - 91,500; the 0.5 left opens a short at 60,000
    assert step.realised_micro == -1_500 * M
    assert (step.size_atoms, step.cost_micro, step.opened_atoms) == (-A // 2, -30_000 * M, A // 2)
    assert calc_unrealised_micro(step.size_atoms, step.cost_micro, 59_000 * M) == 500 * M
    step = apply_fill(step.size_atoms, step.cost_micro, A // 2, _notional(A // 2, 61_000 * M))  # close
    assert (step.size_atoms, step.cost_micro, step.realised_micro) == (0, 0, -500 * M)
    assert calc_entry_price_micro(0, 0) is None


def test_reduce_rounds_realised_down_and_keeps_the_remainder() -> None:
    step = apply_fill(3, 10, -1, 3)  # long 3 atoms costing 10 micro; sell 1 for 3
    assert step.realised_micro == 3 - 4  # removed ceil(10/3) = 4: realised rounded down
    assert step.cost_micro == 6
    short = apply_fill(-3, -10, 1, 3)  # short 3 (received 10), buy back 1 for 3
    assert short.realised_micro == -3 + 3  # removed ceil(-10/3) = -3: realised floor(-3 + 10/3) = 0
    assert short.cost_micro == -7


def test_entry_price_rounds_against_the_account() -> None:
    assert calc_entry_price_micro(3, 10) == 333_333_334  # long: up
    assert calc_entry_price_micro(-3, -10) == 333_333_333  # short: down


def test_bad_fills() -> None:
    with pytest.raises(ValueError):
        apply_fill(0, 0, 0, 1)
    with pytest.raises(ValueError):
        apply_fill(0, 0, 1, -1)


fills = st.lists(
    st.tuples(st.integers(-5 * A, 5 * A).filter(bool), st.integers(1, 200_000 * M)), min_size=1, max_size=60
)


@settings(max_examples=300, deadline=None)
@given(fills, st.booleans())
def test_lifecycle_conserves_cash_exactly(stream: list[tuple[int, int]], close_at_end: bool) -> None:
    size, cost, realised_total, paid = 0, 0, 0, 0
    for qty, price in stream:
        notional = _notional(qty, price)
        step = apply_fill(size, cost, qty, notional)
        signed = notional if qty > 0 else -notional
        paid += signed
        # realised on this fill is within 1 micro below the exact proportional P&L
        if step.closed_atoms:
            closed_share = Fraction(step.closed_atoms, abs(size))
            closing_notional = Fraction(notional * step.closed_atoms, abs(qty))
            exact = (-closing_notional if qty > 0 else closing_notional) - cost * closed_share
            assert exact - 2 < step.realised_micro <= exact
        size, cost = step.size_atoms, step.cost_micro
        realised_total += step.realised_micro
        assert cost - realised_total == paid  # the invariant after every fill
        assert size != 0 or cost == 0
        assert size == 0 or (cost >= 0) == (size > 0) or cost == 0
    if close_at_end and size:
        notional = _notional(size, 50_000 * M)
        step = apply_fill(size, cost, -size, notional)
        paid += -notional if size > 0 else notional
        realised_total += step.realised_micro
        size, cost = step.size_atoms, step.cost_micro
    if size == 0:
        assert realised_total == -paid  # flat: the realised total is exactly the cash the fills moved
