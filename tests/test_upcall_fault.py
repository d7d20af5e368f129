"""Page-fault upcalls: every userfaultfd fault is one message, resolved
once, with the page's data right; every major fault of block_kind=fault
is one block upcall and one major fault of the worker.

Known workloads with a prime number of faults (13).  Mechanics only:
the counts are the kernel's and the threads' own, one fault at a time in
lock-step, so a loaded machine changes how long a fault takes, never how
many there are; nothing here is timed.
"""

import errno
import os

import pytest

from lab import native
from lab.families import _upcall_fault as F
from lab.families import upcall as U
from lab.upcall_program import upcall_program

from .helpers import require_probes, requires_root

pytestmark = [requires_root,
              pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")]

ffi, lib = native.load()
N = 13                  # prime: a count that matches is not a coincidence
WARMUP = 3


def fault_params(**kw):
    p = {"placement": "cross_cpu", "handler": "sleep", "seed": 5, "samples": N, "warmup": WARMUP}
    p.update(kw)
    return p


def skip_unless_available(variant):
    problem = F.point_problem(variant, {})
    if problem:
        pytest.skip(problem)


# ---- userfaultfd ------------------------------------------------------------------

@pytest.mark.parametrize("variant,handler,placement", [
    ("uffd_copy", "sleep", "cross_cpu"), ("uffd_copy", "poll", "same_cpu"),
    ("uffd_continue", "sleep", "same_cpu"), ("uffd_continue", "poll", "cross_cpu")])
def test_each_fault_is_one_message_resolved_once(variant, handler, placement):
    skip_unless_available(variant)
    before = os.sched_getaffinity(0)
    p = fault_params(handler=handler, placement=placement)
    series, c = F.run_faults(variant, p, 0, 1 if placement == "cross_cpu" else 0)
    assert c["faults"] == N and c["messages"] == N and c["resolved"] == N
    assert c["eexist"] == 0 and c["bad_data"] == 0 and c["bad_msgs"] == 0
    # a userfaultfd fault is a minor one for the kernel's accounting
    assert c["majflt"] == 0 and c["minflt"] >= N
    assert F.expected_mechanics(p, c) is None
    if handler == "sleep":
        assert c["spun_reads"] == 0             # it only ever read after poll() said so
    for name, values in series.items():
        assert len(values) == N and (values >= 0).all(), name
    # the stages are one fault: they add up, the resume clamped at 0
    parts = series["latency"] + series["resolve"] + series["resume"]
    assert (parts >= series["total"] - 1).all()
    assert os.sched_getaffinity(0) == before
    assert c["faulting_tid"] != 0


def test_the_content_check_sees_another_seed():
    # the pattern is the seed's: two runs with different seeds both check clean
    # (the handler fills and the faulting thread checks the same pattern)
    skip_unless_available("uffd_continue")
    for seed in (0, 2**31):
        _, c = F.run_faults("uffd_continue", fault_params(seed=seed), 0, 1)
        assert c["bad_data"] == 0 and c["resolved"] == N


def test_mechanics_catch_a_wrong_count():
    c = {"faults": N, "messages": N, "resolved": N, "eexist": 0, "bad_data": 0, "bad_msgs": 0}
    assert F.expected_mechanics(fault_params(), c) is None
    assert "messages" in F.expected_mechanics(fault_params(), {**c, "messages": N + 1})
    assert "eexist" in F.expected_mechanics(fault_params(), {**c, "eexist": 1})
    assert "bad_data" in F.expected_mechanics(fault_params(), {**c, "bad_data": 1})


@pytest.mark.parametrize("field,value", [("variant", 7), ("handler", 2), ("nr_samples", 0),
                                         ("cpu", -1), ("handler_cpu", -1)])
def test_a_bad_config_is_einval(field, value):
    cfg = ffi.new("struct upcall_fault_config *", {
        "variant": 0, "handler": 0, "cpu": 0, "handler_cpu": 1, "seed": 1, "warmup": 0,
        "nr_samples": N})
    setattr(cfg, field, value)
    series = ffi.new("double[]", 4 * N)
    counts = ffi.new("struct upcall_fault_counts *")
    assert lib.upcall_fault_run(ffi.NULL, cfg, series, counts) == -errno.EINVAL
    assert lib.upcall_fault_probe(7) == -errno.EINVAL


def test_a_missing_feature_is_one_clear_error():
    # a feature bit no kernel has: UFFDIO_API refuses it (EINVAL), the run
    # says what the variant lacks instead of failing obscurely
    skip_unless_available("uffd_copy")
    with pytest.raises(ValueError, match="userfaultfd lacks UFFDIO_REGISTER_MODE_MISSING"):
        F.run_faults("uffd_copy", fault_params(), 0, 1, extra_features=1 << 62)
    assert "MINOR_SHMEM" in F.unavailable("uffd_continue", -errno.EOPNOTSUPP)
    assert "CONFIG_USERFAULTFD" in F.unavailable("uffd_copy", -errno.ENOSYS)
    assert "root" in F.unavailable("uffd_copy", -errno.EPERM)
    assert F.unavailable("uffd_copy", 0) is None


# ---- block_kind = fault ---------------------------------------------------------

FAULT_P = {"placement": "cross_cpu", "event": "block", "block_kind": "fault", "block_us": 20,
           "run_us": 0, "spin_us": 50, "samples": N, "warmup": WARMUP}


def test_each_major_fault_is_one_block_upcall(tmp_path):
    require_probes()
    before = os.sched_getaffinity(0)
    with upcall_program("block") as (_, maps):
        _, _, c = U.run_upcalls("bpf_ringbuf", FAULT_P, 0, 1, str(tmp_path), maps)
    assert c["resident_before"] == 0             # the pages really were cold
    assert c["upcalls"] == N
    # one block per fault (a fault that blocks twice would show as extra)
    assert c["blocks"] == N + c["extra_events"]
    # every touch of the window a major fault, also one whose read the disk
    # finished before the fault waited for it (no block: not_blocked; the
    # virtio disk of a VM can be that fast)
    assert c["majflt"] == N + c["not_blocked"]
    assert c["fault_ns"] > 0
    assert c["ring_records"] >= N + WARMUP and not c["ring_lost"] and not c["ring_bad"]
    assert U.expected_mechanics("bpf_ringbuf", FAULT_P, c) is None
    assert U.expected_mechanics("bpf_ringbuf", FAULT_P, {**c, "majflt": N - 1}) is not None
    assert os.sched_getaffinity(0) == before


def test_fault_blocks_without_bpf_take_one_major_fault_each(tmp_path):
    _, _, c = U.run_upcalls("futex_hint", {**FAULT_P, "placement": "same_cpu"}, 0, 0,
                            str(tmp_path))
    assert c["upcalls"] == N and c["majflt"] == N + c["not_blocked"]


def test_fault_is_refused_where_it_cannot_be_measured():
    assert "fault" in U.point_problem("uring_cqe_wait", {**FAULT_P, "event": "unblock"})
    hs = native.standalone_handshake()
    counts = ffi.new("struct upcall_counts *")
    lat = ffi.new("double[]", N)

    def run(**kw):
        cfg = {"mechanism": U.MECHANISMS["futex_hint"], "event": 0,
               "block_kind": lib.UPCALL_BLOCK_FAULT, "cpu": 0, "sched_cpu": 0, "dir": ffi.NULL,
               "warmup": 0, "nr_samples": N}
        cfg.update(kw)
        return lib.upcall_run(hs, ffi.new("struct upcall_config *", cfg), ffi.NULL, lat,
                              ffi.NULL, counts)

    assert run() == -errno.EINVAL                                   # no directory for the file
    assert run(mechanism=U.MECHANISMS["uring_cqe_wait"], event=1) == -errno.EINVAL
