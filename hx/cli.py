"""The ``hx`` command: one entry point for running, benchmarking and inspecting the exchange."""

from __future__ import annotations

import json
import sys

import click


def _emit(report: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report))
    else:
        for key, value in report.items():
            click.echo(f"{key:>24}: {value}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hx")
def main() -> None:
    """hx: a hybrid on/off-chain trading engine."""


@main.group()
def bench() -> None:
    """Benchmarks: each prints one JSON object (medians of several runs)."""


@bench.command("ring")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--messages", default=2_000_000, show_default=True, help="Messages per throughput run.")
@click.option("--batch", default=64, show_default=True, help="Messages per publish in the throughput run.")
@click.option("--rate", default=100_000, show_default=True, help="Paced rate (msgs/s) for the latency run.")
@click.option("--paced-messages", default=100_000, show_default=True, help="Messages per latency run.")
@click.option("--runs", default=5, show_default=True, help="Runs; the report gives medians.")
@click.option("--wait", default="spin-then-backoff", show_default=True,
              type=click.Choice(["busy-spin", "spin-then-backoff", "sleep", "blocking"]),
              help="Consumer wait strategy.")
def bench_ring(as_json: bool, messages: int, batch: int, rate: int, paced_messages: int, runs: int,
               wait: str) -> None:
    """Producer and consumer processes over a shared-memory ring: msgs/s and one-way latency."""
    from perf.bench_ring import run

    _emit(run(messages=messages, batch=batch, rate=rate, paced_messages=paced_messages, runs=runs, wait=wait),
          as_json)


@main.command()
@click.argument("prefix", default="hx-")
def clean(prefix: str) -> None:
    """Remove shared-memory rings left by a killed run (names starting with PREFIX)."""
    from engine.ring import cleanup_rings

    removed = cleanup_rings(prefix)
    click.echo(f"removed {len(removed)} segment(s)" + (": " + ", ".join(removed) if removed else ""))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
