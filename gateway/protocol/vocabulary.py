"""The words of the protocol: JSON names of sides, time-in-force, order types, STP modes, commands.

One table per enum, derived from ``engine.types.enums`` so a new member is a new word everywhere.
"""

from __future__ import annotations

from typing import Any

from engine.types.enums import MsgType, OrderType, RejectCode, Side, StpMode, TimeInForce

# Events with one receiving account (its ``account`` field): the shard's order events and the risk
# stage's account events. FILL is private too, to two accounts (``taker_account``/``maker_account``).
SINGLE_ACCOUNT_PRIVATE_EVENTS = (
    MsgType.ACCEPTED,
    MsgType.REJECTED,
    MsgType.CANCELLED,
    MsgType.AMENDED,
    MsgType.TRIGGERED,
    MsgType.BALANCE,
    MsgType.POSITION,
    MsgType.ACCOUNT_MARGIN,
    MsgType.LIQUIDATION,
    MsgType.ADL_RANK,
    MsgType.ORDER_STATE,
)
PRIVATE_EVENTS = frozenset(int(t) for t in (*SINGLE_ACCOUNT_PRIVATE_EVENTS, MsgType.FILL))

SIDES = {"buy": Side.BUY, "sell": Side.SELL}
TIFS = {t.name.lower(): t for t in TimeInForce}
ORDER_TYPES = {t.name.lower(): t for t in OrderType}
STP_MODES = {m.name.lower(): m for m in StpMode}
COMMAND_NAMES = {
    MsgType.NEW_ORDER: "place",
    MsgType.CANCEL: "cancel",
    MsgType.AMEND: "amend",
    MsgType.CANCEL_ALL: "cancel_all",
    MsgType.RESOLUTION_REQUEST: "resolve",  # answered by the oracle (a REJECTED, or RESOLUTION_STATUS)
    MsgType.SET_LEVERAGE: "set_leverage",
    MsgType.ADJUST_MARGIN: "adjust_margin",
    MsgType.ORDER_QUERY: "order_query",
}


ORDER_OPS = {
    "place": MsgType.NEW_ORDER,
    "cancel": MsgType.CANCEL,
    "amend": MsgType.AMEND,
    "cancel_all": MsgType.CANCEL_ALL,
}
COMMANDS_BY_NAME = {name: int(t) for t, name in COMMAND_NAMES.items()}


def code_name(code: int) -> str:
    """The RejectCode's name, or the number for a code this build does not know."""
    try:
        return RejectCode(code).name
    except ValueError:
        return str(code)


def enum_name(enum: Any, value: int) -> str | int:
    """Lower-case member name of ``value``, or the number for a value this build does not know."""
    try:
        return str(enum(value).name.lower())
    except ValueError:
        return value
