"""The syncfirst family (seed 003): mechanics, cache state, counts.

Called directly through lab._native with no runner (ready_fd = -1), except
one end-to-end run through `lab run` that checks the kernel's count of
io_uring punts.  Properties only: which calls said EAGAIN, what was in the
page cache when the window opened, that every call returned its own data;
never how long anything took.

What RWF_NOWAIT guarantees (6.18, mm/filemap.c filemap_get_pages()), and
so what these tests hold it to: a page in the page cache is returned, never
refused; on a miss the call starts the read (IOCB_NOWAIT, not IOCB_NOIO),
never sleeps for it, and returns EAGAIN if the read is still in flight when
it looks again, or the data if it has finished by then.  Which of the two
a miss gets is a race with the device and the CPU that takes its interrupt
(on a VM, with the host): counted (cold_inline), never assumed.
"""

import os
import time

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
EBUSY = -16
EINVAL = -22
N = 300                 # measured reads: distinct blocks
WARMUP = 30
BLOCKS = 512            # a 2 MiB file
FILE_MODES = tuple(mode.upper() for mode in syncfirst.MODES)    # SYNCFIRST_<mode>
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

def test_the_mode_count_covers_every_mode():
    """The modes come from native/syncfirst.h (cffi); C checks a mode
    against SYNCFIRST_NR_MODES."""
    assert lib.SYNCFIRST_NR_MODES == len(syncfirst.MODES)


def nowait_probe(tmp_path, cached, watch_ms=0):
    path = str(tmp_path / "probe.dat").encode()
    r = ffi.new("struct syncfirst_nowait_result *")
    assert lib.syncfirst_nowait_probe(path, cached, watch_ms, r) == 0, (r.evict_left,
                                                                         r.evict_passes)
    assert not os.path.exists(path)
    return r


def test_nowait_reads_a_cached_page_without_sleeping(tmp_path):
    r = nowait_probe(tmp_path, 1)
    assert r.resident_before == 1
    assert r.res == 4096                    # and it was block 1's data (the probe checks)
    assert r.voluntary_switches == 0


# A miss gets EAGAIN unless its read finished before the kernel looked
# again, a race with the device that comes in bursts (with both CPUs
# loaded up to 6 in 10 misses completed inline, up to 118 in a row): the
# probes below try until a call is refused, bounded by tries and time far
# past the longest burst seen.
MISS_TRIES = 2000
MISS_SECONDS = 60


def until_refused(tmp_path, watch_ms=0):
    """Cold probes until one is refused (the last of the list), each held
    to what the kernel guarantees for a miss whichever way it went."""
    seen, deadline = [], time.monotonic() + MISS_SECONDS
    while len(seen) < MISS_TRIES and time.monotonic() < deadline:
        r = nowait_probe(tmp_path, 0, watch_ms)
        assert r.resident_before == 0 and r.evict_left == 0     # it really was a miss
        assert r.res in (EAGAIN, 4096), r.res   # refused, or its own data: nothing else
        assert r.voluntary_switches == 0        # it never slept for the I/O it started
        seen.append(r)
        if r.res == EAGAIN:
            break
    return seen


def test_nowait_on_an_evicted_page_refuses_or_reads_it_and_never_sleeps(tmp_path):
    seen = until_refused(tmp_path)
    assert seen[-1].res == EAGAIN, f"{len(seen)} misses, none refused"


def test_nowait_refusal_still_starts_the_read(tmp_path):
    # RWF_NOWAIT sets IOCB_NOWAIT, not IOCB_NOIO: after a refusal the page
    # arrives although nobody reads it again (a wide margin: a miss takes
    # ~0.1 ms, we watch 2 s); after an inline miss it is there at once
    seen = until_refused(tmp_path, watch_ms=2000)
    assert seen[-1].res == EAGAIN, f"{len(seen)} misses, none refused"
    assert seen[-1].resident_after_ms >= 0
    assert all(r.resident_after_ms == 0 for r in seen[:-1])


def test_eviction_is_verified(tmp_path):
    c = ffi.new("struct syncfirst_counts *")
    path = str(tmp_path / "evict.dat").encode()
    assert lib.syncfirst_evict_check(path, 16, -1, c) == 0
    assert c.evict_left == 0 and c.evict_passes >= 1
    # a page mapped into a process is one POSIX_FADV_DONTNEED must leave
    # (mm/truncate.c mapping_evict_folio(); with ext4's large folios, the
    # whole folio holding it): the eviction says so, with every pass
    # tried, instead of returning as if the file were cold
    assert lib.syncfirst_evict_check(path, 16, 3, c) == EBUSY
    assert 1 <= c.evict_left <= 16 and c.evict_passes > 1
    assert list(tmp_path.iterdir()) == []


def test_a_missed_eviction_or_warm_up_fails_the_run_with_the_reason():
    c = ffi.new("struct syncfirst_counts *", {"measured_blocks": N, "evict_passes": 8,
                                              "evict_left": 3})
    msg = syncfirst.file_read_problem(EBUSY, c, BLOCKS)
    assert msg == (f"eviction left 3 of {BLOCKS} blocks resident after 8 POSIX_FADV_DONTNEED "
                   "passes: the run would measure cached blocks as misses")
    c = ffi.new("struct syncfirst_counts *", {"measured_blocks": N, "evict_passes": 1,
                                              "warm_passes": 4, "warm_off": 2,
                                              "resident_before": 148, "target_resident": 150})
    msg = syncfirst.file_read_problem(EBUSY, c, BLOCKS)
    assert "\n" not in msg and "warm-up missed its target: 2 of the 300 measured blocks" in msg
    assert "148 resident, target 150" in msg
    c = ffi.new("struct syncfirst_counts *", {"measured_blocks": N, "resident_before": 150,
                                              "target_resident": 150})
    assert syncfirst.file_read_problem(0, c, BLOCKS) is None
    c.resident_before = 149
    assert "149 of the 300 measured blocks resident, target 150" in \
        syncfirst.file_read_problem(0, c, BLOCKS)


@pytest.mark.parametrize("hit_ratio", [0.0, 0.5, 1.0])
def test_resident_fraction_at_window_is_the_target(tmp_path, hit_ratio):
    rc, out, c, _ = file_read(tmp_path, "SYNC", hit_ratio)
    assert rc == 0
    target = syncfirst.cached_target(hit_ratio, N)
    assert c["target_resident"] == target
    # verified before the window: exactly the chosen blocks, or no run
    assert c["resident_before"] == target
    assert c["evict_passes"] >= 1 and c["evict_left"] == 0
    assert c["warm_passes"] >= 1 and c["warm_off"] == 0
    # every measured read went through the page cache and stayed there
    assert c["resident_after"] >= 0.95 * N
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
    cold = N - c["resident_before"]
    if mode == "SYNC":
        assert c["offloaded"] == 0
    if mode in ("POOL", "URING", "URING_ASYNC", "URING_SQPOLL"):
        assert c["inline_done"] == 0 and c["eagain"] == 0
    if mode in ("NOWAIT_POOL", "NOWAIT_URING"):
        assert c["offloaded"] == c["eagain"]        # every refusal is handed on
    if mode in ("NOWAIT_POOL", "NOWAIT_URING") and not direct:
        # every block not cached at the start was refused or found its read
        # done: the call returns nothing else
        assert c["eagain"] - c["hot_eagain"] + c["cold_inline"] == cold
    else:
        assert c["cold_inline"] == 0 and c["hot_eagain"] == 0
    assert not os.path.exists(tmp_path / "f.dat")


@pytest.mark.parametrize("mode", ["NOWAIT_POOL", "NOWAIT_URING"])
def test_syncfirst_eagain_counts_follow_the_cache(tmp_path, mode):
    # every block cached: a page in the cache is returned, never refused
    # (only a reclaimer taking it between the check and its call could)
    rc, _, hot, _ = file_read(tmp_path, mode, 1.0, depth=2)
    assert rc == 0
    assert hot["resident_before"] == N
    assert hot["eagain"] == hot["hot_eagain"] == 0
    assert hot["inline_done"] == N and hot["offloaded"] == 0
    # no block cached: each miss is refused (read in flight at the second
    # look) or completes inline (read already done): which one is a race
    # with the device, counted, not assumed
    rc, _, cold, _ = file_read(tmp_path, mode, 0.0, depth=2)
    assert rc == 0
    assert cold["resident_before"] == 0
    assert cold["eagain"] + cold["cold_inline"] == N
    assert cold["inline_done"] == cold["cold_inline"]
    assert cold["offloaded"] == cold["eagain"] > 0
    # and the refused ones started their reads: all N blocks are in the
    # cache afterwards, read once each
    assert cold["resident_after"] >= 0.95 * N


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
