"""The activations family with page faults as the blocking call
(block_kind fault and uffd), proved by counting.

N forced blocks (p = 1, one step per task, N prime) of one registered
fiber: with block_kind=fault every block is a major fault of the faulting
thread (its ru_majflt); each one that sleeps (its read still in flight) is
one block upcall, and each upcall either hands the VP to a spare or finds
the fault already over (the read was shorter than the handoff:
``returned_first``); with block_kind=uffd the runtime's
handler reads N messages and resolves N pages, and every block is handed
off (the handler's 10 ms "disk" is far longer than any handoff).  none
and pthreads complete every task exactly once with either kind, each
blocking call one fault.  Variants that cannot make a fault their call are
refused with one line.  Root (userfaultfd, BPF); skips cleanly otherwise.
"""

import os

import pytest

from lab import native
from lab.families import activations as A

from .helpers import require_probes, requires_root

pytestmark = requires_root

ffi, lib = native.load()
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
N = 13                  # prime: a count that matches is not a coincidence
TASKS = 61


def params(**kw):
    p = {"vps": 1, "spares": 2, "concurrency": 1, "tasks": N, "warmup_tasks": 0, "steps": 1,
         "work_ns": 2000, "p": 1.0, "block_us": 10_000, "monitor_us": 20, "seed": 7,
         "block_kind": "fault"}
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def block_program():
    require_probes()
    from lab.upcall_program import upcall_program
    with upcall_program("block") as (_, maps):
        yield maps


@pytest.fixture
def scratch(tmp_path_factory):
    # on the disk: the runner's scratch dirs are under the results folder,
    # never tmpfs (a tmpfs page cannot be evicted)
    return str(tmp_path_factory.mktemp("fault", numbered=True))


def run(variant, scratch, maps=None, **kw):
    p = params(**kw)
    cpus = A.vp_cpus(p["vps"], 0, 1 if TWO_CPUS else 0)
    task_ns, handoff_ns, c, _ = A.run_tasks(variant, p, cpus, maps, None, scratch)
    assert task_ns.size == p["tasks"] and (task_ns > 0).all()
    assert A.expected_mechanics(variant, p, c) is None
    return p, c, handoff_ns


# ---- error paths -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fault", "uffd"])
def test_variants_without_a_fault_call_are_refused(kind):
    for variant, why in (("syncfirst", "RWF_NOWAIT"), ("uring", "io_uring")):
        problem = A.point_problem(variant, params(block_kind=kind))
        assert why in problem and kind in problem and "\n" not in problem
        assert A.point_problem(variant, params(block_kind="timerfd")) is None
    for variant in ("none", "futex_hint", "monitor", "upcall", "pthreads"):
        assert A.point_problem(variant, params(block_kind=kind)) is None
    # a page per blocking call: the mapping has a bound
    problem = A.point_problem("none", params(block_kind=kind, tasks=100_000, steps=20))
    assert "lower tasks" in problem and "\n" not in problem


def test_bad_block_configs_are_refused_by_the_runtime():
    cpus = ffi.new("int[]", [0])
    out = native.double_ptr(ffi, __import__("numpy").zeros(10))
    counts = ffi.new("struct activations_counts *")
    base = {"variant": 0, "nr_vps": 1, "vp_cpus": cpus, "spares": 1, "concurrency": 1,
            "steps": 1, "warmup_tasks": 0, "tasks": 10, "work_ns": 0, "p": 0.5,
            "block_ns": 1000, "monitor_ns": 1000, "seed": 1, "ring_fd": -1, "vps_fd": -1,
            "tids_fd": -1}
    for bad in ({"block_kind": 3}, {"block_kind": -1},
                {"block_kind": 1},                       # fault without a directory
                {"block_kind": 2, "variant": 2},         # syncfirst
                {"block_kind": 2, "variant": 5}):        # uring
        cfg = ffi.new("struct activations_config *", {**base, **bad})
        assert lib.activations_run(native.standalone_handshake(), cfg, out, out, 10,
                                   counts) == -22, bad
    with pytest.raises(ValueError, match="scratch directory"):
        A.run_tasks("none", params(), [0])


# ---- the block upcall on a fault -----------------------------------------------

def test_each_major_fault_is_one_block_upcall(block_program, scratch):
    _, c, handoff = run("upcall", scratch, block_program)
    assert c["completions"] == N and c["duplicate_completions"] == 0
    # every block was a major fault of the thread that made it ...
    assert c["majflt"] == N and c["faults_taken"] == N and c["blocking_calls"] == N
    # ... and, if its read was still in flight when the thread waited on
    # the folio (D state), a sleep the upcall program saw; a read already
    # over (virtio served from the host's cache, the vCPU preempted on the
    # host) leaves nothing to wait for: no sleep, no upcall (seen: 1 of 13)
    assert 0 <= c["block_events"] <= N
    # each upcall: the spare took the VP, or the read was over first and
    # the VP stayed with the activation that faulted -- never both
    assert c["handoffs"] + c["returned_first"] == c["block_events"]
    assert c["handoffs"] == c["lost_vps"] == handoff.size
    assert c["ring_lost"] == 0 and c["ring_bad"] == 0
    assert c["max_running_activations"] == 1


def test_each_uffd_fault_is_one_message_one_copy_one_handoff(block_program, scratch):
    _, c, handoff = run("upcall", scratch, block_program, block_kind="uffd")
    assert c["completions"] == N and c["duplicate_completions"] == 0
    assert c["uffd_messages"] == N and c["uffd_resolved"] == N and c["faults_taken"] == N
    # asleep in handle_userfault: a block the program sees, 10 ms long
    assert c["block_events"] == N
    assert c["handoffs"] == N and c["lost_vps"] == N and c["returned_first"] == 0
    assert handoff.size == N
    assert c["ring_lost"] == 0 and c["ring_bad"] == 0


# ---- every task once, with either kind ------------------------------------------

@pytest.mark.parametrize("variant", ["none", "pthreads"])
@pytest.mark.parametrize("kind", ["fault", "uffd"])
def test_every_task_completes_exactly_once(variant, kind, scratch):
    prm, c, _ = run(variant, scratch, vps=2 if TWO_CPUS else 1, concurrency=4, tasks=TASKS,
                    warmup_tasks=5, steps=4, p=0.5, block_us=200, block_kind=kind)
    assert c["completions"] == TASKS and c["duplicate_completions"] == 0
    assert c["calls"] == TASKS * prm["steps"]
    assert 0 < c["blocking_calls"] < c["calls"]
    assert c["faults_taken"] <= TASKS
    if kind == "fault":
        # a fresh evicted page per blocking call, no readahead: one
        # major fault each
        assert c["majflt"] == c["blocking_calls"]
    else:
        assert c["uffd_messages"] == c["uffd_resolved"] == c["blocking_calls"]
    if variant == "none":
        assert c["handoffs"] == 0 and c["max_running_activations"] <= prm["vps"]
