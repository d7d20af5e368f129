"""Part of family ``activations``: critical sections that survive
preemption (issue 14, item 2; seed 002).

Anderson et al. (1992) found that a user-level thread preempted while it
holds a lock makes every other processor that wants the lock spin until
the kernel runs it again; their kernel told the runtime "this processor
was preempted", and the runtime continued the preempted thread on another
processor until it left its critical section.  This part measures that
on Linux (native/activations_cs.c, the locks in native/act_lock_internal.h).

**The workload.**  ``concurrency`` fibers (fiber i on VP i mod ``vps``;
each VP one pinned activation, its own runtime, not the family's: no
blocking calls here, and no spares) take ``tasks`` tasks (``warmup_tasks``
before the window).  A task does ``work_ns`` of calibrated work, then takes
ONE of ``locks`` locks (drawn from ``seed`` and the task number: the same
for every variant) and does ``cs_ns`` inside: it reads the lock's counter,
works, writes it plus one -- an overlap loses an update, which the run
counts; a fiber yields to its VP's others after each task, never inside a
section.  **Preemptions** come from ``competitors`` SCHED_FIFO threads
(competitor i pinned on VP i mod vps's CPU), each waking every
``competitor_period_us`` (its phase drawn from seed) for a
``competitor_burst_us`` spin: the VP is preempted at whatever point it is,
sometimes inside a section; the same competitors for every variant.  The
upcall program's preemption function (``upcall_program("preempt")``)
keeps every task thread's slot for every variant, so the holder's
preemptions are the kernel's switches for all of them.

**The variants** (what a waiter does while the lock is held):

- ``cs_oblivious``: test-and-test-and-set spin (FastThreads' lock): a
  preempted holder makes the waiters spin until its burst ends.
- ``cs_spin_yield``: spin ``spin_limit`` times, then sched_yield() (what
  runtimes do today; a yield on a VP's CPU gives nothing to the holder,
  which is behind a SCHED_FIFO thread on another CPU).
- ``cs_informed``: the paper's recovery with Linux's pieces.  The lock
  word names the holder's fiber and its activation's slot; a waiter spins
  only while that slot's ``preempted`` is 0.  When it is 1, the waiter
  moves the holder's activation -- whose registers the kernel holds: it
  is runnable behind the competitor -- to its own CPU
  (sched_setaffinity of its tid) and sleeps on a futex, which gives it
  that CPU; the holder finishes its section there, sends itself home and
  wakes the lender (``recoveries``, ``returns``).  Why this design and
  not switching the fiber's context onto the waiter: the fiber's registers
  are in the kernel's saved state of the preempted thread, which user
  space cannot take; moving the thread is the one way to continue exactly
  that state elsewhere.
- ``cs_rseq``: nothing is held: each CPU has its own counter per lock,
  updated inside an rseq critical section (glibc's registered area; the
  work and a one-store commit) that the kernel aborts on preemption; the
  abort handler restarts it (``rseq_restarts``): the work done before the
  preemption is lost, never anyone's wait.
- ``cs_pthreads``: ``concurrency`` kernel threads on the VPs' CPUs with
  one pthread_mutex (futex) per lock: the kernel's own answer.

**Series**: ``task_latency`` (headline), one task from its release (its
fiber's previous task done, the first ones at the phase start) to its
section's end.  **Counters**: ``throughput_tasks_per_s``,
``spin_fraction`` (waiters' time from a failed try to the acquire, less
the time cs_informed's lender slept while its CPU ran the holder, over
vps x window), and the part's counts, declared once in
native/activations_cs.h (``ACTIVATIONS_CS_COUNTERS``): lock-holder
preemptions, preempted sections, sections continued on another CPU,
spin time and iterations, yields, informed stops and recoveries, rseq
restarts, competitor bursts.  A run fails when a task ran twice or not at
all or an update was lost (``exclusion_violations``).
"""

from __future__ import annotations

from typing import Any

from lab import programs
from lab.model import USABLE_CPUS, Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values, struct_fields


def _native():
    from lab import native
    return native.load()


# declared in native/activations_cs.h
VARIANTS_C = enum_values("enum activations_cs_variant", "ACT_")
_, _lib = _native()

TASK_LATENCY = Metric("task_latency", "ns",
                      "one task: its release (its fiber's previous task done) to the end of its "
                      "critical section, waits for the lock included")

PARAMS = (
    Param("locks", 2, "locks", "shared locks; each task takes one (drawn from seed)", low=1,
          high=_lib.ACT_CS_MAX_LOCKS),
    Param("cs_ns", 20000, "ns", "CPU work inside the critical section (calibrated)", low=0,
          high=10_000_000),
    Param("spin_limit", 100, "spins", "cs_spin_yield: spins before each sched_yield", low=1,
          high=10_000_000),
    Param("competitors", 2, "threads", "SCHED_FIFO competitors, competitor i pinned on VP "
          "i mod vps's CPU (0: no preemptions but the machine's own)", low=0,
          high=_lib.ACT_CS_MAX_COMPETITORS),
    Param("competitor_period_us", 1000, "us", "a competitor wakes this often", low=10,
          high=1_000_000),
    Param("competitor_burst_us", 200, "us", "... and spins this long (< period)", low=1,
          high=1_000_000),
)

WORK = ("vps", "concurrency", "tasks", "warmup_tasks", "work_ns", "locks", "cs_ns",
        "competitors", "competitor_period_us", "competitor_burst_us", "seed")


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point of one of this part's variants cannot run, or None."""
    if p.get("competitors", 0) and p["competitor_burst_us"] >= p["competitor_period_us"]:
        return (f"competitor_burst_us={p['competitor_burst_us']} >= competitor_period_us="
                f"{p['competitor_period_us']}: a competitor must sleep between bursts; lower "
                "the burst")
    if "vps" in p and p["vps"] > len(USABLE_CPUS):
        return f"vps={p['vps']}: only {len(USABLE_CPUS)} CPUs usable here: lower vps"
    if variant == "cs_pthreads":
        if p["concurrency"] > _lib.ACT_CS_MAX_THREADS:
            return (f"cs_pthreads: concurrency={p['concurrency']} threads, the upcall program "
                    f"keeps {_lib.ACT_CS_MAX_THREADS} slots: lower concurrency")
    elif p["concurrency"] < p["vps"]:
        return (f"concurrency={p['concurrency']} < vps={p['vps']}: every VP needs a fiber; "
                "raise concurrency or lower vps")
    return None


def acq_dtype():
    """The acquisition log's record (struct activations_cs_acq) as NumPy's."""
    import numpy as np
    return np.dtype([(name, np.uint32) for name in struct_fields("struct activations_cs_acq")])


def run_cs(variant: str, p: dict[str, Any], cpus: list[int], maps: Any,
           handshake: Any = None, log: bool = False):
    """Call activations_cs_run: (task_ns, acquisitions or None, counts, window ns).
    maps: the upcall program's (preempt function attached); handshake None:
    no runner (tests, notebooks)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    n = p["tasks"]
    task_ns = np.zeros(n)
    acq = np.zeros(n if log else 0, dtype=acq_dtype())
    cpu_array = ffi.new("int[]", cpus)
    cfg = ffi.new("struct activations_cs_config *", {
        "variant": VARIANTS_C[variant], "nr_vps": len(cpus), "vp_cpus": cpu_array,
        "concurrency": p["concurrency"], "locks": p["locks"],
        "warmup_tasks": p["warmup_tasks"], "tasks": n, "work_ns": p["work_ns"],
        "cs_ns": p["cs_ns"], "spin_limit": p.get("spin_limit", 100),
        "competitors": p["competitors"],
        "competitor_period_ns": p["competitor_period_us"] * 1000,
        "competitor_burst_ns": p["competitor_burst_us"] * 1000, "seed": p["seed"],
        "vps_fd": maps.vps_fd, "tids_fd": maps.tids_fd})
    counts = ffi.new("struct activations_cs_counts *")
    nr_acq = ffi.new("uint64_t *")
    acq_ptr = ffi.cast("struct activations_cs_acq *", acq.ctypes.data) if log else ffi.NULL
    rc = lib.activations_cs_run(handshake, cfg, double_ptr(ffi, task_ns), acq_ptr, acq.size,
                                nr_acq, counts)
    check(rc, f"activations/{variant}")
    c = {k: int(getattr(counts, k)) for k in struct_fields("struct activations_cs_counts")}
    window = int(handshake.window_end_ns - handshake.window_begin_ns)
    return task_ns, (acq[:nr_acq[0]] if log else None), c, window


def expected_mechanics(variant: str, p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for a run to mean anything, else why not."""
    if c["completions"] != p["tasks"]:
        return f"{c['completions']} of {p['tasks']} tasks completed in the window"
    if c["duplicate_completions"]:
        return f"{c['duplicate_completions']} tasks completed more than once"
    if c["exclusion_violations"]:
        return (f"exclusion_violations = {c['exclusion_violations']}: two sections overlapped "
                "(a protected counter lost updates)")
    if c["acquisitions"] != p["tasks"]:
        return f"{c['acquisitions']} critical sections for {p['tasks']} tasks"
    return None


def derived_counters(p: dict[str, Any], c: dict[str, int], window_ns: int) -> dict[str, float]:
    """The counters a run stores: the counts, plus throughput and fractions."""
    counters = {k: float(v) for k, v in c.items() if k != "loops_per_us"}
    window = max(window_ns, 1)
    counters["throughput_tasks_per_s"] = p["tasks"] / (window / 1e9)
    counters["spin_fraction"] = c["spin_ns"] / (p["vps"] * window)
    counters["cpu_busy_fraction"] = c["cpu_ns"] / (p["vps"] * window)
    counters["holder_preemptions_per_task"] = c["holder_preemptions"] / p["tasks"]
    return counters


def _variant(variant: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.model import vp_cpus
        from lab.native import NativeError
        from lab.upcall_program import upcall_program
        problem = point_problem(variant, p)
        if problem:
            raise ValueError(problem)
        cpus = vp_cpus(p["vps"], ctx.cpu, ctx.peer_cpu)
        # compiled and attached before the C call: outside the window
        with upcall_program("preempt") as (_, maps):
            task_ns, _, c, window = run_cs(variant, p, cpus, maps, ctx.handshake)
        wrong = expected_mechanics(variant, p, c)
        if wrong:
            raise NativeError(f"the critical sections did not run as built: {wrong}")
        return Measurement({TASK_LATENCY.name: task_ns}, ops=p["tasks"],
                           counters=derived_counters(p, c, window))

    return run


def _second_vp(p: dict[str, Any]) -> bool:
    return p["vps"] >= 2


_HELP = {
    "cs_oblivious": "test-and-test-and-set spin lock: waiters spin out a preempted holder "
                    "(FastThreads)",
    "cs_spin_yield": "spin spin_limit times, then sched_yield (today's runtimes)",
    "cs_informed": "spin only while the holder's activation runs (its slot's preempted flag); "
                   "else lend it the waiter's CPU until it leaves the section (the paper's "
                   "recovery)",
    "cs_rseq": "per-CPU data in an rseq critical section, restarted when the kernel aborts it: "
               "nothing is held",
    "cs_pthreads": "kernel threads and pthread_mutex (futex) locks, the kernel schedules",
}

VARIANTS: tuple[Variant, ...] = tuple(
    Variant(name, _HELP[name], _variant(name),
            WORK + (("spin_limit",) if name == "cs_spin_yield" else ()), (TASK_LATENCY,),
            requires=(("fibers",) if name != "cs_pthreads" else ()) + ("root", "bpf"),
            peer_helper=_second_vp, loads_program=programs.always("upcall"))
    for name in VARIANTS_C)
