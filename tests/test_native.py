"""Smoke tests of the native workers, called directly (no runner).

They assert properties, not timings: every worker returns positive, finite
samples; orderings that hold by a wide margin on any machine (a user-level
fiber switch is far cheaper than a futex handoff between threads); the
handshake protocol and its error paths.
"""

import os
import threading

import numpy as np
import pytest

from lab.native import NativeError, check, double_ptr, load, standalone_handshake

ffi, lib = load()
N = 200


def no_runner():
    return standalone_handshake()


def run_simple(name, *args, n=N):
    out = np.zeros(n)
    hs = no_runner()
    check(getattr(lib, name)(hs, *args, double_ptr(ffi, out)), name)
    assert hs.window_end_ns > hs.window_begin_ns > 0
    return out


def plausible(samples):
    assert samples.size > 0
    assert np.all(np.isfinite(samples)) and np.all(samples > 0)
    # nothing in the baseline takes a second per operation
    assert np.median(samples) < 1e9


@pytest.mark.parametrize("name", ["baseline_clock_read", "baseline_null_syscall",
                                  "baseline_fiber_switch", "baseline_swapcontext"])
def test_simple_workers_return_plausible_samples(name):
    plausible(run_simple(name, 10, N, 20))


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_uring_nop_plausible(batch):
    plausible(run_simple("baseline_uring_nop", batch, 0, 10, N, 5))


def test_uring_nop_async_plausible():
    plausible(run_simple("baseline_uring_nop", 1, 1 << 4, 10, N, 1))     # IOSQE_ASYNC


def test_uring_nop_rejects_bad_batch():
    out = np.zeros(N)
    assert lib.baseline_uring_nop(no_runner(), 0, 0, 0, N, 1, double_ptr(ffi, out)) == -22
    assert lib.baseline_uring_nop(no_runner(), 5000, 0, 0, N, 1, double_ptr(ffi, out)) == -22


@pytest.mark.parametrize("peer", [0, 1])
def test_futex_pingpong_samples(peer):
    if peer >= os.cpu_count():
        pytest.skip("needs a second CPU")
    rt, handoff = np.zeros(N), np.zeros(2 * N)
    check(lib.baseline_futex_pingpong(no_runner(), 0, peer, 10, N, double_ptr(ffi, rt),
                                      double_ptr(ffi, handoff)), "futex")
    plausible(rt)
    plausible(handoff)
    # a round trip is two handoffs plus the clock reads: never less than one
    assert np.median(rt) > np.median(handoff)


@pytest.mark.parametrize("peer", [0, 1])
def test_pipe_pingpong_samples(peer):
    if peer >= os.cpu_count():
        pytest.skip("needs a second CPU")
    rt = np.zeros(N)
    check(lib.baseline_pipe_pingpong(no_runner(), 0, peer, 10, N, double_ptr(ffi, rt)), "pipe")
    plausible(rt)


def test_fiber_switch_far_cheaper_than_futex_handoff():
    fiber = run_simple("baseline_fiber_switch", 10, N, 100)
    rt, handoff = np.zeros(N), np.zeros(2 * N)
    check(lib.baseline_futex_pingpong(no_runner(), 0, 0, 10, N, double_ptr(ffi, rt),
                                      double_ptr(ffi, handoff)), "futex")
    # a fiber switch stays in user space; a handoff is two system calls and
    # a kernel context switch: well over an order of magnitude apart
    assert np.median(fiber) * 10 < np.median(handoff)


def test_fiber_switch_cheaper_than_swapcontext():
    # swapcontext(3) makes an rt_sigprocmask system call per switch
    fiber = run_simple("baseline_fiber_switch", 10, N, 100)
    swap = run_simple("baseline_swapcontext", 10, N, 100)
    assert np.median(fiber) * 3 < np.median(swap)


def test_fiber_supported_here():
    assert lib.lab_fiber_supported() == (1 if os.uname().machine == "x86_64" else 0)


def test_futex_helpers():
    word = ffi.new("uint32_t *", 5)
    assert lib.lab_futex_wait(word, 4) == -11      # EAGAIN: value changed
    assert lib.lab_futex_wake(word, 1) == 0        # nobody waiting


def test_pin_self_rejects_bad_cpu():
    assert lib.lab_pin_self(-1) == -22
    assert lib.lab_pin_self(4095) == -22           # EINVAL: not a CPU here


def test_check_names_errno():
    with pytest.raises(NativeError, match=r"thing: .*\(EPERM\)"):
        check(-1, "thing")


def _handshake_pipes():
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    hs = ffi.new("struct lab_handshake *", {"ready_fd": ready_w, "go_fd": go_r})
    return hs, ready_r, go_w, (ready_r, ready_w, go_r, go_w)


def drive_handshake(call, check_ready):
    """Run call(hs) in a thread (cffi releases the GIL) and play the runner:
    read "ready ...", let check_ready(words) look, answer go, done, ack."""
    hs, ready_r, go_w, fds = _handshake_pipes()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", call(hs)))
    t.start()
    try:
        with os.fdopen(ready_r, "rb", buffering=0, closefd=False) as r:
            check_ready(r.readline().split(), hs)
            os.write(go_w, b"go\n")
            assert r.readline() == b"done\n"
            os.write(go_w, b"ack\n")
    finally:
        t.join()
        for fd in fds:
            os.close(fd)
    return hs, result["rc"]


def test_handshake_protocol():
    out = np.zeros(N)

    def check_ready(words, hs):
        assert words == [b"ready", str(os.getpid()).encode()]
        assert hs.window_begin_ns == 0      # nothing measured before "go"

    hs, rc = drive_handshake(
        lambda hs: lib.baseline_null_syscall(hs, 5, N, 10, double_ptr(ffi, out)), check_ready)
    assert rc == 0
    assert hs.window_end_ns > hs.window_begin_ns
    plausible(out)


def test_handshake_runner_gone():
    hs, ready_r, go_w, fds = _handshake_pipes()
    os.close(go_w)                          # runner closes without "go"
    out = np.zeros(N)
    rc = lib.baseline_null_syscall(hs, 5, N, 10, double_ptr(ffi, out))
    assert rc == -32                        # EPIPE
    for fd in fds:
        if fd != go_w:
            os.close(fd)


def test_handshake_wrong_word():
    hs, ready_r, go_w, fds = _handshake_pipes()
    os.write(go_w, b"stop\n")
    out = np.zeros(N)
    assert lib.baseline_null_syscall(hs, 5, N, 10, double_ptr(ffi, out)) == -71   # EPROTO
    for fd in fds:
        os.close(fd)


def test_pipe_pingpong_reports_child_pid():
    out = np.zeros(N)

    def check_ready(words, hs):
        assert words[0] == b"ready" and int(words[1]) == os.getpid()
        child = int(words[2])
        # the echo child is alive and is ours
        with open(f"/proc/{child}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()

    _, rc = drive_handshake(
        lambda hs: lib.baseline_pipe_pingpong(hs, 0, 0, 5, N, double_ptr(ffi, out)), check_ready)
    assert rc == 0
    plausible(out)


def test_workers_restore_the_callers_affinity():
    # workers pin the calling thread; called in-process they must leave the
    # caller's affinity as they found it (else later children inherit one CPU)
    before = os.sched_getaffinity(0)
    rt, handoff = np.zeros(N), np.zeros(2 * N)
    check(lib.baseline_futex_pingpong(no_runner(), 0, 0, 10, N, double_ptr(ffi, rt),
                                      double_ptr(ffi, handoff)), "futex")
    assert os.sched_getaffinity(0) == before
    check(lib.baseline_pipe_pingpong(no_runner(), 0, 0, 10, N, double_ptr(ffi, rt)), "pipe")
    assert os.sched_getaffinity(0) == before


def test_c_compiles_without_warnings():
    """pip -q hides compiler output: every C file, the build's flags, -Werror."""
    import glob
    import runpy
    import subprocess
    native_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "native")
    flags = runpy.run_path(os.path.join(native_dir, "build.py"))["COMPILE_ARGS"]
    for source in sorted(glob.glob(os.path.join(native_dir, "*.c"))):
        proc = subprocess.run(["cc", *flags, "-Werror", "-fsyntax-only", "-I", native_dir,
                               source], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args", [["list"], ["run", "experiments/quick.toml", "--out", "OUT"]])
def test_an_unbuilt_extension_is_one_line_and_writes_nothing(args, tmp_path):
    # the families read their enums from lab._native when imported; a
    # checkout without the build gets one line saying what to run
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "results"
    argv = [str(out) if a == "OUT" else a for a in args]
    code = ("import sys; sys.modules['lab._native'] = None\n"
            f"from lab.cli import main; sys.exit(main({argv!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: the native extension")
    assert "make setup" in lines[0]
    assert not out.exists()
