"""perf.bench_all: the comparison calibrated for machine speed, skipped benchmarks, the report files."""

from __future__ import annotations

from pathlib import Path

from perf.bench_all import Bench, _markdown, _plots, compare, lookup, run_one


def _report(cal: float, ops: float, p99: float) -> dict:
    return {
        "started": "t",
        "quick": True,
        "machine": {"cpus": 2, "python": "3.11"},
        "calibration_ops_per_s": cal,
        "benches": {"book": {"status": "ok", "result": {"ops_per_s": ops, "p99_us": p99, "p50_us": 1.0}}},
    }


def test_a_slower_machine_is_not_a_regression_but_a_slower_build_is() -> None:
    base = _report(cal=10.0, ops=1_000_000, p99=4.0)
    # the machine runs at half speed today: half the throughput, twice the latency -> "same"
    rows = {r["figure"]: r for r in compare(_report(5.0, 500_000, 8.0), base)}
    assert rows["ops_per_s"]["ratio"] == 0.5 and rows["ops_per_s"]["calibrated_ratio"] == 1.0
    assert rows["p99_us"]["calibrated_ratio"] == 1.0 and rows["p99_us"]["verdict"] == "same"
    # same machine speed, half the throughput: a regression
    rows = {r["figure"]: r for r in compare(_report(10.0, 500_000, 4.0), base)}
    assert rows["ops_per_s"]["verdict"] == "worse" and rows["p99_us"]["verdict"] == "same"
    rows = {r["figure"]: r for r in compare(_report(10.0, 1_000_000, 2.0), base)}
    assert rows["p99_us"]["verdict"] == "better"
    assert "ratio" not in compare(_report(10.0, 1.0, 1.0), None)[0]  # no baseline: figures only


def test_lookup_reads_dotted_keys_and_ignores_non_numbers() -> None:
    result = {"policies": {"batch": {"appends_per_s": 5}}, "flag": True, "name": "x"}
    assert lookup(result, "policies.batch.appends_per_s") == 5.0
    assert (
        lookup(result, "flag") is None
        and lookup(result, "name") is None
        and lookup(result, "no.such") is None
    )


def test_a_benchmark_missing_from_the_build_is_skipped_with_the_reason() -> None:
    entry = run_one(Bench("nope", ("bench", "no-such-bench", "--json"), ()), quick=True)
    assert entry["status"] == "skipped" and "no-such-bench" in entry["reason"]


def test_report_files_and_plots(tmp_path: Path) -> None:
    report = _report(10.0, 1.0, 2.0)
    report["benches"]["stress"] = {
        "status": "ok",
        "result": {"insurance_fund_usdc": [0, 1, 2], "scenario": "crash"},
    }
    report["benches"]["settle"] = {
        "status": "ok",
        "result": {
            "gas_per_fill_curve": [
                {"fills_per_batch": 1, "gas_per_fill": 240_000},
                {"fills_per_batch": 100, "gas_per_fill": 2_700},
            ]
        },
    }
    report["benches"]["risk"] = {"status": "skipped", "reason": "`hx bench risk` is not in this build"}
    report["comparison"] = compare(report, None)
    report["plots"] = _plots(report, tmp_path)
    assert report["plots"] == ["latency.png", "throughput.png", "gas_per_fill.png"]
    assert all((tmp_path / p).stat().st_size > 1000 for p in report["plots"])
    md = _markdown(report)
    assert "| book | ops_per_s |" in md and "not in this build" in md
