"""The ``what_if`` op: the portfolio maths on the exchange's own risk config, answered by the gateway.

Takes the same document as ``hx risk what-if PORTFOLIO.json`` (schema in
``engine.risk.portfolio_file``: balances, positions, open orders, prices, marks, shock multipliers)
under ``portfolio`` and answers with the same result, computed by the same function
(``run_what_if``) on the RiskSpec built from the config file this gateway serves. It is pure
maths on the request alone: no account state, no round trip to risk, so anyone may ask (no login).
A bad document gets BAD_FIELD with ``field`` = the JSON path of the culprit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.risk.portfolio_file import PortfolioFileError, run_what_if
from engine.risk.risk_config import RiskConfigError, load_risk_config
from engine.risk.risk_spec_builder import build_risk_spec
from engine.types.enums import RejectCode
from engine.types.risk_spec import RiskSpec
from gateway.control import control_op
from gateway.protocol.json_events import error_json
from gateway.session import Session

if TYPE_CHECKING:
    from gateway.server import GatewayServer


class RiskSpecSource:
    """The exchange's RiskSpec, built once from the config file on first use (or the reason not)."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._spec: RiskSpec | None = None
        self._problem = ""

    def get(self) -> RiskSpec | None:
        if self._spec is None and not self._problem:
            try:
                config = load_risk_config(self.config_path)
                self._spec = build_risk_spec(config, config.risk_overrides)
            except RiskConfigError as exc:
                self._problem = str(exc)
        return self._spec

    @property
    def problem(self) -> str:
        return self._problem


@control_op("what_if")
def op_what_if(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Equity, margins, scenario P&L, liquidation prices and buying power of a hypothetical portfolio."""
    source: RiskSpecSource | None = getattr(server, "risk_spec", None)
    spec = source.get() if source is not None else None
    if spec is None:
        problem = source.problem if source is not None else "no config"
        sess.error(msg, RejectCode.ENGINE_UNAVAILABLE, f"what_if needs the exchange's risk config: {problem}")
        return
    doc = msg.get("portfolio")
    try:
        result = run_what_if(doc, spec)
    except PortfolioFileError as exc:
        out = error_json(msg, RejectCode.BAD_FIELD, str(exc))
        out["field"] = "portfolio" if not exc.field else f"portfolio.{exc.field}"
        sess.send_json(out)
        return
    sess.reply(msg, {"type": "what_if", "result": result})
