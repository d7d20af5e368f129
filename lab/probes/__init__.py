"""Kernel-side truth: bcc programs on tracepoints, beside every run.

One BPF program per concern, each in its own C file here that says in its
opening comment what it measures; filter.c holds what they share (which
pids belong to the run, whether its measured window is open).  Tracepoints
only: kprobes may be configured out, and tracepoints survive kernel upgrades.

A ProbeSession is a context manager around a whole suite run: it mounts
tracefs if needed and compiles and loads the chosen concerns once; per run
``track(pid)`` attaches the tracepoints (if parked) and watches the new
worker (at spawn), ``arm(tgids)`` opens the window (at "ready"),
``disarm()`` closes it and reads the kernel view (at "done"), ``untrack()``
forgets the worker; ``park()`` detaches before a run without probes.  Leaving the
session detaches and unloads every program, frees every map and unmounts
what it mounted, on every exit path.  Nothing here imports bcc until a
session starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from lab import signals

HERE = os.path.dirname(os.path.abspath(__file__))
WAKE_MAX = 262144               # records the wake-up array holds per run (wakeups.c)


@dataclass(frozen=True)
class Concern:
    name: str
    source: str                             # C file in this folder
    attach: tuple[tuple[str, str], ...]     # (category:event, function)
    summary: str

    @property
    def tracepoints(self) -> tuple[str, ...]:
        return tuple(tp for tp, _ in self.attach)


CONCERNS = (
    Concern("switches", "switches.c", (("sched:sched_switch", "lab_switch"),),
            "context switches per thread, voluntary vs involuntary, off-CPU time"),
    Concern("wakeups", "wakeups.c", (("sched:sched_waking", "lab_waking"),
                                     ("sched:sched_wakeup", "lab_wakeup"),
                                     ("sched:sched_switch", "lab_wake_run")),
            "wake-to-run latency per wake-up (waker CPU -> run CPU)"),
    Concern("syscalls", "syscalls.c", (("raw_syscalls:sys_enter", "lab_sys_enter"),),
            "system calls per thread and by number"),
    Concern("io_uring", "io_uring.c", (("io_uring:io_uring_create", "lab_uring_create"),
                                       ("io_uring:io_uring_submit_req", "lab_uring_submit"),
                                       ("io_uring:io_uring_queue_async_work", "lab_uring_punt"),
                                       ("io_uring:io_uring_poll_arm", "lab_uring_poll"),
                                       ("io_uring:io_uring_complete", "lab_uring_done"),
                                       ("io_uring:io_uring_task_work_run", "lab_uring_tw"),
                                       ("io_uring:io_uring_local_work_run", "lab_uring_local")),
            "io_uring requests submitted, punted to io-wq, poll-armed, completed; task work"),
    Concern("migrations", "migrations.c", (("sched:sched_migrate_task", "lab_migrate"),),
            "migrations of the run's threads between CPUs"),
)
FILTER = Concern("filter", "filter.c", (("task:task_newtask", "lab_newtask"),),
                 "which pids belong to the run (shared)")
CONCERN_NAMES = tuple(c.name for c in CONCERNS)


class ProbeError(RuntimeError):
    """Probes cannot run here; the message says why and what would fix it."""


def parse_selection(text: str) -> tuple[str, ...]:
    """--probes value: all, none, or a comma-separated list of concerns."""
    text = text.strip()
    if text == "all":
        return CONCERN_NAMES
    if text == "none":
        return ()
    chosen = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [c for c in chosen if c not in CONCERN_NAMES]
    if unknown or not chosen:
        raise ValueError(f"--probes: unknown probe {', '.join(unknown) or repr(text)}; "
                         f"allowed: all, none, or a list of {', '.join(CONCERN_NAMES)}")
    return chosen


def unavailable_reason() -> str | None:
    """Why probes cannot run here (None when they can), without touching
    anything: no bcc import, no mount."""
    import importlib.util
    if os.geteuid() != 0:
        return "not root: loading BPF programs needs root (CAP_BPF and CAP_PERFMON)"
    if importlib.util.find_spec("bcc") is None:
        return ("Debian's bcc (python3-bpfcc) is not importable: run `make setup`, which "
                "installs it and links it into the virtual environment")
    from lab.probes import headers
    h = headers.find(build=False)     # checks where the merged tree would go; builds nothing
    if h.problem:
        return h.problem
    return None


def describe() -> dict[str, Any]:
    """What a session would use: headers and tracepoints (doctor, manifest)."""
    from lab.probes import headers
    h = headers.find(build=False)
    return {
        "headers": h.description,
        "headers_exact": h.exact,
        "concerns": {c.name: {"tracepoints": list(c.tracepoints), "summary": c.summary}
                     for c in CONCERNS},
        "filter_tracepoints": list(FILTER.tracepoints),
    }


def _source(concern: Concern) -> str:
    """A concern's module: the shared filter, then the concern's own file."""
    with open(os.path.join(HERE, FILTER.source)) as f:
        text = f.read()
    if concern is FILTER:
        return "#define LAB_FILTER_OWNER\n" + text
    with open(os.path.join(HERE, concern.source)) as f:
        return f"{text}\n/* ---- {concern.source} ---- */\n{f.read()}"


def _missing_tracepoints(tracefs: str, concerns) -> list[str]:
    missing = []
    for concern in concerns:
        for tp in concern.tracepoints:
            category, event = tp.split(":")
            if not os.path.isdir(os.path.join(tracefs, "events", category, event)):
                missing.append(tp)
    return missing


# run totals that mean most per operation of the variant (metric -> name)
PER_OP = {"switches": "switches_per_op", "switches_voluntary": "voluntary_switches_per_op",
          "switches_involuntary": "involuntary_switches_per_op", "syscalls": "syscalls_per_op",
          "wakeups": "wakeups_per_op", "uring_submitted": "submits_per_op",
          "uring_punted": "punts_per_op", "uring_completed": "completions_per_op"}


def compile_program(text: str, what: str, tracefs_at: str):
    """Compile a bcc program (tracefs mounted at tracefs_at): (bcc.BPF, the
    headers used).  Stand-in headers when none match the running kernel;
    libbcc's compiler chatter is kept off the terminal, its errors go into
    the ProbeError."""
    from lab.probes import headers as headers_mod
    chosen = headers_mod.find()
    if chosen.problem:
        raise ProbeError(chosen.problem)
    if chosen.path:
        # read by libbcc when it compiles, i.e. in this process
        os.environ["BCC_KERNEL_SOURCE"] = chosen.path
    import bcc
    bcc.TRACEFS = tracefs_at    # bcc decides this at import; tracefs may be new
    errors: list[str] = []
    try:
        with _captured_stderr() as errors:
            return bcc.BPF(text=text), chosen
    except Exception as e:
        detail = "; ".join(errors[:3]) or str(e)
        raise ProbeError(f"bcc could not compile {what} against {chosen.description}: "
                         f"{detail}") from None


@contextlib.contextmanager
def bpf_program(text: str, what: str):
    """A BPF program as a mechanism under test (the upcall family loads one
    in its worker): compiled like the probes, tracefs mounted while it
    lives, detached and unloaded on every way out."""
    reason = unavailable_reason()
    if reason:
        raise ProbeError(reason)
    from lab.probes import tracefs
    with tracefs.mounted() as where:
        module, _ = compile_program(text, what, where)
        try:
            yield module
        finally:
            with signals.held():     # cleanup finishes whole
                module.cleanup()


@dataclass
class KernelView:
    """What the probes saw in one run's measured window: tidy rows
    (probe, metric, key, value), key "" for the run's totals and e.g.
    "tid=123 comm" or "nr=39 getpid" for breakdowns, and the wake-ups."""

    rows: list[tuple[str, str, str, float]] = field(default_factory=list)
    wakeups: Any = None         # NumPy structured array of wake-up records, or None

    def add(self, probe: str, metric: str, value: float, key: str = "") -> None:
        self.rows.append((probe, metric, key, float(value)))

    def total(self, metric: str) -> float | None:
        for _, m, key, value in self.rows:
            if m == metric and key == "":
                return value
        return None

    def add_per_op(self, ops: int) -> None:
        """Divide the run totals by the operations in the window."""
        if ops <= 0:
            return
        for probe, metric, key, value in list(self.rows):
            if key == "" and metric in PER_OP:
                self.add(probe, PER_OP[metric], value / ops)


class ProbeSession:
    """Compiled and attached probes for a suite run (a context manager)."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.concerns = tuple(c for c in CONCERNS if c.name in names)
        self.headers = None
        self.modules: dict[str, Any] = {}     # concern -> its bcc.BPF module
        self._stack = contextlib.ExitStack()
        self._comm: dict[int, str] = {}
        self._tgids: list[int] = []
        self._attached = False

    # -- lifetime -------------------------------------------------------------

    def __enter__(self) -> "ProbeSession":
        reason = unavailable_reason()
        if reason:
            raise ProbeError(reason)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        from lab.probes import tracefs
        where = self._stack.enter_context(tracefs.mounted())
        missing = _missing_tracepoints(where, (FILTER,) + self.concerns)
        if missing:
            raise ProbeError(f"tracepoints missing on this kernel: {', '.join(missing)}; "
                             "choose other probes with --probes")
        # the filter first: it owns the maps the others use (and is freed last)
        for concern in (FILTER,) + self.concerns:
            module, self.headers = compile_program(_source(concern), f"the {concern.name} probe",
                                                   where)
            self._stack.callback(module.cleanup)  # detach, close programs and maps
            self.modules[concern.name] = module
            for _, fn in concern.attach:
                module.load_func(fn, module.TRACEPOINT)     # verify now, not mid-suite
        self._stack.callback(self._detach)

    def close(self) -> None:
        with signals.held():     # cleanup finishes whole
            self._stack.close()
            self.modules.clear()

    # -- per run --------------------------------------------------------------

    def _map(self, name: str, concern: str = "filter"):
        return self.modules[concern][name]

    def _attach(self) -> None:
        for concern in (FILTER,) + self.concerns:
            module = self.modules[concern.name]
            for tp, fn in concern.attach:
                module.attach_tracepoint(tp=tp, fn_name=fn)
        self._attached = True

    def _detach(self) -> None:
        """Detach every tracepoint.  Each detach waits for the kernel to be
        sure no CPU still runs the program (about 80 ms per tracepoint on a
        2-vCPU VM); in parallel they overlap partly."""
        if not self._attached:
            return
        self._attached = False
        from concurrent.futures import ThreadPoolExecutor
        attached = [(module, tp) for concern in (FILTER,) + self.concerns
                    if (module := self.modules.get(concern.name)) is not None
                    for tp in dict.fromkeys(concern.tracepoints)
                    if tp.encode() in module.tracepoint_fds]
        with ThreadPoolExecutor(max_workers=len(attached) or 1) as pool:
            list(pool.map(lambda m_tp: m_tp[0].detach_tracepoint(tp=m_tp[1]), attached))

    def park(self) -> None:
        """Before a run without probes: detach, so it does not pay even for
        programs that would return at once (sys_enter fires on every system
        call of the machine).  Probed runs in a row stay attached."""
        self.untrack()
        self._detach()

    def track(self, pid: int) -> None:
        """Attach (if parked), and watch a freshly started worker (before it
        has read its spec, so nothing it sets up is missed)."""
        self.untrack()
        if not self._attached:
            self._attach()
        one = ctypes.c_uint8(1)
        self._map("lab_tgids")[ctypes.c_uint32(pid)] = one
        self._map("lab_tids")[ctypes.c_uint32(pid)] = one

    def arm(self, tgids: list[int]) -> None:
        """The worker is ready: reset the counts and open the window."""
        one = ctypes.c_uint8(1)
        for tgid in tgids:
            self._map("lab_tgids")[ctypes.c_uint32(tgid)] = one
            self._map("lab_tids")[ctypes.c_uint32(tgid)] = one
        for concern, name in (("switches", "lab_switches"), ("syscalls", "lab_sys_by_tid"),
                              ("syscalls", "lab_sys_by_nr"), ("migrations", "lab_migrations")):
            if concern in self.modules:
                self._map(name, concern).clear()
        for concern, name in (("wakeups", "lab_wake_count"), ("io_uring", "lab_uring")):
            if concern in self.modules:
                table = self._map(name, concern)
                for i in range(len(table)):
                    table[ctypes.c_int(i)] = table.Leaf(0)
        self._tgids = list(tgids)
        self._comm = _thread_names(tgids)
        self._map("lab_ctl")[ctypes.c_int(0)] = ctypes.c_uint64(1)

    def disarm(self) -> KernelView:
        """Close the window and read what the probes counted in it."""
        self._map("lab_ctl")[ctypes.c_int(0)] = ctypes.c_uint64(0)
        self._comm.update(_thread_names(self._tgids))   # threads born in the window
        view = KernelView()
        for concern in self.concerns:
            _READERS[concern.name](self, view)
        return view

    def untrack(self) -> None:
        """Forget the run: the window is shut and no stale pid (reused
        later) stays watched; the programs stay attached (see park())."""
        if "filter" not in self.modules:
            return
        self._map("lab_ctl")[ctypes.c_int(0)] = ctypes.c_uint64(0)
        for concern, name in (("filter", "lab_tgids"), ("filter", "lab_tids"),
                              ("switches", "lab_switched_out"), ("wakeups", "lab_wake_start"),
                              ("io_uring", "lab_rings")):
            if concern in self.modules:
                self._map(name, concern).clear()

    # -- reading --------------------------------------------------------------

    def _label(self, tid: int) -> str:
        return f"tid={tid} {self._comm.get(tid, '?')}"

    def _read_switches(self, view: KernelView) -> None:
        vol = invol = offcpu = 0
        for k, v in self._map("lab_switches", "switches").items():
            vol += v.voluntary
            invol += v.involuntary
            offcpu += v.offcpu_ns
            key = self._label(k.value)
            view.add("switches", "switches_voluntary", v.voluntary, key)
            view.add("switches", "switches_involuntary", v.involuntary, key)
            view.add("switches", "offcpu_ns", v.offcpu_ns, key)
        view.add("switches", "switches", vol + invol)
        view.add("switches", "switches_voluntary", vol)
        view.add("switches", "switches_involuntary", invol)
        view.add("switches", "offcpu_ns", offcpu)

    def _read_wakeups(self, view: KernelView) -> None:
        import mmap

        import numpy as np
        count = int(self._map("lab_wake_count", "wakeups")[ctypes.c_int(0)].value)
        kept = min(count, WAKE_MAX)
        dtype = np.dtype([("waking_to_run_ns", "<u8"), ("wakeup_to_run_ns", "<u8"),
                          ("tid", "<u4"), ("waker_cpu", "<u2"), ("run_cpu", "<u2")])
        table = self._map("lab_wake_events", "wakeups")
        size = -(-dtype.itemsize * WAKE_MAX // mmap.PAGESIZE) * mmap.PAGESIZE
        with mmap.mmap(table.map_fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as mm:
            records = np.frombuffer(mm, dtype=dtype, count=kept).copy()
        view.wakeups = records
        view.add("wakeups", "wakeups", count)
        view.add("wakeups", "wakeups_lost", count - kept)
        if not kept:
            return
        lat = records["waking_to_run_ns"].astype(np.float64)
        for q, name in ((50, "wake_to_run_p50_ns"), (90, "wake_to_run_p90_ns"),
                        (99, "wake_to_run_p99_ns")):
            view.add("wakeups", name, np.percentile(lat, q))
        view.add("wakeups", "wakeups_cross_cpu",
                 int((records["waker_cpu"] != records["run_cpu"]).sum()))
        for tid in np.unique(records["tid"]):
            mine = lat[records["tid"] == tid]
            key = self._label(int(tid))
            view.add("wakeups", "wakeups", mine.size, key)
            view.add("wakeups", "wake_to_run_p50_ns", np.median(mine), key)
        pairs, counts = np.unique(np.stack([records["waker_cpu"], records["run_cpu"]], axis=1),
                                  axis=0, return_counts=True)
        for (src, dst), n in zip(pairs, counts):
            view.add("wakeups", "wakeups", n, f"cpu {src}->{dst}")

    def _read_syscalls(self, view: KernelView) -> None:
        from bcc.syscall import syscall_name
        total = 0
        for k, v in self._map("lab_sys_by_nr", "syscalls").items():
            total += v.value
            name = syscall_name(k.value).decode(errors="replace")
            view.add("syscalls", "syscalls", v.value, f"nr={k.value} {name}")
        for k, v in self._map("lab_sys_by_tid", "syscalls").items():
            view.add("syscalls", "syscalls", v.value, self._label(k.value))
        view.add("syscalls", "syscalls", total)

    def _read_io_uring(self, view: KernelView) -> None:
        names = ("uring_submitted", "uring_punted", "uring_poll_armed", "uring_completed",
                 "uring_task_work_runs", "uring_local_work_runs")     # io_uring.c's indices
        table = self._map("lab_uring", "io_uring")
        for i, name in enumerate(names):
            view.add("io_uring", name, table[ctypes.c_int(i)].value)

    def _read_migrations(self, view: KernelView) -> None:
        total = 0
        for k, v in self._map("lab_migrations", "migrations").items():
            total += v.value
            view.add("migrations", "migrations", v.value, self._label(k.value))
        view.add("migrations", "migrations", total)


_READERS: dict[str, Callable[[ProbeSession, KernelView], None]] = {
    "switches": ProbeSession._read_switches,
    "wakeups": ProbeSession._read_wakeups,
    "syscalls": ProbeSession._read_syscalls,
    "io_uring": ProbeSession._read_io_uring,
    "migrations": ProbeSession._read_migrations,
}


def _thread_names(tgids: list[int]) -> dict[int, str]:
    """tid -> comm of every thread of the run, while they are alive."""
    names = {}
    for tgid in tgids:
        try:
            tids = os.listdir(f"/proc/{tgid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{tgid}/task/{tid}/comm") as f:
                    names[int(tid)] = f.read().strip()
            except OSError:
                pass
    return names


@contextlib.contextmanager
def _captured_stderr():
    """libbcc's compiler writes to fd 2: warnings about the stand-in headers
    on every run, the real errors when compiling fails.  Keep them out of
    the progress output; yield a list that holds them on failure."""
    import tempfile
    saved = os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            captured.extend(line.rstrip() for line in tmp if "error" in line)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
