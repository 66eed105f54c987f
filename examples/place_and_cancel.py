"""Log in, place an order, amend it, cancel it, over either protocol.

hx up                                   # in another terminal
python examples/place_and_cancel.py [--url ws://127.0.0.1:8765] [--protocol json] [--key 0x...]
"""

from __future__ import annotations

import argparse
import asyncio

from eth_account import Account

from gateway.sdk import HxClient, OrderRejected


async def main(url: str, protocol: str, key: str | None) -> None:
    key = key or Account.create().key.hex()
    async with HxClient(url, protocol) as c:
        print("logged in as account", await c.login(key), c.account)
        market = min(c.markets)
        info = c.markets[market]
        print("market", info)
        ack = await c.place(market, "buy", info.tick_size * 100, info.lot_size * 3)
        print("accepted", ack)
        print("amended", await c.amend(market, order_id=ack.order_id, size=info.lot_size * 2))
        print("cancelled", await c.cancel(market, order_id=ack.order_id))
        try:
            await c.place(market, "buy", info.tick_size / 2 * 201, info.lot_size)  # not a tick multiple
        except OrderRejected as exc:
            print("rejected as expected:", exc)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="ws://127.0.0.1:8765")
    p.add_argument("--protocol", default="bin", choices=["bin", "json"])
    p.add_argument("--key", default=None, help="private key (default: a fresh random account)")
    a = p.parse_args()
    asyncio.run(main(a.url, a.protocol, a.key))
