"""kill -9 a writer at random points: every acknowledged record survives, intact; nothing corrupt
is ever returned; a writer reopened on the directory truncates the torn tail and continues."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.journal import JournalReader, JournalWriter

HERE = Path(__file__).resolve().parent
CHILD = HERE / "journal_kill_child.py"
REPO = HERE.parents[2]

_spec = importlib.util.spec_from_file_location("journal_kill_child", CHILD)
_child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_child)
calc_payload = _child.calc_payload


def read_ack(path: Path) -> int:
    data = path.read_bytes() if path.exists() else b""
    return int.from_bytes(data[:8], "little") if len(data) >= 8 else 0


def run_and_kill(directory: Path, policy: str, seed: int, ack_path: Path, rng: random.Random) -> int:
    """Start a writer child, let it ack progress, SIGKILL it at a random moment; return its last ack."""
    before = read_ack(ack_path)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(directory), policy, str(seed), str(ack_path)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while read_ack(ack_path) <= before:  # wait until it has committed something new
            if proc.poll() is not None:
                raise AssertionError(f"child exited early: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError("child made no progress")
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return read_ack(ack_path)


def check_journal(directory: Path, acked: int) -> JournalReader:
    """Every record 1..acked present and intact, seqs consecutive; the reader is left with the
    replay's torn-tail findings and ``last`` (the last seq returned)."""
    reader = JournalReader(directory)
    last = 0
    for seq, payload in reader.replay():
        assert seq == last + 1
        assert payload == calc_payload(seq), f"record {seq} corrupt"
        last = seq
    assert last >= acked, f"acknowledged seq {acked} lost (journal ends at {last})"
    reader.last = last
    return reader


@pytest.mark.parametrize(("policy", "iterations"), [("none", 6), ("always", 3)])
def test_kill_minus_9_keeps_every_acknowledged_record(tmp_path, policy: str, iterations: int) -> None:
    rng = random.Random(f"kill-{policy}")
    directory, ack_path = tmp_path / "journal", tmp_path / "ack"
    torn_tails = 0
    for i in range(iterations):
        acked = run_and_kill(directory, policy, seed=rng.randrange(1 << 30), ack_path=ack_path, rng=rng)
        reader = check_journal(directory, acked)
        last = reader.last
        torn = (reader.torn_tail_path, reader.torn_tail_at) if reader.torn_tail_at is not None else None
        torn_tails += torn is not None
        if i % 2 == 0:  # half the time the parent recovers and writes; else the next child recovers
            with JournalWriter(directory, fsync_policy="none", segment_bytes=256 << 10) as writer:
                assert writer.torn_tail_truncated == torn
                assert writer.next_seq == last + 1
                seq = writer.append_many([calc_payload(s) for s in range(last + 1, last + 11)])
            assert seq == last + 10
            reader = check_journal(directory, seq)
            assert reader.last == seq and reader.torn_tail_at is None
            ack_path.write_bytes(seq.to_bytes(8, "little"))
    assert len(os.listdir(directory)) > 1  # the children rolled over segments
    print(f"policy={policy}: {iterations} kills, {torn_tails} left a torn tail")
