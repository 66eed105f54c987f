"""Typed events the SDK hands out. Prices in ticks, sizes in lots, whatever the protocol.

On ``/v1/json`` the SDK converts the gateway's decimal strings back to ticks and lots with the
market's tick and lot size (exactly), so both protocols give the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrderAccepted:
    """The engine accepted an order (it rests, or fills follow); carries both ids."""

    market: int
    seq: int
    order_id: int
    client_order_id: int
    side: int
    price_ticks: int
    size_lots: int


@dataclass(frozen=True)
class OrderRejectedEvent:
    """A command was refused: ``seq`` 0 by the gateway, > 0 by the engine."""

    market: int
    seq: int
    order_id: int
    client_order_id: int
    code: int
    command: int


@dataclass(frozen=True)
class Fill:
    """One match; the counterparty's account and order id are 0 in your copy."""

    market: int
    seq: int
    taker_order_id: int
    maker_order_id: int
    price_ticks: int
    size_lots: int
    taker_account: int
    maker_account: int
    taker_side: int
    flags: int


@dataclass(frozen=True)
class OrderCancelled:
    """An order left the book (``reason``: CancelReason) with ``size_lots`` unfilled."""

    market: int
    seq: int
    order_id: int
    client_order_id: int
    size_lots: int
    reason: int


@dataclass(frozen=True)
class OrderAmended:
    """An order's price or size changed (``kept_priority``: size down only)."""

    market: int
    seq: int
    order_id: int
    client_order_id: int
    price_ticks: int
    size_lots: int
    kept_priority: bool


@dataclass(frozen=True)
class Trade:
    """A public trade (no accounts)."""

    market: int
    seq: int
    price_ticks: int
    size_lots: int
    taker_side: int


@dataclass(frozen=True)
class Bbo:
    """Best bid and offer after a change."""

    market: int
    seq: int
    bid_price_ticks: int
    bid_size_lots: int
    ask_price_ticks: int
    ask_size_lots: int


@dataclass(frozen=True)
class Balance:
    """One asset balance of the account changed (amounts in the asset's unit: micro or atoms)."""

    seq: int
    asset: int
    balance: int
    delta: int
    held: int
    reason: int  # BalanceReason
    ref: int
    market: int = 0  # 0: the account's balance; a perp: the margin of its isolated position there


@dataclass(frozen=True)
class Position:
    """A perp position after a change (size in atoms, money in micro-units)."""

    market: int
    seq: int
    size_atoms: int
    cost_micro: int
    realised_pnl_micro: int
    funding_micro: int


@dataclass(frozen=True)
class Margin:
    """The account's equity and requirements after a change (micro-units)."""

    seq: int
    equity_micro: int
    initial_micro: int
    maintenance_micro: int
    reserved_micro: int
    below_maintenance: bool
    market: int = 0  # 0: the account (cross); a perp: its isolated position there, margined alone

    @property
    def free_micro(self) -> int:
        """Equity not used by initial margin or reserved for open orders."""
        return self.equity_micro - self.initial_micro - self.reserved_micro


@dataclass(frozen=True)
class Mark:
    """The oracle's mark and index of a market (``mark`` and ``index`` channels); micro-USDC."""

    market: int
    seq: int
    mark_micro: int
    index_micro: int
    status: int  # PriceStatus of the index: 0 ok, 1 stale, 2 diverged
    ts_ns: int


@dataclass(frozen=True)
class FundingRate:
    """A perp's funding (``funding`` channel): rates per payment interval in ppb."""

    market: int
    seq: int
    predicted_rate_ppb: int
    last_rate_ppb: int
    next_funding_ns: int
    interval_ns: int


@dataclass(frozen=True)
class ResolutionStatus:
    """A prediction market's proposed, disputed or final outcome (sent to every subscriber)."""

    market: int
    seq: int
    state: int  # ResolutionState: 0 proposed, 1 disputed, 2 final
    outcome: int  # 1 yes, 0 no
    final_at_ns: int
    ts_ns: int


@dataclass(frozen=True)
class OrderState:
    """One open order as risk knows it (``state``: 0 unknown, 1 pending, 2 open), in answer to a
    query: ``open_orders`` / ``order_status`` replies, or a binary ORDER_QUERY's events."""

    market: int
    seq: int
    order_id: int
    client_order_id: int
    side: int
    price_ticks: int
    open_lots: int
    state: int
    request_id: int
    last: bool


@dataclass(frozen=True)
class OrderTriggered:
    """A stop / take-profit order's trigger fired (at ``mark_price_ticks``); it now enters the book."""

    market: int
    seq: int
    order_id: int
    client_order_id: int
    mark_price_ticks: int


@dataclass(frozen=True)
class MarketStatusChanged:
    """A market's status changed (MarketStatus)."""

    market: int
    seq: int
    status: int  # MarketStatus


@dataclass(frozen=True)
class Liquidation:
    """A liquidation step (private: ``account`` is yours; on the public channel it is 0)."""

    market: int
    seq: int
    account: int
    kind: int  # LiquidationKind
    side: int
    size_atoms: int
    price_micro: int
    amount_micro: int
    insurance_micro: int


@dataclass(frozen=True)
class AdlRank:
    """A position's auto-deleveraging quantile: 1 lowest .. 5 first in line, 0 none."""

    market: int
    seq: int
    rank: int


@dataclass(frozen=True)
class Disconnected:
    """Marker: the connection closed (``code``/``reason`` as the gateway sent them, 1006 if none).

    Every pending request failed with ConnectionClosed; local books are out of sync until a
    reconnect resubscribes them."""

    code: int
    reason: str


@dataclass(frozen=True)
class Reconnected:
    """Marker: the client (``reconnect=True``) is connected again, logged in and resubscribed."""

    attempts: int
    resumed: bool = False  # the private stream was resumed where it stopped (login resume_from)


Event = (
    OrderAccepted
    | OrderRejectedEvent
    | Fill
    | OrderCancelled
    | OrderAmended
    | Trade
    | Bbo
    | Balance
    | Position
    | Margin
    | Mark
    | FundingRate
    | ResolutionStatus
    | OrderState
    | OrderTriggered
    | MarketStatusChanged
    | Liquidation
    | AdlRank
    | Disconnected
    | Reconnected
)
