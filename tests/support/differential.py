"""A generic differential harness: two implementations of one state machine, held to the same bytes.

The twin discipline (CONVENTIONS.md) written once. A *subject* is a deterministic state machine fed
64-byte wire commands (``handle(buf, offset) -> RejectCode``) that packs its 64-byte wire events into
the sink it was built with (anything with ``take() -> bytes``; by default a ``WireEventWriter``) and
can snapshot itself canonically (``snapshot() -> bytes``, equal states -> equal bytes, whatever the
implementation) and check its own invariants (``validate()``). A :class:`Twin` names two factories of
such subjects, a *reference* (the obvious specification) and a *candidate* (the fast one), and how
to restore each from a snapshot. The harness then, for a stream of commands:

* runs the reference once (:func:`reference_run`, or the caller's own :class:`Reference`);
* feeds the candidate command by command and compares the event bytes and the return code after
  EVERY command, and the snapshots (and ``validate()``, and the twin's ``state_check``) at checkpoints
  (:func:`check_against`);
* restores the candidate from its own snapshot at cut points and continues, and restores each
  implementation from the OTHER's snapshot and continues (:func:`run_differential`);
* feeds the whole stream through ``handle_batch`` and compares the concatenated events
  (:func:`check_batch`).
A mismatch fails with the command, the first differing event and both event lists, decoded by name.

Plugging in a new state machine (say a risk engine and its Python twin) is writing a generator and a
:class:`Twin`::

    RISK = Twin(
        name="risk",
        reference=lambda sink: RiskEngine(ACCOUNTS, sink),
        candidate=lambda sink: NativeRisk(ACCOUNTS, sink),
        restore_reference=lambda sink, blob: RiskEngine.restore(ACCOUNTS, sink, blob),
        restore_candidate=lambda sink, blob: NativeRisk.restore(ACCOUNTS, sink, blob),
    )

    @pytest.mark.parametrize("seed", range(20))
    def test_risk_twins_agree(seed):
        cmds = generate(lambda: RiskStreams(ACCOUNTS), seed, 3_000)
        run_differential(RISK, cmds, every=500, restore_at=(0, 1_500), cross_restore_at=1_500)

A generator is anything with ``next(rng) -> bytes`` (one 64-byte command per call) drawing its
decisions from an :class:`Rng` (``SeededRng`` here; a hypothesis tape works the same way).

Imported by name by the test modules (``pythonpath`` in pyproject puts this directory on sys.path).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.shard.wire_event_writer import WireEventWriter
from engine.types.enums import STP_SHIFT, CancelReason, MsgType, RejectCode
from engine.wire.codec import decode
from engine.wire.layout import BY_TYPE, SLOT_BYTES

Buffer = bytes | bytearray | memoryview


# ---- the contracts ----------------------------------------------------------------------------------
class StateMachine(Protocol):
    """What the harness drives (``engine.shard.ports.Engine`` is one)."""

    def handle(self, buf: Any, offset: int = 0) -> int: ...

    def snapshot(self) -> bytes: ...

    def validate(self) -> None: ...


class Rng(Protocol):
    """Where a generator draws its decisions from."""

    def int(self, lo: int, hi: int) -> int: ...

    def chance(self, p: float) -> bool: ...

    def pick(self, seq: Sequence[Any]) -> Any: ...

    def weighted(self, options: Sequence[tuple[int, Any]]) -> Any: ...


class CommandGenerator(Protocol):
    """A stream of commands: one 64-byte wire struct per ``next``."""

    def next(self, r: Rng) -> bytes: ...


class SeededRng:
    """Decisions from ``random.Random(seed)``: long, reproducible streams."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self._r.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self._r.randrange(len(seq))]

    def weighted(self, options: Sequence[tuple[int, Any]]) -> Any:
        x = self._r.random() * sum(w for w, _ in options)
        for w, value in options:
            if x < w:
                return value
            x -= w
        return options[-1][1]


def generate(make: Callable[[], CommandGenerator], seed: int, n: int) -> list[bytes]:
    """``n`` commands from a fresh generator and ``SeededRng(seed)`` (same seed, same bytes)."""
    gen, rng = make(), SeededRng(seed)
    return [gen.next(rng) for _ in range(n)]


# ---- describing messages and mismatches -------------------------------------------------------------
def _name(enum: Any, value: int) -> str:
    try:
        return f"{enum(value).name}({value})"
    except ValueError:
        return str(value)


def describe_message(msg: bytes) -> str:
    """One 64-byte wire message as ``NAME {field: value}`` with enum fields by name; hex if undecodable."""
    if len(msg) < SLOT_BYTES or msg[0] not in BY_TYPE:
        return f"<{len(msg)} bytes, type {msg[0] if msg else None}> {msg.hex()}"
    d: dict[str, Any] = dict(decode(msg))
    name = MsgType(d.pop("msg_type")).name
    if d.get("version") == 1 and d.get("length") == SLOT_BYTES:
        del d["version"], d["length"]
    if "reason" in d:
        d["reason"] = _name(RejectCode if name == "REJECTED" else CancelReason, d["reason"])
    if "command" in d:
        d["command"] = _name(MsgType, d["command"])
    if name == "NEW_ORDER" and d.get("flags"):
        d["flags"] = f"{d['flags']:#04x} (stp {(d['flags'] >> STP_SHIFT) & 7})"
    return f"{name} {d}"


def slots(buf: bytes) -> list[bytes]:
    return [buf[i : i + SLOT_BYTES] for i in range(0, len(buf), SLOT_BYTES)]


def first_difference(expected: bytes, actual: bytes) -> int:
    """Byte offset of the first differing 64-byte slot (-1: none)."""
    for pos in range(0, max(len(expected), len(actual)), SLOT_BYTES):
        if expected[pos : pos + SLOT_BYTES] != actual[pos : pos + SLOT_BYTES]:
            return pos
    return -1


def events_mismatch(
    label: str,
    index: int,
    command: bytes,
    expected: bytes,
    actual: bytes,
    exp_code: int,
    got_code: Any,
    describe: Callable[[bytes], str] = describe_message,
) -> str:
    """The assertion message: the command, the first differing event, and both event lists."""
    lines = [f"{label}: command #{index} differs", f"  command: {describe(command)}"]
    if exp_code != got_code:
        lines.append(f"  return code: expected {_name(RejectCode, exp_code)}, got {got_code!r}")
    exp, got = slots(expected), slots(actual)
    if len(actual) % SLOT_BYTES:
        lines.append(f"  actual events are {len(actual)} bytes, not a multiple of {SLOT_BYTES}")
    first = next(
        (k for k, (a, b) in enumerate(zip(exp, got, strict=False)) if a != b), min(len(exp), len(got))
    )
    lines.append(f"  {len(exp)} events expected, {len(got)} actual; first difference at event {first}:")
    lines.append(f"    expected: {describe(exp[first]) if first < len(exp) else '(none)'}")
    lines.append(f"    actual:   {describe(got[first]) if first < len(got) else '(none)'}")
    for title, evs in (("expected", exp), ("actual", got)):
        lines.append(f"  all {title} events:")
        lines.extend(f"    [{k}] {describe(e)}" for k, e in enumerate(evs[:20]))
        if len(evs) > 20:
            lines.append(f"    ... {len(evs) - 20} more")
    return "\n".join(lines)


def bytes_mismatch(label: str, expected: bytes, actual: bytes) -> str:
    """Where two snapshots first differ, when the twin knows no better (``Twin.snapshot_diff``)."""
    first = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), None)
    return f"{label}: snapshots differ ({len(expected)} vs {len(actual)} bytes), first at byte {first}"


# ---- a pair of implementations ----------------------------------------------------------------------
@dataclass(frozen=True)
class Twin:
    """Two implementations of one state machine, and how to build, restore and compare them."""

    name: str
    reference: Callable[[Any], StateMachine]  # sink -> the specification
    candidate: Callable[[Any], StateMachine]  # sink -> the implementation under test
    restore_reference: Callable[[Any, bytes], StateMachine]  # (sink, snapshot) -> restored
    restore_candidate: Callable[[Any, bytes], StateMachine]
    sink: Callable[[], Any] = WireEventWriter  # anything with take() -> bytes
    describe: Callable[[bytes], str] = describe_message
    snapshot_diff: Callable[[str, bytes, bytes], str] = bytes_mismatch
    # extra checks of a subject against a snapshot it produced at a checkpoint (queries, views)
    state_check: Callable[[Any, bytes, str], None] | None = None


@dataclass(frozen=True)
class Reference:
    """The reference's outputs for one stream: events and return code per command, and snapshots by
    the number of commands done (0 = before the first)."""

    events: list[bytes]
    codes: list[int]
    snapshots: dict[int, bytes] = field(default_factory=dict)

    @property
    def final(self) -> bytes:
        return self.snapshots[max(self.snapshots)]


def reference_run(twin: Twin, cmds: Sequence[bytes], every: int = 500) -> Reference:
    """Run the reference over ``cmds``: events and code after each command, snapshots every ``every``."""
    sink = twin.sink()
    subject = twin.reference(sink)
    events, codes, snaps = [], [], {0: subject.snapshot()}
    for i, cmd in enumerate(cmds, 1):
        codes.append(int(subject.handle(cmd)))
        events.append(sink.take())
        if i % every == 0 or i == len(cmds):
            snaps[i] = subject.snapshot()
    return Reference(events, codes, snaps)


def check_against(
    twin: Twin,
    subject: StateMachine,
    sink: Any,
    cmds: Sequence[bytes],
    ref: Reference,
    label: str,
    start: int = 0,
    stop: int | None = None,
    whole_buffer: bool = False,
) -> None:
    """Feed ``cmds[start:stop]`` one at a time: events and codes equal ``ref``'s after every command;
    at each of ``ref``'s checkpoints ``validate()`` holds and the snapshot (and ``state_check``) agree.

    ``whole_buffer``: hand the subject the whole stream as one memoryview and an offset."""
    stop = len(cmds) if stop is None else stop
    whole = memoryview(b"".join(cmds)) if whole_buffer else None
    for i in range(start, stop):
        code = subject.handle(whole, i * SLOT_BYTES) if whole is not None else subject.handle(cmds[i])
        got = sink.take()
        if got != ref.events[i] or code != ref.codes[i]:
            raise AssertionError(
                events_mismatch(label, i, cmds[i], ref.events[i], got, ref.codes[i], code, twin.describe)
            )
        done = i + 1
        if done in ref.snapshots:
            subject.validate()
            snap = subject.snapshot()
            where = f"{label} after {done} commands"
            if snap != ref.snapshots[done]:
                raise AssertionError(twin.snapshot_diff(where, ref.snapshots[done], snap))
            if twin.state_check is not None:
                twin.state_check(subject, snap, where)


def snapshots_at(twin: Twin, make: Callable[[Any], StateMachine], cmds: Sequence[bytes], cuts: Iterable[int]) -> dict[int, bytes]:  # fmt: skip
    """Snapshots of a subject built by ``make`` after ``cut`` commands, for each cut."""
    wanted = set(cuts)
    sink = twin.sink()
    subject = make(sink)
    out = {}
    for i, cmd in enumerate(cmds):
        if i in wanted:
            out[i] = subject.snapshot()
        subject.handle(cmd)
        sink.take()
    if len(cmds) in wanted:
        out[len(cmds)] = subject.snapshot()
    return out


def run_differential(
    twin: Twin,
    cmds: Sequence[bytes],
    ref: Reference | None = None,
    *,
    every: int = 500,
    restore_at: Iterable[int] = (),
    cross_restore_at: int | None = None,
    whole_buffer: bool = False,
    label: str = "",
) -> Reference:
    """The whole discipline over one stream (see the module docstring); returns the reference run.

    * the candidate against the reference, command by command, snapshots at checkpoints;
    * for each cut in ``restore_at``: the candidate restored from ITS OWN snapshot after ``cut``
      commands gives the same snapshot back and continues identically to the end;
    * at ``cross_restore_at``: the candidate restored from the reference's snapshot, and the
      reference restored from the candidate's, each continue identically to the end.
    """
    label = label or twin.name
    ref = ref if ref is not None else reference_run(twin, cmds, every)
    sink = twin.sink()
    candidate = twin.candidate(sink)
    check_against(twin, candidate, sink, cmds, ref, label, whole_buffer=whole_buffer)
    final = candidate.snapshot()
    if final != ref.final:
        raise AssertionError(twin.snapshot_diff(f"{label} at the end", ref.final, final))
    cuts = sorted(set(restore_at))
    if cuts:
        for cut, blob in snapshots_at(twin, twin.candidate, cmds, cuts).items():
            sink = twin.sink()
            restored = twin.restore_candidate(sink, blob)
            again = restored.snapshot()
            if again != blob:
                raise AssertionError(
                    twin.snapshot_diff(f"{label}: restore({cut}) then snapshot()", blob, again)
                )
            restored.validate()
            check_against(
                twin, restored, sink, cmds, ref, f"{label} restored from itself at {cut}", start=cut
            )
    if cross_restore_at is not None:
        cut = cross_restore_at
        theirs = ref.snapshots.get(cut) or snapshots_at(twin, twin.reference, cmds, [cut])[cut]
        sink = twin.sink()
        restored = twin.restore_candidate(sink, theirs)
        restored.validate()
        check_against(
            twin, restored, sink, cmds, ref, f"{label}: candidate restored from the reference at {cut}", cut
        )
        mine = snapshots_at(twin, twin.candidate, cmds, [cut])[cut]
        sink = twin.sink()
        restored = twin.restore_reference(sink, mine)
        restored.validate()
        check_against(
            twin, restored, sink, cmds, ref, f"{label}: reference restored from the candidate at {cut}", cut
        )
    return ref


def check_batch(
    twin: Twin, cmds: Sequence[bytes], ref: Reference, feed: Callable[[Any, bytes], None], label: str = ""
) -> None:
    """``feed(candidate, blob)`` (one or more ``handle_batch`` calls over the concatenated stream) gives
    the concatenation of the command-by-command events and the same final state."""
    label = label or f"{twin.name} handle_batch"
    sink = twin.sink()
    candidate = twin.candidate(sink)
    feed(candidate, b"".join(cmds))
    got = sink.take()
    expected = b"".join(ref.events)
    if got != expected:
        raise AssertionError(batch_mismatch(label, cmds, ref, got, twin.describe))
    snap = candidate.snapshot()
    if snap != ref.final:
        raise AssertionError(twin.snapshot_diff(f"{label} at the end", ref.final, snap))


def batch_mismatch(
    label: str,
    cmds: Sequence[bytes],
    ref: Reference,
    got: bytes,
    describe: Callable[[bytes], str] = describe_message,
) -> str:
    """Name the command whose events a batch run got wrong (by the reference's event boundaries)."""
    pos = first_difference(b"".join(ref.events), got)
    ends = np.cumsum([len(e) for e in ref.events])
    k = min(int(np.searchsorted(ends, pos, side="right")), len(cmds) - 1)
    start = int(ends[k - 1]) if k else 0
    window = got[start : start + max(len(ref.events[k]), SLOT_BYTES * 4)]
    label = f"{label} (first difference at byte {pos}; actual events shown from the same offset)"
    return events_mismatch(label, k, cmds[k], ref.events[k], window, ref.codes[k], ref.codes[k], describe)
