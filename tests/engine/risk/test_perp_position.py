"""Position lifecycle: every fill moves exactly its notional between cash and positions."""

from hypothesis import given
from hypothesis import strategies as st

from engine.risk.perp_position import apply_perp_fill

fills = st.lists(st.tuples(st.integers(-(10**9), 10**9).filter(bool), st.integers(1, 10**12)), max_size=40)


@given(fills)
def test_cash_is_conserved_and_a_closed_position_realised_everything(stream: list[tuple[int, int]]) -> None:
    size = cost = realised_total = cash = 0
    for delta, notional in stream:
        signed = notional if delta > 0 else -notional
        new_size, new_cost, realised = apply_perp_fill(size, cost, delta, notional)
        assert realised - (new_cost - cost) == -signed
        assert new_size == size + delta
        assert (new_cost == 0) == (new_size == 0) or new_size != 0
        size, cost = new_size, new_cost
        realised_total += realised
        cash -= signed
    if size == 0:
        assert cost == 0 and realised_total == cash


def test_open_reduce_flip_close_worked_example() -> None:
    # buy 2 at 100 (cost 200), sell 1 at 130: realise 30; sell 3 at 90: close 1 (realise -10), open short 2
    s, c, r = apply_perp_fill(0, 0, 2, 200)
    assert (s, c, r) == (2, 200, 0)
    s, c, r = apply_perp_fill(s, c, -1, 130)
    assert (s, c, r) == (1, 100, 30)
    s, c, r = apply_perp_fill(s, c, -3, 270)
    assert (s, c, r) == (-2, -180, -10)
    s, c, r = apply_perp_fill(s, c, 2, 160)  # buy back 2 at 80: +20
    assert (s, c, r) == (0, 0, 20)


def test_partial_close_rounds_the_removed_cost_toward_zero() -> None:
    # long 3 for 100: closing 1 removes trunc(100/3) = 33, realised = 40 - 33
    assert apply_perp_fill(3, 100, -1, 40) == (2, 67, 7)
    assert apply_perp_fill(-3, -100, 1, 40) == (-2, -67, -7)
