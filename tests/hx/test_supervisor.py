"""Supervision and run identity with real processes: one exchange per state directory, rings that
belong to one run, children that die with a killed supervisor, restarts that back off and report."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.host.process_identity import read_pid_files
from engine.ring import RingBuffer, RingError, RingRef, cleanup_rings
from hx.config import DEFAULT_CONFIG
from hx.pipeline import Pipeline, RunError
from hx.supervisor import supervise
from hx.topology import Topology, run_id_for
from perf.replay_runner import workload_markets_file

REPO = Path(__file__).resolve().parents[2]


def _pipeline(tmp: Path, state: str, run: str, **kw: object) -> Pipeline:
    topo = Topology(
        run_id=run, shards=1, gateways=0, recorders=1, order_ring_slots=1 << 10, event_ring_slots=1 << 12
    )
    return Pipeline(
        topo, markets_path=workload_markets_file(tmp, 1), state_dir=tmp / state, fsync="none", **kw
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def _wait_until(cond, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_run_ids_differ_by_state_dir_and_names_are_checked(tmp_path: Path) -> None:
    assert run_id_for(tmp_path / "a") != run_id_for(tmp_path / "b")
    assert run_id_for(tmp_path / "a") == run_id_for(tmp_path / "x" / ".." / "a")
    assert run_id_for(tmp_path, "demo") == "hx-demo"
    with pytest.raises(ValueError, match="run name"):
        run_id_for(tmp_path, "../etc")


def test_a_second_exchange_on_the_same_state_dir_is_refused_naming_the_pid(tmp_path: Path) -> None:
    run = f"hx-t-lock-{os.getpid()}"
    with _pipeline(tmp_path, "state", run):
        with pytest.raises(RunError, match=f"supervisor pid {os.getpid()}"):
            _pipeline(tmp_path, "state", run + "-b").start()


def test_two_exchanges_on_one_host_keep_their_own_rings(tmp_path: Path) -> None:
    a = _pipeline(tmp_path, "a", run_id_for(tmp_path / "a")).start()
    try:
        names_a = set(a.rings)
        with _pipeline(tmp_path, "b", run_id_for(tmp_path / "b")) as b:
            assert names_a.isdisjoint(b.rings)
        # stopping b removed only b's rings
        for name in names_a:
            RingBuffer.attach(name).close()
        assert a.health() == {"shard-0": True}
    finally:
        a.stop()


def test_attaching_to_another_runs_ring_is_refused_with_a_reason() -> None:
    name = f"hx-t-ref-{os.getpid()}"
    ring = RingBuffer.create(name, 8)
    try:
        assert RingRef(name, ring.nonce).attach().nonce == ring.nonce
        with pytest.raises(RingError, match="not this run's"):
            RingRef(name, ring.nonce ^ 1).attach()
    finally:
        ring.close()


def test_stage_processes_are_titled_and_write_pid_files(tmp_path: Path) -> None:
    with _pipeline(tmp_path, "state", f"hx-t-pid-{os.getpid()}") as pipe:
        pid = pipe.procs["shard-0"].process.pid
        _wait_until(lambda: read_pid_files(tmp_path / "state").get("shard-0") == pid, 10, "pid file")
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            assert fh.read().startswith(b"hx shard-0")
    assert "shard-0" not in read_pid_files(tmp_path / "state")


def test_a_failing_restart_backs_off_reports_and_recovers(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, "state", f"hx-t-backoff-{os.getpid()}")
    markets = pipe.settings.markets_path
    saved = markets.read_text()
    events: list[str] = []
    state = {"killed": False, "restored": False}

    def on_event(text: str) -> None:
        events.append(text)
        if text.startswith("exchange running") and not state["killed"]:
            state["killed"] = True
            markets.unlink()  # the restart cannot build its options until the file is back
            pipe.kill("shard-0")
        if "restart 2 failed" in text and not state["restored"]:
            state["restored"] = True
            markets.write_text(saved)
        if "shard-0 restarted" in text:
            os.kill(os.getpid(), signal.SIGTERM)  # stop supervise

    code = supervise(pipe, duration_s=30, on_event=on_event, poll_s=0.05)
    assert code == 0
    failed = [e for e in events if "restart" in e and "failed" in e]
    assert len(failed) >= 2 and "next try in 0.5s" in failed[0] and "next try in 1.0s" in failed[1]
    assert "no such file" in failed[0]
    assert any("shard-0 restarted" in e for e in events)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_kill_minus_9_of_hx_up_takes_its_children_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = _free_port()
    config = tmp_path / "hx.toml"  # the embedded default (its local chain included), metrics off
    config.write_text(re.sub(r"(?m)^metrics_port = \d+", "metrics_port = 0", DEFAULT_CONFIG.read_text()))
    cmd = [
        sys.executable,
        "-m",
        "hx.cli",
        "up",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--port",
        str(port),
        "--fsync",
        "none",
    ]
    sup = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: {"shard-0", "gateway-0"} <= set(read_pid_files(state)), 180, "stages up")
        children = read_pid_files(state)
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait()
        _wait_until(lambda: not any(_alive(pid) for pid in children.values()), 30, "children to exit")
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nobody serves the port any more
        again = subprocess.run(
            cmd + ["--duration", "0.5"], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
    finally:
        if sup.poll() is None:
            sup.kill()
        cleanup_rings(run_id_for(state) + "-")


def test_a_process_that_stops_making_progress_is_detected_and_restarted(tmp_path: Path) -> None:
    """SIGSTOP the shard: alive, but its loop no longer beats on the health board."""
    pipe = _pipeline(tmp_path, "state", f"hx-t-stall-{os.getpid()}")
    events: list[str] = []
    state = {"stopped": 0}

    def on_event(text: str) -> None:
        events.append(text)
        if text.startswith("exchange running"):
            deadline = time.monotonic() + 10
            while pipe.health_of("shard-0") is None and time.monotonic() < deadline:
                time.sleep(0.02)  # registered and beating
            state["stopped"] = pipe.procs["shard-0"].process.pid
            os.kill(state["stopped"], signal.SIGSTOP)
        if "shard-0 restarted" in text:
            os.kill(os.getpid(), signal.SIGTERM)

    assert supervise(pipe, duration_s=30, on_event=on_event, poll_s=0.05, stall_timeout_s=0.5) == 0
    assert any(f"(pid {state['stopped']}) made no progress" in e for e in events), events
    assert any("shard-0 restarted" in e for e in events)


def test_an_idle_stage_keeps_beating(tmp_path: Path) -> None:
    with _pipeline(tmp_path, "state", f"hx-t-beat-{os.getpid()}") as pipe:
        _wait_until(lambda: pipe.health_of("shard-0") is not None, 10, "registration")
        first = pipe.health_of("shard-0")["beat_ns"]  # type: ignore[index]
        _wait_until(lambda: pipe.health_of("shard-0")["beat_ns"] > first, 5, "a second beat while idle")  # type: ignore[index]


def test_metrics_are_served_for_every_process_and_parse(tmp_path: Path) -> None:
    """One Prometheus endpoint from the supervisor; the text parses and names every process."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    port = _free_port()
    pipe = _pipeline(tmp_path, "state", f"hx-t-metrics-{os.getpid()}")
    scraped: dict[str, object] = {}

    def on_event(text: str) -> None:
        if text.startswith("exchange running"):
            _wait_until(lambda: pipe.health_of("shard-0") is not None, 10, "registration")
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            scraped["families"] = {f.name: f for f in text_string_to_metric_families(body)}
            os.kill(os.getpid(), signal.SIGTERM)

    assert supervise(pipe, duration_s=30, on_event=on_event, poll_s=0.05, metrics_port=port) == 0
    families = scraped["families"]
    assert isinstance(families, dict)
    up = {s.labels["process"]: s.value for s in families["hx_process_up"].samples}
    assert up == {"shard-0": 1.0}
    assert "hx_records" in families and "hx_ring_lag" in families
    lag = {(s.labels["ring"], s.labels["consumer"]) for s in families["hx_ring_lag"].samples}
    assert all(consumer for _ring, consumer in lag) and lag
