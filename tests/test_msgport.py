"""The `msgport` family: system calls as messages (seed 001) and protected
procedure calls (seed 004) on io_uring and its neighbours.

Mechanics through lab._native with no runner: a DEFER_TASKRUN ring keeps a
completion that became ready while the caller stayed out of io_uring (a
pipe read another thread satisfied, a timer) off the CQ ring, with
IORING_SQ_TASKRUN set, until io_uring_get_events() (flushsys); without
DEFER_TASKRUN it is there at once.  A multishot timeout of m expiries is
one submission and m completions (m prime).  Every PPC request gets
exactly one reply, for every transport, peer and mode, on one CPU and
across two.  Workers give back the caller's affinity and every fd, and
refuse bad arguments.  Then one `lab run` of every variant, and as root
the kernel's count: reaping a polled reply port takes no system call (the
probes see one enter per batch of 8), waitsys takes one more per batch, a
MSG_RING call is one io_uring_enter() per side.
"""

import errno
import os

import numpy as np
import pytest

from lab import store
from lab.families import msgport
from lab.native import load, standalone_handshake

from .helpers import require_probes, run_dir_of, run_lab

ffi, lib = load()
CPU = min(os.sched_getaffinity(0))
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
PEER = max(os.sched_getaffinity(0))
ETIME = -errno.ETIME


def params(**kw):
    p = {x.name: x.default for x in msgport.PARAMS}
    p.update(samples=50, warmup=5)
    p.update(kw)
    return p


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


# ---- the deferred reply port: nothing posted until flushsys() ---------------------

@pytest.mark.parametrize("source, res", [("pipe", 1), ("timeout", ETIME)])
def test_deferred_completion_waits_for_the_flush(source, res):
    r = msgport.defer_check(source, defer=True, hold_us=5000)
    # ready for 5 ms, the caller making system calls but none into io_uring
    assert r["cq_ready_before"] == 0
    assert r["taskrun_before"] == 1            # the kernel says: flush me
    # io_uring_get_events(): the task work runs, the CQE is posted
    assert r["cq_ready_after"] == 1
    assert r["taskrun_after"] == 0
    assert r["res"] == res


@pytest.mark.parametrize("source, res", [("pipe", 1), ("timeout", ETIME)])
def test_without_defer_taskrun_the_completion_is_posted_at_once(source, res):
    # the control: normal task work runs on the caller's next return to
    # user space, no enter needed
    r = msgport.defer_check(source, defer=False, hold_us=5000)
    assert (r["cq_ready_before"], r["taskrun_before"], r["res"]) == (1, 0, res)


def test_deferred_port_flushes_once_per_batch_of_late_replies(tmp_path):
    # pipe_read's replies become ready in the caller's own write(): the
    # deferred ring flags them and one io_uring_get_events() posts them
    _, c = msgport.run_port("deferred", params(op="pipe_read", batch=8), CPU, str(tmp_path))
    assert c["taskrun_flagged"] == c["reap_syscalls"] == 50
    assert c["completions"] == c["messages"] == 400
    # replies that complete inline need no flush at all
    _, c = msgport.run_port("deferred", params(op="nop", batch=8), CPU, str(tmp_path))
    assert (c["taskrun_flagged"], c["reap_syscalls"], c["ready_at_submit"]) == (0, 0, 50)


@pytest.mark.parametrize("mode", msgport.MODES)
@pytest.mark.parametrize("op", msgport.OPS)
def test_every_port_mode_replies_to_every_message(tmp_path, mode, op):
    out, c = msgport.run_port(mode, params(op=op, batch=4), CPU, str(tmp_path))
    assert np.all(out > 0) and np.all(np.isfinite(out))
    assert c["messages"] == c["completions"] == 200 and c["bad_completions"] == 0
    reaps = {"poll": 0, "deferred": 50 if op == "pipe_read" else 0, "sync": 0}
    assert c["reap_syscalls"] == reaps.get(mode, 50)
    assert c["submissions"] == (200 if mode == "sync" else 50)


def test_pipe_write_drains_between_samples(tmp_path):
    # 8 bytes a message: 1 MiB of pipe takes 64 Ki messages before a drain
    _, c = msgport.run_port("poll", params(op="pipe_write", batch=256, samples=400, warmup=0),
                            CPU, str(tmp_path))
    assert c["messages"] == 102400 and c["untimed_syscalls"] >= 1


def test_batching_amortises_the_enter():
    # a wide margin: one enter for 64 NOPs against one for each
    one, _ = msgport.run_port("poll", params(op="nop", batch=1, samples=2000), CPU, "/tmp")
    many, _ = msgport.run_port("poll", params(op="nop", batch=64, samples=200), CPU, "/tmp")
    assert np.median(many) * 2 < np.median(one)


# ---- live messages -----------------------------------------------------------------

@pytest.mark.parametrize("m", [7, 13])
def test_multishot_timeout_delivers_m_completions_per_submission(m):
    out, c = msgport.run_live("live_multishot_timeout",
                              params(count=m, interval_us=50, samples=3 * m, warmup=m),
                              CPU, CPU)
    assert c["submissions"] == 3 and c["completions"] == 3 * m
    # IORING_CQE_F_MORE on all but each request's last
    assert c["completions_more"] == 3 * (m - 1)
    assert c["max_per_submission"] == m
    assert out.size == 3 * m and np.all(out >= 0)


def test_oneshot_timeout_is_one_submission_per_completion():
    _, c = msgport.run_live("live_oneshot_timeout", params(interval_us=50, samples=11,
                                                           warmup=2), CPU, CPU)
    assert (c["submissions"], c["completions"], c["completions_more"]) == (11, 11, 0)


@pytest.mark.parametrize("kind", ["live_multishot_poll", "live_oneshot_poll"])
def test_poll_one_completion_per_event(kind):
    p = params(count=7, interval_us=50, samples=21, warmup=7)
    out, c = msgport.run_live(kind, p, CPU, CPU)
    assert msgport.live_mechanics(kind, p, c) is None
    assert c["consume_syscalls"] == 21
    # every signal of the source became one completion (the one in flight
    # when the run ended aside)
    assert 28 <= c["signals"] <= 29
    assert c["cancels"] == (3 if kind == "live_multishot_poll" else 0)
    assert np.all(out > 0)


# ---- protected procedure calls -------------------------------------------------------

PLACEMENTS = ["same_cpu", "cross_cpu"] if TWO_CPUS else ["same_cpu"]


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("peer", ["thread", "process"])
@pytest.mark.parametrize("transport", msgport.TRANSPORTS)
def test_every_ppc_request_gets_exactly_one_reply(transport, peer, mode, placement):
    batch = 16 if mode == "async" else 1
    p = params(mode=mode, peer=peer, placement=placement, batch=batch, samples=100, warmup=10)
    fds = open_fds()
    out, c = msgport.run_ppc(transport, p, CPU, PEER)
    sent = 110 * batch
    assert c["requests"] == c["replies"] == c["server_requests"] == sent
    assert c["duplicate_replies"] == c["missing_replies"] == c["unexpected_replies"] == 0
    assert c["window_requests"] == 100 * batch
    assert out.size == 100 and np.all(out > 0)
    if peer == "process":
        assert c["server_tgid"] != os.getpid()
        assert not os.path.exists(f"/proc/{c['server_tgid']}")     # reaped
    else:
        assert c["server_tgid"] == os.getpid()
    assert open_fds() == fds


def test_async_calls_are_far_cheaper_than_round_trips():
    sync, _ = msgport.run_ppc("futex", params(mode="sync", samples=500), CPU, PEER)
    stream, _ = msgport.run_ppc("futex", params(mode="async", batch=64, samples=100), CPU, PEER)
    assert np.median(stream) * 4 < np.median(sync)


# ---- what the workers leave behind, and what they refuse -------------------------------

def test_workers_restore_affinity_and_close_everything(tmp_path):
    before, fds = os.sched_getaffinity(0), open_fds()
    msgport.run_port("eventfd", params(op="read"), CPU, str(tmp_path))
    msgport.run_port("deferred", params(op="pipe_read"), CPU, str(tmp_path))
    msgport.run_live("live_multishot_poll", params(count=3, interval_us=50, samples=9), CPU,
                     CPU)
    msgport.run_ppc("msg_ring", params(peer="process"), CPU, PEER)
    assert os.sched_getaffinity(0) == before
    assert open_fds() == fds
    assert os.listdir(tmp_path) == []       # op read's file is unlinked at once


def _buf(n=4):
    out = np.zeros(n)
    return out, ffi.cast("double *", ffi.from_buffer(out))


def hs():
    return standalone_handshake()


def test_bad_arguments_are_refused():
    _, out = _buf()
    port = ffi.new("struct msgport_port_counts *")
    EINVAL = -errno.EINVAL
    assert lib.msgport_port(hs(), 0, 0, 0, ffi.NULL, CPU, 0, 4, out, port) == EINVAL
    assert lib.msgport_port(hs(), 0, 0, msgport.MAX_BATCH + 1, ffi.NULL, CPU, 0, 4, out, port) == EINVAL
    assert lib.msgport_port(hs(), 9, 0, 1, ffi.NULL, CPU, 0, 4, out, port) == EINVAL
    assert lib.msgport_port(hs(), 0, 1, 1, ffi.NULL, CPU, 0, 4, out, port) == EINVAL  # no dir
    live = ffi.new("struct msgport_live_counts *")
    assert lib.msgport_live(hs(), 0, 0, 100000, CPU, CPU, 0, 4, out, live) == EINVAL
    ppc = ffi.new("struct msgport_ppc_counts *")
    assert lib.msgport_ppc(hs(), 7, 0, 0, 0, CPU, CPU, 1, 0, 4, out, ppc) == EINVAL
    before, fds = os.sched_getaffinity(0), open_fds()
    # a server CPU that does not exist: refused before any server runs
    for process in (0, 1):
        assert lib.msgport_ppc(hs(), 1, 0, process, 0, CPU, 4095, 1, 0, 4, out, ppc) == EINVAL
    assert lib.msgport_live(hs(), 2, 1, 100000, CPU, 4095, 0, 4, out, live) == EINVAL
    assert os.sched_getaffinity(0) == before and open_fds() == fds


def test_sync_calls_with_a_batch_are_skipped_with_their_reason():
    problem = msgport.point_problem("ppc_pipe", params(mode="sync", batch=8))
    assert "\n" not in problem and "mode=sync" in problem and "batch=8" in problem
    assert msgport.point_problem("ppc_pipe", params(mode="async", batch=8)) is None
    assert msgport.point_problem("ppc_pipe", params(mode="sync", batch=1)) is None


def test_perf_bench_arguments_and_output():
    same = msgport.perf_bench_args(params(placement="same_cpu", peer="thread", loops=100), 0, 1)
    cross = msgport.perf_bench_args(params(placement="cross_cpu", peer="process"), 0, 1)
    assert same[1:3] == ["-c", "0"] and same[-4:] == ["pipe", "-l", "100", "-T"]
    assert cross[1:3] == ["-c", "0,1"] and "-T" not in cross
    text = ("# Running 'sched/pipe' benchmark:\n# Executed 1000 pipe operations between two "
            "processes\n\n     Total time: 0.008 [sec]\n\n       8.956000 usecs/op\n"
            "         111656 ops/sec\n")
    assert msgport.parse_perf_bench(text) == 8.956
    with pytest.raises(ValueError):
        msgport.parse_perf_bench("no numbers")


def test_bad_suite_values_get_one_line(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text("[msgport]\nvariants = ['port_poll']\nop = 'bogus'\n")
    proc = run_lab(["run", str(suite), "--out", str(tmp_path / "res")], timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "op" in line and "bogus" in line and "nop" in line
    assert not (tmp_path / "res").exists()


# ---- every variant end to end (and the kernel's count, as root) -------------------------

N = 1009        # batches: prime, so a matching count is no coincidence
SLACK = 12      # the handshake's own system calls, a server's last wait, PPC accounting's
                # clock reads (CPU clocks have no vDSO: 2 at each end of the window)

E2E = f"""
[suite]
repetitions = 1
timeout = 60
cpu = {CPU}
peer_cpu = {PEER}

[[msgport]]
variants = ["port_poll", "port_wait", "port_eventfd", "port_deferred", "port_sync"]
op = ["nop", "pipe_read"]
batch = 8
samples = {N}
warmup = 20

[[msgport]]
variants = ["port_upcall", "port_critical", "port_timeout_upcall"]
op = "nop"
batch = 8
flush_after_us = 100
samples = 20
warmup = 5

[[msgport]]
variants = ["live_multishot_timeout", "live_oneshot_timeout", "live_multishot_poll",
            "live_oneshot_poll"]
count = 7
interval_us = 50
samples = 70
warmup = 7

[[msgport]]
variants = ["ppc_msg_ring", "ppc_msg_ring_defer", "ppc_futex", "ppc_eventfd", "ppc_pipe",
            "ppc_unix_socket", "ppc_sigio"]
mode = "sync"
peer = ["thread", "process"]
samples = 500
warmup = 20

[[msgport]]
variants = ["ppc_msg_ring", "ppc_pipe", "ppc_sigio"]
mode = "async"
batch = 16
samples = 100
warmup = 10

[[msgport]]
variants = ["ppc_perf_bench_pipe"]
peer = "process"
loops = 500
invocations = 2

[[msgport]]
variants = ["ppc_futex"]
mode = "sync"
batch = [1, 8]
samples = 50
"""


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    from lab import probes
    tmp = tmp_path_factory.mktemp("msgport")
    suite = tmp / "e2e.toml"
    suite.write_text(E2E)
    probed = probes.unavailable_reason() is None
    proc = run_lab(["run", str(suite), "--out", str(tmp / "res"), "--quiet"] +
                   ([] if probed else ["--probes=none"]), timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = run_dir_of(str(tmp / "res"))
    return run_dir, store.read_manifest(run_dir), proc.stderr


def test_every_variant_runs(e2e):
    run_dir, manifest, stderr = e2e
    ran = {r["variant"] for r in manifest["runs"] if r["status"] == "ok"}
    assert ran == {v.name for v in msgport.FAMILY.variants}
    assert [r for r in manifest["runs"] if r["status"] != "ok"] == []
    # the sync point with a batch is skipped, with its reason
    (skip,) = manifest["skipped"]
    assert skip["params"]["batch"] == 8 and "mode=sync" in skip["reason"]
    assert "skipping msgport/ppc_futex" in stderr


def test_counters_in_the_manifest(e2e):
    _, manifest, _ = e2e
    runs = {(r["variant"], r["params"].get("op"), r["params"].get("peer")): r
            for r in manifest["runs"]}
    poll = runs[("port_poll", "nop", None)]
    assert poll["ops"] == 8 * N
    assert poll["counters"]["submissions"] == N and poll["counters"]["reap_syscalls"] == 0
    assert poll["counters"]["completions_per_submission"] == 8
    assert runs[("port_deferred", "pipe_read", None)]["counters"]["taskrun_flagged"] == N
    multi = runs[("live_multishot_timeout", None, None)]["counters"]
    assert multi["completions_per_submission"] == 7 and multi["submissions"] == 10
    for transport in msgport.TRANSPORTS:
        for peer in ("thread", "process"):
            c = runs[(f"ppc_{transport}", None, peer)]["counters"]
            assert c["replies"] == c["requests"] and c["missing_replies"] == 0
            assert c["duplicate_replies"] == 0


def _kernel(e2e):
    import pandas as pd
    run_dir, manifest, _ = e2e
    assert manifest["kernel_view"]["enabled"], manifest["kernel_view"]
    metrics = pd.read_parquet(os.path.join(run_dir, store.METRICS))

    def total(variant, metric, **point):
        (run,) = [r for r in manifest["runs"] if r["variant"] == variant
                  and all(r["params"].get(k) == v for k, v in point.items())]
        assert run["kernel_view"]
        rows = metrics[(metrics.run_id == run["id"]) & (metrics.metric == metric)
                       & (metrics.key == "")]
        return float(rows.value.iloc[0])

    return total


def test_polled_reply_port_reaps_without_a_system_call(e2e):
    require_probes()
    total = _kernel(e2e)
    # one io_uring_enter() per batch of 8, to submit; reaping is loads and
    # stores on the CQ ring: the probes see 1/8 system call per message
    assert N <= total("port_poll", "syscalls", op="nop") <= N + SLACK
    assert total("port_poll", "syscalls_per_op", op="nop") == \
        pytest.approx(1 / 8, abs=SLACK / (8 * N))
    assert total("port_poll", "uring_submitted", op="nop") == 8 * N
    assert total("port_poll", "uring_completed", op="nop") == 8 * N
    # waitsys costs one more per batch, the eventfd's read() too
    assert 2 * N <= total("port_wait", "syscalls", op="nop") <= 2 * N + SLACK
    assert 2 * N <= total("port_eventfd", "syscalls", op="nop") <= 2 * N + SLACK
    # late replies: the caller's write() makes them; still no reaping call
    # in poll mode, one flush per batch in deferred mode
    assert 2 * N <= total("port_poll", "syscalls", op="pipe_read") <= 2 * N + SLACK
    assert 3 * N <= total("port_deferred", "syscalls", op="pipe_read") <= 3 * N + SLACK
    assert 8 * N <= total("port_sync", "syscalls", op="nop") <= 8 * N + SLACK


def test_msg_ring_call_is_one_enter_per_side(e2e):
    require_probes()
    total = _kernel(e2e)
    for peer in ("thread", "process"):
        # the client's send-and-wait, the server's reply-and-wait
        assert 1000 <= total("ppc_msg_ring", "syscalls", mode="sync", peer=peer) <= 1000 + SLACK
        assert total("ppc_msg_ring", "uring_submitted", mode="sync", peer=peer) == 1000
    # the same round trip over pipes: a write and a read on each side
    assert 2000 <= total("ppc_pipe", "syscalls", mode="sync", peer="thread") <= 2000 + SLACK


def test_multishot_timeout_is_one_submit_for_seven_completions(e2e):
    require_probes()
    total = _kernel(e2e)
    assert total("live_multishot_timeout", "uring_submitted") == 10
    assert total("live_oneshot_timeout", "uring_submitted") == 70
