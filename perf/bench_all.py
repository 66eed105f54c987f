"""``hx bench all``: every benchmark, one report, compared with a saved baseline.

Each benchmark runs in its own subprocess (``hx bench <name> --json`` or ``hx stress``), one after
another (two benchmarks at once on a small machine measure each other). The harness writes
``report.json`` (every benchmark's own JSON, untouched, plus the comparison), ``report.md`` (the
headline figures as a table) and PNG plots into the output directory.

A machine that is busier today than when the baseline was taken must not look like a regression,
so the comparison is made in two ways:

* each benchmark's own in-run ratio against its baseline (the C core against its Python twin, the
  ring against faster-fifo, the paced latency against the WebSocket echo floor) is reported as is:
  both sides ran on the same machine in the same minute;
* against a saved baseline report, each headline figure's ratio is divided by the ratio of a
  calibration workload (fixed pure-Python and numpy work, timed before and after the benchmarks in
  both reports), so a machine running at 70% of its speed today shows as 1.0, not 0.7.

A benchmark whose command does not exist in this build (a stage not yet merged) is reported as
skipped with the reason; a benchmark that fails or times out is reported with its error. The
exit code is 0 unless ``--fail-on-regression`` finds a calibrated regression beyond the
threshold.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HIGHER, LOWER = 1, -1  # which way is better


@dataclass(frozen=True)
class Bench:
    name: str
    command: tuple[str, ...]  # after the `hx` executable
    quick: tuple[str, ...]  # extra arguments for --quick
    full: tuple[str, ...] = ()
    headline: tuple[tuple[str, int], ...] = ()  # (dotted key, HIGHER/LOWER)
    timeout_s: float = 1800.0


BENCHES: tuple[Bench, ...] = (
    Bench(
        "ring",
        ("bench", "ring", "--json"),
        ("--messages", "300000", "--paced-messages", "20000", "--runs", "1"),
        headline=(
            ("msgs_per_s", HIGHER),
            ("p50_us", LOWER),
            ("p99_us", LOWER),
            ("ratio_vs_baseline", HIGHER),
        ),
    ),
    Bench(
        "journal",
        ("bench", "journal", "--json"),
        ("--records", "200000", "--runs", "1"),
        headline=(("policies.batch.appends_per_s", HIGHER), ("policies.always.appends_per_s", HIGHER)),
    ),
    Bench(
        "book",
        ("bench", "book", "--json"),
        ("--ops", "200000", "--runs", "1"),
        headline=(("ops_per_s", HIGHER), ("p99_us", LOWER), ("speedup", HIGHER)),
    ),
    Bench(
        "shard",
        ("bench", "shard", "--json"),
        ("--ops", "200000", "--paced-ops", "20000", "--runs", "1"),
        headline=(("ops_per_s", HIGHER), ("p50_us", LOWER), ("p99_us", LOWER)),
    ),
    Bench(
        "e2e",
        ("bench", "e2e", "--json"),
        ("--duration", "3", "--runs", "1"),
        headline=(("orders_per_s", HIGHER), ("p50_us", LOWER), ("p99_minus_p50_us", LOWER)),
    ),
    Bench(
        "risk",
        ("bench", "risk", "--json"),
        ("--quick",),
        headline=(("checks_per_s", HIGHER), ("ring_checks_per_s", HIGHER), ("recompute_ms", LOWER)),
    ),
    Bench(
        "oracle",
        ("bench", "oracle", "--json"),
        ("--quick",),
        headline=(
            ("update_to_mark_p99_us", LOWER),
            ("update_to_margin_p50_ms", LOWER),
            ("update_to_margin_p99_ms", LOWER),
        ),
    ),
    Bench(
        "settle",
        ("bench", "settle", "--json"),
        ("--seconds", "5", "--tree-accounts", "100000", "--tree-touched", "1000"),
        headline=(
            ("fill_to_finality_p50_s", LOWER),
            ("fill_to_finality_p99_s", LOWER),
            ("gas_per_fill", LOWER),
            ("tree_update_ms", LOWER),
        ),
    ),
    Bench(
        "stress",
        ("stress", "--scenario", "crash", "--json"),
        ("--accounts", "500"),
        full=("--accounts", "20000"),
        headline=(
            ("breach_to_order_p99_ms", LOWER),
            ("liquidations_per_s", HIGHER),
            ("throughput_ratio", HIGHER),
        ),
    ),
)


# ---- calibration -----------------------------------------------------------------------------------
def calibration_ops_per_s(repeats: int = 5) -> float:
    """Units of fixed work per second (median of ``repeats``): a pure-Python loop and a numpy sort,
    the two kinds of work the benchmarks do. Used only as a ratio between two reports."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 1 << 40, 200_000)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        acc = 0
        for i in range(300_000):
            acc = (acc * 31 + i) & 0xFFFF_FFFF
        np.sort(data, kind="stable")
        rates.append(1.0 / (time.perf_counter() - t0))
    return statistics.median(rates)


# ---- running ------------------------------------------------------------------------------------
def _hx() -> list[str]:
    exe = Path(sys.executable).with_name("hx")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hx.cli"]


def available(bench: Bench) -> str | None:
    """None if this build has the benchmark's command, else why not."""
    probe = (
        [*_hx(), *bench.command[:-1], "--help"]
        if bench.command[0] == "bench"
        else [*_hx(), "stress", "--help"]
    )
    result = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return f"`hx {' '.join(bench.command[:2])}` is not in this build"
    return None


def run_one(bench: Bench, quick: bool) -> dict[str, Any]:
    """One benchmark in its own process: its JSON line, or why there is none."""
    why = available(bench)
    if why:
        return {"status": "skipped", "reason": why}
    args = [*_hx(), *bench.command, *(bench.quick if quick else bench.full)]
    t0 = time.monotonic()
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=bench.timeout_s / (4 if quick else 1)
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out: {' '.join(args[1:])}"}
    elapsed = round(time.monotonic() - t0, 1)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return {
            "status": "error",
            "reason": f"exit {result.returncode}: {' | '.join(tail)}",
            "seconds": elapsed,
        }
    try:
        return {"status": "ok", "seconds": elapsed, "result": json.loads(lines[-1])}
    except ValueError as exc:
        return {"status": "error", "reason": f"not JSON: {exc}", "seconds": elapsed}


def lookup(result: dict[str, Any], dotted: str) -> float | None:
    node: Any = result
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def compare(report: dict[str, Any], baseline: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Headline figures, with raw and machine-calibrated ratios against the baseline report."""
    rows = []
    speed = None
    if baseline:
        speed = report["calibration_ops_per_s"] / baseline["calibration_ops_per_s"]
    for bench in BENCHES:
        entry = report["benches"].get(bench.name, {})
        if entry.get("status") != "ok":
            continue
        base_entry = (baseline or {}).get("benches", {}).get(bench.name, {})
        for key, better in bench.headline:
            value = lookup(entry["result"], key)
            if value is None:
                continue
            row: dict[str, Any] = {"bench": bench.name, "figure": key, "value": value, "better": better}
            base = lookup(base_entry.get("result", {}), key) if base_entry.get("status") == "ok" else None
            if base and speed:
                raw = value / base
                # throughput scales with machine speed; latency inversely
                calibrated = raw / speed if better == HIGHER else raw * speed
                row.update(baseline=base, ratio=round(raw, 3), calibrated_ratio=round(calibrated, 3))
                goodness = calibrated if better == HIGHER else 1 / calibrated if calibrated else 0
                row["verdict"] = "better" if goodness > 1.2 else "worse" if goodness < 0.8 else "same"
            rows.append(row)
    return rows


# ---- writing -------------------------------------------------------------------------------------
def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# hx benchmark report",
        "",
        f"{report['started']} on {report['machine']['cpus']} CPU(s), {report['machine']['python']};"
        f" {'quick' if report['quick'] else 'full'} pass; calibration {report['calibration_ops_per_s']:.2f}"
        f" (baseline {report.get('baseline_calibration_ops_per_s') or '-'}).",
        "",
        "| bench | figure | value | baseline | ratio | calibrated | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in report["comparison"]:
        lines.append(
            f"| {row['bench']} | {row['figure']} | {row['value']:,.6g} | {row.get('baseline', '-')} "
            f"| {row.get('ratio', '-')} | {row.get('calibrated_ratio', '-')} | {row.get('verdict', '-')} |"
        )
    lines += ["", "| bench | status | seconds | note |", "|---|---|---:|---|"]
    for name, entry in report["benches"].items():
        note = entry.get("reason", "")
        lines.append(f"| {name} | {entry['status']} | {entry.get('seconds', '-')} | {note} |")
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in report.get("plots", [])) or "none", ""]
    return "\n".join(lines)


def _plots(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ok = {n: e["result"] for n, e in report["benches"].items() if e.get("status") == "ok"}

    # latency percentiles of every benchmark that reports them
    names = [n for n, r in ok.items() if "p50_us" in r]
    if names:
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.25
        for k, pct in enumerate(("p50_us", "p99_us", "p999_us")):
            values = [ok[n].get(pct, 0) or 0 for n in names]
            ax.bar([i + k * width for i in range(len(names))], values, width, label=pct[:-3])
        ax.set_xticks([i + width for i in range(len(names))], names)
        ax.set_yscale("log")
        ax.set_ylabel("microseconds")
        ax.set_title("latency percentiles")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=100)
        plt.close(fig)
        written.append("latency.png")

    # throughput over time: per-run throughput, and the stress run's insurance fund per step
    series = {n: r["throughput_runs"] for n, r in ok.items() if isinstance(r.get("throughput_runs"), list)}
    if "e2e" in ok and ok["e2e"].get("per_run"):
        series["e2e"] = [run["orders_per_s"] for run in ok["e2e"]["per_run"]]
    stress = ok.get("stress", {})
    if series or stress.get("insurance_fund_usdc"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for name, values in series.items():
            axes[0].plot(range(1, len(values) + 1), values, marker="o", label=name)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("run")
        axes[0].set_ylabel("per second")
        axes[0].set_title("throughput per run")
        if series:
            axes[0].legend()
        if stress.get("insurance_fund_usdc"):
            axes[1].plot(stress["insurance_fund_usdc"])
            axes[1].set_xlabel(f"step ({stress.get('step_s', 1)} s)")
            axes[1].set_ylabel("USDC")
            axes[1].set_title(f"insurance fund through '{stress.get('scenario')}'")
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=100)
        plt.close(fig)
        written.append("throughput.png")

    # the gas-per-fill curve of settlement batches
    curve = ok.get("settle", {}).get("gas_per_fill_curve")
    if isinstance(curve, list) and curve:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p["fills_per_batch"] for p in curve], [p["gas_per_fill"] for p in curve], marker="o")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("fills per batch")
        ax.set_ylabel("gas per fill")
        ax.set_title("settlement gas per fill")
        fig.tight_layout()
        fig.savefig(out / "gas_per_fill.png", dpi=100)
        plt.close(fig)
        written.append("gas_per_fill.png")
    return written


def run_all(
    out: Path,
    quick: bool,
    baseline_path: Path | None,
    only: tuple[str, ...] = (),
    say: Any = print,
) -> dict[str, Any]:
    """Run the benchmarks (``only`` a subset), write the report into ``out``, return it."""
    out.mkdir(parents=True, exist_ok=True)
    baseline = None
    if baseline_path is not None and baseline_path.exists():
        baseline = json.loads(baseline_path.read_text())
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "benches": {},
    }
    before = calibration_ops_per_s()
    for bench in BENCHES:
        if only and bench.name not in only:
            continue
        say(f"bench {bench.name} ...")
        report["benches"][bench.name] = entry = run_one(bench, quick)
        say(f"bench {bench.name}: {entry['status']} {entry.get('reason', '')}".rstrip())
    after = calibration_ops_per_s()
    report["calibration_ops_per_s"] = round(statistics.mean((before, after)), 3)
    report["calibration_drift"] = round(after / before, 3)  # far from 1: the machine changed mid-run
    report["baseline"] = str(baseline_path) if baseline else None
    report["baseline_calibration_ops_per_s"] = baseline.get("calibration_ops_per_s") if baseline else None
    report["comparison"] = compare(report, baseline)
    report["plots"] = _plots(report, out)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(report))
    return report
