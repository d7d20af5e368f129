"""Part of family ``activations``: multiprogramming, runtime processes
sharing the CPUs with processor allocation (issue 14, item 3).

A part of the family is a private module (not a family of its own:
lab.families skips names with a leading underscore) that lab/families/
activations.py joins to the family: its ``PARAMS`` follow the family's,
its ``VARIANTS`` follow the family's variants, and ``point_problem``
answers for its own variants (None for the others).

**The experiment** (Anderson et al. 1992, the N-body application run as
two copies at once): ``processes`` runtime processes, forked from the
worker after set-up (native/activations_mp.c), each with ``vps`` VPs on
the same CPUs (VP i on the i-th of [cpu, peer_cpu, other CPUs], as the
family's), each running an N-body-like parallel workload: a time step is
``bodies`` body updates, the user-level tasks, which the process's VPs
take from one ticket word; an update is ``work_ns`` of the family's
calibrated CPU work, then, under lock ``b % locks``, ``cs_ns`` more and
the body's state; the step's last update opens the next one (the barrier
per step).  Each process runs one warm-up step, then ``time_steps``
measured ones; a process done first keeps running steps until every
process is done, so each measured step ran against the others.
``processes = 1`` is one process alone: the reference the analysis divides
by (speedup).

**Variants** (how a VP waits for a lock and for the step's last body):
``mp_oblivious`` spins (the original FastThreads: it cannot know that the
holder's VP lost its CPU); ``mp_spin_yield`` spins (100 polls for a lock, 5 us at the barrier), then
sched_yield()s; ``mp_informed`` spins while the holder's VP runs; once the
upcall program's preemption function says the kernel preempted it (the
holder's slot's ``preempted``) the waiter lends its CPU to the holder (the
holder's thread moves to the waiter's CPU, the waiter sleeps until the
holder has released and gone home: the paper's recovery as Linux allows
it); for the barrier it spins 5 us, then sleeps; ``mp_pthreads``: kernel threads, not
pinned, pthread mutexes and a futex barrier (the kernel schedules: Topaz
threads); ``mp_allocation``: informed plus processor allocation -- the
runtimes share an allocation in MAP_SHARED memory made before the fork,
each publishes how many VPs it wants, a user-space allocator (the paper
puts it in the kernel) divides the CPUs evenly among the wants, and a VP
runs only on a CPU its process was given: over its allocation a VP parks
(futex) at its next safe point, a parked VP takes its CPU once given and
left by the other process's VP ("add this processor"); a VP whose slot
says it was preempted takes that as "processor taken": its process asks
for one VP less (never below one), and asks for all again at the next
step's start.

**Series**: ``step_time``, each process's measured steps.  **Counters**:
``process<k>_bodies_per_s``, ``throughput_bodies_per_s`` (their sum, the
combined throughput), ``min_process_bodies_per_s``,
``max_process_bodies_per_s``, ``fairness_jain`` (Jain's index of the
per-process throughputs: 1 is fair), and the runtime's counts summed over
the processes, declared once in native/activations_mp.h
(``ACTIVATIONS_MP_COUNTERS``).  A run whose mechanics break (a body
updated twice or not at all in a step, a take with more VPs owned than
allocated, parks and unparks that do not add up to the VPs owned at the
end) fails with the reason.  One operation is one body update.
"""

from __future__ import annotations

from typing import Any

from lab import programs
from lab.model import USABLE_CPUS, Measurement, Metric, Param, RunContext, Variant, vp_cpus
from lab.native import enum_values, struct_fields


def _native():
    from lab import native
    return native.load()


# declared in native/activations_mp.h
VARIANTS_C = enum_values("enum activations_mp_variant", "ACT_")
COUNTS = struct_fields("struct activations_mp_counts")
_, _lib = _native()

STEP_TIME = Metric("step_time", "ns", "one measured time step of one process: its bodies "
                   "updated, the barrier passed")

PARAMS = (
    Param("processes", 2, "processes", "runtime processes on the same CPUs (multiprogramming); "
          "1: one process alone, the reference for speedup", low=1,
          high=_lib.ACT_MP_MAX_PROCESSES),
    Param("bodies", 256, "bodies", "body updates per time step (the user-level tasks)", low=1,
          high=_lib.ACT_MP_MAX_BODIES),
    Param("time_steps", 40, "steps", "measured time steps per process (after one warm-up "
          "step), a barrier each", low=1, high=_lib.ACT_MP_MAX_STEPS, axis=False),
)

# locks and cs_ns are the critical-sections part's parameters (the family
# declares each name once): the same meaning here
WORK = ("processes", "vps", "bodies", "time_steps", "locks", "work_ns", "cs_ns")


def point_problem(variant: str, p: dict[str, Any]) -> str | None:
    """Why a point of one of this part's variants cannot run, or None."""
    if not variant.startswith("mp_"):
        return None
    if p["vps"] > min(len(USABLE_CPUS), _lib.ACT_MP_MAX_VPS):
        return f"vps={p['vps']}: only {len(USABLE_CPUS)} CPUs usable here: lower vps"
    if p["processes"] * p["vps"] > _lib.ACT_MAX_SLOTS:
        return (f"processes x vps = {p['processes'] * p['vps']} VPs, the upcall program has "
                f"{_lib.ACT_MAX_SLOTS} slots: lower processes or vps")
    if p["locks"] > _lib.ACT_MP_MAX_LOCKS:
        return f"locks={p['locks']}: the multiprogramming runtime has {_lib.ACT_MP_MAX_LOCKS} at most"
    if variant == "mp_allocation" and p["processes"] > p["vps"]:
        return (f"mp_allocation: processes={p['processes']} > vps={p['vps']}: a process "
                "without a CPU never finishes; lower processes")
    return None


def run_processes(variant: str, p: dict[str, Any], cpus: list[int], maps: Any,
                  handshake: Any = None) -> tuple[Any, list[dict[str, int]], list[float]]:
    """Call activations_mp_run: (step_ns array, per-process counts with
    begin_ns/end_ns/pid/status, per-process bodies per second).
    handshake None: no runner (tests, notebooks)."""
    import numpy as np

    from lab.native import check, double_ptr, standalone_handshake
    ffi, lib = _native()
    if handshake is None:
        handshake = standalone_handshake()
    n, steps = p["processes"], p["time_steps"]
    step_ns = np.zeros(n * steps)
    cpu_array = ffi.new("int[]", cpus)
    cfg = ffi.new("struct activations_mp_config *", {
        "variant": VARIANTS_C[variant], "processes": n, "nr_vps": len(cpus),
        "vp_cpus": cpu_array, "bodies": p["bodies"], "time_steps": steps,
        "locks": p["locks"], "work_ns": p["work_ns"], "cs_ns": p["cs_ns"],
        "vps_fd": maps.vps_fd if maps is not None else -1,
        "tids_fd": maps.tids_fd if maps is not None else -1})
    out = ffi.new("struct activations_mp_process[]", n)
    check(lib.activations_mp_run(handshake, cfg, out, double_ptr(ffi, step_ns)),
          f"activations/{variant}")
    procs, rates = [], []
    for i in range(n):
        c = {k: int(getattr(out[i].counts, k)) for k in COUNTS}
        c.update(begin_ns=int(out[i].begin_ns), end_ns=int(out[i].end_ns),
                 pid=int(out[i].pid), status=int(out[i].status))
        procs.append(c)
        rates.append(steps * p["bodies"] / max(c["end_ns"] - c["begin_ns"], 1) * 1e9)
    return step_ns, procs, rates


def expected_mechanics(variant: str, p: dict[str, Any], procs: list[dict[str, int]]
                       ) -> str | None:
    """What must hold for a run to mean anything, else why not."""
    for i, c in enumerate(procs):
        if c["steps_run"] < p["time_steps"] + 1:
            return f"process {i} ran {c['steps_run']} of {p['time_steps'] + 1} steps"
        if c["body_updates"] != c["steps_run"] * p["bodies"]:
            return (f"process {i}: {c['body_updates']} body updates in {c['steps_run']} steps "
                    f"of {p['bodies']} bodies")
        for name in ("duplicate_updates", "missing_updates", "alloc_violations", "lend_errors"):
            if c[name]:
                return f"process {i}: {name} = {c[name]} (must be 0)"
        if c["recoveries"] != c["lend_returns"]:
            return (f"process {i}: {c['recoveries']} CPUs lent to preempted holders, "
                    f"{c['lend_returns']} holders back home")
        if c["initial_owned"] + c["unparks"] - c["parks"] != c["final_owned"]:
            return (f"process {i}: {c['initial_owned']} VPs owned + {c['unparks']} unparks - "
                    f"{c['parks']} parks != {c['final_owned']} owned at the end")
    return None


def derived_counters(procs: list[dict[str, int]], rates: list[float]) -> dict[str, float]:
    """The counters a run stores: counts summed over the processes, each
    process's throughput, their sum, min, max and Jain's index."""
    counters = {k: float(sum(c[k] for c in procs)) for k in COUNTS}
    for i, rate in enumerate(rates):
        counters[f"process{i}_bodies_per_s"] = rate
    counters["throughput_bodies_per_s"] = sum(rates)
    counters["min_process_bodies_per_s"] = min(rates)
    counters["max_process_bodies_per_s"] = max(rates)
    counters["fairness_jain"] = sum(rates) ** 2 / (len(rates) * sum(r * r for r in rates))
    return counters


def _mp_variant(variant: str):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import NativeError
        from lab.upcall_program import upcall_program
        problem = point_problem(variant, p)
        if problem:
            raise ValueError(problem)
        cpus = vp_cpus(p["vps"], ctx.cpu, ctx.peer_cpu)
        # the preemption upcall for every variant: holder preemptions are
        # counted alike, and informed / allocation act on them
        with upcall_program("preempt") as (_, maps):
            step_ns, procs, rates = run_processes(variant, p, cpus, maps, ctx.handshake)
        wrong = expected_mechanics(variant, p, procs)
        if wrong:
            raise NativeError(f"the runtimes did not run as built: {wrong}")
        counters = derived_counters(procs, rates)
        return Measurement({STEP_TIME.name: step_ns}, ops=int(counters["body_updates"]),
                           counters=counters)

    return run


def _second_vp(p: dict[str, Any]) -> bool:
    return p["vps"] >= 2


_HELP = {
    "mp_oblivious": "multiprogramming: waiters spin for locks and the barrier (the original "
                    "FastThreads)",
    "mp_spin_yield": "multiprogramming: spin a while, then sched_yield()",
    "mp_informed": "multiprogramming: spin while the lock holder's VP runs; once the "
                   "preemption upcall says it was preempted, lend it this CPU",
    "mp_pthreads": "multiprogramming: kernel threads, pthread mutexes, futex barrier (the "
                   "kernel schedules)",
    "mp_allocation": "multiprogramming: informed + processor allocation in shared memory "
                     "(add processor / processor taken in user space)",
}

VARIANTS = tuple(
    Variant(name, _HELP[name], _mp_variant(name), WORK, (STEP_TIME,), requires=("bpf",),
            peer_helper=_second_vp, loads_program=programs.always("upcall"))
    for name in VARIANTS_C)
