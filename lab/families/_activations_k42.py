"""Part of family ``activations``: K42's soft and hard preemption of a VP
(seed 004; issue 14, item 4), native/activations_k42.c.

K42 (seed 004) let the kernel take a processor from a user-level
scheduler two ways: *soft*, "a request to the thread-kern to save its
state in userspace if possible within a certain time frame", and *hard*,
where "the kernel do[es] a full context save explicitly"; the soft one was
"presumed to be faster".  Here both are rebuilt on one VP.

**Set-up.**  An activation (a kernel thread pinned to the suite's cpu)
runs ``concurrency`` fibers round robin, each ``quantum_us`` of CPU work
(an LCG chain) at a time; the fiber switch is the runtime's safe point,
where the fiber's state is already saved by our own context switch.  The
"kernel" is a requester thread pinned to the same CPU at SCHED_FIFO
(``requester_priority``) that wants the CPU once every ``interval_us``
(its timer), keeps it ``hold_us`` and sleeps again:

- ``k42_soft``: it posts a request (``request``: ``flag``, a shared word
  the safe point reads; ``signal``, a signal whose handler sets that word)
  and waits on a futex up to ``deadline_us``; the runtime's next safe
  point takes it, wakes the requester and waits (futex) until given the
  VP back.  Past the deadline the requester runs anyway: a hard preemption,
  counted in ``deadline_misses``.  Posting is itself a moment of the
  requester on the CPU: a soft preemption starts with a tiny hard one.
- ``k42_hard``: it just runs: the kernel preempts the activation at
  whatever instruction and saves its registers.
- ``k42_rseq_slice``: the rseq time-slice extension (Thomas Gleixner,
  2025: prctl(PR_RSEQ_SLICE_EXTENSION), the rseq area's slice_ctrl bits,
  rseq_slice_yield(2)) would let a thread ask the kernel to defer a
  preemption for a few microseconds: the converse of a soft preemption.
  Detected only (k42_rseq_slice_probe); every point is skipped with the
  reason -- on this lab's kernel it does not exist, and measuring it is
  left for a kernel that has it.

**Series.**  ``request_latency`` (headline): the requester's wanted time
(its timer's expiry) to it running; for soft it includes the wait for the
safe point.  ``safe_point`` (soft): the request posted to the runtime at
its safe point.  **Counters:** the runtime's counts, declared once in
native/activations_k42.h (``K42_COUNTERS``); ``cost_ns_per_preemption``:
the runtime's fiber work lost per preemption: the request phase's length
minus the requester's hold minus the time the quiet phases (before and
after it, no requests) needed for the same slices, over the requests;
``throughput_quiet`` / ``throughput_requested`` (slices per second).
With the upcall program's preemption function attached, the requester
reads whether the kernel preempted the activation for it
(``preempted_by_requester``) or found it off the CPU already
(``vp_off_cpu_at_request``: another task had it; a loaded machine).  A run
fails unless every request was answered exactly once, every soft answer
is either a release at a safe point or a miss, and every fiber's chain
equals the unpreempted result.
"""

from __future__ import annotations

from typing import Any

from lab import programs
from lab.model import Measurement, Metric, Param, RunContext, Variant
from lab.native import enum_values, struct_fields

K42_VARIANTS = {f"k42_{name}": value for name, value in
                enum_values("enum k42_variant", "K42_").items()}
REQUESTS = tuple(enum_values("enum k42_request", "K42_REQUEST_"))

REQUEST_LATENCY = Metric("request_latency", "ns",
                         "the requester's wanted time (its timer) to it running on the VP's "
                         "CPU; soft: the wait for the runtime's safe point included")
SAFE_POINT = Metric("safe_point", "ns",
                    "soft: the request posted to the runtime at its next safe point")

PARAMS: tuple[Param, ...] = (
    Param("quantum_us", 100, "us", "K42: CPU work per fiber slice, i.e. between safe points "
          "(fiber switches)", low=1, high=100_000),
    Param("deadline_us", 500, "us", "K42 soft: how long the requester waits for the safe point "
          "before it takes the CPU anyway (a miss)", low=1, high=1_000_000),
    Param("request", "flag", "", "K42 soft: how the request reaches the runtime: flag (a "
          "shared word) or signal (its handler sets the word)", choices=REQUESTS),
    Param("hold_us", 50, "us", "K42: how long the requester keeps the CPU once it runs",
          low=0, high=1_000_000),
    Param("interval_us", 2000, "us", "K42: between requests (> deadline_us + hold_us)",
          low=10, high=10_000_000),
    Param("requester_priority", 10, "", "K42: the requester's SCHED_FIFO priority", low=1,
          high=99),
)

K42_PARAMS = ("concurrency", "quantum_us", "hold_us", "interval_us", "requester_priority",
              "samples", "warmup")
SOFT_PARAMS = K42_PARAMS + ("deadline_us", "request")


def _native():
    from lab import native
    return native.load()


def rseq_slice_problem() -> str | None:
    """Why the rseq time-slice extension cannot be measured here, or None."""
    import errno
    import os
    _, lib = _native()
    rc = lib.k42_rseq_slice_probe()
    if rc < 0:
        name = errno.errorcode.get(-rc, str(-rc))
        return ("no rseq time-slice extension in this kernel: prctl(PR_RSEQ_SLICE_EXTENSION) "
                f"says {name} ({os.strerror(-rc)}); the extension (Thomas Gleixner, 2025; "
                "CONFIG_RSEQ_SLICE_EXTENSION) came after Linux 6.18")
    return ("this kernel offers the rseq time-slice extension, but the lab does not measure "
            "it yet (the rseq area's slice_ctrl request bit around a fiber's slice)")


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point of one of this part's variants cannot run, or None."""
    if variant == "k42_rseq_slice":
        return rseq_slice_problem()
    _, lib = _native()
    if p["concurrency"] > lib.K42_MAX_FIBERS:
        return (f"{variant}: concurrency={p['concurrency']} fibers on one VP, at most "
                f"{lib.K42_MAX_FIBERS}: lower concurrency")
    busy = p["hold_us"] + (p["deadline_us"] if variant == "k42_soft" else 0)
    if busy >= p["interval_us"]:
        what = "deadline_us + hold_us" if variant == "k42_soft" else "hold_us"
        return (f"{variant}: {what} = {busy} us >= interval_us = {p['interval_us']}: a request "
                "must be over before the next: raise interval_us")
    return None


def run_k42(variant: str, p: dict[str, Any], cpu: int, maps: Any = None,
            handshake: Any = None):
    """Call k42_run: (latency_ns, safe_point_ns, counts dict).  handshake
    None: no runner (tests, notebooks)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    n = p["samples"]
    latency = np.zeros(n)
    safe = np.zeros(n)
    fds = (maps.vps_fd, maps.tids_fd) if maps is not None else (-1, -1)
    cfg = ffi.new("struct k42_config *", {
        "variant": K42_VARIANTS[variant], "request": REQUESTS.index(p.get("request", "flag")),
        "cpu": cpu, "rt_priority": p["requester_priority"], "fibers": p["concurrency"],
        "quantum_ns": p["quantum_us"] * 1000, "deadline_ns": p.get("deadline_us", 0) * 1000,
        "hold_ns": p["hold_us"] * 1000, "interval_ns": p["interval_us"] * 1000,
        "warmup": p["warmup"], "samples": n, "vps_fd": fds[0], "tids_fd": fds[1]})
    counts = ffi.new("struct k42_counts *")
    check(lib.k42_run(handshake, cfg, double_ptr(ffi, latency), double_ptr(ffi, safe), counts),
          f"activations/{variant}")
    c = {k: int(getattr(counts, k)) for k in struct_fields("struct k42_counts")}
    return latency, safe[:c["safe_point_samples"]], c


def expected_mechanics(variant: str, p: dict[str, Any], c: dict[str, int]) -> str | None:
    """What must hold for a run to mean anything, else why not."""
    if c["requests"] != p["samples"] or c["answers"] != c["requests"]:
        return f"{c['answers']} answers to {c['requests']} requests ({p['samples']} made)"
    if variant == "k42_soft" and \
            c["released_at_safe_point"] + c["deadline_misses"] != c["requests"]:
        return (f"{c['released_at_safe_point']} released + {c['deadline_misses']} missed != "
                f"{c['requests']} requests")
    if c["state_mismatches"]:
        return f"{c['state_mismatches']} fibers' state differs from the unpreempted result"
    if c["unexplained_requests"]:
        return (f"{c['unexplained_requests']} requests found the activation neither preempted "
                "nor off the CPU")
    return None


def derived_counters(c: dict[str, int]) -> dict[str, float]:
    """The counts, plus the throughput with and without requests and the
    work lost per preemption."""
    counters = {k: float(v) for k, v in c.items() if k != "loops_per_slice"}
    quiet_s = max(c["quiet_ns"], 1) / 1e9
    req_s = max(c["request_ns"], 1) / 1e9
    counters["throughput_quiet"] = c["quiet_slices"] / quiet_s
    counters["throughput_requested"] = c["request_slices"] / req_s
    if c["quiet_slices"] and c["requests"]:
        ns_per_slice = c["quiet_ns"] / c["quiet_slices"]
        lost = c["request_ns"] - c["hold_ns"] - c["request_slices"] * ns_per_slice
        counters["cost_ns_per_preemption"] = lost / c["requests"]
    return counters


def _variant(variant: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        from lab.upcall_program import upcall_program
        problem = point_problem(variant, p)
        if problem:
            raise ValueError(problem)
        # the preemption function tells the requester whether the kernel
        # switched the activation out for it
        with upcall_program("preempt") as (_, maps):
            latency, safe, c = run_k42(variant, p, ctx.cpu, maps, ctx.handshake)
        wrong = expected_mechanics(variant, p, c)
        if wrong:
            raise NativeError(f"the K42 runtime did not run as built: {wrong}")
        series = {REQUEST_LATENCY.name: latency}
        if safe.size:
            series[SAFE_POINT.name] = safe
        return Measurement(series, ops=p["samples"], counters=derived_counters(c))

    return run


VARIANTS: tuple[Variant, ...] = (
    Variant("k42_soft", "K42 soft preemption: the requester asks (flag or signal), the runtime "
            "yields the VP at its next fiber switch within deadline_us", _variant("k42_soft"),
            SOFT_PARAMS, (REQUEST_LATENCY, SAFE_POINT), requires=("fibers", "bpf"),
            loads_program=programs.always("upcall")),
    Variant("k42_hard", "K42 hard preemption: the SCHED_FIFO requester just runs, the kernel "
            "preempts the activation anywhere", _variant("k42_hard"), K42_PARAMS,
            (REQUEST_LATENCY,), requires=("fibers", "bpf"), loads_program=programs.always("upcall")),
    Variant("k42_rseq_slice", "rseq time-slice extension (prctl PR_RSEQ_SLICE_EXTENSION): "
            "detected, skipped with the reason where the kernel lacks it",
            _variant("k42_rseq_slice"), K42_PARAMS, (REQUEST_LATENCY,),
            requires=("fibers",)),
)
