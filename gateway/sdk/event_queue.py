"""The SDK's event queue: every private and public event a client receives, typed, in arrival order.

An ``asyncio.Queue`` (``get``, ``get_nowait``, ``empty``) that can be switched off
(``keep_events=False``: a client that only awaits its requests' answers does not grow a queue).
"""

from __future__ import annotations

import asyncio
from typing import Any


class EventQueue(asyncio.Queue[Any]):
    """Typed events (``gateway.sdk.events``) in the order the connection delivered them."""

    def __init__(self, keep: bool = True) -> None:
        super().__init__()
        self.keep = keep

    def push(self, event: Any) -> None:
        """Queue ``event`` unless the client does not keep events."""
        if self.keep:
            self.put_nowait(event)
