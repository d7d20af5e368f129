"""Suite validation: bad input gets one line naming the file, the key and
what is allowed; `lab run` exits 2 and writes nothing."""

import os
import subprocess
import sys

import pytest

from lab import suite as suite_mod
from lab.runner import plan
from lab.suite import SuiteError

ALL_CAPS = {"native": None, "io_uring": None, "two_cpus": None, "fibers": None, "root": None}


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("body, key, allowed", [
    ("[nosuch]\nx = 1\n", "[nosuch]", "known: baseline"),
    ("[baseline]\nvariants = ['warp_drive']\n", "baseline.variants", "allowed: clock_read"),
    ("[baseline]\nsampels = 10\n", "baseline.sampels", "allowed: variants, samples"),
    ("[baseline]\nsamples = 'many'\n", "baseline.samples", "expected an integer"),
    ("[baseline]\nsamples = 5\n", "baseline.samples", "out of range 10..10000000"),
    ("[baseline]\nsamples = true\n", "baseline.samples", "expected an integer"),
    ("[baseline]\nplacement = 'far'\n", "baseline.placement", "same_cpu, cross_cpu"),
    ("[baseline]\nbatch = [1, 5000]\n", "baseline.batch", "out of range 1..4096"),
    ("[baseline]\nbatch = []\n", "baseline.batch", "empty list"),
    ("[baseline]\nbatch = [4, 4]\n", "baseline.batch", "listed twice"),
    ("[suite]\nrepetitions = 0\n[baseline]\n", "suite.repetitions", "out of range 1..1000"),
    ("[suite]\ntimeout = 'long'\n[baseline]\n", "suite.timeout", "expected a number"),
    ("[suite]\nrepeat = 3\n[baseline]\n", "suite.repeat", "unknown setting"),
    ("[suite]\nname = 'a/b'\n[baseline]\n", "suite.name", "cannot name a results folder"),
    ("[suite]\n", "no family tables", "[baseline]"),
    ("[baseline\n", "not valid TOML", ""),
])
def test_bad_suite_names_file_key_and_allowed(tmp_path, body, key, allowed):
    path = write(tmp_path, body)
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    msg = str(err.value)
    assert msg.startswith(path + ": ")
    assert key in msg and allowed in msg
    assert "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="cannot read suite"):
        suite_mod.load(str(tmp_path / "absent.toml"))


def test_points_sweep_only_the_params_a_variant_reads(tmp_path):
    s = suite_mod.load(write(tmp_path, "[baseline]\nbatch = [1, 8]\n"
                                       "placement = ['same_cpu', 'cross_cpu']\n"))
    (sel,) = s.families["baseline"]
    fam = sel.family
    assert len(sel.points(fam.variant("null_syscall"))) == 1
    assert [p["batch"] for p in sel.points(fam.variant("uring_nop_batched"))] == [1, 8]
    assert [p["placement"] for p in sel.points(fam.variant("futex_pingpong"))] == \
        ["same_cpu", "cross_cpu"]
    # defaults fill what the suite leaves out
    assert sel.points(fam.variant("null_syscall"))[0]["samples"] == fam.param("samples").default


def test_plan_interleaves_and_rotates(tmp_path):
    s = suite_mod.load(write(tmp_path, "[suite]\nrepetitions = 3\n"
                                       "[baseline]\nvariants = ['clock_read', 'null_syscall', 'swapcontext']\n"))
    runs, skipped = plan(s, ALL_CAPS)
    assert not skipped
    order = [r.variant for r in runs]
    # never all of A then all of B: each repetition visits every variant once
    for rep in range(3):
        assert sorted(order[rep * 3:rep * 3 + 3]) == ["clock_read", "null_syscall", "swapcontext"]
    # and the starting variant rotates
    assert len({order[0], order[3], order[6]}) == 3
    assert [r.id for r in runs] == list(range(1, 10))


def test_plan_skips_missing_capabilities_with_reason(tmp_path):
    s = suite_mod.load(write(tmp_path, "[baseline]\nplacement = ['same_cpu', 'cross_cpu']\n"))
    caps = dict(ALL_CAPS, io_uring="EPERM: io_uring_disabled=2", two_cpus="only 1 CPU usable")
    runs, skipped = plan(s, caps)
    skipped_names = {(x["variant"], x["params"].get("placement")) for x in skipped}
    assert ("uring_nop", None) in skipped_names and ("uring_nop_batched", None) in skipped_names
    assert ("futex_pingpong", "cross_cpu") in skipped_names
    assert all("io_uring: EPERM" in x["reason"] or "two_cpus" in x["reason"] for x in skipped)
    assert not any(r.variant.startswith("uring") for r in runs)
    assert {r.params.get("placement") for r in runs if r.variant == "futex_pingpong"} == {"same_cpu"}


@pytest.mark.parametrize("body", [
    "[baseline]\nsamples = 0\n",
    "[suite]\ncpu = 4000\n[baseline]\nvariants = ['null_syscall']\n",
    "[suite]\npeer_cpu = 0\n[baseline]\nvariants = ['futex_pingpong']\nplacement = 'cross_cpu'\n",
])
def test_lab_run_bad_input_exits_2_and_writes_nothing(tmp_path, body):
    path = write(tmp_path, body)
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", path, "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: " + path)
    assert not out.exists() or not os.listdir(out)


def test_array_of_tables_sweeps_each_product_once(tmp_path):
    s = suite_mod.load(write(tmp_path, "[suite]\nrepetitions = 1\n"
                                       "[[baseline]]\nvariants = ['uring_nop_batched']\n"
                                       "batch = [1, 8]\n"
                                       "[[baseline]]\nvariants = ['uring_nop_batched', 'null_syscall']\n"
                                       "batch = [8, 64]\n"))
    runs, skipped = plan(s, ALL_CAPS)
    points = [(r.variant, r.params.get("batch")) for r in runs]
    # batch 8 is in both tables: it runs once
    assert sorted(points) == [("null_syscall", None), ("uring_nop_batched", 1),
                              ("uring_nop_batched", 8), ("uring_nop_batched", 64)]


def test_array_of_tables_errors_name_the_table(tmp_path):
    path = write(tmp_path, "[[baseline]]\nsamples = 100\n[[baseline]]\nsamples = 1\n")
    with pytest.raises(SuiteError, match=r"baseline\[1\]\.samples: 1 is out of range"):
        suite_mod.load(path)
