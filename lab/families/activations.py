"""Family ``activations``: scheduler activations on Linux -- an M:N fiber
runtime with handoff on block -- and the 1992 paper's Table IV side by side
(seeds 000, 002, 004).

Anderson et al. (1992) gave user-level threads the speed of a user-level
scheduler and the behaviour of kernel threads when they block: the kernel
upcalls the runtime on a fresh activation, which keeps the virtual
processor busy with another user-level thread; the unblock upcall hands the
returning thread back and the old activation is discarded.  This family
builds that runtime in C (native/activations.c) and measures it against
what people use instead.

**The runtime.**  Fibers (native/fiber.c: own stacks, our own x86-64
context switch) run on ``vps`` virtual processors.  A VP is a token, an
owner word, and an activation -- a kernel thread pinned to the VP's CPU --
runs fibers only while it owns one; VP i runs on the i-th CPU of [suite
cpu, suite peer_cpu, the other CPUs this process may use].  Each VP has
its own ready queue and its share of the fibers (fiber i on VP i mod vps),
so a VP's blocked fiber is that VP's lost capacity and not hidden by
another VP; ``spares`` spare activations per VP are created up front.

**The workload.**  ``concurrency`` fibers take tasks from a shared counter
until ``tasks`` are done (``warmup_tasks`` before the window); a fiber
yields to its VP's others after each task, so every fiber keeps one task
in flight (a closed system: a task is released when its fiber's previous
one completes, the first ones when the phase starts).  A task is
``steps`` steps of CPU work (``work_ns`` of dependent multiplies,
calibrated against the clock, so a preempted step still does the same
work) and then the blocking call: read() of the fiber's timerfd.  Each
step draws from the task's own xorshift64* stream (splitmix64 of ``seed``
and the task number: the same draws for every variant, no rand()) whether
the call blocks (probability ``p``): then the timer is armed ``block_us``
ahead; otherwise TFD_IOC_SET_TICKS makes the fd readable first and the
read returns at once.  Why a timerfd: every variant can make the same call
-- blocking read() for the kernel-thread ones, preadv2(RWF_NOWAIT) for
syncfirst (timerfd has FMODE_NOWAIT since its ->read_iter conversion,
Linux 6.9; earlier a zero-timeout poll() is the try), IORING_OP_READ for
uring (poll-armed, so no io-wq worker; IORING_OP_TIMEOUT would not be the
same call) -- the kernel, not a helper thread on a shared CPU, ends the
block, and p is exactly the fraction of calls that block.

**The variants** (what happens when a fiber's call blocks):

- ``none``: nothing: the activation blocks and its VP with it until the
  call returns (N:1 threads per VP).
- ``futex_hint``: the call's wrapper frees the VP and FUTEX_WAKEs one of
  the VP's spares before every call that may block, and after it takes the
  VP back if no spare took it (pessimistic handoff: paid on every call).
- ``syncfirst``: preadv2(RWF_NOWAIT) first; hand off as futex_hint only on
  EAGAIN (seed 003's async(); counter ``eagain``).
- ``monitor``: Go's sysmon: the wrapper marks the owner word "in a call"
  and stamps the start; a monitor thread checks every ``monitor_us`` and
  CASes a VP in a call for longer than ``monitor_us`` to free, waking a
  spare -- as Go's retake(), only when the VP has fibers waiting to run
  (or the call has lasted 10 ms).  The monitor is not pinned: it may run
  on any VP's CPU, and the kernel wakes it where a CPU is idle -- the CPU
  of a VP stuck in a call is.  It ticks only while a phase runs (Go's backs off when idle), and
  sets its timer slack to 1 ns (the default 50 us would swallow a 20 us
  period).  Its ticks are switches the probes count.
- ``upcall``: the paper's protocol with the upcall family's BPF program
  (lab/families/upcall_bpf.c, loaded as is): every activation has its own
  slot in ``lab_upcall_vps`` (slot = activation id) and registers its tid
  in ``lab_upcall_tids``.  The wrapper marks the owner word "in a call"
  and sets the slot's ``ring_kinds`` to the block bit only for the call,
  so the runtime's own futex and epoll waits write no record.  A blocked
  call writes a ring record (sched:sched_switch); the VP's designated
  spare, asleep in epoll on the ring, reads who is blocked from the owner
  word and the slot's block_seq (the record is only the doorbell; a record
  whose call already returned counts in ``stale_upcalls``) and takes the
  VP with a CAS.  When the call returns, the returning activation's CAS
  fails: it requeues its fiber and becomes a spare (the unblock upcall).
  The ring is one for all VPs, so a record wakes every VP's ring spare;
  who drains a record for another VP pokes that VP's eventfd (``pokes``),
  in case its spare was not yet asleep.  Before it runs a fiber, the spare
  that took a VP wakes another to watch the ring.
- ``uring``: fibers never block in the kernel: the call is an
  IORING_OP_READ SQE (one ring per VP, IORING_SETUP_SINGLE_ISSUER, only
  the VP's thread submits); the fiber switches away unless its CQE is
  already there (``inline_completions``: the call did not block), the VP's
  loop reaps CQEs and makes fibers runnable, and sleeps in io_uring_enter()
  when nothing is runnable.
- ``pthreads``: for reference: ``concurrency`` kernel threads, one per
  in-flight task, the same task code and call, free to run on the VPs'
  CPUs: no VPs, the kernel schedules.

The owner word holds the owner's id, an "in a call" bit and a generation,
so of "the taker's CAS" (spare, monitor) and "the returner's CAS" exactly
one wins, and a stale view (a record of a returned call) never takes a VP
from a running owner.

**Series.**  ``task_latency`` (headline): one task from its release to its
last call's return, so its waits for the VP are in it (with every fiber
busy, latency = concurrency / throughput: Little's law).  ``handoff``
(futex_hint, syncfirst, monitor, upcall; present when a handoff happened):
from the block to the spare running a fiber on the VP (or, with nothing
runnable, being ready to): for upcall the kernel's time of the block (the
program's bpf_ktime_get_ns() in the slot), for futex_hint and syncfirst
the wrapper's stamp before its wake, for monitor the stamp when the call
began (the monitor's period is in it).  It includes waking the next ring
spare (upcall).  **Counters:** ``throughput_steps_per_s`` and
``throughput_tasks_per_s`` over the window; ``vp_idle_fraction``: the
share of VP time no activation ran fiber code (blocked calls, handoffs,
empty queues); ``cpu_busy_fraction``: process CPU time over vps x window;
and the runtime's own counts, declared once, each with what it means, in
native/activations.h (``ACTIVATIONS_COUNTERS``; Python reads their names
from cffi).  A run whose mechanics break (a task done
twice or not at all, more than vps activations running fibers, a lost or
bad ring record) fails with the reason.  One operation is one task, so the
probes' switches and syscalls per op are per task.

**Table IV** (``t4_*``, ``op`` null_fork or signal_wait), in ns per
operation.  Null Fork: create a thread of that kind with a null body, run
it to completion, join: ``t4_fibers`` / ``t4_activations`` take a pooled
fiber (stacks are reused, as FastThreads did), queue it, the parent waits
in the runtime's join; ``t4_pthreads``: pthread_create + pthread_join;
``t4_processes``: fork + _exit + waitpid (a copy of this Python process's
page tables: what a process costs a program of this size).  Signal-Wait:
one side wakes the other, then waits (half a round trip): fibers through
the runtime's ready queue on one VP; pthreads through a private futex,
two threads on one CPU; processes through a futex in MAP_SHARED memory,
two processes on one CPU.  ``t4_fibers`` is the runtime as ``none`` builds
it (one activation, no kernel support: FastThreads on Topaz threads);
``t4_activations`` the runtime as ``upcall`` builds it -- the program
loaded, the activation registered, a spare asleep on the ring -- so
whatever the machinery costs on these paths is in it (the paper: 34 vs
37 us; here the user-level fast path touches no activation state, see the
report).  Fibers average ``ops_per_sample`` operations per sample; threads
and processes are timed one operation at a time.  The paper's numbers are
quoted, and ours set beside them, by analysis (analysis.families.activations:
PAPER_TABLE_IV_US, table_iv()); they never enter the measured data.
"""

from __future__ import annotations

import errno
from typing import Any

from lab import programs
from lab.families import _activations_cs, _activations_k42, _activations_mp
from lab.model import (
    USABLE_CPUS,
    Family,
    Measurement,
    Metric,
    Param,
    RunContext,
    Variant,
    vp_cpus,
)
from lab.native import enum_values, struct_fields


def _native():
    from lab import native
    return native.load()


# declared in native/activations.h
VARIANTS = enum_values("enum activations_variant", "ACT_")
T4_KINDS = enum_values("enum activations_table_kind", "ACT_")
T4_OPS = tuple(enum_values("enum activations_table_op", "ACT_T4_"))
BLOCK_KINDS = enum_values("enum activations_block_kind", "ACT_BLOCK_")
_, _lib = _native()
MAX_SLOTS = _lib.ACT_MAX_SLOTS
MAX_FAULT_PAGES = _lib.ACT_MAX_FAULT_PAGES
# what cannot make a page fault its blocking call, and why
FAULT_REFUSED = {
    "syncfirst": "a page fault has no RWF_NOWAIT: a touch cannot be tried without blocking",
    "uring": "io_uring has no operation that takes a page fault for the fiber",
}
MAX_HANDOFF_SAMPLES = 1_000_000

TASK_LATENCY = Metric("task_latency", "ns",
                      "one task: its release (its fiber's previous task done) to its last call's "
                      "return, waits for a VP included")
HANDOFF = Metric("handoff", "ns",
                 "block -> a spare running a fiber on the VP (upcall: the kernel's block time; "
                 "futex_hint, syncfirst: the wrapper's stamp before its wake; monitor: the call's "
                 "start)")
NS_PER_OP = Metric("ns_per_op", "ns",
                   "one Table IV operation (signal_wait: half a round trip); fibers: the mean of "
                   "ops_per_sample")

PARAMS = (
    Param("vps", 2, "VPs", "virtual processors (pinned activations running fibers); VP i on the "
          "i-th of [cpu, peer_cpu, other CPUs]; pthreads: the CPUs its threads may use",
          low=1, high=len(USABLE_CPUS)),
    Param("spares", 4, "per VP", "spare activations per VP, created before the window "
          f"(futex_hint, syncfirst, monitor, upcall; upcall: vps x (1 + spares) <= {MAX_SLOTS})",
          low=0, high=31),
    Param("concurrency", 8, "fibers", "fibers, i.e. tasks in flight (pthreads: threads)",
          low=1, high=_lib.ACT_MAX_FIBERS),
    Param("tasks", 1000, "tasks", "measured tasks per run: one task_latency sample each",
          low=1, high=1_000_000, axis=False),
    Param("warmup_tasks", 100, "tasks", "tasks run before the measured window",
          low=0, high=1_000_000, axis=False),
    Param("steps", 20, "steps/task", "steps per task: CPU work, then the call", low=1,
          high=10_000),
    Param("work_ns", 5000, "ns", "CPU work per step (calibrated multiplies)", low=0,
          high=10_000_000),
    Param("p", 0.1, "", "probability that a step's call blocks", low=0.0, high=1.0),
    Param("block_us", 50, "us", "how long a blocking call blocks (timerfd armed that far ahead; "
          "uffd: the handler's delay before it resolves the fault; fault: does not apply, the "
          "disk's read decides)", low=1, high=100_000),
    Param("block_kind", "timerfd", "", "the blocking call: timerfd (read() of the fiber's "
          "timerfd), fault (read touch of an evicted page of a MAP_SHARED scratch file: a major "
          "fault, the activation sleeps in D state until the disk read ends) or uffd (read touch "
          "of a missing page of a userfaultfd range: a runtime handler thread resolves it with "
          "UFFDIO_COPY after block_us); every blocking call touches a fresh page",
          choices=tuple(BLOCK_KINDS)),
    Param("monitor_us", 20, "us", "monitor: its period, and how long a VP may stay in a call "
          "before it is retaken (Go's sysmon: 20 us at its fastest)", low=1, high=100_000),
    Param("seed", 1, "", "seeds every task's xorshift stream (same draws for every variant)",
          low=0, high=2**31),
    Param("op", "null_fork", "", "Table IV operation: null_fork (create, run a null body, join) "
          "or signal_wait (signal a waiter, then wait: half a round trip)", choices=T4_OPS),
    Param("samples", 300, "samples", "Table IV: recorded samples per run", low=10,
          high=100_000, axis=False),
    Param("warmup", 30, "samples", "Table IV: unrecorded samples before the window", low=0,
          high=100_000, axis=False),
    Param("ops_per_sample", 50, "ops", "Table IV fibers: operations averaged into one sample "
          "(threads and processes are timed one at a time)", low=1, high=100_000, axis=False),
)

HANDOFF_VARIANTS = ("futex_hint", "syncfirst", "monitor", "upcall")

# the family's parts in their own modules (each says what it is): their
# parameters and variants follow the ones here
PARTS = (_activations_cs, _activations_mp, _activations_k42)


# ---- which points can run --------------------------------------------------

def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point cannot run (the runner skips it with this reason), or None."""
    for part in PARTS:
        if any(v.name == variant for v in part.VARIANTS):
            return part.point_problem(variant, p)
    kind = p.get("block_kind", "timerfd")
    if kind != "timerfd" and variant in FAULT_REFUSED:
        return f"{variant}: block_kind={kind}: {FAULT_REFUSED[variant]}"
    if kind != "timerfd" and "tasks" in p:
        pages = p["p"] * (p["tasks"] + p["warmup_tasks"]) * p["steps"]
        if pages > 0.9 * MAX_FAULT_PAGES:
            return (f"block_kind={kind}: ~{pages:.0f} blocking calls, each a page of its own, "
                    f"the runtime maps at most {MAX_FAULT_PAGES}: lower tasks, steps or p")
    if variant == "upcall" and p["vps"] * (1 + p["spares"]) > MAX_SLOTS:
        return (f"upcall: vps x (1 + spares) = {p['vps'] * (1 + p['spares'])} activations, the "
                f"upcall program has {MAX_SLOTS} slots: lower spares or vps")
    if "concurrency" in p and "vps" in p and variant != "pthreads" and \
            p["concurrency"] < p["vps"]:
        return (f"concurrency={p['concurrency']} < vps={p['vps']}: every VP needs a fiber; "
                "raise concurrency or lower vps")
    if "vps" in p and p["vps"] > len(USABLE_CPUS):
        return f"vps={p['vps']}: only {len(USABLE_CPUS)} CPUs usable here: lower vps"
    return None


def _check(variant: str, p: dict[str, Any]) -> None:
    problem = point_problem(variant, p)
    if problem:
        raise ValueError(problem)


# ---- the workload ------------------------------------------------------------------

def run_tasks(variant: str, p: dict[str, Any], cpus: list[int], maps: Any = None,
              handshake: Any = None, scratch_dir: str | None = None):
    """Call activations_run: (task_ns, handoff_ns, counts dict, window ns).
    handshake None: no runner (tests, notebooks); scratch_dir: where
    block_kind=fault makes its file (on a disk: tmpfs keeps its pages)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    n = p["tasks"]
    handoff_cap = min(n * p["steps"], MAX_HANDOFF_SAMPLES) if variant in HANDOFF_VARIANTS else 0
    task_ns = np.zeros(n)
    handoff_ns = np.zeros(max(handoff_cap, 1))
    cpu_array = ffi.new("int[]", cpus)
    kind = p.get("block_kind", "timerfd")
    if kind == "fault" and not scratch_dir:
        raise ValueError("block_kind=fault needs a scratch directory for its file")
    directory = ffi.new("char[]", scratch_dir.encode()) if scratch_dir else ffi.NULL
    fds = (maps.ring_fd, maps.vps_fd, maps.tids_fd) if maps is not None else (-1, -1, -1)
    cfg = ffi.new("struct activations_config *", {
        "variant": VARIANTS[variant], "nr_vps": len(cpus), "vp_cpus": cpu_array,
        "spares": p.get("spares", 0), "concurrency": p["concurrency"], "steps": p["steps"],
        "warmup_tasks": p["warmup_tasks"], "tasks": n, "work_ns": p["work_ns"],
        "p": float(p["p"]), "block_ns": p["block_us"] * 1000,
        "monitor_ns": p.get("monitor_us", 20) * 1000, "seed": p["seed"],
        "ring_fd": fds[0], "vps_fd": fds[1], "tids_fd": fds[2],
        "block_kind": BLOCK_KINDS[kind], "dir": directory})
    counts = ffi.new("struct activations_counts *")
    rc = lib.activations_run(handshake, cfg, double_ptr(ffi, task_ns),
                             double_ptr(ffi, handoff_ns), handoff_cap, counts)
    if kind == "fault" and rc == -errno.EOPNOTSUPP:
        raise ValueError(f"block_kind=fault: {scratch_dir}'s file system keeps the file's pages "
                         "(tmpfs?): no major fault possible; run with a scratch dir on a disk")
    check(rc, f"activations/{variant} block_kind={kind}")
    c = {k: int(getattr(counts, k)) for k in struct_fields("struct activations_counts")}
    window = int(handshake.window_end_ns - handshake.window_begin_ns)
    return task_ns, handoff_ns[:c["handoff_samples"]], c, window


def expected_mechanics(variant: str, p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for a run to mean anything, else why not."""
    if c["completions"] != p["tasks"]:
        return f"{c['completions']} of {p['tasks']} tasks completed in the window"
    if c["duplicate_completions"]:
        return f"{c['duplicate_completions']} tasks completed more than once"
    if variant != "pthreads" and c["max_running_activations"] > p["vps"]:
        return (f"{c['max_running_activations']} activations ran fibers at once on "
                f"{p['vps']} VPs")
    for name in ("ring_lost", "ring_bad"):
        if c[name]:
            return f"{name} = {c[name]}: the ring must deliver every record"
    if c["uffd_resolved"] != c["uffd_messages"]:
        return (f"uffd: {c['uffd_messages']} fault messages, {c['uffd_resolved']} resolved: "
                "every fault must be resolved once")
    return None


def derived_counters(variant: str, p: dict[str, Any], c: dict[str, int],
                     window_ns: int) -> dict[str, float]:
    """The counters a run stores: the counts, plus throughput and fractions."""
    # loops_per_us calibrates the work, it measures nothing
    counters = {k: float(v) for k, v in c.items() if k not in ("loops_per_us",)}
    seconds = max(window_ns, 1) / 1e9
    vps = p["vps"]
    counters["throughput_steps_per_s"] = p["tasks"] * p["steps"] / seconds
    counters["throughput_tasks_per_s"] = p["tasks"] / seconds
    counters["cpu_busy_fraction"] = c["cpu_ns"] / (vps * max(window_ns, 1))
    counters["handoffs_per_task"] = c["handoffs"] / p["tasks"]
    counters["blocking_fraction"] = c["blocking_calls"] / max(c["calls"], 1)
    if variant == "pthreads":
        # no VPs: the kernel schedules threads, nothing to count here
        for k in ("max_running_activations", "vp_busy_ns"):
            counters.pop(k, None)
    else:
        counters["vp_idle_fraction"] = max(0.0, 1.0 - c["vp_busy_ns"] / (vps * max(window_ns, 1)))
    if variant == "syncfirst":
        counters["eagain_fraction"] = c["eagain"] / max(c["calls"], 1)
    return counters


def _task_variant(variant: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        _check(variant, p)
        cpus = vp_cpus(p["vps"], ctx.cpu, ctx.peer_cpu)
        if variant == "upcall":
            from lab.upcall_program import upcall_program
            # compiled and attached before the C call: outside the window
            with upcall_program("block") as (_, maps):
                task_ns, handoff_ns, c, window = run_tasks(variant, p, cpus, maps,
                                                           ctx.handshake, ctx.scratch_dir)
        else:
            task_ns, handoff_ns, c, window = run_tasks(variant, p, cpus, None, ctx.handshake,
                                                       ctx.scratch_dir)
        wrong = expected_mechanics(variant, p, c)
        if wrong:
            raise NativeError(f"the runtime did not run as built: {wrong}")
        series = {TASK_LATENCY.name: task_ns}
        if handoff_ns.size:
            series[HANDOFF.name] = handoff_ns
        return Measurement(series, ops=p["tasks"],
                           counters=derived_counters(variant, p, c, window))

    return run


# ---- Table IV ------------------------------------------------------------------------

def run_table4(variant: str, p: dict[str, Any], cpu: int, maps: Any = None,
               handshake: Any = None):
    """Call activations_table4: ns per operation, one per sample."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    out = np.zeros(p["samples"])
    fds = (maps.ring_fd, maps.vps_fd, maps.tids_fd) if maps is not None else (-1, -1, -1)
    check(lib.activations_table4(handshake, T4_KINDS[variant], T4_OPS.index(p["op"]), cpu,
                                 p["warmup"], p["samples"], p.get("ops_per_sample", 1),
                                 fds[0], fds[1], fds[2], double_ptr(ffi, out)),
          f"activations/{variant} {p['op']}")
    return out


def _table4_variant(variant: str):
    fibers = variant in ("t4_fibers", "t4_activations")

    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        if variant == "t4_activations":
            from lab.upcall_program import upcall_program
            with upcall_program("block") as (_, maps):
                out = run_table4(variant, p, ctx.cpu, maps, ctx.handshake)
        else:
            out = run_table4(variant, p, ctx.cpu, None, ctx.handshake)
        per_sample = p["ops_per_sample"] if fibers else 1
        return Measurement({NS_PER_OP.name: out}, ops=p["samples"] * per_sample,
                           counters={"ops_averaged": float(per_sample)})

    return run


# ---- the family ------------------------------------------------------------------------

WORK = ("vps", "concurrency", "tasks", "warmup_tasks", "steps", "work_ns", "p", "block_us",
        "block_kind", "seed")
HANDOFF_WORK = WORK[:1] + ("spares",) + WORK[1:]
T4_FIBERS = ("op", "samples", "warmup", "ops_per_sample")
T4_KERNEL = ("op", "samples", "warmup")
RUNTIME = ("fibers",)


def _second_vp(p: dict[str, Any]) -> bool:
    """Runs whose VP 1 is pinned on peer_cpu (vp_cpus): check_cpus checks it."""
    return p["vps"] >= 2


FAMILY = Family(
    name="activations",
    summary="scheduler activations on Linux: an M:N fiber runtime whose VPs survive blocking "
            "calls by futex hint, sync-first, a sysmon, a BPF block upcall or io_uring; and "
            "the 1992 Table IV (null fork, signal-wait) for fibers, threads, processes",
    seeds="002 (scheduler activations, Table IV), 000 (block upcalls), 004 (K42's "
          "user-level scheduling)",
    params=PARAMS + tuple(param for part in PARTS for param in part.PARAMS),
    reference="pthreads",
    check_point=point_problem,
    variants=(
        Variant("none", "no handoff: a fiber's blocking call blocks its activation and the VP "
                "with it (N:1 per VP)", _task_variant("none"), WORK, (TASK_LATENCY,),
                requires=RUNTIME, peer_helper=_second_vp),
        Variant("futex_hint", "the wrapper frees the VP and FUTEX_WAKEs a spare before every "
                "call, takes it back after if still free (pessimistic handoff)",
                _task_variant("futex_hint"), HANDOFF_WORK, (TASK_LATENCY, HANDOFF),
                requires=RUNTIME, peer_helper=_second_vp),
        Variant("syncfirst", "preadv2(RWF_NOWAIT) first; hand off as futex_hint only on EAGAIN",
                _task_variant("syncfirst"), HANDOFF_WORK, (TASK_LATENCY, HANDOFF),
                requires=RUNTIME, peer_helper=_second_vp),
        Variant("monitor", "a sysmon thread takes VPs stuck in a call > monitor_us and wakes "
                "a spare (Go's retake)", _task_variant("monitor"),
                HANDOFF_WORK + ("monitor_us",), (TASK_LATENCY, HANDOFF), requires=RUNTIME,
                peer_helper=_second_vp),
        Variant("upcall", "BPF block upcall (sched_switch -> ring) wakes the VP's spare "
                "activation, which takes the VP; the returning one requeues its fiber",
                _task_variant("upcall"), HANDOFF_WORK, (TASK_LATENCY, HANDOFF),
                requires=RUNTIME + ("bpf",), peer_helper=_second_vp,
                loads_program=programs.always("upcall")),
        Variant("uring", "the call is an IORING_OP_READ; the fiber waits for its CQE, the VP "
                "never blocks", _task_variant("uring"), WORK, (TASK_LATENCY,),
                requires=RUNTIME + ("io_uring",), peer_helper=_second_vp),
        Variant("pthreads", "reference: one kernel thread per in-flight task, the kernel "
                "schedules (no VPs)", _task_variant("pthreads"), WORK, (TASK_LATENCY,),
                peer_helper=_second_vp),
        Variant("t4_fibers", "Table IV with our fibers, no kernel support (FastThreads on "
                "Topaz threads)", _table4_variant("t4_fibers"), T4_FIBERS, (NS_PER_OP,),
                requires=RUNTIME),
        Variant("t4_activations", "Table IV with fibers on our activations, the upcall armed "
                "(FastThreads on scheduler activations)", _table4_variant("t4_activations"),
                T4_FIBERS, (NS_PER_OP,), requires=RUNTIME + ("bpf",),
                loads_program=programs.always("upcall")),
        Variant("t4_pthreads", "Table IV with kernel threads: pthread_create/join, futex "
                "signal-wait on one CPU (Topaz threads)", _table4_variant("t4_pthreads"),
                T4_KERNEL, (NS_PER_OP,)),
        Variant("t4_processes", "Table IV with processes: fork/_exit/waitpid, futex in shared "
                "memory on one CPU (Ultrix processes)", _table4_variant("t4_processes"),
                T4_KERNEL, (NS_PER_OP,)),
    ) + tuple(variant for part in PARTS for variant in part.VARIANTS),
)
