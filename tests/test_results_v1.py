"""The frozen version-1 results folder (tests/data/results-v1, its README
says why it is never regenerated): what every later lab must still read,
as pyperf keeps old JSON files, and a future version refused in one line."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from analysis import (
    counter_summary,
    family_summary,
    headline,
    kernel_view_table,
    load_run,
    load_wakeups,
    show_text,
    throughput_summary,
)
from lab import store

from .conftest import REPO
from .helpers import run_lab

V1 = os.path.join(os.path.dirname(__file__), "data", "results-v1")
FAMILIES = ("baseline", "syncfirst", "chains", "upcall", "activations", "msgport", "probe_cost")


@pytest.fixture
def v1_copy(tmp_path):
    """A copy of the frozen folder: readers must not write into it, and
    `lab report` does (RUN_DIR/report.pdf unless told otherwise)."""
    return shutil.copytree(V1, tmp_path / "results-v1")


def test_v1_loads():
    run = load_run(V1)
    assert run.manifest["format_version"] == 1
    assert tuple(run.family_names()) == FAMILIES
    assert (run.runs["status"] == store.OK).all()
    assert len(run.runs) == 17 and run.skipped.empty
    assert set(run.samples["run_id"]) == set(run.runs["run_id"])
    assert not run.counters.empty
    # written with every probe attached (README): the kernel view reads too
    assert set(run.metrics["run_id"]) == set(run.runs["run_id"])
    assert set(load_wakeups(run)["run_id"]) <= set(run.runs["run_id"]) and len(load_wakeups(run))


@pytest.mark.parametrize("family", FAMILIES)
def test_v1_summaries(family):
    run = load_run(V1)
    table = headline(run, family)
    ran = run.runs[run.runs["family"] == family]
    assert set(table["variant"]) == set(ran["variant"])
    assert (table["median"] > 0).all()
    assert not family_summary(run, family).empty
    assert not throughput_summary(run, family).empty
    counter_summary(run, family)
    assert not kernel_view_table(run, family).empty


def test_v1_show():
    text = show_text(load_run(V1))
    for family in FAMILIES:
        assert family in text
    proc = run_lab(["show", V1], timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == text.strip()


def test_v1_report(v1_copy, tmp_path):
    pdf = tmp_path / "v1.pdf"
    proc = run_lab(["report", str(v1_copy), "-o", str(pdf)], timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert pdf.read_bytes().startswith(b"%PDF")


def test_a_future_version_is_refused_in_one_line(v1_copy):
    path = os.path.join(v1_copy, store.MANIFEST)
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    future = store.FORMAT_VERSION + 1
    manifest["format_version"] = future
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    expected = (f"{path}: results format version {future} is not supported (this lab reads "
                f"version {store.FORMAT_VERSION}); use the lab version that wrote it "
                f"({manifest['package_version']}) or re-run the suite")
    with pytest.raises(store.ResultsError) as refused:
        load_run(str(v1_copy))
    assert str(refused.value) == expected
    proc = run_lab(["show", str(v1_copy)], timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"lab: error: {expected}"]
