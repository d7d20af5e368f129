"""Plan a suite into runs, execute each in its own worker process, store.

Measurement rules it enforces (DESIGN.md): variants interleaved and
repeated, never all of A then all of B; every run in a fresh process (forked
by the suite's zygote, lab.worker.serve) pinned as configured; a per-run
timeout; Ctrl-C (or SIGTERM) stops cleanly and keeps the runs that finished.
Whatever ends a run, nothing it started outlives it: the worker's process
group is killed, and what escaped the group comes back to the runner (a
child subreaper) and is killed too.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from lab import lock, signals, store
from lab.suite import Suite, SuiteError


@dataclass
class PlannedRun(store.RunRecord):
    """A run as the runner plans and fills it: the manifest's record of it
    (lab.store.RunRecord, so ``PlannedRun(**run)`` rebuilds one on resume)."""

    @property
    def label(self) -> str:
        from lab import families
        family = families.get(self.family)
        point = " ".join(f"{k}={v}" for k, v in self.params.items() if family.param(k).axis)
        return f"{self.family}/{self.variant}" + (f" {point}" if point else "")


class RunObserver(Protocol):
    """Kernel-side view of one run (lab.probes.ProbeSession): track the
    worker from its spawn, count between its "ready" and "done"."""

    def track(self, pid: int) -> None: ...
    def arm(self, tgids: list[int]) -> None: ...
    def disarm(self) -> Any: ...        # a lab.probes.KernelView
    def untrack(self) -> None: ...


class SuiteProbes(RunObserver, Protocol):
    """The probes of a whole suite run (lab.probes.ProbeSession): also
    detached for an unprobed twin, or narrowed to some concerns."""

    def park(self) -> None: ...
    def only(self, names: tuple[str, ...] | None) -> None: ...


class NoObserver:
    """A run without the kernel view."""

    def track(self, pid: int) -> None:
        pass

    def arm(self, tgids: list[int]) -> None:
        pass

    def disarm(self) -> None:
        return None

    def untrack(self) -> None:
        pass


@dataclass
class WorkerOutcome:
    """How a run's worker ended: ok (with the kernel view of its window, if
    probed), failed or timed out, and why."""
    status: str                 # store.OK, store.FAILED or store.TIMEOUT
    reason: str | None = None
    view: Any = None            # a lab.probes.KernelView, of an ok probed run


class _RunFailed(Exception):
    """This run cannot go on (its probes failed, its worker did not start):
    it fails with this reason, and the suite goes on."""


@contextlib.contextmanager
def _probe_step():
    """Around one call into the observer: what the probe layer raises
    (ProbeError; OSError from the kernel: bpf(), tracefs, /proc) fails the
    run.  Anything else is a bug and keeps its traceback."""
    from lab.probes import ProbeError
    try:
        yield
    except (ProbeError, OSError) as e:
        raise _RunFailed(f"probes: {e}") from e


class _Handshake:
    """The runner's ends of struct lab_handshake (native/lab_native.h): the
    worker writes "ready <tgid>..." and "done" on ready_fd and waits for
    "go" and "ack" on go_fd.  On leaving, every end still open is closed."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._fds["ready_r"], self._fds["ready_w"] = os.pipe()
        self._fds["go_r"], self._fds["go_w"] = os.pipe()
        # the worker's ends, as its spec names them (struct lab_handshake)
        self.worker_ends = {"ready_fd": self._fds["ready_w"], "go_fd": self._fds["go_r"]}

    def handed_over(self) -> None:
        """The worker holds its ends: ours go, so its exit is EOF here."""
        self._close("ready_w", "go_r")

    def lines(self, deadline: float):
        return _lines(self._fds["ready_r"], deadline)

    def answer(self, word: str) -> None:
        os.write(self._fds["go_w"], word.encode() + b"\n")

    def _close(self, *names: str) -> None:
        for name in names:
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> _Handshake:
        return self

    def __exit__(self, *exc: object) -> None:
        with signals.held():        # cleanup finishes whole
            self._close(*list(self._fds))


def plan(suite: Suite, capabilities: dict[str, str | None],
         kernel_view: bool = False) -> tuple[list[PlannedRun], list[dict]]:
    """Expand the suite into runs, interleaved across variants and points.

    Repetition r visits every (family, variant, point) once, in an order
    rotated by r * n / repetitions, so each variant meets every position in
    the sequence (and whatever drift the machine has) in turn.  With the
    kernel view and ``probe_overhead``, every item runs with and without
    probes, the twins back to back, the first of them alternating.
    Variants whose capabilities are missing become `skipped` entries.
    """
    cpu, peer = suite.settings["cpu"], suite.settings["peer_cpu"]
    items, skipped, seen = [], [], set()
    for sel in (sel for tables in suite.families.values() for sel in tables):
        for variant in sel.variants:
            for point in sel.points(variant):
                key = (sel.family.name, variant.name, tuple(sorted(point.items())))
                if key in seen:
                    continue            # two tables of one family share this point
                seen.add(key)
                missing = [f"{c}: {capabilities[c]}" for c in variant.requirements(point)
                           if capabilities.get(c)]
                problem = sel.family.point_problem(variant.name, point)
                if problem:
                    missing.append(f"cannot run this point: {problem}")
                if missing:
                    skipped.append({"family": sel.family.name, "variant": variant.name,
                                    "params": point, "reason": "; ".join(missing)})
                else:
                    items.append((sel.family.name, variant, point))
    twins = (True, False) if kernel_view and suite.settings["probe_overhead"] else (kernel_view,)
    runs: list[PlannedRun] = []
    reps = suite.repetitions
    for r in range(reps):
        shift = (r * len(items) // reps) if items else 0
        order = items[shift:] + items[:shift]
        # The twins run back to back, so both see the same state of the
        # machine (on a VM the host's shifts last seconds): the first of
        # each pair alternates from item to item and from one repetition to
        # the next, so each twin goes first as often as second.  (Detaching
        # the probes between them takes milliseconds: they are raw
        # tracepoint links.)
        for i, (fam, var, point) in enumerate(order):
            for probed in (twins if (r + i) % 2 == 0 else twins[::-1]):
                runs.append(PlannedRun(len(runs) + 1, fam, var.name, dict(point), r, cpu, peer,
                                       kernel_view=probed,
                                       probes=list(var.probes) if probed and var.probes
                                       else None))
    return runs, skipped


def check_cpus(suite: Suite, runs: list[PlannedRun]) -> None:
    """CPUs named by the suite must be usable here, peer_cpu wherever a
    planned run uses it (Variant.peer_cpu_use): bad input, caught early."""
    from lab import families
    from lab.model import PEER_HELPER, PEER_PARTY

    usable = sorted(os.sched_getaffinity(0))
    shown = ",".join(map(str, usable))
    cpu, peer = suite.settings["cpu"], suite.settings["peer_cpu"]
    if cpu not in usable:
        raise SuiteError(f"{suite.path}: suite.cpu: CPU {cpu} is not usable here (usable: {shown})")
    users: dict[str, str] = {}      # use -> the first variant planned with it, for the message
    for r in runs:
        use = families.get(r.family).variant(r.variant).peer_cpu_use(r.params)
        if use:
            users.setdefault(use, f"{r.family}/{r.variant}")
    if len(usable) < 2:
        users.pop(PEER_HELPER, None)    # one CPU: helpers are not pinned apart
    why = {PEER_PARTY: "its other party runs there", PEER_HELPER: "it pins a thread there"}
    for use, variant in users.items():
        if peer not in usable:
            raise SuiteError(f"{suite.path}: suite.peer_cpu: CPU {peer} is not usable here "
                             f"(usable: {shown}); {variant} uses it: {why[use]}")
        if use == PEER_PARTY and peer == cpu:
            raise SuiteError(f"{suite.path}: suite.peer_cpu: must differ from suite.cpu ({cpu}) "
                             f"(usable: {shown}); {variant} needs a second CPU: {why[use]}")


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


def _selection_record(tables) -> store.SelectionRecord:
    """A family's tables as the manifest keeps them: the union of variants
    and of each parameter's values (in the order the suite gives them,
    which the report follows) and every table as written."""
    variants: list[str] = []
    values: dict[str, list] = {}
    for sel in tables:
        variants += [v.name for v in sel.variants if v.name not in variants]
        for k, vs in sel.values.items():
            values.setdefault(k, [])
            values[k] += [v for v in vs if v not in values[k]]
    return {"variants": variants, "values": values,
            "tables": [{"variants": [v.name for v in sel.variants],
                        "values": {k: list(v) for k, v in sel.values.items()}} for sel in tables]}


def new_manifest(suite: Suite, runs: list[PlannedRun], skipped: list[dict],
                 environment: dict[str, Any], capabilities: dict[str, str | None],
                 kernel_view: dict[str, Any]) -> dict[str, Any]:
    from lab import __version__
    return store.new_manifest(
        suite={"name": suite.name, "path": suite.path, "description": suite.description,
               "settings": suite.settings,
               "families": {n: _selection_record(tables)
                            for n, tables in suite.families.items()}},
        package_version=__version__,
        git_revision=git_revision(),
        started_at=store.now_iso(),
        ended_at=None,
        status="running",
        environment=environment,
        capabilities=capabilities,
        kernel_view=kernel_view,        # probes: enabled, which, headers, or why not
        families={n: tables[0].family.describe() for n, tables in suite.families.items()},
        skipped=skipped,
        runs=[asdict(r) for r in runs])


class Runner:
    def __init__(self, run_dir: str, manifest: dict[str, Any], timeout: float,
                 probes: SuiteProbes | None = None, progress: bool = True):
        self.run_dir = run_dir
        self.manifest = manifest
        self.timeout = timeout
        self.probes = probes            # used by the runs planned with the kernel view
        self.progress = progress
        self._worker: _ForkedWorker | None = None
        self._zygote = _Zygote()
        # compile once: the BPF programs of lab.programs, each loaded for the
        # suite at its first run that needs it and handed to each such
        # worker (its fds)
        from lab.programs import SuitePrograms
        self._shared = SuitePrograms()
        self._next_write = 0.0          # monotonic time the manifest may be rewritten
        # resuming keeps the kernel view of the finished runs, only theirs
        done = {r["id"] for r in manifest["runs"] if r["status"] == store.OK}
        self.metric_rows = [row for row in store.read_metric_rows(run_dir) if row[0] in done]

    # -- the loop ---------------------------------------------------------

    def execute(self) -> str:
        """Run every pending run; returns the suite status.  On every way
        out the manifest says what happened (and how to resume), no worker
        or child of one is left, and the scratch folder is gone."""
        _become_subreaper()
        runs = [PlannedRun(**r) for r in self.manifest["runs"]]
        todo = [r for r in runs if r.status in (store.PENDING, store.INTERRUPTED)]
        if self.probes is None:
            for r in todo:
                r.kernel_view = False   # no session: say so, run by run
        bar = _Progress(len(todo), self.progress)
        status, self.manifest["stopped_by"] = "aborted", None   # unless the loop ends
        self.manifest["status"] = "running"
        try:
            for run in todo:
                if signals.stopped_by:      # a stop held off before the loop
                    raise KeyboardInterrupt
                bar.start(run)
                try:
                    self._run_one(run)
                finally:
                    self._record(runs, every_run=False)
                bar.done(run)
            status = "complete"
        except KeyboardInterrupt:      # Ctrl-C, SIGTERM, SIGHUP (lab.signals)
            status = "interrupted"
            self.manifest["stopped_by"] = signals.stopped_by or "Ctrl-C (SIGINT)"
        except BaseException as e:
            self.manifest["stopped_by"] = f"{type(e).__name__}: {e}"
            raise
        finally:
            # further signals only say "one moment" (lab.signals): this
            # block finishes whole
            self._end_worker()
            self._zygote.close()
            bar.close()
            self.manifest["status"] = status
            self.manifest["ended_at"] = store.now_iso()
            self.manifest["resume_hint"] = (None if status == "complete" else
                                            f"lab run --resume {self.run_dir}")
            self._record(runs)
            shutil.rmtree(os.path.join(self.run_dir, ".scratch"), ignore_errors=True)
            self._shared.close()
            _tidy_tracefs()
        return status

    def _record(self, runs: list[PlannedRun], every_run: bool = True) -> None:
        """Write the manifest, the commit point of the runs it lists ok.
        Between runs (every_run=False) it is written only once the time
        since the last write is 20 times what that write took, and at
        least a second: rewriting a large sweep's manifest after every run
        grew quadratically (a 457 MB manifest per run at 10^6 runs).  A
        runner killed outright loses that much; its runs are re-run by
        --resume (their samples are not listed, so they never count)."""
        now = time.monotonic()
        if not every_run and now < self._next_write:
            return
        self.manifest["runs"] = [asdict(r) for r in runs]
        store.write_manifest(self.run_dir, self.manifest)
        took = time.monotonic() - now
        self._next_write = time.monotonic() + max(1.0, 20 * took)

    # -- one run ------------------------------------------------------------

    def _run_one(self, run: PlannedRun) -> None:
        run.started_at = store.now_iso()
        run.status, run.reason = store.INTERRUPTED, "stopped before it finished"
        scratch_root = os.path.join(self.run_dir, ".scratch")
        os.makedirs(scratch_root, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=f"run-{run.id:04d}-", dir=scratch_root)
        output = os.path.join(scratch, "result")
        observer = self.probes if (run.kernel_view and self.probes) else NoObserver()
        if self.probes and not run.kernel_view:
            self.probes.park()      # no program may run during an unprobed twin
        elif self.probes:
            self.probes.only(tuple(run.probes) if run.probes is not None else None)
        company = set(lock.other_measurements())
        from lab import families
        shared = self._shared.for_run(families.get(run.family).variant(run.variant), run.params)
        t0 = time.monotonic()
        try:
            outcome = self._spawn_and_converse(run, scratch, output, observer, shared)
            run.duration_s = round(time.monotonic() - t0, 3)
            company.update(lock.other_measurements())
            run.alongside = sorted(company) or None
            if outcome.status != store.OK:
                run.status, run.reason = outcome.status, outcome.reason
                return
            self._collect(run, output, outcome.view)
        finally:
            # the worker is gone (_spawn_and_converse ends it on every way out)
            shutil.rmtree(scratch, ignore_errors=True)
            # a BPF-loading worker that was killed (upcall, activations)
            # left its share of tracefs behind
            _tidy_tracefs()

    def _end_worker(self) -> None:
        """Nothing the run started outlives it: the worker's group, and
        whatever left the group and came back to us when its parent died."""
        proc, self._worker = self._worker, None
        if proc is not None and proc.poll() is None:
            _kill_group(proc)
        _kill_orphans(spare=self._zygote.pid)

    def _spawn_and_converse(self, run: PlannedRun, scratch: str, output: str,
                            observer: RunObserver, shared=((), {})) -> WorkerOutcome:
        """Start the run's worker, arm the observer for its measured window
        (the handshake), and wait for it, at most the run's timeout.  On
        every way out the worker and whatever it started are gone."""
        stderr_path = os.path.join(scratch, "stderr")
        try:
            with _Handshake() as handshake, self._worker_process(
                    tuple(handshake.worker_ends.values()) + tuple(shared[0]), stderr_path,
                    observer) as proc:
                spec = {"family": run.family, "variant": run.variant, "params": run.params,
                        "cpu": run.cpu, "peer_cpu": run.peer_cpu, **handshake.worker_ends,
                        "output": output, "scratch_dir": scratch, **shared[1]}
                # watched before it reads its spec: nothing it sets up is missed
                with _probe_step():
                    observer.track(proc.pid)
                handshake.handed_over()
                try:
                    assert proc.stdin is not None       # stdin=PIPE
                    with proc.stdin:
                        proc.stdin.write(json.dumps(spec).encode())
                    view = self._converse(proc, handshake, observer)
                except BrokenPipeError:
                    view = None     # worker died mid-handshake: its exit status says why
        except subprocess.TimeoutExpired:
            return WorkerOutcome(store.TIMEOUT, f"timed out after {self.timeout:g} s")
        except _RunFailed as e:         # this run fails, the suite goes on
            return WorkerOutcome(store.FAILED, str(e))
        if proc.returncode == 0:
            return WorkerOutcome(store.OK, view=view)
        return WorkerOutcome(store.FAILED, _failure_reason(proc.returncode, stderr_path))

    @contextlib.contextmanager
    def _worker_process(self, fds: tuple[int, ...], stderr_path: str, observer: RunObserver):
        """The worker process, given fds, in its own session (Ctrl-C reaches
        only the runner, which kills the worker's whole group itself), forked
        by the suite's zygote (lab.worker.serve).  On leaving, held against
        signals: the observer forgets it, and it and its orphans are killed
        (pyperf's popen_killer, for a process group)."""
        try:
            with open(stderr_path, "wb") as err_file:
                proc = self._worker = self._zygote.fork(fds, err_file.fileno())
            yield proc
        finally:
            with signals.held():
                observer.untrack()
                self._end_worker()

    def _converse(self, proc: _ForkedWorker, handshake: _Handshake,
                  observer: RunObserver) -> Any:
        """The runner's side of the handshake until the worker exits: arm on
        "ready", read the kernel view on "done" (returned; None unprobed).
        TimeoutExpired past the run's timeout."""
        view = None
        deadline = time.monotonic() + self.timeout
        for line in handshake.lines(deadline):
            if line.startswith("ready"):
                with _probe_step():
                    observer.arm([int(x) for x in line.split()[1:]])
                handshake.answer("go")
            elif line == "done":
                with _probe_step():
                    view = observer.disarm()
                handshake.answer("ack")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise subprocess.TimeoutExpired("worker", self.timeout)
        proc.wait(timeout=remaining)
        return view

    def _collect(self, run: PlannedRun, output: str, view: Any) -> None:
        import numpy as np
        with np.load(output + ".npz") as npz:
            series = {k: npz[k] for k in npz.files}
        with open(output + ".json") as f:
            result = json.load(f)
        run.samples_file = store.write_samples(self.run_dir, run.id, series)
        run.n_samples = {k: int(v.size) for k, v in series.items()}
        run.window_ns = result["window_ns"]
        run.ops = result["ops"]
        run.counters.update(result["counters"])
        if view is not None:
            view.add_per_op(run.ops)
            if view.wakeups is not None and view.wakeups.size:
                run.kernel_file = store.write_wakeups(self.run_dir, run.id, view.wakeups)
            self.metric_rows += [(run.id,) + row for row in view.rows]
            store.write_metrics(self.run_dir, self.metric_rows)
        run.status, run.reason = store.OK, None


PR_SET_CHILD_SUBREAPER = 36


# The zygote starts without site (-S): processing the venv's .pth files (the
# editable install's import hook pulls in importlib.metadata) cost 60-80 ms
# a start here.  It gets the runner's own module path instead, which site
# already built from the same files.
WORKER_COMMAND = [sys.executable, "-S", "-m", "lab.worker"]


def _worker_environment() -> dict[str, str]:
    import lab
    root = os.path.dirname(os.path.dirname(os.path.abspath(lab.__file__)))
    path = [root] + [p for p in sys.path if p and os.path.isdir(p) and p != root]
    # NumPy's OpenBLAS would start a thread per CPU in every worker (idle,
    # but threads of the measured process); the workers do no algebra
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path), OPENBLAS_NUM_THREADS="1")


class _ForkedWorker:
    """A worker the zygote forked, reparented to the runner: waited for
    and killed as subprocess.Popen would (pid, poll, wait, returncode),
    its spec written on ``stdin``."""

    def __init__(self, pid: int, stdin_fd: int):
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = os.fdopen(stdin_fd, "wb")

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and timeout is not None:
            with contextlib.closing(_PidFd(self.pid)) as pidfd:
                if not select.select([pidfd.fd], [], [], max(0.0, timeout))[0]:
                    raise subprocess.TimeoutExpired("worker", timeout)
        while self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:       # reaped already: it is gone, status unknown
            self.returncode = -signal.SIGKILL
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)


class _PidFd:
    """pidfd_open(pid): readable once the process has exited."""

    def __init__(self, pid: int):
        self.fd = os.pidfd_open(pid)

    def close(self) -> None:
        os.close(self.fd)


class _Zygote:
    """The suite run's zygote (lab.worker.serve), started at the first run
    and on demand after it died: it forks each run's worker, which then
    skips the interpreter's start and NumPy's import.  Killed at the end
    of the suite run; if the runner dies it sees EOF and exits."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._sock: Any = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def fork(self, fds: tuple[int, ...], stderr_fd: int) -> _ForkedWorker:
        """A worker with fds (as their numbers here), stderr on stderr_fd
        and a pipe to its stdin; _RunFailed if there is none."""
        import socket
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        spec_r, spec_w = os.pipe()
        try:
            socket.send_fds(self._sock, [json.dumps(list(fds)).encode()],
                            [spec_r, stderr_fd, *fds])
            answer = self._sock.recv(64)
        except OSError as e:
            os.close(spec_w)
            self.close()
            raise _RunFailed(f"cannot start the worker: the zygote: {e}") from e
        finally:
            os.close(spec_r)
        pid = int(answer) if answer.strip(b"-").isdigit() else -1
        if pid <= 0:
            os.close(spec_w)
            self.close()
            why = os.strerror(-pid) if pid < -1 else "the zygote could not fork it"
            raise _RunFailed(f"cannot start the worker: {why}")
        return _ForkedWorker(pid, spec_w)

    def _start(self) -> None:
        import socket

        from lab.worker import ZYGOTE_ARG
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                WORKER_COMMAND + [ZYGOTE_ARG, str(theirs.fileno())], env=_worker_environment(),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError as e:
            ours.close()
            raise _RunFailed(f"cannot start the worker: {e}") from e
        finally:
            theirs.close()
        self._sock = ours

    def close(self) -> None:
        with signals.held():
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                _kill_group(proc)


def _become_subreaper() -> None:
    """Orphans of our workers (a cyclictest whose worker was SIGKILLed)
    become our children instead of init's, so _kill_orphans() finds them."""
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children() -> list[int]:
    """The runner's child processes (orphans, and the workers the zygote
    forked, are handed to its main thread)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:           # CONFIG_PROC_CHILDREN off: ask every process
        pass
    return [int(e) for e in filter(str.isdigit, os.listdir("/proc"))
            if lock.parent_of(int(e)) == me]


def _kill_orphans(spare: int | None = None) -> None:
    """Kill and reap every child of the runner but spare (the zygote):
    between runs the runner has no other of its own, so any child is an
    orphan of a worker come back to us.
    A child's pid cannot be reused before we reap it, so this kills exactly
    them (killpg of a dead worker's group could not promise that)."""
    for _ in range(100):                # each kill may hand us its children
        children = [pid for pid in _children() if pid != spare]
        if not children:
            return
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _tidy_tracefs() -> None:
    from lab.probes import tracefs
    tracefs.tidy()


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


def _kill_group(proc: subprocess.Popen | _ForkedWorker) -> None:
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
