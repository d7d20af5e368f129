"""The activations family: the runtime's mechanics, proved by counting.

With ``upcall`` on one VP and calls that always block, another fiber runs
on that VP while the kernel has the first one's activation blocked, and
with ``none`` never; no variant ever has more activations running fibers
than it has VPs; every task completes exactly once, whether no call or
every call blocks.  Bad parameters are refused with one line, the upcall
program is gone after a run, every variant runs through `lab run`, and
Table IV's operations are finite and ordered where the order is wide
(a process fork is far slower than a fiber fork).  BPF parts need root,
bcc and headers (require_probes: they skip cleanly otherwise).
"""

import json
import os
import subprocess

import numpy as np
import pytest

from lab import native, store, suite
from lab.families import activations as A

from .helpers import require_probes, requires_root, run_dir_of, run_lab, wait_for

# bcc wants bytes for program text; lab.probes hands it str (it converts)

ffi, lib = native.load()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
RUNTIME = ("none", "futex_hint", "syncfirst", "monitor", "upcall", "uring")
# the variants of the family's parts (lab/families/_activations_*.py): their own tests
PART_VARIANTS = {v.name for part in A.PARTS for v in part.VARIANTS}
TASKS = 61              # prime: a count that matches is not a coincidence


def upcall_objects():
    """Loaded BPF programs and maps of the upcall program (lab_upcall_*),
    as tests/test_upcall.py enumerates them, with their ids: the module's
    own copy (block_program) may be loaded beside the one a run loads."""
    found = set()
    for kind in ("prog", "map"):
        out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True,
                             check=True).stdout
        found |= {(kind, o.get("id"), o.get("name")) for o in json.loads(out or "[]")
                  if str(o.get("name", "")).startswith("lab_upcall")}
    return found


def params(**kw):
    p = {"vps": 1, "spares": 2, "concurrency": 4, "tasks": TASKS, "warmup_tasks": 5,
         "steps": 4, "work_ns": 2000, "p": 0.5, "block_us": 40, "monitor_us": 20, "seed": 7,
         "op": "null_fork", "samples": 40, "warmup": 5, "ops_per_sample": 20}
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def block_program():
    """The upcall program, loaded once for the module's upcall runs (the
    runtime drains what an earlier run left in its ring)."""
    require_probes()
    from lab.families.upcall import upcall_program
    with upcall_program("block") as (_, maps):
        yield maps


def run(variant, maps=None, **kw):
    p = params(**kw)
    cpus = A.vp_cpus(p["vps"], 0, 1 if TWO_CPUS else 0)
    task_ns, handoff_ns, c, window = A.run_tasks(variant, p, cpus, maps)
    assert window > 0
    assert task_ns.size == p["tasks"] and np.all(np.isfinite(task_ns)) and np.all(task_ns > 0)
    assert np.all(np.isfinite(handoff_ns)) and np.all(handoff_ns >= 0)
    return p, c, handoff_ns


def maps_for(variant, request):
    return request.getfixturevalue("block_program") if variant == "upcall" else None


# ---- the family's description ------------------------------------------------

def test_every_variant_has_its_c_enumerator():
    # the family's variants are named in Python, the C enums name what
    # the runtime can do: a variant without one could not run
    assert {v.name for v in A.FAMILY.variants} - PART_VARIANTS == set(A.VARIANTS) | set(A.T4_KINDS)
    # and each part's, its own enum's (the k42 part prefixes its names)
    from lab.families import _activations_cs, _activations_k42, _activations_mp
    for part, names in ((_activations_cs, set(_activations_cs.VARIANTS_C)),
                        (_activations_mp, set(_activations_mp.VARIANTS_C)),
                        (_activations_k42, set(_activations_k42.K42_VARIANTS))):
        assert {v.name for v in part.VARIANTS} == names, part.__name__


def test_slot_is_the_upcall_programs():
    # the slot struct is the upcall program's, byte for byte
    assert lib.activations_slot_size() == lib.upcall_vp_size() == 128


def test_every_parameter_has_a_default_unit_and_range():
    for prm in A.FAMILY.params:
        assert prm.default is not None and prm.help
        assert prm.choices or (prm.low is not None and prm.high is not None)
        assert prm.check(prm.default) == prm.default


def test_thorough_suite_parses_and_covers_every_variant():
    s = suite.load(os.path.join(REPO, "experiments", "activations.toml"))
    assert s.settings["probe_overhead"]
    chosen = {v.name for sel in s.families["activations"] for v in sel.variants}
    assert chosen == {v.name for v in A.FAMILY.variants}
    ps = {x for sel in s.families["activations"] for x in sel.values.get("p", ())}
    assert {0.0, 0.01, 0.1, 0.5} <= ps
    assert all(sel.values.get("vps", (2,)) == (2,) for sel in s.families["activations"])


# ---- error paths -------------------------------------------------------------

def test_points_that_cannot_run_say_why():
    problem = A.point_problem("upcall", params(vps=2, spares=32))
    assert "64 slots" in problem and "lower spares" in problem and "\n" not in problem
    assert A.point_problem("upcall", params(vps=2, spares=31)) is None
    assert A.point_problem("futex_hint", params(vps=2, spares=32)) is None
    assert "raise concurrency" in A.point_problem("none", params(vps=2, concurrency=1))
    assert A.point_problem("pthreads", params(vps=2, concurrency=1)) is None
    with pytest.raises(ValueError, match="lower vps"):
        A.vp_cpus(len(A.USABLE_CPUS) + 1, 0, 1)
    if TWO_CPUS:
        with pytest.raises(ValueError, match="needs a fiber"):
            A.FAMILY.variant("none").run(params(vps=2, concurrency=1), None)


def test_bad_configs_are_refused_by_the_runtime():
    cpus = ffi.new("int[]", [0, 0])
    out, counts = np.zeros(10), ffi.new("struct activations_counts *")
    hs = native.standalone_handshake()
    before = os.sched_getaffinity(0)

    def rc(**kw):
        cfg = {"variant": 0, "nr_vps": 1, "vp_cpus": cpus, "spares": 1, "concurrency": 2,
               "steps": 2, "warmup_tasks": 0, "tasks": 10, "work_ns": 0, "p": 0.5,
               "block_ns": 1000, "monitor_ns": 1000, "seed": 1, "ring_fd": -1, "vps_fd": -1,
               "tids_fd": -1}
        cfg.update(kw)
        return lib.activations_run(hs, ffi.new("struct activations_config *", cfg),
                                   native.double_ptr(ffi, out), native.double_ptr(ffi, out),
                                   10, counts)

    for bad in ({"variant": 7}, {"nr_vps": 0}, {"p": 1.5}, {"p": float("nan")},
                {"concurrency": 0}, {"tasks": 0}, {"block_ns": 0}, {"steps": 0},
                {"variant": 3, "monitor_ns": 0},     # monitor without a period
                {"variant": 4},                      # upcall without the program's maps
                {"variant": 4, "ring_fd": 3, "vps_fd": 3, "tids_fd": 3, "nr_vps": 2,
                 "spares": 40}):                     # more activations than slots
        assert rc(**bad) == -22, bad
    assert lib.activations_table4(hs, 4, 0, 0, 0, 10, 1, -1, -1, -1,
                                  native.double_ptr(ffi, out)) == -22
    assert lib.activations_table4(hs, 1, 0, 0, 0, 10, 1, -1, -1, -1,     # no maps
                                  native.double_ptr(ffi, out)) == -22
    assert os.sched_getaffinity(0) == before


def test_bad_suite_values_get_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[activations]\nvariants = [\"none\"]\np = 1.5\n")
    proc = run_lab(["run", str(path), "--out", str(tmp_path / "res")], cwd=REPO)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "p" in lines[0] and "0..1" in lines[0]
    assert not (tmp_path / "res").exists() or not os.listdir(tmp_path / "res")


# ---- the mechanics -------------------------------------------------------------

@pytest.mark.parametrize("variant", RUNTIME + ("pthreads",))
@pytest.mark.parametrize("p", [0.0, 1.0])
def test_every_task_completes_exactly_once(variant, p, request):
    before = os.sched_getaffinity(0)
    prm, c, _ = run(variant, maps_for(variant, request), vps=2 if TWO_CPUS else 1, p=p)
    assert c["completions"] == TASKS
    assert c["duplicate_completions"] == 0
    assert c["calls"] == TASKS * prm["steps"]
    # the draws are the task's own stream: p = 0 and 1 are exact
    assert c["blocking_calls"] == (TASKS * prm["steps"] if p == 1.0 else 0)
    assert A.expected_mechanics(variant, prm, c) is None
    assert os.sched_getaffinity(0) == before          # the caller's affinity, restored


@pytest.mark.parametrize("variant", RUNTIME)
@pytest.mark.parametrize("vps", [1, 2])
def test_never_more_activations_run_fibers_than_vps(variant, vps, request):
    if vps > len(A.USABLE_CPUS):
        pytest.skip("needs a second CPU")
    prm, c, _ = run(variant, maps_for(variant, request), vps=vps, concurrency=6, p=0.5)
    assert 1 <= c["max_running_activations"] <= vps
    assert c["activations"] == vps * (1 if variant in ("none", "uring") else 1 + prm["spares"])


def test_pthreads_have_no_vps_to_count():
    prm, c, _ = run("pthreads", vps=1, p=0.5)
    counters = A.derived_counters("pthreads", prm, c, 10**6)
    assert "max_running_activations" not in counters and "vp_idle_fraction" not in counters


def test_upcall_runs_another_fiber_while_one_is_blocked(block_program):
    # one VP, every call blocks: the kernel's block upcall hands the VP to
    # a spare, which runs another fiber while the first one's activation
    # is still blocked in the kernel (the slot's block_seq says so)
    prm, c, handoff = run("upcall", block_program, vps=1, spares=2, concurrency=4, p=1.0,
                          block_us=2000, tasks=31)
    assert c["ran_while_kernel_blocked"] > 0
    assert c["ran_while_blocked"] >= c["ran_while_kernel_blocked"]
    assert c["handoffs"] > 0 and c["lost_vps"] > 0 and handoff.size > 0
    # the blocks the kernel saw became ring records, none lost or foreign
    assert c["block_events"] > 0 and c["ring_records"] > 0
    assert c["ring_lost"] == 0 and c["ring_bad"] == 0


def test_none_never_runs_another_fiber_while_one_is_blocked():
    prm, c, handoff = run("none", vps=1, concurrency=4, p=1.0)
    assert c["ran_while_blocked"] == 0 and c["handoffs"] == 0 and handoff.size == 0
    assert c["blocking_calls"] == TASKS * prm["steps"]


def test_syncfirst_hands_off_only_on_eagain():
    # p = 0: every RWF_NOWAIT try succeeds: no EAGAIN, no handoff, no wake-up
    _, c, _ = run("syncfirst", vps=1, p=0.0)
    assert c["eagain"] == 0 and c["handoffs"] == 0 and c["spare_wakeups"] == 0
    # p = 1: every call would block: one EAGAIN each (10 ms blocks: a
    # fiber preempted past its timer's deadline before the try would not)
    prm, c, _ = run("syncfirst", vps=1, p=1.0, block_us=10_000, tasks=7, steps=2)
    assert c["eagain"] == 7 * 2


def test_uring_completes_ready_calls_inline_and_never_hands_off():
    prm, c, _ = run("uring", vps=1, p=0.0)
    assert c["inline_completions"] == TASKS * prm["steps"] and c["handoffs"] == 0
    # every call blocks 10 ms: none is complete when submitted (a shorter
    # block could expire while a loaded machine preempts the fiber)
    _, c, _ = run("uring", vps=1, p=1.0, concurrency=4, block_us=10_000, tasks=7, steps=2)
    assert c["inline_completions"] == 0 and c["ran_while_blocked"] > 0


def test_monitor_retakes_vps_stuck_in_calls():
    # calls block 2 ms, the monitor's threshold is 20 us: it must retake
    _, c, handoff = run("monitor", vps=1, p=1.0, block_us=2000, tasks=7, steps=2)
    assert c["monitor_retakes"] > 0 and c["monitor_ticks"] > 0 and handoff.size > 0
    # the handoff is counted from the call's start: never below the threshold
    assert np.min(handoff) >= 20_000


def test_upcall_program_is_gone_after_a_run(tmp_path):
    require_probes()
    ctx = _context(tmp_path)
    before = upcall_objects()
    m = A.FAMILY.variant("upcall").run(params(vps=1, p=1.0, tasks=11), ctx)
    assert m.counters["handoffs"] > 0
    # the kernel frees maps after the programs' RCU grace period
    wait_for(lambda: upcall_objects() <= before, timeout=10)


# ---- Table IV ---------------------------------------------------------------------

def _context(tmp_path):
    from lab.model import RunContext
    hs = native.standalone_handshake()
    return RunContext(cpu=0, peer_cpu=1 if TWO_CPUS else 0, handshake=hs,
                      scratch_dir=str(tmp_path))


@pytest.mark.parametrize("op", A.T4_OPS)
@pytest.mark.parametrize("variant", ["t4_fibers", "t4_pthreads", "t4_processes"])
def test_table4_samples_are_plausible(variant, op):
    out = A.run_table4(variant, params(op=op), 0)
    assert out.size == 40 and np.all(np.isfinite(out)) and np.all(out > 0)
    assert np.median(out) < 1e8              # nothing here takes 100 ms


def test_table4_activations_run_with_the_upcall_armed(block_program):
    for op in A.T4_OPS:
        out = A.run_table4("t4_activations", params(op=op), 0, block_program)
        assert np.all(np.isfinite(out)) and np.all(out > 0) and np.median(out) < 1e6


def test_process_fork_is_far_slower_than_fiber_fork():
    fibers = np.median(A.run_table4("t4_fibers", params(op="null_fork"), 0))
    processes = np.median(A.run_table4("t4_processes", params(op="null_fork"), 0))
    threads = np.median(A.run_table4("t4_pthreads", params(op="null_fork"), 0))
    # fork copies page tables, pthread_create makes a kernel thread, a
    # fiber fork is queue operations and four user-level switches
    assert processes > 10 * fibers and threads > 10 * fibers


# ---- end to end ----------------------------------------------------------------------

TINY = """
[suite]
repetitions = 1
timeout = 60
[[activations]]
variants = ["none", "futex_hint", "syncfirst", "monitor", "upcall", "uring", "pthreads"]
vps = {vps}
tasks = 40
warmup_tasks = 4
steps = 5
p = 0.5
[[activations]]
variants = ["t4_fibers", "t4_activations", "t4_pthreads", "t4_processes"]
op = ["null_fork", "signal_wait"]
samples = 20
warmup = 2
"""


@requires_root
def test_every_variant_runs_through_lab_run(tmp_path):
    require_probes()
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(vps=2 if TWO_CPUS else 1))
    before = upcall_objects()
    proc = run_lab(["run", str(path), "--out", str(tmp_path / "res"), "--quiet"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    manifest = store.read_manifest(run_dir_of(str(tmp_path / "res")))
    runs = manifest["runs"]
    assert {r["variant"] for r in runs} == {v.name for v in A.FAMILY.variants} - PART_VARIANTS
    assert all(r["status"] == "ok" for r in runs), [(r["variant"], r["reason"]) for r in runs]
    assert all(r["kernel_view"] for r in runs)
    for r in runs:
        if r["variant"].startswith("t4_"):
            continue
        assert r["ops"] == 40
        assert r["counters"]["completions"] == 40 and r["counters"]["duplicate_completions"] == 0
        assert r["counters"]["throughput_steps_per_s"] > 0
    wait_for(lambda: upcall_objects() <= before, timeout=10)
