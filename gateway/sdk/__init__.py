"""Python SDK for the hx gateway: ``HxClient`` (both protocols), ``LocalBook``, typed events and errors."""

from gateway.sdk.client import HxClient
from gateway.sdk.errors import ConnectionClosed, HxError, LoginFailed, OrderRejected, RequestRejected
from gateway.sdk.events import (
    AdlRank,
    Balance,
    Bbo,
    Disconnected,
    Fill,
    Liquidation,
    Margin,
    MarketStatusChanged,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderRejectedEvent,
    OrderState,
    OrderTriggered,
    Position,
    Reconnected,
    Trade,
)
from gateway.sdk.local_book import LocalBook

__all__ = [
    "AdlRank",
    "Balance",
    "Bbo",
    "Disconnected",
    "ConnectionClosed",
    "Fill",
    "HxClient",
    "HxError",
    "LocalBook",
    "Liquidation",
    "LoginFailed",
    "MarketStatusChanged",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderRejected",
    "OrderRejectedEvent",
    "OrderState",
    "OrderTriggered",
    "Margin",
    "Position",
    "Reconnected",
    "RequestRejected",
    "Trade",
]
