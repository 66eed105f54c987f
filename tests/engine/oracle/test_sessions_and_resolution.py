"""Equity sessions (open, closed, halted; overnight wrap) and prediction-market resolution
(authority only, proposals after the close, disputes inside the window, final once)."""

from __future__ import annotations

from oracle_harness import AAPL_USDC, AUTHORITY, PRES28, T0, Harness, S, make_config

from engine.oracle.oracle_config import SessionConfig
from engine.oracle.session_calendar import calc_session_status, weekday_of
from engine.types.enums import MarketStatus, MsgType, RejectCode, ResolutionAction, ResolutionState

H = 3600 * S
M = 60 * S
OPEN, CLOSED, HALTED = MarketStatus.OPEN, MarketStatus.CLOSED, MarketStatus.HALTED
WED = T0  # 2025-12-03 00:00 UTC


def test_unix_day_zero_was_a_thursday_and_t0_is_a_wednesday() -> None:
    assert weekday_of(0) == 3
    assert weekday_of(WED // (24 * H)) == 2


def test_a_day_session_with_a_halt() -> None:
    nyse = SessionConfig(
        AAPL_USDC, 3, 870 * 60_000, 1260 * 60_000, (0, 1, 2, 3, 4), ((1020 * 60_000, 1025 * 60_000),)
    )
    assert calc_session_status(nyse, WED + 14 * H) == CLOSED
    assert calc_session_status(nyse, WED + 14 * H + 30 * M) == OPEN
    assert calc_session_status(nyse, WED + 17 * H + 2 * M) == HALTED
    assert calc_session_status(nyse, WED + 17 * H + 5 * M) == OPEN
    assert calc_session_status(nyse, WED + 21 * H - 1) == OPEN
    assert calc_session_status(nyse, WED + 21 * H) == CLOSED
    saturday = WED + 3 * 24 * H
    assert calc_session_status(nyse, saturday + 15 * H) == CLOSED


def test_a_recurring_closure_closes_and_reopens_an_open_session() -> None:
    """The demo's calendar: open all day, closed for the first 40 s of every 5 minutes."""
    every_day = tuple(range(7))
    demo = SessionConfig(AAPL_USDC, 3, 0, 1439 * 60_000, every_day, (), cycle_ms=300_000, closed_ms=40_000)
    assert calc_session_status(demo, WED + 10 * H) == CLOSED  # 10:00:00 is a cycle start
    assert calc_session_status(demo, WED + 10 * H + 39 * S) == CLOSED
    assert calc_session_status(demo, WED + 10 * H + 40 * S) == OPEN
    assert calc_session_status(demo, WED + 10 * H + 4 * M) == OPEN
    assert calc_session_status(demo, WED + 10 * H + 5 * M) == CLOSED
    assert calc_session_status(demo, WED + 23 * H + 59 * M + 50 * S) == CLOSED  # after close anyway


def test_an_overnight_session_belongs_to_the_day_it_opened() -> None:
    """Sunday to Thursday 22:00-02:00: open Monday 01:00 (Sunday's session), closed Saturday
    01:00 (Friday opened none), open Friday 01:00 (Thursday's)."""
    night = SessionConfig(AAPL_USDC, 3, 22 * 3_600_000, 2 * 3_600_000, (6, 0, 1, 2, 3), ())
    monday = WED - 2 * 24 * H
    sunday = monday - 24 * H
    assert calc_session_status(night, sunday + 21 * H) == CLOSED
    assert calc_session_status(night, sunday + 23 * H) == OPEN
    assert calc_session_status(night, monday + 1 * H) == OPEN
    assert calc_session_status(night, monday + 2 * H) == CLOSED
    friday = WED + 2 * 24 * H
    assert calc_session_status(night, friday + 1 * H) == OPEN  # Thursday's session
    assert calc_session_status(night, friday + 23 * H) == CLOSED  # Friday opens none
    assert calc_session_status(night, friday + 24 * H + 1 * H) == CLOSED


def _session_config() -> Harness:
    oracle = {
        "tick_ms": 250,
        "staleness_ms": 86_400_000,
        "halt_after_ms": 86_400_000,
        "source": [{"asset": "AAPL", "name": f"f{i}", "price": "230"} for i in range(2)],
        "session": [
            {"market": "AAPL-USDC", "open": "14:30", "close": "21:00", "halts": [["17:00", "17:05"]]}
        ],
    }
    return Harness(make_config(oracle))


def test_the_oracle_closes_opens_and_halts_an_equity_market_through_a_day() -> None:
    h = _session_config()
    for t in (
        WED + 6 * H,
        WED + 14 * H + 30 * M,
        WED + 17 * H,
        WED + 17 * H + 5 * M,
        WED + 21 * H,
        WED + 22 * H,
    ):
        h.tick(t)
    statuses = [m["status"] for m in h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS, AAPL_USDC)]
    assert statuses == [CLOSED, OPEN, HALTED, OPEN, CLOSED]
    assert [m["status"] for m in h.of(h.risk_out, MsgType.SET_MARKET_STATUS, AAPL_USDC)] == statuses


CLOSE_AT = T0 + 10 * H


def _prediction(window_s: int = 3600) -> Harness:
    oracle = {
        "tick_ms": 250,
        "prediction": [
            {
                "market": "PRES28-YES",
                "authority": AUTHORITY,
                "close_at_s": CLOSE_AT // S,
                "dispute_window_s": window_s,
            }
        ],
    }
    return Harness(make_config(oracle))


def _rejects(h: Harness) -> list[int]:
    return [m["reason"] for m in h.of(h.public_out, MsgType.REJECTED)]


def test_trading_stops_at_the_close_and_a_proposal_before_it_is_refused() -> None:
    h = _prediction()
    h.tick(CLOSE_AT - S)
    h.request(CLOSE_AT - S, PRES28, AUTHORITY, ResolutionAction.PROPOSE, 1)
    assert _rejects(h) == [RejectCode.MARKET_NOT_CLOSED]
    h.tick(CLOSE_AT)
    assert [m["status"] for m in h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS, PRES28)] == [CLOSED]


def test_only_the_authority_resolves_and_a_dispute_inside_the_window_changes_the_outcome() -> None:
    h = _prediction()
    h.tick(CLOSE_AT)
    h.request(CLOSE_AT + S, PRES28, 999, ResolutionAction.PROPOSE, 1)  # not the authority
    h.request(CLOSE_AT + S, PRES28, AUTHORITY, ResolutionAction.DISPUTE, 1)  # nothing to dispute
    h.request(CLOSE_AT + S, PRES28, AUTHORITY, ResolutionAction.PROPOSE, 2)  # not an outcome
    h.request(CLOSE_AT + S, PRES28, AUTHORITY, 7, 1)  # not an action
    h.request(CLOSE_AT + S, 100, AUTHORITY, ResolutionAction.PROPOSE, 1)  # a perp
    assert _rejects(h) == [
        RejectCode.NOT_RESOLUTION_AUTHORITY,
        RejectCode.NO_PROPOSAL,
        RejectCode.BAD_OUTCOME,
        RejectCode.BAD_RESOLUTION_ACTION,
        RejectCode.NOT_A_PREDICTION_MARKET,
    ]
    assert all(m["account"] and m["seq"] == 0 for m in h.of(h.public_out, MsgType.REJECTED))  # private
    public = [m["seq"] for m in h.public_out if m["msg_type"] != MsgType.REJECTED]
    assert public == list(range(1, len(public) + 1))
    h.request(CLOSE_AT + 2 * S, PRES28, AUTHORITY, ResolutionAction.PROPOSE, 1)
    h.request(CLOSE_AT + 3 * S, PRES28, AUTHORITY, ResolutionAction.PROPOSE, 0)
    assert _rejects(h)[-1] == RejectCode.ALREADY_PROPOSED
    h.tick(CLOSE_AT + 30 * M)
    h.request(CLOSE_AT + 30 * M, PRES28, AUTHORITY, ResolutionAction.DISPUTE, 0)  # inside: NO now
    h.tick(CLOSE_AT + 30 * M + H - S)  # the window restarted with the dispute
    assert h.of(h.risk_out, MsgType.RESOLUTION) == []
    h.tick(CLOSE_AT + 30 * M + H)
    (resolved,) = h.of(h.risk_out, MsgType.RESOLUTION, PRES28)
    assert resolved["outcome"] == 0
    states = [(m["state"], m["outcome"]) for m in h.of(h.public_out, MsgType.RESOLUTION_STATUS)]
    assert states == [
        (ResolutionState.PROPOSED, 1),
        (ResolutionState.DISPUTED, 0),
        (ResolutionState.FINAL, 0),
    ]
    assert [m["status"] for m in h.of(h.shard_out[0], MsgType.SET_MARKET_STATUS, PRES28)] == [
        CLOSED,
        MarketStatus.RESOLVED,
    ]
    # after the window: a dispute is too late, a proposal too; nothing is sent twice
    h.request(CLOSE_AT + 2 * H, PRES28, AUTHORITY, ResolutionAction.DISPUTE, 1)
    h.request(CLOSE_AT + 2 * H, PRES28, AUTHORITY, ResolutionAction.PROPOSE, 1)
    assert _rejects(h)[-2:] == [RejectCode.ALREADY_RESOLVED, RejectCode.ALREADY_RESOLVED]
    h.tick(CLOSE_AT + 3 * H)
    assert len(h.of(h.risk_out, MsgType.RESOLUTION)) == 1
    # the RESOLUTION precedes the status change in the record that finalised it
    order = [m["msg_type"] for m in h.risk_out if m["market_id"] == PRES28]
    assert order.index(MsgType.RESOLUTION) < order.index(
        MsgType.SET_MARKET_STATUS, order.index(MsgType.RESOLUTION)
    )


def test_a_dispute_after_the_window_but_before_the_tick_is_refused() -> None:
    h = _prediction(window_s=60)
    h.tick(CLOSE_AT)
    h.request(CLOSE_AT, PRES28, AUTHORITY, ResolutionAction.PROPOSE, 1)
    h.request(CLOSE_AT + 60 * S, PRES28, AUTHORITY, ResolutionAction.DISPUTE, 0)
    assert _rejects(h) == [RejectCode.DISPUTE_WINDOW_CLOSED]
    h.tick(CLOSE_AT + 61 * S)
    assert [m["outcome"] for m in h.of(h.risk_out, MsgType.RESOLUTION)] == [1]


def test_the_shard_rejects_orders_outside_the_session_the_oracle_sets() -> None:
    """The oracle's shard bytes into a matching engine on the same markets: an AAPL order while
    CLOSED is MARKET_CLOSED, during a halt MARKET_HALTED, in session it rests."""
    from oracle_harness import ROOT

    from engine.shard.native_engine import make_engine
    from engine.shard.wire_event_writer import WireEventWriter
    from engine.types.market_spec import load_markets
    from engine.wire.codec import decode, encode

    h = _session_config()
    writer = WireEventWriter()
    shard = make_engine(load_markets(ROOT / "config" / "hx.toml"), writer)
    order = encode(
        MsgType.NEW_ORDER, AAPL_USDC, account=7, side=0, price_ticks=23_000, size_lots=1, client_order_id=1
    )

    def at(t: int) -> tuple[int, int]:
        h.tick(t)
        for data in h.raw[-1][0]:
            for off in range(0, len(data), 64):
                shard.handle(data, off)
        writer.take()
        shard.handle(order, 0)
        ev = decode(writer.take(), 0)
        return ev["msg_type"], ev.get("reason", 0)

    assert at(WED + 6 * H) == (MsgType.REJECTED, RejectCode.MARKET_CLOSED)
    assert at(WED + 17 * H + M) == (MsgType.REJECTED, RejectCode.MARKET_HALTED)
    assert at(WED + 18 * H)[0] == MsgType.ACCEPTED
