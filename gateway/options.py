"""``GatewayOptions``: every limit and timing of one gateway process, validated once at start-up.

Frozen-in-spirit settings (the process receives them in its options and never changes them).
``gateway.server`` re-exports the class, so ``from gateway.server import GatewayOptions`` keeps
working for the composition root and configs.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.host import ensure_realtime_priority

LOOP_MODES = ("adaptive", "busy-poll", "park")


@dataclass
class GatewayOptions:
    """Limits, timeouts and loop mode of one gateway (seconds ``_s``, bytes ``_bytes``)."""

    chain_id: int = 31337
    challenge_ttl_s: float = 10.0  # below login_timeout_s, so CHALLENGE_EXPIRED is reachable
    handshake_timeout_s: float = 5.0  # HTTP upgrade must complete within this
    login_timeout_s: float = 30.0  # a connection neither logged in nor subscribed is closed after this
    idle_timeout_s: float = 60.0  # no frame (any kind, pongs included) for this long: closed
    # the gateway pings a connection silent for half the idle timeout: a client that answers
    # (every WebSocket client does) stays, so a read-only market data connection lives for ever
    max_connections: int = 4096
    max_connections_per_ip: int = 256
    max_frame_bytes: int = 64 * 1024  # binary: up to 1024 structs per frame
    max_json_bytes: int = 16 * 1024
    max_subscriptions: int = 64
    order_rate: float = 20_000.0  # per connection, orders/s (0 disables)
    order_burst: float = 40_000.0
    account_order_rate: float = 50_000.0  # per account in this gateway process
    account_order_burst: float = 100_000.0
    request_rate: float = 50.0  # control requests (login, subscribe, ...) per connection
    request_burst: float = 100.0
    # ORDER_QUERY structs and open_orders / order_status ops per account in this gateway process:
    # each is answered with up to every open order of the account (thousands of events from risk),
    # so they cannot share the order budget (20,000/s would let one account stall risk for everyone)
    account_query_rate: float = 20.0
    account_query_burst: float = 40.0
    soft_buffer_bytes: int = 1 << 20  # conflate market data above this much unsent
    hard_buffer_bytes: int = 16 << 20  # close the connection above this
    close_stall_s: float = 10.0  # a closing connection whose backlog drains nothing this long: reset
    close_max_s: float = 120.0  # a closing connection whose backlog is not drained by then: reset
    loop_mode: str = (
        "park"  # how the event pump waits: park (default, measured best on 2 cores) | adaptive | busy-poll
    )
    spin_polls: int = 64  # adaptive: event-loop iterations to poll before parking
    max_park_ms: float = 2.0  # longest a parked pump sleeps (bounds a lost wake-up)
    max_events_per_poll: int = 4096
    route_via: str = "shard"
    sndbuf_bytes: int = 0  # SO_SNDBUF for client sockets (0 = kernel default); tests shrink it
    snapshot_depth: int | None = None  # levels per side in a snapshot (None = all)
    realtime_priority: int = 0  # SCHED_FIFO priority of the gateway process (0: off); not with busy-poll
    replay_window_s: float = 60.0  # resume: accounts with a session this recent have their history kept
    faucet: bool = False  # development only: the `faucet` op credits any address (hx faucet)

    def __post_init__(self) -> None:
        if not 0 < self.challenge_ttl_s:
            raise ValueError("challenge_ttl_s must be positive")
        if self.loop_mode not in LOOP_MODES:
            raise ValueError(f"loop_mode {self.loop_mode!r}: choose one of {LOOP_MODES}")
        ensure_realtime_priority(self.realtime_priority, self.loop_mode)
