"""What broke under concurrency and signals (issue 11, items 2-7 and 12),
each reproduced: two lab runs at once, --resume of a folder still running,
a dead worker's children, tracefs after a killed BPF-loading worker,
SIGHUP, a second Ctrl-C during cleanup, --probes with --resume, tracefs
busy at unmount.

Every exit path must leave no lab process, no BPF object of the lab, no
tracefs mount the lab made, and a manifest that says what happened with
the resume hint."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lab import lock, store
from lab.probes import tracefs

from .helpers import (
    any_worker_alive,
    background_lab,
    lab_bpf_objects,
    pdf_text,
    requires_root,
    run_dir_of,
    run_lab,
    wait_for,
    workers_of,
)

# long enough to be caught mid-run, every run short (a Ctrl-C is answered
# at once); null_syscall needs no second CPU
LONG_SUITE = """
[suite]
name = "long"
repetitions = 200
timeout = 30
[baseline]
variants = ["null_syscall", "futex_pingpong"]
samples = 20000
"""


def write(tmp_path, text, name="suite.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def manifest_of(out):
    return store.read_manifest(run_dir_of(out))


def wait_first_run(out, proc):
    """Until the background run has finished a run (its manifest shows it)."""
    def one_done():
        assert proc.poll() is None, proc.communicate()
        try:
            runs = manifest_of(out)["runs"]
        except (AssertionError, FileNotFoundError, store.ResultsError):
            return False
        return any(r["status"] == store.OK for r in runs)
    wait_for(one_done, timeout=120)


@contextlib.contextmanager
def long_run(tmp_path, probes="--probes=none"):
    """LONG_SUITE running in the background, past its first run: (its
    process, its --out).  Stopped with Ctrl-C if the test leaves it running."""
    out = str(tmp_path / "res")
    with background_lab(["run", write(tmp_path, LONG_SUITE, "long.toml"), "--out", out, probes,
                         "--quiet"]) as lab:
        wait_first_run(out, lab)
        yield lab, out
        if lab.poll() is None:
            lab.send_signal(signal.SIGINT)
            lab.communicate(timeout=60)


def lab_state():
    """The global state a lab run must leave as it found it."""
    return {"tracefs": tracefs.mount_point(), "marker": os.path.exists(tracefs.MOUNTED_BY_LAB),
            "bpf": lab_bpf_objects(settle=10) if os.geteuid() == 0 else []}


def assert_clean_stop(out, proc, stderr, why):
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    manifest = manifest_of(out)
    run_dir = run_dir_of(out)
    assert manifest["status"] == "interrupted"
    assert why in manifest["stopped_by"]
    assert manifest["resume_hint"] == f"lab run --resume {run_dir}"
    assert not os.path.exists(os.path.join(run_dir, ".scratch"))
    assert not any(r["status"] == "running" for r in manifest["runs"])
    assert not any_worker_alive()


# ---- 2, 3: one measurement per machine, one runner per folder ---------------------

def test_second_lab_run_refuses_naming_the_running_one(tmp_path):
    with long_run(tmp_path) as (first, out):
        running = run_dir_of(out)
        second_out = str(tmp_path / "second")
        proc = run_lab(["run", write(tmp_path, LONG_SUITE, "other.toml"), "--out", second_out,
                        "--probes=none", "--quiet"], timeout=60)
        assert proc.returncode == 75, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert f"pid {first.pid}" in lines[0] and running in lines[0]
        assert "--wait" in lines[0]
        assert not os.path.exists(second_out)       # nothing written


def test_resume_of_a_folder_still_running_is_refused(tmp_path):
    with long_run(tmp_path) as (first, out):
        run_dir = run_dir_of(out)
        before = os.path.getmtime(os.path.join(run_dir, store.MANIFEST))
        proc = run_lab(["run", "--resume", run_dir, "--quiet"], timeout=60)
        assert proc.returncode == 75, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert f"pid {first.pid}" in proc.stderr and run_dir in proc.stderr
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
        assert os.path.getmtime(os.path.join(run_dir, store.MANIFEST)) >= before
    # the refused runner touched nothing: its runner's own stop is what the
    # manifest says, and no ok run became failed
    manifest = store.read_manifest(run_dir)
    assert manifest["status"] == "interrupted"
    assert {r["status"] for r in manifest["runs"]} <= {store.OK, store.INTERRUPTED,
                                                        store.PENDING}


def test_the_folder_lock_refuses_a_second_runner_of_one_folder(tmp_path):
    run_dir = str(tmp_path)
    held = lock.folder(run_dir)
    try:
        code = ("import sys; from lab import lock\n"
                "try:\n    lock.folder(sys.argv[1])\nexcept lock.Busy as e:\n"
                "    print(e); sys.exit(3)\n")
        proc = subprocess.run([sys.executable, "-c", code, run_dir], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 3, proc.stderr
        assert f"is being run by pid {os.getpid()}" in proc.stdout
    finally:
        held.close()


def test_a_run_outside_the_holders_tree_is_refused_by_the_machine_lock(tmp_path):
    """The test session holds the machine lock (conftest); a process that
    is not its descendant (setsid -f: adopted by init) is refused."""
    result = tmp_path / "result.json"
    code = ("import json, sys\nfrom lab import lock\n"
            "try:\n    lock.machine('x').release(); r = 'taken'\n"
            "except lock.Busy as e:\n    r = str(e)\n"
            "open(sys.argv[1], 'w').write(json.dumps(r))\n")
    subprocess.run(["setsid", "-f", sys.executable, "-c", code, str(result)],
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True,
                   timeout=30)
    wait_for(lambda: result.exists() and result.read_text(), timeout=30)
    said = json.loads(result.read_text())
    assert said != "taken"
    assert f"pid {os.getpid()}" in said and "--wait" in said


def test_wait_runs_after_the_running_one(tmp_path):
    short = LONG_SUITE.replace("repetitions = 200", "repetitions = 2")
    out_a, out_b = str(tmp_path / "a"), str(tmp_path / "b")
    with background_lab(["run", write(tmp_path, short.replace("20000", "400000")), "--out",
                         out_a, "--probes=none", "--quiet"]) as first:
        wait_for(lambda: os.path.exists(out_a) and os.listdir(out_a), timeout=60)
        proc = run_lab(["run", write(tmp_path, short, "b.toml"), "--out", out_b,
                        "--probes=none", "--quiet", "--wait"], timeout=300)
        first.communicate(timeout=300)
    assert first.returncode == 0 and proc.returncode == 0, proc.stderr
    assert "waiting for pid" in proc.stderr
    a, b = manifest_of(out_a), manifest_of(out_b)
    assert b["runs"][0]["started_at"] >= a["ended_at"]


def test_a_run_beside_another_lab_worker_is_flagged(tmp_path):
    # a lab worker that is none of the runner's: it waits for its spec
    stranger = subprocess.Popen([sys.executable, "-m", "lab.worker"], stdin=subprocess.PIPE,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = str(tmp_path / "res")
        proc = run_lab(["run", write(tmp_path, LONG_SUITE.replace("200", "1")), "--out", out,
                        "--probes=none", "--quiet"], timeout=120)
        assert proc.returncode == 0, proc.stderr
        runs = manifest_of(out)["runs"]
        assert all(f"pid {stranger.pid}" in " ".join(r["alongside"]) for r in runs)
        assert "another lab measurement beside them" in proc.stderr
        shown = run_lab(["show", run_dir_of(out)], timeout=120)
        assert "runs had another lab measurement beside them" in shown.stdout
        assert f"pid {stranger.pid}" in shown.stdout
        report = run_lab(["report", run_dir_of(out)], timeout=300)
        assert report.returncode == 0, report.stderr
        text = pdf_text(report.stdout.strip())
        assert "runs had another lab measurement beside them" in text
    finally:
        stranger.kill()
        stranger.communicate()
    proc = run_lab(["run", write(tmp_path, LONG_SUITE.replace("200", "1"), "alone.toml"),
                    "--out", str(tmp_path / "alone"), "--probes=none", "--quiet"], timeout=120)
    assert proc.returncode == 0
    assert not any(r["alongside"] for r in manifest_of(str(tmp_path / "alone"))["runs"])


# ---- 4: a dead worker's children --------------------------------------------------

def cyclictests():
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == "cyclictest":
                    found.append(int(entry))
        except OSError:
            pass
    return found


@requires_root
def test_a_killed_workers_children_die_with_it(tmp_path):
    import shutil
    if shutil.which("cyclictest") is None:
        pytest.skip("cyclictest (rt-tests) is not installed")
    assert not cyclictests()
    suite = write(tmp_path, """
[suite]
repetitions = 2
timeout = 60
[upcall]
variants = ["cyclictest"]
interval_us = 1000
samples = 20000
warmup = 0
""")
    out = str(tmp_path / "res")
    with background_lab(["run", suite, "--out", out, "--probes=none", "--quiet"]) as lab:
        worker = wait_for(lambda: workers_of(lab.pid), timeout=60)[0]
        wait_for(cyclictests, timeout=60)
        os.kill(worker, signal.SIGKILL)
        # the next run starts only after the first's cyclictest is gone
        second = wait_for(lambda: [w for w in workers_of(lab.pid) if w != worker], timeout=60)
        assert len(cyclictests()) <= 1, "the killed worker's cyclictest outlived it"
        os.kill(second[0], signal.SIGKILL)
        _, err = lab.communicate(timeout=120)
    assert lab.returncode == 0, err
    assert not cyclictests()
    runs = manifest_of(out)["runs"]
    assert [r["status"] for r in runs] == [store.FAILED, store.FAILED]
    assert all("SIGKILL" in r["reason"] for r in runs)


# ---- 5: tracefs after a BPF-loading worker that timed out --------------------------

@requires_root
def test_tracefs_is_unmounted_after_a_bpf_worker_times_out(tmp_path):
    from .helpers import require_probes
    require_probes()
    before = lab_state()
    if before["tracefs"] is not None:
        pytest.skip("tracefs is mounted by someone else: the lab would not unmount it")
    suite = write(tmp_path, """
[suite]
repetitions = 1
timeout = 3
[upcall]
variants = ["bpf_ringbuf"]
block_kind = "nanosleep"
placement = "same_cpu"
samples = 100000
block_us = 1000
""")
    out = str(tmp_path / "res")
    proc = run_lab(["run", suite, "--out", out, "--probes=none", "--quiet"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in manifest_of(out)["runs"]] == [store.TIMEOUT]
    assert lab_state() == before


# ---- 6, 7: SIGHUP, and a second Ctrl-C during cleanup -----------------------------

def probes_option():
    from lab import probes
    return "--probes=all" if probes.unavailable_reason() is None else "--probes=none"


def test_sighup_stops_cleanly_with_the_resume_hint(tmp_path):
    before = lab_state()
    with long_run(tmp_path, probes_option()) as (lab, out):
        lab.send_signal(signal.SIGHUP)
        _, err = lab.communicate(timeout=60)
    assert_clean_stop(out, lab, err, "SIGHUP")
    assert lab_state() == before


@pytest.mark.parametrize("gap_s", [0.0, 0.02, 0.1, 0.3])
def test_a_second_ctrl_c_does_not_cut_cleanup_short(tmp_path, gap_s):
    before = lab_state()
    with long_run(tmp_path, probes_option()) as (lab, out):
        lab.send_signal(signal.SIGINT)
        time.sleep(gap_s)
        if lab.poll() is None:
            lab.send_signal(signal.SIGINT)
        _, err = lab.communicate(timeout=60)
    assert_clean_stop(out, lab, err, "Ctrl-C")
    assert f"continue with: lab run --resume {run_dir_of(out)}" in err
    assert lab_state() == before


def test_sigterm_while_waiting_for_the_lock_writes_nothing(tmp_path):
    with long_run(tmp_path):
        second_out = str(tmp_path / "second")
        with background_lab(["run", write(tmp_path, LONG_SUITE, "b.toml"), "--out", second_out,
                             "--probes=none", "--wait"]) as waiting:
            time.sleep(1.0)
            waiting.send_signal(signal.SIGTERM)
            _, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 130, err
        assert "waiting for pid" in err and "Traceback" not in err
        assert not os.path.exists(second_out)


# ---- 12: --probes on --resume; tracefs busy at unmount ----------------------------

@requires_root
def test_resume_honours_probes_none(tmp_path):
    from .helpers import require_probes
    require_probes()
    out = str(tmp_path / "res")
    with background_lab(["run", write(tmp_path, LONG_SUITE.replace("200", "3")), "--out", out,
                         "--probes=all", "--quiet"]) as lab:
        wait_first_run(out, lab)
        lab.send_signal(signal.SIGINT)
        lab.communicate(timeout=60)
    run_dir = run_dir_of(out)
    pending = {r["id"] for r in store.read_manifest(run_dir)["runs"] if r["status"] != store.OK}
    assert pending
    proc = run_lab(["run", "--resume", run_dir, "--probes=none", "--quiet"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "compiling" not in proc.stderr
    manifest = store.read_manifest(run_dir)
    assert manifest["kernel_view_on_resume"]["enabled"] is False
    resumed = [r for r in manifest["runs"] if r["id"] in pending]
    assert resumed and all(r["status"] == store.OK and not r["kernel_view"] for r in resumed)


@requires_root
def test_a_busy_tracefs_is_not_detached_from_under_its_reader():
    if tracefs.mount_point() is not None:
        pytest.skip("tracefs is mounted by someone else")
    with tracefs.mounted() as where:
        reader = open(os.path.join(where, "events", "sched", "sched_switch", "format"))
    try:
        # still mounted, still readable: not lazily detached
        assert tracefs.mount_point() == where
        assert "prev_pid" in reader.read()
        assert os.path.exists(tracefs.MOUNTED_BY_LAB)
    finally:
        reader.close()
    tracefs.tidy()      # what the next lab session does: now it can go
    assert tracefs.mount_point() is None
    assert not os.path.exists(tracefs.MOUNTED_BY_LAB)


# ---- 9 (runner side): --out that cannot hold run folders ---------------------------

def bad_out(tmp_path, out, name="t"):
    suite = write(tmp_path, LONG_SUITE.replace('name = "long"', f'name = "{name}"')
                  .replace("200", "1"))
    proc = run_lab(["run", suite, "--out", out, "--quiet"], timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: --out"), proc.stderr
    assert "compiling" not in proc.stderr       # found before the probes compile
    return lines[0]


def test_out_naming_a_file_is_one_line_before_anything(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert "is not a folder" in bad_out(tmp_path, str(target))
    assert "is not a folder" in bad_out(tmp_path, str(target / "below"))
    assert target.read_text() == "keep me"


@requires_root
def test_out_in_a_folder_nobody_may_write_is_one_line(tmp_path):
    locked = tmp_path / "immutable"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        assert "cannot create folders in" in bad_out(tmp_path, str(locked / "res"))
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert os.listdir(locked) == []


def test_a_suite_name_too_long_for_a_folder_writes_nothing(tmp_path):
    out = tmp_path / "res"
    proc = run_lab(["run", write(tmp_path, LONG_SUITE.replace('name = "long"',
                                                              f'name = "{"n" * 300}"')),
                    "--out", str(out), "--quiet"], timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()
