"""docs/oracle.md documents every key the [oracle] parser accepts and every message the oracle sends."""

from __future__ import annotations

import re

from oracle_harness import ROOT

from engine.oracle import oracle_config
from engine.types.enums import MsgType, RejectCode

DOC = (ROOT / "docs" / "oracle.md").read_text()
DOCUMENTED = set(re.findall(r"`([a-z_]+)`", DOC))
WORDS = " ".join(DOC.split())  # line breaks as spaces


def test_every_config_key_is_documented() -> None:
    keys = (
        set(oracle_config._ORACLE_KEYS)
        | oracle_config._SOURCE_KEYS
        | oracle_config._PERP_KEYS
        | oracle_config._SESSION_KEYS
        | oracle_config._PREDICTION_KEYS
    )
    assert sorted(keys - DOCUMENTED) == []


def test_every_message_and_reject_code_is_documented() -> None:
    for t in (
        MsgType.ORACLE_PRICE,
        MsgType.RESOLUTION,
        MsgType.SET_MARKET_STATUS,
        MsgType.MARK_PRICE,
        MsgType.FUNDING,
        MsgType.SETTLEMENT_PRICE,
        MsgType.L2_SNAPSHOT_REQUEST,
        MsgType.MARK,
        MsgType.FUNDING_RATE,
        MsgType.RESOLUTION_STATUS,
        MsgType.SOURCE_QUOTE,
    ):
        assert f"{t.name}" in DOC, t.name
    for code in RejectCode:
        if 400 <= code < 500:
            assert f"{int(code)} {code.name}" in WORDS, code.name
