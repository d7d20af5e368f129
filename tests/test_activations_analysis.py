"""The activations family's analysis (analysis/families/activations.py)
and report section on synthetic results folders whose numbers are known in
advance: Table IV paired with the paper's column by column and the ratios
between them, the throughput table against p with its ratios to none and
pthreads, the handoff comparison, the mechanics, the PDF naming every
variant, and the one line a run without Table IV or without p = 0.1 gets.
No root needed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import load_run
from analysis.families import activations as act
from lab.families import activations as fam
from tests.helpers import pdf_text
from tests.synthetic import SyntheticRun, exact_median, variant_params

REPS = 3
STEPS = 20
CONCURRENCY = 8
TASKS = 40                  # task_latency samples per run
PS = (0.0, 0.1, 0.5)
# known median throughput [steps/s] per (variant, p); the runs are 0.95, 1 and 1.05 of it
THROUGHPUT = {
    "none": (300e3, 130e3, 36e3), "futex_hint": (300e3, 190e3, 88e3),
    "syncfirst": (320e3, 185e3, 89e3), "monitor": (260e3, 125e3, 37e3),
    "upcall": (340e3, 145e3, 48e3), "uring": (300e3, 195e3, 100e3),
    "pthreads": (330e3, 200e3, 90e3),
}
# known handoff medians [ns] per (variant, p); None: no handoff at that p
HANDOFF = {
    "futex_hint": (3000.0, 2000.0, 2200.0), "syncfirst": (None, 2500.0, 2400.0),
    "monitor": (80000.0, 84000.0, 81000.0), "upcall": (None, 30000.0, 32000.0),
}
# known Table IV medians [ns]
T4 = {("t4_fibers", "null_fork"): 200.0, ("t4_activations", "null_fork"): 220.0,
      ("t4_pthreads", "null_fork"): 14000.0, ("t4_processes", "null_fork"): 700000.0,
      ("t4_fibers", "signal_wait"): 80.0, ("t4_activations", "signal_wait"): 80.0,
      ("t4_pthreads", "signal_wait"): 1500.0, ("t4_processes", "signal_wait"): 2000.0}
RINGBUF_NS = 20000.0        # the upcall family's bpf_ringbuf block upcall, same CPU
SPREAD = (0.95, 1.0, 1.05)


def _values(median: float, n: int = TASKS, seed: int = 0) -> np.ndarray:
    return exact_median(median, n, seed)


def _counters(variant: str, p: float, thr: float) -> dict:
    blocking = round(TASKS * STEPS * p)
    handing = variant in act.HANDOFF_VARIANTS
    c = {"completions": float(TASKS), "duplicate_completions": 0.0, "calls": TASKS * STEPS,
         "blocking_calls": blocking, "handoffs": blocking if handing else 0,
         "stale_upcalls": 3.0 if variant == "upcall" and p else 0.0,
         "ran_while_blocked": 0.0 if variant in ("none", "pthreads") or not p else 10.0 + blocking,
         "ran_while_kernel_blocked": 10.0 + blocking if variant == "upcall" and p else 0.0,
         "throughput_steps_per_s": thr, "throughput_tasks_per_s": thr / STEPS,
         "cpu_busy_fraction": 0.9, "handoffs_per_task": (blocking if handing else 0) / TASKS,
         "blocking_fraction": blocking / (TASKS * STEPS)}
    if variant != "pthreads":
        c["max_running_activations"] = 2.0
        c["vp_idle_fraction"] = 0.5 * p
    if variant == "syncfirst":
        c["eagain"] = blocking
        c["eagain_fraction"] = blocking / (TASKS * STEPS)
    return c


def activations_results(tmp_path, ps=PS, table_iv: dict | None = T4, ringbuf: bool = False,
                        name: str = "activations-synth") -> str:
    """A results folder of the activations family with the known numbers
    above, REPS repetitions of each point; ``ps``: the p values the task
    variants ran at; ``table_iv``: the t4 medians, or None; ``ringbuf``:
    also the upcall family's bpf_ringbuf block upcall on one CPU."""
    from lab.families.activations import FAMILY
    from lab.families.upcall import FAMILY as UPCALL
    synth = SyntheticRun(tmp_path / name)
    add = synth.add

    for rep in range(REPS):
        for variant, values in THROUGHPUT.items():
            for p in ps:
                thr = values[PS.index(p)] * SPREAD[rep]
                params = variant_params(FAMILY, variant, p=p, tasks=TASKS, steps=STEPS,
                                 concurrency=CONCURRENCY)
                # Little's law holds: the mean latency is concurrency / tasks per second
                series = {"task_latency": _values(CONCURRENCY / (thr / STEPS) * 1e9, seed=rep)}
                known = HANDOFF.get(variant, ())
                if known and known[PS.index(p)] is not None:
                    series["handoff"] = _values(known[PS.index(p)], 60, seed=rep)
                add("activations", variant, params, series, rep, _counters(variant, p, thr),
                    TASKS, TASKS * STEPS / thr * 1e9)
        for (variant, op), median in (table_iv or {}).items():
            params = variant_params(FAMILY, variant, op=op, samples=TASKS)
            add("activations", variant, params, {"ns_per_op": _values(median, seed=rep)}, rep,
                {"ops_averaged": 50.0 if variant in ("t4_fibers", "t4_activations") else 1.0},
                TASKS, 10**7)
        if ringbuf:
            params = variant_params(UPCALL, "bpf_ringbuf", event="block", placement="same_cpu")
            params["samples"] = TASKS
            add("upcall", "bpf_ringbuf", params, {"latency": _values(RINGBUF_NS, seed=rep)},
                rep, {}, TASKS, 10**7)
    families = {"activations": FAMILY, "upcall": UPCALL} if ringbuf else {"activations": FAMILY}
    return synth.write(name, families, REPS)


@pytest.fixture
def synthetic(tmp_path):
    return load_run(activations_results(tmp_path))


def test_table_iv_pairs_each_column_with_the_paper(synthetic):
    data = act.table_iv_data(synthetic)
    assert len(data) == 8
    assert list(data["op"]) == ["null_fork"] * 4 + ["signal_wait"] * 4
    for _, r in data.iterrows():
        assert r["column"] == act.TABLE_IV_COLUMNS[r["variant"]]
        assert r["paper_us"] == act.PAPER_TABLE_IV_US[r["op"]][r["column"]]
        ours = T4[(r["variant"], r["op"])] / 1000
        assert r["ours_us"] == pytest.approx(ours)
        assert r["ours_ci_low_us"] <= r["ours_us"] <= r["ours_ci_high_us"]
        first = act.PAPER_TABLE_IV_US[r["op"]][act.PAPER_COLUMNS[0]]
        assert r["paper_ratio"] == pytest.approx(r["paper_us"] / first)
        assert r["ours_ratio"] == pytest.approx(ours / (T4[("t4_fibers", r["op"])] / 1000))
        assert r["speedup"] == pytest.approx(r["paper_us"] / ours)
        assert r["speedup_low"] <= r["speedup"] <= r["speedup_high"]
        if r["variant"] != "t4_fibers":
            assert r["ours_ratio_low"] <= r["ours_ratio"] <= r["ours_ratio_high"]
    # the plain rows, read from the folder itself, agree
    ours = {(r["op"], r["variant"]): r["ours_us"] for r in act.table_iv_from_run(synthetic.path)}
    assert all(ours[(r["op"], r["variant"])] == pytest.approx(r["ours_us"])
               for _, r in data.iterrows())
    text = " ".join(act.table_iv_lines(data))
    # 14 us = 70x the fibers' 0.2 us (1992: 948 / 34 = 27.9x), 948 / 14 = 67.7x faster
    assert "t4_pthreads 14.0 us (70x fibers; 1992: 27.9x), 67.7x faster than 1992's 948 us" \
        in text
    assert "t4_processes 700 us (3,500x fibers; 1992: 332x), 16.1x faster" in text
    assert "Signal-Wait today: t4_fibers 0.0800 us, 462x faster than 1992's 37 us" in text


def test_table_iv_counts_the_runs_every_other_number_counts(tmp_path):
    """A cell measured with and without probes takes the runs without; a
    cell measured only with probes takes those (run_sources' rule), in the
    plain rows as in the report's table."""
    from lab.families.activations import FAMILY
    synth = SyntheticRun(tmp_path / "t4-mixed", probed=True)
    for rep in range(REPS):
        for variant, op, median, unprobed in (("t4_fibers", "null_fork", 260.0, False),
                                              ("t4_fibers", "null_fork", 200.0, True),
                                              ("t4_processes", "null_fork", 700000.0, False)):
            params = variant_params(FAMILY, variant, op=op, samples=TASKS)
            entry = synth.add("activations", variant, params,
                              {"ns_per_op": _values(median, seed=rep)}, rep, {}, TASKS, 10**7)
            entry["kernel_view"] = not unprobed
    run = load_run(synth.write("t4-mixed", {"activations": FAMILY}, REPS))
    data = act.table_iv_data(run).set_index(["op", "variant"])
    rows = {(r["op"], r["variant"]): r for r in act.table_iv_from_run(run.path)}
    assert rows[("null_fork", "t4_fibers")]["ours_us"] == pytest.approx(0.2)
    assert rows[("null_fork", "t4_processes")]["ours_us"] == pytest.approx(700.0)
    assert rows[("null_fork", "t4_processes")]["ours_ratio"] == pytest.approx(3500.0)
    for key, r in rows.items():
        ours = data.loc[key, "ours_us"]
        assert (r["ours_us"] is None and math.isnan(ours)) or r["ours_us"] == pytest.approx(ours)


def test_paper_table_is_quoted_and_kept_apart():
    assert act.PAPER_TABLE_IV_US["null_fork"]["Ultrix processes"] == 11300
    assert act.PAPER_TABLE_IV_US["signal_wait"]["FastThreads on Scheduler Activations"] == 42
    rows = act.table_iv({("t4_fibers", "null_fork"): 200.0,
                         ("t4_processes", "null_fork"): 400000.0})
    fork = {r["variant"]: r for r in rows if r["op"] == "null_fork"}
    assert fork["t4_processes"]["ours_ratio"] == pytest.approx(2000.0)
    assert fork["t4_processes"]["paper_ratio"] == pytest.approx(11300 / 34)
    assert fork["t4_pthreads"]["ours_us"] is None           # not measured: not invented
    assert "Anderson" in act.format_table_iv(rows)


def test_throughput_table_and_ratios(synthetic):
    data = act.task_data(synthetic)
    assert len(data) == len(THROUGHPUT) * len(PS)
    assert list(dict.fromkeys(data["variant"])) == list(act.TASK_VARIANTS)
    for _, r in data.iterrows():
        i = PS.index(r["p"])
        known = THROUGHPUT[r["variant"]][i]
        assert r["throughput"] == pytest.approx(known)
        assert r["throughput_min"] == pytest.approx(0.95 * known)
        assert r["throughput_max"] == pytest.approx(1.05 * known)
        assert r["vs_none"] == pytest.approx(known / THROUGHPUT["none"][i])
        assert r["vs_pthreads"] == pytest.approx(known / THROUGHPUT["pthreads"][i])
        assert r["vs_none_low"] <= r["vs_none"] <= r["vs_none_high"]
        assert r["handoffs_per_task"] == pytest.approx(
            round(TASKS * STEPS * r["p"]) / TASKS if r["variant"] in act.HANDOFF_VARIANTS else 0)
        if r["variant"] == "pthreads":
            assert math.isnan(r["vp_idle_fraction"])
        else:
            assert r["vp_idle_fraction"] == pytest.approx(0.5 * r["p"])
        # Little's law, built into the synthetic samples
        assert r["latency_mean"] == pytest.approx(r["little_ns"], rel=0.01)
        assert math.isnan(r["switches_per_task"])           # no kernel view
    pivot = act.throughput_pivot(data)
    assert list(pivot.index) == list(act.TASK_VARIANTS) and list(pivot.columns) == list(PS)
    assert pivot.loc["uring", 0.5] == pytest.approx(100e3)
    text = " ".join(act.throughput_lines(data, act.group_axes(synthetic)))
    assert "At p = 0.1, the most steps per second: pthreads, 200,000 steps/s" in text
    assert "futex_hint 1.46x / 0.95x" in text and "none 0.65x pthreads" in text
    assert "The runner-up, uring, has 0.975x of pthreads'" in text
    assert "not told apart" in text
    assert "within 10% of it at 21 of 21 points" in " ".join(act.little_lines(data))


def test_handoff_upcall_against_futex_hint(synthetic):
    data = act.handoff_data(synthetic)
    known = {(v, p): m for v, ms in HANDOFF.items() for p, m in zip(PS, ms) if m is not None}
    assert {(r["variant"], r["p"]): r["median"] for _, r in data.iterrows()} == \
        pytest.approx(known)
    pairs = act.handoff_pairs(data, act.group_axes(synthetic))
    assert [p["p"] for p in pairs] == [0.1, 0.5]
    assert pairs[0]["ratio"] == pytest.approx(15.0) and pairs[0]["low"] > 1
    text = " ".join(act.handoff_lines(synthetic, data, act.group_axes(synthetic)))
    assert "Handoff at p = 0.1: upcall 30.0 us" in text and "futex_hint 2.00 us" in text
    assert "15x (95% interval" in text and "28.0 us more" in text
    assert "upcall's handoff is slower than futex_hint's (at the other p: 14.5x at p=0.5)" in text
    # no upcall family in this run: one line says what to add
    assert text.count(act.NO_RINGBUF_LINE) == 1
    shares = act.handoff_shares(synthetic, data[data["p"] == 0.1])
    by = shares.set_index("variant")
    assert by.loc["futex_hint", "below"] == 1.0 and by.loc["monitor", "above"] == 1.0
    assert by.loc["upcall", "between"] == 1.0


def test_ringbuf_pointer_when_the_upcall_family_ran(tmp_path):
    run = load_run(activations_results(tmp_path, ringbuf=True))
    ring = act.ringbuf_reference(run)
    assert len(ring) == 1 and ring["median"].iloc[0] == pytest.approx(RINGBUF_NS)
    text = " ".join(act.findings_lines(run))
    assert act.NO_RINGBUF_LINE not in text
    assert "bpf_ringbuf's block upcall on one CPU" in text and "median 20.0 us" in text
    assert "upcall's handoff (30.0 us at p = 0.1) is 1.5x that" in text


def test_mechanics(synthetic):
    data = act.mechanics_data(synthetic)
    assert len(data) == len(THROUGHPUT) * len(PS)
    assert (data["runs"] == REPS).all() and (data["completions_ok"] == REPS).all()
    assert (data["duplicates"] == 0).all()
    assert data.loc[data["variant"] == "pthreads", "max_running"].isna().all()
    assert (data.loc[data["variant"] != "pthreads", "max_running"] == 2).all()
    up = data[(data["variant"] == "upcall") & (data["p"] == 0.1)].iloc[0]
    assert up["ran_while_kernel_blocked"] == up["ran_while_blocked"] == 10 + 80
    text = " ".join(act.mechanics_lines(data, synthetic))
    assert f"Every one of the {REPS * len(data)} ok runs" in text
    assert "none: ran_while_blocked 0 at every point" in text
    assert "ran_while_blocked > 0 for futex_hint, syncfirst, monitor, upcall, uring at every " \
           "p > 0" in text
    assert "3 at p=0.1" in text                              # stale upcalls
    assert "EAGAIN on 0 of the calls at p=0, 0.100 of the calls at p=0.1 (drawn to block: 0.100)" \
        in text


def test_report_names_every_activations_variant(tmp_path):
    from analysis.report import write_report
    run_dir = activations_results(tmp_path)
    words = pdf_text(write_report(run_dir, str(tmp_path / "activations.pdf")))
    section = words[words.index("What this run shows"):]
    parts = {v.name for part in fam.PARTS for v in part.VARIANTS}     # not in this run
    for variant in fam.FAMILY.variants:
        if variant.name not in parts:
            assert variant.name in section, variant.name
    for heading in ("Table IV: thread operations in 1992 and today",
                    "Throughput against the blocking probability p", "Handoff latency",
                    "Task latency", "Mechanics: did the runtime run as built?",
                    "activations: Table IV, 1992 and today",
                    "activations: throughput against the blocking probability p",
                    "activations: handoff latency"):
        assert heading in words, heading
    assert "Ultrix processes (t4_processes) 11300 700" in words     # the pairing, quoted vs ours


def test_a_run_without_table_iv_or_p_01_says_so_in_one_line(tmp_path):
    from analysis.report import write_report
    run_dir = activations_results(tmp_path, ps=(0.0, 0.5), table_iv=None, name="partial")
    run = load_run(run_dir)
    assert act.table_iv_data(run).empty
    lines = act.findings_lines(run)
    assert lines.count(act.NO_TABLE_IV_LINE) == 1
    text = " ".join(lines)
    assert "At p = 0 (this run has no p = 0.1 point; 0 is the nearest), the most steps per " \
           "second: upcall, 340,000 steps/s" in text
    assert "Handoff at p = 0.5: upcall 32.0 us" in text
    words = pdf_text(write_report(run_dir, str(tmp_path / "partial.pdf")))
    # the front page, the findings, and its table
    assert words.count("This run has no Table IV measurement") == 3
    assert "activations: Table IV" not in words


def test_nearest_p():
    assert act.nearest_p([0.0, 0.01, 0.1, 0.5]) == 0.1
    assert act.nearest_p([0.0, 0.2]) == 0.0          # a tie goes to the lower p
    assert act.nearest_p([0.5, 0.15]) == 0.15
    assert act.nearest_p([]) is None
