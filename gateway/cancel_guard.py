"""Cancel on disconnect and the dead man's switch: opt-in protections against a vanished client.

* ``cancel_on_disconnect`` (per session): when that session's connection closes, for any reason,
  the gateway sends one CANCEL_ALL for the account (every market): every open order of the
  account is cancelled, including those other sessions placed.
* ``dead_man`` (per account, like Binance's countdown cancel-all or Hyperliquid's scheduled
  cancel): ``timeout_ms`` arms a countdown the client must renew before it runs out; when it runs
  out the gateway sends CANCEL_ALL for the account and tells the account's sessions
  (``dead_man_fired``). It keeps running when the session disconnects (that is the point);
  ``timeout_ms`` 0 disarms it.

Both live in the gateway process: a gateway that is killed cannot cancel. Clients that need that
guarantee too keep a second session on another gateway.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from engine.types.enums import MsgType, RejectCode
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS
from gateway.control import control_op
from gateway.session import Session

if TYPE_CHECKING:
    from gateway.server import GatewayServer

MIN_DEAD_MAN_MS = 1_000
MAX_DEAD_MAN_MS = 600_000


class CancelGuard:
    """Armed dead man's switches (by account) and the cancel they send."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.deadlines: dict[int, tuple[float, int]] = {}  # account -> (monotonic deadline, timeout ms)
        self.cancels = 0

    def cancel_all(self, account: int) -> bool:
        """One CANCEL_ALL of every market for ``account``; False on backpressure (retried)."""
        data = encode(MsgType.CANCEL_ALL, ALL_MARKETS, account=account)
        if self.server.router.submit(data, [ALL_MARKETS], account):
            return False
        self.cancels += 1
        self.server.kick()
        return True

    def on_disconnected(self, sess: Session) -> None:
        if sess.cancel_on_disconnect and sess.account_id:
            if not self.cancel_all(sess.account_id):  # a full ring: try again on the next sweep
                self.deadlines[sess.account_id] = (0.0, 0)

    def arm(self, account: int, timeout_ms: int) -> None:
        if timeout_ms:
            self.deadlines[account] = (time.monotonic() + timeout_ms / 1000, timeout_ms)
        else:
            self.deadlines.pop(account, None)

    def sweep(self, now: float) -> None:
        """Fire the switches whose countdown ran out."""
        for account in [a for a, (deadline, _) in self.deadlines.items() if deadline <= now]:
            if not self.cancel_all(account):
                continue  # backpressure: still armed, fires on the next sweep
            _, timeout_ms = self.deadlines.pop(account)
            for sess in self.server.accounts.get(account, ()):
                sess.send_json({"type": "dead_man_fired", "timeout_ms": timeout_ms})


@control_op("cancel_on_disconnect", needs_login=True)
def op_cancel_on_disconnect(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """``enabled``: when this connection closes, cancel every open order of the account."""
    enabled = msg.get("enabled", True)
    if not isinstance(enabled, bool):
        sess.error(msg, RejectCode.BAD_FIELD, "enabled must be true or false")
        return
    sess.cancel_on_disconnect = enabled
    sess.reply(msg, {"type": "cancel_on_disconnect", "enabled": enabled})


@control_op("dead_man", needs_login=True)
def op_dead_man(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Arm (or renew) the account's countdown: cancel everything unless renewed within
    ``timeout_ms`` (1,000..600,000; 0 disarms)."""
    timeout_ms = msg.get("timeout_ms")
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, int)
        or not (timeout_ms == 0 or MIN_DEAD_MAN_MS <= timeout_ms <= MAX_DEAD_MAN_MS)
    ):
        sess.error(
            msg, RejectCode.BAD_FIELD, f"timeout_ms must be 0 or in [{MIN_DEAD_MAN_MS}, {MAX_DEAD_MAN_MS}]"
        )
        return
    server.cancel_guard.arm(sess.account_id, timeout_ms)
    sess.reply(msg, {"type": "dead_man", "timeout_ms": timeout_ms})
