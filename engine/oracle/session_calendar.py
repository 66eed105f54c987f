"""A market's trading calendar: is it OPEN, CLOSED or HALTED at a given UTC instant. Pure.

A session opens at ``open`` on each of its days and closes at ``close``; when ``close <= open`` the
session runs past midnight and belongs to the day it opened (a Friday 22:00-02:00 session is open
until Saturday 02:00, and a Sunday-only session does not open on Monday's early hours). A halt
window ``[start, end)`` (times of day) halts the market while the session is open. Unix day 0
(1970-01-01) was a Thursday, so the weekday of day ``d`` is ``(d + 3) % 7`` with Monday = 0. A
recurring closure (``cycle_s``/``closed_s``) closes an open session for the first ``closed_s`` of
every ``cycle_s`` since the epoch: the demo's way to show a session closing and reopening (with its
gap) every few minutes.
"""

from __future__ import annotations

from engine.oracle.oracle_config import NS_PER_DAY, NS_PER_MS, SessionConfig
from engine.types.enums import MarketStatus

MS_PER_DAY = 86_400_000


def weekday_of(day: int) -> int:
    """Monday = 0 for unix day ``day``."""
    return (day + 3) % 7


def calc_session_status(session: SessionConfig, now_ns: int) -> MarketStatus:
    """OPEN inside a session, HALTED inside one of its halt windows, CLOSED otherwise."""
    day, rest_ns = divmod(now_ns, NS_PER_DAY)
    tod_ms = rest_ns // NS_PER_MS
    wraps = session.close_ms <= session.open_ms
    if not wraps:
        is_open = weekday_of(day) in session.days and session.open_ms <= tod_ms < session.close_ms
    elif tod_ms >= session.open_ms:  # the evening part of a session that opened today
        is_open = weekday_of(day) in session.days
    elif tod_ms < session.close_ms:  # the early part of a session that opened yesterday
        is_open = weekday_of(day - 1) in session.days
    else:
        is_open = False
    if not is_open:
        return MarketStatus.CLOSED
    if session.cycle_ms and (now_ns // NS_PER_MS) % session.cycle_ms < session.closed_ms:
        return MarketStatus.CLOSED  # the recurring closure (a session that closes and reopens)
    for start, end in session.halts:
        inside = start <= tod_ms < end if start < end else (tod_ms >= start or tod_ms < end)
        if inside:
            return MarketStatus.HALTED
    return MarketStatus.OPEN
