"""Control ops: the JSON requests that are not orders (login, subscribe, markets, ...), one table.

Each op is one function ``(server, session, msg) -> None`` registered with ``@control_op(name)``;
it answers with ``session.reply`` (the request's ``id`` echoed) or ``session.error`` (a RejectCode
and a message naming the field). ``needs_login=True`` answers NOT_AUTHENTICATED before the
function runs. Adding an op is adding one decorated function here (or in a module imported by
``gateway.server``); ``CONTROL_OPS`` is what the ingress dispatches on and what the docs test
checks against ``docs/gateway.md``. Ops are rate-limited per connection by the ingress.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.accounts.account_registry import normalise_address
from engine.types.enums import AssetKind, DepositSource, MsgType, RejectCode, ResolutionAction
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS, SLOT_BYTES
from gateway.channels import CHANNEL_NAMES, CHANNELS
from gateway.protocol.units import JsonReject, to_units
from gateway.session import Session

if TYPE_CHECKING:
    from gateway.server import GatewayServer

ControlOp = Callable[["GatewayServer", Session, dict[str, Any]], None]
CONTROL_OPS: dict[str, ControlOp] = {}


def control_op(name: str, *, needs_login: bool = False) -> Callable[[ControlOp], ControlOp]:
    """Register the decorated function as the handler of JSON op ``name``."""

    def register(fn: ControlOp) -> ControlOp:
        if name in CONTROL_OPS:
            raise ValueError(f"control op {name!r} is registered twice")
        if needs_login:

            def guarded(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
                if not sess.account_id:
                    sess.error(msg, RejectCode.NOT_AUTHENTICATED)
                    return
                fn(server, sess, msg)

            guarded.__doc__ = fn.__doc__
            CONTROL_OPS[name] = guarded
        else:
            CONTROL_OPS[name] = fn
        return fn

    return register


# ---- session -----------------------------------------------------------------------------------
@control_op("ping")
def op_ping(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Liveness: answers ``pong`` with the gateway's wall clock."""
    sess.reply(msg, {"type": "pong", "ts_ns": time.time_ns()})


@control_op("stats")
def op_stats(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Process-wide counters (operations; also what tests read to see the gateway's side)."""
    buffered = [x.buffered() for x in server.sessions if not x.closed]
    sess.reply(
        msg,
        {
            "type": "stats",
            "pid": os.getpid(),
            "sessions": len(server.sessions),
            "closing": sum(1 for x in server.sessions if x.closed),
            "events": server.fanout.events,
            "event_batches": server.fanout.batches,
            "max_buffered": max(buffered, default=0),
            "conflating": len(server.fanout.conflating),
            **server.stats,
        },
    )


@control_op("markets")
def op_markets(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Every market (full rules: kind, live status, tick, lot, size and price limits, band, fees)
    and every asset (id, symbol, kind, units per whole unit)."""
    catalog = server.catalog
    statuses = server.fanout.statuses
    assets = [
        {"asset": a.asset_id, "symbol": a.symbol, "kind": a.kind.name.lower(), "scale": a.scale}
        for a in catalog.assets.values()
    ]
    markets = [m.as_json(statuses.get(m.market_id)) for m in catalog]
    sess.reply(msg, {"type": "markets", "markets": markets, "assets": assets})


@control_op("info")
def op_info(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """One market's ``markets`` entry."""
    market = msg.get("market")
    info = server.catalog.get(market) if isinstance(market, int) and not isinstance(market, bool) else None
    if info is None:
        sess.error(msg, RejectCode.UNKNOWN_MARKET)
        return
    sess.reply(msg, {"type": "info", **info.as_json(server.fanout.statuses.get(info.market_id))})


@control_op("challenge")
def op_challenge(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """A single-use login nonce bound to this connection."""
    ch = server.auth.issue_challenge(sess.id)
    sess.reply(
        msg,
        {
            "type": "challenge",
            "nonce": ch.nonce_hex,
            "expires_at": ch.expires_at_ms,
            "chain_id": server.auth.chain_id,
            "domain": {"name": "hx", "version": "1"},
        },
    )


@control_op("login")
def op_login(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Bind the session to an account by a signed challenge (the account's key or an agent's);
    ``resume_from`` (the last private seq processed) replays what the account's stream carried
    since, before any live event."""
    if sess.account_id:
        sess.error(msg, RejectCode.ALREADY_AUTHENTICATED)
        return
    resume_from = msg.get("resume_from")
    if resume_from is not None and (
        isinstance(resume_from, bool) or not isinstance(resume_from, int) or not 0 <= resume_from < 1 << 63
    ):
        sess.error(msg, RejectCode.BAD_FIELD, "resume_from must be the last private seq processed (>= 0)")
        return
    account = msg.get("account")
    res = server.auth.check_login(
        sess.id, account, msg.get("signer", account), msg.get("nonce"), msg.get("signature")
    )
    if res.code:
        sess.error(msg, res.code)
        return
    sess.account_id, sess.address, sess.signer, sess.is_agent = (
        res.account_id,
        res.address,
        res.signer,
        res.is_agent,
    )
    resume = server.on_login(sess, resume_from)
    sess.reply(
        msg,
        {
            "type": "login",
            "ok": True,
            "account": res.address,
            "account_id": res.account_id,
            "signer": res.signer,
            "agent": res.is_agent,
            **resume,
        },
    )
    if sess.pending_replay:
        blob, sess.pending_replay = sess.pending_replay, b""
        server.fanout.give_events(sess, blob, len(blob) // SLOT_BYTES)
        sess.flush()


def _agent_change(server: GatewayServer, sess: Session, msg: dict[str, Any], kind: str) -> None:
    if sess.is_agent:
        sess.error(msg, RejectCode.PERMISSION_DENIED, "an agent key cannot manage agents")
        return
    code = server.auth.check_agent_change(
        kind, sess.address, msg.get("agent"), msg.get("nonce"), msg.get("signature")
    )
    if code:
        sess.error(msg, code)
        return
    if kind == "RevokeAgent":
        server.drop_revoked_agents()  # its live sessions here stop now (other gateways: the sweeper)
    sess.reply(
        msg,
        {
            "type": "agent_approved" if kind == "ApproveAgent" else "agent_revoked",
            "agent": str(msg.get("agent")).lower(),
            "nonce": msg.get("nonce"),
        },
    )


@control_op("approve_agent", needs_login=True)
def op_approve_agent(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Authorise an agent key to trade for this account (main key only, signed, nonce increasing)."""
    _agent_change(server, sess, msg, "ApproveAgent")


@control_op("revoke_agent", needs_login=True)
def op_revoke_agent(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Revoke an agent key (main key only, signed, nonce increasing)."""
    _agent_change(server, sess, msg, "RevokeAgent")


@control_op("faucet")
def op_faucet(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Development only (``faucet`` option): credit an address through a DEPOSIT to risk."""
    catalog = server.catalog
    if not server.options.faucet:
        sess.error(msg, RejectCode.PERMISSION_DENIED, "the faucet is off (a development tool)")
        return
    address = normalise_address(msg.get("address", ""))
    # Prediction shares are never deposited (risk refuses them: they exist only as trades), so the
    # faucet refuses them here rather than answer "faucet" for a credit that can never happen.
    depositable = {
        s: i for s, i in catalog.asset_ids.items() if catalog.assets[i].kind != AssetKind.PREDICTION
    }
    name = msg.get("asset")
    asset = depositable.get(name) if isinstance(name, str) else None
    if address is None:
        sess.error(msg, RejectCode.BAD_FIELD, "address must be a 0x-prefixed 20-byte hex address")
        return
    if asset is None:
        sess.error(msg, RejectCode.UNKNOWN_ASSET, f"asset must be one of {sorted(depositable)}")
        return
    try:
        amount = to_units(msg.get("amount"), Decimal(1) / catalog.assets[asset].scale, "amount")
    except JsonReject as exc:
        sess.error(msg, exc.code, exc.detail)
        return
    account = server.auth.registry.ensure_account(address)
    server.faucet_id = max(server.faucet_id + 1, time.time_ns() // 1000 * 16 + server.faucet_index)
    data = encode(
        MsgType.DEPOSIT,
        account=account,
        asset=asset,
        source=int(DepositSource.FAUCET),
        amount=amount,
        deposit_id=server.faucet_id,
    )
    if server.router.submit(data, [ALL_MARKETS], account):
        sess.error(msg, RejectCode.BACKPRESSURE, retry_after_s=0.001)
        return
    server.kick()
    sess.reply(msg, {"type": "faucet", "account": account, "deposit_id": server.faucet_id})


# ---- market data -------------------------------------------------------------------------------
def _channel_market(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> tuple[str, int] | None:
    channel, market = msg.get("channel"), msg.get("market")
    if not isinstance(channel, str) or channel not in CHANNELS:
        sess.error(msg, RejectCode.BAD_FIELD, f"channel must be one of {list(CHANNEL_NAMES)}")
        return None
    if isinstance(market, bool) or not isinstance(market, int) or market not in server.catalog:
        sess.error(msg, RejectCode.UNKNOWN_MARKET)
        return None
    return channel, market


@control_op("subscribe")
def op_subscribe(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Subscribe to a market's channel; a ``book`` subscriber gets a snapshot first."""
    cm = _channel_market(server, sess, msg)
    if cm is None:
        return
    channel, market = cm
    if (
        channel not in sess.subs.get(market, ())
        and sess.subscription_count() >= server.options.max_subscriptions
    ):
        sess.error(msg, RejectCode.TOO_MANY_SUBSCRIPTIONS)
        return
    sess.subscribe(market, channel)
    server.market_subs.setdefault(market, set()).add(sess)
    sess.reply(msg, {"type": "subscribed", "channel": channel, "market": market})
    if CHANNELS[channel].snapshot_first:
        sess.send_json(
            server.fanout.snapshot(market, sess.binary, "subscribe", server.options.snapshot_depth)
        )


@control_op("unsubscribe")
def op_unsubscribe(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Stop a market's channel (NOT_SUBSCRIBED if it was not on)."""
    cm = _channel_market(server, sess, msg)
    if cm is None:
        return
    channel, market = cm
    if not sess.unsubscribe(market, channel):
        sess.error(msg, RejectCode.NOT_SUBSCRIBED)
        return
    if market not in sess.subs:
        subs = server.market_subs.get(market)
        if subs is not None:
            subs.discard(sess)
            if not subs:
                del server.market_subs[market]
    sess.reply(msg, {"type": "unsubscribed", "channel": channel, "market": market})


@control_op("snapshot")
def op_snapshot(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """The market's L2 book now (``reason`` ``request``), with the sequence number it is at."""
    market = msg.get("market")
    if isinstance(market, bool) or not isinstance(market, int) or market not in server.catalog:
        sess.error(msg, RejectCode.UNKNOWN_MARKET)
        return
    sess.reply(msg, server.fanout.snapshot(market, sess.binary, "request", server.options.snapshot_depth))


# ---- prediction markets ------------------------------------------------------------------------
_OUTCOMES = {"yes": 1, "no": 0}
_ACTIONS = {"propose": ResolutionAction.PROPOSE, "dispute": ResolutionAction.DISPUTE}


@control_op("resolve", needs_login=True)
def op_resolve(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """The resolution authority proposes (or, inside the dispute window, disputes) a prediction
    market's outcome: ``{"op": "resolve", "market": 400, "outcome": "yes", "action": "propose"}``.
    The gateway checks the fields and forwards a RESOLUTION_REQUEST to the oracle, which decides:
    a RESOLUTION_STATUS to the market's subscribers, or a REJECTED (4xx) to this account alone."""
    market, outcome = msg.get("market"), msg.get("outcome")
    action = msg.get("action", "propose")
    if isinstance(market, bool) or not isinstance(market, int) or market not in server.catalog:
        sess.error(msg, RejectCode.UNKNOWN_MARKET)
        return
    if not isinstance(outcome, str) or outcome not in _OUTCOMES:
        sess.error(msg, RejectCode.BAD_FIELD, 'outcome must be "yes" or "no"')
        return
    if not isinstance(action, str) or action not in _ACTIONS:
        sess.error(msg, RejectCode.BAD_FIELD, 'action must be "propose" or "dispute"')
        return
    if sess.is_agent:
        sess.error(msg, RejectCode.PERMISSION_DENIED, "an agent key cannot resolve markets")
        return
    ring = getattr(server, "oracle_ring", None)
    if ring is None:
        sess.error(msg, RejectCode.ENGINE_UNAVAILABLE, "no oracle runs behind this gateway")
        return
    data = encode(
        MsgType.RESOLUTION_REQUEST,
        market,
        account=sess.account_id,
        action=int(_ACTIONS[action]),
        outcome=_OUTCOMES[outcome],
        ts_ns=time.time_ns(),
    )
    if not ring.try_publish(data, 1):
        sess.error(msg, RejectCode.BACKPRESSURE, retry_after_s=0.001)
        return
    sess.reply(msg, {"type": "resolve", "market": market, "outcome": outcome, "action": action})
