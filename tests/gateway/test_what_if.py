"""The ``what_if`` op: the same answer as ``hx risk what-if`` on the exchange's config, both protocols."""

from __future__ import annotations

import pytest
from gateway_harness import GatewayStack

from engine.risk.portfolio_file import run_what_if
from engine.risk.risk_config import load_risk_config
from engine.risk.risk_spec_builder import build_risk_spec
from gateway.sdk import HxClient, RequestRejected

pytestmark = pytest.mark.timeout(60)
PORTFOLIO = {
    "balances": {"USDC": "10000", "ETH": "2", "BTC": "-0.01"},
    "positions": [{"market": "BTC-USD", "size": "-0.25", "entry_price": "61000"}],
    "open_orders": [{"market": "ETH", "side": "sell", "size": "1", "price": "3100"}],
    "prices": {"BTC": "60000", "ETH": "3000"},
    "marks": {"BTC-USD": "60010"},
}


async def test_what_if_answers_as_the_cli_does_and_names_the_bad_field():
    with GatewayStack() as st:
        config = load_risk_config(st.markets_path)
        expected = run_what_if(PORTFOLIO, build_risk_spec(config, config.risk_overrides))
        for protocol in ("bin", "json"):
            c = await HxClient(st.url, protocol).connect()  # no login: pure maths on the request
            try:
                assert await c.what_if(PORTFOLIO) == expected
                bad = {**PORTFOLIO, "positions": [{"market": "BTC-USD", "size": "0.1x", "entry_price": "1"}]}
                with pytest.raises(RequestRejected) as exc:
                    await c.what_if(bad)
                assert exc.value.reason == "BAD_FIELD" and exc.value.field == "portfolio.positions[0].size"
                with pytest.raises(RequestRejected) as exc:
                    await c.what_if({**PORTFOLIO, "unknown": 1})
                assert exc.value.field.startswith("portfolio")
                assert (await c.request({"op": "ping"}))["type"] == "pong"  # still connected
            finally:
                await c.close()
