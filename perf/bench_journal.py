"""Append throughput of JournalWriter for 64-byte payloads; prints one JSON line per policy.

Run: ``hx bench journal --json``. A commit (one os.write, fsync per policy) follows every ``batch``
appends; the report gives the median of ``runs`` runs per policy.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time

from engine.journal import JournalWriter


def run_once(policy: str, records: int, batch: int) -> float:
    payload = bytes(range(64))
    with tempfile.TemporaryDirectory() as directory:
        writer = JournalWriter(directory, fsync_policy=policy)
        append, commit = writer.append, writer.commit
        t0 = time.perf_counter()
        for _ in range(records // batch):
            for _ in range(batch):
                append(payload)
            commit()
        writer.flush()
        elapsed = time.perf_counter() - t0
        writer.close()
    return records / elapsed


def run(records: int = 1_000_000, batch: int = 64, runs: int = 5) -> dict:
    report: dict = {
        "bench": "journal",
        "payload_bytes": 64,
        "commit_every": batch,
        "runs": runs,
        "policies": {},
    }
    for policy in ("none", "batch", "always"):
        n = records if policy != "always" else min(records, 64 * 2000)
        rates = [run_once(policy, n, batch) for _ in range(runs)]
        report["policies"][policy] = {"records": n, "appends_per_s": round(statistics.median(rates))}
    return report


if __name__ == "__main__":
    print(json.dumps(run()))
