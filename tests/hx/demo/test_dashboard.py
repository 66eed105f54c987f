"""hx.demo.dashboard: events folded into the model, and the screen rendered from it."""

from __future__ import annotations

import io

from rich.console import Console

from engine.types.enums import LiquidationKind, MsgType, Side
from engine.types.market_spec import load_markets
from engine.wire.codec import encode
from hx.config import DEFAULT_CONFIG
from hx.demo.dashboard import INSURANCE_BASE, DashboardModel, render

MARKETS = load_markets(DEFAULT_CONFIG)
BTC = next(m for m, spec in MARKETS.items() if spec.symbol == "BTC-PERP")


def _model() -> DashboardModel:
    return DashboardModel.for_markets(MARKETS)


def test_book_trades_margins_liquidations_and_the_fund_are_folded() -> None:
    m = _model()
    tick = MARKETS[BTC].tick_size_micro
    stream = b"".join(
        [
            encode(MsgType.BBO, BTC, bid_price_ticks=950_000_000 // tick * 100, ask_price_ticks=1),
            encode(MsgType.TRADE, BTC, price_ticks=123, size_lots=5),
            encode(MsgType.TRADE, BTC, price_ticks=124, size_lots=7),
            encode(
                MsgType.ACCOUNT_MARGIN,
                0,
                account=7,
                equity_micro=900,
                initial_micro=1000,
                maintenance_micro=600,
            ),
            encode(
                MsgType.ACCOUNT_MARGIN,
                0,
                account=8,
                equity_micro=5000,
                initial_micro=1000,
                maintenance_micro=600,
            ),
            encode(
                MsgType.ACCOUNT_MARGIN,
                0,
                account=9,
                equity_micro=500,
                initial_micro=1000,
                maintenance_micro=600,
            ),
            encode(MsgType.LIQUIDATION, BTC, account=9, kind=LiquidationKind.STARTED),
            encode(
                MsgType.LIQUIDATION,
                BTC,
                account=9,
                kind=LiquidationKind.ORDER,
                side=Side.SELL,
                size_atoms=10**8,
            ),
            encode(MsgType.LIQUIDATION, BTC, account=9, kind=LiquidationKind.ENDED),
            encode(MsgType.BALANCE, 0, account=INSURANCE_BASE, asset=0, balance=42_000_000),
            encode(MsgType.BALANCE, 0, account=INSURANCE_BASE, asset=1, balance=1),  # not USDC: ignored
        ]
    )
    assert m.apply(stream, now=0.0) == len(stream)
    view = m.markets[BTC]
    assert view.last_ticks == 124 and view.trades == 2 and view.volume_lots == 12
    assert [r[0] for r in m.most_leveraged()] == [9, 7, 8]  # lowest equity / maintenance first
    assert m.liquidation_count == 1
    assert [r[3] for r in m.liquidations] == ["ORDER", "STARTED"]  # newest first; ENDED not listed
    assert m.insurance_micro == {INSURANCE_BASE: 42_000_000}


def test_a_torn_tail_is_left_for_the_next_read_and_unknown_types_are_skipped() -> None:
    m = _model()
    whole = encode(MsgType.TRADE, BTC, price_ticks=1, size_lots=1)
    unknown = bytes([250]) + whole[1:]
    assert m.apply(unknown + whole + whole[:10], now=0.0) == 128
    assert m.markets[BTC].trades == 1 and m.events == 2


def test_system_accounts_are_not_ranked_and_the_screen_renders() -> None:
    m = _model()
    m.apply(encode(MsgType.ACCOUNT_MARGIN, 0, account=INSURANCE_BASE, equity_micro=1, maintenance_micro=9))
    assert m.most_leveraged() == []
    m.apply(encode(MsgType.ACCOUNT_MARGIN, 0, account=3, equity_micro=10**9, maintenance_micro=10**8))
    out = io.StringIO()
    health = [
        {"name": "shard-0", "pid": 1, "alive": True, "health": {"beat_age_ms": 3.0, "progress_per_s": 10.0}}
    ]
    Console(file=out, width=160, height=50).print(render(m, health, ["hx: up"], {"orders": 3}, "hx demo"))
    text = out.getvalue()
    assert "BTC-PERP" in text and "PRES28-YES" in text and "shard-0" in text and "hx: up" in text


def test_the_bots_follow_the_oracle_marks_and_asset_prices() -> None:
    m = _model()
    eth_usdc = next(mid for mid, spec in MARKETS.items() if spec.symbol == "ETH-USDC")
    assert m.reference_prices({"ETH": 2}) == {}  # nothing priced yet: the bots keep their own walk
    m.apply(encode(MsgType.MARK, BTC, mark_micro=95_000_000_000, index_micro=94_990_000_000))
    m.apply(encode(MsgType.PRICE, 0xFFFF_FFFF, asset=2, kind=1, price_micro=3_300_000_000))
    refs = m.reference_prices({"BTC": 1, "ETH": 2})
    assert refs[BTC] == 95_000.0 and refs[eth_usdc] == 3_300.0
