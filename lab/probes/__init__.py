"""Kernel-side truth: bcc programs on tracepoints, beside every run.

One program per concern and tracepoint, each concern in its own C file here
that says in its opening comment what it measures; filter.c holds what they
share (which threads belong to the run, whether its measured window is open,
each thread's record, how often each probe ran).  Tracepoints only: kprobes
may be configured out, and tracepoints survive kernel upgrades.  Raw
tracepoints: the program gets the tracepoint's arguments with no perf record
filled for it, and no perf user of the tracepoint loses an event.

A ProbeSession is a context manager around a whole suite run: it mounts
tracefs if needed, compiles the chosen concerns once (one bcc module) and
loads their programs; per run ``track(pid)`` attaches them (if parked) and
watches the new worker (at spawn), ``arm(tgids)`` opens the window (at
"ready"), ``disarm()`` closes it and reads the kernel view (at "done"),
``untrack()`` forgets the worker; ``park()`` detaches before a run without
probes, ``only(names)`` attaches a subset for the next runs (measuring one
probe's cost: family probe_cost).  Leaving the session detaches and
unloads every program, frees every map and unmounts what it mounted, on
every exit path.  Nothing here imports bcc until a session starts.
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
SYSCALL_NRS = 1024              # system call numbers counted (syscalls.c)
SLOTS = 4096                    # threads a run can own (filter.c's lab_threads)
FIRST_KERNEL_SLOT = 64          # slots below it are the runner's to give (filter.c)


@dataclass(frozen=True)
class Concern:
    name: str
    source: str                             # C file in this folder
    attach: tuple[tuple[str, str], ...]     # (category:event, function)
    summary: str

    @property
    def tracepoints(self) -> tuple[str, ...]:
        return tuple(tp for tp, _ in self.attach)


# the order is each probe's index in filter.c's lab_hits (LAB_HIT_<NAME>)
CONCERNS = (
    Concern("switches", "switches.c", (("sched:sched_switch", "lab_switch"),),
            "context switches per thread, voluntary vs involuntary, off-CPU time"),
    Concern("wakeups", "wakeups.c", (("sched:sched_waking", "lab_waking"),
                                     ("sched:sched_wakeup", "lab_wakeup"),
                                     ("sched:sched_switch", "lab_wake_run")),
            "wake-to-run latency per wake-up (waker CPU -> run CPU)"),
    Concern("syscalls", "syscalls.c", (("raw_syscalls:sys_enter", "lab_sys_enter"),),
            "system calls per thread and by number"),
    Concern("io_uring", "io_uring.c", (("io_uring:io_uring_queue_async_work", "lab_uring_punt"),
                                       ("io_uring:io_uring_poll_arm", "lab_uring_poll"),
                                       ("io_uring:io_uring_task_work_run", "lab_uring_tw"),
                                       ("io_uring:io_uring_local_work_run", "lab_uring_local")),
            "io_uring requests submitted and completed (the rings' own counters), punted to "
            "io-wq, poll-armed; task work"),
    Concern("migrations", "migrations.c", (("sched:sched_migrate_task", "lab_migrate"),),
            "migrations of the run's threads between CPUs"),
)
FILTER = Concern("filter", "filter.c", (("task:task_newtask", "lab_newtask"),),
                 "which threads belong to the run (shared)")
CONCERN_NAMES = tuple(c.name for c in CONCERNS)


def probe_runs_metric(concern: str) -> str:
    """The metric counting a probe's program runs on the run's events."""
    return f"probe_runs_{concern}"

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


def _pid_max() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


# The concerns that watch sched_switch share one program (sched_switch.c):
# for each combination of them a run can attach, its program.
SCHED_SWITCH = "sched:sched_switch"
SWITCH_PROGRAMS = {frozenset({"switches"}): "lab_switch", frozenset({"wakeups"}): "lab_wake_run",
                   frozenset({"switches", "wakeups"}): "lab_switch_wake_run"}


def _switch_programs(names) -> dict[frozenset, str]:
    """The sched_switch programs a module of these concerns defines."""
    names = set(names)
    return {combo: fn for combo, fn in SWITCH_PROGRAMS.items() if combo <= names}


def _source(concerns, pid_max: int) -> str:
    """One module: the shared filter, each concern's own file, then the
    sched_switch programs of the concerns that watch it."""
    parts = [f"#define LAB_PID_MAX {pid_max}", f"#define LAB_SLOTS {SLOTS}",
             f"#define LAB_FIRST_KERNEL_SLOT {FIRST_KERNEL_SLOT}"]
    parts += [f"#define LAB_HIT_{c.name.upper()} {i}" for i, c in enumerate(CONCERNS)]
    parts.append(f"#define LAB_NR_HITS {len(CONCERNS)}")
    parts += [f"#define LAB_WITH_{c.name.upper()}" for c in concerns]
    for concern in (FILTER,) + tuple(concerns):
        with open(os.path.join(HERE, concern.source)) as f:
            parts.append(f"/* ---- {concern.source} ---- */\n{f.read()}")
    programs = _switch_programs(c.name for c in concerns)
    if programs:
        with open(os.path.join(HERE, "sched_switch.c")) as f:
            parts.append(f"/* ---- sched_switch.c ---- */\n{f.read()}")
        for combo, fn in programs.items():
            parts.append(f"int {fn}(struct bpf_raw_tracepoint_args *ctx)\n"
                         f"{{\n\treturn lab_on_switch(ctx, {int('switches' in combo)}, "
                         f"{int('wakeups' in combo)});\n}}")
    return "\n".join(parts)


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
          "uring_punted": "punts_per_op", "uring_completed": "completions_per_op",
          **{probe_runs_metric(c): f"{probe_runs_metric(c)}_per_op" for c in CONCERN_NAMES}}


def compile_program(text: str, what: str, tracefs_at: str):
    """Compile a bcc program (tracefs mounted at tracefs_at): (bcc.BPF, the
    headers used).  The program gets the running kernel's field offsets
    (LAB_OFF_<struct>_<field>, lab/probes/btf.py) for reading through raw
    tracepoints' pointers.  Stand-in headers when none match the running kernel;
    libbcc's compiler chatter is kept off the terminal, its errors go into
    the ProbeError."""
    from lab.probes import btf
    from lab.probes import headers as headers_mod
    try:
        cflags = btf.cflags()
    except btf.BTFError as e:
        raise ProbeError(str(e)) from None
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
            return bcc.BPF(text=text, cflags=cflags), chosen
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
    """Compiled and loaded probes for a suite run (a context manager)."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.concerns = tuple(c for c in CONCERNS if c.name in names)
        self.headers = None
        self.module: Any = None                 # the bcc.BPF module of every concern
        self._stack = contextlib.ExitStack()
        self._comm: dict[int, str] = {}
        self._tgids: list[int] = []
        self._links: dict[tuple[str, str], int] = {}    # (tracepoint, program) -> link fd
        self._active = self.concerns            # attached by track(); only() narrows it
        self._slots: Any = None                 # lab_tid_slot as a NumPy array: pid -> slot
        self._threads: Any = None               # lab_threads as a NumPy array: slot -> record
        self._next_slot = 1                     # the next of the runner's slots
        self._rings: dict[int, tuple[int, int]] = {}    # at arm: ring -> (SQEs, CQEs)

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
        import mmap

        import bcc

        from lab.probes import tracefs
        where = self._stack.enter_context(tracefs.mounted())
        missing = _missing_tracepoints(where, (FILTER,) + self.concerns)
        if missing:
            raise ProbeError(f"tracepoints missing on this kernel: {', '.join(missing)}; "
                             "choose other probes with --probes")
        what = "the probes (" + ", ".join(self.names) + ")"
        self.module, self.headers = compile_program(_source(self.concerns, _pid_max()), what,
                                                    where)
        self._stack.callback(self.module.cleanup)     # closes programs and maps
        self._stack.callback(self._detach)            # runs first: links before programs
        programs = {fn for c in (FILTER,) + self.concerns for tp, fn in c.attach
                    if tp != SCHED_SWITCH}
        programs |= set(_switch_programs(self.names).values())
        for fn in sorted(programs):
            self.module.load_func(fn, bcc.BPF.RAW_TRACEPOINT)   # verify now, not mid-suite
        import numpy as np
        maps = []
        for name in ("lab_tid_slot", "lab_threads"):
            table = self.module[name]
            size = -(-ctypes.sizeof(table.Leaf) * len(table) // mmap.PAGESIZE) * mmap.PAGESIZE
            maps.append(mmap.mmap(table.map_fd, size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE))
            self._stack.callback(maps[-1].close)
        self._stack.callback(self._unmap)       # the arrays go before their mappings
        self._slots = np.frombuffer(maps[0], dtype=np.uint16)
        self._threads = np.frombuffer(maps[1], dtype=np.dtype(self.module["lab_threads"].Leaf),
                                      count=SLOTS)
        self.untrack()
        self._attach(())       # the filter: following the worker's threads costs next to nothing

    def _unmap(self) -> None:
        self._slots = self._threads = None

    def close(self) -> None:
        with signals.held():     # cleanup finishes whole
            self._stack.close()
            self.module = None

    # -- attaching ------------------------------------------------------------

    def _map(self, name: str):
        return self.module[name]

    def _wanted(self, concerns) -> set[tuple[str, str]]:
        """(tracepoint, program) links the concerns need, the filter's
        included; the sched_switch concerns as their one shared program."""
        wanted = {link for c in (FILTER,) + tuple(concerns) for link in c.attach
                  if link[0] != SCHED_SWITCH}
        on_switch = frozenset(c.name for c in concerns
                              if any(tp == SCHED_SWITCH for tp, _ in c.attach))
        if on_switch:
            wanted.add((SCHED_SWITCH, SWITCH_PROGRAMS[on_switch]))
        return wanted

    def _attach(self, concerns) -> None:
        """Link exactly what the concerns need: close the other links (the
        program stops running at once; the kernel frees it after a grace
        period, without waiting here) and open the missing ones."""
        import bcc
        wanted = self._wanted(concerns)
        for link in [k for k in self._links if k not in wanted]:
            os.close(self._links.pop(link))
        for tp, fn in sorted(wanted - self._links.keys()):
            prog = self.module.load_func(fn, bcc.BPF.RAW_TRACEPOINT)
            fd = bcc.libbcc.lib.bpf_attach_raw_tracepoint(prog.fd, tp.split(":")[1].encode())
            if fd < 0:
                raise ProbeError(f"cannot attach {fn} to the raw tracepoint {tp}: "
                                 f"{os.strerror(ctypes.get_errno() or 22)}")
            self._links[(tp, fn)] = fd

    def _detach(self) -> None:
        """Close every link, the filter's too (leaving the session)."""
        while self._links:
            os.close(self._links.popitem()[1])

    def only(self, names: tuple[str, ...] | None) -> None:
        """The concerns the next tracked runs have attached: a subset (one
        probe's cost, measured alone) or None for all of the session's."""
        self._active = (self.concerns if names is None
                        else tuple(c for c in self.concerns if c.name in names))

    def park(self) -> None:
        """Before a run without probes: detach, so it does not pay even for
        programs that would return at once (sys_enter fires on every system
        call of the machine).  Probed runs in a row stay attached."""
        self.untrack()
        self._attach(())        # the filter stays: it costs nothing outside a run

    def track(self, pid: int) -> None:
        """Attach what the run needs, and watch a freshly started worker
        (before it has read its spec, so nothing it sets up is missed)."""
        self.untrack()
        self._attach(self._active)
        self._watch(pid)

    def _watch(self, tid: int) -> None:
        """Give tid one of the runner's slots, unless it has one."""
        if 0 < tid < len(self._slots) and not self._slots[tid] \
                and self._next_slot < FIRST_KERNEL_SLOT:
            slot, self._next_slot = self._next_slot, self._next_slot + 1
            self._threads[slot] = 0
            self._threads["tid"][slot] = tid
            self._slots[tid] = slot         # a u16 store: see filter.c

    def arm(self, tgids: list[int]) -> None:
        """The worker is ready: reset the counts and open the window."""
        self._comm = _thread_names(tgids)
        for tgid in tgids:
            self._watch(tgid)
        for tid in self._comm:
            self._watch(tid)
        for name in self._threads.dtype.names:
            if name != "tid":
                self._threads[name] = 0
        for name in ("lab_hits",) + tuple(
                table for concern, table in (("syscalls", "lab_sys_by_nr"),
                                             ("wakeups", "lab_wake_count"),
                                             ("io_uring", "lab_uring"))
                if concern in self.names):
            _zero(self._map(name))
        self._tgids = list(tgids)
        self._rings = _ring_counters(tgids) if "io_uring" in self.names else {}
        self._map("lab_ctl")[ctypes.c_int(0)] = ctypes.c_uint64(1)

    def disarm(self) -> KernelView:
        """Close the window and read what the probes counted in it."""
        self._map("lab_ctl")[ctypes.c_int(0)] = ctypes.c_uint64(0)
        self._comm.update(_thread_names(self._tgids))   # threads born in the window
        view = KernelView()
        # (tid, record) per slot in use: a list, as a pid freed and reused
        # in the window has two slots
        threads = [(int(t["tid"]), t) for t in self._threads[self._threads["tid"] != 0].copy()]
        hits = _sums(self._map("lab_hits"))
        for concern in self._active:
            _READERS[concern.name](self, view, threads)
            view.add(concern.name, probe_runs_metric(concern.name),
                     hits[CONCERNS.index(concern)])
        return view

    def untrack(self) -> None:
        """Forget the run: the window is shut and no stale pid (reused
        later) stays watched; the programs stay attached (see park())."""
        if self.module is None:
            return
        self._map("lab_ctl")[ctypes.c_int(0)] = ctypes.c_uint64(0)
        self._slots[:] = 0
        self._threads[:] = 0
        self._next_slot = 1
        self._map("lab_ctl")[ctypes.c_int(1)] = ctypes.c_uint64(FIRST_KERNEL_SLOT)

    # -- reading --------------------------------------------------------------

    def _label(self, tid: int) -> str:
        return f"tid={tid} {self._comm.get(tid, '?')}"

    def _read_switches(self, view: KernelView, threads: list) -> None:
        vol = invol = offcpu = 0
        for tid, t in threads:
            if not (t["voluntary"] or t["involuntary"] or t["offcpu_ns"]):
                continue
            vol += t["voluntary"]
            invol += t["involuntary"]
            offcpu += t["offcpu_ns"]
            key = self._label(tid)
            view.add("switches", "switches_voluntary", t["voluntary"], key)
            view.add("switches", "switches_involuntary", t["involuntary"], key)
            view.add("switches", "offcpu_ns", t["offcpu_ns"], key)
        view.add("switches", "switches", vol + invol)
        view.add("switches", "switches_voluntary", vol)
        view.add("switches", "switches_involuntary", invol)
        view.add("switches", "offcpu_ns", offcpu)

    def _read_wakeups(self, view: KernelView, threads: list) -> None:
        import mmap

        import numpy as np
        count = int(self._map("lab_wake_count")[ctypes.c_int(0)].value)
        kept = min(count, WAKE_MAX)
        from lab import store
        # struct lab_wake_event (wakeups.c), its fields by the names the
        # results format stores them under
        dtype = np.dtype(list(zip(store.WAKEUP_COLUMNS, ("<u8", "<u8", "<u4", "<u2", "<u2"),
                                  strict=True)))
        table = self._map("lab_wake_events")
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

    def _read_syscalls(self, view: KernelView, threads: list) -> None:
        from bcc.syscall import syscall_name
        by_nr = _sums(self._map("lab_sys_by_nr"))
        for nr in by_nr.nonzero()[0]:
            name = syscall_name(int(nr)).decode(errors="replace")
            view.add("syscalls", "syscalls", by_nr[nr], f"nr={nr} {name}")
        for tid, t in threads:
            if t["syscalls"]:
                view.add("syscalls", "syscalls", t["syscalls"], self._label(tid))
        view.add("syscalls", "syscalls", by_nr.sum())

    def _read_io_uring(self, view: KernelView, threads: list) -> None:
        names = ("uring_punted", "uring_poll_armed", "uring_task_work_runs",
                 "uring_local_work_runs")     # io_uring.c's indices
        for name, n in zip(names, _sums(self._map("lab_uring"))):
            view.add("io_uring", name, n)
        submitted = completed = 0
        for ring, (sq, cq) in _ring_counters(self._tgids).items():
            sq0, cq0 = self._rings.get(ring, (0, 0))    # 0: made in the window
            submitted += (sq - sq0) % 2**32             # the kernel's u32 ring indices
            completed += (cq - cq0) % 2**32
        view.add("io_uring", "uring_submitted", submitted)
        view.add("io_uring", "uring_completed", completed)

    def _read_migrations(self, view: KernelView, threads: list) -> None:
        total = 0
        for tid, t in threads:
            if t["migrations"]:
                total += t["migrations"]
                view.add("migrations", "migrations", t["migrations"], self._label(tid))
        view.add("migrations", "migrations", total)


def _sums(table):
    """A per-CPU array's values summed over the CPUs (a NumPy array)."""
    import numpy as np
    out = np.zeros(len(table), dtype=np.int64)
    with _bcc_map_call("read", table):
        for k, v in table.items_lookup_batch():
            out[getattr(k, "value", k)] = sum(v)
    return out


def _zero(table) -> None:
    """Every value of an array (per-CPU or not) back to zero."""
    keys = (table.Key * len(table))(*range(len(table)))
    with _bcc_map_call("zero", table):
        table.items_update_batch(keys, (table.Leaf * len(table))())


@contextlib.contextmanager
def _bcc_map_call(what: str, table):
    # bcc reports a failed batch syscall as a bare Exception: name it a
    # ProbeError, which fails that run ("probes: ..."), not the suite
    try:
        yield
    except ProbeError:
        raise
    except Exception as e:
        name = getattr(table, "name", b"?")
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise ProbeError(f"cannot {what} BPF map {name}: {e}") from e


_READERS: dict[str, Callable[[ProbeSession, KernelView, list], None]] = {
    "switches": ProbeSession._read_switches,
    "wakeups": ProbeSession._read_wakeups,
    "syscalls": ProbeSession._read_syscalls,
    "io_uring": ProbeSession._read_io_uring,
    "migrations": ProbeSession._read_migrations,
}


def _proc_entries(tgids: list[int], folder: str):
    """(tgid, name) of each entry of /proc/<tgid>/<folder> (task, fd) of
    the thread groups still alive."""
    for tgid in tgids:
        try:
            names = os.listdir(f"/proc/{tgid}/{folder}")
        except OSError:
            continue
        for name in names:
            yield tgid, name


def _ring_counters(tgids: list[int]) -> dict[int, tuple[int, int]]:
    """Every io_uring the thread groups hold: its inode (one ring, however
    many fds and processes share it) -> (SQEs the kernel consumed, CQEs it
    posted): CachedSqHead and CachedCqTail of its fdinfo."""
    rings = {}
    for tgid, fd in _proc_entries(tgids, "fd"):
        try:
            if os.readlink(f"/proc/{tgid}/fd/{fd}") != "anon_inode:[io_uring]":
                continue
            with open(f"/proc/{tgid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
            rings[int(info["ino"])] = (int(info["CachedSqHead"]), int(info["CachedCqTail"]))
        except (OSError, KeyError, ValueError):
            continue        # closed meanwhile, or not a ring after all
    return rings


def _thread_names(tgids: list[int]) -> dict[int, str]:
    """tid -> comm of every thread of the run, while they are alive."""
    names = {}
    for tgid, tid in _proc_entries(tgids, "task"):
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
