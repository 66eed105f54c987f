"""Subscription channels: one row each (name, the public event types it carries, what a subscriber
gets first).

Adding a channel is adding a row to ``CHANNELS``: the subscribe/unsubscribe ops, the fan-out's
per-channel filters and the docs test all read this table. Every per-market subscriber also
receives MARKET_STATUS of that market, whatever its channels.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.types.enums import MsgType


@dataclass(frozen=True)
class Channel:
    """One public stream a session can subscribe to, per market."""

    name: str
    msg_types: frozenset[int]  # the public event types it carries
    snapshot_first: bool = False  # the subscriber gets a book snapshot before the live deltas
    derived: bool = False  # made by the gateway from private events (account and seq zeroed)
    doc: str = ""


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel(
            "book",
            frozenset({int(MsgType.L2_DELTA)}),
            snapshot_first=True,
            doc="L2 level deltas after a snapshot",
        ),
        Channel("trades", frozenset({int(MsgType.TRADE)}), doc="public trades (no accounts)"),
        Channel("bbo", frozenset({int(MsgType.BBO)}), doc="best bid and offer"),
        # the oracle's (its public ring): a MARK carries the mark and the index of the market's asset
        Channel("mark", frozenset({int(MsgType.MARK)}), doc="mark price (with the index), on change"),
        Channel("index", frozenset({int(MsgType.MARK)}), doc="index price of the base asset (a MARK event)"),
        Channel(
            "funding",
            frozenset({int(MsgType.FUNDING_RATE)}),
            doc="a perp's predicted and last funding rates per payment interval, next payment time",
        ),
        Channel(
            "liquidations",
            frozenset({int(MsgType.LIQUIDATION)}),
            derived=True,
            doc="liquidation steps, account and seq zeroed",
        ),
    )
}
# to every subscriber of the market: its status, and a prediction market's resolution
ALWAYS_SENT = frozenset({int(MsgType.MARKET_STATUS), int(MsgType.RESOLUTION_STATUS)})
CHANNEL_NAMES = tuple(CHANNELS)


def channel_types(channels: frozenset[str]) -> frozenset[int]:
    """Public event types a subscriber to ``channels`` receives (MARKET_STATUS always)."""
    out = set(ALWAYS_SENT)
    for name in channels:
        out |= CHANNELS[name].msg_types
    return frozenset(out)


def public_types() -> frozenset[int]:
    """Every event type some channel carries as the engine publishes it (plus MARKET_STATUS)."""
    return channel_types(frozenset(name for name, c in CHANNELS.items() if not c.derived))
