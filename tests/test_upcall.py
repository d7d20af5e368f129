"""The upcall family: the upcall program counts right, the ring consumer
takes every record once and in order, the timers are sane, and the family
runs end to end.

Known workloads with a prime number of events (bcc tools' habit): 1009
nanosleeps of a registered thread are 1009 block events, by ring buffer
and by flag, while an unregistered thread sleeping beside it adds none.
The ring consumer is driven in bursts that wrap a one-page ring and, in one
test, overflow it (then consumed + lost = published).  BPF parts need
root, bcc and headers (require_probes: they skip cleanly otherwise); the
C workers without BPF, the timers and the suite file run as anyone.
"""

import ctypes
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from lab import native, programs, store, suite, upcall_program
from lab.families import _upcall_fault
from lab.families import upcall as U

from .helpers import (
    PERF_BUFFER,
    lab_bpf_objects,
    require_probes,
    requires_root,
    run_dir_of,
    run_lab,
    tracefs_as_found,
    wait_for,
)

# bcc wants bytes for program text; lab.probes hands it str (it converts)

ffi, lib = native.load()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
N = 1009                # prime: a count that matches is not a coincidence
RECORD = 8 + 32         # ring header + struct up_event (native/upcall_abi.h)


def params(**kw):
    p = {"placement": "same_cpu", "event": "block", "block_kind": "nanosleep", "block_us": 20,
         "run_us": 0, "spin_us": 50, "samples": 200, "warmup": 10}
    p.update(kw)
    return p


def timer_params(**kw):
    p = {"interval_us": 1000, "rt_priority": 0, "pm_qos": False, "samples": 100, "warmup": 5}
    p.update(kw)
    return p


def plausible(samples, limit_ns):
    assert samples.size > 0
    assert np.all(np.isfinite(samples)) and np.all(samples >= 0)
    assert np.median(samples) < limit_ns


# ---- the family's description, as anyone -----------------------------------

def test_the_c_enums_name_every_variant():
    """native/upcall.h's and upcall_timer.h's enums are the variants (the
    family reads them from cffi): one each, cyclictest aside, and each
    enum's count covers them all."""
    variants = {v.name for v in U.FAMILY.variants}
    assert variants == set(U.MECHANISMS) | set(U.TIMERS) | {"cyclictest"} | \
        set(_upcall_fault.FAULT_VARIANTS)           # upcall_fault.h's enum
    assert len(_upcall_fault.FAULT_VARIANTS) == lib.UPCALL_FAULT_NR_VARIANTS
    assert len(U.MECHANISMS) == lib.UPCALL_NR_MECHANISMS
    assert len(U.TIMERS) == lib.UPCALL_NR_TIMER_KINDS
    assert len(U.BLOCK_KINDS) == lib.UPCALL_NR_BLOCK_KINDS
    assert lib.upcall_vp_size() == 128 and lib.upcall_event_size() == 32
    assert lib.upcall_stages_size() == 80
    assert lib.UPCALL_NR_STAGES == len(U.STAGE_METRICS) == len(U.STAGES)


def test_the_program_text_carries_the_shared_header(tmp_path, monkeypatch):
    """bcc compiles the text alone: the layout both sides include must be in
    it, so a change to the header is a change to the program (no stale
    compiled program can be reused for a new layout)."""
    with open(upcall_program.HEADER) as f:
        header = f.read()
    text = upcall_program.program_text()
    assert header in text and '#include "upcall_abi.h"' not in text
    changed = tmp_path / "upcall_abi.h"
    changed.write_text(header.replace("#define UP_NR_VPS 64", "#define UP_NR_VPS 32"))
    monkeypatch.setattr(upcall_program, "HEADER", str(changed))
    assert upcall_program.program_text() != text
    assert "#define UP_NR_VPS 32" in upcall_program.program_text()


def test_points_that_cannot_run_say_why():
    assert "pread" in U.point_problem("uring_cqe_wait", params(block_kind="pread"))
    assert U.point_problem("bpf_ringbuf", params(block_kind="pread")) is None
    problem = U.point_problem("bpf_flag", params(block_kind="pread", samples=40000))
    assert "lower samples" in problem


def test_thorough_suite_parses_and_covers_every_variant():
    s = suite.load(os.path.join(REPO, "experiments", "upcall.toml"))
    assert s.repetitions >= 3 and s.settings["probe_overhead"]
    chosen = {v.name for sel in s.families["upcall"] for v in sel.variants}
    assert chosen == {v.name for v in U.FAMILY.variants}
    kinds = {k for sel in s.families["upcall"] for k in sel.values.get("block_kind", ())}
    assert kinds == set(U.BLOCK_KINDS)
    baseline = s.families["baseline"][0]
    assert [v.name for v in baseline.variants] == ["futex_pingpong"]
    assert set(baseline.values["placement"]) == {"same_cpu", "cross_cpu"}


def test_cyclictest_output_is_parsed_in_loop_order():
    text = ("WARN: not setting cpu_dma_latency\nThread 0 Interval: 1000\n"
            "       0:       1:   2000\n       0:       0:   1500\n"
            "       1:       0:   9999\n       0:       2:     -3\n")
    assert U.parse_cyclictest(text) == [1500, 2000, -3]
    args = U.cyclictest_args(timer_params(rt_priority=7), cpu=1)
    assert {"-a1", "-i1000", "-d0", "-l105", "-v", "-N", "--default-system", "-p7"} <= set(args)


def test_bad_configs_are_refused():
    no_maps = ffi.new("struct upcall_maps *", {"ring_fd": -1, "vps_fd": -1, "tids_fd": -1})
    out = np.zeros(10)
    counts = ffi.new("struct upcall_counts *")
    hs = native.standalone_handshake()

    def run(**kw):
        cfg = {"mechanism": 0, "event": 0, "block_kind": 1, "cpu": 0, "sched_cpu": 0,
               "block_ns": 1000, "warmup": 0, "nr_samples": 10}
        cfg.update(kw)
        return lib.upcall_run(hs, ffi.new("struct upcall_config *", cfg), no_maps,
                              native.double_ptr(ffi, out), ffi.NULL, counts)

    assert run() == -errno.EINVAL                                   # bpf without maps
    assert run(mechanism=U.MECHANISMS["futex_hint"], event=1) == -errno.EINVAL
    assert run(mechanism=U.MECHANISMS["uring_cqe_wait"], event=1,
               block_kind=3) == -errno.EINVAL                       # uring pread
    assert run(mechanism=U.MECHANISMS["futex_hint"], nr_samples=0) == -errno.EINVAL
    assert lib.upcall_timer(hs, 99, 0, 0, 1000000, 0, 10, native.double_ptr(ffi, out),
                            ffi.new("struct upcall_timer_counts *")) == -errno.EINVAL


# ---- mechanisms without BPF -------------------------------------------------------

@pytest.mark.parametrize("kind", ["futex", "nanosleep", "pipe", "pread"])
@pytest.mark.parametrize("placement", ["same_cpu", "cross_cpu"])
def test_futex_hint_takes_every_upcall(kind, placement, tmp_path):
    if placement == "cross_cpu" and not TWO_CPUS:
        pytest.skip("needs a second CPU")
    before = os.sched_getaffinity(0)
    p = params(block_kind=kind, placement=placement)
    lat, since, c = U.run_upcalls("futex_hint", p, 0, 1 if placement == "cross_cpu" else 0,
                                  str(tmp_path))
    assert since is None
    assert c["upcalls"] == p["samples"] and c["slept"] + c["spun"] == p["samples"]
    plausible(lat, 1e7)
    assert os.sched_getaffinity(0) == before
    if kind == "pread":
        assert c["resident_before"] == 0        # the blocks really were cold


@pytest.mark.parametrize("mechanism", ["uring_cqe_poll", "uring_cqe_wait", "uring_cqe_eventfd"])
@pytest.mark.parametrize("kind", ["futex", "nanosleep", "pipe"])
def test_uring_completions_are_unblock_upcalls(mechanism, kind, tmp_path):
    p = params(block_kind=kind, samples=50)
    sched_cpu = 1 if TWO_CPUS else 0
    lat, _, c = U.run_upcalls(mechanism, p, 0, sched_cpu, str(tmp_path))
    assert c["upcalls"] == 50
    # the poller never sleeps, the others do whenever the CQE is not there
    assert (c["slept"] == 0) == (mechanism == "uring_cqe_poll")
    plausible(lat, 1e7)


# ---- timers -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(U.TIMERS))
def test_timers_return_plausible_lateness(kind):
    p = timer_params()
    lateness, c = U.run_timer(kind, p, 0)
    # never early, rarely more than a few intervals late
    plausible(lateness, 5 * p["interval_us"] * 1000)
    assert lateness.max() < 200 * p["interval_us"] * 1000
    assert c["expiries"] >= p["samples"]


def test_multishot_fires_count_times_from_one_sqe():
    p = timer_params(samples=37, warmup=0, interval_us=500)
    _, c = U.run_timer("timer_uring_multishot", p, 0)
    assert c["sqes"] == 1
    assert c["cqes"] == 37 and c["cqes_more"] == 36      # the last one ends it
    # re-armed relative to each completion: the schedule only slides later
    assert c["drift_ns"] >= 0


def test_cyclictest_runs_beside_our_timers(tmp_path):
    if U.point_problem("cyclictest", timer_params()):
        pytest.skip(U.point_problem("cyclictest", timer_params()))
    p = timer_params(samples=50)
    lateness, counters = U.run_cyclictest(p, 0, str(tmp_path))
    assert lateness.size == 50
    plausible(lateness, 5 * p["interval_us"] * 1000)


@requires_root
def test_rt_priority_runs_sched_fifo():
    before = os.sched_getscheduler(0)
    lateness, c = U.run_timer("timer_nanosleep", timer_params(rt_priority=10, samples=30), 0)
    assert (c["policy"], c["priority"]) == (1, 10)      # SCHED_FIFO
    assert c["timer_slack_ns"] == 0                     # real-time threads get none
    plausible(lateness, 5e6)
    assert os.sched_getscheduler(0) == before


# ---- the upcall program (root, bcc) -------------------------------------------------

def _bystander(stop):
    """An unregistered thread of this process that blocks again and again."""
    def run():
        while not stop.is_set():
            time.sleep(0.0002)
    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.fixture(scope="class")
def block_program():
    require_probes()
    with U.upcall_program("block") as loaded:
        yield loaded


class TestBlockProgram:
    """Block upcalls through one loaded program (compiling takes 0.4 s)."""

    @pytest.mark.parametrize("mechanism", ["bpf_ringbuf", "bpf_flag"])
    def test_each_block_is_exactly_one_upcall(self, block_program, mechanism, tmp_path):
        bpf, maps = block_program
        stop = threading.Event()
        bystander = _bystander(stop)
        try:
            p = params(samples=N, warmup=0, placement="cross_cpu" if TWO_CPUS else "same_cpu")
            lat, since, c = U.run_upcalls(mechanism, p, 0, 1 if TWO_CPUS else 0,
                                          str(tmp_path), maps)
        finally:
            stop.set()
            bystander.join()
        # every block the worker made is one event and one upcall; a sleep
        # that ended before it blocked made neither (not_blocked)
        assert c["upcalls"] == N and c["blocks"] == N
        assert c["extra_events"] == 0 and c["missed_events"] == 0
        assert c["foreign"] == 0 and c["ring_bad"] == 0
        assert c["ring_lost"] == 0 and c["ring_discarded"] == 0
        assert c["ring_records"] == (N if mechanism == "bpf_ringbuf" else 0)
        assert since is None
        plausible(lat, 1e7)

    def test_unregistered_threads_make_no_events(self, block_program):
        bpf, _ = block_program
        slot = bpf["lab_upcall_vps"]
        assert ctypes.sizeof(slot.Leaf) == lib.upcall_vp_size()
        assert ctypes.sizeof(bpf["lab_upcall_stages"].Leaf) == lib.upcall_stages_size()
        before = slot[ctypes.c_uint32(0)].block_seq
        for _ in range(23):
            time.sleep(0.0005)              # this thread blocks, unregistered
        assert slot[ctypes.c_uint32(0)].block_seq == before
        assert len(bpf["lab_upcall_tids"].items()) == 0   # nothing left registered

    def test_flag_sleep_falls_back_to_the_ring(self, block_program, tmp_path):
        _, maps = block_program
        # the worker computes 300 us before each block: a 20 us budget runs out
        p = params(samples=101, spin_us=20, run_us=300)
        _, _, c = U.run_upcalls("bpf_flag_sleep", p, 0, 1 if TWO_CPUS else 0, str(tmp_path),
                                maps)
        assert c["upcalls"] == 101 and c["slept"] >= 90
        assert c["ring_lost"] == c["ring_bad"] == c["foreign"] == 0
        # the program writes the ring only for a sleeping scheduler
        assert c["slept"] <= c["ring_records"] <= p["samples"] + p["warmup"] + 5


def test_unblock_upcalls_come_from_sched_waking(tmp_path):
    require_probes()
    with U.upcall_program("unblock") as (_, maps):
        p = params(event="unblock", block_kind="futex", samples=211)
        lat, since, c = U.run_upcalls("bpf_ringbuf", p, 0, 1 if TWO_CPUS else 0,
                                      str(tmp_path), maps)
    assert c["upcalls"] == 211
    # a futex wake-up runs in the waker's system call, never in an
    # interrupt: no upcall can be lost (see lost_upcalls)
    assert c["unblocks"] == c["blocks"] == 211 and c["lost_upcalls"] == 0
    assert c["ring_records"] == 211 + p["warmup"]
    # the waker's stamp comes before the kernel's waking
    assert np.median(since) >= np.median(lat)


@pytest.mark.parametrize("rounds,per_round", [(6, 90)])
def test_ring_consumer_takes_every_record_once_in_order(rounds, per_round):
    require_probes()
    capacity = 4096 // RECORD
    with U.upcall_program("block", ring_pages=1) as (_, maps):
        r = ffi.new("struct upcall_burst_result *")
        native.check(lib.upcall_burst(maps, 0, rounds, per_round, 300, r), "upcall_burst")
    assert r.blocks == rounds * per_round
    # a 10 us sleep nearly always blocks; each block is one record
    assert r.kernel_events >= 0.95 * r.blocks
    assert r.records == r.kernel_events and r.lost == 0
    assert r.out_of_order == r.foreign == r.bad == r.discarded == 0
    # the records wrapped around the one-page ring several times
    assert r.max_batch <= capacity < r.records


def test_a_full_ring_counts_what_it_lost():
    require_probes()
    with U.upcall_program("block", ring_pages=1) as (_, maps):
        r = ffi.new("struct upcall_burst_result *")
        native.check(lib.upcall_burst(maps, 0, 1, 200, 0, r), "upcall_burst")
    assert r.lost > 0 and r.records <= 4096 // RECORD
    assert r.records + r.lost == r.kernel_events
    assert r.out_of_order == r.bad == 0


def upcall_objects():
    return [n for n in lab_bpf_objects() if n.split()[1].startswith("lab_upcall")]


# ---- the anatomy -----------------------------------------------------------------------

def test_anatomy_stages_sum_to_the_latency_and_follow_the_ring(tmp_path):
    require_probes()
    p = params(samples=101, run_us=100, placement="same_cpu")
    anatomy = {}
    with U.upcall_program("block", anatomy=True) as (_, maps):
        lat, _, c = U.run_upcalls("bpf_ringbuf", p, 0, 0, str(tmp_path), maps, None, anatomy)
    stages = np.array([anatomy[m.name] for m in U.STAGE_METRICS])
    assert stages.shape == (len(U.STAGES), 101) and np.all(stages >= 0)
    # the stages split each sample's latency: they add up to it
    assert np.allclose(stages.sum(axis=0), lat)
    # the scheduler sleeps in epoll: each upcall's wake-up is the ring's
    # irq_work (a self-IPI of the worker's CPU), then its waking and switch in
    seen = anatomy["seen"]
    for name in ("stage_raise", "stage_irq_work", "stage_waking", "stage_switch_in"):
        assert seen[name] >= 0.9 * 101, (name, seen)
    assert seen["stage_user"] == 101
    assert np.median(anatomy["self_ipis"]) >= 1


def test_anatomy_of_a_polling_scheduler_has_no_wake_up(tmp_path):
    require_probes()
    # another CPU polls the flag: no irq_work, nobody woken, nothing switched in
    if not TWO_CPUS:
        pytest.skip("needs two CPUs")
    anatomy = {}
    p = params(samples=101, placement="cross_cpu")
    with U.upcall_program("block", anatomy=True) as (_, maps):
        U.run_upcalls("bpf_flag", p, 0, 1, str(tmp_path), maps, None, anatomy)
    assert anatomy["seen"]["stage_waking"] == anatomy["seen"]["stage_irq_work"] == 0
    assert anatomy["seen"]["stage_user"] == 101


def test_the_scheduler_policy_is_restored_after_sched_idle(tmp_path):
    require_probes()
    before = os.sched_getscheduler(0)
    with U.upcall_program("block") as (_, maps):
        _, _, c = U.run_upcalls("bpf_flag_idle", params(samples=51), 0, 0, str(tmp_path), maps)
    assert c["upcalls"] == 51 and c["blocks"] == 51
    assert os.sched_getscheduler(0) == before


def test_the_adaptive_ring_needs_the_stages_map(tmp_path):
    require_probes()
    with U.upcall_program("block") as (_, maps):
        no_stages = ffi.new("struct upcall_maps *", {"ring_fd": maps.ring_fd,
                                                     "vps_fd": maps.vps_fd,
                                                     "tids_fd": maps.tids_fd,
                                                     "stages_fd": -1})
        with pytest.raises(native.NativeError, match="EINVAL"):
            U.run_upcalls("bpf_ringbuf_adaptive", params(samples=11), 0, 0, str(tmp_path),
                          no_stages)
        _, _, c = U.run_upcalls("bpf_ringbuf_adaptive", params(samples=53), 0, 0,
                                str(tmp_path), maps)
    assert c["upcalls"] == c["blocks"] == 53 and c["ring_records"] >= 53


def test_a_program_handed_over_by_fds_is_reset_attached_and_detached(tmp_path):
    """The runner's compile-once path, in one process: SuitePrograms loads
    the program, a "worker" attaches through the fds (use_shared), finds
    the maps reset (a stale registration gone) and leaves nothing attached."""
    require_probes()
    shared = programs.SuitePrograms()
    try:
        fds, spec = shared.for_run(U.FAMILY.variant("bpf_ringbuf"), params())
        assert fds and not shared.problems
        assert shared.for_run(U.FAMILY.variant("timer_nanosleep"), params()) == ((), {})
        # what a killed worker may leave: a thread still registered
        bpf = shared.bpf("upcall")
        tids = spec[programs.SPEC_KEY]["upcall"]["maps"]["tids_fd"]
        bpf["lab_upcall_tids"][ctypes.c_uint32(4242)] = ctypes.c_uint32(0)
        assert len(bpf["lab_upcall_tids"].items()) == 1
        programs.use_shared(spec[programs.SPEC_KEY])
        try:
            with U.upcall_program("block", anatomy=True) as (program, maps):
                assert program.bpf is None and maps.tids_fd == tids
                assert len(bpf["lab_upcall_tids"].items()) == 0
                _, _, c = U.run_upcalls("bpf_ringbuf", params(samples=31), 0, 0,
                                        str(tmp_path), maps)
                assert c["upcalls"] == c["blocks"] == 31
            # detached: a block of a registered thread publishes nothing now
            slot = bpf["lab_upcall_vps"]
            before = slot[ctypes.c_uint32(0)].block_seq
            me = threading.get_native_id()
            bpf["lab_upcall_tids"][ctypes.c_uint32(me)] = ctypes.c_uint32(0)
            for _ in range(7):
                time.sleep(0.0005)
            assert slot[ctypes.c_uint32(0)].block_seq == before
        finally:
            programs.use_shared(None)
    finally:
        shared.close()
    wait_for(lambda: not upcall_objects(), timeout=10)


# ---- raw tracepoints leave perf's view whole --------------------------------------------

PERF_CHILD = """
import json, sys
from lab.families import upcall as U
p = {"placement": "same_cpu", "event": "block", "block_kind": "nanosleep", "block_us": 20,
     "run_us": 0, "spin_us": 50, "samples": %d, "warmup": 0}
with U.upcall_program("unblock", anatomy=True) as (_, maps):
    _, _, c = U.run_upcalls("bpf_ringbuf", p, 0, 0, sys.argv[1], maps, None, {})
print(json.dumps({"tid": c["worker_tid"], "blocks": c["blocks"]}))
"""


def test_perf_sees_every_switch_of_the_worker_while_the_program_runs(tmp_path):
    """The upcall and anatomy programs are raw tracepoints: a perf user of
    sched:sched_switch still gets every event (a perf-event tracepoint
    program that returns 0 would have dropped them all)."""
    require_probes()
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("perf is not installed (scripts/debian-packages.sh installs linux-perf)")
    data = tmp_path / "perf.data"
    child = [sys.executable, "-c", PERF_CHILD % N, str(tmp_path)]
    with tracefs_as_found():
        # a buffer that holds the whole run (helpers.PERF_BUFFER)
        rec = subprocess.run([perf, "record", "-q", "-m", PERF_BUFFER, "-e", "sched:sched_switch",
                              "-o", str(data), "--"] + child, capture_output=True, text=True, cwd=REPO,
                             timeout=120)
    assert rec.returncode == 0, rec.stderr
    result = json.loads(rec.stdout.strip().splitlines()[-1])
    assert result["blocks"] == N
    script = subprocess.run([perf, "script", "-i", str(data), "-F", "trace"],
                            capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr
    outs = [m for m in re.finditer(r"prev_pid=(\d+) .*?prev_state=(\S+)", script.stdout)
            if int(m.group(1)) == result["tid"]]
    # every block the program saw is a switch out of the worker perf saw too
    blocked = [m for m in outs if m.group(2) != "R" and not m.group(2).startswith("R+")]
    assert len(blocked) >= result["blocks"]


def test_no_upcall_program_is_left_loaded():
    require_probes()
    with U.upcall_program("unblock"):
        assert {"prog lab_upcall_block", "prog lab_upcall_wake", "map lab_upcall_ring",
                "map lab_upcall_vps", "map lab_upcall_tids"} <= set(upcall_objects())
    # the kernel frees maps after the programs' RCU grace period
    wait_for(lambda: not upcall_objects(), timeout=10)


# ---- end to end ------------------------------------------------------------------------

TINY = """
[suite]
repetitions = 1
timeout = 60
[[upcall]]
placement = "{placement}"
event = ["block", "unblock"]
block_kind = "pipe"
samples = 60
warmup = 5
interval_us = 500
"""
# preemption upcalls (two CPUs: the harness beside the worker's)
TINY_PREEMPT = """
[[upcall]]
variants = ["bpf_ringbuf", "rseq_abort"]
placement = "same_cpu"
event = "preempt"
anatomy = false
samples = 30
warmup = 3
"""


@requires_root
def test_every_variant_runs_through_lab_run(tmp_path):
    require_probes()
    placement = "cross_cpu" if TWO_CPUS else "same_cpu"
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(placement=placement) + (TINY_PREEMPT if TWO_CPUS else ""))
    proc = run_lab(["run", str(path), "--out", str(tmp_path / "res"), "--quiet"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    manifest = store.read_manifest(run_dir_of(str(tmp_path / "res")))
    runs = manifest["runs"]
    expected = {v.name for v in U.FAMILY.variants} - (set() if TWO_CPUS else set(U.PREEMPT_ONLY))
    assert {r["variant"] for r in runs} == expected
    assert all(r["status"] == "ok" for r in runs), [(r["variant"], r["reason"]) for r in runs]
    assert all(r["kernel_view"] for r in runs)
    for r in runs:
        for name in ("ring_lost", "ring_bad", "foreign", "ring_discarded"):
            assert r["counters"].get(name, 0) == 0, (r["variant"], name)
    # compiled once, by the runner: every worker that needed the program
    # attached the runner's (and every one of them had the anatomy)
    users = [r for r in runs
             if programs.loaded_by(U.FAMILY.variant(r["variant"]), r["params"]) == "upcall"]
    assert users and all(r["counters"]["program_from_runner"] == 1 for r in users)
    assert all("stage_user" in r["n_samples"] for r in users
               if r["params"].get("event") != "preempt" and r["variant"] not in U.PREEMPT_ONLY)
    # ... and after the suite run nothing of it is left loaded
    wait_for(lambda: not upcall_objects(), timeout=10)
