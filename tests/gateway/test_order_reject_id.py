"""A gateway refusal of a JSON order op echoes the op's ``id`` as sent, integer or string
(docs/gateway.md sections 3 and 7: any op may carry an ``id``, integer or string)."""

from __future__ import annotations

from engine.types.enums import MsgType, RejectCode
from gateway.protocol.json_events import reject_json


def test_reject_json_echoes_integer_and_string_ids():
    for rid in (7, "quote-17"):
        msg = {"op": "place", "id": rid, "market": 1, "client_order_id": 42}
        out = reject_json(RejectCode.BAD_FIELD, MsgType.NEW_ORDER, 1, msg, "side: missing")
        assert out["id"] == rid and out["client_order_id"] == 42 and out["command"] == "place"
    out = reject_json(RejectCode.BAD_FIELD, MsgType.NEW_ORDER, 1, {"op": "place", "id": True})
    assert "id" not in out
