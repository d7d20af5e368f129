"""analysis: loading stored runs, statistics, `lab show` text and the PDF report."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from analysis import fmt_value, headline, load_run, show_text, summarise
from analysis._stats import bootstrap_median_ci
from lab import store

FAILURE_REASON = "worker exited with status 3: injected failure for the report test"


def _edit_manifest(run_dir: str, edit) -> dict:
    path = os.path.join(run_dir, store.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)
    return manifest


def _pdf_text(path: str) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    out = subprocess.run(["pdftotext", "-layout", path, "-"], capture_output=True, text=True,
                         check=True).stdout
    return " ".join(out.split())         # wrapped lines joined again


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
    for col in ("run_id", "family", "variant", "point", "repetition", "metric", "unit",
                "sample", "value", "placement", "batch", "samples"):
        assert col in run.samples.columns
    assert (run.samples["unit"].astype(str) == "ns").all()
    assert run.families == manifest["families"]
    assert run.environment == manifest["environment"]


def test_points_are_labelled_by_axis_params_only(tiny_run):
    run = load_run(tiny_run)
    points = set(run.runs["point"].astype(str))
    assert points == {"-", "placement=same_cpu", "placement=cross_cpu", "batch=4"}
    by_variant = run.runs.groupby("variant", observed=True)["point"].agg(lambda p: set(p.astype(str)))
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
    s = summarise(run.samples)
    assert len(s) == run.samples.groupby(["variant", "point", "metric"], observed=True).ngroups
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
    words = _pdf_text(pdf)
    assert FAILURE_REASON in words
    assert "io_uring: disabled by kernel.io_uring_disabled=2" in words


# -- the PDF report ---------------------------------------------------------------

def test_report_holds_every_variant_and_headline_median(run_copy, tmp_path):
    from analysis.report import write_report
    run_dir = run_copy()
    out = str(tmp_path / "tiny.pdf")
    assert write_report(run_dir, out) == out
    words = _pdf_text(out)
    tokens = set(words.split())
    run = load_run(run_dir)
    for variant in run.families["baseline"]["variants"]:
        assert variant in tokens
    for row in headline(run, "baseline").itertuples():
        assert fmt_value(row.median) in tokens, f"{row.variant} {row.point}: median missing"
    assert "no kernel view:" in words
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
    words = _pdf_text(write_report(run_dir))
    assert "timed out after 30 s" in words and "worker crashed" in words


def test_fmt_value_digits():
    assert fmt_value(25.58) == "25.6"
    assert fmt_value(123.18) == "123"
    assert fmt_value(97749.0) == "97749"
    assert fmt_value(4.91e6) == "4.91e+06"
    assert fmt_value(0.5234) == "0.523"
    assert fmt_value(float("nan")) == "-"
    assert re.fullmatch(r"\d+\.\d{2}", fmt_value(5.234))
