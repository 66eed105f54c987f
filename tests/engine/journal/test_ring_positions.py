"""Ring positions at a snapshot: written and read back, what a replay skips, what it releases."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from engine.journal.ring_positions import ALL, pack_positions, read_positions, release_consumed, replay_skips
from engine.ring import ConsumerDropped


@dataclass
class Ring:
    nonce: int
    published: int


class Consumer:
    def __init__(self, cursor: int, dropped: bool = False) -> None:
        self.cursor, self.dropped, self.resumed = cursor, dropped, False

    def release(self, n: int) -> None:
        if self.dropped:
            raise ConsumerDropped("ring", 0, "overrun", self.cursor, 0)
        self.cursor += n

    def resume(self) -> None:
        self.resumed = True


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**63)), max_size=6, unique_by=lambda t: t[0]),
       st.integers(0, 5))  # fmt: skip
def test_positions_read_back_as_written(rings: list[tuple[int, int]], n_out: int) -> None:
    n_out = min(n_out, len(rings))
    outs = [Ring(n, p) for n, p in rings[:n_out]]
    ins = [Ring(n, p) for n, p in rings[n_out:]]
    consumers = [Consumer(p // 2) for _, p in rings[n_out:]]
    blob = b"head" + b"".join(pack_positions(outs, ins, consumers)) + b"engine"
    published, cursors, offset = read_positions(blob, 4, len(outs), len(ins))
    assert published == {r.nonce: r.published for r in outs}
    assert cursors == {r.nonce: c.cursor for r, c in zip(ins, consumers, strict=True)}
    assert blob[offset:] == b"engine"


def test_a_replay_skips_what_the_same_ring_holds_and_everything_a_new_one_holds() -> None:
    same, new = Ring(7, 120), Ring(9, 3)
    assert replay_skips([same, new], {7: 100, 8: 50}) == [20, ALL]


def test_consumed_input_is_released_once_and_a_dropped_consumer_resumes() -> None:
    rings = [Ring(1, 100), Ring(2, 100), Ring(3, 10), Ring(4, 100)]
    consumers = [Consumer(40), Consumer(90), Consumer(5), Consumer(10, dropped=True)]
    release_consumed(rings, consumers, {1: 60, 2: 80, 3: 50, 4: 70})
    assert [c.cursor for c in consumers] == [60, 90, 5, 10]  # behind: moved; ahead or beyond: kept
    assert consumers[3].resumed
