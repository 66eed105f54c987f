"""The composition root: create the rings of a run and start its stages, as the stage table says.

``start`` takes the run's lock (one exchange per state directory), refuses to start over live
processes of an earlier run (naming their pids), creates every ring of the topology (owned here,
recorded with its nonce so processes attach only to this run's rings), then starts every stage
in table order and waits for each to say it is ready. ``stop`` stops the stages in reverse order
(SIGTERM: they snapshot and exit), then removes the rings and releases the lock.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.host import get_scheduling
from engine.host.health_board import HealthBoard
from engine.host.metrics import layout
from engine.host.process_identity import read_pid_files
from engine.ring import RingBuffer, cleanup_rings
from hx.stages import BY_KIND, STAGES, Run, RunSettings, Stage, process_names
from hx.topology import Topology


class RunError(RuntimeError):
    """A run cannot start (or a stage cannot): the message names the process, pid, port or file."""


@dataclass
class StageProcess:
    stage: Stage
    index: int
    process: Any
    ready: Any  # the read end of its ready pipe (closed once it said ready)

    @property
    def name(self) -> str:
        return self.stage.name(self.index)


def _live_hx_process(pid: int) -> bool:
    """True when ``pid`` runs and is one of ours (its title or command line names hx)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    return b"hx" in cmdline or b"multiprocessing" in cmdline


class ReadySignal:
    """How a stage process says it is ready: one byte down a pipe.

    Not a ``multiprocessing.Event``: its lock is shared with the parent, and a parent killed while
    holding it (inside ``Event.wait``) would leave the child blocked in ``set()`` for ever, deaf to
    the SIGTERM meant to stop it. A pipe write never blocks on the parent; a dead reader only
    makes it fail, which is ignored.
    """

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def set(self) -> None:
        try:
            self._writer.send_bytes(b"1")
        except OSError:
            pass


class Pipeline:
    """A running (or startable) exchange: its rings and its stage processes."""

    def __init__(
        self,
        topology: Topology,
        markets_path: Path | str,
        state_dir: Path | str,
        **settings: Any,
    ) -> None:
        self.topology = topology
        self.settings = RunSettings(markets_path=Path(markets_path), state_dir=Path(state_dir), **settings)
        self.rings: dict[str, RingBuffer] = {}
        self.procs: dict[str, StageProcess] = {}
        self._ctx = mp.get_context("spawn")
        self._lock_fd = -1
        self._run: Run | None = None
        self.board: HealthBoard | None = None  # the run's health board (beats, progress)

    @property
    def health_name(self) -> str:
        return f"{self.topology.run_id}-health"

    def health_of(self, name: str) -> dict[str, int] | None:
        """What process ``name`` last wrote on the health board (None before it registered)."""
        if self.board is None or self._run is None or name not in self._run.health_slots:
            return None
        entry = self.board.read(self._run.health_slots[name])
        return entry if entry["pid"] else None

    def metrics_of(self, name: str) -> dict[str, int] | None:
        """The metric words process ``name`` last wrote, by metric name (``engine.host.metrics``;
        a histogram by its first word only); None before it registered."""
        if self.health_of(name) is None:
            return None
        assert self.board is not None and self._run is not None
        words = self.board.metrics(self._run.health_slots[name])
        return {m: words[w] for m, (w, _d) in layout(self.procs[name].stage.kind).items()}

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    # ---- the run's lock ------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "hx.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunError(
                f"state directory {self.state_dir} is in use by another exchange (supervisor pid {holder}); "
                "stop it first, or give this one its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self._check_no_orphans()

    def _check_no_orphans(self, grace_s: float = 5.0) -> None:
        """Processes of an earlier run of this state dir must be gone (they die with their
        supervisor, after a snapshot: give them ``grace_s``); else name them and refuse."""
        deadline = time.monotonic() + grace_s
        while True:
            live = {
                name: pid for name, pid in read_pid_files(self.state_dir).items() if _live_hx_process(pid)
            }
            if not live:
                break
            if time.monotonic() > deadline:
                listed = ", ".join(f"{name} (pid {pid})" for name, pid in sorted(live.items()))
                raise RunError(
                    f"processes of an earlier run of {self.state_dir} are still alive: {listed}; "
                    f"stop them (kill {' '.join(str(p) for p in sorted(live.values()))}) and start again"
                )
            time.sleep(0.1)
        for path in (self.state_dir / "pids").glob("*.pid"):
            path.unlink(missing_ok=True)

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = -1

    # ---- rings ---------------------------------------------------------------------------------
    def create_rings(self) -> None:
        cleanup_rings(self.topology.run_id + "-")  # a killed earlier run of this state dir
        for spec in self.topology.rings:
            self.rings[spec.name] = RingBuffer.create(
                spec.name, spec.slots, consumers=len(spec.consumers), keep=spec.keep
            )
        names = process_names(self.topology)
        self.board = HealthBoard.create(self.health_name, max(1, len(names)))
        self._run = Run(
            self.topology,
            self.settings,
            {name: ring.nonce for name, ring in self.rings.items()},
            os.getpid(),
            self.health_name,
            {name: i for i, name in enumerate(names)},
        )
        manifest = {
            "run_id": self.topology.run_id,
            "supervisor_pid": os.getpid(),
            "health_board": self.health_name,
            "slots": self._run.health_slots,
            "rings": [
                {"name": r.name, "producer": r.producer, "consumers": list(r.consumers)}
                for r in self.topology.rings
            ],
        }
        (self.state_dir / "run.json").write_text(json.dumps(manifest, indent=1))

    # ---- stages --------------------------------------------------------------------------------
    def options_of(self, kind: str, index: int) -> Any:
        """The frozen options a stage process is started with (built here, so bad ones fail early)."""
        if self._run is None:
            raise RunError("create the rings (start the pipeline) before starting a stage")
        return BY_KIND[kind].options(self._run, index)

    def start_stage(self, kind: str, index: int, options: Any = None) -> StageProcess:
        """Spawn one stage process and wait until it says it is ready (RunError otherwise)."""
        stage = BY_KIND[kind]
        name = stage.name(index)
        if name in self.procs and self.procs[name].process.is_alive():
            raise RunError(f"{name} is already running (pid {self.procs[name].process.pid})")
        if options is None:
            try:
                options = self.options_of(kind, index)
            except RunError:
                raise
            except Exception as exc:  # a config that went bad since the start: say which process
                raise RunError(f"{name}: cannot build its options: {exc}") from exc
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_run_stage,
            args=(stage.entry, name, options, ReadySignal(writer)),
            name=f"hx-{name}",
            daemon=True,
        )
        proc.start()
        writer.close()
        handle = StageProcess(stage, index, proc, reader)
        self.procs[name] = handle
        deadline = time.monotonic() + stage.ready_timeout_s
        try:
            while True:
                if reader.poll(0.1):
                    try:
                        reader.recv_bytes()
                        break
                    except EOFError:  # the child closed its end: it died
                        proc.join(5)
                        raise RunError(f"{name} exited during start-up (exit code {proc.exitcode})") from None
                if not proc.is_alive():
                    raise RunError(f"{name} exited during start-up (exit code {proc.exitcode})")
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.join()
                    raise RunError(f"{name} not ready after {stage.ready_timeout_s}s")
        finally:
            reader.close()
        return handle

    def kill(self, name: str) -> None:
        """SIGKILL a stage process (failure testing); ``restart`` brings it back."""
        handle = self.procs[name]
        if handle.process.is_alive():
            os.kill(handle.process.pid, signal.SIGKILL)
        handle.process.join()

    def restart(self, name: str) -> StageProcess:
        """Start a dead stage process again with the options it had (recover: from its journal)."""
        handle = self.procs[name]
        if handle.process.is_alive():
            raise RunError(f"{name} is still running (pid {handle.process.pid})")
        return self.start_stage(handle.stage.kind, handle.index)

    def of_kind(self, kind: str) -> dict[int, StageProcess]:
        return {h.index: h for h in self.procs.values() if h.stage.kind == kind}

    # ---- whole run -----------------------------------------------------------------------------
    def start(self) -> Pipeline:
        self._acquire_lock()
        try:
            self.create_rings()
            for stage in STAGES:
                for i in range(stage.count(self.topology)):
                    self.start_stage(stage.kind, i)
        except BaseException:
            self.stop()
            raise
        return self

    def health(self) -> dict[str, bool]:
        return {name: h.process.is_alive() for name, h in self.procs.items()}

    def scheduling(self) -> dict[str, str]:
        """What the kernel runs each live stage under (``fifo:N`` or ``normal``), for reports."""
        return {name: get_scheduling(h.process.pid) for name, h in self.procs.items() if h.process.is_alive()}

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stages in reverse table order (SIGTERM: they snapshot and exit), then the rings."""
        for stage in reversed(STAGES):
            group = [h for h in self.procs.values() if h.stage is stage]
            for h in group:
                if h.process.is_alive():
                    h.process.terminate()
            for h in group:
                h.process.join(timeout_s)
                if h.process.is_alive():
                    h.process.kill()
                    h.process.join()
        self.procs.clear()
        for ring in self.rings.values():
            ring.close()
        self.rings.clear()
        if self.board is not None:
            self.board.close()
            self.board = None
        self._run = None
        self._release_lock()

    def endpoints(self) -> list[str]:
        """What this run serves besides the WebSocket (which the CLI names): the chain's RPC."""
        out = []
        rpc = self.settings.state_dir / "chain" / "rpc.json"
        if self.settings.settlement.get("rpc_url"):
            out.append(f"chain rpc {self.settings.settlement['rpc_url']}")
        elif rpc.exists():
            try:
                out.append(f"chain rpc {json.loads(rpc.read_text())['rpc_url']} (local anvil)")
            except (ValueError, KeyError):
                pass
        return out

    def with_settings(self, **changes: Any) -> None:
        """Change settings before ``start`` (e.g. the port once it is known)."""
        self.settings = replace(self.settings, **changes)

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run_stage(entry: Any, name: str, options: Any, ready: Any) -> None:
    """A stage process's body: its entry, under cProfile when ``HX_PROFILE_DIR`` is set (an
    operator's tool: ``HX_PROFILE_DIR=/tmp/prof hx stress ...`` then ``python -m pstats
    /tmp/prof/risk-0.pstats``; the stats are written when the stage returns or is stopped)."""
    out = os.environ.get("HX_PROFILE_DIR")
    if not out:
        entry(options, ready)
        return
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    try:
        entry(options, ready)
    finally:
        profile.disable()
        Path(out).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(out) / f"{name}.pstats"))
