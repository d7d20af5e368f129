"""The preemption upcall's rseq piece: a registered VP thread spinning in
an rseq critical section (glibc's registered area) is preempted by a
pinned SCHED_FIFO competitor; every abort its handler counts is one
rseq:rseq_ip_fixup the kernel fired for it (lab_upcall_rseq_fixup), and
the worker was preempted (the program's and the kernel's counts).

Mechanics only: the worker runs SCHED_FIFO just below the competitor, so
on a loaded machine too it holds its CPU until the competitor wakes (or
the kernel's fair server runs a load task: then that is the preemption,
and it aborts the section the same way); nothing here is timed.
"""

import os

import pytest

from lab import native
from lab.upcall_program import upcall_program

from .helpers import require_probes, requires_root

pytestmark = pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning")

ffi, lib = native.load()
WAKES = 13                  # prime: a count that matches is not a coincidence


@requires_root
def test_rseq_aborts_are_the_kernels_fixups():
    require_probes()
    if lib.upcall_rseq_available() != 0:
        pytest.skip("glibc registered no rseq area for this thread (glibc.pthread.rseq=0?)")
    cpu = sorted(os.sched_getaffinity(0))[0]
    before = os.sched_getaffinity(0), os.sched_getscheduler(0)
    out = ffi.new("struct upcall_rseq_result *")
    with upcall_program(event="preempt", rseq=True) as (program, maps):
        assert program.attached == ["lab_upcall_preempt", "lab_upcall_rseq_fixup"]
        native.check(lib.upcall_rseq_aborts(maps, cpu, 10, WAKES, out), "upcall_rseq_aborts")
    assert (os.sched_getaffinity(0), os.sched_getscheduler(0)) == before
    assert out.wakes == WAKES
    assert out.aborts >= 1
    # the runtime's count of its handler's runs is the kernel's count
    assert out.aborts == out.fixups
    # the competitor's wakes preempted the worker (the kernel's own count)
    assert out.nivcsw >= 1 and out.preemptions >= 1
    assert out.worker_tid and out.competitor_tid and out.worker_tid != out.competitor_tid


def test_rseq_helper_refuses_a_bad_priority():
    maps = ffi.new("struct upcall_maps *", {"ring_fd": -1, "vps_fd": -1, "tids_fd": -1,
                                            "stages_fd": -1})
    out = ffi.new("struct upcall_rseq_result *")
    assert lib.upcall_rseq_aborts(maps, 0, 1, WAKES, out) == -22


# ---- preemption upcalls (event "preempt") ----------------------------------------

PREEMPT_P = {"event": "preempt", "competitor_priority": 10, "burst_us": 20, "samples": WAKES, "warmup": 0}


@requires_root
@pytest.mark.parametrize("mechanism", ["bpf_ringbuf", "bpf_flag"])
def test_each_competitor_preemption_is_one_upcall(mechanism):
    require_probes()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("preemption upcalls need two CPUs (the scheduler on the other one)")
    from lab.families import upcall as U
    cpu, sched_cpu = sorted(os.sched_getaffinity(0))[:2]
    before = os.sched_getaffinity(0), os.sched_getscheduler(0)
    with upcall_program("preempt") as (program, maps):
        assert program.attached == ["lab_upcall_preempt"]
        latency, c = U.run_preemptions(mechanism, PREEMPT_P, cpu, sched_cpu, maps)
    assert (os.sched_getaffinity(0), os.sched_getscheduler(0)) == before
    # exactly one upcall per competitor preemption, each taken from the worker
    assert c["upcalls"] == WAKES and c["by_competitor"] == WAKES
    assert c["wakes"] == WAKES + c["retries"]
    # every switch out the program published is one the kernel counted
    assert c["preemptions"] == c["by_competitor"] + c["others"] + c["missed_events"]
    assert c["preemptions"] == c["worker_nivcsw"]
    if mechanism == "bpf_ringbuf":
        assert c["ring_records"] == c["preemptions"]
    assert c["ring_lost"] == c["ring_bad"] == c["foreign"] == 0
    assert U.expected_mechanics(mechanism, PREEMPT_P, c) is None
    assert len(latency) == WAKES and (latency > 0).all()


@requires_root
def test_an_unregistered_thread_preempted_makes_no_upcall():
    require_probes()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("preemption upcalls need two CPUs (the scheduler on the other one)")
    from lab.families import upcall as U
    cpu, sched_cpu = sorted(os.sched_getaffinity(0))[:2]
    with upcall_program("preempt") as (program, maps):
        _, c = U.run_preemptions("bpf_ringbuf", PREEMPT_P, cpu, sched_cpu, maps,
                                 bystander=True)
    assert c["wakes"] == WAKES and c["worker_nivcsw"] >= 1
    assert c["preemptions"] == c["by_competitor"] == c["others"] == c["ring_records"] == 0


def test_preempt_points_that_are_not_built_say_why():
    from lab.families import upcall as U
    p = {"placement": "cross_cpu", "event": "preempt", "anatomy": False,
         "competitor_priority": 10, "samples": 50, "warmup": 5, "block_kind": "nanosleep"}
    assert "not built yet" in U.point_problem("bpf_flag_sleep", p)
    assert "cross_cpu" in U.point_problem("bpf_flag", dict(p, placement="same_cpu"))
    assert "anatomy" in U.point_problem("bpf_ringbuf", dict(p, anatomy=True))
