"""Print a market's top of book as the SDK's LocalBook keeps it in sync (snapshot + deltas).

python examples/watch_book.py [--url ws://127.0.0.1:8765] [--market 1] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio

from gateway.sdk import HxClient


async def main(url: str, market: int | None, seconds: float) -> None:
    async with HxClient(url, "json") as c:
        market = market if market is not None else min(c.markets)
        book = await c.subscribe_book(market)
        for _ in range(int(seconds)):
            print(f"seq {book.seq:>8}  bids {book.bids(3)}  asks {book.asks(3)}  gaps {book.gaps}")
            await asyncio.sleep(1.0)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="ws://127.0.0.1:8765")
    p.add_argument("--market", type=int, default=None)
    p.add_argument("--seconds", type=float, default=30)
    a = p.parse_args()
    asyncio.run(main(a.url, a.market, a.seconds))
