"""Python SDK for the hx gateway: ``HxClient`` (both protocols), ``LocalBook``, typed events and errors."""

from gateway.sdk.client import HxClient
from gateway.sdk.errors import ConnectionClosed, HxError, LoginFailed, OrderRejected, RequestRejected
from gateway.sdk.events import (
    Bbo,
    Fill,
    FundingRate,
    Mark,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderRejectedEvent,
    ResolutionStatus,
    Trade,
)
from gateway.sdk.local_book import LocalBook

__all__ = [
    "Bbo",
    "ConnectionClosed",
    "Fill",
    "FundingRate",
    "HxClient",
    "HxError",
    "LocalBook",
    "LoginFailed",
    "Mark",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderRejected",
    "OrderRejectedEvent",
    "RequestRejected",
    "ResolutionStatus",
    "Trade",
]
