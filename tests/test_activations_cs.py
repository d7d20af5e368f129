"""The activations family's critical sections under preemption
(lab/families/_activations_cs.py, native/activations_cs.c): mechanics,
never timings.  Every run loads the upcall program's preemption function
and starts pinned SCHED_FIFO competitors, so these need root and bcc (they
skip cleanly otherwise).  What a competitor causes is random in where it
lands, so a property that needs a preempted section retries a few runs and
asserts it was seen at least once; what must always hold is asserted on
every run."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lab.families import _activations_cs as CS
from lab.families import activations as A
from lab.native import NativeError

from .helpers import require_probes, requires_root

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
LOCK_VARIANTS = ("cs_oblivious", "cs_spin_yield", "cs_informed", "cs_pthreads")
TRIES = 6

pytestmark = requires_root


def params(**kw):
    p = {"vps": 2 if TWO_CPUS else 1, "concurrency": 4, "tasks": 600, "warmup_tasks": 20,
         "work_ns": 5000, "locks": 2, "cs_ns": 50000, "spin_limit": 50, "competitors": 2,
         "competitor_period_us": 500, "competitor_burst_us": 150, "seed": 3}
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def preempt_program():
    """The upcall program with its preemption function, once for the module
    (each run resets nothing it needs: the slots' counts are read as deltas)."""
    require_probes()
    from lab.upcall_program import upcall_program
    with upcall_program("preempt") as (_, maps):
        yield maps


def run(variant, maps, **kw):
    p = params(**kw)
    cpus = A.vp_cpus(p["vps"], 0, 1 if TWO_CPUS else 0)
    affinity = os.sched_getaffinity(0)
    task_ns, acq, c, window = CS.run_cs(variant, p, cpus, maps, log=True)
    # the competitors and moved activations die with the run; the caller's
    # thread is as it was
    assert os.sched_getaffinity(0) == affinity
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert window > 0 and task_ns.size == p["tasks"] and np.all(task_ns > 0)
    assert CS.expected_mechanics(variant, p, c) is None, CS.expected_mechanics(variant, p, c)
    return p, acq, c


def check_log(p, acq):
    """Each lock's sections in its own order: consecutive counts, none
    repeated, and none moved under its holder (seq_release = seq + 1)."""
    assert acq.size == p["tasks"]
    assert np.all(acq["seq_release"] == acq["seq"] + 1)
    for lock in np.unique(acq["lock"]):
        seqs = np.sort(acq["seq"][acq["lock"] == lock])
        assert np.all(np.diff(seqs) == 1), f"lock {lock}: sections overlapped or went missing"


@pytest.mark.parametrize("variant", CS.VARIANTS_C)
def test_every_task_once_and_exclusion(variant, preempt_program):
    p, acq, c = run(variant, preempt_program)
    assert c["acquisitions"] == p["tasks"] and c["exclusion_violations"] == 0
    if variant == "cs_rseq":
        assert acq.size == 0        # nothing is held, nothing to log
    else:
        check_log(p, acq)
    assert c["competitor_bursts"] > 0
    if variant != "cs_informed":
        assert c["recoveries"] == c["returns"] == c["continued_elsewhere"] == 0


@pytest.mark.parametrize("variant", LOCK_VARIANTS)
def test_preempted_holder_finishes_before_anyone_else_acquires(variant, preempt_program):
    seen = 0
    for attempt in range(TRIES):
        p, acq, c = run(variant, preempt_program, seed=3 + attempt)
        check_log(p, acq)
        preempted = acq[acq["preemptions"] > 0]
        # the slots' count and the log's agree
        assert int(preempted["preemptions"].sum()) == c["holder_preemptions"]
        assert preempted.size == c["preempted_sections"]
        for row in preempted:
            same = acq[acq["lock"] == row["lock"]]
            # nothing of that lock between the preempted holder's acquire
            # and its release: the next one starts from its count
            assert np.count_nonzero(same["seq"] == row["seq"]) == 1
            assert np.count_nonzero(same["seq"] == row["seq_release"]) <= 1
        seen += preempted.size
        if seen:
            break
    assert seen, f"{variant}: no section was preempted in {TRIES} runs with competitors"


@pytest.mark.skipif(not TWO_CPUS, reason="needs a second CPU")
def test_informed_continues_the_holder_on_the_waiters_cpu(preempt_program):
    moved = 0
    for attempt in range(TRIES):
        p, acq, c = run("cs_informed", preempt_program, seed=11 + attempt)
        # every loan ends with the holder sent home and the lender woken
        assert c["recoveries"] == c["returns"]
        assert c["recoveries"] <= c["saw_preempted"]
        # VPs are pinned: only a loan moves a section to another CPU
        elsewhere = acq[acq["release_cpu"] != acq["home_cpu"]]
        assert elsewhere.size == c["continued_elsewhere"] + np.count_nonzero(
            elsewhere["preemptions"] == 0)
        assert c["continued_elsewhere"] <= c["recoveries"]
        moved += c["continued_elsewhere"]
        if moved:
            break
    assert moved, f"no preempted holder was continued on another CPU in {TRIES} runs"


def test_rseq_restarts_counted(preempt_program):
    restarts = 0
    for attempt in range(TRIES):
        _, _, c = run("cs_rseq", preempt_program, seed=5 + attempt)
        restarts += c["rseq_restarts"]
        if restarts:
            break
    assert restarts, f"no rseq section was aborted in {TRIES} runs with competitors"


def test_no_competitors(preempt_program):
    p, acq, c = run("cs_informed", preempt_program, competitors=0, tasks=200)
    check_log(p, acq)
    assert c["competitor_bursts"] == 0


def test_bad_points(preempt_program):
    assert "burst" in CS.point_problem("cs_oblivious", params(competitor_burst_us=500))
    assert "concurrency" in CS.point_problem("cs_oblivious", params(concurrency=1, vps=2))
    with pytest.raises(NativeError, match="EINVAL"):
        CS.run_cs("cs_oblivious", params(locks=0), [0], preempt_program)
