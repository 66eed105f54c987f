"""A toy market maker on /v1/bin: quote a ladder in one binary frame, requote every second.

Shows bulk frames (several structs per frame, each acked on its own) and an agent key: the main
key authorises a trade-only agent, and the quoting session logs in with the agent key.

    python examples/bulk_quoter.py [--url ws://127.0.0.1:8765] [--levels 5] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio

from eth_account import Account

from gateway.sdk import HxClient, OrderAccepted


async def main(url: str, levels: int, rounds: int) -> None:
    main_key, agent = Account.create(), Account.create()
    async with HxClient(url, "bin") as owner:
        await owner.login(main_key.key)
        await owner.approve_agent(agent.address)
    async with HxClient(url, "bin") as c:
        await c.login(agent.key, account=main_key.address)
        market = min(c.markets)
        mid = 1000
        for r in range(rounds):
            quotes = [
                {
                    "market": market,
                    "side": side,
                    "price": mid + (k + 1) * (1 if side == "sell" else -1),
                    "size": 1 + k,
                    "post_only": True,
                }
                for k in range(levels)
                for side in ("buy", "sell")
            ]
            acks = await c.place_many(quotes)
            ok = sum(isinstance(a, OrderAccepted) for a in acks)
            print(f"round {r}: {ok}/{len(quotes)} quotes accepted")
            await asyncio.sleep(1.0)
            c.cancel_all(market)
            mid += 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="ws://127.0.0.1:8765")
    p.add_argument("--levels", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    a = p.parse_args()
    asyncio.run(main(a.url, a.levels, a.rounds))
