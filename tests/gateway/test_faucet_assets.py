"""The faucet op refuses what risk would refuse: a prediction market's shares are never deposited."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from engine.types.asset_spec import AssetSpec
from engine.types.enums import AssetKind, RejectCode
from gateway.control import op_faucet
from gateway.protocol.market_info import MarketCatalog

ADDRESS = "0x" + "ab" * 20


class _Session:
    def __init__(self) -> None:
        self.errors: list[tuple[int, str]] = []
        self.replies: list[dict[str, Any]] = []

    def error(self, msg: Any, code: int, detail: str = "", retry_after_s: float = 0.0) -> None:
        self.errors.append((code, detail))

    def reply(self, msg: Any, out: dict[str, Any]) -> None:
        self.replies.append(out)


def _server() -> SimpleNamespace:
    assets = {
        0: AssetSpec(0, "USDC", AssetKind.STABLE),
        4: AssetSpec(4, "PRES28", AssetKind.PREDICTION),
    }
    # no auth, router or registry: a refused request must not reach them
    return SimpleNamespace(options=SimpleNamespace(faucet=True), catalog=MarketCatalog([], assets))


def test_faucet_refuses_prediction_shares_before_anything_reaches_risk():
    server, sess = _server(), _Session()
    op_faucet(server, sess, {"op": "faucet", "address": ADDRESS, "asset": "PRES28", "amount": "10"})  # type: ignore[arg-type]
    assert sess.replies == []
    assert len(sess.errors) == 1
    code, detail = sess.errors[0]
    assert code == RejectCode.UNKNOWN_ASSET
    assert "PRES28" not in detail and "USDC" in detail
