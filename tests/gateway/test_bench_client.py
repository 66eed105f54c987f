"""The e2e benchmark's client tally: its plain loop and its vectorised path count the same."""

from __future__ import annotations

import random

from engine.types.enums import MsgType
from engine.wire.codec import encode
from perf.bench_e2e import _Tally

BASE = 1


def _frames(rng: random.Random, n: int) -> list[bytes]:
    """ACCEPTED for every order (odd ones aggressive), FILLs of the aggressive ones, a few rejects."""
    events = []
    for k in range(n):
        events.append(encode(MsgType.ACCEPTED, 1, order_id=1000 + k, client_order_id=BASE + k))
        if k & 1:
            events.append(encode(MsgType.FILL, 1, taker_order_id=1000 + k, maker_order_id=999 + k))
    events.append(encode(MsgType.REJECTED, 1, client_order_id=BASE + n, reason=332))
    frames, i = [], 0
    while i < len(events):
        k = rng.choice((1, 3, 40, 300))
        frames.append(b"".join(events[i : i + k]))
        i += k
    return frames


def _tally(frames: list[bytes], n: int, vector_min: int) -> tuple[object, ...]:
    tally = _Tally(n, BASE)
    tally.VECTOR_MIN = vector_min
    for now, frame in enumerate(frames, 1):
        tally.on_events(frame, now)
    return tally.acked, tally.rejected, tally.filled, bytes(tally.ack_ns), bytes(tally.fill_ns), tally.taker


def test_tally_paths_agree() -> None:
    rng = random.Random(3)
    n = 2000
    frames = _frames(rng, n)
    loop = _tally(frames, n, 1 << 30)
    vector = _tally(frames, n, 1)
    assert loop == vector
    assert loop[:3] == (n, 1, n // 2)
