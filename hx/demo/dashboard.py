"""The demo's live terminal dashboard: what the exchange is doing, read from its own rings.

The dashboard is an operator's view, not a client's: it reads every shard's and risk partition's
event ring through its own droppable cursor (``demo-0`` in the topology), so it sees what no
single client may (every account's margin, every liquidation, the insurance fund). Being
droppable, a dashboard that falls behind is cut off and resumes at the head; it never slows
matching.

``DashboardModel`` folds events into plain state (pure, tested without a terminal);
``render`` turns a model plus process health and the supervisor's log into rich renderables.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rich.console import Group
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engine.risk.risk_engine import SYSTEM_ACCOUNT_BASE, insurance_account
from engine.types.enums import LiquidationKind, MarketStatus, MsgType, Side
from engine.types.fixed import ATOMS_PER_UNIT, MICRO_PER_UNIT
from engine.types.market_spec import MarketSpec
from engine.wire.layout import BY_TYPE, HEADER_STRUCT, SLOT_BYTES

INSURANCE_BASE = insurance_account(0)  # partition p's fund is INSURANCE_BASE + p
MAX_ACCOUNTS_TRACKED = 50_000
# the events the model folds; the rest (deltas, fills, acks...) are counted, never decoded
_FOLDED = frozenset(
    int(t)
    for t in (
        MsgType.BBO,
        MsgType.TRADE,
        MsgType.MARKET_STATUS,
        MsgType.MARK,
        MsgType.PRICE,
        MsgType.ACCOUNT_MARGIN,
        MsgType.BALANCE,
        MsgType.SETTLED,
        MsgType.LIQUIDATION,
    )
)  # margins kept for the "most leveraged" table (oldest forgotten)


@dataclass
class MarketView:
    spec: MarketSpec
    bid_ticks: int = 0
    ask_ticks: int = 0
    last_ticks: int = 0
    trades: int = 0
    volume_lots: int = 0
    status: int = MarketStatus.OPEN
    mark_micro: int = 0
    index_micro: int = 0

    def price(self, ticks: int) -> Decimal | None:
        return Decimal(ticks * self.spec.tick_size_micro) / MICRO_PER_UNIT if ticks else None


@dataclass
class DashboardModel:
    """Everything the dashboard shows, folded from events (one writer: the dashboard loop)."""

    markets: dict[int, MarketView]
    margins: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # equity, IM, MM (micro)
    liquidations: deque[tuple[float, int, int, str, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=12)
    )
    insurance_micro: dict[int, int] = field(default_factory=dict)  # insurance account -> USDC
    asset_price_micro: dict[int, int] = field(default_factory=dict)  # risk's price of each asset
    chain_insurance_micro: int | None = None  # the InsuranceFund contract's USDC (settlement runs)
    batches: dict[int, int] = field(default_factory=dict)  # settled batch id -> its block
    settled_accounts: int = 0  # SETTLED notices seen (one per account per batch)
    last_settled_ts_ns: int = 0
    liquidation_count: int = 0
    adl_count: int = 0
    events: int = 0
    dropped: int = 0  # times the dashboard fell behind and was cut off (it resumes at the head)

    @classmethod
    def for_markets(cls, specs: dict[int, MarketSpec]) -> DashboardModel:
        return cls({m: MarketView(spec) for m, spec in sorted(specs.items())})

    def apply(self, buf: memoryview | bytes, now: float | None = None) -> int:
        """Fold every whole message in ``buf``; returns the bytes consumed (a multiple of 64)."""
        now = time.time() if now is None else now
        size, offset = len(buf), 0
        while offset + SLOT_BYTES <= size:
            msg_type, _version, length, market_id = HEADER_STRUCT.unpack_from(buf, offset)
            length = max(SLOT_BYTES, length - length % SLOT_BYTES)
            if offset + length > size:
                break
            if msg_type in _FOLDED:
                layout = BY_TYPE[msg_type]
                fields = dict(zip(layout.field_names, layout.struct.unpack_from(buf, offset), strict=True))
                self._one(msg_type, market_id, fields, now)
            offset += length
            self.events += 1
        return offset

    def _one(self, msg_type: int, market_id: int, f: dict[str, int], now: float) -> None:
        view = self.markets.get(market_id)
        if msg_type == MsgType.BBO and view is not None:
            view.bid_ticks, view.ask_ticks = f["bid_price_ticks"], f["ask_price_ticks"]
        elif msg_type == MsgType.TRADE and view is not None:
            view.last_ticks = f["price_ticks"]
            view.trades += 1
            view.volume_lots += f["size_lots"]
        elif msg_type == MsgType.MARKET_STATUS and view is not None:
            view.status = f["status"]
        elif msg_type == MsgType.MARK and view is not None:
            view.mark_micro, view.index_micro = f["mark_micro"], f["index_micro"]
        elif msg_type == MsgType.PRICE:
            if f["kind"] == 1:  # an asset's price (kind 0: a perp's mark, also sent as MARK)
                self.asset_price_micro[f["asset"]] = f["price_micro"]
            elif view is not None and not view.index_micro:  # no oracle: risk marks at the last trade
                view.mark_micro = f["price_micro"]
        elif msg_type == MsgType.ACCOUNT_MARGIN:
            account = f["account"]
            if account < SYSTEM_ACCOUNT_BASE:
                self.margins.pop(account, None)  # re-insert: the dict keeps the newest last
                self.margins[account] = (f["equity_micro"], f["initial_micro"], f["maintenance_micro"])
                if len(self.margins) > MAX_ACCOUNTS_TRACKED:
                    self.margins.pop(next(iter(self.margins)))
        elif msg_type == MsgType.BALANCE:
            if f["account"] >= INSURANCE_BASE and f["asset"] == 0:
                self.insurance_micro[f["account"]] = f["balance"]
        elif msg_type == MsgType.SETTLED:
            self.batches[f["batch_id"]] = f["block"]
            self.settled_accounts += 1
            self.last_settled_ts_ns = max(self.last_settled_ts_ns, f["ts_ns"])
            if len(self.batches) > 1000:
                self.batches.pop(min(self.batches))
        elif msg_type == MsgType.LIQUIDATION:
            kind = f["kind"]
            if kind == LiquidationKind.STARTED:
                self.liquidation_count += 1
            elif kind == LiquidationKind.ADL:
                self.adl_count += 1
            if kind != LiquidationKind.ENDED:
                name = LiquidationKind(kind).name if kind in LiquidationKind._value2member_map_ else str(kind)
                self.liquidations.appendleft(
                    (now, f["account"], market_id, name, f["size_atoms"], f["price_micro"], f["side"])
                )

    def reference_prices(self, asset_ids: dict[str, int]) -> dict[int, float]:
        """Where each market trades now, for the bots: a perp's mark, else its base asset's price
        (the oracle's index as risk values it). Markets with neither are left out."""
        out = {}
        for m, view in self.markets.items():
            micro = view.mark_micro or self.asset_price_micro.get(asset_ids.get(view.spec.base_asset, -1), 0)
            if micro:
                out[m] = micro / MICRO_PER_UNIT
        return out

    def most_leveraged(self, n: int = 8) -> list[tuple[int, int, int, int]]:
        """Accounts nearest liquidation: (account, equity, IM, MM), lowest equity / MM first."""
        at_risk = [(a, e, im, mm) for a, (e, im, mm) in self.margins.items() if mm > 0]
        at_risk.sort(key=lambda r: r[1] / r[3])
        return at_risk[:n]


# ---- rendering -----------------------------------------------------------------------------------
def _usd(micro: int | None, places: int = 2) -> str:
    if micro is None:
        return "-"
    return f"{Decimal(micro) / MICRO_PER_UNIT:,.{places}f}"


def _px(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.4f}" if value < 10 else f"{value:,.2f}"


def _markets_table(model: DashboardModel) -> Table:
    t = Table(expand=True, box=None, header_style="bold")
    for col in ("market", "status", "bid", "ask", "last", "mark", "index", "trades", "volume"):
        t.add_column(col, justify="left" if col in ("market", "status") else "right")
    for view in model.markets.values():
        status = MarketStatus(view.status).name if view.status in MarketStatus._value2member_map_ else "?"
        vol = Decimal(view.volume_lots * view.spec.lot_size_atoms) / ATOMS_PER_UNIT
        t.add_row(
            view.spec.symbol,
            Text(status, style="green" if view.status == MarketStatus.OPEN else "yellow"),
            _px(view.price(view.bid_ticks)),
            _px(view.price(view.ask_ticks)),
            _px(view.price(view.last_ticks)),
            _px(Decimal(view.mark_micro) / MICRO_PER_UNIT if view.mark_micro else None),
            _px(Decimal(view.index_micro) / MICRO_PER_UNIT if view.index_micro else None),
            f"{view.trades:,}",
            f"{vol:,.4f}",
        )
    return t


def _accounts_table(model: DashboardModel) -> Table:
    t = Table(expand=True, box=None, header_style="bold")
    for col in ("account", "equity", "initial", "maintenance", "equity/MM"):
        t.add_column(col, justify="right")
    for account, equity, im, mm in model.most_leveraged():
        ratio = equity / mm
        style = "red" if ratio < 1 else "yellow" if ratio < 1.5 else ""
        t.add_row(str(account), _usd(equity), _usd(im), _usd(mm), Text(f"{ratio:.2f}", style=style))
    return t


def _liquidations_table(model: DashboardModel) -> Table:
    t = Table(expand=True, box=None, header_style="bold")
    for col in ("time", "account", "market", "step", "side", "size", "price"):
        t.add_column(col, justify="right")
    for when, account, market, kind, size_atoms, price_micro, side in model.liquidations:
        view = model.markets.get(market)
        t.add_row(
            time.strftime("%H:%M:%S", time.localtime(when)),
            str(account),
            view.spec.symbol if view else str(market or "-"),
            kind,
            "buy" if side == Side.BUY else "sell",
            f"{Decimal(size_atoms) / ATOMS_PER_UNIT:,.4f}" if size_atoms else "-",
            _usd(price_micro) if price_micro else "-",
        )
    return t


def _health_table(health: list[dict[str, Any]]) -> Table:
    t = Table(expand=True, box=None, header_style="bold")
    for col in ("process", "pid", "beat", "progress/s", "cpu s", "rss MB"):
        t.add_column(col, justify="left" if col == "process" else "right")
    for p in health:
        h = p.get("health", {})
        alive = p.get("alive")
        t.add_row(
            Text(p["name"], style="green" if alive else "red"),
            str(p.get("pid", "-")),
            f"{h['beat_age_ms']:.0f} ms" if "beat_age_ms" in h else "-",
            f"{h['progress_per_s']:,.0f}" if "progress_per_s" in h else "-",
            str(p.get("cpu_s", "-")),
            str(p.get("rss_mb", "-")),
        )
    return t


def render(
    model: DashboardModel,
    health: list[dict[str, Any]],
    log_lines: list[str],
    bots: dict[str, Any],
    title: str,
) -> Layout:
    """The whole screen: markets on top, accounts and liquidations, then fund, processes, log."""
    fund = sum(model.insurance_micro.values())
    chain = model.chain_insurance_micro
    last_batch = max(model.batches) if model.batches else None
    summary = Text.assemble(
        ("insurance fund ", "bold"),
        (f"{_usd(fund)} USDC", "cyan"),
        (f" (on chain {_usd(chain)})" if chain is not None else "", "cyan"),
        (
            f"   settled batch {last_batch} in block {model.batches[last_batch]}"
            f" ({len(model.batches)} batches, {model.settled_accounts} account notices)"
            if last_batch is not None
            else "",
            "green",
        ),
        (f"   liquidations {model.liquidation_count}   ADL {model.adl_count}", ""),
        (f"   events {model.events:,}", "dim"),
        (f"   bot orders {bots.get('orders', 0):,}  rejects {bots.get('rejects', 0):,}", "dim"),
        (f"   dashboard cut off {model.dropped}x" if model.dropped else "", "yellow"),
    )
    layout = Layout()
    layout.split_column(
        Layout(Panel(_markets_table(model), title=title), name="markets", size=len(model.markets) + 3),
        Layout(name="middle", ratio=2),
        Layout(Panel(summary), size=3),
        Layout(name="bottom", ratio=1),
    )
    layout["middle"].split_row(
        Layout(Panel(_accounts_table(model), title="most leveraged accounts")),
        Layout(Panel(_liquidations_table(model), title="liquidations and ADL")),
    )
    log = Group(*(Text(line, overflow="ellipsis", no_wrap=True) for line in log_lines[-8:]))
    layout["bottom"].split_row(
        Layout(Panel(_health_table(health), title="processes")),
        Layout(Panel(log, title="supervisor")),
    )
    return layout
