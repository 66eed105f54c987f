"""SpinBudget: how long a waiter may poll before it parks (the SCHED_FIFO bound shared by the
shard's ``Blocking`` wait and risk's own loop over its inputs)."""

from __future__ import annotations

import time

from engine.ring import SpinBudget


def test_without_a_share_it_always_spins() -> None:
    budget = SpinBudget(200)
    assert [budget.spins_now() for _ in range(3)] == [200, 200, 200]


def test_with_a_share_it_spins_only_while_the_window_was_parked_enough() -> None:
    budget = SpinBudget(20, min_parked_share=0.3)
    budget.WINDOW_NS = 60_000_000_000  # one window for the whole test, however slow the machine
    assert budget.spins_now() == 20  # a fresh window: nothing to hold against it yet
    time.sleep(0.002)  # busy since the window opened: nothing parked is under 30%
    assert budget.spins_now() == 0
    budget.parked(10**12)  # parked far more than the window's 30% so far
    assert budget.spins_now() == 20


def test_a_new_window_forgets_the_last_one() -> None:
    budget = SpinBudget(20, min_parked_share=0.3)
    budget.WINDOW_NS = 0  # every call opens a new window
    assert [budget.spins_now() for _ in range(3)] == [20, 20, 20]
