"""Random publish / peek / release / drop / resume / re-attach sequences against an obvious model.

The model is a list of every message ever published, one cursor and an ``active`` flag per
consumer, and the rule "the producer may publish k more iff k <= capacity - (published - lowest
active cursor)". Each step runs on the real ring (one process) and on the model; the answers and
the bytes must agree, and a dropped consumer must raise instead of reading.
"""

from __future__ import annotations

import itertools
import os

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engine.ring import ConsumerDropped, RingBuffer

CAPACITY = 8
CONSUMERS = 2
_names = itertools.count()


def _msg(seq: int) -> bytes:
    return seq.to_bytes(8, "little") * 8


class RingModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ring = RingBuffer.create(
            f"hx-model-{os.getpid()}-{next(_names)}", capacity=CAPACITY, consumers=CONSUMERS
        )
        self.handles = [self.ring.consumer(i) for i in range(CONSUMERS)]
        self.published = 0
        self.cursor = [0] * CONSUMERS
        self.active = [True] * CONSUMERS
        self.told = [False] * CONSUMERS  # the handle's registration is void (dropped since)

    def _room(self) -> int:
        low = min([c for c, a in zip(self.cursor, self.active, strict=True) if a], default=self.published)
        return CAPACITY - (self.published - low)

    @rule(k=st.integers(0, CAPACITY))
    def try_publish(self, k: int) -> None:
        data = b"".join(_msg(self.published + j) for j in range(k))
        expect = k <= self._room()
        assert self.ring.try_publish(data, k) == expect
        if expect:
            self.published += k

    @rule(i=st.integers(0, CONSUMERS - 1), max_n=st.integers(1, CAPACITY + 2), take=st.integers(0, CAPACITY))
    def peek_release(self, i: int, max_n: int, take: int) -> None:
        cons = self.handles[i]
        if self.told[i]:
            try:
                cons.peek(max_n)
            except ConsumerDropped:
                return
            raise AssertionError("a dropped consumer peeked")
        view, n = cons.peek(max_n)
        start = self.cursor[i]
        expect_n = min(self.published - start, max_n, CAPACITY - start % CAPACITY)
        assert n == expect_n
        assert bytes(view) == b"".join(_msg(s) for s in range(start, start + n))
        view.release()
        m = min(take, n)
        cons.release(m)
        self.cursor[i] += m
        assert cons.cursor == self.cursor[i]

    @rule(i=st.integers(0, CONSUMERS - 1))
    def read(self, i: int) -> None:
        cons = self.handles[i]
        if self.told[i]:
            try:
                cons.read(timeout_s=0)
            except ConsumerDropped:
                return
            raise AssertionError("a dropped consumer read")
        start = self.cursor[i]
        n = min(self.published - start, CAPACITY - start % CAPACITY)
        assert cons.read(timeout_s=0) == b"".join(_msg(s) for s in range(start, start + n))
        self.cursor[i] += n

    @rule(i=st.integers(0, CONSUMERS - 1))
    def drop(self, i: int) -> None:
        assert self.ring.drop_consumer(i) == self.active[i]
        if self.active[i]:
            self.active[i] = False
            self.told[i] = True

    @rule(i=st.integers(0, CONSUMERS - 1))
    def resume(self, i: int) -> None:
        skipped = self.handles[i].resume()
        if self.active[i]:
            assert skipped == 0
        else:
            assert skipped == self.published - self.cursor[i]
            self.cursor[i] = self.published
            self.active[i] = True
        self.told[i] = False

    @rule(i=st.integers(0, CONSUMERS - 1))
    def reattach(self, i: int) -> None:
        """A restarted consumer process: a fresh handle on the same index."""
        self.handles[i].close()
        self.handles[i] = self.ring.consumer(i)
        assert self.handles[i].dropped == (not self.active[i])
        if not self.active[i]:
            self.cursor[i] = self.published
            self.active[i] = True
        self.told[i] = False
        assert self.handles[i].cursor == self.cursor[i]

    @invariant()
    def agrees(self) -> None:
        assert self.ring.published == self.published
        assert self.ring.free_slots(CAPACITY + 1) == self._room()
        for i in range(CONSUMERS):
            assert self.ring.is_active(i) == self.active[i]
            assert self.handles[i].is_dropped() == self.told[i]
            if self.active[i]:
                assert self.ring.consumer_cursor(i) == self.cursor[i]
                assert self.handles[i].available() == self.published - self.cursor[i]

    def teardown(self) -> None:
        for cons in self.handles:
            cons.close()
        self.ring.close()


RingModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestRingModel = RingModel.TestCase
