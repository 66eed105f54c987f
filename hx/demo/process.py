"""The demo stage: the bots trading through the real gateway, and the dashboard watching the rings.

One process (``demo-0``), started last by the supervisor like any stage and restarted fresh if it
dies: its cursors are droppable, so it can never hold matching back. It draws the dashboard on the
terminal ``hx up --demo`` runs in (the supervisor then writes its own messages to
``<state_dir>/hx-up.log``, shown in the dashboard's bottom-right panel); without a terminal it prints
one summary line every few seconds instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.ring import ConsumerDropped, ConsumerRef

REFRESH_S = 0.5
HEALTH_EVERY_S = 2.0
PLAIN_EVERY_S = 5.0
MAX_SLOTS_PER_READ = 4096


@dataclass(frozen=True)
class DemoOptions:
    url: str  # the gateway's base URL
    markets_path: str
    state_dir: str  # the run's state directory (health, the supervisor's log)
    events: tuple[ConsumerRef, ...]  # every shard and risk event ring, with the demo's own cursor
    shock_every_s: float = 120.0
    seed: int = 7
    bots: bool = True
    chain: bool = False  # settlement runs: bots deposit on the local chain, the fund is read there too
    supervisor_pid: int = 0
    health_board: str = ""
    health_slot: int = -1


class _Reader:
    """Drains the demo's cursors into the model without ever blocking."""

    def __init__(self, refs: tuple[ConsumerRef, ...]) -> None:
        self.rings = [ref.ring.attach() for ref in refs]
        self.consumers = [ring.consumer(ref.index) for ring, ref in zip(self.rings, refs, strict=True)]

    def drain(self, model: Any) -> int:
        total = 0
        for cons in self.consumers:
            for _ in range(64):  # bounded: the screen refreshes even under a flood
                try:
                    view, n = cons.peek(MAX_SLOTS_PER_READ)
                    if not n:
                        view.release()
                        break
                    data = bytes(view)  # copy first: a dropped cursor's slots may be overwritten
                    view.release()
                    cons.release(n)
                except ConsumerDropped:
                    model.dropped += 1
                    cons.resume()
                    continue
                model.apply(data)
                total += n
        return total

    def close(self) -> None:
        for cons in self.consumers:
            with contextlib.suppress(Exception):
                cons.close()
        for ring in self.rings:
            with contextlib.suppress(Exception):
                ring.close()


def _tail(path: Path, n: int = 8) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


async def _dashboard(options: DemoOptions, state: Any, ready: Any) -> None:
    import tomllib

    from rich.console import Console
    from rich.live import Live

    from engine.host.health_board import open_health_slot
    from engine.types.asset_spec import assets_from_doc
    from engine.types.market_spec import load_markets
    from hx.demo.dashboard import DashboardModel, render
    from hx.status import collect_status

    model = DashboardModel.for_markets(load_markets(options.markets_path))
    doc = tomllib.loads(Path(options.markets_path).read_text())
    asset_ids = {a.symbol: a.asset_id for a in assets_from_doc(doc).values()}
    reader = _Reader(options.events)
    health_slot = open_health_slot(options.health_board, options.health_slot)
    if ready is not None:
        ready.set()
    state_dir = Path(options.state_dir)
    log_path = state_dir / "hx-up.log"
    health: list[dict[str, Any]] = []
    next_health = next_plain = 0.0
    console = Console()
    live = Live(console=console, screen=True, auto_refresh=False) if console.is_terminal else None
    try:
        if live is not None:
            live.start()
        while True:
            reader.drain(model)
            state.external.update(model.reference_prices(asset_ids))  # the bots follow the oracle
            health_slot.beat(model.events)
            now = time.monotonic()
            if now >= next_health:
                next_health = now + HEALTH_EVERY_S
                status = await asyncio.to_thread(collect_status, state_dir, 0.5)
                health = status["processes"]
                if state.funder is not None:
                    model.chain_insurance_micro = await asyncio.to_thread(state.funder.insurance_fund_micro)
            bots = {"orders": state.orders, "rejects": state.rejects}
            if live is not None:
                live.update(render(model, health, _tail(log_path), bots, "hx demo"), refresh=True)
            elif now >= next_plain:
                next_plain = now + PLAIN_EVERY_S
                trades = sum(v.trades for v in model.markets.values())
                print(
                    f"demo: {model.events} events, {trades} trades, {len(model.margins)} accounts, "
                    f"{model.liquidation_count} liquidations, bot orders {state.orders}",
                    flush=True,
                )
            await asyncio.sleep(REFRESH_S)
    finally:
        if live is not None:
            live.stop()
        reader.close()


async def _main(options: DemoOptions, ready: Any) -> None:
    from engine.types.market_spec import load_markets
    from hx.demo.bots import DemoState, run_demo_bots

    state = DemoState()
    if options.chain:
        from hx.demo.chain_funding import ChainFunder

        state.funder = await asyncio.to_thread(ChainFunder.wait_for, Path(options.state_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop drawing and give the terminal back first
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(_dashboard(options, state, ready))]
    if options.bots:
        symbols = {m: spec.symbol for m, spec in load_markets(options.markets_path).items()}
        tasks.append(
            asyncio.create_task(
                run_demo_bots(options.url, symbols, options.seed, options.shock_every_s, state)
            )
        )
    stopper = asyncio.create_task(stop.wait())
    done, _pending = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in (*tasks, stopper):
        task.cancel()
    await asyncio.gather(*tasks, stopper, return_exceptions=True)
    for task in done:
        if task is not stopper:
            task.result()  # a crash ends the process; the supervisor restarts it


def run_demo(options: DemoOptions, ready: Any) -> None:
    """Entry point of the demo stage."""
    import uvloop

    from engine.host.process_identity import become_stage, remove_pid_file

    if options.supervisor_pid:
        become_stage("demo-0", options.state_dir, options.supervisor_pid)
    try:
        uvloop.run(_main(options, ready))
    except KeyboardInterrupt:
        pass
    finally:
        remove_pid_file(options.state_dir, "demo-0")
    sys.exit(0)
