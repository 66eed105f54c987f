"""Print a perp's mark, index and funding as the oracle publishes them (``mark`` and ``funding``
channels; no login needed). Against ``hx up`` with the shipped config: BTC-PERP is market 100.

    python examples/watch_marks.py [--url ws://127.0.0.1:8765] [--market 100] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from gateway.sdk import FundingRate, HxClient, Mark


async def main(url: str, market: int, seconds: float) -> None:
    async with HxClient(url, "json") as c:
        await c.subscribe(market, "mark")
        await c.subscribe(market, "funding")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ev = await asyncio.wait_for(c.events.get(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(ev, Mark) and ev.market == market:
                status = ("ok", "stale", "diverged")[ev.status] if ev.status < 3 else ev.status
                print(f"mark {ev.mark_micro / 1e6:>14,.6f}  index {ev.index_micro / 1e6:>14,.6f}  {status}")
            elif isinstance(ev, FundingRate) and ev.market == market:
                due = max(0.0, ev.next_funding_ns / 1e9 - time.time())
                print(
                    f"funding: predicted {ev.predicted_rate_ppb / 1e7:+.5f}% per {ev.interval_ns / 3.6e12:g} h, "
                    f"last {ev.last_rate_ppb / 1e7:+.5f}%, next payment in {due:,.0f} s"
                )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="ws://127.0.0.1:8765")
    p.add_argument("--market", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30)
    a = p.parse_args()
    asyncio.run(main(a.url, a.market, a.seconds))
