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

ffi, lib = native.load()
WAKES = 13                  # prime: a count that matches is not a coincidence


# ---- preemption upcalls (event "preempt") ----------------------------------------

PREEMPT_P = {"event": "preempt", "competitor_priority": 10, "burst_us": 20, "samples": WAKES, "warmup": 0}


@requires_root
@pytest.mark.parametrize("mechanism,placement", [
    ("bpf_ringbuf", "cross_cpu"), ("bpf_flag", "cross_cpu"), ("bpf_ringbuf", "same_cpu"),
    ("bpf_flag", "same_cpu"), ("rseq_abort", "same_cpu")])
def test_each_competitor_preemption_is_one_upcall(mechanism, placement):
    require_probes()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("preemption upcalls need two CPUs (the harness on the other one)")
    if mechanism == "rseq_abort" and lib.upcall_rseq_available() != 0:
        pytest.skip("glibc registered no rseq area for this thread (glibc.pthread.rseq=0?)")
    from lab.families import upcall as U
    cpu, sched_cpu = sorted(os.sched_getaffinity(0))[:2]
    same = placement == "same_cpu"
    before = os.sched_getaffinity(0), os.sched_getscheduler(0)
    with upcall_program("preempt", rseq=mechanism == "rseq_abort") as (program, maps):
        assert program.attached[0] == "lab_upcall_preempt"
        latency, since_resume, c = U.run_preemptions(mechanism, PREEMPT_P, cpu, sched_cpu,
                                                     maps, same_cpu=same)
    assert (os.sched_getaffinity(0), os.sched_getscheduler(0)) == before
    if mechanism == "rseq_abort":
        # every abort the handler saw is one the kernel made; each of the
        # competitor's preemptions (at least) sent the worker there
        assert c["rseq_aborts"] == c["rseq_fixups"] >= WAKES
    if same:
        # the worker learnt after it got its CPU back
        assert len(since_resume) == WAKES and (since_resume >= 0).all()
        assert (latency > since_resume).all()
    else:
        assert since_resume is None
    # one upcall per preemption by the competitor, each one it made (its
    # own look at the slot): a look may fold two, none is invented
    assert c["upcalls"] == WAKES and c["by_competitor"] >= WAKES
    made = c["wakes"] - c["retries"]
    assert c["by_competitor"] <= made <= c["by_competitor"] + c["missed_events"]
    # every switch out the program published was seen, and is one the
    # kernel counted for the worker
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
        _, _, c = U.run_preemptions("bpf_ringbuf", PREEMPT_P, cpu, sched_cpu, maps,
                                    bystander=True)
    # every wake preempted it, or the kernel had taken its CPU already
    assert c["wakes"] >= WAKES and c["worker_nivcsw"] >= 1
    assert c["preemptions"] == c["by_competitor"] == c["others"] == c["ring_records"] == 0
    assert c["upcalls"] == 0


def test_preempt_points_that_are_not_built_say_why():
    from lab.families import upcall as U
    p = {"placement": "cross_cpu", "event": "preempt", "anatomy": False,
         "competitor_priority": 10, "samples": 50, "warmup": 5, "block_kind": "nanosleep"}
    assert "not built yet" in U.point_problem("bpf_flag_sleep", p)
    assert "same_cpu" in U.point_problem("rseq_abort", p)
    assert "event" in U.point_problem("rseq_abort", dict(p, event="block",
                                                        placement="same_cpu"))
    assert "anatomy" in U.point_problem("bpf_ringbuf", dict(p, anatomy=True))


def test_preempt_runner_refuses_what_it_does_not_build():
    """rseq aborts reach the preempted thread only, and tell of no block."""
    maps = ffi.new("struct upcall_maps *", {"ring_fd": -1, "vps_fd": 3, "tids_fd": 3,
                                            "stages_fd": -1})
    cfg = ffi.new("struct upcall_preempt_config *", {
        "mechanism": lib.UPCALL_RSEQ_ABORT, "same_cpu": 0, "cpu": 0, "sched_cpu": 1,
        "competitor_priority": 10, "burst_ns": 1000, "nr_samples": 1})
    counts = ffi.new("struct upcall_preempt_counts *")
    assert lib.upcall_preempt_run(ffi.NULL, cfg, maps, ffi.NULL, ffi.NULL, counts) == -22
