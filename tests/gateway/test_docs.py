"""docs/gateway.md names every op, event, channel and enum word a client meets (a client is
written from the docs alone)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import gateway.server  # noqa: F401  (registers every control op)
from engine.types.asset_spec import AssetKind
from engine.types.enums import (
    BalanceReason,
    CancelReason,
    LiquidationKind,
    MarginMode,
    MarketKind,
    MarketStatus,
    MsgType,
    OrderState,
    OrderType,
    PriceStatus,
    ResolutionAction,
    ResolutionState,
    Side,
    StpMode,
    TimeInForce,
)
from engine.wire.codec import encode
from gateway.channels import CHANNELS
from gateway.control import CONTROL_OPS
from gateway.protocol.json_events import event_json
from gateway.protocol.market_info import MarketCatalog, MarketInfo
from gateway.protocol.vocabulary import COMMAND_NAMES, ORDER_OPS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
# every message type the gateway sends as JSON, besides the events (control replies and notices)
REPLIES = (
    "challenge login agent_approved agent_revoked subscribed unsubscribed snapshot pong markets info "
    "stats error conflated resumed open_orders order_status leverage what_if cancel_on_disconnect "
    "dead_man dead_man_fired faucet withdraw resolve"
).split()


def test_every_op_is_documented() -> None:
    for op in (*CONTROL_OPS, *ORDER_OPS):
        assert f'"op": "{op}"' in DOC, f"op {op} is not in docs/gateway.md"


def test_every_json_event_and_reply_type_is_documented() -> None:
    from decimal import Decimal

    catalog = MarketCatalog([MarketInfo(1, "BTC-USD", Decimal("0.5"), Decimal("0.001"))])
    types = set(REPLIES)
    rng = random.Random(1)
    for t in MsgType:
        if t < 32 or t >= 64:
            continue
        try:
            j = event_json(encode(t, 1, seq=rng.randrange(1, 100)), 0, catalog)
        except (KeyError, ValueError):
            continue
        if j is not None:
            types.add(j["type"])
    for t in sorted(types):
        assert f'"type": "{t}"' in DOC, f"message type {t} is not in docs/gateway.md"


def test_every_channel_and_enum_word_is_documented() -> None:
    for name in CHANNELS:
        assert f"`{name}`" in DOC, f"channel {name} is not in docs/gateway.md"
    for enum in (
        Side,
        TimeInForce,
        OrderType,
        StpMode,
        CancelReason,
        MarketStatus,
        MarketKind,
        AssetKind,
        BalanceReason,
        LiquidationKind,
        OrderState,
        MarginMode,
        PriceStatus,
        ResolutionState,
        ResolutionAction,
    ):
        for m in enum:
            assert re.search(rf"`{m.name.lower()}` {int(m)}\b", DOC), (
                f"{enum.__name__}.{m.name} is not in the docs"
            )
    for command in COMMAND_NAMES.values():
        assert f"`{command}`" in DOC
