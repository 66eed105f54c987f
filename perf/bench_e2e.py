"""End-to-end benchmark: client processes -> /v1/bin -> gateway -> shard -> gateway -> clients.

``run()`` starts the whole stack itself (``hx.pipeline.Pipeline``: rings + real shard processes,
then ``run_gateway`` processes as stages of the same pipeline), logs in N client processes
(each its own account, EIP-712 login) and drives NEW_ORDERs over ``/v1/bin`` on loopback in bulk
frames (several structs per frame, as market makers quote). The workload alternates a resting buy
and a crossing sell at the same price, so the book stays small, half the orders are aggressive
and every aggressive order fills.

Measured per run (medians over ``runs``):

* ``orders_per_s``: acked orders (ACCEPTED received by the client) per second of the send phase;
  with ``rate=0`` the clients send as fast as a bounded in-flight window allows (throughput);
  with ``rate>0`` they pace to that total rate (latency);
* ``p50_us`` / ``p99_us`` / ``p999_us``: client send -> its ACCEPTED received (same clock);
* ``fill_p50_us``: aggressive order send -> its FILL received;
* ``echo_p50_us``: a picows echo round trip of one 64-byte frame on the same machine in the same
  run (the floor), and ``ratio_p50_to_echo``.

With ``risk=N`` (``hx bench e2e --risk N``) every run is repeated with N risk partitions in the
order path (clients -> gateway -> risk -> shard -> risk -> gateway -> clients; each client funded
through the faucet first), runs alternating, and ``with_risk`` / ``side_by_side`` give those figures
next to the direct path's.

Every figure names how it waited: the shard's ring wait strategy, the gateway's loop mode (event
pump: adaptive = spin a few loop iterations then park on the ring's wake FIFO), and the clients'
loop (uvloop, epoll); and how the kernel scheduled the stack (``scheduling``: by default shard and
gateway run under SCHED_FIFO 10 where the host allows it, see ``engine.host``; the clients, the
load generator, never do) with the CPU time the hypervisor stole per run (``steal_ms``).

The clients share the two cores with the stack they measure, so they are kept lean: a frame's
events are tallied by a plain loop (numpy only for large frames, see ``_Tally``) into
preallocated arrays, and the collector is frozen and off during the measured phase.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing as mp
import os
import statistics
import struct
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from engine.types.commands import NewOrder, encode_command
from engine.types.enums import MsgType, Side
from engine.wire.layout import MSG_TYPE_AT, SLOT_BYTES, field_offset, field_span, word_index
from perf.cpu_steal import StealMeter

_U64 = struct.Struct("<Q")

MARKETS_TOML = """
[[market]]
market_id = 1
symbol = "BENCH-USD"
kind = "spot"
tick_size_micro = 1
lot_size_atoms = 100000000
max_price_ticks = 2147483648
max_size_lots = 2147483648
"""
# with the risk stage in the path: the assets risk needs, and the money every client is given
RISK_MARKETS_TOML = (
    """
[[asset]]
asset_id = 0
symbol = "USDC"
kind = "stable"

[[asset]]
asset_id = 1
symbol = "BENCH"
kind = "crypto"
"""
    + MARKETS_TOML
    + """base_asset = "BENCH"
"""
)
FUNDS = (("USDC", "100000000"), ("BENCH", "100000000"))  # per client: far more than a run trades
MARKET = 1
PRICE = 100_000
WARMUP_FRACTION = 0.1


# ---- client process ---------------------------------------------------------------------------------
def _orders(n: int, coid_base: int) -> np.ndarray:
    """n NEW_ORDER structs: even = resting buy, odd = crossing sell at the same price."""
    template_buy = encode_command(NewOrder(market_id=MARKET, price_ticks=PRICE, size_lots=1, side=Side.BUY))
    template_sell = encode_command(NewOrder(market_id=MARKET, price_ticks=PRICE, size_lots=1, side=Side.SELL))
    a = np.empty((n, SLOT_BYTES), np.uint8)
    a[0::2] = np.frombuffer(template_buy, np.uint8)
    a[1::2] = np.frombuffer(template_sell, np.uint8)
    a.view("<u8")[:, _W8_NEW_COID] = np.arange(coid_base, coid_base + n, dtype=np.uint64)
    return a


# MsgType values as ints (the hot loop compares bytes) and the offsets it reads, from the layout
_ACCEPTED, _REJECTED, _FILL = int(MsgType.ACCEPTED), int(MsgType.REJECTED), int(MsgType.FILL)
_W8_NEW_COID = word_index(MsgType.NEW_ORDER, "client_order_id", 8)
_ACC_IDS_AT, _IDS = field_span(MsgType.ACCEPTED, "order_id", "client_order_id")  # ACCEPTED: oid, coid
_FILL_TAKER_AT = field_offset(MsgType.FILL, "taker_order_id")
_W8_ACC_OID = word_index(MsgType.ACCEPTED, "order_id", 8)
_W8_ACC_COID = word_index(MsgType.ACCEPTED, "client_order_id", 8)
_W8_FILL_TAKER = word_index(MsgType.FILL, "taker_order_id", 8)


class _Tally:
    """What one client saw: per order its send / ACCEPTED / FILL times (perf_counter ns).

    The receive path is a plain loop over the frame's structs with O(1) work each (an array store,
    a dict insert or pop) for frames of up to ``VECTOR_MIN`` structs: at the paced rate a frame
    carries a few dozen events, where numpy's per-call cost (2-10 us on this interpreter) would
    make the load generator the busiest process. Larger frames (unpaced runs) are vectorised.
    """

    VECTOR_MIN = 128

    def __init__(self, n: int, coid_base: int) -> None:
        self.n = n
        self.coid_base = coid_base
        self.send_ns = array("q", bytes(8 * n))
        self.ack_ns = array("q", bytes(8 * n))
        self.fill_ns = array("q", bytes(8 * n))
        self.acked = self.rejected = self.filled = 0
        self.taker: dict[int, int] = {}  # exchange order id of an aggressive (odd) order -> its index

    def on_events(self, data: bytes, now: int) -> None:
        """Record the events of one frame received at ``now``."""
        if len(data) >= self.VECTOR_MIN * SLOT_BYTES:
            self._on_events_vector(data, now)
        else:
            self._on_events_loop(data, now)

    def _on_events_loop(self, data: bytes, now: int) -> None:
        ack_ns, fill_ns, taker, base, ids = self.ack_ns, self.fill_ns, self.taker, self.coid_base, _IDS
        for off in range(0, len(data) - SLOT_BYTES + 1, SLOT_BYTES):
            t = data[off]
            if t == _ACCEPTED:
                oid, coid = ids.unpack_from(data, off + _ACC_IDS_AT)
                k = coid - base
                ack_ns[k] = now
                self.acked += 1
                if k & 1:
                    taker[oid] = k
            elif t == _FILL:
                k = taker.pop(_U64.unpack_from(data, off + _FILL_TAKER_AT)[0], -1)
                if k >= 0 and not fill_ns[k]:
                    fill_ns[k] = now
                    self.filled += 1
            elif t == _REJECTED:
                self.rejected += 1

    def _on_events_vector(self, data: bytes, now: int) -> None:
        a = np.frombuffer(data, np.uint8, len(data) // SLOT_BYTES * SLOT_BYTES).reshape(-1, SLOT_BYTES)
        t = a[:, MSG_TYPE_AT]
        u64 = a.view("<u8")
        acc = np.flatnonzero(t == _ACCEPTED)
        if len(acc):
            idx = u64[acc, _W8_ACC_COID].astype(np.int64) - self.coid_base
            np.frombuffer(self.ack_ns, np.int64)[idx] = now
            self.acked += len(acc)
            sells = (idx & 1) == 1
            self.taker.update(zip(u64[acc[sells], _W8_ACC_OID].tolist(), idx[sells].tolist(), strict=True))
        self.rejected += int(np.count_nonzero(t == _REJECTED))
        fills = np.flatnonzero(t == _FILL)
        if len(fills):
            fill_ns, taker = self.fill_ns, self.taker
            for oid in u64[fills, _W8_FILL_TAKER].tolist():
                k = taker.pop(oid, -1)
                if k >= 0 and not fill_ns[k]:
                    fill_ns[k] = now
                    self.filled += 1

    def answered(self) -> int:
        return self.acked + self.rejected

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.frombuffer(x, np.int64) for x in (self.send_ns, self.ack_ns, self.fill_ns))  # type: ignore[return-value]


async def _client(
    url: str,
    key: bytes,
    n: int,
    rate: float,
    batch: int,
    window: int,
    start_at: float,
    duration: float,
    fund: bool = False,
) -> dict[str, Any]:
    import orjson
    from eth_account import Account
    from picows import WSListener, WSMsgType, ws_connect

    from gateway.protocol.signing import login_typed_data, sign_typed_data

    coid_base = 1
    orders = _orders(n, coid_base).tobytes()
    tally = _Tally(n, coid_base)
    done = asyncio.Event()

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != WSMsgType.BINARY:
                return
            tally.on_events(frame.get_payload_as_bytes(), time.perf_counter_ns())
            if tally.answered() >= n:
                done.set()

        def on_ws_disconnected(self, transport: Any) -> None:
            done.set()

    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    class CtlListener(Listener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                replies.put_nowait(orjson.loads(frame.get_payload_as_bytes()))
            else:
                super().on_ws_frame(transport, frame)

    transport, _ = await ws_connect(CtlListener, url, max_frame_size=64 << 20)

    address = Account.from_key(key).address.lower()
    transport.send(WSMsgType.TEXT, orjson.dumps({"op": "challenge"}))
    ch = await replies.get()
    sig = sign_typed_data(
        key, login_typed_data(ch["chain_id"], address, address, ch["nonce"], ch["expires_at"])
    )
    transport.send(
        WSMsgType.TEXT,
        orjson.dumps({"op": "login", "account": address, "nonce": ch["nonce"], "signature": sig}),
    )
    reply = await replies.get()
    assert reply.get("ok"), reply
    if fund:  # risk in the path: collateral first (the faucet deposits through risk)
        for asset, amount in FUNDS:
            transport.send(
                WSMsgType.TEXT,
                orjson.dumps({"op": "faucet", "address": address, "asset": asset, "amount": amount}),
            )
            reply = await replies.get()
            assert reply.get("type") == "faucet", reply

    await asyncio.sleep(max(0.0, start_at - time.time()))
    gc.collect()
    gc.freeze()  # the measured phase allocates no cycles: no collector pauses in the load generator
    gc.disable()
    send_ns = tally.send_ns
    t0 = time.perf_counter_ns()
    sent = 0
    deadline = t0 + int(duration * 1e9)
    while sent < n:
        now = time.perf_counter_ns()
        if now > deadline + 1_000_000_000:
            break
        if rate > 0:
            due = min(n, int((now - t0) * rate / 1e9) + 1)
            k = min(due - sent, batch)
        else:
            k = min(n - sent, batch, window - (sent - tally.answered()))
        if k > 0:
            transport.send(WSMsgType.BINARY, orders[sent * SLOT_BYTES : (sent + k) * SLOT_BYTES])
            send_ns[sent : sent + k] = array("q", [now]) * k
            sent += k
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.001 if rate > 0 else 0)
    t_sent = time.perf_counter_ns()
    try:
        await asyncio.wait_for(done.wait(), 10.0)
    except TimeoutError:
        pass
    t_end = time.perf_counter_ns()
    gc.enable()
    transport.disconnect()
    send_a, ack_a, fill_a = (x[:sent] for x in tally.arrays())
    lat = ack_a - send_a
    ok = ack_a > 0
    skip = int(sent * WARMUP_FRACTION)
    lat_ok = lat[skip:][ok[skip:]]
    fl = fill_a - send_a
    fl_ok = fl[skip:][fill_a[skip:] > 0]
    last_ack = int(ack_a.max()) if sent else t0
    return {
        "sent": sent,
        "acked": tally.acked,
        "rejected": tally.rejected,
        "filled": tally.filled,
        "send_s": (t_sent - t0) / 1e9,
        "ack_span_s": (max(last_ack, t0) - t0) / 1e9,
        "wall_s": (t_end - t0) / 1e9,
        "lat_ns": lat_ok.tobytes(),
        "fill_ns": fl_ok.tobytes(),
    }


def _client_main(
    url: str,
    key: bytes,
    n: int,
    rate: float,
    batch: int,
    window: int,
    start_at: float,
    duration: float,
    out: Any,
    fund: bool = False,
) -> None:
    import uvloop

    try:
        result = uvloop.run(_client(url, key, n, rate, batch, window, start_at, duration, fund))
    except BaseException as exc:  # report, never hang the parent
        result = {"error": repr(exc)}
    out.put(result)


# ---- echo floor -------------------------------------------------------------------------------------
def _echo_server_main(port: int, ready: Any) -> None:
    import uvloop
    from picows import WSListener, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            transport.send(frame.msg_type, frame.get_payload_as_bytes())

    async def main() -> None:
        await ws_create_server(lambda _r: Echo(), "127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    uvloop.run(main())


async def _echo_client(port: int, rounds: int) -> list[float]:
    from picows import WSListener, WSMsgType, ws_connect

    got: asyncio.Queue[int] = asyncio.Queue()

    class L(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            got.put_nowait(time.perf_counter_ns())

    transport, _ = await ws_connect(L, f"ws://127.0.0.1:{port}/")
    payload = bytes(64)
    out = []
    for i in range(rounds):
        t = time.perf_counter_ns()
        transport.send(WSMsgType.BINARY, payload)
        r = await got.get()
        if i >= rounds // 10:
            out.append((r - t) / 1000)
        await asyncio.sleep(0.0005)  # paced like the latency run, not back to back
    transport.disconnect()
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def echo_floor_us(rounds: int = 2000) -> float:
    import uvloop

    ctx = mp.get_context("spawn")
    port = _free_port()
    ready = ctx.Event()
    proc = ctx.Process(target=_echo_server_main, args=(port, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(20):
            raise RuntimeError("echo server did not start")
        samples = uvloop.run(_echo_client(port, rounds))
        return statistics.median(samples)
    finally:
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


# ---- one run ----------------------------------------------------------------------------------------
def run_once(
    clients: int,
    rate: float,
    duration: float,
    batch: int,
    window: int,
    gateways: int,
    loop_mode: str,
    shard_wait: str,
    realtime_priority: int = 0,
    risk: int = 0,
) -> dict[str, Any]:
    """One run of the stack; ``risk`` partitions in the order path (0: gateway -> shard)."""
    from eth_account import Account

    from hx.pipeline import Pipeline
    from hx.topology import Topology

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="hx-bench-e2e-") as tmp:
        markets = Path(tmp) / "markets.toml"
        markets.write_text(RISK_MARKETS_TOML if risk else MARKETS_TOML)
        topo = Topology(run_id=f"hx-bench-e2e-{os.getpid()}", shards=1, gateways=gateways, risk=risk)
        port = _free_port()
        gw_opts = {
            "order_rate": 0,
            "account_order_rate": 0,
            "request_rate": 0,
            "loop_mode": loop_mode,
            "hard_buffer_bytes": 256 << 20,
            "soft_buffer_bytes": 64 << 20,
            "max_frame_bytes": 1 << 20,
            "faucet": bool(risk),
        }
        pipe = Pipeline(
            topo,
            markets_path=markets,
            state_dir=Path(tmp) / "state",
            wait=shard_wait,
            fsync="none",
            realtime_priority=realtime_priority,
            host="127.0.0.1",
            port=port,
            gateway=gw_opts,
        )
        procs = []
        try:
            pipe.start()
            per_client_rate = rate / clients if rate > 0 else 0.0
            n = int(per_client_rate * duration) if rate > 0 else int(400_000 * duration / clients)
            n -= n % 2
            out = ctx.Queue()
            start_at = time.time() + (5.0 if risk else 3.0)  # risk: time for the deposits
            for _ in range(clients):
                key = bytes(Account.create().key)
                p = ctx.Process(
                    target=_client_main,
                    daemon=True,
                    args=(
                        f"ws://127.0.0.1:{port}/v1/bin",
                        key,
                        n,
                        per_client_rate,
                        batch,
                        window,
                        start_at,
                        duration,
                        out,
                        bool(risk),
                    ),
                )
                p.start()
                procs.append(p)
            scheduling = pipe.scheduling()
            with StealMeter() as steal:
                results = [out.get(timeout=duration + 60) for _ in procs]
        finally:
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join()
            pipe.stop()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"errors": len(errors), "error_detail": errors}
    lat = np.concatenate([np.frombuffer(r["lat_ns"], np.int64) for r in results]) / 1000.0
    fills = np.concatenate([np.frombuffer(r["fill_ns"], np.int64) for r in results]) / 1000.0
    acked = sum(r["acked"] for r in results)
    span = max(r["ack_span_s"] for r in results) or 1e-9

    def pct(arr: np.ndarray, q: float) -> float:
        return float(np.percentile(arr, q)) if len(arr) else float("nan")

    return {
        "orders_per_s": acked / span,
        "sent": sum(r["sent"] for r in results),
        "acked": acked,
        "rejected": sum(r["rejected"] for r in results),
        "fills": sum(r["filled"] for r in results),
        "p50_us": pct(lat, 50),
        "p99_us": pct(lat, 99),
        "p999_us": pct(lat, 99.9),
        "fill_p50_us": pct(fills, 50),
        "errors": sum(r["sent"] - r["acked"] for r in results),
        "scheduling": scheduling,
        "steal_ms": steal.ms,
    }


def run(
    clients: int = 2,
    rate: float = 20_000,
    duration: float = 10.0,
    runs: int = 3,
    batch: int | None = None,
    window: int = 8192,
    gateways: int = 1,
    loop_mode: str = "park",
    shard_wait: str = "blocking",
    echo_rounds: int = 2000,
    realtime_priority: int = 10,
    risk: int = 0,
) -> dict[str, Any]:
    """Run the stack ``runs`` times; one dict of medians (see the module docstring).

    ``rate`` is the total orders/s across clients (0 = as fast as the window allows);
    ``batch`` the most structs per frame (default: 64 unpaced, 16 paced); ``realtime_priority``
    puts the shard and gateway processes under SCHED_FIFO (see ``engine.host``). ``risk`` > 0 also
    runs the stack with that many risk partitions in the order path (gateway -> risk -> shard,
    each client funded first) and reports both, side by side (``with_risk``, ``side_by_side``);
    the runs alternate (without, with, without, ...) so drifts of the machine hit both alike.
    """
    batch = batch or (64 if rate <= 0 else 16)
    per_run, per_run_risk = [], []
    for _ in range(runs):
        per_run.append(
            run_once(
                clients, rate, duration, batch, window, gateways, loop_mode, shard_wait, realtime_priority
            )
        )
        if risk:
            per_run_risk.append(
                run_once(
                    clients,
                    rate,
                    duration,
                    batch,
                    window,
                    gateways,
                    loop_mode,
                    shard_wait,
                    realtime_priority,
                    risk,
                )
            )
    report = _report(
        per_run, clients, rate, duration, runs, batch, gateways, loop_mode, shard_wait, echo_rounds
    )
    if risk:
        with_risk = _summary(per_run_risk)
        report["with_risk"] = {"risk_partitions": risk, **with_risk}
        report["side_by_side"] = {
            key: {"without_risk": report.get(key), "with_risk": with_risk.get(key)}
            for key in ("orders_per_s", "p50_us", "p99_us", "p99_minus_p50_us", "fill_p50_us", "errors")
        }
    return report


_KEYS = ("orders_per_s", "p50_us", "p99_us", "p999_us", "fill_p50_us", "errors", "acked", "rejected", "fills")
_RUN_KEYS = (
    "orders_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "fill_p50_us",
    "steal_ms",
    "errors",
    "error_detail",
)


def _summary(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the good runs, the p99 - p50 spread, and every run's own figures."""
    good = [r for r in per_run if "error_detail" not in r]
    out: dict[str, Any] = {}
    for key in _KEYS:
        vals = [r[key] for r in good if key in r]
        out[key] = statistics.median(vals) if vals else None
    out["errors"] = (out["errors"] or 0) + sum(r.get("errors", 0) for r in per_run if "error_detail" in r)
    spreads = [r["p99_us"] - r["p50_us"] for r in good]
    out["p99_minus_p50_us"] = statistics.median(spreads) if spreads else None
    out["per_run"] = [{k: r.get(k) for k in _RUN_KEYS} for r in per_run]
    return out


def _report(
    per_run: list[dict[str, Any]],
    clients: int,
    rate: float,
    duration: float,
    runs: int,
    batch: int,
    gateways: int,
    loop_mode: str,
    shard_wait: str,
    echo_rounds: int,
) -> dict[str, Any]:
    good = [r for r in per_run if "error_detail" not in r]
    echo = echo_floor_us(echo_rounds)
    report: dict[str, Any] = {
        "bench": "e2e",
        "clients": clients,
        "rate": rate,
        "duration_s": duration,
        "runs": runs,
        "batch": batch,
        "gateways": gateways,
        "wait_strategies": {
            "shard_order_ring": shard_wait,
            "gateway_event_ring": "blocking FIFO wake (parked pump)",
            "gateway_order_ring_publish": "try_publish (never waits)",
        },
        "loop_modes": {
            "gateway": f"uvloop + picows, event pump {loop_mode}",
            "clients": "uvloop + picows (epoll, no busy-poll)",
            "echo_floor": "uvloop + picows (epoll), paced 0.5 ms",
        },
        "scheduling": next((r["scheduling"] for r in good), None),
    }
    summary = _summary(per_run)
    report.update({k: v for k, v in summary.items() if k != "per_run"})
    report["echo_p50_us"] = echo
    report["ratio_p50_to_echo"] = (report["p50_us"] / echo) if report["p50_us"] and echo else None
    report["per_run"] = summary["per_run"]
    return report


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    kwargs = {k: float(v) if "." in v else int(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
    print(json.dumps(run(**kwargs)))  # type: ignore[arg-type]
