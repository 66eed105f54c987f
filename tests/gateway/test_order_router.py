"""The order router over real rings: by market (shards) or by account (risk partitions), commands
for every market broadcast, and backpressure reported per struct, never a partial silent loss."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from engine.ring import RingBuffer, RingRef
from engine.types.enums import MsgType
from engine.wire.codec import decode, encode
from engine.wire.layout import ALL_MARKETS
from gateway.order_router import RingRouter


def _orders(markets: list[int], account: int = 7) -> bytes:
    return b"".join(
        encode(MsgType.NEW_ORDER, m, client_order_id=k + 1, price_ticks=1, size_lots=1, account=account)
        for k, m in enumerate(markets)
    )


def _drain(ring: RingBuffer) -> list[tuple[int, int]]:
    cons = ring.consumer(0)
    data = cons.read(timeout_s=0) if cons.available() else b""
    cons.close()
    return [
        (decode(data, off)["market_id"], decode(data, off)["client_order_id"])
        for off in range(0, len(data), 64)
    ]


@pytest.fixture
def rings(ring_name: str):  # type: ignore[no-untyped-def]
    with ExitStack() as stack:
        made = [
            stack.enter_context(RingBuffer.create(f"{ring_name}-{k}", capacity=8, consumers=1))
            for k in range(3)
        ]
        yield made


def test_by_market_splits_a_frame_and_broadcasts_every_market_commands(rings) -> None:  # type: ignore[no-untyped-def]
    router = RingRouter(tuple(RingRef(r.name) for r in rings), "market")
    try:
        markets = [1, 2, 4, ALL_MARKETS, 3]
        assert router.submit(_orders(markets), markets, 7) == []
        got = [_drain(r) for r in rings]
        assert got[0] == [(ALL_MARKETS, 4), (3, 5)]  # 3 % 3 == 0
        assert got[1] == [(1, 1), (4, 3), (ALL_MARKETS, 4)]
        assert got[2] == [(2, 2), (ALL_MARKETS, 4)]
        assert router.published == 7
    finally:
        router.close()


def test_by_account_sends_everything_of_an_account_to_its_partition(rings) -> None:  # type: ignore[no-untyped-def]
    router = RingRouter(tuple(RingRef(r.name) for r in rings), "account")
    try:
        assert router.submit(_orders([1, 2, ALL_MARKETS], account=5), [1, 2, ALL_MARKETS], 5) == []
        got = [_drain(r) for r in rings]
        assert got == [[], [], [(1, 1), (2, 2), (ALL_MARKETS, 3)]]  # 5 % 3 == 2
    finally:
        router.close()


def test_a_full_destination_refuses_its_share_and_names_the_indexes(rings) -> None:  # type: ignore[no-untyped-def]
    router = RingRouter(tuple(RingRef(r.name) for r in rings), "market")
    try:
        assert router.submit(_orders([1] * 8), [1] * 8) == []  # ring 1 is now full (capacity 8)
        markets = [1, 2, 1, 3]
        refused = router.submit(_orders(markets), markets)
        assert refused == [0, 2]  # only ring 1's share; the others went through
        assert _drain(rings[2]) == [(2, 2)] and _drain(rings[0]) == [(3, 4)]
    finally:
        router.close()


def test_bad_routes_are_refused() -> None:
    with pytest.raises(ValueError, match="route"):
        RingRouter((RingRef("x"),), "round-robin")
    with pytest.raises(ValueError, match="destination"):
        RingRouter((), "market")
