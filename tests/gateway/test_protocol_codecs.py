"""Shared codecs: every JSON event the gateway sends decodes in the SDK to the same typed event as
its binary struct; the public liquidations channel carries no account."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
import pytest

from engine.types.enums import MsgType
from engine.wire.codec import decode, encode
from engine.wire.layout import SEQ_AT
from gateway.fanout import EventFanout
from gateway.protocol.json_events import event_json
from gateway.protocol.market_info import MarketCatalog, MarketInfo
from gateway.rate_limiter import TokenBucket
from gateway.sdk.codec import SdkCodec, typed_event
from gateway.session import Session

CATALOG = MarketCatalog(
    [
        MarketInfo(1, "BTC-USD", Decimal("0.5"), Decimal("0.001")),
        MarketInfo(2, "ETH-USD", Decimal("0.01"), Decimal("0.01")),
    ]
)
# event type -> fields to randomise (the rest stay 0); enums within their ranges
EVENTS: dict[MsgType, dict[str, Any]] = {
    MsgType.ACCEPTED: {"order_id": 1, "client_order_id": 1, "side": (0, 1), "price_ticks": 1, "size_lots": 1},
    MsgType.REJECTED: {"order_id": 1, "client_order_id": 1, "reason": (201, 202), "command": (1, 2, 3, 4)},
    MsgType.FILL: {
        "taker_order_id": 1,
        "maker_order_id": 1,
        "price_ticks": 1,
        "size_lots": 1,
        "taker_account": 1,
        "maker_account": 1,
        "taker_side": (0, 1),
        "flags": (0, 1, 2, 3),
    },
    MsgType.CANCELLED: {"order_id": 1, "client_order_id": 1, "size_lots": 1, "reason": (0, 1, 2, 3, 4)},
    MsgType.AMENDED: {
        "order_id": 1,
        "client_order_id": 1,
        "price_ticks": 1,
        "size_lots": 1,
        "kept_priority": (0, 1),
    },
    MsgType.TRADE: {"price_ticks": 1, "size_lots": 1, "taker_side": (0, 1)},
    MsgType.BBO: {"bid_price_ticks": 1, "bid_size_lots": 1, "ask_price_ticks": 1, "ask_size_lots": 1},
    MsgType.TRIGGERED: {"order_id": 1, "client_order_id": 1, "mark_price_ticks": 1},
    MsgType.MARKET_STATUS: {"status": (0, 1, 2)},
    MsgType.ORDER_STATE: {
        "order_id": 1,
        "client_order_id": 1,
        "price_ticks": 1,
        "open_lots": 1,
        "request_id": 1,
        "side": (0, 1),
        "state": (0, 1, 2),
        "last": (0, 1),
    },
    MsgType.LIQUIDATION: {
        "account": 1,
        "kind": (0, 1, 2, 3, 4, 5, 6, 7),
        "side": (0, 1),
        "size_atoms": 1,
        "price_micro": 1,
        "amount_micro": 1,
        "insurance_micro": 1,
    },
    MsgType.ADL_RANK: {"rank": (0, 1, 5)},
    MsgType.MARK: {"mark_micro": 1, "index_micro": 1, "status": (0, 1, 2), "ts_ns": 1},
    MsgType.FUNDING_RATE: {
        "predicted_rate_ppb": 1,
        "last_rate_ppb": 1,
        "next_funding_ns": 1,
        "interval_ns": 1,
    },
    MsgType.RESOLUTION_STATUS: {"state": (0, 1, 2), "outcome": (0, 1), "final_at_ns": 1, "ts_ns": 1},
}


def _random_event(rng: random.Random, t: MsgType) -> bytes:
    fields: dict[str, Any] = {"seq": rng.randrange(1, 1 << 40)}
    for name, kind in EVENTS[t].items():
        fields[name] = rng.choice(kind) if isinstance(kind, tuple) else rng.randrange(1, 1 << 31)
    return encode(t, rng.choice((1, 2)), **fields)


@pytest.mark.parametrize("t", list(EVENTS))
def test_json_events_decode_to_the_binary_events_typed_form(t: MsgType) -> None:
    codec = SdkCodec()
    codec.load_markets({"markets": [m.as_json() for m in CATALOG], "assets": []})
    rng = random.Random(int(t))
    for _ in range(50):
        raw = _random_event(rng, t)
        want = typed_event(int(t), decode(raw, 0))
        msg = orjson.loads(orjson.dumps(event_json(raw, 0, CATALOG)))
        got = codec.json_order_event(msg["type"], msg)
        assert got is not None, msg
        typed = typed_event(*got)
        if t == MsgType.REJECTED:  # JSON rejects carry no ts_ns and the market may be None
            assert (typed.code, typed.command, typed.order_id) == (want.code, want.command, want.order_id)
        else:
            assert typed == want, (msg, typed, want)


class _Raw:
    def get_write_buffer_size(self) -> int:
        return 0


class _Transport:
    def __init__(self) -> None:
        self.underlying_transport = _Raw()
        self.sent: list[tuple[Any, bytes]] = []

    def send(self, msg_type: Any, data: bytes) -> None:
        self.sent.append((msg_type, bytes(data)))


def test_liquidations_channel_zeroes_account_and_seq_and_reaches_only_its_subscribers() -> None:
    market_subs: dict[int, set[Session]] = {}
    sessions = {}
    for name, binary, channel in (
        ("bin", True, "liquidations"),
        ("json", False, "liquidations"),
        ("book", True, "book"),
    ):
        s = Session(_Transport(), binary, "x", TokenBucket(0, 0), TokenBucket(0, 0), 1 << 30, 1 << 31)
        s.subscribe(1, channel)
        market_subs.setdefault(1, set()).add(s)
        sessions[name] = s
    fanout = EventFanout([], CATALOG, {}, market_subs)
    liq = encode(MsgType.LIQUIDATION, 1, seq=9, account=42, kind=1, size_atoms=5, price_micro=7)
    other = encode(MsgType.LIQUIDATION, 2, seq=10, account=43, kind=1)
    fanout.publish_liquidations(liq + other + encode(MsgType.ACCEPTED, 1, seq=3, account=42))
    ((_, sent),) = sessions["bin"].transport.sent
    assert len(sent) == 64 and decode(sent, 0)["account"] == 0 and sent[SEQ_AT : SEQ_AT + 8] == bytes(8)
    assert decode(sent, 0)["size_atoms"] == 5
    ((_, text),) = sessions["json"].transport.sent
    j = orjson.loads(text)
    assert j["type"] == "liquidation" and j["account"] == 0 and j["seq"] == 0 and j["market"] == 1
    assert sessions["book"].transport.sent == []
