"""Family ``upcall``: the kernel running, or waking, user-level scheduling
code on an event (seeds 000 and 002).

Scheduler activations want the kernel to tell the user-level scheduler at
once when one of its threads blocks, and again when it can run; the
linux-kernel thread of seed 000 wants the same for timers, user code run
"by the timer interrupt".  Linux has no upcall system call; these are the
ways to get the effect today, each timed from the moment the kernel sees
the event to the moment user code runs on it (native/upcall.c).

**Block and unblock upcalls.**  A worker thread (pinned to the suite's
cpu) blocks ``samples`` times in ``block_kind``: a futex wait, a
``nanosleep`` (clock_nanosleep to a deadline ``block_us`` ahead), a read
of an empty pipe, a ``pread`` of a 4 KiB block evicted from the page
cache (a file in the run's scratch directory, one block per upcall), or
(``fault``) a read through a mapping of the same file (PROT_READ,
MAP_SHARED, MADV_RANDOM): a major page fault, the thread asleep in the
kernel until the block is read in, seed 000's other blocking event; its
block upcall is the sched_switch, its unblock the sched_waking, as for
pread.  Counter ``majflt``: the worker's major faults in its blocking
calls (getrusage RUSAGE_THREAD around each touch), one per call of the
window (a fault whose read was done before it waited is one too, without
a block: ``not_blocked``).  A
scheduler (the suite's cpu for ``placement = same_cpu``, peer_cpu for
``cross_cpu``) must learn of each event.  One upcall at a time: the
worker blocks again only after the scheduler took the last one, and the
harness never blocks the worker otherwise (its waits spin, yielding where
a CPU is shared), so the worker's only blocks are the measured ones.

- ``bpf_ringbuf``: the upcall program (lab/families/upcall_bpf.c: raw
  tracepoints; compiled once per suite run by the runner, SuitePrograms,
  and attached by each worker for its run, or compiled by the worker
  process itself without a runner) on ``sched:sched_switch`` writes an
  event stamped with
  bpf_ktime_get_ns() to a BPF ring buffer with BPF_RB_FORCE_WAKEUP; the
  scheduler sleeps in epoll on the ring and consumes it in C.  The wake-up
  is not made in the program: a tracepoint program may run under the
  runqueue lock, so the ring queues an irq_work and the epoll waiter is
  woken when that runs; the report's kernel cross-check shows how long
  the event waits for it (the time before the scheduler's sched_waking).
- ``bpf_ringbuf_adaptive``: the same with the ring's adaptive wake-up
  (flags 0: the commit wakes only a consumer that has caught up), the
  same irq_work when it does.
- ``bpf_flag``: the same program bumps the worker's virtual processor's
  sequence number in an mmap-able BPF array; the scheduler spins on it.
- ``bpf_flag_idle``: bpf_flag with the scheduler at SCHED_IDLE (restored
  after the run): on the worker's CPU it runs exactly when that CPU would
  otherwise go idle, so a block is seen one context switch later, with no
  wake-up, IPI or irq_work; it never sleeps (the vCPU never halts).
- ``anatomy`` (default true): stage programs beside the upcall program
  stamp each kernel stage of the upcall in flight (lab_upcall_stages:
  irq_work self-IPI raised, irq_work run, the scheduler's sched_waking,
  the IPI to its CPU, its switch in) and C copies them out with each
  sample: series ``stage_*`` (a sample's stages add up to its latency),
  counters ``ipis_per_upcall``, ``self_ipis_per_upcall``, ``stage_*_seen``,
  ``program_ns_per_run`` / ``_runs_per_upcall`` / ``_ns_per_upcall`` (the
  upcall program's run time, bpf_prog_info with BPF_ENABLE_STATS on for
  the run) and ``anatomy_ns_per_upcall``.  For futex_hint and uring_cqe
  the event is the user stamp.  futex_hint with block_kind = futex is the
  futex handoff measured by this code (stamp, FUTEX_WAKE, FUTEX_WAIT).
- ``bpf_flag_sleep``: spins ``spin_us``, then sleeps in epoll on the ring.
  Nothing in a tracepoint program can wake a futex, so the ring is the only
  wake-up a BPF program has: the scheduler sets a ``sleeping`` word in its
  slot and looks once more, the program bumps the sequence and then reads
  ``sleeping``, writing a ring record (with a wake-up) only for a scheduler
  that sleeps -- the futex waiters-bit protocol.  A spinning scheduler
  costs the blocking thread nothing more than bpf_flag; one that sleeps is
  woken as by bpf_ringbuf.  The default budget, 50 us, is about one
  cross-CPU wake-up of a halted vCPU here (the sleep it tries to avoid);
  counters ``spun`` / ``slept`` say which path each upcall took.
- ``event`` (bpf variants): ``block`` upcalls come from sched_switch (the
  worker switched out with a sleep state; a preempted or yielding thread
  is still runnable and is no block); ``unblock`` upcalls from
  ``sched:sched_waking`` of a worker the program saw block.  sched_waking,
  not sched_wakeup: it fires first, in the waker's context on the waker's
  CPU, once per sleep (try_to_wake_up() under p->pi_lock); a remote
  sched_wakeup fires only after the IPI on the target CPU, hiding that
  delay.  The probes' wake-to-run starts there too.
- ``futex_hint``: no kernel help: the worker FUTEX_WAKEs the scheduler
  just before it blocks; the event time is its stamp before the wake.
- ``uring_cqe_poll`` / ``uring_cqe_wait`` / ``uring_cqe_eventfd``: the
  blocking call is an io_uring SQE (IORING_OP_FUTEX_WAIT, a pipe read, an
  absolute IORING_OP_TIMEOUT) submitted by the scheduler, and its CQE is
  the unblock upcall: the scheduler spins on the CQ, sleeps in
  io_uring_wait_cqe(), or sleeps in epoll on an eventfd registered with a
  DEFER_TASKRUN ring (which io_uring signals from the completing context).
  The event time is the waker's stamp just before its wake-up call, or the
  timeout's deadline: io_uring has no tracepoint where it learns of the
  event (so ``pread`` is not offered: a read's completion has no such
  time).  Compare them with the bpf variants' ``since_source``.

Who ends a block: for ``event = block`` the scheduler releases futex and
pipe blocks as soon as it has learned of them (a user-level scheduler
resuming the thread); for unblock upcalls a waker thread on the worker's
CPU does, ``block_us`` after the program showed the worker off its CPU
(uring: after the SQE was submitted); nanosleeps end at their deadline,
preads and faults when the disk answers.

Series: ``latency`` (headline): the scheduler's stamp on learning minus
the event time (bpf: the program's bpf_ktime_get_ns(), CLOCK_MONOTONIC
like our stamps); ``since_source`` (bpf unblock upcalls of futex, pipe and
nanosleep blocks): the stamp minus the source's own time, the waker's
stamp or the sleep's deadline, as uring_cqe measures.  Counters:
``blocks`` / ``unblocks`` (events the program published in the window),
``extra_events`` (after the first of an upcall: a pread that blocks twice),
``missed_events`` (events one flag update folded), ``spun`` / ``slept``,
``ring_records`` / ``ring_lost`` / ``ring_discarded`` / ``ring_bad`` /
``foreign`` (the last four must be 0), ``resident_before`` (pread,
fault), ``majflt`` (fault: = samples + not_blocked + lost_upcalls),
``fault_ns_per_call`` (fault: the worker's time in its touch, a plain
major fault's cost).  One
operation is one upcall.  The kernel view's wake-to-run of the scheduler
thread is the cross-check for the sleeping mechanisms.

**Preemption upcalls** (``event = "preempt"``; bpf_ringbuf, bpf_flag,
rseq_abort; native/upcall_preempt.c): seed 002's "processor has been
preempted".  The worker spins in user space on the suite's cpu at
SCHED_FIFO ``competitor_priority`` - 1 (no SCHED_OTHER load can take its
CPU); a competitor on the same cpu at SCHED_FIFO ``competitor_priority``
sleeps 100 us on its own timer (so its wake-up is local to that CPU and
never disturbs the learner's), runs ``burst_us`` and sleeps again.  The
upcall program's preemption function (lab_upcall_preempt) publishes the
worker's switch out in its slot (and a ring record) and its switch back
in (``resume_ns``).  Who learns, by placement:

- ``cross_cpu``: a scheduler on peer_cpu, at once, by epoll on the ring
  (bpf_ringbuf) or by spinning on ``preempt_seq`` (bpf_flag): the
  paper's upcall on another of the address space's processors.
- ``same_cpu``: the preempted activation itself, when it runs again:
  its spin loop looks at its slot (bpf_flag) or consumes the ring
  without sleeping (bpf_ringbuf); rseq_abort spins inside an rseq
  critical section in glibc's area and the kernel resumes it at the
  abort handler (rseq:rseq_ip_fixup; the program counts those too), the
  nearest Linux has to Mach's "dummy trap return into an upcall".
  Series ``since_resume``: its stamp minus resume_ns, the cost of
  learning once the CPU is back; ``latency`` also holds the burst.

Each preemption by the competitor that the learner sees is a sample
(the first ``warmup`` are not recorded).  Series ``latency``: the
learner's stamp minus the program's preempt_ns.  Counters, over the whole
run so that they add up: ``preemptions`` (published) = ``by_competitor``
+ ``others`` (by another task, e.g. the fair server giving a load task
the CPU: no sample) + ``missed_events`` (folded between two looks), and
= ``worker_nivcsw`` (the kernel's count of the worker's involuntary
switches); ``wakes`` and ``retries`` (the competitor's wakes that found
the worker already off its CPU, by its own look at the slot); the
ring's; ``rseq_aborts`` = ``rseq_fixups`` (the handler's count and the
kernel's).  Each run checks these.

**Timer upcalls** (``timer_*``, native/upcall_timer.c; ``cyclictest``):
the lateness of a periodic timer of ``interval_us`` on the suite's cpu:
when user code runs minus the expiry it asked for, on a grid that each
phase (warm-up, measured) starts from now.  ``timer_nanosleep``: clock_nanosleep
(TIMER_ABSTIME); ``timer_timerfd``: a periodic timerfd and read();
``timer_signal``: a POSIX timer with SIGEV_THREAD_ID whose handler stamps
the time (the classic upcall), the thread asleep in sigsuspend;
``timer_signal_busy``: the same with the thread busy in user space, so the
handler runs on the way back from the timer interrupt, as the seed asks
(no wake-up, no switch); ``timer_uring``: an absolute IORING_OP_TIMEOUT
re-armed each period; ``timer_uring_multishot``: one SQE with
IORING_TIMEOUT_MULTISHOT (6.4), which the kernel re-arms relative to the
CQE it posts, so lateness is the gap between CQEs minus the interval and
``drift_per_period_ns`` says how far the schedule slides; ``cyclictest``:
rt-tests' cyclictest (-t1 -a cpu -i interval -d0 -l loops -v -N
--default-system), its per-loop values parsed.  ``rt_priority`` > 0 runs
ours and cyclictest's (-p) SCHED_FIFO; SCHED_OTHER sleeps may be
coalesced up to the thread's timer slack (50 us by default, counter
``timer_slack_ns``), which clock_nanosleep honours and timerfd, POSIX
timers and io_uring timeouts do not.  ``pm_qos`` holds
/dev/cpu_dma_latency at 0 for the run (what cyclictest does unless told
--default-system): idle CPUs poll instead of halting, for every variant
alike.

**Page-fault upcalls** (``uffd_copy``, ``uffd_continue``: userfaultfd,
native/upcall_fault.c) are a part of their own, lab/families/_upcall_fault.py,
which says what they measure; ``block_kind = "fault"`` above is the other
route, a major fault seen as a block upcall.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
from typing import Any

from lab import programs
from lab.families import _upcall_fault
from lab.model import Family, Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values, struct_fields
from lab.upcall_program import (
    ANATOMY_FNS,
    BLOCK_FN,
    WAKE_FN,
    bpf_stats,
    program_misses,
    program_stats,
    upcall_program,
)

HERE = os.path.dirname(os.path.abspath(__file__))
PREAD_MAX_BLOCKS = 32768        # 128 MiB of scratch file for pread and fault
FILE_BLOCK_KINDS = ("pread", "fault")   # a fresh cold block of a file per call
CYCLICTEST = "cyclictest"
PM_QOS = "/dev/cpu_dma_latency"

LATENCY = Metric("latency", "ns",
                 "upcall latency: the scheduler's stamp on learning of the event minus the "
                 "kernel's time of it (bpf: bpf_ktime_get_ns() at the tracepoint; futex_hint: "
                 "the worker's stamp before its FUTEX_WAKE; uring: the waker's stamp before its "
                 "wake-up call, or the timeout's deadline)")
SINCE_SOURCE = Metric("since_source", "ns",
                      "bpf unblock upcalls of futex, pipe, nanosleep blocks: the scheduler's stamp "
                      "minus the source's own time (the waker's stamp before its call, the "
                      "sleep's deadline): the uring_cqe variants' measure")
# the anatomy (anatomy = true): the latency split at the kernel's stamps
# (enum upcall_stage: a row of the C call's anatomy_ns each, in the order
# lab/families/upcall_bpf.c stamps them)
_STAGE_HELP = {
    "raise": "the event to the irq_work self-IPI its CPU raises (ipi:ipi_send_cpu to itself)",
    "irq_work": "... to the irq_work running on that CPU (irq_vectors:irq_work_entry)",
    "waking": "... to sched:sched_waking of the scheduler thread",
    "wake_ipi": "... to the IPI that wakes the scheduler's CPU (cross-CPU wake-ups)",
    "switch_in": "... to sched:sched_switch onto the scheduler",
    "user": "... to the scheduler's own stamp in user space",
}
_STAGE_ROWS = enum_values("enum upcall_stage", "UPCALL_STAGE_")
STAGES = tuple((name, _STAGE_HELP[name]) for name in _STAGE_ROWS)
STAGE_METRICS = tuple(Metric(f"stage_{name}", "ns",
                             f"anatomy: {text}; a stage that did not happen is 0 and its time "
                             "goes to the next; a sample's stages sum to its latency")
                      for name, text in STAGES)
SINCE_RESUME = Metric("since_resume", "ns",
                      "event=preempt, same_cpu: the preempted thread's own stamp on learning of "
                      "its preemption minus the program's resume_ns (its switch back in): what "
                      "learning costs once the CPU is back (latency also holds the time the "
                      "competitor kept it)")
LATENESS = Metric("lateness", "ns", "when user code runs on a timer expiry minus the expiry "
                  "asked for")

PLACEMENTS = ("same_cpu", "cross_cpu")
# native/upcall.h and upcall_timer.h: the mechanisms' and the timers' enums
# name the variants (UPCALL_FUTEX_HINT: futex_hint), the others a
# parameter's choices
MECHANISMS = enum_values("enum upcall_mechanism", "UPCALL_")
TIMERS = enum_values("enum upcall_timer_kind", "UPCALL_")
_EVENT = enum_values("enum upcall_event", "UPCALL_EVENT_")
_BLOCK_KIND = enum_values("enum upcall_block_kind", "UPCALL_BLOCK_")
EVENTS = tuple(_EVENT)
BLOCK_KINDS = tuple(_BLOCK_KIND)

PARAMS = (
    Param("placement", "same_cpu", "",
          "the scheduler on the worker's cpu (where a scheduler activation runs), or on "
          "peer_cpu", choices=PLACEMENTS),
    Param("event", "block", "",
          "bpf variants: upcall when the worker blocks (sched:sched_switch), when it is "
          "woken (sched:sched_waking), or when a competitor preempts it (sched:sched_switch "
          "of a runnable worker; bpf_ringbuf and bpf_flag, cross_cpu, anatomy=false)",
          choices=EVENTS),
    Param("block_kind", "nanosleep", "",
          "what the worker blocks in: futex wait, clock_nanosleep, read of an empty pipe, "
          "pread of an evicted 4 KiB block, a major fault on an evicted page of an mmap'ed "
          "file (uring_cqe: neither pread nor fault)", choices=BLOCK_KINDS),
    Param("block_us", 100, "us",
          "nanosleep: its length; futex and pipe unblock upcalls (and uring_cqe): how long "
          "after the block the waker ends it; ignored by pread, fault and by block upcalls of futex "
          "and pipe (the scheduler releases at once)", low=1, high=100_000),
    Param("run_us", 0, "us",
          "the worker's user-space work before each block (a scheduler that polls must wait "
          "that long)", low=0, high=100_000),
    Param("spin_us", 50, "us",
          "bpf_flag_sleep: how long the scheduler polls before it sleeps in epoll",
          low=0, high=100_000),
    Param("interval_us", 1000, "us", "timers: the period", low=20, high=1_000_000),
    Param("rt_priority", 0, "",
          "timers: 0 SCHED_OTHER; 1..99 SCHED_FIFO at that priority (cyclictest -p)",
          low=0, high=99),
    Param("pm_qos", False, "",
          "hold /dev/cpu_dma_latency at 0 us during the run (idle CPUs poll instead of "
          "halting; cyclictest's default): timers, and upcalls whose wake-up waits for a "
          "halted CPU"),
    Param("anatomy", True, "",
          "block/unblock upcalls: stamp every kernel stage of each upcall (irq_work raised "
          "and run, the scheduler's waking, its IPI, its switch in) with raw tracepoint "
          "programs beside the upcall program, and the program's run time (BPF stats); "
          "false: without them (needs root and bcc when true)"),
    Param("competitor_priority", 10, "",
          "event=preempt: the SCHED_FIFO priority of the competitor that takes the worker's "
          "cpu (the worker spins one below it)", low=2, high=99),
    Param("burst_us", 20, "us",
          "event=preempt: how long the competitor runs on each wake before it sleeps again",
          low=1, high=100_000),
    Param("samples", 1000, "upcalls", "upcalls (timers: expiries) measured per run",
          low=10, high=100_000, axis=False),
    Param("warmup", 100, "upcalls", "unrecorded upcalls (expiries) before the window",
          low=0, high=100_000, axis=False),
)

# the family's parts in their own modules (each says what it is): their
# parameters and variants follow the ones here
PARTS = (_upcall_fault,)

# struct upcall_counts' fields are the run's counts but for these: who the
# worker was, the anatomy's stage_seen (read with its series) and the
# policy the scheduler ran at
_COUNTS = tuple(name for name in struct_fields("struct upcall_counts")
                if name not in ("worker_tid", "stage_seen", "sched_policy"))


# event = "preempt": native/upcall_preempt.c, the mechanisms built for it
# (rseq_abort tells of nothing else, and only the preempted thread itself)
PREEMPT_MECHANISMS = ("bpf_ringbuf", "bpf_flag", "rseq_abort")
PREEMPT_ONLY = ("rseq_abort",)
_PREEMPT_COUNTS = tuple(name for name in struct_fields("struct upcall_preempt_counts")
                        if name not in ("worker_tid", "competitor_tid"))


def _native():
    from lab import native
    return native.load()


# ---- which points can run --------------------------------------------------

def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point cannot run (the runner skips it with this reason), or None."""
    for part in PARTS:
        if any(v.name == variant for v in part.VARIANTS):
            return part.point_problem(variant, p)
    if p.get("anatomy") and variant in MECHANISMS and not variant.startswith("bpf"):
        from lab import probes
        why = probes.unavailable_reason()
        if why:
            return (f"anatomy=true loads the upcall program's stage functions, which cannot "
                    f"run here ({why}); or use anatomy=false")
    if (p.get("event") == "preempt" and variant in MECHANISMS) or variant in PREEMPT_ONLY:
        problem = _preempt_problem(variant, p)
        if problem:
            return problem
    kind = p.get("block_kind")
    if variant.startswith("uring_cqe") and kind in FILE_BLOCK_KINDS:
        return (f"uring_cqe with block_kind={kind}: io_uring shows no time at which a read's "
                "completion happened to measure the upcall from; use futex, nanosleep or pipe "
                f"(the bpf variants measure {kind})")
    if kind in FILE_BLOCK_KINDS and p["samples"] + p["warmup"] > PREAD_MAX_BLOCKS:
        return (f"block_kind={kind} reads a fresh block per upcall: samples + warmup = "
                f"{p['samples'] + p['warmup']} exceed {PREAD_MAX_BLOCKS} blocks (128 MiB of "
                "scratch file): lower samples or warmup")
    if "rt_priority" in p and p["rt_priority"] > 0 and not _can_fifo(p["rt_priority"]):
        return (f"rt_priority={p['rt_priority']} needs SCHED_FIFO: run as root (CAP_SYS_NICE) "
                "or raise RLIMIT_RTPRIO, or use rt_priority=0")
    if p.get("pm_qos") and not os.access(PM_QOS, os.W_OK):
        return f"pm_qos=true needs write access to {PM_QOS} (root); or use pm_qos=false"
    if variant == "cyclictest" and shutil.which(CYCLICTEST) is None:
        return "cyclictest is not installed (Debian: apt-get install rt-tests)"
    return None


def _preempt_problem(variant: str, p: dict[str, Any]) -> str | None:
    if variant in PREEMPT_ONLY and p.get("event") != "preempt":
        return f"{variant} tells of preemptions only: set event=\"preempt\""
    if variant not in PREEMPT_MECHANISMS:
        return (f"event=preempt is built for {', '.join(PREEMPT_MECHANISMS)} only (not "
                f"built yet for {variant})")
    if variant in PREEMPT_ONLY and p.get("placement") != "same_cpu":
        return (f"{variant}: the kernel resumes the preempted thread itself at its abort "
                "handler, on its own CPU: set placement=same_cpu")
    if p.get("anatomy"):
        return ("event=preempt has no anatomy (its stage programs time block and unblock "
                "upcalls): set anatomy=false")
    if variant == "rseq_abort" and _native()[1].upcall_rseq_available() != 0:
        return ("rseq_abort: glibc registered no rseq area for this process (is "
                "glibc.pthread.rseq=0 in GLIBC_TUNABLES?), or this is not x86-64")
    if not _can_fifo(p["competitor_priority"]):
        return (f"event=preempt runs its competitor SCHED_FIFO {p['competitor_priority']}: "
                "run as root (CAP_SYS_NICE) or raise RLIMIT_RTPRIO")
    return None


def _can_fifo(priority: int) -> bool:
    import resource
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    return soft == resource.RLIM_INFINITY or soft >= priority


def _check(variant: str, p: dict[str, Any]) -> None:
    problem = point_problem(variant, p)
    if problem:
        raise ValueError(problem)


# ---- the upcall program ------------------------------------------------------

# Its functions, each a raw tracepoint program (the upcall program's
# header says why not perf-event tracepoints): (function, tracepoint).
# ---- block and unblock upcalls -----------------------------------------------

def run_upcalls(mechanism: str, p: dict[str, Any], cpu: int, sched_cpu: int, scratch_dir: str,
                maps: Any = None, handshake: Any = None, anatomy: dict | None = None):
    """Call upcall_run: (latency, since_source or None, counts dict).
    handshake None: no runner (tests, notebooks).  anatomy, a dict, given
    with maps of a program whose stage functions are attached: filled with
    each stage's series (STAGE_METRICS names, ns per sample; a sample's
    stages sum to its latency), ``ipis`` / ``self_ipis`` per sample and
    ``seen`` (stage -> samples whose stamp was present)."""
    import errno

    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    event = ("block" if mechanism == "futex_hint" else
             "unblock" if mechanism.startswith("uring_cqe") else p["event"])
    n = p["samples"]
    latency = np.zeros(n)
    since = np.zeros(n)
    directory = ffi.new("char[]", scratch_dir.encode())
    cfg = ffi.new("struct upcall_config *", {
        "mechanism": MECHANISMS[mechanism], "event": _EVENT[event],
        "block_kind": _BLOCK_KIND[p["block_kind"]], "cpu": cpu, "sched_cpu": sched_cpu,
        "block_ns": p["block_us"] * 1000, "run_ns": p.get("run_us", 0) * 1000,
        "spin_ns": p.get("spin_us", 0) * 1000, "dir": directory, "warmup": p["warmup"],
        "nr_samples": n})
    rows = np.zeros((lib.UPCALL_ANATOMY_ROWS, n))
    if anatomy is not None:
        cfg.anatomy = 1
        cfg.anatomy_ns = double_ptr(ffi, rows)
    counts = ffi.new("struct upcall_counts *")
    if maps is None:
        maps = ffi.new("struct upcall_maps *",
                       {field: -1 for field in struct_fields("struct upcall_maps")})
    rc = lib.upcall_run(handshake, cfg, maps, double_ptr(ffi, latency), double_ptr(ffi, since),
                        counts)
    if rc == -errno.EOPNOTSUPP and p["block_kind"] in FILE_BLOCK_KINDS:
        raise ValueError(f"block_kind={p['block_kind']}: {scratch_dir}'s file system keeps the "
                         "file's pages "
                         "after POSIX_FADV_DONTNEED (tmpfs?): run on a disk file system")
    check(rc, f"upcall/{mechanism}")
    has_source = event == "unblock" and p["block_kind"] not in FILE_BLOCK_KINDS and \
        mechanism.startswith("bpf")
    if anatomy is not None:
        anatomy.update({m.name: rows[_STAGE_ROWS[name]]
                        for (name, _), m in zip(STAGES, STAGE_METRICS)})
        anatomy["ipis"] = rows[lib.UPCALL_ANATOMY_IPIS]
        anatomy["self_ipis"] = rows[lib.UPCALL_ANATOMY_SELF_IPIS]
        anatomy["seen"] = {m.name: int(counts.stage_seen[_STAGE_ROWS[name]])
                           for (name, _), m in zip(STAGES, STAGE_METRICS)}
    return latency, (since if has_source else None), {k: int(getattr(counts, k)) for k in
                                                       _COUNTS + ("worker_tid",)}


def run_preemptions(mechanism: str, p: dict[str, Any], cpu: int, sched_cpu: int, maps: Any,
                    handshake: Any = None, bystander: bool = False, same_cpu: bool = False):
    """Call upcall_preempt_run with maps of a program whose preemption
    function is attached (rseq_abort: and its rseq_ip_fixup counter):
    (latency, since_resume or None, counts dict).  same_cpu: the preempted
    worker learns itself, on its return (sched_cpu is then the harness's).
    bystander: the worker is not registered (nothing may be published; no
    latency)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    latency, since_resume = np.zeros(p["samples"]), np.zeros(p["samples"])
    cfg = ffi.new("struct upcall_preempt_config *", {
        "mechanism": MECHANISMS[mechanism], "same_cpu": int(same_cpu), "cpu": cpu,
        "sched_cpu": sched_cpu, "competitor_priority": p["competitor_priority"],
        "burst_ns": p["burst_us"] * 1000, "warmup": p["warmup"], "nr_samples": p["samples"],
        "bystander": int(bystander)})
    counts = ffi.new("struct upcall_preempt_counts *")
    check(lib.upcall_preempt_run(handshake, cfg, maps, double_ptr(ffi, latency),
                                 double_ptr(ffi, since_resume), counts),
          f"upcall/{mechanism} event=preempt")
    return latency, since_resume if same_cpu else None, {
        k: int(getattr(counts, k)) for k in struct_fields("struct upcall_preempt_counts")}


def expected_mechanics(mechanism: str, p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for an upcall run to mean anything, else why not."""
    for name in ("ring_lost", "ring_discarded", "ring_bad", "foreign"):
        if c.get(name):
            return f"{name} = {c[name]}: the ring must deliver every record once, in order"
    if c["upcalls"] != p["samples"]:
        return f"{c['upcalls']} upcalls recorded, {p['samples']} expected"
    if p.get("event") == "preempt":
        # every preemption the program published was seen, and each of the
        # competitor's it saw is one it made (the competitor's own count)
        seen = c["by_competitor"] + c["others"] + c["missed_events"]
        if c["preemptions"] != seen:
            return (f"the program published {c['preemptions']} preemptions, the learner saw "
                    f"{c['by_competitor']} by the competitor + {c['others']} others + "
                    f"{c['missed_events']} folded")
        made = c["wakes"] - c["retries"]
        if not c["by_competitor"] <= made <= c["by_competitor"] + c["missed_events"]:
            return (f"the competitor preempted the worker {made} times, the learner saw "
                    f"{c['by_competitor']} of them (and {c['missed_events']} folded)")
        if c["by_competitor"] < p["warmup"] + p["samples"]:
            return (f"{c['by_competitor']} preemptions by the competitor for "
                    f"{p['warmup'] + p['samples']} upcalls")
        if mechanism == "bpf_ringbuf" and c["ring_records"] != c["preemptions"]:
            return f"{c['ring_records']} ring records for {c['preemptions']} preemptions"
        if mechanism == "rseq_abort" and c["rseq_aborts"] != c["rseq_fixups"]:
            return (f"the abort handler ran {c['rseq_aborts']} times, the kernel fired "
                    f"rseq_ip_fixup {c['rseq_fixups']} times")
        return None
    if mechanism.startswith("bpf"):
        kind = "blocks" if p["event"] == "block" else "unblocks"
        if c[kind] < p["samples"]:
            return f"the program published {c[kind]} {kind} for {p['samples']} upcalls"
    if p.get("block_kind") == "fault":
        # every call of the window took exactly one major fault: those that
        # blocked, and those whose read was done before the fault waited
        calls = p["samples"] + c["not_blocked"] + c["lost_upcalls"]
        if c["majflt"] != calls:
            return (f"the worker took {c['majflt']} major faults in {calls} blocking calls: "
                    "one per call expected")
    return None


def _measure_upcalls(mechanism: str, p: dict[str, Any], ctx: RunContext, sched_cpu: int):
    """run_upcalls with what the point asks for around it: the program (bpf
    mechanisms; the anatomy's stage functions), BPF run-time stats, pm_qos.
    (latency, since, counts, anatomy dict or None, program costs)."""
    bpf = mechanism.startswith("bpf")
    anatomy: dict[str, Any] | None = {} if p.get("anatomy") else None
    costs: dict[str, float] = {}
    with pm_qos(p.get("pm_qos", False)):
        if not bpf and anatomy is None:
            latency, since, c = run_upcalls(mechanism, p, ctx.cpu, sched_cpu, ctx.scratch_dir,
                                            None, ctx.handshake)
            return latency, since, c, None, costs
        # attached before the C call: outside the window
        event = p["event"] if bpf else None
        with upcall_program(event, anatomy=anatomy is not None) as (program, maps), \
                (bpf_stats() if anatomy is not None else contextlib.nullcontext()):
            mine = [n for n, _ in (BLOCK_FN, WAKE_FN) if n in program.attached]
            stages = [n for n, _ in ANATOMY_FNS if n in program.attached]
            before = program_misses(program), program_stats(program, mine), \
                program_stats(program, stages)
            latency, since, c = run_upcalls(mechanism, p, ctx.cpu, sched_cpu, ctx.scratch_dir,
                                            maps, ctx.handshake, anatomy)
            after = program_misses(program), program_stats(program, mine), \
                program_stats(program, stages)
    c["program_misses"] = after[0] - before[0]
    # 1: the runner's program for the suite, attached here; 0: compiled here
    costs["program_from_runner"] = float(program.bpf is None)
    if anatomy is not None:
        # every upcall of the call, warm-up too: the stats cover them all
        upcalls = p["warmup"] + p["samples"]
        ns, runs = after[1][0] - before[1][0], after[1][1] - before[1][1]
        if mine:
            costs["program_ns_per_run"] = ns / max(runs, 1)
            costs["program_runs_per_upcall"] = runs / upcalls
            costs["program_ns_per_upcall"] = ns / upcalls
        costs["anatomy_ns_per_upcall"] = (after[2][0] - before[2][0]) / upcalls
    return latency, since, c, anatomy, costs


def _measure_preemptions(mechanism: str, p: dict[str, Any], ctx: RunContext) -> Measurement:
    from lab.native import NativeError
    same_cpu = p["placement"] == "same_cpu"
    # same_cpu: the harness arms the competitor from the other CPU; the
    # worker, preempted, is the one that learns
    with upcall_program("preempt", rseq=mechanism == "rseq_abort") as (program, maps):
        before = program_misses(program)
        latency, since_resume, c = run_preemptions(mechanism, p, ctx.cpu, ctx.peer_cpu, maps,
                                                   ctx.handshake, same_cpu=same_cpu)
        c["program_misses"] = program_misses(program) - before
    wrong = expected_mechanics(mechanism, p, c)
    if wrong:
        raise NativeError(f"preemption upcalls did not run as built: {wrong}")
    counters = {k: float(c[k]) for k in _PREEMPT_COUNTS + ("program_misses",)
                if k != "upcalls"}
    counters["program_from_runner"] = float(program.bpf is None)
    series = {LATENCY.name: latency}
    if since_resume is not None:
        series[SINCE_RESUME.name] = since_resume
    return Measurement(series, ops=p["samples"], counters=counters)


def _upcall_variant(mechanism: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        import numpy as np

        from lab.native import NativeError
        _check(mechanism, p)
        sched_cpu = ctx.peer_cpu if p["placement"] == "cross_cpu" else ctx.cpu
        if p.get("event") == "preempt":
            return _measure_preemptions(mechanism, p, ctx)
        latency, since, c, anatomy, costs = _measure_upcalls(mechanism, p, ctx, sched_cpu)
        wrong = expected_mechanics(mechanism, p, c)
        if wrong:
            raise NativeError(f"upcalls did not run as built: {wrong}")
        n = p["samples"]
        counters = {k: float(c[k]) for k in _COUNTS + ("program_misses",)
                    if k != "upcalls" and k in c}
        counters["slept_fraction"] = c["slept"] / n
        counters["extra_events_per_upcall"] = c["extra_events"] / n
        if p.get("block_kind") == "fault":
            # a plain major fault's cost, as the faulting worker saw it
            calls = n + c["not_blocked"] + c["lost_upcalls"]
            counters["fault_ns_per_call"] = c["fault_ns"] / calls
        counters.update(costs)
        series = {LATENCY.name: latency}
        if since is not None:
            series[SINCE_SOURCE.name] = since
        if anatomy is not None:
            for m in STAGE_METRICS:
                series[m.name] = anatomy[m.name]
                counters[f"{m.name}_seen"] = anatomy["seen"][m.name] / n
            counters["ipis_per_upcall"] = float(np.mean(anatomy["ipis"]))
            counters["self_ipis_per_upcall"] = float(np.mean(anatomy["self_ipis"]))
        return Measurement(series, ops=n, counters=counters)

    return run


# ---- timers -------------------------------------------------------------------

@contextlib.contextmanager
def pm_qos(hold: bool):
    """/dev/cpu_dma_latency held at 0 us while the context lives (the kernel
    drops the request when the file is closed)."""
    if not hold:
        yield
        return
    fd = os.open(PM_QOS, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, (0).to_bytes(4, "little"))
        yield
    finally:
        os.close(fd)


def run_timer(kind: str, p: dict[str, Any], cpu: int, handshake: Any = None):
    """Call upcall_timer: (lateness, counts dict)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    out = np.zeros(p["samples"])
    counts = ffi.new("struct upcall_timer_counts *")
    with pm_qos(p.get("pm_qos", False)):
        check(lib.upcall_timer(handshake, TIMERS[kind], cpu, p.get("rt_priority", 0),
                               p["interval_us"] * 1000, p["warmup"], p["samples"],
                               double_ptr(ffi, out), counts), f"upcall/{kind}")
    return out, {k: int(getattr(counts, k)) for k in struct_fields("struct upcall_timer_counts")}


def _timer_variant(kind: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        _check(kind, p)
        lateness, c = run_timer(kind, p, ctx.cpu, ctx.handshake)
        counters = {k: float(v) for k, v in c.items() if k != "drift_ns"}
        if kind == "timer_uring_multishot":
            counters["drift_per_period_ns"] = c["drift_ns"] / p["samples"]
        return Measurement({LATENESS.name: lateness}, ops=p["samples"], counters=counters)

    return run


_CYCLIC_LINE = re.compile(r"^\s*(\d+):\s*(\d+):\s*(-?\d+)\s*$")


def cyclictest_args(p: dict[str, Any], cpu: int) -> list[str]:
    """cyclictest with our interval, CPU and policy: one thread, verbose
    per-loop values in ns, the power management left to the lab."""
    loops = p["warmup"] + p["samples"]
    args = [shutil.which(CYCLICTEST) or CYCLICTEST, "-t1", f"-a{cpu}",
            f"-i{p['interval_us']}", "-d0", f"-l{loops}", "-v", "-N", "--default-system"]
    if p.get("rt_priority", 0) > 0:
        args += [f"-p{p['rt_priority']}", "--policy=fifo"]
    return args


def parse_cyclictest(text: str) -> list[int]:
    """The per-loop values (thread 0) of `cyclictest -v`, in loop order."""
    values = {}
    for line in text.splitlines():
        m = _CYCLIC_LINE.match(line)
        if m and m.group(1) == "0":
            values[int(m.group(2))] = int(m.group(3))
    return [values[k] for k in sorted(values)]


def run_cyclictest(p: dict[str, Any], cpu: int, scratch_dir: str, handshake: Any = None):
    """cyclictest in the measured window: (lateness, counters)."""
    import numpy as np

    from lab.native import NativeError, check, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    loops = p["warmup"] + p["samples"]
    out_path = os.path.join(scratch_dir, "cyclictest.out")
    timeout = 30 + loops * p["interval_us"] * 5e-6
    with pm_qos(p.get("pm_qos", False)), open(out_path, "w+") as out, \
            open(os.path.join(scratch_dir, "cyclictest.err"), "w+") as err:
        proc = subprocess.Popen(cyclictest_args(p, cpu), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        try:
            # the window holds cyclictest's whole life, its warm-up loops too
            check(lib.lab_handshake_ready(handshake, ffi.new("int[]", [proc.pid]), 1),
                  "handshake")
            rc = proc.wait(timeout=timeout)
            check(lib.lab_handshake_done(handshake), "handshake")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    if rc != 0:
        last = [ln for ln in errors.splitlines() if ln.strip()][-1:] or [f"status {rc}"]
        raise NativeError(f"cyclictest failed: {last[0]}")
    values = parse_cyclictest(text)
    if len(values) != loops:
        raise NativeError(f"cyclictest printed {len(values)} loop values, {loops} expected")
    measured = np.asarray(values[p["warmup"]:], dtype=np.float64)
    clamped = int((measured < 0).sum())
    measured[measured < 0] = 0.0
    return measured, {"clamped": float(clamped), "loops_in_window": float(loops)}


def _cyclictest(p: dict[str, Any], ctx: RunContext) -> Measurement:
    _check("cyclictest", p)
    lateness, counters = run_cyclictest(p, ctx.cpu, ctx.scratch_dir, ctx.handshake)
    # the whole process is in the window: the probes' per-op numbers
    # divide by every loop
    return Measurement({LATENESS.name: lateness}, ops=p["warmup"] + p["samples"],
                       counters=counters)


# ---- the family ------------------------------------------------------------------

SIZES = ("samples", "warmup")
BPF = ("placement", "event", "block_kind", "block_us", "run_us", "anatomy", "pm_qos",
       "competitor_priority", "burst_us") + SIZES
HINT = ("placement", "block_kind", "block_us", "run_us", "anatomy", "pm_qos") + SIZES
URING = ("placement", "block_kind", "block_us", "anatomy", "pm_qos") + SIZES
BPF_METRICS = (LATENCY, SINCE_SOURCE, SINCE_RESUME) + STAGE_METRICS
PREEMPT = ("placement", "event", "competitor_priority", "burst_us") + SIZES
OTHER_METRICS = (LATENCY,) + STAGE_METRICS
TIMER = ("interval_us", "rt_priority", "pm_qos") + SIZES
NEEDS_BPF = ("bpf",)
NEEDS_URING = ("io_uring",)

def _loading_program(variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
    """The mechanisms' variants with Variant.loads_program: the BPF
    mechanisms load the upcall program at every point, the others with the
    anatomy (its stage programs); the timers never."""
    def with_anatomy(p: dict[str, Any]) -> str | None:
        return "upcall" if p.get("anatomy") else None

    return tuple(dataclasses.replace(v, loads_program=programs.always("upcall") if v.name.startswith("bpf")
                                     or v.name in PREEMPT_ONLY else with_anatomy)
                 if v.name in MECHANISMS else v for v in variants)


FAMILY = Family(
    name="upcall",
    summary="the kernel telling user-level scheduling code of an event: eBPF on scheduler "
            "tracepoints through a ring buffer or a polled flag, a futex hint, io_uring "
            "completions; and timer upcalls against cyclictest",
    seeds="000 (upcalls, precise timing for user space), 002 (scheduler activations' "
          "block/unblock upcalls)",
    params=PARAMS + tuple(param for part in PARTS for param in part.PARAMS),
    reference="futex_hint",
    check_point=point_problem,
    variants=_loading_program((
        Variant("bpf_ringbuf", "BPF program on sched_switch / sched_waking -> ring buffer "
                "(BPF_RB_FORCE_WAKEUP); the scheduler sleeps in epoll, consumes in C",
                _upcall_variant("bpf_ringbuf"), BPF, BPF_METRICS, requires=NEEDS_BPF),
        Variant("bpf_flag", "the same program bumps a per-VP sequence in an mmap-able BPF "
                "array; the scheduler spins on it", _upcall_variant("bpf_flag"), BPF,
                BPF_METRICS, requires=NEEDS_BPF),
        Variant("bpf_flag_sleep", "spin on the flag spin_us, then sleep in epoll on the ring, "
                "which the program writes only for a sleeping scheduler",
                _upcall_variant("bpf_flag_sleep"), BPF + ("spin_us",), BPF_METRICS,
                requires=NEEDS_BPF),
        Variant("bpf_ringbuf_adaptive", "bpf_ringbuf with the ring's adaptive wake-up (flags 0: "
                "only a consumer that has caught up is woken) instead of BPF_RB_FORCE_WAKEUP",
                _upcall_variant("bpf_ringbuf_adaptive"), BPF, BPF_METRICS, requires=NEEDS_BPF),
        Variant("bpf_flag_idle", "bpf_flag with the scheduler polling at SCHED_IDLE: on the "
                "worker's CPU it runs exactly when the CPU would otherwise go idle (no wake-up, "
                "no irq_work)", _upcall_variant("bpf_flag_idle"), BPF, BPF_METRICS,
                requires=NEEDS_BPF),
        Variant("rseq_abort", "event=preempt only, same_cpu: the worker spins inside an rseq "
                "critical section (glibc's area); the kernel, returning it to user space after "
                "a preemption, resumes it at the abort handler, which reads its slot (the "
                "nearest Linux has to an upcall into the preempted activation)",
                _upcall_variant("rseq_abort"), PREEMPT, (LATENCY, SINCE_RESUME),
                requires=NEEDS_BPF),
        Variant("futex_hint", "no kernel help: the worker FUTEX_WAKEs the scheduler just "
                "before it blocks (event time: its stamp before the wake)",
                _upcall_variant("futex_hint"), HINT, OTHER_METRICS),
        Variant("uring_cqe_poll", "the blocking call is an io_uring SQE; its CQE is the "
                "unblock upcall, the scheduler spins on the CQ",
                _upcall_variant("uring_cqe_poll"), URING, OTHER_METRICS, requires=NEEDS_URING),
        Variant("uring_cqe_wait", "... the scheduler sleeps in io_uring_wait_cqe()",
                _upcall_variant("uring_cqe_wait"), URING, OTHER_METRICS, requires=NEEDS_URING),
        Variant("uring_cqe_eventfd", "... the scheduler sleeps in epoll on an eventfd "
                "registered with a DEFER_TASKRUN ring", _upcall_variant("uring_cqe_eventfd"),
                URING, OTHER_METRICS, requires=NEEDS_URING),
        Variant("timer_nanosleep", "periodic clock_nanosleep(TIMER_ABSTIME)",
                _timer_variant("timer_nanosleep"), TIMER, (LATENESS,)),
        Variant("timer_timerfd", "a periodic timerfd, read()", _timer_variant("timer_timerfd"),
                TIMER, (LATENESS,)),
        Variant("timer_signal", "POSIX timer, SIGEV_THREAD_ID: the signal handler stamps the "
                "time; the thread sleeps in sigsuspend", _timer_variant("timer_signal"), TIMER,
                (LATENESS,)),
        Variant("timer_signal_busy", "the same, the thread busy in user space: the handler "
                "runs on the way back from the timer interrupt (seed 000's upcall)",
                _timer_variant("timer_signal_busy"), TIMER, (LATENESS,)),
        Variant("timer_uring", "absolute IORING_OP_TIMEOUT, re-armed each period",
                _timer_variant("timer_uring"), TIMER, (LATENESS,), requires=NEEDS_URING),
        Variant("timer_uring_multishot", "one SQE with IORING_TIMEOUT_MULTISHOT (6.4): a CQE "
                "per period; lateness = gap between CQEs minus the interval",
                _timer_variant("timer_uring_multishot"), TIMER, (LATENESS,),
                requires=NEEDS_URING),
        Variant("cyclictest", "rt-tests' cyclictest, same interval, CPU and policy: the "
                "standard tool's clock_nanosleep numbers", _cyclictest, TIMER, (LATENESS,)),
    )) + tuple(variant for part in PARTS for variant in part.VARIANTS),
)
