"""The replay buffer: serves exactly what a session missed, never a history with a hole."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.types.enums import MsgType
from engine.wire.codec import decode, encode
from gateway import replay_buffer
from gateway.binary import GATEWAY_REQUEST_BIT
from gateway.replay_buffer import ReplayBuffer, SessionBoard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_spec import PerEventReplayBuffer  # noqa: E402

ALICE, BOB, CAROL = 3, 5, 9


def _buffer(tmp_path, **kw) -> ReplayBuffer:  # type: ignore[no-untyped-def]
    board = SessionBoard(tmp_path, window_s=60.0)
    board.touch(ALICE)
    board.touch(BOB)
    return ReplayBuffer(board, **kw)


def _stream(n: int, account: int, first_seq: int = 1, rng: random.Random | None = None) -> list[bytes]:
    rng = rng or random.Random(account)
    out = []
    for k in range(n):
        seq = first_seq + k
        kind = rng.randrange(4)
        if kind == 0:
            out.append(
                encode(MsgType.ACCEPTED, 1, seq=seq, order_id=seq, client_order_id=seq, account=account)
            )
        elif kind == 1:  # the maker's copy of a fill: the taker's side zeroed
            out.append(
                encode(MsgType.FILL, 1, seq=seq, maker_order_id=seq, maker_account=account, size_lots=1)
            )
        elif kind == 2:
            out.append(encode(MsgType.BALANCE, 0, seq=seq, account=account, asset=0, balance=k))
        else:
            out.append(encode(MsgType.CANCELLED, 2, seq=seq, order_id=seq, account=account))
    return out


def _seqs(events: list[bytes]) -> list[int]:
    return [decode(e, 0)["seq"] for e in events]


def test_resume_serves_every_event_after_the_seq_interleaved_accounts_apart(tmp_path) -> None:
    buf = _buffer(tmp_path)
    alice, bob = _stream(50, ALICE), _stream(30, BOB)
    mixed = alice[:20] + bob[:10] + alice[20:] + bob[10:] + _stream(5, CAROL)  # CAROL: no session
    for k in range(0, len(mixed), 7):
        buf.record(b"".join(mixed[k : k + 7]))
    events, why = buf.resume(ALICE, 17)
    assert why == "" and events == alice[17:]
    assert buf.resume(BOB, 0)[0] == bob
    assert buf.resume(ALICE, 50) == ([], "")  # nothing missed
    assert buf.resume(ALICE, 70) == ([], "")  # ahead of this gateway: the session skips up to 70
    assert buf.resume(CAROL, 0)[0] is None  # no recent session: nothing kept
    assert buf.events == 80


def test_a_gap_drops_the_history_and_old_resumes_are_refused(tmp_path) -> None:
    buf = _buffer(tmp_path)
    s = _stream(40, ALICE)
    buf.record(b"".join(s[:20]))
    buf.record(b"".join(s[25:]))  # 21..25 never seen by this gateway
    assert buf.gaps == 1
    events, why = buf.resume(ALICE, 10)
    assert events is None and "history starts at seq 26" in why
    assert _seqs(buf.resume(ALICE, 25)[0] or []) == list(range(26, 41))


def test_bounds_per_account_and_in_total(tmp_path) -> None:
    buf = _buffer(tmp_path, max_events=100, max_bytes=64 * 150)
    buf.record(b"".join(_stream(300, ALICE)))
    assert _seqs(buf.resume(ALICE, 200)[0] or []) == list(range(201, 301))
    assert buf.resume(ALICE, 150)[0] is None
    buf.record(b"".join(_stream(100, BOB)))  # 200 held > 150: the least recent account goes
    assert buf.events <= 150 and buf.resume(BOB, 0)[0] is not None and ALICE not in buf.histories


def test_the_gateways_own_order_state_answers_are_kept_in_sequence_but_never_replayed(tmp_path) -> None:
    buf = _buffer(tmp_path)
    ours = encode(MsgType.ORDER_STATE, 1, seq=2, account=ALICE, request_id=GATEWAY_REQUEST_BIT | 1, last=1)
    client = encode(MsgType.ORDER_STATE, 1, seq=3, account=ALICE, request_id=7, last=1)
    a1 = encode(MsgType.ACCEPTED, 1, seq=1, order_id=1, client_order_id=1, account=ALICE)
    a4 = encode(MsgType.ACCEPTED, 1, seq=4, order_id=4, client_order_id=4, account=ALICE)
    buf.record(a1 + ours + client + a4)
    assert buf.gaps == 0 and buf.resume(ALICE, 0)[0] == [a1, client, a4]


def test_session_board_shares_recent_sessions_between_gateways(tmp_path) -> None:
    a, b = SessionBoard(tmp_path, 60.0), SessionBoard(tmp_path, 60.0)
    a.touch(42)
    assert 42 not in b.recent
    b.refresh()
    assert 42 in b.recent


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    max_events=st.integers(1, 60),
    max_slots=st.integers(20, 400),
    gap_rate=st.sampled_from([0.0, 0.02, 0.2]),
    compiled=st.booleans(),
)
def test_chunks_answer_as_the_per_event_specification(
    seed: int, max_events: int, max_slots: int, gap_rate: float, compiled: bool
) -> None:
    """Random interleaved streams of recent and other accounts, with holes, cut into random
    batches, under tight bounds; sessions come and go: the same held counts, gaps, histories and
    resume answers (events and refusals) as one event at a time; batches read in C
    (``_hxreplay.split``) or by the Python reading (``compiled`` False)."""
    if compiled:
        assert replay_buffer._hxreplay is not None, "gateway.native._hxreplay is not built (make setup)"
    rng = random.Random(seed)
    accounts = [ALICE, BOB, CAROL, 11, 12]
    board_a = SessionBoard(None, window_s=60.0)
    board_b = SessionBoard(None, window_s=60.0)
    for a in accounts[:3]:
        board_a.touch(a)
        board_b.touch(a)
    fast = ReplayBuffer(board_a, max_events=max_events, max_bytes=64 * max_slots)
    fast.compiled = compiled
    spec = PerEventReplayBuffer(board_b, max_events=max_events, max_bytes=64 * max_slots)
    next_seq = dict.fromkeys(accounts, 1)
    for _round in range(12):
        events = []
        for _ in range(rng.randrange(0, 40)):
            a = rng.choice(accounts)
            if rng.random() < gap_rate:
                next_seq[a] += rng.randrange(1, 4)  # events this gateway never saw
            events += _stream(1, a, next_seq[a], rng)
            next_seq[a] += 1
        cut = 0
        while cut < len(events):
            k = rng.randrange(1, 12) if rng.random() < 0.7 else rng.randrange(12, 40)
            fast.record(b"".join(events[cut : cut + k]))
            spec.record(b"".join(events[cut : cut + k]))
            cut += k
        if rng.random() < 0.2:  # a session ends (the account is no longer recent) or one starts
            a = rng.choice(accounts)
            for board in (board_a, board_b):
                if a in board.recent:
                    del board.recent[a]
                    board.version += 1
                else:
                    board.touch(a)
            fast.prune()
            spec.prune()
        assert (fast.events, fast.gaps) == (spec.events, spec.gaps)
        assert list(fast.histories) == list(spec.histories)
        for a in accounts:
            assert fast.last_seq(a) == spec.last_seq(a)
            for after in {
                0,
                next_seq[a] - 1,
                max(0, next_seq[a] - 1 - max_events),
                rng.randrange(next_seq[a] + 2),
            }:
                assert fast.resume(a, after) == spec.resume(a, after)
