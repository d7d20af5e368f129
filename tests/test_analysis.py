"""analysis: loading stored runs, statistics, `lab show` text and the PDF report."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from analysis import (
    fmt_value,
    headline,
    kernel_view_table,
    load_run,
    load_wakeups,
    probe_overhead_summary,
    probe_overhead_table,
    show_text,
    summarise,
    user_samples,
)
from analysis._format import fmt_percent
from analysis._kernel import kernel_view_line, kernel_view_rows
from analysis._stats import bootstrap_median_ci
from analysis._views import OVERHEAD_HINT
from lab import store
from tests.conftest import SYNTH_OPS
from tests.helpers import pdf_text, requires_root
from tests.synthetic import SyntheticRun

FAILURE_REASON = "worker exited with status 3: injected failure for the report test"


def _edit_manifest(run_dir: str, edit) -> dict:
    path = os.path.join(run_dir, store.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)
    return manifest


# -- loading ------------------------------------------------------------------

def test_load_run_round_trip(tiny_run):
    run = load_run(tiny_run)
    manifest = store.read_manifest(tiny_run)
    assert len(run.runs) == len(manifest["runs"])
    ok = [r for r in manifest["runs"] if r["status"] == "ok"]
    assert ok, "the tiny run should have ok runs"
    counts = run.samples.groupby(["run_id", "metric"], observed=True).size().to_dict()
    expected = {(r["id"], m): n for r in ok for m, n in r["n_samples"].items()}
    assert counts == expected
    assert set(run.samples["run_id"]) == {r["id"] for r in ok}
    assert len(run.samples) == sum(expected.values())
    for col in ("run_id", "family", "variant", "point", "repetition", "kernel_view", "metric",
                "unit", "sample", "value", "placement", "batch", "samples"):
        assert col in run.samples.columns
    assert "kernel_view" in run.runs.columns
    kernel_view = {r["id"]: r["kernel_view"] for r in manifest["runs"]}
    assert run.runs.set_index("run_id")["kernel_view"].to_dict() == kernel_view
    assert (run.samples["kernel_view"] == run.samples["run_id"].map(kernel_view)).all()
    assert (run.samples["unit"].astype(str) == "ns").all()
    assert run.families == manifest["families"]
    assert run.environment == manifest["environment"]


def test_points_are_labelled_by_axis_params_only(tiny_run):
    run = load_run(tiny_run)
    base = run.runs[run.runs["family"] == "baseline"]
    points = set(base["point"].astype(str))
    assert points == {"-", "placement=same_cpu", "placement=cross_cpu", "batch=4"}
    by_variant = base.groupby("variant", observed=True)["point"].agg(lambda p: set(p.astype(str)))
    assert by_variant["futex_pingpong"] == {"placement=same_cpu", "placement=cross_cpu"}
    assert by_variant["null_syscall"] == {"-"}


def test_unknown_format_version_is_refused(run_copy):
    run_dir = run_copy()
    _edit_manifest(run_dir, lambda m: m.update(format_version=99))
    with pytest.raises(store.ResultsError, match="99"):
        load_run(run_dir)


def test_missing_samples_of_an_ok_run_is_an_error(run_copy):
    run_dir = run_copy()
    os.unlink(os.path.join(run_dir, store.samples_path(1)))
    with pytest.raises(store.ResultsError, match="run 1"):
        load_run(run_dir)


# -- statistics ---------------------------------------------------------------

def test_summarise_invariants(tiny_run):
    run = load_run(tiny_run)
    samples = user_samples(run)         # one run per repetition (the twins with probes apart)
    s = summarise(samples)
    assert len(s) == samples.groupby(["variant", "point", "metric"], observed=True).ngroups
    assert (s["p90"] >= s["median"]).all()
    assert (s["p99"] >= s["p90"]).all()
    assert (s["ci_low"] <= s["median"]).all() and (s["median"] <= s["ci_high"]).all()
    assert (s["rep_min"] <= s["rep_max"]).all()
    assert (s["reps"] == 2).all()
    assert (s["unit"] == "ns").all()
    assert s["noisy"].dtype == bool


def test_summarise_known_values(make_run):
    rep = np.arange(1, 102, dtype=float)          # 1..101: median 51
    run = load_run(make_run({("slow", "low"): [rep, rep, rep]}))
    row = summarise(run.samples).iloc[0]
    assert row["median"] == 51
    assert row["p90"] == pytest.approx(np.quantile(rep, 0.9))
    assert row["p99"] == pytest.approx(np.quantile(rep, 0.99))
    assert row["n"] == 303 and row["reps"] == 3
    assert row["rep_min"] == row["rep_max"] == 51
    assert row["ci_low"] <= 51 <= row["ci_high"]
    assert not row["noisy"]


def test_noisy_flag(make_run):
    base = np.linspace(90, 110, 201)               # median 100
    run = load_run(make_run({("slow", "low"): [base, base * 1.5],      # rep medians 100, 150
                             ("fast", "low"): [base, base * 1.05]}))    # 100, 105
    s = summarise(run.samples)
    s.index = s["variant"].astype(str)
    assert s.loc["slow", "noisy"]
    assert s.loc["slow", "rep_min"] == pytest.approx(100)
    assert s.loc["slow", "rep_max"] == pytest.approx(150)
    assert not s.loc["fast", "noisy"]
    assert "noisy" in show_text(run)


def test_bootstrap_is_reproducible_and_covers_the_median():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.lognormal(4, 0.3, 300), rng.lognormal(4.2, 0.3, 300)])
    groups = np.repeat([0, 1], 300)
    a = bootstrap_median_ci(values, groups, seed=3)
    assert a == bootstrap_median_ci(values, groups, seed=3)
    assert a[0] <= np.median(values) <= a[1]


def test_bootstrap_matches_explicit_resampling():
    """The bisection draws the same distribution as resampling repetitions,
    then samples within each, explicitly."""
    rng = np.random.default_rng(11)
    reps = [rng.lognormal(np.log(100), 0.3, 150), rng.lognormal(np.log(130), 0.3, 200),
            rng.lognormal(np.log(90), 0.5, 120)]
    values = np.concatenate(reps)
    groups = np.concatenate([np.full(len(r), i) for i, r in enumerate(reps)])
    explicit = []
    draw = np.random.default_rng(5)
    for _ in range(4000):
        chosen = draw.integers(0, len(reps), len(reps))
        pool = np.concatenate([reps[c][draw.integers(0, len(reps[c]), len(reps[c]))] for c in chosen])
        explicit.append(np.median(pool))
    want = np.quantile(explicit, [0.025, 0.975])
    got = bootstrap_median_ci(values, groups, seed=1, resamples=4000)
    spread = want[1] - want[0]
    assert abs(got[0] - want[0]) < 0.05 * spread
    assert abs(got[1] - want[1]) < 0.05 * spread


def test_summarise_groups_by_other_columns(tiny_run):
    run = load_run(tiny_run)
    s = summarise(run.samples, by=("variant", "metric"))
    assert list(s.columns[:2]) == ["variant", "metric"]
    assert "ci_low" in s.columns and "noisy" in s.columns


# -- headline and show ----------------------------------------------------------

def test_headline_follows_the_manifest(tiny_run):
    run = load_run(tiny_run)
    h = headline(run, "baseline")
    variants = run.families["baseline"]["variants"]
    for row in h.itertuples():
        assert row.metric == variants[row.variant]["headline"]
    order = list(variants)
    seen = list(dict.fromkeys(h["variant"].astype(str)))
    assert seen == [v for v in order if v in seen]
    futex = h[h["variant"] == "futex_pingpong"]["point"].astype(str).tolist()
    assert futex == ["placement=same_cpu", "placement=cross_cpu"]     # the suite's order


def test_show_text_names_every_variant(tiny_run):
    run = load_run(tiny_run)
    text = show_text(run)
    for variant in run.families["baseline"]["variants"]:
        assert variant in text
    for row in headline(run, "baseline").itertuples():
        assert fmt_value(row.median) in text
    assert "relative to null_syscall" in text


def test_show_text_unknown_family(tiny_run):
    with pytest.raises(store.ResultsError, match="nosuch"):
        show_text(load_run(tiny_run), family="nosuch")


def test_failed_and_skipped_are_listed_with_reasons(run_copy):
    run_dir = run_copy()

    def edit(m):
        m["runs"][0].update(status="failed", reason=FAILURE_REASON)
        m["skipped"].append({"family": "baseline", "variant": "uring_nop",
                             "params": {"samples": 50, "warmup": 10, "ops_per_sample": 10},
                             "reason": "io_uring: disabled by kernel.io_uring_disabled=2"})
    manifest = _edit_manifest(run_dir, edit)
    failed_id = manifest["runs"][0]["id"]
    run = load_run(run_dir)
    assert failed_id not in set(run.samples["run_id"])
    text = show_text(run)
    assert FAILURE_REASON in text
    assert "io_uring: disabled by kernel.io_uring_disabled=2" in text

    from analysis.report import write_report
    pdf = write_report(run_dir)
    words = pdf_text(pdf)
    assert FAILURE_REASON in words
    assert "io_uring: disabled by kernel.io_uring_disabled=2" in words


# -- the PDF report ---------------------------------------------------------------

def test_report_holds_every_variant_and_headline_median(run_copy, tmp_path):
    from analysis.report import write_report
    run_dir = run_copy()
    out = str(tmp_path / "tiny.pdf")
    assert write_report(run_dir, out) == out
    words = pdf_text(out)
    tokens = set(words.split())
    run = load_run(run_dir)
    for variant in run.families["baseline"]["variants"]:
        assert variant in tokens
    for row in headline(run, "baseline").itertuples():
        assert fmt_value(row.median) in tokens, f"{row.variant} {row.point}: median missing"
    assert kernel_view_line(run) in words          # the title page's kernel view status
    assert run.manifest["suite"]["name"] in words


def test_report_default_path_is_written_atomically(run_copy):
    from analysis.report import write_report
    run_dir = run_copy()
    path = write_report(run_dir)
    assert path == os.path.join(run_dir, "report.pdf")
    with open(path, "rb") as f:
        assert f.read(5) == b"%PDF-"
    assert not [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]


def test_report_of_a_run_whose_family_has_no_ok_run(make_run):
    from analysis.report import write_report
    run_dir = make_run({("slow", "low"): [np.arange(10.0)], ("fast", "low"): [np.arange(10.0)]},
                       statuses={1: ("timeout", "timed out after 30 s"),
                                 2: ("failed", "worker crashed")})
    run = load_run(run_dir)
    assert run.samples.empty
    assert "timed out after 30 s" in show_text(run)
    words = pdf_text(write_report(run_dir))
    assert "timed out after 30 s" in words and "worker crashed" in words


def test_fmt_value_digits():
    assert fmt_value(25.58) == "25.6"
    assert fmt_value(123.18) == "123"
    assert fmt_value(97749.0) == "97749"
    assert fmt_value(4.91e6) == "4.91e+06"
    assert fmt_value(0.5234) == "0.523"
    assert fmt_value(float("nan")) == "-"
    assert re.fullmatch(r"\d+\.\d{2}", fmt_value(5.234))


# -- the kernel view ------------------------------------------------------------------

WAKE_DTYPE = np.dtype([("waking_to_run_ns", "<u8"), ("wakeup_to_run_ns", "<u8"), ("tid", "<u4"),
                       ("waker_cpu", "<u2"), ("run_cpu", "<u2")])


def _wakeups(latencies) -> np.ndarray:
    records = np.zeros(len(latencies), dtype=WAKE_DTYPE)
    records["waking_to_run_ns"] = latencies
    records["wakeup_to_run_ns"] = np.asarray(latencies) // 2
    records["tid"] = 1234
    records["run_cpu"] = 1
    return records


def _probe_rows(switches_per_op: float, syscalls_per_op: float = 1.0):
    """A run's metrics.parquet rows: totals, per-op values and a breakdown."""
    switches = switches_per_op * SYNTH_OPS
    return [("switches", "switches", "", switches),
            ("switches", "switches_voluntary", "", switches),
            ("switches", "switches_involuntary", "", 0.0),
            ("switches", "switches_voluntary", "tid=1234 synth", switches),
            ("switches", "switches_per_op", "", switches_per_op),
            ("switches", "voluntary_switches_per_op", "", switches_per_op),
            ("switches", "involuntary_switches_per_op", "", 0.0),
            ("syscalls", "syscalls", "", syscalls_per_op * SYNTH_OPS),
            ("syscalls", "syscalls", "nr=39 getpid", syscalls_per_op * SYNTH_OPS),
            ("syscalls", "syscalls_per_op", "", syscalls_per_op)]


def test_metrics_load_round_trip(make_run):
    base = np.arange(1, 102, dtype=float)
    per_run = {}

    def metrics(entry):
        per_run[entry["id"]] = _probe_rows(2.0 + entry["repetition"] / 100)
        return per_run[entry["id"]]
    run_dir = make_run({("slow", "low", True): [base, base], ("slow", "low", False): [base, base],
                        ("fast", "high", True): [base, base]},
                       probe_overhead=True, metrics=metrics)
    run = load_run(run_dir)
    stored = pd.read_parquet(os.path.join(run_dir, store.METRICS))
    assert len(run.metrics) == len(stored) == sum(len(r) for r in per_run.values())
    assert list(run.metrics.columns) == ["run_id", "family", "variant", "point", "repetition",
                                         "kernel_view", "probe", "metric", "key", "value"]
    assert set(run.metrics["run_id"]) == set(per_run)
    assert run.metrics["kernel_view"].all()
    # the join keys agree with Run.runs
    joined = run.metrics.merge(run.runs, on="run_id", suffixes=("", "_run"))
    for col in ("family", "variant", "point", "repetition", "kernel_view"):
        assert (joined[col].astype(str) == joined[f"{col}_run"].astype(str)).all()
    totals = run.metrics[(run.metrics["key"] == "") & (run.metrics["metric"] == "switches_per_op")]
    assert sorted(totals["value"]) == [2.0, 2.0, 2.01, 2.01]
    # a run without metrics.parquet has an empty table with the same columns
    empty = load_run(make_run({("slow", "low"): [base]}, name="plain")).metrics
    assert empty.empty and list(empty.columns) == list(run.metrics.columns)


def test_metrics_count_only_for_ok_runs_and_the_last_block_of_a_resumed_run(make_run):
    base = np.arange(1, 102, dtype=float)
    run_dir = make_run({("slow", "low", True): [base, base]}, metrics=lambda e: _probe_rows(2.0),
                       statuses={2: ("failed", "worker crashed")})
    # run 1 again at the end, as a resume after an interruption would append it
    rows = store.read_metric_rows(run_dir)
    again = [(1, p, m, k, 3.0 if m == "switches_per_op" else v) for _, p, m, k, v in rows if _ == 1]
    store.write_metrics(run_dir, rows + again)
    run = load_run(run_dir)
    assert set(run.metrics["run_id"]) == {1}                     # run 2 failed: not counted
    assert len(run.metrics) == len(again)
    per_op = run.metrics[(run.metrics["metric"] == "switches_per_op") & (run.metrics["key"] == "")]
    assert per_op["value"].tolist() == [3.0]


def test_load_wakeups_reads_the_kernel_files(make_run):
    base = np.arange(1, 102, dtype=float)
    run_dir = make_run({("slow", "low", True): [base, base], ("fast", "low", False): [base]},
                       metrics=lambda e: _probe_rows(2.0),
                       wakeups=lambda e: _wakeups(np.arange(1, 11) * (e["id"] * 100)))
    run = load_run(run_dir)
    w = load_wakeups(run)
    assert len(w) == 20 and set(w["run_id"]) == {1, 2}
    for col in ("run_id", "waking_to_run_ns", "wakeup_to_run_ns", "tid", "waker_cpu", "run_cpu",
                "family", "variant", "point"):
        assert col in w.columns
    assert (w["variant"].astype(str) == "slow").all()
    assert (w["point"].astype(str) == "level=low").all()
    one = load_wakeups(run, run_ids=[2])
    assert one["waking_to_run_ns"].tolist() == list(range(200, 2001, 200))
    assert load_wakeups(run, run_ids=[3]).empty                 # no probes, no records
    os.unlink(os.path.join(run_dir, "kernel", "run-0001-wakeups.parquet"))
    fresh = load_run(run_dir)
    with pytest.raises(store.ResultsError, match="run 1"):
        load_wakeups(fresh)
    assert set(load_wakeups(fresh, missing="skip")["run_id"]) == {2}


def _overhead_run(make_run, wakeups=None):
    """Two cells, each with runs with and without probes, three repetitions:
    with probes every sample is 20% (slow) or 50% (fast) larger."""
    base = np.linspace(90, 110, 201)                               # median 100
    cells = {("slow", "low", True): [base * 1.2] * 3, ("slow", "low", False): [base] * 3,
             ("fast", "low", True): [base * 1.5 * 2] * 3, ("fast", "low", False): [base * 2] * 3}
    return make_run(cells, probe_overhead=True,
                    metrics=lambda e: _probe_rows(2.0 if e["variant"] == "slow" else 4.0),
                    wakeups=wakeups)


def test_user_side_uses_the_runs_without_probes(make_run):
    run = load_run(_overhead_run(make_run))
    h = headline(run, "synth").set_index("variant")
    assert h.loc["slow", "median"] == pytest.approx(100)        # not 120: the runs without probes
    assert h.loc["fast", "median"] == pytest.approx(200)
    assert (h["n"] == 3 * 201).all() and (h["reps"] == 3).all()
    k = kernel_view_table(run, "synth").set_index("variant")
    assert (k["reps"] == 3).all()                               # the runs with probes
    assert k.loc["slow", "switches_per_op"] == 2.0 and k.loc["fast", "switches_per_op"] == 4.0
    text = show_text(run)
    assert "runs without probes" in text and "kernel view" in text


def test_probe_overhead_is_with_over_without_minus_one(make_run):
    run = load_run(_overhead_run(make_run))
    o = probe_overhead_table(run, "synth").set_index("variant")
    assert o.loc["slow", "median_without"] == pytest.approx(100)
    assert o.loc["slow", "median_with"] == pytest.approx(120)
    assert o.loc["slow", "overhead"] == pytest.approx(0.2)
    assert o.loc["fast", "overhead"] == pytest.approx(0.5)
    # identical repetitions: every repetition's overhead is the same
    assert o.loc["slow", "rep_low"] == pytest.approx(0.2) == o.loc["slow", "rep_high"]
    for v in ("slow", "fast"):
        assert o.loc[v, "ci_low"] <= o.loc[v, "overhead"] <= o.loc[v, "ci_high"]
    s = probe_overhead_summary(run, "synth")
    assert s.rows == 2
    assert s.median == pytest.approx(0.35)
    assert (s.low, s.high) == (pytest.approx(0.2), pytest.approx(0.5))
    assert "level=low" in s.low_at and s.low_at.startswith("slow")
    text = show_text(run)
    assert fmt_percent(0.2) in text and fmt_percent(0.5) in text and fmt_percent(0.35) in text


def test_runs_with_probes_only_say_overhead_was_not_measured(make_run):
    base = np.linspace(90, 110, 201)
    run = load_run(make_run({("slow", "low", True): [base, base * 1.01]},
                            metrics=lambda e: _probe_rows(2.0)))
    assert headline(run, "synth")["reps"].tolist() == [2]       # every ok run
    assert probe_overhead_table(run, "synth").empty
    assert probe_overhead_summary(run, "synth") is None
    text = show_text(run)
    assert f"measured with probes attached; {OVERHEAD_HINT}" in " ".join(text.lower().split())
    assert OVERHEAD_HINT == "probe overhead not measured (set probe_overhead = true in [suite])"


def test_kernel_view_table_marks_noisy_repetitions_and_pools_wakeups(make_run):
    base = np.linspace(90, 110, 201)
    latencies = {1: [100, 200, 300], 2: [400, 500]}               # slow's two runs

    def metrics(entry):
        rows = _probe_rows(2.0 if entry["repetition"] == 0 else 2.5)     # 25% apart: noisy
        if entry["variant"] == "fast":                                  # no records: per-run p50
            rows = _probe_rows(1.0) + [("wakeups", "wake_to_run_p50_ns", "", 1000.0 * entry["id"]),
                                       ("wakeups", "wake_to_run_p99_ns", "", 5000.0)]
        return rows
    run = load_run(make_run({("slow", "low", True): [base, base],
                             ("fast", "low", True): [base, base]}, metrics=metrics,
                            wakeups=lambda e: _wakeups(latencies[e["id"]]) if e["id"] in latencies
                            else None))
    k = kernel_view_table(run, "synth").set_index("variant")
    assert k.loc["slow", "switches_per_op"] == pytest.approx(2.25)     # median of 2.0 and 2.5
    assert "switches_per_op" in k.loc["slow", "noisy"]
    assert "syscalls_per_op" not in k.loc["slow", "noisy"]
    assert k.loc["fast", "noisy"] == ""
    assert k.loc["slow", "wake_to_run_p50_ns"] == 300                 # pooled: 100..500
    assert k.loc["slow", "wakeups_recorded"] == 5
    assert k.loc["fast", "wake_to_run_p50_ns"] == pytest.approx(3500)  # median of 3000, 4000
    assert k.loc["fast", "wake_to_run_from"] == "run percentiles"
    header, rows, _ = kernel_view_rows(kernel_view_table(run, "synth"))
    slow = rows[[r[0] for r in rows].index("slow")]
    assert slow[header.index("switches/op")] == fmt_value(2.25) + "*"
    assert "submits/op" not in header                               # no io_uring here


# -- the kernel view of real runs ------------------------------------------------------

@requires_root
def test_kernel_view_of_a_real_run(tiny_run):
    run = load_run(tiny_run)
    assert run.manifest["kernel_view"]["enabled"], run.manifest["kernel_view"].get("reason")
    stored = pd.read_parquet(os.path.join(tiny_run, store.METRICS))
    ok = set(run.runs.loc[run.runs["status"] == "ok", "run_id"])
    assert len(run.metrics) == int(stored["run_id"].isin(ok).sum())
    probed = set(run.runs.loc[run.runs["kernel_view"] & (run.runs["status"] == "ok"), "run_id"])
    assert set(run.metrics["run_id"]) == probed
    assert not run.runs["kernel_view"].all()                        # probe_overhead: twins
    k = kernel_view_table(run, "baseline")
    k.index = [f"{v} {p}" for v, p in zip(k["variant"].astype(str), k["point"].astype(str))]
    assert 1.9 <= k.loc["futex_pingpong placement=same_cpu", "switches_per_op"] <= 2.2
    assert 0.99 <= k.loc["null_syscall -", "syscalls_per_op"] <= 1.1
    w = load_wakeups(run)
    files = [r for r in run.manifest["runs"] if r.get("kernel_file")]
    assert len(w) == sum(len(pd.read_parquet(os.path.join(tiny_run, r["kernel_file"])))
                         for r in files)
    assert not probe_overhead_table(run, "baseline").empty


@requires_root
def test_report_of_a_probed_run_has_the_kernel_view(run_copy, tmp_path):
    from analysis.report import write_report
    run_dir = run_copy()
    out = str(tmp_path / "probed.pdf")
    words = pdf_text(write_report(run_dir, out))
    assert "Kernel view" in words and "Probe overhead" in words
    run = load_run(run_dir)
    tokens = set(words.split())
    _, rows, _ = kernel_view_rows(kernel_view_table(run, "baseline"))
    for row in rows:
        for cell in row[2:]:
            assert cell in tokens, f"{row[0]} {row[1]}: {cell} missing from the PDF"
    assert run.manifest["kernel_view"]["headers"].split()[0] in tokens
    assert "Kernel cross-check" in words


def test_no_kernel_view_says_why(tiny_run_without_probes, tmp_path):
    from analysis.report import write_report
    run = load_run(tiny_run_without_probes)
    reason = run.manifest["kernel_view"]["reason"]
    assert reason and "--probes=none" in reason
    assert run.metrics.empty and not run.runs["kernel_view"].any()
    assert f"no kernel view: {reason}" in show_text(run)
    words = pdf_text(write_report(tiny_run_without_probes, str(tmp_path / "none.pdf")))
    assert f"no kernel view: {reason}" in words
    assert "Probe overhead" not in words


# -- counters and throughput ------------------------------------------------------------------

def test_counters_load_round_trip(tiny_run):
    from analysis._results import COUNTER_COLUMNS
    run = load_run(tiny_run)
    manifest = store.read_manifest(tiny_run)
    want = {(r["id"], name): float(value) for r in manifest["runs"] if r["status"] == "ok"
            for name, value in (r.get("counters") or {}).items()}
    assert want, "the tiny run's syncfirst and chains runs report counters"
    got = {(int(r.run_id), str(r.counter)): r.value for r in run.counters.itertuples()}
    assert got == want
    assert list(run.counters.columns[:len(COUNTER_COLUMNS)]) == COUNTER_COLUMNS
    # the join keys agree with Run.runs, and the parameters come along
    joined = run.counters.merge(run.runs, on="run_id", suffixes=("", "_run"))
    for col in ("family", "variant", "point", "repetition", "kernel_view", "hit_ratio", "k"):
        pd.testing.assert_series_equal(joined[col], joined[f"{col}_run"], check_names=False)
    assert set(run.counters["family"].astype(str)) == {"syncfirst", "chains"}


def test_throughput_is_ops_over_the_window(tiny_run):
    run = load_run(tiny_run)
    manifest = store.read_manifest(tiny_run)
    by_id = run.runs.set_index("run_id")
    checked = 0
    for r in manifest["runs"]:
        if r["status"] == "ok" and r.get("window_ns"):
            assert by_id.loc[r["id"], "throughput"] == pytest.approx(r["ops"] / r["window_ns"] * 1e9)
            checked += 1
    assert checked == int((run.runs["status"] == "ok").sum())


def test_counter_summary_totals_only_counts(tiny_run):
    from analysis._counters import counter_is_total, counter_summary, run_table
    run = load_run(tiny_run)
    s = counter_summary(run, "syncfirst")
    runs = run_table(run, "syncfirst")
    runs = runs[runs["user_side"]]
    for row in s.itertuples(index=False):
        mine = runs[(runs["variant"].astype(str) == str(row.variant))
                    & (runs["point"].astype(str) == str(row.point))][row.counter]
        assert row.median == pytest.approx(mine.median())
        assert row.reps == len(mine) == 2
        if counter_is_total(row.counter):
            assert row.total == pytest.approx(mine.sum())
        else:
            assert np.isnan(row.total)
    assert not counter_is_total("eagain_fraction") and counter_is_total("eagain")
    assert not counter_is_total("ok_per_chain")


def test_show_text_has_the_counters(tiny_run):
    text = show_text(load_run(tiny_run), family="syncfirst")
    assert "counters (the workers' own counts" in text
    assert "eagain" in text and "inline_done" in text
    assert text.index("kernel view") < text.index("counters (the workers")


# -- syncfirst ------------------------------------------------------------------------------------

def test_crossover_data_matches_the_headline(tiny_run):
    from analysis.families.syncfirst import crossover_data
    run = load_run(tiny_run)
    data = crossover_data(run)
    assert not data.duplicated(["variant", "hit_ratio"]).any()
    assert set(zip(data["variant"].astype(str), data["hit_ratio"])) == {
        (v, h) for v in ("sync", "syncfirst", "pool", "uring") for h in (0.0, 1.0)}
    s = summarise(user_samples(run))
    s = s[(s["family"] == "syncfirst") & (s["metric"] == "latency")]
    want = {(str(r.variant), str(r.point)): r.median for r in s.itertuples()}
    for r in data.itertuples():
        assert r.median == want[(str(r.variant), str(r.point))]
        assert r.ci_low <= r.median <= r.ci_high
        assert r.throughput_ci_low <= r.throughput <= r.throughput_ci_high
    # throughput: the median over the user-side runs of ops / window
    runs = run.runs[run.runs["family"] == "syncfirst"]
    user = user_samples(run)["run_id"].unique()
    for r in data.itertuples():
        mine = runs[(runs["variant"].astype(str) == str(r.variant))
                    & (runs["point"].astype(str) == str(r.point)) & runs["run_id"].isin(user)]
        assert r.throughput == pytest.approx(np.median(mine["ops"].astype(float)
                                                       / mine["window_ns"].astype(float) * 1e9))


def test_blocked_fraction_is_eagain_over_reads(tiny_run):
    from analysis._views import run_sources
    from analysis.families.syncfirst import blocked_fraction
    run = load_run(tiny_run)
    manifest = store.read_manifest(tiny_run)
    user = set(run_sources(run).query("user_side")["run_id"])
    table = blocked_fraction(run).set_index(["variant", "point"])
    runs = run.runs.set_index("run_id")
    syncfirst = [r for r in manifest["runs"] if r["variant"] == "syncfirst" and r["id"] in user]
    assert syncfirst
    for point in {str(runs.loc[r["id"], "point"]) for r in syncfirst}:
        mine = [r for r in syncfirst if str(runs.loc[r["id"], "point"]) == point]
        want = np.median([r["counters"]["eagain"] / r["ops"] for r in mine])
        assert table.loc[("syncfirst", point), "went_async"] == pytest.approx(want)
        assert table.loc[("syncfirst", point), "eagain_per_op"] == pytest.approx(want)
        want = np.median([r["counters"]["cold_inline"] / r["ops"] for r in mine])
        assert table.loc[("syncfirst", point), "miss_inline_per_op"] == pytest.approx(want)
    sync = table.loc["sync"]
    pool = table.loc["pool"]
    assert (sync["went_async"] == 0).all() and (pool["went_async"] == 1).all()
    # What the kernel guarantees, not what it happened to do: RWF_NOWAIT
    # returns a cached page and, on a miss, says EAGAIN or (its read already
    # done) returns the data.  So in every run each block not resident at
    # the start is an EAGAIN or a miss done inline, and a resident one is
    # never refused (only a reclaimer taking it first could: hot_eagain).
    for r in syncfirst:
        c = r["counters"]
        cold = r["ops"] - round(c["resident_fraction"] * r["ops"])
        assert c["eagain"] - c["hot_eagain"] + c["cold_inline"] == cold
    by_hit = table.xs("syncfirst").set_index("hit_ratio")
    # the window opens as planned or not at all: at hit_ratio 0 every block
    # is a miss, at 1 none is, and no cached block is refused
    assert by_hit.loc[0.0, "not_resident"] == 1.0
    assert by_hit.loc[1.0, "not_resident"] == 0.0
    assert by_hit.loc[1.0, "went_async"] == by_hit.loc[1.0, "miss_inline_per_op"] == 0.0
    # which way a miss went is a race with the device: counted, both ways
    assert by_hit.loc[0.0, "went_async"] > 0


def test_seed_claims_say_when_a_point_is_missing(run_copy):
    from analysis.families.syncfirst import claim_lines

    def drop_cold(m):
        for r in m["runs"]:
            if r["family"] == "syncfirst" and r["params"].get("hit_ratio") == 0.0:
                r.update(status="failed", reason="dropped for the test")
    run_dir = run_copy()
    _edit_manifest(run_dir, drop_cold)
    text = " ".join(claim_lines(load_run(run_dir)))
    assert "no hit_ratio 0.0 point" in text and "no uncached comparison" in text
    assert "hit_ratio 1.0" in text and "reads/s" in text


# -- chains ------------------------------------------------------------------------------------------

def _chains_run(tmp_path, slopes: dict[str, float], ks=(1, 2, 4, 8), reps: int = 3) -> str:
    """A results folder of the chains family whose chain times are exactly
    intercept + slope * k plus symmetric noise, per variant."""
    from lab.families.chains import FAMILY as CHAINS
    synth = SyntheticRun(tmp_path / "chains-synth")
    rng = np.random.default_rng(3)
    for rep in range(reps):
        for variant, slope in slopes.items():
            for k in ks:
                noise = rng.normal(0, 5, 100)
                values = 1000 + slope * k + np.concatenate([noise, -noise])
                params = {"k": k, "op": "nop", "cached": True, "fail_at": 0, "samples": 200,
                          "warmup": 0}
                if variant != "syscalls":
                    params["taskrun"] = "normal"
                synth.add("chains", variant, params, {"chain": values}, rep,
                          {"ok_per_chain": k}, 200, window_ns=10**6)
    return synth.write("chains-synth", {"chains": CHAINS}, reps)


def test_fit_slope_of_a_line():
    from analysis.families.chains import fit_slope, nearest_k
    k = np.array([1, 2, 4, 8, 16])
    assert fit_slope(k, 300 + 70 * k) == (pytest.approx(70), pytest.approx(300))
    assert all(np.isnan(fit_slope([4, 4], [1, 2])))
    assert nearest_k([1, 2, 4, 16, 64]) == 4 and nearest_k([2, 8]) == 8 and nearest_k([]) is None


def test_chains_cost_per_atom_on_known_slopes(tmp_path):
    from analysis.families.chains import atom_costs, chain_data, findings_lines, versus_reference
    run = load_run(_chains_run(tmp_path, {"syscalls": 250.0, "uring_link": 120.0}))
    costs = atom_costs(run).set_index("variant")
    assert costs.loc["syscalls", "slope"] == pytest.approx(250, abs=1)
    assert costs.loc["uring_link", "slope"] == pytest.approx(120, abs=1)
    assert costs.loc["uring_link", "intercept"] == pytest.approx(1000, abs=5)
    assert (costs["k_min"] == 1).all() and (costs["k_max"] == 8).all() and (costs["n_k"] == 4).all()
    assert (costs["rep_slope_min"] <= costs["slope"] + 1).all()
    versus = {v.variant: v for v in versus_reference(chain_data(run))}
    assert versus["uring_link"].k == 8
    assert versus["uring_link"].ratio == pytest.approx((1000 + 120 * 8) / (1000 + 250 * 8), rel=0.01)
    text = " ".join(findings_lines(run))
    assert "saves 130 ns per atom" in text and "k = 1..8" in text
    assert "no kernel view" in text.lower()


def test_report_has_the_seed_003_sections(run_copy, tmp_path):
    from analysis.families.chains import stop_on_failure
    from analysis.report import write_report
    run_dir = run_copy()
    words = pdf_text(write_report(run_dir, str(tmp_path / "seed003.pdf")))
    assert "Family syncfirst" in words and "Family chains" in words
    # the seed's claims, quoted, beside a sentence with this run's numbers
    assert "19.2%" in words and "33.9%" in words
    assert re.search(r"This machine, hit_ratio 1\.0 \(cached\): the fastest variant by median, "
                     r"\w+, reads [\d,]+ reads/s against sync's [\d,]+ reads/s", words)
    assert re.search(r"hit_ratio 1\.0: EAGAIN on \d+ of syncfirst's \d+ reads", words)
    assert "How often a read went asynchronous" in words
    assert "Page-cache state check" in words
    assert "the crossover" in words
    assert "Cost of one more atom" in words and "time per chain against its length" in words
    run = load_run(run_dir)
    assert len(stop_on_failure(run))            # the tiny run has fail_at runs
    assert "Stop on failure (SYSLET_STOP_ON_NEGATIVE)" in words
    fails = stop_on_failure(run).iloc[0]
    assert fails["canceled_per_chain"] == 5 and fails["not_run_per_chain"] == 0
