"""The ``hx`` command: one entry point for running, benchmarking and inspecting the exchange."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click


def _emit(report: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report))
    else:
        for key, value in report.items():
            click.echo(f"{key:>24}: {value}")


def _realtime_option(what: str, default: int = 0):  # type: ignore[no-untyped-def]
    return click.option(
        "--realtime-priority",
        default=default,
        show_default=True,
        type=click.IntRange(0, 49),
        help=f"SCHED_FIFO priority for {what} (0: off). Needs a wait that parks (blocking, sleep).",
    )


def _check_realtime(priority: int, wait: str) -> None:
    from engine.host import ensure_realtime_priority

    try:
        ensure_realtime_priority(priority, wait)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--realtime-priority") from None


def _bench_realtime(priority: int, *waits: str) -> int:
    """A bench's default priority only goes with waits that park: asked for a spinning wait and no
    priority, the bench runs at normal priority instead of refusing."""
    from engine.host import SPINNING_WAITS

    source = click.get_current_context().get_parameter_source("realtime_priority")
    if source == click.core.ParameterSource.DEFAULT and SPINNING_WAITS.intersection(waits):
        return 0
    return priority


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hx")
def main() -> None:
    """hx: a hybrid on/off-chain trading engine."""


@main.group()
def bench() -> None:
    """Benchmarks: each prints one JSON object (medians of several runs)."""


@bench.command("all")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Report directory.",
)
@click.option("--quick", is_flag=True, help="Small sizes, one run each: about a minute per benchmark stage.")
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A saved report.json to compare with (ratios calibrated for machine speed); default: the "
    "repository's perf/baseline.json, wherever hx is run from.",
)
@click.option("--only", multiple=True, help="Run only these benchmarks (repeatable).")
@click.option(
    "--fail-on-regression", is_flag=True, help="Exit 1 if a headline figure is calibrated-worse by > 20%."
)
def bench_all(
    out_dir: Path, quick: bool, baseline_path: Path | None, only: tuple[str, ...], fail_on_regression: bool
) -> None:
    """Every benchmark, one after another: DIR/report.json, DIR/report.md and PNG plots."""
    from perf.bench_all import BENCHES, run_all

    unknown = set(only) - {b.name for b in BENCHES}
    if unknown:
        raise click.BadParameter(f"unknown benchmark(s) {sorted(unknown)}", param_hint="--only")
    if baseline_path is None:
        baseline_path = Path(__file__).resolve().parents[1] / "perf" / "baseline.json"
    report = run_all(out_dir, quick, baseline_path, only, say=lambda t: click.echo(f"hx: {t}", err=True))
    click.echo((out_dir / "report.md").read_text())
    worse = [r for r in report["comparison"] if r.get("verdict") == "worse"]
    if fail_on_regression and worse:
        sys.exit(1)


@bench.command("ring")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--messages", default=2_000_000, show_default=True, help="Messages per throughput run.")
@click.option("--batch", default=64, show_default=True, help="Messages per publish in the throughput run.")
@click.option("--rate", default=100_000, show_default=True, help="Paced rate (msgs/s) for the latency run.")
@click.option("--paced-messages", default=100_000, show_default=True, help="Messages per latency run.")
@click.option("--runs", default=5, show_default=True, help="Runs; the report gives medians.")
@click.option(
    "--wait",
    default="spin-then-backoff",
    show_default=True,
    type=click.Choice(["busy-spin", "spin-then-backoff", "sleep", "blocking"]),
    help="Consumer wait strategy.",
)
def bench_ring(
    as_json: bool, messages: int, batch: int, rate: int, paced_messages: int, runs: int, wait: str
) -> None:
    """Producer and consumer processes over a shared-memory ring: msgs/s and one-way latency."""
    from perf.bench_ring import run

    _emit(
        run(messages=messages, batch=batch, rate=rate, paced_messages=paced_messages, runs=runs, wait=wait),
        as_json,
    )


@bench.command("oracle")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--accounts", default=100_000, show_default=True, help="Accounts with a BTC-PERP position.")
@click.option(
    "--samples",
    default=200,
    show_default=True,
    help="Source updates measured (a p99 of 60 is their maximum).",
)
@click.option("--quick", is_flag=True, help="10,000 accounts and 20 samples (hx bench all --quick).")
def bench_oracle(as_json: bool, accounts: int, samples: int, quick: bool) -> None:
    """A source update to the published MARK, and to the margins of every dependent account."""
    from perf.bench_oracle import run

    if quick:
        accounts, samples = min(accounts, 10_000), min(samples, 20)
    _emit(run(accounts=accounts, samples=samples), as_json)


@bench.command("settle")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--seconds", default=10.0, show_default=True, help="Seconds of fills per rate.")
@click.option(
    "--rate", "rates", multiple=True, type=float, help="Fills per second (repeatable; default 20 and 200)."
)
@click.option(
    "--tree-accounts", default=1_000_000, show_default=True, help="Leaves of the tree update bench."
)
@click.option("--tree-touched", default=10_000, show_default=True, help="Leaves changed per update.")
def bench_settle(
    as_json: bool, seconds: float, rates: tuple[float, ...], tree_accounts: int, tree_touched: int
) -> None:
    """Fill to finality on anvil (1 s blocks), gas per batch and per fill, incremental tree update."""
    from perf.bench_settle import run

    kw = {"rates": rates} if rates else {}
    _emit(run(seconds=seconds, tree_accounts=tree_accounts, tree_touched=tree_touched, **kw), as_json)


@bench.command("journal")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--records", default=1_000_000, show_default=True, help="64-byte records per run.")
@click.option("--batch", default=64, show_default=True, help="Appends per commit (group commit).")
@click.option("--runs", default=5, show_default=True, help="Runs per fsync policy; medians reported.")
def bench_journal(as_json: bool, records: int, batch: int, runs: int) -> None:
    """Journal append throughput under each fsync policy."""
    from perf.bench_journal import run

    _emit(run(records=records, batch=batch, runs=runs), as_json)


@bench.command("book")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--ops", default=1_000_000, show_default=True, help="Operations in the standard stream.")
@click.option("--runs", default=5, show_default=True, help="Runs; the report gives medians.")
def bench_book(as_json: bool, ops: int, runs: int) -> None:
    """In-process order book on the standard stream: ops/s and per-order latency."""
    from perf.bench_book import run

    _emit(run(ops=ops, runs=runs), as_json)


@bench.command("risk")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--runs", default=3, show_default=True, help="Runs of the in-process figures; medians.")
@click.option(
    "--quick", is_flag=True, help="Small sizes (50,000 orders, 10,000 accounts): well under a minute."
)
def bench_risk(as_json: bool, runs: int, quick: bool) -> None:
    """Risk: pre-trade checks in process and through the rings (compiled and Python engines in the
    same run), margin recomputation (all and touched accounts), resident memory."""
    from perf.bench_risk import run

    _emit(run(runs=runs, quick=quick), as_json)


@bench.command("shard")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--ops", default=1_000_000, show_default=True, help="Operations in the standard stream.")
@click.option("--runs", default=5, show_default=True, help="Runs; the report gives medians.")
@click.option("--rate", default=100_000, show_default=True, help="Paced rate (ops/s) for the latency run.")
@click.option("--paced-ops", default=100_000, show_default=True, help="Orders per latency run.")
@click.option(
    "--wait",
    default="blocking",
    show_default=True,
    type=click.Choice(["busy-spin", "spin-then-backoff", "sleep", "blocking"]),
)
@click.option(
    "--fsync", default="batch", show_default=True, type=click.Choice(["always", "batch", "none", "ack"])
)
@_realtime_option("the shard process", default=10)
def bench_shard(
    as_json: bool,
    ops: int,
    runs: int,
    rate: int,
    paced_ops: int,
    wait: str,
    fsync: str,
    realtime_priority: int,
) -> None:
    """Orders through a ring into a shard process, events consumed from its event ring."""
    from perf.bench_shard import run

    realtime_priority = _bench_realtime(realtime_priority, wait)
    _check_realtime(realtime_priority, wait)
    report = run(
        ops=ops,
        runs=runs,
        rate=rate,
        paced_ops=paced_ops,
        wait=wait,
        fsync=fsync,
        realtime_priority=realtime_priority,
    )
    _emit(report, as_json)


@bench.command("e2e")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--clients", default=2, show_default=True, type=click.IntRange(1, 64), help="Client processes.")
@click.option(
    "--rate", default=20_000.0, show_default=True, help="Total orders/s offered (0: as fast as acked)."
)
@click.option("--duration", default=10.0, show_default=True, help="Seconds of load per run.")
@click.option("--runs", default=3, show_default=True, help="Runs; the report gives medians.")
@click.option("--batch", type=int, default=None, help="Orders per WebSocket frame (default: chosen by rate).")
@click.option(
    "--gateways", default=1, show_default=True, type=click.IntRange(1, 16), help="Gateway processes."
)
@click.option(
    "--loop-mode",
    default="park",
    show_default=True,
    type=click.Choice(["park", "adaptive", "busy-poll"]),
    help="Gateway event-pump wait.",
)
@click.option(
    "--shard-wait",
    default="blocking",
    show_default=True,
    type=click.Choice(["busy-spin", "spin-then-backoff", "sleep", "blocking"]),
)
@click.option(
    "--risk",
    default=0,
    show_default=True,
    type=click.IntRange(0, 16),
    help="Also run with N risk partitions in the order path; both reported side by side.",
)
@_realtime_option("the shard and gateway processes", default=10)
def bench_e2e(
    as_json: bool,
    clients: int,
    rate: float,
    duration: float,
    runs: int,
    batch: int | None,
    gateways: int,
    loop_mode: str,
    shard_wait: str,
    risk: int,
    realtime_priority: int,
) -> None:
    """Whole stack over loopback WebSockets: clients -> gateway -> shard -> gateway -> clients
    (with --risk N also clients -> gateway -> risk -> shard -> risk -> gateway -> clients)."""
    from perf.bench_e2e import run

    realtime_priority = _bench_realtime(realtime_priority, shard_wait, loop_mode)
    _check_realtime(realtime_priority, shard_wait)
    _check_realtime(realtime_priority, loop_mode)

    _emit(
        run(
            clients=clients,
            rate=rate,
            duration=duration,
            runs=runs,
            batch=batch,
            gateways=gateways,
            loop_mode=loop_mode,
            shard_wait=shard_wait,
            realtime_priority=realtime_priority,
            risk=risk,
        ),
        as_json,
    )


@main.command()
@click.argument("orders", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--trades-out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the fills (TRADE records, .npy).",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="Run through N shard processes and rings instead of in-process.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def replay(orders: Path, trades_out: Path, shards: int | None, as_json: bool) -> None:
    """Run a standard ORDER stream (.npy) through the engine and write its fills.

    Trades are written in the order they happen within each market (markets in ascending id).
    """
    from perf.replay_runner import ReplayInputError, run_replay

    try:
        summary = run_replay(orders, trades_out, shards)
    except ReplayInputError as exc:
        raise click.ClickException(str(exc)) from None
    _emit(summary, as_json)


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _auto_wait(cores: int) -> tuple[str, str]:
    """The shard wait for this machine, and why (measured: docs/benchmarks.md)."""
    if cores <= 2:
        return (
            "blocking",
            f"{cores} cores: shards park between batches (a spinning shard doubles a round trip here)",
        )
    return "spin-then-backoff", f"{cores} cores: shards spin briefly before parking"


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The exchange's configuration (TOML); default: the embedded config/hx.toml.",
)
@click.option("--shards", type=click.IntRange(1, 64), default=None, help="Shard processes ([run] shards).")
@click.option(
    "--risk", type=click.IntRange(0, 64), default=None, help="Risk partitions; 0: none ([run] risk)."
)
@click.option(
    "--gateways", type=click.IntRange(0, 16), default=None, help="Gateway processes ([run] gateways)."
)
@click.option("--host", default=None, help="Listen address ([run] host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="WebSocket port ([run] port).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Journals, snapshots, pid files ([run] state_dir, relative to here). One exchange per directory.",
)
@click.option(
    "--name", default=None, help="Run name (rings are named after it); default: from the state dir."
)
@click.option(
    "--wait",
    default=None,
    type=click.Choice(["auto", "busy-spin", "spin-then-backoff", "sleep", "blocking"]),
    help="Shard and risk wait strategy ([run] wait); auto chooses from the machine's cores and says so.",
)
@click.option(
    "--fsync", default=None, type=click.Choice(["always", "batch", "none", "ack"]), help="[run] fsync."
)
@click.option(
    "--realtime-priority",
    default=None,
    type=click.IntRange(0, 49),
    help="SCHED_FIFO priority for the hot path (0: off). Needs a wait that parks (blocking, sleep).",
)
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: run until Ctrl-C)."
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also run the demo: bots trading through the gateway and a live dashboard on this terminal "
    "(the supervisor's and processes' logs then go to STATE_DIR/hx-up.log).",
)
def up(
    config_path: Path | None,
    shards: int | None,
    risk: int | None,
    gateways: int | None,
    host: str | None,
    port: int | None,
    state_dir: Path | None,
    name: str | None,
    wait: str | None,
    fsync: str | None,
    realtime_priority: int | None,
    duration: float | None,
    demo: bool,
) -> None:
    """Run the exchange from one configuration file, supervised, until Ctrl-C."""
    import os
    from dataclasses import asdict, replace

    from hx.config import ConfigError, load_config
    from hx.pipeline import Pipeline, RunError
    from hx.supervisor import supervise
    from hx.topology import Topology, run_id_for

    say = lambda text: click.echo(f"hx: {text}", err=True)  # noqa: E731
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    given = {
        "shards": shards,
        "risk": risk,
        "gateways": gateways,
        "host": host,
        "port": port,
        "state_dir": None if state_dir is None else str(state_dir),
        "wait": wait,
        "fsync": fsync,
        "realtime_priority": realtime_priority,
    }
    run = replace(config.run, **{k: v for k, v in given.items() if v is not None})
    wait_used = run.wait
    if wait_used == "auto":
        wait_used, why = _auto_wait(len(os.sched_getaffinity(0)))
        say(f"wait strategy {wait_used} ({why}; --wait overrides)")
    _check_realtime(run.realtime_priority, wait_used)
    if run.gateways and not _port_free(run.host, run.port):
        raise click.BadParameter(f"port {run.port} on {run.host} is in use", param_hint="--port")
    if run.metrics_port and not _port_free(run.host, run.metrics_port):
        raise click.ClickException(
            f"[run] metrics_port {run.metrics_port} on {run.host} is in use (0 turns it off)"
        )
    state = Path(run.state_dir)
    try:
        run_id = run_id_for(state, name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    if demo and not run.gateways:
        raise click.BadParameter("the demo trades through a gateway: run at least one", param_hint="--demo")
    pipeline = Pipeline(
        Topology(
            run_id=run_id,
            shards=run.shards,
            gateways=run.gateways,
            risk=run.risk,
            demo=int(demo),
            oracle=1 if "oracle" in config.doc else 0,
            settlement=int(config.settlement.enabled),
            chain=int(config.settlement.enabled and not config.settlement.rpc_url),
        ),
        markets_path=config.path,
        state_dir=state,
        wait=wait_used,
        fsync=run.fsync,
        snapshot_every=run.snapshot_every,
        realtime_priority=run.realtime_priority,
        host=run.host,
        port=run.port,
        gateway=config.gateway,
        settlement=asdict(config.settlement),
    )
    say(f"config {config.path}; run {run_id}, state in {state.resolve()}")
    say(
        f"{run.shards} shard(s), {run.risk} risk partition(s), {run.gateways} gateway(s)"
        + (", an oracle" if "oracle" in config.doc else "")
    )
    if run.gateways:
        say(
            f"websocket ws://{run.host}:{run.port}/v1/bin (binary) and ws://{run.host}:{run.port}/v1/json (JSON)"
        )
    if demo:  # the dashboard owns the terminal: every process's log (stderr) goes to a file
        state.mkdir(parents=True, exist_ok=True)
        log_path = state / "hx-up.log"
        say(f"demo: dashboard on this terminal; logs in {log_path}")
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    try:
        code = supervise(
            pipeline,
            duration_s=duration,
            on_event=say,
            metrics_port=run.metrics_port,
            stall_timeout_s=run.stall_timeout_s,
        )
    except RunError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/run"),
    show_default=True,
    help="The exchange's state directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
def status(state_dir: Path, as_json: bool) -> None:
    """List the processes of the exchange running from STATE_DIR: name, pid, alive."""
    from hx.status import collect_status

    report = collect_status(state_dir)
    if as_json:
        click.echo(json.dumps(report))
        return
    if not report["processes"]:
        click.echo(f"no hx processes recorded under {state_dir}")
    for proc in report["processes"]:
        state = "up" if proc["alive"] else "gone"
        h = proc.get("health", {})
        beat = f"beat {h['beat_age_ms']:6.0f} ms ago, {h['progress_per_s']:9.1f}/s" if h else ""
        if h.get("waiting_on_downstream_ms"):
            beat += f", waiting on downstream {h['waiting_on_downstream_ms']:.0f} ms"
        click.echo(
            f"{proc['name']:>14}  pid {proc['pid']:<8} {state:<5} cpu {proc.get('cpu_s', 0):8.1f}s  "
            f"rss {proc.get('rss_mb', 0):7.1f} MB  {beat}"
        )
    for ring in report.get("rings", []):
        lagging = {c: n for c, n in ring["lag"].items() if n}
        click.echo(f"{ring['ring']:>40}  {ring['published']:>12} published  lag {lagging or 0}")
    if report.get("supervisor"):
        click.echo(f"{'supervisor':>14}  pid {report['supervisor']}")


def _explain(tool: str, path: Path, as_json: bool) -> None:
    """Run one explain tool on a JSON file; a bad file is an error naming the field."""
    from engine.explain import ExplainInputError, explain_funding, explain_mark, explain_oracle, render_text

    run = {"oracle": explain_oracle, "mark": explain_mark, "funding": explain_funding}[tool]
    from hx.json_file import JsonFileError, load_json_file

    try:
        doc = load_json_file(path)
    except JsonFileError as exc:
        raise click.ClickException(str(exc)) from None
    if not isinstance(doc, dict):
        raise click.ClickException(f"{path}: want a JSON object")
    try:
        result = run(doc)
    except ExplainInputError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    click.echo(json.dumps(result) if as_json else render_text(result))


_EXPLAIN_FILE = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
_EXPLAIN_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")


@main.group()
def oracle() -> None:
    """Oracle tools (the same maths the oracle process runs)."""


@oracle.command("explain")
@_EXPLAIN_FILE
@_EXPLAIN_JSON
def oracle_explain(file: Path, as_json: bool) -> None:
    """Sources with prices and timestamps, band, staleness -> the index, each dropped source with
    its reason (format: docs/derivatives.md; example: examples/explain/oracle.json)."""
    _explain("oracle", file, as_json)


@main.group()
def mark() -> None:
    """Mark price tools."""


@mark.command("explain")
@_EXPLAIN_FILE
@_EXPLAIN_JSON
def mark_explain(file: Path, as_json: bool) -> None:
    """Index, book mids over time and the half-life, best bid/ask, last trade, external mids ->
    each component and the mark (example: examples/explain/mark.json)."""
    _explain("mark", file, as_json)


@main.group()
def funding() -> None:
    """Funding tools."""


@funding.command("explain")
@_EXPLAIN_FILE
@_EXPLAIN_JSON
def funding_explain(file: Path, as_json: bool) -> None:
    """Premium samples (or impact prices and index), interest, clamp, cap, period and interval,
    positions -> the rate and every payment with the zero-sum check (example: examples/explain/funding.json)."""
    _explain("funding", file, as_json)


@main.group()
def risk() -> None:
    """Margin tools (the same maths the risk process runs)."""


@risk.command("what-if")
@click.argument("portfolio", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The exchange's configuration (assets, markets, risk); default: the embedded config/hx.toml.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
def risk_what_if(portfolio: Path, config_path: Path | None, as_json: bool) -> None:
    """Equity, margins, every scenario's P&L, liquidation prices and what could still be bought,
    for the balances, positions, open orders and prices in PORTFOLIO (JSON; schema in docs/risk.md)."""
    from engine.risk.portfolio_file import PortfolioFileError, run_what_if
    from engine.risk.risk_config import RiskConfigError, load_risk_config
    from engine.risk.risk_spec_builder import build_risk_spec
    from hx.config import DEFAULT_CONFIG
    from hx.json_file import JsonFileError, load_json_file

    try:
        config = load_risk_config(config_path or DEFAULT_CONFIG)
        doc = load_json_file(portfolio)
        report = run_what_if(doc, build_risk_spec(config, config.risk_overrides))
    except (RiskConfigError, PortfolioFileError, JsonFileError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(json.dumps(report, indent=2))


def _exit_on_sigterm() -> None:
    """SIGTERM (``timeout``, ``kill``, a CI's limit) unwinds like Ctrl-C: the run's processes are
    stopped and its shared-memory rings removed on the way out. Python's default ends the process
    at once, leaving the rings in /dev/shm for ``hx clean``."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


@main.command()
@click.option("--scenario", "scenario_name", required=True, help="A built-in scenario's name or a JSON file.")
@click.option("--accounts", default=1000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--step-s",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.01, 3600),
    help="Simulated seconds per step.",
)
@click.option(
    "--calm-s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Simulated seconds of calm flow first (the baseline of throughput_ratio).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write a PNG."
)
@click.option(
    "--pin/--no-pin",
    default=True,
    show_default=True,
    help="This driver on the first CPU and risk on the others (with 2 CPUs or more; the report's placement).",
)
def stress(
    scenario_name: str,
    accounts: int,
    seed: int,
    step_s: float,
    calm_s: float,
    as_json: bool,
    plot_path: Path | None,
    pin: bool,
) -> None:
    """Run a stress scenario through the real processes in simulated time and check the invariants.

    Built-in scenarios (perf/scenarios/*.json): crash, squeeze, equity-gap, resolution,
    oracle-attack, cascade, depeg, and real incidents compressed: flash-crash-2010,
    black-thursday-2020, luna-2022, ftx-ftt-2022, usdc-svb-2023, yen-carry-2024, jelly-2025,
    oct10-2025. The scenario format is in docs/liquidation.md ("Scenario files"). Exit code 1 when
    an invariant fails.
    """
    from perf.stress.plot import plot_run
    from perf.stress.scenario import ScenarioError, load_scenario
    from perf.stress.simulator import Simulator

    try:
        scenario = load_scenario(scenario_name)
        sim = Simulator(scenario, accounts=accounts, seed=seed, step_s=step_s, pin=pin)  # (checks the steps)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    _exit_on_sigterm()
    report = sim.run(calm_s=calm_s)
    if plot_path is not None:
        plot_run(sim.steps, f"{scenario.name}: {accounts} accounts, seed {seed}", plot_path)
        report["plot"] = str(plot_path)
    _emit(report, as_json)
    if not all(report["invariants"].values()):
        sys.exit(1)


@main.command()
@click.argument("address")
@click.argument("amount")
@click.argument("asset", default="USDC")
@click.option("--url", default="ws://127.0.0.1:8765", show_default=True, help="A running exchange's gateway.")
def faucet(address: str, amount: str, asset: str, url: str) -> None:
    """Development tool: credit AMOUNT of ASSET to ADDRESS on a running exchange (`hx up`).

    It sends a DEPOSIT through the gateway's `faucet` op, which is off in config/hx.toml: run a
    copy with `[gateway] faucet = true` and settlement off (the README says how). The account sees
    the credit as a BALANCE event. Never enable it in production.
    """
    import asyncio

    from gateway.sdk.client import HxClient
    from gateway.sdk.errors import HxError

    async def go() -> dict:
        async with HxClient(url, "json") as client:
            return await client.faucet(asset, amount, address=address)

    try:
        reply = asyncio.run(go())
    except (HxError, OSError) as exc:
        raise click.ClickException(f"faucet failed: {exc}") from None
    click.echo(
        f"credited {amount} {asset} to {address} (account {reply['account']}, deposit {reply['deposit_id']})"
    )


@main.command()
@click.argument("prefix", default="hx-")
def clean(prefix: str) -> None:
    """Remove shared-memory rings left by a killed run (names starting with PREFIX)."""
    from engine.ring import cleanup_rings

    removed = cleanup_rings(prefix)
    click.echo(f"removed {len(removed)} segment(s)" + (": " + ", ".join(removed) if removed else ""))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# ---- settlement --------------------------------------------------------------------------------
@main.command()
@click.option("--rpc", "rpc_url", required=True, help="JSON-RPC endpoint of the chain.")
@click.option(
    "--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The deployment's manifest JSON (ClearingHouse address, tokens, start block).",
)  # fmt: skip
@click.option("--account", default=None, help="Also print this address's leaves and proofs, checked.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
def audit(rpc_url: str, manifest_path: Path, account: str | None, as_json: bool) -> None:
    """Rebuild every asset's claims and liabilities trees from the chain's published data and check
    every committed root and total, every ledger against the batch's insurance moves, withdrawals and
    serves, and the insurance fund's balance; exit 1 at the first difference."""
    from settlement.audit import account_proofs
    from settlement.audit import audit as run_audit

    try:
        manifest = json.loads(manifest_path.read_text())
        report = run_audit(rpc_url, manifest)
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"audit: {exc}") from None
    out = report.summary()
    if account:
        out["account"] = account_proofs(report, account)
    if as_json:
        click.echo(json.dumps(out))
    else:
        verdict = "OK" if report.ok else f"DIFFERENCE {report.difference}"
        click.echo(
            f"{report.batches} batch(es) through {report.last_batch}, {report.accounts} accounts: {verdict}"
        )
        for token, f in report.insurance_fund.items():
            click.echo(
                f"insurance fund {token}: balance {f['balance']} (moved in {f['moved_in_executed']}, queued "
                f"{f['moved_in_queued']}, moved out {f['moved_out']}, surplus {f['surplus']})"
            )
        if account:
            click.echo(json.dumps(out["account"], indent=1))
    ok = report.ok and (not account or bool(out["account"].get("ok")))
    sys.exit(0 if ok else 1)


@main.group()
def settlement() -> None:
    """Operate the settlement process of a running exchange."""


@settlement.command("resume")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/run"),
    show_default=True,
)
def settlement_resume(state_dir: Path) -> None:
    """Resume batches after a halt (an alarm in settlement-0/alarms.log says why; look first)."""
    sdir = state_dir / "settlement-0"
    if not sdir.is_dir():
        raise click.ClickException(f"no settlement state under {state_dir}")
    (sdir / "resume.request").write_text("resume\n")
    click.echo(f"hx: resume requested ({sdir / 'resume.request'}); settlement picks it up within 0.1 s")


@settlement.command("status")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/run"),
    show_default=True,
)
def settlement_status(state_dir: Path) -> None:
    """Print settlement's status.json (batches, deposits, halt, chain errors)."""
    path = state_dir / "settlement-0" / "status.json"
    if not path.exists():
        raise click.ClickException(f"no {path}")
    click.echo(path.read_text())
