"""Typed errors of the SDK: every refusal carries the gateway's or engine's RejectCode."""

from __future__ import annotations

from engine.types.enums import RejectCode, reject_message


class HxError(Exception):
    """Base of every SDK error."""


class RequestRejected(HxError):
    """The gateway or the engine refused a request; ``code`` is a :class:`RejectCode`."""

    def __init__(
        self,
        code: int,
        message: str = "",
        retry_after_s: float = 0.0,
        seq: int = 0,
        client_order_id: int = 0,
        order_id: int = 0,
    ) -> None:
        try:
            self.code: RejectCode | int = RejectCode(code)
            name = self.code.name
        except ValueError:
            self.code = code
            name = str(code)
        self.reason = name
        self.message = message or reject_message(code)
        self.retry_after_s = retry_after_s
        self.seq = seq  # 0: refused by the gateway; > 0: by the engine (market sequence)
        self.client_order_id = client_order_id
        self.order_id = order_id
        self.field = ""  # the offending field's JSON path, when the gateway names one
        extra = f", retry after {retry_after_s * 1000:.0f} ms" if retry_after_s else ""
        super().__init__(f"{name} ({int(code)}): {self.message}{extra}")


class OrderRejected(RequestRejected):
    """An order command (place, cancel, amend) was refused."""


class LoginFailed(RequestRejected):
    """Login or agent approval refused (bad signature, expired or replayed challenge, ...)."""


class ConnectionClosed(HxError):
    """The connection closed; ``code`` and ``reason`` are the WebSocket close code and text."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed ({code}): {reason or 'no reason given'}")
