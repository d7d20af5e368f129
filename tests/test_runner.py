"""The runner's promises, exercised for real: a run that overstays its
timeout is killed and recorded, a crashing worker is recorded and the suite
goes on, Ctrl-C keeps finished runs and leaves no worker behind, resume
finishes the rest, io_uring switched off by sysctl skips its variants with
the reason in the manifest."""

import json
import os
import signal
import subprocess
import sys

import pytest

from lab import store

from .helpers import (
    LAB,
    any_worker_alive,
    background_lab,
    multithreaded_worker,
    requires_root,
    run_dir_of,
    wait_for,
    workers_of,
)


def write_suite(tmp_path, body, name="t"):
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return str(path)


# a run that takes far longer than any timeout used below: 10^6 cross-CPU
# round trips (tens of seconds even where waking a CPU is fast)
LONG = "[baseline]\nvariants = ['futex_pingpong', 'null_syscall']\nsamples = 1000000\n" \
       "warmup = 0\nops_per_sample = 1\nplacement = 'cross_cpu'\n"


def test_timeout_is_recorded_and_suite_goes_on(tmp_path):
    if os.cpu_count() < 2:
        pytest.skip("needs two CPUs")
    suite = write_suite(tmp_path, "[suite]\nrepetitions = 1\ntimeout = 1\n" + LONG)
    out = str(tmp_path / "res")
    proc = subprocess.run(LAB + ["run", suite, "--out", out, "--quiet"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    m = store.read_manifest(run_dir_of(out))
    by_variant = {r["variant"]: r for r in m["runs"]}
    assert by_variant["futex_pingpong"]["status"] == "timeout"
    assert by_variant["futex_pingpong"]["reason"] == "timed out after 1 s"
    assert by_variant["futex_pingpong"]["samples_file"] is None
    assert by_variant["null_syscall"]["status"] == "ok"
    assert m["status"] == "complete"
    assert not any_worker_alive()


def test_crashed_worker_is_recorded_and_suite_goes_on(tmp_path):
    if os.cpu_count() < 2:
        pytest.skip("needs two CPUs")
    suite = write_suite(tmp_path, "[suite]\nrepetitions = 1\ntimeout = 120\n" + LONG)
    out = str(tmp_path / "res")
    with background_lab(["run", suite, "--out", out, "--quiet"]) as lab:
        # the long futex run comes first or second; crash it when it runs
        os.kill(wait_for(lambda: multithreaded_worker(lab.pid)), signal.SIGSEGV)
        stdout, stderr = lab.communicate(timeout=60)
    assert lab.returncode == 0, stderr
    m = store.read_manifest(run_dir_of(out))
    by_variant = {r["variant"]: r for r in m["runs"]}
    assert by_variant["futex_pingpong"]["status"] == "failed"
    assert "SIGSEGV" in by_variant["futex_pingpong"]["reason"]
    assert by_variant["null_syscall"]["status"] == "ok"


def test_ctrl_c_keeps_finished_runs_and_resume_finishes(tmp_path):
    suite = write_suite(tmp_path, "[suite]\nrepetitions = 4\ntimeout = 60\n"
                                  "[baseline]\nvariants = ['null_syscall', 'swapcontext']\n"
                                  "samples = 2000\nops_per_sample = 200\n")
    out = str(tmp_path / "res")
    with background_lab(["run", suite, "--out", out, "--quiet"]) as lab:
        def one_ok_and_a_worker_running():
            try:
                m = store.read_manifest(run_dir_of(out))
            except (AssertionError, FileNotFoundError, store.ResultsError):
                return False
            return any(r["status"] == "ok" for r in m["runs"]) and workers_of(lab.pid)
        wait_for(one_ok_and_a_worker_running)
        lab.send_signal(signal.SIGINT)
        stdout, stderr = lab.communicate(timeout=30)
    assert lab.returncode == 130, stderr
    assert "lab run --resume" in stderr
    run_dir = run_dir_of(out)
    m = store.read_manifest(run_dir)
    assert m["status"] == "interrupted"
    statuses = [r["status"] for r in m["runs"]]
    assert "ok" in statuses and set(statuses) <= {"ok", "interrupted", "pending"}
    assert statuses.count("ok") < len(statuses)
    for r in m["runs"]:
        has_file = r["samples_file"] is not None
        assert has_file == (r["status"] == "ok")
        if has_file:
            assert os.path.isfile(os.path.join(run_dir, r["samples_file"]))
    assert not any_worker_alive()
    assert not os.path.exists(os.path.join(run_dir, ".scratch"))

    proc = subprocess.run(LAB + ["run", "--resume", run_dir, "--quiet"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    m = store.read_manifest(run_dir)
    assert m["status"] == "complete"
    assert all(r["status"] == "ok" for r in m["runs"])


def test_manifest_records_provenance(tmp_path):
    suite = write_suite(tmp_path, "[suite]\nrepetitions = 2\n"
                                  "[baseline]\nvariants = ['null_syscall']\nsamples = 50\n")
    out = str(tmp_path / "res")
    proc = subprocess.run(LAB + ["run", suite, "--out", out, "--quiet"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run_dir = run_dir_of(out)
    assert proc.stdout.strip() == run_dir
    m = store.read_manifest(run_dir)
    for key in ("suite", "package_version", "git_revision", "started_at", "ended_at",
                "environment", "capabilities", "families", "runs"):
        assert m[key], key
    assert m["suite"]["name"] == "t"
    assert "kernel.release" in m["environment"]
    assert [r["repetition"] for r in m["runs"]] == [0, 1]
    assert all(r["n_samples"] == {"ns_per_op": 50} for r in m["runs"])
    with open(os.path.join(run_dir, store.SUITE_COPY)) as f:
        assert f.read() == open(suite).read()


def test_unknown_format_version_refused(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / store.MANIFEST).write_text(json.dumps(
        {"format": store.FORMAT, "format_version": 99, "package_version": "9.9"}))
    with pytest.raises(store.ResultsError, match="format version 99 is not supported"):
        store.read_manifest(str(run_dir))
    proc = subprocess.run(LAB + ["show", str(run_dir)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "format version 99" in proc.stderr


@requires_root
def test_io_uring_disabled_skips_its_variants_with_reason(tmp_path):
    knob = "/proc/sys/kernel/io_uring_disabled"
    if not os.path.exists(knob):
        pytest.skip("kernel has no io_uring_disabled sysctl")
    suite = write_suite(tmp_path, "[suite]\nrepetitions = 1\n"
                                  "[baseline]\nvariants = ['null_syscall', 'uring_nop']\nsamples = 50\n")
    out = str(tmp_path / "res")
    with open(knob) as f:
        saved = f.read().strip()
    try:
        with open(knob, "w") as f:
            f.write("2")
        proc = subprocess.run(LAB + ["run", suite, "--out", out, "--quiet"],
                              capture_output=True, text=True, timeout=60)
    finally:
        with open(knob, "w") as f:
            f.write(saved)
    assert proc.returncode == 0, proc.stderr
    assert "skipping baseline/uring_nop" in proc.stderr
    m = store.read_manifest(run_dir_of(out))
    assert [r["variant"] for r in m["runs"]] == ["null_syscall"]
    (skip,) = m["skipped"]
    assert skip["variant"] == "uring_nop" and "EPERM" in skip["reason"]


# `lab run` with the observer's arm() raising: what the probe layer raises
# fails that run, anything else is a bug and stops the suite with its traceback
_FAILING_ARM = """
import sys
from lab import cli, probes, runner
def arm(self, tgids):
    raise {error}
runner.NoObserver.arm = arm
sys.exit(cli.main(sys.argv[1:]))
"""


def _run_with_failing_arm(tmp_path, error):
    suite = write_suite(tmp_path, "[suite]\nrepetitions = 2\n"
                                  "[baseline]\nvariants = ['null_syscall']\nsamples = 50\n")
    out = str(tmp_path / "res")
    script = _FAILING_ARM.format(error=error)
    proc = subprocess.run([sys.executable, "-c", script, "run", suite, "--out", out, "--quiet",
                           "--probes", "none"], capture_output=True, text=True, timeout=60)
    return proc, store.read_manifest(run_dir_of(out))


def test_probe_failure_fails_the_run_and_the_suite_goes_on(tmp_path):
    proc, m = _run_with_failing_arm(tmp_path, "probes.ProbeError('lab_ctl is gone')")
    assert proc.returncode == 0, proc.stderr
    assert m["status"] == "complete"
    assert [(r["status"], r["reason"]) for r in m["runs"]] == \
        [("failed", "probes: lab_ctl is gone")] * 2
    assert not any_worker_alive()


def test_a_bug_beside_the_probes_is_a_bug(tmp_path):
    proc, m = _run_with_failing_arm(tmp_path, "TypeError('not a probe failure')")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "TypeError: not a probe failure" in proc.stderr
    assert m["status"] == "aborted"
    assert m["stopped_by"] == "TypeError: not a probe failure"
    assert "probes:" not in json.dumps(m["runs"])
    assert not any_worker_alive()
