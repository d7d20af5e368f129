"""Shared test helpers."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

LAB = [sys.executable, "-m", "lab.cli"]

# Privileged tests skip unless root; UPCALL_LAB_FORCE_ROOT_TESTS=1 runs them
# anyway (to see how they fail without privileges).
FORCE_ROOT = os.environ.get("UPCALL_LAB_FORCE_ROOT_TESTS") == "1"
requires_root = pytest.mark.skipif(os.geteuid() != 0 and not FORCE_ROOT,
                                   reason="needs root (UPCALL_LAB_FORCE_ROOT_TESTS=1 forces)")


def require_probes():
    """Skip unless the lab's probes can run here (root, bcc, headers)."""
    from lab import probes
    reason = probes.unavailable_reason()
    if reason and not FORCE_ROOT:
        pytest.skip(f"probes unavailable: {reason}")


def run_dir_of(out):
    """The one run folder `lab run --out out` made."""
    dirs = [os.path.join(out, d) for d in os.listdir(out)]
    assert len(dirs) == 1
    return dirs[0]


def _parent_and_cmdline(pid):
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return ppid, f.read()


def workers_of(pid):
    """Live lab.worker processes whose parent is pid (the runner's zygote
    is none: it forks them)."""
    from lab.lock import is_worker
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid, _ = _parent_and_cmdline(entry)
        except (OSError, IndexError):
            continue
        if ppid == pid and is_worker(int(entry)):
            found.append(int(entry))
    return found


def multithreaded_worker(lab_pid):
    """A worker of lab_pid that has started its second thread (a ping-pong
    in its hot loop), or None."""
    for pid in workers_of(lab_pid):
        try:
            if len(os.listdir(f"/proc/{pid}/task")) >= 2:
                return pid
        except FileNotFoundError:
            pass
    return None


def any_worker_alive():
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"lab.worker" in _parent_and_cmdline(entry)[1]:
                return True
        except (OSError, IndexError):
            pass
    return False


def wait_for(predicate, timeout=30.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


@contextlib.contextmanager
def background_lab(args):
    """`lab ARGS` running in the background; killed if the test leaves early."""
    lab = subprocess.Popen(LAB + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        yield lab
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.communicate()


def run_lab(args, timeout=300, **kw):
    """`lab ARGS` to completion."""
    return subprocess.run(LAB + list(args), capture_output=True, text=True, timeout=timeout, **kw)


# perf record's buffer per CPU (-m) in the tests that compare perf with the
# probes: it holds every event of their runs unread, since with the CPUs
# busy perf's reader may not run before the end, and a full buffer drops
PERF_BUFFER = "16M"


@contextlib.contextmanager
def tracefs_as_found():
    """perf mounts tracefs when it needs it and leaves it mounted, which
    would make the tests after it see somebody else's tracefs: put it back
    as it was."""
    import ctypes
    import ctypes.util

    from lab.probes import tracefs
    before = tracefs.mount_point()
    try:
        yield
    finally:
        if before is None and tracefs.mount_point() == tracefs.TRACEFS:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            assert libc.umount2(tracefs.TRACEFS.encode(), 0) == 0, \
                f"cannot unmount the tracefs perf left: {os.strerror(ctypes.get_errno())}"


def lab_bpf_objects(settle: float = 0.0):
    """Names of loaded BPF programs and maps that are the lab's (lab_*).
    settle > 0: wait up to that many seconds for the list to empty first,
    since the kernel frees a closed raw tracepoint's program, and the maps
    after it, an RCU grace period later, not when the last fd closes."""
    deadline = time.monotonic() + settle
    while True:
        names = _lab_bpf_objects()
        if not names or time.monotonic() >= deadline:
            return names
        time.sleep(0.05)


def _lab_bpf_objects():
    names = []
    for kind in ("prog", "map"):
        out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True,
                             check=True).stdout
        names += [f"{kind} {o.get('name')}" for o in json.loads(out or "[]")
                  if str(o.get("name", "")).startswith("lab_")]
    return names


def pdf_text(path: str) -> str:
    """The text of a PDF report, wrapped lines joined again."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    out = subprocess.run(["pdftotext", "-layout", path, "-"], capture_output=True, text=True,
                         check=True).stdout
    return " ".join(out.split())
