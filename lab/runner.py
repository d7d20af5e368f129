"""Plan a suite into runs, execute each in its own worker process, store.

Measurement rules it enforces (DESIGN.md): variants interleaved and
repeated, never all of A then all of B; every run in a fresh process pinned
as configured; a per-run timeout; Ctrl-C (or SIGTERM) stops cleanly and
keeps the runs that finished.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from lab import store
from lab.suite import Suite, SuiteError


@dataclass
class PlannedRun:
    id: int
    family: str
    variant: str
    params: dict[str, Any]
    repetition: int
    cpu: int
    peer_cpu: int
    status: str = store.PENDING
    reason: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    window_ns: int | None = None
    samples_file: str | None = None
    n_samples: dict[str, int] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        from lab import families
        family = families.get(self.family)
        point = " ".join(f"{k}={v}" for k, v in self.params.items() if family.param(k).axis)
        return f"{self.family}/{self.variant}" + (f" {point}" if point else "")


class RunObserver(Protocol):
    """Kernel-side view of one run (the probes); the default sees nothing."""

    def arm(self, tgids: list[int]) -> None: ...
    def disarm(self) -> dict[str, float]: ...


class NoObserver:
    def arm(self, tgids: list[int]) -> None:
        pass

    def disarm(self) -> dict[str, float]:
        return {}


def plan(suite: Suite, capabilities: dict[str, str | None]) -> tuple[list[PlannedRun], list[dict]]:
    """Expand the suite into runs, interleaved across variants and points.

    Repetition r visits every (family, variant, point) once, in an order
    rotated by r * n / repetitions, so each variant meets every position in
    the sequence (and whatever drift the machine has) in turn.
    Variants whose capabilities are missing become `skipped` entries.
    """
    cpu, peer = suite.settings["cpu"], suite.settings["peer_cpu"]
    items, skipped = [], []
    for sel in suite.families.values():
        for variant in sel.variants:
            for point in sel.points(variant):
                missing = [f"{c}: {capabilities[c]}" for c in variant.requirements(point)
                           if capabilities.get(c)]
                if missing:
                    skipped.append({"family": sel.family.name, "variant": variant.name,
                                    "params": point, "reason": "; ".join(missing)})
                else:
                    items.append((sel.family.name, variant.name, point))
    runs = []
    reps = suite.repetitions
    for r in range(reps):
        shift = (r * len(items) // reps) if items else 0
        for fam, var, point in items[shift:] + items[:shift]:
            runs.append(PlannedRun(len(runs) + 1, fam, var, dict(point), r, cpu, peer))
    return runs, skipped


def check_cpus(suite: Suite, runs: list[PlannedRun]) -> None:
    """CPUs named by the suite must be usable here: bad input, caught early."""
    usable = sorted(os.sched_getaffinity(0))
    shown = ",".join(map(str, usable))
    cpu, peer = suite.settings["cpu"], suite.settings["peer_cpu"]
    if cpu not in usable:
        raise SuiteError(f"{suite.path}: suite.cpu: CPU {cpu} is not usable here (usable: {shown})")
    if any(r.params.get("placement") == "cross_cpu" for r in runs):
        if peer not in usable:
            raise SuiteError(f"{suite.path}: suite.peer_cpu: CPU {peer} is not usable here "
                             f"(usable: {shown})")
        if peer == cpu:
            raise SuiteError(f"{suite.path}: suite.peer_cpu: must differ from suite.cpu ({cpu}) "
                             "for cross_cpu variants")


def git_revision() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + (" (modified)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git unavailable)"


def new_manifest(suite: Suite, runs: list[PlannedRun], skipped: list[dict],
                 environment: dict[str, Any], capabilities: dict[str, str | None],
                 kernel_view: dict[str, Any]) -> dict[str, Any]:
    from lab import __version__
    return {
        "format": store.FORMAT,
        "format_version": store.FORMAT_VERSION,
        "suite": {"name": suite.name, "path": suite.path, "description": suite.description,
                  "settings": suite.settings,
                  "families": {n: {"variants": [v.name for v in s.variants],
                                   "values": {k: list(v) for k, v in s.values.items()}}
                               for n, s in suite.families.items()}},
        "package_version": __version__,
        "git_revision": git_revision(),
        "started_at": store.now_iso(),
        "ended_at": None,
        "status": "running",
        "environment": environment,
        "capabilities": capabilities,
        "kernel_view": kernel_view,
        "families": {n: s.family.describe() for n, s in suite.families.items()},
        "skipped": skipped,
        "runs": [asdict(r) for r in runs],
    }


class _Stop(Exception):
    """SIGTERM, turned into the same clean stop as Ctrl-C."""


class Runner:
    def __init__(self, run_dir: str, manifest: dict[str, Any], timeout: float,
                 observer: RunObserver | None = None, progress: bool = True):
        self.run_dir = run_dir
        self.manifest = manifest
        self.timeout = timeout
        self.observer = observer or NoObserver()
        self.progress = progress

    # -- the loop ---------------------------------------------------------

    def execute(self) -> str:
        """Run every pending run; returns the suite status."""
        runs = [PlannedRun(**r) for r in self.manifest["runs"]]
        todo = [r for r in runs if r.status in (store.PENDING, store.INTERRUPTED)]
        bar = _Progress(len(todo), self.progress)
        old_term = signal.signal(signal.SIGTERM, _raise_stop)
        status = "complete"
        try:
            for run in todo:
                bar.start(run)
                try:
                    self._run_one(run)
                finally:
                    self._record(runs)
                bar.done(run)
        except (KeyboardInterrupt, _Stop):
            status = "interrupted"
        finally:
            signal.signal(signal.SIGTERM, old_term)
            bar.close()
            self.manifest["status"] = status
            self.manifest["ended_at"] = store.now_iso()
            self._record(runs)
            shutil.rmtree(os.path.join(self.run_dir, ".scratch"), ignore_errors=True)
        return status

    def _record(self, runs: list[PlannedRun]) -> None:
        self.manifest["runs"] = [asdict(r) for r in runs]
        store.write_manifest(self.run_dir, self.manifest)

    # -- one run ------------------------------------------------------------

    def _run_one(self, run: PlannedRun) -> None:
        run.started_at = store.now_iso()
        run.status, run.reason = store.INTERRUPTED, "stopped before it finished"
        scratch_root = os.path.join(self.run_dir, ".scratch")
        os.makedirs(scratch_root, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=f"run-{run.id:04d}-", dir=scratch_root)
        output = os.path.join(scratch, "result")
        t0 = time.monotonic()
        try:
            ok, reason = self._spawn_and_converse(run, scratch, output)
            run.duration_s = round(time.monotonic() - t0, 3)
            if not ok:
                run.status = store.TIMEOUT if reason.startswith("timed out") else store.FAILED
                run.reason = reason
                return
            self._collect(run, output)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _spawn_and_converse(self, run: PlannedRun, scratch: str, output: str) -> tuple[bool, str]:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        spec = {"family": run.family, "variant": run.variant, "params": run.params,
                "cpu": run.cpu, "peer_cpu": run.peer_cpu, "ready_fd": ready_w, "go_fd": go_r,
                "output": output, "scratch_dir": scratch}
        stderr_path = os.path.join(scratch, "stderr")
        proc = None
        armed = False
        try:
            with open(stderr_path, "wb") as err_file:
                # own session: Ctrl-C reaches only the runner, which then
                # kills the worker's whole process group itself
                proc = subprocess.Popen([sys.executable, "-m", "lab.worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=err_file, pass_fds=(ready_w, go_r),
                                        start_new_session=True)
            os.close(ready_w)
            os.close(go_r)
            ready_w = go_r = -1
            proc.stdin.write(json.dumps(spec).encode())
            proc.stdin.close()

            deadline = time.monotonic() + self.timeout
            for line in _lines(ready_r, deadline):
                if line.startswith("ready"):
                    tgids = [int(x) for x in line.split()[1:]]
                    self.observer.arm(tgids)
                    armed = True
                    os.write(go_w, b"go\n")
                elif line == "done":
                    run.counters.update(self.observer.disarm())
                    armed = False
                    os.write(go_w, b"ack\n")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, self.timeout)
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            return False, f"timed out after {self.timeout:g} s"
        except BrokenPipeError:
            pass        # worker died mid-handshake: its exit status says why
        finally:
            if armed:
                self.observer.disarm()
            for fd in (ready_r, ready_w, go_r, go_w):
                if fd >= 0:
                    os.close(fd)
            if proc is not None and proc.poll() is None:
                _kill_group(proc)
        if proc.returncode == 0:
            return True, ""
        return False, _failure_reason(proc.returncode, stderr_path)

    def _collect(self, run: PlannedRun, output: str) -> None:
        import numpy as np
        with np.load(output + ".npz") as npz:
            series = {k: npz[k] for k in npz.files}
        with open(output + ".json") as f:
            result = json.load(f)
        run.samples_file = store.write_samples(self.run_dir, run.id, series)
        run.n_samples = {k: int(v.size) for k, v in series.items()}
        run.window_ns = result["window_ns"]
        run.counters.update(result["counters"])
        run.status, run.reason = store.OK, None


def _raise_stop(signum, frame):
    raise _Stop()


def _lines(fd: int, deadline: float):
    """Yield lines from fd until EOF; raise TimeoutExpired past deadline."""
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise subprocess.TimeoutExpired("worker", 0)
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode(errors="replace").strip()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _failure_reason(returncode: int, stderr_path: str) -> str:
    try:
        with open(stderr_path, errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        lines = []
    last = lines[-1] if lines else ""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"worker killed by {name}" + (f": {last}" if last else "")
    return last or f"worker exited with status {returncode}"


class _Progress:
    """A progress bar with ETA on a terminal; one line per run otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.count = 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, file=sys.stderr,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

    def start(self, run: PlannedRun) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"{run.label} #{run.repetition + 1}"[:60])

    def done(self, run: PlannedRun) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
            if run.status != store.OK:
                self.bar.write(f"{run.label}: {run.status}: {run.reason}", file=sys.stderr)
        elif self.enabled:
            tail = "" if run.status == store.OK else f": {run.reason}"
            print(f"[{self.count}/{self.total}] {run.label} #{run.repetition + 1}: "
                  f"{run.status} {run.duration_s or 0:.1f}s{tail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
