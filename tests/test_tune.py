"""lab tune / lab tune --reset: every file tune touches is put back byte for
byte, --dry-run changes nothing, the latency holder lives exactly as long as
the tuning, a failed reset keeps its state and says how to retry, and a
non-root user gets the would-do list and a non-zero exit.

These tests change the machine's kernel state (haltpoll, IRQ affinity, the
CPU latency limit): the ``as_found`` fixture puts back everything it read
before the test, whatever the test did, so the suite never leaves the
machine tuned."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess

import pytest

from lab import tune

from .helpers import LAB, requires_root, run_lab

pytestmark = requires_root


def _tunable_files() -> list[str]:
    """Every file lab tune may write here (and the haltpoll ones it leaves)."""
    return sorted(glob.glob(f"{tune.HALTPOLL}/*") + glob.glob(f"{tune.IRQ_DIR}/*/smp_affinity_list")
                  + [tune.IRQ_DEFAULT]
                  + glob.glob(f"{tune.CPU_DIR}/cpu*/cpufreq/scaling_governor"))


def _snapshot() -> dict[str, bytes]:
    found = {}
    for path in _tunable_files():
        with contextlib.suppress(OSError), open(path, "rb") as f:
            found[path] = f.read()
    return found


def _holders() -> list[int]:
    """Live latency holders (a zombie holds nothing: its fds are closed)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
            if f.read().strip() == tune.HOLDER_COMM and tune._start_time(int(entry)):
                pids.append(int(entry))
    return pids


@pytest.fixture
def as_found():
    """The machine's tunable files as they were; put back after the test,
    whatever happened in it (reset first, then file by file)."""
    if os.path.lexists(tune.STATE_FILE):
        pytest.skip(f"this machine is tuned ({tune.STATE_FILE}): the tests would undo it")
    before = _snapshot()
    yield before
    with contextlib.suppress(Exception):
        state = tune.read_state()
        if state:
            tune.reset(state, say=lambda line: None)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tune.STATE_FILE)
    for pid in _holders():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for path, data in before.items():
        with contextlib.suppress(OSError):
            if open(path, "rb").read() != data:
                tune._write(path, data.decode("utf-8", "surrogateescape"))
    assert _snapshot() == before, "the fixture could not put the machine back"


def _state() -> dict:
    with open(tune.STATE_FILE) as f:
        return json.load(f)


def test_tune_then_reset_restores_every_file(as_found):
    planned = tune.plan(tune.default_cpus())
    proc = run_lab(["tune"])
    assert proc.returncode == 0, proc.stderr
    st = os.stat(tune.STATE_FILE)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o644
    state = _state()
    written = {c["path"] for c in state["changes"]}
    refused = {r["path"] for r in state["refused"]}
    assert written | refused >= {c.path for c in planned.changes}
    for c in state["changes"]:
        assert as_found[c["path"]].decode() == c["old"], "the old contents are saved as read"
        with open(c["path"]) as f:
            assert f.read().strip() == c["new"], c["path"]
    for path in refused:
        assert f"skipped {path}" in proc.stderr, "a refused change is said"

    if planned.hold_us is not None:
        hold = state["hold"]
        assert hold and tune.hold_alive(hold) and _holders() == [hold["pid"]]
        assert tune.current_latency_us() == tune.LATENCY_US
        with open(f"/proc/{hold['pid']}/stat") as f:     # its own session
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) == hold["pid"]

    from lab import environment
    print_ = environment.fingerprint()
    assert print_["tuning.cpus"] == "0"
    for concern in tune.CONCERNS:
        assert not print_[f"tuning.{concern}"].startswith("untuned"), (concern, print_)

    again = run_lab(["tune"])
    assert again.returncode == 2 and "already tuned" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    proc = run_lab(["tune", "--reset"])
    assert proc.returncode == 0, proc.stderr
    assert "did not end on SIGTERM" not in proc.stderr and "already ended" not in proc.stderr
    assert _snapshot() == as_found, "reset puts back every file byte for byte"
    assert not os.path.lexists(tune.STATE_FILE)
    assert _holders() == []
    if planned.hold_us is not None:
        assert tune.current_latency_us() == tune.LATENCY_DEFAULT_US

    proc = run_lab(["tune", "--reset"])
    assert proc.returncode == 0 and "nothing to reset" in proc.stdout


def test_dry_run_changes_nothing_and_lists_the_changes(as_found):
    planned = tune.plan(tune.default_cpus())
    proc = run_lab(["tune", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert _snapshot() == as_found
    assert not os.path.lexists(tune.STATE_FILE) and _holders() == []
    for c in planned.changes:
        assert f"{c.path}: {c.old.strip()} -> {c.new}" in proc.stdout
    for concern in tune.CONCERNS:
        assert f"\n{concern}: " in "\n" + proc.stdout


def test_a_failed_reset_keeps_the_state_and_says_how_to_retry(as_found):
    unwritable = os.path.join(tune.HALTPOLL if os.path.isdir(tune.HALTPOLL) else tune.IRQ_DIR,
                              "no_such_parameter")
    tune._save({"format": tune.STATE_FORMAT, "version": tune.STATE_VERSION,
                "tuned_at": "test", "cpus": [0], "refused": [], "hold": None,
                "changes": [{"concern": "haltpoll", "path": unwritable, "old": "1\n",
                             "new": "2"}]})
    proc = run_lab(["tune", "--reset"])
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and unwritable in error[0] and "lab tune --reset` again" in error[0]
    assert [c["path"] for c in _state()["changes"]] == [unwritable]


def test_an_untrusted_state_file_is_refused(as_found):
    good = {"format": tune.STATE_FORMAT, "version": tune.STATE_VERSION, "tuned_at": "test",
            "cpus": [0], "refused": [], "hold": None, "changes": []}
    tune._save({**good, "changes": [{"concern": "haltpoll", "path": "/etc/passwd",
                                     "old": "", "new": ""}]})
    proc = run_lab(["tune", "--reset"])
    assert proc.returncode == 2 and "not a file lab tune writes" in proc.stderr
    tune._save(good)
    os.chmod(tune.STATE_FILE, 0o666)
    proc = run_lab(["tune", "--reset"])
    assert proc.returncode == 2 and "not trusted" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture
def stopping_signals():
    """lab.signals' handlers in this process for one test, then pytest's back."""
    from lab import signals
    saved = {sig: signal.getsignal(sig) for sig in signals.STOPPING}
    signals.install()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    signals.stopped_by, signals._installed = None, False


def test_a_stop_mid_tune_puts_back_what_was_done(as_found, monkeypatch, stopping_signals):
    """SIGTERM while the second change is made: that change finishes
    (signals.held), then everything done is put back."""
    planned = tune.plan(tune.default_cpus())
    if len(planned.changes) < 3:
        pytest.skip("fewer than 3 changes to make here")
    real_write, done = tune._write, []

    def write_and_stop(path, text):
        if len(done) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        real_write(path, text)
        done.append(path)

    monkeypatch.setattr(tune, "_write", write_and_stop)
    with pytest.raises(KeyboardInterrupt):
        tune.tune(planned, say=lambda line: None)
    made = [c.path for c in planned.changes[:2]]
    assert done == made + made[::-1], "two changes made whole, then put back in reverse"
    assert _snapshot() == as_found and not os.path.lexists(tune.STATE_FILE)
    assert _holders() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("after", ["haltpoll:", "(measured CPUs"])
def test_a_signal_during_tune_leaves_the_old_state_or_one_reset_restores(as_found, signum,
                                                                          after):
    """Whenever it lands (after the plan's first line, or its last: the
    changes are being made): the machine as it was, or a saved state that
    --reset turns back into it."""
    proc = subprocess.Popen(LAB + ["tune"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith(after):
            break
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err
    if os.path.lexists(tune.STATE_FILE):
        assert run_lab(["tune", "--reset"]).returncode == 0
    assert _snapshot() == as_found and _holders() == []


def _as_nobody() -> list[str] | None:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if setpriv else None


def test_without_root_it_says_what_it_would_do(as_found):
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("no setpriv to run as nobody")
    # a checkout under a private folder (CI's mktemp -d) is not nobody's to read
    probe = subprocess.run(prefix + LAB + ["--version"], capture_output=True, text=True,
                           timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if probe.returncode != 0:
        pytest.skip(f"the lab cannot run as nobody here: {probe.stderr.strip()}")
    planned = tune.plan(tune.default_cpus())
    proc = subprocess.run(prefix + LAB + ["tune"], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 1, proc.stderr
    assert "needs root" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    for c in planned.changes:
        assert f"{c.path}: {c.old.strip()} -> {c.new}" in proc.stdout
    assert _snapshot() == as_found and not os.path.lexists(tune.STATE_FILE)


def _every_cpu() -> str:
    from lab.environment import _format_cpulist
    return _format_cpulist(tune.online_cpus())


@pytest.mark.parametrize("cpus, why", [("x", "not a CPU list"), ("0,", "not a CPU list"),
                                        ("4095", "not online"), (_every_cpu(), "leaving none")])
def test_bad_cpus(cpus, why):
    proc = run_lab(["tune", "--dry-run", "--cpus", cpus])
    assert proc.returncode == 2 and why in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
