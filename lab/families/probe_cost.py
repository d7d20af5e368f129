"""Family ``probe_cost``: what each of the lab's probes costs, alone.

Each variant is one probe (lab/probes/, CONCERNS) and a baseline workload
whose operations fire it: its probed runs attach that probe only, its
unprobed twins none (``probe_overhead = true`` in ``[suite]``), so the
difference of their medians over the probe's runs per operation (the
kernel view's ``probe_runs_per_op``) is the probe's cost per run, on this
machine, in this suite run (bcc's tools measure a program the same way:
the workload with and without it).  A variant that attaches another probe
beside its own (wakeups rides on switches: they share the sched_switch
program) is measured on top of it, and the other's cost is subtracted.  With the probe runs per operation of
any other workload, that says in advance what attaching the probes costs
it; the report shows prediction and measurement side by side for
``baseline``.  ``migrations`` has no variant: a pinned workload never
migrates, so the probe never runs on its events.
"""

from __future__ import annotations

from typing import Any

from lab.families import baseline as B
from lab.model import Family, Measurement, Metric, RunContext, Variant

PARAMS = tuple(p for p in B.PARAMS if p.name in ("samples", "warmup", "ops_per_sample"))


def _yield_pingpong(p: dict[str, Any], ctx: RunContext) -> Measurement:
    """Switches without wake-ups: two threads on one CPU that only yield."""
    from lab.native import check, double_ptr
    ffi, lib = B._native()
    (out,) = B._buffers(p["samples"], 1)
    check(lib.baseline_yield_pingpong(ctx.handshake, ctx.cpu, p["warmup"], p["samples"],
                                      p["ops_per_sample"], double_ptr(ffi, out)),
          "sched_yield ping-pong")
    return Measurement({YIELD.name: out}, ops=p["samples"] * p["ops_per_sample"])


YIELD = Metric("ns_per_yield", "ns", "time per sched_yield() of the measuring thread (mean "
               "over ops_per_sample), a switch to the other thread and back")


FAMILY = Family(
    name="probe_cost",
    summary="each probe's cost per run on the run's events, measured alone",
    seeds="none (the instrument's own cost)",
    params=PARAMS,
    reference="syscalls",
    variants=(
        Variant("syscalls", "the syscalls probe (raw_syscalls:sys_enter) on a null system "
                "call loop (baseline null_syscall)",
                B._simple("baseline_null_syscall", B.NS_PER_OP), B.SIMPLE, (B.NS_PER_OP,),
                probes=("syscalls",)),
        Variant("switches", "the switches probe (sched:sched_switch) on two threads that "
                "sched_yield() to each other on one CPU (two switches a yield)",
                _yield_pingpong, B.SIMPLE, (YIELD,), probes=("switches",)),
        Variant("wakeups", "the wakeups probe on top of switches, on the same yields: the "
                "two share one sched_switch program, so what wakeups adds to it is its cost "
                "(the report subtracts the switches probe's); its sched_waking and "
                "sched_wakeup programs, of the same shape, run on a wake-up",
                _yield_pingpong, B.SIMPLE, (YIELD,), probes=("switches", "wakeups")),
        Variant("io_uring", "the io_uring probe (a punt to io-wq, task work) on NOPs with "
                "IOSQE_ASYNC (baseline uring_nop_async)",
                B._uring_nop(lambda p: 1, B.IOSQE_ASYNC), B.SIMPLE, (B.NS_PER_OP,),
                requires=("io_uring",), probes=("io_uring",)),
    ),
)
