"""Typed events the SDK hands out. Prices in ticks, sizes in lots, whatever the protocol.

On ``/v1/json`` the SDK converts the gateway's decimal strings back to ticks and lots with the
market's tick and lot size (exactly), so both protocols give the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrderAccepted:
    market: int
    seq: int
    order_id: int
    client_order_id: int
    side: int
    price_ticks: int
    size_lots: int


@dataclass(frozen=True)
class OrderRejectedEvent:
    market: int
    seq: int
    order_id: int
    client_order_id: int
    code: int
    command: int


@dataclass(frozen=True)
class Fill:
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
    market: int
    seq: int
    order_id: int
    client_order_id: int
    size_lots: int
    reason: int


@dataclass(frozen=True)
class OrderAmended:
    market: int
    seq: int
    order_id: int
    client_order_id: int
    price_ticks: int
    size_lots: int
    kept_priority: bool


@dataclass(frozen=True)
class Trade:
    market: int
    seq: int
    price_ticks: int
    size_lots: int
    taker_side: int


@dataclass(frozen=True)
class Bbo:
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


@dataclass(frozen=True)
class Position:
    market: int
    seq: int
    size_atoms: int
    cost_micro: int
    realised_pnl_micro: int
    funding_micro: int


@dataclass(frozen=True)
class Margin:
    seq: int
    equity_micro: int
    initial_micro: int
    maintenance_micro: int
    reserved_micro: int
    below_maintenance: bool

    @property
    def free_micro(self) -> int:
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
)
