"""The generic differential harness (tests/support/differential.py) catches what it is for.

A harness that cannot fail proves nothing: here a candidate that differs from its reference in one
event byte, one return code, one snapshot byte or only after a restore is caught, and the message
names the command and decodes the events.
"""

from __future__ import annotations

from typing import Any

import command_streams as CS
import pytest
from differential import Twin, check_batch, generate, reference_run, run_differential

from engine.shard.matching_engine import MatchingEngine
from engine.shard.wire_event_writer import WireEventWriter

MARKETS = CS.STREAM_MARKETS


class Faulty:
    """A MatchingEngine that misbehaves from command ``at`` on, in one chosen way."""

    def __init__(self, sink: Any, at: int, fault: str, blob: bytes | None = None) -> None:
        self.sink, self.at, self.fault, self.n = sink, at, fault, 0
        self.inner = (
            MatchingEngine.restore(MARKETS, sink, blob, debug_validate=False)
            if blob is not None
            else MatchingEngine(MARKETS, sink, debug_validate=False)
        )

    def handle(self, buf: Any, offset: int = 0) -> int:
        code = self.inner.handle(buf, offset)
        self.n += 1
        if self.n > self.at and self.fault == "event" and self.sink.count:
            self.sink.on_market_status(1, 999, 9)  # one event too many
        if self.n > self.at and self.fault == "code":
            return code + 1
        return code

    def handle_batch(self, buf: Any, count: int, offset: int = 0) -> None:
        for i in range(count):
            self.handle(buf, offset + 64 * i)

    def snapshot(self) -> bytes:
        blob = self.inner.snapshot()
        if self.fault == "snapshot" and self.n >= self.at:
            return blob[:-1] + bytes([blob[-1] ^ 1])
        return blob

    def validate(self) -> None:
        self.inner.validate()


def twin(fault: str, at: int = 40, restored_fault: str = "none") -> Twin:
    return Twin(
        name=f"faulty-{fault}",
        reference=lambda sink: MatchingEngine(MARKETS, sink, debug_validate=False),
        candidate=lambda sink: Faulty(sink, at, fault),
        restore_reference=lambda sink, blob: MatchingEngine.restore(
            MARKETS, sink, blob, debug_validate=False
        ),
        restore_candidate=lambda sink, blob: Faulty(sink, 0, restored_fault, blob),
    )


CMDS = generate(lambda: CS.StreamGenerator(MARKETS, oracle=False), 3, 200)


def test_an_honest_candidate_passes() -> None:
    ref = run_differential(twin("none"), CMDS, every=50, restore_at=(0, 99), cross_restore_at=120)
    assert len(ref.events) == len(CMDS) and sorted(ref.snapshots) == [0, 50, 100, 150, 200]


@pytest.mark.parametrize(
    ("fault", "message"),
    [("event", "actual:   MARKET_STATUS {'market_id': 1, 'seq': 999"), ("code", "return code: expected")],
)
def test_a_wrong_event_or_code_names_the_command(fault: str, message: str) -> None:
    with pytest.raises(AssertionError, match=r"command #\d+ differs") as exc:
        run_differential(twin(fault), CMDS, every=50)
    assert message in str(exc.value)


def test_a_wrong_snapshot_is_caught_at_a_checkpoint() -> None:
    with pytest.raises(AssertionError, match="after 50 commands: snapshots differ"):
        run_differential(twin("snapshot"), CMDS, every=50)


def test_a_fault_only_after_restore_is_caught() -> None:
    run_differential(twin("none"), CMDS, every=50)  # fine without restores
    with pytest.raises(AssertionError, match="restored from itself at 99"):
        run_differential(twin("none", restored_fault="code"), CMDS, every=50, restore_at=[99])
    with pytest.raises(AssertionError, match="candidate restored from the reference"):
        run_differential(twin("none", restored_fault="code"), CMDS, every=50, cross_restore_at=99)


def test_batch_mismatch_names_the_command() -> None:
    t = twin("event", at=70)
    ref = reference_run(t, CMDS)
    with pytest.raises(AssertionError, match="handle_batch .*first difference at byte"):
        check_batch(t, CMDS, ref, lambda e, blob: e.handle_batch(blob, len(CMDS)))
    assert WireEventWriter().take() == b""
