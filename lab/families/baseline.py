"""Family ``baseline``: the costs everything else is measured against.

A null system call, a futex handoff and a pipe round trip on the same CPU
and across CPUs (LMbench's lat_syscall / lat_ctx, ``perf bench sched
pipe``), a user-level context switch (our fibers) against swapcontext(3),
an io_uring NOP alone and batched, and the clock read every timestamp pays.
The C side is native/baseline.c.
"""

from __future__ import annotations

from typing import Any

from lab.model import Family, Measurement, Metric, Param, RunContext, Variant

NS_PER_OP = Metric("ns_per_op", "ns", "time per operation (mean over ops_per_sample)")
NS_PER_SWITCH = Metric("ns_per_switch", "ns",
                       "time per context switch (mean over ops_per_sample round trips)")
ROUND_TRIP = Metric("round_trip", "ns", "one round trip, timed alone")
HANDOFF = Metric("handoff", "ns",
                 "one-way handoff: waker's stamp before the wake to wakee's stamp after it runs")

PARAMS = (
    Param("samples", 2000, "samples", "recorded samples per run", low=10, high=10_000_000,
          axis=False),
    Param("warmup", 200, "samples", "unrecorded samples before the measured window", low=0, high=1_000_000,
          axis=False),
    Param("ops_per_sample", 100, "ops",
          "operations averaged into one sample where one is too short to time alone",
          low=1, high=1_000_000, axis=False),
    Param("placement", "same_cpu", "", "ping-pong peers on the suite's cpu, or on cpu and peer_cpu",
          choices=("same_cpu", "cross_cpu")),
    Param("batch", 32, "NOPs/enter", "io_uring NOPs submitted per io_uring_enter()", low=1, high=4096),
)


def _native():
    from lab import native
    return native.load()


def _buffers(n: int, *scale: int):
    import numpy as np
    return [np.zeros(n * s, dtype=np.float64) for s in scale]


def _simple(c_name: str, metric: Metric, ops_per_iteration: int = 1):
    """A worker timing ops_per_sample repetitions of one operation (a fiber
    round trip is two switches: ops_per_iteration 2)."""

    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import check, double_ptr
        ffi, lib = _native()
        (out,) = _buffers(p["samples"], 1)
        check(getattr(lib, c_name)(ctx.handshake, p["warmup"], p["samples"],
                                   p["ops_per_sample"], double_ptr(ffi, out)), c_name)
        return Measurement({metric.name: out},
                           ops=p["samples"] * p["ops_per_sample"] * ops_per_iteration)

    return run


def _peer(p: dict[str, Any], ctx: RunContext) -> int:
    return ctx.peer_cpu if p["placement"] == "cross_cpu" else ctx.cpu


def _futex_pingpong(p: dict[str, Any], ctx: RunContext) -> Measurement:
    from lab.native import check, double_ptr
    ffi, lib = _native()
    rt, handoff = _buffers(p["samples"], 1, 2)
    check(lib.baseline_futex_pingpong(ctx.handshake, ctx.cpu, _peer(p, ctx), p["warmup"],
                                      p["samples"], double_ptr(ffi, rt),
                                      double_ptr(ffi, handoff)), "futex ping-pong")
    return Measurement({ROUND_TRIP.name: rt, HANDOFF.name: handoff}, ops=p["samples"])


def _pipe_pingpong(p: dict[str, Any], ctx: RunContext) -> Measurement:
    from lab.native import check, double_ptr
    ffi, lib = _native()
    (rt,) = _buffers(p["samples"], 1)
    check(lib.baseline_pipe_pingpong(ctx.handshake, ctx.cpu, _peer(p, ctx), p["warmup"],
                                     p["samples"], double_ptr(ffi, rt)), "pipe ping-pong")
    return Measurement({ROUND_TRIP.name: rt}, ops=p["samples"])


def _uring_nop(batch_of, sqe_flags: int = 0):
    def run(p: dict[str, Any], ctx: RunContext) -> Measurement:
        from lab.native import check, double_ptr
        ffi, lib = _native()
        (out,) = _buffers(p["samples"], 1)
        batch = batch_of(p)
        check(lib.baseline_uring_nop(ctx.handshake, batch, sqe_flags, p["warmup"],
                                     p["samples"], p["ops_per_sample"], double_ptr(ffi, out)),
              "io_uring NOP")
        enters = max(1, p["ops_per_sample"] // batch)     # as native/baseline.c
        return Measurement({NS_PER_OP.name: out}, ops=p["samples"] * enters * batch)

    return run


SIMPLE = ("samples", "warmup", "ops_per_sample")
IOSQE_ASYNC = 1 << 4        # include/uapi/linux/io_uring.h

FAMILY = Family(
    name="baseline",
    summary="what everything is measured against: syscall, futex and pipe handoffs, "
            "context switches, io_uring NOPs",
    seeds="all (LMbench / perf bench sched style reference costs)",
    params=PARAMS,
    reference="null_syscall",
    variants=(
        Variant("clock_read", "clock_gettime(CLOCK_MONOTONIC) via the vDSO: the floor under every timestamp",
                _simple("baseline_clock_read", NS_PER_OP), SIMPLE, (NS_PER_OP,)),
        Variant("null_syscall", "syscall(SYS_getppid): one kernel entry and exit",
                _simple("baseline_null_syscall", NS_PER_OP), SIMPLE, (NS_PER_OP,)),
        Variant("futex_pingpong", "two threads hand a turn back and forth through FUTEX_WAKE/FUTEX_WAIT",
                _futex_pingpong, ("samples", "warmup", "placement"), (ROUND_TRIP, HANDOFF)),
        Variant("pipe_pingpong", "two processes bounce a byte through two pipes (perf bench sched pipe)",
                _pipe_pingpong, ("samples", "warmup", "placement"), (ROUND_TRIP,)),
        Variant("fiber_switch", "our x86-64 user-level context switch between two fibers",
                _simple("baseline_fiber_switch", NS_PER_SWITCH, 2), SIMPLE, (NS_PER_SWITCH,),
                requires=("fibers",)),
        Variant("swapcontext", "glibc swapcontext(3): saves the signal mask with a system call each switch",
                _simple("baseline_swapcontext", NS_PER_SWITCH, 2), SIMPLE, (NS_PER_SWITCH,)),
        Variant("uring_nop", "one IORING_OP_NOP per io_uring_enter()",
                _uring_nop(lambda p: 1), SIMPLE, (NS_PER_OP,), requires=("io_uring",)),
        Variant("uring_nop_async", "one NOP per io_uring_enter() with IOSQE_ASYNC: always "
                "punted to an io-wq worker, a fibril per call",
                _uring_nop(lambda p: 1, IOSQE_ASYNC), SIMPLE, (NS_PER_OP,), requires=("io_uring",)),
        Variant("uring_nop_batched", "`batch` NOPs per io_uring_enter(), time per NOP "
                "(a sample: ops_per_sample NOPs, at least one batch)",
                _uring_nop(lambda p: p["batch"]), SIMPLE + ("batch",), (NS_PER_OP,),
                requires=("io_uring",)),
    ),
)
