"""The upcall family's analysis (analysis/families/upcall.py) and report
section (analysis/sections/upcall.py) on synthetic results folders whose
medians are known in advance: the ratio to the futex handoff, the timer
table's pairing with cyclictest, the one line a run without a handoff gets,
the scheduler's wake-ups in the kernel view, and the PDF naming every
variant.  No root needed."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from analysis import load_run
from analysis.families import upcall as up
from analysis.sections import upcall as up_section
from lab import store
from tests.helpers import pdf_text
from tests.synthetic import HALTPOLL, SyntheticRun, exact_median, variant_params

SAME, CROSS = "same_cpu", "cross_cpu"
REPS = 3
# known medians [ns]: the same-CPU and cross-CPU futex handoff, each
# mechanism point, each timer point
HANDOFF = {SAME: 1500.0, CROSS: 42000.0}
LATENCY = {
    ("bpf_ringbuf", "block", SAME): 20000.0, ("bpf_ringbuf", "block", CROSS): 60000.0,
    ("bpf_ringbuf", "unblock", SAME): 30000.0, ("bpf_ringbuf", "unblock", CROSS): 75000.0,
    ("bpf_flag", "block", SAME): 600.0, ("bpf_flag", "block", CROSS): 200.0,
    ("bpf_flag_sleep", "block", SAME): 650.0, ("bpf_flag_sleep", "unblock", CROSS): 70000.0,
    ("futex_hint", "block", SAME): 1200.0, ("futex_hint", "block", CROSS): 45000.0,
    ("uring_cqe_poll", "unblock", SAME): 2000.0, ("uring_cqe_wait", "unblock", SAME): 3000.0,
    ("uring_cqe_eventfd", "unblock", SAME): 4500.0,
    ("bpf_ringbuf_adaptive", "block", SAME): 21000.0, ("bpf_flag_idle", "block", SAME): 700.0,
}
# the anatomy of some points: known stage medians [ns] (the rest 0), and
# the futex handoff of the same code (futex_hint, block_kind futex)
ANATOMY = {
    ("bpf_ringbuf", "block", SAME): {"raise": 300.0, "irq_work": 12000.0, "waking": 500.0,
                                     "switch_in": 2000.0, "user": 1500.0},
    ("bpf_ringbuf", "block", CROSS): {"raise": 300.0, "irq_work": 11000.0, "waking": 500.0,
                                      "wake_ipi": 900.0, "switch_in": 40000.0, "user": 3000.0},
}
OUR_HANDOFF = {"waking": 700.0, "switch_in": 1900.0, "user": 1100.0}
# preemption upcalls: latency and (the preempted worker itself) since_resume
PREEMPT = {("bpf_ringbuf", CROSS): 40000.0, ("bpf_flag", CROSS): 150.0,
           ("bpf_flag", SAME): 30000.0, ("rseq_abort", SAME): 32000.0}
SINCE_RESUME = {"bpf_flag": 900.0, "rseq_abort": 1200.0}
FOLDED = 2.0            # missed_events of a preemption run: a count, not a fault
SINCE = 25000.0         # since_source of the bpf unblock points
TIMER = {("timer_nanosleep", 0): 100000.0, ("cyclictest", 0): 80000.0,
         ("timer_nanosleep", 50): 30000.0, ("cyclictest", 50): 24000.0,
         ("timer_timerfd", 0): 90000.0, ("timer_signal", 0): 95000.0,
         ("timer_signal_busy", 0): 45000.0, ("timer_uring", 0): 65000.0,
         ("timer_uring_multishot", 0): 60000.0}


# userfaultfd page-fault upcalls (lab/families/_upcall_fault.py): their latency medians
FAULTS = {("uffd_copy", "sleep", "same_cpu"): 4000.0, ("uffd_continue", "poll", "cross_cpu"): 2000.0}


def _values(median: float, n: int = 100, seed: int = 0) -> np.ndarray:
    return exact_median(median, n, seed)


def _params(variant: str, **values) -> dict:
    from lab.families.upcall import FAMILY
    return {**variant_params(FAMILY, variant, **values), "samples": 100}


def upcall_results(tmp_path, handoff: dict | None = HANDOFF, latency: dict = LATENCY,
                   timers: dict = TIMER, probed: bool = False, name: str = "upcall-synth",
                   wakeups=None, anatomy: dict = ANATOMY, our_handoff: bool = False,
                   preempt: dict = PREEMPT, faults: dict | None = None) -> str:
    """A results folder of the upcall family (and baseline's futex_pingpong
    handoff, ``handoff``: {placement: median}, or None) with the known
    medians above, REPS repetitions each.  ``probed``: the runs had probes
    attached; ``wakeups(entry)`` then gives a run's (tid, waking_to_run_ns)
    records and its metrics name tids 100 (the scheduler) and 101."""
    from lab.families.baseline import FAMILY as BASELINE
    from lab.families.upcall import FAMILY as UPCALL
    synth = SyntheticRun(tmp_path / name, probed)

    def add(family, variant, params, series, rep, counters):
        entry = synth.add(family, variant, params, series, rep, counters, params["samples"])
        if probed and wakeups is not None:
            records = wakeups(entry)
            dtype = np.dtype([("waking_to_run_ns", "<u8"), ("wakeup_to_run_ns", "<u8"),
                              ("tid", "<u4"), ("waker_cpu", "<u2"), ("run_cpu", "<u2")])
            table = np.zeros(len(records), dtype=dtype)
            table["tid"] = [t for t, _ in records]
            table["waking_to_run_ns"] = [w for _, w in records]
            table["wakeup_to_run_ns"] = table["waking_to_run_ns"]
            entry["kernel_file"] = store.write_wakeups(synth.run_dir, entry["id"], table)
            synth.metric_rows.extend(
                [(entry["id"], "switches", "switches_voluntary", "tid=101 python", 1.0),
                 (entry["id"], "switches", "switches_voluntary", "tid=100 python", 1.0),
                 (entry["id"], "wakeups", "wakeups", "", float(len(records)))])

    mechanics = {name: 0.0 for name in up.MUST_BE_ZERO + up.MECHANICS}
    for rep in range(REPS):
        for placement, median in (handoff or {}).items():
            add("baseline", "futex_pingpong", {"samples": 100, "warmup": 10,
                                               "placement": placement},
                {"round_trip": _values(2 * median, seed=rep),
                 "handoff": _values(median, 200, seed=rep)}, rep, {})
        for (variant, event, placement), median in latency.items():
            params = _params(variant, event=event, placement=placement)
            series = {"latency": _values(median, seed=rep)}
            for st in up.STAGES if (variant, event, placement) in anatomy else ():
                series[f"stage_{st}"] = _values(anatomy[(variant, event, placement)].get(st, 0.0),
                                                seed=rep)
            if variant.startswith("bpf") and event == "unblock":
                series["since_source"] = _values(SINCE, seed=rep)
            sleeps = variant in up.SLEEPING and not (variant == "bpf_flag_sleep"
                                                     and event == "block")
            add("upcall", variant, params, series, rep,
                {**mechanics, "slept_fraction": 1.0 if sleeps else 0.0})
        for (variant, placement), median in preempt.items():
            params = _params(variant, event="preempt", placement=placement, anatomy=False)
            series = {"latency": _values(median, seed=rep)}
            if placement == SAME:
                series["since_resume"] = _values(SINCE_RESUME[variant], seed=rep)
            add("upcall", variant, params, series, rep,
                {"preemptions": 105.0, "by_competitor": 103.0, "others": 0.0,
                 "missed_events": FOLDED, "retries": 1.0, "wakes": 104.0})
        if our_handoff:
            params = _params("futex_hint", placement=SAME, block_kind="futex")
            series = {"latency": _values(sum(OUR_HANDOFF.values()), seed=rep)}
            series.update({f"stage_{st}": _values(OUR_HANDOFF.get(st, 0.0), seed=rep)
                           for st in up.STAGES})
            add("upcall", "futex_hint", params, series, rep,
                {**mechanics, "slept_fraction": 1.0})
        for (variant, priority), median in timers.items():
            params = _params(variant, interval_us=1000, rt_priority=priority, pm_qos=False)
            counters = {"overruns": 0.0} if variant != "cyclictest" else {"clamped": 0.0}
            if variant != "cyclictest":
                counters["timer_slack_ns"] = 50000.0 if priority == 0 else 0.0
            if variant == "timer_uring_multishot":
                counters["drift_per_period_ns"] = 900.0
            add("upcall", variant, params, {"lateness": _values(median, seed=rep)}, rep,
                counters)
        for (variant, handler, placement), median in (FAULTS if faults is None
                                                      else faults).items():
            params = _params(variant, handler=handler, placement=placement)
            add("upcall", variant, params,
                {"latency": _values(median, seed=rep), "resolve": _values(1000.0, seed=rep),
                 "resume": _values(500.0, seed=rep), "total": _values(median + 1500, seed=rep)},
                rep, {"faults": 100.0, "messages": 100.0, "resolved": 100.0, "clamped": 0.0})
    families = {"baseline": BASELINE, "upcall": UPCALL} if handoff else {"upcall": UPCALL}
    return synth.write(name, families, REPS, probes=("switches", "wakeups"),
                       environment=HALTPOLL)


@pytest.fixture
def synthetic(tmp_path):
    return load_run(upcall_results(tmp_path))


def test_ratio_to_the_same_cpu_handoff(synthetic):
    table = up.latency_table(synthetic)
    assert len(table) == len(LATENCY)
    for _, row in table.iterrows():
        known = LATENCY[(row["variant"], row["event"], row["placement"])]
        assert row["median"] == pytest.approx(known)
        assert row["vs_handoff"] == pytest.approx(known / HANDOFF[SAME])
        assert row["vs_handoff_low"] <= row["vs_handoff"] <= row["vs_handoff_high"]
    # same CPU first, then the mechanisms in the family's order
    placements = list(table["placement"])
    assert placements == sorted(placements, key=[SAME, CROSS].index)
    # futex_hint tells of a block, uring_cqe of an unblock
    assert set(table.loc[table["variant"] == "futex_hint", "event"]) == {"block"}
    assert set(table.loc[table["variant"].str.startswith("uring_cqe"), "event"]) == {"unblock"}
    refs = up.handoff_reference(synthetic)
    assert refs[SAME]["median"] == pytest.approx(HANDOFF[SAME])
    assert refs[CROSS]["median"] == pytest.approx(HANDOFF[CROSS])
    line = " ".join(up.handoff_lines(synthetic))
    assert "1.50 us on one CPU" in line and "across CPUs 42.0 us, 28x" in line


def test_findings_name_the_best_and_the_halted_vcpu(synthetic):
    text = " ".join(up.findings_lines(synthetic))
    # bpf_flag is the fastest on both sides; futex_hint the fastest that sleeps on one CPU
    assert "Best upcall on the worker's CPU (same_cpu): bpf_flag block nanosleep same_cpu, " \
           "median 0.600 us" in text
    assert f"{fmt(600 / 1500)} the same-CPU futex handoff's 1.50 us" in text
    assert "bpf_flag block nanosleep cross_cpu, median 0.200 us" in text
    assert "futex_hint block nanosleep same_cpu, 1.20 us" in text
    # bpf_ringbuf block/unblock and futex_hint sleep on both sides: 3 pairs, all
    # slower across CPUs by more than half the handoff's 40.5 us
    assert "(3 points measured both ways" in text and "3 of the 3 points" in text
    assert "haltpoll" in text and "no probes attached" in text.lower()


def fmt(x: float) -> str:
    from analysis._format import fmt_ratio
    return fmt_ratio(x)


def test_since_source_beside_the_uring_latencies(synthetic):
    table = up.since_source_table(synthetic)
    assert set(table["variant"]) == {"bpf_ringbuf", "bpf_flag_sleep"}
    assert (table["since_source"] == SINCE).all()
    same = table[table["placement"] == SAME].iloc[0]
    assert same["latency"] == LATENCY[("bpf_ringbuf", "unblock", SAME)]
    assert same["uring_cqe_wait"] == LATENCY[("uring_cqe_wait", "unblock", SAME)]
    cross = table[table["placement"] == CROSS]
    assert cross[list(up.URING_CQE)].isna().all(axis=None)     # no uring point across CPUs


def test_timer_table_pairs_nanosleep_with_cyclictest_of_the_same_point(synthetic):
    rows = up.timer_rows(synthetic)
    pairs = up.cyclictest_pairs(rows)
    assert [p.point for p in pairs] == [(1000, 0, False), (1000, 50, False)]
    for p in pairs:
        assert up.timer_point(p.ours) == up.timer_point(p.cyclictest) == p.point
        prio = p.point[1]
        assert p.ours["variant"] == "timer_nanosleep" and p.cyclictest["variant"] == "cyclictest"
        assert p.ratio == pytest.approx(TIMER[("timer_nanosleep", prio)]
                                        / TIMER[("cyclictest", prio)])
    pivot = up.timer_pivot(rows)
    assert pivot.loc[(1000, 50, False), ("cyclictest", "median")] == pytest.approx(24000)
    assert math.isnan(pivot.loc[(1000, 50, False), ("timer_timerfd", "median")])
    # the slack of SCHED_OTHER threads only; the multishot drift where it ran
    assert pivot.loc[(1000, 0, False), ("timer_slack_ns", "")] == 50000
    assert math.isnan(pivot.loc[(1000, 50, False), ("timer_slack_ns", "")])
    assert pivot.loc[(1000, 0, False), ("drift_per_period_ns", "")] == 900
    lines = up.timer_lines(rows)
    assert "rt_priority=0 pm_qos=False: our timer_nanosleep median 100 us vs cyclictest " \
           "80.0 us (1.25x" in lines[0]


def test_a_run_without_the_handoff_says_so_in_one_line(tmp_path):
    for name, handoff in (("none", None), ("cross-only", {CROSS: HANDOFF[CROSS]})):
        run = load_run(upcall_results(tmp_path, handoff=handoff, name=name))
        table = up.latency_table(run)
        assert table["vs_handoff"].isna().all()
        assert up.handoff_lines(run) == [up.NO_HANDOFF_LINE]
        assert up.findings_lines(run).count(up.NO_HANDOFF_LINE) == 1
        assert 'add [baseline] variants=["futex_pingpong"]' in up.NO_HANDOFF_LINE
        blocks = up_section.latency_blocks(run)
        tables = [b for b in blocks if hasattr(b, "header")]
        assert tables and all("/ handoff" not in t.header for t in tables)


def test_mechanics_counters(tmp_path):
    run = load_run(upcall_results(tmp_path))
    zero = up.must_be_zero(run)
    assert set(zero) == set(up.MUST_BE_ZERO)
    assert all(total == 0 and runs == REPS * len(LATENCY) and bad == 0
               for total, runs, bad in zero.values())
    table = up.mechanics_table(run)
    # nothing went wrong: only the spin-then-sleep scheduler's rows, with its slept fraction
    assert set(table["variant"]) == {"bpf_flag_sleep"}
    assert dict(zip(table["event"], table["slept_fraction"])) == {"block": 0.0, "unblock": 1.0}


def test_scheduler_wakeups_from_the_kernel_view(tmp_path):
    """The scheduler is the lowest thread id the probes saw: its records
    give the wake-to-run, the others' do not count."""
    def wakeups(entry):
        if entry["family"] != "upcall" or entry["variant"] in up.TIMERS:
            return []
        n = entry["params"]["samples"]
        if entry["variant"] in ("bpf_flag", "bpf_flag_sleep") and \
                entry["params"]["event"] == "block":
            sched = [(100, 5000)] * 2          # the scheduler polled: 2 sleeps in 100 upcalls
        else:
            sched = [(100, 1000 + i % 3) for i in range(n)]     # median 1001 ns
        return sched + [(101, 9999)] * n       # the worker's own wake-ups
    run = load_run(upcall_results(tmp_path, probed=True, wakeups=wakeups))
    assert set(up.scheduler_tids(run, run.runs["run_id"]).values()) == {100}
    check = up.wake_check(run).set_index(["variant", "event", "placement"])
    ring = check.loc[("bpf_ringbuf", "block", SAME)]
    assert ring["wake_of"] == up.SCHEDULER_WAKEUPS
    assert ring["wake_median"] == 1001 and ring["wakeups_per_upcall"] == 1.0
    assert ring["before_wake"] == pytest.approx(LATENCY[("bpf_ringbuf", "block", SAME)] - 1001)
    polled = check.loc[("bpf_flag_sleep", "block", SAME)]
    assert polled["wakeups_per_upcall"] == pytest.approx(0.02)
    assert math.isnan(polled["before_wake"])     # its rare wake-ups are not the upcalls'
    table = up.latency_table(run).set_index(["variant", "event", "placement"])
    assert not table.loc[("bpf_flag_sleep", "block", SAME), "sleeps"]
    assert table.loc[("futex_hint", "block", CROSS), "sleeps"]
    text = " ".join(up.crosscheck_lines(up.wake_check(run)))
    assert "fewer than half of the upcalls at bpf_flag_sleep block nanosleep same_cpu" in text


def test_report_names_every_upcall_variant(tmp_path):
    from analysis.report import write_report
    from lab.families.upcall import FAMILY
    run_dir = upcall_results(tmp_path)
    words = pdf_text(write_report(run_dir, str(tmp_path / "upcall.pdf")))
    section = words[words.index("Upcall latency by mechanism"):]
    for variant in FAMILY.variants:
        assert variant.name in section, variant.name
    for heading in ("What this run shows", "Kernel cross-check", "since_source: unblock upcalls",
                    "Timer upcalls: lateness beside cyclictest",
                    "Counters that prove the mechanics",
                    "What the scheduler activations paper measured",
                    "upcall: upcall latency, block_kind=nanosleep", "upcall: timer lateness",
                    "Preemption upcalls: the runtime learns", "upcall: preemption upcalls",
                    "Page faults: userfaultfd against the block upcall and a plain major fault",
                    "upcall: page-fault upcalls"):
        assert heading in words, heading
    # the paper's figure quoted, our ratio computed: 2.4 ms / 0.6 us
    assert "2.4 ms" in words and "441 us" in words
    assert re.search(r"ours is 4,000 times faster than the 1992 upcall", words)
    assert "context, not a comparison of designs" in words


# ---- preemption upcalls ----------------------------------------------------------------

def test_preemption_table_beside_the_block_upcall(synthetic):
    data = up.preemption_table(synthetic).set_index(["mechanism", "placement"])
    assert sorted(data.index) == sorted(PREEMPT)
    for key, median in PREEMPT.items():
        assert data.loc[key, "median"] == pytest.approx(median)
    # across CPUs: the preemption median over the block upcall's
    assert data.loc[("bpf_ringbuf", CROSS), "vs_block"] == pytest.approx(40000 / 60000)
    assert data.loc[("bpf_flag", CROSS), "vs_block"] == pytest.approx(150 / 200)
    # the preempted worker itself: from when it got its CPU back
    assert data.loc[("bpf_flag", SAME), "since_resume"] == pytest.approx(900)
    assert data.loc[("bpf_flag", SAME), "vs_block"] == pytest.approx(900 / 600)
    # rseq aborts tell of no block: nothing to compare with
    assert math.isnan(data.loc[("rseq_abort", SAME), "vs_block"])
    assert data.loc[("rseq_abort", SAME), "block_kind"] == ""
    assert data.loc[("bpf_flag", SAME), "missed_events"] == FOLDED


def test_preemption_runs_stay_out_of_the_block_tables(synthetic):
    assert "preempt" not in set(up.latency_table(synthetic)["event"])
    assert "preempt" not in set(up.scheduler_wakeups(synthetic)["event"])
    assert "rseq_abort" not in set(up.latency_table(synthetic)["variant"])
    # folded preemptions are counted, not flagged as a fault
    assert up.must_be_zero(synthetic)["missed_events"][2] == 0
    lines = " ".join(up.preemption_lines(synthetic))
    assert "fastest by bpf_flag: 0.150 us" in lines
    assert "learns 0.900 us after it got its CPU back, by bpf_flag" in lines


# ---- the anatomy ------------------------------------------------------------------------

def test_anatomy_names_the_dominant_stage_from_the_data(tmp_path):
    run = load_run(upcall_results(tmp_path, our_handoff=True))
    data = up.anatomy_table(run)
    same = data[(data["variant"] == "bpf_ringbuf") & (data["placement"] == SAME)].iloc[0]
    cross = data[(data["variant"] == "bpf_ringbuf") & (data["placement"] == CROSS)].iloc[0]
    assert same["irq_work"] == ANATOMY[("bpf_ringbuf", "block", SAME)]["irq_work"]
    assert (same["dominant"], cross["dominant"]) == ("irq_work", "switch_in")
    lines = up.anatomy_lines(run)
    assert any("Dominant stage, same_cpu" in x and "irq_work" in x for x in lines)
    assert any("Dominant stage, cross_cpu" in x and "switch_in" in x for x in lines)
    # the best sleeping kernel-initiated upcall against the same code's
    # handoff: the stage in the way is the one with the largest excess
    best = [x for x in lines if x.startswith("Best sleeping kernel-initiated")]
    assert len(best) == 1 and "what stands in the way is irq_work" in best[0]
    # the sentence follows the numbers, not a script: swap what dominates
    flipped = {k: dict(v) for k, v in ANATOMY.items()}
    flipped[("bpf_ringbuf", "block", SAME)].update(irq_work=100.0, switch_in=30000.0)
    run2 = load_run(upcall_results(tmp_path, anatomy=flipped, name="flipped", our_handoff=True))
    assert up.anatomy_table(run2).query("variant == 'bpf_ringbuf' and placement == @SAME"
                                        )["dominant"].iloc[0] == "switch_in"
    assert any("what stands in the way is switch_in" in x for x in up.anatomy_lines(run2))


def test_a_run_without_anatomy_has_no_anatomy_section(tmp_path):
    run = load_run(upcall_results(tmp_path, anatomy={}))
    assert up.anatomy_table(run).empty and up.anatomy_lines(run) == []
