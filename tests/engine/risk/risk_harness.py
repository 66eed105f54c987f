"""Risk + matching in one process: commands in, every event out, in the order the processes would
see them (risk first, the shards' events fed back to risk at once). For tests of the risk logic;
the process tests run the same through real rings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from engine.risk.liquidator import LiquidationParams
from engine.risk.native_risk import make_risk_engine
from engine.risk.risk_config import RiskConfig, risk_config_from
from engine.risk.risk_engine import Source
from engine.shard.native_engine import make_engine
from engine.shard.wire_event_writer import WireEventWriter
from engine.types.asset_spec import AssetSpec
from engine.types.enums import AssetKind, MarketKind, MsgType
from engine.types.market_spec import MarketSpec
from engine.wire.codec import decode, encode
from engine.wire.layout import SLOT_BYTES

USDC, BTC, ETH, YES = 0, 1, 2, 3
ASSETS = {
    USDC: AssetSpec(USDC, "USDC", AssetKind.STABLE),
    BTC: AssetSpec(BTC, "BTC", AssetKind.CRYPTO),
    ETH: AssetSpec(ETH, "ETH", AssetKind.CRYPTO),
    YES: AssetSpec(YES, "RAIN", AssetKind.PREDICTION),
}
BTC_PERP, ETH_USDC, RAIN = 1, 2, 3
MARKETS = {
    BTC_PERP: MarketSpec(
        BTC_PERP,
        "BTC-PERP",
        MarketKind.PERP,
        tick_size_micro=100_000,  # $0.10
        lot_size_atoms=100_000,  # 0.001 BTC
        max_price_ticks=10**8,
        base_asset="BTC",
        maker_fee_ppm=-100,
        taker_fee_ppm=500,
    ),
    ETH_USDC: MarketSpec(
        ETH_USDC,
        "ETH-USDC",
        MarketKind.SPOT,
        tick_size_micro=10_000,  # $0.01
        lot_size_atoms=1_000_000,  # 0.01 ETH
        max_price_ticks=10**8,
        base_asset="ETH",
        maker_fee_ppm=0,
        taker_fee_ppm=1000,
    ),
    RAIN: MarketSpec(
        RAIN,
        "RAIN-YES",
        MarketKind.PREDICTION,
        tick_size_micro=10_000,  # $0.01
        lot_size_atoms=100_000_000,  # 1 share
        max_price_ticks=99,
        base_asset="RAIN",
    ),
}
CONFIG: RiskConfig = risk_config_from(MARKETS, ASSETS)
MARK_TICKS = {
    BTC_PERP: 500_000,
    ETH_USDC: 200_000,
    RAIN: 40,
}  # the streams' first marks: $50,000, $2,000, $0.40


def slot_difference(a: bytes, b: bytes, left: str, right: str) -> str:
    """The first 64-byte slot where two outputs differ, each side decoded (for an assertion's message)."""
    for k in range(0, max(len(a), len(b)), SLOT_BYTES):
        x, y = a[k : k + SLOT_BYTES], b[k : k + SLOT_BYTES]
        if x != y:
            dx = decode(x, 0) if len(x) == SLOT_BYTES else x
            dy = decode(y, 0) if len(y) == SLOT_BYTES else y
            return f"slot {k // SLOT_BYTES}: {left} {dx} != {right} {dy}"
    return f"lengths {len(a)} != {len(b)}"


@pytest.fixture(scope="module", autouse=False, params=["native", "python"])
def both_engines(request: pytest.FixtureRequest) -> Iterator[str]:
    """A module that imports it (``from risk_harness import both_engines``) and names it with
    ``pytestmark = pytest.mark.usefixtures("both_engines")`` runs every test on the compiled risk
    engine and on its specification (``HX_RISK_ENGINE``, read by ``make_risk_engine``)."""
    previous = os.environ.get("HX_RISK_ENGINE")
    os.environ["HX_RISK_ENGINE"] = request.param
    yield request.param
    if previous is None:
        os.environ.pop("HX_RISK_ENGINE", None)
    else:
        os.environ["HX_RISK_ENGINE"] = previous


class LocalExchange:
    def __init__(
        self,
        config: RiskConfig = CONFIG,
        markets: dict[int, MarketSpec] = MARKETS,
        liquidation: LiquidationParams | None = None,
    ) -> None:
        # native unless HX_ENGINE=python
        self.risk = make_risk_engine(config, shards=1, liquidation=liquidation)
        self.records = 0  # records risk applied (continuation records included)
        self.writer = WireEventWriter()
        self.engine = make_engine(markets, self.writer)
        self.risk_events: list[dict[str, Any]] = []
        self.shard_events: list[dict[str, Any]] = []
        self.deposit_id = 0
        self.coid = 0

    def send(self, msg: bytes, source: int = Source.GATEWAY) -> None:
        """One command as one record, then what risk sends the shard (its own orders too, e.g.
        liquidations) and what comes back, as further records, until nothing moves."""
        risk = self.risk
        risk.handle_command(msg, 0, source)
        if source == Source.ORACLE and msg[0] in (MsgType.MARK_PRICE, MsgType.SET_MARKET_STATUS):
            self.engine.handle(msg, 0)  # the oracle tells the shards itself
            self._collect(self.writer.take(), self.shard_events)
        self._end_record()
        for _ in range(1000):
            orders, events = risk.take_outputs()
            self._collect(events, self.risk_events)
            if not orders[0] and risk.liquidator.work_left:  # a continuation record (as the process)
                self._end_record()
                continue
            if not orders[0]:
                return
            out = bytearray()
            for off in range(0, len(orders[0]), SLOT_BYTES):
                self.engine.handle(orders[0], off)
                out += self.writer.take()
            self._collect(bytes(out), self.shard_events)
            for k in range(0, len(out), SLOT_BYTES):
                risk.apply_event(out, k)
            self._end_record()
        raise AssertionError("risk and the shard did not settle within 1000 rounds")

    def _end_record(self) -> None:
        self.risk.end_of_record()
        self.risk.validate()
        self.records += 1

    @staticmethod
    def _collect(data: bytes, into: list[dict[str, Any]]) -> None:
        for off in range(0, len(data), SLOT_BYTES):
            into.append(decode(data, off))

    def deposit(self, account: int, asset: int, amount: int) -> None:
        self.deposit_id += 1
        self.send(
            encode(
                MsgType.DEPOSIT,
                source=1,
                account=account,
                asset=asset,
                amount=amount,
                deposit_id=self.deposit_id,
            )
        )

    def order(self, account: int, market: int, side: int, price: int, size: int, **kw: Any) -> int:
        self.coid += 1
        kw.setdefault("client_order_id", self.coid)
        self.send(
            encode(
                MsgType.NEW_ORDER,
                market,
                account=account,
                side=side,
                price_ticks=price,
                size_lots=size,
                **kw,
            )
        )
        return self.coid

    def last_reject(self) -> int | None:
        for ev in reversed(self.risk_events + self.shard_events):
            if ev["msg_type"] == MsgType.REJECTED:
                return int(ev["reason"])
        return None

    def row(self, account: int) -> int:
        return self.risk.book.find(account)
