"""lab compare (issue 16): verdicts on synthetic runs with known ratios, the
environment diff, exports, the CI gate and every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis import compare as cmp
from analysis import load_run
from lab import lock
from lab.cli import main
from tests.helpers import pdf_text
from tests.synthetic import HALTPOLL, SyntheticRun, exact_median, variant_params

REPS = 5
N = 200
# (variant, placement or None): known median [ns], kernel switches/op
CELLS = {("null_syscall", None): (150.0, 0.0), ("futex_pingpong", "same_cpu"): (5000.0, 2.0),
         ("futex_pingpong", "cross_cpu"): (40000.0, 2.0)}
ENV = {**HALTPOLL, "kernel.release": "6.18.0", "cpu.model": "Synthetic CPU",
       "security.mitigations_cmdline": "auto", "noise.loadavg_1min": 0.1, "cpu.mhz": 2000.0}


def build(path, scale: float = 1.0, bimodal: bool = False, env: dict | None = None,
          cells: dict | None = None, seed: int = 0, started_at: str | None = None) -> str:
    """A baseline run folder: each cell's samples have median ``scale`` times
    its known one (repetitions 1% apart: not noisy); ``bimodal``: each
    repetition's samples half at the median, half at 1.6 times it."""
    from lab.families.baseline import FAMILY as BASELINE
    synth = SyntheticRun(path, probed=True)
    for rep in range(REPS):
        for n, ((variant, placement), (median, switches)) in enumerate((cells or CELLS).items()):
            params = variant_params(BASELINE, variant, samples=N,
                                    **({"placement": placement} if placement else {}))
            m = median * scale * (1 + 0.01 * (rep - REPS // 2))
            values = exact_median(m, N, seed=seed * 1000 + rep * 10 + n, spread=0.03)
            if bimodal:
                values[: N // 2] = exact_median(m, N // 2, seed=rep, spread=0.03)
                values[N // 2:] = exact_median(1.6 * m, N // 2, seed=rep + 1, spread=0.03)
            metric = next(v for v in BASELINE.variants if v.name == variant).headline.name
            synth.add("baseline", variant, params, {metric: values}, rep, {}, N,
                      kernel={"switches_per_op": switches * scale, "syscalls_per_op": 1.0})
    run_dir = synth.write("quick", {"baseline": BASELINE}, REPS, probes=("switches", "syscalls"),
                          environment=env if env is not None else ENV)
    if started_at:
        _edit_manifest(run_dir, started_at=started_at)
    return run_dir


def _edit_manifest(run_dir: str, **fields) -> None:
    path = os.path.join(run_dir, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest.update(fields)
    with open(path, "w") as f:
        json.dump(manifest, f)


def _compare(*dirs, **kw) -> cmp.Comparison:
    return cmp.compare([cmp.Side(os.path.basename(d), [load_run(d)]) for d in dirs], **kw)


def _lab(capsys, *args) -> tuple[int, str, str]:
    status = main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_one_and_a_half_times_slower_is_told_apart(tmp_path):
    c = _compare(build(tmp_path / "a"), build(tmp_path / "b", scale=1.5, seed=1))
    assert len(c.rows) == len(CELLS)
    assert (c.rows["verdict"] == cmp.SLOWER).all()
    assert np.allclose(c.rows["ratio"], 1.5, rtol=0.02)
    assert (c.rows["ci_low"] > 1.3).all() and (c.rows["ci_high"] < 1.7).all()
    assert (c.rows["p_holm"] < 1e-6).all()
    assert not c.rows["noisy"].any() and not c.rows["bimodal"].any()
    # the kernel view's difference beside each row: switches/op scaled too
    futex = c.rows[c.rows["variant"] == "futex_pingpong"]
    assert np.allclose(futex["d_switches_per_op"], 1.0)
    assert np.allclose(c.rows["d_syscalls_per_op"], 0.0)


def test_the_same_distribution_is_not_told_apart(tmp_path):
    c = _compare(build(tmp_path / "a"), build(tmp_path / "b", seed=1))
    assert (c.rows["verdict"] == cmp.NOT_TOLD_APART).all()
    assert ((c.rows["ci_low"] < 1) & (c.rows["ci_high"] > 1)).all()
    assert np.allclose(c.rows["ratio"], 1.0, rtol=0.01)


def test_faster_and_three_runs(tmp_path):
    a, b, c3 = build(tmp_path / "a"), build(tmp_path / "b", 0.5, seed=1), \
        build(tmp_path / "c", 1.0, seed=2)
    c = _compare(a, b, c3)
    assert len(c.rows) == 2 * len(CELLS)          # each run against the first
    assert (c.rows[c.rows["run"] == "b"]["verdict"] == cmp.FASTER).all()
    assert (c.rows[c.rows["run"] == "c"]["verdict"] == cmp.NOT_TOLD_APART).all()


def test_a_bimodal_twin_is_flagged(tmp_path):
    c = _compare(build(tmp_path / "a"), build(tmp_path / "b", bimodal=True, seed=1))
    assert c.rows["bimodal"].all()
    assert not _compare(build(tmp_path / "c"), build(tmp_path / "d", seed=1)).rows["bimodal"].any()


def test_bimodal_test_ignores_one_mode_and_a_tail():
    rng = np.random.default_rng(0)
    reps = np.repeat(np.arange(3), 1000)
    normal = rng.normal(1000, 30, 3000)
    tail = np.where(rng.random(3000) < 0.03, 5 * normal, normal)
    two = np.where(rng.random(3000) < 0.5, normal, 1.5 * normal)
    assert not cmp.is_bimodal(normal, reps) and not cmp.is_bimodal(tail, reps)
    assert cmp.is_bimodal(two, reps)
    # repetitions that disagree are noisy, not bimodal
    apart = normal * np.repeat([1.0, 1.5, 1.0], 1000)
    assert cmp.is_noisy(apart, reps) and not cmp.is_bimodal(apart, reps)


def test_mann_whitney_and_holm_against_known_values():
    # no ties: U = 0 for fully separated samples of 10 and 10: z = (50 - 0.5) / sqrt(175)
    p = cmp.mann_whitney_p(np.arange(10.0), np.arange(10.0) + 100)
    assert p == pytest.approx(0.000182, rel=0.02)
    assert cmp.mann_whitney_p(np.ones(5), np.ones(7)) == 1.0       # all tied
    assert np.allclose(cmp.holm(np.array([0.01, 0.04, 0.03, np.nan])),
                       [0.03, 0.06, 0.06, np.nan], equal_nan=True)


def test_environment_diff_lists_exactly_the_keys_that_differ(tmp_path):
    env_b = {**ENV, "power.haltpoll_guest_poll_ns": 200000, "security.mitigations_cmdline": "off",
             "noise.loadavg_1min": 1.7, "cpu.mhz": 2400.0, "kernel.preempt": "full"}
    env_b.pop("cpu.model")
    a, b = build(tmp_path / "a"), build(tmp_path / "b", env=env_b, seed=1)
    _edit_manifest(b, tuning={"cpu_dma_latency": 0})
    c = _compare(a, b)
    diff = dict(c.environment)
    assert set(diff) == {"power.haltpoll_guest_poll_ns", "security.mitigations_cmdline",
                         "cpu.model", "kernel.preempt", "tuning.cpu_dma_latency"}
    assert diff["power.haltpoll_guest_poll_ns"] == [0, 200000]
    assert diff["cpu.model"] == ["Synthetic CPU", cmp.MISSING]


def test_points_in_one_run_only_are_listed(tmp_path, capsys):
    extra = {**CELLS, ("pipe_pingpong", "same_cpu"): (6000.0, 2.0)}
    a, b = build(tmp_path / "a"), build(tmp_path / "b", cells=extra, seed=1)
    c = _compare(a, b)
    assert len(c.rows) == len(CELLS)
    assert c.only_in[["variant", "point", "present_in"]].values.tolist() == [
        ["pipe_pingpong", "placement=same_cpu", "b"]]
    status, out, _ = _lab(capsys, a, b)
    assert status == 0
    assert "cells not in every run (1; not compared)" in out and "pipe_pingpong" in out


def test_terminal_table_csv_json_and_pdf(tmp_path, capsys):
    a, b = build(tmp_path / "a"), build(tmp_path / "b", scale=1.5, seed=1)
    csv, js, pdf = tmp_path / "c.csv", tmp_path / "c.json", tmp_path / "c.pdf"
    status, out, err = _lab(capsys, a, b, "--csv", csv, "--json", js, "--pdf", pdf)
    assert status == 0, err
    assert "baseline: b against a (3 rows, 3 told apart)" in out
    assert out.count("slower") == 3 and "1.5x" in out
    expected = _compare(a, b).rows
    pd.testing.assert_frame_equal(cmp.read_rows(pd.read_csv(csv, keep_default_na=False,
                                                            na_values=[""])), expected)
    record = json.loads(js.read_text())
    assert record["sides"] == ["a", "b"]
    back = cmp.read_rows(pd.DataFrame(record["rows"]))
    pd.testing.assert_frame_equal(back, expected)
    text = pdf_text(str(pdf))
    assert "baseline: b against a" in text and "verdicts" in text
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_fail_above_is_a_regression_gate(tmp_path, capsys):
    a = build(tmp_path / "a")
    slow, same = build(tmp_path / "slow", scale=1.5, seed=1), build(tmp_path / "same", seed=2)
    status, _, err = _lab(capsys, a, slow, "--fail-above", "10")
    assert status == 1
    assert "3 rows slower than a by more than 10%" in err and "futex_pingpong" in err
    assert _lab(capsys, a, slow, "--fail-above", "60")[0] == 0      # 50% is within 60%
    assert _lab(capsys, a, same, "--fail-above", "10")[0] == 0


def test_by_key_pools_groups_of_runs(tmp_path, capsys):
    old = [build(tmp_path / f"old{i}", env={**ENV, "kernel.release": "6.1"}, seed=i)
           for i in range(2)]
    new = [build(tmp_path / f"new{i}", scale=1.5, env=ENV, seed=10 + i) for i in range(2)]
    status, out, err = _lab(capsys, *old, *new, "--by", "kernel.release")
    assert status == 0, err
    assert "kernel.release=6.18.0 against kernel.release=6.1" in out
    sides = cmp.group_by_key([load_run(d) for d in old + new], "kernel.release")
    c = cmp.compare(sides)
    assert (c.rows["reps"] == 2 * REPS).all() and (c.rows["verdict"] == cmp.SLOWER).all()
    bare = build(tmp_path / "bare", env={"cpu.model": "x"})
    status, _, err = _lab(capsys, old[0], bare, "--by", "kernel.release")
    assert status == 2 and len(err.splitlines()) == 1 and "no key 'kernel.release'" in err


def _one_line_error(capsys, *args) -> str:
    status, out, err = _lab(capsys, *args)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_bad_input_one_line_each(tmp_path, capsys):
    a = build(tmp_path / "a", started_at="2026-12-03T10:00:00+00:00")
    b = build(tmp_path / "b", seed=1, started_at="2026-12-03T11:00:00+00:00")
    (tmp_path / "empty").mkdir()
    assert "not a results folder" in _one_line_error(capsys, a, tmp_path / "empty")
    assert "no such results folder" in _one_line_error(capsys, a, tmp_path / "nowhere")
    assert "compared with itself" in _one_line_error(capsys, a, a)
    copy = shutil.copytree(a, tmp_path / "copy")
    assert "same suite run" in _one_line_error(capsys, a, copy)
    v2 = shutil.copytree(b, tmp_path / "v2")
    _edit_manifest(v2, format_version=2)
    assert "different results format versions" in _one_line_error(capsys, a, v2)
    assert "version 2 is not supported" in _one_line_error(capsys, v2)
    other = build(tmp_path / "other", cells={("clock_read", None): (20.0, 0.0)}, seed=3)
    assert "share no" in _one_line_error(capsys, a, other)
    assert "at least two" in _one_line_error(capsys, a)
    assert "--fail-above" in _one_line_error(capsys, a, b, "--fail-above", "-5")
    assert "a folder" in _one_line_error(capsys, a, b, "--csv", tmp_path)


def test_a_folder_still_being_written_is_refused(tmp_path, capsys):
    a, b = build(tmp_path / "a"), build(tmp_path / "b", seed=1)
    _edit_manifest(b, status="running")
    assert _lab(capsys, a, b)[0] == 0           # running, but nobody holds it: a crashed run
    held = lock.folder(b)
    try:
        assert "still being written" in _one_line_error(capsys, a, b)
    finally:
        held.close()
