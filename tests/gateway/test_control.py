"""Control ops on a real gateway: complete market metadata, one table of ops, answers to the unknown."""

from __future__ import annotations

import pytest
from gateway_harness import BTC_USD, GatewayStack

from gateway.control import CONTROL_OPS
from gateway.sdk import HxClient, RequestRejected

pytestmark = pytest.mark.timeout(60)


async def test_markets_and_info_give_every_rule_a_client_needs_without_login():
    with GatewayStack() as st:
        c = await HxClient(st.url, "json").connect()
        try:
            btc = c.codec.market_meta[BTC_USD]
            assert btc == {
                "market": 1,
                "symbol": "BTC-USD",
                "tick_size": "0.5",
                "lot_size": "0.001",
                "kind": "perp",
                "status": "open",
                "base_asset": "BTC",
                "quote_asset": "USDC",
                "min_size": "0.001",
                "max_size": "100000",
                "min_notional": "0",
                "max_price": "5000000",
                "price_band_bps": 0,
                "maker_fee_ppm": 0,
                "taker_fee_ppm": 500,
                "max_open_orders": 10000,
            }
            info = await c.request({"op": "info", "market": BTC_USD})
            assert {k: v for k, v in info.items() if k not in ("type", "id")} == btc
            reply = await c.request({"op": "markets"})
            assert {a["symbol"]: (a["kind"], a["scale"]) for a in reply["assets"]} == {
                "USDC": ("stable", 10**6),
                "BTC": ("crypto", 10**8),
                "ETH": ("crypto", 10**8),
            }
            with pytest.raises(RequestRejected) as exc:
                await c.request({"op": "info", "market": 99})
            assert exc.value.reason == "UNKNOWN_MARKET"
            with pytest.raises(RequestRejected) as exc:
                await c.request({"op": "no_such_op"})
            assert exc.value.reason == "UNKNOWN_OP"
            assert "no_such_op" in str(exc.value)
            with pytest.raises(RequestRejected) as exc:
                await c.request({"market": 1})  # no op at all: says so, not "unknown op 'None'"
            assert exc.value.reason == "UNKNOWN_OP" and "needs an 'op'" in str(exc.value)
        finally:
            await c.close()


def test_every_control_op_is_one_registered_function_with_a_docstring():
    import gateway.server  # noqa: F401  (registers every op module)

    assert {"markets", "info", "login", "subscribe", "what_if", "open_orders", "set_leverage"} <= set(
        CONTROL_OPS
    )
    for name, fn in CONTROL_OPS.items():
        assert fn.__doc__, f"op {name} has no docstring"


async def test_an_op_or_enum_field_that_is_a_list_or_object_is_refused_naming_it_not_an_internal_error():
    """JSON arrays and objects are unhashable: looked up in the op or enum tables they raised, and
    the client got MALFORMED "internal error" without its id (the gateway logged a traceback)."""
    from eth_account import Account

    with GatewayStack() as st:
        c = await HxClient(st.url, "bin").connect()
        try:
            for op in ([], ["place"], {}, {"op": "place"}):
                with pytest.raises(RequestRejected) as exc:
                    await c.request({"op": op}, timeout_s=3)
                assert exc.value.reason == "UNKNOWN_OP" and "needs an 'op'" in str(exc.value)
            for channel in ([], {"book": 1}):
                with pytest.raises(RequestRejected) as exc:
                    await c.request({"op": "subscribe", "channel": channel, "market": BTC_USD}, timeout_s=3)
                assert exc.value.reason == "BAD_FIELD" and "channel" in str(exc.value)
            await c.login(Account.create().key)
            for field, value in (("outcome", ["yes"]), ("action", {"a": 1})):
                msg = {"op": "resolve", "market": BTC_USD, "outcome": "yes", field: value}
                with pytest.raises(RequestRejected) as exc:
                    await c.request(msg, timeout_s=3)
                assert exc.value.reason == "BAD_FIELD" and field in str(exc.value)
            assert (await c.request({"op": "ping"}))["type"] == "pong"
        finally:
            await c.close()
