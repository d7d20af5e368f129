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
