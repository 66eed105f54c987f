"""The fan-out's two routing paths (plain Python for small batches, numpy for large) agree.

Random event batches (private events of several accounts, self-trades, public events of several
markets) go through two ``EventFanout`` s with identical sessions, one forced onto each path;
every session must receive the same frames, conflating sessions the same drop counts, and the
gateway's L2 books must end up equal.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

import gateway.fanout as fanout_module
from engine.types.enums import MsgType
from engine.wire.codec import encode
from gateway.fanout import EventFanout
from gateway.protocol.market_info import MarketCatalog, MarketInfo
from gateway.rate_limiter import TokenBucket
from gateway.session import Session

CATALOG = MarketCatalog(
    [
        MarketInfo(1, "BTC-USD", Decimal("0.5"), Decimal("0.001")),
        MarketInfo(2, "ETH-USD", Decimal("0.01"), Decimal("0.01")),
    ]
)
ACCOUNTS = (3, 5, 9)


class _Raw:
    def get_write_buffer_size(self) -> int:
        return 0


class _Transport:
    """Records what a session sends."""

    def __init__(self) -> None:
        self.underlying_transport = _Raw()
        self.sent: list[tuple[Any, bytes]] = []

    def send(self, msg_type: Any, data: bytes) -> None:
        self.sent.append((msg_type, bytes(data)))


def _sessions() -> tuple[list[Session], dict[int, set[Session]], dict[int, set[Session]]]:
    """Binary and JSON sessions: two per account, various subscriptions, one conflating."""
    sessions, accounts, market_subs = [], {}, {}
    subs_cycle = [(), (("book", 1),), (("trades", 1), ("bbo", 2)), (("book", 1), ("book", 2), ("bbo", 1))]
    k = 0
    for acct in ACCOUNTS:
        for binary in (True, False):
            sess = Session(_Transport(), binary, "x", TokenBucket(0, 0), TokenBucket(0, 0), 1 << 30, 1 << 31)
            sess.account_id = acct
            accounts.setdefault(acct, set()).add(sess)
            for channel, market in subs_cycle[k % len(subs_cycle)]:
                sess.subscribe(market, channel)
                market_subs.setdefault(market, set()).add(sess)
            k += 1
            sessions.append(sess)
    sessions[-1].conflating = True
    return sessions, accounts, market_subs


def _event(rng: random.Random, seqs: dict[int, int]) -> bytes:
    market = rng.choice((1, 2))
    seqs[market] += 1
    seq = seqs[market]
    acct = rng.choice((*ACCOUNTS, 77))  # 77: an account with no session here
    kind = rng.randrange(9)
    if kind == 0:
        return encode(MsgType.ACCEPTED, market, seq=seq, order_id=seq, client_order_id=seq, account=acct)
    if kind == 1:
        maker = acct if rng.random() < 0.3 else rng.choice(ACCOUNTS)
        return encode(
            MsgType.FILL,
            market,
            seq=seq,
            taker_account=acct,
            maker_account=maker,
            price_ticks=10,
            size_lots=1,
        )
    if kind == 2:
        return encode(MsgType.CANCELLED, market, seq=seq, order_id=seq, account=acct, reason=1)
    if kind == 3:
        return encode(MsgType.REJECTED, market, seq=seq, account=acct, reason=332, command=1)
    if kind in (4, 5):
        size = rng.choice((0, 1, 5))
        return encode(
            MsgType.L2_DELTA,
            market,
            seq=seq,
            price_ticks=rng.randrange(95, 105),
            size_lots=size,
            order_count=1 if size else 0,
            side=rng.randrange(2),
        )
    if kind == 6:
        return encode(MsgType.TRADE, market, seq=seq, price_ticks=100, size_lots=2, taker_side=1)
    if kind == 7:
        return encode(MsgType.BBO, market, seq=seq, bid_price_ticks=99, ask_price_ticks=101)
    return encode(MsgType.MARKET_STATUS, market, seq=seq, status=1)


def _run(small_batch: int, batches: list[bytes], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(fanout_module, "SMALL_BATCH", small_batch)
    sessions, accounts, market_subs = _sessions()
    fan = EventFanout([], CATALOG, accounts, market_subs)
    for batch in batches:
        fan._process(bytes(batch), len(batch) // 64)
    sent = [s.transport.sent for s in sessions]
    dropped = [s.dropped for s in sessions]
    books = {m: (b.seq, b.as_tuple()) for m, b in fan.books.items()}
    return sent, dropped, books


@pytest.mark.parametrize("seed", range(6))
def test_small_and_vectorised_paths_route_identically(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    seqs = {1: 0, 2: 0}
    batches = [b"".join(_event(rng, seqs) for _ in range(rng.randint(1, 80))) for _ in range(40)]
    small = _run(1 << 30, batches, monkeypatch)
    vector = _run(0, batches, monkeypatch)
    assert small == vector
    assert any(small[0]), "sessions received something"


def test_lost_events_are_never_skipped_silently() -> None:
    """A drop of the gateway's cursor, or a batch the fan-out fails on, reaches ``on_lost`` (which
    restates and closes the sessions with the reason); the stream goes on from the head."""
    import os

    from engine.ring import RingBuffer

    name = f"hx-t-lost-{os.getpid()}"
    ring = RingBuffer.create(name, 16)
    lost: list[str] = []
    try:
        consumer = ring.consumer(0)
        fan = EventFanout([consumer], CATALOG, {}, {}, on_lost=lost.append)
        ring.publish(encode(MsgType.TRADE, 1, seq=1, price_ticks=10, size_lots=1))
        ring.drop_consumer(0)  # e.g. the ring judged the gateway stuck
        fan.poll()
        assert lost and "dropped" in lost[0]
        assert not consumer.is_dropped()  # resumed at the head
        ring.publish(encode(MsgType.TRADE, 1, seq=2, price_ticks=10, size_lots=1))

        def broken(data: bytes, n: int) -> None:
            raise RuntimeError("a routing bug")

        fan._process = broken  # type: ignore[method-assign]
        assert fan.poll() == 1  # released, not retried for ever
        assert lost[-1] == "the gateway failed to route a batch of events"
    finally:
        ring.close()
