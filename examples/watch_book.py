"""Print a market's top of book as the SDK's LocalBook keeps it in sync (snapshot + deltas).

Public market data needs no login, and the connection outlives the gateway's login and idle
timeouts (the gateway pings, the SDK answers). If the connection drops anyway (a gateway restart),
the client says so, reconnects, resubscribes and the book is resynced from a fresh snapshot: it
never keeps printing a stale book.

python examples/watch_book.py [--url ws://127.0.0.1:8765] [--market 1] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from gateway.sdk import Disconnected, HxClient, Reconnected


async def main(url: str, market: int | None, seconds: float, interval_s: float = 1.0) -> None:
    async with HxClient(url, "json", reconnect=True, keep_events=False) as c:
        market = market if market is not None else min(c.markets)
        book = await c.subscribe_book(market)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            while not c.events.empty():
                ev = c.events.get_nowait()
                if isinstance(ev, Disconnected):
                    print(f"disconnected ({ev.code}: {ev.reason}); reconnecting", flush=True)
                elif isinstance(ev, Reconnected):
                    print(f"reconnected after {ev.attempts} attempt(s)", flush=True)
            if book.in_sync:
                print(
                    f"seq {book.seq:>8}  bids {book.bids(3)}  asks {book.asks(3)}  gaps {book.gaps}",
                    flush=True,
                )
            else:
                print("out of sync: waiting for a snapshot", flush=True)
            await asyncio.sleep(interval_s)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="ws://127.0.0.1:8765")
    p.add_argument("--market", type=int, default=None)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--interval", type=float, default=1.0)
    a = p.parse_args()
    asyncio.run(main(a.url, a.market, a.seconds, a.interval))
