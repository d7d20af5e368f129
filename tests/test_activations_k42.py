"""K42's soft and hard preemption (lab/families/_activations_k42.py): the
mechanics, proved by counting.

A prime number of requests gets exactly that many answers; soft with a
deadline far beyond the quantum releases the VP at a safe point every time
and the fibers' state (an LCG chain) equals the unpreempted result; hard:
every request is a kernel preemption of the activation by the requester
(the upcall program's preemption function says who took the CPU), or, on
a loaded machine, found the activation already off the CPU -- never
neither.  The caller's policy, affinity and signal handling are as before
on every way out.  The rseq time-slice variant is skipped with its reason
here.  Root, bcc and headers needed for the BPF parts (require_probes).
"""

import os
import subprocess
import sys

import pytest

from lab import native, suite
from lab.families import _activations_k42 as K
from lab.families import activations as A

from .helpers import require_probes, requires_root

pytestmark = requires_root

ffi, lib = native.load()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 23                  # prime: a count that matches is not a coincidence
SIGRTMIN_BIT = 1 << (34 - 1)


def params(**kw):
    p = {"concurrency": 4, "quantum_us": 10, "deadline_us": 500, "request": "flag",
         "hold_us": 20, "interval_us": 1000, "requester_priority": 10, "samples": N,
         "warmup": 3}
    p.update(kw)
    return p


def caught_signals():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigCgt:"))


def kernel_state():
    return os.sched_getaffinity(0), os.sched_getscheduler(0), caught_signals()


@pytest.fixture(scope="module")
def preempt_program():
    require_probes()
    from lab.upcall_program import upcall_program
    with upcall_program("preempt") as (_, maps):
        yield maps


@pytest.fixture
def competitor():
    """Something else spinning on the VP's CPU (SCHED_OTHER): a loaded
    machine, where the activation is sometimes off the CPU already."""
    proc = subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setaffinity(0, {0})\n"
                             "while True: pass"])
    yield proc
    proc.kill()
    proc.wait()


# ---- the description ------------------------------------------------------------

def test_variants_and_counters_come_from_the_header():
    assert set(K.K42_VARIANTS) == {v.name for v in K.VARIANTS}
    assert {v.name for v in K.VARIANTS} <= {v.name for v in A.FAMILY.variants}
    fields = set(native.struct_fields("struct k42_counts"))
    assert {"requests", "answers", "released_at_safe_point", "deadline_misses"} <= fields


def test_suites_cover_the_part():
    s = suite.load(os.path.join(REPO, "experiments", "activations.toml"))
    sel = [x for x in s.families["activations"]
           if {v.name for v in x.variants} & set(K.K42_VARIANTS)]
    assert {v.name for x in sel for v in x.variants} == set(K.K42_VARIANTS)
    assert set(sel[0].values["quantum_us"]) == {10, 100}
    q = suite.load(os.path.join(REPO, "experiments", "quick.toml"))
    assert sum(1 for x in q.families["activations"]
               if {v.name for v in x.variants} & set(K.K42_VARIANTS)) == 1


def test_lcg_skip_is_the_chain():
    x = 12345
    for _ in range(1000):
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
    assert lib.k42_lcg_skip(12345, 1000) == x
    assert lib.k42_lcg_skip(7, 0) == 7


# ---- error paths ------------------------------------------------------------------

def test_rseq_slice_is_skipped_with_its_reason():
    # 6.18 has no rseq time-slice extension: prctl(PR_RSEQ_SLICE_EXTENSION)
    # is an unknown option there
    if lib.k42_rseq_slice_probe() == 0:
        pytest.skip("this kernel has the rseq time-slice extension")
    problem = K.point_problem("k42_rseq_slice", params())
    assert "no rseq time-slice extension" in problem and "\n" not in problem
    assert A.point_problem("k42_rseq_slice", params()) == problem


def test_points_that_cannot_run_say_why():
    problem = K.point_problem("k42_soft", params(deadline_us=900, hold_us=100))
    assert "raise interval_us" in problem and "\n" not in problem
    assert K.point_problem("k42_hard", params(deadline_us=900, hold_us=100)) is None
    assert "lower concurrency" in K.point_problem("k42_hard", params(concurrency=1000))


def test_bad_configs_are_refused_and_leave_the_caller_as_found():
    before = kernel_state()
    hs = native.standalone_handshake()
    out = ffi.new("double[]", 4)
    counts = ffi.new("struct k42_counts *")
    base = {"variant": 0, "request": 0, "cpu": 0, "rt_priority": 10, "fibers": 2,
            "quantum_ns": 10000, "deadline_ns": 100000, "hold_ns": 10000,
            "interval_ns": 1000000, "warmup": 0, "samples": 4, "vps_fd": -1, "tids_fd": -1}
    for bad in ({"variant": 2}, {"variant": 9}, {"request": 2}, {"fibers": 0},
                {"fibers": 1000}, {"samples": 0}, {"quantum_ns": 0}, {"rt_priority": 0},
                {"hold_ns": 1000000}, {"deadline_ns": 995000}, {"vps_fd": 3}):
        cfg = ffi.new("struct k42_config *", {**base, **bad})
        assert lib.k42_run(hs, cfg, out, out, counts) == -22, bad
    assert kernel_state() == before


def test_a_failure_after_the_threads_started_leaves_the_caller_as_found(preempt_program):
    # the ring is no hash of tids: registering the activation fails after
    # both threads run, and the run must stop, join and restore
    before = kernel_state()
    maps = preempt_program
    p = params(request="signal")
    with pytest.raises(native.NativeError, match="activations/k42_soft"):
        K.run_k42("k42_soft", p, 0, type("M", (), {"vps_fd": maps.vps_fd,
                                                   "tids_fd": maps.ring_fd})())
    assert kernel_state() == before


# ---- the mechanics ------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["k42_soft", "k42_hard"])
def test_every_request_is_answered_exactly_once(variant):
    before = kernel_state()
    p = params()
    latency, safe, c = K.run_k42(variant, p, 0)
    assert c["requests"] == c["answers"] == N
    assert latency.size == N and (latency >= 0).all()
    assert K.expected_mechanics(variant, p, c) is None
    if variant == "k42_soft":
        assert c["released_at_safe_point"] + c["deadline_misses"] == N
        assert safe.size == c["released_at_safe_point"]
    else:
        assert c["released_at_safe_point"] == c["deadline_misses"] == safe.size == 0
    assert kernel_state() == before


@pytest.mark.parametrize("kind", ["flag", "signal"])
def test_soft_with_a_long_deadline_always_releases_at_a_safe_point(kind, competitor):
    # deadline 20 ms, quantum 10 us: even sharing the CPU with a spinner
    # (the kernel's slice is a few ms) the safe point comes first
    before = kernel_state()
    p = params(request=kind, deadline_us=20000, interval_us=25000)
    _, safe, c = K.run_k42("k42_soft", p, 0)
    assert c["released_at_safe_point"] == N and c["deadline_misses"] == 0
    assert safe.size == N and (safe >= 0).all()
    # the fibers' chains survived every release: each equals the chain run
    # without a preemption (k42_lcg_skip of its steps)
    assert c["state_mismatches"] == 0 and c["safe_points"] > N
    if kind == "signal":
        assert c["signals_handled"] >= N + p["warmup"]
    assert kernel_state() == before


def test_hard_each_request_is_a_kernel_preemption_by_the_requester(preempt_program):
    _, _, c = K.run_k42("k42_hard", params(), 0, preempt_program)
    # on an idle CPU the activation is always there to be preempted
    assert c["preempted_by_requester"] + c["vp_off_cpu_at_request"] == N
    assert c["unexplained_requests"] == 0 and c["state_mismatches"] == 0


def test_hard_under_load_counts_what_the_requester_took(preempt_program, competitor):
    # a spinner shares the CPU: at a request the activation was either
    # switched out by the kernel for the requester, or off the CPU already
    # (the spinner had it): never neither, and the kernel did preempt it
    _, _, c = K.run_k42("k42_hard", params(), 0, preempt_program)
    assert c["preempted_by_requester"] + c["vp_off_cpu_at_request"] == N
    assert c["unexplained_requests"] == 0 and c["preempted_by_requester"] >= 1
    assert c["state_mismatches"] == 0
