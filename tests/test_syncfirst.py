"""The syncfirst family (seed 003): mechanics, cache state, counts.

Called directly through lab._native with no runner (ready_fd = -1), except
one end-to-end run through `lab run` that checks the kernel's count of
io_uring punts.  Properties only: which calls said EAGAIN, what was in the
page cache when the window opened, that every call returned its own data;
never how long anything took.
"""

import os

import numpy as np
import pandas as pd
import pytest

from lab import store
from lab.families import syncfirst
from lab.model import RunContext
from lab.native import check, double_ptr, load, standalone_handshake

from .helpers import require_probes, run_dir_of, run_lab

ffi, lib = load()
EAGAIN = -11
EINVAL = -22
N = 300                 # measured reads: distinct blocks
WARMUP = 30
BLOCKS = 512            # a 2 MiB file
FILE_MODES = ("SYNC", "POOL", "NOWAIT_POOL", "NOWAIT_URING", "URING", "URING_ASYNC",
              "URING_SQPOLL")
TWO_CPUS = (os.cpu_count() or 1) >= 2
needs_two_cpus = pytest.mark.skipif(not TWO_CPUS, reason="needs a second CPU")


def no_runner():
    return standalone_handshake()


def counts_dict(c):
    return {name: int(getattr(c, name)) for name in dir(c)}


def file_read(tmp_path, mode, hit_ratio, depth=1, n=N, warmup=WARMUP, blocks=BLOCKS,
              direct=False, pool_threads=0):
    path = ffi.new("char[]", str(tmp_path / "f.dat").encode())
    cfg = ffi.new("struct syncfirst_file_config *", {
        "path": path, "file_blocks": blocks, "hit_ratio": hit_ratio, "depth": depth,
        "pool_threads": pool_threads, "direct": int(direct), "cpu": 0,
        "async_cpu": 0, "sqpoll_cpu": 1 if TWO_CPUS else -1, "seed": 7,
        "warmup": warmup, "nr_samples": n})
    out = np.zeros(n)
    c = ffi.new("struct syncfirst_counts *")
    hs = no_runner()
    rc = lib.syncfirst_file_read(hs, getattr(lib, f"SYNCFIRST_{mode}"), cfg,
                                 double_ptr(ffi, out), c)
    return rc, out, counts_dict(c), hs


def recv(mode, ready_probability, n=N, warmup=WARMUP):
    cfg = ffi.new("struct syncfirst_recv_config *", {
        "ready_probability": ready_probability, "msg_bytes": 64, "send_delay_ns": 20000,
        "cpu": 0, "producer_cpu": 1, "seed": 7, "warmup": warmup, "nr_samples": n})
    lat, after = np.zeros(n), np.zeros(n)
    c = ffi.new("struct syncfirst_counts *")
    check(lib.syncfirst_recv(no_runner(), getattr(lib, f"SYNCFIRST_{mode}"), cfg,
                             double_ptr(ffi, lat), double_ptr(ffi, after), c), "recv")
    return lat, after, counts_dict(c)


def plausible(samples):
    assert samples.size > 0
    assert np.all(np.isfinite(samples)) and np.all(samples > 0)
    assert np.median(samples) < 1e9         # no read of 4 KiB takes a second


def open_fds():
    return len(os.listdir("/proc/self/fd"))


# ---- mechanics -------------------------------------------------------------

def test_modes_agree_with_native_enum():
    for name, value in syncfirst.MODES.items():
        assert getattr(lib, f"SYNCFIRST_{name}") == value
    assert lib.SYNCFIRST_NR_MODES == len(syncfirst.MODES)


def test_nowait_says_eagain_on_an_evicted_page_and_reads_a_cached_one(tmp_path):
    path = str(tmp_path / "probe.dat").encode()
    assert lib.syncfirst_nowait_probe(path, 0, 0) == EAGAIN
    assert lib.syncfirst_nowait_probe(path, 1, 0) == 4096  # and it was block 1's data
    assert not os.path.exists(path)


def test_nowait_refusal_still_starts_the_read(tmp_path):
    # RWF_NOWAIT sets IOCB_NOWAIT, not IOCB_NOIO: the page arrives although
    # nobody reads it again (a wide margin: a miss takes ~0.1 ms, we watch 2 s)
    EINPROGRESS = -115
    assert lib.syncfirst_nowait_probe(str(tmp_path / "probe.dat").encode(), 0,
                                      2000) == EINPROGRESS


@pytest.mark.parametrize("hit_ratio", [0.0, 0.5, 1.0])
def test_resident_fraction_at_window_is_the_target(tmp_path, hit_ratio):
    rc, out, c, _ = file_read(tmp_path, "SYNC", hit_ratio)
    assert rc == 0
    target = syncfirst.cached_target(hit_ratio, N)
    assert c["target_resident"] == target
    assert abs(c["resident_before"] / N - target / N) <= syncfirst.RESIDENT_SLACK
    # every measured read went through the page cache and stayed there
    assert c["resident_after"] >= 0.95 * N
    assert c["evict_passes"] >= 1
    plausible(out)


def test_direct_reads_bypass_the_page_cache(tmp_path):
    rc, out, c, _ = file_read(tmp_path, "SYNC", 1.0, direct=True)
    assert rc == 0
    assert c["target_resident"] == 0            # hit_ratio does not apply
    assert c["resident_before"] == 0
    assert c["resident_after"] <= 0.05 * N      # O_DIRECT reads leave nothing behind
    plausible(out)


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("mode", FILE_MODES)
def test_every_variant_reads_every_block(tmp_path, mode, direct):
    rc, out, c, hs = file_read(tmp_path, mode, 0.5, depth=4, direct=direct)
    assert rc == 0, mode
    plausible(out)
    assert hs.window_end_ns > hs.window_begin_ns > 0
    assert c["ops"] == N
    # each read ended one way or the other, in the window only
    assert c["inline_done"] + c["offloaded"] == N
    if mode == "SYNC":
        assert c["offloaded"] == 0
    if mode in ("POOL", "URING", "URING_ASYNC", "URING_SQPOLL"):
        assert c["inline_done"] == 0 and c["eagain"] == 0
    assert not os.path.exists(tmp_path / "f.dat")


@pytest.mark.parametrize("mode", ["NOWAIT_POOL", "NOWAIT_URING"])
def test_syncfirst_eagain_counts_follow_the_cache(tmp_path, mode):
    rc, _, hot, _ = file_read(tmp_path, mode, 1.0, depth=2)
    assert rc == 0
    assert hot["eagain"] <= 0.02 * N
    assert hot["inline_done"] >= 0.98 * N
    rc, _, cold, _ = file_read(tmp_path, mode, 0.0, depth=2)
    assert rc == 0
    assert cold["eagain"] >= 0.98 * N
    assert cold["offloaded"] == cold["eagain"]


def test_pool_with_fewer_threads_than_depth(tmp_path):
    rc, out, c, _ = file_read(tmp_path, "POOL", 0.0, depth=8, pool_threads=2)
    assert rc == 0
    plausible(out)
    assert c["offloaded"] == N


# ---- error paths -------------------------------------------------------------

def test_impossible_combination_is_one_line_naming_the_parameters(tmp_path):
    variant = syncfirst.FAMILY.variant("syncfirst")
    params = {p.name: p.default for p in syncfirst.FAMILY.params}
    params.update(file_mb=1, samples=300, warmup=0)           # 256 blocks
    ctx = RunContext(cpu=0, peer_cpu=1, handshake=no_runner(), scratch_dir=str(tmp_path))
    with pytest.raises(ValueError) as e:
        variant.run(params, ctx)
    msg = str(e.value)
    assert "\n" not in msg
    assert "samples (300)" in msg and "file_mb = 1" in msg and "raise file_mb to at least 2" in msg
    # and the C side refuses it too, without touching the disk
    rc, _, _, _ = file_read(tmp_path, "SYNC", 0.5, n=300, warmup=0, blocks=256)
    assert rc == EINVAL
    assert list(tmp_path.iterdir()) == []


def test_bad_config_leaks_nothing_and_restores_affinity(tmp_path):
    before_fds, before_cpus = open_fds(), os.sched_getaffinity(0)
    rc, _, _, _ = file_read(tmp_path / "missing-dir", "POOL", 0.5)
    assert rc == -2                                         # ENOENT
    rc, _, _, _ = file_read(tmp_path, "SYNC", 1.5)
    assert rc == EINVAL
    path = ffi.new("char[]", str(tmp_path / "f.dat").encode())
    cfg = ffi.new("struct syncfirst_file_config *", {
        "path": path, "file_blocks": BLOCKS, "hit_ratio": 0.5, "depth": 1, "cpu": 0,
        "async_cpu": 0, "sqpoll_cpu": -1, "nr_samples": N})
    out, c = np.zeros(N), ffi.new("struct syncfirst_counts *")
    assert lib.syncfirst_file_read(no_runner(), 99, cfg, double_ptr(ffi, out), c) == EINVAL
    cfg.depth = 1000
    assert lib.syncfirst_file_read(no_runner(), lib.SYNCFIRST_POOL, cfg, double_ptr(ffi, out),
                                   c) == EINVAL
    assert open_fds() == before_fds
    assert os.sched_getaffinity(0) == before_cpus
    assert list(tmp_path.iterdir()) == []


def test_workers_restore_the_callers_affinity(tmp_path):
    before = os.sched_getaffinity(0)
    assert file_read(tmp_path, "NOWAIT_POOL", 0.5)[0] == 0
    assert os.sched_getaffinity(0) == before
    if TWO_CPUS:
        recv("NOWAIT_POOL", 0.5, n=50, warmup=5)
        assert os.sched_getaffinity(0) == before


# ---- receives ---------------------------------------------------------------

@needs_two_cpus
@pytest.mark.parametrize("mode", ["SYNC", "POOL", "NOWAIT_POOL", "URING"])
def test_every_recv_variant_receives_every_message(mode):
    lat, after, c = recv(mode, 0.5)
    plausible(lat)
    assert np.all(after >= 0) and np.all(after <= lat)
    assert c["ops"] == N
    # the schedule is the seed's, the same for every variant
    assert 0 < c["ready_ops"] < N
    # every message that was not ready was sent after its call was made
    assert c["sent_after_call"] == N - c["ready_ops"]


@needs_two_cpus
def test_recv_syncfirst_goes_async_only_for_messages_not_there_yet():
    # data sent before the call: the MSG_DONTWAIT attempt never says EAGAIN
    _, _, ready = recv("NOWAIT_POOL", 1.0)
    assert ready["ready_ops"] == N and ready["eagain"] == 0 and ready["offloaded"] == 0
    # data sent 20 us after the call: EAGAIN unless the consumer lost its CPU
    # for longer than that before trying (a loaded machine), so an exact
    # count would be a timing assumption; every EAGAIN goes to the pool
    for probability in (0.0, 0.5):
        _, _, c = recv("NOWAIT_POOL", probability)
        not_ready = N - c["ready_ops"]
        assert c["eagain"] == c["offloaded"] <= c["sent_after_call"] <= not_ready
        assert c["eagain"] + c["inline_done"] == N
        assert c["eagain"] > not_ready // 2


# ---- the kernel's view, end to end --------------------------------------------

PUNT_OPS = 503          # prime: a count that matches is not a coincidence


def test_uring_async_punts_every_read_and_uring_on_hits_none(tmp_path):
    require_probes()
    suite = tmp_path / "punts.toml"
    suite.write_text(f"""
[suite]
repetitions = 1
timeout = 60
[syncfirst]
variants = ["uring", "uring_async"]
hit_ratio = 1.0
file_mb = 4
depth = 1
samples = {PUNT_OPS}
warmup = 20
""")
    proc = run_lab(["run", str(suite), "--out", str(tmp_path / "res"), "--quiet"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_dir = run_dir_of(str(tmp_path / "res"))
    manifest = store.read_manifest(run_dir)
    metrics = pd.read_parquet(os.path.join(run_dir, store.METRICS))

    def punts_per_op(variant):
        (run,) = [r for r in manifest["runs"] if r["variant"] == variant]
        assert run["status"] == "ok" and run["kernel_view"], run
        assert run["ops"] == PUNT_OPS
        assert run["counters"]["resident_fraction"] == 1.0
        rows = metrics[(metrics.run_id == run["id"]) & (metrics.metric == "punts_per_op")
                       & (metrics.key == "")]
        assert len(rows) == 1
        return float(rows.value.iloc[0])

    assert punts_per_op("uring_async") == pytest.approx(1.0, abs=0.01)
    assert punts_per_op("uring") == 0.0
