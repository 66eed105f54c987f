"""Python SDK for the hx gateway: ``HxClient`` (both protocols), ``LocalBook``, typed events and errors."""

from gateway.sdk.client import HxClient
from gateway.sdk.errors import ConnectionClosed, HxError, LoginFailed, OrderRejected, RequestRejected
from gateway.sdk.events import (
    Balance,
    Bbo,
    Disconnected,
    Fill,
    Margin,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderRejectedEvent,
    Position,
    Reconnected,
    Trade,
)
from gateway.sdk.local_book import LocalBook

__all__ = [
    "Balance",
    "Bbo",
    "Disconnected",
    "ConnectionClosed",
    "Fill",
    "HxClient",
    "HxError",
    "LocalBook",
    "LoginFailed",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderRejected",
    "OrderRejectedEvent",
    "Margin",
    "Position",
    "Reconnected",
    "RequestRejected",
    "Trade",
]
